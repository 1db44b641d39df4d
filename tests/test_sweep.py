"""sweep: one row per configuration, each equal to an independent vllm_fit.plan."""

from __future__ import annotations

import csv
import io
import json

import pytest

import vllm_fit
from vllm_fit import planner
from vllm_fit.errors import VllmFitError
from vllm_fit.replan import fast_planning
from vllm_fit.sweep import grid_size, parse_list, rows_to_csv, sweep

LLAMA8 = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return sweep(LLAMA8, gpu=["H100", "L4"], tensor_parallel_size=[1, 2], gpu_memory_utilization=[0.5, 0.7, 0.9],
                 max_model_len=[4096, 32768], kv_cache_dtype=["auto", "fp8"], max_num_seqs=[64, 256],
                 vllm_version="0.19.0")


def test_grid_is_complete(rows: list[dict]) -> None:
    # 2 GPUs x 2 TP x 3 utilizations x 2 lengths x 2 KV dtypes x 2 max-num-seqs = 96
    assert len(rows) == 96 == grid_size(gpu=["H100", "L4"], tensor_parallel_size=[1, 2],
                                         gpu_memory_utilization=[0.5, 0.7, 0.9], max_model_len=[4096, 32768],
                                         kv_cache_dtype=["auto", "fp8"], max_num_seqs=[64, 256])
    keys = {(r["gpu"], r["tensor_parallel_size"], r["gpu_memory_utilization"], r["max_model_len"], r["kv_cache_dtype"],
             r["max_num_seqs"]) for r in rows}
    assert len(keys) == 96


def test_every_row_equals_an_unmemoized_plan(rows: list[dict]) -> None:
    # the memoized weight path must give exactly what the public API gives
    for r in rows:
        p = vllm_fit.plan(LLAMA8, gpu=r["gpu"], vllm_version="0.19.0", **r["serve_flags"])
        assert p.fits == r["fits"]
        assert p.kv_cache_bytes == r["kv_cache_bytes"]
        assert p.num_gpu_blocks == r["num_gpu_blocks"]
        assert p.kv_cache_tokens == r["kv_cache_tokens"]


def test_kv_bytes_per_token_by_hand(rows: list[dict]) -> None:
    # Llama-3.1-8B: 32 layers x 2 (K, V) x 8 KV heads x 128 x 2 bytes = 131,072 B per token at TP=1;
    # TP=2 halves the heads per rank; fp8 halves the bytes.
    want = {(1, "auto"): 131072, (2, "auto"): 65536, (1, "fp8"): 65536, (2, "fp8"): 32768}
    for r in rows:
        assert r["kv_bytes_per_token"] == want[(r["tensor_parallel_size"], r["kv_cache_dtype"])]


def test_more_utilization_more_kv(rows: list[dict]) -> None:
    idx = {(r["gpu"], r["tensor_parallel_size"], r["gpu_memory_utilization"], r["max_model_len"], r["kv_cache_dtype"],
            r["max_num_seqs"]): r for r in rows}
    for (g, tp, u, L, kv, n), r in idx.items():
        if u < 0.9 and r["fits"]:
            hi = idx[(g, tp, round(u + 0.2, 1), L, kv, n)]
            if hi["fits"]:
                assert hi["kv_cache_bytes"] > r["kv_cache_bytes"]
                assert hi["restore_seconds"] > r["restore_seconds"]


def test_csv_and_json(rows: list[dict]) -> None:
    text = rows_to_csv(rows)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == 96
    assert {"gpu", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "kv_cache_dtype",
            "max_num_seqs", "fits", "kv_cache_gib", "restore_seconds"} <= set(parsed[0])
    assert json.loads(json.dumps(rows))[0]["serve_flags"]["max_model_len"] == 4096


def test_fast_planning_restores_the_core() -> None:
    original = planner.rank_weight_bytes
    with fast_planning():
        assert planner.rank_weight_bytes is not original
        with fast_planning():  # re-entrant
            pass
        assert planner.rank_weight_bytes is not original
    assert planner.rank_weight_bytes is original


def test_parse_list() -> None:
    assert parse_list("1,2,4", int, "x") == [1, 2, 4]
    assert parse_list("0.5:0.7:0.1", float, "x") == [0.5, 0.6, 0.7]
    # vLLM's human_readable_int: k = 1000, K = 1024
    assert parse_list("4k,8K", int, "x") == [4000, 8192]
    assert parse_list("1024:4096:1024", int, "x") == [1024, 2048, 3072, 4096]
    assert parse_list(None, int, "x") is None
    for bad in ("", "a,b", "1:2", "0.9:0.5:0.1", "1:5:0"):
        with pytest.raises(VllmFitError):
            parse_list(bad, float, "--x")


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"gpu": ["H100", "H9000"]}, "unknown GPU"),
        ({"tensor_parallel_size": [1, "x"]}, "--tensor-parallel-size"),
        ({"max_model_len": []}, "empty"),
        ({"kv_cache_dtype": ["int3"]}, "--kv-cache-dtype"),
        ({"gpu_memory_utilization": [1.5]}, "--gpu-memory-utilization"),
    ],
)
def test_bad_input(kwargs: dict, text: str) -> None:
    with pytest.raises(VllmFitError) as e:
        sweep("qwen3-0.6b", **kwargs)
    assert text in str(e.value)


@pytest.mark.parametrize("model", ["Qwen/Qwen3-30B-A3B", "openai/gpt-oss-20b", "deepseek-ai/DeepSeek-V2-Lite",
                                   "ibm-granite/granite-4.0-h-tiny", "google/gemma-3-4b-it",
                                   "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "Qwen/Qwen2.5-7B-Instruct-AWQ"])
def test_memoized_sweep_equals_plan_across_families(model: str) -> None:
    # MoE, MXFP4, MLA, hybrid Mamba, sliding window + vision, FP8 and AWQ checkpoints: the memoized
    # weight path must not change a single byte of any plan
    rows = sweep(model, gpu=["H100", "L40S"], tensor_parallel_size=[1, 2], gpu_memory_utilization=[0.6, 0.9],
                 max_model_len=[4096], vllm_version="0.19.0")
    assert len(rows) == 8
    for r in rows:
        p = vllm_fit.plan(model, gpu=r["gpu"], vllm_version="0.19.0", **r["serve_flags"])
        assert (p.fits, p.failure_kind, p.kv_cache_bytes, p.num_gpu_blocks) == (
            r["fits"], r["failure_kind"], r["kv_cache_bytes"], r["num_gpu_blocks"])
        assert abs(p.weights_bytes / 2**30 - r["weights_gib"]) < 1e-4
