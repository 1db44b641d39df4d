"""The memory plan: vLLM's start-up identity, term by term, per GPU.

    available KV = requested - weights - peak activation - non-torch
                   (- CUDA-graph estimate, vLLM 0.20+)

computed for every pipeline stage (TP ranks of a stage are identical), then
vLLM's block arithmetic (minimum over ranks) and its start-up checks in the
order vLLM runs them.  Pure data in, ``Plan`` out; nothing here prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from . import messages as msg
from .activation import ActivationEstimate, estimate_activation
from .calibration import (
    CUDAGRAPH_ACTUAL_MINUS_ESTIMATE_BYTES,
    CUDAGRAPH_FIRST_CAPTURE_BYTES,
    CUDAGRAPH_PER_GRAPH_BYTES,
    calibration_for,
)
from .engine import EngineSettings, resolve
from .errors import FlagError
from .gpus import GpuSpec
from .kv_cache import (
    ChunkedLocalAttentionSpec,
    FullAttentionSpec,
    KVCacheSpec,
    PACKED_KV_DTYPES,
    KVGroupingError,
    MambaSpec,
    MLAAttentionSpec,
    SlidingWindowSpec,
    KVCapacity,
    KVContext,
    KVLayout,
    capacity,
    estimate_max_model_len,
    group_layers,
    needed_bytes_one_request,
    num_blocks_for,
    project_to_worker,
    one_request_budget,
    packed_bytes_per_token,
)
from .model_spec import ModelSpec
from .ssm import state_page_bytes
from .serve_args import ServeArgs
from .units import GiB, MiB
from .versions import VersionRules, uses_v2_runner
from .weights import (
    Layout,
    ParallelError,
    Tensor,
    check_tensor_parallel,
    inventory_from_config,
    kv_heads_per_rank,
    pp_partition,
    mxfp4_backend_for,
    quantize_inventory_bnb4,
    quantize_inventory_fp8,
    rank_weight_bytes,
)

RECOMMENDATION_REDUNDANCY_BYTES = 150 * MiB  # gpu_worker.compile_or_warm_up_model
CUBLAS_HANDLES_BYTES = int(0.0664 * GiB)  # measured: shared/reference/gpu-measured.md (0.5809 - 0.5145 GiB)


@dataclass
class RankPlan:
    pp_rank: int
    layers: tuple[int, int]
    weights_bytes: int
    activation_bytes: int
    non_torch_bytes: int
    cudagraph_estimate_bytes: int
    cudagraph_subtracted_bytes: int
    kv_cache_bytes: int  # "Available KV cache memory" of this rank
    num_blocks: int  # before the minimum over ranks
    page_size_bytes: int
    bytes_per_block: int
    activation: ActivationEstimate
    kv_layout: KVLayout

    def to_dict(self) -> dict[str, Any]:
        g = lambda b: round(b / GiB, 4)  # noqa: E731
        return {
            "pp_rank": self.pp_rank,
            "layers": list(self.layers),
            "weights_gib": g(self.weights_bytes),
            "activation_gib": g(self.activation_bytes),
            "non_torch_gib": g(self.non_torch_bytes),
            "cudagraph_estimate_gib": g(self.cudagraph_estimate_bytes),
            "kv_cache_gib": g(self.kv_cache_bytes),
            "num_blocks": self.num_blocks,
            "page_size_bytes": self.page_size_bytes,
            "bytes_per_block": self.bytes_per_block,
            "kv_groups": self.kv_layout.describe(),
            "kv_padding_layers": self.kv_layout.padding_layers,
            "activation_detail": {
                "sampler_path": self.activation.sampler_path,
                "sampler_requests": self.activation.num_sampler_requests,
                "sampler_gib": g(self.activation.sampler_bytes),
                "sampler_phase_gib": g(self.activation.sampler_phase_bytes),
                "forward_phase_gib": g(self.activation.forward_phase_bytes),
                "kept_gib": g(self.activation.kept_bytes),
                "dominant": self.activation.dominant,
            },
        }


@dataclass
class Plan:
    model: str
    model_source: str
    gpu: str
    vllm_version: str
    settings: dict[str, Any]
    total_bytes: int
    free_at_start_bytes: int
    requested_bytes: int
    weights_bytes: int
    activation_bytes: int
    non_torch_bytes: int
    cudagraph_bytes: int  # capture memory ("Graph capturing finished ... took")
    cudagraph_estimate_bytes: int  # "Estimated CUDA graph memory" (0.18+)
    cudagraph_subtracted_bytes: int  # the estimate when the version subtracts it
    kv_cache_bytes: int  # available KV of the limiting rank
    num_gpu_blocks: int
    kv_cache_tokens: int
    max_concurrency: float
    blocks_per_request: int
    block_size: int
    page_size_bytes: int
    bytes_per_block: int
    kv_bytes_per_token: int
    fits: bool
    error: str | None
    failure_kind: str | None
    estimated_max_model_len: int | None
    kv_cache_memory_bytes_to_requested: int | None
    kv_cache_memory_bytes_to_gpu: int | None
    limiting_pp_rank: int
    num_gpus: int
    ranks: list[RankPlan]
    log_lines: list[str]
    notes: list[str] = field(default_factory=list)

    # -- presentation helpers (units at the edge)
    def gib(self, name: str) -> float:
        return getattr(self, name) / GiB

    def to_dict(self) -> dict[str, Any]:
        g = lambda b: None if b is None else round(b / GiB, 4)  # noqa: E731
        return {
            "model": self.model,
            "model_source": self.model_source,
            "gpu": self.gpu,
            "vllm_version": self.vllm_version,
            "num_gpus": self.num_gpus,
            "settings": self.settings,
            "total_gib": g(self.total_bytes),
            "free_at_start_gib": g(self.free_at_start_bytes),
            "requested_gib": g(self.requested_bytes),
            "weights_gib": g(self.weights_bytes),
            "activation_gib": g(self.activation_bytes),
            "non_torch_gib": g(self.non_torch_bytes),
            "cudagraph_gib": g(self.cudagraph_bytes),
            "cudagraph_estimate_gib": g(self.cudagraph_estimate_bytes),
            "cudagraph_subtracted_gib": g(self.cudagraph_subtracted_bytes),
            "kv_cache_gib": g(self.kv_cache_bytes),
            "kv_cache_bytes": self.kv_cache_bytes,
            "num_gpu_blocks": self.num_gpu_blocks,
            "kv_cache_tokens": self.kv_cache_tokens,
            "max_concurrency": round(self.max_concurrency, 4),
            "max_model_len": self.settings.get("max_model_len"),
            "blocks_per_request": self.blocks_per_request,
            "block_size": self.block_size,
            "page_size_bytes": self.page_size_bytes,
            "bytes_per_block": self.bytes_per_block,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "fits": self.fits,
            "error": self.error,
            "failure_kind": self.failure_kind,
            "estimated_max_model_len": self.estimated_max_model_len,
            "kv_cache_memory_bytes_to_requested": self.kv_cache_memory_bytes_to_requested,
            "kv_cache_memory_bytes_to_gpu": self.kv_cache_memory_bytes_to_gpu,
            "limiting_pp_rank": self.limiting_pp_rank,
            "ranks": [r.to_dict() for r in self.ranks],
            "log_lines": self.log_lines,
            "notes": self.notes,
        }


# --------------------------------------------------------------------------

def _requested(rules: VersionRules, total: int, util: float) -> int:
    if rules.requested_ceil:
        return math.ceil(total * util)
    return int(total * util)  # v0.11 keeps a float; bytes are integral here


def _cudagraph_estimate(settings: EngineSettings) -> int:
    if settings.enforce_eager or settings.num_piecewise_graphs == 0:
        return 0
    n_pw, n_full = settings.num_piecewise_graphs, settings.num_full_graphs
    est = CUDAGRAPH_FIRST_CAPTURE_BYTES
    est += max(n_pw - 1, 0) * CUDAGRAPH_PER_GRAPH_BYTES["PIECEWISE"]
    est += max(n_full - 1, 0) * CUDAGRAPH_PER_GRAPH_BYTES["FULL"]
    return est


def _runner_buffers(spec: ModelSpec, s: EngineSettings) -> int:
    """GPUModelRunner persistent inputs (allocated after the init snapshot).
    Only the 0.27+ formula (total consumed) sees them."""
    t = s.max_num_batched_tokens
    blocks_per_seq = -(-s.max_model_len // s.block_size)
    return t * (4 + 8 + 8) + t * spec.hidden_size * s.dtype_bytes + 4 * s.max_num_seqs * blocks_per_seq


def layer_kv_specs(spec: ModelSpec, s: EngineSettings, rules: VersionRules, start: int, end: int) -> dict[int, KVCacheSpec]:
    """One KV spec per layer of a stage, as each layer's get_kv_cache_spec
    builds it (vllm/v1/kv_cache_interface.py); layers without KV are skipped."""
    heads = kv_heads_per_rank(spec.num_kv_heads, s.tensor_parallel_size)
    kinds = spec.layer_kinds or ("full",) * spec.num_layers
    packed = (packed_bytes_per_token(s.kv_cache_dtype, heads, spec.head_dim)
              if s.kv_cache_dtype in PACKED_KV_DTYPES else None)
    full = FullAttentionSpec(block_size=s.block_size, num_kv_heads=heads, head_size=spec.head_dim,
                             dtype_bytes=s.kv_dtype_bytes, packed_bytes_per_token=packed)
    out: dict[int, KVCacheSpec] = {}
    for i in range(start, end):
        kind = kinds[i]
        if kind == "full":
            out[i] = full
        elif kind == "sliding":
            out[i] = SlidingWindowSpec(s.block_size, heads, spec.head_dim, s.kv_dtype_bytes,
                                       packed_bytes_per_token=packed, sliding_window=spec.sliding_window or 0)
        elif kind == "chunked":
            out[i] = ChunkedLocalAttentionSpec(s.block_size, heads, spec.head_dim, s.kv_dtype_bytes,
                                               packed_bytes_per_token=packed,
                                               attention_chunk_size=spec.attention_chunk_size or 0)
        elif kind == "mla":
            latent = spec.mla.kv_lora_rank + spec.mla.qk_rope_head_dim
            out[i] = MLAAttentionSpec(s.block_size, latent, s.kv_dtype_bytes, cache_dtype_str=s.kv_cache_dtype)
        elif kind in ("mamba", "linear_attention"):
            state = state_page_bytes(spec.mamba, s.tensor_parallel_size, s.dtype_bytes, s.mamba_ssm_cache_dtype)
            out[i] = MambaSpec(
                block_size=s.mamba_block_size or s.max_model_len, state_bytes=state,
                page_size_padded=s.mamba_page_size_padded, mamba_cache_mode=s.mamba_cache_mode,
                num_prefill_checkpoint_blocks=int(s.mamba_cache_mode == "align"
                                                  and spec.mamba.mixer in rules.mamba_prefill_checkpoint_mixers),
                linear_attention=kind == "linear_attention",
            )
    return out


def _kv_layout(spec: ModelSpec, s: EngineSettings, rules: VersionRules, start: int, end: int) -> KVLayout:
    """Groups are formed over the whole model, then projected on the stage."""
    specs = layer_kv_specs(spec, s, rules, 0, spec.num_layers)
    if not any(start <= i < end for i in specs):
        raise FlagError(f"pipeline stage with layers {start}-{end - 1} has no attention or Mamba layer",
                        "vLLM needs KV cache layers on every stage; use fewer pipeline stages.")
    try:
        layout = group_layers(specs, rules, disable_hybrid=s.disable_hybrid_kv_cache_manager)
    except KVGroupingError as e:
        raise FlagError(f"vLLM {rules.version} cannot build this model's KV cache: {e}"[:400],
                        "vLLM raises this at start-up.") from None
    return project_to_worker(layout, start, end)


def make_plan(
    spec: ModelSpec,
    args: ServeArgs,
    rules: VersionRules,
    gpu: GpuSpec,
    tensors: list[Tensor] | None = None,
    free_at_start_bytes: int | None = None,
    platform: str = "cuda",
) -> Plan:
    s = resolve(spec, args, rules, gpu, platform)
    tp, pp = s.tensor_parallel_size, s.pipeline_parallel_size
    notes = list(s.notes) + list(spec.notes)
    if pp > spec.num_layers:
        raise FlagError(
            f"--pipeline-parallel-size {pp} is larger than the model's {spec.num_layers} layers",
            "Use at most one stage per layer.",
        )
    cal, cal_note = calibration_for(rules.minor, tp, pp)
    notes.append(cal_note)
    total = gpu.total_bytes
    free0 = free_at_start_bytes if free_at_start_bytes is not None else total - cal.startup_used_bytes
    requested = _requested(rules, total, s.gpu_memory_utilization)

    inventory = tensors if tensors is not None else inventory_from_config(spec)
    if tensors is not None:
        notes.append("weights from the checkpoint's safetensors headers")
    if s.quantization == "fp8" and spec.quantization is None:
        inventory = quantize_inventory_fp8(inventory)
    if s.quantization == "bitsandbytes" and spec.quantization is None:
        inventory = quantize_inventory_bnb4(inventory)
    # Expert parallelism: experts over all TP x DP ranks (vllm/config/parallel.py)
    ep_size = tp * s.data_parallel_size if (s.enable_expert_parallel and spec.moe is not None) else 1
    if s.enable_expert_parallel and spec.moe is None:
        notes.append("--enable-expert-parallel has no effect: the model has no MoE layers")
    try:
        from .engine import _capability

        mxfp4_backend = mxfp4_backend_for(_capability(gpu))
    except ImportError:  # pragma: no cover
        mxfp4_backend = "triton"
    from .activation import encoder_profile

    limits = dict(s.limit_mm_per_prompt)
    encoder = encoder_profile(
        spec, rules, max_num_batched_tokens=s.max_num_batched_tokens, max_num_seqs=s.max_num_seqs,
        max_model_len=s.max_model_len, dtype_bytes=s.dtype_bytes,
        limit_per_prompt=limits.get("image") if limits else None,
        skip=s.skip_mm_profiling, chunked_prefill=s.enable_chunked_prefill,
    )
    if spec.vision is not None and encoder is None:
        notes.append("multimodal encoder not profiled (--skip-mm-profiling or a zero image limit): its "
                     "activation is not in the KV budget")

    failure: tuple[str, str] | None = None  # (kind, vLLM's message)
    if s.refusal:
        failure = ("invalid_config", s.refusal)
    # vllm/config/model.py verify_with_parallel_config, before any worker starts
    if failure is None and spec.num_attention_heads % tp:
        failure = ("invalid_parallel_config", msg.heads_not_divisible_error(spec.num_attention_heads, tp))
    # init_device: free memory must cover the requested budget
    if failure is None and free0 < requested:
        failure = ("free_memory_below_budget", msg.free_memory_error(rules, free0, total, s.gpu_memory_utilization, requested))
    if failure is None:
        try:
            check_tensor_parallel(spec, tp, expert_parallel=ep_size > 1)
        except ParallelError as e:
            failure = (e.kind, e.message)

    cg_est = _cudagraph_estimate(s) if rules.cudagraph_estimate_logged else 0
    cg_sub = cg_est if rules.cudagraph_estimate_subtracted else 0
    cg_actual = (cg_est or _cudagraph_estimate(s)) + CUDAGRAPH_ACTUAL_MINUS_ESTIMATE_BYTES if not s.enforce_eager else 0
    if rules.minor < 18 and not s.enforce_eager:
        notes.append(
            f"CUDA-graph capture memory in vLLM {rules.version} is not budgeted and not predictable from shapes "
            "(seed rows: -0.88 to +1.03 GiB); the figure shown is the 0.19-calibrated estimate"
        )

    non_torch = cal.non_torch_bytes
    if rules.cublas_in_baseline:
        non_torch = max(0, non_torch - CUBLAS_HANDLES_BYTES)
    runner = _runner_buffers(spec, s) if rules.profiling_formula == "ge27" else 0
    v2 = uses_v2_runner(rules, spec.architecture, s.quantization is not None)
    if v2:
        # Model Runner V2 keeps int32 penalty state [max_num_seqs, V] and a bit
        # mask (v1/worker/gpu/sample/penalties.py), allocated before profiling:
        # outside the <=0.26 formula, inside "total consumed" from 0.27.
        v2_state = 4 * s.max_num_seqs * spec.vocab_size + 4 * s.max_num_seqs * -(-spec.vocab_size // 32)
        if rules.profiling_formula == "ge27":
            runner += v2_state
        else:
            notes.append(
                f"Model Runner V2 holds {v2_state / GiB:.2f} GiB of penalty state that vLLM {rules.version} does not budget"
            )
    ctx = KVContext(s.max_model_len, s.in_flight_tokens)

    ranks: list[RankPlan] = []
    for pp_rank, (start, end) in enumerate(pp_partition(spec.num_layers, pp)):
        layout = Layout(tp=tp, pp=pp, pp_rank=pp_rank, start_layer=start, end_layer=end, ep_size=ep_size)
        w = rank_weight_bytes(spec, inventory, layout, s.dtype, mxfp4_backend)
        act = estimate_activation(
            spec, rules,
            max_num_batched_tokens=s.max_num_batched_tokens,
            max_num_seqs=s.max_num_seqs,
            tp=tp,
            is_first_stage=layout.is_first,
            is_last_stage=layout.is_last,
            dtype_bytes=s.dtype_bytes,
            sms=gpu.sms,
            sampler_path=("v2-logits" if v2 and rules.minor < 33 else s.sampler_path),
            ep_size=ep_size,
            encoder=encoder,
        )
        nt = non_torch + runner
        if s.kv_cache_memory_bytes is not None:
            avail = s.kv_cache_memory_bytes
        else:
            avail = requested - w - act.total_bytes - nt - cg_sub
        kv_layout = _kv_layout(spec, s, rules, start, end)
        blocks = num_blocks_for(avail, kv_layout)
        ranks.append(RankPlan(
            pp_rank=pp_rank, layers=(start, end), weights_bytes=w, activation_bytes=act.total_bytes,
            non_torch_bytes=nt, cudagraph_estimate_bytes=cg_est, cudagraph_subtracted_bytes=cg_sub,
            kv_cache_bytes=avail, num_blocks=blocks,
            page_size_bytes=kv_layout.groups[0].spec.page_size_bytes, bytes_per_block=kv_layout.bytes_per_block,
            activation=act, kv_layout=kv_layout,
        ))

    limiting = min(ranks, key=lambda r: (r.num_blocks, r.kv_cache_bytes))
    lim_layout = limiting.kv_layout
    num_blocks = min(r.num_blocks for r in ranks)
    if s.num_gpu_blocks_override is not None:
        num_blocks = s.num_gpu_blocks_override
    avail_min = min(r.kv_cache_bytes for r in ranks)

    # Load: every rank must hold its weights in the memory that is free.
    if failure is None:
        worst = max(ranks, key=lambda r: r.weights_bytes)
        if worst.weights_bytes > free0:
            failure = ("cuda_oom_loading", msg.load_oom_error(worst.weights_bytes, free0, total))
    # Profiling: the peak must fit in what is physically free after the weights.
    if failure is None and s.kv_cache_memory_bytes is None:
        for r in ranks:
            if r.weights_bytes + r.activation_bytes + r.non_torch_bytes > free0:
                failure = (
                    "cuda_oom_profiling",
                    "torch.OutOfMemoryError: CUDA out of memory during the profile run: weights "
                    f"{r.weights_bytes / GiB:.2f} GiB + peak activation {r.activation_bytes / GiB:.2f} GiB exceed the "
                    f"{free0 / GiB:.2f} GiB free on the GPU. Lower --max-num-batched-tokens / --max-num-seqs or use more GPUs.",
                )
                break

    # KV checks (check_enough_kv_cache_memory), on the worst rank.
    est_len: int | None = None
    eff_len = s.max_model_len
    if failure is None:
        if avail_min <= 0:
            failure = ("no_memory_for_cache_blocks", msg.no_memory_error(rules))
        else:
            checks = [(r.kv_cache_bytes, r.kv_layout) for r in ranks]
            if rules.one_request_global_groups and len(ranks) > 1:
                checks = [(avail_min, _kv_layout(spec, s, rules, 0, spec.num_layers))]
            if s.auto_fit_max_model_len:
                eff_len = min(estimate_max_model_len(lay, ctx, rules, one_request_budget(av, lay, rules))
                              for av, lay in checks)
                notes.append(f"--max-model-len -1: vLLM auto-fits max_model_len to {eff_len}")
                if eff_len <= 0:
                    failure = ("no_memory_for_cache_blocks", msg.no_memory_error(rules))
            else:
                for av, lay in checks:
                    budget = one_request_budget(av, lay, rules)
                    needed = needed_bytes_one_request(lay, ctx, rules)
                    if needed > budget:
                        est_len = estimate_max_model_len(lay, ctx, rules, budget)
                        failure = ("max_model_len_does_not_fit",
                                   msg.max_len_error(rules, s.max_model_len, needed, budget, est_len))
                        break
    if eff_len != s.max_model_len:
        ctx = KVContext(eff_len, ctx.in_flight_tokens)

    cap: KVCapacity = capacity(num_blocks, lim_layout, ctx, rules)

    # After the KV cache: graph capture and the sampler warm-up run in what is
    # left of the GPU ((1 - util) x total minus start-up memory, plus the
    # activation peak that was budgeted and freed).
    if failure is None and not s.enforce_eager:
        last = ranks[-1]
        kv_alloc = num_blocks * last.bytes_per_block
        in_use = (total - free0) + last.weights_bytes + last.non_torch_bytes + kv_alloc + last.activation.kept_bytes
        headroom = total - in_use - cg_actual
        warmup = last.activation.sampler_phase_bytes
        if warmup > headroom:
            failure = ("cuda_oom_sampler_warmup", msg.sampler_oom_error(last.activation.num_sampler_requests))

    # The two --kv-cache-memory values vLLM recommends after start-up.
    rec_req = rec_gpu = None
    if s.kv_cache_memory_bytes is None and failure is None:
        non_kv = limiting.weights_bytes + limiting.activation_bytes + limiting.non_torch_bytes + cg_actual
        if rules.profiling_formula == "ge27":
            non_kv += cg_sub  # counted twice (estimate and actual), section 1.7
        rec_req = int(requested) - non_kv - RECOMMENDATION_REDUNDANCY_BYTES
        rec_gpu = free0 - non_kv - RECOMMENDATION_REDUNDANCY_BYTES

    fits = failure is None
    plan = Plan(
        model=spec.name,
        model_source=spec.source,
        gpu=gpu.name,
        vllm_version=rules.version,
        settings={**s.as_flags(), "max_model_len": eff_len, "sampler_path": ranks[-1].activation.sampler_path,
                  "model_runner": "V2" if v2 else "V1",
                  "cudagraph_mode": s.cudagraph_mode, "cudagraph_sizes": s.num_piecewise_graphs},
        total_bytes=total,
        free_at_start_bytes=free0,
        requested_bytes=requested,
        weights_bytes=limiting.weights_bytes,
        activation_bytes=limiting.activation_bytes,
        non_torch_bytes=limiting.non_torch_bytes,
        cudagraph_bytes=cg_actual,
        cudagraph_estimate_bytes=cg_est,
        cudagraph_subtracted_bytes=cg_sub,
        kv_cache_bytes=limiting.kv_cache_bytes,
        num_gpu_blocks=num_blocks if fits else max(num_blocks, 0),
        kv_cache_tokens=cap.kv_cache_tokens,
        max_concurrency=cap.max_concurrency,
        blocks_per_request=cap.blocks_per_request,
        block_size=s.block_size,
        page_size_bytes=limiting.page_size_bytes,
        bytes_per_block=limiting.bytes_per_block,
        kv_bytes_per_token=limiting.bytes_per_block // s.block_size,
        fits=fits,
        error=failure[1] if failure else None,
        failure_kind=failure[0] if failure else None,
        estimated_max_model_len=est_len,
        kv_cache_memory_bytes_to_requested=rec_req,
        kv_cache_memory_bytes_to_gpu=rec_gpu,
        limiting_pp_rank=limiting.pp_rank,
        num_gpus=tp * pp * s.data_parallel_size,
        ranks=ranks,
        log_lines=[],
        notes=notes,
    )
    from .loglines import vllm_log_lines

    plan.log_lines = vllm_log_lines(plan, rules, s)
    return plan


__all__ = ["Plan", "RankPlan", "make_plan"]
