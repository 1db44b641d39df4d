"""Start a real ``vllm serve``, measure its start-up, check one request, stop it.

``run_profile(command, ...)`` returns a plain dict (the JSON of ``vllm-fit profile --json``):

1. start the command in its own process group with ``VLLM_LOGGING_LEVEL=DEBUG``, its whole
   output (stdout and stderr) in one log file;
2. wait for ``GET /health`` to answer 200 (ready), for the process to exit (failed) or for
   the timeout;
3. with ``request_tokens``: send one completion whose prompt is that many token ids (exact
   length, no tokenizer needed) while scraping ``/metrics``; the blocks and usage seen while
   it runs are checked against ``ceil(N / block_size)`` and ``blocks / (num_gpu_blocks - 1)``;
4. take one ``watch`` snapshot;
5. stop the server: SIGINT to the process group (what Ctrl-C does), SIGKILL after the grace period;
6. read the whole log with the log reader and ``explain`` it; a failed start gets the
   failure the reader classified.

Nothing here prints; ``render_profile`` makes the text.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .errors import VllmFitError
from .http_fetch import get_json, get_status, get_text, post_json
from .metrics import parse_metrics
from .units import cdiv

__all__ = ["prepare_command", "run_profile", "render_profile", "request_tokens_window", "free_port"]

PlanFn = Callable[[dict[str, Any]], dict[str, Any]]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _flag_value(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def prepare_command(command: list[str], vllm_bin: str | None = None) -> dict[str, Any]:
    """The argv to run and the URL to reach: ``vllm serve MODEL ...`` with ``--host``/``--port`` added if missing."""
    argv = [a for a in command if a != "--"] if command[:1] == ["--"] else list(command)
    if not argv:
        raise VllmFitError("no vLLM command given", "Example: vllm-fit profile -- vllm serve Qwen/Qwen3-0.6B --max-model-len 4096")
    if argv[0] == "serve":
        argv = ["vllm"] + argv
    if len(argv) < 2 or argv[1] != "serve":
        raise VllmFitError(f"expected `vllm serve MODEL ...` after `--`, got {' '.join(argv)[:120]!r}")
    if vllm_bin:
        argv[0] = vllm_bin
    exe = shutil.which(argv[0]) if os.sep not in argv[0] else (argv[0] if os.access(argv[0], os.X_OK) else None)
    if exe is None:
        raise VllmFitError(f"{argv[0]!r} is not an executable on PATH", "Install vLLM or point --vllm-bin at its `vllm` script")
    argv[0] = exe
    model = _flag_value(argv, "--model")
    if model is None and len(argv) > 2 and not argv[2].startswith("-"):
        model = argv[2]
    if model is None:
        raise VllmFitError("no model in the command: vllm serve MODEL ...")
    host = _flag_value(argv, "--host")
    if host is None:
        host = "127.0.0.1"  # loopback unless the user asks otherwise
        argv += ["--host", host]
    port_text = _flag_value(argv, "--port")
    if port_text is None:
        port = free_port()
        argv += ["--port", str(port)]
    else:
        try:
            port = int(port_text)
        except ValueError:
            raise VllmFitError(f"--port {port_text!r} is not a port number") from None
    connect = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    if ":" in connect:
        connect = f"[{connect}]"
    return {"argv": argv, "model": model, "url": f"http://{connect}:{port}"}


def request_tokens_window(request_tokens: int, block_size: int, max_model_len: int | None) -> int:
    """max_tokens that keeps a request inside its prompt's last block, so its block count stays
    ``ceil(N / block_size)`` from prefill to the end (the last sampled token is never cached):
    N + max_tokens - 1 <= block_size * ceil(N / block_size)."""
    window = block_size * cdiv(request_tokens, block_size) - request_tokens + 1
    if max_model_len:
        window = min(window, max_model_len - request_tokens)
    return max(1, window)


def _prompt_ids(n: int, vocab_size: int | None) -> list[int]:
    span = max(2, min(vocab_size or 1000, 1000) - 1)
    return [1 + (i * 31) % span for i in range(n)]


def _vocab_size(model_root: str | None) -> int | None:
    if not model_root:
        return None
    cfg = Path(model_root) / "config.json"
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return None
    v = data.get("vocab_size") or (data.get("text_config") or {}).get("vocab_size")
    return int(v) if isinstance(v, int) and v > 1 else None


def send_measured_request(url: str, request_tokens: int, *, max_tokens: int | None = None,
                          timeout: float = 120.0, sample_every: float = 0.005) -> dict[str, Any]:
    """Send one completion of exactly ``request_tokens`` prompt tokens and sample ``/metrics`` while it runs."""
    before = parse_metrics(get_text(url, "/metrics", timeout))
    listing = get_json(url, "/v1/models", timeout)
    models = (listing.get("data") if isinstance(listing, dict) else None) or [{}]
    if not isinstance(models[0], dict) or not models[0].get("id"):
        raise VllmFitError(f"{url}/v1/models lists no model to send the request to")
    model_id, root = models[0].get("id"), models[0].get("root")
    max_model_len = models[0].get("max_model_len")
    bs, usable = before.block_size, before.usable_blocks
    if not bs or not usable:
        raise VllmFitError("the server's /metrics has no block_size / num_gpu_blocks (vllm:cache_config_info)")
    if max_model_len and request_tokens >= max_model_len:
        raise VllmFitError(f"--request-tokens {request_tokens} must be below the server's max_model_len {max_model_len}")
    if max_tokens is None:
        max_tokens = request_tokens_window(request_tokens, bs, max_model_len)
    blocks = cdiv(request_tokens, bs)
    predicted_usage = 1.0 - ((usable - blocks) / usable)  # vLLM's BlockPool.get_usage() expression
    samples: list[dict[str, Any]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            try:
                m = parse_metrics(get_text(url, "/metrics", 5.0))
                samples.append({"t": round(time.monotonic() - t0, 4), "running": m.requests_running,
                                "waiting": m.requests_waiting, "usage": m.kv_cache_usage, "blocks": m.blocks_in_use})
            except VllmFitError:
                pass  # a scrape that fails is just not a sample
            stop.wait(sample_every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    payload = {"model": model_id, "prompt": _prompt_ids(request_tokens, _vocab_size(root)), "max_tokens": max_tokens,
               "temperature": 0.0, "ignore_eos": True, "stream": False}
    try:
        answer = post_json(url, "/v1/completions", payload, timeout)
    finally:
        stop.set()
        thread.join(10)
    seconds = time.monotonic() - t0
    usage = answer.get("usage") or {} if isinstance(answer, dict) else {}
    in_flight = [s for s in samples if s["running"] == 1 and not s["waiting"] and s["usage"]]
    seen = sorted({(s["blocks"], s["usage"]) for s in in_flight})
    match = None
    if in_flight:
        match = all(b == blocks and u == predicted_usage for b, u in seen)
    return {
        "model": model_id,
        "request_tokens": request_tokens,
        "max_tokens": max_tokens,
        "prompt_tokens_served": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "block_size": bs,
        "num_gpu_blocks": before.num_gpu_blocks,
        "usable_blocks": usable,
        "predicted_blocks": blocks,
        "predicted_usage": predicted_usage,
        "live_blocks": sorted({b for b, _ in seen}),
        "live_usage": sorted({u for _, u in seen}),
        "samples": len(samples),
        "samples_in_flight": len(in_flight),
        "match": match,
        "seconds": round(seconds, 3),
    }


class _Server:
    """One ``vllm serve`` process group with its log file."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str]):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        except OSError as exc:
            self.log.close()
            raise VllmFitError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None

    def wait_ready(self, url: str, timeout: float, poll: float = 0.5) -> str:
        deadline = self.started + timeout
        while True:
            if self.proc.poll() is not None:
                return "exited"
            try:
                if get_status(url, "/health", 5.0) == 200:
                    return "ready"
            except VllmFitError:
                pass
            if time.monotonic() >= deadline:
                return "timeout"
            time.sleep(poll)

    def stop(self, grace: float) -> dict[str, Any]:
        t0 = time.monotonic()
        out: dict[str, Any] = {"signal": None, "killed": False}
        if self.proc.poll() is None:
            out["signal"] = "SIGINT"
            self._signal_group(signal.SIGINT)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                out["killed"] = True
        if out["killed"]:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(10)
        # the API server may be gone while engine/worker children of its group linger
        if self._group_alive():
            self._signal_group(signal.SIGTERM)
            end = time.monotonic() + min(grace, 10.0)
            while self._group_alive() and time.monotonic() < end:
                time.sleep(0.1)
            if self._group_alive():
                self._signal_group(signal.SIGKILL)
                out["killed"] = True
        out["returncode"] = self.proc.returncode
        out["seconds"] = round(time.monotonic() - t0, 2)
        self.log.close()
        return out

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False


