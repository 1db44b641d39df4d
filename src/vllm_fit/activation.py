"""The profile run's peak: what "torch peak memory increase" measures.

vLLM's ``profile_run`` (vllm/v1/worker/gpu_model_runner.py) runs the model over
``max_num_batched_tokens`` (T) dummy tokens split into R = min(max_num_seqs, T)
requests, keeps ``hidden_states`` [T, H] alive, then (last PP stage only) runs
the dummy sampler on R rows of logits over the vocabulary V with top-k and
top-p set.  The peak is the larger of the forward pass and the sampler phase,
plus allocations the run keeps (cuBLAS workspace, PP intermediate tensors).
"""

from __future__ import annotations

from dataclasses import dataclass

from .calibration import PROFILE_KEPT_BYTES
from .model_spec import ModelSpec
from .units import next_power_of_2
from .versions import VersionRules


@dataclass(frozen=True)
class ActivationEstimate:
    total_bytes: int
    sampler_bytes: int
    sampler_phase_bytes: int
    forward_phase_bytes: int
    kept_bytes: int
    sampler_path: str
    num_sampler_requests: int
    notes: tuple[str, ...] = ()

    @property
    def dominant(self) -> str:
        return "sampler" if self.sampler_phase_bytes >= self.forward_phase_bytes else "forward"


def sampler_bytes(path: str, r: int, v: int, logits_bytes: int, sms: int) -> int:
    """Peak bytes of the dummy sampler over R x V logits ([2.2]).

    * sort (v0.11 without flashinfer, v0.12-0.16): model-dtype logits + fp32
      copy + ``sort`` (fp32 values, int64 indices and 20 bytes/elem of sort
      temporaries) = (b + 36) R V  [measured on H100 in the reference].
    * triton (v0.17-0.20): logits + fp32 copy + softmax + q = (b + 12) R V,
      plus a kept fp32 scratch of min(next_pow2(min(SMs, R)), SMs) x V.
      The fp32 copy is paid even for fp32 logits: the 0.19 fp32 Llama-3.1-8B
      log (2.21 GiB) needs 16 R V where 12 would give 1.83 GiB.
    * flashinfer (v0.22+ on CUDA): logits + fp32 copy + top-k-masked logits +
      softmax = (b + 12) R V.
    * v2-logits (Model Runner V2, 0.22-0.32): b R V.  V2 in 0.33 adds an fp32
      copy and FlashInfer/Triton top-k/top-p: taken as the flashinfer path.
    """
    rv = r * v
    if path == "sort":
        return (logits_bytes + 36) * rv
    if path == "triton":
        if r < 8:  # apply_top_k_top_p falls back to the sort path for R < 8
            return (logits_bytes + 36) * rv
        scratch_rows = min(next_power_of_2(min(sms, r)), sms)
        return (logits_bytes + 12) * rv + 4 * scratch_rows * v
    if path == "flashinfer":
        return (logits_bytes + 12) * rv
    if path == "v2-logits":
        # Model Runner V2, 0.22-0.32: one sampler call on unprocessed logits;
        # only the model-dtype [R, V] logits are live (gumbel scratch is [R, V/1024]).
        return logits_bytes * rv
    raise ValueError(path)


FUSED_MOE_CHUNK_TOKENS = 32768  # envs.VLLM_FUSED_MOE_CHUNK_SIZE default (fused_moe.py chunks M by it)


