"""The learned reward model: Bradley-Terry loss, the scalar head, training, loading, resuming."""

import json
import random
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import checkpoint, losses, train
from r1jax.config import get_preset, override, override_paths
from r1jax.model import forward, param_shapes
from r1jax.rewards.reward_model import harmlessness, helpfulness
from r1jax.stages import reward_model
from r1jax.tokenizer import R1_ZERO_TEMPLATE, render_r1_zero, train_sentencepiece

# The preference to learn: the answer names something of the kind the prompt asks for.
KINDS = {"fruit": ["apple", "lemon", "mango", "peach", "grape"],
         "animal": ["tiger", "horse", "zebra", "camel", "otter"],
         "colour": ["green", "black", "amber", "ivory", "olive"]}
FILLER = ["let", "me", "think", "about", "this", "one", "word", "now", "fine", "ok"]


def _pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind, other = rng.sample(list(KINDS), 2)
        think = " ".join(rng.choices(FILLER, k=rng.randint(1, 4)))  # the same reasoning in both
        out.append({"prompt": f"Name a {kind}", "chosen": f"<think> {think} </think> {rng.choice(KINDS[kind])}",
                    "rejected": f"<think> {think} </think> {rng.choice(KINDS[other])}"})
    return out


def _init(cfg):
    """Random parameters like `init_params`, drawn with numpy: compiling jax's random number
    generator for every parameter takes longer on 2 cores than the rest of a test."""
    rng = np.random.default_rng(0)
    return jax.tree_util.tree_map_with_path(
        lambda path, s: jnp.asarray(path[-1].key.endswith("norm") + 0.02 * rng.standard_normal(s.shape), s.dtype),
        param_shapes(cfg))


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bradley_terry_loss_matches_numpy():
    rng = np.random.default_rng(0)
    chosen = np.concatenate([rng.normal(size=20), [1e4, -1e4, 3.0, 80.0]]).astype(np.float32)
    rejected = np.concatenate([rng.normal(size=20), [-1e4, 1e4, 3.0, -80.0]]).astype(np.float32)
    loss, m = losses.bradley_terry_loss(jnp.asarray(chosen), jnp.asarray(rejected))
    d = chosen.astype(np.float64) - rejected
    # -log sigmoid(d) = log(1 + exp(-d)), written stably by numpy
    assert float(loss) == pytest.approx(np.logaddexp(0.0, -d).mean(), rel=1e-5)
    assert np.isfinite(float(loss))  # the pair wrong by 2e4 costs 2e4, not inf
    # the tie (3.0 vs 3.0) counts half
    assert float(m["accuracy"]) == pytest.approx(((d > 0).sum() + 0.5 * (d == 0).sum()) / len(d))
    assert float(m["margin"]) == pytest.approx(d.mean(), rel=1e-5)
    g = jax.grad(lambda c: losses.bradley_terry_loss(c, jnp.asarray(rejected))[0])(jnp.asarray(chosen))
    # d/dc of -log sigmoid(c - r) = -sigmoid(r - c), written with tanh (no overflow)
    np.testing.assert_allclose(np.asarray(g), -0.5 * (1.0 - np.tanh(d / 2)) / len(d), rtol=1e-4, atol=1e-12)


