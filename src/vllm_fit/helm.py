"""Render the bundled minimal Helm chart (vllm_fit/data/helm/vllm) in Python.

No helm binary is installable here (not on PyPI or Debian), so this renders
the subset of Go templates the chart uses -- ``{{ .Values.a.b }}``,
``{{ .Release.Name }}``, ``| quote``, ``{{- if }} / {{- else }} / {{- end }}``,
``{{- range .Values.list }} {{ . }} {{- end }}`` and the ``{{-``/``-}}``
whitespace trims -- the way ``helm template`` does.  tests/test_deploy.py
checks the rendered Deployment against ``deploy()``'s and the kubernetes
client's models.  With helm installed, ``helm template NAME CHART -f values.yaml``
renders the same chart.
"""

from __future__ import annotations

import json
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import VllmFitError

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def chart_dir() -> Path:
    return Path(str(resources.files("vllm_fit").joinpath("data/helm/vllm")))


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(text):
        chunk = text[pos:m.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        out.append(("text", chunk))
        out.append(("action", m.group(2)))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = text[pos:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    return out


def _parse(tokens: list[tuple[str, str]], i: int = 0, stop: tuple[str, ...] = ()) -> tuple[list[Any], int, str | None]:
    nodes: list[Any] = []
    while i < len(tokens):
        kind, val = tokens[i]
        if kind == "text":
            nodes.append(("text", val))
            i += 1
            continue
        word = val.split(None, 1)[0] if val else ""
        if word in stop:
            return nodes, i, word
        if word in ("if", "range"):
            body, i, ended = _parse(tokens, i + 1, ("else", "end"))
            other: list[Any] = []
            if ended == "else":
                other, i, ended = _parse(tokens, i + 1, ("end",))
            if ended != "end":
                raise VllmFitError(f"helm template: {{{{ {word} }}}} without {{{{ end }}}}")
            nodes.append((word, val.split(None, 1)[1] if " " in val else "", body, other))
            i += 1
            continue
        if word in ("end", "else"):
            raise VllmFitError(f"helm template: unexpected {{{{ {word} }}}}")
        nodes.append(("expr", val))
        i += 1
    return nodes, i, None


def _lookup(path: str, ctx: dict[str, Any], dot: Any) -> Any:
    if path == ".":
        return dot
    if not path.startswith("."):
        raise VllmFitError(f"helm template: unsupported term {path!r}")
    cur: Any = ctx
    for part in path[1:].split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        else:
            return None
    return cur


def _go_str(v: Any) -> str:
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _eval(expr: str, ctx: dict[str, Any], dot: Any) -> Any:
    stages = [s.strip() for s in expr.split("|")]
    value = _lookup(stages[0], ctx, dot)
    for fn in stages[1:]:
        if fn == "quote":
            value = json.dumps("" if value is None else _go_str(value))
        else:
            raise VllmFitError(f"helm template: unsupported function {fn!r}")
    return value


def _truthy(v: Any) -> bool:
    return bool(v) and v != 0


def _render(nodes: list[Any], ctx: dict[str, Any], dot: Any) -> str:
    out = []
    for node in nodes:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "expr":
            out.append(_go_str(_eval(node[1], ctx, dot)))
        elif kind == "if":
            out.append(_render(node[2] if _truthy(_eval(node[1], ctx, dot)) else node[3], ctx, dot))
        elif kind == "range":
            items = _eval(node[1], ctx, dot) or []
            if not items:
                out.append(_render(node[3], ctx, dot))
            for item in items:
                out.append(_render(node[2], ctx, item))
    return "".join(out)


def render_template(text: str, values: dict[str, Any], release_name: str) -> str:
    nodes, _, _ = _parse(_tokens(text))
    ctx = {"Values": values, "Release": {"Name": release_name}, "Chart": {"Name": "vllm"}}
    return _render(nodes, ctx, ctx)


def render_chart(values: dict[str, Any], release_name: str, chart: Path | None = None) -> str:
    """``helm template RELEASE CHART -f values.yaml``: the manifests, YAML documents."""
    import yaml

    chart = chart or chart_dir()
    merged = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    merged.update(values)
    docs = []
    for tpl in sorted((chart / "templates").glob("*.yaml")):
        body = render_template(tpl.read_text(), merged, release_name)
        docs.append(f"---\n# Source: vllm/templates/{tpl.name}\n{body.strip()}\n")
    return "".join(docs)


def write_chart(dest: str | Path, values: dict[str, Any]) -> list[str]:
    """Copy the chart to DEST and write the planned values next to it."""
    import yaml

    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise VllmFitError(f"{dest} exists and is not empty")
    shutil.copytree(chart_dir(), dest, dirs_exist_ok=True)
    (dest / "values-planned.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    return sorted(str(p) for p in dest.rglob("*") if p.is_file())


__all__ = ["render_chart", "render_template", "write_chart", "chart_dir"]
