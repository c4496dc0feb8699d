"""End to end: the pretrain stage (interrupt + resume == uninterrupted) and the convert CLI."""

import json
import os
import signal

import jax
import numpy as np
import pytest

from r1jax import checkpoint, cli, hf, pipeline, sharding, train
from r1jax.config import MeshConfig, ModelConfig, from_dict
from r1jax.model import init_params

CFG = dict(model="tiny", steps=12, batch_size=8, seq_len=192, checkpoint_every=4, n_examples=300, warmup_steps=2,
           log_every=1)


def _interrupt_after(monkeypatch, n_steps):
    """Make the n-th training step send SIGTERM to this process, as a preemption would."""
    real = train.compile_step

    def compile_step(*args, **kwargs):
        step = real(*args, **kwargs)
        calls = {"n": 0}

        def run(state, batch):
            calls["n"] += 1
            if calls["n"] == n_steps:
                os.kill(os.getpid(), signal.SIGTERM)
            return step(state, batch)
        return run

    monkeypatch.setattr(pipeline.train, "compile_step", compile_step)


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, monkeypatch):
    straight = pipeline.pretrain(pipeline.PretrainConfig(out_dir=str(tmp_path / "a"), **CFG))
    assert straight["step"] == 12
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "a" / "metrics.jsonl")]
    assert losses[-1] < losses[0] - 1.0  # it learns

    with monkeypatch.context() as m:
        _interrupt_after(m, 6)
        first = pipeline.pretrain(pipeline.PretrainConfig(out_dir=str(tmp_path / "b"), **CFG))
    assert first["step"] == 6  # SIGTERM: saved at the step it was in, exited cleanly
    resumed = pipeline.pretrain(pipeline.PretrainConfig(out_dir=str(tmp_path / "b"), **CFG))
    assert resumed["step"] == 12

    model_cfg = from_dict(ModelConfig, checkpoint.read_run_config(tmp_path / "a" / "ckpt")["model"])
    a = checkpoint.restore_params(tmp_path / "a" / "ckpt", model_cfg)
    b = checkpoint.restore_params(tmp_path / "b" / "ckpt", model_cfg)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    with pytest.raises(checkpoint.ConfigMismatchError, match="learning_rate"):
        pipeline.pretrain(pipeline.PretrainConfig(out_dir=str(tmp_path / "b"), **CFG, learning_rate=1e-4))


def test_convert_round_trip_through_the_cli(tmp_path, tiny_cfg, capsys):
    params = init_params(tiny_cfg, jax.random.key(0))
    hf.save_hf(tmp_path / "hf", tiny_cfg, params)
    cli.main(["convert", "hf-to-ckpt", str(tmp_path / "hf"), str(tmp_path / "ckpt")])
    cli.main(["convert", "ckpt-to-hf", str(tmp_path / "ckpt"), str(tmp_path / "hf2")])
    assert "wrote qwen2 model (107,072 params)" in capsys.readouterr().out
    tx = train.make_optimizer(train.OptimConfig())
    with pytest.raises(ValueError, match="holds parameters only"):
        checkpoint.Checkpointer(tmp_path / "ckpt", {"model": tiny_cfg}).restore(
            train.abstract_state(sharding.make_mesh(MeshConfig(), devices=jax.devices()[:1]), tiny_cfg, tx))
    cfg2, params2 = hf.load_hf(tmp_path / "hf2")
    assert cfg2 == tiny_cfg
    for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_world_corpus_styles_are_right_where_they_claim_to_be():
    import random
    import re
    from r1jax.tasks import generate

    rng, counts, checks = random.Random(0), {s: 0 for s in pipeline.STYLES}, 0
    examples = generate("world", 4000, 5)
    for ex in examples:
        style, text = pipeline.world_response(ex, rng)
        counts[style] += 1
        final = re.findall(r"-?\d+", text.split("</think>")[1])[-1]
        if style == "check":
            assert final == ex.answer, text  # every slip is caught, so re-checked work ends right
            for a, op, b, count, result in re.findall(r"Wait, let me check: (-?\d+) ([+-]) (\d+): ([-\d, ]+)\. So (-?\d+)",
                                                      text):
                sign = 1 if op == "+" else -1
                # counting one at a time from a, b times, lands on the true result
                assert [int(x) for x in count.split(", ")] == [int(a) + sign * k for k in range(1, int(b) + 1)]
                assert int(result) == int(a) + sign * int(b)
                checks += 1
        else:
            assert "Wait" not in text
    assert checks > 1000
    for style, share in pipeline.STYLES.items():
        assert abs(counts[style] / len(examples) - share) < 0.03, counts
