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
