"""Logit and on-policy distillation: the losses against numpy, the on-policy gradient against the
exact reverse-KL gradient, the steps against full-vocabulary KLs of separately run documents, and
the stage end to end from tiny checkpoints."""

import json
import os
import random
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import checkpoint, data, losses, train
from r1jax.config import ModelConfig, OptimConfig, from_dict, get_preset, override, override_paths
from r1jax.model import forward, init_params
from r1jax.stages import distill
from r1jax.tasks import generate
from r1jax.tasks.world import world_response
from r1jax.tokenizer import R1_ZERO_TEMPLATE, load_tokenizer, render_r1_zero, train_sentencepiece

TEMPLATE = tuple(R1_ZERO_TEMPLATE.split("{prompt}"))  # one piece each side of the question, as pretrain does


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


# ----------------------------------------------------------------------------- losses


def test_topk_distill_loss_equals_numpy_reference():
    rng = np.random.default_rng(0)
    B, T, V, K, temp = 2, 3, 11, 4, 1.7
    student = rng.normal(size=(B, T, V)).astype(np.float32)
    teacher_lp = _log_softmax(rng.normal(size=(B, T, V)) * 2)
    idx = np.argsort(-teacher_lp, -1)[..., :K]
    t_topk = np.take_along_axis(teacher_lp, idx, -1).astype(np.float32)
    mask = np.array([[1, 1, 0], [0, 1, 1]], np.float32)
    t_topk[0, 2] = np.nan  # a padding position may hold anything: it must not leak into the mean
    loss, m = losses.topk_distill_loss(student, t_topk, idx, mask, temperature=temp)

    log_q = _log_softmax(student / temp)
    kls, t_mass, s_mass = [], [], []
    for b in range(B):
        for t in range(T):
            if not mask[b, t]:
                continue
            p = np.exp(t_topk[b, t]) / np.exp(t_topk[b, t]).sum()
            q = log_q[b, t, idx[b, t]]
            kls.append(sum(p[k] * (np.log(p[k]) - q[k]) for k in range(K)))
            t_mass.append(np.exp(t_topk[b, t]).sum())
            s_mass.append(np.exp(q).sum())
    assert float(loss) == pytest.approx(np.mean(kls), rel=1e-5)
    assert float(m["forward_kl"]) == float(loss) and float(m["tokens"]) == 4
    assert float(m["teacher_topk_mass"]) == pytest.approx(np.mean(t_mass), rel=1e-5)
    assert float(m["student_topk_mass"]) == pytest.approx(np.mean(s_mass), rel=1e-5)
    assert 0 < np.mean(t_mass) < 1  # the top 4 of 11 leave a tail: the renormalisation mattered


def test_topk_distill_loss_is_zero_when_the_student_matches_the_renormalised_top_k():
    """Renormalised, the loss is a divergence: 0 at the truncated teacher, > 0 at the full one."""
    rng = np.random.default_rng(1)
    V, K = 9, 3
    teacher = rng.normal(size=(1, 1, V)).astype(np.float32) * 2
    lp = _log_softmax(teacher)
    idx = np.argsort(-lp, -1)[..., :K]
    t_topk = np.take_along_axis(lp, idx, -1)
    truncated = np.full_like(teacher, -1e9)
    np.put_along_axis(truncated, idx, t_topk, -1)
    assert float(losses.topk_distill_loss(truncated, t_topk, idx, np.ones((1, 1)))[0]) == pytest.approx(0, abs=1e-6)
    assert float(losses.topk_distill_loss(teacher, t_topk, idx, np.ones((1, 1)))[0]) > 0.01


def test_on_policy_distill_loss_equals_numpy_reference():
    rng = np.random.default_rng(2)
    B, N = 3, 5
    logp, old, teacher = (np.log(rng.uniform(0.05, 1, size=(B, N))).astype(np.float32) for _ in range(3))
    logp[2, 0] = old[2, 0] + 50.0  # a log-ratio past the clamp
    mask = (rng.uniform(size=(B, N)) < 0.7).astype(np.float32)
    mask[2, 0] = 1.0
    loss, m = losses.on_policy_distill_loss(logp, old, teacher, mask)
    ratio = np.exp(np.clip(logp - old, -losses.LOG_RATIO_CLAMP, losses.LOG_RATIO_CLAMP))
    counted = [(b, t) for b in range(B) for t in range(N) if mask[b, t]]
    want = -sum(ratio[b, t] * (teacher[b, t] - old[b, t]) for b, t in counted) / len(counted)
    assert float(loss) == pytest.approx(want, rel=1e-5)
    kl = sum(old[b, t] - teacher[b, t] for b, t in counted) / len(counted)
    assert float(m["reverse_kl"]) == pytest.approx(kl, rel=1e-5)
    assert float(m["ratio_mean"]) == pytest.approx((ratio * mask).sum() / mask.sum(), rel=1e-5)


