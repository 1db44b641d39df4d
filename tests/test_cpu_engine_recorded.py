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

FIXTURES = Path(__file__).parent / "fixtures" / "cpu-engine"
CASES = json.loads((FIXTURES / "cases.json").read_text())
# The last recorded run of the live tier (tests/test_engine_live.py), so that its 28
# configurations are also checked where the engine is not installed.
LIVE = json.loads((FIXTURES / "live-cases.json").read_text())


def _overrides(name):
    # the live tier's vllm-fit side may differ from what the engine ran (TP emulation,
    # Llama-4 text inside its multimodal wrapper)
    from test_engine_live import CASES as LIVE_CASES

    return next((c[4] for c in LIVE_CASES if c[0] == name), {})


def _plan(case):
    ov = _overrides(case["name"]) if case in LIVE else {}
    cfg = ov.get("config", case["config"])
    flags = dict(case["engine"])  # exactly the vllm.LLM keywords the engine got
    flags.update({k: v for k, v in ov.items() if k != "config"})
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "config.json"
        p.write_text(json.dumps(cfg))
        return vllm_fit.plan(config=p, gpu="H100", vllm_version=case["vllm_version"], platform="cpu", **flags)


ran = [c for c in CASES + LIVE if c.get("ok")]


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
unsupported = [c for c in LIVE if not c.get("ok")]


@pytest.mark.parametrize("case", unsupported, ids=[c["name"] for c in unsupported])
def test_cases_the_cpu_build_cannot_start_are_named(case):
    # e.g. llama-fp16-bs16: the CPU attention backend needs blocks that are multiples of 32.
    pytest.skip(f"{case['name']}: the vLLM 0.32 CPU build cannot start it: {case.get('error')}")


@pytest.mark.parametrize("case", failed, ids=[c["name"] for c in failed])
def test_engine_max_len_error_text(case):
    # e.g. kv 1,000,000 B, 4096 tokens, block 128, 2 layers x 65,536 B pages: one request
    # needs 32 blocks = 4 MiB; 0.29+ holds one block (131,072 B) back, so 6 blocks fit -> 768.
    p = _plan(case)
    assert not p.fits
    assert p.error == "ValueError: " + case["error"]


LAYOUT_LINE = __import__("re").compile(
    r"(Setting attention block size to \d+ tokens.*|Padding mamba page size by [\d.]+%.*|"
    r"Add \d+ padding layers, may waste at most [\d.]+% KV cache memory)$"
)
with_logs = [c for c in LIVE if c.get("ok")]


@pytest.mark.parametrize("case", with_logs, ids=[c["name"] for c in with_logs])
def test_engine_layout_log_lines(case):
    # The block-size change, the Mamba page padding and the padding layers, as the engine logged them.
    log = (FIXTURES / "live-logs" / f"{case['name']}.log").read_text(errors="replace")
    want = sorted({m.group(1).strip() for line in log.splitlines() if (m := LAYOUT_LINE.search(line))})
    p = _plan(case)
    got = sorted({line for line in p.log_lines if LAYOUT_LINE.search(line)})
    assert got == want
