"""The flags of ``vllm serve`` that change memory, validated.

Names and spellings are vLLM's (snake_case here, ``--kebab-case`` on the
command line).  ``parse_serve_command`` reads a whole ``vllm serve MODEL ...``
line; flags that do not change memory (``--host``, ``--port``, ...) are
accepted and listed as ignored.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import FlagError

KV_CACHE_DTYPES = (
    "auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc", "fp8_ds_mla",
    "fp8_per_token_head", "int8_per_token_head", "int4_per_token_head", "nvfp4", "nvfp4_4over6",
)
DTYPES = ("auto", "bfloat16", "float16", "float32", "half", "float", "bf16", "fp16", "fp32")
QUANTIZATIONS = ("fp8", "compressed-tensors", "awq", "awq_marlin", "gptq", "gptq_marlin", "bitsandbytes", "mxfp4", "modelopt", "modelopt_fp4")


class ServeArgs(BaseModel):
    """Engine arguments that vllm-fit models. None = vLLM's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tensor_parallel_size: int = Field(1, ge=1, le=1024)
    pipeline_parallel_size: int = Field(1, ge=1, le=256)
    data_parallel_size: int = Field(1, ge=1, le=4096)
    max_model_len: Optional[int] = Field(None, ge=-1, le=1 << 26)  # -1: auto-fit (0.14+)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    block_size: Optional[int] = Field(None, ge=1, le=4096)
    kv_cache_dtype: str = "auto"
    dtype: str = "auto"
    quantization: Optional[str] = None
    max_num_seqs: Optional[int] = Field(None, ge=1, le=1 << 20)
    max_num_batched_tokens: Optional[int] = Field(None, ge=1, le=1 << 26)
    enforce_eager: bool = False
    enable_prefix_caching: Optional[bool] = None
    enable_chunked_prefill: Optional[bool] = None
    kv_cache_memory_bytes: Optional[int] = Field(None, ge=0, le=1 << 50)
    num_gpu_blocks_override: Optional[int] = Field(None, ge=1, le=1 << 40)
    # Hybrid KV cache manager off: sliding/chunked layers reserve full-length KV.
    disable_hybrid_kv_cache_manager: Optional[bool] = None
    # Full attention on every layer, max_model_len capped at the sliding window.
    disable_sliding_window: bool = False
    # Mamba state dtypes (vllm/config/cache.py CacheConfig)
    mamba_ssm_cache_dtype: str = "auto"
    mamba_cache_dtype: str = "auto"
    # MoE: experts spread over the TP x DP ranks instead of sharded (vllm/config/parallel.py)
    enable_expert_parallel: bool = False
    # Multimodal encoder profiling (vllm/config/multimodal.py): items per prompt per modality,
    # and skipping the encoder's dummy run altogether.
    limit_mm_per_prompt: Optional[dict[str, int]] = None
    skip_mm_profiling: bool = False
    # The environment variable VLLM_USE_FLASHINFER_SAMPLER (vllm/envs.py): None = the
    # version's default; in vLLM 0.11 the default means "FlashInfer if installed"
    # (the vllm-openai image has it, a plain `pip install vllm` does not).
    vllm_use_flashinfer_sampler: Optional[bool] = None

    @field_validator("kv_cache_dtype")
    @classmethod
    def _kv_dtype(cls, v: str) -> str:
        if v not in KV_CACHE_DTYPES:
            raise ValueError(f"must be one of {', '.join(KV_CACHE_DTYPES)}")
        return v

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        if v not in DTYPES:
            raise ValueError("must be one of auto, bfloat16, float16, float32")
        return v

    @field_validator("mamba_ssm_cache_dtype", "mamba_cache_dtype")
    @classmethod
    def _mamba_dtype(cls, v: str) -> str:
        if v not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError("must be one of auto, float32, bfloat16, float16")
        return v

    @field_validator("limit_mm_per_prompt")
    @classmethod
    def _mm_limits(cls, v: Optional[dict[str, int]]) -> Optional[dict[str, int]]:
        if v is None:
            return v
        for k, n in v.items():
            if k not in ("image", "video", "audio") or isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 4096:
                raise ValueError("must map image/video/audio to a count between 0 and 4096, e.g. {\"image\": 2}")
        return v

    @field_validator("max_model_len")
    @classmethod
    def _mml(cls, v: Optional[int]) -> Optional[int]:
        if v == 0:
            raise ValueError("must be a positive number of tokens, or -1 to auto-fit")
        return v

    @field_validator("quantization")
    @classmethod
    def _quant(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and v not in QUANTIZATIONS:
            raise ValueError(f"must be one of {', '.join(QUANTIZATIONS)}")
        return v


def make_serve_args(**kwargs: Any) -> ServeArgs:
    """Build ServeArgs, turning pydantic's errors into one clear line."""
    clean = {k: v for k, v in kwargs.items() if v is not None}
    try:
        return ServeArgs(**clean)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err.get("loc", ())) or "flag"
        flag = "--" + field.replace("_", "-")
        value = err.get("input")
        msg = err.get("msg", "invalid value")
        if err.get("type") == "extra_forbidden":
            raise FlagError(f"unknown option {field!r}", "Use vLLM's engine argument names, e.g. tensor_parallel_size.") from None
        raise FlagError(f"{flag} {value!r}: {msg}"[:240], "See `vllm serve --help` for the allowed values.") from None


