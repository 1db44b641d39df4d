"""Read real vLLM start-up logs and recover where the GPU memory went.

The reader streams over lines in constant memory: every physical line is cleaned
(container wrappers, timestamps, ANSI colours), passed through one cheap compiled
prefilter and, only when that hits, through the compiled message regexes of the
formats vLLM printed from v0.2 to v0.33 (see ``vllm-memory-accounting.md`` §8).
No line is stored; only the tail of the current record (1 KiB) is kept so that a
message wrapped over two physical lines (terminal width, log collectors, V0's
multi-line profiling message) is still read.

Numbers are kept as logged: GiB values as floats with the logged decimals,
byte counts and token/block counts as exact integers.  Nothing here prints and
nothing raises on bad input: what could not be found is named in ``missing``.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

__all__ = [
    "LogReport",
    "MEASURED_KEYS",
    "SETTINGS_KEYS",
    "FAILURE_KINDS",
    "read_log_text",
    "read_log",
    "read_logs_in_folder",
]

MEASURED_KEYS: tuple[str, ...] = (
    "vllm_version",
    "model",
    "total_gib",
    "free_at_start_gib",
    "requested_gib",
    "weights_gib",
    "load_seconds",
    "activation_gib",
    "non_torch_gib",
    "total_consumed_gib",
    "non_kv_cache_gib",
    "cudagraph_gib",
    "cudagraph_estimate_gib",
    "kv_cache_gib",
    "kv_cache_tokens",
    "num_gpu_blocks",
    "max_concurrency",
    "max_concurrency_model_len",
    "kv_cache_memory_recommended_bytes",
    "kv_cache_memory_full_bytes",
)

SETTINGS_KEYS: tuple[str, ...] = (
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "max_model_len",
    "gpu_memory_utilization",
    "dtype",
    "kv_cache_dtype",
    "quantization",
    "block_size",
    "max_num_seqs",
    "max_num_batched_tokens",
    "enable_prefix_caching",
    "enforce_eager",
    "kv_cache_memory_bytes",
    "enable_chunked_prefill",
)

FAILURE_KINDS: tuple[str, ...] = (
    "free_memory_below_budget",
    "no_memory_for_cache_blocks",
    "max_model_len_does_not_fit",
    "cuda_oom_loading",
    "cuda_oom_profiling",
    "cuda_oom_sampler_warmup",
    "cuda_oom_cudagraph_capture",
    "invalid_parallel_config",
    "other",
)

# Per-rank measured keys (the engine-wide ones are kv_cache_tokens, num_gpu_blocks,
# max_concurrency, max_concurrency_model_len, vllm_version, model).
RANK_MEASURED_KEYS: tuple[str, ...] = (
    "total_gib",
    "free_at_start_gib",
    "requested_gib",
    "weights_gib",
    "load_seconds",
    "activation_gib",
    "non_torch_gib",
    "total_consumed_gib",
    "non_kv_cache_gib",
    "cudagraph_gib",
    "cudagraph_estimate_gib",
    "kv_cache_gib",
    "kv_cache_memory_recommended_bytes",
    "kv_cache_memory_full_bytes",
)

MAX_LINE_CHARS = 1 << 20  # longer physical lines are cut (binary garbage without newlines)
_TAIL_CHARS = 1024  # kept from the current record to read wrapped messages
_MAX_DICT_REPR = 65536  # non-default args dict larger than this is not evaluated
_MAX_RANKS = 512  # garbage with many pids cannot grow the report without bound
_MAX_NOTES = 50

# ---------------------------------------------------------------------------
# small parsing helpers


def _f(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def _i(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.replace(",", ""))
    except ValueError:
        return None


_UNIT_TO_GIB = {"B": 1 / 2**30, "KiB": 1 / 2**20, "MiB": 1 / 1024, "GiB": 1.0, "TiB": 1024.0,
                "KB": 1 / 2**20, "MB": 1 / 1024, "GB": 1.0}


def _gib(value: str | None, unit: str | None) -> float | None:
    number = _f(value)
    if number is None:
        return None
    factor = _UNIT_TO_GIB.get(unit or "GiB", 1.0)
    return number if factor == 1.0 else number * factor


def _setting_value(raw: str) -> Any:
    raw = raw.strip().rstrip(",")
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    if raw == "None":
        return None
    if raw == "True":
        return True
    if raw == "False":
        return False
    number = _i(raw)
    if number is not None and re.fullmatch(r"-?\d+", raw):
        return number
    try:
        return float(raw)
    except ValueError:
        return raw


def _normalize_dtype(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("torch."):
        return value[len("torch."):]
    return value


# ---------------------------------------------------------------------------
# line cleaning

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]")
_K8S_TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\s")
_CRI_RE = re.compile(r"^(?:stdout|stderr) ([FP]) ?")
_COMPOSE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\s+\|\s")
_PREFIX_RE = re.compile(
    r"\((?P<name>[A-Za-z_][\w.-]*)(?: rank=(?P<rank>\d+))? pid=(?P<pid>\d+)(?:, ip=(?P<ip>[0-9A-Fa-f.:]+))?\)"
)
_RANK_PREFIX_RE = re.compile(r"\[rank(\d+)\]:")
_HEADER_RE = re.compile(
    r"\s*(?:(?P<prefix>\((?P<name>[A-Za-z_][\w.-]*)(?: rank=(?P<rank>\d+))? pid=(?P<pid>\d+)"
    r"(?:, ip=(?P<ip>[0-9A-Fa-f.:]+))?\))|\[rank(?P<rankprefix>\d+)\]:|"
    r"(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\s)"
)

# ---------------------------------------------------------------------------
# message patterns.  Every numeric pattern demands the text after the number
# (unit, delimiter) so that a number cut by a line wrap is not read short.

_NUM = r"(-?[\d,]*\.?\d+)"
_G = r"\s?GiB"

RE_ENGINE_INIT = re.compile(
    r"Initializing an? (?:V[01] )?LLM engine(?: \(v(?P<ver>[^)\s]+)\))? with config: (?P<cfg>.*)"
)
RE_API_VERSION = re.compile(r"vLLM API server version (?P<ver>\d[\w.+-]*)")
RE_BANNER_VERSION = re.compile(r"\u2588\s+version\s+(?P<ver>\d[\w.+-]*)")
RE_BANNER_MODEL = re.compile(r"\u2588\s+model\s+(?P<model>\S+)")
RE_ARGS = re.compile(r"non-default args: (?P<dict>\{.*\})")
RE_CFG_KEYS = re.compile(
    r"(?:^|[\s,(])(?P<key>model|dtype|max_seq_len|tensor_parallel_size|pipeline_parallel_size|"
    r"data_parallel_size|quantization|enforce_eager|kv_cache_dtype|enable_prefix_caching|"
    r"enable_chunked_prefill|block_size|max_num_seqs|max_num_batched_tokens|served_model_name|device_config)="
    r"(?P<val>'[^']*'|\"[^\"]*\"|[^,\s)]+)"
)
RE_MAX_MODEL_LEN = re.compile(r"Using max model len (?P<n>\d+)\b")
RE_DEFAULTING = re.compile(r"Defaulting (?P<key>max_num_seqs|max_num_batched_tokens) to (?P<n>\d+)\b")
RE_CHUNKED = re.compile(r"Chunked prefill is enabled with max_num_batched_tokens=(?P<n>\d+)\b")

RE_SNAPSHOT = re.compile(r"worker init memory snapshot: (?P<body>.*)")
RE_SNAPSHOT_KV = re.compile(r"\b(?P<key>\w+)=" + _NUM + r"GiB")
RE_WORKER_REQUESTED = re.compile(r"worker requested memory: " + _NUM + _G)
RE_INITIAL_FREE = re.compile(
    r"Initial free memory: " + _NUM + _G + r"; Requested memory: " + _NUM + r" \(util\), " + _NUM + _G
)
RE_FREE_AFTER = re.compile(
    r"Free memory after profiling: " + _NUM + _G + r" \(total\), " + _NUM + _G + r" \(within requested\)"
)
RE_MODEL_LOADING = re.compile(
    r"(?:Model loading|Loading model weights) took " + _NUM + r"\s?(?P<unit>GiB|GB)"
    r"(?: memory)?(?: and (?P<sec>[\d.]+) seconds)?"
)
RE_PROF_TAKES = re.compile(r"Memory profiling takes (?P<sec>[\d.]+) seconds")
RE_PROF_NON_KV = re.compile(r"Total non KV cache memory: " + _NUM + _G)
RE_PROF_TORCH_PEAK = re.compile(r"torch peak memory increase: " + _NUM + _G)
RE_PROF_NON_TORCH = re.compile(r"non-torch forward increase memory: " + _NUM + _G)
RE_PROF_CONSUMED = re.compile(r"total consumed \(from mem_get_info\): " + _NUM + _G)
RE_PROF_WEIGHTS = re.compile(r"(?<!model )weights memory: " + _NUM + _G)
# V0 / early V1 multi-line message (v0.7 - v0.10)
RE_V0_BUDGET = re.compile(
    r"total_gpu_memory \(" + _NUM + _G + r"\) x gpu_memory_utilization \(" + _NUM + r"\) = " + _NUM + _G
)
RE_V0_WEIGHTS = re.compile(r"model weights take " + _NUM + _G)
RE_V0_NON_TORCH = re.compile(r"non_torch_memory takes " + _NUM + _G)
RE_V0_ACTIVATION = re.compile(r"PyTorch activation peak memory takes " + _NUM + _G)
RE_V0_KV = re.compile(r"the rest of the memory reserved for KV Cache is " + _NUM + _G)
# V0 v0.6.x key=value form
RE_V0_RESULTS = re.compile(r"Memory profiling results: (?P<body>.*)")
RE_V0_RESULTS_KV = re.compile(r"\b(?P<key>\w+)=" + _NUM + r"(?:\s?(?:GiB|Gib|GB))?")

RE_AVAILABLE_KV = re.compile(r"Available KV cache memory: " + _NUM + _G)
RE_MANUAL_KV = re.compile(
    r"Initial free memory:? " + _NUM + _G + r", reserved " + _NUM + _G + r" memory for KV Cache"
)
RE_CPU_KV_SET = re.compile(r"(?P<how>Explicitly|Auto) set \(" + _NUM + r"/" + _NUM + r"\) GiB for KV cache")
RE_CPU_REQUESTED = re.compile(r"with " + _NUM + r" GiB requested memory for the worker")
RE_CPU_NON_KV = re.compile(_NUM + r" GiB memory was consumed by non-kv usages")

RE_KV_SIZE = re.compile(r"(?P<dev>[A-Z]{2,5}) KV cache size: (?P<tok>[\d,]+) tokens")
RE_CONCURRENCY = re.compile(
    r"Maximum concurrency for (?P<len>[\d,]+) tokens per request: (?P<x>[\d,]*\.?\d+)x"
)
RE_NUM_BLOCKS_METRICS = re.compile(r"num_gpu_blocks is: (?P<n>\d+)\b")
RE_V0_BLOCKS = re.compile(r"# (?P<dev>\w+) blocks: (?P<n>\d+), # CPU blocks: (?P<cpu>\d+)\b")
RE_OVERRIDE = re.compile(r"Overriding num_gpu_blocks=(?P<old>\d+) with num_gpu_blocks_override=(?P<new>\d+)\b")

RE_GRAPH_DONE = re.compile(r"Graph capturing finished in (?P<sec>\d+) secs?, took " + _NUM + _G)
RE_GRAPH_POOL = re.compile(
    r"CUDA graph pool memory: " + _NUM + _G + r" \(actual\), " + _NUM + _G + r" \(estimated\)"
)
RE_GRAPH_ESTIMATE = re.compile(r"Estimated CUDA graph memory: " + _NUM + _G + r" total")
RE_GRAPH_PROFILE = re.compile(r"Profiling CUDA graph memory: (?P<body>.*)")
RE_GRAPH_PROFILE_KV = re.compile(r"\b(?P<mode>[A-Z_]+)=(?P<n>\d+) \(largest=(?P<largest>\d+)\)")

RE_REC_HEAD = re.compile(
    r"Free memory on device (?:\S+ )?\(" + _NUM + r"/" + _NUM + _G + r"\) on startup\. "
    r"Desired GPU memory utilization is \(" + _NUM + r", " + _NUM + _G + r"\)"
)
RE_REC_USAGE = re.compile(
    r"Actual usage is " + _NUM + _G + r" for weight, " + _NUM + _G + r" for peak activation, "
    + _NUM + _G + r" for non-torch memory, and " + _NUM + _G + r" for CUDAGraph memory"
)
RE_REC_USAGE_27 = re.compile(
    r"Actual usage is " + _NUM + _G + r" for consumed memory \(weights \+ non-torch\), "
    + _NUM + _G + r" for peak activation, and " + _NUM + _G + r" for CUDAGraph memory"
)
RE_REC_REQUESTED = re.compile(r"--kv-cache-memory=(?P<b>-?\d+)`? \(" + _NUM + _G + r"\) to fit into requested memory")
RE_REC_FULL = re.compile(r"--kv-cache-memory=(?P<b>-?\d+)`? \(" + _NUM + _G + r"\) to fully utilize gpu memory")
RE_REC_IN_USE = re.compile(r"Current kv cache memory in use is " + _NUM + _G)

RE_FAIL_FREE = re.compile(
    r"Free memory on device (?:\S+ )?\(" + _NUM + r"/" + _NUM + _G + r"\) on startup is less than "
    r"desired GPU memory utilization \(" + _NUM + r", " + _NUM + _G + r"\)"
)
RE_FAIL_NO_MEMORY = re.compile(r"No available memory for the cache blocks")
RE_FAIL_MML = re.compile(
    r"To serve at least one request with the models?'s max seq len \((?P<len>\d+)\), \(" + _NUM + _G
    + r" KV cache is needed, which is larger than the available KV cache memory \(" + _NUM + _G + r"\)"
)
RE_FAIL_MML_EST = re.compile(r"the estimated maximum model length is (?P<n>-?\d+)\b")
RE_FAIL_MML_V0 = re.compile(
    r"The model's max seq len \((?P<len>\d+)\) is larger than the maximum number of tokens that can be "
    r"stored in KV cache \((?P<tok>\d+)\)"
)
RE_FAIL_SAMPLER = re.compile(
    r"CUDA out of memory occurred when warming up (?P<what>sampler|pooler)(?: \([^)]*\))? with "
    r"(?P<n>\d+) dummy requests"
)
RE_OOM = re.compile(r"CUDA out of memory\. Tried to allocate " + _NUM + r" ?(?P<unit>[KMGT]?i?B)\b")
RE_OOM_CAPACITY = re.compile(
    r"GPU (?P<gpu>\d+) has a total capacity of " + _NUM + r" ?(?P<u1>[KMGT]iB) of which " + _NUM
    + r" ?(?P<u2>[KMGT]iB) is free"
)
RE_OOM_PROCESS = re.compile(r"Process (?P<pid>\d+) has " + _NUM + r" ?(?P<unit>[KMGT]iB) memory in use")
RE_OOM_ALLOCATED = re.compile(
    r"Of the allocated memory " + _NUM + r" ?(?P<u1>[KMGT]iB) is allocated by PyTorch, and " + _NUM
    + r" ?(?P<u2>[KMGT]iB) is reserved by PyTorch but unallocated"
)
RE_OOM_OLD = re.compile(
    r"\(GPU (?P<gpu>\d+); " + _NUM + r" ?(?P<u1>[KMGT]iB) total capacity; " + _NUM
    + r" ?(?P<u2>[KMGT]iB) already allocated; " + _NUM + r" ?(?P<u3>[KMGT]iB) free"
)
RE_PARALLEL = re.compile(
    r"(?:Total number of attention heads \((?P<heads>\d+)\) must be divisible by tensor parallel size "
    r"\((?P<tp>\d+)\)"
    r"|(?P<a>\d+) is not divisible by (?P<b>\d+)"
    r"|DP adjusted local rank (?P<dprank>\d+) is out of bounds"
    r"|[Ww]orld size \((?P<ws>\d+)\) is larger than the number of available GPUs"
    r"|must be divisible by (?:tensor|pipeline) parallel size"
    r"|is not divisible by (?:tensor|pipeline) parallel size)"
)
RE_EXCEPTION = re.compile(r"(?P<exc>\b[A-Za-z_][\w.]*(?:Error|Exception))(?::\s*(?P<msg>.*))?$")
RE_PROFILING_ASSERT = re.compile(
    r"Error in memory profiling\. Initial free memory " + _NUM + _G + r", current free memory " + _NUM + _G
)
RE_TRACEBACK_FRAME = re.compile(r'File "[^"]*", line \d+, in (?P<fn>[\w<>]+)')

# phase markers (plain substrings)
_LOADING_MARKS = ("Starting to load model", "Loading model weights", "Loading weights on",
                  "Loading safetensors", "Loading pt checkpoint")
_CAPTURE_MARKS = ("Capturing CUDA graph", "Capturing cudagraphs", "Capturing CUDA graphs")
_READY_MARKS = ("init engine (profile, create kv cache, warmup model) took", "Application startup complete",
                "Starting vLLM API server")

_TB_PHASES = {
    "load_model": "loading", "load_weights": "loading", "initialize_model": "loading",
    "_initialize_model": "loading", "get_model": "loading",
    "profile_run": "profiling", "determine_available_memory": "profiling",
    "determine_num_available_blocks": "profiling", "_dummy_run": "profiling",
    "_dummy_sampler_run": "sampler", "_dummy_pooler_run": "sampler",
    "capture_model": "cudagraph", "_capture_cudagraphs": "cudagraph", "profile_cudagraph_memory": "cudagraph",
    "_warmup_and_capture": "cudagraph", "capture": "cudagraph",
}

# The prefilter: a line without any of these substrings cannot match any handler or
# phase marker.  Written as one chain of C-level substring searches (about 2x faster
# than a regex alternation of the same literals).
_KEYWORDS = (
    "Gi", " GB", " tokens", "blocks", "Error", "Exception", 'File "', "args:", "LLM engine", "version",
    "max model len", "Defaulting", "Chunked prefill", "CUDA graph", "Capturing cudagraphs", "Loading",
    "Starting", "Application startup", "init engine", "Memory profiling", "\u2588",
)


def _prefilter(t: str) -> bool:
    return ("Gi" in t or " tokens" in t or "Error" in t or 'File "' in t or "blocks" in t or "CUDA graph" in t
            or "Loading" in t or "Starting" in t or " GB" in t or "args:" in t or "LLM engine" in t
            or "version" in t or "max model len" in t or "Defaulting" in t or "Chunked prefill" in t
            or "Exception" in t or "Capturing cudagraphs" in t or "Application startup" in t
            or "init engine" in t or "Memory profiling" in t or "\u2588" in t)


# ---------------------------------------------------------------------------
# report


@dataclass
class RankReport:
    """What one worker process logged (keyed by its process prefix)."""

    label: str
    logged: dict[str, Any] = field(default_factory=dict)
    line_numbers: dict[str, int] = field(default_factory=dict)

    def set(self, key: str, value: Any, line_no: int) -> None:
        if value is None or key in self.logged:
            return  # first logged value wins
        self.logged[key] = value
        self.line_numbers[key] = line_no

    def measured(self) -> dict[str, Any]:
        got = self.logged

        def first(*keys: str) -> Any:
            for key in keys:
                if got.get(key) is not None:
                    return got[key]
            return None

        return {
            "total_gib": first("total_gib", "rec_total_gib", "v0_total_gib", "oom_total_gib"),
            "free_at_start_gib": first("free_at_start_gib", "initial_free_gib", "rec_free_gib"),
            "requested_gib": first("requested_gib", "initial_requested_gib", "rec_requested_gib",
                                   "v0_requested_gib"),
            "weights_gib": first("model_loading_gib", "weights_profiled_gib", "rec_weights_gib"),
            "load_seconds": first("load_seconds"),
            "activation_gib": first("activation_gib", "rec_activation_gib"),
            "non_torch_gib": first("non_torch_gib", "rec_non_torch_gib"),
            "total_consumed_gib": first("total_consumed_gib", "rec_consumed_gib"),
            "non_kv_cache_gib": first("non_kv_cache_gib"),
            "cudagraph_gib": first("cudagraph_gib", "cudagraph_pool_actual_gib", "rec_cudagraph_gib"),
            "cudagraph_estimate_gib": first("cudagraph_estimate_gib", "cudagraph_pool_estimate_gib"),
            "kv_cache_gib": first("kv_cache_gib", "kv_cache_in_use_gib"),
            "kv_cache_memory_recommended_bytes": first("kv_cache_memory_recommended_bytes"),
            "kv_cache_memory_full_bytes": first("kv_cache_memory_full_bytes"),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "measured": self.measured(),
            "logged": dict(self.logged),
            "line_numbers": dict(self.line_numbers),
        }


NOTHING_RECOGNIZED = "no vLLM log lines recognized"


@dataclass
class LogReport:
    """One engine start found in a log."""

    source: str | None = None
    first_line: int | None = None
    last_line: int | None = None
    vllm_version: str | None = None
    model: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    ranks: dict[str, RankReport] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)  # engine-wide numbers
    engine_line_numbers: dict[str, int] = field(default_factory=dict)
    failure: dict[str, Any] | None = None
    ready: bool = False
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    limiting_rank: str | None = None

    # -- derived ---------------------------------------------------------
    @property
    def recognized_nothing(self) -> bool:
        return NOTHING_RECOGNIZED in self.missing

    def _limiting(self) -> RankReport | None:
        if not self.ranks:
            return None
        with_kv = [r for r in self.ranks.values() if r.measured()["kv_cache_gib"] is not None]
        if with_kv:
            return min(with_kv, key=lambda r: r.measured()["kv_cache_gib"])
        # no KV anywhere: the rank that logged most
        return max(self.ranks.values(), key=lambda r: len(r.logged))

    @property
    def measured(self) -> dict[str, Any]:
        out: dict[str, Any] = {key: None for key in MEASURED_KEYS}
        out["vllm_version"] = self.vllm_version
        out["model"] = self.model if self.model is not None else self.settings.get("model")
        rank = self._limiting()
        if rank is not None:
            out.update(rank.measured())
        for key in ("kv_cache_tokens", "num_gpu_blocks", "max_concurrency", "max_concurrency_model_len"):
            out[key] = self.engine.get(key)
        if out["total_gib"] is None:
            out["total_gib"] = self.engine.get("total_gib")
        return out

    def to_dict(self) -> dict[str, Any]:
        settings = {key: self.settings.get(key) for key in SETTINGS_KEYS}
        for key, value in self.settings.items():
            if key not in settings:
                settings[key] = value
        return {
            "source": self.source,
            "lines": [self.first_line, self.last_line],
            "measured": self.measured,
            "settings": settings,
            "limiting_rank": self.limiting_rank,
            "ranks": [r.to_dict() for r in self.ranks.values()],
            "engine": dict(self.engine),
            "ready": self.ready,
            "failure": self.failure,
            "missing": list(self.missing),
            "notes": list(self.notes),
        }

    def plan_settings(self) -> dict[str, Any]:
        """Settings in vLLM's snake_case flag names, for a planner."""
        out: dict[str, Any] = {"model": self.model or self.settings.get("model")}
        for key in ("tensor_parallel_size", "pipeline_parallel_size", "max_model_len",
                    "gpu_memory_utilization", "dtype", "kv_cache_dtype", "quantization", "block_size",
                    "max_num_seqs", "max_num_batched_tokens", "enable_prefix_caching", "enforce_eager",
                    "kv_cache_memory_bytes"):
            out[key] = self.settings.get(key)
        out["vllm_version"] = self.vllm_version
        out["gpu_memory_gib"] = self.measured["total_gib"]
        return out


