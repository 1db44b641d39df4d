"""The REST API and the server-rendered page, in-process (FastAPI's TestClient)."""

import json
import re
from importlib import resources

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import vllm_fit
from vllm_fit.cli import app as cli_app
from vllm_fit.web import create_app
from vllm_fit.web.service import MAX_BODY_BYTES

LOG_8B = "validation/vllm-0.19.0-h100/logs/meta-llama-llama-3-1-8b---h100-80gb--tp1pp1dp1--8192.log"


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(cache_size=0))


def _cli_json(*args):
    r = CliRunner().invoke(cli_app, ["plan", *args, "--json"])
    assert r.exit_code in (0, 1), r.output
    return json.loads(r.output)


def test_plan_is_the_object_of_plan_json(client):
    body = {"model": "Qwen/Qwen3-32B", "gpu": "H100", "tensor_parallel_size": 2, "max_model_len": "16k",
            "vllm_version": "0.19.0"}
    r = client.post("/api/plan", json=body)
    assert r.status_code == 200
    expected = _cli_json("Qwen/Qwen3-32B", "--gpu", "H100", "-tp", "2", "--max-model-len", "16k",
                         "--vllm-version", "0.19.0")
    assert r.json() == expected


def test_plan_kv_bytes_per_token_by_hand(client):
    # Qwen3-32B: 64 layers, 8 KV heads of head_dim 128, bf16 (config.json).
    # Per token at TP=2: K and V x 8/2 heads x 128 x 2 bytes x 64 layers = 131,072 bytes;
    # at TP=1: 262,144 bytes.
    for tp, per_token in ((1, 262_144), (2, 131_072)):
        d = client.post("/api/plan", json={"model": "qwen3-32b", "gpu": "H100", "tensor_parallel_size": tp}).json()
        assert d["kv_bytes_per_token"] == per_token
        # KV bytes / (block bytes) = blocks: 16-token blocks of 16 x per_token bytes
        assert d["num_gpu_blocks"] == d["kv_cache_bytes"] // (16 * per_token)
    # default max_model_len is the model's 40,960; at TP=1 that needs 40,960 x 262,144 B = 10.0 GiB of KV,
    # more than the ~6.4 GiB left after 61 GiB of weights: vLLM's ValueError
    d1 = client.post("/api/plan", json={"model": "qwen3-32b", "gpu": "H100"}).json()
    assert d1["fits"] is False and "10.0 GiB KV cache is needed" in d1["error"]


def test_command_and_flags(client):
    by_cmd = client.post("/api/plan", json={"command": "vllm serve Qwen/Qwen3-8B --max-model-len 32K -tp 2 --port 9000"})
    by_flags = client.post("/api/plan", json={"model": "Qwen/Qwen3-8B", "max_model_len": 32768, "tensor_parallel_size": 2})
    assert by_cmd.status_code == by_flags.status_code == 200
    assert by_cmd.json() == by_flags.json()
    assert by_cmd.json()["settings"]["max_model_len"] == 32768  # 32K (capital K) = 32 x 1024
    # a flag given beside the command overrides it
    over = client.post("/api/plan", json={"command": "vllm serve Qwen/Qwen3-8B -tp 2", "tensor_parallel_size": 1}).json()
    assert over["settings"]["tensor_parallel_size"] == 1


def test_pasted_config_json_matches_the_catalog(client):
    text = resources.files("vllm_fit").joinpath("data/models/Qwen/Qwen3-8B/config.json").read_text()
    pasted = client.post("/api/plan", json={"config_json": text, "model": "my-qwen"}).json()
    catalog = client.post("/api/plan", json={"model": "Qwen/Qwen3-8B"}).json()
    assert pasted["model"] == "my-qwen" and pasted["model_source"] == "pasted config.json"
    for key in ("weights_gib", "kv_cache_bytes", "num_gpu_blocks", "kv_cache_tokens"):
        assert pasted[key] == catalog[key]


