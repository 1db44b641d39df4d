"""Explain where the memory went in real vLLM start-up logs, and compare with a plan.

``explain_reports`` turns ``LogReport``s (from ``vllm_fit.logreader``) into a plain dict;
the ``render_*`` functions turn that dict into text, CSV or Markdown.  Nothing here
prints.  The planner is passed in (``plan_fn``) so this module does not import it.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Callable, Iterable, Sequence

from vllm_fit.logreader import LogReport

__all__ = ["TERMS", "explain_reports", "plan_args_for_log", "comparison_notes", "render_text", "render_csv",
           "render_markdown"]

# (key, label, unit) of the terms shown, in the order of the start-up budget
TERMS: tuple[tuple[str, str, str], ...] = (
    ("total_gib", "GPU total", "GiB"),
    ("free_at_start_gib", "Free at start", "GiB"),
    ("requested_gib", "Requested (util x total)", "GiB"),
    ("weights_gib", "Model weights", "GiB"),
    ("activation_gib", "Peak activation", "GiB"),
    ("non_torch_gib", "Non-torch memory", "GiB"),
    ("total_consumed_gib", "Consumed (weights + non-torch)", "GiB"),
    ("cudagraph_estimate_gib", "CUDA graph estimate", "GiB"),
    ("cudagraph_gib", "CUDA graph (actual)", "GiB"),
    ("kv_cache_gib", "KV cache", "GiB"),
    ("kv_cache_tokens", "KV cache tokens", "tokens"),
    ("num_gpu_blocks", "KV blocks", "blocks"),
    ("max_concurrency", "Max concurrency", "x"),
)
_TERM_LABEL = {key: label for key, label, _ in TERMS}

# budget terms: KV = requested - weights - activation - non_torch - cudagraph_estimate
# (v0.27+: requested - consumed - activation - estimate); sign = effect on KV of a
# positive prediction error in that term
_KV_BUDGET_SIGNS = {
    "requested_gib": +1,
    "weights_gib": -1,
    "activation_gib": -1,
    "non_torch_gib": -1,
    "total_consumed_gib": -1,
    "cudagraph_estimate_gib": -1,
}

PlanFn = Callable[[dict[str, Any]], dict[str, Any]]


def _as_report(item: Any) -> tuple[str | None, LogReport]:
    if isinstance(item, LogReport):
        return item.source, item
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], LogReport):
        return str(item[0]), item[1]
    raise TypeError(f"expected LogReport or (path, LogReport), got {type(item).__name__}")


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    return None


def _status(report: LogReport) -> str:
    if report.failure is not None:
        return "FAILED: " + str(report.failure.get("kind"))
    if report.ready:
        return "SUCCESS"
    if report.measured.get("kv_cache_gib") is not None:
        return "KV ALLOCATED (log ends before ready)"
    return "UNKNOWN (no result in log)"


def explain_reports(reports: Iterable[Any], compare: bool = False, plan_fn: PlanFn | None = None) -> dict:
    """Per log: the measured terms; with ``compare``, the plan's terms, errors and the KV-error culprit.

    ``reports``: ``LogReport``s or ``(path, LogReport)`` pairs.  ``plan_fn(settings)``
    gets the settings read from the log (vLLM flag names + ``vllm_version`` and
    ``gpu_memory_gib``) and returns a dict with the keys of ``measured``; a
    ``VllmFitError`` it raises is reported as ``"no plan: <message>"``.
    """
    from vllm_fit.errors import VllmFitError  # stdlib-only module

    logs: list[dict[str, Any]] = []
    for item in reports:
        source, report = _as_report(item)
        measured = report.measured
        settings = report.plan_settings()
        entry: dict[str, Any] = {
            "source": source,
            "model": measured.get("model"),
            "vllm_version": measured.get("vllm_version"),
            "status": _status(report),
            "tensor_parallel_size": report.settings.get("tensor_parallel_size"),
            "pipeline_parallel_size": report.settings.get("pipeline_parallel_size"),
            "max_model_len": report.settings.get("max_model_len"),
            "gpu_memory_utilization": report.settings.get("gpu_memory_utilization"),
            "measured": {key: measured.get(key) for key, _, _ in TERMS},
            "recommended_kv_cache_memory_bytes": measured.get("kv_cache_memory_recommended_bytes"),
            "full_kv_cache_memory_bytes": measured.get("kv_cache_memory_full_bytes"),
            "limiting_rank": report.limiting_rank,
            "failure": report.failure,
            "missing": list(report.missing),
            "notes": list(report.notes),
            "settings": settings,
        }
        if compare:
            entry.update(_compare(settings, entry["measured"], plan_fn, VllmFitError))
        logs.append(entry)
    result: dict[str, Any] = {"compare": bool(compare), "logs": logs}
    if compare:
        result["mean_abs_error"] = _mean_abs_errors(logs)
    return result


def _compare(settings: dict[str, Any], measured: dict[str, Any], plan_fn: PlanFn | None,
             error_type: type[Exception]) -> dict[str, Any]:
    out: dict[str, Any] = {"predicted": None, "errors": None, "plan_error": None,
                           "kv_error_gib": None, "kv_error_explained_by": None}
    if plan_fn is None:
        out["plan_error"] = "no plan: no planner given"
        return out
    if not settings.get("model"):
        out["plan_error"] = "no plan: the log names no model"
        return out
    try:
        predicted = plan_fn(dict(settings))
    except error_type as exc:
        out["plan_error"] = f"no plan: {getattr(exc, 'message', None) or exc}"
        return out
    if not isinstance(predicted, dict):
        out["plan_error"] = "no plan: planner returned no dict"
        return out
    pred = {key: predicted.get(key) for key, _, _ in TERMS}
    errors: dict[str, float | None] = {}
    for key, _, _ in TERMS:
        p, m = _num(pred.get(key)), _num(measured.get(key))
        errors[key] = None if p is None or m is None else round(p - m, 6)
    out["predicted"] = pred
    out["errors"] = errors
    kv_error = errors.get("kv_cache_gib")
    out["kv_error_gib"] = kv_error
    # which budget term explains most of the KV error
    # The CUDA-graph estimate only enters the budget where the version subtracts
    # it (the plan says so in cudagraph_subtracted_gib; 0.18-0.19 only log it).
    skip = set()
    if predicted.get("cudagraph_subtracted_gib") == 0:
        skip.add("cudagraph_estimate_gib")
    contributions = {key: sign * errors[key] for key, sign in _KV_BUDGET_SIGNS.items()
                     if errors.get(key) is not None and key not in skip}
    if kv_error is not None and contributions:
        culprit = max(contributions, key=lambda k: abs(contributions[k]))
        if abs(contributions[culprit]) > 0:
            out["kv_error_explained_by"] = {
                "term": culprit,
                "contribution_gib": round(contributions[culprit], 6),
                "kv_error_gib": kv_error,
                "contributions_gib": {k: round(v, 6) for k, v in contributions.items()},
            }
    return out


def plan_args_for_log(settings: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``vllm_fit.plan`` for the configuration a log reports
    (the CLI's and the web server's plan_fn both start from here)."""
    flags = {k: v for k, v in settings.items() if v is not None}
    args = {"model": flags.pop("model", None), "vllm_version": flags.pop("vllm_version", None),
            "gpu_memory_gib": flags.pop("gpu_memory_gib", None)}
    # vllm/platforms/cpu.py check_and_update_config: the CPU build defaults to
    # 128-token blocks where CUDA uses 16.
    if flags.pop("device", None) == "cpu":
        flags.setdefault("block_size", 128)
    if flags.get("quantization") in ("compressed-tensors", "None"):
        flags.pop("quantization")  # read from the checkpoint's config
    return {**args, **flags}