def moe_forward_bytes(spec: ModelSpec, tokens: int, tp: int, dtype_bytes: int, ep_size: int = 1) -> int:
    """Live set of one MoE layer at T tokens (vllm/model_executor/layers/fused_moe/fused_moe.py).

    fused_experts_impl allocates, per chunk of M = min(T, 32768) tokens, one buffer of
    M*k*max(N, H) (intermediate caches 1 and 3 share it; N = 2I/tp, or 2I with EP) and
    cache 2 of M*k*N/2, next to the four [T, H] residual/hidden/normed/output tensors,
    the fp32 router logits [T, E] and the shared experts' gate_up/act outputs.
    """
    moe = spec.moe
    if moe is None:
        return 0
    h = spec.hidden_size
    m = min(tokens, FUSED_MOE_CHUNK_TOKENS)
    inter = moe.intermediate_size if ep_size > 1 else -(-moe.intermediate_size // tp)
    k = moe.top_k
    caches = m * k * (max(2 * inter, h) + inter) * dtype_bytes
    shared = tokens * 3 * -(-moe.shared_intermediate_size // tp) * dtype_bytes
    router = tokens * moe.num_experts * 4 + tokens * k * 8
    return tokens * 4 * h * dtype_bytes + caches + shared + router


def forward_peak_bytes(spec: ModelSpec, tokens: int, tp: int, dtype_bytes: int, ep_size: int = 1) -> int:
    """Largest live set inside one decoder layer at T tokens (per rank).

    Dense gated MLP: gate_up output [T, 2I/tp] + activation output [T, I/tp]
    + four [T, H] tensors (residual, hidden, normed input, layer output).
    Attention: qkv [T, (q + 2kv)/tp] + attention output [T, q/tp] + four [T, H].
    torch.compile may fuse some of these; this is the unfused bound, which
    matched the 0.19 PP first-stage logs to about 0.1 GiB.
    """
    h = spec.hidden_size
    inter = spec.intermediate_size // tp
    mlp = (3 * inter if spec.mlp_gated else 2 * inter) + 4 * h
    kv = max(1, spec.num_kv_heads // tp) * spec.head_dim
    q = spec.q_size // tp
    attn = (q + 2 * kv) + q + 4 * h
    if spec.mla is not None:
        # MLA: q [T, heads/tp * (nope + rope)], latent kv_a [T, kv_lora + rope], the
        # decompressed k/v of kv_b_proj [T, heads/tp * (nope + v)] and the output
        mla = spec.mla
        heads = spec.num_attention_heads // tp
        attn = heads * mla.qk_head_dim + (mla.kv_lora_rank + mla.qk_rope_head_dim) + \
            heads * (mla.qk_nope_head_dim + mla.v_head_dim) + heads * mla.v_head_dim + 4 * h
    dense = tokens * dtype_bytes * max(mlp if spec.intermediate_size else 0, attn)
    return max(dense, moe_forward_bytes(spec, tokens, tp, dtype_bytes, ep_size))


@dataclass(frozen=True)
class EncoderProfile:
    """The multimodal encoder's dummy run in profile_run ([2.5])."""

    budget_tokens: int  # encoder budget (min of compute budget and cache size)
    items: int  # maximum-size items profiled in one batch
    encoder_phase_bytes: int  # vision tower peak while encoding them
    cache_bytes: int  # encoder outputs kept in encoder_cache through the LM and sampler runs


def encoder_profile(spec: ModelSpec, rules: VersionRules, *, max_num_batched_tokens: int, max_num_seqs: int,
                    max_model_len: int, dtype_bytes: int, limit_per_prompt: int | None = None,
                    skip: bool = False, chunked_prefill: bool = True) -> EncoderProfile | None:
    """vllm/v1/worker/utils.py MultiModalBudget + gpu_model_runner.profile_run (one image modality).

    budget = max(max_num_batched_tokens, P) for P LM tokens per maximum-size image;
    items = max(1, min(budget // P, max_num_seqs * max(1, min(limit, max_model_len // P))));
    the tower runs once on all items.  v0.11-0.12 expand each item's output to
    [budget, hidden] with new_zeros before caching it; later versions cache it as is.
    """
    v = spec.vision
    if v is None or skip or v.tokens_per_item <= 0:
        return None
    limit = 999 if limit_per_prompt is None else limit_per_prompt  # V1 default per modality
    if limit == 0:
        return None
    p = v.tokens_per_item
    budget = max(max_num_batched_tokens, p)
    reqs = max_num_seqs if chunked_prefill else min(max_num_seqs, max_num_batched_tokens // p)
    items = max(1, min(budget // p, reqs * max(1, min(limit, max_model_len // p))))
    seq = items * v.patches_per_item
    hv, iv = v.hidden_size, v.intermediate_size
    gated = v.kind in ("pixtral", "qwen2_5_vl")
    layer = seq * dtype_bytes * (4 * hv + (3 * iv if gated else 2 * iv))
    attn = seq * dtype_bytes * (4 * hv + 3 * hv)
    h = spec.hidden_size
    out_rows = items * (budget if rules.minor <= 12 else p)
    cache = out_rows * h * dtype_bytes
    # the tower's largest layer + the projected outputs being assembled
    return EncoderProfile(budget, items, max(layer, attn) + items * p * h * dtype_bytes, cache)


def estimate_activation(
    spec: ModelSpec,
    rules: VersionRules,
    *,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    tp: int,
    is_first_stage: bool,
    is_last_stage: bool,
    dtype_bytes: int,
    sms: int,
    sampler_path: str,
    ep_size: int = 1,
    encoder: EncoderProfile | None = None,
) -> ActivationEstimate:
    t = max_num_batched_tokens
    r = min(max_num_seqs, t)
    h = spec.hidden_size
    v = spec.vocab_size
    notes: list[str] = []
    forward = forward_peak_bytes(spec, t, tp, dtype_bytes, ep_size)
    kept = PROFILE_KEPT_BYTES
    cache = 0
    if encoder is not None and is_first_stage:
        # The LM dummy run takes inputs_embeds [T, H] while the encoder cache is alive;
        # the cache is cleared only after the sampler run.
        cache = encoder.cache_bytes
        forward = max(forward + cache + t * h * dtype_bytes, encoder.encoder_phase_bytes)
        notes.append(f"multimodal encoder profiled with {encoder.items} maximum-size item(s), "
                     f"budget {encoder.budget_tokens} tokens")
    if not (is_first_stage and is_last_stage):
        # PP: hidden + residual [T, H] cross every stage boundary: the stage's
        # output IntermediateTensors (non-last stages) or the buffer that
        # make_empty_intermediate_tensors keeps (non-first stages).  The 0.19
        # Llama-3.1-8B PP2/PP4 logs show +0.12 GiB on every stage, not twice.
        kept += 2 * t * h * dtype_bytes
    s_bytes = 0
    s_phase = 0
    if is_last_stage:
        s_bytes = sampler_bytes(sampler_path, r, v, dtype_bytes, sms)
        # hidden_states [T, H] stays referenced; the R gathered rows and their
        # rand_like copy add 2 R H.
        s_phase = s_bytes + t * h * dtype_bytes + 2 * r * h * dtype_bytes + cache
    total = max(forward, s_phase) + kept
    return ActivationEstimate(
        total_bytes=total,
        sampler_bytes=s_bytes,
        sampler_phase_bytes=s_phase,
        forward_phase_bytes=forward,
        kept_bytes=kept,
        sampler_path=sampler_path if is_last_stage else "none (not the last PP stage)",
        num_sampler_requests=r if is_last_stage else 0,
        notes=tuple(notes),
    )
