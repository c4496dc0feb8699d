"""Long sequences: blockwise, splash (Pallas interpret mode) and cuDNN's arguments (through XLA's
implementation) against the dense [T, T] reference, and the chunked LM
head against the whole-vocabulary computation, values and gradients, with the memory each
compiles to (XLA's own buffer assignment, not a timing)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from r1jax import losses, train
from r1jax.attention import (
    attention_kind,
    blockwise_attention,
    cudnn_attention,
    dense_mask,
    splash_attention,
    tiled_length,
)
from r1jax.config import ModelConfig
from r1jax.model import _attention, forward, init_cache, init_params

B, T = 3, 70


def _cfg(tiny_cfg, **kw) -> ModelConfig:
    return dataclasses.replace(tiny_cfg, **{"attention": "dense", **kw})  # tiny: 4 query heads on 2 KV heads (GQA)


def _batch():
    tokens = jax.random.randint(jax.random.key(1), (B, T), 0, 512)
    mask = jnp.ones((B, T), bool).at[0, :9].set(False).at[1, :33].set(False)  # left padding, one row past a block
    positions = jnp.maximum(jnp.cumsum(mask, 1) - 1, 0)
    segments = jnp.repeat(jnp.array([[1] * 30 + [2] * 25 + [3] * 15]), B, 0)  # packed documents
    packed_positions = jnp.concatenate([jnp.arange(30), jnp.arange(25), jnp.arange(15)])[None].repeat(B, 0)
    return tokens, mask, positions, segments, packed_positions


@pytest.mark.parametrize("attention,dtype,layout,scan", [
    ("blockwise", "float32", "left-padded", True), ("blockwise", "float32", "packed", False),
    ("blockwise", "bfloat16", "left-padded", False), ("blockwise", "bfloat16", "packed", True),
    ("splash", "float32", "left-padded", True), ("splash", "bfloat16", "packed", False)])
def test_long_sequence_attention_equals_dense(tiny_cfg, attention, dtype, layout, scan):
    """Logits and parameter gradients of a whole forward, with blocks of 16 (70 tokens: five
    blocks, the last one partial; splash rounds its block up to 128: one padded block), against
    the dense path's. float32: equal within 2e-5 of the largest value. bfloat16 rounds the
    probabilities at another point (before normalising, or not at all), so both are compared
    with the float32 computation: the kernel's relative error (L2) is at most twice dense's (a
    wrong mask or a lost block is an error of order 1)."""
    dense = _cfg(tiny_cfg, dtype=dtype, scan_layers=scan)
    block = dataclasses.replace(dense, attention=attention, attention_block=16)
    exact = dataclasses.replace(dense, dtype="float32")
    params = init_params(dense, jax.random.key(0), std=0.2)
    tokens, mask, positions, segments, packed_positions = _batch()
    if layout == "packed":
        kw, pos, real = dict(segment_ids=segments), packed_positions, jnp.ones((B, T), bool)
    else:
        kw, pos, real = dict(mask=mask), positions, mask

    def out(cfg, p):
        return jnp.where(real[..., None], forward(cfg, p, tokens, pos, **kw)[0], 0.0)

    def grads(cfg):
        grad = jax.grad(lambda p: (out(cfg, p) ** 2).mean())(params)
        return [np.asarray(g, np.float32) for g in jax.tree.leaves(grad)]

    pairs = [(np.asarray(out(dense, params)), np.asarray(out(block, params)), np.asarray(out(exact, params)))]
    pairs += list(zip(grads(dense), grads(block), grads(exact)))
    for d, b, e in pairs:
        scale = np.abs(e).max() + 1e-12
        if dtype == "float32":
            assert np.abs(d - b).max() <= 2e-5 * scale
        else:
            err_b, err_d = (np.linalg.norm(x - e) / np.linalg.norm(e) for x in (b, d))
            assert err_b <= 2 * err_d + 1e-3, (err_b, err_d)


def test_auto_picks_per_backend_and_cudnn_needs_a_gpu(tiny_cfg):
    """'auto' is dense within one block on every backend; beyond it blockwise on a CPU, splash on
    a TPU, cudnn on a GPU for 16-bit compute (blockwise for float32, an odd length or a head dim
    cuDNN does not take). An explicit setting is kept, but 'cudnn' off a GPU is an error."""
    auto = dataclasses.replace(tiny_cfg, attention="auto", attention_block=512, head_dim=128)
    bf16 = dataclasses.replace(auto, dtype="bfloat16")
    for backend in ("cpu", "gpu", "tpu"):
        assert attention_kind(bf16, 512, backend) == "dense"
    assert [attention_kind(bf16, 514, b) for b in ("cpu", "gpu", "tpu")] == ["blockwise", "cudnn", "splash"]
    assert attention_kind(auto, 514, "gpu") == attention_kind(bf16, 513, "gpu") == "blockwise"
    assert attention_kind(dataclasses.replace(bf16, head_dim=12), 514, "gpu") == "blockwise"
    for setting in ("dense", "blockwise", "splash"):
        assert attention_kind(dataclasses.replace(auto, attention=setting), 8, "cpu") == setting
    cudnn = dataclasses.replace(bf16, attention="cudnn")
    assert attention_kind(cudnn, 8, "gpu") == "cudnn"
    with pytest.raises(ValueError, match="attention='cudnn' needs a GPU backend, but JAX's backend is 'cpu'"):
        forward(cudnn, jax.eval_shape(lambda: init_params(cudnn, jax.random.key(0))), jnp.zeros((1, 8), jnp.int32))
    with pytest.raises(ValueError, match="ModelConfig.attention must be one of auto, dense, blockwise, splash, "
                                         "cudnn, got 'flash'"):
        dataclasses.replace(tiny_cfg, attention="flash")


def test_tiled_length_is_what_the_kernels_pad_a_sequence_to(tiny_cfg):
    """A packed row is widened to the length the attention runs anyway: whole blockwise tiles,
    whole splash tiles (128-lane multiples), unchanged where dense attention runs."""
    auto = dataclasses.replace(tiny_cfg, attention="auto", attention_block=512)
    assert tiled_length(auto, 512, "cpu") == 512  # one block: dense
    assert tiled_length(auto, 1088, "cpu") == 1536  # three blockwise tiles of 512
    assert tiled_length(dataclasses.replace(auto, attention_block=200), 1088, "tpu") == 1280  # splash tiles of 256
    assert tiled_length(dataclasses.replace(auto, attention="dense"), 1088, "cpu") == 1088


def _attention_inputs():
    """q [2, 200, 4, 16] on 2 KV heads (GQA); row 0 left-padded past one 128-token block, row 1
    three packed documents and 20 tokens of trailing padding (the shape of a packed row)."""
    T = 200
    keys = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(keys[0], (2, T, 4, 16))
    k = jax.random.normal(keys[1], (2, 2, 16, T))
    v = jax.random.normal(keys[2], (2, 2, T, 16))
    mask = jnp.ones((2, T), bool).at[0, :140].set(False).at[1, T - 20:].set(False)
    packed = jnp.repeat(jnp.array([1, 2, 3, 0]), jnp.array([90, T - 130, 20, 20]))
    segments = jnp.stack([jnp.ones(T, jnp.int32), packed])
    return q, k, v, mask, segments


@pytest.mark.parametrize("kernel", ["splash", "cudnn-args"])
def test_fused_attention_kernels_equal_dense(kernel):
    """The kernels alone over 200 tokens (splash: two 128-token blocks, the second one padded)
    against the dense path's attention (`model._attention` with `dense_mask`): the output at
    every real position and the gradients of q, k and v (of a weighted sum over the real
    positions) within 1e-5 of the largest value, float32. cudnn cannot run on a CPU; its exact
    call, with implementation='xla', checks the arguments it builds (layouts, scale, mask)."""
    q, k, v, mask, segments = _attention_inputs()
    weights = jax.random.normal(jax.random.key(3), q.shape) * mask[:, :, None, None]
    if kernel == "splash":
        def ours(q, k, v):
            return splash_attention(q, k, v, mask, segments, block=128, dtype=jnp.float32)
    else:
        def ours(q, k, v):
            return cudnn_attention(q, k, v, mask, segments, dtype=jnp.float32, implementation="xla")

    def dense(q, k, v):
        return _attention(q, [(k, v, dense_mask(mask, segments))], jnp.float32)

    def value_and_grads(f):
        out, vjp = jax.vjp(f, q, k, v)
        return out, vjp(weights)

    (got, got_grads), (want, want_grads) = (jax.jit(value_and_grads, static_argnums=0)(f) for f in (ours, dense))
    assert got.dtype == want.dtype == jnp.float32
    real = np.asarray(mask)[:, :, None, None]
    np.testing.assert_allclose(np.asarray(got) * real, np.asarray(want) * real, atol=1e-5 * float(jnp.abs(want).max()),
                               rtol=0)
    for a, b in zip(got_grads, want_grads):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5 * float(jnp.abs(b).max()), rtol=0)


def test_splash_attention_runs_per_device_under_a_mesh():
    """Under a data=2 x tensor=2 mesh the splash kernel runs once per device (shard_map) on its
    rows and KV heads (with their query heads); the result equals the unsharded call."""
    from r1jax.sharding import make_mesh
    q, k, v, mask, segments = _attention_inputs()
    want = splash_attention(q, k, v, mask, segments, block=128, dtype=jnp.float32)
    with jax.set_mesh(make_mesh("data=2,tensor=2", jax.devices()[:4])):
        got = jax.jit(lambda *a: splash_attention(*a, block=128, dtype=jnp.float32))(q, k, v, mask, segments)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6, rtol=0)


def test_a_prefill_into_a_cache_runs_the_dense_path_either_way(tiny_cfg):
    """Blockwise attention is for cache-less (training) forwards: a prefill into a cache is the
    same computation with either setting, bit for bit; the decode step after it reads the cache
    blockwise (the sampler tests below) and agrees within float32 rounding."""
    dense = _cfg(tiny_cfg)
    block = dataclasses.replace(dense, attention="blockwise", attention_block=16)
    params = init_params(dense, jax.random.key(0), std=0.2)
    tokens, mask, positions, _, _ = _batch()
    prefills = [forward(c, params, tokens, positions, init_cache(c, B, T + 2), mask=mask) for c in (dense, block)]
    np.testing.assert_array_equal(np.asarray(prefills[0][0]), np.asarray(prefills[1][0]))
    steps = [forward(c, params, tokens[:, :1], positions[:, -1:] + 1, cache)[0]
             for c, (_, cache) in zip((dense, block), prefills)]
    np.testing.assert_allclose(np.asarray(steps[0]), np.asarray(steps[1]), atol=2e-5, rtol=0)


@pytest.mark.parametrize("chunk", [7, 49])
def test_chunked_head_logprobs_equal_the_whole_vocabulary(tiny_cfg, chunk):
    """GRPO's log-probs and entropy (temperature 0.7) and their gradients with the LM head run
    `chunk` tokens at a time (49 of 50: one full chunk and a one-token remainder) equal a
    log-softmax over the whole [B, N, V] logits within 1e-5 (float32)."""
    cfg = _cfg(tiny_cfg, head_chunk=1024)
    params = init_params(cfg, jax.random.key(0), std=0.3)
    tokens, mask, _, _, _ = _batch()
    n_new = 50

    def reference(p):
        positions = jnp.maximum(jnp.cumsum(mask, 1) - 1, 0)
        logits = forward(cfg, p, tokens, positions, mask=mask)[0][:, -n_new - 1:-1] / 0.7
        logp_all = jax.nn.log_softmax(logits)
        return (jnp.take_along_axis(logp_all, tokens[:, -n_new:, None], -1)[..., 0],
                -(jnp.exp(logp_all) * logp_all).sum(-1))

    chunked = dataclasses.replace(cfg, head_chunk=chunk)
    def ours(p):
        return train.completion_logprobs(chunked, p, tokens, mask, n_new, 0.7)

    for a, b in zip(ours(params), reference(params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=0)
    weights = jnp.linspace(-1, 1, n_new)
    ga, gb = (jax.grad(lambda p, f=f: (f(p)[0] * weights).sum())(params) for f in (ours, reference))
    for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5 * float(jnp.abs(y).max()), rtol=0)


def test_chunked_sft_loss_equals_the_whole_vocabulary_loss(tiny_cfg):
    """The SFT / pretraining loss (`train.lm_loss`) with a chunked head: the loss and its gradient
    equal next_token_loss over the whole [B, T, V] logits."""
    cfg = _cfg(tiny_cfg)
    tokens, mask, positions, _, _ = _batch()
    batch = {"tokens": tokens, "mask": mask, "positions": positions,
             "loss_mask": mask.at[:, :40].set(False).astype(jnp.float32)}
    params = init_params(cfg, jax.random.key(0), std=0.3)

    def whole(p):
        logits = forward(cfg, p, tokens, positions, mask=mask)[0]
        return losses.next_token_loss(logits, tokens, batch["loss_mask"])[0]

    (loss, _), grads = jax.value_and_grad(train.lm_loss, argnums=1, has_aux=True)(
        dataclasses.replace(cfg, head_chunk=9), params, batch)
    want, want_grads = jax.value_and_grad(whole)(params)
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-6)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5 * float(jnp.abs(w).max()), rtol=0)


def _grpo_temp_bytes(cfg: ModelConfig, T: int, n_new: int) -> int:
    """XLA's temporary memory for the gradient of the GRPO loss on 1 row of T tokens."""
    S = jax.ShapeDtypeStruct
    params = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
    batch = {"tokens": S((1, T), jnp.int32), "mask": S((1, T), bool), "completion_mask": S((1, n_new), jnp.float32),
             "old_logp": S((1, n_new), jnp.float32), "advantages": S((1,), jnp.float32)}

    def loss(p, b):
        logp, _ = train.completion_logprobs(cfg, p, b["tokens"], b["mask"], n_new)
        return losses.grpo_loss(logp, b["old_logp"], None, b["advantages"], b["completion_mask"], beta=0.0)[0]

    return jax.jit(jax.grad(loss)).lower(params, batch).compile().memory_analysis().temp_size_in_bytes


