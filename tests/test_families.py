"""Weights of each architecture family, from published configs, derived by hand.

Every expected number is worked out in the comment above it from the model's
config.json (bundled catalog copies of ../shared/model-configs) or compared
with a published parameter count (the hub's safetensors metadata recorded in
the same folder).  GiB = 2**30 bytes.
"""

from __future__ import annotations

from collections import Counter

import pytest

import vllm_fit
from vllm_fit.activation import encoder_profile
from vllm_fit.errors import ConfigError
from vllm_fit.model_spec import spec_from_config
from vllm_fit.sources import resolve_model
from vllm_fit.versions import rules_for
from vllm_fit.weights import Layout, inventory_from_config, local_experts, rank_weight_bytes


def spec_of(model: str):
    return resolve_model(model, allow_hub=False).spec


def params(spec) -> Counter:
    c: Counter = Counter()
    for t in inventory_from_config(spec):
        c[t.dtype] += t.numel
    return c


def weights(spec, tp=1, pp=1, pp_rank=0, ep=1, dtype=None, start=None, end=None):
    lay = Layout(tp=tp, pp=pp, pp_rank=pp_rank, start_layer=0 if start is None else start,
                 end_layer=spec.num_layers if end is None else end, ep_size=ep)
    return rank_weight_bytes(spec, inventory_from_config(spec), lay, dtype or spec.dtype)


# ------------------------------------------------------------------ MoE

def test_mixtral_8x7b_weights_tp1_tp2():
    # config: hidden 4096, 32 layers, 32 heads / 8 KV heads (head 128), 8 experts of 14336, vocab 32000.
    # per layer: q 4096*4096 + k,v 2*1024*4096 + o 4096*4096 = 41,943,040; experts 8*3*14336*4096
    # = 1,409,286,144; router 8*4096 = 32,768; 2 norms 8,192 -> 1,451,270,144; x32 = 46,440,644,608
    # + embed and head 2*32000*4096 = 262,144,000 + final norm 4,096 = 46,702,792,704 (the hub count).
    s = spec_of("mistralai/Mixtral-8x7B-v0.1")
    assert params(s) == {"BF16": 46_702_792_704}
    # TP1 bytes: 2 B each = 93,405,585,408 + RoPE cache 32768 * 128 * 2 = 8,388,608.
    assert weights(s) == 93_413_974_016
    # TP2: attention 20,971,520 + experts 704,643,072 + router 32,768 + norms 8,192 = 725,655,552 per layer,
    # x32 = 23,220,977,664; embed + head 131,072,000; final norm 4,096 -> 23,352,053,760 params
    # = 46,704,107,520 B + 8,388,608 RoPE.
    assert weights(s, tp=2) == 46_712_496_128


def test_qwen3_30b_a3b_params_and_expert_parallel():
    # hidden 2048, 48 layers, 32 heads / 4 KV (head_dim 128), 128 experts of 768, vocab 151936 untied.
    # per layer: q 4096*2048 = 8,388,608; k,v 2*512*2048 = 2,097,152; o 8,388,608; q/k norm 256;
    # experts 128*3*768*2048 = 603,979,776; router 128*2048 = 262,144; norms 4,096 -> 623,120,640;
    # x48 = 29,909,790,720 + embed/head 2*151936*2048 = 622,329,856 + 2,048 = 30,532,122,624 (hub total).
    s = spec_of("Qwen/Qwen3-30B-A3B")
    assert sum(params(s).values()) == 30_532_122_624
    # EP over DP=3 ranks (tp=1): rank 0 holds ceil-split 43 of 128 experts (determine_expert_map:
    # 128 = 3*42 + 2, the first 2 ranks get 43).  Per layer: 43*3*768*2048 = 202,899,456 experts
    # + attention 18,874,368 + q/k norms 256 + router 262,144 + norms 4,096 = 222,040,320;
    # x48 = 10,657,935,360 + 622,329,856 + 2,048 = 11,280,267,264 params = 22,560,534,528 B
    # + RoPE 40960 * 128 * 2 = 10,485,760.
    assert local_experts(128, 3, 0) == (0, 43) and local_experts(128, 3, 2) == (86, 42)
    assert weights(s, ep=3) == 22_571_020_288