def test_on_policy_gradient_is_the_reverse_kl_gradient_in_expectation():
    """One position, V = 5: sum over every token x of q(x) * (gradient of the loss when x was
    sampled, at logp == old_logp) equals jax.grad of the exact KL(q || p)."""
    rng = np.random.default_rng(3)
    theta = jnp.asarray(rng.normal(size=5), jnp.float32)
    teacher = jnp.asarray(_log_softmax(rng.normal(size=5) * 2), jnp.float32)
    q = np.exp(_log_softmax(np.asarray(theta)))
    old = jax.nn.log_softmax(theta)  # the sampler's log-probs: a constant in the loss

    def per_sample_grad(x):
        def loss(th):
            logp = jax.nn.log_softmax(th)[x]
            return losses.on_policy_distill_loss(logp.reshape(1, 1), old[x].reshape(1, 1), teacher[x].reshape(1, 1),
                                                 jnp.ones((1, 1)))[0]
        return np.asarray(jax.grad(loss)(theta))

    expected = sum(q[x] * per_sample_grad(x) for x in range(5))
    exact = jax.grad(lambda th: (jax.nn.softmax(th) * (jax.nn.log_softmax(th) - teacher)).sum())(theta)
    np.testing.assert_allclose(expected, np.asarray(exact), atol=1e-6)
    # the term the estimator leaves out, sum_x q(x) grad log q(x), is zero
    score = sum(q[x] * np.asarray(jax.grad(lambda th: jax.nn.log_softmax(th)[x])(theta)) for x in range(5))
    np.testing.assert_allclose(score, 0.0, atol=1e-6)
    assert np.abs(np.asarray(exact)).max() > 0.05  # not a trivially zero gradient


# ----------------------------------------------------------------------------- steps


@pytest.fixture(scope="module")
def packed(tiny_cfg):
    """A teacher (sharper than a fresh init), a student from another seed, and a packed batch of
    random documents with their prompt lengths."""
    cfg = override(tiny_cfg, vocab_size=64)
    rng = np.random.default_rng(4)
    docs = [rng.integers(4, 64, size=n).tolist() for n in (9, 14, 7, 12, 10, 6)]
    starts = [3, 5, 2, 4, 6, 1]
    batch = next(iter(data.lm_batches(docs, seq_len=24, batch_size=3, pad_id=0, seed=0,
                                      loss_spans=[[(s, len(d))] for s, d in zip(starts, docs)], pack=True)))
    assert batch["segment_ids"].max() >= 2  # rows really hold several documents
    teacher = init_params(cfg, jax.random.key(1), std=0.3)
    student = init_params(cfg, jax.random.key(2))
    return cfg, teacher, student, batch, docs, starts


def test_logit_step_with_all_tokens_is_the_full_vocabulary_forward_kl(packed):
    """With K = V the step's loss is the exact KL(teacher || student) over response tokens,
    computed here by running every document alone through both models."""
    cfg, teacher, student, batch, docs, starts = packed
    temp = 2.0
    lp, idx = jax.jit(lambda p, b: distill.teacher_topk(cfg, p, b, k=cfg.vocab_size, temperature=temp))(teacher, batch)
    tx = train.make_optimizer(OptimConfig(learning_rate=1e-3, schedule="constant"))
    step = jax.jit(lambda s, b: train.logit_distill_step(s, b, model_cfg=cfg, tx=tx, temperature=temp))
    state = train.init_state(cfg, tx, None, params=student)
    _, m = step(state, {**batch, "teacher_topk_logp": lp, "teacher_topk_idx": idx})
    in_batch = {tuple(batch["tokens"][r, batch["segment_ids"][r] == s]) for r in range(3)
                for s in range(1, batch["segment_ids"][r].max() + 1)}
    chosen = [(d, s) for d, s in zip(docs, starts) if tuple(d) in in_batch]
    # every document alone in its own row (right padding cannot change a causal model's earlier outputs)
    alone = np.zeros((len(chosen), max(len(d) for d, _ in chosen)), np.int32)
    for i, (d, _) in enumerate(chosen):
        alone[i, :len(d)] = d
    run = jax.jit(lambda p, t: forward(cfg, p, t, mask=t > 0)[0])
    t_all = _log_softmax(np.asarray(run(teacher, alone)) / temp)
    s_all = _log_softmax(np.asarray(run(student, alone)) / temp)
    kls = []
    for (doc, start), t, s in zip(chosen, t_all, s_all):
        # position i predicts token i + 1; the loss covers the tokens from `start` on
        kls += [(np.exp(t[i]) * (t[i] - s[i])).sum() for i in range(start - 1, len(doc) - 1)]
    assert float(m["tokens"]) == len(kls) > 20
    assert float(m["forward_kl"]) == pytest.approx(np.mean(kls), rel=1e-4)
    assert float(m["teacher_topk_mass"]) == pytest.approx(1.0, abs=1e-5)


