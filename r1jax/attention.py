"""Attention for long sequences: online softmaxes over key blocks.

`blockwise_attention` (training) never holds a [T, T] matrix; `decode_attention` (sampling)
reads only the filled part of the KV cache.

`model.forward` without a cache (every training forward: SFT, GRPO's log-probs, distillation,
the reference model) calls `blockwise_attention` when `ModelConfig.attention` selects it. Memory
is linear in T: a query block sees one [block, block] score tile at a time, key blocks entirely
in a query block's future are skipped (`lax.cond`, so about half the tiles are never computed),
and each query block is rematerialized in the backward pass (`jax.checkpoint`), so what the
backward keeps is the queries, keys and values, never the scores. The masks are built per tile
from the row's key mask and segment ids, with the same rules as the dense path in
`model.forward`: causal, never a padding key, only keys of the query's own packed document,
and each query always sees itself (so a padding row's softmax stays finite).

Einsum legend as in model.py: B batch, K kv heads, G query heads per kv head, H head dim,
Q / S the query / key positions of one block.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["attention_kind", "blockwise_attention", "decode_attention"]


def attention_kind(setting: str, T: int, block: int) -> str:
    """The attention a cache-less forward over T tokens runs: 'auto' is dense when the sequence
    fits in one block (one tile: the two compute the same, dense with fewer ops) and blockwise
    beyond, on every backend."""
    if setting == "auto":
        return "dense" if T <= block else "blockwise"
    return setting


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
    b = min(block, T)
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
            return jax.lax.cond(j <= i, tile, lambda c: c, carry), None

        init = (jnp.full((B, K, G, b), jnp.finfo(jnp.float32).min), jnp.zeros((B, K, G, b)),
                jnp.zeros((B, K, G, b, H)))
        (_, total, acc), _ = jax.lax.scan(key_block, init, jnp.arange(n))
        return acc / total[..., None]

    def body(_, xs):
        return None, query_block(*xs).astype(dtype)

    _, out = jax.lax.scan(body, None, (jnp.arange(n), qs, segs))  # [n, B, K, G, Q, H]
    return out.transpose(1, 0, 4, 2, 3, 5).reshape(B, n * b, N, H)[:, :T]


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