def test_qwen3_30b_a3b_ep_plan_matches_tp_for_even_split():
    # TP2 without EP halves each expert's 768 intermediate; EP2 gives each rank 64 whole experts:
    # the same 128*3*768*2048/2 bytes of experts either way, so the per-GPU weights agree.
    a = vllm_fit.plan("Qwen/Qwen3-30B-A3B", gpu="H100", vllm_version="0.19.0", tensor_parallel_size=2, max_model_len=8192)
    b = vllm_fit.plan("Qwen/Qwen3-30B-A3B", gpu="H100", vllm_version="0.19.0", tensor_parallel_size=2,
                      max_model_len=8192, enable_expert_parallel=True)
    assert a.weights_bytes == b.weights_bytes


def test_deepseek_v3_per_rank_bytes_at_tp8():
    # FP8 128x128 blocks (1 B weights, fp32 scale_inv per block), bf16 norms/router/embeddings, TP8:
    # attention per layer (16 heads/rank): q_a [1536,7168] replicated 11,010,048 + scale 12*56*4 = 2,688;
    # q_a_norm 3,072; q_b [24576,1536]/8 = 4,718,592 + scale 192*12*4/8 = 1,152; kv_a [576,7168]
    # replicated 4,128,768 + scale 5*56*4 = 1,120; kv_a_norm 1,024; kv_b [32768,512]/8 = 2,097,152
    # + 512; o [7168,16384]/8 = 14,680,064 + 3,584; dequantized kv_b copy 512*16*256*2 = 4,194,304;
    # norms 28,672 -> 40,870,752 B per layer (61 layers).
    # dense FFN (layers 0-2): gate,up [18432,7168]/8 2*16,515,072 + scales 2*4,032; down 16,515,072
    # + 4,032 -> 49,557,312 B.  MoE FFN (58 layers): router bf16 3,670,016 + fp32 bias 1,024;
    # w13 256*4096*7168/8 = 939,524,096 + scales 256*32*56*4/8 = 229,376; w2 469,762,048 + 114,688;
    # shared expert 3*1,835,008 + scales 3*448 -> 1,418,807,616 B.
    # embed + head: 129280 rows (a multiple of 64) / 8 * 7168 * 2 = 2 * 231,669,760; final norm 14,336;
    # YaRN RoPE cache 4096*40 rows * 64 * 2 = 20,971,520.
    # total = 61*40,870,752 + 3*49,557,312 + 58*1,418,807,616 + 463,339,520 + 14,336 + 20,971,520.
    s = spec_of("deepseek-ai/DeepSeek-V3")
    expected = 61 * 40_870_752 + 3 * 49_557_312 + 58 * 1_418_807_616 + 463_339_520 + 14_336 + 20_971_520
    assert expected == 85_416_954_912
    assert weights(s, tp=8) == expected  # 79.55 GiB: more than an 80 GB H100 has free


def test_deepseek_r1_inventory_is_the_hub_count_minus_the_mtp_layer():
    # Hub: BF16 3,918,786,560 / F8_E4M3 680,571,043,840 / F32 41,555,600, including layer 61 (MTP),
    # which vLLM's DeepseekV3ForCausalLM does not build.  MTP layer: fp8 attention (q_a 11,010,048
    # + q_b 37,748,736 + kv_a 4,128,768 + kv_b 16,777,216 + o 117,440,512 = 187,105,280) + experts
    # 256*3*2048*7168 = 11,274,289,152 + shared 3*2048*7168 = 44,040,192 -> 11,505,434,624 F8;
    # bf16: its own embed and head 2*129280*7168 = 1,853,358,080 + eh_proj 7168*14336 = 102,760,448
    # + router 256*7168 = 1,835,008 + norms (4*7168 + 7168 + 1536 + 512) = 37,888 -> 1,957,991,424.
    s = spec_of("deepseek-ai/DeepSeek-R1")
    c = params(s)
    assert c["F8_E4M3"] == 680_571_043_840 - 11_505_434_624
    assert c["BF16"] == 3_918_786_560 - 1_957_991_424
    assert s.num_mtp_layers == 1 and s.num_layers == 61