def test_rm_scores_reads_the_last_real_token(tiny_cfg):
    params = {"backbone": _init(tiny_cfg),
              "head": {"w": jnp.asarray(np.random.default_rng(1).normal(size=tiny_cfg.d_model), jnp.float32),
                       "b": jnp.float32(0.7)}}
    rng = np.random.default_rng(0)
    lengths = [5, 9, 2, 7]
    rows = [rng.integers(4, tiny_cfg.vocab_size, n) for n in lengths]

    def padded(T):
        tokens = np.zeros((len(rows), T), np.int32)
        mask = np.zeros((len(rows), T), bool)
        for i, r in enumerate(rows):
            tokens[i, :len(r)], mask[i, :len(r)] = r, True
        return tokens, mask

    scores = jax.jit(lambda p, t, m: reward_model.rm_scores(tiny_cfg, p, t, m))
    hidden = jax.jit(lambda p, t: forward(tiny_cfg, p, t, return_hidden=True)[0])
    s9, s16 = (np.asarray(scores(params, *padded(T))) for T in (9, 16))
    np.testing.assert_allclose(s9, s16, rtol=1e-5, atol=1e-6)  # more padding columns: same scores
    w, b = np.asarray(params["head"]["w"]), 0.7
    for i, r in enumerate(rows):  # each row alone, no padding at all: w . h[last] + b
        h = hidden(params["backbone"], jnp.asarray(r[None]))
        assert s9[i] == pytest.approx(float(np.asarray(h)[0, -1] @ w + b), rel=1e-4, abs=1e-5)
    assert len(set(np.round(s9, 4))) == 4  # the rows really score differently


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A tokenizer trained on the pairs' texts and a random tiny model (like `r1jax convert`)."""
    d = tmp_path_factory.mktemp("base")
    head, tail = R1_ZERO_TEMPLATE.split("{prompt}")
    texts = [render_r1_zero(p["prompt"]) + " " + p[k] for p in _pairs(300, 99) for k in ("chosen", "rejected")]
    tok = train_sentencepiece(texts, d / "tokenizer.model", 320, extra_symbols=(head, tail))
    cfg = override(get_preset("tiny"), vocab_size=tok.vocab_size)
    ckpt = checkpoint.Checkpointer(d / "ckpt", {"model": cfg})
    ckpt.save(train.TrainState(step=jnp.zeros((), jnp.int32), params=_init(cfg),
                               opt_state={}), force=True)
    ckpt.close()
    return d