# ---------------------------------------------------------------------------
# the streaming reader


class _Reader:
    def __init__(self, source: str | None = None) -> None:
        self.source = source
        self.reports: list[LogReport] = []
        self.line_no = 0
        self._tail = ""  # tail of the current record (for wrapped messages)
        self._record_rank: str | None = None
        self._pending = ""  # partial line of a container record (docker json / CRI "P")
        self._tail_hit = False  # the current record had a prefilter hit
        self._last_prefix: str | None = None  # cache of the last process prefix seen
        self._last_key: str | None = None
        self._last_label: str | None = None
        self._record_label: str | None = None
        self._prefix_cache: dict[str, tuple[str, str, int]] = {}
        self._in_cfg_record = False  # the current record is the engine config line
        self._new_report()

    # -- report bookkeeping ---------------------------------------------
    def _new_report(self) -> None:
        self.cur = LogReport(source=self.source)
        self.reports.append(self.cur)
        self.markers: set[str] = set()
        self.engine_init_ranks: set[str | None] = set()
        self.settings_prio: dict[str, int] = {}
        self.phase = "init"
        self.tb_phase: dict[str | None, str] = {}
        self.kv_tokens: list[int] = []
        self.concurrency: list[tuple[float, int]] = []
        self.blocks_sources: dict[str, int] = {}
        self.other_failure: dict[str, Any] | None = None
        self.progress = False
        self.recognized = 0

    def _has_progress(self) -> bool:
        return self.progress or self.cur.failure is not None or self.cur.ready

    def _start_marker(self, kind: str, rank_key: str | None) -> None:
        split = False
        if self._has_progress():
            split = True
        elif kind in ("args", "api_version") and kind in self.markers:
            split = True
        elif kind == "engine_init" and rank_key in self.engine_init_ranks and "engine_init" in self.markers:
            split = True
        if split:
            self._finalize(self.cur)
            self._new_report()
        self.markers.add(kind)
        if kind == "engine_init":
            self.engine_init_ranks.add(rank_key)

    def _rank(self, key: str | None, label: str | None) -> RankReport:
        name = key if key is not None else "main"
        rank = self.cur.ranks.get(name)
        if rank is None:
            if len(self.cur.ranks) >= _MAX_RANKS:
                name = "other"
                rank = self.cur.ranks.get(name)
                if rank is not None:
                    return rank
            rank = RankReport(label=label or name)
            self.cur.ranks[name] = rank
        elif label and _label_score(label) > _label_score(rank.label):
            rank.label = label
        self.progress = True
        return rank

    def _set_setting(self, key: str, value: Any, prio: int) -> None:
        if key == "dtype":
            value = _normalize_dtype(value)
        if key == "max_seq_len":
            key = "max_model_len"
        old = self.settings_prio.get(key)
        if old is not None and old > prio:
            return
        if value is None and old is not None:
            return
        self.cur.settings[key] = value
        self.settings_prio[key] = prio

    def _engine(self, key: str, value: Any) -> None:
        if value is None or key in self.cur.engine:
            return
        self.cur.engine[key] = value
        self.cur.engine_line_numbers[key] = self.line_no

    def _fail(self, kind: str, message: str, numbers: dict[str, Any] | None = None) -> None:
        if self.cur.ready:
            return  # errors after a finished start are not start-up failures
        numbers = {k: v for k, v in (numbers or {}).items() if v is not None}
        if kind == "other":
            if self.other_failure is None:
                self.other_failure = {"kind": kind, "message": message[:500], "numbers": numbers,
                                      "line": self.line_no}
            return
        if self.cur.failure is None:
            self.cur.failure = {"kind": kind, "message": message[:500], "numbers": numbers, "line": self.line_no}
        elif self.cur.failure["kind"] == kind or kind.startswith("cuda_oom") and \
                self.cur.failure["kind"].startswith("cuda_oom"):
            for k, v in numbers.items():
                self.cur.failure["numbers"].setdefault(k, v)

    # -- input ------------------------------------------------------------
    def feed_many(self, lines: Iterable[str]) -> None:
        """The hot loop: plain lines go straight to ``_feed_text``; the rest through ``feed_physical``."""
        feed_text = self._feed_text
        for raw in lines:
            if not raw:
                self.line_no += 1
                continue
            if not isinstance(raw, str):
                if isinstance(raw, (bytes, bytearray)):
                    raw = bytes(raw).decode("utf-8", errors="replace")
                else:
                    self.line_no += 1
                    continue
            c = raw[0]
            last = raw[-1]
            if c == "{" or "0" <= c <= "9" or self._pending or last == "\n" or last == "\r" \
                    or len(raw) > MAX_LINE_CHARS:
                if "\n" in raw.rstrip("\r\n") or "\r" in raw.rstrip("\r\n"):
                    for piece in raw.splitlines():
                        self.feed_physical(piece)
                else:
                    self.feed_physical(raw)
                continue
            self.line_no += 1
            feed_text(raw)

    def feed_physical(self, raw: str) -> None:
        self.line_no += 1
        if len(raw) > MAX_LINE_CHARS:
            raw = raw[:MAX_LINE_CHARS]
        if not raw:
            return
        if raw[-1] == "\n" or raw[-1] == "\r":
            raw = raw.rstrip("\r\n")
            if not raw:
                return
        first = raw[0]
        # container wrappers
        if first == "{" and ('"log"' in raw or '"message"' in raw or '"msg"' in raw):
            text = self._unwrap_json(raw)
            if text is None:
                self._feed_text(raw)
                return
            if not text.endswith("\n"):
                self._pending += text
                if len(self._pending) > MAX_LINE_CHARS:
                    self._pending = self._pending[-MAX_LINE_CHARS:]
                return
            text = self._pending + text
            self._pending = ""
            for piece in text.splitlines():
                if piece:
                    self._feed_text(piece)
            return
        if "0" <= first <= "9":
            m = _K8S_TS_RE.match(raw)
            if m:
                raw = raw[m.end():]
                c = _CRI_RE.match(raw)
                if c:
                    raw = raw[c.end():]
                    if c.group(1) == "P":
                        self._pending += raw
                        if len(self._pending) > MAX_LINE_CHARS:
                            self._pending = self._pending[-MAX_LINE_CHARS:]
                        return
                    raw = self._pending + raw
                    self._pending = ""
                if not raw:
                    return
        if self._pending:
            raw = self._pending + raw
            self._pending = ""
        self._feed_text(raw)

    @staticmethod
    def _unwrap_json(raw: str) -> str | None:
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            return None
        if not isinstance(obj, dict):
            return None
        for key in ("log", "message", "msg"):
            value = obj.get(key)
            if isinstance(value, str):
                if key != "log" and not value.endswith("\n"):
                    value += "\n"
                return value
        return None

    def _feed_text(self, text: str) -> None:
        if not text:
            return
        if "\x1b" in text:
            text = _ANSI_RE.sub("", text)
            if not text:
                return
        if text[0] != "(" and "|" in text[:80]:
            c = _COMPOSE_RE.match(text)
            if c:
                text = text[c.end():]
                if not text:
                    return
        lp = self._last_prefix
        if lp is not None and text.startswith(lp):  # same process as the last header: no regex
            self._record_rank = self._last_key
            self._record_label = self._last_label
            self._tail_hit = False
            self._in_cfg_record = False
            self._tail = text[-_TAIL_CHARS:]
            if not _prefilter(text):
                return
            boundary = 0
            full = text
        elif (head := _HEADER_RE.match(text)) is not None or not self._tail:
            if text.isspace():
                return
            boundary = 0
            full = text
            prefix = head.group("prefix") if head is not None else None
            if prefix is not None:
                if prefix != self._last_prefix:
                    cached = self._prefix_cache.get(prefix)
                    if cached is None:
                        label = prefix[1:-1]
                        cached = (_rank_key(head), label, _label_score(label))
                        if len(self._prefix_cache) < 4096:
                            self._prefix_cache[prefix] = cached
                    self._last_prefix = prefix
                    self._last_key, self._last_label, score = cached
                    known = self.cur.ranks.get(self._last_key)
                    if known is not None and known.label != self._last_label \
                            and score > _label_score(known.label):
                        known.label = self._last_label
                self._record_rank = self._last_key
                self._record_label = self._last_label
            elif head is not None and head.group("rankprefix") is not None:
                self._record_rank = "rank" + head.group("rankprefix")
                self._record_label = "[rank" + head.group("rankprefix") + "]"
            else:
                self._record_rank = None
                self._record_label = None
            self._tail_hit = False
            self._in_cfg_record = False
            self._tail = text[-_TAIL_CHARS:]
            if not _prefilter(text):
                return
        else:
            boundary = len(self._tail)
            full = self._tail + text
            self._tail = full[-_TAIL_CHARS:]
            if not _prefilter(full[max(0, boundary - 64):]) and not self._tail_hit:
                return
            if self._in_cfg_record:
                _parse_cfg(self, full, boundary)
        self._tail_hit = True
        if self.cur.first_line is None:
            self.cur.first_line = self.line_no
        self._process(full, boundary)

    # -- message dispatch -----------------------------------------------
    def _rank_at(self, text: str, pos: int) -> tuple[str | None, str | None]:
        """Process prefix that owns the message starting at ``pos``."""
        best = None
        for m in _PREFIX_RE.finditer(text, 0, pos):
            best = m
        if best is not None:
            return _rank_key(best), _rank_label(best)
        r = None
        for r in _RANK_PREFIX_RE.finditer(text, 0, pos):
            pass
        if r is not None:
            return "rank" + r.group(1), "[rank" + r.group(1) + "]"
        return self._record_rank, self._record_label

    def _matches(self, regex: re.Pattern[str], text: str, boundary: int) -> Iterator[re.Match[str]]:
        for m in regex.finditer(text):
            if m.end() > boundary:
                yield m

    def _process(self, text: str, boundary: int) -> None:
        before = self.recognized
        for gate, handlers in _HANDLER_GROUPS:
            if gate is not None and gate not in text:
                continue
            for keyword, regex, handler in handlers:
                if keyword not in text:
                    continue
                for m in self._matches(regex, text, boundary):
                    key, label = self._rank_at(text, m.start())
                    self.recognized += 1
                    handler(self, m, key, label, m.start() >= boundary)
        # phase markers and traceback frames (cheap substring checks)
        new = text[boundary:] if boundary else text
        if 'File "' in new:
            f = RE_TRACEBACK_FRAME.search(new)
            if f:
                phase = _TB_PHASES.get(f.group("fn"))
                if phase:
                    key, _ = self._rank_at(text, boundary + f.start())
                    if len(self.tb_phase) < _MAX_RANKS:
                        self.tb_phase[key] = phase
        elif "Traceback (most recent call last)" in new:
            key, _ = self._rank_at(text, boundary + new.find("Traceback"))
            self.tb_phase.pop(key, None)
        if "Loading" in new or "Starting to load" in new:
            if self.phase in ("init", "loading") and any(mark in new for mark in _LOADING_MARKS):
                self.phase = "loading"
        if "Capturing" in new and any(mark in new for mark in _CAPTURE_MARKS):
            if self.phase != "warmup":
                self.phase = "cudagraph"
        if not self.cur.ready and ("init engine" in new or "startup complete" in new or "Starting vLLM" in new) \
                and any(mark in new for mark in _READY_MARKS):
            self.cur.ready = True
            self.recognized += 1
        if self.recognized != before:
            self.cur.last_line = self.line_no

    # -- finalize -----------------------------------------------------------
    def finish(self) -> list[LogReport]:
        if self._pending:
            pending, self._pending = self._pending, ""
            for piece in pending.splitlines():
                self._feed_text(piece)
        self._finalize(self.cur)
        return self.reports

    def _finalize(self, report: LogReport) -> None:
        if self.kv_tokens:
            report.engine["kv_cache_tokens"] = min(self.kv_tokens)
            if len(set(self.kv_tokens)) > 1:
                report.notes.append(
                    f"{len(self.kv_tokens)} KV cache size lines with different token counts "
                    f"({min(self.kv_tokens)}..{max(self.kv_tokens)}); kept the smallest"
                )
        if self.concurrency:
            x, length = min(self.concurrency)
            report.engine["max_concurrency"] = x
            report.engine["max_concurrency_model_len"] = length
        for source in ("metrics", "v0", "override"):
            if source in self.blocks_sources:
                report.engine["num_gpu_blocks"] = self.blocks_sources[source]
                break
        if report.failure is None and self.other_failure is not None and not report.ready:
            report.failure = self.other_failure
        if report.failure is not None:
            report.failure.pop("line", None)
            report.failure = {"kind": report.failure["kind"], "message": report.failure["message"],
                              "numbers": report.failure["numbers"]}
        rank = report._limiting()
        if rank is not None:
            report.limiting_rank = rank.label
            if len(report.ranks) > 1:
                kv = rank.measured()["kv_cache_gib"]
                if kv is not None:
                    report.notes.append(
                        f"measured numbers are from {rank.label}, the rank with the smallest available KV "
                        f"cache ({kv} GiB) of {len(report.ranks)} ranks; num_gpu_blocks/kv_cache_tokens are "
                        "engine-wide"
                    )
                else:
                    report.notes.append(
                        f"no rank logged its available KV cache; measured numbers are from {rank.label}"
                    )
            if rank.logged.get("kv_cache_gib") is None and rank.logged.get("kv_cache_in_use_gib") is not None:
                report.notes.append(
                    f"{rank.label}: KV cache memory taken from 'Current kv cache memory in use' "
                    "(no 'Available KV cache memory' line from this rank)"
                )
            if rank.logged.get("model_loading_gib") is None and rank.measured()["weights_gib"] is not None:
                report.notes.append(
                    f"{rank.label}: weights taken from the profiling summary/recommendation "
                    "('Model loading took' was not logged by this rank)"
                )
            if "manual_kv" in rank.logged:
                report.notes.append("KV cache size set by kv_cache_memory_bytes (profiling skipped)")
        self._missing(report)

    def _missing(self, report: LogReport) -> None:
        miss = report.missing
        if self.recognized == 0 and not report.settings and report.vllm_version is None:
            miss.append(NOTHING_RECOGNIZED)
        m = report.measured
        manual = any("manual_kv" in r.logged for r in report.ranks.values())
        cpu = report.engine.get("kv_cache_device") == "CPU" or report.settings.get("device") == "cpu"
        if m["vllm_version"] is None:
            miss.append("no vLLM version found (no 'Initializing a V1 LLM engine (vX)' / banner line)")
        if m["model"] is None:
            miss.append("no model name found")
        if cpu:
            miss.append("CPU engine: no weights/activation/CUDA-graph lines are printed by the CPU worker")
        elif m["weights_gib"] is None:
            miss.append("no weights line found ('Model loading took ... GiB')")
        if m["activation_gib"] is None and m["kv_cache_gib"] is not None and not manual and not cpu:
            miss.append("no activation found (profiling summary is DEBUG: run with VLLM_LOGGING_LEVEL=DEBUG)")
        if m["kv_cache_gib"] is None:
            miss.append("no KV line found ('Available KV cache memory' / profiling results)")
        if m["kv_cache_tokens"] is None and m["num_gpu_blocks"] is None:
            miss.append("no KV cache size line found ('GPU KV cache size' / '# GPU blocks')")
        if m["free_at_start_gib"] is None and not cpu:
            miss.append("no free memory at start found (worker init memory snapshot / 'Free memory on device')")
        if m["total_gib"] is None:
            miss.append("no total GPU memory found")
        if m["cudagraph_gib"] is None and report.settings.get("enforce_eager") is not True and not cpu \
                and m["kv_cache_gib"] is not None and not str(m["vllm_version"] or "").startswith("0.2"):
            miss.append("no CUDA graph capture line found ('Graph capturing finished ... took X GiB')")
        if report.failure is None and not report.ready and self.recognized:
            miss.append("log ends before the engine reported ready and no error was found (truncated log?)")
        del miss[_MAX_NOTES:]
        del report.notes[_MAX_NOTES:]