def test_blockwise_and_chunked_memory_grows_linearly_with_length(tiny_cfg):
    """From 512 to 2048 tokens (4x), the compiled temporary memory of a GRPO gradient grows about
    4x with blockwise attention and a chunked head, and about 16x (the [T, T] scores) dense."""
    dense = _cfg(tiny_cfg, head_chunk=1 << 20, max_seq_len=4096)
    long = dataclasses.replace(dense, attention="blockwise", attention_block=128, head_chunk=128)
    d = [_grpo_temp_bytes(dense, T, T - 64) for T in (512, 2048)]
    b = [_grpo_temp_bytes(long, T, T - 64) for T in (512, 2048)]
    assert b[1] / b[0] < 5.0, b
    assert d[1] / d[0] > 9.0, d
    assert b[1] < d[1] / 4, (b, d)


@pytest.mark.parametrize("scan", [True, False])
def test_decoding_reads_only_the_filled_cache_and_samples_the_same(tiny_cfg, scan):
    """With blockwise attention a decode step reads the cache 64 slots at a time and skips the
    blocks past what is filled (a 21 + 300 = 321-slot cache: the last block overlaps the one
    before it). The sampler draws the same tokens as with dense attention over the whole
    cache, with log-probs within 2e-5."""
    from r1jax.sampling import SamplingConfig, make_sampler
    cfg = _cfg(tiny_cfg, scan_layers=scan)
    params = init_params(cfg, jax.random.key(0), std=0.3)
    prompts = jax.random.randint(jax.random.key(1), (4, 21), 3, 512)
    mask = jnp.ones((4, 21), bool).at[0, :5].set(False)
    sc = SamplingConfig(temperature=1.0, max_new_tokens=300, stop_tokens=(), pad_id=0)
    dense, block = (make_sampler(dataclasses.replace(cfg, attention=a, attention_block=64), sc)(
        params, prompts, mask, jax.random.key(2)) for a in ("dense", "blockwise"))
    np.testing.assert_array_equal(np.asarray(dense.tokens), np.asarray(block.tokens))
    np.testing.assert_allclose(np.asarray(dense.logprobs), np.asarray(block.logprobs), atol=2e-5, rtol=0)


