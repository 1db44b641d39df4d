#!/usr/bin/env python3
"""Print the engine-checked tier as a markdown table: what each configuration covers,
and the real vLLM CPU engine's blocks / "KV cache size" tokens / "Maximum concurrency"
next to vllm-fit's.  Reads the last recorded live run
(tests/fixtures/cpu-engine/live-cases.json); output kept in docs/engine-checked.md.

    .venv/bin/python tools/engine_table.py > docs/engine-checked.md
"""
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import vllm_fit  # noqa: E402
from test_engine_live import CASES  # noqa: E402


def main() -> None:
    recorded = {c["name"]: c for c in json.loads((REPO / "tests/fixtures/cpu-engine/live-cases.json").read_text())}
    print("# Engine-checked configurations (real vLLM 0.32 CPU engine vs vllm-fit)\n")
    print("Each row: one start of the real engine on a config-only folder with dummy weights and a fixed")
    print("kv_cache_memory_bytes; vllm-fit is given the same budget (platform=\"cpu\").")
    print("Columns: blocks / tokens / concurrency, engine | vllm-fit.\n")
    print("| name | covers | block | engine blocks / tokens / conc. | vllm-fit blocks / tokens / conc. | match |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, what, cfg, eng, ov in CASES:
        r = recorded.get(name)
        if r is None or not r.get("ok"):
            err = (r or {}).get("error", "not recorded")
            print(f"| {name} | {what} | - | CPU build cannot start it: {err} | - | skipped |")
            continue
        flags = dict(eng)
        flags.update({k: v for k, v in ov.items() if k != "config"})
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "config.json"
            p.write_text(json.dumps(ov.get("config", cfg)))
            plan = vllm_fit.plan(config=p, gpu="H100", vllm_version="0.32.0", platform="cpu", **flags)
        e = (r["num_gpu_blocks"], r["kv_cache_tokens"], f"{r['max_concurrency']:.2f}")
        f = (plan.num_gpu_blocks, plan.kv_cache_tokens, f"{plan.max_concurrency:.2f}")
        fmt = lambda t: f"{t[0]:,} / {t[1]:,} / {t[2]}x"  # noqa: E731
        print(f"| {name} | {what} | {r['block_size']} | {fmt(e)} | {fmt(f)} | {'exact' if e == f else 'DIFFERS'} |")


if __name__ == "__main__":
    main()
