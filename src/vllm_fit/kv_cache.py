"""KV cache specs, groups, blocks, tokens and concurrency.

Shaped after vLLM's ``KVCacheSpec`` family (vllm/v1/kv_cache_interface.py):
one class per kind of attention or state, each with its own page size and
per-request memory.  Grouping and block arithmetic follow
vllm/v1/core/kv_cache_utils.py (0.33: kv_cache_planning.py):
``get_kv_cache_groups`` (uniform spec, uniform type, page-size unification and
hybrid grouping with padding layers), ``get_num_blocks`` /
``_get_kv_cache_bytes_per_block``, ``get_max_concurrency_for_kv_cache_config``,
``check_enough_kv_cache_memory``.  Version differences come from ``VersionRules``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .units import cdiv
from .versions import VersionRules


class KVGroupingError(ValueError):
    """A layout vLLM cannot group (it raises at start-up); carries vLLM's text."""


@dataclass(frozen=True)
class KVContext:
    """What the per-request size of a spec depends on besides its shape."""

    max_model_len: int
    in_flight_tokens: int  # X of the sliding-window / chunked-local formulas


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

    def with_block_size(self, block_size: int) -> "KVCacheSpec":
        return replace(self, block_size=block_size)


PACKED_KV_DTYPES = ("int8_per_token_head", "fp8_per_token_head", "int4_per_token_head", "nvfp4", "nvfp4_4over6")


