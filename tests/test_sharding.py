"""Forward and one AdamW step on 8 simulated devices equal the single-device result."""

import jax
import numpy as np
import pytest

from r1jax import sharding, train
from r1jax.config import MeshConfig, OptimConfig
from r1jax.model import forward

MESHES = [(8, 1, 1), (1, 8, 1), (1, 2, 4), (2, 2, 2)]


def _batch(cfg, B=8, T=16):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
    pads = rng.integers(0, 5, B)
    mask = np.arange(T)[None, :] >= pads[:, None]  # left padding of 0..4 tokens
    return {"tokens": tokens, "mask": mask, "loss_mask": mask.astype(np.float32)}


@pytest.fixture(scope="module")
def reference(tiny_cfg):
    # Adam's first step lr * g / (|g| + eps) turns float noise of the sharded reduction order in a
    # near-zero gradient into up to lr-sized differences; lr 5e-4 keeps them below the 1e-5 bound
    tx = train.make_optimizer(OptimConfig(learning_rate=5e-4, warmup_steps=0, schedule="constant"))
    state = train.init_state(tiny_cfg, tx, jax.random.key(0))
    batch = _batch(tiny_cfg)
    logits, _ = jax.jit(lambda p, b: forward(tiny_cfg, p, b["tokens"], mask=b["mask"]))(state.params, batch)
    new_state, metrics = jax.jit(lambda s, b: train.lm_train_step(s, b, model_cfg=tiny_cfg, tx=tx))(state, batch)
    # The step must move every weight by far more than the 1e-5 tolerance used below.
    moved = np.abs(np.asarray(new_state.params["layers"]["wq"]) - np.asarray(state.params["layers"]["wq"]))
    assert np.median(moved) > 1e-4
    return tx, batch, np.asarray(logits), jax.device_get(new_state), jax.device_get(metrics)


def test_mesh_size_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="multiply to the device count"):
        sharding.make_mesh(MeshConfig(data=2, fsdp=2, tensor=1))
    with pytest.raises(ValueError, match="bad mesh spec"):
        MeshConfig.parse("data=2,fsdb=4")


@pytest.mark.parametrize("shape", MESHES, ids=lambda s: "x".join(map(str, s)))
def test_sharded_forward_and_step_match_single_device(tiny_cfg, reference, shape):
    tx, batch, ref_logits, ref_state, ref_metrics = reference
    mesh = sharding.make_mesh(MeshConfig(*shape))
    state_sh = train.state_shardings(mesh, tiny_cfg, tx)
    batch_sh = train.batch_shardings(mesh, batch)
    state = jax.jit(lambda k: train.init_state(tiny_cfg, tx, k), out_shardings=state_sh)(jax.random.key(0))
    batch_dev = jax.device_put(batch, batch_sh)

    fwd = jax.jit(lambda p, b: forward(tiny_cfg, p, b["tokens"], mask=b["mask"])[0],
                  in_shardings=(state_sh.params, batch_sh))
    with jax.set_mesh(mesh):
        logits = fwd(state.params, batch_dev)
    np.testing.assert_allclose(np.asarray(logits), ref_logits, atol=1e-5, rtol=0)

    step = train.compile_step(lambda s, b: train.lm_train_step(s, b, model_cfg=tiny_cfg, tx=tx),
                              mesh, state_sh, batch_sh)
    new_state, metrics = step(state, batch_dev)
    for name in ("loss", "grad_norm"):
        np.testing.assert_allclose(metrics[name], ref_metrics[name], atol=1e-5, rtol=0)
    for got, want in zip(jax.tree.leaves(new_state), jax.tree.leaves(ref_state)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=0)

    # The parameters are really split as the rules say.
    data, fsdp, tensor = shape
    L, D, N, H = tiny_cfg.n_layers, tiny_cfg.d_model, tiny_cfg.n_heads, tiny_cfg.head_dim
    wq = new_state.params["layers"]["wq"]
    assert wq.addressable_shards[0].data.shape == (L, D // fsdp, N // tensor, H)
    embed = new_state.params["embed"]
    assert embed.addressable_shards[0].data.shape == (tiny_cfg.vocab_size // tensor, D // fsdp)
    mu = new_state.opt_state[1][0].mu["layers"]["wq"]  # AdamW first moment follows its parameter
    assert mu.sharding.spec == wq.sharding.spec
    assert logits.sharding.spec[0] is not None or data * fsdp == 1
