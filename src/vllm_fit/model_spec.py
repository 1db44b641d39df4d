"""One normalised model spec from a Hugging Face ``config.json``.

Reads the LM part of nested multimodal configs (``text_config``), derives
``head_dim`` when absent, resolves the per-layer attention kind, the RoPE
cache size and the quantization config.  Validates every field it uses: a
broken or hostile config gives one clear ``ConfigError``, never a traceback.
No code from the model repository is ever executed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

MAX_CONFIG_BYTES = 8 * 1024 * 1024
MAX_DIM = 1 << 24  # 16M: larger than any real hidden/intermediate size
MAX_LAYERS = 4096
MAX_VOCAB = 1 << 24
MAX_POSITIONS = 1 << 26

# Architectures whose memory vllm-fit models, and the vLLM model file that
# defines their weights.  Others are rejected with a clear message.
DENSE_ARCHITECTURES = {
    "LlamaForCausalLM": "vllm/model_executor/models/llama.py",
    "MistralForCausalLM": "vllm/model_executor/models/llama.py (MistralForCausalLM = Llama)",
    "Qwen2ForCausalLM": "vllm/model_executor/models/qwen2.py",
    "Qwen3ForCausalLM": "vllm/model_executor/models/qwen3.py",
    "Phi3ForCausalLM": "vllm/model_executor/models/phi3.py (Llama with fused qkv/gate_up)",
    "GraniteForCausalLM": "vllm/model_executor/models/granite.py",
    "OPTForCausalLM": "vllm/model_executor/models/opt.py",
}

# Recognised but not modelled yet (later issue): the message says so.
PLANNED_ARCHITECTURES = {
    "MixtralForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "DeepseekV2ForCausalLM",
    "DeepseekV3ForCausalLM", "GptOssForCausalLM", "Glm4MoeForCausalLM", "Llama4ForConditionalGeneration",
    "Gemma2ForCausalLM", "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration", "GraniteMoeHybridForCausalLM",
    "NemotronHForCausalLM", "BambaForCausalLM", "JambaForCausalLM", "Qwen3NextForCausalLM",
    "Mistral3ForConditionalGeneration", "PixtralForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration",
    "LlavaForConditionalGeneration", "KimiK2ForCausalLM",
}

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
_DTYPE_ALIASES = {
    "bfloat16": "bfloat16", "bf16": "bfloat16", "torch.bfloat16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16", "torch.float16": "float16",
    "float32": "float32", "fp32": "float32", "float": "float32", "torch.float32": "float32",
}


@dataclass(frozen=True)
class RopeSpec:
    rotary_dim: int
    cache_positions: int  # rows of vLLM's cos_sin_cache
    scaling_type: str | None


@dataclass(frozen=True)
class QuantSpec:
    """Checkpoint quantization, as vLLM's quantization config would read it."""

    method: str  # "fp8", "compressed-tensors-fp8", "compressed-tensors-int8", ...
    weight_bits: int
    weight_strategy: str  # "tensor" | "channel" | "block"
    block_size: tuple[int, int] | None = None
    ignore: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    architecture: str
    model_type: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    dtype: str  # checkpoint dtype ("bfloat16", "float16", "float32")
    max_position_embeddings: int
    derived_max_model_len: int
    rope: RopeSpec | None
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_gated: bool = True
    mlp_bias: bool = False
    norm_bias: bool = False
    qk_norm: bool = False
    learned_positions: int = 0  # OPT: max_position_embeddings + 2 rows
    word_embed_proj_dim: int | None = None  # OPT-350m projects 512 <-> 1024
    layer_kinds: tuple[str, ...] = ()  # per layer: "full" | "sliding"
    sliding_window: int | None = None
    quantization: QuantSpec | None = None
    source: str = ""
    provenance: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    notes: tuple[str, ...] = ()

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]


# ----------------------------------------------------------------- reading

