"""Per-layer kinds (layer_kinds.py) and the weights of Gemma text and Mamba / linear-attention
mixer layers (ssm.py), derived by hand from the published configs."""

import pytest

from vllm_fit.errors import ConfigError
from vllm_fit.model_spec import spec_from_config
from vllm_fit.sources import resolve_model
from vllm_fit.ssm import mixer_tensors, state_page_bytes
from vllm_fit.weights import inventory_from_config


def _numel(tensors):
    return sum(t.numel for t in tensors)


def test_gemma2_9b_parameters_match_the_published_total():
    # gemma-2-9b: hidden 3584, 16 heads x 256, 8 KV heads, intermediate 14336, vocab 256000, 42 layers.
    # per layer: q 3584 x 4096 = 14,680,064; k, v 3584 x 2048 = 7,340,032 each; o 4096 x 3584 =
    # 14,680,064 -> 44,040,192; MLP 3 x 3584 x 14336 = 154,140,672; 4 norms x 3584 = 14,336
    # -> 198,195,200 per layer, x 42 = 8,324,198,400; + tied embedding 256000 x 3584 =
    # 917,504,000 + final norm 3,584 = 9,241,705,984 = the hub's safetensors total.
    spec = resolve_model("google/gemma-2-9b", None, allow_hub=False).spec
    assert spec.norms_per_layer == 4 and spec.tie_word_embeddings
    assert _numel(inventory_from_config(spec)) == 9_241_705_984


def test_mamba2_mixer_of_granite_4_h_tiny():
    # hidden 1536, expand 2 -> intermediate 3072; 48 heads x 64; d_state 128, 1 group, conv 4.
    # conv_dim = 3072 + 2 x 128 = 3,328.  in_proj (3072 + 3328 + 48) x 1536 = 9,904,128;
    # conv1d 3328 x 4 = 13,312 + bias 3,328; dt_bias, A_log, D 3 x 48 = 144; norm 3,072;
    # out_proj 1536 x 3072 = 4,718,592 -> 14,642,576 per Mamba layer.
    spec = resolve_model("ibm-granite/granite-4.0-h-tiny", None, allow_hub=False).spec
    assert spec.layer_kinds.count("mamba") == 36 and spec.layer_kinds.count("full") == 4
    assert _numel(mixer_tensors(spec, 0, "model.layers.0.mamba")) == 14_642_576
    # state page (bf16, TP 1) = (3 x 3,328 + 48 x 64 x 128) x 2 = 806,400 B.
    assert state_page_bytes(spec.mamba, 1, 2) == 806_400
    # TP 2: 1 group does not split, so vLLM raises it to 2 (extra_groups_for_head_shards):
    # conv_dim 3072 + 2 x 2 x 128 = 3,584 -> 1,792 per rank x 3 = 5,376; SSM 24 x 64 x 128 = 196,608
    # -> (5,376 + 196,608) x 2 = 403,968 B (not half of 806,400).
    assert state_page_bytes(spec.mamba, 2, 2) == 403_968


def test_gated_delta_net_mixer_of_qwen3_next():
    # 16 key heads x 128 = 2,048, 32 value heads x 128 = 4,096, hidden 2048, conv 4.
    # in_proj_qkvz (2 x 2048 + 2 x 4096) x 2048 = 25,165,824; in_proj_ba 64 x 2048 = 131,072;
    # conv1d (2 x 2048 + 4096) x 4 = 32,768; dt_bias + A_log 64; norm 128;
    # out_proj 2048 x 4096 = 8,388,608 -> 33,718,464 per linear-attention layer.
    spec = resolve_model("Qwen/Qwen3-Next-80B-A3B-Instruct", None, allow_hub=False).spec
    assert spec.layer_kinds.count("linear_attention") == 36
    assert [i for i, k in enumerate(spec.layer_kinds) if k == "full"][:3] == [3, 7, 11]
    assert _numel(mixer_tensors(spec, 0, "model.layers.0.linear_attn")) == 33_718_464


