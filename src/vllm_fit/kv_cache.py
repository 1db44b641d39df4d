"""KV cache specs, groups, blocks, tokens and concurrency.

Shaped after vLLM's ``KVCacheSpec`` family (vllm/v1/kv_cache_interface.py):
one class per kind of attention, each with its own page size and per-request
memory.  Grouping and block arithmetic follow vllm/v1/core/kv_cache_utils.py
(``get_kv_cache_groups``, ``get_num_blocks``, ``get_max_concurrency_for_kv_cache_config``,
``check_enough_kv_cache_memory``); version differences come from ``VersionRules``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .units import cdiv
from .versions import VersionRules


@dataclass(frozen=True)
class KVContext:
    """What the per-request size of a spec depends on besides its shape."""

    max_model_len: int
    in_flight_tokens: int  # X of the sliding-window formula


@dataclass(frozen=True)
class KVCacheSpec:
    block_size: int

    @property
    def kind(self) -> str:
        raise NotImplementedError

    @property
    def page_size_bytes(self) -> int:
        raise NotImplementedError

    def max_memory_usage_bytes(self, ctx: KVContext) -> int:
        raise NotImplementedError

    def blocks_per_request(self, ctx: KVContext) -> int:
        return cdiv(self.max_memory_usage_bytes(ctx), self.page_size_bytes)


@dataclass(frozen=True)
class FullAttentionSpec(KVCacheSpec):
    """K and V for every token: 2 x block x kv_heads x head_size x dtype."""

    num_kv_heads: int
    head_size: int
    dtype_bytes: float  # 1 for fp8, 2 for bf16/fp16, 4 for fp32

    @property
    def kind(self) -> str:
        return "full_attention"

    @property
    def page_size_bytes(self) -> int:
        return int(2 * self.block_size * self.num_kv_heads * self.head_size * self.dtype_bytes)

    def max_memory_usage_bytes(self, ctx: KVContext) -> int:
        return cdiv(ctx.max_model_len, self.block_size) * self.page_size_bytes


@dataclass(frozen=True)
class SlidingWindowSpec(FullAttentionSpec):
    """Only the window (plus the tokens in flight) is kept per request."""

    sliding_window: int = 0

    @property
    def kind(self) -> str:
        return "sliding_window"

    def max_memory_usage_bytes(self, ctx: KVContext) -> int:
        tokens = min(self.sliding_window - 1 + ctx.in_flight_tokens, ctx.max_model_len)
        return (cdiv(tokens, self.block_size) + 1) * self.page_size_bytes


@dataclass(frozen=True)
class MLAAttentionSpec(KVCacheSpec):
    """DeepSeek-style latent cache: one tensor of kv_lora_rank + rope dims,
    the same on every TP rank."""

    latent_size: int
    dtype_bytes: float

    @property
    def kind(self) -> str:
        return "mla"

    @property
    def page_size_bytes(self) -> int:
        return int(self.block_size * self.latent_size * self.dtype_bytes)

    def max_memory_usage_bytes(self, ctx: KVContext) -> int:
        return cdiv(ctx.max_model_len, self.block_size) * self.page_size_bytes


@dataclass(frozen=True)
class KVGroup:
    spec: KVCacheSpec
    layers: tuple[int, ...]


@dataclass(frozen=True)
class KVLayout:
    """The groups of one worker and the bytes one block costs across them."""

    groups: tuple[KVGroup, ...]
    group_size: int
    padding_layers: int

    @property
    def bytes_per_block(self) -> int:
        # One tensor of page x num_blocks per "slot", shared by one layer of each
        # group: a block costs page x group_size (uniform page sizes).
        return max(g.spec.page_size_bytes for g in self.groups) * self.group_size

    @property
    def block_size(self) -> int:
        return min(g.spec.block_size for g in self.groups)

    def blocks_per_request(self, ctx: KVContext) -> int:
        return sum(g.spec.blocks_per_request(ctx) for g in self.groups)


def group_layers(specs: dict[int, KVCacheSpec], rules: VersionRules) -> KVLayout:
    """vLLM's get_kv_cache_groups for equal page sizes (uniform or hybrid)."""
    if not specs:
        raise ValueError("no attention layers")
    distinct = {}
    for idx, spec in sorted(specs.items()):
        distinct.setdefault(spec, []).append(idx)
    if len(distinct) == 1:
        spec, layers = next(iter(distinct.items()))
        return KVLayout((KVGroup(spec, tuple(layers)),), len(layers), 0)
    counts = [len(v) for v in distinct.values()]
    group_size = min(counts)
    if rules.minor >= 14 and max(counts) < 1.25 * min(counts):
        group_size = max(counts)
    groups: list[KVGroup] = []
    padding = 0
    for spec, layers in distinct.items():
        n_groups = cdiv(len(layers), group_size)
        padding += n_groups * group_size - len(layers)
        for g in range(n_groups):
            groups.append(KVGroup(spec, tuple(layers[g::n_groups])))
    return KVLayout(tuple(groups), group_size, padding)


def num_blocks_for(available_bytes: int, layout: KVLayout) -> int:
    if available_bytes <= 0:
        return 0
    return available_bytes // layout.bytes_per_block


@dataclass(frozen=True)
class KVCapacity:
    num_blocks: int
    blocks_per_request: int
    max_concurrency: float
    kv_cache_tokens: int


def capacity(num_blocks: int, layout: KVLayout, ctx: KVContext, rules: VersionRules) -> KVCapacity:
    bpr = layout.blocks_per_request(ctx)
    conc = num_blocks / bpr if bpr else 0.0
    if rules.kv_tokens_formula == "groups":
        tokens = num_blocks // len(layout.groups) * layout.block_size
    else:
        tokens = int(conc * ctx.max_model_len)
    return KVCapacity(num_blocks, bpr, conc, tokens)


def needed_bytes_one_request(layout: KVLayout, ctx: KVContext, rules: VersionRules) -> int:
    """Memory vLLM requires for one request at max_model_len (check_enough_kv_cache_memory)."""
    if rules.one_request_check == "layers":
        return sum(g.spec.max_memory_usage_bytes(ctx) * len(g.layers) for g in layout.groups)
    page = max(g.spec.page_size_bytes for g in layout.groups)
    if rules.one_request_check == "first_group":
        return layout.group_size * page * layout.groups[0].spec.blocks_per_request(ctx)
    return layout.group_size * page * layout.blocks_per_request(ctx)


def one_request_budget(available_bytes: int, layout: KVLayout, rules: VersionRules) -> int:
    """0.29+: one block is held back for the null block before the check."""
    if rules.one_request_check == "all_groups_null_block":
        return available_bytes - layout.bytes_per_block
    return available_bytes


def estimate_max_model_len(layout: KVLayout, ctx: KVContext, rules: VersionRules, available_bytes: int) -> int:
    """Binary search over [1, max_model_len] as vLLM's estimate_max_model_len."""
    lo, hi, best = 1, ctx.max_model_len, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        trial = KVContext(mid, ctx.in_flight_tokens)
        if needed_bytes_one_request(layout, trial, rules) <= available_bytes:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best