def test_logit_steps_bring_the_student_to_a_fixed_teacher(packed):
    cfg, teacher, student, batch, *_ = packed
    lp, idx = jax.jit(lambda p, b: distill.teacher_topk(cfg, p, b, k=16))(teacher, batch)
    batch = {**batch, "teacher_topk_logp": lp, "teacher_topk_idx": idx}
    tx = train.make_optimizer(OptimConfig(learning_rate=3e-3, schedule="constant", weight_decay=0.0))
    step = jax.jit(lambda s, b: train.logit_distill_step(s, b, model_cfg=cfg, tx=tx))
    state = train.init_state(cfg, tx, None, params=student)
    kls = []
    for _ in range(30):
        state, m = step(state, batch)
        kls.append(float(m["forward_kl"]))
    assert kls[0] > 1.0 and kls[-1] < 0.3 * kls[0], kls
    assert float(m["student_topk_mass"]) > 0.7  # the student's mass moved onto the teacher's top 16 of 64


# ----------------------------------------------------------------------------- the stage


def _stage(path, tok, params):
    """A stage directory as `r1jax convert` leaves one: tokenizer.model and a params-only ckpt/."""
    path.mkdir()
    (path / "tokenizer.model").write_bytes(tok.path.read_bytes())
    ckpt = checkpoint.Checkpointer(path / "ckpt", {"model": override(get_preset("tiny"), vocab_size=tok.vocab_size)})
    ckpt.save(train.TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state={}), force=True)
    ckpt.close()
    return path


def _fitted(tok, rows, steps=30):
    """Tiny params that have learnt a little of the world's text: a teacher with something to teach
    (a random teacher's outputs are a function of its context that no student learns in a few steps)."""
    cfg = override(get_preset("tiny"), vocab_size=tok.vocab_size)
    examples = [[tok.bos_id, *tok.encode(render_r1_zero(p)), *tok.encode(" " + r), tok.eos_id] for p, r in rows]
    tx = train.make_optimizer(OptimConfig(learning_rate=1e-2, schedule="constant", weight_decay=0.0))
    step = jax.jit(lambda s, b: train.lm_train_step(s, b, model_cfg=cfg, tx=tx))
    batches = iter(data.lm_batches(examples, seq_len=128, batch_size=8, pad_id=tok.pad_id, seed=1, pack=True))
    state = train.init_state(cfg, tx, jax.random.key(1))
    for _ in range(steps):
        state, m = step(state, next(batches))
    assert float(m["loss"]) < 3.0  # it has learnt something (a uniform guess costs log(320) = 5.8)
    return state.params


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    rng = random.Random(0)
    # short answers only (no counting re-checks), so that rows of 128 tokens hold a few of them
    rows = [(ex.prompt, r) for ex in generate("world", 300, 0)
            for style, r in [world_response(ex, rng)] if style != "check"]
    texts = [p + " " + r for p, r in rows]
    tok = train_sentencepiece(texts, root / "tok.model", vocab_size=320, extra_symbols=TEMPLATE)
    other = train_sentencepiece(texts, root / "other.model", vocab_size=360, extra_symbols=TEMPLATE)
    with open(root / "sft.jsonl", "w") as f:
        for p, r in rows:
            f.write(json.dumps({"prompt": p, "response": r}) + "\n")
    def fresh(t, seed):
        return init_params(override(get_preset("tiny"), vocab_size=t.vocab_size), jax.random.key(seed))

    return {"teacher": _stage(root / "teacher", tok, _fitted(tok, rows)),
            "student": _stage(root / "student", tok, fresh(tok, 2)),
            "stranger": _stage(root / "stranger", other, fresh(other, 3)), "sft": root / "sft.jsonl"}


def _kl_curve(out, name):
    return [json.loads(line)[name] for line in open(out / "metrics.jsonl")]


def _logits_config(stages, out):
    return override_paths(distill.DistillConfig(out_dir=str(out), teacher_dir=str(stages["teacher"]),
                                                student_dir=str(stages["student"]), mode="logits",
                                                data=str(stages["sft"])),
                          {"trainer.steps": 12, "batch_size": 8, "seq_len": 128, "optim.learning_rate": 3e-3,
                           "trainer.checkpoint_every": 6})