def test_decode_attention_skips_the_empty_blocks(tiny_cfg):
    """The cache's empty slots are never read: filled with NaN they leave the step's output
    unchanged (a read of any of them would spread NaN through the softmax)."""
    from r1jax.attention import decode_attention
    B, K, G, H, S = 2, 2, 2, 16, 100
    keys = jax.random.split(jax.random.key(0), 4)
    q = jax.random.normal(keys[0], (B, 1, K * G, H))
    k = jax.random.normal(keys[1], (B, K, H, S))
    v = jax.random.normal(keys[2], (B, K, S, H))
    filled = 37
    allowed = (jnp.arange(S) < filled)[None, None].repeat(B, 0)
    out = decode_attention(q, k, v, allowed, jnp.int32(filled), None, block=16, dtype=jnp.float32)
    poisoned = decode_attention(q, k.at[..., 48:].set(jnp.nan), v.at[:, :, 48:].set(jnp.nan), allowed,
                                jnp.int32(filled), None, block=16, dtype=jnp.float32)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(poisoned))
    # against a softmax over the filled slots written out in numpy
    qn, kn, vn = (np.asarray(x, np.float64) for x in (q, k, v))
    s = np.einsum("bkgh,bkhs->bkgs", qn.reshape(B, K, G, H), kn[..., :filled]) / np.sqrt(H)
    p = np.exp(s - s.max(-1, keepdims=True))
    want = np.einsum("bkgs,bksh->bkgh", p / p.sum(-1, keepdims=True), vn[:, :, :filled])
    np.testing.assert_allclose(np.asarray(out).reshape(B, K, G, H), want, atol=1e-5)


