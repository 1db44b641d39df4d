"""KV cache per attention family, with numbers derived by hand from the published
configs in ../shared/model-configs (derivations in the comments).

Common settings unless stated: H100 (serve defaults max_num_batched_tokens 8192),
block 16 (CUDA default), bf16 KV, --kv-cache-memory-bytes 10 GiB = 10,737,418,240 B,
--max-model-len 8192.  vLLM 0.33 keeps max_in_flight_tokens = 2 x 8192 = 16,384 for
the sliding-window formula (async scheduling, PP 1); 0.19 uses X = 8,192.
"""

import pytest

import vllm_fit
from vllm_fit.errors import VllmFitError

KV = 10 * 2**30  # 10,737,418,240 B


def plan(model, version="0.33.0", **flags):
    flags.setdefault("max_model_len", 8192)
    flags.setdefault("kv_cache_memory_bytes", KV)
    return vllm_fit.plan(model, gpu="H100", vllm_version=version, **flags)


def groups(p):
    return [(g.spec.kind, len(g.layers)) for g in p.ranks[0].kv_layout.groups]


def test_gemma2_9b_alternating_window():
    # gemma-2-9b: 42 layers, 8 KV heads x head_dim 256, sliding_window 4096 on even layers.
    # Per token per layer 2 x 8 x 256 x 2 B = 8,192 B; page = 16 x 8,192 = 131,072 B.
    # 21 sliding + 21 full -> group size 21, two groups; one block = 21 x 131,072 = 2,752,512 B.
    # blocks = 10,737,418,240 // 2,752,512 = 3,900 (3,900 x 2,752,512 = 10,734,796,800).
    # Per request: full 8192/16 = 512; sliding cdiv(min(4095 + 16384, 8192), 16) + 1 = 513 -> 1,025.
    # Concurrency 3,900 / 1,025 = 3.8049; tokens int(3,900 x 8192 / 1,025) = int(31,169.56) = 31,169.
    p = plan("google/gemma-2-9b")
    assert sorted(groups(p)) == [("full_attention", 21), ("sliding_window", 21)]
    assert p.bytes_per_block == 2_752_512
    assert (p.num_gpu_blocks, p.blocks_per_request, p.kv_cache_tokens) == (3900, 1025, 31169)
    assert f"{p.max_concurrency:.2f}" == "3.80"


def test_gemma2_9b_older_versions_and_small_batches():
    # vLLM 0.19, --max-num-batched-tokens 2048: X = 2,048, sliding blocks
    # cdiv(min(4095 + 2048, 8192), 16) + 1 = cdiv(6143, 16) + 1 = 384 + 1 = 385; + 512 full = 897.
    # Tokens in 0.19 = num_blocks // groups x block = 3,900 // 2 x 16 = 31,200.
    p = plan("google/gemma-2-9b", version="0.19.0", max_num_batched_tokens=2048)
    assert (p.num_gpu_blocks, p.blocks_per_request, p.kv_cache_tokens) == (3900, 897, 31200)
    # --disable-hybrid-kv-cache-manager: every layer reserves full length, one group of 42:
    # block = 42 x 131,072 = 5,505,024 B -> 10,737,418,240 // 5,505,024 = 1,950 blocks,
    # 512 per request, tokens int(1,950 x 8192 / 512) = 31,200.
    p = plan("google/gemma-2-9b", disable_hybrid_kv_cache_manager=True)
    assert groups(p) == [("full_attention", 42)]
    assert (p.num_gpu_blocks, p.blocks_per_request, p.kv_cache_tokens) == (1950, 512, 31200)


def test_gemma3_4b_five_local_one_global_with_padding():
    # gemma-3-4b-it text: 34 layers, pattern 6 -> full at layers 5, 11, 17, 23, 29 (5 full),
    # 29 sliding (window 1024); 4 KV heads x 256: page = 16 x 2 x 4 x 256 x 2 = 65,536 B.
    # group size = 5 (29 >= 1.5 x 5): sliding -> cdiv(29, 5) = 6 groups, 6 x 5 - 29 = 1 padding layer.
    # One block = 5 x 65,536 = 327,680 B -> 10 GiB / 327,680 = 32,768 blocks exactly.
    # Per request: full 512; sliding cdiv(min(1023 + 16384, 8192), 16) + 1 = 513 each -> 512 + 6 x 513 = 3,590.
    p = plan("google/gemma-3-4b-it")
    layout = p.ranks[0].kv_layout
    assert sorted(groups(p)) == sorted([("full_attention", 5)] + [("sliding_window", 5)] * 5 + [("sliding_window", 4)])
    assert (layout.group_size, layout.padding_layers) == (5, 1)
    assert (p.num_gpu_blocks, p.blocks_per_request) == (32768, 3590)
    # With --max-num-batched-tokens 1024 the window matters: cdiv(1023 + 2048, 16) + 1 = 192 + 1 = 193
    # per sliding group (X = 2 x 1024) -> 512 + 6 x 193 = 1,670.
    p = plan("google/gemma-3-4b-it", max_num_batched_tokens=1024)
    assert p.blocks_per_request == 1670


