"""deploy: command lines and manifests; Kubernetes objects checked against the
kubernetes client's models (deserialize, then serialize back: nothing dropped)."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

import vllm_fit
from vllm_fit.deploy import deploy, render_deploy
from vllm_fit.errors import VllmFitError
from vllm_fit.helm import render_chart, render_template
from vllm_fit.serve_args import parse_serve_command

kubernetes = pytest.importorskip("kubernetes")

LLAMA70_FP8 = "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic"


class _Response:
    def __init__(self, obj: dict):
        self.data = json.dumps(obj)


def k8s_roundtrip(obj: dict, kind: str) -> dict:
    """Deserialize into the client's model (raises on a wrong type / missing required field) and
    serialize back; a misspelled or misplaced key would be dropped and the result would differ."""
    client = kubernetes.client.ApiClient()
    try:  # kubernetes >= 31: deserialize(response_text, type, content_type)
        model = client.deserialize(json.dumps(obj), kind, "application/json")
    except TypeError:  # older clients take a response object
        model = client.deserialize(_Response(obj), kind)
    assert type(model).__name__ == kind
    return client.sanitize_for_serialization(model)


@pytest.fixture(scope="module")
def seed001() -> dict:
    # seed 001's pod: Llama-3.3-70B-FP8, TP=2, 0.90, 16000, --block-size=128, --enable-prefix-caching
    return deploy(LLAMA70_FP8, gpu="H100", vllm_version="0.11.0", tensor_parallel_size=2, max_model_len=16000,
                  block_size=128, enable_prefix_caching=True, namespace="llm")


def test_serve_command_round_trips_and_starts(seed001: dict) -> None:
    cmd = seed001["serve_command"]
    model, flags, ignored = parse_serve_command(cmd)
    assert model == LLAMA70_FP8 and not ignored
    assert flags == {"tensor_parallel_size": 2, "max_model_len": 16000, "gpu_memory_utilization": 0.9,
                     "block_size": 128, "enable_prefix_caching": True}
    assert vllm_fit.plan_command(cmd, gpu="H100", vllm_version="0.11.0").fits


def test_pod_and_deployment_like_seed001(seed001: dict) -> None:
    k = seed001["kubernetes"]
    for obj, kind in ((k["pod"], "V1Pod"), (k["deployment"], "V1Deployment"), (k["service"], "V1Service")):
        assert k8s_roundtrip(obj, kind) == obj
    pod_spec = k["deployment"]["spec"]["template"]["spec"]
    assert pod_spec == k["pod"]["spec"]
    c = pod_spec["containers"][0]
    # GPU requests = TP x PP = 2
    assert c["resources"]["requests"]["nvidia.com/gpu"] == "2" == c["resources"]["limits"]["nvidia.com/gpu"]
    assert c["command"] == ["vllm", "serve"]
    assert c["args"][0] == LLAMA70_FP8
    for flag in ("--tensor-parallel-size=2", "--gpu-memory-utilization=0.9", "--max-model-len=16000",
                 "--block-size=128", "--enable-prefix-caching"):
        assert flag in c["args"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    env = {e["name"]: e for e in c["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN", "optional": True}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["cache"] == env["HF_HOME"]["value"]
    assert {v["name"] for v in pod_spec["volumes"]} == {"cache", "dshm"}
    assert k["deployment"]["metadata"]["namespace"] == "llm"


def test_helm_chart_renders_the_same_deployment(seed001: dict) -> None:
    name = seed001["kubernetes"]["deployment"]["metadata"]["name"]
    docs = list(yaml.safe_load_all(render_chart(seed001["helm_values"], name)))
    dep, svc = docs
    want = json.loads(json.dumps(seed001["kubernetes"]["deployment"]))
    want["metadata"].pop("namespace")  # helm sets the namespace at install time
    assert dep == want
    assert k8s_roundtrip(dep, "V1Deployment") == dep
    assert k8s_roundtrip(svc, "V1Service") == svc
    # with a PVC for the cache
    vals = {**seed001["helm_values"], "cache": {**seed001["helm_values"]["cache"], "persistentVolumeClaim": "hf-cache"}}
    dep2 = next(yaml.safe_load_all(render_chart(vals, name)))
    cache = dep2["spec"]["template"]["spec"]["volumes"][0]
    assert cache == {"name": "cache", "persistentVolumeClaim": {"claimName": "hf-cache"}}


def test_template_subset() -> None:
    v = {"a": {"b": "x y"}, "items": ["p", "q"], "flag": "", "n": 3}
    assert render_template("v={{ .Values.a.b }} q={{ .Values.a.b | quote }}", v, "r") == 'v=x y q="x y"'
    assert render_template("{{- range .Values.items }}\n- {{ . }}{{- end }}", v, "r") == "\n- p\n- q"
    assert render_template("{{ if .Values.flag }}yes{{ else }}no{{ end }} {{ .Values.n }}", v, "r") == "no 3"
    assert render_template("a  {{- .Release.Name -}}  b", v, "rel") == "arelb"
    with pytest.raises(VllmFitError):
        render_template("{{ if .Values.flag }}x", v, "r")
    with pytest.raises(VllmFitError):
        render_template("{{ .Values.a | upper }}", v, "r")


def test_docker_run(seed001: dict) -> None:
    argv = shlex.split(seed001["docker_run"].replace('"$HOME"', "/home/u"))
    assert argv[:4] == ["docker", "run", "--gpus", "2"]
    assert "vllm/vllm-openai:v0.11.0" in argv
    assert "--ipc=host" in argv and "--tensor-parallel-size=2" in argv


def test_multi_node_leaderworkerset() -> None:
    # TP=2 x PP=2 = 4 GPUs on nodes of 2 GPUs: 2 nodes, one pipeline stage each
    d = deploy(LLAMA70_FP8, gpu="H100", vllm_version="0.11.0", tensor_parallel_size=2, pipeline_parallel_size=2,
               max_model_len=16000, gpus_per_node=2)
    lws = d["kubernetes"]["leaderworkerset"]
    assert lws["kind"] == "LeaderWorkerSet"
    t = lws["spec"]["leaderWorkerTemplate"]
    assert t["size"] == 2
    for role in ("leaderTemplate", "workerTemplate"):
        assert k8s_roundtrip(t[role], "V1PodTemplateSpec") == t[role]
        assert t[role]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    leader = " ".join(t["leaderTemplate"]["spec"]["containers"][0]["args"])
    assert "--pipeline-parallel-size=2" in leader and "--distributed-executor-backend=ray" in leader
    assert ">= 2 else 1" in leader  # waits for both nodes to join Ray before vllm serve
    assert "ray start --address=$(LWS_LEADER_ADDRESS)" in " ".join(t["workerTemplate"]["spec"]["containers"][0]["args"])
    assert d["helm_values"] is None
    head, worker, serve = d["docker_run"].splitlines()[1:]
    assert "ray start --head" in head and "HEAD_IP:6379" in worker
    assert "--distributed-executor-backend=ray" in serve and "--pipeline-parallel-size=2" in serve
    assert "LeaderWorkerSet" in render_deploy(d)


def test_refuses_a_config_that_does_not_start() -> None:
    # seed 000: TP=1 leaves no memory for the KV cache
    with pytest.raises(VllmFitError, match="does not start"):
        deploy(LLAMA70_FP8, gpu="H100", vllm_version="0.11.0", max_model_len=16000)
    d = deploy(LLAMA70_FP8, gpu="H100", vllm_version="0.11.0", max_model_len=16000, force=True)
    assert d["starts"] is False


@pytest.mark.parametrize("kwargs", [{"name": "Bad_Name"}, {"port": 0}, {"replicas": 0}, {"image": "a b"},
                                    {"hf_secret_key": "bad key"}, {"gpus_per_node": 0}])
def test_bad_input(kwargs: dict) -> None:
    with pytest.raises(VllmFitError):
        deploy("qwen3-0.6b", gpu="L4", **kwargs)


def test_yaml_has_no_anchors(seed001: dict) -> None:
    text = render_deploy(seed001)
    assert "&id" not in text and "*id" not in text


def test_extra_serve_words_and_port() -> None:
    d = deploy("qwen3-0.6b", gpu="L4", max_model_len=4096, port=9000,
               extra_args=["--kv-offloading-size", "62", "--served-model-name=q"])
    words = d["serve_argv"]
    assert words[-4:] == ["--kv-offloading-size", "62", "--served-model-name=q", "--port=9000"]
    c = d["kubernetes"]["pod"]["spec"]["containers"][0]
    assert c["args"][-2:] == ["--host=0.0.0.0", "--port=9000"] and "--served-model-name=q" in c["args"]
    assert c["readinessProbe"]["httpGet"]["port"] == 9000
    with pytest.raises(VllmFitError, match="set by deploy"):
        deploy("qwen3-0.6b", gpu="L4", extra_args=["--host=1.2.3.4"])
