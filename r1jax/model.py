"""Decoder-only transformer of the Llama 3 / Qwen2 / Qwen2.5 family as pure functions.

Parameters are a plain dict pytree (`init_params`); `forward(config, params, tokens)` is a
pure function of it. Layer weights are stacked on a leading [L] axis and run either with
`jax.lax.scan` (one layer body compiled whatever the depth) or with a Python loop over the layers
(`ModelConfig.scan_layers=False`, which lets each layer's KV cache be updated in place). Neither
choice changes the parameters or what is computed. Why each execution choice is made, with its
measurements: docs/performance.md, "Model execution choices".

The model interface. The stages, the sampler, the train steps and checkpoints use a model only
through `param_shapes`, `param_axes`, `init_params`, `init_cache`, `forward`, `lm_head` and
`repeat_cache`, called with a *model*: a `ModelConfig` (this decoder) or any hashable object
with those methods (without the model argument). `FlaxModel` is such an object for a user's
Flax linen module, so it trains through SFT and GRPO and samples with the jitted sampler.

Einsum legend: B batch, T query time, S key time (cache slots), D model dim, N query heads,
K kv heads, G query heads per kv head (N = K*G), H head dim, F mlp dim, V vocab, L layers.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from r1jax.attention import (
    attention_kind,
    blockwise_attention,
    cudnn_attention,
    decode_attention,
    dense_mask,
    splash_attention,
)
from r1jax.config import ModelConfig, from_dict
from r1jax.sharding import constrain

__all__ = ["Cache", "init_cache", "cache_axes", "param_shapes", "param_axes", "init_params", "forward", "lm_head",
           "repeat_cache", "unstack_layers", "rope_inv_freq", "count_params", "FlaxModel", "TokenCache",
           "model_from_json"]


def _param_table(cfg: ModelConfig) -> dict:
    """name -> (shape, logical axes, init) for every parameter: the one place they are defined."""
    L, D, N, K, H, F, V = (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
                           cfg.d_ff, cfg.vocab_size)
    layers = {
        "attn_norm": ((L, D), ("layers", None), "ones"),
        "wq": ((L, D, N, H), ("layers", "embed", "heads", None), "normal"),
        "wk": ((L, D, K, H), ("layers", "embed", "kv_heads", None), "normal"),
        "wv": ((L, D, K, H), ("layers", "embed", "kv_heads", None), "normal"),
        "wo": ((L, N, H, D), ("layers", "heads", None, "embed"), "normal"),
        "mlp_norm": ((L, D), ("layers", None), "ones"),
        "w_gate": ((L, D, F), ("layers", "embed", "mlp"), "normal"),
        "w_up": ((L, D, F), ("layers", "embed", "mlp"), "normal"),
        "w_down": ((L, F, D), ("layers", "mlp", "embed"), "normal"),
    }
    if cfg.qkv_bias:
        layers["bq"] = ((L, N, H), ("layers", "heads", None), "zeros")
        layers["bk"] = ((L, K, H), ("layers", "kv_heads", None), "zeros")
        layers["bv"] = ((L, K, H), ("layers", "kv_heads", None), "zeros")
    table = {"embed": ((V, D), ("vocab", "embed"), "normal"), "layers": layers,
             "final_norm": ((D,), (None,), "ones")}
    if not cfg.tie_embeddings:
        table["lm_head"] = ((D, V), ("embed", "vocab"), "normal")
    return table


def _is_entry(x) -> bool:
    return isinstance(x, tuple) and len(x) == 3 and isinstance(x[2], str)


def param_shapes(cfg: ModelConfig) -> dict:
    """Abstract parameters (ShapeDtypeStruct pytree) without allocating anything."""
    if not isinstance(cfg, ModelConfig):
        return cfg.param_shapes()
    dtype = jnp.dtype(cfg.param_dtype)
    return jax.tree.map(lambda e: jax.ShapeDtypeStruct(e[0], dtype), _param_table(cfg), is_leaf=_is_entry)


def param_axes(cfg: ModelConfig) -> dict:
    """Logical axis names of every parameter (same tree structure as the parameters)."""
    if not isinstance(cfg, ModelConfig):
        return cfg.param_axes()
    return jax.tree.map(lambda e: e[1], _param_table(cfg), is_leaf=_is_entry)


def init_params(cfg: ModelConfig, key: jax.Array, std: float = 0.02) -> dict:
    """Random parameters: N(0, std) weights (HF `initializer_range`), unit norms, zero biases."""
    if not isinstance(cfg, ModelConfig):
        return cfg.init_params(key)
    table = _param_table(cfg)
    leaves, treedef = jax.tree.flatten(table, is_leaf=_is_entry)
    keys = jax.random.split(key, len(leaves))
    dtype = jnp.dtype(cfg.param_dtype)

    def make(entry, k):
        shape, _, kind = entry
        if kind == "normal":
            return (std * jax.random.normal(k, shape, jnp.float32)).astype(dtype)
        return (jnp.ones if kind == "ones" else jnp.zeros)(shape, dtype)

    return jax.tree.unflatten(treedef, [make(e, k) for e, k in zip(leaves, keys)])


def count_params(params) -> int:
    """Total number of scalars in a parameter pytree."""
    return sum(math.prod(x.shape) for x in jax.tree.leaves(params))


@flax.struct.dataclass
class Cache:
    """KV cache shared by a batch. Every sequence writes the same slots, so a left-padded
    batch keeps one scalar write position; per-sequence RoPE positions come from the caller."""

    # k [B, K, H, S] and v [B, K, S, H] per layer: the layouts a decode step's attention reads
    # without a transpose. Stacked on a leading [L] axis for the layer scan; a tuple of L arrays
    # for the loop over layers (`ModelConfig.scan_layers=False`), so that each layer's cache can
    # be updated in place on its own.
    k: jax.Array | tuple[jax.Array, ...]
    v: jax.Array | tuple[jax.Array, ...]
    valid: jax.Array  # [B, S] bool: slot holds a real (non-padding) token
    end: jax.Array  # [] int32: slots written so far


def init_cache(cfg: ModelConfig, batch: int, max_len: int) -> Cache:
    """An empty cache of `max_len` slots for `batch` sequences, in the compute dtype, laid out for
    `cfg.scan_layers` (stacked [L, ...] arrays, or a tuple of L per-layer arrays)."""
    if not isinstance(cfg, ModelConfig):
        return cfg.init_cache(batch, max_len)
    k_shape = (batch, cfg.n_kv_heads, cfg.head_dim, max_len)
    v_shape = (batch, cfg.n_kv_heads, max_len, cfg.head_dim)
    if cfg.scan_layers:
        k = jnp.zeros((cfg.n_layers, *k_shape), cfg.dtype)
        v = jnp.zeros((cfg.n_layers, *v_shape), cfg.dtype)
    else:
        k = tuple(jnp.zeros(k_shape, cfg.dtype) for _ in range(cfg.n_layers))
        v = tuple(jnp.zeros(v_shape, cfg.dtype) for _ in range(cfg.n_layers))
    return Cache(k=k, v=v, valid=jnp.zeros((batch, max_len), bool), end=jnp.zeros((), jnp.int32))


def cache_axes(cfg: ModelConfig) -> Cache:
    """Logical axis names of every array of `init_cache(cfg, ...)` (same structure as the cache)."""
    kv = ("batch", "kv_heads", None, None)
    kv = ("layers", *kv) if cfg.scan_layers else (kv,) * cfg.n_layers
    return Cache(k=kv, v=kv, valid=("batch", None), end=())


def rope_inv_freq(cfg: ModelConfig) -> np.ndarray:
    """RoPE inverse frequencies [H/2], with Llama 3.1 scaling when configured.

    Llama 3.1 (HF `_compute_llama3_parameters`): wavelengths longer than
    original_len/low_freq_factor are divided by `factor`, shorter than
    original_len/high_freq_factor are kept, and the band between is interpolated.
    """
    inv = 1.0 / cfg.rope_theta ** (np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim)
    s = cfg.rope_scaling
    if s is None:
        return inv.astype(np.float32)
    wavelen = 2 * np.pi / inv
    low_wl = s.original_max_position_embeddings / s.low_freq_factor
    high_wl = s.original_max_position_embeddings / s.high_freq_factor
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor)
    scaled = np.where(wavelen > low_wl, inv / s.factor, inv)
    medium = (wavelen <= low_wl) & (wavelen >= high_wl)
    scaled = np.where(medium, (1 - smooth) * inv / s.factor + smooth * inv, scaled)
    return scaled.astype(np.float32)


def _rope_angles(positions: jax.Array, inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """(cos [B, T, 1, 1, H/2], signed sin [B, T, 1, 2, H/2]) of positions [B, T] [int] times the
    inverse frequencies [H/2], computed once per forward and shared by all layers.

    The signed sin stacks (-sin, sin) on the axis of the two halves so that `_rope` is one
    multiply-add over a [.., 2, H/2] view. cos stays a broadcast (XLA may fuse it into each
    rotation and recompute it there; see docs/performance.md)."""
    angles = positions[:, :, None, None, None].astype(jnp.float32) * inv_freq  # [B, T, 1, 1, H/2]
    sin = jnp.sin(angles)
    return jnp.cos(angles), jnp.concatenate([-sin, sin], axis=-2)


def _rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x [B, T, heads, H] rotated by `_rope_angles` -> [B, T, heads, H] in x's dtype (computed in
    float32). HF's half-split (rotate_half) layout: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin),
    written as x cos + swap(x) (-sin, sin) over a [.., 2, H/2] view, which avoids a concatenate
    along the last axis (see docs/performance.md)."""
    B, T, N, H = x.shape
    halves = x.astype(jnp.float32).reshape(B, T, N, 2, H // 2)
    out = halves * cos + jnp.flip(halves, axis=-2) * sin
    return out.reshape(B, T, N, H).astype(x.dtype)


def _rms_norm(x: jax.Array, w: jax.Array, eps: float) -> jax.Array:
    """RMSNorm of x [..., D] with weight w [D]: statistics in float32, result in x's dtype."""
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return normed.astype(x.dtype) * w.astype(x.dtype)


def _scores(q, kt):
    """q [B,T,K,G,H], keys kt [B,K,H,S] -> float32 [B,K,G,T,S] (unscaled dot products)."""
    if q.shape[1] == 1:  # decode: one fused multiply-reduce that reads the cache once instead of
        # a batched matmul of this shape (see docs/performance.md)
        return (q[:, 0, :, :, :, None].astype(jnp.float32) * kt[:, :, None].astype(jnp.float32)).sum(-2)[:, :, :, None]
    return jnp.einsum("BTKGH,BKHS->BKGTS", q, kt, preferred_element_type=jnp.float32)


def _mix(probs, v):
    """probs [B,K,G,T,S], values v [B,K,S,H] -> [B,T,K,G,H]; for one query (decode) a fused
    multiply-reduce, as in `_scores`."""
    if probs.shape[3] == 1:
        return (probs[:, :, :, 0, :, None] * v[:, :, None]).sum(-2)[:, None]
    return jnp.einsum("BKGTS,BKSH->BTKGH", probs, v)


def _attention(q, blocks, dtype):
    """q [B,T,N,H] against key/value blocks [(k [B,K,H,S], v [B,K,S,H], allowed [B,T,S]), ...]
    -> [B,T,N,H]. One softmax (float32) over all blocks' keys, so a step of the layer scan (and
    a prefill) attends to the cache and to its own new keys without first writing them into a
    copy of the cache."""
    B, T, N, H = q.shape
    K = blocks[0][0].shape[1]
    q = q.reshape(B, T, K, N // K, H) * jnp.asarray(H ** -0.5, dtype)
    scores = [jnp.where(allowed[:, None, None], _scores(q, k.astype(dtype)), jnp.finfo(jnp.float32).min)
              for k, _, allowed in blocks]
    probs = jax.nn.softmax(jnp.concatenate(scores, axis=-1), axis=-1).astype(dtype)
    splits = np.cumsum([k.shape[3] for k, _, _ in blocks])[:-1]
    out = sum(_mix(pr, v.astype(dtype)) for pr, (_, v, _) in zip(jnp.split(probs, splits, axis=-1), blocks))
    return out.reshape(B, T, N, H)


def _dense(x: jax.Array, w: jax.Array, n_in: int = 1) -> jax.Array:
    """x [B, T, *in] @ w [*in, *out] -> [B, T, *out] in x's dtype, where `n_in` is the number of
    w's leading (contracted) axes. Computed as one 2-D `matmul` [B*T, in] @ [in, out] so that
    the backward pass needs no extra transposes (see docs/performance.md)."""
    B, T = x.shape[:2]
    d_in = int(np.prod(w.shape[:n_in]))
    y = matmul(x.reshape(B * T, d_in), w.reshape(d_in, -1), x.dtype)
    # named, so that remat policy 'save-dots' can keep it (the custom VJP hides the dot inside)
    return checkpoint_name(y, "dense").reshape(B, T, *w.shape[n_in:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def matmul(x: jax.Array, w: jax.Array, out_dtype) -> jax.Array:
    """x [M, K] @ w [K, N] -> [M, N] in `out_dtype`, accumulated in float32 in the forward and
    in both backward matmuls, whose inputs stay in x's dtype (the cotangent is cast to it);
    `out_dtype` is not differentiated. Gradients: dx [M, K] in x's dtype, dw [K, N] in w's dtype.

    This is bfloat16 mixed precision as a TPU's MXU does it. The backward pass is written out
    (a custom VJP) so that it contracts the untransposed operands with a float32 result, which
    XLA's CPU backend can run on bfloat16 matrix hardware; plain autodiff of `x @ w` produces
    float32 cotangents and `w.T` views, which it cannot (see docs/performance.md)."""
    return jnp.dot(x, w, preferred_element_type=jnp.float32).astype(out_dtype)


def _matmul_fwd(x, w, out_dtype):
    return matmul(x, w, out_dtype), (x, w)


def _matmul_bwd(out_dtype, res, g):
    x, w = res
    g = g.astype(x.dtype)
    def contract(a, b, dims):
        return jax.lax.dot_general(a, b, (dims, ((), ())), preferred_element_type=jnp.float32)

    return contract(g, w, ((1,), (1,))).astype(x.dtype), contract(x, g, ((0,), (0,))).astype(w.dtype)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def _cache_write(cache: jax.Array, new: jax.Array, index: tuple) -> jax.Array:
    """`cache` with `new` (cast to the cache's dtype) written at `index` (a dynamic_update_slice);
    same shape and dtype as `cache`. A 2-byte cache (bfloat16, float16) is written through an
    unsigned-int view of the same width, so the update never converts the whole cache to
    another dtype (see docs/performance.md)."""
    if cache.dtype.itemsize != 2:
        return jax.lax.dynamic_update_slice(cache, new.astype(cache.dtype), index)
    def as_int(a):
        return jax.lax.bitcast_convert_type(a.astype(cache.dtype), jnp.uint16)

    return jax.lax.bitcast_convert_type(jax.lax.dynamic_update_slice(as_int(cache), as_int(new), index), cache.dtype)


# jitted so that an eager `forward` (outside jit) with the loop over layers runs each block as one
# program: op by op, XLA's CPU runtime rejects a bfloat16 batched matmul with float32 output
@functools.partial(jax.jit, static_argnums=0)
def _layer(cfg: ModelConfig, x, p, rope, allowed, cached=None, write_at=None, filled=None):
    """One decoder block: x [B, T, D] -> (x [B, T, D], (keys, values)).

    p: this layer's weights (one slice of `params["layers"]`); rope: `_rope_angles`;
    allowed: [B, T, T] which new keys each new query may attend to, or for a cache-less forward
    that is not dense (blockwise, splash, cudnn) the pair (key mask [B, T], segment ids [B, T]
    or None) its kernel builds its mask from. `cached` = (k, v, allowed) of this layer's cache slots before this call
    (k [B, K, H, S], v [B, K, S, H], allowed [B, 1, S]). Without a cache the returned keys and
    values are the new ones (k [B, K, H, T], v [B, K, T, H]). Without `write_at` (the layer
    scan) the cache is read only and the new keys and values are returned for the caller to
    write after the scan. With it (the loop over layers) they are first written into the cache
    at slot `write_at` and the updated cache is returned; a decode step then reads its own key
    back from that cache. Writing before reading is what lets XLA update the cache in place
    inside the sampler's while loop (see docs/performance.md). `filled`: the cache slots
    written before this call; a decode step with any attention but dense selected for the
    cache's length reads only those (`attention.decode_attention`)."""
    dt = jnp.dtype(cfg.dtype)
    p = jax.tree.map(lambda w: w.astype(dt), p)
    h = _rms_norm(x, p["attn_norm"], cfg.norm_eps)
    q, k, v = _dense(h, p["wq"]), _dense(h, p["wk"]), _dense(h, p["wv"])
    if cfg.qkv_bias:
        q, k, v = q + p["bq"], k + p["bk"], v + p["bv"]
    q = constrain(_rope(q, *rope), ("batch", None, "heads", None))
    k, v = _rope(k, *rope).transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)  # [B,K,H,T], [B,K,T,H]
    new_kv = (k, v)
    if cached is None:
        blocks = [(k, v, allowed)]
    elif write_at is None:  # the layer scan: the cache is read only
        blocks = [cached, (k, v, allowed)]
    else:
        k_c, v_c, old_allowed = cached
        k_c = _cache_write(k_c, k, (0, 0, 0, write_at))
        v_c = _cache_write(v_c, v, (0, 0, write_at, 0))
        new_kv = (k_c, v_c)
        if q.shape[1] == 1:  # a decode step reads its own key back from the cache it has just written
            blocks = [(k_c, v_c, old_allowed | (jnp.arange(k_c.shape[-1]) == write_at))]
        else:  # a prefill: the cache's earlier slots and its own keys (not all T x S slots)
            blocks = [(k_c, v_c, old_allowed), (k, v, allowed)]
    if isinstance(allowed, tuple):  # a cache-less forward that is not dense
        kind = attention_kind(cfg, q.shape[1])
        if kind == "cudnn":
            attn = cudnn_attention(q, k, v, *allowed, dtype=dt)
        else:
            attend = splash_attention if kind == "splash" else blockwise_attention
            attn = attend(q, k, v, *allowed, block=cfg.attention_block, dtype=dt)
    elif q.shape[1] == 1 and cached is not None and attention_kind(cfg, cached[0].shape[-1]) != "dense":
        # every long-sequence kind decodes blockwise: the fused kernels are for many queries
        if write_at is None:  # the layer scan: the step's own key is not in the cache yet
            attn = decode_attention(q, *cached, filled, (k, v, allowed), block=cfg.attention_block, dtype=dt)
        else:
            attn = decode_attention(q, *blocks[0], write_at + 1, None, block=cfg.attention_block, dtype=dt)
    else:
        attn = _attention(q, blocks, dt)
    x = x + _dense(attn, p["wo"], n_in=2)
    h = _rms_norm(x, p["mlp_norm"], cfg.norm_eps)
    gate, up = _dense(h, p["w_gate"]), _dense(h, p["w_up"])
    hidden = constrain(jax.nn.silu(gate) * up, ("batch", None, "mlp"))
    x = x + _dense(hidden, p["w_down"])
    return constrain(x, ("batch", None, None)), new_kv


def forward(cfg: ModelConfig, params: dict, tokens: jax.Array, positions: jax.Array | None = None,
            cache: Cache | None = None, *, mask: jax.Array | None = None, segment_ids: jax.Array | None = None,
            return_hidden: bool = False) -> tuple[jax.Array, Cache | None]:
    """Logits [B, T, V] (float32) for tokens [B, T], and the updated cache.

    positions: [B, T] RoPE positions; default `arange(T)` (offset by the cache fill).
        For a left-padded batch pass `cumsum(mask) - 1` so each sequence starts at 0.
    cache: `init_cache(...)` for a prefill, then the returned cache for each decode step.
        Without a cache the call is a plain causal forward over `tokens`.
    mask: [B, T] bool, False at padding tokens (default: no padding). Padding keys are
        never attended to; outputs at padding positions are meaningless.
    segment_ids: [B, T] int (no cache): several documents packed into one row; a token only
        attends to earlier tokens of its own segment (pass positions that restart per segment).
    return_hidden: return the final normed hidden states [B, T, D] instead of logits
        (for heads other than the LM head, e.g. a reward model).
    """
    if not isinstance(cfg, ModelConfig):
        return cfg.forward(params, tokens, positions, cache, mask=mask, segment_ids=segment_ids,
                           return_hidden=return_hidden)
    B, T = tokens.shape
    offset = jnp.zeros((), jnp.int32) if cache is None else cache.end
    if positions is None:
        positions = jnp.broadcast_to(offset + jnp.arange(T, dtype=jnp.int32), (B, T))
    mask = jnp.ones((B, T), bool) if mask is None else mask.astype(bool)
    if segment_ids is not None and cache is not None:
        raise ValueError("segment_ids (packed documents) are for training forwards without a cache")
    if cache is None and attention_kind(cfg, T) != "dense":
        allowed = (mask, segment_ids)  # the kernel builds its mask from these (per tile, or as it needs)
    else:
        allowed = dense_mask(mask, segment_ids)  # among the new tokens

    dt = jnp.dtype(cfg.dtype)
    x = constrain(params["embed"][tokens].astype(dt), ("batch", None, None))
    rope = _rope_angles(positions, rope_inv_freq(cfg))

    old_allowed = None  # cache slots written by earlier calls (all before this call's tokens)
    if cache is not None:
        old_allowed = ((jnp.arange(cache.valid.shape[1]) < offset)[None] & cache.valid)[:, None, :]

    def layer(x, p, k_c=None, v_c=None, write_at=None):
        cached = None if cache is None else (k_c, v_c, old_allowed)
        return _layer(cfg, x, p, rope, allowed, cached, write_at, offset)
    if cfg.remat:  # 'save-dots' keeps the weight matmuls' outputs (`_dense`) and recomputes the rest
        policy = jax.checkpoint_policies.save_only_these_names("dense") if cfg.remat_policy == "save-dots" else None
        layer = jax.checkpoint(layer, prevent_cse=False, policy=policy)
    if cfg.scan_layers:
        def body(x, xs):
            x, kv = layer(x, *xs)
            return x, None if cache is None else kv
        xs = (params["layers"],) if cache is None else (params["layers"], cache.k, cache.v)
        x, new_kv = jax.lax.scan(body, x, xs)
        if cache is not None:  # one in-place write of every layer's new keys and values
            k_new = _cache_write(cache.k, new_kv[0], (0, 0, 0, 0, offset))
            v_new = _cache_write(cache.v, new_kv[1], (0, 0, 0, offset, 0))
    else:
        k_new, v_new = [], []
        for i, p in enumerate(unstack_layers(params["layers"])):
            x, (k, v) = layer(x, p) if cache is None else layer(x, p, cache.k[i], cache.v[i], offset)
            k_new.append(k)
            v_new.append(v)
        k_new, v_new = tuple(k_new), tuple(v_new)
    if cache is not None:
        cache = Cache(k=k_new, v=v_new, valid=jax.lax.dynamic_update_slice(cache.valid, mask, (0, offset)),
                      end=offset + T)
    x = _rms_norm(x, params["final_norm"], cfg.norm_eps)
    if return_hidden:
        return x, cache
    return lm_head(cfg, params, x), cache


def unstack_layers(layers: dict | tuple) -> tuple[dict, ...]:
    """Stacked layer weights {name: [L, ...]} -> a tuple of L dicts {name: [...]} (a tuple passes
    through unchanged).

    `forward` takes either form in `params["layers"]`. The sampler unstacks once before its
    decode loop, because slicing a layer out of the stacked arrays inside the loop copies its
    weights on every step (see docs/performance.md)."""
    if isinstance(layers, tuple):
        return layers
    n = jax.tree.leaves(layers)[0].shape[0]
    return tuple(jax.tree.map(lambda w: w[i], layers) for i in range(n))


def lm_head(cfg: ModelConfig, params: dict, x: jax.Array) -> jax.Array:
    """Logits [B, T, V] (float32) from final hidden states [B, T, D] (`forward(..., return_hidden=True)`).

    One 2-D matmul [B*T, D] x [D, V] in the compute dtype with float32 accumulation, against the
    embedding's rows when the embeddings are tied; the 2-D form keeps the logit gradient from
    being transposed in the backward pass. Plain autodiff, not `matmul`: `matmul`'s custom
    backward keeps the weight it was given as a residual, which for the head would keep the whole
    (all-gathered) vocabulary matrix alive until the backward pass (see docs/performance.md)."""
    if not isinstance(cfg, ModelConfig):
        return cfg.lm_head(params, x)
    dt = jnp.dtype(cfg.dtype)
    B, T, D = x.shape
    x2 = x.reshape(B * T, D)
    if cfg.tie_embeddings:
        logits = jax.lax.dot_general(x2, params["embed"].astype(dt), (((1,), (1,)), ((), ())),
                                     preferred_element_type=jnp.float32)
    else:
        logits = jnp.dot(x2, params["lm_head"].astype(dt), preferred_element_type=jnp.float32)
    logits = logits.reshape(B, T, -1)
    return constrain(logits, ("batch", None, "vocab"))


def repeat_cache(cfg: ModelConfig, cache: Cache, repeats: int) -> Cache:
    """The cache of a batch of B sequences with each sequence's rows repeated `repeats` times
    ([B, ...] -> [B * repeats, ...]): a prompt's prefill shared by its group of samples."""
    if not isinstance(cfg, ModelConfig):
        return cfg.repeat_cache(cache, repeats)
    rep_kv = lambda x: jnp.repeat(x, repeats, axis=x.ndim - 4)  # noqa: E731  (the batch axis, stacked or not)
    return cache.replace(k=jax.tree.map(rep_kv, cache.k), v=jax.tree.map(rep_kv, cache.v),
                         valid=jnp.repeat(cache.valid, repeats, axis=0))


# ----------------------------------------------------------------------------- a user's Flax module

@flax.struct.dataclass
class TokenCache:
    """`FlaxModel`'s decoding state: the tokens so far (a module without a KV cache of its own is
    rerun on the whole buffer at each step, O(S) a step instead of O(1))."""

    tokens: jax.Array  # [B, S] int32
    positions: jax.Array  # [B, S] int32
    valid: jax.Array  # [B, S] bool: slot holds a real (non-padding) token
    end: jax.Array  # [] int32: slots written so far


@dataclasses.dataclass(frozen=True)
class FlaxModel:
    """A user's Flax linen module as an r1jax model (see the module docstring).

    `factory` names a function, "package.module:function", that returns the module when called
    with `kwargs` (a tuple of (name, value) pairs, so the model is hashable and its stage
    directory can rebuild it). The module is called as
    `module.apply({"params": params}, tokens, positions, mask, segment_ids)` with tokens,
    positions [B, T] int32, mask [B, T] bool (False at padding) and segment_ids [B, T] int32 or
    None (packed documents must not attend to each other), and returns logits [B, T, V]. Its
    parameters may carry logical axis names (`nn.with_logical_partitioning`) from r1jax's rules
    table (`r1jax.sharding`); unnamed ones are replicated. Its "hidden states" are its logits and
    its LM head is the identity, so r1jax's head-on-the-completion-only saving does not apply,
    and it has no reward-model head.
    """

    factory: str
    kwargs: tuple = ()
    vocab_size: int = 0
    dtype: str = "float32"  # compute dtype: the sampler casts the parameters to it
    scan_layers: bool = True  # the sampler's per-layer unstacking is the built-in decoder's only
    max_seq_len: int = 2048

    def module(self) -> nn.Module:
        path, _, name = self.factory.partition(":")
        return getattr(importlib.import_module(path), name)(**dict(self.kwargs))

    def init_params(self, key: jax.Array) -> Any:
        dummy = jnp.zeros((1, 1), jnp.int32)
        variables = self.module().init(key, dummy, dummy, jnp.ones((1, 1), bool), None)
        return nn.meta.unbox(variables["params"])

    def param_shapes(self) -> Any:
        return jax.eval_shape(self.init_params, jax.random.key(0))

    def param_axes(self) -> Any:
        dummy = jnp.zeros((1, 1), jnp.int32)
        boxed = jax.eval_shape(lambda k: self.module().init(k, dummy, dummy, jnp.ones((1, 1), bool), None),
                               jax.random.key(0))["params"]
        return jax.tree.map(lambda x: tuple(x.names) if isinstance(x, nn.LogicallyPartitioned) else (None,) * x.ndim,
                            boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))

    def init_cache(self, batch: int, max_len: int) -> TokenCache:
        slots = jnp.zeros((batch, max_len), jnp.int32)
        return TokenCache(tokens=slots, positions=slots, valid=jnp.zeros((batch, max_len), bool),
                          end=jnp.zeros((), jnp.int32))

    def repeat_cache(self, cache: TokenCache, repeats: int) -> TokenCache:
        return jax.tree.map(lambda x: jnp.repeat(x, repeats, axis=0) if x.ndim else x, cache)

    def forward(self, params, tokens, positions=None, cache=None, *, mask=None, segment_ids=None,
                return_hidden=False):
        B, T = tokens.shape
        offset = jnp.zeros((), jnp.int32) if cache is None else cache.end
        if positions is None:
            positions = jnp.broadcast_to(offset + jnp.arange(T, dtype=jnp.int32), (B, T))
        mask = jnp.ones((B, T), bool) if mask is None else mask.astype(bool)
        if cache is None:
            return self.module().apply({"params": params}, tokens, positions, mask, segment_ids), None
        if segment_ids is not None:
            raise ValueError("segment_ids (packed documents) are for training forwards without a cache")
        write = lambda buf, new: jax.lax.dynamic_update_slice(buf, new.astype(buf.dtype), (0, offset))  # noqa: E731
        cache = TokenCache(tokens=write(cache.tokens, tokens), positions=write(cache.positions, positions),
                           valid=write(cache.valid, mask), end=offset + T)
        logits = self.module().apply({"params": params}, cache.tokens, cache.positions, cache.valid, None)
        return jax.lax.dynamic_slice_in_dim(logits, offset, T, axis=1), cache

    def lm_head(self, params, x):
        return x


def model_from_json(saved: dict) -> ModelConfig | FlaxModel:
    """The model of a checkpoint's run config entry "model": a FlaxModel if it names a factory."""
    if "factory" in saved:
        return FlaxModel(**{**saved, "kwargs": tuple(tuple(kv) for kv in saved["kwargs"])})
    return from_dict(ModelConfig, saved)
