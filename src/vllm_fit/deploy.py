"""Deploy: a planned configuration as a `vllm serve` line, `docker run`,
Kubernetes Pod/Deployment (seed 001's shape), Helm values, and for TP x PP
beyond one node a LeaderWorkerSet running Ray.

The configuration is planned first; one that vLLM would refuse is bad input
here (VllmFitError) unless ``force=True``.  Plain dicts out; YAML at the edge.
"""

from __future__ import annotations

import copy
import re
import shlex
from typing import Any

from .errors import VllmFitError
from .replan import Planner

DEFAULT_PORT = 8000
CACHE_MOUNT = "/root/.cache/huggingface"
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")
# Flags the plan resolves and the manifests always state (seed 001 states them too).
_ALWAYS = ("tensor_parallel_size", "pipeline_parallel_size", "max_model_len", "gpu_memory_utilization", "block_size")


def _k8s_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:50].strip("-")
    return name or "vllm"


def serve_args_list(flags: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """`--flag=value` arguments after the model, vLLM's kebab-case names."""
    chosen: dict[str, Any] = {}
    for k in _ALWAYS:
        v = settings.get(k)
        if k in ("tensor_parallel_size", "pipeline_parallel_size") and (v or 1) == 1 and k not in flags:
            continue
        if v is not None:
            chosen[k] = v
    for k, v in flags.items():
        if v is None or k in chosen:
            continue
        chosen[k] = v
    if settings.get("enable_prefix_caching") and "enable_prefix_caching" not in flags:
        chosen["enable_prefix_caching"] = True
    out = []
    for k, v in chosen.items():
        flag = "--" + k.replace("_", "-")
        if k == "kv_cache_memory_bytes":
            flag = "--kv-cache-memory-bytes"
        if isinstance(v, bool):
            out.append(flag if v else "--no-" + flag[2:])
        elif isinstance(v, float):
            out.append(f"{flag}={v:g}")
        else:
            out.append(f"{flag}={v}")
    return out


def _probe(path: str, port: int, period: int, failures: int, initial: int = 0) -> dict[str, Any]:
    p: dict[str, Any] = {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failures}
    if initial:
        p["initialDelaySeconds"] = initial
    return p


def _container(image: str, model: str, args: list[str], gpus: int, port: int, hf_secret: str, hf_secret_key: str,
               command: list[str] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": "vllm",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command or ["vllm", "serve"],
        "args": [model, *args, "--host=0.0.0.0", f"--port={port}"] if command is None else args,
        "ports": [{"name": "http", "containerPort": port}],
        "env": [
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": hf_secret, "key": hf_secret_key, "optional": True}}},
            {"name": "HF_HOME", "value": CACHE_MOUNT},
        ],
        "resources": {"requests": {"nvidia.com/gpu": str(gpus)}, "limits": {"nvidia.com/gpu": str(gpus)}},
        "volumeMounts": [{"name": "cache", "mountPath": CACHE_MOUNT}, {"name": "dshm", "mountPath": "/dev/shm"}],
        # loading a large checkpoint takes minutes (seed 000: 117 s for Llama-3.3-70B-FP8 at TP=2)
        "startupProbe": _probe("/health", port, 10, 180),
        "readinessProbe": _probe("/health", port, 5, 3),
        "livenessProbe": _probe("/health", port, 15, 4),
    }
    return c


def _volumes(cache_pvc: str | None, shm_gib: int) -> list[dict[str, Any]]:
    cache: dict[str, Any] = {"name": "cache"}
    if cache_pvc:
        cache["persistentVolumeClaim"] = {"claimName": cache_pvc}
    else:
        cache["emptyDir"] = {}
    return [cache, {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib}Gi"}}]


def deploy(
    model: str | None,
    *,
    gpu: str | None = None,
    gpu_memory_gib: float | None = None,
    vllm_version: str | None = None,
    config: str | None = None,
    name: str | None = None,
    namespace: str | None = None,
    image: str | None = None,
    hf_secret: str = "hf-token",
    hf_secret_key: str = "HF_TOKEN",
    cache_pvc: str | None = None,
    port: int = DEFAULT_PORT,
    replicas: int = 1,
    gpus_per_node: int = 8,
    shm_gib: int = 16,
    extra_args: list[str] | None = None,
    force: bool = False,
    allow_hub: bool = True,
    **serve_flags: Any,
) -> dict[str, Any]:
    """Everything needed to run this configuration: command lines and manifests (dicts).

    ``extra_args`` are further `vllm serve` words that do not change memory
    (e.g. ["--kv-offloading-size", "62", "--disable-hybrid-kv-cache-manager"])."""
    if not (isinstance(port, int) and 1 <= port <= 65535):
        raise VllmFitError(f"--port {port!r} must be between 1 and 65535")
    if not (isinstance(replicas, int) and 1 <= replicas <= 1000):
        raise VllmFitError("--replicas must be between 1 and 1000")
    if not (isinstance(gpus_per_node, int) and 1 <= gpus_per_node <= 64):
        raise VllmFitError("--gpus-per-node must be between 1 and 64")
    if not (isinstance(shm_gib, int) and 1 <= shm_gib <= 4096):
        raise VllmFitError("--shm-gib must be between 1 and 4096")
    for label, value in (("--name", name), ("--namespace", namespace), ("--hf-secret", hf_secret), ("--cache-pvc", cache_pvc)):
        if value is not None and not _NAME_RE.match(value):
            raise VllmFitError(f"{label} {value!r} is not a Kubernetes name (lowercase letters, digits, '-')")
    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", hf_secret_key):
        raise VllmFitError(f"--hf-secret-key {hf_secret_key!r} is not a valid secret key")
    if image is not None and (not image or any(ch.isspace() for ch in image) or len(image) > 255):
        raise VllmFitError(f"--image {image!r} is not an image reference")

    P = Planner(model, gpu=gpu, gpu_memory_gib=gpu_memory_gib, vllm_version=vllm_version, config=config, allow_hub=allow_hub)
    flags = {k: v for k, v in serve_flags.items() if v is not None}
    p = P.plan(flags)
    if not p.fits and not force:
        raise VllmFitError(
            f"this configuration does not start on {P.gpu.name}: {p.error}"[:400],
            "Run `vllm-fit advise` for one that does (or pass --force).",
        )
    model_id = model if model and "/" in model else P.spec.name
    s = p.settings
    tp, pp = int(s["tensor_parallel_size"]), int(s["pipeline_parallel_size"])
    gpus = tp * pp
    args = serve_args_list(flags, s)
    for a in extra_args or []:
        if not isinstance(a, str) or not a or "\n" in a or len(a) > 4096:
            raise VllmFitError(f"extra serve argument {a!r} is not a command-line word")
        if a.split("=")[0] in ("--host", "--port"):
            raise VllmFitError(f"{a.split('=')[0]} is set by deploy (use --port)")
    args += list(extra_args or [])
    image = image or f"vllm/vllm-openai:v{P.vllm_version}"
    name = name or _k8s_name(model_id.split("/")[-1])
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": name}}
    if namespace:
        meta["namespace"] = namespace

    serve_cmd = ["vllm", "serve", model_id, *args] + ([f"--port={port}"] if port != DEFAULT_PORT else [])
    out: dict[str, Any] = {
        "model": model_id,
        "gpu": P.gpu.name,
        "vllm_version": P.vllm_version,
        "starts": p.fits,
        "num_gpus": gpus,
        "serve_flags": {k: s.get(k) for k in _ALWAYS} | flags,
        "serve_command": shlex.join(serve_cmd),
        "serve_argv": serve_cmd,
        "plan": {k: v for k, v in p.to_dict().items() if k != "log_lines"},
    }
    out["docker_run"] = _docker(gpus, gpus_per_node, port, image, model_id, args)

    if gpus <= gpus_per_node:
        container = _container(image, model_id, args, gpus, port, hf_secret, hf_secret_key)
        pod_spec = {"containers": [container], "volumes": _volumes(cache_pvc, shm_gib)}
        out["kubernetes"] = {
            "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec},
            "deployment": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": meta,
                "spec": {
                    "replicas": replicas,
                    "strategy": {"type": "Recreate"},  # a second copy would need a second set of GPUs
                    "selector": {"matchLabels": dict(meta["labels"])},
                    "template": {"metadata": {"labels": dict(meta["labels"])}, "spec": pod_spec},
                },
            },
            "service": _service(meta, port),
        }
        out["helm_values"] = helm_values(image, model_id, args, gpus, port, hf_secret, hf_secret_key, cache_pvc, replicas, shm_gib)
    else:
        out["kubernetes"] = {"leaderworkerset": _leaderworkerset(meta, image, model_id, args, tp, pp, gpus_per_node, port,
                                                                 hf_secret, hf_secret_key, cache_pvc, replicas, shm_gib),
                             "service": _service(meta, port, leader_only=True)}
        out["helm_values"] = None
        out["notes"] = [
            f"TP={tp} x PP={pp} = {gpus} GPUs spans {-(-gpus // gpus_per_node)} nodes of {gpus_per_node}: "
            "a LeaderWorkerSet (leaderworkerset.x-k8s.io) starts a Ray cluster and runs vllm serve on the leader "
            "with --distributed-executor-backend ray. Install the LWS controller first."
        ]
    out["kubernetes"] = copy.deepcopy(out["kubernetes"])  # no shared sub-objects (YAML anchors)
    return out


def _docker(gpus: int, gpus_per_node: int, port: int, image: str, model: str, args: list[str]) -> str:
    def line(words: list[str]) -> str:
        # keep $HOME for the shell that runs the line
        return shlex.join(words).replace("'$HOME/.cache/huggingface:" + CACHE_MOUNT + "'",
                                         '"$HOME"/.cache/huggingface:' + CACHE_MOUNT)

    common = ["--ipc=host", "-v", f"$HOME/.cache/huggingface:{CACHE_MOUNT}", "-e", "HF_TOKEN"]
    if gpus <= gpus_per_node:
        return line(["docker", "run", "--gpus", str(gpus), "--ipc=host", "-p", f"{port}:{port}", *common[1:], image, model,
                     *args, f"--port={port}"])
    nodes = -(-gpus // gpus_per_node)
    ray = ["--gpus", "all", "--network", "host", "--shm-size", "16g", *common, "--entrypoint", "/bin/bash", image, "-c"]
    return "\n".join([
        f"# {nodes} nodes: a Ray head on the first, workers on the others, then vllm serve on the head",
        line(["docker", "run", "-d", "--name", "vllm-head", *ray, "ray start --head --port=6379 --block"]),
        line(["docker", "run", "-d", "--name", "vllm-worker", *ray, "ray start --address=HEAD_IP:6379 --block"])
        + f"  # on each of the other {nodes - 1} node(s)",
        line(["docker", "exec", "vllm-head", "vllm", "serve", model, *args, "--distributed-executor-backend=ray",
              f"--port={port}"]),
    ])


def _service(meta: dict[str, Any], port: int, leader_only: bool = False) -> dict[str, Any]:
    selector = dict(meta["labels"])
    if leader_only:
        selector["role"] = "leader"
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {k: v for k, v in meta.items()},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": port, "targetPort": port}]},
    }


def _leaderworkerset(meta: dict[str, Any], image: str, model: str, args: list[str], tp: int, pp: int, gpus_per_node: int,
                     port: int, hf_secret: str, hf_secret_key: str, cache_pvc: str | None, replicas: int,
                     shm_gib: int) -> dict[str, Any]:
    nodes = -(-(tp * pp) // gpus_per_node)
    serve = shlex.join(["vllm", "serve", model, *args, "--distributed-executor-backend=ray", "--host=0.0.0.0", f"--port={port}"])
    # wait until every worker pod has joined the Ray cluster before vLLM places its workers
    wait = ("until python3 -c \"import ray,sys; ray.init(address='auto', logging_level='ERROR'); "
            f"sys.exit(0 if sum(n['Alive'] for n in ray.nodes()) >= {nodes} else 1)\"; do sleep 5; done")
    leader_cmd = f"ray start --head --port=6379 && {wait} && {serve}"
    worker_cmd = "ray start --address=$(LWS_LEADER_ADDRESS):6379 --block"
    leader = _container(image, model, ["-c", leader_cmd], gpus_per_node, port, hf_secret, hf_secret_key, command=["/bin/bash"])
    worker = _container(image, model, ["-c", worker_cmd], gpus_per_node, port, hf_secret, hf_secret_key, command=["/bin/bash"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe", "ports"):
        worker.pop(probe)
    labels = dict(meta["labels"])
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "leaderWorkerTemplate": {
                "size": nodes,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {"metadata": {"labels": {**labels, "role": "leader"}},
                                   "spec": {"containers": [leader], "volumes": _volumes(cache_pvc, shm_gib)}},
                "workerTemplate": {"metadata": {"labels": {**labels, "role": "worker"}},
                                   "spec": {"containers": [worker], "volumes": _volumes(cache_pvc, shm_gib)}},
            },
        },
    }


def helm_values(image: str, model: str, args: list[str], gpus: int, port: int, hf_secret: str, hf_secret_key: str,
                cache_pvc: str | None, replicas: int, shm_gib: int) -> dict[str, Any]:
    """Values for the minimal chart bundled in vllm_fit/data/helm/vllm (see helm.py)."""
    repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
    return {
        "replicaCount": replicas,
        "image": {"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"},
        "model": model,
        "extraArgs": args,
        "port": port,
        "gpus": gpus,
        "hfToken": {"secretName": hf_secret, "secretKey": hf_secret_key},
        "cache": {"mountPath": CACHE_MOUNT, "persistentVolumeClaim": cache_pvc or ""},
        "shmSizeLimit": f"{shm_gib}Gi",
    }


def to_yaml(docs: list[dict[str, Any]] | dict[str, Any]) -> str:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a dependency
        import json

        return json.dumps(docs, indent=2)
    if isinstance(docs, dict):
        docs = [docs]
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=200)


def render_deploy(d: dict[str, Any], what: str = "all") -> str:
    """Text for the CLI: command lines and YAML documents."""
    parts = []
    if what in ("all", "serve"):
        parts.append("# vllm serve\n" + d["serve_command"])
    if what in ("all", "docker"):
        parts.append("# docker run\n" + d["docker_run"])
    k = d["kubernetes"]
    if what in ("all", "kubernetes", "pod"):
        docs = [k[x] for x in ("pod",) if x in k]
        if docs:
            parts.append("# Kubernetes Pod\n" + to_yaml(docs).rstrip())
    if what in ("all", "kubernetes", "deployment"):
        docs = [k[x] for x in ("deployment", "leaderworkerset", "service") if x in k]
        parts.append("# Kubernetes " + " + ".join(x for x in ("deployment", "leaderworkerset", "service") if x in k)
                     + "\n" + to_yaml(docs).rstrip())
    if what in ("all", "helm") and d.get("helm_values"):
        parts.append("# Helm values (chart: vllm_fit/data/helm/vllm)\n" + to_yaml(d["helm_values"]).rstrip())
    for note in d.get("notes", []):
        parts.append("# note: " + note)
    return "\n---\n".join(parts) if what in ("kubernetes", "deployment", "pod") else "\n\n".join(parts)


__all__ = ["deploy", "render_deploy", "serve_args_list", "helm_values", "to_yaml"]