def _rollouts(rng, n, P=12, N=20):
    """n rollouts of a left-padded batch: prompts of 3..P tokens, completions of 1..N."""
    prompts = [rng.integers(3, 512, rng.integers(3, P + 1)).tolist() for _ in range(n)]
    completions = [rng.integers(3, 512, rng.integers(1, N + 1)).tolist() for _ in range(n)]
    tokens = np.zeros((n, P + N), np.int32)
    mask = np.zeros((n, P + N), bool)
    targets = np.zeros((n, N), np.int32)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        tokens[i, P - len(p):P], mask[i, P - len(p):P] = p, True
        tokens[i, P:P + len(c)], mask[i, P:P + len(c)], targets[i, :len(c)] = c, True, c
    cmask = (np.arange(N)[None] < np.array([len(c) for c in completions])[:, None]).astype(np.float32)
    return prompts, completions, tokens, mask, targets, cmask


@pytest.mark.parametrize("agg,attention", [("seq-mean-token-mean", "dense"), ("token-mean", "blockwise"),
                                           ("seq-mean-token-sum-norm", "dense"),
                                           ("seq-mean-token-sum-norm", "blockwise")])
def test_a_packed_grpo_update_equals_the_padded_one(tiny_cfg, agg, attention):
    """Rollouts of mixed lengths packed into rows (first-fit, segment ids, positions from 0 per
    rollout) give each rollout's log-probs within 1e-6 (relative: log-probs near -9 differ by an
    ulp or two) of the padded computation's, and the GRPO loss for every aggregation within 1e-6
    and its gradient within 1e-5 of the largest element (float32)."""
    from r1jax import data
    from r1jax.config import GRPOConfig
    cfg = _cfg(tiny_cfg, attention=attention, attention_block=12)
    params = init_params(cfg, jax.random.key(0), std=0.2)
    rng = np.random.default_rng(0)
    prompts, completions, tokens, mask, targets, cmask = _rollouts(rng, 8)
    # rows as wide as the kernel runs them (r1jax.stages.grpo): 36 = three 12-token tiles (blockwise)
    width = tiled_length(cfg, tokens.shape[1])
    assert width == {"dense": 32, "blockwise": 36}[attention]
    packed = data.pack_rollouts(prompts, completions, width=width, rows_multiple=2, tokens_multiple=16)
    assert packed["tokens"].shape[0] < 8 and packed["tokens"].shape[0] % 2 == 0  # fewer rows than rollouts
    common = {"completion_mask": cmask, "old_logp": np.full((8, 20), -6.0, np.float32),
              "ref_logp": np.full((8, 20), -6.5, np.float32),
              "advantages": rng.normal(size=8).astype(np.float32)}
    padded_batch = {"tokens": tokens, "mask": mask, **common}
    packed_batch = {**packed, **common}
    a = train.rollout_logprobs(cfg, params, padded_batch)[0]
    b = train.rollout_logprobs(cfg, params, packed_batch)[0]
    np.testing.assert_allclose(np.asarray(a) * cmask, np.asarray(b) * cmask, atol=1e-6, rtol=1e-6)
    g = GRPOConfig(agg=agg, beta=0.04)

    def loss(p, batch):
        logp, _ = train.rollout_logprobs(cfg, p, batch)
        return losses.grpo_loss(logp, batch["old_logp"], batch["ref_logp"], batch["advantages"],
                                batch["completion_mask"], beta=g.beta, agg=g.agg, max_len=20)[0]

    (la, ga), (lb, gb) = (jax.value_and_grad(loss)(params, b_) for b_ in (padded_batch, packed_batch))
    np.testing.assert_allclose(float(la), float(lb), atol=1e-6, rtol=0)
    for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5 * float(jnp.abs(x).max()), rtol=0)


