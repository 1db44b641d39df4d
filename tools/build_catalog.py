"""Build the bundled model catalog from ../shared/model-configs.

Copies every model folder's JSON files into src/vllm_fit/data/models/ and
writes src/vllm_fit/data/catalog.json with the provenance row of the
shared README (where the copy came from, whether it is verbatim, caveats).
Derived entries (quantized checkpoints whose config was not found publicly)
are added from tools/derived_models.json and say so.

Run: python tools/build_catalog.py [../shared/model-configs]
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "vllm_fit" / "data"


def readme_rows(readme: Path) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    for line in readme.read_text().splitlines():
        if not line.startswith("|"):
            header = None if not line.strip() else header
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == "model":
            header = cells
            continue
        if header is None or set(cells[0]) <= {"-", " "}:
            continue
        if len(cells) == len(header):
            rows[cells[0]] = dict(zip(header, cells))
    return rows


def _deep_update(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict) and k != "vision_config":
            _deep_update(dst[k], v)
        else:
            dst[k] = v


def _paths(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and k != "vision_config":
            out += _paths(v, f"{prefix}{k}.")
        else:
            out.append(prefix + k)
    return out


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "model-configs"
    rows = readme_rows(src / "README.md")
    out_models = DATA / "models"
    if out_models.exists():
        shutil.rmtree(out_models)
    entries = []
    for cfg_dir in sorted(p for p in src.glob("*/*") if p.is_dir()):
        model_id = f"{cfg_dir.parent.name}/{cfg_dir.name}"
        dest = out_models / cfg_dir.parent.name / cfg_dir.name
        dest.mkdir(parents=True, exist_ok=True)
        files = sorted(f.name for f in cfg_dir.glob("*.json"))
        for f in files:
            shutil.copy2(cfg_dir / f, dest / f)
        config_file = next(
            (f for f in ("config.json", "config.transformers-expanded.json", "config.partial-facts.json",
                         "config.test-copy-MODIFIED.json") if f in files),
            None,
        )
        row = rows.get(model_id, {})
        entries.append({
            "id": model_id,
            "config_file": config_file,
            "files": files,
            "provenance": {
                "source": row.get("source of config", ""),
                "verbatim": row.get("verbatim?", ""),
                "size_facts": row.get("size facts", ""),
                "caveats": row.get("missing / caveats", ""),
                "copied_from": f"shared/model-configs/{model_id}",
            },
        })
    # Partial or missing configs completed from fields that can be established
    # (tools/catalog_completions.json says which fields and from what).
    by_id = {e["id"]: e for e in entries}
    for c in json.loads((ROOT / "tools" / "catalog_completions.json").read_text()):
        cfg: dict = {}
        own: dict = {}
        if c.get("base"):
            cfg = json.loads((src / c["base"] / "config.json").read_text())
        if c.get("from_file"):
            own = json.loads((src / c["id"] / c["from_file"]).read_text())
            own.pop("_provenance", None)
            if c.get("base"):
                # the partial facts must agree with the sibling they are completed from
                text = cfg.get("text_config", cfg)
                clash = {k: v for k, v in own.items() if text.get(k, v) != v}
                if clash:
                    raise SystemExit(f"{c['id']}: partial facts disagree with {c['base']}: {clash}")
            else:
                cfg = own
        set_fields = c.get("set", {})
        _deep_update(cfg, set_fields)
        dest = out_models / c["id"]
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "config.completed.json").write_text(json.dumps(cfg, indent=2) + "\n")
        entry = by_id.get(c["id"])
        if entry is None:
            entry = {"id": c["id"], "files": [], "provenance": {"source": "", "verbatim": "", "size_facts": "",
                                                                "caveats": "", "copied_from": ""}}
            entries.append(entry)
            by_id[c["id"]] = entry
        entry["config_file"] = "config.completed.json"
        entry["files"] = sorted(set(entry["files"]) | {"config.completed.json"})
        entry["provenance"]["completed"] = {
            "from_file": c.get("from_file"),
            "base": c.get("base"),
            "fields_set": sorted(_paths(set_fields)),
            "fields_from_base": sorted(_paths(cfg)) if c.get("base") and not c.get("from_file") else
            sorted(set(_paths(cfg)) - set(_paths(own)) - set(_paths(set_fields))) if c.get("base") else [],
            "why": c["why"],
        }
    derived = json.loads((ROOT / "tools" / "derived_models.json").read_text())
    for d in derived:
        dest = out_models / d["id"]
        dest.mkdir(parents=True, exist_ok=True)
        base = json.loads((src / d["base"] / "config.json").read_text())
        base.update(d["overrides"])
        (dest / "config.json").write_text(json.dumps(base, indent=2) + "\n")
        entries.append({
            "id": d["id"],
            "config_file": "config.json",
            "files": ["config.json"],
            "provenance": {
                "source": f"DERIVED: {d['base']} config.json with {sorted(d['overrides'])} set by vllm-fit",
                "verbatim": "no (derived)",
                "size_facts": "",
                "caveats": d["why"],
                "copied_from": f"shared/model-configs/{d['base']} + tools/derived_models.json",
            },
        })
    (DATA / "catalog.json").write_text(json.dumps({"models": entries}, indent=1) + "\n")
    print(f"{len(entries)} models -> {DATA / 'catalog.json'}")


if __name__ == "__main__":
    main()
