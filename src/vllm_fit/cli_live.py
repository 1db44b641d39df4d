"""``vllm-fit watch`` and ``vllm-fit profile``: the commands that talk to a live vLLM server.

Exit codes (both commands):
  0  the server answered (profile: it started, and a request, if sent, matched the prediction)
  1  profile: vLLM failed to start (the classified failure is shown), did not get ready within
     --timeout, or the request's live blocks/usage differed; watch: the --request-tokens check
     failed (the one running request holds other blocks, or the request can never fit)
  2  bad input: a bad URL or flag, or a server whose answer is not vLLM's (garbage /metrics, HTTP 4xx)
  3  the server could not be reached: connection refused, no answer within --timeout,
     connection closed mid-response, HTTP 5xx
"""

from __future__ import annotations

import json
import time
from typing import Any, List, Optional

import typer

from .errors import VllmFitError


def _die(exc: VllmFitError) -> None:
    typer.echo(f"vllm-fit: error: {exc}", err=True)
    raise typer.Exit(getattr(exc, "exit_code", 2))


def _watch_plan_fn(model: Optional[str] = None, **flags: Any) -> dict:
    import vllm_fit

    return vllm_fit.plan(model, **flags).to_dict()


def _user_flags(gpu, gpu_memory_gib, vllm_version, model, config, tp, pp, max_model_len, dtype, quantization) -> dict:
    return {"gpu": gpu, "gpu_memory_gib": gpu_memory_gib, "vllm_version": vllm_version, "model": model,
            "config": config, "tensor_parallel_size": tp, "pipeline_parallel_size": pp,
            "max_model_len": max_model_len, "dtype": dtype, "quantization": quantization}


def _watch_exit(snap: dict) -> int:
    req = snap.get("request")
    if req and (req.get("match") is False or not req.get("fits_at_all")):
        return 1
    return 0


def watch(
    url: str = typer.Argument(..., help="The vLLM server, e.g. http://127.0.0.1:8000 (its /metrics and /v1/models are read)."),
    request_tokens: Optional[int] = typer.Option(None, "--request-tokens", help="Predict the blocks and usage of a request of N tokens and check them live."),
    interval: float = typer.Option(2.0, "--interval", help="Seconds between refreshes."),
    once: bool = typer.Option(False, "--once", help="One snapshot, then exit."),
    as_json: bool = typer.Option(False, "--json", help="JSON: one object with --once, else one line per refresh."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for each answer."),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="Compare the server's KV size with vllm-fit's plan."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="The server's GPU (for the plan; the metrics do not say)."),
    gpu_memory_gib: Optional[float] = typer.Option(None, "--gpu-memory-gib"),
    vllm_version: Optional[str] = typer.Option(None, "--vllm-version", help="Default: the server's /version."),
    model: Optional[str] = typer.Option(None, "--model", help="Plan this model instead of the served one (catalog name, folder, hub id)."),
    config: Optional[str] = typer.Option(None, "--config", help="A config.json or model folder for the plan."),
    tensor_parallel_size: Optional[int] = typer.Option(None, "--tensor-parallel-size", "-tp"),
    pipeline_parallel_size: Optional[int] = typer.Option(None, "--pipeline-parallel-size", "-pp"),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len"),
    dtype: Optional[str] = typer.Option(None, "--dtype"),
    quantization: Optional[str] = typer.Option(None, "--quantization", "-q"),
) -> None:
    from .watch import rates, render_snapshot, take_snapshot

    if interval <= 0 or timeout <= 0:
        _die(VllmFitError("--interval and --timeout must be positive"))
    flags = _user_flags(gpu, gpu_memory_gib, vllm_version, model, config, tensor_parallel_size,
                        pipeline_parallel_size, max_model_len, dtype, quantization)
    plan_fn = _watch_plan_fn if compare else None

    def snapshot() -> dict:
        return take_snapshot(url, timeout=timeout, request_tokens=request_tokens, plan_fn=plan_fn, user_flags=flags)

    try:
        snap = snapshot()  # the first read must work: a wrong URL fails at once
    except VllmFitError as exc:
        _die(exc)
        return
    if once:
        typer.echo(json.dumps(snap, indent=2, default=str) if as_json else render_snapshot(snap))
        raise typer.Exit(_watch_exit(snap))
    if as_json:
        try:
            while True:
                typer.echo(json.dumps(snap, default=str))
                time.sleep(interval)
                try:
                    snap = snapshot()
                except VllmFitError as exc:
                    typer.echo(json.dumps({"time": time.time(), "error": str(exc)}))
        except KeyboardInterrupt:
            raise typer.Exit(0)
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    previous = None
    try:
        with Live(Text(render_snapshot(snap)), console=Console(), auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                try:
                    # the plan does not change while the server runs: compute it once
                    fresh = take_snapshot(url, timeout=timeout, request_tokens=request_tokens, plan_fn=None,
                                          user_flags=flags)
                    for key in ("plan_flags", "plan", "plan_error", "kv_comparison"):
                        fresh[key] = snap.get(key)
                    previous, snap = snap, fresh
                    body = render_snapshot(snap, rates(previous, snap))
                except VllmFitError as exc:
                    body = render_snapshot(snap) + f"\n  !! {time.strftime('%H:%M:%S')} {exc}"
                live.update(Text(body + f"\n  (every {interval:g} s; Ctrl-C to stop)"), refresh=True)
    except KeyboardInterrupt:
        raise typer.Exit(0)


def profile(
    command: List[str] = typer.Argument(..., help="The command after `--`: vllm serve MODEL [vLLM flags]."),
    vllm_bin: Optional[str] = typer.Option(None, "--vllm-bin", help="The `vllm` executable to use instead of the one on PATH."),
    log: Optional[str] = typer.Option(None, "--log", help="Where to keep the whole log (default ./vllm-fit-profile-<UTC time>.log)."),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds to wait for /health before giving up."),
    request_tokens: Optional[int] = typer.Option(None, "--request-tokens", help="Send one completion of exactly N prompt tokens and check its KV blocks live."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="max_tokens of that request (default: up to the end of its last block)."),
    grace: float = typer.Option(30.0, "--grace", help="Seconds between SIGINT and SIGKILL when stopping."),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="Compare the log and the live KV size with vllm-fit's plan."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="The GPU, for the live KV comparison."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
) -> None:
    from .cli import _plan_for_log
    from .profile import profile_exit_code, render_profile, run_profile

    try:
        result = run_profile(
            command, log_path=log, vllm_bin=vllm_bin, timeout=timeout, request_tokens=request_tokens,
            max_tokens=max_tokens, grace=grace, plan_fn=_plan_for_log if compare else None,
            watch_plan_fn=_watch_plan_fn if compare else None, watch_flags={"gpu": gpu},
        )
    except VllmFitError as exc:
        _die(exc)
        return
    except KeyboardInterrupt:  # run_profile stopped the server on the way out
        typer.echo("vllm-fit: interrupted; the vLLM server was stopped", err=True)
        raise typer.Exit(130)
    typer.echo(json.dumps(result, indent=2, default=str) if as_json else render_profile(result))
    raise typer.Exit(profile_exit_code(result))


def register(app: typer.Typer) -> None:
    app.command(help="Watch a running vLLM server: KV usage, blocks, requests, prefix cache, latency; "
                     "compare with the plan; --request-tokens N checks a request's blocks.")(watch)
    app.command(
        help="Start `vllm serve` with debug logging, wait until ready, explain its log, optionally check one "
             "request, watch once, stop it: vllm-fit profile [OPTIONS] -- vllm serve MODEL ...",
        context_settings={"allow_interspersed_args": False},
    )(profile)
