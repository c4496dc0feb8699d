"""The evaluation harness: exact pass@k, equivalence-class voting, oracle runs on the real
benchmark files in score-only mode, samples-file errors, and sampling from a tiny checkpoint
(exact numbers through the sampling path with a scripted sampler, then the real sampler with
an interrupted and resumed run)."""

import json
import random
from fractions import Fraction
from math import comb
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import checkpoint, cli, model, sampling, train
from r1jax import evaluate as ev
from r1jax.config import get_preset, override
from r1jax.rewards.math import match_batch
from r1jax.tasks import default_data_dir, generate, load_benchmark
from r1jax.tasks.world import world_corpus
from r1jax.tokenizer import render_r1_zero, train_sentencepiece

DATA = Path(__file__).parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = default_data_dir()
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real benchmark files not present at {DATA}")


# ----------------------------------------------------------------------------- pass@k

def exact_pass_at_k(n, c, k):
    return 1 - Fraction(comb(n - c, k), comb(n, k))


def test_pass_at_k_matches_exact_combinatorics():
    for n in (1, 2, 3, 5, 16, 64):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert abs(ev.pass_at_k(n, c, k) - float(exact_pass_at_k(n, c, k))) < 1e-12, (n, c, k)
    n = 1024  # C(1024, 512) has 307 digits: the product form must not overflow or lose precision
    for c, k in [(1, 1), (1, 512), (3, 100), (100, 8), (512, 512), (1000, 64), (7, 1017), (0, 5), (1024, 3)]:
        assert abs(ev.pass_at_k(n, c, k) - float(exact_pass_at_k(n, c, k))) < 1e-12, (c, k)
    assert ev.pass_at_k(n, 0, 1024) == 0.0 and ev.pass_at_k(n, 1024, 1) == 1.0 and ev.pass_at_k(n, 1, 1024) == 1.0
    assert ev.pass_at_k(16, 4, 1) == 0.25  # pass@1 is the share of correct samples
    for bad in [(4, 5, 1), (4, 1, 0), (4, 1, 5), (4, -1, 1)]:
        with pytest.raises(ValueError, match="pass_at_k needs"):
            ev.pass_at_k(*bad)


# ----------------------------------------------------------------------------- cons@k

def test_majority_vote_groups_equivalent_answers_and_breaks_ties_by_first_sample():
    votes = ev.majority_votes([
        ["3", "0.5", r"\frac{1}{2}"],  # 0.5 and 1/2 are one class with 2 votes
        ["7", "5", "5", "7"],  # 2-2 tie: "7" appeared first
        ["5", "7", "7", "5"],  # the same counts in another order: now "5"
        ["2", r"\frac{1}{2}", "2", "0.5"],  # tie between classes, each with two spellings
        [None, "4", None],  # samples without an answer do not vote
        [None, None],
        [r"\dfrac{3}{4}", "0.75", "75\\%", "1", "1", "1"],  # 3 vs 3 (75% is not 0.75 as written answers)
    ])
    assert votes[:6] == [1, 0, 0, 0, 1, None]
    assert votes[6] in (0, 3)  # depends only on whether the checker accepts 75% == 3/4; either is a 3-3 tie
    assert ev.cons_at_k(["3", "0.5", r"\frac{1}{2}"], "1/2") is True
    assert ev.cons_at_k(["3", "0.5", r"\frac{1}{2}"], "3") is False
    assert ev.cons_at_k([None, None], "3") is False
    # a custom equivalence (countdown: expression strings)
    assert ev.majority_votes([["1+2", "2+1", "2+1"]], same=lambda ps: [a == b for a, b in ps]) == [1]


def test_each_sample_votes_with_its_one_final_answer_chosen_without_the_gold():
    from r1jax.tasks import Example

    comps = ["The answer is 3 or 5."] * 3 + ["The answer is 5."] + ["The answer is 4."] * 2
    exs = [Example("five", "Q?", "5", {}), Example("three", "Q?", "3", {})]
    rows = ev.score_samples([{"id": ex.id, "completion": c} for ex in exs for c in comps],
                            {ex.id: ex for ex in exs}, ev.EvalConfig(benchmark="chain"))
    votes = ["3 or 5"] * 3 + ["5"] + ["4"] * 2
    assert [r["extracted"] for r in rows] == votes * 2  # the same for either gold
    assert [r["correct"] for r in rows] == [False] * 3 + [True] + [False] * 2 + [False] * 6
    s = ev.summarize(rows, exs, "two")
    # before, "3 or 5" was right for gold 5 and voted with the candidate that matched it ("5"):
    # pass@1 1/3 and cons@6 1/2; now "3 or 5" (3 votes) wins both votes and is wrong
    assert s["pass@1"] == pytest.approx((1 / 6 + 0) / 2) and s["cons@6"] == 0.0


