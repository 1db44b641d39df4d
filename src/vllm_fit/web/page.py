"""Server-rendered HTML: the page, the plan result and the explain table (Jinja2, autoescaped)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from ..units import GiB
from . import service
from .svg import breakdown_svg


@lru_cache(maxsize=1)
def _env():
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("vllm_fit.web", "templates"),
                      autoescape=select_autoescape(["html", "svg"], default_for_string=True, default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["gib"] = lambda b: "" if b is None else f"{b / GiB:.2f}"
    env.filters["num"] = lambda n: "" if n is None else f"{n:,}"
    return env


@lru_cache(maxsize=1)
def _choices() -> dict[str, Any]:
    from ..serve_args import DTYPES, KV_CACHE_DTYPES, QUANTIZATIONS

    try:
        from ..advise import GOALS
    except ImportError:  # pragma: no cover
        GOALS = ("throughput",)
    return {
        "goals": GOALS,
        "max_sweep": service.MAX_SWEEP_CONFIGS,
        "models": service.list_models(),
        "gpus": service.list_gpus(),
        "versions": service.list_versions(),
        "kv_cache_dtypes": KV_CACHE_DTYPES,
        "dtypes": DTYPES,
        "quantizations": QUANTIZATIONS,
    }


def render_page(values: dict[str, str], result_html: str, advice_html: str = "", sweep_html: str = "") -> str:
    from markupsafe import Markup

    return _env().get_template("index.html").render(v=values, c=_choices(), result=Markup(result_html),
                                                    advice=Markup(advice_html), sweep=Markup(sweep_html),
                                                    query=urlencode(values))


def render_result(plan, req, error: str | None, values: dict[str, str], deployment: dict | None = None) -> str:
    from markupsafe import Markup

    if plan is None:
        return _env().get_template("result.html").render(plan=None, error=error)
    model, explicit, _own = service.plan_arguments(req)
    command = service.serve_command(plan, plan.model if req.config_json else (model or plan.model), explicit)
    terms = [
        ("GPU total (CUDA)", plan.total_bytes),
        (f"requested ({plan.settings['gpu_memory_utilization']} × total)", plan.requested_bytes),
        ("weights", plan.weights_bytes),
        ("peak activation", plan.activation_bytes),
        ("non-torch", plan.non_torch_bytes),
        ("CUDA-graph estimate (subtracted)", plan.cudagraph_subtracted_bytes),
        ("KV cache", plan.kv_cache_bytes),
        ("CUDA graphs (captured after KV)", plan.cudagraph_bytes),
    ]
    return _env().get_template("result.html").render(
        plan=plan, error=None, svg=Markup(breakdown_svg(plan)), terms=terms, command=command,
        query=urlencode(values), s=plan.settings, deployment=_deployment_text(deployment),
    )


def _deployment_text(d: dict | None) -> str | None:
    if not d:
        return None
    try:
        from ..deploy import render_deploy
    except ImportError:  # pragma: no cover
        return None
    return render_deploy(d, "all")


def render_advice(result: dict | None, error: str | None) -> str:
    command = None
    rec = (result or {}).get("recommended")
    if rec and rec.get("serve_flags") is not None:
        flags = rec["serve_flags"]
        command = service.serve_command(None, result["model"], flags)
    return _env().get_template("advice.html").render(r=result, error=error, command=command)


def render_sweep(result: dict | None, error: str | None, max_rows: int = 200) -> str:
    import base64

    if result is None:
        return _env().get_template("sweep.html").render(rows=None, error=error)
    rows = result["rows"]
    plots = [(key, "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode())
             for key, svg in (result.get("plots") or {}).items()]
    return _env().get_template("sweep.html").render(rows=rows, shown=rows[:max_rows], plots=plots,
                                                    plots_error=result.get("plots_error"), error=error)


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2f}x" if unit == "x" else f"{value:.2f}"
    return str(value)


def _err(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:+,}"
    return f"{value:+.2f}"


def render_explain(result: dict | None, error: str | None) -> str:
    from ..explain import TERMS, comparison_notes

    logs = []
    for log in (result or {}).get("logs", []):
        pred = log.get("predicted") or {}
        errs = log.get("errors") or {}
        rows = []
        for key, label, unit in TERMS:
            m, p = log["measured"].get(key), pred.get(key)
            if m is None and p is None:
                continue
            rows.append((f"{label} ({unit})", _fmt(m, unit), _fmt(p, unit), _err(errs.get(key)), key))
        notes = comparison_notes(log)
        notes += [f"missing: {m}" for m in log.get("missing", [])]
        logs.append({"log": log, "rows": rows, "notes": notes, "compare": bool(log.get("predicted"))})
    return _env().get_template("explain.html").render(logs=logs, error=error)