def _rank_key(m: re.Match[str]) -> str:
    pid = m.group("pid")
    ip = m.group("ip")
    return f"pid={pid}" + (f",ip={ip}" if ip else "")


def _rank_label(m: re.Match[str]) -> str:
    return m.group(0)[1:-1]


def _label_score(label: str) -> int:
    # "Worker_PP3 pid=1" beats "Worker pid=1"; "VllmWorker rank=1 pid=1" beats "pid=1"
    head = label.split(" pid=")[0]
    return (2 if any(ch.isdigit() for ch in head) else 0) + (1 if "_" in head or "rank=" in head else 0)


# ---------------------------------------------------------------------------
# handlers: (reader, match, rank_key, rank_label, starts_in_new_text)

Handler = Callable[[_Reader, "re.Match[str]", "str | None", "str | None", bool], None]


def _h_engine_init(r: _Reader, m: re.Match[str], key: str | None, label: str | None, fresh: bool) -> None:
    if fresh:
        r._start_marker("engine_init", key)
    if m.group("ver") and r.cur.vllm_version is None:
        r.cur.vllm_version = m.group("ver")
    if fresh or not r._in_cfg_record:
        r._in_cfg_record = True
        _parse_cfg(r, m.string, m.start("cfg"))


def _parse_cfg(r: _Reader, text: str, start: int) -> None:
    """key=value settings of the engine config line (also its wrapped continuation lines)."""
    end_of_text = len(text)
    for kv in RE_CFG_KEYS.finditer(text, max(0, start - 64)):
        if kv.end() >= end_of_text:
            continue  # may be cut by a wrap: read it from the joined continuation
        if kv.end() <= start:
            continue
        k, v = kv.group("key"), _setting_value(kv.group("val"))
        if k == "model":
            if r.cur.model is None and isinstance(v, str):
                r.cur.model = v
            r._set_setting("model", v, 3)
        elif k == "served_model_name":
            continue
        elif k == "device_config":
            r._set_setting("device", v, 3)
        else:
            r._set_setting(k, v, 3)