@pytest.mark.parametrize("template, r1_shape", [("chat", True), ("r1-chat", True), ("r1_zero", False),
                                                ("r1-zero", False)])
def test_format_is_graded_by_the_rule_of_the_template_either_spelling(template, r1_shape):
    """The chat template opens <think> in the prompt, so its outputs are `reasoning</think>
    summary` (R1's format); R1-Zero's template expects both tag pairs. `r1-chat` is the same
    template as `chat` and once fell to the R1-Zero rule."""
    from r1jax.tasks import Example

    ex = Example("a", "Q?", "5", {})
    rows = ev.score_samples([{"id": "a", "completion": "2 + 3 = 5.</think> The answer is 5."}], {"a": ex},
                            ev.EvalConfig(benchmark="chain", template=template))
    assert rows[0]["format"] is r1_shape


# ----------------------------------------------------------------------------- oracle runs (score-only)

def oracle_completion(name, ex):
    if name == "math500":
        return ex.metadata["solution"]  # ends in \boxed{answer}
    if name == "gsm8k":
        return ex.metadata["raw_answer"]  # the rationale, then "#### N"
    # AIME answers as written in the file ("025"), AMC's floats ("27.0"), in the R1-Zero tags
    return f"<think> I know this one. </think> <answer> {ex.metadata['raw_answer']} </answer>"


def write_samples(path, pairs):
    path.write_text("".join(json.dumps({"id": i, "completion": c}) + "\n" for i, c in pairs))
    return path


@needs_data
@pytest.mark.parametrize("name", ["gsm8k", "math500", "aime24", "amc23"])
def test_oracle_completions_score_right_and_shuffled_ones_do_not(name, tmp_path):
    exs = load_benchmark(name, DATA)
    comps = [oracle_completion(name, ex) for ex in exs]
    cfg = dict(benchmark=name, data_dir=str(DATA))
    gold_file = write_samples(tmp_path / "gold.jsonl", zip((e.id for e in exs), comps))
    gold = ev.evaluate(ev.EvalConfig(samples=str(gold_file), out_dir=str(tmp_path / "gold"), **cfg))[name]
    assert gold["problems"] == len(exs) and gold["k"] == 1
    assert gold["pass@1"] >= 0.99, gold
    assert gold["cons@1"] == gold["pass@1"]  # one sample: the vote is that sample's graded answer

    perm = list(range(len(exs)))
    random.Random(0).shuffle(perm)
    shuffled = ev.evaluate(ev.EvalConfig(
        samples=str(write_samples(tmp_path / "shuf.jsonl", [(exs[i].id, comps[j]) for i, j in enumerate(perm)])),
        out_dir=str(tmp_path / "shuf"), **cfg))[name]
    # near 0: what remains is problems whose gold answer equals the one of the problem they got
    same_gold = np.mean(match_batch([e.answer for e in exs], [exs[j].answer for j in perm]))
    assert shuffled["pass@1"] <= same_gold + 0.01 and shuffled["pass@1"] < 0.12, (shuffled["pass@1"], same_gold)

    rows = [json.loads(x) for x in open(tmp_path / "gold" / name / "samples.jsonl")]
    assert len(rows) == len(exs) and {"prompt", "completion", "extracted", "correct", "gold"} <= set(rows[0])
    assert np.mean([r["correct"] for r in rows]) == gold["pass@1"]
    assert (tmp_path / "gold" / name / "chart.png").stat().st_size > 5000
    if name == "math500":
        assert sum(v["problems"] for v in gold["by_subject"].values()) == 500 and len(gold["by_subject"]) == 7
        assert sorted(gold["by_level"]) == ["1", "2", "3", "4", "5"]
        assert "| Precalculus | 56 |" in (tmp_path / "gold" / name / "summary.md").read_text()


# ----------------------------------------------------------------------------- score-only input

