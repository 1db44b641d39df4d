"""What vLLM decides before it touches the GPU: the engine config in effect.

Resolves ``auto`` dtypes, the quantization in effect, block size, max model
length, the scheduler defaults (vllm/engine/arg_utils.py) and the CUDA-graph
capture sizes (vllm/config/compilation.py) for one vLLM version and GPU.
Impossible flags raise ``FlagError`` (bad input); settings that are valid
input but that vLLM refuses are returned as ``refusal`` with vLLM's text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import FlagError
from .gpus import GpuSpec
from .model_spec import DTYPE_BYTES, ModelSpec, normalize_dtype
from .serve_args import ServeArgs
from .units import GiB, cdiv
from .versions import VersionRules

KV_DTYPE_BYTES = {
    "auto": None, "bfloat16": 2, "float16": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "fp8_inc": 1,
}


@dataclass(frozen=True)
class EngineSettings:
    dtype: str
    dtype_bytes: int
    kv_cache_dtype: str
    kv_dtype_bytes: int
    quantization: str | None  # None, "fp8" (runtime), "compressed-tensors", "fp8-checkpoint"
    block_size: int
    max_model_len: int
    auto_fit_max_model_len: bool
    max_num_batched_tokens: int
    max_num_seqs: int
    enable_chunked_prefill: bool
    enable_prefix_caching: bool
    enforce_eager: bool
    cudagraph_mode: str
    num_piecewise_graphs: int
    num_full_graphs: int
    max_capture_size: int
    sampler_path: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    data_parallel_size: int
    gpu_memory_utilization: float
    kv_cache_memory_bytes: int | None
    num_gpu_blocks_override: int | None
    refusal: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    # KV groups (3A): platform rules, hybrid manager, Mamba state layout
    platform: str = "cuda"
    disable_sliding_window: bool = False
    disable_hybrid_kv_cache_manager: bool = False
    in_flight_tokens: int = 0  # X of the sliding-window formula (max_in_flight_tokens)
    mamba_cache_mode: str = "none"  # none | all | align
    mamba_block_size: int | None = None
    mamba_page_size_padded: int | None = None
    mamba_cache_dtype: str = "auto"  # resolved conv-state dtype
    mamba_ssm_cache_dtype: str = "auto"  # resolved SSM-state dtype
    hybrid_block_raised: bool = False  # vLLM logged "Setting attention block size to ..."
    # MoE / multimodal (3B)
    enable_expert_parallel: bool = False
    limit_mm_per_prompt: tuple[tuple[str, int], ...] = ()
    skip_mm_profiling: bool = False

    def as_flags(self) -> dict[str, object]:
        """The settings by vLLM's engine-argument names (snake_case)."""
        return {
            "tensor_parallel_size": self.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "data_parallel_size": self.data_parallel_size,
            "max_model_len": self.max_model_len,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "block_size": self.block_size,
            "kv_cache_dtype": self.kv_cache_dtype,
            "dtype": self.dtype,
            "quantization": self.quantization,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "enable_prefix_caching": self.enable_prefix_caching,
            "enable_chunked_prefill": self.enable_chunked_prefill,
            "enforce_eager": self.enforce_eager,
            "kv_cache_memory_bytes": self.kv_cache_memory_bytes,
            "num_gpu_blocks_override": self.num_gpu_blocks_override,
            "disable_hybrid_kv_cache_manager": self.disable_hybrid_kv_cache_manager,
            "enable_expert_parallel": self.enable_expert_parallel,
            "limit_mm_per_prompt": dict(self.limit_mm_per_prompt) or None,
            "skip_mm_profiling": self.skip_mm_profiling,
        }


# vllm-fit's format names -> the name vLLM's --quantization / config uses
_VLLM_QUANT_NAME = {
    "compressed-tensors-fp8": "compressed-tensors", "compressed-tensors-int8": "compressed-tensors",
    "compressed-tensors-wna16": "compressed-tensors", "compressed-tensors-nvfp4": "compressed-tensors",
    "bitsandbytes-4bit": "bitsandbytes", "bitsandbytes-8bit": "bitsandbytes", "modelopt-fp8": "modelopt",
}
# --quantization values vLLM accepts for a checkpoint of that method
_QUANT_OVERRIDES = {"gptq": {"gptq_marlin"}, "awq": {"awq_marlin"}, "modelopt_fp4": {"modelopt"}}
_MIN_CAPABILITY = {"compressed-tensors-nvfp4": 10.0, "modelopt_fp4": 10.0, "fp8": 8.9, "compressed-tensors-fp8": 8.9}


