"""The one table of calibrated terms.

Everything else in vllm-fit is derived from shapes, dtypes and vLLM's code.
These terms are not: they are what CUDA, NCCL and the kernels allocate outside
what a shape formula can see.  Each value below was read off the measured
data in ``../shared/validation`` (H100 80GB, the only GPU measured) and the
row says which logs.  Versions between the measured ones use the nearest
measured version (ties go to the newer); TP/PP sizes beyond the measured ones
use the largest measured size.  Other GPUs use the H100 values.
"""

from __future__ import annotations

from dataclasses import dataclass

from .units import GiB, MiB

# Versions with measurements: 0.11 (seeds 000/001 -> validation/seeds-h100.csv)
# and 0.19 (validation/vllm-0.19.0-h100).
MEASURED_MINORS = (11, 19)


@dataclass(frozen=True)
class CalibrationRow:
    # "non-torch forward increase memory": growth of (used - torch reserved)
    # between the init snapshot and the end of profiling: lazily loaded CUDA
    # modules, cuBLAS handles, NCCL buffers set up on the first big collective.
    non_torch_bytes: int
    # Device memory in use at the init snapshot (total - free): CUDA context,
    # NCCL communicator, custom all-reduce buffers. Sets free memory at start.
    startup_used_bytes: int
    source: str


def _g(x: float) -> int:
    return int(round(x * GiB))


# key: (measured minor, tp, pp)
NON_TORCH_TABLE: dict[tuple[int, int, int], CalibrationRow] = {
    (11, 1, 1): CalibrationRow(_g(0.135), _g(0.61), "seeds: 0.13 (gpt-oss-20b, Llama-3.1-8B, Qwen3-0.6B), 0.14 (Qwen3-32B, Mistral-Small, Llama-3.3-70B-FP8); free 78.57 of 79.18 GiB"),
    (11, 2, 1): CalibrationRow(_g(0.545), _g(1.54), "seeds: 0.55 (Llama-3.3-70B-FP8 TP2), 0.54 (Qwen3-32B TP2); free 77.64 of 79.18 GiB"),
    (19, 1, 1): CalibrationRow(_g(0.25), _g(0.51), "0.19 logs: 0.25 (Llama-3.1-8B x9, Qwen3-8B, Mistral-Small), 0.24 (Qwen2.5-7B x7), 0.46 (granite-3.3, outlier); init cuda_memory 0.51 GiB"),
    (19, 2, 1): CalibrationRow(_g(2.07), _g(1.53), "0.19 logs TP2: 2.07 (Llama-3.1-8B), 2.06 (Qwen2.5-7B), 2.1 (Llama-3.3-70B-FP8); init cuda_memory 1.53 GiB"),
    (19, 4, 1): CalibrationRow(_g(2.13), _g(1.55), "0.19 logs TP4: 2.13 (Llama-3.1-8B, Qwen2.5-7B); init cuda_memory 1.55 GiB"),
    (19, 1, 2): CalibrationRow(_g(0.07), _g(1.43), "0.19 log PP2 (Llama-3.1-8B): 0.07 on both stages; init cuda_memory 1.43 GiB"),
    (19, 1, 4): CalibrationRow(_g(0.07), _g(1.48), "0.19 log PP4 (Llama-3.1-8B): 0.07 on all stages; init cuda_memory 1.48 GiB"),
}

# Kept allocations of the profile run that shapes do not show: PyTorch's cuBLAS
# workspace (32 MiB on Hopper, allocated through the caching allocator on the
# first matmul and kept) plus a few MiB of small tensors.  Calibrated: the
# activation left after subtracting the sampler and hidden-state tensors is
# 0.029-0.037 GiB on all nine dense rows where the sampler dominates (seeds:
# Qwen3-0.6B, Llama-3.1-8B, Qwen3-32B TP2, Llama-3.3-70B TP2; 0.19: Llama-3.1-8B
# bf16/fp16/fp32, Qwen2.5-7B, Qwen3-8B).  Mean 0.033 GiB.
PROFILE_KEPT_BYTES = _g(0.033)

# CUDA-graph memory estimate (vLLM 0.18+, gpu_model_runner.profile_cudagraph_memory):
# first capture of a mode + (graphs - 1) x per-graph.  The 0.19 TP1 logs print
# "Estimated FULL CUDA graph memory: 260.00 MiB first-capture + (51-1) x 6.00 MiB"
# (Llama-3.1-8B), 228 + 50 x 4 (Qwen2.5-7B), 262 + 50 x 4 (granite-3.3),
# 262 + 50 x 6 (Mistral-Small); PIECEWISE 124-212 MiB first + 4-6 MiB per graph.
CUDAGRAPH_FIRST_CAPTURE_BYTES = 256 * MiB
CUDAGRAPH_PER_GRAPH_BYTES = {"PIECEWISE": 6 * MiB, "FULL": 5 * MiB}
# The capture itself ("Graph capturing finished ... took X GiB") measured
# 0.07 GiB (Llama) to 0.25 GiB (Qwen2.5) above the estimate in the 0.19 logs;
# vllm-fit reports actual = estimate + this mean.
CUDAGRAPH_ACTUAL_MINUS_ESTIMATE_BYTES = _g(0.13)


def _nearest_minor(minor: int) -> int:
    return min(MEASURED_MINORS, key=lambda m: (abs(m - minor), -m))


def calibration_for(minor: int, tp: int, pp: int) -> tuple[CalibrationRow, str]:
    """The calibrated row for this version and parallel layout, and a note."""
    m = _nearest_minor(minor)
    keys = [k for k in NON_TORCH_TABLE if k[0] == m]
    if (m, tp, pp) in NON_TORCH_TABLE:
        key = (m, tp, pp)
    elif tp > 1:
        tps = sorted({k[1] for k in keys if k[1] > 1 and k[2] == 1})
        best_tp = max([t for t in tps if t <= tp] or tps[:1])
        key = (m, best_tp, 1)
    elif pp > 1:
        pps = sorted({k[2] for k in keys if k[2] > 1 and k[1] == 1}) or [1]
        best_pp = max([p for p in pps if p <= pp] or pps[:1])
        key = (m, 1, best_pp) if (m, 1, best_pp) in NON_TORCH_TABLE else (m, 1, 1)
    else:
        key = (m, 1, 1)
    if key not in NON_TORCH_TABLE:
        key = (m, 1, 1)
    row = NON_TORCH_TABLE[key]
    note = f"non-torch and start-up memory calibrated on vLLM 0.{m} H100 logs (TP={key[1]}, PP={key[2]})"
    if key != (minor if minor in MEASURED_MINORS else m, tp, pp) or m != minor:
        note += f"; used for vLLM 0.{minor} TP={tp} PP={pp}"
    return row, note
