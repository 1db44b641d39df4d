"""vLLM's own start-up messages, per version (format strings from its source).

v0.11 / v0.14 / v0.33 texts are from ../shared/reference/vllm-memory-accounting.md
section 8 (read from the wheels); ``‹x›`` there is a backticked `x` here.
"""

from __future__ import annotations

from .units import GiB
from .versions import VersionRules

DOCS_LINK = " See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details."


def gib_text(rules: VersionRules, n_bytes: float) -> str:
    """How vLLM prints a GiB figure in that version: '%.2f' (0.11) or format_gib (0.14+)."""
    if rules.gib_format == "%.2f":
        return f"{n_bytes / GiB:.2f}"
    return str(round(n_bytes / GiB, 2))


def free_memory_error(rules: VersionRules, free_bytes: int, total_bytes: int, util: float, requested_bytes: float) -> str:
    # vllm/v1/worker/gpu_worker.py (0.11-0.13) / vllm/v1/worker/utils.py request_memory (0.14+);
    # numbers are str(round(x / GiB, 2)) in every version.
    device = "device cuda:0" if rules.free_memory_error_names_device else "device"
    r = lambda b: str(round(b / GiB, 2))  # noqa: E731
    return (
        f"ValueError: Free memory on {device} ({r(free_bytes)}/{r(total_bytes)} GiB) on startup "
        f"is less than desired GPU memory utilization ({util}, {r(requested_bytes)} GiB). "
        "Decrease GPU memory utilization or reduce GPU memory used by other processes."
    )


def no_memory_error(rules: VersionRules) -> str:
    msg = "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine"
    if rules.kv_error_cpu_note:
        msg += " (this flag also controls CPU memory reservation on the CPU backend, despite its name)"
    msg += "."
    if rules.kv_error_docs_link:
        msg += DOCS_LINK
    return msg


def max_len_error(rules: VersionRules, max_model_len: int, needed_bytes: int, available_bytes: int, estimated: int) -> str:
    who = "models's" if rules.max_len_error_typo else "model's"
    if rules.gib_format == "%.2f":
        need, avail = f"{needed_bytes / GiB:.2f}", f"{available_bytes / GiB:.2f}"
    else:
        need, avail = gib_text(rules, needed_bytes), gib_text(rules, available_bytes)
    est = f"Based on the available memory, the estimated maximum model length is {estimated}." if estimated > 0 else ""
    flag = "`gpu_memory_utilization`"
    if rules.kv_error_cpu_note:
        flag += " (which also controls CPU memory on the CPU backend)"
    head = (
        f"ValueError: To serve at least one request with the {who} max seq len ({max_model_len}), "
        f"({need} GiB KV cache is needed, which is larger than the available KV cache memory ({avail} GiB)."
    )
    tail = f"Try increasing {flag} or decreasing `max_model_len` when initializing the engine."
    if rules.minor <= 13:
        msg = f"{head} {est} {tail}"  # 0.11-0.13: '{est}' between two spaces
    else:
        msg = f"{head} {est + ' ' if est else ''}{tail}"
    if rules.kv_error_docs_link:
        msg += DOCS_LINK
    return msg


def heads_not_divisible_error(heads: int, tp: int) -> str:
    # vllm/config/model.py ModelConfig.verify_with_parallel_config
    return (
        f"ValueError: Total number of attention heads ({heads}) must be divisible by tensor parallel size ({tp})."
    )


def sampler_oom_error(num_reqs: int) -> str:
    # vllm/v1/worker/gpu_model_runner.py _dummy_sampler_run
    return (
        f"RuntimeError: CUDA out of memory occurred when warming up sampler with {num_reqs} dummy requests. "
        "Please try lowering `max_num_seqs` or `gpu_memory_utilization` when initializing the engine."
    )


def load_oom_error(need_bytes: int, free_bytes: int, total_bytes: int) -> str:
    # torch's OutOfMemoryError while vLLM allocates parameters (vllm-fit's summary:
    # the exact allocation that fails depends on the parameter order).
    return (
        "torch.OutOfMemoryError: CUDA out of memory while loading the weights: this GPU needs "
        f"{need_bytes / GiB:.2f} GiB for its share of the weights but only {free_bytes / GiB:.2f} GiB "
        f"of {total_bytes / GiB:.2f} GiB is free. Use more GPUs (tensor/pipeline parallelism) or a quantized checkpoint."
    )


def max_model_len_too_long_error(max_model_len: int, derived: int) -> str:
    # vllm/config/model.py _get_and_verify_max_len (paraphrase of its long message)
    return (
        f"ValueError: User-specified max_model_len ({max_model_len}) is greater than the derived max_model_len "
        f"(max_position_embeddings={derived} in model's config.json). To allow overriding this maximum, "
        "set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1."
    )
