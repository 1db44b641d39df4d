"""vllm-fit's KV arithmetic against recorded real vLLM 0.32 engine runs (CPU build).

The expected numbers are what the real engine measured and logged
(tests/fixtures/cpu-engine/cases.json, recorded with tools/cpu_engine_probe.py on
config-only model folders with dummy weights and an explicit kv_cache_memory_bytes).
Given the same KV byte budget and vLLM's CPU-platform rules (platform="cpu": block
size 128 by default, MLA block 16, one batch in flight), vllm-fit must reproduce the
engine's number of blocks, its "KV cache size" tokens, its "Maximum concurrency",
the block size it ended up with (256 for the Mamba hybrid, 16 for MLA) and the
blocks one request needs, exactly.  These run without the engine; the live tier is
tests/test_engine_live.py.
"""

import json
import tempfile
from pathlib import Path

import pytest

import vllm_fit

CASES = json.loads((Path(__file__).parent / "fixtures" / "cpu-engine" / "cases.json").read_text())


def _plan(case):
    cfg = case["config"]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "config.json"
        p.write_text(json.dumps(cfg))
        # exactly the vllm.LLM keywords the engine got
        return vllm_fit.plan(config=p, gpu="H100", vllm_version=case["vllm_version"], platform="cpu",
                             **case["engine"])


ran = [c for c in CASES if c.get("ok")]


@pytest.mark.parametrize("case", ran, ids=[c["name"] for c in ran])
def test_engine_blocks_tokens_concurrency(case):
    p = _plan(case)
    assert p.num_gpu_blocks == case["num_gpu_blocks"]
    assert p.kv_cache_tokens == case["kv_cache_tokens"]
    assert f"{p.max_concurrency:.2f}" == f"{case['max_concurrency']:.2f}"
    assert p.block_size == case["block_size"]
    assert p.blocks_per_request == case["blocks_per_request"]


grouped = [c for c in ran if len(c.get("kv_cache_groups", [])) > 1]


@pytest.mark.parametrize("case", grouped, ids=[c["name"] for c in grouped])
def test_engine_groups(case):
    # Sliding-window and hybrid models: the same number of KV groups, the same
    # layers in each, the same page size.
    p = _plan(case)
    layout = p.ranks[0].kv_layout
    got = [(len(g.layers), g.spec.page_size_bytes) for g in layout.groups]
    want = [(g["num_layers"], g["page_size_bytes"]) for g in case["kv_cache_groups"]]
    assert sorted(got) == sorted(want)


failed = [c for c in CASES if not c.get("ok")]


@pytest.mark.parametrize("case", failed, ids=[c["name"] for c in failed])
def test_engine_max_len_error_text(case):
    # e.g. kv 1,000,000 B, 4096 tokens, block 128, 2 layers x 65,536 B pages: one request
    # needs 32 blocks = 4 MiB; 0.29+ holds one block (131,072 B) back, so 6 blocks fit -> 768.
    p = _plan(case)
    assert not p.fits
    assert p.error == "ValueError: " + case["error"]