@pytest.fixture(scope="module")
def logits_run(stages, tmp_path_factory):
    out = tmp_path_factory.mktemp("logits")
    return out, distill.distill(_logits_config(stages, out))


def _params(out):
    model = from_dict(ModelConfig, checkpoint.read_run_config(out / "ckpt")["model"])
    return checkpoint.restore_params(out / "ckpt", model)


def test_logit_distillation_end_to_end(stages, logits_run):
    out, summary = logits_run
    kl = _kl_curve(out, "forward_kl")
    assert summary["step"] == 12 and len(kl) == 12
    assert np.mean(kl[-3:]) < 0.5 * np.mean(kl[:3]), kl
    assert json.loads((out / "summary.json").read_text())["step_metrics"]["forward_kl"] == kl[-1]
    assert (out / "tokenizer.model").read_bytes() == (stages["student"] / "tokenizer.model").read_bytes()
    # the checkpoint is a stage like any other: its "model" is the student's
    trained, start = _params(out), _params(stages["student"])
    assert np.abs(np.asarray(trained["embed"]) - np.asarray(start["embed"])).max() > 1e-3


def test_interrupted_logit_distillation_resumes_exactly(stages, logits_run, tmp_path, monkeypatch):
    real = train.compile_step

    def compile_step(*args, **kwargs):
        step, calls = real(*args, **kwargs), {"n": 0}

        def run(state, batch):
            calls["n"] += 1
            if calls["n"] == 5:  # a preemption during step 5: it is finished, saved, and the run stops
                os.kill(os.getpid(), signal.SIGTERM)
            return step(state, batch)
        return run

    with monkeypatch.context() as m:
        m.setattr(distill.train, "compile_step", compile_step)
        assert distill.distill(_logits_config(stages, tmp_path))["step"] == 5
    assert distill.distill(_logits_config(stages, tmp_path))["step"] == 12
    for x, y in zip(jax.tree.leaves(_params(logits_run[0])), jax.tree.leaves(_params(tmp_path))):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)
    assert _kl_curve(tmp_path, "forward_kl") == pytest.approx(_kl_curve(logits_run[0], "forward_kl"), abs=1e-5)


def test_on_policy_distillation_end_to_end(stages, tmp_path):
    cfg = override_paths(distill.DistillConfig(out_dir=str(tmp_path), teacher_dir=str(stages["teacher"]),
                                               student_dir=str(stages["student"]), mode="on-policy"),
                         {"n_prompts": 100, "trainer.steps": 24, "batch_size": 8, "rollout.max_new_tokens": 16,
                          "rollout.max_prompt_tokens": 32, "optim.learning_rate": 1e-2,
                          "trainer.checkpoint_every": 12})
    summary = distill.distill(cfg)
    kl = _kl_curve(tmp_path, "reverse_kl")
    assert summary["step"] == 24 and len(kl) == 24
    # the random student's KL stays near 2.5 for ~15 steps, then falls (0.6-0.8 at steps 22-24,
    # below 0.2 by step 30, in a 32-step run of this fixture)
    assert np.mean(kl[-3:]) < 0.5 * np.mean(kl[:3]), kl
    first = json.loads(open(tmp_path / "metrics.jsonl").readline())
    assert first["ratio_mean"] == pytest.approx(1.0, abs=1e-3)  # the update sees the sampler's distribution
    assert sorted(int(d.name) for d in (tmp_path / "ckpt").iterdir() if d.name.isdigit()) == [12, 24]


def test_a_different_tokenizer_is_refused(stages, tmp_path):
    sizes = [load_tokenizer(stages[k] / "tokenizer.model").vocab_size for k in ("teacher", "stranger")]
    assert sizes[0] != sizes[1]
    with pytest.raises(ValueError, match=rf"teacher/tokenizer.model has {sizes[0]} tokens, .*stranger/tokenizer.model "
                                         rf"has {sizes[1]}; distillation compares token ids"):
        distill.distill(distill.DistillConfig(out_dir=str(tmp_path / "out"), teacher_dir=str(stages["teacher"]),
                                              student_dir=str(stages["stranger"])))
    assert not (tmp_path / "out").exists()  # refused before anything is written
    # same size, other bytes: a tokenizer trained on other text
    rng = random.Random(1)
    rows = [ex.prompt + " " + world_response(ex, rng)[1] for ex in generate("world", 300, 1)]
    twin = train_sentencepiece(rows, tmp_path / "twin.model", vocab_size=320, extra_symbols=TEMPLATE)
    assert twin.vocab_size == sizes[0]
    with pytest.raises(ValueError, match=f"both have {sizes[0]} tokens but are different files"):
        distill.check_same_tokenizer(load_tokenizer(stages["teacher"] / "tokenizer.model"), twin)
