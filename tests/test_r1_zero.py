"""The R1-Zero stage end to end on a tiny base: it runs, logs what a researcher reads, and an
interrupted run resumes to exactly the parameters of an uninterrupted one."""

import json
import os
import signal

import jax
import numpy as np
import pytest

from r1jax import checkpoint, train
from r1jax.config import GRPOConfig, ModelConfig, from_dict, override_paths
from r1jax.stages import grpo as grpo_stage
from r1jax.stages import lm, world

RL = {"trainer.steps": 3, "prompts_per_step": 4, "grpo.group_size": 4, "grpo.minibatches": 2,
      "rollout.max_new_tokens": 10, "rollout.max_prompt_tokens": 112, "trainer.checkpoint_every": 1, "sample_every": 1,
      "optim.learning_rate": 1e-3, "grpo.beta": 0.01, "grpo.ref_refresh": 2, "n_train": 50}


def _rl(out_dir, base):
    return override_paths(grpo_stage.RLConfig(out_dir=str(out_dir), base_dir=str(base)), RL)


@pytest.fixture
def base(tiny_world_base):
    return tiny_world_base


def test_r1_zero_runs_and_logs(base, tmp_path):
    out = grpo_stage.grpo(_rl(tmp_path, base))
    assert out["step"] == 3
    lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert [m["step"] for m in lines] == [1, 2, 3]
    for key in ("reward/accuracy", "reward/format", "reward/total", "accuracy", "response_length_mean",
                "response_length_max", "truncation_rate", "kl", "clip_frac_low", "clip_frac_high", "entropy",
                "grad_norm", "learning_rate", "tokens_per_s", "time_sample", "time_reward", "time_update",
                "ratio_mean"):
        assert key in lines[0], key
    assert 0 < lines[0]["response_length_mean"] <= 10 and lines[0]["entropy"] > 0
    assert abs(lines[0]["ratio_mean"] - 1) < 0.05  # first mini-batch at ratio 1, the second slightly moved
    assert 0 <= lines[-1]["reflection_rate"] <= 1
    for png in ("reward_accuracy.png", "response_length.png", "reflection.png", "kl.png"):
        assert (tmp_path / png).stat().st_size > 5000, png
    text = (tmp_path / "report.md").read_text()
    assert "| accuracy |" in text and "![kl.png](kl.png)" in text and out["report"].endswith("report.md")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    samples = [json.loads(x) for x in open(tmp_path / "samples.jsonl")]
    assert len(samples) == 3 * 4 and {"prompt", "completion", "accuracy", "format", "answer"} <= set(samples[0])


def test_interrupted_r1_zero_resumes_exactly(base, tmp_path, monkeypatch):
    straight = tmp_path / "a"
    grpo_stage.grpo(_rl(straight, base))

    real = train.compile_step
    calls = {"n": 0}

    def compile_step(*a, **k):
        step = real(*a, **k)

        def run(s, b):
            calls["n"] += 1
            if calls["n"] == 3:  # during GRPO step 2 (2 mini-batches a step)
                os.kill(os.getpid(), signal.SIGTERM)
            return step(s, b)
        return run

    with monkeypatch.context() as m:
        m.setattr(grpo_stage.train, "compile_step", compile_step)
        first = grpo_stage.grpo(_rl(tmp_path / "b", base))
    assert first["step"] == 2
    grpo_stage.grpo(_rl(tmp_path / "b", base))

    cfg = from_dict(ModelConfig, checkpoint.read_run_config(straight / "ckpt")["model"])
    a = checkpoint.restore_params(straight / "ckpt", cfg)
    b = checkpoint.restore_params(tmp_path / "b" / "ckpt", cfg)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)


def test_overlong_penalty_counts_tokens():
    np.testing.assert_allclose(grpo_stage.overlong_penalty(np.array([10, 40, 44, 48, 60]), 48, 8),
                               [0, 0, -0.5, -1, -1])


