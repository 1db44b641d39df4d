"""The start-up identity, KV arithmetic and vLLM's checks, with hand-derived numbers."""


import pytest

import vllm_fit
from vllm_fit.activation import sampler_bytes
from vllm_fit.units import GiB, MiB

H100 = 85_017_493_504  # measured total (shared/reference/gpu-measured.md)


def test_requested_memory_float_in_011_ceil_from_014():
    # 0.9 x 85,017,493,504 = 76,515,744,153.6: v0.11 keeps the float (int() here),
    # v0.14+ takes math.ceil -> 76,515,744,154.
    assert vllm_fit.plan("qwen3-8b", gpu="H100", vllm_version="0.11.0", max_model_len=4096).requested_bytes == 76_515_744_153
    assert vllm_fit.plan("qwen3-8b", gpu="H100", vllm_version="0.14.0", max_model_len=4096).requested_bytes == 76_515_744_154


def test_sampler_paths_bytes():
    # sort (0.11-0.16): (2 + 36) x R x V; R = 1024, V = 151,936 -> 5,912,133,632 B
    assert sampler_bytes("sort", 1024, 151_936, 2, 132) == 38 * 1024 * 151_936 == 5_912_133_632
    # triton (0.17-0.20): 14 R V + fp32 scratch [min(pow2(min(132, 1024)), 132), V] = 132 rows
    assert sampler_bytes("triton", 1024, 128_256, 2, 132) == 14 * 1024 * 128_256 + 4 * 132 * 128_256
    # R < 8 falls back to the sort path in apply_top_k_top_p
    assert sampler_bytes("triton", 4, 1000, 2, 132) == 38 * 4 * 1000
    # flashinfer (0.21+): 14 R V
    assert sampler_bytes("flashinfer", 256, 1000, 2, 132) == 14 * 256 * 1000


def test_activation_llama_019_triton_path():
    # Llama-3.1-8B, vLLM 0.19, H100 serve defaults: T = 8192, R = 1024, V = 128,256, H = 4096.
    # sampler 14RV + 528V = 1,906,397,184; hidden [T, H] bf16 = 67,108,864; 2RH x 2 = 16,777,216;
    # kept (cuBLAS workspace + small, calibrated) 0.033 GiB = 35,433,480 -> 2,025,716,744 B = 1.887 GiB
    # The 0.19 log says "torch peak memory increase: 1.89GiB".
    p = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", vllm_version="0.19.0", max_model_len=8192)
    assert p.activation_bytes == 1_906_397_184 + 67_108_864 + 16_777_216 + int(round(0.033 * GiB))
    assert round(p.activation_bytes / GiB, 2) == 1.89


def test_kv_blocks_tokens_concurrency_fixed_budget():
    # Llama-3.1-8B bf16, block 16: page = 2 x 16 x 8 heads x 128 x 2 B = 65,536 B per layer,
    # x 32 layers = 2 MiB per block. A 1 GiB budget -> 512 blocks.
    # v0.19 tokens = 512 // 1 group x 16 = 8,192; concurrency at 8192 = 512 / (8192/16) = 1.00
    p = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", vllm_version="0.19.0", max_model_len=8192,
                      kv_cache_memory_bytes=GiB)
    assert (p.num_gpu_blocks, p.kv_cache_tokens, p.max_concurrency) == (512, 8192, 1.0)
    assert p.page_size_bytes == 65_536 and p.bytes_per_block == 2 * MiB
    # max_model_len 1000 (not a multiple of 16): 63 blocks per request.
    # 0.19: tokens = 512 x 16 = 8192 still; 0.22+: int(512 / 63 x 1000) = 8126
    p19 = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", vllm_version="0.19.0", max_model_len=1000,
                        kv_cache_memory_bytes=GiB)
    p22 = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", vllm_version="0.22.0", max_model_len=1000,
                        kv_cache_memory_bytes=GiB)
    assert p19.kv_cache_tokens == 8192 and p22.kv_cache_tokens == 8126
    assert p22.max_concurrency == pytest.approx(512 / 63)


def test_fp8_kv_halves_the_page():
    # fp8 KV: 1 byte per element -> 1 MiB per block for Llama-3.1-8B; 1 GiB -> 1024 blocks.
    p = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", vllm_version="0.19.0", max_model_len=8192,
                      kv_cache_memory_bytes=GiB, kv_cache_dtype="fp8")
    assert p.num_gpu_blocks == 1024


