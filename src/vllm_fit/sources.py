"""Where a model spec comes from: a local path, the bundled catalog, the hub.

Order: an explicit ``--config`` path; a model argument that is an existing
file or folder; the bundled catalog (ids and short names); the Hugging Face
hub through ``huggingface_hub`` (its cache first, so a model fetched once
works offline).  Only ``config.json`` and safetensors headers are read; no
code from the repository is executed (no trust_remote_code).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError, UnknownModelError
from .model_spec import ModelSpec, load_config_file, parse_config_text, spec_from_config
from .weights import Tensor, read_safetensors_headers

HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[\w.\-]{1,96}$")


@dataclass(frozen=True)
class ResolvedModel:
    spec: ModelSpec
    tensors: list[Tensor] | None  # from safetensors headers, when available


@lru_cache(maxsize=1)
def catalog_entries() -> list[dict[str, Any]]:
    data = json.loads(resources.files("vllm_fit").joinpath("data/catalog.json").read_text())
    return data["models"]


def _short(model_id: str) -> str:
    return model_id.split("/")[-1].lower()


@lru_cache(maxsize=1)
def _catalog_index() -> dict[str, dict[str, Any]]:
    idx: dict[str, dict[str, Any]] = {}
    for e in catalog_entries():
        idx.setdefault(e["id"].lower(), e)
    for e in catalog_entries():
        idx.setdefault(_short(e["id"]), e)
    return idx


def find_catalog_entry(name: str) -> dict[str, Any] | None:
    return _catalog_index().get(name.strip().lower())


def _catalog_config(entry: dict[str, Any]) -> dict[str, Any]:
    if not entry.get("config_file"):
        raise ConfigError(
            f"the bundled catalog has size facts but no config for {entry['id']}",
            "Pass its config.json with --config PATH.",
        )
    path = resources.files("vllm_fit").joinpath(f"data/models/{entry['id']}/{entry['config_file']}")
    return parse_config_text(path.read_text(), f"catalog {entry['id']}/{entry['config_file']}")


def _published_size_check(entry: dict[str, Any], spec: ModelSpec) -> str | None:
    """Compare the config-derived inventory with the published parameter count, when the
    catalog has one (safetensors-metadata.json: hub dtype counts or recorded totals; the
    catalog has no per-tensor headers, so the inventory itself stays config-derived)."""
    if "safetensors-metadata.json" not in entry.get("files", ()):
        return None
    try:
        meta = json.loads(resources.files("vllm_fit").joinpath(
            f"data/models/{entry['id']}/safetensors-metadata.json").read_text())
    except (OSError, ValueError):
        return None
    published = None
    params = meta.get("parameters") if isinstance(meta, dict) else None
    if isinstance(params, dict) and params and "U8" not in params:  # U8 = MXFP4, counted per FP4 value
        published = sum(v for v in params.values() if isinstance(v, int))
    else:
        totals = meta.get("third_party_param_totals") if isinstance(meta, dict) else None
        if isinstance(totals, list) and totals and isinstance(totals[0], dict) and not params:
            published = totals[0].get("value") if isinstance(totals[0].get("value"), int) else None
    if not published:
        return None
    from .weights import inventory_from_config

    ours = sum(t.numel for t in inventory_from_config(spec))
    if ours == published:
        return f"weights inventory matches the published parameter count ({published:,})"
    # DeepSeek-V3/R1, GLM-4.5 (num_nextn_predict_layers) and Qwen3-Next (mtp.* tensors) ship MTP weights
    mtp = spec.num_mtp_layers or spec.architecture == "Qwen3NextForCausalLM"
    extra = " (the checkpoint also stores multi-token-prediction layers vLLM does not load)" if mtp and ours < published else ""
    if spec.tie_word_embeddings and published - ours == spec.vocab_size * spec.hidden_size:
        extra = " (exactly one vocab x hidden matrix: a stored lm_head.weight, which vLLM skips for tied embeddings)"
    return (f"weights inventory has {ours:,} parameters, the published count is {published:,} "
            f"({(ours - published) / published:+.2%}){extra}")


def resolve_model(model: str | None, config_path: str | Path | None = None, allow_hub: bool = True) -> ResolvedModel:
    if config_path is not None:
        p = Path(config_path)
        if p.is_dir():
            return _from_folder(p, model or p.name)
        if not p.exists():
            raise ConfigError(f"--config {p} does not exist")
        return ResolvedModel(spec_from_config(load_config_file(p), model or str(p), source=f"local file {p}"), None)
    if not model or not isinstance(model, str) or not model.strip():
        raise UnknownModelError("no model given", "Name a model (e.g. Qwen/Qwen3-8B or qwen3-8b) or pass --config PATH.")
    model = model.strip()
    p = Path(model).expanduser()
    if p.exists():
        if p.is_dir():
            return _from_folder(p, model)
        return ResolvedModel(spec_from_config(load_config_file(p), model, source=f"local file {p}"), None)
    entry = find_catalog_entry(model)
    if entry is not None:
        return _resolve_catalog(entry["id"])
    if model.startswith((".", "/", "~")) or model.endswith(".json"):
        raise ConfigError(f"{model} does not exist", "Pass an existing config.json or model folder.")
    if allow_hub and HUB_ID_RE.match(model):
        found = _from_hub(model)
        if found is not None:
            return found
    raise UnknownModelError(
        f"model {model!r} is not in the bundled catalog and could not be fetched from the Hugging Face hub"[:200],
        "Offline? Pass its config.json with --config PATH (or a local model folder as the model); "
        "`vllm-fit models` lists the bundled catalog.",
    )


@lru_cache(maxsize=128)
def _resolve_catalog(model_id: str) -> ResolvedModel:
    """A bundled model, resolved once per process: the catalog is package data
    and the answer is frozen, so plans, searches and the web server share it."""
    entry = find_catalog_entry(model_id)
    assert entry is not None
    spec = spec_from_config(_catalog_config(entry), entry["id"], source="bundled catalog",
                            provenance=entry.get("provenance", {}))
    note = _published_size_check(entry, spec)
    if note:
        spec = replace(spec, notes=spec.notes + (note,))
    return ResolvedModel(spec, None)


def _from_folder(folder: Path, name: str) -> ResolvedModel:
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"{folder} has no config.json", "Point at a Hugging Face model folder or pass --config PATH.")
    cfg = load_config_file(cfg_path)
    modelopt = folder / "hf_quant_config.json"
    if "quantization_config" not in cfg and modelopt.is_file():
        cfg = {**cfg, "quantization_config": modelopt_quant_config(load_config_file(modelopt))}
    spec = spec_from_config(cfg, name, source=f"local folder {folder}")
    return ResolvedModel(spec, read_safetensors_headers(folder))


def modelopt_quant_config(hf_quant: dict[str, Any]) -> dict[str, Any]:
    """NVIDIA ModelOpt exports keep quantization in hf_quant_config.json; vLLM reads it as the
    modelopt / modelopt_fp4 method (quantization/modelopt.py)."""
    q = hf_quant.get("quantization")
    if not isinstance(q, dict):
        raise ConfigError("hf_quant_config.json has no 'quantization' object")
    algo = str(q.get("quant_algo", "")).upper()
    out: dict[str, Any] = {"quant_method": "modelopt_fp4" if "FP4" in algo else "modelopt", "quant_algo": algo,
                           "exclude_modules": q.get("exclude_modules") or []}
    if q.get("group_size") is not None:
        out["group_size"] = q["group_size"]
    return out


def _from_hub(repo_id: str) -> ResolvedModel | None:
    """config.json (and safetensors headers) through huggingface_hub and its cache."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - dependency is declared
        return None
    try:
        path = hf_hub_download(repo_id, "config.json")
    except Exception:
        # Offline, unknown repo, gated repo, network error: the caller explains.
        return None
    spec = spec_from_config(load_config_file(Path(path)), repo_id, source="Hugging Face hub (huggingface_hub cache)")
    return ResolvedModel(spec, _hub_safetensors(repo_id))


def _hub_safetensors(repo_id: str) -> list[Tensor] | None:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return None
    try:
        from huggingface_hub import get_safetensors_metadata

        meta = get_safetensors_metadata(repo_id)
    except Exception:
        return None
    out: list[Tensor] = []
    for fm in meta.files_metadata.values():
        for name, info in fm.tensors.items():
            out.append(Tensor(name, tuple(info.shape), info.dtype))
    return out or None
