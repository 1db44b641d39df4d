"""Fuzz the REST API from its own OpenAPI schema (schemathesis): no input gives a 5xx.

Bounded: a fixed number of examples per operation, derandomized, so the run is
repeatable and takes well under a minute.  The app runs in-process (ASGI);
HF_HUB_OFFLINE=1 (conftest) keeps online=true requests off the network.
"""

import schemathesis
from hypothesis import HealthCheck, settings

from vllm_fit.web import create_app

EXAMPLES_PER_OPERATION = 40

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(cache_size=0))


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx(case):
    response = case.call()
    if response.status_code == 501:  # an optional module this build lacks: the answer names it
        assert "vllm_fit." in response.json()["detail"]
        return
    assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
    if response.status_code in (400, 413, 422):
        detail = response.json()["detail"]
        assert detail  # a message, never an empty error


# Schema-driven inputs almost never name a real model, so the planner itself is
# also fuzzed with catalog models and arbitrary flag values (NaN and huge numbers too).
import json  # noqa: E402
import math  # noqa: E402

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from vllm_fit.serve_args import DTYPES, KV_CACHE_DTYPES, QUANTIZATIONS  # noqa: E402
from vllm_fit.web import service  # noqa: E402

_client = TestClient(create_app(cache_size=0))
_MODELS = [m["id"] for m in service.list_models() if m["has_config"]]
_GPUS = [g["name"] for g in service.list_gpus()]
_VERSIONS = service.list_versions()["versions"]
_BIG = st.integers(min_value=-3, max_value=1 << 62)
_FLAGS = {
    "tensor_parallel_size": st.sampled_from([1, 2, 3, 4, 8]) | _BIG,
    "pipeline_parallel_size": st.sampled_from([1, 2, 4]) | _BIG,
    "data_parallel_size": st.sampled_from([1, 2]) | _BIG,
    "max_model_len": st.sampled_from([1, 2048, 32768, -1, "8k", "1M", "x"]) | _BIG,
    "gpu_memory_utilization": st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.5, 0.9, 0.95]),
    "block_size": st.sampled_from([16, 32, 128]) | _BIG,
    "kv_cache_dtype": st.sampled_from(KV_CACHE_DTYPES) | st.text(max_size=8),
    "dtype": st.sampled_from(DTYPES) | st.text(max_size=8),
    "quantization": st.sampled_from(QUANTIZATIONS) | st.text(max_size=8),
    "max_num_seqs": st.sampled_from([1, 256]) | _BIG,
    "max_num_batched_tokens": st.sampled_from([1, 8192, "16k"]) | _BIG,
    "enforce_eager": st.booleans(),
    "enable_prefix_caching": st.booleans(),
    "kv_cache_memory_bytes": st.sampled_from([0, 1 << 30, "4G"]) | _BIG,
    "num_gpu_blocks_override": st.sampled_from([1, 1000]) | _BIG,
    "gpu_memory_gib": st.sampled_from([24.0, 79.19, 141.0]) | st.floats(allow_nan=True, allow_infinity=True),
    "free_memory_gib": st.sampled_from([20.0, 70.0]) | st.floats(allow_nan=True, allow_infinity=True),
}
_RARE = ("gpu_memory_gib", "free_memory_gib", "kv_cache_memory_bytes", "num_gpu_blocks_override")


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(model=st.sampled_from(_MODELS), gpu=st.sampled_from(_GPUS), version=st.sampled_from(_VERSIONS),
       flags=st.fixed_dictionaries({}, optional={k: v for k, v in _FLAGS.items() if k not in _RARE}),
       rare=st.fixed_dictionaries({}, optional={k: _FLAGS[k] for k in _RARE}) | st.just({}))
def test_catalog_models_with_arbitrary_flags_never_5xx(model, gpu, version, flags, rare):
    body = {"model": model, "gpu": gpu, "vllm_version": version, **flags, **rare}
    # json.dumps writes NaN/Infinity literals, which Python's JSON reader (and so the server) accepts
    r = _client.post("/api/plan", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code in (200, 422), f"{body} -> {r.status_code}: {r.text[:300]}"
    if r.status_code == 200:
        d = r.json()
        assert d["fits"] in (True, False) and (d["fits"] or d["error"])
        assert all(not (isinstance(v, float) and math.isnan(v)) for v in d.values())


_LISTS = st.lists(st.integers(min_value=-2, max_value=1 << 40), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(model=st.sampled_from(_MODELS), gpus=st.lists(st.sampled_from(_GPUS + ["nope"]), min_size=1, max_size=2),
       tp=_LISTS | st.just([1, 2]), mml=_LISTS | st.just([4096]), util=st.lists(st.floats(), min_size=1, max_size=2),
       kvd=st.lists(st.sampled_from(KV_CACHE_DTYPES) | st.text(max_size=6), min_size=1, max_size=2))
def test_sweep_with_arbitrary_axes_never_5xx(model, gpus, tp, mml, util, kvd):
    body = {"model": model, "gpu": gpus, "tensor_parallel_size": tp, "max_model_len": mml,
            "gpu_memory_utilization": util, "kv_cache_dtype": kvd}
    r = _client.post("/api/sweep", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code in (200, 422), f"{body} -> {r.status_code}: {r.text[:300]}"


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(model=st.sampled_from(_MODELS), gpu=st.sampled_from(_GPUS),
       concurrency=st.integers(min_value=-1, max_value=10_000), context=st.sampled_from([1, 4096, "32k", "x", -5]),
       goal=st.sampled_from(["throughput", "latency", "cold-start", "long-context", "?"]),
       flags=st.fixed_dictionaries({}, optional={k: _FLAGS[k] for k in ("tensor_parallel_size", "max_num_seqs",
                                                                        "gpu_memory_utilization", "kv_cache_dtype")}))
def test_advise_with_arbitrary_targets_never_5xx(model, gpu, concurrency, context, goal, flags):
    body = {"model": model, "gpu": gpu, "concurrency": concurrency, "context": context, "goal": goal, **flags}
    r = _client.post("/api/advise", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code in (200, 422), f"{body} -> {r.status_code}: {r.text[:300]}"


# The page's own endpoints are not in the schema: random query strings, every answer a page (200), never a 5xx.
_PAGE_KEYS = ["model", "gpu", "gpu_memory_gib", "vllm_version", "tensor_parallel_size", "pipeline_parallel_size",
              "max_model_len", "gpu_memory_utilization", "kv_cache_dtype", "enforce_eager", "online", "command",
              "concurrency", "context", "goal", "sweep_tensor_parallel_size", "sweep_max_model_len",
              "sweep_gpu_memory_utilization", "sweep_gpu"]
_VALUES = st.sampled_from(["qwen3-8b", "Qwen/Qwen3-32B", "H100", "2", "0", "-1", "nan", "1e309", "8k", "1,2", "x,,",
                           "true", "vllm serve qwen3-8b -tp 2", "0.19.0", "fp8"]) | st.text(max_size=12)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(["/", "/ui/plan", "/ui/advise", "/ui/sweep"]),
       query=st.dictionaries(st.sampled_from(_PAGE_KEYS), _VALUES, max_size=6))
def test_page_endpoints_never_5xx(path, query):
    if path == "/ui/sweep" or (path == "/" and any(k.startswith("sweep_") for k in query)):
        query.pop("sweep_gpu", None)  # keep sweeps small: plots take a second each
    r = _client.get(path, params=query)
    assert r.status_code == 200, f"{path} {query} -> {r.status_code}: {r.text[:300]}"
