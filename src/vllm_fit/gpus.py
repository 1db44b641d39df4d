"""GPU catalog: the total memory CUDA reports, SM count, device name."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources

from .errors import VllmFitError
from .units import GiB


@dataclass(frozen=True)
class GpuSpec:
    name: str
    device_name: str
    total_bytes: int
    sms: int
    capability: str
    source: str

    @property
    def total_gib(self) -> float:
        return self.total_bytes / GiB

    @property
    def is_blackwell(self) -> bool:
        return self.capability.startswith("10.")


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@lru_cache(maxsize=1)
def gpu_catalog() -> list[GpuSpec]:
    data = json.loads(resources.files("vllm_fit").joinpath("data/gpus.json").read_text())
    return [
        GpuSpec(g["name"], g["device_name"], int(g["total_bytes"]), int(g["sms"]), g["capability"], g["source"])
        for g in data["gpus"]
    ]


@lru_cache(maxsize=1)
def _index() -> dict[str, GpuSpec]:
    data = json.loads(resources.files("vllm_fit").joinpath("data/gpus.json").read_text())
    idx: dict[str, GpuSpec] = {}
    for g, spec in zip(data["gpus"], gpu_catalog()):
        for n in [g["name"], g["device_name"], *g.get("aliases", [])]:
            idx[_key(n)] = spec
    return idx


def find_gpu(name: str) -> GpuSpec:
    spec = _index().get(_key(name))
    if spec is None:
        names = ", ".join(g.name for g in gpu_catalog())
        raise VllmFitError(
            f"unknown GPU {name!r}"[:120],
            f"Known: {names}. For any other card pass --gpu-memory-gib with the total memory CUDA reports.",
        )
    return spec


def custom_gpu(total_gib: float, sms: int = 132, name: str | None = None) -> GpuSpec:
    if not (0.5 <= total_gib <= 4096):
        raise VllmFitError(f"--gpu-memory-gib {total_gib} is not a plausible GPU size", "Give the total in GiB, e.g. 79.18.")
    return GpuSpec(
        name=name or f"custom-{total_gib:g}GiB",
        device_name=name or "custom GPU",
        total_bytes=int(round(total_gib * GiB)),
        sms=sms,
        capability="9.0",
        source="--gpu-memory-gib (user-supplied total); SM count assumed 132 (H100) for the Triton sampler scratch",
    )


def resolve_gpu(gpu: str | None, gpu_memory_gib: float | None = None) -> GpuSpec:
    """The GPU of a plan: a catalog name (default H100), or a total in GiB,
    optionally on a named GPU's other properties (SMs, capability)."""
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
