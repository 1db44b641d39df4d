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
from .layer_kinds import HYBRID_ARCHITECTURES, attention_layout
from .ssm import mamba_from_config

MAX_CONFIG_BYTES = 8 * 1024 * 1024
MAX_DIM = 1 << 24  # 16M: larger than any real hidden/intermediate size
MAX_LAYERS = 4096
MAX_VOCAB = 1 << 24
MAX_POSITIONS = 1 << 26

# The architecture registry: architecture -> (family, the vLLM model file that
# defines its weights).  The family picks the weight inventory (weights.py);
# per-layer attention kinds come from the config.  Anything not listed here is
# rejected with a message that names it.
ARCHITECTURES: dict[str, tuple[str, str]] = {
    # dense decoder-only
    "LlamaForCausalLM": ("dense", "vllm/model_executor/models/llama.py"),
    "MistralForCausalLM": ("dense", "vllm/model_executor/models/llama.py (MistralForCausalLM = Llama)"),
    "Qwen2ForCausalLM": ("dense", "vllm/model_executor/models/qwen2.py"),
    "Qwen3ForCausalLM": ("dense", "vllm/model_executor/models/qwen3.py"),
    "Phi3ForCausalLM": ("dense", "vllm/model_executor/models/phi3.py (Llama with fused qkv/gate_up)"),
    "GraniteForCausalLM": ("dense", "vllm/model_executor/models/granite.py"),
    "OPTForCausalLM": ("dense", "vllm/model_executor/models/opt.py"),
    "GemmaForCausalLM": ("dense", "vllm/model_executor/models/gemma.py (GeGLU MLP, tied head)"),
    # mixture of experts (3B)
    "MixtralForCausalLM": ("moe", "vllm/model_executor/models/mixtral.py (FusedMoE w1/w3/w2)"),
    "Qwen2MoeForCausalLM": ("moe", "vllm/model_executor/models/qwen2_moe.py (FusedMoE + gated shared expert)"),
    "Qwen3MoeForCausalLM": ("moe", "vllm/model_executor/models/qwen3_moe.py"),
    "DeepseekV2ForCausalLM": ("deepseek", "vllm/model_executor/models/deepseek_v2.py (MLA + FusedMoE + shared experts)"),
    "DeepseekV3ForCausalLM": ("deepseek", "vllm/model_executor/models/deepseek_v2.py (DeepseekV3 = V2 + noaux_tc bias)"),
    "KimiK2ForCausalLM": ("deepseek", "vllm/model_executor/models/deepseek_v2.py (Kimi-K2 ships as DeepseekV3)"),
    "Glm4MoeForCausalLM": ("moe", "vllm/model_executor/models/glm4_moe.py"),
    "GptOssForCausalLM": ("moe", "vllm/model_executor/models/gpt_oss.py (MXFP4 experts, attention sinks)"),
    # sliding-window text models (3A): 4 norms per layer, tied 256k embedding
    "Gemma2ForCausalLM": ("gemma", "vllm/model_executor/models/gemma2.py (alternating sliding/full, softcapping)"),
    "Gemma3ForCausalLM": ("gemma", "vllm/model_executor/models/gemma3.py (5 sliding : 1 full, q/k norm)"),
    # attention + Mamba / linear-attention hybrids (3A mixer + state; MoE FFNs 3B)
    "GraniteMoeHybridForCausalLM": ("hybrid", "vllm/model_executor/models/granitemoehybrid.py (Mamba-2 + attention)"),
    "NemotronHForCausalLM": ("hybrid", "vllm/model_executor/models/nemotron_h.py (Mamba-2 / attention / MLP layers)"),
    "BambaForCausalLM": ("hybrid", "vllm/model_executor/models/bamba.py (Mamba-2 + attention)"),
    "JambaForCausalLM": ("hybrid", "vllm/model_executor/models/jamba.py (Mamba-1 + attention, MoE)"),
    "Qwen3NextForCausalLM": ("hybrid", "vllm/model_executor/models/qwen3_next.py (gated delta net + gated attention, MoE)"),
    # multimodal wrappers (3B: vision tower + projector; the LM per its text config)
    "Mistral3ForConditionalGeneration": ("multimodal", "vllm/model_executor/models/mistral3.py (Pixtral vision + patch merger)"),
    "PixtralForConditionalGeneration": ("multimodal", "vllm/model_executor/models/pixtral.py"),
    "LlavaForConditionalGeneration": ("multimodal", "vllm/model_executor/models/llava.py (CLIP/SigLIP up to vision_feature_layer)"),
    "Qwen2_5_VLForConditionalGeneration": ("multimodal", "vllm/model_executor/models/qwen2_5_vl.py"),
    "Gemma3ForConditionalGeneration": ("multimodal", "vllm/model_executor/models/gemma3_mm.py (SigLIP + projector)"),
    "Llama4ForConditionalGeneration": ("multimodal", "vllm/model_executor/models/mllama4.py (Llama-4 MoE text + vision)"),
}