def test_glm_45_air_and_qwen3_next_exclude_their_mtp_layers():
    # GLM-4.5-Air hub total 110,468,824,832 includes one MTP layer: MoE 128*3*1408*4096 = 2,214,592,512
    # + shared 3*1408*4096 = 17,301,504 + router 524,288 + attention (96 heads of 128, 8 KV, qkv bias)
    # 50,331,648 + 12,288 + 2*(4,194,304 + 1,024) + 50,331,648 = 109,065,216 + own embed and head
    # 2*151552*4096 = 1,241,513,984 + eh_proj 4096*8192 = 33,554,432 + 5 norms 20,480 + bias 128
    # = 3,616,572,544; vllm-fit's served inventory is within 1,024 parameters of hub - MTP.
    glm = sum(params(spec_of("zai-org/GLM-4.5-Air")).values())
    assert abs(glm - (110_468_824_832 - 3_616_572_544)) <= 1_024
    # Qwen3-Next-80B-A3B hub 81,324,862,720 includes its MTP block: 512 experts 512*3*512*2048
    # = 1,610,612,736 + shared 3,145,728 + router 1,048,576 + shared gate 2,048 + gated attention
    # (q+gate 16,777,216, k/v 2,097,152, o 8,388,608, q/k norm 512) + fc 2048*4096 = 8,388,608
    # + 5 norms 10,240 = 1,650,471,424.
    nxt = sum(params(spec_of("Qwen/Qwen3-Next-80B-A3B-Instruct")).values())
    assert nxt == 81_324_862_720 - 1_650_471_424


def test_gpt_oss_20b_mxfp4_bytes():
    # embed + head 2*201088*2880*2 = 2,316,533,760.  Per layer: attention q 4096*2880, k/v 512*2880
    # each, biases 5,120, o 2880*4096 + 2,880, sinks 64 -> 26,550,144 params = 53,100,288 B; norms
    # 11,520 B; router (32*2880 + 32)*2 = 184,384 B.  MXFP4 experts (Triton backend, H100):
    # w13 32*5760*1440 = 265,420,800 + w2 32*2880*1440 = 132,710,400; loaded scales 32*5760*90
    # + 32*2880*90 = 24,883,200; swizzled scales padded to 256 rows 32*5888*90 + 32*3072*90
    # = 25,804,800; fp32 biases 32*(5760+2880)*4 = 1,105,920 -> 449,925,120 B.
    # 24 * (53,296,192 + 449,925,120) = 12,077,311,488; + final norm 5,760 + YaRN cache
    # 4096*32 rows * 64 * 2 = 16,777,216 -> 14,410,628,224 B = 13.42 GiB (seed log: 13.47).
    s = spec_of("openai/gpt-oss-20b")
    assert weights(s) == 14_410_628_224
    # Hub parameters: BF16 1,804,459,584 (all non-expert tensors, exactly ours); the U8 count
    # 19,707,494,400 = 19,110,297,600 FP4 values + 597,196,800 scales, i.e. 10,152,345,600 bytes.
    c = params(s)
    assert c["BF16"] == 1_804_459_584 and c["U8"] == 19_110_297_600 // 2 + 597_196_800


# ------------------------------------------------------------------ weight formats

