"""Read a vLLM server's Prometheus ``/metrics`` text into plain numbers.

``parse_metrics(text)`` -> ``ServerMetrics`` (a dataclass with ``to_dict()``).  The text is
parsed with ``prometheus_client``'s own parser; metric names that changed between vLLM
releases are looked up under each name (``kv_cache_usage_perc`` from v0.10, before it
``gpu_cache_usage_perc``; ``inter_token_latency_seconds`` from v0.11, before it
``time_per_output_token_seconds``; ``gpu_prefix_cache_*`` before ``prefix_cache_*``).
Nothing here does I/O or prints.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from .errors import VllmFitError

__all__ = ["ServerMetrics", "Histogram", "parse_metrics", "histogram_quantile", "MetricsError"]


class MetricsError(VllmFitError):
    """The server answered, but not with vLLM's Prometheus text (exit 2)."""


# name in the newest vLLM first; the parser drops a counter's "_total" from the family name
USAGE_NAMES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
TTFT_NAMES = ("vllm:time_to_first_token_seconds",)
ITL_NAMES = ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")
PREFIX_QUERIES_NAMES = ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries")
PREFIX_HITS_NAMES = ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits")
PREEMPTION_NAMES = ("vllm:num_preemptions", "vllm:num_preemptions_total")
CACHE_INFO_NAME = "vllm:cache_config_info"


@dataclass
class Histogram:
    """A Prometheus histogram summed over its label sets: cumulative ``(le, count)`` buckets."""

    buckets: list[tuple[float, float]] = field(default_factory=list)
    count: float = 0.0
    sum: float = 0.0

    def quantile(self, q: float) -> float | None:
        return histogram_quantile(q, self.buckets)

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "sum": self.sum, "mean": self.mean,
                "p50": self.quantile(0.5), "p99": self.quantile(0.99)}


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket holding rank q*count.

    ``buckets``: cumulative ``(upper_bound, count)`` pairs, the last one ``+Inf``.  None when
    the histogram is empty.  A rank that falls in the ``+Inf`` bucket gives the largest finite bound.
    """
    rows = sorted(buckets)
    if not rows or rows[-1][1] <= 0:
        return None
    total = rows[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for upper_bound, count in rows:
        if count >= rank:
            if math.isinf(upper_bound):
                return lower_bound
            if count == lower_count:
                return upper_bound
            if upper_bound <= 0:
                return upper_bound
            return lower_bound + (upper_bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = upper_bound, count
    return lower_bound


@dataclass
class ServerMetrics:
    """The numbers ``vllm-fit watch`` shows, from one scrape of ``/metrics``."""

    model_name: str | None = None
    engines: int = 0
    kv_cache_usage: float | None = None  # fraction 0..1 (vLLM's "_perc" gauge is a fraction)
    kv_cache_usage_per_engine: dict[str, float] = field(default_factory=dict)
    cache_config: dict[str, str] = field(default_factory=dict)  # labels of vllm:cache_config_info
    num_gpu_blocks: int | None = None
    block_size: int | None = None
    kv_cache_size_tokens: int | None = None
    kv_cache_memory_bytes: int | None = None
    requests_running: float | None = None
    requests_waiting: float | None = None
    prefix_cache_queries: float | None = None
    prefix_cache_hits: float | None = None
    preemptions: float | None = None
    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    ttft: Histogram | None = None
    itl: Histogram | None = None

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        if not self.prefix_cache_queries:
            return None
        return (self.prefix_cache_hits or 0.0) / self.prefix_cache_queries

    @property
    def usable_blocks(self) -> int | None:
        """Blocks a request can get: vLLM keeps one block of the pool as its null block."""
        return self.num_gpu_blocks - 1 if self.num_gpu_blocks else None

    @property
    def blocks_in_use(self) -> int | None:
        """Blocks held by requests now: vLLM's usage is ``1 - free / (num_gpu_blocks - 1)``."""
        if self.kv_cache_usage is None or not self.usable_blocks:
            return None
        return round(self.kv_cache_usage * self.usable_blocks)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ttft"] = self.ttft.to_dict() if self.ttft else None
        out["itl"] = self.itl.to_dict() if self.itl else None
        out["prefix_cache_hit_rate"] = self.prefix_cache_hit_rate
        out["usable_blocks"] = self.usable_blocks
        out["blocks_in_use"] = self.blocks_in_use
        return out