# ------------------------------------------------------- command-line parsing

_HUMAN_INT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)\s*$")


def human_readable_int(text: str) -> int:
    """vLLM's human_readable_int: '1k' = 1000, '1K' = 1024, '25.6k' = 25600."""
    m = _HUMAN_INT.match(str(text))
    if not m:
        raise ValueError(f"not an integer: {text!r}")
    number, suffix = m.groups()
    if not suffix:
        if "." in number:
            raise ValueError(f"not an integer: {text!r}")
        return int(number)
    decimal = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
    binary = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    mult = decimal.get(suffix) or binary[suffix]
    return int(float(number) * mult)


# flag -> (field, kind); kind: int | hint | float | str | bool | neg
_ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")

_FLAGS: dict[str, tuple[str, str]] = {
    "--tensor-parallel-size": ("tensor_parallel_size", "int"), "-tp": ("tensor_parallel_size", "int"),
    "--pipeline-parallel-size": ("pipeline_parallel_size", "int"), "-pp": ("pipeline_parallel_size", "int"),
    "--data-parallel-size": ("data_parallel_size", "int"), "-dp": ("data_parallel_size", "int"),
    "--max-model-len": ("max_model_len", "hint"),
    "--gpu-memory-utilization": ("gpu_memory_utilization", "float"),
    "--block-size": ("block_size", "int"),
    "--kv-cache-dtype": ("kv_cache_dtype", "str"),
    "--dtype": ("dtype", "str"),
    "--quantization": ("quantization", "str"), "-q": ("quantization", "str"),
    "--max-num-seqs": ("max_num_seqs", "int"),
    "--max-num-batched-tokens": ("max_num_batched_tokens", "hint"),
    "--enforce-eager": ("enforce_eager", "bool"),
    "--enable-prefix-caching": ("enable_prefix_caching", "bool"),
    "--no-enable-prefix-caching": ("enable_prefix_caching", "neg"),
    "--enable-chunked-prefill": ("enable_chunked_prefill", "bool"),
    "--no-enable-chunked-prefill": ("enable_chunked_prefill", "neg"),
    "--kv-cache-memory-bytes": ("kv_cache_memory_bytes", "hint"),
    "--kv-cache-memory": ("kv_cache_memory_bytes", "hint"),  # argparse prefix of the above
    "--num-gpu-blocks-override": ("num_gpu_blocks_override", "int"),
    "--enable-expert-parallel": ("enable_expert_parallel", "bool"), "-ep": ("enable_expert_parallel", "bool"),
    "--no-enable-expert-parallel": ("enable_expert_parallel", "neg"),
    "--limit-mm-per-prompt": ("limit_mm_per_prompt", "mm"),
    "--skip-mm-profiling": ("skip_mm_profiling", "bool"),
    "--no-skip-mm-profiling": ("skip_mm_profiling", "neg"),
    "--disable-hybrid-kv-cache-manager": ("disable_hybrid_kv_cache_manager", "bool"),
    "--disable-sliding-window": ("disable_sliding_window", "bool"),
    "--no-disable-hybrid-kv-cache-manager": ("disable_hybrid_kv_cache_manager", "neg"),
    "--mamba-ssm-cache-dtype": ("mamba_ssm_cache_dtype", "str"),
    "--mamba-cache-dtype": ("mamba_cache_dtype", "str"),
}
# Flags that take a value but do not change the memory plan.
_IGNORED_WITH_VALUE = {
    "--host", "--port", "--served-model-name", "--tokenizer", "--tokenizer-mode", "--config-format",
    "--load-format", "--download-dir", "--api-key", "--chat-template", "--revision", "--uvicorn-log-level",
    "--tool-call-parser", "--reasoning-parser", "--seed", "--hf-token", "--swap-space", "--kv-offloading-size",
    "--kv-offloading-backend", "--distributed-executor-backend", "--root-path", "--attention-backend",
    "--generation-config", "--override-generation-config", "--max-logprobs",
}


