"""vllm-fit: predict vLLM's start-up GPU memory offline.

    >>> import vllm_fit
    >>> p = vllm_fit.plan("qwen3-8b", gpu="H100", max_model_len=8192, vllm_version="0.19.0")
    >>> p.fits, p.num_gpu_blocks

Advice, sweeps and deployment manifests (plain dicts, vLLM's flag names,
VllmFitError on bad input):

    >>> from vllm_fit.advise import advise      # advise(model, gpu=..., concurrency=..., **serve_flags) -> dict
    >>> from vllm_fit.sweep import sweep        # sweep(model, gpu=[...], tensor_parallel_size=[...], ...) -> list[dict]
    >>> from vllm_fit.deploy import deploy      # deploy(model, gpu=..., **serve_flags) -> dict
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import VllmFitError
from .planner import Plan, RankPlan

__version__ = "0.1.0"
__all__ = ["plan", "plan_command", "Plan", "RankPlan", "VllmFitError", "__version__"]


def plan(
    model: str | None = None,
    *,
    gpu: str | None = None,
    gpu_memory_gib: float | None = None,
    vllm_version: str | None = None,
    config: str | Path | None = None,
    free_memory_gib: float | None = None,
    allow_hub: bool = True,
    platform: str = "cuda",
    **serve_flags: Any,
) -> Plan:
    """Plan one ``vllm serve`` start-up.

    ``serve_flags`` take vLLM's engine-argument names: tensor_parallel_size,
    pipeline_parallel_size, max_model_len, gpu_memory_utilization, block_size,
    kv_cache_dtype, dtype, quantization, max_num_seqs, max_num_batched_tokens,
    enforce_eager, enable_prefix_caching, kv_cache_memory_bytes, ...
    ``platform="cpu"`` applies vLLM's CPU-backend KV rules (block size 128,
    MLA block 16, one batch in flight): it is how vllm-fit is checked against
    the real CPU engine.
    Raises ``VllmFitError`` for bad input; a configuration vLLM would refuse is
    a plan with ``fits = False`` and vLLM's message in ``error``.
    """
    from .gpus import custom_gpu, find_gpu
    from .planner import make_plan
    from .serve_args import make_serve_args
    from .sources import resolve_model
    from .units import GiB
    from .versions import rules_for

    rules = rules_for(vllm_version)
    if gpu_memory_gib is not None:
        try:
            total = float(gpu_memory_gib)
        except (TypeError, ValueError):
            raise VllmFitError(f"--gpu-memory-gib {gpu_memory_gib!r} is not a number") from None
        base = find_gpu(gpu) if gpu else None
        g = custom_gpu(total, sms=base.sms if base else 132, name=base.name if base else None)
        if base is not None:
            from dataclasses import replace

            g = replace(base, total_bytes=g.total_bytes, source=f"{base.source}; total overridden by --gpu-memory-gib")
    else:
        g = find_gpu(gpu or "H100")
    args = make_serve_args(**serve_flags)
    resolved = resolve_model(model, config, allow_hub=allow_hub)
    free = None
    if free_memory_gib is not None:
        if not 0 < float(free_memory_gib) <= g.total_bytes / GiB:
            raise VllmFitError(f"free memory {free_memory_gib} GiB must be between 0 and the GPU's total")
        free = int(float(free_memory_gib) * GiB)
    return make_plan(resolved.spec, args, rules, g, tensors=resolved.tensors, free_at_start_bytes=free,
                     platform=platform)


def plan_command(command: str | list[str], **overrides: Any) -> Plan:
    """Plan a whole ``vllm serve MODEL --flag ...`` command line."""
    from .serve_args import parse_serve_command

    model, flags, _ignored = parse_serve_command(command)
    flags.update({k: v for k, v in overrides.items() if v is not None})
    return plan(model, **flags)