def _h_api_version(r: _Reader, m: re.Match[str], key: str | None, label: str | None, fresh: bool) -> None:
    if fresh:
        r._start_marker("api_version", key)
    if r.cur.vllm_version is None:
        r.cur.vllm_version = m.group("ver")


def _h_banner_version(r: _Reader, m: re.Match[str], key: str | None, label: str | None, fresh: bool) -> None:
    if r.cur.vllm_version is None:
        r.cur.vllm_version = m.group("ver")


def _h_banner_model(r: _Reader, m: re.Match[str], key: str | None, label: str | None, fresh: bool) -> None:
    if r.cur.model is None:
        r.cur.model = m.group("model")


_ARG_ALIASES = {"max_seq_len": "max_model_len"}


def _h_args(r: _Reader, m: re.Match[str], key: str | None, label: str | None, fresh: bool) -> None:
    if fresh:
        r._start_marker("args", key)
    text = m.group("dict")
    if len(text) > _MAX_DICT_REPR:
        r.cur.notes.append("non-default args dict too long to read")
        return
    try:
        args = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        r.cur.notes.append("non-default args dict could not be read (not a plain literal or cut)")
        return
    if not isinstance(args, dict):
        return
    r.cur.notes.append("settings read from the non-default args line")
    for k, v in args.items():
        if not isinstance(k, str):
            continue
        k = _ARG_ALIASES.get(k, k)
        if k == "model_tag":
            continue
        if k == "model" and isinstance(v, str):
            r.cur.model = v
        if isinstance(v, (str, int, float, bool)) or v is None:
            r._set_setting(k, v, 2)


