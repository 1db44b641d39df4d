"""How fast `vllm-fit plan` answers: from the shell (installed console script)
and through the Python API.  Also checks the core imports neither torch nor vllm.

    python benchmarks/speed.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def shell_times(n: int = 10) -> list[float]:
    exe = shutil.which("vllm-fit") or str(Path(sys.executable).parent / "vllm-fit")
    cmd = [exe, "plan", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--max-model-len", "32768", "--json"]
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        out.append(time.perf_counter() - t)
    return out


def api_times(n: int = 200) -> list[float]:
    import vllm_fit

    vllm_fit.plan("qwen3-8b", gpu="H100", max_model_len=8192)  # warm caches
    out = []
    for i in range(n):
        t = time.perf_counter()
        vllm_fit.plan("qwen3-8b", gpu="H100", max_model_len=4096 + i, tensor_parallel_size=1 + i % 2)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    import vllm_fit  # noqa: F401

    heavy = [m for m in ("torch", "vllm", "numpy") if m in sys.modules]
    sh, api = shell_times(), api_times()
    p = lambda xs, q: sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]  # noqa: E731
    print("| what | runs | median | p95 | max |")
    print("|---|---|---|---|---|")
    print(f"| `vllm-fit plan ... --json` (shell, new process) | {len(sh)} | {statistics.median(sh) * 1000:.0f} ms | {p(sh, .95) * 1000:.0f} ms | {max(sh) * 1000:.0f} ms |")
    print(f"| `vllm_fit.plan(...)` (API, warm) | {len(api)} | {statistics.median(api) * 1000:.2f} ms | {p(api, .95) * 1000:.2f} ms | {max(api) * 1000:.2f} ms |")
    print()
    print(f"heavy modules imported by the core: {heavy or 'none'}")


if __name__ == "__main__":
    main()
