"""Mamba / linear-attention layers: the per-request state and the mixer weights.

State shapes follow ``MambaStateShapeCalculator`` and dtypes
``MambaStateDtypeCalculator`` (vllm/model_executor/layers/mamba/mamba_utils.py),
called by each hybrid model's ``get_mamba_state_shape_from_config``:

* Mamba-2 (granite-4.0-h, Nemotron-H, Bamba): conv state
  ``(conv_kernel - 1) x (intermediate + 2 * n_groups * d_state) / tp`` and SSM
  state ``heads / tp x head_dim x d_state``; n_groups is raised to tp when it
  does not divide (``extra_groups_for_head_shards``).
* Mamba-1 (Jamba): conv ``(conv_kernel - 1) x intermediate / tp``, SSM
  ``intermediate / tp x d_state``.
* Gated delta net (Qwen3-Next linear attention): conv ``(conv_kernel - 1) x
  (2 * k_heads * k_dim + v_heads * v_dim) / tp``, recurrent ``v_heads / tp x
  v_dim x k_dim``.

Conv state takes the model dtype; the SSM state takes ``--mamba-ssm-cache-dtype``
or, for Nemotron-H, the config's ``mamba_ssm_cache_dtype`` (default float32,
``NemotronHForCausalLMConfig`` in vllm/model_executor/models/config.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from .errors import ConfigError

_DT_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class MambaSpec:
    mixer: str  # "mamba2" | "mamba1" | "gdn"
    hidden_size: int = 0
    intermediate_size: int = 0  # mamba1/2: expand * hidden (Nemotron-H: heads * head_dim)
    num_heads: int = 0  # mamba2 heads; gdn: value heads
    head_dim: int = 0  # mamba2 head dim; gdn: value head dim
    state_size: int = 0  # d_state (mamba) ; gdn: key head dim
    n_groups: int = 1  # mamba2 groups; gdn: key heads
    conv_kernel: int = 4
    chunk_size: int = 256  # Mamba-2 SSD chunk (prefix-caching block alignment, 0.14-0.19 "all" mode)
    dt_rank: int = 0  # mamba1
    conv_bias: bool = True
    proj_bias: bool = False
    ssm_dtype: str | None = None  # config-level default for the SSM state dtype (Nemotron-H)
    # vllm model file declares SupportsMambaPrefixCaching (mode "all" in 0.14-0.2x)
    supports_all_mode: bool = True

    @property
    def conv_dim(self) -> int:
        if self.mixer == "mamba2":
            return self.intermediate_size + 2 * self.n_groups * self.state_size
        if self.mixer == "gdn":
            return 2 * self.n_groups * self.state_size + self.num_heads * self.head_dim
        return self.intermediate_size


def state_shapes(spec: MambaSpec, tp: int, num_spec: int = 0) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(conv state shape, SSM/recurrent state shape) on one TP rank."""
    if spec.mixer == "mamba2":
        groups = spec.n_groups if spec.n_groups % tp == 0 else tp  # extra_groups_for_head_shards
        conv_dim = spec.intermediate_size + 2 * groups * spec.state_size
        return (conv_dim // tp, spec.conv_kernel - 1 + num_spec), (spec.num_heads // tp, spec.head_dim, spec.state_size)
    if spec.mixer == "mamba1":
        return (spec.intermediate_size // tp, spec.conv_kernel - 1), (spec.intermediate_size // tp, spec.state_size)
    return (spec.conv_dim // tp, spec.conv_kernel - 1 + num_spec), (spec.num_heads // tp, spec.head_dim, spec.state_size)


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def state_page_bytes(spec: MambaSpec, tp: int, model_dtype_bytes: int, ssm_dtype: str = "auto") -> int:
    """MambaSpec.page_size_bytes before padding: one request's whole state."""
    conv, ssm = state_shapes(spec, tp)
    if ssm_dtype == "auto":
        ssm_bytes = _DT_BYTES[spec.ssm_dtype] if spec.ssm_dtype else model_dtype_bytes
    else:
        ssm_bytes = _DT_BYTES[ssm_dtype]
    return _prod(conv) * model_dtype_bytes + _prod(ssm) * ssm_bytes


# ------------------------------------------------------------------ parsing

def _pos(get: Callable[..., Any], where: str, *keys: str, default: int | None = None) -> int:
    for k in keys:
        v = get(k)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= 1 << 20:
                raise ConfigError(f"{where}: {k!r} must be a positive integer, got {v!r}"[:200])
            return v
    if default is None:
        raise ConfigError(f"{where} has no {keys[0]!r}", "It sizes the Mamba state; pass the model's full config.json.")
    return default


def mamba_from_config(arch: str, get: Callable[..., Any], hidden: int, where: str) -> MambaSpec:
    return replace(_mamba_from_config(arch, get, hidden, where), hidden_size=hidden)


def _mamba_from_config(arch: str, get: Callable[..., Any], hidden: int, where: str) -> MambaSpec:
    if arch in ("GraniteMoeHybridForCausalLM", "BambaForCausalLM"):
        return MambaSpec(
            "mamba2",
            intermediate_size=_pos(get, where, "mamba_expand", default=2) * hidden,
            num_heads=_pos(get, where, "mamba_n_heads"),
            head_dim=_pos(get, where, "mamba_d_head"),
            state_size=_pos(get, where, "mamba_d_state"),
            n_groups=_pos(get, where, "mamba_n_groups", default=1),
            conv_kernel=_pos(get, where, "mamba_d_conv", default=4),
            chunk_size=_pos(get, where, "mamba_chunk_size", default=256),
            conv_bias=bool(get("mamba_conv_bias") if get("mamba_conv_bias") is not None else True),
            proj_bias=bool(get("mamba_proj_bias") or False),
        )
    if arch == "NemotronHForCausalLM":
        heads = _pos(get, where, "mamba_num_heads")
        hd = _pos(get, where, "mamba_head_dim")
        ssm_dt = get("mamba_ssm_cache_dtype") or "float32"
        if ssm_dt not in _DT_BYTES:
            raise ConfigError(f"{where}: mamba_ssm_cache_dtype {ssm_dt!r} is not float32/bfloat16/float16"[:200])
        return MambaSpec(
            "mamba2", intermediate_size=heads * hd, num_heads=heads, head_dim=hd,
            state_size=_pos(get, where, "ssm_state_size"), n_groups=_pos(get, where, "n_groups", default=1),
            conv_kernel=_pos(get, where, "conv_kernel", default=4), chunk_size=_pos(get, where, "chunk_size", default=256),
            conv_bias=bool(get("use_conv_bias") if get("use_conv_bias") is not None else True),
            proj_bias=bool(get("use_bias") or False), ssm_dtype=ssm_dt,
        )
    if arch == "JambaForCausalLM":
        d_state = _pos(get, where, "mamba_d_state", default=16)
        return MambaSpec(
            "mamba1", intermediate_size=_pos(get, where, "mamba_expand", default=2) * hidden, state_size=d_state,
            conv_kernel=_pos(get, where, "mamba_d_conv", default=4),
            dt_rank=_pos(get, where, "mamba_dt_rank", default=-(-hidden // 16)),
            conv_bias=bool(get("mamba_conv_bias") if get("mamba_conv_bias") is not None else True),
            proj_bias=bool(get("mamba_proj_bias") or False),
        )
    if arch == "Qwen3NextForCausalLM":
        return MambaSpec(
            "gdn", num_heads=_pos(get, where, "linear_num_value_heads"), head_dim=_pos(get, where, "linear_value_head_dim"),
            state_size=_pos(get, where, "linear_key_head_dim"), n_groups=_pos(get, where, "linear_num_key_heads"),
            conv_kernel=_pos(get, where, "linear_conv_kernel_dim", default=4), conv_bias=False,
            supports_all_mode=False,
        )
    raise ConfigError(f"{where}: {arch} has no Mamba layers")


# ------------------------------------------------------------------ weights

def mixer_tensors(spec: Any, layer_index: int, prefix: str, dtype: str = "BF16") -> list:
    """The checkpoint tensors of one Mamba / linear-attention mixer (HF names
    under ``prefix``, e.g. "model.layers.3.mamba").  ``spec`` is a MambaSpec
    or a ModelSpec (its ``.mamba``)."""
    from .weights import Tensor  # weights imports model_spec; import lazily

    spec = getattr(spec, "mamba", None) or spec
    hidden = spec.hidden_size

    p = prefix.rstrip(".")
    t: list[Tensor] = []

    def add(name: str, *shape: int) -> None:
        t.append(Tensor(f"{p}.{name}", tuple(shape), dtype))

    if spec.mixer == "mamba2":
        inter, h = spec.intermediate_size, spec.num_heads
        conv = spec.conv_dim
        add("in_proj.weight", inter + conv + h, hidden)
        add("conv1d.weight", conv, 1, spec.conv_kernel)
        if spec.conv_bias:
            add("conv1d.bias", conv)
        add("dt_bias", h)
        add("A_log", h)
        add("D", h)
        add("norm.weight", inter)
        add("out_proj.weight", hidden, inter)
        if spec.proj_bias:
            add("out_proj.bias", hidden)
    elif spec.mixer == "mamba1":
        inter, n = spec.intermediate_size, spec.state_size
        add("in_proj.weight", 2 * inter, hidden)
        add("conv1d.weight", inter, 1, spec.conv_kernel)
        if spec.conv_bias:
            add("conv1d.bias", inter)
        add("x_proj.weight", spec.dt_rank + 2 * n, inter)
        add("dt_proj.weight", inter, spec.dt_rank)
        add("dt_proj.bias", inter)
        add("A_log", inter, n)
        add("D", inter)
        add("out_proj.weight", hidden, inter)
        add("dt_layernorm.weight", spec.dt_rank)
        add("b_layernorm.weight", n)
        add("c_layernorm.weight", n)
    else:
        key_dim = spec.n_groups * spec.state_size
        value_dim = spec.num_heads * spec.head_dim
        add("in_proj_qkvz.weight", 2 * key_dim + 2 * value_dim, hidden)
        add("in_proj_ba.weight", 2 * spec.num_heads, hidden)
        add("conv1d.weight", 2 * key_dim + value_dim, 1, spec.conv_kernel)
        add("dt_bias", spec.num_heads)
        add("A_log", spec.num_heads)
        add("norm.weight", spec.head_dim)
        add("out_proj.weight", hidden, value_dim)
    return t
