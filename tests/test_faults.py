"""Faults a run survives: non-finite steps (skipped, counted, stopped; never saved), a run
directory moved or spelled differently (still the same run), a corrupt latest checkpoint (the
newest intact one is restored), and a kill between checkpoints (the logs are cut back)."""

import json
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import checkpoint, runtime, sharding, train
from r1jax.config import MeshConfig, ModelConfig, OptimConfig, TrainerConfig, from_dict, override_paths
from r1jax.stages import lm

PRETRAIN = {"preset": "tiny", "batch_size": 4, "seq_len": 192, "n_examples": 100, "trainer.steps": 4,
            "trainer.checkpoint_every": 2, "trainer.log_every": 1}


def _pretrain(out_dir, **changes):
    return lm.pretrain(override_paths(lm.PretrainConfig(out_dir=str(out_dir)), {**PRETRAIN, **changes}))


def _strict_json(line: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(line, parse_constant=refuse)


def _finite(tree) -> bool:
    return all(bool(np.isfinite(np.asarray(x)).all()) for x in jax.tree.leaves(tree)
               if jnp.issubdtype(x.dtype, jnp.floating))


# ----------------------------------------------------------------------------- non-finite steps

def test_one_nan_gradient_element_skips_the_update():
    """Gradient clipping spreads one NaN over every parameter; the update must not happen."""
    tx = train.make_optimizer(OptimConfig(learning_rate=0.1, grad_clip=1.0))
    params = {"w": jnp.array([[1.0, 0.0], [2.0, 3.0]]), "b": jnp.array([0.5, -0.5])}
    state = train.init_state(None, tx, None, params=params)
    state, _ = jax.jit(lambda s: train.apply_gradients(s, tx, lambda p: (sum(jnp.sum(x ** 2) for x in
                                                                              p.values()), {})))(state)
    before = jax.tree.map(np.asarray, state)

    def loss_fn(p):  # a finite loss whose gradient is NaN at w[0, 1] (0 * d sqrt|x| / dx at 0)
        return jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 2) + jnp.sum(0.0 * jnp.sqrt(jnp.abs(p["w"]))), {}

    after, metrics = jax.jit(lambda s: train.apply_gradients(s, tx, loss_fn))(state)
    assert np.isfinite(float(metrics["loss"])) and not np.isfinite(float(metrics["grad_norm"]))
    assert int(metrics["skipped"]) == 1 and int(after.step) == int(before.step) + 1
    for x, y in zip(jax.tree.leaves(before.params) + jax.tree.leaves(before.opt_state),
                    jax.tree.leaves(after.params) + jax.tree.leaves(after.opt_state)):
        np.testing.assert_array_equal(np.asarray(y), x)  # parameters and optimizer state untouched

    fine, metrics = jax.jit(lambda s: train.apply_gradients(s, tx, lambda p: (jnp.sum(p["w"] ** 2), {})))(state)
    assert int(metrics["skipped"]) == 0 and not np.array_equal(np.asarray(fine.params["w"]), before.params["w"])


def test_a_grpo_mini_batch_with_every_token_masked_leaves_the_model_as_it_was(tiny_cfg):
    """Truncated rollouts (truncation 'mask') all have the longest length, so length grouping
    puts them together: a whole mini-batch can be masked. Its gradient is zero, but AdamW after
    one real step would still move every weight by its momentum (about two thirds of a step)."""
    from r1jax.config import GRPOConfig
    tx = train.make_optimizer(OptimConfig(learning_rate=1e-2, schedule="constant"))
    state = train.init_state(tiny_cfg, tx, jax.random.key(0))
    rng = np.random.default_rng(0)
    B, P, N = 2, 4, 6
    batch = {"tokens": rng.integers(1, tiny_cfg.vocab_size, (B, P + N)).astype(np.int32),
             "mask": np.ones((B, P + N), bool), "completion_mask": np.ones((B, N), np.float32),
             "old_logp": np.full((B, N), -3.0, np.float32), "ref_logp": np.zeros((B, N), np.float32),
             "advantages": np.array([1.0, -1.0], np.float32)}
    step = jax.jit(lambda s, b: train.grpo_train_step(s, b, model_cfg=tiny_cfg, tx=tx, cfg=GRPOConfig(beta=0.0)))
    state, _ = step(state, batch)  # a real update: Adam has momentum now
    before = jax.tree.map(np.asarray, state)
    after, metrics = step(state, {**batch, "completion_mask": np.zeros((B, N), np.float32)})
    assert int(metrics["skipped"]) == 0 and int(after.step) == int(before.step) + 1  # not a fault
    for x, y in zip(jax.tree.leaves(before.params) + jax.tree.leaves(before.opt_state),
                    jax.tree.leaves(after.params) + jax.tree.leaves(after.opt_state)):
        np.testing.assert_array_equal(np.asarray(y), x)


