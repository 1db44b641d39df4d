"""Look at a running vLLM server and check it against vllm-fit's arithmetic.

``take_snapshot(url)`` reads ``/metrics`` (required), ``/v1/models`` and ``/version`` (optional)
and returns a plain dict: the live KV numbers, the comparison of the server's KV size with
``vllm_fit.plan`` for the served model and flags (read from the metric labels, overridable),
and, with ``request_tokens``, the blocks and usage a request of that length takes.
``render_snapshot`` turns that dict into text.  Nothing here prints.

The request arithmetic is vLLM's (v1 ``BlockPool``): a full-attention request of N tokens
holds ``ceil(N / block_size)`` blocks, and ``vllm:kv_cache_usage_perc`` is
``1 - free_blocks / (num_gpu_blocks - 1)`` because one block of the pool is the null block.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from .http_fetch import get_json, get_text, normalize_url
from .errors import VllmFitError
from .metrics import ServerMetrics, parse_metrics
from .units import cdiv

__all__ = ["take_snapshot", "scrape", "request_check", "plan_flags", "compare_kv", "render_snapshot", "rates"]

PlanFn = Callable[..., dict[str, Any]]


def scrape(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """One read of the server: ``{"url", "time", "metrics": ServerMetrics, "models", "vllm_version", "notes"}``."""
    base = normalize_url(url)
    started = time.time()
    metrics = parse_metrics(get_text(base, "/metrics", timeout), source=f"{base}/metrics")
    notes: list[str] = []
    models: list[dict[str, Any]] = []
    try:
        listing = get_json(base, "/v1/models", timeout)
        for item in (listing.get("data") or []) if isinstance(listing, dict) else []:
            if isinstance(item, dict) and item.get("id"):
                models.append({"id": str(item["id"]), "root": item.get("root"),
                               "max_model_len": item.get("max_model_len")})
    except (VllmFitError, AttributeError) as exc:
        notes.append(f"/v1/models not read: {exc}")
    version = None
    try:
        got = get_json(base, "/version", timeout)
        if isinstance(got, dict) and got.get("version"):
            version = str(got["version"])
    except VllmFitError:
        pass
    return {"url": base, "time": started, "scrape_seconds": round(time.time() - started, 4),
            "metrics": metrics, "models": models, "vllm_version": version, "notes": notes}


def _release(version: str | None) -> str | None:
    """``0.32.0`` from ``0.32.0+cpu`` or ``0.11.1.dev3+gabc``."""
    if not version:
        return None
    m = re.match(r"(\d+\.\d+\.\d+)", version)
    return m.group(1) if m else None


def _label_bool(raw: str | None) -> bool | None:
    return {"True": True, "False": False}.get(raw or "")


def plan_flags(metrics: ServerMetrics, models: list[dict[str, Any]], vllm_version: str | None,
               user: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``vllm_fit.plan`` arguments for the served model: labels and /v1/models, then the user's flags."""
    labels = metrics.cache_config
    served = models[0] if models else {}
    flags: dict[str, Any] = {
        "model": served.get("root") or served.get("id") or metrics.model_name,
        "vllm_version": _release(vllm_version),
        "max_model_len": served.get("max_model_len"),
        "block_size": metrics.block_size,
        "kv_cache_memory_bytes": metrics.kv_cache_memory_bytes,
        "enable_prefix_caching": _label_bool(labels.get("enable_prefix_caching")),
    }
    if labels.get("cache_dtype") not in (None, "None", "auto"):
        flags["kv_cache_dtype"] = labels["cache_dtype"]
    try:
        flags["gpu_memory_utilization"] = float(labels["gpu_memory_utilization"])
    except (KeyError, ValueError):
        pass
    override = labels.get("num_gpu_blocks_override")
    if override not in (None, "None", ""):
        try:
            flags["num_gpu_blocks_override"] = int(override)
        except ValueError:
            pass
    for key, value in (user or {}).items():
        if value is not None:
            flags[key] = value
    return {k: v for k, v in flags.items() if v is not None}