def _h_max_model_len(r: _Reader, m, key, label, fresh) -> None:
    r._set_setting("max_model_len", int(m.group("n")), 3)


def _h_defaulting(r: _Reader, m, key, label, fresh) -> None:
    r._set_setting(m.group("key"), int(m.group("n")), 1)


def _h_chunked(r: _Reader, m, key, label, fresh) -> None:
    r._set_setting("max_num_batched_tokens", int(m.group("n")), 3)
    r._set_setting("enable_chunked_prefill", True, 3)


def _h_snapshot(r: _Reader, m, key, label, fresh) -> None:
    rank = r._rank(key, label)
    names = {"free_memory": "free_at_start_gib", "total_memory": "total_gib",
             "cuda_memory": "init_cuda_memory_gib", "non_torch_memory": "init_non_torch_gib",
             "torch_memory": "init_torch_gib", "torch_peak": "init_torch_peak_gib"}
    for kv in RE_SNAPSHOT_KV.finditer(m.group("body")):
        name = names.get(kv.group("key"))
        if name:
            rank.set(name, _f(kv.group(2)), r.line_no)


def _h_worker_requested(r: _Reader, m, key, label, fresh) -> None:
    r._rank(key, label).set("requested_gib", _f(m.group(1)), r.line_no)


def _h_initial_free(r: _Reader, m, key, label, fresh) -> None:
    rank = r._rank(key, label)
    rank.set("initial_free_gib", _f(m.group(1)), r.line_no)
    rank.set("gpu_memory_utilization", _f(m.group(2)), r.line_no)
    rank.set("initial_requested_gib", _f(m.group(3)), r.line_no)
    r._set_setting("gpu_memory_utilization", _f(m.group(2)), 1)


