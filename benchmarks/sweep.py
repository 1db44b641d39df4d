"""How fast `sweep` plans a grid: 10,000 configurations must take under 10 s.

    python benchmarks/sweep.py            # prints a markdown table (benchmarks/sweep.md)

Each grid is GPU types x TP x utilization x max-model-len x KV dtype x
max-num-seqs = 5 x 4 x 10 x 5 x 2 x 5 = 10,000 configurations, for three
models (dense, FP8 checkpoint, MoE).  Also: the same configurations planned one by one
through vllm_fit.plan (no model reuse, no memoized weight path), timed on a
sample and extrapolated, and advise's wall time.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

GRID = dict(
    gpu=["H100", "A100-80GB", "L40S", "L4", "RTX-4090"],
    tensor_parallel_size=[1, 2, 4, 8],
    gpu_memory_utilization=[round(0.5 + 0.05 * i, 2) for i in range(10)],
    max_model_len=[2048, 4096, 8192, 16384, 32768],
    kv_cache_dtype=["auto", "fp8"],
    max_num_seqs=[32, 64, 128, 256, 1024],
)
MODELS = [("meta-llama/Llama-3.1-8B-Instruct", "0.19.0"), ("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "0.11.0"),
          ("Qwen/Qwen3-30B-A3B", "0.33.0")]


def one_sweep(model: str, version: str) -> tuple[int, float, int]:
    from vllm_fit.sweep import sweep

    t = time.perf_counter()
    rows = sweep(model, vllm_version=version, **GRID)
    return len(rows), time.perf_counter() - t, sum(r["fits"] for r in rows)


def unmemoized(model: str, version: str, sample: int = 200) -> float:
    import vllm_fit

    t = time.perf_counter()
    for i in range(sample):
        vllm_fit.plan(model, gpu=GRID["gpu"][i % 5], vllm_version=version, tensor_parallel_size=GRID["tensor_parallel_size"][i % 4],
                      gpu_memory_utilization=GRID["gpu_memory_utilization"][i % 10], max_model_len=GRID["max_model_len"][i % 5],
                      max_num_seqs=GRID["max_num_seqs"][i % 5])
    return (time.perf_counter() - t) / sample


def main() -> None:
    print("| model | vLLM | configurations | starting | sweep wall time | per configuration | one-by-one `vllm_fit.plan` (extrapolated) |")
    print("|---|---|---|---|---|---|---|")
    for model, version in MODELS:
        try:
            n, secs, ok = one_sweep(model, version)
        except Exception as e:  # a model this core cannot plan: say so, keep going
            print(f"| {model} | {version} | - | - | not planned: {str(e)[:60]} | - | - |")
            continue
        per = unmemoized(model, version)
        print(f"| {model} | {version} | {n:,} | {ok:,} | {secs:.2f} s | {secs / n * 1e3:.3f} ms | {per * n:.1f} s ({per * 1e3:.2f} ms each) |")
    from vllm_fit.advise import advise

    t = time.perf_counter()
    r = advise("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", gpu="H100", vllm_version="0.11.0", max_model_len=16000, concurrency=8)
    print()
    print(f"advise (Llama-3.3-70B-FP8 on H100, all sections, cheapest over {len(r['cheapest']['options'])} GPU types): "
          f"{time.perf_counter() - t:.2f} s, {r['planner_calls']} plans")
    print(f"\nmachine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs (shared); one process, no parallelism")


if __name__ == "__main__":
    main()