def test_score_only_numbers_cli_and_bad_input(tmp_path, capsys):
    exs = generate("chain", 3, 1000)  # EvalConfig's default task_seed
    right = lambda ex: f"<think> ok </think> <answer> {ex.answer} </answer>"  # noqa: E731
    wrong = lambda ex: f"<answer> {int(ex.answer) + 1} </answer>"  # noqa: E731
    # problem 0: 2 of 2 right; problem 1: 1 of 2 (and an equivalent spelling); problem 2: 0 of 2
    pairs = [(exs[0].id, right(exs[0])), (exs[1].id, wrong(exs[1])), (exs[0].id, right(exs[0])),
             (exs[1].id, f"<answer> {exs[1].answer}.0 </answer>"), (exs[2].id, wrong(exs[2])), (exs[2].id, "no idea")]
    good = write_samples(tmp_path / "good.jsonl", pairs)

    cli.main(["eval", "--samples", str(good), "--benchmark", "chain", "--n-generated", "3",
              "--out-dir", str(tmp_path / "out")])
    s = json.loads((tmp_path / "out" / "summary.json").read_text())["chain"]  # cli.main returns nothing
    assert s["pass@1"] == pytest.approx(0.5) and s["pass@k"] == {"1": pytest.approx(0.5), "2": pytest.approx(2 / 3)}
    # votes: problem 0 right; problem 1 a 1-1 tie won by the wrong answer (it came first); problem 2 wrong
    assert s["cons@2"] == pytest.approx(1 / 3)
    assert s["pass@1_stderr"] == pytest.approx(np.std([1, 0.5, 0], ddof=1) / np.sqrt(3))
    assert s["format_rate"] == pytest.approx(2 / 6) and s["answer_rate"] == pytest.approx(5 / 6)
    assert s["length_tokens_mean"] is None and s["truncation_rate"] is None  # the file gave neither
    assert "| chain | 3 | 2 | 50.0 ± 28.9 | 33.3 | 66.7 (k=2) |" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["chain"]["pass@1"] == pytest.approx(0.5)

    def fails(lines, match, benchmark="chain"):
        path = tmp_path / "bad.jsonl"
        path.write_text("".join(x + "\n" for x in lines))
        with pytest.raises(ValueError, match=match):
            ev.evaluate(ev.EvalConfig(samples=str(path), benchmark=benchmark, n_generated=3,
                                      out_dir=str(tmp_path / "bad")))
        assert not (tmp_path / "bad" / "chain" / "summary.json").exists()

    ok = [json.dumps({"id": e.id, "completion": "1"}) for e in exs]
    fails(ok[:1] + ["{not json"] + ok[1:], r"bad\.jsonl:2: invalid JSON")
    fails(ok[:2] + [json.dumps({"id": exs[2].id, "text": "1"})], r"bad\.jsonl:3: missing field 'completion'")
    fails([json.dumps({"completion": "1"})] + ok, r"bad\.jsonl:1: missing field 'id'")
    fails(ok + [json.dumps({"id": "chain-1000-99", "completion": "1"})], r"bad\.jsonl:4: unknown id 'chain-1000-99'")
    fails(ok + [json.dumps({"id": exs[0].id, "completion": 5})], r"bad\.jsonl:4: field 'completion' must be str")
    fails(ok + [json.dumps({"id": exs[0].id, "completion": "", "n_tokens": True})], r"'n_tokens' must be int")
    fails(ok[:2], r"1 of 3 problems have no sample, e.g. chain-1000-2")
    fails(ok, "unknown benchmark 'math-500'; valid names: .*math500.*chain", benchmark="math-500")
    # with --limit, lines of problems past it are skipped, not errors
    s = ev.evaluate(ev.EvalConfig(samples=str(good), benchmark="chain", n_generated=3, limit=1,
                                  out_dir=str(tmp_path / "lim")))["chain"]
    assert s["problems"] == 1 and s["pass@1"] == 1.0


# ----------------------------------------------------------------------------- sampling from a checkpoint

