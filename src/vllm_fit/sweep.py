"""Sweep: plan every configuration of a grid, one row per configuration.

Grid axes by vLLM's flag names: GPU type x tensor_parallel_size x
gpu_memory_utilization x max_model_len x kv_cache_dtype x max_num_seqs
(plus any fixed flags).  The model is resolved once; the planner's weight
path is memoized for the whole sweep (replan.fast_planning), which is what
makes 10,000 configurations take seconds (benchmarks/sweep.py).
"""

from __future__ import annotations

import csv
import io
import itertools
from typing import Any, Iterable, Sequence

from .advise import DEFAULT_DISK_GB_S, DEFAULT_KV_COMPRESSION, DEFAULT_LINK_GB_S, restore_estimate
from .errors import VllmFitError
from .gpus import find_gpu, resolve_gpu
from .replan import Planner, fast_planning
from .units import GiB

AXES = ("gpu", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "kv_cache_dtype", "max_num_seqs")
MAX_CONFIGS = 1_000_000

# Row columns after the axes: the plan's own fields (as in `plan --json`) plus the restore estimate.
PLAN_COLUMNS = (
    "fits", "failure_kind", "num_gpus", "total_gib", "requested_gib", "weights_gib", "activation_gib", "non_torch_gib",
    "cudagraph_gib", "kv_cache_gib", "kv_cache_bytes", "num_gpu_blocks", "kv_cache_tokens", "max_concurrency",
    "block_size", "kv_bytes_per_token", "sampler_warmup_gib",
)
RESTORE_COLUMNS = ("gpu_gib_per_gpu", "checkpoint_image_gib", "restore_seconds")


def _as_list(name: str, value: Any) -> list[Any]:
    if value is None:
        return [None]
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [value]
    try:
        items = list(value)
    except TypeError:
        raise VllmFitError(f"{name} must be a value or a list of values") from None
    if not items:
        raise VllmFitError(f"{name} is an empty list")
    return items


def grid_size(**axes: Any) -> int:
    n = 1
    for name in AXES:
        n *= len(_as_list(name, axes.get(name)))
    return n