def _int_label(labels: dict[str, str], key: str) -> int | None:
    raw = labels.get(key)
    if raw is None or raw in ("None", ""):
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


def parse_metrics(text: str, source: str = "/metrics") -> ServerMetrics:
    """Parse Prometheus text from a vLLM server.  Raises ``MetricsError`` on anything else."""
    from prometheus_client.parser import text_string_to_metric_families

    if "\x00" in text:
        raise MetricsError(f"{source} is binary, not Prometheus text")
    try:
        families = {f.name: f for f in text_string_to_metric_families(text)}
    except Exception as exc:  # the parser raises ValueError, IndexError, ... on garbage
        first = next((ln for ln in text.splitlines() if ln.strip()), "")[:80]
        raise MetricsError(f"{source} is not Prometheus text ({type(exc).__name__} near {first!r})") from None
    if not any(name.startswith("vllm:") for name in families):
        raise MetricsError(f"{source} has no vllm: metrics; is this a vLLM server (and not one started with --disable-log-stats)?")

    def pick(names: tuple[str, ...]):
        for name in names:
            if name in families:
                return families[name]
        return None

    def total(names: tuple[str, ...]) -> float | None:
        # a counter's family drops "_total"; a page whose TYPE line lacks it gives an "unknown" family
        for name in names:
            wanted = {name, name + "_total"}
            values = [s.value for key in wanted if key in families
                      for s in families[key].samples if s.name in wanted]
            if values:
                return float(sum(values))
        return None

    out = ServerMetrics()
    usage = pick(USAGE_NAMES)
    if usage is not None:
        for s in usage.samples:
            out.kv_cache_usage_per_engine[s.labels.get("engine", "0")] = float(s.value)
            out.model_name = out.model_name or s.labels.get("model_name")
        if out.kv_cache_usage_per_engine:
            vals = list(out.kv_cache_usage_per_engine.values())
            out.kv_cache_usage = sum(vals) / len(vals)
        out.engines = len(out.kv_cache_usage_per_engine)
    info = families.get(CACHE_INFO_NAME)
    if info is not None and info.samples:
        labels = dict(info.samples[0].labels)
        labels.pop("engine", None)
        out.cache_config = labels
        out.num_gpu_blocks = _int_label(labels, "num_gpu_blocks")
        out.block_size = _int_label(labels, "block_size")
        out.kv_cache_size_tokens = _int_label(labels, "kv_cache_size_tokens")
        out.kv_cache_memory_bytes = _int_label(labels, "kv_cache_memory_bytes")
    out.requests_running = total(("vllm:num_requests_running",))
    out.requests_waiting = total(("vllm:num_requests_waiting",))
    out.prefix_cache_queries = total(PREFIX_QUERIES_NAMES)
    out.prefix_cache_hits = total(PREFIX_HITS_NAMES)
    out.preemptions = total(PREEMPTION_NAMES)
    out.prompt_tokens = total(("vllm:prompt_tokens",))
    out.generation_tokens = total(("vllm:generation_tokens",))
    out.ttft = _histogram(pick(TTFT_NAMES))
    out.itl = _histogram(pick(ITL_NAMES))
    if out.model_name is None:
        for fam in families.values():
            for s in fam.samples:
                if "model_name" in s.labels:
                    out.model_name = s.labels["model_name"]
                    break
            if out.model_name:
                break
    return out


def _histogram(fam: Any) -> Histogram | None:
    if fam is None:
        return None
    per_le: dict[float, float] = {}
    h = Histogram()
    for s in fam.samples:
        if s.name.endswith("_bucket"):
            try:
                le = float(s.labels.get("le", "nan"))
            except ValueError:
                continue
            if not math.isnan(le):
                per_le[le] = per_le.get(le, 0.0) + float(s.value)
        elif s.name.endswith("_count"):
            h.count += float(s.value)
        elif s.name.endswith("_sum"):
            h.sum += float(s.value)
    h.buckets = sorted(per_le.items())
    return h