def test_a_non_finite_checkpoint_is_never_written(tmp_path, tiny_cfg):
    tx = train.make_optimizer(OptimConfig())
    mesh = sharding.make_mesh(MeshConfig(), devices=jax.devices()[:1])
    state = jax.jit(lambda k: train.init_state(tiny_cfg, tx, k),
                    out_shardings=train.state_shardings(mesh, tiny_cfg, tx))(jax.random.key(0))
    ckpt = checkpoint.Checkpointer(tmp_path, {"model": tiny_cfg}, async_save=False)
    ckpt.save(state.replace(step=jnp.int32(1)))
    bad = state.replace(step=jnp.int32(2), params=jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan),
                                                               state.params))
    with pytest.raises(ValueError, match=r"step 2: .*not finite"):
        ckpt.save(bad)
    ckpt.close()
    assert checkpoint.Checkpointer(tmp_path, {"model": tiny_cfg}).all_steps() == [1]


def test_a_diverging_run_skips_counts_and_stops_naming_the_step(tmp_path):
    """`r1jax pretrain --optim.learning-rate 1e30`: the loss turns non-finite after the first update;
    those updates are skipped and counted, the run stops with an error after
    trainer.max_nonfinite_steps of them in a row, every checkpoint is finite and metrics.jsonl is
    strict JSON (null for a non-finite value)."""
    with pytest.raises(runtime.NonFiniteError, match=r"step 4: .*3 steps in a row") as err:
        _pretrain(tmp_path, **{"optim.learning_rate": 1e30, "optim.warmup_steps": 0, "trainer.steps": 8,
                               "trainer.checkpoint_every": 1, "trainer.max_nonfinite_steps": 3})
    assert "optim.learning_rate" in str(err.value)
    rows = [_strict_json(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["skipped"] for r in rows] == [0, 1, 1, 1]
    assert rows[0]["loss"] is not None and rows[-1]["loss"] is None
    model_cfg = from_dict(ModelConfig, checkpoint.read_run_config(tmp_path / "ckpt")["model"])
    kept = sorted(int(p.name) for p in (tmp_path / "ckpt").iterdir() if p.name.isdigit())
    assert kept == [1, 2, 3]  # the steps before the stop; the skipped ones hold step 1's parameters
    saved = [checkpoint.restore_params(tmp_path / "ckpt", model_cfg, step=step) for step in kept]
    assert all(_finite(p) for p in saved)
    for p in saved[1:]:
        for x, y in zip(jax.tree.leaves(saved[0]), jax.tree.leaves(p)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_metrics_lines_are_strict_json(tmp_path):
    from r1jax.report import MetricsWriter
    w = MetricsWriter(tmp_path)
    w.write(3, {"loss": float("nan"), "grad_norm": float("inf"), "reward": -float("inf"), "tokens": 7, "lr": 1e-3})
    w.close()
    assert _strict_json(open(tmp_path / "metrics.jsonl").read()) == {
        "step": 3, "loss": None, "grad_norm": None, "reward": None, "tokens": 7, "lr": 1e-3}


def test_the_loop_stops_after_max_nonfinite_steps_in_a_row(tmp_path):
    """Skipped steps that are not in a row never stop the run; the stop names the step; 0 never stops."""
    class NoCheckpoints:
        def save(self, state, **_):
            pass

        def close(self):
            pass

    def run(pattern, limit):
        def step_fn(state, step):
            return state + 1, {"loss": float("nan") if pattern[step] else 1.0, "skipped": jnp.int32(pattern[step])}
        out = tmp_path / f"run{limit}{''.join(map(str, pattern))}"
        out.mkdir()
        trainer = TrainerConfig(steps=len(pattern), checkpoint_every=100, log_every=3, max_nonfinite_steps=limit)
        runtime.run_loop(0, step_fn, out=out, ckpt=NoCheckpoints(), save=lambda s, n: {}, trainer=trainer,
                         steps=len(pattern), start=0, desc="t", postfix={})
        return [_strict_json(line) for line in open(out / "metrics.jsonl")]

    rows = run([1, 1, 0, 1, 1, 0, 0, 1, 1], 3)
    assert [(r["step"], r["skipped"]) for r in rows] == [(3, 2), (6, 2), (9, 2)]
    with pytest.raises(runtime.NonFiniteError, match=r"step 5: .*3 steps in a row \(steps 3-5\)"):
        run([0, 0, 1, 1, 1, 0, 0, 0, 0], 3)
    assert [r["skipped"] for r in run([1] * 6, 0)] == [3, 3]


# ----------------------------------------------------------------------------- resume

@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """A pretrain run of 4 steps stopped by SIGTERM at step 2 (checkpoint 2, metrics lines 1-2),
    and a copy of it as it was then."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    real, calls = train.compile_step, {"n": 0}

    def compile_step(*args, **kwargs):
        step = real(*args, **kwargs)

        def run(state, batch):
            calls["n"] += 1
            if calls["n"] == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            return step(state, batch)
        return run

    with pytest.MonkeyPatch.context() as m:
        m.setattr(lm.train, "compile_step", compile_step)
        assert _pretrain(out)["step"] == 2
    assert sorted(int(p.name) for p in (out / "ckpt").iterdir() if p.name.isdigit()) == [2]
    shutil.copytree(out, out.with_name("as_stopped"))
    return out, out.with_name("as_stopped")


def test_a_moved_run_directory_resumes(interrupted_run, tmp_path, monkeypatch):
    """The run directory moved elsewhere, and named with '..' in it, is the same run."""
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(interrupted_run[1], moved)
    monkeypatch.chdir(tmp_path)
    summary = _pretrain("elsewhere/run/../run")
    assert summary["step"] == 4
    assert [_strict_json(line)["step"] for line in open(moved / "metrics.jsonl")] == [1, 2, 3, 4]


def test_paths_in_a_saved_config_are_places_not_strings(tmp_path, tiny_cfg, monkeypatch):
    """A recipe's folder moved as a whole: a stage's out_dir, and the sibling stages and files it
    names, all moved with it. The same place named another way is the same; another place is not."""
    state = train.init_state(tiny_cfg, train.make_optimizer(OptimConfig()), jax.random.key(0))

    def config(root):
        return {"model": tiny_cfg, "sft": {"out_dir": f"{root}/sft", "init_dir": f"{root}/base",
                                           "data": f"{root}/cold.jsonl", "epochs": 2.0}}

    monkeypatch.chdir(tmp_path)
    ckpt = checkpoint.Checkpointer("old/r1/sft/ckpt", config("old/r1"), async_save=False)
    ckpt.save(state.replace(step=jnp.int32(1)))
    ckpt.close()
    shutil.move("old", "new")
    assert checkpoint.Checkpointer("new/r1/sft/ckpt", config("new/r1")).latest_step() == 1
    monkeypatch.chdir(tmp_path / "new")  # the same places, relative to another working directory
    assert checkpoint.Checkpointer("r1/sft/ckpt", config("./r1/../r1")).latest_step() == 1
    assert checkpoint.Checkpointer(tmp_path / "new/r1/sft/ckpt", config(tmp_path / "new/r1")).latest_step() == 1
    other = {**config("r1"), "sft": {**config("r1")["sft"], "init_dir": "elsewhere/base"}}
    with pytest.raises(checkpoint.ConfigMismatchError, match=r"sft.init_dir: saved 'old/r1/base', "
                                                             r"now 'elsewhere/base'"):
        checkpoint.Checkpointer("r1/sft/ckpt", other)


def test_a_resume_cuts_the_logs_back_to_the_checkpoint(interrupted_run):
    """A kill after the checkpoint at step 2 left lines of steps 3 and 4 (and a torn one) behind;
    the resumed run writes those steps again, so each step has one line."""
    run, as_stopped = interrupted_run
    shutil.rmtree(run)
    shutil.copytree(as_stopped, run)  # where it ran: this test is about the logs, not a move
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 9.0}\n{"step": 4, "loss": 9.0}\n{"step": 5, "lo')
    summary = _pretrain(run)
    assert summary["step"] == 4
    rows = [_strict_json(line) for line in open(run / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[2]["loss"] != 9.0


def test_trim_logs_cuts_every_run_log(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4)))
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps({"step": s, "x": "é"}) + "\n" for s in (1, 1, 3, 3)))
    (tmp_path / "aha.jsonl").write_text('{"step": 2}\n{"step": 4}\n{"st')
    runtime.trim_logs(tmp_path, 3)
    assert [json.loads(x)["step"] for x in open(tmp_path / "metrics.jsonl")] == [1, 2, 3]
    assert [json.loads(x)["step"] for x in open(tmp_path / "samples.jsonl")] == [1, 1, 3, 3]
    assert [json.loads(x)["step"] for x in open(tmp_path / "aha.jsonl")] == [2]
    runtime.trim_logs(tmp_path, 0)  # a run that restarts from scratch keeps no line
    assert all((tmp_path / n).read_text() == "" for n in ("metrics.jsonl", "samples.jsonl", "aha.jsonl"))


def _saved_twice(directory, cfg):
    mesh = sharding.make_mesh(MeshConfig(), devices=jax.devices()[:1])
    tx = train.make_optimizer(OptimConfig(learning_rate=1e-3))
    state_sh = train.state_shardings(mesh, cfg, tx)
    state = jax.jit(lambda k: train.init_state(cfg, tx, k), out_shardings=state_sh)(jax.random.key(0))
    ckpt = checkpoint.Checkpointer(directory, {"model": cfg}, async_save=False)
    for s in (1, 2):
        ckpt.save(state.replace(step=jnp.int32(s), params=jax.tree.map(lambda x: x + s, state.params)),
                  data_state={"at": s})
    ckpt.close()
    return train.abstract_state(mesh, cfg, tx), state


@pytest.mark.parametrize("damage", ["tensor", "meta"])
def test_a_corrupt_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, tiny_cfg, damage, capsys):
    abstract, state = _saved_twice(tmp_path, tiny_cfg)
    if damage == "tensor":  # the biggest tensor file of the parameters, cut in half
        bad = max((p for p in (tmp_path / "2" / "params").rglob("*") if p.is_file() and p.parent.name == "d"),
                  key=lambda p: p.stat().st_size)
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    else:
        (tmp_path / "2" / "meta" / "metadata").write_text('{"step": 2, "conf')
    with pytest.raises(checkpoint.ConfigMismatchError):  # another run's directory: nothing is moved
        checkpoint.Checkpointer(tmp_path, {"model": tiny_cfg, "lr": 1.0})
    assert not (tmp_path / "2.corrupt").exists()

    with pytest.warns(UserWarning, match=r"checkpoint .*2 .*cannot be read.*moved to .*2\.corrupt"):
        ckpt = checkpoint.Checkpointer(tmp_path, {"model": tiny_cfg})
        restored, r = runtime.resume_or_init(ckpt, abstract, lambda: pytest.fail("a checkpoint is intact"))
    assert r.step == 1 and r.data_state == {"at": 1} and int(restored.step) == 1
    np.testing.assert_array_equal(np.asarray(restored.params["embed"]), np.asarray(state.params["embed"]) + 1)
    assert (tmp_path / "2.corrupt").is_dir()  # kept for a person to look at, never deleted
    ckpt.save(restored.replace(step=jnp.int32(2)))  # the run goes on and saves step 2 again
    ckpt.close()
    assert checkpoint.Checkpointer(tmp_path, {"model": tiny_cfg}).all_steps() == [1, 2]
    assert checkpoint.latest_step(tmp_path) == 2 and (tmp_path / "2.corrupt").is_dir()


def test_no_readable_checkpoint_is_an_error_that_moves_nothing(tmp_path, tiny_cfg):
    _saved_twice(tmp_path, tiny_cfg)
    for step in ("1", "2"):
        (tmp_path / step / "meta" / "metadata").write_text("{")
    with pytest.raises(RuntimeError, match=r"no checkpoint can be read \(steps 2, 1\)"):
        checkpoint.Checkpointer(tmp_path, {"model": tiny_cfg})
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["1", "2"]