def _mean_abs_errors(logs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, _, _ in TERMS:
        values = [abs(log["errors"][key]) for log in logs
                  if log.get("errors") and log["errors"].get(key) is not None]
        out[key] = {"mean_abs_error": round(sum(values) / len(values), 6) if values else None, "n": len(values)}
    return out


# ---------------------------------------------------------------------------
# rendering


def _fmt(value: Any, unit: str = "GiB") -> str:
    if value is None:
        return "N/A"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if unit in ("tokens", "blocks") else str(value)
    if isinstance(value, float):
        if unit == "x":
            return f"{value:.2f}x"
        text = f"{value:.4f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    return str(value)


def _err(value: Any, unit: str = "GiB") -> str:
    if value is None:
        return ""
    if isinstance(value, float) and unit == "GiB":
        return f"{value:+.2f}"
    if isinstance(value, float):
        return f"{value:+.2f}"
    return f"{value:+,}"


def _name(log: dict[str, Any]) -> str:
    model = log.get("model") or "?"
    tp, pp = log.get("tensor_parallel_size"), log.get("pipeline_parallel_size")
    extra = []
    if tp and tp != 1:
        extra.append(f"TP={tp}")
    if pp and pp != 1:
        extra.append(f"PP={pp}")
    return model + (f" ({', '.join(extra)})" if extra else "")


_SEED_COLUMNS = (
    ("Model", lambda log: _name(log)),
    ("Status", lambda log: log["status"]),
    ("Model Weight (GiB)", lambda log: _fmt(log["measured"]["weights_gib"])),
    ("Peak Activation (GiB)", lambda log: _fmt(log["measured"]["activation_gib"])),
    ("Non-torch Memory (GiB)", lambda log: _fmt(log["measured"]["non_torch_gib"])),
    ("CUDAGraph Memory (GiB)", lambda log: _fmt(log["measured"]["cudagraph_gib"])),
    ("KV Cache (GiB)", lambda log: _fmt(log["measured"]["kv_cache_gib"])),
    ("TP Size", lambda log: _fmt(log.get("tensor_parallel_size"))),
    ("Max Model Len", lambda log: _fmt(log.get("max_model_len"))),
)


def _seed_table(result: dict) -> tuple[list[str], list[list[str]]]:
    header = [name for name, _ in _SEED_COLUMNS]
    rows = [[fn(log) for _, fn in _SEED_COLUMNS] for log in result["logs"]]
    return header, rows


def _term_table(log: dict[str, Any], compare: bool) -> tuple[list[str], list[list[str]]]:
    header = ["Term", "Measured"] + (["Predicted", "Error (pred - meas)"] if compare else [])
    rows = []
    pred = log.get("predicted") or {}
    errs = log.get("errors") or {}
    for key, label, unit in TERMS:
        m = log["measured"].get(key)
        p = pred.get(key) if compare else None
        if m is None and p is None:
            continue
        row = [f"{label} ({unit})", _fmt(m, unit)]
        if compare:
            row += [_fmt(p, unit), _err(errs.get(key), unit)]
        rows.append(row)
    return header, rows


def _compare_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    header = ["Model", "Status", "KV measured (GiB)", "KV predicted (GiB)", "KV error (GiB)",
              "Weights err", "Activation err", "Non-torch err", "CUDA graph err", "Largest KV-error term"]
    rows = []
    for log in result["logs"]:
        errs = log.get("errors") or {}
        pred = log.get("predicted") or {}
        culprit = log.get("kv_error_explained_by")
        rows.append([
            _name(log), log["status"], _fmt(log["measured"]["kv_cache_gib"]),
            _fmt(pred.get("kv_cache_gib")) if log.get("predicted") else (log.get("plan_error") or "N/A"),
            _err(errs.get("kv_cache_gib")), _err(errs.get("weights_gib")), _err(errs.get("activation_gib")),
            _err(errs.get("non_torch_gib")), _err(errs.get("cudagraph_gib")),
            f"{_TERM_LABEL[culprit['term']]} ({culprit['contribution_gib']:+.2f})" if culprit else "",
        ])
    mae = result.get("mean_abs_error") or {}

    def m(key: str) -> str:
        value = (mae.get(key) or {}).get("mean_abs_error")
        return "" if value is None else f"{value:.2f}"

    rows.append(["Mean absolute error", "", "", "", m("kv_cache_gib"), m("weights_gib"), m("activation_gib"),
                 m("non_torch_gib"), m("cudagraph_gib"), ""])
    return header, rows


def _md(header: list[str], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return str(cell).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("-" * (len(h) + 2) for h in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _plain(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    out = [fmt.format(*header).rstrip(), "  ".join("-" * w for w in widths)]
    out += [fmt.format(*[str(c) for c in row]).rstrip() for row in rows]
    return "\n".join(out)


def comparison_notes(log: dict[str, Any]) -> list[str]:
    """The failure, why there is no plan, and the term that explains most of the KV error."""
    out = []
    if log.get("failure"):
        out.append(f"failure: {log['failure']['kind']}: {log['failure']['message']}")
    if log.get("plan_error"):
        out.append(log["plan_error"])
    culprit = log.get("kv_error_explained_by")
    if culprit:
        out.append(f"most of the KV error ({culprit['kv_error_gib']:+.2f} GiB) comes from "
                   f"{_TERM_LABEL[culprit['term']].lower()} ({culprit['contribution_gib']:+.2f} GiB)")
    return out


def _per_log_notes(log: dict[str, Any]) -> list[str]:
    out = comparison_notes(log)
    for b, what in (("recommended_kv_cache_memory_bytes", "to fit requested memory"),
                    ("full_kv_cache_memory_bytes", "to fully use the GPU")):
        if log.get(b) is not None:
            out.append(f"vLLM recommends --kv-cache-memory={log[b]} {what}")
    out += [f"missing: {m}" for m in log.get("missing", [])]
    out += [f"note: {n}" for n in log.get("notes", []) if not n.startswith("settings read")]
    return out


def _render(result: dict, table: Callable[[list[str], list[list[str]]], str], heading: Callable[[str], str]) -> str:
    parts: list[str] = []
    logs = result["logs"]
    if not logs:
        return heading("No logs") + "\n"
    header, rows = _seed_table(result)
    parts += [heading("Summary"), table(header, rows), ""]
    if len(logs) == 1 or not result["compare"]:
        for log in logs:
            title = _name(log) + (f" - {log['source']}" if log.get("source") else "")
            if log.get("vllm_version"):
                title += f" (vLLM {log['vllm_version']})"
            parts.append(heading(title))
            h, r = _term_table(log, result["compare"] and bool(log.get("predicted")))
            if r:
                parts.append(table(h, r))
            parts += [f"- {line}" for line in _per_log_notes(log)]
            parts.append("")
    else:
        h, r = _compare_rows(result)
        parts += [heading("Predicted vs measured"), table(h, r), ""]
        for log in logs:
            notes = [n for n in _per_log_notes(log) if not n.startswith(("note:", "vLLM recommends"))]
            if notes:
                parts.append(f"{_name(log)} ({log.get('source') or '-'}):")
                parts += [f"- {line}" for line in notes]
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def render_markdown(result: dict) -> str:
    return _render(result, _md, lambda title: f"## {title}\n")


def render_text(result: dict) -> str:
    return _render(result, _plain, lambda title: f"{title}\n{'=' * min(len(title), 100)}")


def render_csv(result: dict) -> str:
    """One row per log: measured terms, and with ``compare`` predicted terms and errors."""
    keys = [key for key, _, _ in TERMS]
    header = ["source", "model", "vllm_version", "status", "tensor_parallel_size", "pipeline_parallel_size",
              "max_model_len", "gpu_memory_utilization", "failure_kind"]
    header += [f"measured_{k}" for k in keys]
    if result.get("compare"):
        header += [f"predicted_{k}" for k in keys] + [f"error_{k}" for k in keys]
        header += ["kv_error_explained_by", "plan_error"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for log in result["logs"]:
        row = [log.get("source"), log.get("model"), log.get("vllm_version"), log["status"],
               log.get("tensor_parallel_size"), log.get("pipeline_parallel_size"), log.get("max_model_len"),
               log.get("gpu_memory_utilization"), (log.get("failure") or {}).get("kind")]
        row += [log["measured"].get(k) for k in keys]
        if result.get("compare"):
            pred = log.get("predicted") or {}
            errs = log.get("errors") or {}
            row += [pred.get(k) for k in keys] + [errs.get(k) for k in keys]
            culprit = log.get("kv_error_explained_by")
            row += [culprit["term"] if culprit else None, log.get("plan_error")]
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()
