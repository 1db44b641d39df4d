"""Advise: the nearest configurations that start, serve the load, cold-start fast.

Every answer is found by searching over the planner (binary search on an
integer grid: tokens, hundredths of utilization, sequences, bytes) and comes
with its proof: the recommended setting re-planned (it starts / meets the
target) and the next step beyond it re-planned (it does not).  Plain data
out (``advise() -> dict``); ``render_advice`` turns it into text.
"""

from __future__ import annotations

import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from .errors import VllmFitError
from .gpus import GpuSpec, find_gpu
from .planner import Plan
from .replan import Planner, fast_planning, largest_true, smallest_true
from .units import GiB

GOALS = ("throughput", "latency", "cold-start", "long-context")
TP_CANDIDATES = (1, 2, 4, 8)
PP_CANDIDATES = (1, 2, 4, 8)
# Defaults of the cold-start model (seed 004); all are options.
DEFAULT_LINK_GB_S = 20.0  # host -> GPU upload, real-world PCIe 4.0 x16 (seed 004: 15-20 GB/s)
DEFAULT_DISK_GB_S = 2.0  # checkpoint image read, one NVMe drive
DEFAULT_KV_COMPRESSION = 1.0  # checkpoint image bytes per KV byte = 1/ratio (1 = image not compressed)
GB = 10**9
MAX_SEQS_SEARCHED = 1 << 16
DEFAULT_OFFLOAD_CAP_GIB = 256.0
# vLLM's QuantizationConfig.get_min_capability (0.14: fp8.py, awq.py, gptq.py,
# compressed_tensors.py): a GPU below it refuses the checkpoint.  Used to skip
# GPUs in the cheapest-GPU search; the planner itself does not check it.
MIN_CAPABILITY = {"fp8": 75, "awq": 75, "awq_marlin": 75, "gptq": 60, "gptq_marlin": 75, "compressed-tensors": 70}
_QUANT_MARKERS = ("fp8", "awq", "gptq", "int4", "int8", "w4a16", "w8a8", "nvfp4", "mxfp4", "bnb", "4bit", "8bit",
                  "quantized")


# ------------------------------------------------------------------ helpers

def plan_fields(p: Plan) -> dict[str, Any]:
    """The plan as ``plan --json`` prints it, without the simulated log lines."""
    d = p.to_dict()
    d.pop("log_lines", None)
    return d