def test_gpt_oss_20b_sliding_128_and_sinks():
    # gpt-oss-20b: 24 layers alternating sliding 128 / full, 8 KV heads x 64.
    # KV per token per layer 2 x 8 x 64 x 2 = 2,048 B (all layers: 24 x 2,048 = 49,152 B);
    # page 16 x 2,048 = 32,768 B; 12 + 12 -> group size 12, one block = 12 x 32,768 = 393,216 B.
    # --max-model-len 32768, 20 GiB: 21,474,836,480 // 393,216 = 54,613 blocks.
    # Per request: full 32768/16 = 2,048; sliding cdiv(min(127 + 16384, 32768), 16) + 1 = 1,032 + 1 = 1,033
    # -> 3,081; concurrency 54,613 / 3,081 = 17.72573; tokens int(17.72573 x 32,768) = 580,836
    # (1,789,558,784 / 3,081 = 580,836.996: vLLM truncates).
    p = plan("openai/gpt-oss-20b", max_model_len=32768, kv_cache_memory_bytes=20 * 2**30)
    assert sorted(groups(p)) == [("full_attention", 12), ("sliding_window", 12)]
    assert p.bytes_per_block == 393_216
    assert (p.num_gpu_blocks, p.blocks_per_request, p.kv_cache_tokens) == (54613, 3081, 580836)


def test_deepseek_v3_mla_latent_same_on_every_rank():
    # DeepSeek-V3: 61 layers (the MTP layer is not served), latent 512 + 64 = 576 per token per
    # layer = 1,152 B in bf16.  vLLM 0.33 on H100 picks FLASH_ATTN_MLA (multiple of 16): block 16,
    # page 18,432 B, one block = 61 x 18,432 = 1,124,352 B -> 10 GiB // 1,124,352 = 9,549 blocks;
    # 8192 / 16 = 512 per request; tokens int(9,549 x 8192 / 512) = 152,784.  The latent is not
    # split by TP: 8 ranks hold the same 9,549 blocks each.
    p = plan("deepseek-ai/DeepSeek-V3")
    assert (p.block_size, p.bytes_per_block, p.num_gpu_blocks, p.blocks_per_request, p.kv_cache_tokens) == (
        16, 1_124_352, 9549, 512, 152784)
    p8 = vllm_fit.plan("deepseek-ai/DeepSeek-V3", gpu="H200", vllm_version="0.33.0", tensor_parallel_size=8,
                       max_model_len=8192, kv_cache_memory_bytes=KV)
    assert (p8.bytes_per_block, p8.num_gpu_blocks) == (1_124_352, 9549)
    # vLLM 0.14 forces FlashMLA's block 64 on Hopper: 61 x 64 x 1,152 = 4,497,408 B -> 2,387 blocks,
    # 128 per request.
    p = plan("deepseek-ai/DeepSeek-V3", version="0.14.0")
    assert (p.block_size, p.bytes_per_block, p.num_gpu_blocks, p.blocks_per_request) == (64, 4_497_408, 2387, 128)
    # fp8 KV: 576 B per token per layer -> 61 x 16 x 576 = 562,176 B per block -> 19,099 blocks.
    p = plan("deepseek-ai/DeepSeek-V3", kv_cache_dtype="fp8")
    assert (p.bytes_per_block, p.num_gpu_blocks) == (562_176, 19099)
    # fp8_ds_mla (0.14+, sparse FlashMLA, block 64): 656 B per token per layer
    # -> 61 x 64 x 656 = 2,561,024 B -> 4,192 blocks.
    p = plan("deepseek-ai/DeepSeek-V3", kv_cache_dtype="fp8_ds_mla")
    assert (p.block_size, p.bytes_per_block, p.num_gpu_blocks) == (64, 2_561_024, 4192)


