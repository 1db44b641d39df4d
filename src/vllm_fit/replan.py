"""Plan many configurations of one model fast, and search over the planner.

``Planner`` resolves the model, the version rules and the GPU once and then
plans any set of serve flags with ``make_plan``.  Every answer of advise and
sweep comes from here, so it is exactly what the planner says.

Speed: searches and sweeps run inside ``fast_planning()``, which hands one
``PlanMemo`` (vllm_fit.memo) to every ``make_plan`` call of the search, so the
weight inventory and each layout's weight bytes are computed once.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import VllmFitError
from .gpus import GpuSpec, resolve_gpu
from .memo import PlanMemo
from .planner import Plan
from .units import GiB

_active_memo: contextvars.ContextVar[PlanMemo | None] = contextvars.ContextVar("vllm_fit_plan_memo", default=None)


@contextmanager
def fast_planning() -> Iterator[PlanMemo]:
    """One memo for every plan made inside (re-entrant: an inner call reuses
    the outer memo).  Per context, so concurrent web requests don't share it."""
    memo = _active_memo.get()
    if memo is not None:
        yield memo
        return
    memo = PlanMemo()
    token = _active_memo.set(memo)
    try:
        yield memo
    finally:
        _active_memo.reset(token)


class Planner:
    """One model, one vLLM version: plan any flags on any catalog GPU."""

    def __init__(
        self,
        model: str | None,
        *,
        gpu: str | None = None,
        gpu_memory_gib: float | None = None,
        vllm_version: str | None = None,
        config: str | None = None,
        free_memory_gib: float | None = None,
        allow_hub: bool = True,
    ):
        from .sources import resolve_model
        from .versions import rules_for

        self.rules = rules_for(vllm_version)
        self.resolved = resolve_model(model, config, allow_hub=allow_hub)
        self.model = model or self.resolved.spec.name
        self.gpu = resolve_gpu(gpu, gpu_memory_gib)
        self.free_at_start_bytes: int | None = None
        if free_memory_gib is not None:
            try:
                free_gib = float(free_memory_gib)
            except (TypeError, ValueError):
                raise VllmFitError(f"--free-memory-gib {free_memory_gib!r} is not a number") from None
            if not 0 < free_gib <= self.gpu.total_bytes / GiB:
                raise VllmFitError(f"free memory {free_memory_gib} GiB must be between 0 and the GPU's total")
            self.free_at_start_bytes = int(free_gib * GiB)
        self._cache: dict[Any, Plan] = {}
        self.calls = 0

    @property
    def spec(self):
        return self.resolved.spec

    @property
    def vllm_version(self) -> str:
        return self.rules.version

    def plan(self, flags: dict[str, Any], gpu: GpuSpec | None = None) -> Plan:
        """Plan these serve flags (vLLM names); raises VllmFitError on bad flags."""
        from .planner import make_plan
        from .serve_args import make_serve_args

        clean = {k: v for k, v in flags.items() if v is not None}
        g = gpu or self.gpu
        key = (g.name, g.total_bytes, tuple(sorted(clean.items())))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        args = make_serve_args(**clean)
        free = self.free_at_start_bytes if g is self.gpu else None
        with fast_planning() as memo:
            p = make_plan(self.spec, args, self.rules, g, tensors=self.resolved.tensors, free_at_start_bytes=free,
                          memo=memo)
        self.calls += 1
        if len(self._cache) < 20000:
            self._cache[key] = p
        return p


# ----------------------------------------------------------------- searches

def largest_true(pred: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Largest x in [lo, hi] with pred(x), for pred true-then-false; None if pred(lo) is false."""
    if lo > hi or not pred(lo):
        return None
    if pred(hi):
        return hi
    good, bad = lo, hi
    while bad - good > 1:
        mid = (good + bad) // 2
        if pred(mid):
            good = mid
        else:
            bad = mid
    return good


def smallest_true(pred: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Smallest x in [lo, hi] with pred(x), for pred false-then-true; None if pred(hi) is false."""
    if lo > hi or not pred(hi):
        return None
    if pred(lo):
        return lo
    bad, good = lo, hi
    while good - bad > 1:
        mid = (good + bad) // 2
        if pred(mid):
            good = mid
        else:
            bad = mid
    return good


__all__ = ["Planner", "fast_planning", "largest_true", "smallest_true"]