def _capability(gpu: GpuSpec) -> float:
    try:
        return float(gpu.capability)
    except ValueError:
        return 9.0  # ROCm gfx names: treat as a modern GPU


def capture_sizes(rules: VersionRules, max_num_seqs: int, max_num_batched_tokens: int, gpu: GpuSpec) -> list[int]:
    """vllm/config/compilation.py + scheduler/vllm config post-init."""
    if rules.capture_sizes == "v011":
        top = min(2 * max_num_seqs, 512)
        sizes = [1, 2, 4] + list(range(8, top + 1, 8))
    else:
        cap = 1024 if (rules.minor >= 28 and gpu.is_blackwell) else 512
        top = min(max_num_seqs * 2, cap)
        top = min(top, max_num_batched_tokens)
        sizes = [1, 2, 4] + list(range(8, min(top + 1, 256), 8)) + list(range(256, top + 1, 16))
        if rules.minor >= 28 and max_num_batched_tokens <= cap and max_num_batched_tokens not in sizes:
            sizes.append(max_num_batched_tokens)
    return sorted(s for s in set(sizes) if s <= max_num_batched_tokens and s <= max(top, 1))


def resolve(spec: ModelSpec, args: ServeArgs, rules: VersionRules, gpu: GpuSpec, platform: str = "cuda") -> EngineSettings:
    """``platform`` "cpu" applies vLLM's CPU backend rules (vllm/platforms/cpu.py:
    default block size 128, MLA block 16, no async scheduling); it exists to
    check vllm-fit against the real CPU engine."""
    if platform not in ("cuda", "cpu"):
        raise FlagError(f"unknown platform {platform!r}", "Use cuda (the default) or cpu.")
    notes: list[str] = list(rules.notes)
    refusal: str | None = None
    cap = _capability(gpu)

    # dtype (vllm/config/model.py _get_and_verify_dtype): auto keeps the
    # checkpoint dtype, downcasts float32 to bfloat16 (float16 before sm80),
    # and serves bfloat16 checkpoints as float16 on GPUs without bf16.
    if args.dtype == "auto":
        dtype = spec.dtype
        if dtype == "float32":
            dtype = "bfloat16" if cap >= 8.0 else "float16"
            notes.append(f"--dtype auto serves the float32 checkpoint as {dtype}")
        if dtype == "bfloat16" and cap < 8.0:
            dtype = "float16"
            notes.append(f"{gpu.name} has no bfloat16: --dtype auto serves float16")
    else:
        dtype = normalize_dtype(args.dtype, "--dtype")
        if dtype == "bfloat16" and cap < 8.0:
            raise FlagError(
                f"{gpu.name} (compute capability {gpu.capability}) does not support bfloat16",
                "Use --dtype float16.",
            )

    # quantization in effect (vllm/config/model.py _verify_quantization): the checkpoint's
    # method, upgraded to its Marlin kernel on sm80+ (gptq -> gptq_marlin, awq -> awq_marlin)
    quant = None
    ckpt_q = spec.quantization
    if ckpt_q is not None:
        ckpt_method = _VLLM_QUANT_NAME.get(ckpt_q.method, ckpt_q.method)
        accepted = {ckpt_method} | _QUANT_OVERRIDES.get(ckpt_method, set())
        if args.quantization is not None and args.quantization not in accepted:
            refusal = (
                f"ValueError: Quantization method specified in the model config ({ckpt_method}) does not match "
                f"the quantization method specified in the `quantization` argument ({args.quantization})."
            )
        quant = ckpt_method
        if ckpt_method in ("gptq", "awq") and cap >= 8.0 and args.quantization not in ("gptq", "awq"):
            quant = f"{ckpt_method}_marlin"
            notes.append(f"the {ckpt_method} checkpoint runs with the {quant} kernels (repacked at load time)")
        if ckpt_method in ("fp8", "compressed-tensors", "modelopt", "modelopt_fp4", "mxfp4") and cap < _MIN_CAPABILITY.get(ckpt_q.method, 0):
            notes.append(f"{gpu.name} lacks native {ckpt_q.method} kernels: vLLM falls back to a weight-only Marlin path")
    elif args.quantization is not None:
        if args.quantization not in ("fp8", "bitsandbytes"):
            raise FlagError(
                f"--quantization {args.quantization} needs a checkpoint quantized that way, and {spec.name} is not",
                "Runtime quantization of a 16-bit checkpoint is modelled for --quantization fp8 and bitsandbytes.",
            )
        quant = args.quantization

    # KV cache dtype (vllm/config/cache.py CacheDType per version)
    kv_dtype = args.kv_cache_dtype
    from .kv_cache import PACKED_KV_DTYPES

    if kv_dtype not in rules.kv_cache_dtypes:
        raise FlagError(f"vLLM {rules.version} has no --kv-cache-dtype {kv_dtype}",
                        "Allowed there: " + ", ".join(rules.kv_cache_dtypes) + ".")
    if kv_dtype in PACKED_KV_DTYPES:
        if "mla" in spec.layer_kinds or spec.mamba is not None:
            raise FlagError(f"--kv-cache-dtype {kv_dtype} is not modelled for MLA or hybrid Mamba models",
                            "vllm-fit models it for standard attention layers (vLLM 0.33 Triton / FlashInfer packing).")
        kv_bytes = 1  # nominal; the page size comes from kv_cache.packed_bytes_per_token
    elif kv_dtype == "fp8_ds_mla":
        if "mla" not in spec.layer_kinds:
            raise FlagError("--kv-cache-dtype fp8_ds_mla needs an MLA model",
                            "It is DeepSeek-V3.2's 656-byte latent format; use fp8 or auto.")
        kv_bytes = 1
    else:
        kv_bytes = KV_DTYPE_BYTES[kv_dtype] or DTYPE_BYTES[dtype]

    # block size (platforms/cuda.py default 16, platforms/cpu.py 128; allowed values per version)
    default_block = 128 if platform == "cpu" else rules.default_block_size
    block_size = args.block_size or default_block
    if args.block_size is not None and rules.block_sizes is not None and block_size not in rules.block_sizes:
        raise FlagError(
            f"vLLM {rules.version} does not accept --block-size {block_size}",
            "Allowed: " + ", ".join(str(b) for b in rules.block_sizes) + ".",
        )
    if "mla" in spec.layer_kinds:
        blackwell = _capability(gpu) >= 10.0
        if platform == "cpu":
            forced = 16  # platforms/cpu.py: the CPU MLA kernel compiles with block 16 only
        elif kv_dtype == "fp8_ds_mla":
            forced = 64  # DeepSeek-V3.2 sparse FlashMLA: block 64 in every version
        elif rules.mla_block_rule == "forced":
            need = 128 if blackwell else 64  # CUTLASS MLA / FlashMLA
            forced = block_size if block_size % need == 0 else need
        else:
            forced = block_size if args.block_size else (32 if blackwell else 16)
        if forced != block_size:
            notes.append(f"MLA attention backend uses block size {forced}")
        block_size = forced

    # max model len
    auto_fit = args.max_model_len == -1
    if auto_fit and rules.minor < 14:
        raise FlagError(f"--max-model-len -1 (auto-fit) needs vLLM 0.14 or newer, not {rules.version}")
    derived = spec.derived_max_model_len
    if args.disable_sliding_window and spec.sliding_window is not None and spec.sliding_window < derived:
        # --disable-sliding-window caps the length at the window (config/model.py
        # _get_and_verify_max_len, max_len_key "sliding_window") and serves full attention
        derived = spec.sliding_window
        notes.append(f"--disable-sliding-window: every layer attends fully, max_model_len capped at {derived}")
    max_model_len = derived if (args.max_model_len is None or auto_fit) else args.max_model_len
    if max_model_len > derived and refusal is None:
        from .messages import max_model_len_too_long_error

        refusal = max_model_len_too_long_error(max_model_len, derived)

    # scheduler defaults for `vllm serve` (OPENAI_API_SERVER usage context)
    total = gpu.total_bytes
    is_a100 = "a100" in gpu.device_name.lower()
    if rules.large_gpu_defaults and total >= 160 * GiB:
        default_mbt, default_seqs = 16384, 1024
    elif total >= 70 * GiB and not is_a100:
        default_mbt, default_seqs = 8192, 1024
    else:
        default_mbt, default_seqs = 2048, 256
    chunked = True if args.enable_chunked_prefill is None else args.enable_chunked_prefill
    seqs = args.max_num_seqs if args.max_num_seqs is not None else default_seqs
    if args.max_num_batched_tokens is not None:
        mbt = args.max_num_batched_tokens
    else:
        mbt = default_mbt
        if not chunked:
            mbt = max(max_model_len, mbt)
        if rules.cap_mbt_by_seqs_times_len:
            mbt = min(seqs * max_model_len, mbt)
    if args.max_num_seqs is None:
        seqs = min(default_seqs, mbt)
    if mbt < seqs and refusal is None:
        refusal = (
            f"ValueError: max_num_batched_tokens ({mbt}) must be greater than or equal to max_num_seqs ({seqs})."
        )
    if not chunked and mbt < max_model_len and refusal is None:
        refusal = (
            f"ValueError: max_num_batched_tokens ({mbt}) is smaller than max_model_len ({max_model_len}). "
            "This effectively limits the maximum sequence length to max_num_batched_tokens and makes vLLM reject "
            "longer sequences. Please increase max_num_batched_tokens or decrease max_model_len."
        )
    prefix = True if args.enable_prefix_caching is None else args.enable_prefix_caching

    # Hybrid KV cache manager (vllm/config/vllm.py): off when asked, and by
    # default for chunked local attention (Llama-4) while
    # VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE defaults to 0 (0.11-0.13).
    disable_hybrid = bool(args.disable_hybrid_kv_cache_manager)
    chunked_off = "chunked" in spec.layer_kinds and not rules.chunked_local_keeps_hybrid_manager
    if args.disable_hybrid_kv_cache_manager is None and chunked_off:
        disable_hybrid = True
        notes.append("chunked local attention: vLLM disables the hybrid KV cache manager by default; "
                     "local layers reserve full-length KV")
    if args.disable_hybrid_kv_cache_manager is False and chunked_off and refusal is None:
        refusal = ("ValueError: Hybrid KV cache manager was explicitly enabled but is not supported in this "
                   "configuration. Consider omitting the --no-disable-hybrid-kv-cache-manager flag to let vLLM "
                   "decide automatically.")
    in_flight = mbt
    if rules.sliding_window_in_flight_batches and platform == "cuda":
        # max_in_flight_tokens = max_concurrent_batches x mbt (vllm/config/vllm.py,
        # 0.26+): async scheduling on -> PP + 1 with Model Runner V2, 2 with V1 at
        # PP 1; V1 with PP > 1 runs without async scheduling -> PP.
        from .versions import uses_v2_runner

        pp = args.pipeline_parallel_size
        if uses_v2_runner(rules, spec.architecture, quant is not None):
            in_flight = mbt * (pp + 1)
        else:
            in_flight = mbt * (2 if pp == 1 else pp)
    hybrid = _hybrid_mamba(spec, args, rules, platform, block_size, kv_bytes, dtype, max_model_len, prefix)
    raised = False
    mamba_dtypes = ("auto", "auto")
    if hybrid is not None:
        raised_from = block_size
        block_size, prefix, mamba_mode, mamba_block, mamba_padded, mamba_dtypes, hnotes = hybrid
        raised = block_size != raised_from
        notes.extend(hnotes)
    else:
        mamba_mode, mamba_block, mamba_padded = "none", None, None

    # CUDA graphs (FULL_AND_PIECEWISE by default, none with --enforce-eager)
    if args.enforce_eager:
        mode, n_pw, n_full, top = "NONE", 0, 0, 0
    else:
        sizes = capture_sizes(rules, seqs, mbt, gpu)
        mode = "FULL_AND_PIECEWISE"
        n_pw = len(sizes)
        n_full = len([s for s in sizes if s <= seqs])
        top = max(sizes) if sizes else 0

    # sampler path
    path = rules.sampler_path
    if args.vllm_use_flashinfer_sampler is True:
        path = "flashinfer"
    elif args.vllm_use_flashinfer_sampler is False:
        path = rules.native_sampler_path
    if path == "flashinfer" and (gpu.sms <= 16 or cap < 8.0):
        path = rules.native_sampler_path
    return EngineSettings(
        dtype=dtype,
        dtype_bytes=DTYPE_BYTES[dtype],
        kv_cache_dtype=args.kv_cache_dtype,
        kv_dtype_bytes=kv_bytes,
        quantization=quant,
        block_size=block_size,
        max_model_len=max_model_len,
        auto_fit_max_model_len=auto_fit,
        max_num_batched_tokens=mbt,
        max_num_seqs=seqs,
        enable_chunked_prefill=chunked,
        enable_prefix_caching=prefix,
        enforce_eager=args.enforce_eager,
        cudagraph_mode=mode,
        num_piecewise_graphs=n_pw,
        num_full_graphs=n_full,
        max_capture_size=top,
        sampler_path=path,
        tensor_parallel_size=args.tensor_parallel_size,
        pipeline_parallel_size=args.pipeline_parallel_size,
        data_parallel_size=args.data_parallel_size,
        gpu_memory_utilization=args.gpu_memory_utilization,
        kv_cache_memory_bytes=args.kv_cache_memory_bytes,
        num_gpu_blocks_override=args.num_gpu_blocks_override,
        refusal=refusal,
        notes=tuple(notes),
        platform=platform,
        disable_sliding_window=args.disable_sliding_window,
        disable_hybrid_kv_cache_manager=disable_hybrid,
        enable_expert_parallel=args.enable_expert_parallel,
        limit_mm_per_prompt=tuple(sorted((args.limit_mm_per_prompt or {}).items())),
        skip_mm_profiling=args.skip_mm_profiling,
        in_flight_tokens=in_flight,
        mamba_cache_mode=mamba_mode,
        mamba_block_size=mamba_block,
        mamba_page_size_padded=mamba_padded,
        mamba_cache_dtype=mamba_dtypes[0],
        mamba_ssm_cache_dtype=mamba_dtypes[1],
        hybrid_block_raised=raised,
    )


