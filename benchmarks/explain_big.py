"""Benchmark the log reader on a ~1 GB log made of real vLLM log lines.

    python benchmarks/explain_big.py [--size-gb 1.0] [--keep]

Two cases, each measured in a fresh subprocess (peak RSS from resource.getrusage):

* ``one start``: one real start-up log followed by ~1 GB of real lines that do not
  start a new engine (a long-running server log): one report.
* ``many starts``: whole real logs repeated to ~1 GB: one report per start.

Targets: < 30 s and < 200 MB peak RSS per case.  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL_LOGS = REPO.parent / "shared" / "validation" / "vllm-0.19.0-h100" / "logs"
SYNTH_LOGS = REPO / "tests" / "fixtures" / "logs" / "synthetic"
START_MARKERS = ("non-default args", "LLM engine", "API server version")


def _source_logs() -> list[Path]:
    logs = sorted(REAL_LOGS.glob("*.log")) if REAL_LOGS.is_dir() else []
    return logs or sorted(SYNTH_LOGS.glob("*.log"))


def generate(path: Path, size_bytes: int, many_starts: bool) -> int:
    """Stream a log of about ``size_bytes`` to ``path``; returns the number of lines."""
    logs = _source_logs()
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in logs]
    written = 0
    lines = 0
    with open(path, "w", encoding="utf-8") as out:
        if many_starts:
            while written < size_bytes:
                for text in texts:
                    out.write(text if text.endswith("\n") else text + "\n")
                    written += len(text.encode("utf-8"))
                    lines += text.count("\n")
                    if written >= size_bytes:
                        break
        else:
            first = next((t for p, t in zip(logs, texts) if "FAILED" not in p.name), texts[0])
            out.write(first)
            written += len(first.encode("utf-8"))
            lines += first.count("\n")
            body = "".join(
                line + "\n" for t in texts for line in t.splitlines()
                if not any(marker in line for marker in START_MARKERS)
            )
            body_bytes = len(body.encode("utf-8"))
            body_lines = body.count("\n")
            while written < size_bytes:
                out.write(body)
                written += body_bytes
                lines += body_lines
    return lines


def measure(path: Path) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from vllm_fit.logreader import read_log

    start = time.perf_counter()
    reports = read_log(path)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"{seconds:.3f} {peak_kib} {len(reports)} {reports[0].measured['kv_cache_gib']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the generated logs")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return
    size = int(args.size_gb * 1e9)
    rows = []
    tmpdir = Path(tempfile.mkdtemp(prefix="vllm-fit-bench-"))
    try:
        for name, many in (("one start + 1 GB of server lines", False), ("many starts (whole logs repeated)", True)):
            path = tmpdir / ("many.log" if many else "one.log")
            lines = generate(path, size, many)
            file_bytes = path.stat().st_size
            out = subprocess.run([sys.executable, __file__, "--measure", str(path)], check=True,
                                 capture_output=True, text=True).stdout.split()
            seconds, peak_kib, n_reports, kv = float(out[0]), int(out[1]), int(out[2]), out[3]
            rows.append((name, file_bytes, lines, n_reports, kv, seconds, peak_kib))
            if not args.keep:
                path.unlink()
    finally:
        if not args.keep:
            for p in tmpdir.iterdir():
                p.unlink()
            tmpdir.rmdir()
    print(f"Source lines: {len(_source_logs())} logs from {_source_logs()[0].parent}")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print("| case | size (MB) | lines | reports | first report KV (GiB) | read_log (s) | MB/s | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, file_bytes, lines, n_reports, kv, seconds, peak_kib in rows:
        print(f"| {name} | {file_bytes / 1e6:.0f} | {lines:,} | {n_reports:,} | {kv} | {seconds:.1f} | "
              f"{file_bytes / 1e6 / seconds:.0f} | {peak_kib / 1024:.0f} |")


if __name__ == "__main__":
    main()
