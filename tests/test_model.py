"""The decoder: preset shapes without weights, KV-cache and padding equivalences, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import config as C
from r1jax import model as M

# Published parameter counts (model cards / HF safetensors totals).
PUBLISHED = {
    "qwen2.5-0.5b": 0.494e9, "qwen2.5-1.5b": 1.54e9, "qwen2.5-7b": 7.61e9, "qwen2.5-14b": 14.7e9,
    "qwen2.5-32b": 32.8e9, "qwen2.5-math-1.5b": 1.54e9, "qwen2.5-math-7b": 7.61e9,
    "llama3.1-8b": 8.03e9, "llama3.3-70b": 70.6e9,
}


@pytest.mark.parametrize("name", PUBLISHED)
def test_preset_parameter_count_under_eval_shape(name):
    cfg = C.get_preset(name)
    abstract = jax.eval_shape(lambda k: M.init_params(cfg, k), jax.random.key(0))
    assert jax.tree.structure(abstract) == jax.tree.structure(M.param_axes(cfg), is_leaf=lambda x: isinstance(x, tuple))
    n = M.count_params(abstract)
    assert abs(n - PUBLISHED[name]) / PUBLISHED[name] < 0.005, f"{name}: {n:.4e} vs {PUBLISHED[name]:.4e}"
    # A forward pass traces at full size without allocating anything.
    logits = jax.eval_shape(lambda p, t: M.forward(cfg, p, t)[0], abstract, jax.ShapeDtypeStruct((1, 8), jnp.int32))
    assert logits.shape == (1, 8, cfg.vocab_size)


def test_unknown_preset_and_override_typos_list_valid_names():
    with pytest.raises(KeyError, match="qwen2.5-7b"):
        C.get_preset("qwen-7b")
    with pytest.raises(TypeError, match="valid fields: .*d_model"):
        C.override(C.get_preset("tiny"), d_modle=32)
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        C.override(C.get_preset("tiny"), n_kv_heads=3)


def test_config_json_round_trip():
    cfg = C.get_preset("llama3.1-8b")
    assert C.from_dict(C.ModelConfig, C.to_dict(cfg)) == cfg


@pytest.fixture(scope="module")
def tiny(tiny_cfg):
    return tiny_cfg, M.init_params(tiny_cfg, jax.random.key(0), std=0.2)


@pytest.mark.parametrize("scan_layers", [True, False])
def test_prefill_then_decode_equals_full_forward_with_left_padding(tiny, scan_layers):
    cfg, params = tiny
    cfg = C.override(cfg, scan_layers=scan_layers)  # a stacked cache, or one per layer
    B, P, T = 3, 6, 10  # prompt slots, total length
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.vocab_size, (B, T))
    mask = np.ones((B, T), bool)
    mask[1, :2] = False
    mask[2, :5] = False
    positions = np.maximum(np.cumsum(mask, 1) - 1, 0)
    full, _ = M.forward(cfg, params, tokens, positions=positions, mask=mask)

    cache = M.init_cache(cfg, B, 16)
    step_logits, cache = M.forward(cfg, params, tokens[:, :P], positions=positions[:, :P], cache=cache,
                                   mask=mask[:, :P])
    chunks = [step_logits]
    for t in range(P, T):
        out, cache = M.forward(cfg, params, tokens[:, t:t + 1], positions=positions[:, t:t + 1], cache=cache)
        chunks.append(out)
    cached = np.concatenate(chunks, axis=1)
    assert int(cache.end) == T
    np.testing.assert_allclose(cached[mask], np.asarray(full)[mask], atol=1e-5, rtol=0)
    assert np.isfinite(cached).all()


def test_padding_does_not_change_a_sequence(tiny):
    cfg, params = tiny
    seq = np.random.default_rng(1).integers(0, cfg.vocab_size, (1, 7))
    alone, _ = M.forward(cfg, params, seq)
    padded = np.concatenate([np.zeros((1, 4), int), seq], 1)
    mask = np.arange(11)[None] >= 4
    out, _ = M.forward(cfg, params, padded, positions=np.maximum(np.arange(11) - 4, 0)[None], mask=mask)
    np.testing.assert_allclose(np.asarray(out)[0, 4:], np.asarray(alone)[0], atol=1e-5, rtol=0)
    # and right padding leaves the real tokens alone too (causal attention)
    right = np.concatenate([seq, np.zeros((1, 3), int)], 1)
    out_r, _ = M.forward(cfg, params, right, mask=np.arange(10)[None] < 7)
    np.testing.assert_allclose(np.asarray(out_r)[0, :7], np.asarray(alone)[0], atol=1e-5, rtol=0)


def test_rope_is_relative(tiny):
    """Shifting all positions by a constant leaves attention (and so logits) unchanged."""
    cfg, params = tiny
    seq = np.random.default_rng(2).integers(0, cfg.vocab_size, (2, 9))
    a, _ = M.forward(cfg, params, seq)
    b, _ = M.forward(cfg, params, seq, positions=np.arange(9)[None].repeat(2, 0) + 37)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4, rtol=0)


def test_llama3_rope_scaling_against_closed_form():
    cfg = C.override(C.get_preset("tiny"), rope_theta=500000.0,
                     rope_scaling=C.RopeScaling(factor=8, low_freq_factor=1, high_freq_factor=4,
                                                original_max_position_embeddings=64))
    inv = M.rope_inv_freq(cfg)
    base = 500000.0 ** (-np.arange(0, 16, 2) / 16)
    wavelen = 2 * np.pi / base
    assert wavelen[0] < 16 and 16 < wavelen[1] < 64 and wavelen[2] > 64  # one frequency in each band
    np.testing.assert_allclose(inv[0], base[0], rtol=1e-6)  # high frequency: unchanged
    np.testing.assert_allclose(inv[2:], base[2:] / 8, rtol=1e-6)  # low frequency: divided by factor
    smooth = (64 / wavelen[1] - 1) / (4 - 1)
    np.testing.assert_allclose(inv[1], (1 - smooth) * base[1] / 8 + smooth * base[1], rtol=1e-6)


def test_bfloat16_params_and_compute_track_float32(tiny):
    cfg, params = tiny
    seq = np.random.default_rng(3).integers(0, cfg.vocab_size, (2, 8))
    ref, _ = M.forward(cfg, params, seq)
    cfg16 = C.override(cfg, param_dtype="bfloat16", dtype="bfloat16")
    p16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
    out, _ = M.forward(cfg16, p16, seq)
    assert out.dtype == jnp.float32  # logits are always float32
    err = np.abs(np.asarray(out) - np.asarray(ref)).max() / np.abs(np.asarray(ref)).max()
    assert 0 < err < 0.05


def _bf16(a):
    """Round to bfloat16 and back to float64 (numpy has no bfloat16 arithmetic)."""
    return np.asarray(jnp.asarray(a, jnp.float32).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matmul_and_its_gradients_against_numpy(dtype):
    """M.matmul's custom backward: dx = g w^T, dw = x^T g, inputs in x's dtype, float32 sums."""
    rng = np.random.default_rng(0)
    x, w, c = rng.normal(size=(6, 40)), rng.normal(size=(40, 5)), rng.normal(size=(6, 5))
    dt = jnp.dtype(dtype)
    xj, wj = jnp.asarray(x, dt), jnp.asarray(w, dt)
    y, vjp = jax.vjp(lambda a, b: M.matmul(a, b, dt), xj, wj)
    dx, dw = vjp(jnp.asarray(c, dt))
    assert y.dtype == dx.dtype == dw.dtype == dt
    if dtype == "float32":
        ref = {"y": x @ w, "dx": c @ w.T, "dw": x.T @ c}
        tol = dict(rtol=1e-5, atol=1e-5)
    else:  # the float64 products of the bfloat16-rounded inputs, rounded once at the end
        xr, wr, cr = _bf16(x), _bf16(w), _bf16(c)
        ref = {"y": _bf16(xr @ wr), "dx": _bf16(cr @ wr.T), "dw": _bf16(xr.T @ cr)}
        tol = dict(rtol=2 ** -7, atol=1e-6)  # one bfloat16 rounding of a float32 sum
    for name, got in {"y": y, "dx": dx, "dw": dw}.items():
        np.testing.assert_allclose(np.asarray(got, np.float64), ref[name], **tol, err_msg=name)
    # a float32 output keeps the float32 sum: no bfloat16 rounding of the logits
    y32 = M.matmul(xj, wj, jnp.float32)
    assert y32.dtype == jnp.float32
    if dtype == "bfloat16":
        np.testing.assert_allclose(np.asarray(y32, np.float64), _bf16(x) @ _bf16(w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cache_write_is_a_dynamic_update_slice(dtype):
    rng = np.random.default_rng(1)
    cache = jnp.asarray(rng.normal(size=(2, 3, 8)), dtype)
    new = jnp.asarray(rng.normal(size=(2, 3, 2)), jnp.float32)  # cast to the cache's dtype on write
    got = jax.jit(lambda c, n, i: M._cache_write(c, n, (0, 0, i)))(cache, new, 5)
    want = jax.lax.dynamic_update_slice(cache, new.astype(dtype), (0, 0, 5))
    assert got.dtype == cache.dtype
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))


@pytest.mark.parametrize("scan_layers", [True, False])
def test_remat_gives_identical_gradients(tiny, scan_layers):
    cfg, params = tiny
    cfg = C.override(cfg, scan_layers=scan_layers)
    seq = np.random.default_rng(4).integers(0, cfg.vocab_size, (2, 8))
    loss = lambda c: lambda p: M.forward(c, p, seq)[0].mean()  # noqa: E731
    g1 = jax.grad(loss(cfg))(params)
    g2 = jax.grad(loss(C.override(cfg, remat=True)))(params)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
