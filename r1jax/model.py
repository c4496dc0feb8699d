"""Decoder-only transformer of the Llama 3 / Qwen2 / Qwen2.5 family as pure functions.

Parameters are a plain dict pytree (`init_params`); `forward(config, params, tokens)` is a
pure function of it. Layers are stacked on a leading axis and run with `jax.lax.scan`, so
one layer body is compiled whatever the depth.

Einsum legend: B batch, T query time, S key time (cache slots), D model dim, N query heads,
K kv heads, G query heads per kv head (N = K*G), H head dim, F mlp dim, V vocab, L layers.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from r1jax.config import ModelConfig
from r1jax.sharding import constrain

__all__ = ["Cache", "init_cache", "cache_axes", "param_shapes", "param_axes", "init_params", "forward", "lm_head",
           "rope_inv_freq", "count_params"]


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
    dtype = jnp.dtype(cfg.param_dtype)
    return jax.tree.map(lambda e: jax.ShapeDtypeStruct(e[0], dtype), _param_table(cfg), is_leaf=_is_entry)


def param_axes(cfg: ModelConfig) -> dict:
    """Logical axis names of every parameter (same tree structure as the parameters)."""
    return jax.tree.map(lambda e: e[1], _param_table(cfg), is_leaf=_is_entry)


def init_params(cfg: ModelConfig, key: jax.Array, std: float = 0.02) -> dict:
    """Random parameters: N(0, std) weights (HF `initializer_range`), unit norms, zero biases."""
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
    return sum(math.prod(x.shape) for x in jax.tree.leaves(params))


@flax.struct.dataclass
class Cache:
    """KV cache shared by a batch. Every sequence writes the same slots, so a left-padded
    batch keeps one scalar write position; per-sequence RoPE positions come from the caller."""

    k: jax.Array  # [L, B, S, K, H]
    v: jax.Array  # [L, B, S, K, H]
    valid: jax.Array  # [B, S] bool: slot holds a real (non-padding) token
    end: jax.Array  # [] int32: slots written so far


def init_cache(cfg: ModelConfig, batch: int, max_len: int) -> Cache:
    shape = (cfg.n_layers, batch, max_len, cfg.n_kv_heads, cfg.head_dim)
    return Cache(k=jnp.zeros(shape, cfg.dtype), v=jnp.zeros(shape, cfg.dtype),
                 valid=jnp.zeros((batch, max_len), bool), end=jnp.zeros((), jnp.int32))


def cache_axes() -> Cache:
    kv = ("layers", "batch", None, "kv_heads", None)
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


def _rope(x: jax.Array, positions: jax.Array, inv_freq: np.ndarray) -> jax.Array:
    """Rotate [B, T, heads, H] by positions [B, T]; HF's half-split (rotate_half) layout."""
    angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, H/2]
    cos, sin = jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def _rms_norm(x: jax.Array, w: jax.Array, eps: float) -> jax.Array:
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return normed.astype(x.dtype) * w.astype(x.dtype)