def test_awq_and_gptq_qwen25_7b():
    # Qwen2.5-7B: hidden 3584, 28 layers, 28 heads / 4 KV (128), I 18944, vocab 152064, fp16.
    # Per layer sum of K*N over q,k,v,o,gate,up,down = 233,046,016.  AWQ (g=128): qweight K*N/2
    # + qzeros K*N/256 + fp16 scales K*N/64 = 233,046,016 * 133/256 = 121,074,688; + qkv biases
    # 9,216 + norms 14,336 = 121,098,240; x28 = 3,390,750,720.  embed + head 2*152064*3584*2
    # = 2,179,989,504; final norm 7,168; RoPE 32768*128*2 = 8,388,608 -> 5,579,136,000.
    awq = spec_of("Qwen/Qwen2.5-7B-Instruct-AWQ")
    assert awq.quantization.method == "awq"
    assert weights(awq) == 5_579_136_000
    # GPTQ adds g_idx [K] int32 per linear: (6*3584 + 18944)*4 = 161,792 B per layer, x28 = 4,530,176.
    gptq = spec_of("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4")
    assert weights(gptq) == 5_579_136_000 + 4_530_176
    p = vllm_fit.plan("Qwen/Qwen2.5-7B-Instruct-AWQ", gpu="H100", vllm_version="0.19.0", max_model_len=8192)
    assert p.settings["quantization"] == "awq_marlin"


TINY = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 128,
    "torch_dtype": "bfloat16",
}
# Per layer K*N: q 256*256 = 65,536, k,v 2*128*256 = 65,536, o 65,536, gate,up,down 3*512*256 = 393,216
# -> 589,824 weights per layer, 1,179,648 for 2 layers.  16-bit rest: embed + head 2*1024*256*2
# = 1,048,576; norms (2 per layer + final) 5*256*2 = 2,560; RoPE 128*64*2 = 16,384 -> 1,067,520 B.
TINY_REST = 1_048_576 + 2_560 + 16_384
TINY_LINEAR = 1_179_648


@pytest.mark.parametrize("qcfg, linear_bytes", [
    # bitsandbytes NF4 (no double quant): 0.5 B/weight + fp32 absmax per 64 = 1,179,648 * (1/2 + 4/64)
    ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_use_double_quant": False},
     TINY_LINEAR // 2 + TINY_LINEAR // 16),
    # compressed-tensors w4a16 (group 128): int32-packed 0.5 B/weight + bf16 scale per 128 (K*N/64 B)
    # + weight_shape int64[2] per linear (7 linears * 2 layers * 16 B = 224)
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {
        "num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": True}}}},
     TINY_LINEAR // 2 + TINY_LINEAR // 64 + 224),
    # NVFP4: 0.5 B/weight + FP8 scale per 16 + two fp32 global scales per linear (14 * 8 = 112)
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {
        "num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16}}}},
     TINY_LINEAR // 2 + TINY_LINEAR // 16 + 112),
    # int8 w8a8: 1 B/weight + fp32 scale per output channel: out rows per layer 256+128+128+256+512+512+256
    # = 2,048, 2 layers -> 4,096 * 4 = 16,384
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {
        "weights": {"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": True},
        "input_activations": {"num_bits": 8, "type": "int", "strategy": "token", "dynamic": True}}}},
     TINY_LINEAR + 16_384),
])
def test_weight_formats_on_a_tiny_llama(qcfg, linear_bytes):
    s = spec_from_config({**TINY, "quantization_config": qcfg}, "tiny")
    assert weights(s) == TINY_REST + linear_bytes


def test_unknown_quant_method_and_architecture_are_refused_by_name():
    with pytest.raises(ConfigError, match="hqq"):
        spec_from_config({**TINY, "quantization_config": {"quant_method": "hqq"}}, "tiny")
    with pytest.raises(ConfigError) as e:
        spec_from_config({**TINY, "architectures": ["FancyNewForCausalLM"]}, "tiny")
    assert "FancyNewForCausalLM" in str(e.value) and "dense" in str(e.value)


