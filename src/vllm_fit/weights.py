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


_QUANT_SCALE_DTYPE = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}


def _quantized_linear(out: list[Tensor], name: str, n_out: int, n_in: int, spec: ModelSpec, d: str) -> bool:
    """Append the checkpoint tensors of one quantized Linear; False when it stays 16-bit."""
    q = spec.quantization
    if q is None or _ignored(name, q.ignore) or q.method == "mxfp4":
        return False  # MXFP4 covers only the experts (gpt-oss modules_to_not_convert)
    m = q.method
    if m in ("fp8", "compressed-tensors-fp8", "modelopt-fp8"):
        out.append(Tensor(f"{name}.weight", (n_out, n_in), "F8_E4M3"))
        if q.weight_strategy == "channel":
            out.append(Tensor(f"{name}.weight_scale", (n_out, 1), "F32"))
        elif q.weight_strategy == "block" and q.block_size:
            bn, bk = q.block_size
            out.append(Tensor(f"{name}.weight_scale_inv", (-(-n_out // bn), -(-n_in // bk)), "F32"))
        else:
            out.append(Tensor(f"{name}.weight_scale", (), "F32"))
        return True
    if m == "compressed-tensors-int8":
        # compressed_tensors_w8a8_int8.py: int8 weight, fp32 scale per output channel (or one per tensor)
        out.append(Tensor(f"{name}.weight", (n_out, n_in), "I8"))
        out.append(Tensor(f"{name}.weight_scale", (n_out, 1) if q.weight_strategy == "channel" else (), "F32"))
        if q.zero_point:
            out.append(Tensor(f"{name}.weight_zero_point", (n_out, 1), "I8"))
        return True
    scale_d = _QUANT_SCALE_DTYPE.get(spec.dtype, "F16")
    g = q.group_size or n_in  # per-channel = one group spanning K
    groups = -(-n_in // g)
    if m == "compressed-tensors-wna16":
        # compressed_tensors_wNa16.py: weight_packed int32 [N, K*b/32], scale [N, K/g], weight_shape [2]
        out.append(Tensor(f"{name}.weight_packed", (n_out, n_in * q.weight_bits // 32), "I32"))
        out.append(Tensor(f"{name}.weight_scale", (n_out, groups), scale_d))
        out.append(Tensor(f"{name}.weight_shape", (2,), "I64"))
        if q.zero_point:
            out.append(Tensor(f"{name}.weight_zero_point", (-(-n_out * q.weight_bits // 32), groups), "I32"))
        if q.desc_act:
            out.append(Tensor(f"{name}.weight_g_idx", (n_in,), "I32"))
        return True
    if m == "gptq":
        # gptq.py / gptq_marlin.py: qweight [K*b/32, N], qzeros [K/g, N*b/32], scales [K/g, N], g_idx [K]
        out.append(Tensor(f"{name}.qweight", (n_in * q.weight_bits // 32, n_out), "I32"))
        out.append(Tensor(f"{name}.qzeros", (groups, -(-n_out * q.weight_bits // 32)), "I32"))
        out.append(Tensor(f"{name}.scales", (groups, n_out), scale_d))
        out.append(Tensor(f"{name}.g_idx", (n_in,), "I32"))
        return True
    if m == "awq":
        # awq.py: qweight [K, N*b/32], qzeros [K/g, N*b/32], scales [K/g, N]
        out.append(Tensor(f"{name}.qweight", (n_in, n_out * q.weight_bits // 32), "I32"))
        out.append(Tensor(f"{name}.qzeros", (groups, n_out * q.weight_bits // 32), "I32"))
        out.append(Tensor(f"{name}.scales", (groups, n_out), scale_d))
        return True
    if m == "bitsandbytes-4bit":
        # bitsandbytes.py: packed uint8 [N*K/2, 1] + quant state: absmax per 64 values
        # (uint8 with a float32 absmax per 256 of them when double-quantized)
        n = n_out * n_in
        out.append(Tensor(f"{name}.weight", (n // 2, 1), "U8"))
        if q.double_quant:
            out.append(Tensor(f"{name}.weight.absmax", (n // 64,), "U8"))
            out.append(Tensor(f"{name}.weight.nested_absmax", (-(-n // (64 * 256)),), "F32"))
        else:
            out.append(Tensor(f"{name}.weight.absmax", (n // 64,), "F32"))
        return True
    if m == "bitsandbytes-8bit":
        out.append(Tensor(f"{name}.weight", (n_out, n_in), "I8"))
        out.append(Tensor(f"{name}.SCB", (n_out,), "F32"))
        return True
    if m in ("compressed-tensors-nvfp4", "modelopt_fp4"):
        # NVFP4: two E2M1 values per byte, one FP8 E4M3 scale per 16, fp32 global scales
        gs = q.group_size or 16
        out.append(Tensor(f"{name}.weight", (n_out, n_in // 2), "U8"))
        out.append(Tensor(f"{name}.weight_scale", (n_out, -(-n_in // gs)), "F8_E4M3"))
        out.append(Tensor(f"{name}.weight_global_scale", (1,), "F32"))
        out.append(Tensor(f"{name}.input_global_scale", (1,), "F32"))
        return True
    raise ConfigError(f"{spec.name}: weight format {m} has no tensor layout in vllm-fit")


def _stacked_expert(out: list[Tensor], name: str, e: int, n_out: int, n_in: int, spec: ModelSpec, d: str) -> None:
    """One stacked expert projection [E, N, K] (quantized like a Linear, with a leading expert dim)."""
    tmp: list[Tensor] = []
    if not _quantized_linear(tmp, name, n_out, n_in, spec, d):
        tmp = [Tensor(f"{name}.weight", (n_out, n_in), d)]
    for t in tmp:
        out.append(Tensor(t.name, (e,) + t.shape, t.dtype))


def _vision_tensors(spec: ModelSpec, d: str, text_hidden: int) -> list[Tensor]:
    """Vision tower + projector in checkpoint form (all replicated or TP-split as vLLM builds them)."""
    v = spec.vision
    if v is None:
        return []
    out: list[Tensor] = []
    h, i, L, p, c = v.hidden_size, v.intermediate_size, v.num_layers, v.patch_size, v.num_channels

    def lin(name: str, n_out: int, n_in: int, bias: bool) -> None:
        out.append(Tensor(f"{name}.weight", (n_out, n_in), d))
        if bias:
            out.append(Tensor(f"{name}.bias", (n_out,), d))

    def norm(name: str, width: int, bias: bool) -> None:
        out.append(Tensor(f"{name}.weight", (width,), d))
        if bias:
            out.append(Tensor(f"{name}.bias", (width,), d))

    if v.kind == "pixtral":
        pre = "vision_tower"
        out.append(Tensor(f"{pre}.patch_conv.weight", (h, c, p, p), d))
        norm(f"{pre}.ln_pre", h, False)
        for n in range(L):
            q = f"{pre}.transformer.vis_layers.{n}"
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                lin(f"{q}.attention.{proj}", h, h, False)
            lin(f"{q}.feed_forward.gate_proj", i, h, False)
            lin(f"{q}.feed_forward.up_proj", i, h, False)
            lin(f"{q}.feed_forward.down_proj", h, i, False)
            norm(f"{q}.attention_norm", h, False)
            norm(f"{q}.ffn_norm", h, False)
        mp = "multi_modal_projector"
        if v.projector == "mistral3":
            norm(f"{mp}.norm", h, False)
            m = v.spatial_merge_size
            lin(f"{mp}.patch_merger.merging_layer", h, h * m * m, False)
        lin(f"{mp}.linear_1", text_hidden, h, v.projector_bias)
        lin(f"{mp}.linear_2", text_hidden, text_hidden, v.projector_bias)
    elif v.kind == "qwen2_5_vl":
        pre = "visual"
        out.append(Tensor(f"{pre}.patch_embed.proj.weight", (h, c, v.temporal_patch_size, p, p), d))
        for n in range(L):
            q = f"{pre}.blocks.{n}"
            norm(f"{q}.norm1", h, False)
            norm(f"{q}.norm2", h, False)
            lin(f"{q}.attn.qkv", 3 * h, h, True)
            lin(f"{q}.attn.proj", h, h, True)
            lin(f"{q}.mlp.gate_proj", i, h, True)
            lin(f"{q}.mlp.up_proj", i, h, True)
            lin(f"{q}.mlp.down_proj", h, i, True)
        m2 = h * v.spatial_merge_size ** 2
        norm(f"{pre}.merger.ln_q", h, False)
        lin(f"{pre}.merger.mlp.0", m2, m2, True)
        lin(f"{pre}.merger.mlp.2", v.out_hidden_size, m2, True)
    elif v.kind in ("clip", "siglip"):
        pre = "vision_tower.vision_model"
        side = v.image_size // p
        out.append(Tensor(f"{pre}.embeddings.patch_embedding.weight", (h, c, p, p), d))
        if v.kind == "clip":
            out.append(Tensor(f"{pre}.embeddings.class_embedding", (h,), d))
            out.append(Tensor(f"{pre}.embeddings.position_embedding.weight", (side * side + 1, h), d))
            norm(f"{pre}.pre_layrnorm", h, True)
        else:
            out.append(Tensor(f"{pre}.embeddings.patch_embedding.bias", (h,), d))
            out.append(Tensor(f"{pre}.embeddings.position_embedding.weight", (side * side, h), d))
        for n in range(L):
            q = f"{pre}.encoder.layers.{n}"
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                lin(f"{q}.self_attn.{proj}", h, h, True)
            norm(f"{q}.layer_norm1", h, True)
            norm(f"{q}.layer_norm2", h, True)
            lin(f"{q}.mlp.fc1", i, h, True)
            lin(f"{q}.mlp.fc2", h, i, True)
        if v.post_layernorm:
            norm(f"{pre}.post_layernorm", h, True)
        mp = "multi_modal_projector"
        if v.projector == "gemma3":
            out.append(Tensor(f"{mp}.mm_input_projection_weight", (h, text_hidden), d))
            norm(f"{mp}.mm_soft_emb_norm", h, False)
        else:
            lin(f"{mp}.linear_1", text_hidden, h, v.projector_bias)
            lin(f"{mp}.linear_2", text_hidden, text_hidden, v.projector_bias)
    elif v.kind == "llama4":
        pre = "vision_model"
        side = v.image_size // p
        lin(f"{pre}.patch_embedding.linear", h, c * p * p, False)
        out.append(Tensor(f"{pre}.class_embedding", (h,), d))
        out.append(Tensor(f"{pre}.positional_embedding_vlm", (side * side + 1, h), d))
        norm(f"{pre}.layernorm_pre", h, True)
        norm(f"{pre}.layernorm_post", h, True)
        for n in range(L):
            q = f"{pre}.model.layers.{n}"
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                lin(f"{q}.self_attn.{proj}", h, h, True)
            lin(f"{q}.mlp.fc1", i, h, True)
            lin(f"{q}.mlp.fc2", h, i, True)
            norm(f"{q}.input_layernorm", h, True)
            norm(f"{q}.post_attention_layernorm", h, True)
        # pixel-shuffle adapter: [h / ratio^2] -> projector dims (vision_config projector_*_dim)
        shuffled = h * 4
        lin(f"{pre}.vision_adapter.mlp.fc1", v.out_hidden_size, shuffled, False)
        lin(f"{pre}.vision_adapter.mlp.fc2", v.out_hidden_size, v.out_hidden_size, False)
        lin("multi_modal_projector.linear_1", text_hidden, v.out_hidden_size, False)
    return out


def inventory_from_config(spec: ModelSpec) -> list[Tensor]:
    """The checkpoint's tensors, derived from the config (HF names)."""
    d = _ckpt_dtype(spec)
    h, i, v = spec.hidden_size, spec.intermediate_size, spec.vocab_size
    out: list[Tensor] = []

    def linear(name: str, n_out: int, n_in: int, bias: bool) -> None:
        if not _quantized_linear(out, name, n_out, n_in, spec, d):
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

    lm = "language_model.model" if spec.family == "multimodal" else "model"
    out.append(Tensor(f"{lm}.embed_tokens.weight", (v, h), d))
    fused = spec.architecture == "Phi3ForCausalLM"
    moe = spec.moe
    kinds = spec.layer_kinds or ("full",) * spec.num_layers
    for n in range(spec.num_layers):
        p = f"{lm}.layers.{n}"
        kind = kinds[n] if n < len(kinds) else "full"
        if kind in ("mamba", "linear_attention"):
            from . import ssm  # 3A's module: the mixer weights of recurrent layers

            out.extend(ssm.mixer_tensors(spec, n, f"{p}.mixer", d))
        elif kind == "mlp":
            pass  # Nemotron-H MLP-only layer: no token mixer
        elif spec.mla is not None:
            mla = spec.mla
            nh = spec.num_attention_heads
            if mla.q_lora_rank:
                linear(f"{p}.self_attn.q_a_proj", mla.q_lora_rank, h, False)
                norm(f"{p}.self_attn.q_a_layernorm", mla.q_lora_rank)
                linear(f"{p}.self_attn.q_b_proj", nh * mla.qk_head_dim, mla.q_lora_rank, False)
            else:
                linear(f"{p}.self_attn.q_proj", nh * mla.qk_head_dim, h, False)
            linear(f"{p}.self_attn.kv_a_proj_with_mqa", mla.kv_lora_rank + mla.qk_rope_head_dim, h, False)
            norm(f"{p}.self_attn.kv_a_layernorm", mla.kv_lora_rank)
            linear(f"{p}.self_attn.kv_b_proj", nh * (mla.qk_nope_head_dim + mla.v_head_dim), mla.kv_lora_rank, False)
            linear(f"{p}.self_attn.o_proj", h, nh * mla.v_head_dim, False)
        else:
            if fused:
                linear(f"{p}.self_attn.qkv_proj", spec.q_size + 2 * spec.kv_size, h, spec.qkv_bias)
            else:
                linear(f"{p}.self_attn.q_proj", spec.q_size * (2 if spec.attn_output_gate else 1), h, spec.qkv_bias)
                linear(f"{p}.self_attn.k_proj", spec.kv_size, h, spec.qkv_bias)
                linear(f"{p}.self_attn.v_proj", spec.kv_size, h, spec.qkv_bias)
            linear(f"{p}.self_attn.o_proj", h, spec.q_size, spec.o_bias)
            if spec.qk_norm:
                norm(f"{p}.self_attn.q_norm", spec.head_dim)
                norm(f"{p}.self_attn.k_norm", spec.head_dim)
            if spec.attention_sinks:
                out.append(Tensor(f"{p}.self_attn.sinks", (spec.num_attention_heads,), d))
        has_ffn = kind == "mlp" if spec.architecture == "NemotronHForCausalLM" else True
        if moe is not None and moe.layers[n]:
            _moe_tensors(out, spec, p, linear, norm, d)
        elif i and has_ffn and not spec.mlp_gated:
            linear(f"{p}.mlp.up_proj", i, h, spec.mlp_bias)
            linear(f"{p}.mlp.down_proj", h, i, spec.mlp_bias)
        elif i and has_ffn:
            mp = f"{p}.feed_forward" if moe is not None and moe.style == "llama4" else f"{p}.mlp"
            if fused:
                linear(f"{mp}.gate_up_proj", 2 * i, h, spec.mlp_bias)
            else:
                linear(f"{mp}.gate_proj", i, h, spec.mlp_bias)
                linear(f"{mp}.up_proj", i, h, spec.mlp_bias)
            linear(f"{mp}.down_proj", h, i, spec.mlp_bias)
        norm(f"{p}.input_layernorm", h)
        norm(f"{p}.post_attention_layernorm", h)
        if spec.norms_per_layer == 4:
            norm(f"{p}.pre_feedforward_layernorm", h)
            norm(f"{p}.post_feedforward_layernorm", h)
    norm(f"{lm}.norm", h)
    if not spec.tie_word_embeddings:
        out.append(Tensor("language_model.lm_head.weight" if spec.family == "multimodal" else "lm_head.weight", (v, h), d))
    out.extend(_vision_tensors(spec, d, h))
    return out


def _moe_tensors(out: list[Tensor], spec: ModelSpec, p: str, linear, norm, d: str) -> None:
    """Router, routed experts (stacked [E, ...], vLLM's FusedMoE layout) and shared experts."""
    moe = spec.moe
    h, e, mi = spec.hidden_size, moe.num_experts, moe.intermediate_size
    if moe.style == "gpt-oss":
        mp = f"{p}.mlp"
        out.append(Tensor(f"{mp}.router.weight", (e, h), d))
        out.append(Tensor(f"{mp}.router.bias", (e,), d))
        # MXFP4 checkpoint: 16 bytes of FP4 pairs per 32-value block + one E8M0 scale per block
        out.append(Tensor(f"{mp}.experts.gate_up_proj_blocks", (e, 2 * mi, h // 32, 16), "U8"))
        out.append(Tensor(f"{mp}.experts.gate_up_proj_scales", (e, 2 * mi, h // 32), "U8"))
        out.append(Tensor(f"{mp}.experts.gate_up_proj_bias", (e, 2 * mi), d))
        out.append(Tensor(f"{mp}.experts.down_proj_blocks", (e, h, mi // 32, 16), "U8"))
        out.append(Tensor(f"{mp}.experts.down_proj_scales", (e, h, mi // 32), "U8"))
        out.append(Tensor(f"{mp}.experts.down_proj_bias", (e, h), d))
        return
    if moe.style == "mixtral":
        mp = f"{p}.block_sparse_moe"
        out.append(Tensor(f"{mp}.gate.weight", (e, h), d))
    elif moe.style in ("llama4", "jamba"):
        mp = f"{p}.feed_forward"
        out.append(Tensor(f"{mp}.router.weight", (e, h), d))
    elif moe.style == "granite":
        mp = f"{p}.block_sparse_moe"
        out.append(Tensor(f"{mp}.router.layer.weight", (e, h), d))
    else:
        mp = f"{p}.mlp"
        out.append(Tensor(f"{mp}.gate.weight", (e, h), d))
        if moe.score_correction_bias:
            out.append(Tensor(f"{mp}.gate.e_score_correction_bias", (e,), "F32"))
    _stacked_expert(out, f"{mp}.experts.w13", e, 2 * mi, h, spec, d)
    _stacked_expert(out, f"{mp}.experts.w2", e, h, mi, spec, d)
    if moe.shared_intermediate_size:
        si = moe.shared_intermediate_size
        sp = (f"{mp}.shared_expert" if moe.style in ("qwen", "llama4") else
              f"{p}.shared_mlp" if moe.style == "granite" else f"{mp}.shared_experts")
        linear(f"{sp}.gate_proj", si, h, False)
        linear(f"{sp}.up_proj", si, h, False)
        linear(f"{sp}.down_proj", h, si, False)
        if moe.shared_expert_gate:
            out.append(Tensor(f"{mp}.shared_expert_gate.weight", (1, h), d))


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
_EXPERT_RE = re.compile(r"\.experts\.(\d+)\.")
_SCALE_RE = re.compile(r"(scale|scale_inv|zero_point|zeros|g_idx|correction_bias|absmax|SCB)$")
# Parameter names a module owns (the last name component, or two for bnb quant state).
_PARAM_LEAVES = {
    "weight", "bias", "qweight", "qzeros", "scales", "g_idx", "weight_packed", "weight_scale", "weight_scale_inv",
    "weight_shape", "weight_zero_point", "weight_g_idx", "SCB", "weight_global_scale", "input_global_scale",
    "input_scale", "absmax", "nested_absmax",
}
_VISION_COL = {"q_proj", "k_proj", "v_proj", "qkv", "fc1", "gate_proj", "up_proj", "linear_1", "0"}
_VISION_ROW = {"o_proj", "out_proj", "proj", "fc2", "down_proj", "linear_2", "2"}
_VISION_PREFIXES = ("vision_tower.", "visual.", "vision_model.", "multi_modal_projector.", "vision_encoder.")


def _module(name: str) -> str:
    parts = name.split(".")
    while len(parts) > 1 and parts[-1] in _PARAM_LEAVES:
        parts.pop()
    return ".".join(parts)


def _role(name: str) -> str:
    """How a checkpoint tensor is placed under TP (vLLM layer class)."""
    base = _module(name)
    leaf = base.rsplit(".", 1)[-1]
    is_bias = name.endswith(".bias")
    if name.startswith(_VISION_PREFIXES):
        return "vision"
    if ".experts." in name or leaf == "experts":
        if leaf in ("w2", "down_proj") or ".down_proj" in name[len(base):] or "down_proj" in leaf:
            return "expert_row_bias" if is_bias or name.endswith("down_proj_bias") else "expert_row"
        return "expert_col"
    if leaf in ("embed_tokens", "wte", "embed_in", "lm_head", "embed_out"):
        return "vocab"
    if leaf in ("q_proj", "q_b_proj", "kv_b_proj"):
        return "col"
    if leaf in ("k_proj", "v_proj"):
        return "kv"
    if leaf == "qkv_proj":
        return "qkv"
    if leaf in ("gate_proj", "up_proj", "fc1", "gate_up_proj", "c_fc", "w1", "w3"):
        return "col"
    if leaf in ("o_proj", "out_proj", "down_proj", "fc2", "dense", "c_proj", "w2"):
        return "row_bias" if is_bias else "row"
    return "replicated"


@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    pp_rank: int
    start_layer: int
    end_layer: int
    ep_size: int = 1  # --enable-expert-parallel: experts spread over TP x DP ranks
    ep_rank: int = 0

    @property
    def is_first(self) -> bool:
        return self.pp_rank == 0

    @property
    def is_last(self) -> bool:
        return self.pp_rank == self.pp - 1


def local_experts(num_experts: int, ep_size: int, ep_rank: int) -> tuple[int, int]:
    """(first expert, count) on one EP rank: vllm/model_executor/layers/fused_moe/layer.py
    determine_expert_map gives the first E % ep ranks one extra expert."""
    base, rem = divmod(num_experts, ep_size)
    count = base + (1 if ep_rank < rem else 0)
    start = ep_rank * base + min(ep_rank, rem)
    return start, count


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


def check_tensor_parallel(spec: ModelSpec, tp: int, expert_parallel: bool = False) -> None:
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
    if spec.intermediate_size and spec.intermediate_size % tp and (spec.moe is None or not all(spec.moe.layers)):
        raise ParallelError(f"AssertionError: {spec.intermediate_size} is not divisible by {tp}")
    if spec.moe is not None and not expert_parallel and spec.quantization is None:
        # FusedMoE shards each expert's intermediate dim: divide(intermediate_size, tp)
        if spec.moe.intermediate_size % tp:
            raise ParallelError(f"AssertionError: {spec.moe.intermediate_size} is not divisible by {tp}")


def kv_heads_per_rank(num_kv_heads: int, tp: int) -> int:
    return max(1, num_kv_heads // tp)


def mxfp4_backend_for(capability: float) -> str:
    """vllm/model_executor/layers/quantization/mxfp4.py get_mxfp4_backend (0.11) on CUDA without
    the FlashInfer env opt-ins: the triton_kernels backend on SM90/SM100, Marlin below SM90."""
    return "triton" if capability >= 9.0 else "marlin"


def mxfp4_moe_layer_bytes(spec: ModelSpec, layout: Layout, backend: str = "triton") -> int:
    """One gpt-oss MoE layer's expert bytes on a rank after process_weights_after_loading.

    mxfp4.py create_weights: w13 [E, 2I', H/2] + w2 [E, H, I'/2] uint8 (two FP4 per byte),
    scales [E, 2I', H/32] + [E, H, I'/32] uint8, biases [E, 2I'] + [E, H] bf16, with
    I' = round_up(I/tp, 64) (Triton) or 128 and H -> round_up(H, 256) (Marlin).
    Triton backend: the biases become float32, the weights are swizzled in place (old
    ones deleted), but the swizzled scales (HopperMXScaleLayout: rows padded to a
    multiple of 2*num_warps*2*8 = 256) are new tensors and the loaded scale
    parameters stay registered, so scales are held twice (read in 0.11's
    quantization/mxfp4.py and 0.19's fused_moe/oracle/mxfp4.py; same in both).
    """
    moe = spec.moe
    h = spec.hidden_size
    if layout.ep_size > 1:
        _, e = local_experts(moe.num_experts, layout.ep_size, layout.ep_rank)
        i_rank = moe.intermediate_size
    else:
        e, i_rank = moe.num_experts, -(-moe.intermediate_size // layout.tp)
    if backend == "marlin":
        ip, hp = round_up(i_rank, 128), round_up(h, 256)
    else:
        ip, hp = round_up(i_rank, 64), h
    weights = e * 2 * ip * hp // 2 + e * hp * ip // 2
    scales = e * 2 * ip * (hp // 32) + e * hp * (ip // 32)
    if backend == "triton":
        swizzled = e * round_up(2 * ip, 256) * round_up(hp // 32, 2) + e * round_up(hp, 256) * round_up(ip // 32, 2)
        biases = 4 * e * (2 * ip + hp)
        return weights + scales + swizzled + biases
    return weights + scales + 2 * e * (2 * ip + hp)


def rank_weight_bytes(spec: ModelSpec, tensors: list[Tensor], layout: Layout, serve_dtype: str,
                      mxfp4_backend: str = "triton") -> int:
    """Bytes one rank holds after loading (its PP stage, its TP shard, its experts)."""
    tp = layout.tp
    serve_bytes = DTYPE_BYTES[serve_dtype]
    kv_rows_rank = kv_heads_per_rank(spec.num_kv_heads, tp) * spec.head_dim
    moe = spec.moe
    mxfp4 = spec.quantization is not None and spec.quantization.method == "mxfp4" and moe is not None
    ep = layout.ep_size > 1 and moe is not None
    ep_start, ep_count = local_experts(moe.num_experts, layout.ep_size, layout.ep_rank) if ep else (0, 0)
    total = 0
    for t in tensors:
        m = _LAYER_RE.search(t.name)
        role = _role(t.name)
        if role == "vision":
            if not layout.is_first:
                continue
        elif m:
            idx = int(m.group(1))
            if not layout.start_layer <= idx < layout.end_layer:
                continue  # also drops MTP layers (index >= num_hidden_layers)
        else:
            is_head = t.name.startswith("lm_head") or ".lm_head." in t.name or t.name.endswith("embed_out.weight")
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
        if role == "vision" and tp > 1:
            # vLLM's vision towers shard their attention/MLP linears like the LM (mm_encoder_tp_mode
            # "weights", the default); patch embeddings, position tables and norms are replicated.
            leaf = _module(t.name).rsplit(".", 1)[-1]
            is_bias = t.name.endswith(".bias")
            sharded = (leaf in _VISION_COL) or (leaf in _VISION_ROW and not is_bias and len(t.shape) == 2)
            elem = SAFETENSORS_DTYPE_BYTES[t.dtype] if t.dtype not in FLOAT_DTYPES else serve_bytes
            total += (-(-t.numel // tp) if sharded else t.numel) * elem
            continue
        if role.startswith("expert") and mxfp4:
            continue  # added per layer below, in vLLM's MXFP4 layout
        elem = SAFETENSORS_DTYPE_BYTES[t.dtype]
        if t.dtype in FLOAT_DTYPES and not _SCALE_RE.search(t.name.rsplit(".", 1)[-1]):
            elem = serve_bytes
        n = t.numel
        rows = t.shape[0] if t.shape else 1
        rest = n // rows if rows else 0
        if role.startswith("expert"):
            em = _EXPERT_RE.search(t.name)
            if ep:
                if em:  # one expert's tensor: on this rank or not
                    if not ep_start <= int(em.group(1)) < ep_start + ep_count:
                        continue
                elif t.shape and moe and t.shape[0] == moe.num_experts:
                    n = n // moe.num_experts * ep_count
            elif role != "expert_row_bias":
                n = -(-n // tp)
        elif role == "vocab":
            padded = round_up(rows, VOCAB_PADDING)
            n = padded // tp * rest
        elif role == "col":
            n = rows // tp * rest if rows % tp == 0 else -(-rows // tp) * rest
        elif role == "kv":
            # heads split by TP, or one head per rank when KV heads < TP (replicated); as a
            # fraction so that transposed quantized layouts (GPTQ/AWQ [K, N]) work too
            if spec.num_kv_heads < tp:
                n = n * kv_heads_per_rank(spec.num_kv_heads, tp) // spec.num_kv_heads
            else:
                n = -(-n // tp)
        elif role == "qkv":
            full = spec.q_size + 2 * spec.kv_size
            n = n * (spec.q_size // tp + 2 * kv_rows_rank) // full if full else n
        elif role == "row":
            if len(t.shape) >= 2 and t.shape[1] > 1:
                n = -(-n // tp)
            # per-channel scales of row-parallel layers are not split
        total += n * elem
    if mxfp4:
        moe_layers = sum(1 for i in range(layout.start_layer, layout.end_layer) if moe.layers[i])
        total += moe_layers * mxfp4_moe_layer_bytes(spec, layout, mxfp4_backend)
    if spec.mla is not None and spec.quantization is not None and spec.quantization.method not in ("mxfp4",):
        # MLA process_weights_after_loading (v1/attention/backends/mla/common.py): a quantized
        # kv_b_proj is dequantized once into a 16-bit [kv_lora, heads/tp * (nope + v)] copy
        # that W_UK / W_UV view for the whole run.
        mla = spec.mla
        if not _ignored("kv_b_proj", spec.quantization.ignore):
            per_layer = mla.kv_lora_rank * (spec.num_attention_heads // tp) * (mla.qk_nope_head_dim + mla.v_head_dim)
            total += (layout.end_layer - layout.start_layer) * per_layer * serve_bytes
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


def quantize_inventory_bnb4(tensors: list[Tensor]) -> list[Tensor]:
    """Runtime ``--quantization bitsandbytes`` on a 16-bit checkpoint: every decoder Linear
    becomes packed 4-bit NF4 with a float32 absmax per 64 values (bitsandbytes.py in-flight
    quantization); embeddings, lm_head and norms stay 16-bit."""
    out: list[Tensor] = []
    for t in tensors:
        role = _role(t.name)
        if t.name.endswith(".weight") and role in ("col", "kv", "qkv", "row") and len(t.shape) == 2 and t.dtype in FLOAT_DTYPES:
            n = t.numel
            out.append(Tensor(t.name, (n // 2, 1), "U8"))
            out.append(Tensor(t.name + ".absmax", (n // 64,), "F32"))
        else:
            out.append(t)
    return out