def _flags(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {k: v for k, v in base.items() if v is not None}
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def _option(P: Planner, flags: dict[str, Any], gpu: GpuSpec | None = None, **extra: Any) -> dict[str, Any]:
    p = P.plan(flags, gpu)
    return {"serve_flags": dict(flags), "starts": p.fits, **extra, "plan": plan_fields(p)}


def _step(P: Planner, flags: dict[str, Any], meets: Callable[[Plan], bool], gpu: GpuSpec | None = None) -> dict[str, Any]:
    p = P.plan(flags, gpu)
    return {
        "serve_flags": dict(flags),
        "starts": p.fits,
        "meets_target": meets(p),
        "failure_kind": p.failure_kind,
        "error": p.error,
        "kv_cache_tokens": p.kv_cache_tokens,
        "max_concurrency": round(p.max_concurrency, 4),
    }


def _proof(P: Planner, chosen: dict[str, Any], beyond: dict[str, Any] | None, meets: Callable[[Plan], bool],
           gpu: GpuSpec | None = None) -> dict[str, Any]:
    """The recommended setting and the next step beyond it, both re-planned."""
    return {"recommended": _step(P, chosen, meets, gpu), "next_step": _step(P, beyond, meets, gpu) if beyond is not None else None}


def _starts(p: Plan) -> bool:
    return p.fits


def load_prices(path: str | Path | None = None) -> dict[str, float]:
    """USD per GPU-hour by catalog GPU name: the bundled table or --prices FILE."""
    try:
        if path is None:
            data = json.loads(resources.files("vllm_fit").joinpath("data/prices.json").read_text())
        else:
            data = json.loads(Path(path).read_text())
    except OSError as e:
        raise VllmFitError(f"cannot read --prices {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise VllmFitError(f"--prices {path} is not JSON: {e.msg} at line {e.lineno}") from None
    if isinstance(data, dict) and isinstance(data.get("prices_usd_per_gpu_hour"), dict):
        data = data["prices_usd_per_gpu_hour"]
    if not isinstance(data, dict) or not data:
        raise VllmFitError("--prices must be a JSON object of GPU name -> USD per GPU-hour")
    prices: dict[str, float] = {}
    for name, value in data.items():
        if str(name).startswith("_"):
            continue
        gpu = find_gpu(str(name))  # unknown names are bad input
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < 1e4) or math.isnan(value):
            raise VllmFitError(f"--prices: price for {name!r} must be a positive number of USD per GPU-hour")
        prices[gpu.name] = float(value)
    return prices


def _node_shape(tp: int, pp: int, gpus_per_node: int) -> dict[str, Any]:
    n = tp * pp
    nodes = -(-n // gpus_per_node)
    if nodes == 1:
        layout = f"1 node, {n} GPU{'s' if n > 1 else ''}"
    elif tp <= gpus_per_node and gpus_per_node % tp == 0:
        stages = gpus_per_node // tp
        layout = f"{nodes} nodes x {gpus_per_node}, {stages} stage(s)/node"
    else:
        layout = f"{nodes} nodes x {gpus_per_node} GPUs"
    return {"num_gpus": n, "nodes": nodes, "gpus_per_node": min(n, gpus_per_node), "layout": layout}


def _parallel_candidates(gpus_per_node: int, max_gpus: int) -> list[tuple[int, int]]:
    cands = [(tp, pp) for tp in TP_CANDIDATES for pp in PP_CANDIDATES
             if tp <= gpus_per_node and tp * pp <= max_gpus]
    return sorted(cands, key=lambda c: (c[0] * c[1], c[1]))


def _gpu_bytes(p: Plan) -> int:
    """GPU memory one rank holds after start-up: what a checkpoint/restore moves.
    The CUDA context is re-created on restore and not counted."""
    kv_alloc = max(p.num_gpu_blocks, 0) * p.bytes_per_block
    return p.weights_bytes + kv_alloc + p.non_torch_bytes + max(p.cudagraph_bytes, 0)


def restore_estimate(p: Plan, link_gb_s: float, disk_gb_s: float, kv_compression: float) -> dict[str, Any]:
    per_gpu = _gpu_bytes(p)
    kv_alloc = max(p.num_gpu_blocks, 0) * p.bytes_per_block
    image_per_gpu = per_gpu - kv_alloc + kv_alloc / kv_compression
    image_total = image_per_gpu * p.num_gpus
    # disk read of the whole image (shared), then each GPU's upload over its own link
    seconds = image_total / (disk_gb_s * GB) + per_gpu / (link_gb_s * GB)
    return {
        "gpu_bytes_per_gpu": per_gpu,
        "gpu_gib_per_gpu": round(per_gpu / GiB, 3),
        "kv_cache_allocated_gib": round(kv_alloc / GiB, 3),
        "checkpoint_image_gib": round(image_total / GiB, 3),
        "restore_seconds": round(seconds, 2),
    }


_QUANT_SUFFIX = re.compile(r"[-_.](?:quantized|" + "|".join(_QUANT_MARKERS) + r")(?:[-_.].*)?$")


def _base_name(model_id: str) -> str:
    """'RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w4a16' -> 'meta-llama-3.1-8b-instruct'."""
    short = model_id.split("/")[-1].lower()
    return _QUANT_SUFFIX.sub("", short)


def quantized_siblings(model_id: str) -> list[str]:
    """Catalog checkpoints that are quantized versions of this model."""
    from .sources import catalog_entries

    base = _base_name(model_id)
    if not base:
        return []
    out = []
    for e in catalog_entries():
        short = e["id"].split("/")[-1].lower()
        if e["id"].lower() == model_id.lower() or not any(m in short for m in _QUANT_MARKERS):
            continue
        stripped = re.sub(r"^meta-", "", _base_name(e["id"]))
        if stripped == re.sub(r"^meta-", "", base):
            out.append(e["id"])
    return out


# ------------------------------------------------------------------ sections

def _parallelism(P: Planner, base: dict[str, Any], meets: Callable[[Plan], bool], gpus_per_node: int, max_gpus: int,
                 gpu: GpuSpec | None = None) -> dict[str, Any]:
    rows = []
    first_start = first_meet = None
    for tp, pp in _parallel_candidates(gpus_per_node, max_gpus):
        flags = _flags(base, tensor_parallel_size=tp, pipeline_parallel_size=pp if pp > 1 else None)
        p = P.plan(flags, gpu)
        row = {"tensor_parallel_size": tp, "pipeline_parallel_size": pp, **_node_shape(tp, pp, gpus_per_node),
               "starts": p.fits, "meets_target": meets(p), "kv_cache_gib": round(p.kv_cache_bytes / GiB, 3),
               "kv_cache_tokens": p.kv_cache_tokens, "max_concurrency": round(p.max_concurrency, 3),
               "failure_kind": p.failure_kind}
        rows.append(row)
        if first_start is None and p.fits:
            first_start = (tp, pp, flags)
        if first_meet is None and meets(p):
            first_meet = (tp, pp, flags)
        if first_meet is not None and first_start is not None and tp * pp > 2 * first_meet[0] * first_meet[1]:
            break

    def pick(found: tuple[int, int, dict] | None, test: Callable[[Plan], bool]) -> dict[str, Any] | None:
        if found is None:
            return None
        tp, pp, flags = found
        n = tp * pp
        fewer = [r for r in rows if r["num_gpus"] < n]
        return {
            **_option(P, flags, gpu, **_node_shape(tp, pp, gpus_per_node)),
            "proof": {
                "recommended": _step(P, flags, test, gpu),
                "fewer_gpus": [
                    _step(P, _flags(base, tensor_parallel_size=r["tensor_parallel_size"],
                                    pipeline_parallel_size=r["pipeline_parallel_size"] if r["pipeline_parallel_size"] > 1 else None),
                          test, gpu)
                    for r in fewer
                ],
            },
        }

    return {"candidates": rows, "smallest_that_starts": pick(first_start, _starts),
            "smallest_meeting_target": pick(first_meet, meets)}


def _max_model_len(P: Planner, base: dict[str, Any], concurrency: int) -> dict[str, Any]:
    derived = P.spec.derived_max_model_len

    def starts_at(n: int) -> bool:
        return P.plan(_flags(base, max_model_len=n)).fits

    def serves_at(n: int) -> bool:
        p = P.plan(_flags(base, max_model_len=n))
        return p.fits and p.max_concurrency >= concurrency

    out: dict[str, Any] = {"model_max_model_len": derived}
    largest = largest_true(starts_at, 1, derived)
    if largest is None:
        out["largest_that_starts"] = None
    else:
        chosen = _flags(base, max_model_len=largest)
        out["largest_that_starts"] = {
            **_option(P, chosen),
            "proof": _proof(P, chosen, _flags(base, max_model_len=largest + 1), _starts),
        }
    try:
        auto = P.plan(_flags(base, max_model_len=-1))
        out["auto_fit"] = {"serve_flags": {"max_model_len": -1}, "starts": auto.fits,
                           "max_model_len": auto.settings.get("max_model_len") if auto.fits else None,
                           "error": auto.error}
    except VllmFitError as e:
        out["auto_fit"] = {"serve_flags": {"max_model_len": -1}, "starts": False, "max_model_len": None, "error": str(e)}
    ctx = largest_true(serves_at, 1, derived)
    if ctx is None:
        out["for_concurrency"] = None
    else:
        chosen = _flags(base, max_model_len=ctx)
        meets = lambda p: p.fits and p.max_concurrency >= concurrency  # noqa: E731
        out["for_concurrency"] = {
            "concurrency": concurrency,
            **_option(P, chosen),
            "proof": _proof(P, chosen, _flags(base, max_model_len=ctx + 1), meets),
        }
    return out


def _utilization(P: Planner, base: dict[str, Any], context: int, concurrency: int) -> dict[str, Any]:
    at_len = _flags(base, max_model_len=context, gpu_memory_utilization=None, kv_cache_memory_bytes=None)
    meets = lambda p: p.fits and p.max_concurrency >= concurrency  # noqa: E731

    def ok(hundredths: int) -> bool:
        return meets(P.plan(_flags(at_len, gpu_memory_utilization=hundredths / 100)))

    out: dict[str, Any] = {"concurrency": concurrency, "context": context}
    # Near 1.0 the budget exceeds the memory free at start (vLLM refuses): search below that.
    top = 100
    while top > 1 and P.plan(_flags(at_len, gpu_memory_utilization=top / 100)).failure_kind == "free_memory_below_budget":
        top -= 1
    out["highest_within_free_memory"] = top / 100
    # Near the top the sampler warm-up runs out of the (1 - util) left over, so
    # "serves the target" holds on a band: anchor on the given value or the
    # highest hundredth that serves, then binary-search downward.
    given_h = int(round(float(base.get("gpu_memory_utilization") or 0.9) * 100))
    anchor = given_h if given_h <= top and ok(given_h) else next((x for x in range(top, 0, -1) if ok(x)), None)
    out["highest_serving_target"] = None
    if anchor is not None:
        high = largest_true(ok, anchor, top)
        out["highest_serving_target"] = high / 100 if high is not None else None
    h = smallest_true(ok, 1, anchor) if anchor is not None else None
    if h is None:
        out["smallest_serving_target"] = None
        out["kv_cache_memory_bytes"] = None
        return out
    chosen = _flags(at_len, gpu_memory_utilization=h / 100)
    beyond = _flags(at_len, gpu_memory_utilization=(h - 1) / 100) if h > 1 else None
    p = P.plan(chosen)
    out["smallest_serving_target"] = {**_option(P, chosen), "proof": _proof(P, chosen, beyond, meets)}

    # --kv-cache-memory-bytes: the KV size of that plan pinned, and the least bytes for N x L.
    pin_flags = _flags(at_len, gpu_memory_utilization=h / 100, kv_cache_memory_bytes=p.kv_cache_bytes)
    pinned = P.plan(pin_flags)

    def bytes_ok(b: int) -> bool:
        return meets(P.plan(_flags(at_len, gpu_memory_utilization=h / 100, kv_cache_memory_bytes=b)))

    least = smallest_true(bytes_ok, 1, max(p.kv_cache_bytes, 1))
    kvm: dict[str, Any] = {
        "pinned": {**_option(P, pin_flags), "same_num_gpu_blocks": pinned.num_gpu_blocks == p.num_gpu_blocks},
    }
    if least is not None:
        chosen_b = _flags(at_len, gpu_memory_utilization=h / 100, kv_cache_memory_bytes=least)
        beyond_b = _flags(at_len, gpu_memory_utilization=h / 100, kv_cache_memory_bytes=least - 1) if least > 1 else None
        kvm["least_serving_target"] = {**_option(P, chosen_b), "proof": _proof(P, chosen_b, beyond_b, meets)}
    else:
        kvm["least_serving_target"] = None
    out["kv_cache_memory_bytes"] = kvm
    return out


def _max_num_seqs(P: Planner, base: dict[str, Any]) -> dict[str, Any]:
    current = P.plan(base)
    default_seqs = int(current.settings.get("max_num_seqs") or 256)

    def starts_with(n: int) -> bool:
        return P.plan(_flags(base, max_num_seqs=n)).fits

    # widen until something fails (the warm-up, or vLLM's max_num_batched_tokens >= max_num_seqs check)
    hi = max(default_seqs, 1024)
    while hi < MAX_SEQS_SEARCHED and starts_with(hi):
        hi = min(hi * 2, MAX_SEQS_SEARCHED)

    largest = largest_true(starts_with, 1, hi)
    out: dict[str, Any] = {"current": default_seqs, "current_starts": current.fits,
                           "current_failure_kind": current.failure_kind, "searched_up_to": hi}
    if largest is None:
        out["largest_that_starts"] = None
        return out
    chosen = _flags(base, max_num_seqs=largest)
    beyond = _flags(base, max_num_seqs=largest + 1)
    p, q = P.plan(chosen), P.plan(beyond)
    act, act_next = p.ranks[-1].activation, q.ranks[-1].activation
    out["largest_that_starts"] = {
        **_option(P, chosen),
        "sampler_warmup_requests": act.num_sampler_requests,
        "sampler_warmup_gib": round(act.sampler_phase_bytes / GiB, 3),
        "next_sampler_warmup_gib": round(act_next.sampler_phase_bytes / GiB, 3),
        "proof": _proof(P, chosen, beyond if largest < hi else None, _starts),
    }
    return out


def _kv_fp8(P: Planner, base: dict[str, Any], context: int, concurrency: int) -> dict[str, Any] | None:
    current_dtype = base.get("kv_cache_dtype", "auto")
    if str(current_dtype).startswith("fp8"):
        return None
    before = P.plan(_flags(base, max_model_len=context))
    flags = _flags(base, max_model_len=context, kv_cache_dtype="fp8")
    after = P.plan(flags)
    largest = largest_true(lambda n: P.plan(_flags(base, max_model_len=n, kv_cache_dtype="fp8")).fits,
                           1, P.spec.derived_max_model_len)
    return {
        **_option(P, flags),
        "kv_cache_tokens_before": before.kv_cache_tokens,
        "kv_cache_tokens_after": after.kv_cache_tokens,
        "max_concurrency_before": round(before.max_concurrency, 3),
        "max_concurrency_after": round(after.max_concurrency, 3),
        "largest_max_model_len_that_starts": largest,
        "meets_target": after.fits and after.max_concurrency >= concurrency,
    }


def _quantized(P: Planner, model: str, base: dict[str, Any], context: int, concurrency: int,
               vllm_version: str | None, gpu: GpuSpec) -> list[dict[str, Any]]:
    out = []
    flags_wo_q = _flags(base, max_model_len=context, quantization=None)
    for sib in quantized_siblings(P.spec.name if "/" in P.spec.name else model):
        try:
            Q = Planner(sib, vllm_version=vllm_version, gpu=gpu.name)
            Q.gpu = gpu
            p = Q.plan(flags_wo_q)
        except VllmFitError as e:
            out.append({"model": sib, "starts": False, "error": str(e), "supported": False})
            continue
        out.append({"model": sib, "serve_flags": dict(flags_wo_q), "starts": p.fits, "supported": True,
                    "meets_target": p.fits and p.max_concurrency >= concurrency, "plan": plan_fields(p)})
    if P.spec.quantization is None and base.get("quantization") is None:
        flags = _flags(flags_wo_q, quantization="fp8")
        try:
            p = P.plan(flags)
            out.append({"model": P.model, "runtime_quantization": "fp8", "serve_flags": dict(flags), "starts": p.fits,
                        "supported": True, "meets_target": p.fits and p.max_concurrency >= concurrency,
                        "plan": plan_fields(p)})
        except VllmFitError as e:
            out.append({"model": P.model, "runtime_quantization": "fp8", "starts": False, "error": str(e), "supported": False})
    return out


def kv_offloading(p: Plan, size_gib: float, host_ram_gib: float | None = None) -> dict[str, Any]:
    """vLLM's native CPU offloading (OffloadingConnector, CPUOffloadingSpec):
    cpu_bytes_to_use = size GiB summed over all ranks; host blocks =
    bytes // (page_size x KV tensors x world_size); each worker allocates its
    share as pinned CPU tensors.  The GPU KV cache (the plan) is unchanged."""
    world = max(p.num_gpus, 1)
    block_all_ranks = p.bytes_per_block * world
    size_bytes = int(size_gib * GiB)
    host_blocks = size_bytes // block_all_ranks if block_all_ranks else 0
    host_tokens = host_blocks * p.block_size
    pinned = host_blocks * block_all_ranks
    out = {
        "serve_flags": {"kv_offloading_size": size_gib, "kv_offloading_backend": "native",
                        "disable_hybrid_kv_cache_manager": True},
        "host_pinned_bytes": pinned,
        "host_pinned_gib": round(pinned / GiB, 3),
        "host_kv_blocks": host_blocks,
        "host_kv_tokens": host_tokens,
        "gpu_kv_cache_tokens": p.kv_cache_tokens,
        "gpu_budget_change_bytes": 0,
        "available": True,
        "note": ("CPU blocks extend the prefix cache (evicted KV is reloaded instead of recomputed); the GPU KV cache "
                 "and the concurrency it allows are unchanged. The OffloadingConnector needs "
                 "--disable-hybrid-kv-cache-manager (seed 002)."),
    }
    if host_ram_gib is not None:
        out["host_ram_gib"] = host_ram_gib
        out["fits_host_ram"] = pinned <= host_ram_gib * GiB
    return out


def _cold_start(P: Planner, base: dict[str, Any], context: int, concurrency: int, link_gb_s: float, disk_gb_s: float,
                kv_compression: float, target_util: float | None) -> dict[str, Any]:
    at_len = _flags(base, max_model_len=context, kv_cache_memory_bytes=None)
    top = float(base.get("gpu_memory_utilization") or P.plan(at_len).settings.get("gpu_memory_utilization") or 0.9)
    lowest = smallest_true(lambda h: P.plan(_flags(at_len, gpu_memory_utilization=h / 100)).fits, 1, int(round(top * 100)))
    rows = []
    if lowest is not None:
        grid = {int(round(top * 100)), lowest}
        grid.update(range(int(round(top * 100)), lowest, -5))
        if target_util is not None:
            grid.add(int(round(target_util * 100)))
        top_plan = P.plan(_flags(at_len, gpu_memory_utilization=top))
        for h in sorted(grid, reverse=True):
            p = P.plan(_flags(at_len, gpu_memory_utilization=h / 100))
            rows.append({
                "gpu_memory_utilization": h / 100,
                "starts": p.fits,
                "kv_cache_gib": round(p.kv_cache_bytes / GiB, 3),
                "kv_cache_tokens": p.kv_cache_tokens,
                "max_concurrency": round(p.max_concurrency, 3),
                "concurrency_lost": round(top_plan.max_concurrency - p.max_concurrency, 3),
                "meets_target": p.fits and p.max_concurrency >= concurrency,
                **restore_estimate(p, link_gb_s, disk_gb_s, kv_compression),
            })
    return {
        "assumptions": {
            "link_gb_per_s": link_gb_s, "disk_gb_per_s": disk_gb_s, "kv_compression_ratio": kv_compression,
            "model": ("restore seconds = checkpoint image / disk bandwidth + GPU bytes per GPU / link bandwidth; "
                      "GPU bytes = weights + allocated KV blocks + non-torch + CUDA graphs of one rank; image = all ranks, "
                      "KV part divided by the compression ratio (zero pages compress well, seed 004)"),
        },
        "lowest_that_starts": None if lowest is None else lowest / 100,
        "rows": rows,
    }


def _cheapest(base: dict[str, Any], meets: Callable[[Plan], bool], prices: dict[str, float],
              P: Planner, gpus_per_node: int, max_gpus: int) -> dict[str, Any]:
    options = []
    method = P.spec.quantization.method if P.spec.quantization is not None else None
    if method and method.startswith("compressed-tensors"):
        method = "compressed-tensors"
    quant = base.get("quantization") or method
    need = MIN_CAPABILITY.get(quant or "")
    for name, price in prices.items():
        gpu = find_gpu(name)
        found = None
        cap = gpu.capability.replace(".", "")
        if need is not None and cap.isdigit() and int(cap) < need:
            options.append({"gpu": name, "usd_per_gpu_hour": price, "meets_target": False,
                            "why_not": f"{quant} checkpoints need compute capability {need / 10:.1f}+, {name} has {gpu.capability}"})
            continue
        for tp, pp in _parallel_candidates(gpus_per_node, max_gpus):
            flags = _flags(base, tensor_parallel_size=tp, pipeline_parallel_size=pp if pp > 1 else None)
            p = P.plan(flags, gpu)
            if meets(p):
                found = (tp, pp, flags, p)
                break
        if found is None:
            options.append({"gpu": name, "usd_per_gpu_hour": price, "meets_target": False})
            continue
        tp, pp, flags, p = found
        n = tp * pp
        options.append({"gpu": name, "usd_per_gpu_hour": price, "meets_target": True, **_node_shape(tp, pp, gpus_per_node),
                        "usd_per_hour": round(price * n, 4), "serve_flags": flags,
                        "kv_cache_tokens": p.kv_cache_tokens, "max_concurrency": round(p.max_concurrency, 3)})
    meeting = sorted((o for o in options if o["meets_target"]), key=lambda o: (o["usd_per_hour"], o["num_gpus"]))
    best = None
    if meeting:
        o = meeting[0]
        gpu = find_gpu(o["gpu"])
        fewer = [c for c in _parallel_candidates(gpus_per_node, max_gpus) if c[0] * c[1] < o["num_gpus"]]
        best = {
            **o,
            "plan": plan_fields(P.plan(o["serve_flags"], gpu)),
            "proof": {
                "recommended": _step(P, o["serve_flags"], meets, gpu),
                "fewer_gpus": [_step(P, _flags(base, tensor_parallel_size=tp, pipeline_parallel_size=pp if pp > 1 else None), meets, gpu)
                               for tp, pp in fewer],
            },
        }
    options.sort(key=lambda o: (not o["meets_target"], o.get("usd_per_hour", 0.0)))
    return {"options": options, "cheapest": best}


# ------------------------------------------------------------------ entry point

def advise(
    model: str | None,
    *,
    gpu: str | None = None,
    gpu_memory_gib: float | None = None,
    free_memory_gib: float | None = None,
    vllm_version: str | None = None,
    config: str | None = None,
    concurrency: int | None = None,
    context: int | None = None,
    goal: str | None = None,
    prices: str | Path | dict[str, float] | None = None,
    gpus_per_node: int = 8,
    max_gpus: int = 64,
    link_gb_s: float = DEFAULT_LINK_GB_S,
    disk_gb_s: float = DEFAULT_DISK_GB_S,
    kv_compression: float = DEFAULT_KV_COMPRESSION,
    kv_offloading_size: float | None = None,
    host_ram_gib: float | None = None,
    include_cheapest: bool = True,
    allow_hub: bool = True,
    **serve_flags: Any,
) -> dict[str, Any]:
    """What to change so vLLM starts, serves ``concurrency`` requests of
    ``context`` tokens, and cold-starts fast.  Flags by vLLM's names."""
    goal = goal or "throughput"
    if goal not in GOALS:
        raise VllmFitError(f"--goal {goal!r}: use one of {', '.join(GOALS)}")
    for name, v in (("--concurrency", concurrency), ("--context", context)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise VllmFitError(f"{name} must be a positive whole number, got {v!r}")
    for name, v in (("--link-gb-s", link_gb_s), ("--disk-gb-s", disk_gb_s), ("--kv-compression", kv_compression)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < 1e6) or math.isnan(v):
            raise VllmFitError(f"{name} must be a positive number, got {v!r}")
    if not (isinstance(gpus_per_node, int) and 1 <= gpus_per_node <= 64):
        raise VllmFitError("--gpus-per-node must be between 1 and 64")
    if kv_offloading_size is not None and not (0 < float(kv_offloading_size) < 1e6):
        raise VllmFitError("--kv-offloading-size must be a positive number of GiB")
    if isinstance(prices, dict):
        price_table = {find_gpu(k).name: float(v) for k, v in prices.items()}
    else:
        price_table = load_prices(prices)

    P = Planner(model, gpu=gpu, gpu_memory_gib=gpu_memory_gib, vllm_version=vllm_version, config=config,
                free_memory_gib=free_memory_gib, allow_hub=allow_hub)
    with fast_planning():  # one memo of the weight path for all of advise's plans
        return _advise(P, model, serve_flags, context, concurrency, goal, price_table, gpus_per_node, max_gpus,
                       link_gb_s, disk_gb_s, kv_compression, kv_offloading_size, host_ram_gib, include_cheapest,
                       vllm_version)


def _advise(P: Planner, model: str | None, serve_flags: dict[str, Any], context: int | None, concurrency: int | None,
            goal: str, price_table: dict[str, float], gpus_per_node: int, max_gpus: int, link_gb_s: float,
            disk_gb_s: float, kv_compression: float, kv_offloading_size: float | None, host_ram_gib: float | None,
            include_cheapest: bool, vllm_version: str | None) -> dict[str, Any]:
    base = {k: v for k, v in serve_flags.items() if v is not None}
    if context is not None:
        if context > P.spec.derived_max_model_len:
            raise VllmFitError(f"--context {context} is longer than the model's {P.spec.derived_max_model_len} tokens")
        base["max_model_len"] = context
    given = P.plan(base)  # validates the flags
    n = concurrency or 1
    length = int(given.settings.get("max_model_len") or P.spec.derived_max_model_len)
    if length <= 0:
        length = P.spec.derived_max_model_len
    if base.get("max_model_len") == -1:
        base.pop("max_model_len")
    base_len = {**base, "max_model_len": length}
    meets = lambda p: p.fits and p.max_concurrency >= n  # noqa: E731
    no_layout = _flags(base_len, tensor_parallel_size=None, pipeline_parallel_size=None)

    parallel = _parallelism(P, no_layout, meets, gpus_per_node, max_gpus)
    # The sections below examine the user's own layout when it can start at all
    # (possibly with fewer sequences); otherwise the smallest layout that starts.
    seqs = _max_num_seqs(P, base_len)
    starting = base_len
    if seqs.get("largest_that_starts") is None:
        pick = parallel["smallest_that_starts"]
        if pick is not None:
            starting = dict(pick["serve_flags"])
            seqs = _max_num_seqs(P, starting)
    if not P.plan(starting).fits and seqs.get("largest_that_starts") is not None:
        starting = _flags(starting, max_num_seqs=seqs["largest_that_starts"]["serve_flags"]["max_num_seqs"])
    layout = {k: starting[k] for k in ("tensor_parallel_size", "pipeline_parallel_size") if k in starting}

    result: dict[str, Any] = {
        "model": P.spec.name,
        "gpu": P.gpu.name,
        "vllm_version": P.vllm_version,
        "goal": goal,
        "target": {"concurrency": n, "context": length},
        "given": {"serve_flags": base, "starts": given.fits, "meets_target": meets(given), "plan": plan_fields(given)},
        "parallelism": parallel,
        "max_num_seqs": seqs,
        "examined": {"serve_flags": starting, "starts": P.plan(starting).fits,
                     "why": "the flags the sections below start from: the given ones, with the layout or "
                            "--max-num-seqs changed only where the given ones do not start"},
    }
    result["max_model_len"] = _max_model_len(P, starting, n)
    result["gpu_memory_utilization"] = _utilization(P, starting, length, n)
    ref = P.plan(starting)
    result["alternatives"] = {
        "kv_cache_dtype_fp8": _kv_fp8(P, starting, length, n),
        # on the layout as given: can a quantized checkpoint stay on the GPUs the user has?
        "quantized_checkpoint": _quantized(P, model or P.spec.name, base_len, length, n, vllm_version, P.gpu),
        "kv_offloading": None,
    }
    off_size = kv_offloading_size
    if off_size is None and ref.fits and ref.kv_bytes_per_token:
        # enough host memory to keep every target request's full context, rounded up to a GiB
        off_size = float(max(1, math.ceil(n * length * ref.kv_bytes_per_token * ref.num_gpus / GiB)))
        # ... within what a host plausibly has: 80 % of --host-ram-gib, else 256 GiB
        off_size = min(off_size, float(max(1, int(0.8 * host_ram_gib))) if host_ram_gib else DEFAULT_OFFLOAD_CAP_GIB)
    if off_size is not None and ref.bytes_per_block:
        off = kv_offloading(ref, float(off_size), host_ram_gib)
        if P.rules.minor < 12:  # --kv-offloading-size arrived in vLLM 0.12 (config/cache.py)
            off["available"] = False
            off["note"] = f"--kv-offloading-size needs vLLM 0.12 or newer, not {P.vllm_version}. " + off["note"]
        result["alternatives"]["kv_offloading"] = off
    util_pick = result["gpu_memory_utilization"]["smallest_serving_target"]
    result["cold_start"] = _cold_start(P, starting, length, n, link_gb_s, disk_gb_s, kv_compression,
                                       util_pick["serve_flags"]["gpu_memory_utilization"] if util_pick else None)
    if include_cheapest:
        result["cheapest"] = _cheapest(_flags(starting, tensor_parallel_size=None, pipeline_parallel_size=None),
                                       meets, price_table, P, gpus_per_node, max_gpus)
    result["recommended"] = _recommend(P, result, goal, starting, n, length, layout)
    result["planner_calls"] = P.calls
    return result


def _recommend(P: Planner, r: dict[str, Any], goal: str, starting: dict[str, Any], n: int, length: int,
               layout: dict[str, Any]) -> dict[str, Any] | None:
    """The headline configuration for the goal, re-planned."""
    meets = lambda p: p.fits and p.max_concurrency >= n  # noqa: E731
    flags = dict(starting)
    if goal == "cold-start":
        pick = r["gpu_memory_utilization"]["smallest_serving_target"]
        if pick is None:
            return None
        flags = dict(pick["serve_flags"])
        why = f"the lowest --gpu-memory-utilization that still serves {n} x {length} tokens: least KV to checkpoint/restore"
    elif goal == "long-context":
        pick = r["max_model_len"]["for_concurrency"] or r["max_model_len"]["largest_that_starts"]
        if pick is None:
            return None
        flags = dict(pick["serve_flags"])
        why = f"the longest --max-model-len that serves {n} concurrent request(s)"
    else:
        if not meets(P.plan(flags)):
            pick = r["parallelism"]["smallest_meeting_target"]
            if pick is not None:
                flags = {**_flags(flags, tensor_parallel_size=None, pipeline_parallel_size=None),
                         **{k: v for k, v in pick["serve_flags"].items() if k in ("tensor_parallel_size", "pipeline_parallel_size")}}
        if goal == "latency":
            hi = int(P.plan(flags).settings.get("max_num_seqs") or n)
            flags = _flags(flags, max_num_seqs=max(1, min(n, hi)))
            why = "the fewest GPUs that serve the target, with --max-num-seqs no larger than the target concurrency"
        else:
            why = "the fewest GPUs that serve the target at the given utilization"
        if not P.plan(flags).fits:
            found = largest_true(lambda k: P.plan(_flags(flags, max_num_seqs=k)).fits, 1, int(P.plan(flags).settings.get("max_num_seqs") or 256))
            if found is not None:
                flags = _flags(flags, max_num_seqs=found)
                why += f", --max-num-seqs {found} (the largest that starts)"
    given_seqs = r["given"]["serve_flags"].get("max_num_seqs")
    if flags.get("max_num_seqs") != given_seqs and "--max-num-seqs" not in why and goal != "latency":
        why += f", --max-num-seqs {flags.get('max_num_seqs')} (the largest that starts)"
    p = P.plan(flags)
    if not p.fits:
        why = "nothing found: no searched layout, length, utilization or --max-num-seqs starts with these flags"
    elif not meets(p):
        why += f"; it does NOT serve {n} x {length} tokens (no searched configuration does)"
    return {"goal": goal, "why": why, "serve_flags": flags, "starts": p.fits, "meets_target": meets(p), "plan": plan_fields(p)}


# ------------------------------------------------------------------ text

def _gib(b: float | None) -> str:
    return "-" if b is None else f"{b:.2f} GiB"


def render_advice(r: dict[str, Any]) -> str:
    t = r["target"]
    lines = [f"{r['model']} on {r['gpu']} (vLLM {r['vllm_version']}), goal {r['goal']}: "
             f"target {t['concurrency']} concurrent request(s) of {t['context']} tokens"]
    g = r["given"]["plan"]
    lines.append(f"  as given: {'starts' if r['given']['starts'] else 'FAILS (' + str(g['failure_kind']) + ')'}; "
                 f"KV {_gib(g['kv_cache_gib'])}, {g['kv_cache_tokens']} tokens, concurrency {g['max_concurrency']:.2f}")
    lines.append("")
    lines.append("Parallelism (TP x PP, GPUs, node shape):")
    for c in r["parallelism"]["candidates"]:
        mark = "meets target" if c["meets_target"] else ("starts" if c["starts"] else f"fails: {c['failure_kind']}")
        lines.append(f"  TP={c['tensor_parallel_size']} PP={c['pipeline_parallel_size']}  {c['layout']:<30} "
                     f"KV {c['kv_cache_gib']:8.2f} GiB {c['kv_cache_tokens']:>9} tokens  x{c['max_concurrency']:<8.2f} {mark}")
    for key, label in (("smallest_that_starts", "smallest that starts"), ("smallest_meeting_target", "smallest meeting target")):
        o = r["parallelism"][key]
        if o:
            lines.append(f"  -> {label}: TP={o['serve_flags'].get('tensor_parallel_size', 1)} "
                         f"PP={o['serve_flags'].get('pipeline_parallel_size', 1)} ({o['layout']}), KV {_gib(o['plan']['kv_cache_gib'])}"
                         f" = {o['plan']['kv_cache_tokens']} tokens")
    ex = r["examined"]["serve_flags"]
    lines.append("  below, starting from: " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in ex.items()))
    m = r["max_model_len"]
    lines.append("")
    lines.append("--max-model-len:")
    if m["largest_that_starts"]:
        nxt = m["largest_that_starts"]["proof"]["next_step"]
        lines.append(f"  largest that starts: {m['largest_that_starts']['serve_flags']['max_model_len']} "
                     f"(+1 token: {'starts' if nxt['starts'] else nxt['failure_kind']})")
    else:
        lines.append("  nothing starts at any length with these flags")
    a = m.get("auto_fit") or {}
    lines.append(f"  --max-model-len -1 picks: {a.get('max_model_len') if a.get('starts') else 'n/a (' + str(a.get('error'))[:80] + ')'}")
    if m["for_concurrency"]:
        lines.append(f"  longest context serving {m['for_concurrency']['concurrency']} requests: "
                     f"{m['for_concurrency']['serve_flags']['max_model_len']}")
    u = r["gpu_memory_utilization"]
    lines.append("")
    lines.append(f"--gpu-memory-utilization for {u['concurrency']} x {u['context']} tokens:")
    if u["smallest_serving_target"]:
        s = u["smallest_serving_target"]
        lines.append(f"  smallest: {s['serve_flags']['gpu_memory_utilization']:.2f} (KV {_gib(s['plan']['kv_cache_gib'])}, "
                     f"concurrency {s['plan']['max_concurrency']:.2f}); 0.01 less does not serve it")
        k = u["kv_cache_memory_bytes"]
        lines.append(f"  --kv-cache-memory-bytes {k['pinned']['serve_flags']['kv_cache_memory_bytes']} pins that KV size")
        if k["least_serving_target"]:
            lines.append(f"  --kv-cache-memory-bytes {k['least_serving_target']['serve_flags']['kv_cache_memory_bytes']} "
                         "is the least that serves the target")
    else:
        lines.append("  no utilization serves the target with this layout")
    s = r["max_num_seqs"]
    lines.append("")
    lines.append(f"--max-num-seqs (now {s['current']}: {'starts' if s['current_starts'] else s['current_failure_kind']}):")
    if not s.get("largest_that_starts"):
        lines.append("  nothing starts at any --max-num-seqs with these flags")
    else:
        o = s["largest_that_starts"]
        nxt = o["proof"]["next_step"]
        lines.append(f"  largest that starts: {o['serve_flags']['max_num_seqs']} (sampler warm-up "
                     f"{o['sampler_warmup_gib']:.2f} GiB for {o['sampler_warmup_requests']} dummy requests; "
                     f"+1: {'not searched' if nxt is None else nxt['failure_kind'] or 'starts'})")
    alt = r["alternatives"]
    lines.append("")
    lines.append("Alternatives:")
    if alt["kv_cache_dtype_fp8"]:
        f = alt["kv_cache_dtype_fp8"]
        lines.append(f"  --kv-cache-dtype fp8: KV tokens {f['kv_cache_tokens_before']} -> {f['kv_cache_tokens_after']}, "
                     f"concurrency {f['max_concurrency_before']:.2f} -> {f['max_concurrency_after']:.2f}, "
                     f"longest context {f['largest_max_model_len_that_starts'] or '-'}")
    for q in alt["quantized_checkpoint"]:
        label = q["model"] + (f" --quantization {q['runtime_quantization']}" if q.get("runtime_quantization") else "")
        if not q.get("supported"):
            lines.append(f"  {label}: not planned ({q.get('error', '')[:90]})")
        else:
            lines.append(f"  {label}: weights {_gib(q['plan']['weights_gib'])}, KV {q['plan']['kv_cache_tokens']} tokens, "
                         f"{'starts' if q['starts'] else 'fails: ' + str(q['plan']['failure_kind'])}")
    off = alt["kv_offloading"]
    if off:
        lines.append(f"  --kv-offloading-size {off['serve_flags']['kv_offloading_size']:g}: {off['host_pinned_gib']:.2f} GiB pinned "
                     f"host RAM, {off['host_kv_tokens']} tokens on the CPU; GPU budget unchanged ({off['gpu_kv_cache_tokens']} tokens)")
    c = r["cold_start"]
    lines.append("")
    a = c["assumptions"]
    lines.append(f"Cold start (link {a['link_gb_per_s']:g} GB/s, disk {a['disk_gb_per_s']:g} GB/s, KV compression "
                 f"{a['kv_compression_ratio']:g}x):")
    lines.append(f"  {'util':>5} {'KV GiB':>8} {'tokens':>9} {'conc.':>8} {'lost':>7} {'GPU GiB':>8} {'image GiB':>9} {'restore s':>9}")
    for row in c["rows"]:
        lines.append(f"  {row['gpu_memory_utilization']:>5.2f} {row['kv_cache_gib']:>8.2f} {row['kv_cache_tokens']:>9} "
                     f"{row['max_concurrency']:>8.2f} {row['concurrency_lost']:>7.2f} {row['gpu_gib_per_gpu']:>8.2f} "
                     f"{row['checkpoint_image_gib']:>9.2f} {row['restore_seconds']:>9.2f}{'  *' if row['meets_target'] else ''}")
    lines.append("  (* serves the target)")
    ch = r.get("cheapest")
    if ch:
        lines.append("")
        lines.append("Cheapest GPU meeting the target (USD/hour, --prices to override):")
        for o in ch["options"][:8]:
            if o["meets_target"]:
                lines.append(f"  {o['gpu']:<10} x{o['num_gpus']:<3} ${o['usd_per_hour']:>7.2f}/h  ({o['layout']})")
        missing = [o["gpu"] for o in ch["options"] if not o["meets_target"]]
        if missing:
            lines.append(f"  cannot meet it: {', '.join(missing)}")
    rec = r.get("recommended")
    if rec and not rec["starts"]:
        lines.append("")
        lines.append(f"No recommendation for {rec['goal']}: {rec['why']}.")
    elif rec:
        lines.append("")
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in rec["serve_flags"].items())
        lines.append(f"Recommended for {rec['goal']}: {flags}")
        lines.append(f"  {rec['why']}; KV {_gib(rec['plan']['kv_cache_gib'])}, {rec['plan']['kv_cache_tokens']} tokens, "
                     f"concurrency {rec['plan']['max_concurrency']:.2f}")
    return "\n".join(lines)


__all__ = ["GOALS", "advise", "render_advice", "load_prices", "kv_offloading", "restore_estimate", "plan_fields",
           "quantized_siblings"]
