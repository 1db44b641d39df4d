"""Weights per GPU, derived by hand from the published configs."""


import vllm_fit
from vllm_fit.sources import resolve_model
from vllm_fit.units import GiB
from vllm_fit.weights import Layout, inventory_from_config, pp_partition, rank_weight_bytes


def test_qwen3_06b_tied_weights_and_rope():
    # Qwen3-0.6B: V=151936, H=1024, 28 layers, 16 heads x 128, 8 KV heads, I=3072, tied.
    # embed 151936*1024 = 155,582,464
    # per layer: q 1024*2048 + k 1024*1024 + v 1024*1024 + o 2048*1024 = 6,291,456
    #            q_norm + k_norm 2*128 = 256; MLP 3*1024*3072 = 9,437,184; 2 norms 2,048
    #            = 15,730,944 -> x28 = 440,466,432; final norm 1,024
    # params = 596,049,920 (= KerasHub's count) -> 1,192,099,840 B in bf16
    # rope cache 40960 x 128 x 2 B = 10,485,760 B
    p = vllm_fit.plan("qwen3-0.6b", gpu="H100", vllm_version="0.11.0", max_model_len=16000)
    assert p.weights_bytes == 1_192_099_840 + 10_485_760
    assert round(p.weights_bytes / GiB, 2) == 1.12  # seed 000: "Model loading took 1.12 GiB"


def test_llama31_8b_matches_safetensors_index_total():
    # The hub index of Llama-3.1-8B says total_size 16,060,522,496 B (bf16, untied head);
    # vLLM adds the rope cache 131072 x 128 x 2 B = 33,554,432 B.
    p = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", vllm_version="0.19.0", max_model_len=8192)
    assert p.weights_bytes == 16_060_522_496 + 33_554_432
    # float32: every parameter and the rope cache double: 2 * 16,094,076,928
    p32 = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", vllm_version="0.19.0", max_model_len=8192, dtype="float32")
    assert p32.weights_bytes == 2 * (16_060_522_496 + 33_554_432)
    assert round(p32.weights_bytes / GiB, 2) == 29.98  # 0.19 fp32 log


def test_qwen25_7b_matches_index_total():
    # Qwen2.5-7B-Instruct index total_size 15,231,233,024 B + rope 32768 x 128 x 2 = 8,388,608 B
    p = vllm_fit.plan("qwen2.5-7b-instruct", gpu="H100", vllm_version="0.19.0", max_model_len=8192)
    assert p.weights_bytes == 15_231_233_024 + 8_388_608


def test_tp2_vocab_split_and_replicated_norms():
    # Llama-3.1-8B at TP=2: embed and head 128256x4096 each split in 2; every linear
    # split in 2; norms (65 x 4096 x 2 B = 532,480 B) and the rope cache replicated.
    # linear params: 32 x (4096*6144 + 4096*4096 + 3*4096*14336) = 6,979,321,856
    # per rank: (2*525,336,576 + 6,979,321,856) / 2 * 2 B = 8,029,995,008 B
    # + norms 532,480 + rope 33,554,432 = 8,064,081,920 B
    p = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", vllm_version="0.19.0", max_model_len=8192,
                      tensor_parallel_size=2)
    assert p.weights_bytes == 8_064_081_920
    assert round(p.weights_bytes / GiB, 2) == 7.51  # 0.19 TP2 log


def test_kv_heads_replicated_when_tp_exceeds_kv_heads():
    # Llama-3.1-8B at TP=16: 8 KV heads < 16 ranks -> each rank keeps one full KV head.
    # k_proj and v_proj per rank: 128 x 4096 each = 524,288 params (not 4096*1024/16 = 262,144).
    spec = resolve_model("meta-llama/Llama-3.1-8B-Instruct").spec
    inv = inventory_from_config(spec)
    k = [t for t in inv if t.name == "model.layers.0.self_attn.k_proj.weight"]
    lay16 = Layout(tp=16, pp=1, pp_rank=0, start_layer=0, end_layer=32)
    only_k = rank_weight_bytes(spec.__class__(**{**spec.__dict__, "rope": None}), k, lay16, "bfloat16")
    assert only_k == 128 * 4096 * 2