def test_qwen2_moe_shared_expert_gate():
    # Qwen2-MoE-like: 2 layers, hidden 64, 4 experts of 32, shared expert 96 with a [1, 64] gate.
    cfg = {"architectures": ["Qwen2MoeForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
           "moe_intermediate_size": 32, "shared_expert_intermediate_size": 96, "num_experts": 4,
           "num_experts_per_tok": 2, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": 128, "max_position_embeddings": 64, "torch_dtype": "bfloat16"}
    s = spec_from_config(cfg, "qmoe")
    # per layer: q 64*64 + bias 64 = 4,160, k,v (2 heads of 16) 2*(32*64 + 32) = 4,160, o 64*64 = 4,096
    # -> 12,416; experts 4*3*32*64 = 24,576; router 4*64 = 256; shared 3*96*64 = 18,432; shared gate 64;
    # norms 128 -> 55,872; x2 = 111,744 + embed/head 2*128*64 = 16,384 + final norm 64 = 128,192.
    assert sum(params(s).values()) == 128_192


# ------------------------------------------------------------------ multimodal

def test_qwen25_vl_7b_vision_tower():
    # vision: patch_embed 1280*3*2*14*14 = 1,505,280; 32 blocks of qkv 3840*1280 + 3840, proj
    # 1280*1280 + 1280, gate/up 2*(3420*1280 + 3420), down 1280*3420 + 1280, 2 norms 2,560
    # = 19,702,200 -> 630,470,400; merger ln_q 1,280 + mlp.0 5120*5120 + 5120 + mlp.2 3584*5120 + 3584
    # = 44,574,464.  Tower total 676,550,144 (the published vision count), LM 7,615,616,512.
    s = spec_of("Qwen/Qwen2.5-VL-7B-Instruct")
    vision = sum(t.numel for t in inventory_from_config(s) if t.name.startswith("visual."))
    assert vision == 676_550_144
    assert sum(params(s).values()) == 8_292_166_656


def test_mistral_small_and_gemma3_and_llama4_totals():
    # Published totals: Mistral-Small-3.1/3.2 24,011,361,280; gemma-3-4b-it 4,300,079,472;
    # gemma-3-27b-it 27,432,406,640; Llama-4-Scout 108,641,793,536 (text + vision + projector).
    for model, total in (("mistralai/Mistral-Small-3.1-24B-Instruct-2503", 24_011_361_280),
                         ("mistralai/Mistral-Small-3.2-24B-Instruct-2506", 24_011_361_280),
                         ("google/gemma-3-4b-it", 4_300_079_472),
                         ("google/gemma-3-27b-it", 27_432_406_640),
                         ("meta-llama/Llama-4-Scout-17B-16E-Instruct", 108_641_793_536)):
        assert sum(params(spec_of(model)).values()) == total, model


def test_mistral3_encoder_budget_and_mm_flags():
    # Pixtral in Mistral-3: 1540 px / 14 px patches = 110 per side, merged 2x2 -> 55 per side:
    # 3025 tokens per image.  budget = max(8192, 3025) = 8192; items = min(8192 // 3025 = 2,
    # 1024 seqs * min(999, 8192 // 3025)) = 2.  v0.11 expands each output to [8192, 5120] bf16:
    # 2 * 8192 * 5120 * 2 = 167,772,160 B of encoder cache; v0.19 keeps 2 * 3025 * 5120 * 2 = 61,952,000.
    s = spec_of("mistralai/Mistral-Small-3.1-24B-Instruct-2503")
    kw = dict(max_num_batched_tokens=8192, max_num_seqs=1024, max_model_len=8192, dtype_bytes=2)
    e11 = encoder_profile(s, rules_for("0.11.0"), **kw)
    e19 = encoder_profile(s, rules_for("0.19.0"), **kw)
    assert (e11.budget_tokens, e11.items, e11.cache_bytes) == (8192, 2, 167_772_160)
    assert e19.cache_bytes == 61_952_000
    assert encoder_profile(s, rules_for("0.19.0"), **kw, limit_per_prompt=0) is None
    assert encoder_profile(s, rules_for("0.19.0"), **kw, skip=True) is None
    base = vllm_fit.plan("mistralai/Mistral-Small-3.1-24B-Instruct-2503", gpu="H100", vllm_version="0.19.0", max_model_len=8192)
    off = vllm_fit.plan("mistralai/Mistral-Small-3.1-24B-Instruct-2503", gpu="H100", vllm_version="0.19.0",
                        max_model_len=8192, skip_mm_profiling=True)
    # the cache (61,952,000 B) is alive during the sampler run, the dominant phase here
    assert base.activation_bytes - off.activation_bytes == 61_952_000
    cmd = vllm_fit.plan_command("vllm serve mistralai/Mistral-Small-3.1-24B-Instruct-2503 --max-model-len 8192 "
                                "--limit-mm-per-prompt '{\"image\": 0}'", vllm_version="0.19.0")
    assert cmd.activation_bytes == off.activation_bytes


# ------------------------------------------------------------------ parallelism

def test_pp_uneven_split_of_an_moe_model():
    # Qwen3-30B-A3B, 48 layers over PP=5: get_pp_indices gives 9 each and one more to partitions
    # [-2], [-3], [-4] for the remainder 3: 9, 10, 10, 10, 9.  A layer is 623,120,640 params (see
    # above), so stage 0 = (9*623,120,640 + embedding 151936*2048 = 311,164,928)*2 B + RoPE 10,485,760
    # and stage 1 = 10*623,120,640*2 B + RoPE.
    p = vllm_fit.plan("Qwen/Qwen3-30B-A3B", gpu="H100", vllm_version="0.19.0", pipeline_parallel_size=5, max_model_len=8192)
    assert [r.layers for r in p.ranks] == [(0, 9), (9, 19), (19, 29), (29, 39), (39, 48)]
    assert p.ranks[0].weights_bytes == (9 * 623_120_640 + 311_164_928) * 2 + 10_485_760
    assert p.ranks[1].weights_bytes == 10 * 623_120_640 * 2 + 10_485_760


def test_dp_is_one_engine_per_gpu():
    # DP=2 without EP: each GPU runs the whole model, so the per-GPU plan is DP=1's.
    a = vllm_fit.plan("Qwen/Qwen3-8B", gpu="H100", vllm_version="0.19.0", max_model_len=8192)
    b = vllm_fit.plan("Qwen/Qwen3-8B", gpu="H100", vllm_version="0.19.0", max_model_len=8192, data_parallel_size=2)
    assert (a.weights_bytes, a.kv_cache_bytes) == (b.weights_bytes, b.kv_cache_bytes) and b.num_gpus == 2


def test_qwen25_vl_vision_tower_is_sharded_under_tp():
    # vLLM builds the tower with QKV/Column/RowParallelLinear (mm_encoder_tp_mode "weights"):
    # at TP2 per block: qkv (3840*1280 + 3840)/2 = 2,459,520; proj 1280*1280/2 + bias 1,280 = 820,480;
    # gate and up (3420*1280 + 3420)/2 each = 4,381,020; down 1280*3420/2 + bias 1,280 = 2,190,080;
    # norms 2,560 -> 9,853,660, x32 = 315,317,120.  merger: ln_q 1,280 + mlp.0 (5120*5120 + 5120)/2
    # = 13,109,760 + mlp.2 3584*5120/2 + bias 3,584 = 9,178,624 -> 22,289,664; patch_embed 1,505,280
    # replicated.  339,112,064 params * 2 B = 678,224,128 B, plus the LM's mrope cache 128000*128*2.
    s = spec_of("Qwen/Qwen2.5-VL-7B-Instruct")
    vision = [t for t in inventory_from_config(s) if t.name.startswith("visual.")]
    lay = Layout(tp=2, pp=1, pp_rank=0, start_layer=0, end_layer=s.num_layers)
    assert rank_weight_bytes(s, vision, lay, "bfloat16") == 678_224_128 + 128000 * 128 * 2


def test_mixtral_profile_peak_is_the_fused_moe_forward_at_tp2():
    # Mixtral-8x7B, TP2, T = 8192 tokens (H100 default), top-2 of 8 experts, I/tp = 7168, H = 4096:
    # fused_moe caches M*k*(max(2I/tp, H) + I/tp)*2 B = 8192*2*(14336 + 7168)*2 = 704,643,072;
    # residual/hidden/normed/output 4*8192*4096*2 = 268,435,456; router logits fp32 8192*8*4 = 262,144
    # and top-k weights/ids 8192*2*8 = 131,072 -> 973,471,744 B.  The sampler phase is smaller:
    # vocab 32000, Triton path 14*1024*32000 + 4*132*32000 = 475,648,000 + hidden 67,108,864
    # + 2*1024*4096*2 = 16,777,216 -> 559,534,080 B.
    p = vllm_fit.plan("mistralai/Mixtral-8x7B-v0.1", gpu="H100", vllm_version="0.19.0", tensor_parallel_size=2,
                      max_model_len=8192)
    act = p.ranks[0].activation
    assert act.forward_phase_bytes == 973_471_744
    assert act.sampler_phase_bytes == 559_534_080 and act.dominant == "forward"


def test_llava_builds_the_clip_tower_up_to_the_feature_layer():
    # llava-1.5-7b style: CLIP ViT-L/14 at 336 px (transformers defaults), vision_feature_layer -2:
    # vLLM builds 24 + 1 - 2 = 23 encoder layers and no post_layernorm.
    # embeddings: patch 1024*3*14*14 = 602,112 + class 1,024 + positions 577*1024 = 590,848;
    # pre_layrnorm 2,048.  Per layer: q,k,v,out 4*(1024*1024 + 1024) = 4,198,400; two LayerNorms
    # 4,096; fc1 4096*1024 + 4096 = 4,198,400; fc2 1024*4096 + 1024 = 4,195,328 -> 12,596,224, x23
    # = 289,713,152.  Projector: linear_1 4096*1024 + 4096 = 4,198,400, linear_2 4096*4096 + 4096
    # = 16,781,312.  Vision + projector = 311,888,896.
    cfg = {"architectures": ["LlavaForConditionalGeneration"], "vision_feature_layer": -2,
           "vision_config": {"model_type": "clip_vision_model"},
           "text_config": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
                           "num_hidden_layers": 32, "num_attention_heads": 32, "vocab_size": 32064,
                           "max_position_embeddings": 4096},
           "torch_dtype": "float16"}
    s = spec_from_config(cfg, "llava")
    inv = inventory_from_config(s)
    vis = sum(t.numel for t in inv if t.name.startswith(("vision_tower.", "multi_modal_projector.")))
    assert vis == 311_888_896
    assert s.vision.num_layers == 23 and s.vision.tokens_per_item == 576


def test_runtime_bitsandbytes_on_llama_31_8b():
    # --quantization bitsandbytes on the bf16 checkpoint: the 6,979,321,856 decoder Linear weights
    # (per layer q 4096*4096, k/v 2*1024*4096, o 4096*4096, gate/up/down 3*14336*4096 = 218,103,808,
    # x32) become 0.5 B each + fp32 absmax per 64 values: 3,489,660,928 + 436,207,616; embed + head
    # 2*128256*4096*2 = 2,101,346,304; 65 norms * 4096 * 2 = 532,480; RoPE 131072*128*2 = 33,554,432.
    p = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", vllm_version="0.19.0",
                      max_model_len=8192, quantization="bitsandbytes")
    assert p.weights_bytes == 3_489_660_928 + 436_207_616 + 2_101_346_304 + 532_480 + 33_554_432