def compare_kv(metrics: ServerMetrics, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows ``{term, server, plan, diff}`` for the KV size the server reports and the plan."""
    try:
        server_conc = float(metrics.cache_config.get("kv_cache_max_concurrency", "nan"))
    except ValueError:
        server_conc = float("nan")
    rows = [
        ("num_gpu_blocks", metrics.num_gpu_blocks, plan.get("num_gpu_blocks")),
        ("kv_cache_tokens", metrics.kv_cache_size_tokens, plan.get("kv_cache_tokens")),
        ("kv_cache_memory_bytes", metrics.kv_cache_memory_bytes, plan.get("kv_cache_bytes")),
        ("max_concurrency", None if server_conc != server_conc else round(server_conc, 2),
         None if plan.get("max_concurrency") is None else round(float(plan["max_concurrency"]), 2)),
        ("block_size", metrics.block_size, plan.get("block_size")),
    ]
    out = []
    for term, server, planned in rows:
        if server is None and planned is None:
            continue
        diff = None
        if isinstance(server, (int, float)) and isinstance(planned, (int, float)):
            diff = round(planned - server, 2) if isinstance(planned, float) or isinstance(server, float) else planned - server
        out.append({"term": term, "server": server, "plan": planned, "diff": diff})
    return out


def request_check(metrics: ServerMetrics, request_tokens: int, max_model_len: int | None = None) -> dict[str, Any]:
    """Blocks and usage a full-attention request of ``request_tokens`` tokens takes, against the live numbers."""
    if request_tokens < 1:
        raise VllmFitError(f"--request-tokens {request_tokens}: give a positive number of tokens")
    bs, usable = metrics.block_size, metrics.usable_blocks
    if not bs or not usable:
        raise VllmFitError("the server's /metrics has no vllm:cache_config_info with block_size and num_gpu_blocks",
                           "It is needed to predict blocks (vLLM 0.6+ publishes it)")
    blocks = cdiv(request_tokens, bs)
    # the same float expression as vLLM's BlockPool.get_usage(), so the two compare bit for bit
    usage = 1.0 - ((usable - blocks) / usable)
    live_blocks = metrics.blocks_in_use
    running = int(metrics.requests_running or 0)
    waiting = int(metrics.requests_waiting or 0)
    out: dict[str, Any] = {
        "request_tokens": request_tokens,
        "block_size": bs,
        "num_gpu_blocks": metrics.num_gpu_blocks,
        "usable_blocks": usable,
        "predicted_blocks": blocks,
        "predicted_usage": usage,
        "max_concurrent_requests": usable // blocks,
        "live_usage": metrics.kv_cache_usage,
        "live_blocks": live_blocks,
        "running": running,
        "waiting": waiting,
        "free_blocks": None if live_blocks is None else usable - live_blocks,
        "fits_now": None if live_blocks is None else blocks <= usable - live_blocks,
        "fits_at_all": blocks <= usable and (max_model_len is None or request_tokens <= max_model_len),
        "match": None,
        "verdict": "",
    }
    if max_model_len is not None and request_tokens > max_model_len:
        out["verdict"] = f"longer than the server's max_model_len ({max_model_len:,}); vLLM rejects it"
    elif blocks > usable:
        out["verdict"] = f"needs {blocks:,} blocks but the cache has {usable:,}; it can never run"
    elif running == 1 and waiting == 0 and live_blocks:
        out["match"] = live_blocks == blocks and metrics.kv_cache_usage == usage
        out["verdict"] = ("the one running request holds exactly the predicted blocks" if out["match"] else
                          f"the one running request holds {live_blocks:,} blocks ({live_blocks - blocks:+,} vs the "
                          f"prediction; its prompt or output may not be {request_tokens:,} tokens)")
    else:
        out["verdict"] = (f"{running} running / {waiting} waiting: live usage is not one request of this size; "
                          f"it {'fits' if out['fits_now'] else 'does not fit'} in the free blocks now")
    sw = metrics.cache_config.get("sliding_window")
    if sw not in (None, "None"):
        out["note"] = f"sliding_window={sw}: ceil(N / block_size) is an upper bound for such layers"
    return out


def take_snapshot(url: str, *, timeout: float = 10.0, request_tokens: int | None = None,
                  plan_fn: PlanFn | None = None, user_flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """Scrape the server and check it: the dict behind ``vllm-fit watch --json``."""
    got = scrape(url, timeout)
    metrics: ServerMetrics = got["metrics"]
    served = got["models"][0] if got["models"] else {}
    snap: dict[str, Any] = {
        "url": got["url"],
        "time": got["time"],
        "scrape_seconds": got["scrape_seconds"],
        "vllm_version": got["vllm_version"],
        "model": served.get("id") or metrics.model_name,
        "model_root": served.get("root"),
        "max_model_len": served.get("max_model_len"),
        "metrics": metrics.to_dict(),
        "plan_flags": None,
        "plan": None,
        "plan_error": None,
        "kv_comparison": [],
        "request": None,
        "notes": list(got["notes"]),
    }
    if plan_fn is not None:
        flags = plan_flags(metrics, got["models"], got["vllm_version"], user_flags)
        snap["plan_flags"] = flags
        if not {"gpu", "gpu_memory_gib", "kv_cache_memory_bytes"} & set(flags):
            snap["notes"].append("the metrics do not say which GPU: planned for vllm-fit's default (H100); pass --gpu")
        try:
            plan = plan_fn(**flags)
            snap["plan"] = {k: plan.get(k) for k in ("vllm_version", "gpu", "num_gpu_blocks", "kv_cache_tokens",
                                                     "kv_cache_bytes", "max_concurrency", "block_size", "fits",
                                                     "error", "bytes_per_block")}
            snap["kv_comparison"] = compare_kv(metrics, plan)
        except VllmFitError as exc:
            snap["plan_error"] = str(exc)
    if request_tokens is not None:
        snap["request"] = request_check(metrics, request_tokens, served.get("max_model_len"))
    return snap


def rates(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, float | None]:
    """Token throughput between two snapshots (counters' deltas over the time between scrapes)."""
    out: dict[str, float | None] = {"prompt_tokens_per_s": None, "generation_tokens_per_s": None}
    if not previous:
        return out
    dt = current["time"] - previous["time"]
    if dt <= 0:
        return out
    for key, name in (("prompt_tokens", "prompt_tokens_per_s"), ("generation_tokens", "generation_tokens_per_s")):
        a, b = previous["metrics"].get(key), current["metrics"].get(key)
        if a is not None and b is not None and b >= a:
            out[name] = (b - a) / dt
    return out


# ---------------------------------------------------------------------------
# presentation


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    if isinstance(value, (int, float)):
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"
    return str(value)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f} ms"


def render_snapshot(snap: dict[str, Any], speed: dict[str, float | None] | None = None) -> str:
    m = snap["metrics"]
    lines = [f"vllm-fit watch: {snap['url']}  model {snap['model'] or '?'}  vLLM {snap['vllm_version'] or '?'}"
             f"  max_model_len {_n(snap['max_model_len'])}"]
    usage = m.get("kv_cache_usage")
    lines.append(
        f"  KV cache   {_n(m.get('num_gpu_blocks'))} blocks of {_n(m.get('block_size'))} tokens "
        f"({_n(m.get('usable_blocks'))} usable + 1 null block) = {_n(m.get('kv_cache_size_tokens'))} tokens, "
        f"{_n(m.get('kv_cache_memory_bytes'))} bytes")
    lines.append(f"  usage      {'-' if usage is None else f'{usage:.4%}'}  = {_n(m.get('blocks_in_use'))} blocks in use")
    lines.append(f"  requests   {_n(m.get('requests_running'))} running, {_n(m.get('requests_waiting'))} waiting, "
                 f"{_n(m.get('preemptions'))} preemptions")
    hit = m.get("prefix_cache_hit_rate")
    lines.append(f"  prefix     {_n(m.get('prefix_cache_hits'))} hits / {_n(m.get('prefix_cache_queries'))} queried tokens"
                 f" = {'-' if hit is None else f'{hit:.1%}'}")
    lines.append(f"  tokens     {_n(m.get('prompt_tokens'))} prompt, {_n(m.get('generation_tokens'))} generated")
    if speed and any(v is not None for v in speed.values()):
        lines.append(f"  throughput {_n(speed.get('prompt_tokens_per_s'), 1)} prompt tok/s, "
                     f"{_n(speed.get('generation_tokens_per_s'), 1)} generated tok/s")
    for key, label in (("ttft", "TTFT"), ("itl", "ITL")):
        h = m.get(key)
        if h:
            lines.append(f"  {label:<10} p50 {_ms(h['p50'])}  p99 {_ms(h['p99'])}  mean {_ms(h['mean'])}  ({_n(h['count'])} samples)")
    if snap.get("plan_flags") is not None:
        flags = snap["plan_flags"]
        shown = " ".join(f"{k}={v}" for k, v in flags.items() if k != "model")
        lines.append(f"  plan       vllm-fit plan {flags.get('model')} {shown}")
        if snap.get("plan_error"):
            lines.append(f"             not compared: {snap['plan_error']}")
        for row in snap.get("kv_comparison") or []:
            diff = row["diff"]
            mark = "" if diff is None else ("  ok" if diff == 0 else f"  diff {diff:+,}")
            lines.append(f"             {row['term']:<22} server {_n(row['server']):>16}  plan {_n(row['plan']):>16}{mark}")
    req = snap.get("request")
    if req:
        lines.append(
            f"  request    {req['request_tokens']:,} tokens -> ceil({req['request_tokens']:,} / {req['block_size']}) = "
            f"{req['predicted_blocks']:,} blocks = usage {req['predicted_usage']:.4%} "
            f"({req['predicted_blocks']:,} / {req['usable_blocks']:,}); at most {req['max_concurrent_requests']:,} at once")
        lines.append(f"             live: {req['verdict']}")
        if req.get("note"):
            lines.append(f"             note: {req['note']}")
    for note in snap.get("notes") or []:
        lines.append(f"  note: {note}")
    return "\n".join(lines)