def load_config_file(path: Path) -> dict[str, Any]:
    """Read a config.json safely: size cap, JSON only, nesting checked."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is {size} bytes; a config.json is a few KB", "Pass the model's real config.json.")
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not UTF-8 text ({e.__class__.__name__})") from None
    return parse_config_text(text, str(path))


def parse_config_text(text: str, where: str = "config.json") -> dict[str, Any]:
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where} is too large for a config.json")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ConfigError(f"{where} is nested too deeply to be a model config") from None
    except ValueError as e:
        raise ConfigError(f"{where} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a JSON object, not {type(data).__name__}")
    _check_depth(data, where)
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid number in a model config")


def _check_depth(obj: Any, where: str, depth: int = 0) -> None:
    if depth > 32:
        raise ConfigError(f"{where} is nested too deeply to be a model config")
    if isinstance(obj, dict):
        for v in obj.values():
            _check_depth(v, where, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            _check_depth(v, where, depth + 1)


# ----------------------------------------------------------------- fields

class _Fields:
    """Typed access to config fields with clear errors."""

    def __init__(self, cfg: dict[str, Any], top: dict[str, Any], where: str):
        self.cfg, self.top, self.where = cfg, top, where

    def get(self, *keys: str, default: Any = None) -> Any:
        for k in keys:
            if k in self.cfg and self.cfg[k] is not None:
                return self.cfg[k]
        for k in keys:
            if k in self.top and self.top[k] is not None:
                return self.top[k]
        return default

    def int(self, *keys: str, default: int | None = None, lo: int = 1, hi: int = MAX_DIM, required: bool = True) -> int | None:
        v = self.get(*keys)
        if v is None:
            if default is not None or not required:
                return default
            raise ConfigError(
                f"{self.where} has no {keys[0]!r}",
                "vllm-fit needs it to size the weights; pass the model's full config.json.",
            )
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and (not math.isfinite(v) or v != int(v))):
            raise ConfigError(f"{self.where}: {keys[0]!r} must be an integer, got {v!r}"[:200])
        v = int(v)
        if not lo <= v <= hi:
            raise ConfigError(f"{self.where}: {keys[0]!r} = {v} is outside the plausible range [{lo}, {hi}]")
        return v

    def bool(self, *keys: str, default: bool = False) -> bool:
        v = self.get(*keys)
        if v is None:
            return default
        if isinstance(v, bool):
            return v
        raise ConfigError(f"{self.where}: {keys[0]!r} must be true or false, got {v!r}"[:200])

    def float(self, *keys: str, default: float | None = None) -> float | None:
        v = self.get(*keys)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise ConfigError(f"{self.where}: {keys[0]!r} must be a number, got {v!r}"[:200])
        return float(v)


def normalize_dtype(value: Any, where: str = "dtype") -> str:
    if value is None:
        return "bfloat16"
    if not isinstance(value, str) or value.strip().lower() not in _DTYPE_ALIASES:
        raise ConfigError(f"{where}: unsupported dtype {value!r}"[:200], "Use bfloat16, float16 or float32.")
    return _DTYPE_ALIASES[value.strip().lower()]


def _architecture(top: dict[str, Any], where: str) -> str:
    archs = top.get("architectures")
    if archs is None:
        raise ConfigError(
            f"{where} has no 'architectures' list",
            "vllm-fit uses it, as vLLM does, to pick the model class; add e.g. \"architectures\": [\"LlamaForCausalLM\"].",
        )
    if not isinstance(archs, list) or not archs or not all(isinstance(a, str) for a in archs):
        raise ConfigError(f"{where}: 'architectures' must be a non-empty list of names")
    return archs[0]


def _rope(f: _Fields, head_dim: int, max_pos: int, arch: str) -> RopeSpec | None:
    if arch == "OPTForCausalLM":
        return None
    partial = f.float("partial_rotary_factor", default=1.0) or 1.0
    if not 0 < partial <= 1:
        raise ConfigError(f"{f.where}: partial_rotary_factor must be in (0, 1]")
    rotary_dim = int(head_dim * partial)
    scaling = f.get("rope_scaling")
    if scaling is not None and not isinstance(scaling, dict):
        raise ConfigError(f"{f.where}: rope_scaling must be an object or null")
    scaling = scaling or {}
    stype = scaling.get("rope_type", scaling.get("type"))
    if stype is not None and not isinstance(stype, str):
        raise ConfigError(f"{f.where}: rope_scaling.rope_type must be a string")
    positions = max_pos
    factor = scaling.get("factor", 1.0)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or not 0 < factor <= 1024:
        raise ConfigError(f"{f.where}: rope_scaling.factor must be a positive number")
    # vllm/model_executor/layers/rotary_embedding: the cos/sin cache has
    # max_position * factor rows for linear / dynamic NTK / YaRN (YaRN from the
    # original length); llama3, default and mrope keep max_position.
    if stype in ("linear", "dynamic"):
        positions = int(max_pos * factor)
    elif stype == "yarn":
        orig = scaling.get("original_max_position_embeddings", max_pos)
        if isinstance(orig, bool) or not isinstance(orig, int) or not 0 < orig <= MAX_POSITIONS:
            raise ConfigError(f"{f.where}: rope_scaling.original_max_position_embeddings must be a positive integer")
        positions = int(orig * factor)
    return RopeSpec(rotary_dim=rotary_dim, cache_positions=positions, scaling_type=stype)


def _derived_max_len(f: _Fields, max_pos: int) -> int:
    # vllm/config/model.py _get_and_verify_max_len: the smallest of the length
    # keys, times the RoPE factor for scaling types that extend the context.
    scaling = f.get("rope_scaling") or {}
    stype = scaling.get("rope_type", scaling.get("type")) if isinstance(scaling, dict) else None
    length = max_pos
    if stype not in (None, "default", "llama3", "mrope", "su", "longrope") and isinstance(scaling, dict):
        factor = scaling.get("factor", 1.0)
        if stype == "yarn":
            length = int(scaling.get("original_max_position_embeddings", max_pos) * factor)
        elif isinstance(factor, (int, float)) and not isinstance(factor, bool):
            length = int(max_pos * factor)
    return length


def _quant(top: dict[str, Any], text: dict[str, Any], where: str) -> QuantSpec | None:
    q = top.get("quantization_config", text.get("quantization_config"))
    if q is None:
        return None
    if not isinstance(q, dict):
        raise ConfigError(f"{where}: quantization_config must be an object")
    method = q.get("quant_method")
    if method == "fp8":
        wbs = q.get("weight_block_size")
        if wbs is not None:
            if not (isinstance(wbs, list) and len(wbs) == 2 and all(isinstance(x, int) and x > 0 for x in wbs)):
                raise ConfigError(f"{where}: quantization_config.weight_block_size must be two positive integers")
            return QuantSpec("fp8", 8, "block", (wbs[0], wbs[1]), tuple(q.get("ignored_layers") or ()), q)
        return QuantSpec("fp8", 8, "tensor", None, tuple(q.get("ignored_layers") or ()), q)
    if method == "compressed-tensors":
        groups = q.get("config_groups")
        if not isinstance(groups, dict) or not groups:
            raise ConfigError(f"{where}: compressed-tensors quantization_config has no config_groups")
        g = next(iter(groups.values()))
        w = (g or {}).get("weights") if isinstance(g, dict) else None
        if not isinstance(w, dict):
            raise ConfigError(f"{where}: compressed-tensors config group has no 'weights' scheme")
        bits, wtype, strategy = w.get("num_bits"), w.get("type"), w.get("strategy")
        ignore = q.get("ignore") or []
        if not isinstance(ignore, list):
            raise ConfigError(f"{where}: quantization_config.ignore must be a list")
        if bits == 8 and wtype == "float" and strategy in ("tensor", "channel", "block"):
            block = w.get("block_structure")
            bs = tuple(block) if isinstance(block, list) and len(block) == 2 else None
            return QuantSpec("compressed-tensors-fp8", 8, strategy, bs, tuple(str(i) for i in ignore), q)
        return QuantSpec(f"compressed-tensors-{wtype}{bits}", int(bits) if isinstance(bits, int) else 0,
                         str(strategy), None, tuple(str(i) for i in ignore), q)
    if not isinstance(method, str):
        raise ConfigError(f"{where}: quantization_config has no quant_method")
    return QuantSpec(method, 0, "", None, (), q)


def spec_from_config(config: dict[str, Any], name: str, source: str = "",
                     provenance: dict[str, Any] | None = None) -> ModelSpec:
    where = f"config of {name}"
    arch = _architecture(config, where)
    text = config.get("text_config")
    if text is not None and not isinstance(text, dict):
        raise ConfigError(f"{where}: text_config must be an object")
    text = text or {}
    if arch not in DENSE_ARCHITECTURES:
        if arch in PLANNED_ARCHITECTURES:
            raise ConfigError(
                f"{name} is a {arch}: MoE, sliding-window, MLA, hybrid and multimodal models are not modelled yet",
                "vllm-fit plans dense decoder-only models today (Llama, Mistral, Qwen2/3, Phi-3, Granite 3, OPT).",
            )
        raise ConfigError(
            f"unknown architecture {arch!r} in {name}"[:200],
            "vllm-fit plans " + ", ".join(sorted(DENSE_ARCHITECTURES)) + ".",
        )
    f = _Fields(text, config, where)
    model_type = f.get("model_type", default="")
    if not isinstance(model_type, str):
        raise ConfigError(f"{where}: model_type must be a string")
    is_opt = arch == "OPTForCausalLM"
    layers = f.int("num_hidden_layers", "n_layer", "num_layers", hi=MAX_LAYERS)
    hidden = f.int("hidden_size", "d_model", "n_embd")
    heads = f.int("num_attention_heads", "n_head")
    kv_heads = f.int("num_key_value_heads", default=heads)
    if heads % kv_heads != 0:
        raise ConfigError(f"{where}: num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv_heads})")
    head_dim = f.int("head_dim", default=None, required=False)
    if head_dim is None:
        if hidden % heads != 0:
            raise ConfigError(f"{where}: no head_dim and hidden_size {hidden} is not divisible by {heads} heads")
        head_dim = hidden // heads
    intermediate = f.int("intermediate_size", "ffn_dim", "n_inner")
    vocab = f.int("vocab_size", hi=MAX_VOCAB)
    max_pos = f.int("max_position_embeddings", "n_positions", "max_seq_len", hi=MAX_POSITIONS)
    dtype = normalize_dtype(f.get("torch_dtype", "dtype"), f"{where}: torch_dtype")
    tie = f.bool("tie_word_embeddings", default=is_opt or False)
    rope = _rope(f, head_dim, max_pos, arch)
    notes: list[str] = []

    qkv_bias = f.bool("attention_bias", default=False)
    o_bias = qkv_bias
    mlp_bias = f.bool("mlp_bias", default=False)
    norm_bias = False
    mlp_gated = True
    learned = 0
    proj_dim = None
    if arch == "Qwen2ForCausalLM":
        qkv_bias, o_bias = True, False  # Qwen2: bias on q/k/v only
    if arch == "Qwen3ForCausalLM":
        qkv_bias = f.bool("attention_bias", default=False)
        o_bias = qkv_bias
    if is_opt:
        qkv_bias = o_bias = f.bool("enable_bias", default=True)
        mlp_bias = qkv_bias
        norm_bias = True
        mlp_gated = False
        learned = max_pos + 2  # OPTLearnedPositionalEmbedding offset of 2
        pdim = f.int("word_embed_proj_dim", default=hidden)
        proj_dim = pdim if pdim != hidden else None
        if not f.bool("do_layer_norm_before", default=True):
            notes.append("OPT-350m style post-LayerNorm: no final LayerNorm")

    # Sliding windows: the dense models in scope use full attention in vLLM
    # (Qwen2.5 sets sliding_window but use_sliding_window: false; Phi-3 and
    # Mistral v0.3 carry a window vLLM's Llama path ignores without
    # layer_types).  layer_types, when present, is honoured.
    layer_types = f.get("layer_types")
    window = None
    kinds = ["full"] * layers
    if layer_types is not None:
        if not isinstance(layer_types, list) or len(layer_types) != layers:
            raise ConfigError(f"{where}: layer_types must list one entry per layer ({layers})")
        if any(t == "sliding_attention" for t in layer_types):
            window = f.int("sliding_window", hi=MAX_POSITIONS)
            kinds = ["sliding" if t == "sliding_attention" else "full" for t in layer_types]
    elif f.get("sliding_window") is not None and f.bool("use_sliding_window", default=True) and arch == "MistralForCausalLM":
        window = f.int("sliding_window", hi=MAX_POSITIONS)
        if window < max_pos:
            kinds = ["sliding"] * layers
        else:
            window = None
    elif f.get("sliding_window") is not None:
        notes.append("config sets sliding_window but vLLM serves this model with full attention on every layer")
    if "sliding" in kinds:
        raise ConfigError(
            f"{name} uses sliding-window attention, which is not modelled yet",
            "vllm-fit plans full-attention dense models today.",
        )

    quant = _quant(config, text, where)
    if quant is not None and quant.method not in ("fp8", "compressed-tensors-fp8"):
        raise ConfigError(
            f"{name} is quantized with {quant.method}, which is not modelled yet",
            "vllm-fit models bf16/fp16/fp32, FP8 (fp8, compressed-tensors FP8) weights today.",
        )
    return ModelSpec(
        name=name,
        architecture=arch,
        model_type=model_type,
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        vocab_size=vocab,
        tie_word_embeddings=tie,
        dtype=dtype,
        max_position_embeddings=max_pos,
        derived_max_model_len=_derived_max_len(f, max_pos),
        rope=rope,
        qkv_bias=qkv_bias,
        o_bias=o_bias,
        mlp_gated=mlp_gated,
        mlp_bias=mlp_bias,
        norm_bias=norm_bias,
        qk_norm=arch == "Qwen3ForCausalLM",
        learned_positions=learned,
        word_embed_proj_dim=proj_dim,
        layer_kinds=tuple(kinds),
        sliding_window=window,
        quantization=quant,
        source=source,
        provenance=provenance or {},
        notes=tuple(notes),
    )