def _h_free_after(r: _Reader, m, key, label, fresh) -> None:
    rank = r._rank(key, label)
    rank.set("free_after_profiling_gib", _f(m.group(1)), r.line_no)
    rank.set("free_after_profiling_within_requested_gib", _f(m.group(2)), r.line_no)


def _h_model_loading(r: _Reader, m, key, label, fresh) -> None:
    rank = r._rank(key, label)
    rank.set("model_loading_gib", _f(m.group(1)), r.line_no)
    rank.set("load_seconds", _f(m.group("sec")), r.line_no)
    if r.phase in ("init", "loading"):
        r.phase = "profiling"


def _simple(name: str, group: int | str = 1, phase: str | None = None) -> Handler:
    def handler(r: _Reader, m, key, label, fresh) -> None:
        r._rank(key, label).set(name, _f(m.group(group)), r.line_no)
        if phase and r.phase not in ("cudagraph", "warmup"):
            r.phase = phase
    return handler


def _h_v0_budget(r: _Reader, m, key, label, fresh) -> None:
    rank = r._rank(key, label)
    rank.set("v0_total_gib", _f(m.group(1)), r.line_no)
    rank.set("gpu_memory_utilization", _f(m.group(2)), r.line_no)
    rank.set("v0_requested_gib", _f(m.group(3)), r.line_no)
    r._set_setting("gpu_memory_utilization", _f(m.group(2)), 1)


def _h_v0_results(r: _Reader, m, key, label, fresh) -> None:
    rank = r._rank(key, label)
    names = {"total_gpu_memory": "v0_total_gib", "kv_cache_size": "kv_cache_gib",
             "non_torch_memory": "non_torch_gib", "peak_torch_memory": "v0_peak_torch_gib",
             "initial_memory_usage": "v0_initial_memory_usage_gib",
             "memory_usage_post_profile": "v0_memory_usage_post_profile_gib",
             "gpu_memory_utilization": "gpu_memory_utilization", "duration": "profiling_seconds"}
    for kv in RE_V0_RESULTS_KV.finditer(m.group("body")):
        name = names.get(kv.group("key"))
        if name:
            rank.set(name, _f(kv.group(2)), r.line_no)
    if r.phase not in ("cudagraph", "warmup"):
        r.phase = "kv_alloc"


def _h_manual_kv(r: _Reader, m, key, label, fresh) -> None:
    rank = r._rank(key, label)
    rank.set("free_at_start_gib", _f(m.group(1)), r.line_no)
    rank.set("kv_cache_gib", _f(m.group(2)), r.line_no)
    rank.set("manual_kv", True, r.line_no)
    if r.phase not in ("cudagraph", "warmup"):
        r.phase = "kv_alloc"


def _h_cpu_kv(r: _Reader, m, key, label, fresh) -> None:
    rank = r._rank(key, label)
    rank.set("kv_cache_gib", _f(m.group(2)), r.line_no)
    rank.set("total_gib", _f(m.group(3)), r.line_no)
    rank.set("cpu_kv_space_mode", m.group("how").lower(), r.line_no)


def _h_kv_size(r: _Reader, m, key, label, fresh) -> None:
    tokens = _i(m.group("tok"))
    if tokens is not None:
        r.kv_tokens.append(tokens)
        if len(r.kv_tokens) > 64:
            r.kv_tokens[:] = [min(r.kv_tokens), max(r.kv_tokens)]
    r._engine("kv_cache_device", m.group("dev"))
    r.cur.engine_line_numbers.setdefault("kv_cache_tokens", r.line_no)
    r.progress = True
    if r.phase not in ("cudagraph", "warmup"):
        r.phase = "kv_alloc"


def _h_concurrency(r: _Reader, m, key, label, fresh) -> None:
    x, length = _f(m.group("x")), _i(m.group("len"))
    if x is not None and length is not None:
        r.concurrency.append((x, length))
        if len(r.concurrency) > 64:
            r.concurrency[:] = [min(r.concurrency)]
        r.cur.engine_line_numbers.setdefault("max_concurrency", r.line_no)
    r.progress = True


def _h_blocks_metrics(r: _Reader, m, key, label, fresh) -> None:
    r.blocks_sources.setdefault("metrics", int(m.group("n")))
    r.cur.engine_line_numbers.setdefault("num_gpu_blocks", r.line_no)


def _h_v0_blocks(r: _Reader, m, key, label, fresh) -> None:
    r.blocks_sources.setdefault("v0", int(m.group("n")))
    r._engine("num_cpu_blocks", int(m.group("cpu")))
    r.cur.engine_line_numbers.setdefault("num_gpu_blocks", r.line_no)
    r.progress = True
    if r.phase not in ("cudagraph", "warmup"):
        r.phase = "kv_alloc"


def _h_override(r: _Reader, m, key, label, fresh) -> None:
    if int(m.group("old")) > 0:  # "=0 with ...=512" is the CUDA-graph profiling cache (v0.18+)
        r.blocks_sources.setdefault("override", int(m.group("new")))
        r._engine("num_gpu_blocks_before_override", int(m.group("old")))


def _h_graph_done(r: _Reader, m, key, label, fresh) -> None:
    rank = r._rank(key, label)
    rank.set("cudagraph_gib", _f(m.group(2)), r.line_no)
    rank.set("cudagraph_seconds", _i(m.group("sec")), r.line_no)
    r.phase = "warmup"


def _h_graph_pool(r: _Reader, m, key, label, fresh) -> None:
    rank = r._rank(key, label)
    rank.set("cudagraph_pool_actual_gib", _f(m.group(1)), r.line_no)
    rank.set("cudagraph_pool_estimate_gib", _f(m.group(2)), r.line_no)
    r.phase = "warmup"


def _h_graph_profile(r: _Reader, m, key, label, fresh) -> None:
    rank = r._rank(key, label)
    for kv in RE_GRAPH_PROFILE_KV.finditer(m.group("body")):
        mode = kv.group("mode").lower()
        rank.set(f"cudagraph_{mode}_count", int(kv.group("n")), r.line_no)
        rank.set(f"cudagraph_{mode}_largest", int(kv.group("largest")), r.line_no)