def attention_page_per_token(spec: ModelSpec, tp: int, kv_bytes: int) -> int:
    """Bytes one token costs in one attention layer on one rank."""
    if "mla" in spec.layer_kinds and spec.mla is not None:
        return (spec.mla.kv_lora_rank + spec.mla.qk_rope_head_dim) * kv_bytes
    heads = max(1, spec.num_kv_heads // tp)
    return 2 * heads * spec.head_dim * kv_bytes


def _hybrid_mamba(spec: ModelSpec, args: ServeArgs, rules: VersionRules, platform: str, block_size: int,
                  kv_bytes: int, dtype: str, max_model_len: int, prefix: bool):
    """What vLLM does to a hybrid (attention + Mamba) model before sizing KV:
    prefix-caching mode, the attention block size that makes one attention
    page hold a Mamba state, and the Mamba page padding
    (vllm/model_executor/models/config.py HybridAttentionMambaModelConfig /
    MambaModelConfig; 0.20+ vllm/platforms/interface.py _align_hybrid_block_size)."""
    if spec.mamba is None or not any(k in ("mamba", "linear_attention") for k in spec.layer_kinds):
        return None
    from . import ssm

    notes: list[str] = []
    tp = args.tensor_parallel_size
    if not any(k in ("full", "sliding", "mla") for k in spec.layer_kinds):
        return None  # attention-free Mamba model: not in scope
    if args.enable_prefix_caching is None:
        prefix = rules.hybrid_prefix_caching_default
    modes = rules.mamba_prefix_modes
    if modes == "off" or (modes == "all" and not spec.mamba.supports_all_mode):
        if prefix:
            notes.append("hybrid model: vLLM disables prefix caching")
        prefix = False
    mode = "none"
    if prefix:
        if modes == "all":
            mode = "all"
        elif modes == "all_or_align":
            mode = "all" if spec.mamba.supports_all_mode else "align"
        else:
            mode = "align"
    conv_dt, ssm_dt = ssm.state_dtypes(spec.mamba, dtype, args.mamba_cache_dtype, args.mamba_ssm_cache_dtype,
                                       rules.nemotron_h_ssm_dtype)
    mamba_page = ssm.state_page_bytes(spec.mamba, tp, ssm.dtype_bytes(conv_dt), ssm.dtype_bytes(ssm_dt))
    attn_1 = attention_page_per_token(spec, tp, kv_bytes)
    is_mla = "mla" in spec.layer_kinds
    if rules.hybrid_block_alignment == "fixed16":
        align = rules.hybrid_mla_alignment if is_mla else 16
    else:
        align = max(16 if platform == "cuda" else 1, block_size)
    if mode == "all":
        chunk = math.lcm(spec.mamba.chunk_size, align)
        attn_block = chunk * cdiv(cdiv(mamba_page, attn_1), chunk)
    else:
        attn_block = align * cdiv(mamba_page, align * attn_1)
    if block_size < attn_block:
        notes.append(f"hybrid model: attention block size raised to {attn_block} tokens so that one attention "
                     f"page ({attn_block * attn_1} B) holds a Mamba state ({mamba_page} B)")
        block_size = attn_block
    mamba_block = block_size if mode in ("all", "align") else max_model_len
    page = block_size * attn_1
    padded = page if page != mamba_page else None
    return block_size, prefix, mode, mamba_block, padded, (conv_dt, ssm_dt), notes