def test_pp_partition_remainder_goes_before_the_last_stage():
    # vllm get_pp_indices: 32 layers over 3 stages -> 10 each, the 2 extra layers go to
    # partitions[-2] and partitions[-3]: [11, 11, 10].
    assert pp_partition(32, 3) == [(0, 11), (11, 22), (22, 32)]
    assert pp_partition(32, 4) == [(0, 8), (8, 16), (16, 24), (24, 32)]


def test_pp_stages_first_has_embedding_last_has_head():
    # Llama-3.1-8B PP=4 (0.19 log): stage 0 = embed + 8 layers = 4.26 GiB,
    # middle stages 8 layers = 3.28 GiB, last = 8 layers + norm + head = 4.26 GiB.
    # one layer: q 4096^2 + k,v 2 x 4096x1024 + o 4096^2 + MLP 3 x 4096x14336 + 2 norms x 4096
    # = 218,112,000 params; 8 layers x 2 B = 3,489,792,000 B; rope 33,554,432 B
    # -> 3,523,346,432 B = 3.2814 GiB
    p = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", vllm_version="0.19.0", max_model_len=8192,
                      pipeline_parallel_size=4)
    w = [round(r.weights_bytes / GiB, 2) for r in p.ranks]
    assert w == [4.26, 3.28, 3.28, 4.26]
    assert p.ranks[1].weights_bytes == 3_523_346_432


def test_fp8_dynamic_checkpoint_and_runtime_fp8():
    # Runtime --quantization fp8 on Llama-3.1-8B: the 6,979,321,856 linear params become
    # 1 byte each (+ 32 x 7 = 224 fp32 per-tensor scales = 896 B); embed + head stay bf16:
    # 2 x 525,336,576 x 2 B = 2,101,346,304 B; 65 norms x 4096 x 2 B = 532,480 B; rope 33,554,432 B.
    # total 9,114,755,968 B = 8.49 GiB (0.19 log "Model loading took 8.49 GiB").
    p = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", vllm_version="0.19.0", max_model_len=8192,
                      quantization="fp8")
    assert p.weights_bytes == 6_979_321_856 + 896 + 2_101_346_304 + 532_480 + 33_554_432
    assert round(p.weights_bytes / GiB, 2) == 8.49
    # FP8-dynamic checkpoint: per-channel fp32 scales, one per output row:
    # 32 x (4096 + 1024 + 1024 + 4096 + 14336 + 14336 + 4096) = 1,376,256 rows x 4 B = 5,505,024 B.
    q = vllm_fit.plan("RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8-dynamic", gpu="H100", vllm_version="0.19.0",
                      max_model_len=8192)
    assert q.weights_bytes == 6_979_321_856 + 5_505_024 + 2_101_346_304 + 532_480 + 33_554_432


def test_safetensors_headers_are_used(tmp_path):
    # A folder with config.json and one safetensors file whose header lists an
    # embedding 100x64 bf16 (12,800 B) and one 64x64 F32 extra tensor (16,384 B).
    import json, struct

    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1,
           "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 128, "vocab_size": 100,
           "max_position_embeddings": 64, "torch_dtype": "bfloat16"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    header = {"model.embed_tokens.weight": {"dtype": "BF16", "shape": [100, 64], "data_offsets": [0, 12800]},
              "model.layers.0.mlp.gate_proj.weight": {"dtype": "BF16", "shape": [128, 64], "data_offsets": [12800, 29184]}}
    raw = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    p = vllm_fit.plan(str(tmp_path), gpu="H100", vllm_version="0.19.0", max_model_len=64)
    # embed rows padded 100 -> 128: 128 x 64 x 2 = 16,384; gate 128 x 64 x 2 = 16,384;
    # rope 64 x 16 x 2 = 2,048
    assert p.weights_bytes == 16_384 + 16_384 + 2_048
    assert any("safetensors" in n for n in p.notes)
