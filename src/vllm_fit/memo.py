"""A memo for the planner's pure, slow steps, handed to ``make_plan`` explicitly.

Most of a plan's time goes into the weight inventory (building it, quantizing
it, summing each rank's share), which depends only on the model and the
parallel layout.  Searches and sweeps plan the same model hundreds of times;
they pass one ``PlanMemo`` to every ``make_plan`` call so those steps run once.
Results are identical to unmemoized calls (tests/test_sweep.py checks this on
seven families).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any

_SCALARS = (str, int, float, bool, type(None))
_SMALL_DATACLASS_FIELDS: dict[type, tuple[str, ...] | None] = {}


class PlanMemo:
    """Results of pure functions keyed by their arguments.  Small value objects
    (e.g. ``Layout``) are keyed by value; anything else by identity, and the
    memo keeps it alive so the identity stays unique."""

    def __init__(self, max_entries: int = 100_000):
        self._cache: dict[Any, Any] = {}
        self._keep: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def __len__(self) -> int:
        return len(self._cache)

    def _part(self, value: Any) -> Any:
        if isinstance(value, _SCALARS):
            return value
        t = type(value)
        if t not in _SMALL_DATACLASS_FIELDS:
            names = None
            if is_dataclass(value) and not isinstance(value, type):
                names = tuple(f.name for f in fields(value))
                if len(names) > 8:
                    names = None
            _SMALL_DATACLASS_FIELDS[t] = names
        names = _SMALL_DATACLASS_FIELDS[t]
        if names is not None:
            parts = tuple(getattr(value, n) for n in names)
            if all(isinstance(p, _SCALARS) for p in parts):
                return (t.__name__, parts)
        self._keep[id(value)] = value
        return ("id", id(value))

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            key = (fn.__module__, fn.__qualname__,
                   tuple(self._part(a) for a in args),
                   tuple((k, self._part(v)) for k, v in sorted(kwargs.items())))
            try:
                return self._cache[key]
            except KeyError:
                pass
            except TypeError:  # an unhashable scalar-like argument: call through
                return fn(*args, **kwargs)
        result = fn(*args, **kwargs)
        with self._lock:
            if len(self._cache) < self.max_entries:
                self._cache[key] = result
        return result


def call(memo: PlanMemo | None, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, through ``memo`` when one is given."""
    if memo is None:
        return fn(*args, **kwargs)
    return memo.call(fn, *args, **kwargs)


__all__ = ["PlanMemo", "call"]