def test_granite_4_h_tiny_mamba_state_pages():
    # granite-4.0-h-tiny: 40 layers = 36 Mamba-2 + 4 attention (layers 5, 15, 25, 35); hidden 1536.
    # Mamba state (TP 1, bf16): conv (4 - 1) x (2 x 1536 + 2 x 1 x 128) = 3 x 3,328 = 9,984 elements,
    # SSM 48 heads x 64 x 128 = 393,216 elements -> (9,984 + 393,216) x 2 = 806,400 B.
    # Attention: 4 KV heads x 128 x 2 (K, V) x 2 B = 2,048 B per token.  Block size
    # 16 x cdiv(806,400, 16 x 2,048) = 16 x 25 = 400 tokens; page 400 x 2,048 = 819,200 B (Mamba
    # page padded to it).  Group size 4: 36 / 4 = 9 Mamba groups + 1 attention group;
    # one block = 4 x 819,200 = 3,276,800 B -> 10 GiB // 3,276,800 = 3,276 blocks.
    # 0.33: prefix caching on, mode "align": each Mamba group needs 2 + 1 (prefill checkpoint) = 3
    # blocks, attention cdiv(8192, 400) = 21 -> 9 x 3 + 21 = 48 per request.
    p = plan("ibm-granite/granite-4.0-h-tiny")
    assert (p.block_size, p.bytes_per_block, p.num_gpu_blocks, p.blocks_per_request) == (400, 3_276_800, 3276, 48)
    assert sorted(groups(p)) == [("full_attention", 4)] + [("mamba", 4)] * 9
    # 0.19: prefix caching off for hybrids by default -> one state page per request: 9 + 21 = 30.
    p = plan("ibm-granite/granite-4.0-h-tiny", version="0.19.0")
    assert (p.block_size, p.blocks_per_request) == (400, 30)
    # 0.14 with --enable-prefix-caching: one state per block of the sequence, block aligned to the
    # Mamba chunk: lcm(256, 16) x cdiv(cdiv(806,400, 2,048), 256) = 256 x cdiv(394, 256) = 512;
    # per request 9 x cdiv(8192, 512) + 16 = 9 x 16 + 16 = 160.
    p = plan("ibm-granite/granite-4.0-h-tiny", version="0.14.0", enable_prefix_caching=True)
    assert (p.block_size, p.blocks_per_request) == (512, 160)
    # 0.26: prefix caching on by default for hybrids, Mamba-2 models get mode "all" -> same 512 / 160.
    assert (plan("ibm-granite/granite-4.0-h-tiny", version="0.26.0").block_size,
            plan("ibm-granite/granite-4.0-h-tiny", version="0.26.0").blocks_per_request) == (512, 160)
    # 0.28: mode "align" for every model: block back to 400, 2 blocks per Mamba group:
    # 9 x 2 + 21 = 39 (the prefill checkpoint block arrives in 0.32).
    p = plan("ibm-granite/granite-4.0-h-tiny", version="0.28.0")
    assert (p.block_size, p.blocks_per_request) == (400, 39)
    # 0.11: prefix caching is forced off for hybrids even when asked for: 30 blocks.
    p = plan("ibm-granite/granite-4.0-h-tiny", version="0.11.0", enable_prefix_caching=True)
    assert (p.block_size, p.blocks_per_request) == (400, 30)


def test_qwen3_next_gated_delta_net_state():
    # Qwen3-Next-80B-A3B: 48 layers, every 4th full attention -> 36 linear + 12 full.
    # Gated delta net state (bf16, TP 1): conv 3 x (2 x 16 x 128 + 32 x 128) = 3 x 8,192 = 24,576
    # elements, recurrent 32 x 128 x 128 = 524,288 -> (24,576 + 524,288) x 2 = 1,097,728 B.
    # Attention 2 KV heads x 256 x 2 x 2 B = 2,048 B per token: block 16 x cdiv(1,097,728, 32,768)
    # = 16 x 34 = 544; page 1,114,112 B; group size 12: 3 linear groups + 1 full;
    # one block = 12 x 1,114,112 = 13,369,344 B -> 10 GiB // 13,369,344 = 803 blocks.
    # 0.33 "align" (the GDN mixer also keeps a prefill checkpoint from 0.33): 3 x 3 + cdiv(8192, 544)
    # = 9 + 16 = 25 per request.
    p = plan("Qwen/Qwen3-Next-80B-A3B-Instruct")
    assert (p.block_size, p.bytes_per_block, p.num_gpu_blocks, p.blocks_per_request) == (544, 13_369_344, 803, 25)
    # 0.32: no checkpoint block for GDN: 3 x 2 + 16 = 22.
    assert plan("Qwen/Qwen3-Next-80B-A3B-Instruct", version="0.32.0").blocks_per_request == 22


