"""The bundled catalog: every shared model config resolves, completions say what they set."""

from __future__ import annotations

from pathlib import Path

import pytest

import vllm_fit
from vllm_fit.sources import catalog_entries, resolve_model

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "model-configs"


def test_every_catalog_model_plans_without_error():
    for e in catalog_entries():
        p = vllm_fit.plan(e["id"], gpu="H200", vllm_version="0.19.0", max_model_len=4096, allow_hub=False)
        assert p.weights_bytes > 0, e["id"]


def test_every_shared_model_folder_is_in_the_catalog():
    if not SHARED.is_dir():
        pytest.skip("../shared/model-configs is not next to the repository")
    ids = {e["id"] for e in catalog_entries()}
    folders = {f"{p.parent.name}/{p.name}" for p in SHARED.glob("*/*") if p.is_dir()}
    assert folders <= ids


def test_completed_entries_record_what_was_set_and_why():
    completed = {e["id"]: e["provenance"]["completed"] for e in catalog_entries() if "completed" in e["provenance"]}
    # partial / modified / missing configs in ../shared/model-configs
    assert {"mistralai/Mistral-Small-3.2-24B-Instruct-2506", "google/gemma-3-27b-it", "google/gemma-2b",
            "meta-llama/Llama-4-Scout-17B-16E-Instruct", "microsoft/phi-4", "ibm-granite/granite-4.0-micro",
            "ibm-granite/granite-4.0-h-1b", "ibm-granite/granite-4.0-h-tiny",
            "mistralai/Mixtral-8x7B-Instruct-v0.1"} <= set(completed)
    for c in completed.values():
        assert c["why"] and (c["fields_set"] or c["base"])
    # gemma-3-27b: the test copy had 6 layers and a 4-token window; the hub values are 62 and 1024
    assert completed["google/gemma-3-27b-it"]["fields_set"] == ["text_config.num_hidden_layers", "text_config.sliding_window"]
    s = resolve_model("google/gemma-3-27b-it", allow_hub=False).spec
    assert s.num_layers == 62 and s.vocab_size == 262208


def test_plan_notes_compare_with_published_counts():
    s = resolve_model("Qwen/Qwen3-30B-A3B", allow_hub=False).spec
    assert any("matches the published parameter count (30,532,122,624)" in n for n in s.notes)
    r1 = resolve_model("deepseek-ai/DeepSeek-R1", allow_hub=False).spec
    assert any("multi-token-prediction" in n for n in r1.notes)
