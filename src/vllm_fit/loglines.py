"""The memory lines vLLM would log for a plan, in that version's format."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .engine import EngineSettings
from .messages import gib_text
from .units import GiB
from .versions import VersionRules

if TYPE_CHECKING:  # pragma: no cover
    from .planner import Plan


def vllm_log_lines(plan: "Plan", rules: VersionRules, s: EngineSettings) -> list[str]:
    g = lambda b: gib_text(rules, b)  # noqa: E731
    lines: list[str] = []
    if rules.minor == 11:
        lines.append(f"Model loading took {plan.weights_bytes / GiB:.4f} GiB and <t> seconds")
    else:
        lines.append(f"Model loading took {g(plan.weights_bytes)} GiB memory and <t> seconds")
    if plan.failure_kind in ("invalid_config", "invalid_parallel_config", "free_memory_below_budget", "cuda_oom_loading"):
        return [plan.error or ""]
    lines.extend(kv_layout_lines(plan, s))
    if rules.cudagraph_estimate_logged and plan.cudagraph_estimate_bytes:
        lines.append(f"Estimated CUDA graph memory: {plan.cudagraph_estimate_bytes / GiB:.2f} GiB total")
    non_kv = plan.weights_bytes + plan.activation_bytes + plan.non_torch_bytes
    if s.kv_cache_memory_bytes is not None:
        lines.append(
            f"Initial free memory {g(plan.free_at_start_bytes)} GiB, reserved {s.kv_cache_memory_bytes / GiB:.2f} GiB memory "
            "for KV Cache as specified by kv_cache_memory_bytes config and skipped memory profiling."
        )
    elif rules.profiling_formula == "le26":
        lines.append(
            f"Memory profiling takes <t> seconds. Total non KV cache memory: {g(non_kv)}GiB; "
            f"torch peak memory increase: {g(plan.activation_bytes)}GiB; non-torch forward increase memory: "
            f"{g(plan.non_torch_bytes)}GiB; weights memory: {g(plan.weights_bytes)}GiB."
        )
    else:
        lines.append(
            f"Memory profiling takes <t> seconds. Total non KV cache memory: {g(non_kv)}GiB; torch peak memory "
            f"increase: {g(plan.activation_bytes)}GiB; total consumed (from mem_get_info): "
            f"{g(plan.weights_bytes + plan.non_torch_bytes)}GiB; weights memory: {g(plan.weights_bytes)}GiB."
        )
    if plan.kv_cache_bytes is not None and s.kv_cache_memory_bytes is None:
        lines.append(f"Available KV cache memory: {g(plan.kv_cache_bytes)} GiB")
    if plan.failure_kind in ("no_memory_for_cache_blocks", "max_model_len_does_not_fit", "cuda_oom_profiling"):
        lines.append(plan.error or "")
        return lines
    tokens = f"{plan.kv_cache_tokens:,}"
    mml = f"{s.max_model_len:,}" if plan.settings.get("max_model_len") is None else f"{plan.settings['max_model_len']:,}"
    if rules.kv_log_combined:
        lines.append(
            f"GPU KV cache size: {tokens} tokens, Maximum concurrency for {mml} tokens per request: {plan.max_concurrency:.2f}x"
        )
    else:
        lines.append(f"GPU KV cache size: {tokens} tokens")
        lines.append(f"Maximum concurrency for {mml} tokens per request: {plan.max_concurrency:.2f}x")
    if s.cudagraph_mode != "NONE":
        lines.append(f"Graph capturing finished in <t> secs, took {plan.cudagraph_bytes / GiB:.2f} GiB")
    if plan.kv_cache_memory_bytes_to_requested is not None:
        a, b = plan.kv_cache_memory_bytes_to_requested, plan.kv_cache_memory_bytes_to_gpu
        lines.append(
            f"[{rules.recommendation_level}] ... Replace gpu_memory_utilization config with `--kv-cache-memory={a}` "
            f"({g(a)} GiB) to fit into requested memory, or `--kv-cache-memory={b}` ({g(b)} GiB) to fully utilize gpu memory."
        )
    if plan.error:
        lines.append(plan.error)
    return lines


def kv_layout_lines(plan: "Plan", s: EngineSettings) -> list[str]:
    """What vLLM logs while it lays out the KV cache of hybrid models
    (vllm/platforms/interface.py _align_hybrid_block_size, 0.11-0.19
    model_executor/models/config.py; kv_cache_utils.py grouping)."""
    from .kv_cache import MambaSpec

    out: list[str] = []
    if not plan.ranks:
        return out
    layout = plan.ranks[0].kv_layout
    mamba = next((g.spec for g in layout.groups if isinstance(g.spec, MambaSpec)), None)
    if mamba is not None and s.hybrid_block_raised:
        out.append(f"Setting attention block size to {s.block_size} tokens to ensure that attention page size "
                   "is >= mamba page size.")
    if mamba is not None and mamba.page_size_padded and mamba.page_size_padded != mamba.state_bytes:
        pct = 100 * (mamba.page_size_padded - mamba.state_bytes) / mamba.state_bytes
        out.append(f"Padding mamba page size by {pct:.2f}% to ensure that mamba page size and attention page size "
                   "are exactly equal.")
    if len(plan.ranks) == 1 and layout.padding_layers:
        per_spec: dict[object, list[int]] = {}
        for g in layout.groups:
            per_spec.setdefault(g.spec, []).append(len(g.layers))
        for counts in per_spec.values():
            n = sum(counts)
            pad = len(counts) * layout.group_size - n
            if pad:
                out.append(f"Add {pad} padding layers, may waste at most {pad / n * 100:.2f}% KV cache memory")
    return out
