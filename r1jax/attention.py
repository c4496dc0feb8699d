"""Attention for long sequences: online softmaxes over key blocks, and the fused kernels of TPUs
and GPUs.

`blockwise_attention` (training) never holds a [T, T] matrix; `decode_attention` (sampling)
reads only the filled part of the KV cache.

`model.forward` without a cache (every training forward: SFT, GRPO's log-probs, distillation,
the reference model) runs the kind `attention_kind` picks from `ModelConfig.attention`:
'dense' ([T, T] scores in model.py), 'blockwise', 'splash' (`splash_attention`, the Pallas TPU
kernel) or 'cudnn' (`cudnn_attention`, cuDNN's fused kernel on an NVIDIA GPU). All apply the
same mask rules: causal, never a padding key, only keys of the query's own packed document,
and each query always sees itself (so a padding row's softmax stays finite).

Blockwise attention's memory is linear in T: a query block sees one [block, block] score tile
at a time, key blocks entirely in a query block's future are skipped (`lax.cond`, so about half
the tiles are never computed), and each query block is rematerialized in the backward pass
(`jax.checkpoint`), so what the backward keeps is the queries, keys and values, never the
scores. The masks are built per tile from the row's key mask and segment ids.

Einsum legend as in model.py: B batch, K kv heads, G query heads per kv head, H head dim,
Q / S the query / key positions of one block.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from r1jax.config import ModelConfig
from r1jax.sharding import logical_spec

__all__ = ["attention_kind", "dense_mask", "blockwise_attention", "splash_attention", "cudnn_attention",
           "decode_attention"]


def attention_kind(cfg: ModelConfig, T: int, backend: str | None = None) -> str:
    """The attention a cache-less forward over T tokens runs on `backend` ('cpu', 'gpu', 'tpu';
    default: JAX's). 'auto' is dense when the sequence fits in one block (one tile: the kernels
    compute the same, dense with the fewest ops) and beyond it the backend's long-sequence
    kernel: splash on a TPU, cuDNN's on a GPU when it supports the dtype and shape, blockwise
    otherwise (a CPU). An explicit 'cudnn' off a GPU is an error: nothing else can run it."""
    backend = backend or jax.default_backend()
    if cfg.attention == "cudnn" and backend != "gpu":
        raise ValueError(f"ModelConfig.attention='cudnn' needs a GPU backend, but JAX's backend is {backend!r}")
    if cfg.attention != "auto":
        return cfg.attention
    if T <= cfg.attention_block:
        return "dense"
    if backend == "tpu":
        return "splash"
    # cuDNN's fused kernel takes 16-bit inputs and head dims that are multiples of 8 up to 128
    # (256 from Hopper on); with a mask (our padding and segments) training needs an even length
    if backend == "gpu" and cfg.dtype in ("bfloat16", "float16") and cfg.head_dim % 8 == 0 and \
            cfg.head_dim <= 128 and T % 2 == 0:
        return "cudnn"
    return "blockwise"


def tile_size(kind: str, block: int, T: int) -> int:
    """The tile (query and key block) `kind`'s kernel runs a T-token sequence in: blockwise's
    `block`, at most T; splash's rounded up to its 128 lanes, at most T rounded up to them."""
    if kind == "splash":
        return 128 * min(-(-block // 128), -(-T // 128))
    return min(block, T)


def tiled_length(cfg: ModelConfig, T: int, backend: str | None = None) -> int:
    """T as the attention kernel runs it: padded to whole tiles (blockwise, splash), else T. A
    row of packed rollouts this wide costs the attention no more than one of T tokens, so the
    packer fills it (r1jax.stages.grpo). A user's module (`model.FlaxModel`) runs its own
    attention: T."""
    if not isinstance(cfg, ModelConfig):
        return T
    kind = attention_kind(cfg, T, backend)
    if kind not in ("blockwise", "splash"):
        return T
    b = tile_size(kind, cfg.attention_block, T)
    return -(-T // b) * b


def dense_mask(key_mask: jax.Array, segment_ids: jax.Array | None) -> jax.Array:
    """[B, T, T]: which keys each query may see. Causal, never a padding key (key_mask [B, T]
    False), only its own segment (segment_ids [B, T] or None); each query may always see itself
    so that a padding row has a finite softmax (its output is discarded anyway)."""
    T = key_mask.shape[1]
    allowed = (jnp.tril(jnp.ones((T, T), bool))[None] & key_mask.astype(bool)[:, None, :]) | jnp.eye(T, dtype=bool)
    if segment_ids is not None:
        allowed = allowed & (segment_ids[:, :, None] == segment_ids[:, None, :])
    return allowed


def _online_softmax(carry: tuple, s: jax.Array, allowed: jax.Array, mix) -> tuple:
    """One key block of an online softmax. carry = (running max m, running sum, weighted values
    acc), all float32; s: the block's float32 scores [..., S]; allowed: broadcastable to s;
    mix(p) -> float32 [..., H]: the block's values weighted by p [..., S]. Masked keys weigh
    exactly 0. The running max only shifts the exponent (the result does not depend on it), so
    no gradient flows through it."""
    m, total, acc = carry
    s = jnp.where(allowed, s, jnp.finfo(jnp.float32).min)
    m_new = jax.lax.stop_gradient(jnp.maximum(m, s.max(-1)))
    p = jnp.where(allowed, jnp.exp(s - m_new[..., None]), 0.0)
    scale = jnp.exp(m - m_new)
    return m_new, total * scale + p.sum(-1), acc * scale[..., None] + mix(p)


def blockwise_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array,
                        segment_ids: jax.Array | None, *, block: int, dtype) -> jax.Array:
    """Causal attention of q [B, T, N, H] over keys k [B, K, H, T] and values v [B, K, T, H]
    (the layouts `model._layer` builds) -> [B, T, N, H] in `dtype`. key_mask [B, T] is False at
    padding; segment_ids [B, T] (or None) separates packed documents. Scores and the softmax are
    float32, probabilities are cast to `dtype` before they weight the values (as the dense path
    does), and the weighted sum is accumulated in float32."""
    B, T, N, H = q.shape
    K = k.shape[1]
    G = N // K
    b = tile_size("blockwise", block, T)
    n = math.ceil(T / b)
    pad = n * b - T
    if pad:  # padded keys are masked; padded queries are cut off at the end
        q = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0)))
        k = jnp.pad(k, ((0, 0), (0, 0), (0, 0), (0, pad)))
        v = jnp.pad(v, ((0, 0), (0, 0), (0, pad), (0, 0)))
        key_mask = jnp.pad(key_mask, ((0, 0), (0, pad)))
    seg = jnp.zeros((B, n * b), jnp.int32) if segment_ids is None else jnp.pad(segment_ids, ((0, 0), (0, pad)))
    # [n, ...] stacks of blocks
    qs = (q.reshape(B, n, b, K, G, H) * jnp.asarray(H ** -0.5, q.dtype)).astype(dtype).transpose(1, 0, 3, 4, 2, 5)
    ks = k.astype(dtype).reshape(B, K, H, n, b).transpose(3, 0, 1, 2, 4)  # [n, B, K, H, S]
    vs = v.astype(dtype).reshape(B, K, n, b, H).transpose(2, 0, 1, 3, 4)  # [n, B, K, S, H]
    kms = key_mask.astype(bool).reshape(B, n, b).transpose(1, 0, 2)  # [n, B, S]
    segs = seg.reshape(B, n, b).transpose(1, 0, 2)  # [n, B, Q]
    within = jnp.arange(b)
    # The interval of segment ids of each block's real tokens [n, B]. Two blocks share a
    # document only if their intervals overlap in some row, so a tile between two packed
    # documents (ids in position order, `data.pack_rollouts`) is skipped like a causal one;
    # without segment ids every interval is [0, 0] and nothing more is skipped.
    lo = jnp.where(kms, segs, jnp.iinfo(jnp.int32).max).min(-1)
    hi = jnp.where(kms, segs, -1).max(-1)

    @jax.checkpoint
    def query_block(i, qb, seg_q):
        """One query block qb [B, K, G, Q, H] against key blocks 0..i -> [B, K, G, Q, H] float32."""
        def key_block(carry, j):
            def tile(carry):
                s = jnp.einsum("BKGQH,BKHS->BKGQS", qb, ks[j], preferred_element_type=jnp.float32)
                q_pos, k_pos = i * b + within, j * b + within
                allowed = ((q_pos[:, None] >= k_pos[None, :])[None] & kms[j][:, None, :]) | \
                    (q_pos[:, None] == k_pos[None, :])[None]
                allowed = (allowed & (seg_q[:, :, None] == segs[j][:, None, :]))[:, None, None]  # [B, 1, 1, Q, S]
                return _online_softmax(carry, s, allowed, lambda p: jnp.einsum(
                    "BKGQS,BKSH->BKGQH", p.astype(dtype), vs[j], preferred_element_type=jnp.float32))
            # the diagonal tile always: each query sees itself (a padding block's softmax stays finite)
            shared = jnp.any((lo[i] <= hi[j]) & (lo[j] <= hi[i]))
            return jax.lax.cond((j == i) | ((j < i) & shared), tile, lambda c: c, carry), None

        init = (jnp.full((B, K, G, b), jnp.finfo(jnp.float32).min), jnp.zeros((B, K, G, b)),
                jnp.zeros((B, K, G, b, H)))
        (_, total, acc), _ = jax.lax.scan(key_block, init, jnp.arange(n))
        return acc / total[..., None]

    def body(_, xs):
        return None, query_block(*xs).astype(dtype)

    _, out = jax.lax.scan(body, None, (jnp.arange(n), qs, segs))  # [n, B, K, G, Q, H]
    return out.transpose(1, 0, 4, 2, 3, 5).reshape(B, n * b, N, H)[:, :T]


