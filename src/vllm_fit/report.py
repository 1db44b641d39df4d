"""Text rendering of a plan (returns strings; the CLI prints them)."""

from __future__ import annotations

from .planner import Plan
from .units import GiB

BAR_WIDTH = 40


def _bar(n_bytes: float, total: float) -> str:
    if total <= 0 or n_bytes <= 0:
        return ""
    cells = n_bytes / total * BAR_WIDTH
    full = int(cells)
    return "█" * full + ("▌" if cells - full >= 0.5 else "")


def render_plan(plan: Plan) -> str:
    s = plan.settings
    out: list[str] = []
    out.append(
        f"vllm-fit plan: {plan.model} on {plan.gpu} x{plan.num_gpus} "
        f"(TP={s['tensor_parallel_size']}, PP={s['pipeline_parallel_size']}), vLLM {plan.vllm_version}"
    )
    out.append(
        f"  max_model_len={s['max_model_len']}  dtype={s['dtype']}  kv_cache_dtype={s['kv_cache_dtype']}  "
        f"block_size={s['block_size']}  max_num_seqs={s['max_num_seqs']}  "
        f"max_num_batched_tokens={s['max_num_batched_tokens']}  quantization={s['quantization']}"
    )
    out.append("")
    total = plan.total_bytes
    out.append(f"Per GPU (limiting rank: PP stage {plan.limiting_pp_rank})          GiB")
    rows = [
        ("total (CUDA)", plan.total_bytes, False),
        (f"requested ({s['gpu_memory_utilization']} x total)", plan.requested_bytes, False),
        ("weights", plan.weights_bytes, True),
        ("peak activation", plan.activation_bytes, True),
        ("non-torch", plan.non_torch_bytes, True),
        ("CUDA-graph estimate (subtracted)", plan.cudagraph_subtracted_bytes, True),
        ("KV cache", plan.kv_cache_bytes, True),
    ]
    for label, b, bar in rows:
        out.append(f"  {label:<34} {b / GiB:8.2f}  {_bar(b, total) if bar else ''}")
    out.append(f"  {'CUDA graphs (captured after KV)':<34} {plan.cudagraph_bytes / GiB:8.2f}")
    out.append("")
    if plan.fits:
        out.append(
            f"STARTS: {plan.num_gpu_blocks:,} KV blocks of {plan.block_size} tokens = {plan.kv_cache_tokens:,} tokens; "
            f"{plan.max_concurrency:.2f}x concurrency at {s['max_model_len']:,} tokens per request"
        )
    else:
        out.append(f"FAILS ({plan.failure_kind}):")
        out.append(f"  {plan.error}")
        if plan.estimated_max_model_len:
            out.append(f"  largest max_model_len that fits: {plan.estimated_max_model_len:,}")
    if plan.kv_cache_memory_bytes_to_requested is not None:
        out.append(
            f"vLLM will recommend --kv-cache-memory={plan.kv_cache_memory_bytes_to_requested} "
            f"({plan.kv_cache_memory_bytes_to_requested / GiB:.2f} GiB, within the requested memory) or "
            f"--kv-cache-memory={plan.kv_cache_memory_bytes_to_gpu} ({plan.kv_cache_memory_bytes_to_gpu / GiB:.2f} GiB, whole GPU)"
        )
    if len(plan.ranks) > 1:
        out.append("")
        out.append("  stage  layers    weights  activation  non-torch  KV GiB   blocks")
        for r in plan.ranks:
            out.append(
                f"  {r.pp_rank:>5}  {r.layers[0]:>3}-{r.layers[1] - 1:<4} {r.weights_bytes / GiB:8.2f} {r.activation_bytes / GiB:10.2f}"
                f" {r.non_torch_bytes / GiB:10.2f} {r.kv_cache_bytes / GiB:7.2f} {r.num_blocks:>8}"
            )
    out.append("")
    out.append("vLLM would log:")
    for line in plan.log_lines:
        out.append(f"  {line}")
    if plan.notes:
        out.append("")
        out.append("Notes:")
        for n in plan.notes:
            out.append(f"  - {n}")
    return "\n".join(out)
