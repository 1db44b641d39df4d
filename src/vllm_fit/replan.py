"""Plan many configurations of one model fast, and search over the planner.

``Planner`` resolves the model, the version rules and the GPU once and then
plans any set of serve flags with ``make_plan``.  Every answer of advise and
sweep comes from here, so it is exactly what the planner says.

Speed: most of a plan's time goes into the weight inventory (building it,
quantizing it, summing each rank's share), which depends only on the model
and the parallel layout.  ``fast_planning()`` memoizes those pure core
functions for the duration of a search; results are identical to unmemoized
calls (checked in tests/test_sweep.py).  The core could keep such a cache
itself; until it does, this wrapper lives here.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import fields, is_dataclass, replace
from typing import Any, Callable, Iterator

from .errors import VllmFitError
from .gpus import GpuSpec, custom_gpu, find_gpu
from .planner import Plan
from .units import GiB

# Pure functions of the core that planner.py calls by name; memoized while a
# search runs.  Names missing after a core change are simply not memoized.
_MEMOIZED = ("inventory_from_config", "quantize_inventory_fp8", "quantize_inventory_bnb4", "rank_weight_bytes",
             "estimate_activation")
_SCALARS = (str, int, float, bool, type(None))

_lock = threading.RLock()
_depth = 0
_saved: dict[str, Callable[..., Any]] = {}


_SMALL_DATACLASS_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _key_part(value: Any, keep: dict[int, Any]) -> Any:
    if isinstance(value, _SCALARS):
        return value
    t = type(value)
    try:
        names = _SMALL_DATACLASS_FIELDS[t]
    except KeyError:
        names = None
        if is_dataclass(value) and not isinstance(value, type):
            names = tuple(f.name for f in fields(value))
            if len(names) > 8:
                names = None
        _SMALL_DATACLASS_FIELDS[t] = names
    if names is not None:  # small value objects (Layout): by value, they are rebuilt per plan
        parts = tuple(getattr(value, n) for n in names)
        if all(isinstance(p, _SCALARS) for p in parts):
            return (t.__name__, parts)
    keep[id(value)] = value  # pins the id for the life of the cache
    return ("id", id(value))


def _memoize(fn: Callable[..., Any]) -> Callable[..., Any]:
    cache: dict[Any, Any] = {}
    keep: dict[int, Any] = {}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = (tuple(_key_part(a, keep) for a in args), tuple((k, _key_part(v, keep)) for k, v in sorted(kwargs.items())))
        try:
            return cache[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable scalar-like argument: call through
            return fn(*args, **kwargs)
        result = cache[key] = fn(*args, **kwargs)
        return result

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


@contextmanager
def fast_planning() -> Iterator[None]:
    """Memoize the planner's pure weight/activation functions while inside."""
    global _depth
    from . import planner

    with _lock:
        if _depth == 0:
            for name in _MEMOIZED:
                fn = getattr(planner, name, None)
                if callable(fn):
                    _saved[name] = fn
                    setattr(planner, name, _memoize(fn))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for name, fn in _saved.items():
                    setattr(planner, name, fn)
                _saved.clear()


def gpu_for(gpu: str | None, gpu_memory_gib: float | None = None) -> GpuSpec:
    """The GPU as ``vllm_fit.plan`` picks it (catalog name, or a total in GiB)."""
    if gpu_memory_gib is None:
        return find_gpu(gpu or "H100")
    try:
        total = float(gpu_memory_gib)
    except (TypeError, ValueError):
        raise VllmFitError(f"--gpu-memory-gib {gpu_memory_gib!r} is not a number") from None
    base = find_gpu(gpu) if gpu else None
    g = custom_gpu(total, sms=base.sms if base else 132, name=base.name if base else None)
    if base is not None:
        g = replace(base, total_bytes=g.total_bytes, source=f"{base.source}; total overridden by --gpu-memory-gib")
    return g


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
        self.gpu = gpu_for(gpu, gpu_memory_gib)
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
    def spec(self):  # noqa: ANN201 - ModelSpec
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
        with fast_planning():
            p = make_plan(self.spec, args, self.rules, g, tensors=self.resolved.tensors, free_at_start_bytes=free)
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


__all__ = ["Planner", "fast_planning", "gpu_for", "largest_true", "smallest_true"]