def test_llama4_scout_chunked_local_attention():
    # Llama-4-Scout: 48 layers, every 4th is a NoPE full layer (12), the other 36 use chunked
    # local attention of 8192; 8 KV heads x 128: page 16 x 4,096 = 65,536 B.
    # 0.33 keeps the hybrid manager (VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE=1):
    # group size 12, 3 chunked + 1 full group, block = 12 x 65,536 = 786,432 B -> 13,653 blocks;
    # at --max-model-len 32768 and --max-num-batched-tokens 2048 each chunked group needs
    # cdiv(min(8192 + 4096, 32768), 16) = 768 blocks, the full group 2,048 -> 3 x 768 + 2048 = 4,352.
    p = plan("meta-llama/Llama-4-Scout-17B-16E-Instruct", max_model_len=32768, max_num_batched_tokens=2048)
    assert sorted(groups(p)) == [("chunked_local_attention", 12)] * 3 + [("full_attention", 12)]
    assert (p.bytes_per_block, p.num_gpu_blocks, p.blocks_per_request) == (786_432, 13653, 4352)
    # 0.11-0.13 turn the hybrid manager off for chunked attention: one group of 48 full layers,
    # 48 x 65,536 = 3,145,728 B per block -> 3,413 blocks, 32768 / 16 = 2,048 per request.
    p = plan("meta-llama/Llama-4-Scout-17B-16E-Instruct", version="0.11.0", max_model_len=32768,
             max_num_batched_tokens=2048)
    assert groups(p) == [("full_attention", 48)]
    assert (p.bytes_per_block, p.num_gpu_blocks, p.blocks_per_request) == (3_145_728, 3413, 2048)


def test_sliding_window_configs_that_vllm_serves_as_full_or_sliding():
    # Qwen2.5-7B sets sliding_window 131072 with use_sliding_window false: full attention.
    # 28 layers x 4 KV heads x 128: page 16 x 2 x 4 x 128 x 2 = 32,768 B; block 917,504 B;
    # 10 GiB // 917,504 = 11,702 blocks, 512 per request.
    p = plan("Qwen/Qwen2.5-7B-Instruct")
    assert groups(p) == [("full_attention", 28)]
    assert (p.num_gpu_blocks, p.blocks_per_request) == (11702, 512)
    # Mistral-7B-v0.3 has sliding_window null: full attention, 32 x 8 x 128 -> 5,120 blocks.
    p = plan("mistralai/Mistral-7B-Instruct-v0.3")
    assert groups(p) == [("full_attention", 32)]
    assert (p.num_gpu_blocks, p.blocks_per_request) == (5120, 512)
    # Phi-3-mini-4k sets sliding_window 2047, which vLLM's Attention applies to every layer
    # (cache_config.sliding_window): one sliding group; at 4096 tokens a request needs
    # cdiv(min(2046 + 16384, 4096), 16) + 1 = 257 blocks instead of 256.
    p = plan("microsoft/Phi-3-mini-4k-instruct", max_model_len=4096)
    assert groups(p) == [("sliding_window", 32)]
    assert p.blocks_per_request == 257


def test_vllm_011_groups_and_page_sizes():
    # 0.11 has no 1.5 rule: 7 Gemma-2 layers (4 sliding, 3 full) get group size 3 ->
    # sliding cdiv(4, 3) = 2 groups (2 padding layers) + 1 full group; 0.33 uses group size 4.
    import json
    import tempfile
    from pathlib import Path

    cfg = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "hidden_size": 256,
           "intermediate_size": 512, "num_hidden_layers": 7, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 64, "vocab_size": 1024, "max_position_embeddings": 8192, "sliding_window": 256}
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "config.json"
        p.write_text(json.dumps(cfg))
        old = vllm_fit.plan(config=p, gpu="H100", vllm_version="0.11.0", kv_cache_memory_bytes=2**30)
        new = vllm_fit.plan(config=p, gpu="H100", vllm_version="0.33.0", kv_cache_memory_bytes=2**30)
    lo, ln = old.ranks[0].kv_layout, new.ranks[0].kv_layout
    assert (lo.group_size, len(lo.groups), lo.padding_layers) == (3, 3, 2)
    assert (ln.group_size, len(ln.groups), ln.padding_layers) == (4, 2, 1)