def _h_rec_head(r: _Reader, m, key, label, fresh) -> None:
    rank = r._rank(key, label)
    rank.set("rec_free_gib", _f(m.group(1)), r.line_no)
    rank.set("rec_total_gib", _f(m.group(2)), r.line_no)
    rank.set("gpu_memory_utilization", _f(m.group(3)), r.line_no)
    rank.set("rec_requested_gib", _f(m.group(4)), r.line_no)
    r._set_setting("gpu_memory_utilization", _f(m.group(3)), 1)


def _h_rec_usage(r: _Reader, m, key, label, fresh) -> None:
    rank = r._rank(key, label)
    for i, name in enumerate(("rec_weights_gib", "rec_activation_gib", "rec_non_torch_gib", "rec_cudagraph_gib"), 1):
        rank.set(name, _f(m.group(i)), r.line_no)


def _h_rec_usage_27(r: _Reader, m, key, label, fresh) -> None:
    rank = r._rank(key, label)
    for i, name in enumerate(("rec_consumed_gib", "rec_activation_gib", "rec_cudagraph_gib"), 1):
        rank.set(name, _f(m.group(i)), r.line_no)


def _h_rec_bytes(name: str) -> Handler:
    def handler(r: _Reader, m, key, label, fresh) -> None:
        rank = r._rank(key, label)
        rank.set(name, int(m.group("b")), r.line_no)
        rank.set(name.replace("_bytes", "_gib"), _f(m.group(2)), r.line_no)
    return handler


def _h_fail_free(r: _Reader, m, key, label, fresh) -> None:
    numbers = {"free_gib": _f(m.group(1)), "total_gib": _f(m.group(2)),
               "gpu_memory_utilization": _f(m.group(3)), "requested_gib": _f(m.group(4))}
    rank = r._rank(key, label)
    rank.set("free_at_start_gib", numbers["free_gib"], r.line_no)
    rank.set("total_gib", numbers["total_gib"], r.line_no)
    rank.set("requested_gib", numbers["requested_gib"], r.line_no)
    r._fail("free_memory_below_budget", _message(m), numbers)


def _h_fail_no_memory(r: _Reader, m, key, label, fresh) -> None:
    r._fail("no_memory_for_cache_blocks", _message(m), {})


def _h_fail_mml(r: _Reader, m, key, label, fresh) -> None:
    est = RE_FAIL_MML_EST.search(m.string, m.end())
    r._fail("max_model_len_does_not_fit", _message(m), {
        "max_model_len": _i(m.group("len")), "needed_gib": _f(m.group(2)), "available_gib": _f(m.group(3)),
        "estimated_max_model_len": _i(est.group("n")) if est else None})


def _h_fail_mml_est(r: _Reader, m, key, label, fresh) -> None:
    if r.cur.failure and r.cur.failure["kind"] == "max_model_len_does_not_fit":
        r.cur.failure["numbers"].setdefault("estimated_max_model_len", _i(m.group("n")))


def _h_fail_mml_v0(r: _Reader, m, key, label, fresh) -> None:
    r._fail("max_model_len_does_not_fit", _message(m), {
        "max_model_len": _i(m.group("len")), "kv_cache_tokens": _i(m.group("tok"))})


def _h_fail_sampler(r: _Reader, m, key, label, fresh) -> None:
    r._fail("cuda_oom_sampler_warmup", _message(m), {"dummy_requests": _i(m.group("n")),
                                                     "warmup": m.group("what")})


_OOM_KIND = {"loading": "cuda_oom_loading", "profiling": "cuda_oom_profiling",
             "sampler": "cuda_oom_sampler_warmup", "cudagraph": "cuda_oom_cudagraph_capture"}


def _h_oom(r: _Reader, m, key, label, fresh) -> None:
    phase = r.tb_phase.get(key) or r.phase
    kind = _OOM_KIND.get(phase)
    text = m.string[m.start():]
    numbers: dict[str, Any] = {"tried_to_allocate_gib": _gib(m.group(1), m.group("unit")), "phase": phase}
    c = RE_OOM_CAPACITY.search(text)
    if c:
        numbers["gpu"] = _i(c.group("gpu"))
        numbers["gpu_total_gib"] = _gib(c.group(2), c.group("u1"))
        numbers["gpu_free_gib"] = _gib(c.group(4), c.group("u2"))
    o = RE_OOM_OLD.search(text)
    if o:
        numbers["gpu"] = _i(o.group("gpu"))
        numbers["gpu_total_gib"] = _gib(o.group(2), o.group("u1"))
        numbers["allocated_by_pytorch_gib"] = _gib(o.group(4), o.group("u2"))
        numbers["gpu_free_gib"] = _gib(o.group(6), o.group("u3"))
    p = RE_OOM_PROCESS.search(text)
    if p:
        numbers["process_in_use_gib"] = _gib(p.group(2), p.group("unit"))
    a = RE_OOM_ALLOCATED.search(text)
    if a:
        numbers["allocated_by_pytorch_gib"] = _gib(a.group(1), a.group("u1"))
        numbers["reserved_unallocated_gib"] = _gib(a.group(3), a.group("u2"))
    if numbers.get("gpu_total_gib") is not None:
        r._engine("total_gib", numbers["gpu_total_gib"])
    if kind is None:
        r._fail("other", f"CUDA out of memory during {phase}: " + _message(m), numbers)
    else:
        r._fail(kind, _message(m), numbers)


def _h_parallel(r: _Reader, m, key, label, fresh) -> None:
    start = m.string.rfind("Error", 0, m.start())
    if start < 0 and "assert" not in m.string[max(0, m.start() - 200):m.start()].lower() \
            and "must be divisible" not in m.group(0):
        return
    if m.group("a") and start < 0:
        return  # a bare "x is not divisible by y" outside an error line
    numbers = {"attention_heads": _i(m.group("heads")), "tensor_parallel_size": _i(m.group("tp")),
               "numerator": _i(m.group("a")), "denominator": _i(m.group("b")),
               "dp_local_rank": _i(m.group("dprank")), "world_size": _i(m.group("ws"))}
    r._fail("invalid_parallel_config", _message(m), numbers)


def _h_exception(r: _Reader, m, key, label, fresh) -> None:
    exc = m.group("exc")
    msg = (m.group("msg") or "").strip()
    if exc.endswith("Warning"):
        return
    if "out of memory" in msg or "OutOfMemory" in exc:
        return  # handled by the OOM pattern
    r._fail("other", f"{exc}: {msg}" if msg else exc, {})


def _h_profiling_assert(r: _Reader, m, key, label, fresh) -> None:
    r._fail("other", _message(m), {"initial_free_gib": _f(m.group(1)), "current_free_gib": _f(m.group(2))})


def _message(m: re.Match[str]) -> str:
    """The exception/log message that contains the match, without the log header."""
    text = m.string
    start = text.rfind("Error: ", 0, m.start())
    if start >= 0 and m.start() - start < 400:
        # include the exception name
        name_start = start
        while name_start > 0 and (text[name_start - 1].isalnum() or text[name_start - 1] in "._"):
            name_start -= 1
        return text[name_start:].strip()[:500]
    bracket = text.rfind("] ", 0, m.start())
    if bracket >= 0 and m.start() - bracket < 200:
        return text[bracket + 2:].strip()[:500]
    return text[m.start():].strip()[:500]