def _cfg(arch, **kw):
    base = {"architectures": [arch], "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 8,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 4096}
    base.update(kw)
    return base


def test_layer_kinds_per_family():
    kinds = lambda cfg: spec_from_config(cfg, "t").layer_kinds  # noqa: E731
    # Jamba: attention where i % period == offset (period 4, offset 2 -> layers 2, 6)
    j = kinds(_cfg("JambaForCausalLM", attn_layer_period=4, attn_layer_offset=2, num_experts=1))
    assert [i for i, k in enumerate(j) if k == "full"] == [2, 6] and j.count("mamba") == 6
    # Nemotron-H: M = Mamba, * = attention, - and E = no token mixer
    n = kinds(_cfg("NemotronHForCausalLM", hybrid_override_pattern="M-M*-E*M", mamba_num_heads=8,
                   mamba_head_dim=32, ssm_state_size=16))
    assert n == ("mamba", "mlp", "mamba", "full", "mlp", "mlp", "full", "mamba")
    # gpt-oss: even layers slide whatever layer_types says (vLLM's gpt_oss.py)
    g = kinds(_cfg("GptOssForCausalLM", sliding_window=128, num_local_experts=4, num_experts_per_tok=2,
                   layer_types=["full_attention"] * 8))
    assert g == ("sliding", "full") * 4
    # Gemma-3 without layer_types: pattern 6 -> layer 5 full
    s = spec_from_config(_cfg("Gemma3ForCausalLM", sliding_window=512, sliding_window_pattern=6), "t")
    assert s.layer_kinds == ("sliding",) * 5 + ("full", "sliding", "sliding") and s.sliding_window == 512
    # Qwen2 with use_sliding_window false: full, with a note
    q = spec_from_config(_cfg("Qwen2ForCausalLM", sliding_window=4096, use_sliding_window=False), "t")
    assert q.layer_kinds == ("full",) * 8 and any("use_sliding_window" in x for x in q.notes)
    # Llama-4 without no_rope_layers: every 4th layer is the NoPE full layer
    text = _cfg("LlamaForCausalLM", attention_chunk_size=1024, model_type="llama4_text")
    from vllm_fit.layer_kinds import attention_layout

    lay = attention_layout("Llama4ForConditionalGeneration", text.get, 8, "t")
    assert lay.kinds == ("chunked",) * 3 + ("full",) + ("chunked",) * 3 + ("full",)
    assert lay.attention_chunk_size == 1024


def test_broken_hybrid_configs_give_one_clear_error():
    with pytest.raises(ConfigError, match="hybrid_override_pattern"):
        spec_from_config(_cfg("NemotronHForCausalLM", hybrid_override_pattern="MMX"), "t")
    with pytest.raises(ConfigError, match="mamba_n_heads"):
        spec_from_config(_cfg("GraniteMoeHybridForCausalLM", layer_types=["mamba", "attention"] * 4), "t")
    with pytest.raises(ConfigError, match="layer_types"):
        spec_from_config(_cfg("Gemma2ForCausalLM", sliding_window=64, layer_types=["sliding_attention"]), "t")
    with pytest.raises(ConfigError, match="max_window_layers"):
        spec_from_config(_cfg("Qwen2ForCausalLM", sliding_window=64, use_sliding_window=True,
                              layer_types=["full_attention"] * 4 + ["sliding_attention"] * 4), "t")
    with pytest.raises(ConfigError, match="sliding_window"):
        spec_from_config(_cfg("MistralForCausalLM", sliding_window="big"), "t")


def test_nemotron_h_ssm_state_dtype_per_version():
    # Nemotron-H-like: 8 Mamba heads x 32, d_state 64, 1 group, conv 4, hidden 256 (intermediate
    # = 8 x 32 = 256); attention 2 KV heads x 64 -> 2 x 2 x 64 x 2 = 512 B per token.
    # conv state 3 x (256 + 2 x 64) = 1,152 elements (bf16: 2,304 B); SSM 8 x 32 x 64 = 16,384.
    # vLLM 0.33 keeps the SSM state in float32 for Nemotron-H: 2,304 + 65,536 = 67,840 B ->
    #   block 16 x cdiv(67,840, 16 x 512) = 16 x 9 = 144.
    # vLLM 0.19 uses float16: 2,304 + 32,768 = 35,072 B -> 16 x cdiv(35,072, 8,192) = 80.
    # --mamba-ssm-cache-dtype bfloat16 on 0.33: same 35,072 B -> 80.
    import json
    import tempfile
    from pathlib import Path

    import vllm_fit

    cfg = _cfg("NemotronHForCausalLM", num_hidden_layers=6, head_dim=64, hybrid_override_pattern="M-M*-*",
               mamba_num_heads=8, mamba_head_dim=32, ssm_state_size=64, n_groups=1, conv_kernel=4)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "config.json"
        p.write_text(json.dumps(cfg))
        b = lambda v, **kw: vllm_fit.plan(config=p, gpu="H100", vllm_version=v, max_model_len=2048,  # noqa: E731
                                          kv_cache_memory_bytes=2**28, **kw).block_size
        assert (b("0.33.0"), b("0.19.0"), b("0.33.0", mamba_ssm_cache_dtype="bfloat16")) == (144, 80, 80)
