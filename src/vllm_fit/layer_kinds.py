"""Which kind of attention (or state) each decoder layer has, as vLLM builds it.

vLLM decides per layer in the model file (``vllm/model_executor/models/*.py``)
and, for models that pass no per-layer window, in the generic ``Attention``
layer (``vllm/attention/layer.py``; 0.32: ``model_executor/layers/attention/
attention.py``), which falls back to ``cache_config.sliding_window`` =
``ModelConfig.get_sliding_window()`` = the text config's ``sliding_window``.
So a Llama/Mistral/Phi-3 config with ``sliding_window`` set gets a sliding
window on every layer (checked on the real engine: tests/fixtures/cpu-engine,
case mistral-swa256), while Qwen2/Qwen3 configs with ``use_sliding_window:
false`` have ``sliding_window = None`` after transformers loads them and are
full attention.

Kinds: "full", "sliding", "chunked" (Llama-4 local attention), "mla" (one
latent per token), "mamba" (Mamba-1/2 state), "linear_attention" (gated delta
net state, Qwen3-Next), "mlp" (a layer with neither, e.g. Nemotron-H's MLP
layers).  Pure functions of the config; no code from the model repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import ConfigError

MAX_WINDOW = 1 << 26

# Architectures whose Qwen-style config gates the window with use_sliding_window
# (transformers sets sliding_window = None when it is false).
_USE_SLIDING_WINDOW_GATED = {
    "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM",
    "Qwen2_5_VLForConditionalGeneration", "Qwen3NextForCausalLM",
}
MLA_ARCHITECTURES = {"DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "KimiK2ForCausalLM"}
HYBRID_ARCHITECTURES = {
    "GraniteMoeHybridForCausalLM", "NemotronHForCausalLM", "BambaForCausalLM", "JambaForCausalLM",
    "Qwen3NextForCausalLM",
}


@dataclass(frozen=True)
class AttentionLayout:
    kinds: tuple[str, ...]
    sliding_window: int | None
    attention_chunk_size: int | None
    notes: tuple[str, ...] = ()


def _window(get: Callable[..., Any], where: str, key: str = "sliding_window") -> int | None:
    v = get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_WINDOW:
        raise ConfigError(f"{where}: {key!r} must be a non-negative integer, got {v!r}"[:200])
    return v or None  # 0 means "no sliding window" (vllm/config/model.py)


def _layer_types(get: Callable[..., Any], where: str, n: int) -> list[str] | None:
    lt = get("layer_types")
    if lt is None:
        return None
    if not isinstance(lt, list) or len(lt) != n or not all(isinstance(t, str) for t in lt):
        raise ConfigError(f"{where}: layer_types must list one name per layer ({n})")
    return lt


def _int(get: Callable[..., Any], key: str, default: int, where: str) -> int:
    v = get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_WINDOW:
        raise ConfigError(f"{where}: {key!r} must be a positive integer, got {v!r}"[:200])
    return v


def attention_layout(arch: str, get: Callable[..., Any], num_layers: int, where: str) -> AttentionLayout:
    """Per-layer kinds for ``arch``; ``get(key)`` reads the text config (then the top level)."""
    n = num_layers
    notes: list[str] = []
    if arch in MLA_ARCHITECTURES:
        return AttentionLayout(("mla",) * n, None, None)
    if arch in HYBRID_ARCHITECTURES:
        return AttentionLayout(_hybrid_kinds(arch, get, n, where), None, None)
    if arch == "Llama4ForConditionalGeneration" or arch == "Llama4ForCausalLM":
        # vllm/model_executor/models/llama4.py: layers with RoPE use chunked
        # local attention; no_rope_layers[i] == 0 marks the global (NoPE) ones.
        chunk = _window(get, where, "attention_chunk_size")
        nope = get("no_rope_layers")
        if nope is None:
            interval = _int(get, "no_rope_layer_interval", 4, where)
            nope = [int((i + 1) % interval != 0) for i in range(n)]
        if not isinstance(nope, list) or len(nope) != n:
            raise ConfigError(f"{where}: no_rope_layers must list one flag per layer ({n})")
        kinds = tuple("chunked" if (chunk and flag) else "full" for flag in nope)
        return AttentionLayout(kinds, None, chunk if "chunked" in kinds else None)

    window = _window(get, where)
    if arch in _USE_SLIDING_WINDOW_GATED and get("use_sliding_window") is not True:
        if window is not None:
            notes.append(
                f"config sets sliding_window {window} with use_sliding_window false: vLLM serves full attention"
            )
        window = None
    if window is None:
        return AttentionLayout(("full",) * n, None, None, tuple(notes))

    if arch == "GptOssForCausalLM":
        # vllm/model_executor/models/gpt_oss.py: even layers slide, odd are full
        # (layer_types is not read).
        kinds = tuple("sliding" if i % 2 == 0 else "full" for i in range(n))
    elif arch == "Gemma2ForCausalLM":
        lt = _layer_types(get, where, n)
        # transformers Gemma2Config: sliding if (i + 1) % 2 (even layers).
        kinds = tuple(
            ("sliding" if t == "sliding_attention" else "full") for t in lt
        ) if lt else tuple("sliding" if (i + 1) % 2 else "full" for i in range(n))
    elif arch in ("Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"):
        lt = _layer_types(get, where, n)
        if lt:
            kinds = tuple("sliding" if t == "sliding_attention" else "full" for t in lt)
        else:
            # transformers Gemma3TextConfig: sliding unless (i + 1) % pattern == 0.
            pattern = _int(get, "sliding_window_pattern", 6, where)
            kinds = tuple("sliding" if (i + 1) % pattern else "full" for i in range(n))
    else:
        lt = _layer_types(get, where, n)
        if lt:
            kinds = tuple("sliding" if t == "sliding_attention" else "full" for t in lt)
        else:
            # Generic Attention: cache_config.sliding_window on every layer.
            kinds = ("sliding",) * n
        if arch in _USE_SLIDING_WINDOW_GATED and len(set(kinds)) > 1:
            raise ConfigError(
                f"{where}: sliding window on only some layers (max_window_layers) is refused by vLLM's {arch}",
                "Serve it with use_sliding_window false.",
            )
    if "sliding" not in kinds:
        window = None
    return AttentionLayout(kinds, window, None, tuple(notes))


def _hybrid_kinds(arch: str, get: Callable[..., Any], n: int, where: str) -> tuple[str, ...]:
    if arch == "GraniteMoeHybridForCausalLM":
        lt = _layer_types(get, where, n) or ["mamba"] * n
        bad = [t for t in lt if t not in ("mamba", "attention")]
        if bad:
            raise ConfigError(f"{where}: unknown layer type {bad[0]!r} in layer_types"[:200])
        return tuple("mamba" if t == "mamba" else "full" for t in lt)
    if arch == "NemotronHForCausalLM":
        pat = get("hybrid_override_pattern")
        if not isinstance(pat, str) or len(pat) != n or set(pat) - set("M*-E"):
            raise ConfigError(
                f"{where}: hybrid_override_pattern must be a string of M, *, - and E with one character per layer ({n})"
            )
        return tuple({"M": "mamba", "*": "full", "-": "mlp", "E": "mlp"}[c] for c in pat)
    if arch == "BambaForCausalLM":
        idx = get("attn_layer_indices") or []
        if not isinstance(idx, list) or not all(isinstance(i, int) and 0 <= i < n for i in idx):
            raise ConfigError(f"{where}: attn_layer_indices must list layer numbers below {n}")
        return tuple("full" if i in idx else "mamba" for i in range(n))
    if arch == "JambaForCausalLM":
        # vllm/model_executor/models/jamba.py: attention where i % period == offset.
        period = _int(get, "attn_layer_period", 8, where)
        offset = get("attn_layer_offset")
        offset = 4 if offset is None else offset
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < period:
            raise ConfigError(f"{where}: attn_layer_offset must be in [0, attn_layer_period)")
        return tuple("full" if i % period == offset else "mamba" for i in range(n))
    # Qwen3NextForCausalLM: layer_types, else every full_attention_interval-th layer is full.
    lt = _layer_types(get, where, n)
    if lt:
        return tuple("linear_attention" if t == "linear_attention" else "full" for t in lt)
    interval = _int(get, "full_attention_interval", 4, where)
    return tuple("full" if (i + 1) % interval == 0 else "linear_attention" for i in range(n))