def test_blockwise_attention_skips_the_tiles_between_packed_documents():
    """Two documents of 32 tokens in one row, blocks of 16: the tiles where the second document's
    queries meet the first's keys are never computed. NaN values in the first document would
    poison any tile that read them (0 x NaN), so the second's output is finite only if they are
    skipped, and it equals the second document attended alone."""
    rng = np.random.default_rng(0)
    B, T, K, G, H = 1, 64, 2, 2, 8
    q = jnp.asarray(rng.normal(size=(B, T, K * G, H)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(B, K, H, T)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(B, K, T, H)), jnp.float32)
    seg = jnp.asarray([[1] * 32 + [2] * 32])
    poisoned = v.at[:, :, :32].set(jnp.nan)
    out = blockwise_attention(q, k, poisoned, jnp.ones((B, T), bool), seg, block=16, dtype=jnp.float32)
    alone = blockwise_attention(q[:, 32:], k[..., 32:], v[:, :, 32:], jnp.ones((B, 32), bool), None, block=16,
                                dtype=jnp.float32)
    assert np.isfinite(np.asarray(out[:, 32:])).all()
    np.testing.assert_allclose(out[:, 32:], alone, atol=1e-6)


def test_packing_fills_rows_first_fit_and_refuses_what_does_not_fit():
    from r1jax import data
    packed = data.pack_rollouts([[1, 2], [3], [4, 5, 6]], [[7, 8, 9], [10], [11]], width=6, tokens_multiple=8)
    # lengths 5, 2, 4 -> first-fit decreasing: [5], [4, 2]
    assert packed["tokens"].tolist() == [[1, 2, 7, 8, 9, 0], [4, 5, 6, 11, 3, 10]]
    assert packed["segment_ids"].tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 2, 2]]  # ids in position order
    assert packed["positions"].tolist() == [[0, 1, 2, 3, 4, 0], [0, 1, 2, 3, 0, 1]]
    # one entry per completion token (5, padded to 8): the state predicting it, the token, its place
    assert packed["rows"].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    assert packed["cols"].tolist() == [1, 2, 3, 4, 2, 0, 0, 0]
    assert packed["targets"].tolist() == [7, 8, 9, 10, 11, 0, 0, 0]
    assert packed["seq"].tolist() == [0, 0, 0, 1, 2, 3, 3, 3] and packed["pos"].tolist() == [0, 1, 2, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="a rollout of 7 tokens does not fit a packed row of 6"):
        data.pack_rollouts([[1, 2, 3]], [[4, 5, 6, 7]], width=6)