# Recognised, but another helper's family that has not landed yet: the message says so.
PLANNED_ARCHITECTURES: set[str] = set()
# Back-compatible view used by older callers.
DENSE_ARCHITECTURES = {a: f for a, (fam, f) in ARCHITECTURES.items() if fam == "dense"}

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
    group_size: int | None = None  # int4/int8 weight-only and FP4 formats
    zero_point: bool = False  # asymmetric int formats keep packed zero points
    desc_act: bool = False  # GPTQ act-order (keeps a g_idx permutation)
    double_quant: bool = False  # bitsandbytes nested absmax


@dataclass(frozen=True)
class MoESpec:
    """Routed experts of the MoE layers (vLLM's FusedMoE) and their extras."""

    num_experts: int
    top_k: int
    intermediate_size: int  # per expert
    layers: tuple[bool, ...]  # per decoder layer: True = MoE FFN, False = dense FFN
    style: str  # checkpoint naming: "mixtral" | "qwen" | "deepseek" | "gpt-oss" | "llama4"
    shared_intermediate_size: int = 0  # all shared experts together (0 = none)
    shared_expert_gate: bool = False  # Qwen2-MoE: sigmoid gate [1, H]
    router_bias: bool = False  # gpt-oss
    expert_bias: bool = False  # gpt-oss: bias on gate_up and down
    score_correction_bias: bool = False  # DeepSeek-V3 / GLM-4.5 noaux_tc: fp32 [E]


@dataclass(frozen=True)
class MLASpec:
    """DeepSeek multi-head latent attention projections."""

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim


@dataclass(frozen=True)
class VisionSpec:
    """Vision tower + projector of a multimodal model (weights and encoder profiling)."""

    kind: str  # "pixtral" | "qwen2_5_vl" | "clip" | "siglip" | "llama4"
    hidden_size: int
    num_layers: int  # layers vLLM builds (Llava stops at vision_feature_layer)
    intermediate_size: int
    num_heads: int
    patch_size: int
    image_size: int
    num_channels: int = 3
    out_hidden_size: int = 0  # Qwen2.5-VL merger output / projector output
    spatial_merge_size: int = 1
    temporal_patch_size: int = 1
    projector: str = ""  # "mistral3" | "llava" | "gemma3" | "qwen2_5_vl" | "llama4"
    projector_bias: bool = True
    post_layernorm: bool = False
    tokens_per_item: int = 0  # LM tokens of one maximum-size image
    patches_per_item: int = 0  # encoder sequence length of one maximum-size image


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
    # per layer: "full" | "sliding" | "chunked" | "mla" | "mamba" | "linear_attention" | "mlp" (layer_kinds.py)
    layer_kinds: tuple[str, ...] = ()
    sliding_window: int | None = None
    attention_chunk_size: int | None = None  # Llama-4 chunked local attention
    mamba: Any = None  # ssm.MambaSpec of the Mamba / linear-attention layers (hybrids)
    quantization: QuantSpec | None = None
    family: str = "dense"  # registry family: dense | moe | deepseek | multimodal | ...
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    vision: VisionSpec | None = None
    attention_sinks: bool = False  # gpt-oss: one learned sink per head
    attn_output_gate: bool = False  # Qwen3-Next gated attention: q_proj also emits the output gate
    norms_per_layer: int = 2  # Gemma-2/3: 4 (pre/post attention and FFN)
    num_mtp_layers: int = 0  # multi-token-prediction layers in the checkpoint; serving skips them
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
    # Gemma-3's max_position_embeddings (128K) is already scaled, so vLLM skips
    # the factor for any model_type containing "gemma3" (all of 0.11-0.33).
    scaling = f.get("rope_scaling") or {}
    stype = scaling.get("rope_type", scaling.get("type")) if isinstance(scaling, dict) else None
    length = max_pos
    if "gemma3" in str(f.get("model_type", default="")):
        return length
    if stype not in (None, "default", "llama3", "mrope", "su", "longrope") and isinstance(scaling, dict):
        factor = scaling.get("factor", 1.0)
        if stype == "yarn":
            length = int(scaling.get("original_max_position_embeddings", max_pos) * factor)
        elif isinstance(factor, (int, float)) and not isinstance(factor, bool):
            length = int(max_pos * factor)
    return length


