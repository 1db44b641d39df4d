"""What the web server does, without the web: validated requests in, plain data out.

The request models mirror ``ServeArgs`` (vLLM's engine-argument names), so a flag
the core learns is accepted here without an edit.  Model names are restricted to
the bundled catalog, or a hub id when the caller sets ``online``: a web client
must never make the server read its own files (``resolve_model`` treats an
existing path as a local model) nor reach the hub unasked.  A pasted config.json
is written to a private temporary folder for the core to read, then removed.
"""

from __future__ import annotations

import json
import tempfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from threading import Lock
from typing import Any, Iterator, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..errors import FlagError, UnknownModelError, VllmFitError
from ..serve_args import ServeArgs, human_readable_int, parse_serve_command

MAX_LOG_CHARS = 8 * 1024 * 1024  # a whole vLLM start-up log (~0.1-0.4 MB) fits easily
MAX_BODY_BYTES = MAX_LOG_CHARS + 1024 * 1024
MAX_CONFIG_CHARS = 512 * 1024  # real config.json files are a few KiB
MAX_COMMAND_CHARS = 8192
MAX_NAME_CHARS = 200

# Flags that the CLI also accepts in vLLM's human form ("32k", "8K").
_HUMAN_INT_FLAGS = ("max_model_len", "max_num_batched_tokens", "kv_cache_memory_bytes")


def _flag_fields() -> dict[str, Any]:
    """One optional field per ServeArgs flag; None = vLLM's default."""
    fields: dict[str, Any] = {}
    for name, info in ServeArgs.model_fields.items():
        ann = info.annotation
        base = getattr(ann, "__args__", (ann,))
        base = next((a for a in base if a is not type(None)), str)
        if name in _HUMAN_INT_FLAGS:
            typ: Any = Optional[Union[int, str]]
        else:
            typ = Optional[base]
        fields[name] = (typ, Field(None, description=f"vLLM's --{name.replace('_', '-')}"))
    return fields


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _PlanInputs(_Base):
    model: Optional[str] = Field(None, max_length=MAX_NAME_CHARS,
                                 description="Catalog id or short name (Qwen/Qwen3-32B, qwen3-32b); a hub id with online=true.")
    config_json: Optional[str] = Field(None, max_length=MAX_CONFIG_CHARS,
                                       description="A pasted config.json (text); used instead of the catalog.")
    command: Optional[str] = Field(None, max_length=MAX_COMMAND_CHARS,
                                   description="A whole `vllm serve MODEL --flag ...` line; flags given separately override it.")
    gpu: Optional[str] = Field(None, max_length=MAX_NAME_CHARS, description="GPU from /api/gpus (default H100).")
    gpu_memory_gib: Optional[float] = Field(None, description="Total memory CUDA reports, for any other GPU.")
    free_memory_gib: Optional[float] = Field(None, description="Free memory at start, if other processes use the GPU.")
    vllm_version: Optional[str] = Field(None, max_length=32, description="0.11.0 to 0.33.0 (default: newest).")
    online: bool = Field(False, description="Allow fetching config.json from the Hugging Face hub for ids not in the catalog.")


PlanRequest = create_model("PlanRequest", __base__=_PlanInputs, **_flag_fields())
PlanRequest.__doc__ = "One `vllm serve` start-up to plan: the model, the GPU, the vLLM version and the serve flags."

FLAG_NAMES: tuple[str, ...] = tuple(ServeArgs.model_fields)


class ExplainRequest(_Base):
    log: str = Field(..., max_length=MAX_LOG_CHARS, description="The text of a vLLM start-up log.")
    compare: bool = Field(True, description="Compare with vllm-fit's plan of the configuration the log shows.")
    online: bool = Field(False, description="Allow the hub for a model that is not in the catalog.")


# ---------------------------------------------------------------- models

def _catalog_id(name: str) -> str | None:
    from ..sources import find_catalog_entry

    entry = find_catalog_entry(name)
    return entry["id"] if entry else None


def checked_model(name: str | None, online: bool) -> str:
    """A catalog id, or a hub id when online; never a path on this machine."""
    from ..sources import HUB_ID_RE

    if not name or not name.strip():
        raise UnknownModelError("no model given", "Pick one from /api/models, paste a config.json or a `vllm serve` command.")
    name = name.strip()
    found = _catalog_id(name)
    if found:
        return found
    if online and HUB_ID_RE.match(name) and ".." not in name and not Path(name).exists():
        return name
    hint = ("Tick 'online' (online=true) to fetch its config.json from the Hugging Face hub, or paste its config.json."
            if HUB_ID_RE.match(name) and not online else
            "Use a catalog name from /api/models, a hub id such as org/name with online=true, or paste its config.json.")
    raise UnknownModelError(f"model {name[:120]!r} is not in the bundled catalog", hint)