def sweep(
    model: str | None,
    *,
    gpu: str | Sequence[str] | None = None,
    tensor_parallel_size: int | Sequence[int] | None = None,
    gpu_memory_utilization: float | Sequence[float] | None = None,
    max_model_len: int | Sequence[int] | None = None,
    kv_cache_dtype: str | Sequence[str] | None = None,
    max_num_seqs: int | Sequence[int] | None = None,
    vllm_version: str | None = None,
    config: str | None = None,
    gpu_memory_gib: float | None = None,
    link_gb_s: float = DEFAULT_LINK_GB_S,
    disk_gb_s: float = DEFAULT_DISK_GB_S,
    kv_compression: float = DEFAULT_KV_COMPRESSION,
    allow_hub: bool = True,
    planner: Planner | None = None,
    **fixed_flags: Any,
) -> list[dict[str, Any]]:
    """Plan every combination; one dict per configuration (axes + plan fields).

    Each axis takes one value or a list; None = vLLM's default.  Other serve
    flags (block_size, quantization, pipeline_parallel_size, ...) are fixed.
    Raises VllmFitError on bad input (unknown GPU, bad flag value)."""
    axes = {
        "gpu": _as_list("gpu", gpu if gpu is not None else "H100"),
        "tensor_parallel_size": _as_list("tensor_parallel_size", tensor_parallel_size),
        "gpu_memory_utilization": _as_list("gpu_memory_utilization", gpu_memory_utilization),
        "max_model_len": _as_list("max_model_len", max_model_len),
        "kv_cache_dtype": _as_list("kv_cache_dtype", kv_cache_dtype),
        "max_num_seqs": _as_list("max_num_seqs", max_num_seqs),
    }
    total = 1
    for v in axes.values():
        total *= len(v)
    if total > MAX_CONFIGS:
        raise VllmFitError(f"the grid has {total} configurations; at most {MAX_CONFIGS} per sweep")
    gpus = [resolve_gpu(str(g), gpu_memory_gib) for g in axes["gpu"]]
    P = planner or Planner(model, gpu=gpus[0].name, gpu_memory_gib=gpu_memory_gib, vllm_version=vllm_version,
                           config=config, allow_hub=allow_hub)
    fixed = {k: v for k, v in fixed_flags.items() if v is not None}
    clash = set(fixed) & set(AXES)
    if clash:
        raise VllmFitError(f"{', '.join(sorted(clash))} given twice")
    rows: list[dict[str, Any]] = []
    with fast_planning():
        for g, tp, util, mml, kvd, mns in itertools.product(
            gpus, axes["tensor_parallel_size"], axes["gpu_memory_utilization"], axes["max_model_len"],
            axes["kv_cache_dtype"], axes["max_num_seqs"],
        ):
            flags = dict(fixed)
            for k, v in (("tensor_parallel_size", tp), ("gpu_memory_utilization", util), ("max_model_len", mml),
                         ("kv_cache_dtype", kvd), ("max_num_seqs", mns)):
                if v is not None:
                    flags[k] = v
            p = P.plan(flags, g)
            s = p.settings
            row: dict[str, Any] = {
                "model": p.model,
                "vllm_version": p.vllm_version,
                "gpu": g.name,
                "tensor_parallel_size": s["tensor_parallel_size"],
                "pipeline_parallel_size": s["pipeline_parallel_size"],
                "gpu_memory_utilization": s["gpu_memory_utilization"],
                "max_model_len": s["max_model_len"],
                "kv_cache_dtype": s["kv_cache_dtype"],
                "max_num_seqs": s["max_num_seqs"],
                "fits": p.fits,
                "failure_kind": p.failure_kind,
                "num_gpus": p.num_gpus,
                "total_gib": round(p.total_bytes / GiB, 4),
                "requested_gib": round(p.requested_bytes / GiB, 4),
                "weights_gib": round(p.weights_bytes / GiB, 4),
                "activation_gib": round(p.activation_bytes / GiB, 4),
                "non_torch_gib": round(p.non_torch_bytes / GiB, 4),
                "cudagraph_gib": round(p.cudagraph_bytes / GiB, 4),
                "kv_cache_gib": round(p.kv_cache_bytes / GiB, 4),
                "kv_cache_bytes": p.kv_cache_bytes,
                "num_gpu_blocks": p.num_gpu_blocks,
                "kv_cache_tokens": p.kv_cache_tokens,
                "max_concurrency": round(p.max_concurrency, 4),
                "block_size": p.block_size,
                "kv_bytes_per_token": p.kv_bytes_per_token,
                "sampler_warmup_gib": round(p.ranks[-1].activation.sampler_phase_bytes / GiB, 4),
            }
            est = restore_estimate(p, link_gb_s, disk_gb_s, kv_compression)
            for k in RESTORE_COLUMNS:
                row[k] = est[k]
            row["error"] = p.error
            row["serve_flags"] = {k: v for k, v in flags.items()}
            rows.append(row)
    return rows


def _csv_value(v: Any) -> Any:
    if isinstance(v, dict):
        return " ".join(f"--{k.replace('_', '-')}={val}" for k, val in v.items())
    return "" if v is None else v


def rows_to_csv(rows: Iterable[dict[str, Any]]) -> str:
    rows = list(rows)
    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(v) for k, v in r.items()})
    return buf.getvalue()


def parse_list(text: str | None, kind: type, name: str) -> list[Any] | None:
    """'1,2,4' -> [1, 2, 4]; '0.5:0.9:0.1' -> [0.5, 0.6, 0.7, 0.8, 0.9] (start:stop:step, inclusive)."""
    if text is None:
        return None
    text = str(text).strip()
    try:
        if ":" in text and kind in (int, float):
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            start, stop, step = (kind(x) for x in parts)
            if step <= 0 or stop < start:
                raise ValueError
            count = int(round((stop - start) / step)) + 1
            if count > MAX_CONFIGS:
                raise VllmFitError(f"{name} {text!r} has too many values")
            vals = [start + i * step for i in range(count)]
            return [round(v, 6) if kind is float else int(v) for v in vals if v <= stop + (1e-9 if kind is float else 0)]
        items = [x.strip() for x in text.split(",") if x.strip()]
        if not items:
            raise ValueError
        if kind is str:
            return items
        if kind is int:
            from .serve_args import human_readable_int

            return [human_readable_int(x) for x in items]
        return [kind(x) for x in items]
    except VllmFitError:
        raise
    except ValueError:
        raise VllmFitError(f"{name} {text!r}: give a comma list (1,2,4) or start:stop:step") from None


def known_gpus(names: list[str]) -> list[str]:
    return [find_gpu(n).name for n in names]


__all__ = ["AXES", "sweep", "rows_to_csv", "parse_list", "grid_size"]