def _pos_int(v: Any, where: str, what: str, default: int | None = None) -> int | None:
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_DIM:
        raise ConfigError(f"{where}: quantization_config.{what} must be a positive integer, got {v!r}"[:200])
    return v


# Weight formats vLLM reads from a checkpoint's quantization_config, as vllm-fit names them.
MODELLED_QUANT_METHODS = (
    "fp8", "compressed-tensors-fp8", "compressed-tensors-int8", "compressed-tensors-wna16",
    "compressed-tensors-nvfp4", "gptq", "awq", "bitsandbytes-4bit", "bitsandbytes-8bit", "mxfp4", "modelopt_fp4",
    "modelopt-fp8",
)


def _name_list(q: dict[str, Any], where: str, *keys: str) -> tuple[str, ...]:
    """A list of module names from a quantization config (the first key set)."""
    for key in keys:
        v = q.get(key)
        if v is None or v == []:
            continue
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ConfigError(f"{where}: quantization_config.{key} must be a list of module names")
        return tuple(v)
    return ()


def _quant(top: dict[str, Any], text: dict[str, Any], where: str) -> QuantSpec | None:
    q = top.get("quantization_config", text.get("quantization_config"))
    if q is None:
        return None
    if not isinstance(q, dict):
        raise ConfigError(f"{where}: quantization_config must be an object")
    method = q.get("quant_method")
    if isinstance(method, str):
        method = method.lower()
    if method == "fp8":
        wbs = q.get("weight_block_size")
        ignored = _name_list(q, where, "ignored_layers", "modules_to_not_convert")
        if wbs is not None:
            if not (isinstance(wbs, list) and len(wbs) == 2 and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in wbs)):
                raise ConfigError(f"{where}: quantization_config.weight_block_size must be two positive integers")
            return QuantSpec("fp8", 8, "block", (wbs[0], wbs[1]), ignored, q)
        return QuantSpec("fp8", 8, "tensor", None, ignored, q)
    if method == "compressed-tensors":
        groups = q.get("config_groups")
        if not isinstance(groups, dict) or not groups:
            raise ConfigError(f"{where}: compressed-tensors quantization_config has no config_groups")
        g = next(iter(groups.values()))
        w = (g or {}).get("weights") if isinstance(g, dict) else None
        if not isinstance(w, dict):
            raise ConfigError(f"{where}: compressed-tensors config group has no 'weights' scheme")
        bits, wtype, strategy = w.get("num_bits"), w.get("type"), w.get("strategy")
        ign = _name_list(q, where, "ignore")
        gs = _pos_int(w.get("group_size"), where, "group_size")
        zp = not bool(w.get("symmetric", True))
        if bits == 8 and wtype == "float" and strategy in ("tensor", "channel", "block"):
            block = w.get("block_structure")
            bs = tuple(block) if isinstance(block, list) and len(block) == 2 and all(isinstance(x, int) for x in block) else None
            return QuantSpec("compressed-tensors-fp8", 8, strategy, bs, ign, q)
        if bits == 4 and wtype == "float":
            # NVFP4 (nvfp4-pack-quantized): FP4 E2M1 + FP8 scale per 16 + global scales.
            return QuantSpec("compressed-tensors-nvfp4", 4, "group", None, ign, q, group_size=gs or 16)
        if bits == 8 and wtype == "int" and isinstance(g, dict) and isinstance(g.get("input_activations"), dict):
            return QuantSpec("compressed-tensors-int8", 8, str(strategy or "channel"), None, ign, q, zero_point=zp)
        if bits in (4, 8) and wtype == "int":
            # Weight-only (w4a16 / w8a16, pack-quantized): Marlin/Machete kernels.
            return QuantSpec("compressed-tensors-wna16", int(bits), str(strategy or "group"), None, ign, q,
                             group_size=gs, zero_point=zp, desc_act=w.get("actorder") not in (None, False, "static"))
        raise ConfigError(
            f"{where}: compressed-tensors scheme {wtype}{bits} ({strategy}) is not modelled"[:200],
            "vllm-fit models compressed-tensors FP8, int8 w8a8, w4a16/w8a16 and NVFP4.",
        )
    if method in ("gptq", "awq"):
        bits = _pos_int(q.get("bits", q.get("w_bit")), where, "bits", 4)
        if bits not in (2, 3, 4, 8):
            raise ConfigError(f"{where}: {method} with {bits}-bit weights is not a format vLLM serves")
        gs = q.get("group_size", q.get("q_group_size", 128))
        if gs == -1:
            gs = None  # per-channel
        else:
            gs = _pos_int(gs, where, "group_size")
        ign = _name_list(q, where, "modules_to_not_convert")
        if method == "gptq":
            return QuantSpec("gptq", bits, "group", None, ign, q, group_size=gs,
                             zero_point=not bool(q.get("sym", True)), desc_act=bool(q.get("desc_act", False)))
        return QuantSpec("awq", bits, "group", None, ign, q, group_size=gs, zero_point=bool(q.get("zero_point", True)))
    if method == "bitsandbytes":
        if q.get("load_in_8bit"):
            return QuantSpec("bitsandbytes-8bit", 8, "channel", None, _name_list(q, where, "llm_int8_skip_modules"), q)
        return QuantSpec("bitsandbytes-4bit", 4, "block", None, _name_list(q, where, "llm_int8_skip_modules"), q,
                         group_size=64, double_quant=bool(q.get("bnb_4bit_use_double_quant", False)))
    if method == "mxfp4":
        return QuantSpec("mxfp4", 4, "group", None, _name_list(q, where, "modules_to_not_convert"), q, group_size=32)
    if method in ("modelopt", "modelopt_fp4"):
        algo = str(q.get("quant_algo", "")).upper()
        if "FP4" in algo or method == "modelopt_fp4":
            return QuantSpec("modelopt_fp4", 4, "group", None, _name_list(q, where, "exclude_modules"), q,
                             group_size=_pos_int(q.get("group_size"), where, "group_size", 16))
        return QuantSpec("modelopt-fp8", 8, "tensor", None, _name_list(q, where, "exclude_modules"), q)
    if not isinstance(method, str):
        raise ConfigError(f"{where}: quantization_config has no quant_method")
    raise ConfigError(
        f"{where}: quantization method {method!r} is not modelled"[:200],
        "vllm-fit models FP8 (fp8, compressed-tensors, modelopt), int8 w8a8, GPTQ/AWQ (incl. Marlin), "
        "compressed-tensors w4a16, bitsandbytes, MXFP4 and NVFP4 checkpoints.",
    )