@pytest.mark.parametrize("body, needle", [
    ({"model": "/etc/passwd"}, "not in the bundled catalog"),
    ({"model": "tests"}, "not in the bundled catalog"),  # an existing folder here: never read
    ({"model": "someone/some-model"}, "online"),  # a hub id, but online is off
    ({"model": "qwen3-8b", "tensor_parallel_size": 0}, "--tensor-parallel-size"),
    ({"model": "qwen3-8b", "max_model_len": "lots"}, "--max-model-len"),
    ({"model": "qwen3-8b", "gpu": "Voodoo5"}, "unknown GPU"),
    ({"model": "qwen3-8b", "gpu_memory_gib": -3}, "gpu_memory_gib"),
    ({"model": "qwen3-8b", "vllm_version": "9.9"}, "version"),
    ({"command": "vllm serve 'unbalanced"}, "command line"),
    ({"command": "vllm serve qwen3-8b --max-model-len"}, "needs a value"),
    ({"config_json": "{not json"}, "pasted config.json"),
    ({"config_json": json.dumps({"architectures": ["EvilForCausalLM"], "auto_map": {"AutoModel": "x.y"}})}, "Evil"),
    ({}, "no model"),
])
def test_bad_input_is_one_422_message(client, body, needle):
    r = client.post("/api/plan", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and needle in detail
    assert "/tmp" not in detail  # the pasted config's temporary path is not shown


def test_schema_errors_and_limits(client):
    assert client.post("/api/plan", json={"model": "qwen3-8b", "no_such_flag": 1}).status_code == 422
    assert client.post("/api/plan", content=b"{", headers={"content-type": "application/json"}).status_code == 422
    big = b'{"log": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
    assert client.post("/api/explain", content=big, headers={"content-type": "application/json"}).status_code == 413
    deep = b"[" * 100_000 + b"]" * 100_000
    assert client.post("/api/plan", content=deep, headers={"content-type": "application/json"}).status_code < 500


def test_explain_a_real_log(client, shared):
    text = (shared / LOG_8B).read_text()
    r = client.post("/api/explain", json={"log": text})
    assert r.status_code == 200
    log = r.json()["logs"][0]
    # the log says "Available KV cache memory: 58.11 GiB" and "GPU KV cache size: 476,016 tokens"
    assert log["measured"]["kv_cache_gib"] == 58.11
    assert log["measured"]["kv_cache_tokens"] == 476_016
    assert log["predicted"]["kv_cache_gib"] == pytest.approx(58.11, abs=0.05)
    assert "KV cache (GiB)" in r.json()["text"]


def test_explain_garbage_is_not_an_error(client):
    r = client.post("/api/explain", json={"log": "hello\x00\nworld\n" * 50})
    assert r.status_code == 200
    assert r.json()["logs"][0]["status"].startswith("UNKNOWN")


def test_listings(client):
    models = client.get("/api/models").json()
    assert any(m["id"] == "Qwen/Qwen3-32B" for m in models)
    assert all("qwen3" in m["id"].lower() for m in client.get("/api/models", params={"search": "QWEN3"}).json())
    h100 = next(g for g in client.get("/api/gpus").json() if g["name"] == "H100")
    assert h100["total_gib"] == pytest.approx(79.18, abs=0.005)  # measured total (shared/reference/gpu-measured.md)
    v = client.get("/api/versions").json()
    assert v["versions"][0] == "0.11.0" and v["default"] in v["versions"]


def test_page_renders_the_plan_from_the_query_string(client):
    r = client.get("/", params={"model": "Qwen/Qwen3-32B", "gpu": "H100", "tensor_parallel_size": "2"})
    assert r.status_code == 200
    p = vllm_fit.plan("Qwen/Qwen3-32B", gpu="H100", tensor_parallel_size=2)
    m = re.search(r'id="kv-tokens" data-value="(\d+)"', r.text)
    assert m and int(m.group(1)) == p.kv_cache_tokens
    assert 'value="Qwen/Qwen3-32B"' in r.text and "<svg" in r.text
    # bad query values show the message in the page, not an error page
    bad = client.get("/ui/plan", params={"model": "qwen3-8b", "tensor_parallel_size": "two"})
    assert bad.status_code == 200 and 'id="plan-error"' in bad.text
    hostile = client.get("/ui/plan", params={"model": "<script>alert(1)</script>"})
    assert "<script>alert" not in hostile.text


def test_page_explain_fragment(client, shared):
    text = (shared / LOG_8B).read_text()
    r = client.post("/ui/explain", content=text.encode(), headers={"content-type": "text/plain"})
    assert r.status_code == 200 and "explain-table" in r.text and "58.11" in r.text


def test_cli_has_web():
    r = CliRunner().invoke(cli_app, ["web", "--help"])
    assert r.exit_code == 0 and "--port" in r.output and "127.0.0.1" in r.output


def test_advise_recommends_tp2_for_qwen3_32b(client):
    # Qwen3-32B on one H100: ~61 GiB of bf16 weights leave ~6.4 GiB of KV = ~26k tokens at 256 KiB per
    # token; 8 requests x 16,384 tokens need 131,072 tokens, so one GPU cannot serve them. TP=2 halves
    # the weights and the per-token KV: ~35 GiB of KV at 128 KiB per token = ~287k tokens.
    r = client.post("/api/advise", json={"model": "Qwen/Qwen3-32B", "gpu": "H100", "concurrency": 8, "context": 16384})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["given"]["starts"] is True and d["given"]["meets_target"] is False
    rec = d["recommended"]
    assert rec["serve_flags"]["tensor_parallel_size"] == 2 and rec["meets_target"] is True
    assert "Parallelism" in d["text"]
    bad = client.post("/api/advise", json={"model": "Qwen/Qwen3-32B", "goal": "fastest"})
    assert bad.status_code == 422 and "goal" in bad.json()["detail"]


def test_sweep_grid_rows_and_limits(client):
    body = {"model": "Qwen/Qwen3-32B", "gpu": ["H100", "H200"], "tensor_parallel_size": [1, 2, 4],
            "max_model_len": ["8K", 32768], "plots": True}
    d = client.post("/api/sweep", json=body).json()
    assert d["count"] == 2 * 3 * 2 == len(d["rows"])
    row = next(x for x in d["rows"] if x["gpu"] == "H200" and x["tensor_parallel_size"] == 2 and x["max_model_len"] == 8192)
    p = vllm_fit.plan("Qwen/Qwen3-32B", gpu="H200", tensor_parallel_size=2, max_model_len=8192)
    assert row["kv_cache_tokens"] == p.kv_cache_tokens and row["fits"] == p.fits
    assert sorted(d["plots"]) == ["concurrency", "memory", "restore"]
    assert all(svg.startswith("<svg") for svg in d["plots"].values())
    # 39 x 40 = 1,560 configurations is over the per-request limit; 65 values on one axis too
    too_big = client.post("/api/sweep", json={"model": "qwen3-8b", "tensor_parallel_size": list(range(1, 40)),
                                              "max_model_len": list(range(1000, 1040))})
    assert too_big.status_code == 422 and "1560 configurations" in too_big.json()["detail"]
    long_axis = client.post("/api/sweep", json={"model": "qwen3-8b", "max_num_seqs": list(range(1, 66))})
    assert long_axis.status_code == 422 and "at most 64" in long_axis.json()["detail"]
    assert client.post("/api/sweep", json={"model": "/etc"}).status_code == 422


def test_page_advice_sweep_and_manifests(client):
    q = {"model": "Qwen/Qwen3-32B", "gpu": "H100", "tensor_parallel_size": "2"}
    page = client.get("/", params=q).text
    assert 'id="manifests"' in page and "kind: Deployment" in page and "nvidia.com/gpu: &#39;2&#39;" in page
    advice = client.get("/ui/advise", params={**q, "concurrency": "8", "context": "16384"}).text
    assert 'id="advice-command"' in advice and "--tensor-parallel-size 2" in advice
    sweep = client.get("/ui/sweep", params={**q, "sweep_tensor_parallel_size": "1,2", "sweep_max_model_len": "8192"}).text
    assert "2 configurations" in sweep and sweep.count('class="sweep-plot"') == 3
    bad = client.get("/ui/sweep", params={**q, "sweep_tensor_parallel_size": "1,x"}).text
    assert 'id="sweep-error"' in bad and "tensor_parallel_size" in bad


def test_catalog_resolution_is_shared_and_changes_no_answer():
    """sources caches catalog resolution per process; a freshly parsed spec plans the same bytes."""
    from vllm_fit import sources

    cases = [("Qwen/Qwen3-32B", {"tensor_parallel_size": 2}), ("qwen3-8b", {"max_model_len": 8192}),
             ("meta-llama/Llama-3.1-8B-Instruct", {"vllm_version": "0.19.0", "kv_cache_dtype": "fp8"})]
    cached = [json.dumps(vllm_fit.plan(m, gpu="H100", allow_hub=False, **f).to_dict()) for m, f in cases]
    assert sources.resolve_model("qwen3-8b") is sources.resolve_model("Qwen/Qwen3-8B")
    sources._resolve_catalog.cache_clear()
    fresh = [json.dumps(vllm_fit.plan(m, gpu="H100", allow_hub=False, **f).to_dict()) for m, f in cases]
    assert cached == fresh
    with pytest.raises(vllm_fit.VllmFitError):
        vllm_fit.plan("no-such-model", allow_hub=False)


def test_explain_takes_the_log_as_plain_text(client, shared):
    # `kubectl logs pod | curl --data-binary @- -H 'content-type: text/plain' .../api/explain`
    text = (shared / LOG_8B).read_bytes()
    r = client.post("/api/explain", content=text, headers={"content-type": "text/plain; charset=utf-8"})
    assert r.status_code == 200
    assert r.json()["logs"][0]["measured"]["kv_cache_gib"] == 58.11  # "Available KV cache memory: 58.11 GiB"
    assert client.post("/api/explain", content=b'{"log": 5}', headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/api/explain", content=b"\xff\xfe garbage", headers={"content-type": "text/plain"}).status_code == 200