def _attention(q, k, v, allowed, dtype):
    """q [B,T,N,H], k/v [B,S,K,H], allowed [B,T,S] -> [B,T,N,H]; softmax in float32."""
    B, T, N, H = q.shape
    K = k.shape[2]
    q = q.reshape(B, T, K, N // K, H) * jnp.asarray(H ** -0.5, dtype)
    scores = jnp.einsum("BTKGH,BSKH->BKGTS", q, k, preferred_element_type=jnp.float32)
    scores = jnp.where(allowed[:, None, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(dtype)
    out = jnp.einsum("BKGTS,BSKH->BTKGH", probs, v)
    return out.reshape(B, T, N, H)


def _layer(cfg: ModelConfig, x, p, k_cache, v_cache, positions, allowed, write_at, inv_freq, layer=None):
    """One decoder block. With a cache ([L, B, S, K, H], carried through the layer scan so that it
    is updated in place rather than copied per layer), new keys/values go to slot `write_at`."""
    dt = jnp.dtype(cfg.dtype)
    p = jax.tree.map(lambda w: w.astype(dt), p)
    h = _rms_norm(x, p["attn_norm"], cfg.norm_eps)
    q = jnp.einsum("BTD,DNH->BTNH", h, p["wq"])
    k = jnp.einsum("BTD,DKH->BTKH", h, p["wk"])
    v = jnp.einsum("BTD,DKH->BTKH", h, p["wv"])
    if cfg.qkv_bias:
        q, k, v = q + p["bq"], k + p["bk"], v + p["bv"]
    q = constrain(_rope(q, positions, inv_freq), ("batch", None, "heads", None))
    k = _rope(k, positions, inv_freq)
    if k_cache is not None:
        k_cache = jax.lax.dynamic_update_slice(k_cache, k[None].astype(k_cache.dtype), (layer, 0, write_at, 0, 0))
        v_cache = jax.lax.dynamic_update_slice(v_cache, v[None].astype(v_cache.dtype), (layer, 0, write_at, 0, 0))
        k, v = k_cache[layer], v_cache[layer]
    attn = _attention(q, k, v, allowed, dt)
    x = x + jnp.einsum("BTNH,NHD->BTD", attn, p["wo"])
    h = _rms_norm(x, p["mlp_norm"], cfg.norm_eps)
    gate = jnp.einsum("BTD,DF->BTF", h, p["w_gate"])
    up = jnp.einsum("BTD,DF->BTF", h, p["w_up"])
    hidden = constrain(jax.nn.silu(gate) * up, ("batch", None, "mlp"))
    x = x + jnp.einsum("BTF,FD->BTD", hidden, p["w_down"])
    return constrain(x, ("batch", None, None)), k_cache, v_cache


def forward(cfg: ModelConfig, params: dict, tokens: jax.Array, positions: jax.Array | None = None,
            cache: Cache | None = None, *, mask: jax.Array | None = None,
            return_hidden: bool = False) -> tuple[jax.Array, Cache | None]:
    """Logits [B, T, V] (float32) for tokens [B, T], and the updated cache.

    positions: [B, T] RoPE positions; default `arange(T)` (offset by the cache fill).
        For a left-padded batch pass `cumsum(mask) - 1` so each sequence starts at 0.
    cache: `init_cache(...)` for a prefill, then the returned cache for each decode step.
        Without a cache the call is a plain causal forward over `tokens`.
    mask: [B, T] bool, False at padding tokens (default: no padding). Padding keys are
        never attended to; outputs at padding positions are meaningless.
    return_hidden: return the final normed hidden states [B, T, D] instead of logits
        (for heads other than the LM head, e.g. a reward model).
    """
    B, T = tokens.shape
    offset = jnp.zeros((), jnp.int32) if cache is None else cache.end
    if positions is None:
        positions = jnp.broadcast_to(offset + jnp.arange(T, dtype=jnp.int32), (B, T))
    mask = jnp.ones((B, T), bool) if mask is None else mask.astype(bool)
    if cache is None:
        key_valid = mask
    else:
        key_valid = jax.lax.dynamic_update_slice(cache.valid, mask, (0, offset))
    S = key_valid.shape[1]
    q_idx = offset + jnp.arange(T)
    k_idx = jnp.arange(S)
    # causal over cache slots, never a padding key; each query may always see itself so that a
    # padding row has a finite softmax (its output is discarded anyway).
    allowed = ((k_idx[None, :] <= q_idx[:, None])[None] & key_valid[:, None, :]) | (
        k_idx[None, :] == q_idx[:, None])[None]

    dt = jnp.dtype(cfg.dtype)
    x = constrain(params["embed"][tokens].astype(dt), ("batch", None, None))
    inv_freq = rope_inv_freq(cfg)

    def body(carry, xs):
        x, k_c, v_c = carry
        p, layer = xs
        x, k_c, v_c = _layer(cfg, x, p, k_c, v_c, positions, allowed, offset, inv_freq, layer)
        return (x, k_c, v_c), None

    if cfg.remat:
        body = jax.checkpoint(body, prevent_cse=False)
    carry = (x, None, None) if cache is None else (x, cache.k, cache.v)
    (x, k_new, v_new), _ = jax.lax.scan(body, carry, (params["layers"], jnp.arange(cfg.n_layers)))
    x = _rms_norm(x, params["final_norm"], cfg.norm_eps)
    if cache is not None:
        cache = Cache(k=k_new, v=v_new, valid=key_valid, end=offset + T)
    if return_hidden:
        return x, cache
    return lm_head(cfg, params, x), cache


def lm_head(cfg: ModelConfig, params: dict, x: jax.Array) -> jax.Array:
    """Logits [B, T, V] (float32) from final hidden states [B, T, D] (`forward(..., return_hidden=True)`)."""
    dt = jnp.dtype(cfg.dtype)
    if cfg.tie_embeddings:
        logits = jnp.einsum("BTD,VD->BTV", x, params["embed"].astype(dt), preferred_element_type=jnp.float32)
    else:
        logits = jnp.einsum("BTD,DV->BTV", x, params["lm_head"].astype(dt), preferred_element_type=jnp.float32)
    return constrain(logits, ("batch", None, "vocab"))