MAX_NEW = 12


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A randomly initialised tiny model with the embedded world's tokenizer, saved as a stage output."""
    d = tmp_path_factory.mktemp("tiny")
    tok = train_sentencepiece([p + " " + r for p, r in world_corpus(300, 0)], d / "tokenizer.model", 512)
    cfg = override(get_preset("tiny"), vocab_size=tok.vocab_size)
    params = model.init_params(cfg, jax.random.key(0))
    ckpt = checkpoint.Checkpointer(d / "ckpt", {"model": cfg})
    ckpt.save(train.TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state={}), force=True)
    ckpt.close()
    return d, tok


def test_sampling_path_gives_exact_numbers_with_a_scripted_sampler(tiny_ckpt, tmp_path, monkeypatch):
    """Problem q gets q % 5 right samples out of k = 4 (the rest wrong, the last of them cut off
    at the token limit): every number in the summary is known in advance."""
    d, tok = tiny_ckpt
    k, n_problems, max_new = 4, 7, 16
    exs = generate("chain", n_problems, 1000)
    index = {tuple([tok.bos_id] + tok.encode(render_r1_zero(ex.prompt))): q for q, ex in enumerate(exs)}
    filler = tok.encode(" more")

    def make_sampler(model_cfg, scfg, mesh=None, group_size=1):
        assert (scfg.temperature, scfg.top_p, scfg.max_new_tokens, group_size) == (0.6, 0.95, max_new, k)

        def sampler(params, prompts, pmask, key):
            rows, lengths, trunc = [], [], []
            for p, m in zip(np.asarray(prompts), np.asarray(pmask)):
                q = index[tuple(p[m])]
                for j in range(k):
                    if j < q % 5:
                        ids = tok.encode(f"<think> ok </think> <answer> {exs[q].answer} </answer>") + [tok.eos_id]
                    else:
                        ids = tok.encode(f"<answer> {int(exs[q].answer) + 1} </answer>") + [tok.eos_id]
                        if j == k - 1:  # cut off: no stop token, exactly max_new tokens
                            ids = (ids[:-1] + filler * max_new)[:max_new]
                    assert len(ids) <= max_new
                    rows.append(ids + [tok.pad_id] * (max_new - len(ids)))
                    lengths.append(len(ids))
                    trunc.append(j == k - 1 and j >= q % 5)
            return sampling.Samples(tokens=np.array(rows, np.int32), logprobs=np.zeros((len(rows), max_new)),
                                    lengths=np.array(lengths, np.int32), truncated=np.array(trunc))
        return sampler

    monkeypatch.setattr(sampling, "make_sampler", make_sampler)
    out = tmp_path / "eval"
    s = ev.evaluate(ev.EvalConfig(checkpoint=str(d), benchmark="chain", out_dir=str(out), k=k, limit=n_problems,
                                  batch_size=3, max_new_tokens=max_new))["chain"]
    c = [min(q % 5, k) for q in range(n_problems)]  # 0 1 2 3 4 0 1
    assert s["problems"] == n_problems and s["samples"] == n_problems * k and s["k"] == k
    assert s["pass@1"] == pytest.approx(np.mean(c) / k)
    for kk in (1, 2, 4):
        assert s["pass@k"][str(kk)] == pytest.approx(np.mean([ev.pass_at_k(k, ci, kk) for ci in c]))
    # right answers come first, so a 2-2 tie goes to them: majority right iff c >= 2
    assert s["cons@4"] == pytest.approx(np.mean([ci >= 2 for ci in c]))
    assert s["format_rate"] == pytest.approx(np.mean(c) / k)
    assert s["truncation_rate"] == pytest.approx(np.mean([ci < k for ci in c]) / k)
    assert s["length_tokens_max"] == max_new
    rows = [json.loads(x) for x in open(out / "chain" / "samples.jsonl")]
    assert [(r["id"], r["sample"]) for r in rows] == [(e.id, j) for e in exs for j in range(k)]
    assert [r["correct"] for r in rows] == [j < ci for ci in c for j in range(k)]
    assert rows[5]["completion"] == f"<answer> {int(exs[1].answer) + 1} </answer>"  # stop token removed
    assert rows[5]["n_tokens"] == len(tok.encode(rows[5]["completion"])) + 1  # the stop token counts