def test_kv_heads_per_rank_under_tp():
    # Qwen3-32B: 8 KV heads, TP=2 -> 4 per rank; block 128: page = 2x128x4x128x2 = 262,144 B,
    # x 64 layers = 16 MiB per block. 1 GiB -> 64 blocks.
    p = vllm_fit.plan("qwen3-32b", gpu="H100", vllm_version="0.11.0", max_model_len=16000, block_size=128,
                      tensor_parallel_size=2, kv_cache_memory_bytes=GiB)
    assert p.num_gpu_blocks == 64 and p.page_size_bytes == 262_144


def test_seed_identity_qwen3_06b():
    # Seed 000/001, vLLM 0.11, H100 79.18 GiB, util 0.9, max_model_len 16000, block 128:
    # weights 1.12 + activation 5.56 + non-torch 0.13 -> KV 64.45 GiB measured.
    p = vllm_fit.plan("qwen3-0.6b", gpu="H100", vllm_version="0.11.0", max_model_len=16000, block_size=128)
    assert abs(p.kv_cache_bytes / GiB - 64.45) <= 0.10
    # identity: requested - weights - activation - non-torch
    assert p.kv_cache_bytes == p.requested_bytes - p.weights_bytes - p.activation_bytes - p.non_torch_bytes
    # page = 2 x 128 x 8 x 128 x 2 = 524,288 B x 28 layers = 14 MiB per block (reference section 11: 4714)
    assert p.bytes_per_block == 14 * MiB
    assert abs(p.num_gpu_blocks - 4714) <= 2


def test_seed_failure_no_memory_llama70b_fp8_tp1():
    # Seed 000: Llama-3.3-70B-FP8 at TP=1 loads 67.72 GiB and computes -1.44 GiB of KV.
    p = vllm_fit.plan("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", gpu="H100", vllm_version="0.11.0",
                      max_model_len=16000, block_size=128)
    assert not p.fits and p.failure_kind == "no_memory_for_cache_blocks"
    assert p.error == ("ValueError: No available memory for the cache blocks. Try increasing "
                       "`gpu_memory_utilization` when initializing the engine.")
    assert abs(p.kv_cache_bytes / GiB - (-1.44)) <= 0.10
    assert abs(p.weights_bytes / GiB - 67.72) <= 0.05


def test_seed_failure_max_len_qwen3_32b():
    # Seed 001: Qwen3-32B TP=1 at 32000 fails. KV per token = 64 layers x 2 x 8 x 128 x 2 B = 256 KiB;
    # one request = cdiv(32000, 128) = 250 blocks x 32 MiB = 7.8125 GiB -> "7.81 GiB".
    # Available ~4.45 GiB -> largest length = 128 x floor(avail / 32 MiB) = 128 x 142 = 18,176.
    p = vllm_fit.plan("qwen3-32b", gpu="H100", vllm_version="0.11.0", max_model_len=32000, block_size=128)
    assert p.failure_kind == "max_model_len_does_not_fit"
    assert p.estimated_max_model_len == 18_176
    assert p.error.startswith("ValueError: To serve at least one request with the models's max seq len (32000), "
                              "(7.81 GiB KV cache is needed, which is larger than the available KV cache memory (4.46 GiB).")
    assert "the estimated maximum model length is 18176." in p.error
    # 0.22+ fixed the typo and adds the CPU-backend note
    p33 = vllm_fit.plan("qwen3-32b", gpu="H100", vllm_version="0.33.0", max_model_len=32000, block_size=128)
    assert "the model's max seq len" in (p33.error or "")


def test_tp5_rejected_like_the_019_log():
    # 0.19 log qwen-qwen3-14b tp5: "AssertionError: 151936 is not divisible by 5"
    p = vllm_fit.plan("Qwen/Qwen3-14B", gpu="H100", vllm_version="0.19.0", max_model_len=8192,
                      gpu_memory_utilization=0.95, tensor_parallel_size=5)
    assert not p.fits and p.failure_kind == "invalid_parallel_config"
    assert p.error == "AssertionError: 151936 is not divisible by 5"