def _human(value: Any, name: str) -> Any:
    if isinstance(value, str) and name in _HUMAN_INT_FLAGS:
        text = value.strip()
        if name == "max_model_len" and text in ("-1", "auto"):
            return -1
        try:
            return human_readable_int(text)
        except ValueError:
            raise FlagError(f"--{name.replace('_', '-')} {value[:40]!r} is not an integer (examples: 8192, 8k, 32K)") from None
    return value


def plan_arguments(req: Any) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """(model, serve flags, vllm-fit's own options) of a PlanRequest."""
    flags: dict[str, Any] = {}
    model = req.model
    if req.command:
        try:
            cmd_model, cmd_flags, _ignored = parse_serve_command(req.command)
        except ValueError as e:  # shlex: unbalanced quotes
            raise FlagError(f"cannot read the command line: {e}") from None
        flags.update(cmd_flags)
        model = model or cmd_model
    for name in FLAG_NAMES:
        value = getattr(req, name)
        if value is not None:
            flags[name] = _human(value, name)
    own = {"gpu": req.gpu, "gpu_memory_gib": req.gpu_memory_gib, "free_memory_gib": req.free_memory_gib,
           "vllm_version": req.vllm_version}
    return model, flags, own


def _check_own(own: dict[str, Any]) -> None:
    for key in ("gpu_memory_gib", "free_memory_gib"):
        v = own.get(key)
        if v is not None and not (0 < v <= 4096):  # also rejects NaN
            raise VllmFitError(f"{key} {v!r} must be between 0 and 4096 GiB")


@contextmanager
def model_source(req: Any, model: str | None) -> Iterator[tuple[str, Path | None]]:
    """(model name, config path or None) for the core: a pasted config.json lives in a
    private temporary folder for the duration; otherwise a checked catalog/hub name."""
    if getattr(req, "config_json", None) and req.config_json.strip():
        name = (model or "pasted config.json").strip()[:MAX_NAME_CHARS] or "pasted config.json"
        with tempfile.TemporaryDirectory(prefix="vllm-fit-web-") as tmp:
            path = Path(tmp) / "config.json"
            path.write_text(req.config_json, encoding="utf-8")
            try:
                yield name, path
            except VllmFitError as e:  # say "pasted config.json", not the temporary path
                raise type(e)(e.message.replace(str(path), "pasted config.json")) from None
    else:
        yield checked_model(model, req.online), None


def run_plan(req: Any):
    """The Plan of a PlanRequest (raises VllmFitError on bad input)."""
    import vllm_fit

    model, flags, own = plan_arguments(req)
    _check_own(own)
    with model_source(req, model) as (name, config):
        p = vllm_fit.plan(name, config=config, allow_hub=req.online and config is None, **own, **flags)
    if config is not None:
        p.model_source = "pasted config.json"
    return p


class PlanCache:
    """Plans are pure functions of their request: keep the last few answers as JSON."""

    def __init__(self, size: int = 256):
        self.size = size
        self._items: OrderedDict[str, tuple[bytes, Any]] = OrderedDict()
        self._lock = Lock()

    def get(self, key: str):
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: str, value: tuple[bytes, Any]) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def request_key(req: Any) -> str:
    return json.dumps(req.model_dump(exclude_none=True), sort_keys=True)


# ---------------------------------------------------------------- explain

def run_explain(req: ExplainRequest) -> dict[str, Any]:
    """explain_reports of the pasted log, JSON-ready, with the text rendering."""
    from ..explain import explain_reports, plan_args_for_log, render_text
    from ..logreader import read_log_text

    reports = read_log_text(req.log.splitlines(), source="pasted log")
    pairs = [("pasted log", r) for r in reports]

    def plan_for_log(settings: dict[str, Any]) -> dict[str, Any]:
        import vllm_fit

        args = plan_args_for_log(settings)  # the CLI's translation; the model must be a catalog/hub id here
        args["model"] = checked_model(args["model"], req.online)
        return vllm_fit.plan(**args, allow_hub=req.online).to_dict()

    result = explain_reports(pairs, compare=req.compare, plan_fn=plan_for_log)
    result["text"] = render_text(result)
    # settings and failures may hold non-JSON values (paths, tuples): make them plain
    return json.loads(json.dumps(result, default=str))