def test_per_expert_checkpoint_headers_place_like_the_config_inventory(tmp_path):
    # A tiny Mixtral checkpoint written as safetensors headers with one tensor per expert
    # (the HF layout: block_sparse_moe.experts.{e}.w1/w2/w3): 2 layers, hidden 64, 4 experts of 32.
    # Under EP=2 rank 0 owns experts 0-1: per layer 2*3*32*64*2 B = 24,576 B of experts, the same
    # bytes as the config-derived stacked [E, ...] inventory gives.
    import json
    import struct

    from vllm_fit.weights import read_safetensors_headers

    cfg = {"architectures": ["MixtralForCausalLM"], "hidden_size": 64, "intermediate_size": 32,
           "num_local_experts": 4, "num_experts_per_tok": 2, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 128, "max_position_embeddings": 64, "torch_dtype": "bfloat16"}
    s = spec_from_config(cfg, "tiny-mixtral")
    header = {}
    for t in inventory_from_config(s):
        if ".experts.w13" in t.name or ".experts.w2" in t.name:
            e, n_out, n_in = t.shape
            for i in range(e):
                base = t.name.replace(".experts.w13.weight", f".experts.{i}.").replace(".experts.w2.weight", f".experts.{i}.")
                names = ("w1", "w3") if ".w13" in t.name else ("w2",)
                for nm in names:
                    rows = n_out // 2 if nm != "w2" else n_out
                    header[f"{base}{nm}.weight"] = {"dtype": "BF16", "shape": [rows, n_in], "data_offsets": [0, 0]}
        else:
            header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [0, 0]}
    raw = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    from_headers = read_safetensors_headers(tmp_path)
    for ep in (1, 2):
        lay = Layout(tp=1, pp=1, pp_rank=0, start_layer=0, end_layer=2, ep_size=ep)
        assert rank_weight_bytes(s, from_headers, lay, "bfloat16") == rank_weight_bytes(s, inventory_from_config(s), lay, "bfloat16")
    lay1 = Layout(tp=1, pp=1, pp_rank=0, start_layer=0, end_layer=2)
    lay2 = Layout(tp=1, pp=1, pp_rank=0, start_layer=0, end_layer=2, ep_size=2)
    assert rank_weight_bytes(s, from_headers, lay1, "bfloat16") - rank_weight_bytes(s, from_headers, lay2, "bfloat16") == 2 * 24_576


