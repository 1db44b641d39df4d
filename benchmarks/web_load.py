"""Load test of `POST /api/plan` on loopback: requests per second and latency percentiles.

The server (`python -m vllm_fit web`) runs in its own process pinned to one core
(taskset, where the OS has it); the load comes from this process, pinned to
another core, over keep-alive HTTP/1.1 connections.  A bounded number of
requests per scenario.  Targets (issue 6): 200 plans/s on one core, p99 < 50 ms.

    python benchmarks/web_load.py [--requests 3000] [--concurrency 2] [--out benchmarks/web-load.md]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

SERVER_CORE, CLIENT_CORE = 0, 1

MODELS = ["Qwen/Qwen3-8B", "Qwen/Qwen3-32B", "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct",
          "Qwen/Qwen2.5-72B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3"]


def distinct_bodies() -> list[bytes]:
    """Plans that differ (model x TP x max_model_len x version): no two requests alike in a round."""
    import vllm_fit.web.service as service

    known = {m["id"] for m in service.list_models() if m["has_config"]}
    models = [m for m in MODELS if m in known]
    out = []
    for model, tp, mml, ver in itertools.product(models, (1, 2, 4), (4096, 8192, 32768), ("0.19.0", "0.33.0")):
        out.append(json.dumps({"model": model, "gpu": "H100", "tensor_parallel_size": tp, "max_model_len": mml,
                               "vllm_version": ver}).encode())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, cache_size: int, pin: bool = True, gc_off: bool = False,
                 impl: str | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vllm_fit", "web", "--port", str(port), "--cache-size", str(cache_size),
           "--no-access-log"]
    if gc_off:  # diagnostics: the same server with Python's cyclic GC switched off
        cmd = [sys.executable, "-c", "import gc, sys; gc.disable(); from vllm_fit.cli import main; "
               "main(sys.argv[1:])", *cmd[3:]]
    if impl:  # diagnostics: another event loop / HTTP parser, e.g. asyncio,h11
        loop_impl, http_impl = impl.split(",")
        cmd = [sys.executable, "-c", "import uvicorn; from vllm_fit.web import create_app, _warm_up; "
               f"app = create_app({cache_size}); _warm_up(); "
               f"uvicorn.run(app, port={port}, access_log=False, loop={loop_impl!r}, http={http_impl!r})"]
    if pin and shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", str(SERVER_CORE)] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/api/versions")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start: " + proc.stderr.read().decode()[-2000:])


def run_load(port: int, bodies: list[bytes], n_requests: int, concurrency: int, rate: float | None = None) -> dict:
    """Closed loop (each connection sends as soon as its answer is in) or, with ``rate``, open loop:
    request i is due at start + i/rate and its latency counts from then (queueing included)."""
    latencies: list[float] = []
    server_ms: list[float] = []
    lags: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = itertools.count()
    start = time.perf_counter() + 0.05

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        mine_server: list[float] = []
        mine_lag: list[float] = []
        while True:
            i = next(counter)
            if i >= n_requests:
                break
            body = bodies[i % len(bodies)]
            if rate:
                t0 = start + i / rate
                delay = t0 - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                mine_lag.append((time.perf_counter() - t0) * 1000)
            else:
                t0 = time.perf_counter()
            conn.request("POST", "/api/plan", body=body, headers={"content-type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            mine.append(time.perf_counter() - t0)
            timing = resp.getheader("server-timing") or ""
            if "dur=" in timing:
                mine_server.append(float(timing.split("dur=")[1]))
            if resp.status != 200 or b'"kv_cache_tokens"' not in data:
                with lock:
                    errors.append(f"{resp.status}: {data[:120]!r}")
        conn.close()
        with lock:
            latencies.extend(mine)
            server_ms.extend(mine_server)
            lags.extend(mine_lag)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))] * 1000

    hist: dict[int, int] = {}
    for x in lat:
        hist[int(x * 1000) // 10 * 10] = hist.get(int(x * 1000) // 10 * 10, 0) + 1
    return {"histogram_10ms": dict(sorted(hist.items())), "requests": len(lat), "errors": len(errors), "seconds": wall, "rps": len(lat) / wall,
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": lat[-1] * 1000,
            "mean_ms": statistics.fmean(lat) * 1000, "first_error": errors[0] if errors else "",
            "server_p50_ms": _pct(sorted(server_ms), 50), "server_p99_ms": _pct(sorted(server_ms), 99),
            "send_lag_p99_ms": _pct(sorted(lags), 99)}


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def in_process_ms(bodies: list[bytes]) -> float:
    """The planner alone (no HTTP): mean ms per distinct plan."""
    from vllm_fit.web.service import PlanRequest, run_plan

    reqs = [PlanRequest.model_validate_json(b) for b in bodies]
    for r in reqs[:5]:
        run_plan(r)
    t0 = time.perf_counter()
    for r in reqs:
        run_plan(r).to_dict()
    return (time.perf_counter() - t0) / len(reqs) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000, help="requests per scenario (bounded)")
    ap.add_argument("--concurrency", type=int, default=2, help="connections of the first closed-loop row")
    ap.add_argument("--paced-connections", type=int, default=8)
    ap.add_argument("--no-pin", action="store_true", help="diagnostics: do not pin the server to one core")
    ap.add_argument("--gc-off", action="store_true", help="diagnostics: server with the cyclic GC off")
    ap.add_argument("--impl", default=None, help="diagnostics: uvicorn loop,http (e.g. asyncio,h11)")
    ap.add_argument("--histogram", action="store_true", help="diagnostics: latency histogram of the paced run")
    ap.add_argument("--out", type=Path, default=None, help="also write the table as Markdown")
    args = ap.parse_args()
    if args.requests < 1 or args.requests > 100_000:
        raise SystemExit("--requests must be between 1 and 100000")
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {CLIENT_CORE})

    bodies = distinct_bodies()
    rows = []
    # (name, server cache size, bodies, connections, open-loop rate)
    scenarios = [
        ("distinct plans, no cache, closed loop", 0, bodies, args.concurrency, None),
        ("distinct plans, no cache, closed loop", 0, bodies, 8, None),
        ("distinct plans, no cache, paced at 200/s (open loop)", 0, bodies, args.paced_connections, 200.0),
        ("20 repeated plans, cache on, closed loop", 256, bodies[:20], args.concurrency, None),
    ]
    for name, cache_size, these, conns, rate in scenarios:
        port = free_port()
        proc = start_server(port, cache_size, pin=not args.no_pin, gc_off=args.gc_off, impl=args.impl)
        try:
            run_load(port, these, min(100, args.requests), conns)  # warm-up, not counted
            res = run_load(port, these, args.requests, conns, rate)
        finally:
            proc.terminate()
            proc.wait(10)
        rows.append((name, conns, res))

    pinned = "server pinned to core 0 (taskset), load from core 1" if shutil.which("taskset") else "not pinned"
    head = ["scenario", "requests", "connections", "errors", "plans/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
            "planner p50 / p99 ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for name, conns, r in rows:
        lines.append(f"| {name} | {r['requests']} | {conns} | {r['errors']} | {r['rps']:.0f} | "
                     f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | "
                     f"{r['server_p50_ms']:.1f} / {r['server_p99_ms']:.1f} |")
    fast, paced = rows[0][2], rows[2][2]
    ok = fast["rps"] >= 200 and fast["p99_ms"] < 50 and all(r["errors"] == 0 for _, _, r in rows)
    paced_ok = paced["p99_ms"] < 50
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = "\n".join([
        "# Web API load test: POST /api/plan on loopback",
        "",
        f"`python benchmarks/web_load.py --requests {args.requests} --concurrency {args.concurrency}`; "
        f"{pinned}; {len(bodies)} distinct plan bodies (6 models x TP 1/2/4 x max_model_len 4k/8k/32k x vLLM 0.19/0.33), "
        "keep-alive HTTP/1.1 (http.client, one thread per connection), 100 warm-up requests not counted; "
        "the server answers one request at a time (one event loop on one core).",
        "",
        *lines,
        "",
        "Planner alone, in this (client) process: vllm_fit.plan without HTTP and without the server's "
        f"resolution cache, {in_process_ms(bodies):.2f} ms per distinct plan.",
        "Latency of the paced row counts from each request's due time, so queueing behind a slow answer is included "
        f"(the client itself sent p99 {paced['send_lag_p99_ms']:.1f} ms after the due time). "
        "'planner' is the server's own time in the plan (its Server-Timing header).",
        f"Target (>= 200 plans/s on one core with p99 < 50 ms), closed loop, row 1: {'met' if ok else 'NOT met'}; "
        f"open loop at 200 plans/s, row 3: p99 {paced['p99_ms']:.0f} ms, {'met' if paced_ok else 'NOT met'}.",
        f"Machine: {_cpu_model()}, {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average {load1:.2f} at the end (the machine is shared, so numbers move between runs).",
        "",
    ])
    print(text)
    if args.histogram:
        for name, _, r in rows:
            print(name, "latency histogram (10 ms buckets: count):", r["histogram_10ms"])
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