def test_bucketed_sizes_are_few_and_at_most_a_quarter_above():
    from r1jax import data
    assert [data.bucket(n, 1) for n in (1, 7, 8, 9, 11, 17, 33, 100)] == [1, 7, 8, 10, 12, 20, 40, 112]
    assert [data.bucket(n, 128) for n in (1, 128, 129, 1100, 2200)] == [128, 128, 256, 1280, 2560]
    sizes = [data.bucket(n, 1) for n in range(1, 4097)]
    assert all(n <= b <= 1.25 * n for n, b in zip(range(9, 4097), sizes[8:]))
    assert len(set(sizes)) == 8 + 4 * 9  # 1-8, then four a doubling up to 4096


def test_packing_to_minimum_sizes_pads_with_empty_rows_and_entries():
    from r1jax import data
    packed = data.pack_rollouts([[1, 2], [3]], [[7, 8, 9], [10]], width=6, tokens_multiple=4, min_rows=3, min_tokens=6)
    # lengths 5 and 2 in rows of 6: two rows, a third all padding
    assert packed["tokens"].tolist() == [[1, 2, 7, 8, 9, 0], [3, 10, 0, 0, 0, 0], [0] * 6]
    assert packed["segment_ids"].tolist() == [[1] * 5 + [0], [1, 1, 0, 0, 0, 0], [0] * 6]
    assert packed["targets"].tolist() == [7, 8, 9, 10, 0, 0, 0, 0]  # 6 rounded up to a multiple of 4
    assert packed["seq"].tolist() == [0, 0, 0, 1, 2, 2, 2, 2]  # padding entries point past the rollouts


