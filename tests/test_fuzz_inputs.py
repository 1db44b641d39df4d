"""Property tests: any config dict or flag combination gives a plan or a VllmFitError,
never another exception."""

import json

from hypothesis import given, settings, strategies as st

import vllm_fit
from vllm_fit.errors import VllmFitError
from vllm_fit.model_spec import parse_config_text, spec_from_config
from vllm_fit.serve_args import parse_serve_command

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=8), c, max_size=3)),
                      max_leaves=8)
KEYS = ["architectures", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
        "intermediate_size", "vocab_size", "max_position_embeddings", "torch_dtype", "tie_word_embeddings",
        "rope_scaling", "quantization_config", "text_config", "layer_types", "sliding_window", "partial_rotary_factor"]
BASE = {"architectures": ["LlamaForCausalLM"], "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 512, "vocab_size": 1000, "max_position_embeddings": 2048}


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=6))
def test_any_config_gives_spec_or_clear_error(overrides):
    cfg = {**BASE, **overrides}
    try:
        text = json.dumps(cfg)
    except (TypeError, ValueError):
        return
    try:
        spec = spec_from_config(parse_config_text(text), "fuzz")
    except VllmFitError:
        return
    from vllm_fit.planner import make_plan
    from vllm_fit.gpus import find_gpu
    from vllm_fit.serve_args import make_serve_args
    from vllm_fit.versions import rules_for

    try:
        make_plan(spec, make_serve_args(max_model_len=min(spec.derived_max_model_len, 4096)), rules_for("0.19.0"), find_gpu("H100"))
    except VllmFitError:
        pass


flag_values = st.one_of(st.integers(-5, 10**7), st.floats(-2, 2, allow_nan=False), st.sampled_from(["auto", "fp8", "x", "1k", "-1"]))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["tensor_parallel_size", "pipeline_parallel_size", "max_model_len",
                                        "gpu_memory_utilization", "block_size", "kv_cache_dtype", "dtype",
                                        "max_num_seqs", "max_num_batched_tokens", "kv_cache_memory_bytes"]),
                       flag_values, max_size=4),
       st.sampled_from(["0.11.0", "0.14.0", "0.19.0", "0.22.0", "0.27.0", "0.33.0"]))
def test_any_flags_give_plan_or_clear_error(flags, version):
    try:
        p = vllm_fit.plan("qwen3-0.6b", gpu="H100", vllm_version=version, **flags)
    except VllmFitError:
        return
    assert p.fits in (True, False)
    if not p.fits:
        assert p.error


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=15), max_size=8))
def test_any_command_line_parses_or_clear_error(argv):
    try:
        parse_serve_command(["vllm", "serve", *argv])
    except VllmFitError:
        pass