def test_packed_kv_formats_of_vllm_033():
    # Qwen2.5-7B: 28 layers, 4 KV heads x 128.
    # int8_per_token_head (Triton packs K, V bytes + two fp32 scales per head):
    #   4 x (2 x 128 + 8) = 1,056 B per token per layer; block 16 x 1,056 x 28 = 473,088 B
    #   -> 10 GiB // 473,088 = 22,696 blocks.
    # int4_per_token_head: 4 x (2 x 64 + 8) = 544 B -> 16 x 544 x 28 = 243,712 B -> 44,057 blocks.
    # nvfp4 (FlashInfer: 2 slots per head of 64 fp4 bytes + 8 fp8 scales): 2 x 4 x 72 = 576 B
    #   -> 16 x 576 x 28 = 258,048 B -> 41,610 blocks.
    for dtype, per_block, blocks in (("int8_per_token_head", 473_088, 22696),
                                     ("int4_per_token_head", 243_712, 44057),
                                     ("nvfp4", 258_048, 41610)):
        p = plan("Qwen/Qwen2.5-7B-Instruct", kv_cache_dtype=dtype)
        assert (p.bytes_per_block, p.num_gpu_blocks) == (per_block, blocks), dtype
    with pytest.raises(VllmFitError, match="0.33"):
        plan("Qwen/Qwen2.5-7B-Instruct", version="0.32.0", kv_cache_dtype="nvfp4")


def test_pipeline_stages_project_the_global_groups():
    # Groups are formed over the whole model, then each stage keeps its own layers
    # (get_kv_cache_configs / _project_kv_cache_groups_to_worker).  gemma-3-4b-it, PP 2
    # (layers 0-16 | 17-33): global groups = full {5,11,17,23,29} + 6 sliding groups taking every
    # 6th of the 29 sliding layers [0,1,2,3,4,6,...].  Stage 0 holds sliding list items 0-14, so
    # groups 0-2 keep 3 layers (items i, i+6, i+12) and groups 3-5 keep 2; full keeps 2 -> a block
    # costs 3 x 65,536 = 196,608 B.  Stage 1: sliding items 15-28 -> groups 3 and 4 keep 3
    # (15,21,27 / 16,22,28), full keeps 3 -> also 196,608 B.  10 GiB // 196,608 = 54,613 blocks.
    # (Grouping each stage on its own would give 2 x 65,536 = 131,072 B: not what vLLM does.)
    p = plan("google/gemma-3-4b-it", pipeline_parallel_size=2)
    assert [r.bytes_per_block for r in p.ranks] == [196_608, 196_608]
    assert p.num_gpu_blocks == 54613


def test_sliding_window_in_flight_tokens_with_pipeline_parallelism():
    # vLLM 0.33 runs every model on Model Runner V2 with async scheduling:
    # max_in_flight_tokens = (PP + 1) x max_num_batched_tokens.  gpt-oss-20b, PP 2, 32k tokens:
    # X = 3 x 8192 = 24,576 -> sliding cdiv(min(127 + 24,576, 32,768), 16) + 1 = 1,544 + 1 = 1,545,
    # full 2,048 -> 3,593 blocks per request (PP 1: X = 16,384 -> 1,033 + 2,048 = 3,081).
    p = plan("openai/gpt-oss-20b", max_model_len=32768, pipeline_parallel_size=2)
    assert p.blocks_per_request == 3593
    # vLLM 0.19 (X = max_num_batched_tokens whatever the PP size): cdiv(127 + 8,192, 16) = 520,
    # + 1 = 521; + 2,048 = 2,569.
    p = plan("openai/gpt-oss-20b", version="0.19.0", max_model_len=32768, pipeline_parallel_size=2)
    assert p.blocks_per_request == 2569


def test_one_request_check_with_pipeline_parallelism_per_version():
    # Llama-3.1-8B: 32 layers x 8 KV heads x 128 -> 2 x 8 x 128 x 2 = 4,096 B per token per layer.
    # At 131,072 tokens one request needs 131,072 x 4,096 = 512 MiB per layer:
    # the whole model 32 x 512 MiB = 16 GiB, one PP stage (16 layers) 8 GiB.
    # With 10 GiB of KV per GPU and PP 2, vLLM 0.14-0.16 check the whole model's groups against
    # the smallest budget (16 > 10: refused), 0.17+ each stage's own layers (8 <= 10 - one block).
    args = dict(max_model_len=131072, pipeline_parallel_size=2)
    old = plan("meta-llama/Llama-3.1-8B-Instruct", version="0.14.0", **args)
    new = plan("meta-llama/Llama-3.1-8B-Instruct", version="0.17.0", **args)
    assert old.failure_kind == "max_model_len_does_not_fit"
    assert "(16.0 GiB KV cache is needed" in old.error  # format_gib
    assert new.fits