# ---------------------------------------------------------------- listings

def list_models(search: str | None = None) -> list[dict[str, Any]]:
    from ..sources import catalog_entries

    s = (search or "").strip().lower()
    out = []
    for e in catalog_entries():
        if s and s not in e["id"].lower():
            continue
        out.append({"id": e["id"], "short_name": e["id"].split("/")[-1].lower(), "has_config": bool(e.get("config_file")),
                    "provenance": e.get("provenance", {})})
    return out


def list_gpus() -> list[dict[str, Any]]:
    from ..gpus import gpu_catalog

    return [{"name": g.name, "device_name": g.device_name, "total_bytes": g.total_bytes,
             "total_gib": round(g.total_gib, 4), "sms": g.sms, "source": g.source} for g in gpu_catalog()]


def list_versions() -> dict[str, Any]:
    from ..versions import DEFAULT_VERSION, supported_versions

    return {"versions": supported_versions(), "default": DEFAULT_VERSION}


# ---------------------------------------------------------------- advise, sweep, deploy (issue 5's modules)

MAX_SWEEP_CONFIGS = 1000  # one request; `vllm-fit sweep` has no such limit
MAX_AXIS_VALUES = 64


class _AdviseOptions(BaseModel):
    concurrency: Optional[int] = Field(None, ge=1, le=1_000_000, description="Concurrent requests to serve (default 1).")
    context: Optional[Union[int, str]] = Field(None, description="Tokens per request (default: max_model_len or the model's).")
    goal: Optional[str] = Field(None, max_length=32, description="throughput, latency, cold-start or long-context.")
    gpus_per_node: int = Field(8, ge=1, le=64)
    max_gpus: int = Field(64, ge=1, le=64)
    prices: Optional[dict[str, float]] = Field(None, max_length=64, description="GPU name -> USD per GPU-hour.")
    link_gb_s: Optional[float] = Field(None, description="Host-to-GPU bandwidth for restore, GB/s.")
    disk_gb_s: Optional[float] = Field(None, description="Checkpoint image read bandwidth, GB/s.")
    kv_compression: Optional[float] = None
    kv_offloading_size: Optional[float] = Field(None, description="CPU KV offloading GiB to evaluate.")
    host_ram_gib: Optional[float] = None
    include_cheapest: bool = True


AdviseRequest = create_model("AdviseRequest", __base__=(PlanRequest, _AdviseOptions))
AdviseRequest.__doc__ = "A configuration (as for /api/plan) and the target: concurrency x context, goal."


def _int_or_human(value: Any, name: str) -> Any:
    if isinstance(value, str):
        try:
            return human_readable_int(value.strip())
        except ValueError:
            raise FlagError(f"{name} {value[:40]!r} is not an integer (examples: 8192, 8k, 32K)") from None
    return value


def run_advise(req: Any) -> dict[str, Any]:
    from ..advise import advise, render_advice

    model, flags, own = plan_arguments(req)
    _check_own(own)
    options = {k: getattr(req, k) for k in _AdviseOptions.model_fields if getattr(req, k) is not None}
    if "context" in options:
        options["context"] = _int_or_human(options["context"], "context")
    with model_source(req, model) as (name, config):
        result = advise(name, config=str(config) if config else None, allow_hub=req.online and config is None,
                        **own, **options, **flags)
    result["text"] = render_advice(result)
    return json.loads(json.dumps(result, default=str))


_SWEEP_AXES = ("gpu", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "kv_cache_dtype", "max_num_seqs")


def _axis(typ: Any) -> Any:
    return Optional[Union[typ, list[typ]]]


def _sweep_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {
        "gpu": (_axis(str), Field(None, description="GPU name or list (default H100).")),
        "tensor_parallel_size": (_axis(int), Field(None)),
        "gpu_memory_utilization": (_axis(float), Field(None)),
        "max_model_len": (_axis(Union[int, str]), Field(None)),
        "kv_cache_dtype": (_axis(str), Field(None)),
        "max_num_seqs": (_axis(int), Field(None)),
        "plots": (bool, Field(False, description="Also return the sweep plots as SVG text (matplotlib).")),
    }
    for name, spec in _flag_fields().items():  # the other serve flags stay fixed over the grid
        if name not in fields:
            fields[name] = spec
    return fields


