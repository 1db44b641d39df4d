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
from pathlib import Path
from threading import Lock
from typing import Any, Optional, Union

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


def run_plan(req: Any):
    """The Plan of a PlanRequest (raises VllmFitError on bad input)."""
    import vllm_fit

    model, flags, own = plan_arguments(req)
    for key in ("gpu_memory_gib", "free_memory_gib"):
        v = own[key]
        if v is not None and not (0 < v <= 4096):  # also rejects NaN
            raise VllmFitError(f"{key} {v!r} must be between 0 and 4096 GiB")
    if req.config_json and req.config_json.strip():
        name = (model or "pasted config.json").strip()[:MAX_NAME_CHARS] or "pasted config.json"
        with tempfile.TemporaryDirectory(prefix="vllm-fit-web-") as tmp:
            path = Path(tmp) / "config.json"
            path.write_text(req.config_json, encoding="utf-8")
            try:
                p = vllm_fit.plan(name, config=path, allow_hub=False, **own, **flags)
            except VllmFitError as e:  # say "pasted config.json", not the temporary path
                raise type(e)(e.message.replace(str(path), "pasted config.json")) from None
        p.model_source = "pasted config.json"
        return p
    return vllm_fit.plan(checked_model(model, req.online), allow_hub=req.online, **own, **flags)


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
    from ..explain import explain_reports, render_text
    from ..logreader import read_log_text

    reports = read_log_text(req.log.splitlines(), source="pasted log")
    pairs = [("pasted log", r) for r in reports]

    def plan_for_log(settings: dict[str, Any]) -> dict[str, Any]:
        import vllm_fit

        flags = {k: v for k, v in settings.items() if v is not None}
        model = checked_model(flags.pop("model", None), req.online)
        version = flags.pop("vllm_version", None)
        total = flags.pop("gpu_memory_gib", None)
        if flags.get("quantization") in ("compressed-tensors", "None"):
            flags.pop("quantization")  # read from the checkpoint's config, as the CLI does
        return vllm_fit.plan(model, gpu_memory_gib=total, vllm_version=version, allow_hub=req.online, **flags).to_dict()

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
        parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)
