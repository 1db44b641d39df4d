"""Weight bytes per GPU, as vLLM's "Model loading took X GiB" reports them.

A model is an inventory of tensors (name, shape, storage dtype), either read
from the safetensors headers of a local checkpoint or derived from the config
with the Hugging Face tensor names.  Each tensor is then placed the way vLLM's
layers place it on a rank:

* ``VocabParallelEmbedding`` / ``ParallelLMHead``: rows padded to a multiple of
  64, then split by TP (``vocab_parallel_embedding.py``);
* ``ColumnParallelLinear`` (q, gate/up, fc1): output rows split by TP;
  K/V rows split by TP, or one head per rank when KV heads < TP
  (``QKVParallelLinear``: replicated heads);
* ``RowParallelLinear`` (o, down, fc2): input columns split, bias replicated;
* norms, rotary cos/sin cache, learned positions: replicated.

Quantized storage (FP8 weights and their float32 scales) keeps its dtype; every
other floating tensor takes the serving dtype (``--dtype``).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .model_spec import DTYPE_BYTES, ModelSpec
from .units import round_up

VOCAB_PADDING = 64  # vllm/model_executor/layers/vocab_parallel_embedding.py DEFAULT_VOCAB_PADDING_SIZE

SAFETENSORS_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "U16": 2, "U32": 4, "U64": 8,
}
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype name ("BF16", "F8_E4M3", ...)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


class ParallelError(Exception):
    """A TP/PP layout vLLM rejects while building the model (AssertionError)."""

    def __init__(self, message: str, kind: str = "invalid_parallel_config"):
        super().__init__(message)
        self.message = message
        self.kind = kind


# ---------------------------------------------------------------- inventory

def _ckpt_dtype(spec: ModelSpec) -> str:
    return {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}[spec.dtype]


def inventory_from_config(spec: ModelSpec) -> list[Tensor]:
    """The checkpoint's tensors, derived from the config (HF names)."""
    d = _ckpt_dtype(spec)
    h, i, v = spec.hidden_size, spec.intermediate_size, spec.vocab_size
    out: list[Tensor] = []
    quant = spec.quantization
    fp8 = quant is not None and quant.method in ("fp8", "compressed-tensors-fp8")

    def linear(name: str, n_out: int, n_in: int, bias: bool) -> None:
        if fp8 and not _ignored(name, quant.ignore):
            out.append(Tensor(f"{name}.weight", (n_out, n_in), "F8_E4M3"))
            if quant.weight_strategy == "channel":
                out.append(Tensor(f"{name}.weight_scale", (n_out, 1), "F32"))
            elif quant.weight_strategy == "block" and quant.block_size:
                bn, bk = quant.block_size
                out.append(Tensor(f"{name}.weight_scale_inv", (-(-n_out // bn), -(-n_in // bk)), "F32"))
            else:
                out.append(Tensor(f"{name}.weight_scale", (), "F32"))
        else:
            out.append(Tensor(f"{name}.weight", (n_out, n_in), d))
        if bias:
            out.append(Tensor(f"{name}.bias", (n_out,), d))

    def norm(name: str, width: int) -> None:
        out.append(Tensor(f"{name}.weight", (width,), d))
        if spec.norm_bias:
            out.append(Tensor(f"{name}.bias", (width,), d))

    emb_dim = spec.word_embed_proj_dim or h
    if spec.architecture == "OPTForCausalLM":
        pre = "model.decoder"
        out.append(Tensor(f"{pre}.embed_tokens.weight", (v, emb_dim), d))
        out.append(Tensor(f"{pre}.embed_positions.weight", (spec.learned_positions, h), d))
        if spec.word_embed_proj_dim:
            out.append(Tensor(f"{pre}.project_in.weight", (h, emb_dim), d))
            out.append(Tensor(f"{pre}.project_out.weight", (emb_dim, h), d))
        for n in range(spec.num_layers):
            p = f"{pre}.layers.{n}"
            for proj in ("q_proj", "k_proj", "v_proj"):
                linear(f"{p}.self_attn.{proj}", h, h, spec.qkv_bias)
            linear(f"{p}.self_attn.out_proj", h, h, spec.o_bias)
            norm(f"{p}.self_attn_layer_norm", h)
            linear(f"{p}.fc1", i, h, spec.mlp_bias)
            linear(f"{p}.fc2", h, i, spec.mlp_bias)
            norm(f"{p}.final_layer_norm", h)
        if not spec.word_embed_proj_dim:
            norm(f"{pre}.final_layer_norm", h)
        if not spec.tie_word_embeddings:
            out.append(Tensor("lm_head.weight", (v, emb_dim), d))
        return out

    out.append(Tensor("model.embed_tokens.weight", (v, h), d))
    fused = spec.architecture == "Phi3ForCausalLM"
    for n in range(spec.num_layers):
        p = f"model.layers.{n}"
        if fused:
            linear(f"{p}.self_attn.qkv_proj", spec.q_size + 2 * spec.kv_size, h, spec.qkv_bias)
        else:
            linear(f"{p}.self_attn.q_proj", spec.q_size, h, spec.qkv_bias)
            linear(f"{p}.self_attn.k_proj", spec.kv_size, h, spec.qkv_bias)
            linear(f"{p}.self_attn.v_proj", spec.kv_size, h, spec.qkv_bias)
        linear(f"{p}.self_attn.o_proj", h, spec.q_size, spec.o_bias)
        if spec.qk_norm:
            norm(f"{p}.self_attn.q_norm", spec.head_dim)
            norm(f"{p}.self_attn.k_norm", spec.head_dim)
        if fused:
            linear(f"{p}.mlp.gate_up_proj", 2 * i, h, spec.mlp_bias)
        else:
            linear(f"{p}.mlp.gate_proj", i, h, spec.mlp_bias)
            linear(f"{p}.mlp.up_proj", i, h, spec.mlp_bias)
        linear(f"{p}.mlp.down_proj", h, i, spec.mlp_bias)
        norm(f"{p}.input_layernorm", h)
        norm(f"{p}.post_attention_layernorm", h)
    norm("model.norm", h)
    if not spec.tie_word_embeddings:
        out.append(Tensor("lm_head.weight", (v, h), d))
    return out


def _ignored(name: str, ignore: tuple[str, ...]) -> bool:
    for pat in ignore:
        if pat.startswith("re:"):
            if re.match(pat[3:], name):
                return True
        elif name == pat or name.endswith("." + pat) or name.startswith(pat + "."):
            return True
    return False


def read_safetensors_headers(folder: Path) -> list[Tensor] | None:
    """Tensor names, shapes and dtypes from the headers of *.safetensors files.

    Reads only the JSON header of each file (first 8 bytes = its length), as
    huggingface_hub's safetensors metadata helpers do for hub repos.
    """
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    tensors: list[Tensor] = []
    for f in files:
        try:
            with f.open("rb") as fh:
                raw = fh.read(8)
                if len(raw) != 8:
                    raise ConfigError(f"{f.name} is too short to be a safetensors file")
                (n,) = struct.unpack("<Q", raw)
                if n > 100 * 1024 * 1024:
                    raise ConfigError(f"{f.name}: safetensors header of {n} bytes is implausible")
                header = json.loads(fh.read(n).decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{f.name} has no readable safetensors header ({e.__class__.__name__})") from None
        if not isinstance(header, dict):
            raise ConfigError(f"{f.name}: safetensors header is not an object")
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if not isinstance(info, dict) or info.get("dtype") not in SAFETENSORS_DTYPE_BYTES:
                raise ConfigError(f"{f.name}: tensor {name[:80]!r} has no known dtype")
            shape = info.get("shape")
            if not isinstance(shape, list) or not all(isinstance(s, int) and 0 <= s < 1 << 40 for s in shape):
                raise ConfigError(f"{f.name}: tensor {name[:80]!r} has a bad shape")
            tensors.append(Tensor(name, tuple(shape), info["dtype"]))
    return tensors


# ---------------------------------------------------------------- placement

_LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_SCALE_RE = re.compile(r"(scale|scale_inv|zero_point|zeros|g_idx)$")


def _role(name: str) -> str:
    """How a checkpoint tensor is placed under TP (vLLM layer class)."""
    base = name.rsplit(".", 1)[0] if name.endswith((".weight", ".bias")) or _SCALE_RE.search(name) else name
    leaf = base.rsplit(".", 1)[-1]
    is_bias = name.endswith(".bias")
    if leaf in ("embed_tokens", "wte", "embed_in", "lm_head", "embed_out"):
        return "vocab"
    if leaf in ("q_proj",):
        return "col"
    if leaf in ("k_proj", "v_proj"):
        return "kv"
    if leaf == "qkv_proj":
        return "qkv"
    if leaf in ("gate_proj", "up_proj", "fc1", "gate_up_proj", "c_fc"):
        return "col"
    if leaf in ("o_proj", "out_proj", "down_proj", "fc2", "dense", "c_proj"):
        return "row_bias" if is_bias else "row"
    return "replicated"


@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    pp_rank: int
    start_layer: int
    end_layer: int

    @property
    def is_first(self) -> bool:
        return self.pp_rank == 0

    @property
    def is_last(self) -> bool:
        return self.pp_rank == self.pp - 1


def pp_partition(num_layers: int, pp: int) -> list[tuple[int, int]]:
    """Layer ranges per PP stage (vllm/distributed/utils.py get_pp_indices):
    an even split, the remainder going to the stages before the last one."""
    per = num_layers // pp
    parts = [per] * pp
    rem = num_layers % pp
    for k in range(2, rem + 2):
        parts[-k if k <= pp else 0] += 1
    out, start = [], 0
    for n in parts:
        out.append((start, start + n))
        start += n
    return out


def check_tensor_parallel(spec: ModelSpec, tp: int) -> None:
    """Raise ParallelError with vLLM's text in the order vLLM builds the model."""
    padded = round_up(spec.vocab_size, VOCAB_PADDING)
    # vllm/distributed/utils.py divide -> ensure_divisibility assertion.
    if padded % tp:
        raise ParallelError(f"AssertionError: {padded} is not divisible by {tp}")
    if spec.num_kv_heads >= tp:
        if spec.num_kv_heads % tp:
            raise ParallelError(f"AssertionError: {spec.num_kv_heads} is not divisible by {tp}")
    elif tp % spec.num_kv_heads:
        raise ParallelError(f"AssertionError: {tp} is not divisible by {spec.num_kv_heads}")
    if spec.intermediate_size % tp:
        raise ParallelError(f"AssertionError: {spec.intermediate_size} is not divisible by {tp}")


def kv_heads_per_rank(num_kv_heads: int, tp: int) -> int:
    return max(1, num_kv_heads // tp)


def rank_weight_bytes(spec: ModelSpec, tensors: list[Tensor], layout: Layout, serve_dtype: str) -> int:
    """Bytes one rank holds after loading (its PP stage, its TP shard)."""
    tp = layout.tp
    serve_bytes = DTYPE_BYTES[serve_dtype]
    kv_rows_rank = kv_heads_per_rank(spec.num_kv_heads, tp) * spec.head_dim
    total = 0
    for t in tensors:
        m = _LAYER_RE.search(t.name)
        role = _role(t.name)
        if m:
            idx = int(m.group(1))
            if not layout.start_layer <= idx < layout.end_layer:
                continue
        else:
            is_head = t.name.startswith("lm_head") or t.name.endswith("embed_out.weight")
            is_embed = role == "vocab" and not is_head
            if is_head:
                if not layout.is_last:
                    continue
            elif is_embed:
                # First stage; a tied head on the last stage of PP>1 loads its own copy.
                if not (layout.is_first or (layout.is_last and spec.tie_word_embeddings)):
                    continue
            elif "embed_positions" in t.name or "project_in" in t.name:
                if not layout.is_first:
                    continue
            elif not layout.is_last:  # final norm, project_out
                continue
        elem = SAFETENSORS_DTYPE_BYTES[t.dtype]
        if t.dtype in FLOAT_DTYPES and not _SCALE_RE.search(t.name.rsplit(".", 1)[-1]):
            elem = serve_bytes
        n = t.numel
        rows = t.shape[0] if t.shape else 1
        rest = n // rows if rows else 0
        if role == "vocab":
            padded = round_up(rows, VOCAB_PADDING)
            n = padded // tp * rest
        elif role == "col":
            n = rows // tp * rest if rows % tp == 0 else -(-rows // tp) * rest
        elif role == "kv":
            n = min(rows, kv_rows_rank) * rest if spec.num_kv_heads < tp else rows // tp * rest
        elif role == "qkv":
            q_rows = spec.q_size // tp
            n = (q_rows + 2 * kv_rows_rank) * rest if rows else n
        elif role == "row":
            if len(t.shape) >= 2:
                n = rows * (t.shape[1] // tp)
            # per-channel scales of row-parallel layers are not split
        total += n * elem
    # Rotary cos/sin cache: one per stage holding attention layers, in the
    # serving dtype ([cache_positions, rotary_dim], rotary_embedding/base.py).
    if spec.rope and layout.end_layer > layout.start_layer:
        total += spec.rope.cache_positions * spec.rope.rotary_dim * serve_bytes
    return total


def quantize_inventory_fp8(tensors: list[Tensor]) -> list[Tensor]:
    """Runtime ``--quantization fp8`` on a 16/32-bit checkpoint: every decoder
    Linear weight becomes float8 with one float32 scale per logical shard
    (vllm/model_executor/layers/quantization/fp8.py, Fp8LinearMethod); the
    embedding, lm_head and norms stay in the serving dtype."""
    out: list[Tensor] = []
    for t in tensors:
        role = _role(t.name)
        if t.name.endswith(".weight") and role in ("col", "kv", "qkv", "row") and len(t.shape) == 2 and t.dtype in FLOAT_DTYPES:
            out.append(Tensor(t.name, t.shape, "F8_E4M3"))
            out.append(Tensor(t.name[: -len("weight")] + "weight_scale", (), "F32"))
        else:
            out.append(t)
    return out