class _SweepBase(_Base):
    model: Optional[str] = _PlanInputs.model_fields["model"]
    config_json: Optional[str] = _PlanInputs.model_fields["config_json"]
    gpu_memory_gib: Optional[float] = _PlanInputs.model_fields["gpu_memory_gib"]
    vllm_version: Optional[str] = _PlanInputs.model_fields["vllm_version"]
    online: bool = _PlanInputs.model_fields["online"]


SweepRequest = create_model("SweepRequest", __base__=_SweepBase, **_sweep_fields())
SweepRequest.__doc__ = (f"A grid: each axis one value or a list (at most {MAX_AXIS_VALUES} values, "
                        f"{MAX_SWEEP_CONFIGS} configurations in all); other serve flags are fixed.")


def sweep_arguments(req: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(axes, fixed flags) of a SweepRequest, checked against the limits."""
    axes: dict[str, Any] = {}
    total = 1
    for name in _SWEEP_AXES:
        value = getattr(req, name)
        values = value if isinstance(value, list) else ([] if value is None else [value])
        if len(values) > MAX_AXIS_VALUES:
            raise VllmFitError(f"{name} has {len(values)} values; at most {MAX_AXIS_VALUES} per axis")
        if name == "max_model_len":
            values = [_human(v, name) for v in values]
        if values:
            axes[name] = values
            total *= len(values)
    if total > MAX_SWEEP_CONFIGS:
        raise VllmFitError(f"the grid has {total} configurations; the web API plans at most {MAX_SWEEP_CONFIGS} "
                           "per request", "Split it, or use `vllm-fit sweep` from the shell.")
    fixed = {}
    for name in FLAG_NAMES:
        if name not in _SWEEP_AXES and getattr(req, name, None) is not None:
            fixed[name] = _human(getattr(req, name), name)
    return axes, fixed


def run_sweep(req: Any) -> dict[str, Any]:
    from ..sweep import sweep

    axes, fixed = sweep_arguments(req)
    if req.gpu_memory_gib is not None:
        _check_own({"gpu_memory_gib": req.gpu_memory_gib})
    with model_source(req, req.model) as (name, config):
        rows = sweep(name, config=str(config) if config else None, vllm_version=req.vllm_version,
                     gpu_memory_gib=req.gpu_memory_gib, allow_hub=req.online and config is None, **axes, **fixed)
    out: dict[str, Any] = {"count": len(rows), "rows": json.loads(json.dumps(rows, default=str))}
    if req.plots:
        out["plots"], out["plots_error"] = sweep_plots(rows)
    return out


def sweep_plots(rows: list[dict[str, Any]]) -> tuple[dict[str, str] | None, str | None]:
    """The sweep plots of vllm_fit.plots as SVG text (drawn in a temporary folder, then removed)."""
    try:
        from .. import plots
    except ImportError as e:  # pragma: no cover - plots is part of this build
        return None, f"plots need vllm_fit.plots ({e})"
    if not rows:
        return None, "nothing to plot"
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="vllm-fit-web-") as tmp:
        for key, fn in (("memory", plots.plot_memory_breakdown), ("concurrency", plots.plot_concurrency_vs_context),
                        ("restore", plots.plot_kv_and_restore_vs_utilization)):
            try:
                files = fn(rows, Path(tmp) / key)
            except VllmFitError as e:  # e.g. matplotlib is not installed
                return None, e.message
            svg = next((f for f in files if f.endswith(".svg")), None)
            if svg:
                text = Path(svg).read_text(encoding="utf-8")
                out[key] = text[text.find("<svg"):]
    return out, None


def run_deploy(req: Any) -> dict[str, Any] | None:
    """Command lines and manifests (vllm_fit.deploy) of a configuration that starts; None if it does not."""
    from ..deploy import deploy

    model, flags, own = plan_arguments(req)
    own.pop("free_memory_gib", None)
    with model_source(req, model) as (name, config):
        try:
            return deploy(name, config=str(config) if config else None, allow_hub=req.online and config is None,
                          **own, **flags)
        except VllmFitError:
            return None


def serve_command(plan: Any, model: str, explicit: dict[str, Any]) -> str:
    """The `vllm serve` line of a plan: the model and the flags the user set."""
    import shlex

    parts = ["vllm", "serve", shlex.quote(model)]
    for name in FLAG_NAMES:
        if name not in explicit:
            continue
        value = explicit[name]
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            if value:
                parts.append(flag)
            elif name in ("enable_prefix_caching", "enable_chunked_prefill"):
                parts.append("--no-" + flag[2:])
            continue
        parts += [flag, shlex.quote(json.dumps(value) if isinstance(value, dict) else str(value))]
    return " ".join(parts)
