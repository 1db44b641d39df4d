"""Plots of sweep rows, as PNG and SVG (matplotlib: the optional extra `plots`).

matplotlib is imported lazily with the Agg backend, so the core never needs it.
Each function takes sweep rows (plain dicts) and a path without extension and
returns the files it wrote.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from .errors import VllmFitError

MAX_BARS = 40
_COLORS = {"weights": "#4c72b0", "activation": "#dd8452", "non-torch": "#937860", "CUDA graphs": "#8172b3",
           "KV cache": "#55a868", "left free": "#d9d9d9"}


def _plt():  # noqa: ANN202
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise VllmFitError("plots need matplotlib", "Install the extra: pip install 'vllm-fit[plots]'.") from None
    return plt


def _save(fig: Any, stem: str | Path) -> list[str]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "svg"):
        path = stem.with_suffix(f".{ext}")
        fig.savefig(path, dpi=110 if ext == "png" else None, bbox_inches="tight")
        out.append(str(path))
    return out


def _label(r: dict[str, Any]) -> str:
    mml = r["max_model_len"]
    mml_s = f"{mml // 1024}k" if mml and mml % 1024 == 0 else str(mml)
    kv = "" if r.get("kv_cache_dtype") in (None, "auto") else f" kv={r['kv_cache_dtype']}"
    return f"{r['gpu']} TP{r['tensor_parallel_size']} u={r['gpu_memory_utilization']:.2f} L={mml_s} seqs={r['max_num_seqs']}{kv}"


def _series_key(r: dict[str, Any]) -> str:
    kv = "" if r.get("kv_cache_dtype") in (None, "auto") else f", KV {r['kv_cache_dtype']}"
    pp = f"xPP{r['pipeline_parallel_size']}" if r.get("pipeline_parallel_size", 1) > 1 else ""
    return f"{r['gpu']} TP{r['tensor_parallel_size']}{pp}{kv}"


def _pick_bars(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(rows) <= MAX_BARS:
        return rows
    step = len(rows) / MAX_BARS
    return [rows[int(i * step)] for i in range(MAX_BARS)]


def plot_memory_breakdown(rows: Iterable[dict[str, Any]], stem: str | Path, title: str | None = None) -> list[str]:
    """Stacked bars per configuration: where each GPU's memory goes (GiB)."""
    plt = _plt()
    rows = _pick_bars(list(rows))
    if not rows:
        raise VllmFitError("nothing to plot: the sweep has no rows")
    parts = {
        "weights": [r["weights_gib"] for r in rows],
        "activation": [r["activation_gib"] for r in rows],
        "non-torch": [r["non_torch_gib"] for r in rows],
        "CUDA graphs": [max(r["cudagraph_gib"], 0.0) if r["fits"] else 0.0 for r in rows],
        "KV cache": [max(r["kv_cache_gib"], 0.0) if r["fits"] else 0.0 for r in rows],
    }
    used = [sum(v[i] for v in parts.values()) for i in range(len(rows))]
    parts["left free"] = [max(r["total_gib"] - u, 0.0) for r, u in zip(rows, used)]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * len(rows) + 2), 5.2))
    x = list(range(len(rows)))
    bottom = [0.0] * len(rows)
    for name, vals in parts.items():
        ax.bar(x, vals, bottom=bottom, color=_COLORS[name], label=name, width=0.75, edgecolor="white", linewidth=0.4)
        bottom = [b + v for b, v in zip(bottom, vals)]
    for i, r in enumerate(rows):
        if not r["fits"]:
            ax.text(i, bottom[i] * 1.01, "fails", ha="center", va="bottom", fontsize=7, color="#c44e52", rotation=90)
    ax.set_xticks(x)
    ax.set_xticklabels([_label(r) for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("GiB per GPU")
    ax.set_title(title or f"{rows[0]['model']}: memory per GPU at start-up (vLLM {rows[0]['vllm_version']})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="y", alpha=0.3)
    files = _save(fig, stem)
    plt.close(fig)
    return files


def plot_concurrency_vs_context(rows: Iterable[dict[str, Any]], stem: str | Path, title: str | None = None) -> list[str]:
    """Max concurrency (full-length requests) against --max-model-len, one line per GPU/TP/KV dtype,
    at each series' highest utilization and largest --max-num-seqs; configurations that fail are left out."""
    plt = _plt()
    rows = list(rows)
    if not rows:
        raise VllmFitError("nothing to plot: the sweep has no rows")
    best_util: dict[str, float] = defaultdict(float)
    best_seqs: dict[str, int] = defaultdict(int)
    for r in rows:
        k = _series_key(r)
        best_util[k] = max(best_util[k], r["gpu_memory_utilization"])
        best_seqs[k] = max(best_seqs[k], r["max_num_seqs"] or 0)
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        k = _series_key(r)
        if r["fits"] and r["gpu_memory_utilization"] == best_util[k] and (r["max_num_seqs"] or 0) == best_seqs[k]:
            series[k].append((r["max_model_len"], r["max_concurrency"]))
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for k, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3.5, label=f"{k} (u={best_util[k]:.2f})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("--max-model-len (tokens)")
    ax.set_ylabel("max concurrency (requests of max-model-len tokens)")
    ax.set_title(title or f"{rows[0]['model']}: concurrency against context length", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    files = _save(fig, stem)
    plt.close(fig)
    return files


def plot_kv_and_restore_vs_utilization(rows: Iterable[dict[str, Any]], stem: str | Path, title: str | None = None) -> list[str]:
    """KV cache size (top) and estimated restore time (bottom) against --gpu-memory-utilization,
    one line per GPU/TP/KV dtype at its longest --max-model-len and smallest --max-num-seqs."""
    plt = _plt()
    rows = list(rows)
    if not rows:
        raise VllmFitError("nothing to plot: the sweep has no rows")
    longest: dict[str, int] = defaultdict(int)
    fewest: dict[str, int] = {}
    for r in rows:
        k = _series_key(r)
        longest[k] = max(longest[k], r["max_model_len"])
        fewest[k] = min(fewest.get(k, 1 << 30), r["max_num_seqs"] or 0)
    series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for r in rows:
        k = _series_key(r)
        if r["fits"] and r["max_model_len"] == longest[k] and (r["max_num_seqs"] or 0) == fewest[k]:
            series[k].append((r["gpu_memory_utilization"], r["kv_cache_gib"], r["restore_seconds"]))
    # two panels sharing the x axis: both curves are near-linear in the
    # utilization, so on twin axes they would lie on top of each other
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7.5, 6.4), sharex=True)
    for k, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3.5, label=k)
        ax2.plot([p[0] for p in pts], [p[2] for p in pts], marker="s", markersize=3, label=k)
    ax.set_ylabel("KV cache per GPU (GiB)")
    ax2.set_ylabel("estimated restore time (s)")
    ax2.set_xlabel("--gpu-memory-utilization")
    ax.set_title(title or f"{rows[0]['model']}: KV cache and checkpoint restore time against utilization", fontsize=10)
    for a in (ax, ax2):
        a.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize=7, loc="upper left")
    files = _save(fig, stem)
    plt.close(fig)
    return files


def plot_all(rows: list[dict[str, Any]], out_dir: str | Path, prefix: str = "sweep") -> list[str]:
    out = Path(out_dir)
    files = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        files += plot_memory_breakdown(rows, out / f"{prefix}-memory")
        files += plot_concurrency_vs_context(rows, out / f"{prefix}-concurrency")
        files += plot_kv_and_restore_vs_utilization(rows, out / f"{prefix}-restore")
    except OSError as e:
        raise VllmFitError(f"cannot write the plots to {out}: {e.strerror or e}") from None
    return files


__all__ = ["plot_memory_breakdown", "plot_concurrency_vs_context", "plot_kv_and_restore_vs_utilization", "plot_all"]