def packed_bytes_per_token(kv_cache_dtype: str, num_kv_heads: int, head_size: int) -> int:
    """vLLM 0.33's packed KV formats, as the backend's customize_spec lays them out:
    per-token-head int8/fp8 (Triton): per head (K + V) bytes + two fp32 scales;
    int4: half the bytes + two fp32 scales (v1/attention/backends/triton_attn.py);
    NVFP4 (FlashInfer): 2 slots per head of head/2 fp4 bytes + head/16 fp8 block
    scales (v1/attention/backends/flashinfer.py, utils/torch_utils.py)."""
    if kv_cache_dtype in ("nvfp4", "nvfp4_4over6"):
        return 2 * num_kv_heads * (head_size // 2 + head_size // 16)
    data = head_size // 2 if kv_cache_dtype == "int4_per_token_head" else head_size
    return num_kv_heads * (2 * data + 2 * 4)


@dataclass(frozen=True)
class FullAttentionSpec(KVCacheSpec):
    """K and V for every token: 2 x block x kv_heads x head_size x dtype
    (or a packed format's bytes per token)."""

    num_kv_heads: int
    head_size: int
    dtype_bytes: float  # 1 for fp8, 2 for bf16/fp16, 4 for fp32
    page_size_padded: int | None = None
    packed_bytes_per_token: int | None = None

    @property
    def kind(self) -> str:
        return "full_attention"

    @property
    def real_page_size_bytes(self) -> int:
        return self.block_size * self.bytes_per_token

    @property
    def page_size_bytes(self) -> int:
        return self.page_size_padded or self.real_page_size_bytes

    @property
    def bytes_per_token(self) -> int:
        if self.packed_bytes_per_token is not None:
            return self.packed_bytes_per_token
        return int(2 * self.num_kv_heads * self.head_size * self.dtype_bytes)

    def max_memory_usage_bytes(self, ctx: KVContext) -> int:
        return cdiv(ctx.max_model_len, self.block_size) * self.page_size_bytes

    def as_full(self) -> "FullAttentionSpec":
        return FullAttentionSpec(self.block_size, self.num_kv_heads, self.head_size, self.dtype_bytes,
                                 self.page_size_padded, self.packed_bytes_per_token)


@dataclass(frozen=True)
class SlidingWindowSpec(FullAttentionSpec):
    """Only the window (plus the tokens in flight) is kept per request:
    ``cdiv(min(window - 1 + X, max_model_len), block) + 1`` blocks."""

    sliding_window: int = 0

    @property
    def kind(self) -> str:
        return "sliding_window"

    def max_memory_usage_bytes(self, ctx: KVContext) -> int:
        tokens = min(self.sliding_window - 1 + ctx.in_flight_tokens, ctx.max_model_len)
        return (cdiv(tokens, self.block_size) + 1) * self.page_size_bytes


@dataclass(frozen=True)
class ChunkedLocalAttentionSpec(FullAttentionSpec):
    """Llama-4 local layers: ``cdiv(min(chunk + X, max_model_len), block)`` blocks."""

    attention_chunk_size: int = 0

    @property
    def kind(self) -> str:
        return "chunked_local_attention"

    def max_memory_usage_bytes(self, ctx: KVContext) -> int:
        tokens = min(self.attention_chunk_size + ctx.in_flight_tokens, ctx.max_model_len)
        return cdiv(tokens, self.block_size) * self.page_size_bytes


FP8_DS_MLA_BYTES_PER_TOKEN = 656  # vllm/v1/kv_cache_interface.py MLAAttentionSpec (fp8_ds_mla)


@dataclass(frozen=True)
class MLAAttentionSpec(KVCacheSpec):
    """DeepSeek-style latent cache: one tensor of kv_lora_rank + rope dims per
    token, the same on every TP rank (num_kv_heads = 1)."""

    latent_size: int
    dtype_bytes: float
    cache_dtype_str: str = "auto"

    @property
    def kind(self) -> str:
        return "mla"

    @property
    def bytes_per_token(self) -> int:
        if self.cache_dtype_str == "fp8_ds_mla":
            return FP8_DS_MLA_BYTES_PER_TOKEN
        return int(self.latent_size * self.dtype_bytes)

    @property
    def page_size_bytes(self) -> int:
        return self.block_size * self.bytes_per_token

    def max_memory_usage_bytes(self, ctx: KVContext) -> int:
        return cdiv(ctx.max_model_len, self.block_size) * self.page_size_bytes


@dataclass(frozen=True)
class MambaSpec(KVCacheSpec):
    """One request's recurrent state (conv + SSM) in one page, padded to the
    attention page.  Pages per request: 1 (+ speculative) without prefix
    caching; mode "all" (0.14-0.2x): one per block of max_model_len; mode
    "align" (0.19+): 2 (+ speculative, + prefill checkpoint blocks from 0.32)."""

    state_bytes: int
    page_size_padded: int | None = None
    mamba_cache_mode: str = "none"  # none | all | align
    num_speculative_blocks: int = 0
    num_prefill_checkpoint_blocks: int = 0
    linear_attention: bool = False  # gated delta net (same arithmetic, other name)

    @property
    def kind(self) -> str:
        return "linear_attention" if self.linear_attention else "mamba"

    @property
    def page_size_bytes(self) -> int:
        return self.page_size_padded or self.state_bytes

    def max_memory_usage_bytes(self, ctx: KVContext) -> int:
        if self.mamba_cache_mode == "all":
            return cdiv(ctx.max_model_len, self.block_size) * self.page_size_bytes
        if self.mamba_cache_mode == "align":
            return self.page_size_bytes * (2 + self.num_speculative_blocks + self.num_prefill_checkpoint_blocks)
        return self.page_size_bytes * (1 + self.num_speculative_blocks)


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
    uniform_type: bool = False  # one group whose layers differ in shape: page = sum of pages
    layer_pages: tuple[int, ...] = ()  # uniform_type: each layer's page

    @property
    def bytes_per_block(self) -> int:
        # One tensor of page x num_blocks per "slot", shared by one layer of
        # each group: a block costs page x group_size (uniform page sizes);
        # a uniform-type group costs the sum of its layers' pages.
        if self.uniform_type:
            return sum(self.layer_pages)
        return max(g.spec.page_size_bytes for g in self.groups) * self.group_size

    @property
    def page_size_bytes(self) -> int:
        return max(g.spec.page_size_bytes for g in self.groups)

    @property
    def block_size(self) -> int:
        return min(g.spec.block_size for g in self.groups)

    def blocks_per_request(self, ctx: KVContext) -> int:
        return sum(g.spec.blocks_per_request(ctx) for g in self.groups)

    def describe(self) -> list[dict[str, object]]:
        return [
            {"kind": g.spec.kind, "layers": list(g.layers), "block_size": g.spec.block_size,
             "page_size_bytes": g.spec.page_size_bytes}
            for g in self.groups
        ]


def promote_local_specs(specs: dict[int, KVCacheSpec]) -> dict[int, KVCacheSpec]:
    """--disable-hybrid-kv-cache-manager (unify_hybrid_kv_cache_specs): sliding
    and chunked-local layers next to full layers reserve full-length KV."""
    kinds = {type(s) for s in specs.values()}
    has_full = FullAttentionSpec in kinds or MLAAttentionSpec in kinds
    if not has_full or not (kinds & {SlidingWindowSpec, ChunkedLocalAttentionSpec}):
        return specs
    return {
        i: (s.as_full() if isinstance(s, (SlidingWindowSpec, ChunkedLocalAttentionSpec)) else s)
        for i, s in specs.items()
    }


def _uniform_type(specs: dict[int, KVCacheSpec]) -> bool:
    """UniformTypeKVCacheSpecs.is_uniform_type: same kind (and window), any shape."""
    first = next(iter(specs.values()))
    if isinstance(first, SlidingWindowSpec):
        return all(isinstance(s, SlidingWindowSpec) and s.sliding_window == first.sliding_window for s in specs.values())
    if isinstance(first, ChunkedLocalAttentionSpec):
        return all(isinstance(s, ChunkedLocalAttentionSpec) and s.attention_chunk_size == first.attention_chunk_size
                   for s in specs.values())
    if isinstance(first, MambaSpec):
        return False
    return all(type(s) is type(first) for s in specs.values())


def unify_page_sizes(specs: dict[int, KVCacheSpec], rules: VersionRules) -> dict[int, KVCacheSpec]:
    """unify_kv_cache_spec_page_size (0.14+): smaller pages get a larger block
    size (the page must divide the largest); Mamba pages are padded."""
    pages = {s.page_size_bytes for s in specs.values()}
    if len(pages) <= 1:
        return specs
    if not rules.unify_kv_page_sizes:
        raise KVGroupingError(
            "NotImplementedError: the layers' KV cache page sizes differ and vLLM "
            f"{rules.version} cannot group them (page sizes {sorted(pages)})"
        )
    top = max(pages)
    out: dict[int, KVCacheSpec] = {}
    for i, s in specs.items():
        if s.page_size_bytes == top:
            out[i] = s
        elif isinstance(s, MambaSpec):
            out[i] = replace(s, page_size_padded=top)
        elif top % s.page_size_bytes == 0:
            out[i] = s.with_block_size(s.block_size * (top // s.page_size_bytes))
        else:
            raise KVGroupingError(
                f"NotImplementedError: The page size of the layer is not divisible by the maximum page size "
                f"({s.page_size_bytes} vs {top}). Cannot unify by adjusting block_size."
            )
    return out


def group_layers(specs: dict[int, KVCacheSpec], rules: VersionRules, disable_hybrid: bool = False) -> KVLayout:
    """vLLM's get_kv_cache_groups for one worker's layers (index -> spec)."""
    if not specs:
        raise ValueError("no attention layers")
    if disable_hybrid:
        specs = promote_local_specs(specs)
        if any(isinstance(s, MambaSpec) for s in specs.values()) and len({type(s) for s in specs.values()}) > 1:
            raise KVGroupingError(
                "ValueError: Hybrid KV cache manager is disabled but failed to convert the KV cache specs "
                "to one unified type."
            )
    distinct: dict[KVCacheSpec, list[int]] = {}
    for idx, spec in sorted(specs.items()):
        distinct.setdefault(spec, []).append(idx)
    if len(distinct) == 1:
        spec, layers = next(iter(distinct.items()))
        return KVLayout((KVGroup(spec, tuple(layers)),), len(layers), 0)
    if _uniform_type(specs):
        # One group; a block costs the sum of the layers' pages.
        first = specs[min(specs)]
        layers = tuple(sorted(specs))
        return KVLayout((KVGroup(first, layers),), len(layers), 0, uniform_type=True,
                        layer_pages=tuple(specs[i].page_size_bytes for i in layers))
    specs = unify_page_sizes(specs, rules)
    distinct = {}
    for idx, spec in sorted(specs.items()):
        distinct.setdefault(spec, []).append(idx)
    counts = [len(v) for v in distinct.values()]
    group_size = min(counts)
    if rules.group_size_max_ratio and max(counts) < rules.group_size_max_ratio * min(counts):
        group_size = max(counts)
    groups: list[KVGroup] = []
    padding = 0
    for spec, layers in distinct.items():
        n_groups = cdiv(len(layers), group_size)
        padding += n_groups * group_size - len(layers)
        for g in range(n_groups):
            groups.append(KVGroup(spec, tuple(layers[g::n_groups])))
    return KVLayout(tuple(groups), group_size, padding)


def project_to_worker(layout: KVLayout, start: int, end: int) -> KVLayout:
    """A pipeline stage's view of the global groups (get_kv_cache_configs /
    _project_kv_cache_groups_to_worker, every version 0.11-0.33): every group
    stays, with only this stage's layers; a block costs page x the most layers
    any group has here."""
    groups = tuple(KVGroup(g.spec, tuple(i for i in g.layers if start <= i < end)) for g in layout.groups)
    if all(len(g.layers) == len(o.layers) for g, o in zip(groups, layout.groups)):
        return layout
    if layout.uniform_type:
        pages = dict(zip(layout.groups[0].layers, layout.layer_pages))
        kept = groups[0].layers
        return replace(layout, groups=groups, group_size=len(kept), layer_pages=tuple(pages[i] for i in kept))
    return replace(layout, groups=groups, group_size=max(len(g.layers) for g in groups))


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
    """get_max_concurrency_for_kv_cache_config and the "KV cache size" tokens.
    (0.11-0.26 divide by cdiv(sum of max bytes, page); every spec's bytes are
    whole pages, so that equals the per-group sum used from 0.27.)"""
    bpr = layout.blocks_per_request(ctx)
    conc = num_blocks / bpr if bpr else 0.0
    if rules.kv_tokens_formula == "groups":
        tokens = num_blocks // len(layout.groups) * layout.block_size
    else:
        tokens = int(conc * ctx.max_model_len)
    return KVCapacity(num_blocks, bpr, conc, tokens)


def needed_bytes_one_request(layout: KVLayout, ctx: KVContext, rules: VersionRules) -> int:
    """Memory vLLM requires for one request at max_model_len (check_enough_kv_cache_memory)."""
    if layout.uniform_type:
        # UniformTypeKVCacheSpecs: the sum over its layers in every version.
        g = layout.groups[0]
        return layout.bytes_per_block * g.spec.blocks_per_request(ctx)
    if rules.one_request_check == "layers":
        # 0.11-0.13: each worker's own layers, each with its own need
        return sum(g.spec.max_memory_usage_bytes(ctx) * len(g.layers) for g in layout.groups)
    if rules.one_request_check == "first_group":
        return layout.bytes_per_block * layout.groups[0].spec.blocks_per_request(ctx)
    return layout.bytes_per_block * layout.blocks_per_request(ctx)


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