def test_chunked_logit_distillation_equals_the_whole_vocabulary(tiny_cfg):
    """Logit distillation with the head in chunks of 9 positions: the teacher's top-k (values
    and ids) and the student's loss and gradient equal the whole-logits computation
    (`losses.topk_distill_loss` on [B, T, V] logits) within 1e-5."""
    from r1jax.stages.distill import teacher_topk
    cfg = _cfg(tiny_cfg)
    chunked = dataclasses.replace(cfg, head_chunk=9)
    tokens, mask, positions, _, _ = _batch()
    batch = {"tokens": tokens, "mask": mask, "positions": positions,
             "loss_mask": mask.at[:, :40].set(False).astype(jnp.float32)}
    teacher = init_params(cfg, jax.random.key(1), std=0.3)
    student = init_params(cfg, jax.random.key(2), std=0.3)
    (v, i), (v9, i9) = (teacher_topk(c, teacher, batch, k=8, temperature=0.8) for c in (cfg, chunked))
    np.testing.assert_array_equal(np.asarray(i), np.asarray(i9))
    np.testing.assert_allclose(np.asarray(v), np.asarray(v9), atol=1e-5, rtol=0)
    batch.update(teacher_topk_logp=v, teacher_topk_idx=i)

    def whole(p):
        logits = forward(cfg, p, tokens, positions, mask=mask)[0]
        return losses.topk_distill_loss(logits[:, :-1], v[:, :-1], i[:, :-1], batch["loss_mask"][:, 1:], 0.8)[0]

    sgd = optax.sgd(1.0)
    state = train.init_state(chunked, sgd, None, params=student)
    new, metrics = train.logit_distill_step(state, batch, model_cfg=chunked, tx=sgd, temperature=0.8)
    loss, grads = jax.value_and_grad(whole)(student)
    np.testing.assert_allclose(float(metrics["loss"]), float(loss), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["grad_norm"]), float(optax.tree.norm(grads)), rtol=1e-5)


def test_remat_policies_compute_the_same_and_keep_less_or_more(tiny_cfg):
    """remat 'full' and 'save-dots' give the gradient of no remat (within 1e-6 of the largest),
    and what autodiff keeps for the backward pass (the planner's count of jax.vjp residuals)
    orders as full < save-dots < none."""
    from r1jax import plan
    tokens, mask, positions, _, _ = _batch()
    params = init_params(_cfg(tiny_cfg), jax.random.key(0), std=0.2)
    configs = {"none": _cfg(tiny_cfg, scan_layers=True), "full": _cfg(tiny_cfg, scan_layers=True, remat=True),
               "save-dots": _cfg(tiny_cfg, scan_layers=True, remat=True, remat_policy="save-dots")}

    def grads(cfg):
        return jax.tree.leaves(jax.grad(lambda p: (forward(cfg, p, tokens, positions, mask=mask)[0] ** 2).mean())(
            params))

    reference = grads(configs["none"])
    for name in ("full", "save-dots"):
        for x, y in zip(grads(configs[name]), reference):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6 * float(jnp.abs(y).max()), rtol=0)
    kept = {name: plan._residual_bytes(cfg, "sft", 2, 32, 32, 0.0) for name, cfg in configs.items()}
    assert kept["full"] < kept["save-dots"] < kept["none"], kept
    with pytest.raises(ValueError, match="remat_policy must be one of full, save-dots, got 'dots'"):
        dataclasses.replace(tiny_cfg, remat_policy="dots")