def _int_in(d: dict[str, Any], key: str, where: str, default: int | None = None, lo: int = 1,
            hi: int = MAX_DIM) -> int:
    v = d.get(key)
    if v is None:
        if default is None:
            raise ConfigError(f"{where} has no {key!r}", "vllm-fit needs it to size the weights; pass the full config.json.")
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{where}: {key!r} must be an integer in [{lo}, {hi}], got {v!r}"[:200])
    return v


def _moe_layers(num_layers: int, *, step: int = 1, first_dense: int = 0, only_dense: Any = None,
                explicit: Any = None, where: str = "") -> tuple[bool, ...]:
    if explicit is not None:
        if not isinstance(explicit, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in explicit):
            raise ConfigError(f"{where}: moe_layers must be a list of layer indices")
        chosen = set(explicit)
        return tuple(i in chosen for i in range(num_layers))
    dense = set()
    if only_dense is not None:
        if not isinstance(only_dense, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in only_dense):
            raise ConfigError(f"{where}: mlp_only_layers must be a list of layer indices")
        dense = set(only_dense)
    return tuple(i >= first_dense and i not in dense and (i + 1) % step == 0 if step > 1 else
                 (i >= first_dense and i not in dense) for i in range(num_layers))


def _vision_spec(arch: str, config: dict[str, Any], where: str) -> VisionSpec | None:
    vc = config.get("vision_config")
    if vc is None:
        vc = {}
    if not isinstance(vc, dict):
        raise ConfigError(f"{where}: vision_config must be an object")
    w = f"{where}: vision_config"
    if arch in ("Mistral3ForConditionalGeneration", "PixtralForConditionalGeneration"):
        if not vc:
            raise ConfigError(f"{where} has no vision_config", "Pass the model's full config.json (the Pixtral tower is sized from it).")
        patch = _int_in(vc, "patch_size", w, 14)
        image = _int_in(vc, "image_size", w, 1024)
        merge = _int_in(config, "spatial_merge_size", where, 1 if arch == "PixtralForConditionalGeneration" else 2)
        side = image // patch
        merged = side // merge
        # vllm/model_executor/models/mistral3.py + pixtral.py: one [IMG_BREAK]/[IMG_END] per row
        return VisionSpec("pixtral", _int_in(vc, "hidden_size", w), _int_in(vc, "num_hidden_layers", w, hi=MAX_LAYERS),
                          _int_in(vc, "intermediate_size", w), _int_in(vc, "num_attention_heads", w), patch, image,
                          _int_in(vc, "num_channels", w, 3), spatial_merge_size=merge,
                          projector="mistral3" if arch == "Mistral3ForConditionalGeneration" else "pixtral",
                          projector_bias=bool(config.get("multimodal_projector_bias", False)),
                          # HF Mistral3 counts ncols * nrows merged patches (pixtral.py PixtralHFEncoderInfo);
                          # the mistral-format Pixtral adds one [IMG_BREAK]/[IMG_END] per row
                          tokens_per_item=merged * merged if arch == "Mistral3ForConditionalGeneration" else (merged + 1) * merged,
                          patches_per_item=side * side)
    if arch == "Qwen2_5_VLForConditionalGeneration":
        if not vc:
            raise ConfigError(f"{where} has no vision_config")
        patch = _int_in(vc, "patch_size", w, 14)
        merge = _int_in(vc, "spatial_merge_size", w, 2)
        # Qwen2VLImageProcessor max_pixels = 12845056 (16384 merged tokens of 28x28 pixels)
        patches = 12845056 // (patch * patch)
        return VisionSpec("qwen2_5_vl", _int_in(vc, "hidden_size", w), _int_in(vc, "depth", w, hi=MAX_LAYERS),
                          _int_in(vc, "intermediate_size", w), _int_in(vc, "num_heads", w), patch, 0,
                          _int_in(vc, "in_chans", w, 3), out_hidden_size=_int_in(vc, "out_hidden_size", w),
                          spatial_merge_size=merge, temporal_patch_size=_int_in(vc, "temporal_patch_size", w, 2),
                          projector="qwen2_5_vl", tokens_per_item=patches // (merge * merge), patches_per_item=patches)
    if arch == "LlavaForConditionalGeneration":
        # transformers LlavaConfig defaults: CLIP ViT-L/14 at 336 px, feature layer -2.
        vtype = vc.get("model_type", "clip_vision_model")
        layers = _int_in(vc, "num_hidden_layers", w, 24, hi=MAX_LAYERS)
        fl = config.get("vision_feature_layer", -2)
        if isinstance(fl, list):
            fl = max(fl, key=lambda x: x if x >= 0 else layers + 1 + x)
        if isinstance(fl, bool) or not isinstance(fl, int):
            raise ConfigError(f"{where}: vision_feature_layer must be an integer")
        # vllm llava.py init_vision_tower_for_llava: layers after the feature layer are not built
        built = fl if fl >= 0 else layers + 1 + fl
        patch = _int_in(vc, "patch_size", w, 14)
        image = _int_in(vc, "image_size", w, 336)
        side = image // patch
        kind = "siglip" if "siglip" in str(vtype) else "clip"
        return VisionSpec(kind, _int_in(vc, "hidden_size", w, 1024), max(0, min(built, layers)),
                          _int_in(vc, "intermediate_size", w, 4096), _int_in(vc, "num_attention_heads", w, 16),
                          patch, image, _int_in(vc, "num_channels", w, 3), projector="llava",
                          projector_bias=bool(config.get("multimodal_projector_bias", True)),
                          tokens_per_item=side * side, patches_per_item=side * side + (kind == "clip"))
    if arch == "Gemma3ForConditionalGeneration":
        # transformers SiglipVisionConfig values used by every Gemma-3 multimodal checkpoint
        patch = _int_in(vc, "patch_size", w, 14)
        image = _int_in(vc, "image_size", w, 896)
        side = image // patch
        return VisionSpec("siglip", _int_in(vc, "hidden_size", w, 1152), _int_in(vc, "num_hidden_layers", w, 27, hi=MAX_LAYERS),
                          _int_in(vc, "intermediate_size", w, 4304), _int_in(vc, "num_attention_heads", w, 16),
                          patch, image, _int_in(vc, "num_channels", w, 3), projector="gemma3", post_layernorm=True,
                          tokens_per_item=_int_in(config, "mm_tokens_per_image", where, 256), patches_per_item=side * side)
    if arch == "Llama4ForConditionalGeneration":
        if not vc:
            raise ConfigError(f"{where} has no vision_config",
                              "Llama-4's vision tower is sized from it; pass the model's full config.json.")
        patch = _int_in(vc, "patch_size", w, 14)
        image = _int_in(vc, "image_size", w, 336)
        side = image // patch
        ratio = vc.get("pixel_shuffle_ratio", 0.5)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ConfigError(f"{w}: pixel_shuffle_ratio must be in (0, 1]")
        per_tile = int(side * side * ratio * ratio)
        # Llama4ImageProcessor max_patches 16 tiles + one global tile; one <|image|> wrapper per tile row
        tiles = 17
        return VisionSpec("llama4", _int_in(vc, "hidden_size", w), _int_in(vc, "num_hidden_layers", w, hi=MAX_LAYERS),
                          _int_in(vc, "intermediate_size", w), _int_in(vc, "num_attention_heads", w), patch, image,
                          _int_in(vc, "num_channels", w, 3),
                          out_hidden_size=_int_in(vc, "vision_output_dim", w, _int_in(vc, "projector_output_dim", w, 4096)),
                          projector="llama4", projector_bias=False, post_layernorm=True,
                          tokens_per_item=tiles * per_tile, patches_per_item=tiles * (side * side + 1))
    return None


def _family_extras(arch: str, family: str, f: _Fields, config: dict[str, Any], text: dict[str, Any], where: str,
                   layers: int, hidden: int, heads: int, model_type: str) -> dict[str, Any]:
    """Family-specific fields (MoE, MLA, vision, sinks, extra norms), read as vLLM's model file reads them."""
    out: dict[str, Any] = {}
    notes: list[str] = []
    lm = model_type
    if arch in ("MixtralForCausalLM",):
        out["moe"] = MoESpec(f.int("num_local_experts"), f.int("num_experts_per_tok"), f.int("intermediate_size"),
                             (True,) * layers, "mixtral")
    elif arch in ("Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM"):
        e = f.int("num_experts")
        sh = f.int("shared_expert_intermediate_size", default=0, lo=0) if arch == "Qwen2MoeForCausalLM" else 0
        out["moe"] = MoESpec(e, f.int("num_experts_per_tok"), f.int("moe_intermediate_size"),
                             _moe_layers(layers, step=f.int("decoder_sparse_step", default=1),
                                         only_dense=f.get("mlp_only_layers"), where=where),
                             "qwen", shared_intermediate_size=sh, shared_expert_gate=sh > 0)
        if arch == "Qwen2MoeForCausalLM":
            out["qkv_bias"], out["o_bias"] = True, False
        else:
            out["qk_norm"] = True
            out["qkv_bias"] = out["o_bias"] = f.bool("attention_bias", default=False)
    elif arch == "Glm4MoeForCausalLM":
        moe_i = f.int("moe_intermediate_size")
        out["moe"] = MoESpec(f.int("n_routed_experts"), f.int("num_experts_per_tok"), moe_i,
                             _moe_layers(layers, first_dense=f.int("first_k_dense_replace", default=0, lo=0)),
                             "deepseek", shared_intermediate_size=f.int("n_shared_experts", default=0, lo=0) * moe_i,
                             score_correction_bias=True)
        out["qkv_bias"], out["o_bias"] = f.bool("attention_bias", default=False), False
        out["qk_norm"] = f.bool("use_qk_norm", default=False)
        out["num_mtp_layers"] = f.int("num_nextn_predict_layers", default=0, lo=0)
    elif arch == "GptOssForCausalLM":
        out["moe"] = MoESpec(f.int("num_local_experts"), f.int("experts_per_token", "num_experts_per_tok"),
                             f.int("intermediate_size"), (True,) * layers, "gpt-oss", router_bias=True, expert_bias=True)
        out["attention_sinks"] = True
        out["qkv_bias"] = out["o_bias"] = True
    elif family == "deepseek":
        q_lora = f.int("q_lora_rank", required=False, default=None)
        mla = MLASpec(q_lora, f.int("kv_lora_rank"), f.int("qk_nope_head_dim"), f.int("qk_rope_head_dim"),
                      f.int("v_head_dim"))
        out["mla"] = mla
        out["head_dim"] = mla.qk_head_dim
        moe_i = f.int("moe_intermediate_size")
        e = f.int("n_routed_experts", default=0, lo=0)
        if e:
            out["moe"] = MoESpec(e, f.int("num_experts_per_tok"), moe_i,
                                 _moe_layers(layers, first_dense=f.int("first_k_dense_replace", default=0, lo=0),
                                             step=1) if f.int("moe_layer_freq", default=1) == 1 else
                                 tuple(i >= f.int("first_k_dense_replace", default=0, lo=0) and i % f.int("moe_layer_freq") == 0
                                       for i in range(layers)),
                                 "deepseek", shared_intermediate_size=f.int("n_shared_experts", default=0, lo=0) * moe_i,
                                 score_correction_bias=f.get("topk_method") == "noaux_tc")
        out["num_mtp_layers"] = f.int("num_nextn_predict_layers", default=0, lo=0)
        out["qkv_bias"] = out["o_bias"] = False
    elif family == "multimodal":
        out["vision"] = _vision_spec(arch, config, where)
        if arch == "Qwen2_5_VLForConditionalGeneration":
            out["qkv_bias"], out["o_bias"] = True, False
        elif arch == "Gemma3ForConditionalGeneration":
            out["qk_norm"] = True
            out["norms_per_layer"] = 4
            out["tie_word_embeddings"] = f.bool("tie_word_embeddings", default=True)
        elif arch == "Llama4ForConditionalGeneration":
            e = f.int("num_local_experts")
            dense_i = f.int("intermediate_size_mlp")
            step = f.int("interleave_moe_layer_step", default=1)
            out["moe"] = MoESpec(e, f.int("num_experts_per_tok"), f.int("intermediate_size"),
                                 _moe_layers(layers, step=step, explicit=f.get("moe_layers"), where=where), "llama4",
                                 shared_intermediate_size=f.int("intermediate_size"))
            out["intermediate_size"] = dense_i
            out["qk_norm"] = False  # Llama-4 QK norm is a weightless L2 norm
        if arch == "LlavaForConditionalGeneration" and lm == "qwen2":
            out["qkv_bias"], out["o_bias"] = True, False  # Qwen2 LM inside Llava: bias on q/k/v
        if lm not in ("", "llama", "mistral", "qwen2_5_vl", "qwen2", "gemma3_text", "gemma3", "llama4_text", "llama4",
                      "mistral3", "pixtral", "llava"):
            notes.append(f"text model_type {lm!r} inside {arch} is sized as a Llama-style decoder")
    elif family == "hybrid":
        # FFN side of the hybrids (the mixers and their state are ssm.py's)
        if arch == "Qwen3NextForCausalLM":
            out["qk_norm"] = True
            out["attn_output_gate"] = True
            sh = f.int("shared_expert_intermediate_size", default=0, lo=0)
            out["moe"] = MoESpec(f.int("num_experts"), f.int("num_experts_per_tok"), f.int("moe_intermediate_size"),
                                 _moe_layers(layers, step=f.int("decoder_sparse_step", default=1),
                                             only_dense=f.get("mlp_only_layers"), where=where),
                                 "qwen", shared_intermediate_size=sh, shared_expert_gate=sh > 0)
        elif arch == "GraniteMoeHybridForCausalLM":
            e = f.int("num_local_experts", default=0, lo=0)
            sh = f.int("shared_intermediate_size", default=0, lo=0)
            if e:
                out["moe"] = MoESpec(e, f.int("num_experts_per_tok"), f.int("intermediate_size"), (True,) * layers,
                                     "granite", shared_intermediate_size=sh)
            elif sh:
                out["intermediate_size"] = sh  # dense granite-4.0: the shared MLP is the FFN
        elif arch == "JambaForCausalLM":
            e = f.int("num_experts", default=1)
            period, offset = f.int("expert_layer_period", default=2), f.int("expert_layer_offset", default=1, lo=0)
            if e > 1:
                out["moe"] = MoESpec(e, f.int("num_experts_per_tok", default=2), f.int("intermediate_size"),
                                     tuple(i % period == offset for i in range(layers)), "jamba")
        elif arch == "NemotronHForCausalLM":
            out["mlp_gated"] = False  # relu^2 up/down MLP on the "-" layers only
            if f.int("n_routed_experts", default=0, lo=0):
                raise ConfigError(
                    f"{where}: Nemotron-H with MoE layers (n_routed_experts, 'E' in hybrid_override_pattern) "
                    "is not modelled: its non-gated relu^2 experts are not in vllm-fit's inventory",
                    "vllm-fit plans the dense Nemotron-H variants; it refuses rather than size MoE layers as dense.",
                )
    elif arch == "GemmaForCausalLM":
        out["tie_word_embeddings"] = f.bool("tie_word_embeddings", default=True)
    elif family == "gemma":
        # gemma2.py / gemma3.py: input, post-attention, pre- and post-FFN norms;
        # the head is the (tied) embedding; Gemma-3 adds q/k RMSNorm.
        out["norms_per_layer"] = 4
        out["tie_word_embeddings"] = f.bool("tie_word_embeddings", default=True)
        out["qk_norm"] = arch == "Gemma3ForCausalLM"
    out["notes"] = tuple(notes)
    return out


def spec_from_config(config: dict[str, Any], name: str, source: str = "",
                     provenance: dict[str, Any] | None = None) -> ModelSpec:
    where = f"config of {name}"
    arch = _architecture(config, where)
    text = config.get("text_config")
    if text is not None and not isinstance(text, dict):
        raise ConfigError(f"{where}: text_config must be an object")
    text = text or {}
    if arch not in ARCHITECTURES:
        if arch in PLANNED_ARCHITECTURES:
            raise ConfigError(
                f"{name} is a {arch}: recognised, but its layers are not modelled yet; vllm-fit refuses "
                "rather than guess it as a dense model",
                "Families modelled: " + ", ".join(sorted({fam for fam, _ in ARCHITECTURES.values()})) + ".",
            )
        raise ConfigError(
            f"unknown architecture {arch!r} in {name}: vllm-fit does not know its layers and will not "
            "assume a dense Llama-like model"[:240],
            "Known architectures: " + ", ".join(sorted(ARCHITECTURES)) + ".",
        )
    family = ARCHITECTURES[arch][0]
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
    # Gemma-3 hub files list only non-default text keys: Gemma3TextConfig defaults apply
    gemma3 = arch in ("Gemma3ForConditionalGeneration", "Gemma3ForCausalLM")
    vocab = f.int("vocab_size", hi=MAX_VOCAB, default=262208 if gemma3 else None)
    max_pos = f.int("max_position_embeddings", "n_positions", "max_seq_len", hi=MAX_POSITIONS,
                    default=131072 if gemma3 else None)
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
    qk_norm_x = arch == "Qwen3ForCausalLM"
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

    # Per-layer attention kinds, sliding window, chunked local attention and
    # the Mamba state: layer_kinds.py / ssm.py (as vLLM's model files decide).
    layout = attention_layout(arch, f.get, layers, where)
    kinds, window = list(layout.kinds), layout.sliding_window
    notes.extend(layout.notes)
    recurrent = any(k in ("mamba", "linear_attention") for k in kinds)
    mamba = mamba_from_config(arch, f.get, hidden, where) if arch in HYBRID_ARCHITECTURES and recurrent else None

    quant = _quant(config, text, where)
    extras = _family_extras(arch, family, f, config, text, where, layers, hidden, heads, model_type)
    intermediate = extras.pop("intermediate_size", intermediate)
    if extras.get("head_dim"):
        head_dim = extras.pop("head_dim")
    else:
        extras.pop("head_dim", None)
    mlp_gated = extras.pop("mlp_gated", mlp_gated)
    for k in ("qkv_bias", "o_bias", "qk_norm", "tie_word_embeddings"):
        if k in extras:
            v = extras.pop(k)
            if k == "qkv_bias":
                qkv_bias = v
            elif k == "o_bias":
                o_bias = v
            elif k == "qk_norm":
                qk_norm_x = v
            else:
                tie = v
    notes.extend(extras.pop("notes", ()))
    if extras.get("mla") is not None and rope is not None:
        # deepseek_v2.py: RoPE covers only the qk_rope_head_dim part of each head
        rope = RopeSpec(extras["mla"].qk_rope_head_dim, rope.cache_positions, rope.scaling_type)
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
        qk_norm=qk_norm_x,
        learned_positions=learned,
        word_embed_proj_dim=proj_dim,
        layer_kinds=tuple(kinds),
        sliding_window=window,
        attention_chunk_size=layout.attention_chunk_size,
        mamba=mamba,
        quantization=quant,
        family=family,
        **extras,
        source=source,
        provenance=provenance or {},
        notes=tuple(notes),
    )