def test_attention_heads_must_divide_tp():
    p = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", max_model_len=8192, tensor_parallel_size=3)
    assert p.error == ("ValueError: Total number of attention heads (32) must be divisible by tensor parallel size (3).")


def test_free_memory_below_budget():
    # util 1.0 on an H100 needs 79.18 GiB free; 0.19 calibration leaves 79.18 - 0.51 = 78.67 free.
    p = vllm_fit.plan("qwen3-0.6b", gpu="H100", vllm_version="0.19.0", gpu_memory_utilization=1.0, max_model_len=4096)
    assert p.failure_kind == "free_memory_below_budget"
    assert p.error == ("ValueError: Free memory on device cuda:0 (78.67/79.18 GiB) on startup is less than desired "
                       "GPU memory utilization (1.0, 79.18 GiB). Decrease GPU memory utilization or reduce GPU memory "
                       "used by other processes.")


def test_weights_that_do_not_fit_fail_at_load():
    # Llama-3.1-70B bf16 (141 GB of weights) on one H100: CUDA OOM while loading.
    p = vllm_fit.plan("meta-llama/Llama-3.1-70B-Instruct", gpu="H100", max_model_len=8192)
    assert p.failure_kind == "cuda_oom_loading" and "out of memory" in p.error


def test_recommendation_values_seed_gpt_free_identity():
    # Section 1.7: to_gpu - to_requested = free_at_start - requested, exactly.
    p = vllm_fit.plan("qwen3-0.6b", gpu="H100", vllm_version="0.11.0", max_model_len=16000, block_size=128)
    assert p.kv_cache_memory_bytes_to_gpu - p.kv_cache_memory_bytes_to_requested == p.free_at_start_bytes - p.requested_bytes


def test_cudagraph_estimate_subtracted_from_020():
    # 51 capture sizes for cap 512: estimate = 256 MiB + 50 x 6 MiB + 50 x 5 MiB = 806 MiB (calibrated per-graph).
    p19 = vllm_fit.plan("qwen3-8b", gpu="H100", vllm_version="0.19.0", max_model_len=8192)
    p20 = vllm_fit.plan("qwen3-8b", gpu="H100", vllm_version="0.20.0", max_model_len=8192)
    assert p19.cudagraph_estimate_bytes == 806 * MiB and p19.cudagraph_subtracted_bytes == 0
    assert p20.cudagraph_subtracted_bytes == 806 * MiB
    assert p19.kv_cache_bytes - p20.kv_cache_bytes == 806 * MiB
    eager = vllm_fit.plan("qwen3-8b", gpu="H100", vllm_version="0.20.0", max_model_len=8192, enforce_eager=True)
    assert eager.cudagraph_subtracted_bytes == 0


def test_scheduler_defaults_by_gpu():
    # serve defaults: >= 70 GiB and not A100 -> 8192/1024; A100-80GB and smaller -> 2048/256;
    # >= 160 GiB from 0.28 -> 16384/1024.
    s = lambda **kw: vllm_fit.plan("qwen3-0.6b", max_model_len=4096, **kw).settings  # noqa: E731
    assert (s(gpu="H100")["max_num_batched_tokens"], s(gpu="H100")["max_num_seqs"]) == (8192, 1024)
    assert (s(gpu="A100-80GB")["max_num_batched_tokens"], s(gpu="A100-80GB")["max_num_seqs"]) == (2048, 256)
    assert s(gpu="B200", vllm_version="0.28.0")["max_num_batched_tokens"] == 16384
    assert s(gpu="B200", vllm_version="0.27.0")["max_num_batched_tokens"] == 8192
    # 0.12+: mbt capped at max_num_seqs x max_model_len (here 4 x 512 = 2048)
    assert vllm_fit.plan("qwen3-0.6b", gpu="H100", max_model_len=512, max_num_seqs=4).settings["max_num_batched_tokens"] == 2048


def test_auto_fit_max_model_len():
    # --max-model-len -1 (0.14+): the largest length whose KV fits. With a 1 GiB KV budget and
    # 2 MiB per 16-token block (Llama-3.1-8B), 512 blocks -> 8192 tokens.
    p = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", vllm_version="0.19.0", max_model_len=-1,
                      kv_cache_memory_bytes=GiB)
    assert p.fits and p.settings["max_model_len"] == 8192
