"""advise: every recommendation is re-planned through the public API
(vllm_fit.plan, not advise's own Planner): the recommended setting starts /
serves the target, and the next step beyond it does not."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import vllm_fit
from vllm_fit.advise import advise, kv_offloading, load_prices, quantized_siblings, render_advice, restore_estimate
from vllm_fit.errors import VllmFitError
from vllm_fit.units import GiB

LLAMA70_FP8 = "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic"
QWEN7 = "Qwen/Qwen2.5-7B-Instruct"
QWEN7_AWQ = "Qwen/Qwen2.5-7B-Instruct-AWQ"


def replan(model: str, gpu: str, version: str, flags: dict) -> vllm_fit.Plan:
    return vllm_fit.plan(model, gpu=gpu, vllm_version=version, **flags)


def serves(p: vllm_fit.Plan, n: int) -> bool:
    return p.fits and p.max_concurrency >= n


@pytest.fixture(scope="module")
def llama70() -> dict:
    # seeds 000/001: H100 (79.18 GiB), vLLM 0.11.0, --max-model-len 16000, utilization 0.9
    return advise(LLAMA70_FP8, gpu="H100", vllm_version="0.11.0", max_model_len=16000, concurrency=8,
                  prices={"H100": 3.0, "A100-80GB": 1.8, "H200": 4.0, "L40S": 1.0})


def test_llama70_fp8_needs_tp2_and_its_kv(llama70: dict) -> None:
    # Seed 000: TP=1 fails ("No available memory for the cache blocks", -1.44 GiB),
    # TP=2 starts with 32.0 GiB of KV cache per GPU.
    pick = llama70["parallelism"]["smallest_that_starts"]
    assert pick["serve_flags"]["tensor_parallel_size"] == 2
    assert "pipeline_parallel_size" not in pick["serve_flags"]
    assert pick["num_gpus"] == 2 and pick["nodes"] == 1
    assert abs(pick["plan"]["kv_cache_gib"] - 32.0) < 0.1
    # KV per token per rank: 80 layers x 2 (K, V) x 4 KV heads (8 / TP 2) x 128 x 2 bytes = 163,840 B;
    # 32.0 +- 0.1 GiB / 160 KiB = 209,060 .. 210,370 tokens (whole 16-token blocks).
    assert pick["plan"]["kv_bytes_per_token"] == 163840
    assert 209_060 <= pick["plan"]["kv_cache_tokens"] <= 210_370
    assert pick["plan"]["kv_cache_tokens"] % 16 == 0
    tp1 = llama70["parallelism"]["candidates"][0]
    assert (tp1["tensor_parallel_size"], tp1["pipeline_parallel_size"]) == (1, 1)
    assert tp1["failure_kind"] == "no_memory_for_cache_blocks"
    # re-planned through the public API
    assert replan(LLAMA70_FP8, "H100", "0.11.0", {"max_model_len": 16000, "tensor_parallel_size": 2}).fits
    assert not replan(LLAMA70_FP8, "H100", "0.11.0", {"max_model_len": 16000}).fits
    assert llama70["recommended"]["serve_flags"]["tensor_parallel_size"] == 2


def test_parallel_proof_lists_every_smaller_layout_failing(llama70: dict) -> None:
    pick = llama70["parallelism"]["smallest_meeting_target"]
    n = pick["num_gpus"]
    assert pick["proof"]["recommended"]["meets_target"]
    fewer = pick["proof"]["fewer_gpus"]
    assert fewer and all(not f["meets_target"] for f in fewer)
    for f in fewer:
        p = replan(LLAMA70_FP8, "H100", "0.11.0", f["serve_flags"])
        assert not serves(p, 8)
        assert p.num_gpus < n


def test_max_model_len_largest_and_for_concurrency(llama70: dict) -> None:
    m = llama70["max_model_len"]
    L = m["largest_that_starts"]["serve_flags"]["max_model_len"]
    flags = m["largest_that_starts"]["serve_flags"]
    assert replan(LLAMA70_FP8, "H100", "0.11.0", flags).fits
    assert not replan(LLAMA70_FP8, "H100", "0.11.0", {**flags, "max_model_len": L + 1}).fits
    c = m["for_concurrency"]
    L8 = c["serve_flags"]["max_model_len"]
    assert serves(replan(LLAMA70_FP8, "H100", "0.11.0", c["serve_flags"]), 8)
    assert not serves(replan(LLAMA70_FP8, "H100", "0.11.0", {**c["serve_flags"], "max_model_len": L8 + 1}), 8)
    # 8 requests share ~209,700 tokens at TP=2: about 26,200 tokens each
    assert 25_000 < L8 < 27_000


def test_utilization_and_kv_cache_memory_bytes(llama70: dict) -> None:
    u = llama70["gpu_memory_utilization"]["smallest_serving_target"]
    flags = u["serve_flags"]
    h = flags["gpu_memory_utilization"]
    assert serves(replan(LLAMA70_FP8, "H100", "0.11.0", flags), 8)
    assert not serves(replan(LLAMA70_FP8, "H100", "0.11.0", {**flags, "gpu_memory_utilization": round(h - 0.01, 2)}), 8)
    # 8 x 16000 tokens = 8 x 1000 blocks of 16 x 2,621,440 B (16 x 163,840) = 20,971,520,000 B = 19.53 GiB
    # of KV; weights 33.9 + activation ~4.8 + non-torch ~0.6 GiB on top: about 59 GiB of 79.18 -> ~0.75
    assert 0.70 <= h <= 0.80
    k = llama70["gpu_memory_utilization"]["kv_cache_memory_bytes"]
    least = k["least_serving_target"]["serve_flags"]["kv_cache_memory_bytes"]
    assert least == 8 * 1000 * 16 * 163840
    assert serves(replan(LLAMA70_FP8, "H100", "0.11.0", k["least_serving_target"]["serve_flags"]), 8)
    assert not serves(replan(LLAMA70_FP8, "H100", "0.11.0", {**k["least_serving_target"]["serve_flags"],
                                                              "kv_cache_memory_bytes": least - 1}), 8)
    pinned = k["pinned"]
    assert pinned["same_num_gpu_blocks"]
    assert replan(LLAMA70_FP8, "H100", "0.11.0", pinned["serve_flags"]).num_gpu_blocks == \
        replan(LLAMA70_FP8, "H100", "0.11.0", flags).num_gpu_blocks


def test_cold_start_rows_follow_seed_004(llama70: dict) -> None:
    rows = llama70["cold_start"]["rows"]
    assert rows[0]["gpu_memory_utilization"] == 0.9 and rows[0]["concurrency_lost"] == 0
    # lower utilization: less KV, less to restore, concurrency lost grows
    for a, b in zip(rows, rows[1:]):
        assert a["gpu_memory_utilization"] > b["gpu_memory_utilization"]
        assert b["kv_cache_gib"] < a["kv_cache_gib"]
        assert b["restore_seconds"] < a["restore_seconds"]
        assert b["concurrency_lost"] > a["concurrency_lost"]
    lowest = llama70["cold_start"]["lowest_that_starts"]
    flags = {"max_model_len": 16000, "tensor_parallel_size": 2}
    assert replan(LLAMA70_FP8, "H100", "0.11.0", {**flags, "gpu_memory_utilization": lowest}).fits
    assert not replan(LLAMA70_FP8, "H100", "0.11.0", {**flags, "gpu_memory_utilization": round(lowest - 0.01, 2)}).fits


def test_cheapest_gpu_is_really_cheapest(llama70: dict) -> None:
    prices = {"H100": 3.0, "A100-80GB": 1.8, "H200": 4.0, "L40S": 1.0}
    best = llama70["cheapest"]["cheapest"]
    assert best["proof"]["recommended"]["meets_target"]
    assert all(not f["meets_target"] for f in best["proof"]["fewer_gpus"])
    by_gpu = {o["gpu"]: o for o in llama70["cheapest"]["options"]}
    # seed 000: on H100 the model needs 2 GPUs -> 2 x $3.00
    assert by_gpu["H100"]["num_gpus"] == 2 and by_gpu["H100"]["usd_per_hour"] == 6.0
    # H200 (139.8 GiB) holds the 67.7 GiB of weights and 8 x 16000 tokens (~19.5 GiB) on one GPU
    assert by_gpu["H200"]["num_gpus"] == 1
    for o in llama70["cheapest"]["options"]:
        assert o["usd_per_hour"] >= best["usd_per_hour"]
        p = replan(LLAMA70_FP8, o["gpu"], "0.11.0", o["serve_flags"])
        assert serves(p, 8)
        assert o["usd_per_hour"] == pytest.approx(prices[o["gpu"]] * p.num_gpus)


def test_kv_fp8_doubles_tokens(llama70: dict) -> None:
    f = llama70["alternatives"]["kv_cache_dtype_fp8"]
    # one byte per element instead of two; the block count rounds, so allow one block of slack per ...
    assert abs(f["kv_cache_tokens_after"] - 2 * f["kv_cache_tokens_before"]) <= 32
    assert replan(LLAMA70_FP8, "H100", "0.11.0", f["serve_flags"]).kv_cache_tokens == f["kv_cache_tokens_after"]


def test_kv_offloading_host_blocks_by_hand() -> None:
    # vLLM CPUOffloadingSpec: blocks = cpu_bytes // (page_size x layers x world_size).
    # Llama-3.3-70B at TP=2: per rank one 16-token block = 16 x 80 x 2 x 4 x 128 x 2 = 2,621,440 B,
    # x world 2 = 5,242,880 B. 62 GiB = 66,571,993,088 B -> 12,697 blocks = 203,152 tokens.
    p = replan(LLAMA70_FP8, "H100", "0.11.0", {"max_model_len": 16000, "tensor_parallel_size": 2})
    off = kv_offloading(p, 62, host_ram_gib=94)
    assert off["host_kv_blocks"] == 12697
    assert off["host_kv_tokens"] == 203152
    assert off["host_pinned_bytes"] == 12697 * 5242880
    assert off["fits_host_ram"] is True
    assert off["gpu_budget_change_bytes"] == 0
    assert off["serve_flags"]["disable_hybrid_kv_cache_manager"] is True
    assert kv_offloading(p, 62, host_ram_gib=40)["fits_host_ram"] is False


def test_restore_estimate_by_hand() -> None:
    # weights 10 GiB + 1000 blocks x 1 MiB + non-torch 0.5 GiB + graphs 0.5 GiB = 12,859,736,064 B per GPU
    # link 20 GB/s: 0.643 s; image of 2 GPUs at disk 2 GB/s: 12.860 s; total 13.50 s
    fake = SimpleNamespace(weights_bytes=10 * GiB, num_gpu_blocks=1000, bytes_per_block=1 << 20,
                           non_torch_bytes=GiB // 2, cudagraph_bytes=GiB // 2, num_gpus=2)
    r = restore_estimate(fake, link_gb_s=20, disk_gb_s=2, kv_compression=1)
    assert r["gpu_bytes_per_gpu"] == 12_859_736_064
    assert r["restore_seconds"] == 13.5
    # KV pages compressed 1000x: image = 2 x (12,859,736,064 - 1,048,576,000 + 1,048,576) = 23,624,417,280 B
    # -> 11.812 s from disk + 0.643 s upload = 12.455 s (rounded to 2 decimals)
    r = restore_estimate(fake, link_gb_s=20, disk_gb_s=2, kv_compression=1000)
    assert r["restore_seconds"] == pytest.approx(12.455, abs=0.006)


# ------------------------------------------------------------ seed 002: 12 GB card

def awq_plan(flags: dict) -> vllm_fit.Plan:
    return vllm_fit.plan(QWEN7_AWQ, gpu="RTX-5070", vllm_version="0.14.0", allow_hub=False, **flags)


def _awq_unplannable() -> str | None:
    try:
        awq_plan({"max_model_len": 16384, "gpu_memory_utilization": 0.85})
    except VllmFitError as e:
        return str(e)
    return None


def test_seed002_awq_max_num_seqs() -> None:
    why = _awq_unplannable()
    if why is not None:
        pytest.skip(f"AWQ checkpoints (quant_method 'awq') are not planned by this core yet (issue 3): {why[:160]}")
    # AWQ 4-bit weights: ~7.6e9 params, the linear layers at 4 bits + fp16 scales/zeros, embeddings and
    # lm_head in fp16 (2 x 152,064 x 3,584 x 2 B = 2.03 GiB): about 5.2 GiB, far below bf16's 14.2 GiB.
    p = awq_plan({"max_model_len": 16384, "gpu_memory_utilization": 0.85})
    assert 4.5 < p.weights_bytes / GiB < 6.0
    # Seed 002 failed with "CUDA out of memory ... 256 dummy requests" before its fix (utilization 0.85,
    # 16K, --max-num-seqs 64, all at once). At vLLM's default utilization 0.90 the plan fails the same way:
    flags = {"max_model_len": 16384, "gpu_memory_utilization": 0.9}
    assert awq_plan({**flags, "max_num_seqs": 256}).failure_kind == "cuda_oom_sampler_warmup"
    r = advise(QWEN7_AWQ, allow_hub=False, gpu="RTX-5070", vllm_version="0.14.0",
               include_cheapest=False, max_num_seqs=256, kv_cache_dtype="fp8", **flags)
    n = r["max_num_seqs"]["largest_that_starts"]["serve_flags"]["max_num_seqs"]
    # seed 002 ran with --max-num-seqs 64, so the largest that starts is at least 64 and below 256
    assert 64 <= n < 256
    assert awq_plan({**flags, "kv_cache_dtype": "fp8", "max_num_seqs": n}).fits
    assert awq_plan({**flags, "kv_cache_dtype": "fp8", "max_num_seqs": n + 1}).failure_kind == "cuda_oom_sampler_warmup"
    assert r["recommended"]["serve_flags"]["max_num_seqs"] == n and r["recommended"]["starts"]
    # seed 002's own fix (0.85, 64 sequences, fp8 KV) starts
    assert awq_plan({"max_model_len": 16384, "gpu_memory_utilization": 0.85, "max_num_seqs": 64,
                     "kv_cache_dtype": "fp8"}).fits


@pytest.mark.xfail(strict=True, reason=(
    "issue 5 reads seed 002 as '0.85 and 256 sequences fails in the sampler warm-up'; the planner says "
    "0.85/256 starts (sampler warm-up 1.40 GiB fits in the 0.15 x 11.94 GiB left plus the freed profile peak) "
    "and 0.88 fails. Seed 002 changed utilization, length and --max-num-seqs at once, so its log does not "
    "settle which; flip when the core's sampler warm-up for 0.14 on Blackwell is re-calibrated."))
def test_seed002_awq_literal_085_256_fails() -> None:
    if _awq_unplannable() is not None:
        pytest.skip("AWQ not planned by this core")
    p = awq_plan({"max_model_len": 16384, "gpu_memory_utilization": 0.85, "max_num_seqs": 256})
    assert p.failure_kind == "cuda_oom_sampler_warmup"


def test_seed002_standin_bf16_qwen7_does_not_load_on_12gb() -> None:
    # bf16 Qwen2.5-7B: 7.6e9 parameters x 2 B = 14.2 GiB > the 11.94 GiB card -> load OOM; advise
    # finds the smallest layout that starts (2 GPUs)
    r = advise(QWEN7, gpu="RTX-5070", vllm_version="0.14.0", max_model_len=16384, gpu_memory_utilization=0.85,
               include_cheapest=False)
    assert r["given"]["plan"]["failure_kind"] == "cuda_oom_loading"
    pick = r["parallelism"]["smallest_that_starts"]
    assert pick["num_gpus"] == 2
    assert replan(QWEN7, "RTX-5070", "0.14.0", pick["serve_flags"]).fits
    # ... or one GPU with a quantized checkpoint from the catalog: AWQ weights ~5.2 GiB start on the 12 GB card
    alts = {q["model"]: q for q in r["alternatives"]["quantized_checkpoint"]}
    awq = alts[QWEN7_AWQ]
    assert awq["starts"] and awq["plan"]["num_gpus"] == 1 and awq["plan"]["weights_gib"] < 6
    assert vllm_fit.plan(QWEN7_AWQ, gpu="RTX-5070", vllm_version="0.14.0", **awq["serve_flags"]).fits


def test_seed002_standin_sampler_warmup_max_num_seqs() -> None:
    # Stand-in until AWQ is planned: the same model quantized to fp8 at load (weights ~8.1 GiB instead of
    # AWQ's ~5.5), fp8 KV cache as in seed 002, utilization 0.90: at 256 sequences the sampler warm-up
    # runs out of the (1 - 0.90) x 11.94 GiB = 1.19 GiB left over (+ freed activation).
    flags = {"max_model_len": 16384, "gpu_memory_utilization": 0.9, "quantization": "fp8", "kv_cache_dtype": "fp8"}
    p256 = replan(QWEN7, "RTX-5070", "0.14.0", {**flags, "max_num_seqs": 256})
    assert p256.failure_kind == "cuda_oom_sampler_warmup"
    r = advise(QWEN7, gpu="RTX-5070", vllm_version="0.14.0", include_cheapest=False, max_num_seqs=256, **flags)
    s = r["max_num_seqs"]["largest_that_starts"]
    n = s["serve_flags"]["max_num_seqs"]
    assert 64 <= n < 256
    assert replan(QWEN7, "RTX-5070", "0.14.0", {**flags, "max_num_seqs": n}).fits
    nxt = replan(QWEN7, "RTX-5070", "0.14.0", {**flags, "max_num_seqs": n + 1})
    assert nxt.failure_kind == "cuda_oom_sampler_warmup"
    assert s["sampler_warmup_requests"] == n
    assert s["next_sampler_warmup_gib"] > s["sampler_warmup_gib"]
    # the examined configuration and the recommendation use the sequences that start, on the same single GPU
    assert r["examined"]["serve_flags"]["max_num_seqs"] == n
    assert r["recommended"]["serve_flags"]["max_num_seqs"] == n
    assert r["recommended"]["starts"] and r["recommended"]["plan"]["num_gpus"] == 1
    # offloading as seed 002 (62 GiB): fp8 KV, 28 layers x 2 x 4 KV heads x 128 x 1 B = 28,672 B per token,
    # 458,752 B per block -> 66,571,993,088 // 458,752 = 145,115 blocks = 2,321,840 tokens
    p = replan(QWEN7, "RTX-5070", "0.14.0", {**flags, "max_num_seqs": n})
    off = kv_offloading(p, 62, host_ram_gib=94)
    assert off["host_kv_tokens"] == 2_321_840


def test_goals_change_the_headline() -> None:
    common = dict(gpu="L40S", vllm_version="0.19.0", concurrency=4, max_model_len=8192, include_cheapest=False)
    cold = advise("meta-llama/Llama-3.1-8B-Instruct", goal="cold-start", **common)
    rec = cold["recommended"]
    u = rec["serve_flags"]["gpu_memory_utilization"]
    assert u < 0.9
    assert serves(replan("meta-llama/Llama-3.1-8B-Instruct", "L40S", "0.19.0", rec["serve_flags"]), 4)
    assert not serves(replan("meta-llama/Llama-3.1-8B-Instruct", "L40S", "0.19.0",
                             {**rec["serve_flags"], "gpu_memory_utilization": round(u - 0.01, 2)}), 4)
    lc = advise("meta-llama/Llama-3.1-8B-Instruct", goal="long-context", **common)["recommended"]
    L = lc["serve_flags"]["max_model_len"]
    assert L > 8192
    assert serves(replan("meta-llama/Llama-3.1-8B-Instruct", "L40S", "0.19.0", lc["serve_flags"]), 4)
    lat = advise("meta-llama/Llama-3.1-8B-Instruct", goal="latency", **common)["recommended"]
    assert lat["serve_flags"]["max_num_seqs"] == 4


def test_quantized_siblings_from_catalog() -> None:
    assert LLAMA70_FP8 in quantized_siblings("meta-llama/Llama-3.3-70B-Instruct")
    assert set(quantized_siblings("meta-llama/Llama-3.1-8B-Instruct")) == {
        "RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8-dynamic", "RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w4a16",
        "RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w8a8"}
    assert set(quantized_siblings("Qwen/Qwen2.5-7B-Instruct")) == {"Qwen/Qwen2.5-7B-Instruct-AWQ",
                                                                   "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4"}
    assert quantized_siblings("Qwen/Qwen3-8B") == []  # Qwen3-8B != Qwen3-0.6B etc.


def test_json_and_text() -> None:
    r = advise("qwen3-0.6b", gpu="L4", vllm_version="0.19.0", max_model_len=4096, include_cheapest=False)
    text = render_advice(r)
    assert "Parallelism" in text and "Cold start" in text
    d = json.loads(json.dumps(r))
    assert d["recommended"]["serve_flags"]["max_model_len"] == 4096
    assert "tensor_parallel_size" in d["given"]["plan"]["settings"]


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"goal": "fast"}, "--goal"),
        ({"concurrency": 0}, "--concurrency"),
        ({"context": -5}, "--context"),
        ({"link_gb_s": 0}, "--link-gb-s"),
        ({"max_num_seqs": "many"}, "--max-num-seqs"),
        ({"tensor_parallel_sizes": 2}, "unknown option"),
        ({"gpu": "H1000"}, "unknown GPU"),
        ({"context": 10**9}, "longer than the model"),
        ({"prices": {"NoSuchGPU": 1.0}}, "unknown GPU"),
    ],
)
def test_bad_input_is_one_clear_error(kwargs: dict, text: str) -> None:
    with pytest.raises(VllmFitError) as e:
        advise("qwen3-0.6b", **{"gpu": "L4", **kwargs})
    assert text in str(e.value)


def test_prices_file(tmp_path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"H100": 2.0, "l4": 0.5}))
    assert load_prices(f) == {"H100": 2.0, "L4": 0.5}
    f.write_text("{not json")
    with pytest.raises(VllmFitError, match="not JSON"):
        load_prices(f)
    f.write_text(json.dumps({"H100": -1}))
    with pytest.raises(VllmFitError, match="positive"):
        load_prices(f)
    with pytest.raises(VllmFitError, match="cannot read"):
        load_prices(tmp_path / "missing.json")
    assert load_prices()["H100"] > 0


def test_max_num_seqs_one_more_sequence_fails(llama70: dict) -> None:
    s = llama70["max_num_seqs"]["largest_that_starts"]
    n = s["serve_flags"]["max_num_seqs"]
    # the search widened past vLLM's default (1024 on an 80 GB GPU in 0.11) until a plan failed
    assert llama70["max_num_seqs"]["current"] == 1024 and n > 1024
    assert replan(LLAMA70_FP8, "H100", "0.11.0", s["serve_flags"]).fits
    assert not replan(LLAMA70_FP8, "H100", "0.11.0", {**s["serve_flags"], "max_num_seqs": n + 1}).fits
    assert s["proof"]["next_step"]["starts"] is False


def test_offloading_flag_is_version_gated(llama70: dict) -> None:
    # --kv-offloading-size appeared in vLLM 0.12 (vllm/config/cache.py); the fixture plans 0.11.0
    off = llama70["alternatives"]["kv_offloading"]
    assert off["available"] is False and "0.12" in off["note"]


def test_auto_fit_equals_the_largest_length_that_starts() -> None:
    # Llama-3.1-8B on an L4 (22.17 GiB): bf16 weights 14.99 GiB leave ~4.2 GiB of KV at 0.9 -> at
    # 131,072 B per token about 34,400 tokens, far below the model's 131,072; vLLM's
    # --max-model-len -1 must land on the same length the binary search finds.
    r = advise("meta-llama/Llama-3.1-8B-Instruct", gpu="L4", vllm_version="0.19.0", include_cheapest=False)
    m = r["max_model_len"]
    L = m["largest_that_starts"]["serve_flags"]["max_model_len"]
    assert 33_000 < L < 35_500
    assert m["auto_fit"]["max_model_len"] == L
    assert vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="L4", vllm_version="0.19.0", max_model_len=L).fits
    assert not vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="L4", vllm_version="0.19.0", max_model_len=L + 1).fits


def test_long_context_headline_next_token_fails() -> None:
    r = advise("meta-llama/Llama-3.1-8B-Instruct", gpu="L40S", vllm_version="0.19.0", concurrency=4,
               goal="long-context", include_cheapest=False)
    rec = r["recommended"]["serve_flags"]
    L = rec["max_model_len"]
    assert serves(replan("meta-llama/Llama-3.1-8B-Instruct", "L40S", "0.19.0", rec), 4)
    assert not serves(replan("meta-llama/Llama-3.1-8B-Instruct", "L40S", "0.19.0", {**rec, "max_model_len": L + 1}), 4)


def test_hopeless_and_unreachable_targets_say_so() -> None:
    # Kimi-K2 (~1 T parameters, ~1 TB of fp8 weights) cannot load on up to 16 T4s of 14.75 GiB (236 GiB)
    r = advise("moonshotai/Kimi-K2-Instruct", gpu="T4", max_gpus=16, include_cheapest=False)
    assert r["parallelism"]["smallest_that_starts"] is None
    assert r["recommended"]["starts"] is False
    assert "No recommendation" in render_advice(r)
    # 100,000 concurrent full-length requests do not fit anywhere; the headline says it misses the target
    r = advise("qwen3-0.6b", gpu="T4", concurrency=100_000, include_cheapest=False)
    assert r["recommended"]["starts"] and not r["recommended"]["meets_target"]
    assert "does NOT serve" in r["recommended"]["why"]
    # default offloading size capped at 256 GiB without --host-ram-gib
    assert r["alternatives"]["kv_offloading"]["serve_flags"]["kv_offloading_size"] == 256.0