@pytest.fixture(scope="module")
def trained(base_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("rm")
    cfg = override_paths(reward_model.RewardModelConfig(
        out_dir=str(d / "out"), base_dir=str(base_dir), pairs=str(_write(d / "pairs.jsonl", _pairs(300, 0)))),
        {"trainer.steps": 200, "batch_size": 16, "optim.learning_rate": 3e-4, "eval_fraction": 0.2,
         "trainer.checkpoint_every": 50, "trainer.log_every": 10})
    return cfg, reward_model.train_reward_model(cfg)


def test_trained_reward_model_ranks_unseen_pairs(trained):
    cfg, summary = trained
    assert summary["step"] == 200 and summary["heldout_pairs"] == 60 and summary["train_pairs"] == 240
    assert summary["heldout_accuracy"] >= 0.9
    assert json.loads((Path(cfg.out_dir) / "summary.json").read_text()) == summary
    log = [json.loads(line) for line in open(Path(cfg.out_dir) / "metrics.jsonl")]
    assert [r["step"] for r in log] == list(range(10, 201, 10))
    # the head starts at zero, so the first steps sit near the chance loss log 2
    assert log[0]["loss"] > 0.5 and log[-1]["loss"] < 0.3
    # fresh pairs from another seed, scored through the loaded model
    model = reward_model.LearnedRewardModel.load(cfg.out_dir)
    fresh = _pairs(64, 12345)
    prompts = [p["prompt"] for p in fresh]
    good = model.score(prompts, [p["chosen"] for p in fresh])
    bad = model.score(prompts, [p["rejected"] for p in fresh])
    assert good.shape == (64,) and good.dtype == np.float32
    assert (good > bad).mean() >= 0.9


def test_loaded_model_scores_like_rm_scores(trained):
    cfg, _ = trained
    model = reward_model.LearnedRewardModel.load(cfg.out_dir, batch_rows=4)
    pairs = _pairs(6, 7)  # 6 rows: two batches of 4, the second filled up with a copy
    prompts, responses = [p["prompt"] for p in pairs], [p["chosen"] for p in pairs]
    got = model.score(prompts, responses)
    rows = [reward_model.encode(model.tok, p, r) for p, r in zip(prompts, responses)]
    tokens, mask = model.tok.pad_batch(rows, left=False)  # tight padding, unlike score's buckets
    want = np.asarray(reward_model.rm_scores(model.model_cfg, model.params, tokens, mask))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert np.abs(np.asarray(model.params["head"]["w"])).max() > 0  # trained, not the zero init


def test_helpfulness_sees_only_the_summary(trained):
    model = reward_model.LearnedRewardModel.load(trained[0].out_dir)
    prompts = ["Name a fruit"] * 3
    outputs = ["<think> let me think </think> apple", "<think> now fine ok word word </think> apple",
               "<think> let me think </think> tiger"]
    h = helpfulness(model, prompts, outputs)
    assert h[0] == h[1]  # other reasoning, same summary: same helpfulness
    assert h[0] > h[2]  # the summary names an animal: less helpful
    np.testing.assert_array_equal(h, model.score(prompts, [" apple", " apple", " tiger"]))
    harm = harmlessness(model, prompts, outputs)
    assert harm[0] != harm[1]  # harmlessness reads the reasoning too
    np.testing.assert_array_equal(harm, model.score(prompts, outputs))


def test_bad_pairs_file_names_file_line_and_field(base_dir, tmp_path):
    good = _pairs(3, 0)
    cases = [({"prompt": "Name a fruit", "rejected": "x"}, "field 'chosen' is missing"),
             ({**good[0], "rejected": 5}, "field 'rejected' must be a string, got int"),
             ({**good[0], "chosen": "apple " * 200}, "prompt \\+ chosen is \\d+ tokens, more than max_len=128")]
    for bad, message in cases:
        path = _write(tmp_path / "pairs.jsonl", [good[0], good[1], bad, good[2]])
        cfg = reward_model.RewardModelConfig(out_dir=str(tmp_path / "out"), base_dir=str(base_dir), pairs=str(path))
        with pytest.raises(ValueError, match=f"pairs.jsonl:3: {message}"):
            reward_model.train_reward_model(cfg)
    assert not (tmp_path / "out").exists()  # failed before writing anything


def test_resumed_run_equals_uninterrupted(base_dir, tmp_path):
    pairs = str(_write(tmp_path / "pairs.jsonl", _pairs(24, 3)))

    def run(name, steps):  # 4 pairs a step, 22 training pairs: step 6 starts epoch 2
        return reward_model.train_reward_model(override_paths(reward_model.RewardModelConfig(
            out_dir=str(tmp_path / name), base_dir=str(base_dir), pairs=pairs),
            {"trainer.steps": steps, "batch_size": 4, "optim.learning_rate": 1e-3, "eval_fraction": 0.1,
             "trainer.checkpoint_every": 100}))

    assert run("stopped", 3)["step"] == 3
    resumed, whole = run("stopped", 7), run("whole", 7)
    assert resumed["step"] == whole["step"] == 7
    a, b = (reward_model.LearnedRewardModel.load(tmp_path / name).params for name in ("stopped", "whole"))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    assert resumed["heldout_accuracy"] == whole["heldout_accuracy"]
    whole_cfg = reward_model.LearnedRewardModel.load(tmp_path / "whole").model_cfg
    base = checkpoint.restore_params(base_dir / "ckpt", whole_cfg)
    moved = np.abs(np.asarray(a["backbone"]["embed"]) - np.asarray(base["embed"])).max()
    assert moved > 1e-5  # the backbone is trained too, not only the head


def test_batches_walk_each_epoch_through_every_training_pair_once():
    train_ids = np.array([3, 7, 8, 11, 12, 20, 21])  # the held-out ids (the others) never appear
    # 21 = 3 epochs
    drawn = np.concatenate([reward_model.batch_indices(train_ids, s, 3, seed=5) for s in range(7)])
    for epoch in drawn.reshape(3, 7):
        assert sorted(epoch) == sorted(train_ids)
    assert len({tuple(e) for e in drawn.reshape(3, 7)}) == 3  # a new order every epoch
    # a function of the step
    np.testing.assert_array_equal(reward_model.batch_indices(train_ids, 4, 3, seed=5), drawn[12:15])