def test_llama4_interleaved_moe_layers_with_shared_expert():
    # Maverick-style interleave_moe_layer_step 2: vLLM's Llama4 decoder layer is MoE when
    # (layer_idx + 1) % 2 == 0, i.e. layers 1 and 3 of 4; the others use the dense
    # intermediate_size_mlp FFN.  Tiny text config: hidden 64, 4 experts of 32 (+ one shared
    # expert of 32), dense FFN 96, 4 heads / 2 KV heads of 16, vocab 128 (a minimal vision_config
    # is required by the wrapper; only the language-model tensors are counted below).
    text = {"hidden_size": 64, "intermediate_size": 32, "intermediate_size_mlp": 96, "num_local_experts": 4,
            "num_experts_per_tok": 1, "interleave_moe_layer_step": 2, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 128,
            "max_position_embeddings": 64}
    cfg = {"architectures": ["Llama4ForConditionalGeneration"], "text_config": text, "torch_dtype": "bfloat16",
           "vision_config": {"hidden_size": 32, "num_hidden_layers": 1, "intermediate_size": 64,
                             "num_attention_heads": 2, "image_size": 28, "patch_size": 14,
                             "vision_output_dim": 16}}
    s = spec_from_config(cfg, "tiny-llama4")
    assert s.moe.layers == (False, True, False, True)
    lm = sum(t.numel for t in inventory_from_config(s) if t.name.startswith("language_model"))
    # attention per layer: q 64*64 + k,v 2*32*64 + o 64*64 = 12,288 (+ 2 norms 128) = 12,416.
    # dense FFN 3*96*64 = 18,432; MoE FFN: router 4*64 = 256 + experts 4*3*32*64 = 24,576
    # + shared 3*32*64 = 6,144 = 30,976.  2*(12,416 + 18,432) + 2*(12,416 + 30,976) = 148,480
    # + embed and head 2*128*64 = 16,384 + final norm 64 = 164,928.
    assert lm == 164_928


def test_modelopt_nvfp4_folder_reads_hf_quant_config(tmp_path):
    # ModelOpt exports put quantization in hf_quant_config.json.  The tiny Llama above in NVFP4:
    # 0.5 B/weight + FP8 scale per 16 + two fp32 global scales per linear; lm_head excluded.
    import json

    (tmp_path / "config.json").write_text(json.dumps(TINY))
    (tmp_path / "hf_quant_config.json").write_text(json.dumps(
        {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "NVFP4", "group_size": 16,
                                                            "exclude_modules": ["lm_head"]}}))
    s = resolve_model(str(tmp_path), allow_hub=False).spec
    assert s.quantization.method == "modelopt_fp4"
    assert weights(s) == TINY_REST + TINY_LINEAR // 2 + TINY_LINEAR // 16 + 112