def test_world_main_job_end_to_end(tmp_path):
    from r1jax.tasks import generate
    from r1jax.tokenizer import load_tokenizer
    cfg = world.WorldConfig(out_dir=str(tmp_path), model="tiny", pretrain_steps=6, pretrain_batch=4, rl_steps=2,
                            grpo=GRPOConfig(group_size=4), max_new_tokens=16, eval_problems=6, eval_samples=2)
    result = world.world(cfg)
    base, final = result["base"], result["r1_zero"]
    assert base["problems"] == final["problems"] == 6 and base["samples"] == 2
    for ev in (base, final):
        assert 0 <= ev["pass@1"] <= 1 and 0 <= ev["format"] <= 1 and ev["length"] > 0
        counts = {int(k): None for k in ev["by_ops"]}
        assert set(counts) <= {1, 2, 3}
    table = (tmp_path / "world.md").read_text()
    assert f"| pass@1 | {base['pass@1']:.3f} | {final['pass@1']:.3f} |" in table
    assert json.loads((tmp_path / "world.json").read_text())["r1_zero"]["pass@1"] == final["pass@1"]
    assert (tmp_path / "r1zero" / "report.md").exists() and (tmp_path / "base" / "ckpt").exists()
    # the held-out problems are distinct and in neither the pretraining corpus nor the RL pool
    heldout = json.loads((tmp_path / "world.json").read_text())["heldout"]
    assert len(set(heldout)) == 6
    trained = {ex.prompt for ex in generate("world", lm.PretrainConfig.n_examples, cfg.seed)}
    trained |= {ex.prompt for ex in generate("world", grpo_stage.RLConfig.n_train, cfg.seed)}
    assert not set(heldout) & trained

    # evaluate_policy's numbers are those of the rollouts it draws: recompute them independently
    model_cfg = from_dict(ModelConfig, checkpoint.read_run_config(tmp_path / "base" / "ckpt")["model"])
    params = checkpoint.restore_params(tmp_path / "base" / "ckpt", model_cfg)
    tok = load_tokenizer(tmp_path / "base" / "tokenizer.model")
    exs = generate("chain", 5, 99)
    ev = world.evaluate_policy(model_cfg, params, tok, exs, samples=3, max_new_tokens=24, batch_prompts=2, seed=4)
    from r1jax import sampling
    from r1jax.rewards.format import r1_zero_format
    from r1jax.rewards.math import grade
    sampler = sampling.make_sampler(model_cfg, sampling.SamplingConfig(
        max_new_tokens=24, temperature=0.6, top_p=0.95, stop_tokens=(tok.eos_id,), pad_id=tok.pad_id), group_size=3)
    right, fmt, lengths = [], [], []
    for i in range(0, 5, 2):
        *_, roll, texts = sampling.rollout(sampler, params, tok, exs[i:i + 2], 32, jax.random.key(4 + i))
        for j, t in enumerate(texts):
            ex = exs[i + j // 3]
            right.append(grade(t, ex.answer))
            fmt.append(r1_zero_format(t))
            lengths.append(int(roll.lengths[j]))
    assert ev["pass@1"] == pytest.approx(np.mean(right)) and ev["format"] == pytest.approx(np.mean(fmt))
    assert ev["length"] == pytest.approx(np.mean(lengths))


def test_bfloat16_first_update_starts_at_ratio_one(base, tmp_path):
    """bfloat16 compute, scanned layers: pi_old recomputed by the training forward (grpo.old_logp
    'auto' in bfloat16) puts the first update's ratios at 1 within 1e-3 on every counted token.
    With the sampler's own log-probs ('sampler', cached decoding, other rounding) this run's
    ratios spanned [0.9983, 1.0021] on an AMD EPYC (2026-12-03)."""
    cfg = override_paths(_rl(tmp_path, base), {"trainer.steps": 1, "grpo.minibatches": 1, "grpo.beta": 0.0,
                                               "rollout.max_new_tokens": 24, "model.dtype": "bfloat16",
                                               "model.scan_layers": True})
    grpo_stage.grpo(cfg)
    m = json.loads(open(tmp_path / "metrics.jsonl").readline())
    assert max(abs(m["ratio_min"] - 1.0), abs(m["ratio_max"] - 1.0)) < 1e-3


def test_update_widths_come_from_a_few_buckets_and_small_runs_keep_theirs():
    """A 32k budget padded to plain multiples of 32 has 1,024 widths: a compile at almost every
    step while lengths grow. Bucketed, 36, each at most 25% above the longest rollout; up to 256
    tokens the widths are the multiples of 32 they were, so the world job's runs are unchanged."""
    small = [grpo_stage.round_up(n, 224) for n in range(1, 300)]
    assert small == [min(-(-n // 32) * 32, 224) for n in range(1, 300)]
    widths = [grpo_stage.round_up(n, 32768) for n in range(1, 32769)]
    assert len(set(widths)) == 8 + 4 * 7  # 32..256 by 32, then four a doubling up to 32768
    assert all(n <= w < n + 32 if n <= 256 else n <= w <= 1.25 * n for n, w in zip(range(1, 32769), widths))
    assert all(w % 32 == 0 for w in widths)
    assert grpo_stage.round_up(30000, 32000) == 32000  # never past the budget


def test_packed_mini_batches_of_a_step_share_one_bucketed_shape(base, tmp_path, monkeypatch):
    """Each mini-batch packs into its own number of rows and completion tokens; a run whose
    every mini-batch had its own shape compiled a new update every step (a world run with
    packing took 3x the padded step time and died after ~70 compiles: LLVM out of memory).
    The step's mini-batches are packed to the largest sizes, bucketed."""
    from r1jax import data
    shapes, pack = [], data.pack_rollouts

    def spy(*args, **kwargs):
        out = pack(*args, **kwargs)
        if "min_rows" in kwargs:  # the packing the update runs on
            shapes.append((len(out["tokens"]), len(out["seq"])))
        return out

    monkeypatch.setattr(data, "pack_rollouts", spy)
    cfg = override_paths(_rl(tmp_path, base), {"grpo.pack": True, "grpo.minibatches": 4, "trainer.steps": 2})
    grpo_stage.grpo(cfg)
    assert len(shapes) == 8
    for step in (shapes[:4], shapes[4:]):
        assert len(set(step)) == 1
        rows, tokens = step[0]
        assert data.bucket(rows, 1) == rows and data.bucket(tokens, 128) == tokens


def test_token_mean_mini_batches_share_the_steps_divisor_and_the_schedule_counts_steps(base, tmp_path,
                                                                                     monkeypatch):
    """Every mini-batch of a token-mean step divides by the step's completion tokens over the
    number of mini-batches (losses.grpo_loss), not its own count; the learning rate follows the
    GRPO step (four updates a step share one rate) and the log says the rate used."""
    seen, compile_step = [], train.compile_step

    def spy(*args, **kwargs):
        run = compile_step(*args, **kwargs)

        def recorded(state, batch):
            if "token_norm" in batch:
                seen.append((np.asarray(batch["token_norm"]), float(np.asarray(batch["completion_mask"]).sum())))
            return run(state, batch)
        return recorded

    monkeypatch.setattr(train, "compile_step", spy)
    cfg = override_paths(_rl(tmp_path, base), {"grpo.agg": "token-mean", "grpo.minibatches": 4, "trainer.steps": 2,
                                               "optim.schedule": "cosine", "optim.learning_rate": 1e-3})
    grpo_stage.grpo(cfg)
    assert len(seen) == 8
    for step in (seen[:4], seen[4:]):
        norms = np.concatenate([n for n, _ in step])
        assert np.all(norms == norms[0]) and norms[0] == pytest.approx(sum(t for _, t in step) / 4)
    assert len({float(n[0]) for n, _ in seen}) == 2  # the steps' answers differ, so do their divisors
    logged = [json.loads(x)["learning_rate"] for x in open(tmp_path / "metrics.jsonl")]
    schedule = train.learning_rate_schedule(cfg.optim, 2)
    assert logged == pytest.approx([float(schedule(0)), float(schedule(1))]) and logged[1] < logged[0]
    with pytest.raises(ValueError, match="rollout.temperature must be > 0"):
        override_paths(cfg, {"rollout.temperature": 0.0})


def test_a_packed_rl_step_equals_the_padded_one(base, tmp_path):
    """One RL step (one update on all 16 rollouts, a reference model) with rollouts packed into
    rows against the same step with padded rows: the same loss, KL, ratios and entropy, and the
    same parameters within float32 rounding. (With two updates the second starts from
    parameters that differ by Adam's response to rounding-level gradient differences.)"""
    runs = {}
    for pack in (False, True):
        cfg = override_paths(_rl(tmp_path / str(pack), base), {"trainer.steps": 1, "grpo.pack": pack,
                                                               "grpo.minibatches": 1})
        runs[pack] = grpo_stage.grpo(cfg)["step_metrics"]
        ckpt = tmp_path / str(pack) / "ckpt"
        runs[pack, "params"] = checkpoint.restore_params(
            ckpt, from_dict(ModelConfig, checkpoint.read_run_config(ckpt)["model"]))
    for key in ("loss", "kl", "ratio_mean", "ratio_max", "entropy", "grad_norm", "response_length_mean"):
        np.testing.assert_allclose(runs[True][key], runs[False][key], rtol=1e-5, atol=1e-7, err_msg=key)
    for a, b in zip(jax.tree.leaves(runs[False, "params"]), jax.tree.leaves(runs[True, "params"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6)
