"""Robustness: truncated, failed, binary, empty and fuzzed input never raises."""

from __future__ import annotations

import json
import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vllm_fit.logreader import MEASURED_KEYS, read_log, read_log_text, read_logs_in_folder

SYNTH = Path(__file__).parent / "fixtures" / "logs" / "synthetic"
SEED_LOG = SYNTH / "v0.11-gpt-oss-20b-seed000.log"
REAL_LINES = [line for p in sorted(SYNTH.glob("*.log")) for line in p.read_text().splitlines()]


def _check(reports):
    assert reports, "at least one report"
    for report in reports:
        d = report.to_dict()
        json.dumps(d)
        assert tuple(d["measured"]) == MEASURED_KEYS
        assert isinstance(d["missing"], list)


def test_empty_input():
    reports = read_log_text([])
    _check(reports)
    assert "no vLLM log lines recognized" in reports[0].missing
    assert "no KV line found ('Available KV cache memory' / profiling results)" in reports[0].missing


def test_empty_file_and_missing_file(tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    _check(read_log(empty))
    reports = read_log(tmp_path / "does-not-exist.log")
    _check(reports)
    assert reports[0].missing[0].startswith("could not open the log")
    assert read_logs_in_folder(tmp_path / "nope") == []


def test_binary_garbage(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "garbage.log"
    path.write_bytes(bytes(rng.randrange(256) for _ in range(300_000)))
    reports = read_log(path)
    _check(reports)
    assert reports[0].measured["kv_cache_gib"] is None


def test_long_line_without_newline(tmp_path):
    path = tmp_path / "one-line.log"
    path.write_bytes(b"x" * (3 << 20) + b" Available KV cache memory: 1.0 GiB")
    _check(read_log(path))


def test_gzip_broken(tmp_path):
    path = tmp_path / "broken.log.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    _check(read_log(path))


def test_truncated_everywhere():
    lines = SEED_LOG.read_text().splitlines()
    for cut in range(len(lines) + 1):
        reports = read_log_text(lines[:cut])
        _check(reports)
    # cut in the middle of the last line: the half line must not give a wrong number
    text = SEED_LOG.read_text()
    for cut in range(len(text) - 2000, len(text), 7):
        reports = read_log_text(text[:cut].splitlines())
        _check(reports)
        m = reports[-1].measured
        assert m["kv_cache_memory_full_bytes"] in (None, 61267232256)
        assert m["kv_cache_memory_recommended_bytes"] in (None, 53414341735)
        assert m["kv_cache_gib"] in (None, 50.28)


def test_truncated_log_says_so():
    lines = SEED_LOG.read_text().splitlines()
    cut = next(i for i, line in enumerate(lines) if "Model loading took" in line) + 1
    report = read_log_text(lines[:cut])[0]
    assert report.failure is None and not report.ready
    assert any("truncated" in m for m in report.missing)
    assert report.measured["weights_gib"] == 13.47


def test_v0_multiline_without_prefixes():
    lines = [
        "INFO 02-20 10:00:01 api_server.py:840] vLLM API server version 0.8.1",
        "INFO 02-20 10:00:28 worker.py:266] Memory profiling takes 2.37 seconds",
        "the current vLLM instance can use total_gpu_memory (79.19GiB) x gpu_memory_utilization (0.90) = 71.27GiB",
        "model weights take 14.99GiB; non_torch_memory takes 0.13GiB; PyTorch activation peak memory takes 1.23GiB; "
        "the rest of the memory reserved for KV Cache is 54.92GiB.",
    ]
    m = read_log_text(lines)[0].measured
    assert (m["total_gib"], m["requested_gib"], m["weights_gib"], m["non_torch_gib"], m["activation_gib"],
            m["kv_cache_gib"]) == (79.19, 71.27, 14.99, 0.13, 1.23, 54.92)


def test_one_message_as_one_string_with_newlines():
    text = ("INFO 02-20 10:00:28 worker.py:266] Memory profiling takes 2.37 seconds\n"
            "the current vLLM instance can use total_gpu_memory (79.19GiB) x gpu_memory_utilization (0.90) = 71.27GiB\n"
            "model weights take 14.99GiB; non_torch_memory takes 0.13GiB; PyTorch activation peak memory takes "
            "1.23GiB; the rest of the memory reserved for KV Cache is 54.92GiB.")
    assert read_log_text([text])[0].measured["kv_cache_gib"] == 54.92


def test_cri_partial_lines_and_compose_prefix():
    full = ("(EngineCore pid=1) INFO 10-20 10:00:31 [gpu_worker.py:436] Available KV cache memory: 58.11 GiB")
    lines = ["2026-04-22T00:03:35.123456789Z stderr P " + full[:50],
             "2026-04-22T00:03:35.123456789Z stderr F " + full[50:]]
    assert read_log_text(lines)[0].measured["kv_cache_gib"] == 58.11
    assert read_log_text(["vllm-1  | " + full])[0].measured["kv_cache_gib"] == 58.11
    docker_split = [json.dumps({"log": full[:40], "stream": "stderr"}), json.dumps({"log": full[40:] + "\n"})]
    assert read_log_text(docker_split)[0].measured["kv_cache_gib"] == 58.11


def test_rank_prefixed_traceback_oom():
    lines = [
        "(EngineCore pid=1) INFO 10-20 10:00:20 [gpu_model_runner.py:3100] Model loading took 15.27 GiB memory "
        "and 8.000000 seconds",
        "[rank0]: Traceback (most recent call last):",
        '[rank0]:   File "/x/vllm/v1/worker/gpu_model_runner.py", line 3400, in _dummy_sampler_run',
        "[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 512.00 MiB. GPU 0 has a total "
        "capacity of 23.55 GiB of which 100.00 MiB is free.",
    ]
    f = read_log_text(lines)[0].failure
    assert f["kind"] == "cuda_oom_sampler_warmup"
    assert f["numbers"]["tried_to_allocate_gib"] == 0.5
    assert f["numbers"]["gpu_free_gib"] == 100 / 1024


def test_errors_after_ready_are_not_startup_failures():
    lines = SEED_LOG.read_text().splitlines() + [
        "(APIServer pid=1) ERROR 10-20 11:00:00 [serving.py:1] ValueError: bad request"]
    report = read_log_text(lines)[0]
    assert report.failure is None and report.ready


def test_old_oom_format():
    lines = ["torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 224.00 MiB (GPU 0; 79.15 GiB "
             "total capacity; 75.00 GiB already allocated; 3.33 GiB free; 76.00 GiB reserved in total by PyTorch)"]
    f = read_log_text(lines)[0].failure
    assert f["numbers"]["gpu_total_gib"] == 79.15 and f["numbers"]["gpu_free_gib"] == 3.33


line_strategy = st.one_of(
    st.text(max_size=300),
    st.sampled_from(REAL_LINES),
    st.builds(lambda line, a, b: line[:a] + line[b:], st.sampled_from(REAL_LINES),
              st.integers(0, 400), st.integers(0, 400)),
    st.builds(lambda line, junk: line.replace(" ", junk, 1), st.sampled_from(REAL_LINES), st.text(max_size=5)),
    st.builds(lambda d: json.dumps({"log": d}), st.text(max_size=100)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line_strategy, max_size=40))
def test_fuzz_read_log_text_never_raises(lines):
    _check(read_log_text(lines))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_bytes_never_raise(data):
    _check(read_log_text(data.decode("utf-8", errors="replace").splitlines()))
    _check(read_log_text([data]))  # bytes lines are decoded too


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(REAL_LINES), max_size=60), st.randoms(use_true_random=False))
def test_fuzz_shuffled_real_lines(lines, rnd):
    rnd.shuffle(lines)
    _check(read_log_text(lines))
