"""Config edge cases: max_model_len as vllm/config/model.py derives it, and hostile quantization fields."""

from vllm_fit.model_spec import spec_from_config


def _cfg(model_type, arch, rope_scaling, max_pos=131072):
    return {"architectures": [arch], "model_type": model_type, "hidden_size": 256, "intermediate_size": 512,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
            "vocab_size": 1024, "max_position_embeddings": max_pos, "torch_dtype": "bfloat16",
            "rope_scaling": rope_scaling}


def test_linear_rope_factor_extends_the_context():
    # Llama with linear factor 4 over 8192 positions: vLLM derives 8192 x 4 = 32768.
    spec = spec_from_config(_cfg("llama", "LlamaForCausalLM", {"rope_type": "linear", "factor": 4.0}, 8192), "t")
    assert spec.derived_max_model_len == 32768


def test_gemma3_rope_factor_is_not_applied_again():
    # Gemma-3-27B: 131072 positions with linear factor 8.  vLLM skips the factor for
    # model types containing "gemma3" (already scaled), so 131072, not 1,048,576.
    cfg = _cfg("gemma3_text", "Gemma3ForCausalLM", {"rope_type": "linear", "factor": 8.0})
    cfg.update({"sliding_window": 512, "layer_types": ["sliding_attention", "full_attention"]})
    assert spec_from_config(cfg, "t").derived_max_model_len == 131072


def test_catalog_gemma3_27b_serves_131072_by_default():
    import vllm_fit

    p = vllm_fit.plan("google/gemma-3-27b-it", gpu="H200", vllm_version="0.19.0")
    assert p.settings["max_model_len"] == 131072


def test_quantization_module_lists_must_be_names():
    # A hostile AWQ config with modules_to_not_convert = true must be one clear error.
    import pytest

    from vllm_fit.errors import ConfigError

    cfg = _cfg("qwen2", "Qwen2ForCausalLM", None, 4096)
    cfg["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128, "modules_to_not_convert": True}
    with pytest.raises(ConfigError, match="modules_to_not_convert must be a list"):
        spec_from_config(cfg, "t")


def test_flashinfer_sampler_switch_changes_the_sampler_term():
    # vLLM 0.11, Llama-3.1-8B on H100: R = min(1024 seqs, 8192 tokens) = 1024 rows, V = 128,256, bf16 logits.
    # Sort path (default without flashinfer): (2 + 36) x 1024 x 128,256 = 4,990,697,472 B.
    # FlashInfer (VLLM_USE_FLASHINFER_SAMPLER=1, or flashinfer installed in 0.11): (2 + 12) x 1024 x 128,256
    # = 1,838,678,016 B.
    import vllm_fit

    kw = dict(gpu="H100", vllm_version="0.11.0", max_model_len=8192)
    sort = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", **kw)
    fi = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", vllm_use_flashinfer_sampler=True, **kw)
    assert sort.ranks[0].activation.sampler_bytes == 4_990_697_472
    assert fi.ranks[0].activation.sampler_bytes == 1_838_678_016
    # the same switch from a command line with the environment assignment in front
    cmd = vllm_fit.plan_command("VLLM_USE_FLASHINFER_SAMPLER=1 vllm serve meta-llama/Llama-3.1-8B-Instruct "
                                "--max-model-len 8192", gpu="H100", vllm_version="0.11.0")
    assert cmd.ranks[0].activation.sampler_bytes == 1_838_678_016
    # vLLM 0.21+ defaults to FlashInfer; =0 falls back to the Triton path (14 R V + scratch rows)
    off = vllm_fit.plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", vllm_version="0.21.0",
                        max_model_len=8192, vllm_use_flashinfer_sampler=False)
    assert off.settings["sampler_path"] == "triton"
