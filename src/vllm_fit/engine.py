"""What vLLM decides before it touches the GPU: the engine config in effect.

Resolves ``auto`` dtypes, the quantization in effect, block size, max model
length, the scheduler defaults (vllm/engine/arg_utils.py) and the CUDA-graph
capture sizes (vllm/config/compilation.py) for one vLLM version and GPU.
Impossible flags raise ``FlagError`` (bad input); settings that are valid
input but that vLLM refuses are returned as ``refusal`` with vLLM's text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import FlagError
from .gpus import GpuSpec
from .model_spec import DTYPE_BYTES, ModelSpec, normalize_dtype
from .serve_args import ServeArgs
from .units import GiB
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
        }


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


def resolve(spec: ModelSpec, args: ServeArgs, rules: VersionRules, gpu: GpuSpec) -> EngineSettings:
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

    # quantization in effect
    quant = None
    ckpt_q = spec.quantization
    if ckpt_q is not None:
        ckpt_method = "compressed-tensors" if ckpt_q.method.startswith("compressed-tensors") else ckpt_q.method
        if args.quantization is not None and args.quantization != ckpt_method:
            refusal = (
                f"ValueError: Quantization method specified in the model config ({ckpt_method}) does not match "
                f"the quantization method specified in the `quantization` argument ({args.quantization})."
            )
        quant = ckpt_method
    elif args.quantization is not None:
        if args.quantization != "fp8":
            raise FlagError(
                f"--quantization {args.quantization} needs a checkpoint quantized that way, and {spec.name} is not",
                "Runtime quantization of a 16-bit checkpoint is modelled for --quantization fp8.",
            )
        quant = "fp8"

    # KV cache dtype
    if args.kv_cache_dtype not in KV_DTYPE_BYTES:
        raise FlagError(
            f"--kv-cache-dtype {args.kv_cache_dtype} is not modelled for dense models",
            "Use auto, bfloat16, float16 or an fp8 variant (fp8, fp8_e4m3, fp8_e5m2).",
        )
    if args.kv_cache_dtype == "float16" and rules.minor < 33:
        raise FlagError(f"vLLM {rules.version} has no --kv-cache-dtype float16", "It was added in 0.33; use auto.")
    kv_bytes = KV_DTYPE_BYTES[args.kv_cache_dtype] or DTYPE_BYTES[dtype]

    # block size (platforms/cuda.py default 16; allowed values per version)
    block_size = args.block_size or rules.default_block_size
    allowed = {1, 8, 16, 32, 64, 128} if rules.minor < 14 else ({1, 8, 16, 32, 64, 128, 256} if rules.minor < 33 else None)
    if args.block_size is not None and allowed is not None and block_size not in allowed:
        raise FlagError(
            f"vLLM {rules.version} does not accept --block-size {block_size}",
            "Allowed: " + ", ".join(str(b) for b in sorted(allowed)) + ".",
        )

    # max model len
    auto_fit = args.max_model_len == -1
    if auto_fit and rules.minor < 14:
        raise FlagError(f"--max-model-len -1 (auto-fit) needs vLLM 0.14 or newer, not {rules.version}")
    max_model_len = spec.derived_max_model_len if (args.max_model_len is None or auto_fit) else args.max_model_len
    if max_model_len > spec.derived_max_model_len and refusal is None:
        from .messages import max_model_len_too_long_error

        refusal = max_model_len_too_long_error(max_model_len, spec.derived_max_model_len)

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
    if path == "flashinfer" and (gpu.sms <= 16 or cap < 8.0):
        path = "triton"
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
    )
