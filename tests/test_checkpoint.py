"""Orbax checkpoints: round trip, rotation, crash safety, other meshes, params-only hand-off."""

import shutil

import jax
import numpy as np
import pytest

from r1jax import checkpoint, sharding, train
from r1jax.config import MeshConfig, OptimConfig, override

OPT = OptimConfig(learning_rate=1e-3)


def _trained_state(cfg, mesh, steps=1):
    tx = train.make_optimizer(OPT)
    state_sh = train.state_shardings(mesh, cfg, tx)
    state = jax.jit(lambda k: train.init_state(cfg, tx, k), out_shardings=state_sh)(jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {"tokens": rng.integers(0, cfg.vocab_size, (8, 8)).astype(np.int32), "mask": np.ones((8, 8), bool),
             "loss_mask": np.ones((8, 8), np.float32)}
    step = train.compile_step(lambda s, b: train.lm_train_step(s, b, model_cfg=cfg, tx=tx), mesh, state_sh,
                              train.batch_shardings(mesh, batch))
    for _ in range(steps):
        state, _ = step(state, batch)
    return tx, state


def _assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_of_everything(tmp_path, tiny_cfg):
    mesh = sharding.make_mesh(MeshConfig(), devices=jax.devices()[:1])
    tx, state = _trained_state(tiny_cfg, mesh)
    rng = jax.random.key(42)
    ckpt = checkpoint.Checkpointer(tmp_path, {"model": tiny_cfg, "optim": OPT})
    assert ckpt.save(state, rng=rng, data_state={"next_index": 17, "epoch": 2})
    ckpt.close()

    again = checkpoint.Checkpointer(tmp_path, {"model": tiny_cfg, "optim": OPT})
    out = again.restore(train.abstract_state(mesh, tiny_cfg, tx))
    assert out.step == 1 and int(out.state.step) == 1
    assert out.data_state == {"next_index": 17, "epoch": 2}
    np.testing.assert_array_equal(jax.random.key_data(out.rng), jax.random.key_data(rng))
    _assert_trees_equal(out.state.params, state.params)
    _assert_trees_equal(out.state.opt_state, state.opt_state)
    assert jax.tree.structure(out.state) == jax.tree.structure(state)


def test_keeps_last_n_and_ignores_incomplete_saves(tmp_path, tiny_cfg):
    mesh = sharding.make_mesh(MeshConfig(), devices=jax.devices()[:1])
    tx, state = _trained_state(tiny_cfg, mesh)
    ckpt = checkpoint.Checkpointer(tmp_path, tiny_cfg, max_to_keep=2, async_save=False)
    for s in range(1, 6):
        ckpt.save(state.replace(step=np.int32(s)))
    assert ckpt.all_steps() == [4, 5]
    ckpt.close()
    # A crash during the save of step 9 leaves only orbax's temporary directory behind.
    shutil.copytree(tmp_path / "5", tmp_path / "9.orbax-checkpoint-tmp-1732456789")
    (tmp_path / "9.orbax-checkpoint-tmp-1732456789" / "commit_success.txt").unlink(missing_ok=True)
    again = checkpoint.Checkpointer(tmp_path, tiny_cfg)
    assert again.latest_step() == 5
    assert again.restore(train.abstract_state(mesh, tiny_cfg, tx)).step == 5


def test_restore_onto_a_different_mesh(tmp_path, tiny_cfg):
    tx, state = _trained_state(tiny_cfg, sharding.make_mesh(MeshConfig(fsdp=8)))
    ckpt = checkpoint.Checkpointer(tmp_path, tiny_cfg)
    ckpt.save(state)
    ckpt.close()
    other = sharding.make_mesh(MeshConfig(data=2, fsdp=1, tensor=4))
    out = checkpoint.Checkpointer(tmp_path, tiny_cfg).restore(train.abstract_state(other, tiny_cfg, tx))
    _assert_trees_equal(out.state.params, state.params)
    wq = out.state.params["layers"]["wq"]
    assert wq.sharding.mesh.shape == other.shape
    assert wq.addressable_shards[0].data.shape == (2, 64, 1, 16)  # heads split 4 ways, no fsdp

    params = checkpoint.restore_params(tmp_path, tiny_cfg, mesh=other)  # the stage-to-stage hand-off
    _assert_trees_equal(params, state.params)
    assert params["layers"]["wq"].sharding == wq.sharding


def test_shape_mismatch_names_the_parameter(tmp_path, tiny_cfg):
    _, state = _trained_state(tiny_cfg, sharding.make_mesh(MeshConfig(), devices=jax.devices()[:1]))
    ckpt = checkpoint.Checkpointer(tmp_path, tiny_cfg)
    ckpt.save(state)
    ckpt.close()
    wider = override(tiny_cfg, d_ff=96)
    with pytest.raises(ValueError, match=r"params\['layers'\]\['w_up'\]: checkpoint has shape \(2, 64, 128\), "
                                         r"the requested config needs \(2, 64, 96\)"):
        checkpoint.restore_params(tmp_path, wider)


def test_a_different_config_never_touches_existing_checkpoints(tmp_path, tiny_cfg):
    _, state = _trained_state(tiny_cfg, sharding.make_mesh(MeshConfig(), devices=jax.devices()[:1]))
    ckpt = checkpoint.Checkpointer(tmp_path, {"model": tiny_cfg, "lr": 1e-3}, max_to_keep=1)
    ckpt.save(state)
    ckpt.close()
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(checkpoint.ConfigMismatchError, match=r"lr: saved 0.001, now 0.01"):
        checkpoint.Checkpointer(tmp_path, {"model": tiny_cfg, "lr": 1e-2}, max_to_keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert checkpoint.Checkpointer(tmp_path, {"model": tiny_cfg, "lr": 1e-3}).latest_step() == 1
    # how the layers run (scan or loop, remat) is not a different config: the run resumes
    other_way = override(tiny_cfg, scan_layers=not tiny_cfg.scan_layers, remat=not tiny_cfg.remat)
    assert checkpoint.Checkpointer(tmp_path, {"model": other_way, "lr": 1e-3}).latest_step() == 1


def test_a_run_on_a_constant_learning_rate_can_be_extended(tmp_path, tiny_cfg):
    """More steps on a constant schedule resume the run; under cosine they change every learning
    rate, so the directory stays refused."""
    _, state = _trained_state(tiny_cfg, sharding.make_mesh(MeshConfig(), devices=jax.devices()[:1]))

    def run(schedule, steps):
        return {"model": tiny_cfg, "rl": {"optim": OptimConfig(schedule=schedule), "trainer": {"steps": steps}}}
    for schedule, where in (("constant", tmp_path / "constant"), ("cosine", tmp_path / "cosine")):
        ckpt = checkpoint.Checkpointer(where, run(schedule, 25))
        ckpt.save(state)
        ckpt.close()
    assert checkpoint.Checkpointer(tmp_path / "constant", run("constant", 40)).latest_step() == 1
    with pytest.raises(checkpoint.ConfigMismatchError, match=r"rl.trainer.steps: saved 25, now 40"):
        checkpoint.Checkpointer(tmp_path / "cosine", run("cosine", 40))
    with pytest.raises(checkpoint.ConfigMismatchError, match=r"rl.optim.schedule: saved 'constant', now 'cosine'"):
        checkpoint.Checkpointer(tmp_path / "constant", run("cosine", 25))