_HANDLERS: tuple[tuple[str, re.Pattern[str], Handler], ...] = (
    ("LLM engine", RE_ENGINE_INIT, _h_engine_init),
    ("API server version", RE_API_VERSION, _h_api_version),
    ("\u2588", RE_BANNER_VERSION, _h_banner_version),
    ("\u2588", RE_BANNER_MODEL, _h_banner_model),
    ("non-default args", RE_ARGS, _h_args),
    ("max model len", RE_MAX_MODEL_LEN, _h_max_model_len),
    ("Defaulting max_num", RE_DEFAULTING, _h_defaulting),
    ("Chunked prefill", RE_CHUNKED, _h_chunked),
    ("memory snapshot", RE_SNAPSHOT, _h_snapshot),
    ("requested memory", RE_WORKER_REQUESTED, _h_worker_requested),
    ("Initial free memory", RE_INITIAL_FREE, _h_initial_free),
    ("Free memory after profiling", RE_FREE_AFTER, _h_free_after),
    ("took", RE_MODEL_LOADING, _h_model_loading),
    ("Memory profiling takes", RE_PROF_TAKES, _simple("profiling_seconds", "sec")),
    ("Total non KV", RE_PROF_NON_KV, _simple("non_kv_cache_gib", 1, "kv_alloc")),
    ("torch peak memory increase", RE_PROF_TORCH_PEAK, _simple("activation_gib")),
    ("non-torch forward", RE_PROF_NON_TORCH, _simple("non_torch_gib")),
    ("total consumed", RE_PROF_CONSUMED, _simple("total_consumed_gib")),
    ("weights memory", RE_PROF_WEIGHTS, _simple("weights_profiled_gib")),
    ("total_gpu_memory (", RE_V0_BUDGET, _h_v0_budget),
    ("model weights take", RE_V0_WEIGHTS, _simple("weights_profiled_gib")),
    ("non_torch_memory takes", RE_V0_NON_TORCH, _simple("non_torch_gib")),
    ("activation peak memory", RE_V0_ACTIVATION, _simple("activation_gib")),
    ("reserved for KV Cache", RE_V0_KV, _simple("kv_cache_gib", 1, "kv_alloc")),
    ("Memory profiling results", RE_V0_RESULTS, _h_v0_results),
    ("Available KV cache memory", RE_AVAILABLE_KV, _simple("kv_cache_gib", 1, "kv_alloc")),
    ("memory for KV Cache", RE_MANUAL_KV, _h_manual_kv),
    ("for KV cache", RE_CPU_KV_SET, _h_cpu_kv),
    ("requested memory for the worker", RE_CPU_REQUESTED, _simple("requested_gib")),
    ("non-kv usages", RE_CPU_NON_KV, _simple("non_kv_cache_gib")),
    ("KV cache size", RE_KV_SIZE, _h_kv_size),
    ("Maximum concurrency", RE_CONCURRENCY, _h_concurrency),
    ("num_gpu_blocks is", RE_NUM_BLOCKS_METRICS, _h_blocks_metrics),
    ("blocks: ", RE_V0_BLOCKS, _h_v0_blocks),
    ("Overriding num_gpu_blocks", RE_OVERRIDE, _h_override),
    ("Graph capturing finished", RE_GRAPH_DONE, _h_graph_done),
    ("CUDA graph pool memory", RE_GRAPH_POOL, _h_graph_pool),
    ("Estimated CUDA graph memory", RE_GRAPH_ESTIMATE, _simple("cudagraph_estimate_gib")),
    ("Profiling CUDA graph memory", RE_GRAPH_PROFILE, _h_graph_profile),
    ("Desired GPU memory", RE_REC_HEAD, _h_rec_head),
    ("for weight", RE_REC_USAGE, _h_rec_usage),
    ("for consumed memory", RE_REC_USAGE_27, _h_rec_usage_27),
    ("to fit into requested", RE_REC_REQUESTED, _h_rec_bytes("kv_cache_memory_recommended_bytes")),
    ("to fully utilize", RE_REC_FULL, _h_rec_bytes("kv_cache_memory_full_bytes")),
    ("kv cache memory in use", RE_REC_IN_USE, _simple("kv_cache_in_use_gib")),
    ("is less than desired", RE_FAIL_FREE, _h_fail_free),
    ("No available memory", RE_FAIL_NO_MEMORY, _h_fail_no_memory),
    ("max seq len", RE_FAIL_MML, _h_fail_mml),
    ("estimated maximum model length", RE_FAIL_MML_EST, _h_fail_mml_est),
    ("max seq len", RE_FAIL_MML_V0, _h_fail_mml_v0),
    ("warming up", RE_FAIL_SAMPLER, _h_fail_sampler),
    ("out of memory", RE_OOM, _h_oom),
    ("divisib", RE_PARALLEL, _h_parallel),
    ("out of bounds", RE_PARALLEL, _h_parallel),
    ("larger than the number of available GPUs", RE_PARALLEL, _h_parallel),
    ("Error in memory profiling", RE_PROFILING_ASSERT, _h_profiling_assert),
    ("Error", RE_EXCEPTION, _h_exception),
    ("Exception", RE_EXCEPTION, _h_exception),
)



def _group_handlers() -> tuple[tuple[str | None, tuple[tuple[str, re.Pattern[str], Handler], ...]], ...]:
    """Handlers grouped under a cheap gate substring (each handler keyword implies its gate)."""
    gates = ("Gi", " tokens", "Error", "blocks", "Exception")
    groups: dict[str | None, list[tuple[str, re.Pattern[str], Handler]]] = {g: [] for g in gates}
    groups[None] = []
    gate_of = {
        "max seq len": "Error", "estimated maximum model length": "Error", "warming up": "Error",
        "out of memory": "Error", "divisib": "Error", "out of bounds": "Error",
        "larger than the number of available GPUs": "Error", "Error in memory profiling": "Error",
        "No available memory": "blocks", "num_gpu_blocks is": "blocks", "blocks: ": "blocks",
        "Overriding num_gpu_blocks": "blocks", "KV cache size": " tokens", "Maximum concurrency": " tokens",
        "Error": "Error", "Exception": "Exception",
        "memory snapshot": "Gi", "requested memory": "Gi", "Initial free memory": "Gi",
        "Free memory after profiling": "Gi", "Total non KV": "Gi", "torch peak memory increase": "Gi",
        "non-torch forward": "Gi", "total consumed": "Gi", "weights memory": "Gi", "total_gpu_memory (": "Gi",
        "model weights take": "Gi", "non_torch_memory takes": "Gi", "activation peak memory": "Gi",
        "reserved for KV Cache": "Gi", "Available KV cache memory": "Gi", "memory for KV Cache": "Gi",
        "for KV cache": "Gi", "requested memory for the worker": "Gi", "non-kv usages": "Gi",
        "Graph capturing finished": "Gi", "CUDA graph pool memory": "Gi", "Estimated CUDA graph memory": "Gi",
        "Desired GPU memory": "Gi", "for weight": "Gi", "for consumed memory": "Gi",
        "to fit into requested": "Gi", "to fully utilize": "Gi", "kv cache memory in use": "Gi",
        "is less than desired": "Gi",
    }
    for item in _HANDLERS:
        groups[gate_of.get(item[0])].append(item)
    return tuple((g, tuple(items)) for g, items in groups.items() if items)


_HANDLER_GROUPS = _group_handlers()


# ---------------------------------------------------------------------------
# public API


def read_log_text(lines: Iterable[str], source: str | None = None) -> list[LogReport]:
    """Read a log given as lines; one ``LogReport`` per engine start (at least one)."""
    reader = _Reader(source)
    try:
        reader.feed_many(lines)
    except (OSError, UnicodeError) as exc:  # a stream that breaks mid-way
        reader.cur.notes.append(f"reading stopped: {type(exc).__name__}: {exc}")
    return reader.finish()


def _iter_stream_lines(stream: io.TextIOBase) -> Iterator[str]:
    """Split a text stream into lines with a bounded buffer (no line longer than MAX_LINE_CHARS)."""
    rest = ""
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        if rest:
            chunk = rest + chunk
        parts = chunk.splitlines()
        if chunk[-1] not in "\n\r":
            rest = parts.pop() if parts else ""
            if len(rest) > MAX_LINE_CHARS:
                yield rest[:MAX_LINE_CHARS]
                rest = ""
        else:
            rest = ""
        yield from parts
    if rest:
        yield rest


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
    return open(path, "r", encoding="utf-8", errors="replace", newline="")


def read_log(path_or_dash: str | os.PathLike[str]) -> list[LogReport]:
    """Read a log file ('-' for stdin; .gz accepted). Never raises on bad content.

    A file that cannot be opened gives one report whose ``missing`` says so.
    """
    name = str(path_or_dash)
    if name == "-":
        stream: io.TextIOBase = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace",
                                                 newline="") if hasattr(sys.stdin, "buffer") else sys.stdin
        return read_log_text(_iter_stream_lines(stream), source="-")
    path = Path(name)
    try:
        stream = _open_text(path)
    except OSError as exc:
        report = LogReport(source=name)
        report.missing.append(f"could not open the log: {exc.strerror or exc}")
        return [report]
    try:
        with stream:
            return read_log_text(_iter_stream_lines(stream), source=name)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        report = LogReport(source=name)
        report.missing.append(f"could not read the log: {exc}")
        return [report]


LOG_SUFFIXES = (".log", ".txt", ".out", ".err", ".gz", ".json", ".jsonl")


def read_logs_in_folder(path: str | os.PathLike[str]) -> list[tuple[Path, LogReport]]:
    """Read every log file (``*.log, *.txt, *.out, *.err, *.gz, *.json[l]``) below a folder, sorted."""
    root = Path(path)
    out: list[tuple[Path, LogReport]] = []
    if root.is_file():
        return [(root, rep) for rep in read_log(root)]
    try:
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in LOG_SUFFIXES)
    except OSError:
        files = []
    for file in files:
        for rep in read_log(file):
            out.append((file, rep))
    return out