def parse_serve_command(argv: list[str] | str) -> tuple[str | None, dict[str, Any], list[str]]:
    """Parse ``vllm serve MODEL --flag value ...``.

    Returns (model, fields for ServeArgs, ignored flags).  Raises FlagError on
    a malformed value.
    """
    args = shlex.split(argv) if isinstance(argv, str) else list(argv)
    model: str | None = None
    fields: dict[str, Any] = {}
    ignored: list[str] = []
    # `VLLM_USE_FLASHINFER_SAMPLER=0 vllm serve ...`: environment assignments before
    # the command; the ones that change memory are read, the rest listed as ignored.
    while args and _ENV_ASSIGNMENT.match(args[0]):
        name, _, value = args.pop(0).partition("=")
        if name == "VLLM_USE_FLASHINFER_SAMPLER":
            if value not in ("0", "1"):
                raise FlagError(f"VLLM_USE_FLASHINFER_SAMPLER={value!r}: vLLM reads it as an integer, use 0 or 1")
            fields["vllm_use_flashinfer_sampler"] = value == "1"
        else:
            ignored.append(f"{name}={value}")
    while args and args[0] in ("vllm", "python", "python3", "-m", "vllm.entrypoints.openai.api_server", "serve"):
        args = args[1:]
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if not tok.startswith("-"):
            if model is None:
                model = tok
            else:
                ignored.append(tok)
            continue
        name, eq, inline = tok.partition("=")
        if name in ("--model",):
            model = inline if eq else (args[i] if i < len(args) else None)
            i += 0 if eq else 1
            continue
        if name not in _FLAGS:
            has_next = i < len(args)
            takes_value = has_next and not eq and (name in _IGNORED_WITH_VALUE or not args[i].startswith("-"))
            ignored.append(tok if eq or not takes_value else f"{tok} {args[i]}")
            if takes_value and not eq:
                i += 1
            continue
        field, kind = _FLAGS[name]
        if kind in ("bool", "neg"):
            if eq:
                fields[field] = inline.lower() in ("1", "true", "yes")
            else:
                fields[field] = kind == "bool"
            continue
        if eq:
            raw = inline
        else:
            if i >= len(args):
                raise FlagError(f"{name} needs a value")
            raw = args[i]
            i += 1
        try:
            if kind == "int":
                fields[field] = int(raw)
            elif kind == "hint":
                if field == "max_model_len" and raw.strip() in ("-1", "auto"):
                    fields[field] = -1
                else:
                    fields[field] = human_readable_int(raw)
            elif kind == "float":
                fields[field] = float(raw)
            elif kind == "mm":
                fields[field] = parse_mm_limits(raw)
            else:
                fields[field] = raw
        except ValueError:
            what = {"float": "number", "mm": 'modality limit, e.g. \'{"image": 2}\''}.get(kind, "integer")
            raise FlagError(f"{name} {raw!r} is not a valid {what}") from None
    return model, fields, ignored


def parse_mm_limits(raw: str) -> dict[str, int]:
    """--limit-mm-per-prompt: JSON ('{"image": 2}') or the older 'image=2,video=0' form."""
    import json

    text = raw.strip()
    try:
        if text.startswith("{"):
            data = json.loads(text)
        else:
            data = {}
            for part in filter(None, (x.strip() for x in text.split(","))):
                k, _, n = part.partition("=")
                data[k.strip()] = int(n)
    except (ValueError, TypeError):
        raise ValueError(f"not a modality limit: {raw!r}") from None
    if not isinstance(data, dict) or not all(isinstance(n, int) and not isinstance(n, bool) for n in data.values()):
        raise ValueError(f"not a modality limit: {raw!r}")
    return data
