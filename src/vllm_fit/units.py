"""Units. Compute in bytes; convert at the edge."""

from __future__ import annotations

import math

GiB = 1 << 30
MiB = 1 << 20
KiB = 1 << 10


def to_gib(n_bytes: float) -> float:
    return n_bytes / GiB


def gib(x: float) -> int:
    """GiB -> bytes (rounded to an integer byte count)."""
    return int(round(x * GiB))


def format_gib(n_bytes: float) -> str:
    """vLLM >= 0.14 `format_gib`: str(round(x / GiB, 2)), e.g. '64.4'."""
    return str(round(n_bytes / GiB, 2))


def fmt2(n_bytes: float) -> str:
    """vLLM 0.11 style '%.2f' of GiB."""
    return f"{n_bytes / GiB:.2f}"


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def round_up(x: int, multiple: int) -> int:
    return cdiv(x, multiple) * multiple


def next_power_of_2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def is_finite_number(x: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