def _per_device(f, q, k, v, seg):
    """f(q [B, N, T, H], k [B, K, T, H], v [B, K, T, H], seg [B, T]) -> [B, N, T, H], run by each
    device on its own rows (and heads, where the KV heads split over the mesh as the query heads
    do, so that every query head keeps its KV head) under the ambient mesh: a Pallas kernel is
    opaque to XLA's partitioner."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return f(q, k, v, seg)
    batch = logical_spec(("batch",), q.shape[:1], mesh)[0]
    heads = logical_spec(("kv_heads",), k.shape[1:2], mesh)[0]
    spec = P(batch, heads)
    # check_vma off: the kernel's pallas_call does not say how its outputs vary over the mesh
    return jax.shard_map(f, in_specs=(spec, spec, spec, P(batch)), out_specs=spec, check_vma=False)(q, k, v, seg)


def splash_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array,
                     segment_ids: jax.Array | None, *, block: int, dtype) -> jax.Array:
    """`blockwise_attention` (same arguments and layouts) by the Pallas TPU splash kernel
    (jax.experimental.pallas.ops.tpu.splash_attention): a fused online softmax that skips the
    tiles above the diagonal and keeps for the backward pass q, k, v, the output and the
    log-sum-exp, never a [T, T] tile. Off a TPU it
    runs in Pallas interpret mode (plain XLA ops: how the tests check it on a CPU; slow).

    The kernel's blocks are multiples of its 128 lanes: `block` rounded up to one, at most T
    rounded up to one; T is padded to a whole number of blocks. Its only masks are causal and
    equal segment ids, so the key mask becomes segments: every padding position (and the tail
    added here) gets a segment of its own. A real query then sees exactly what it sees in the
    dense path; a padding query sees only itself (its output is its own value), where dense
    also lets it see the earlier real keys of its segment. Scores, the softmax and the weighted
    sum are float32 (the kernel's own; probabilities are not cast to `dtype`)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm
    B, T, N, H = q.shape
    b = tile_size("splash", block, T)
    pad = -(-T // b) * b - T
    seg = jnp.zeros((B, T), jnp.int32) if segment_ids is None else segment_ids.astype(jnp.int32)
    seg = jnp.pad(seg, ((0, 0), (0, pad)))
    seg = jnp.where(jnp.pad(key_mask.astype(bool), ((0, 0), (0, pad))), seg, seg.max() + 1 + jnp.arange(T + pad))
    q = jnp.pad((q * jnp.asarray(H ** -0.5, q.dtype)).astype(dtype), ((0, 0), (0, pad), (0, 0), (0, 0)))
    k = jnp.pad(k.astype(dtype), ((0, 0), (0, 0), (0, 0), (0, pad)))
    v = jnp.pad(v.astype(dtype), ((0, 0), (0, 0), (0, pad), (0, 0)))

    def run(q, k, v, seg):  # one device's rows: q [B, N, T, H], k and v [B, K, T, H], seg [B, T]
        n, t = q.shape[1:3]
        kernel = sk.make_splash_mha(
            sm.MultiHeadMask([sm.CausalMask((t, t))] * n), head_shards=1, q_seq_shards=1,
            block_sizes=sk.BlockSizes(block_q=b, block_kv=b, block_q_dkv=b, block_kv_dkv=b, block_q_dq=b,
                                      block_kv_dq=b),
            interpret=jax.default_backend() != "tpu")
        return jax.vmap(lambda q, k, v, s: kernel(q, k, v, segment_ids=sk.SegmentIds(s, s)))(q, k, v, seg)

    out = _per_device(run, q.transpose(0, 2, 1, 3), k.transpose(0, 1, 3, 2), v, seg)
    return out.transpose(0, 2, 1, 3)[:, :T].astype(dtype)


def cudnn_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array,
                    segment_ids: jax.Array | None, *, dtype, implementation: str = "cudnn") -> jax.Array:
    """`blockwise_attention` (same arguments, layouts and result) by `jax.nn.dot_product_attention`
    with cuDNN's fused (flash) kernel on an NVIDIA GPU. Padding (left or right) and packed
    segments are not spans cuDNN's sequence lengths can say, so the mask is `dense_mask` as a
    [B, 1, T, T] boolean, which cuDNN turns into an additive bias in `dtype`: 2 bytes a token
    pair a row, shared by the heads (the [B, N, T, T] float32 scores are never held);
    `is_causal` lets it skip the tiles above the diagonal. Scores and the softmax are float32
    inside the kernel. `implementation='xla'` makes the same call with XLA's reference, which
    runs anywhere (how the tests check the arguments on a CPU)."""
    H = q.shape[-1]
    return jax.nn.dot_product_attention(
        (q * jnp.asarray(H ** -0.5, q.dtype)).astype(dtype), k.transpose(0, 3, 1, 2).astype(dtype),
        v.transpose(0, 2, 1, 3).astype(dtype), mask=dense_mask(key_mask, segment_ids)[:, None], scale=1.0,
        is_causal=True, implementation=implementation)


def decode_attention(q: jax.Array, k_cache: jax.Array, v_cache: jax.Array, allowed: jax.Array, filled: jax.Array,
                     own: tuple | None, *, block: int, dtype) -> jax.Array:
    """One decode step's attention that reads only the filled part of the KV cache: q [B, 1, N, H]
    against cache keys [B, K, H, S] and values [B, K, S, H] where allowed [B, 1, S], of which
    only the first `filled` slots (a traced scalar) can hold keys; `own` = (k [B, K, H, 1],
    v [B, K, 1, H], allowed [B, 1, 1]) is the step's own key when it is not in the cache yet
    (the layer scan) -> [B, 1, N, H] in `dtype`.

    The cache is read `block` slots at a time and blocks at or past `filled` are skipped
    (`lax.cond`), so a step at position t reads O(t) slots, not the whole budget: R1's token
    budget is long and most answers stop far short of it. Scores and the softmax are float32,
    probabilities are cast to `dtype` before weighting the values, as in the dense path."""
    B, _, N, H = q.shape
    K, S = k_cache.shape[1], k_cache.shape[3]
    G = N // K
    c = min(block, S)
    qs = (q.reshape(B, K, G, H) * jnp.asarray(H ** -0.5, q.dtype)).astype(dtype)

    def tile(carry, kb, vb, ab):  # kb [B, K, H, c], vb [B, K, c, H], ab [B, c]
        s = (qs[..., None].astype(jnp.float32) * kb[:, :, None].astype(jnp.float32)).sum(-2)  # [B, K, G, c]
        return _online_softmax(carry, s, ab[:, None, None], lambda p: (
            p.astype(dtype)[..., None] * vb[:, :, None].astype(dtype)).sum(-2).astype(jnp.float32))

    def step(carry, j):
        def read(carry):
            start = jnp.minimum(j * c, S - c)  # the last block may overlap the one before: mask the overlap
            ab = jax.lax.dynamic_slice_in_dim(allowed[:, 0], start, c, axis=1) & (start + jnp.arange(c) >= j * c)
            return tile(carry, jax.lax.dynamic_slice_in_dim(k_cache, start, c, axis=3),
                        jax.lax.dynamic_slice_in_dim(v_cache, start, c, axis=2), ab)
        return jax.lax.cond(j * c < filled, read, lambda c_: c_, carry), None

    init = (jnp.full((B, K, G), jnp.finfo(jnp.float32).min), jnp.zeros((B, K, G)), jnp.zeros((B, K, G, H)))
    carry, _ = jax.lax.scan(step, init, jnp.arange(math.ceil(S / c)))
    if own is not None:
        k, v, a = own
        carry = tile(carry, k, v, a[:, 0])
    _, total, acc = carry
    return (acc / total[..., None]).astype(dtype).reshape(B, 1, N, H)