def _tail(path: Path, lines: int = 8) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]


def _listening(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=0.5):
            return True
    except OSError:
        return False


def default_log_path() -> Path:
    return Path(f"vllm-fit-profile-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.log")


def run_profile(command: list[str], *, log_path: str | os.PathLike[str] | None = None, vllm_bin: str | None = None,
                timeout: float = 600.0, request_tokens: int | None = None, max_tokens: int | None = None,
                grace: float = 30.0, plan_fn: PlanFn | None = None, watch_plan_fn: Callable[..., dict] | None = None,
                watch_flags: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                while_up: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Profile one ``vllm serve`` start-up (see the module docstring).  ``while_up(url, result)`` runs
    while the server is still up, after the request and the watch snapshot."""
    from .explain import explain_reports
    from .logreader import read_log
    from .watch import take_snapshot

    if timeout <= 0 or grace < 0:
        raise VllmFitError("--timeout must be positive and --grace not negative")
    if request_tokens is not None and request_tokens < 1:
        raise VllmFitError(f"--request-tokens {request_tokens}: give a positive number of tokens")
    cmd = prepare_command(command, vllm_bin)
    if _listening(cmd["url"]):
        raise VllmFitError(f"something already listens on {cmd['url']}; its /health would be mistaken for "
                           "this vLLM's", "Pick another --port, or leave --port out to get a free one")
    log = Path(log_path) if log_path else default_log_path()
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VllmFitError(f"cannot create the folder of {log}: {exc.strerror or exc}") from None
    run_env = dict(os.environ if env is None else env)
    run_env["VLLM_LOGGING_LEVEL"] = "DEBUG"
    result: dict[str, Any] = {"command": cmd["argv"], "model": cmd["model"], "url": cmd["url"], "log": str(log),
                              "status": None, "ready_seconds": None, "request": None, "request_error": None,
                              "watch": None, "watch_error": None, "stop": None, "explain": None, "failure": None}
    server = _Server(cmd["argv"], log, run_env)
    try:
        state = server.wait_ready(cmd["url"], timeout)
        result["status"] = state
        elapsed = round(time.monotonic() - server.started, 2)
        if state == "ready":
            result["ready_seconds"] = elapsed
            if request_tokens is not None:
                try:
                    result["request"] = send_measured_request(cmd["url"], request_tokens, max_tokens=max_tokens)
                except VllmFitError as exc:
                    result["request_error"] = str(exc)
            try:
                result["watch"] = take_snapshot(cmd["url"], request_tokens=request_tokens, plan_fn=watch_plan_fn,
                                                user_flags=watch_flags)
            except VllmFitError as exc:
                result["watch_error"] = str(exc)
            if while_up is not None:
                while_up(cmd["url"], result)
        else:
            result["failed_after_seconds"] = elapsed
    finally:
        result["stop"] = server.stop(grace)
    if result["status"] == "exited":
        result["exit_code"] = server.proc.returncode
    reports = read_log(log)
    report = next((r for r in reversed(reports) if r.ready or r.failure), reports[-1])
    live_block_size = ((result.get("watch") or {}).get("metrics") or {}).get("block_size")
    def plan_with_live_block_size(settings: dict[str, Any]) -> dict[str, Any]:
        # a log without --block-size does not say the platform's default (128 on CPU);
        # the live server's cache_config_info does
        if settings.get("block_size") is None:
            settings = {**settings, "block_size": live_block_size}
        return plan_fn(settings)

    explain_plan = plan_with_live_block_size if plan_fn is not None and live_block_size else plan_fn
    explained = explain_reports([(str(log), report)], compare=plan_fn is not None, plan_fn=explain_plan)
    result["explain"] = explained
    if result["status"] != "ready":
        failure = dict(report.failure) if report.failure else {}
        if not failure:
            failure = {"kind": "timeout" if result["status"] == "timeout" else "exited",
                       "message": (f"not ready within {timeout:g} s" if result["status"] == "timeout" else
                                   f"vLLM exited with code {result.get('exit_code')} before it was ready")}
        failure["log_tail"] = _tail(log)
        result["failure"] = failure
    return result


def profile_exit_code(result: dict[str, Any]) -> int:
    """0: ready (and the request matched when one was sent); 1: the start failed, timed out, or the
    request's live blocks/usage differed from the prediction."""
    if result.get("status") != "ready":
        return 1
    req = result.get("request")
    if result.get("request_error") or (req is not None and req.get("match") is False):
        return 1
    return 0


def render_profile(result: dict[str, Any]) -> str:
    from .explain import render_text
    from .watch import render_snapshot

    lines = [f"vllm-fit profile: {' '.join(result['command'])}", f"  log: {result['log']}"]
    if result["status"] == "ready":
        lines.append(f"  ready: GET {result['url']}/health = 200 after {result['ready_seconds']:.1f} s")
    else:
        f = result.get("failure") or {}
        lines.append(f"  FAILED ({result['status']} after {result.get('failed_after_seconds', 0):.1f} s): "
                     f"{f.get('kind')}: {f.get('message')}")
        for ln in f.get("log_tail") or []:
            lines.append(f"    | {ln[:200]}")
    req = result.get("request")
    if req:
        seen = ", ".join(str(b) for b in req["live_blocks"]) or "none"
        lines.append(
            f"  request: {req['request_tokens']:,} prompt tokens (server counted {req['prompt_tokens_served']}), "
            f"max_tokens {req['max_tokens']}, {req['seconds']:.2f} s")
        lines.append(
            f"    predicted: ceil({req['request_tokens']:,} / {req['block_size']}) = {req['predicted_blocks']:,} blocks, "
            f"usage {req['predicted_usage']:.6f} ({req['predicted_blocks']:,} / {req['usable_blocks']:,} usable blocks)")
        live_usage = ", ".join(f"{u:.6f}" for u in req["live_usage"]) or "none"
        verdict = {True: "MATCH", False: "DIFFERENT", None: "not observed (the request finished between two scrapes)"}
        lines.append(f"    live:      {seen} blocks, usage {live_usage} in {req['samples_in_flight']} of "
                     f"{req['samples']} /metrics scrapes while it ran -> {verdict[req['match']]}")
    if result.get("request_error"):
        lines.append(f"  request failed: {result['request_error']}")
    if result.get("watch"):
        lines.append("")
        lines.append(render_snapshot(result["watch"]))
    elif result.get("watch_error"):
        lines.append(f"  watch failed: {result['watch_error']}")
    stop = result.get("stop") or {}
    if stop.get("signal") or stop.get("killed"):
        how = "SIGKILL after the grace period" if stop.get("killed") else stop.get("signal")
        lines.append(f"  stopped: {how}, exit code {stop.get('returncode')}, {stop.get('seconds')} s")
    if result.get("explain"):
        lines.append("")
        lines.append(render_text(result["explain"]))
    return "\n".join(lines)


__all__ += ["profile_exit_code", "send_measured_request"]