def test_tiny_checkpoint_end_to_end_resumes_to_the_same_samples(tiny_ckpt, tmp_path, monkeypatch):
    d, _ = tiny_ckpt
    cfg = dict(checkpoint=str(d), benchmark="chain", k=4, limit=4, batch_size=2, max_new_tokens=MAX_NEW, seed=3)
    a = ev.evaluate(ev.EvalConfig(out_dir=str(tmp_path / "a"), **cfg))["chain"]
    rows = [json.loads(x) for x in open(tmp_path / "a" / "chain" / "samples.jsonl")]
    assert len(rows) == 16 and a["samples"] == 16 and a["k"] == 4
    lengths = [r["n_tokens"] for r in rows]
    assert all(1 <= n <= MAX_NEW for n in lengths) and a["length_tokens_max"] == max(lengths)
    assert [r["truncated"] for r in rows] == [n == MAX_NEW and r["truncated"] for n, r in zip(lengths, rows)]
    assert a["pass@1"] == pytest.approx(np.mean([r["correct"] for r in rows]))
    assert a["truncation_rate"] == pytest.approx(np.mean([r["truncated"] for r in rows]))
    assert len({r["completion"] for r in rows}) > 4  # sampled at T=0.6, not one string repeated
    md = (tmp_path / "a" / "chain" / "summary.md").read_text()
    assert "| chain | 4 | 4 |" in md and (tmp_path / "a" / "chain" / "chart.png").stat().st_size > 5000

    # score-only mode on the written samples reproduces the summary
    again = ev.evaluate(ev.EvalConfig(samples=str(tmp_path / "a" / "chain" / "samples.jsonl"), benchmark="chain",
                                      limit=4, out_dir=str(tmp_path / "rescored")))["chain"]
    assert {k: again[k] for k in ("pass@1", "cons@4", "pass@k", "format_rate", "length_tokens_mean")} == \
           {k: a[k] for k in ("pass@1", "cons@4", "pass@k", "format_rate", "length_tokens_mean")}

    # interrupted after the first batch (and a torn line, as if killed mid-write), then resumed
    calls = {"sample": 0, "score": 0}
    real_make, real_score = sampling.make_sampler, ev.score_samples

    def make_sampler(*a, **kw):
        inner = real_make(*a, **kw)

        def counted(*x):
            calls["sample"] += 1
            return inner(*x)
        return counted

    def score(*x, **kw):
        calls["score"] += 1
        if calls["score"] == 2:
            raise KeyboardInterrupt
        return real_score(*x, **kw)

    monkeypatch.setattr(sampling, "make_sampler", make_sampler)
    monkeypatch.setattr(ev, "score_samples", score)
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate(ev.EvalConfig(out_dir=str(tmp_path / "b"), **cfg))
    part = tmp_path / "b" / "chain" / "samples.jsonl"
    assert len(part.read_text().splitlines()) == 8 and not (tmp_path / "b" / "chain" / "summary.json").exists()
    with part.open("a") as f:
        f.write('{"id": "chain-1000-2", "sam')
    calls["sample"] = 0
    b = ev.evaluate(ev.EvalConfig(out_dir=str(tmp_path / "b"), **cfg))["chain"]
    assert calls["sample"] == 1  # only the unfinished batch was sampled again
    rows_b = [json.loads(x) for x in open(part)]
    assert [(r["id"], r["completion"]) for r in rows_b] == [(r["id"], r["completion"]) for r in rows]
    assert b["pass@1"] == a["pass@1"] and b["pass@k"] == a["pass@k"]

    # bad input: a changed setting on resume, modes mixed in one folder, a missing checkpoint
    with pytest.raises(ValueError, match="(?s)different evaluation.*temperature: saved 0.6, now 1.0"):
        ev.evaluate(ev.EvalConfig(out_dir=str(tmp_path / "b"), **{**cfg, "temperature": 1.0}))
    assert (tmp_path / "b" / "chain" / "summary.json").exists()  # the finished run's summary is kept
    with pytest.raises(ValueError, match="holds the samples of a sampled evaluation"):
        ev.evaluate(ev.EvalConfig(samples=str(part), benchmark="chain", limit=4, out_dir=str(tmp_path / "b")))
    with pytest.raises(ValueError, match="holds the samples of a score-only evaluation"):
        ev.evaluate(ev.EvalConfig(out_dir=str(tmp_path / "rescored"), **cfg))
    with pytest.raises(FileNotFoundError, match="checkpoint .*nope.* not found"):
        ev.evaluate(ev.EvalConfig(out_dir=str(tmp_path / "c"), **{**cfg, "checkpoint": str(tmp_path / "nope")}))
