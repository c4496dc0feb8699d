"""The R1 stages on the embedded world: bilingual problems and corpus, sample selection for
cold-start / rejection-sampling data, SFT, and the whole recipe end to end at tiny sizes."""

import dataclasses
import json
import random

import jax
import numpy as np
import pytest

from r1jax import checkpoint, data, runtime
from r1jax.config import GRPOConfig, ModelConfig, from_dict, override_paths
from r1jax.rewards.format import r1_format, split_reasoning
from r1jax.rewards.language import count_words, language_consistency, mixes_languages
from r1jax.rewards.readability import readability_issues
from r1jax.stages import lm
from r1jax.stages.collect import select_samples, to_cold_start
from r1jax.tasks import generate, task_pool
from r1jax.tasks.sft import read_sft_jsonl, write_sft_jsonl
from r1jax.tasks.world import MIX_RATE, refine_language, world_corpus, world_response, world_split
from r1jax.tokenizer import render_r1_zero


def test_bilingual_world_poses_the_same_problems_in_either_language():
    en, zh, both = (generate("world", 200, 3, language=x) for x in ("en", "zh", "both"))
    assert [e.answer for e in en] == [e.answer for e in zh] == [e.answer for e in both]
    assert en == generate("world", 200, 3)  # the default world is unchanged
    assert all(count_words(e.prompt)["cjk"] > 0 and e.metadata["language"] == "zh" for e in zh)
    langs = [e.metadata["language"] for e in both]
    assert 0.4 < langs.count("zh") / len(langs) < 0.6
    for e, z in zip(en, zh):  # same arithmetic: the Chinese prompt holds the English one's expression
        assert z.prompt == "计算 " + e.prompt.removeprefix("Compute ").removesuffix(".") + "。"
        assert z.id == e.id + "-zh"


def test_chinese_writers_recheck_in_english_at_the_mixing_rate():
    rng = random.Random(0)
    zh = generate("world", 3000, 1, language="zh")
    en = generate("world", 1000, 1, language="en")
    zh_docs = [world_response(e, rng) for e in zh]
    checks = [t for s, t in zh_docs if s == "check"]
    mixed = [t for t in checks if mixes_languages(t, "zh")]
    assert abs(len(mixed) / len(checks) - MIX_RATE) < 0.05
    assert all("Wait, let me check" in t and language_consistency(t, "zh") == 0.0 for t in mixed)
    assert not any(mixes_languages(t, "zh") for s, t in zh_docs if s != "check")  # only re-checks switch
    assert not any(mixes_languages(world_response(e, rng)[1], "en") for e in en)
    assert not mixes_languages("<think> 1 + 2 = 3. </think> 3", "zh")  # no words, no mixing
    assert mixes_languages("<think> 1 + 2 = 3. So 3。所以是 3。 </think> 3", "zh")


def test_bilingual_corpus_holds_general_requests():
    docs = world_corpus(400, 0, language="both")
    general = [r for p, r in docs if "Compute" not in p and "计算" not in p]
    assert 0.1 < len(general) / len(docs) < 0.3
    assert world_corpus(50, 0) == world_corpus(50, 0, language="en")


def test_task_pool_parses_family_knobs():
    pool = task_pool("world:language=zh:max_ops=1, general:n=6", 10, 0)
    world, general = pool[:10], pool[10:]
    assert all(e.metadata["language"] == "zh" and e.metadata["n_ops"] == 1 for e in world)
    assert len(general) == 12 and {e.metadata["family"] for e in general} == {"general"}  # 6 in both languages
    with pytest.raises(ValueError, match="name=value"):
        task_pool("world:zh", 4, 0)
    with pytest.raises(ValueError, match="unknown knob"):
        task_pool("world:lang=zh", 4, 0)


def test_cold_start_rewrite_keeps_the_reasoning_and_states_the_answer():
    en, zh = generate("world", 1, 0)[0], generate("world", 1, 0, language="zh")[0]
    text = "<think> 7 + 5 = 12. 12 - 7 = 5. </think> <answer> 5 </answer>"
    out = to_cold_start(text, en)
    assert out == "|special_token| 7 + 5 = 12. 12 - 7 = 5. |special_token| The answer is 5."
    assert split_reasoning(out) == (" 7 + 5 = 12. 12 - 7 = 5. ", " The answer is 5.") and r1_format(out) == 1.0
    assert to_cold_start(text, zh).endswith("答案是 5。")
    assert to_cold_start("5", en) is None  # no reasoning to keep


def test_cold_start_refines_the_worlds_english_sentences_into_the_problems_language():
    cot = ("5 - 4 = 1. Wait, let me check: 5 - 4: 4, 3, 2, 1. So 1. 1 + 5 = 7. Wait, let me check: 1 + 5: "
           "2, 3, 4, 5, 6. So 6, not 7. -3 + 4 = 1. Wait, let me check: -3 + 4: -2, -1, 0, 1. So 1. It is about 12.")
    assert refine_language(cot, "zh") == (
        "5 - 4 = 1. 等等，检查一下：5 - 4：4, 3, 2, 1。所以是 1。 1 + 5 = 7. 等等，检查一下：1 + 5：2, 3, 4, 5, 6。"
        "所以是 6，不是 7。 -3 + 4 = 1. 等等，检查一下：-3 + 4：-2, -1, 0, 1。所以是 1。 大约是 12。")
    assert refine_language(cot, "en") == cot
    other = "5 - 4 = 1. Wait, I think 1 + 5 = 6."  # not a fixed sentence: left as it is
    assert refine_language(other, "zh") == other
    zh = generate("world", 1, 0, language="zh")[0]  # 7 + 5 - 7
    out = to_cold_start("<think> 7 + 5 = 12. Wait, let me check: 7 + 5: 8, 9, 10, 11, 12. So 12. 12 - 7 = 5. "
                        "</think> <answer> 5 </answer>", zh)
    assert out == ("|special_token| 7 + 5 = 12. 等等，检查一下：7 + 5：8, 9, 10, 11, 12。所以是 12。 12 - 7 = 5. "
                   "|special_token| 答案是 5。")
    assert readability_issues(out, "zh") == []


def test_select_samples_keeps_correct_readable_distinct_outputs():
    ex = generate("world", 2, 0, language="zh")  # answers 5 and 6
    good = "<think> 5 - 4 = 1. 等等，检查一下：5 - 4：4, 3, 2, 1。所以是 1。 1 + 5 = 6. </think> <answer> 6 </answer>"
    # English that is not one of the world's fixed sentences stays English, so the sample mixes
    mixed = "<think> 5 - 4 = 1. Then add 5: 1, 2, 3, 4, 5, 6. So 1 + 5 = 6. </think> <answer> 6 </answer>"
    group = [ex[0], ex[0], ex[1], ex[1], ex[1], ex[1]]
    texts = ["<think> 大约是 3。 </think> <answer> 3 </answer>",  # wrong
             "<think> 大约是 5。 </think> <answer> 5 </answer>",  # right
             mixed, "<think> 大约是 6。 </think> <answer> 6 </answer>", good, good.replace("<answer> 6", "<answer> 7")]
    truncated = np.array([False, False, False, False, False, False])
    records, counts, issues = [], {"sampled": 0, "correct": 0, "readable": 0}, {}
    select_samples(group, texts, truncated, records, counts, issues, rewrite="cold-start",
                   keep_per_prompt=2, source="ckpt/7")
    assert counts == {"sampled": 6, "correct": 4, "readable": 3} and issues == {"language mixing": 1}
    assert [r["prompt_id"] for r in records] == [ex[0].id, ex[1].id, ex[1].id]
    assert "检查" in records[1]["response"] and "大约" in records[2]["response"]  # the longer one first
    assert records[1]["response"].endswith("答案是 6。") and records[1]["source"] == "ckpt/7"
    again = records[:]  # a second pass over the same samples adds nothing: duplicates are dropped
    select_samples(group, texts, truncated, again, counts, issues, rewrite="cold-start",
                   keep_per_prompt=3, source="ckpt/7")
    assert again == records
    assert records[1]["rewards"]["accuracy"] == 1.0 and records[1]["rewards"]["language"] == 1.0
    # a truncated sample is never kept, even when its answer is right
    more, counts = [], {"sampled": 0, "correct": 0, "readable": 0}
    select_samples(group[2:4], texts[2:4], np.array([False, True]), more, counts, {},
                   rewrite="none", keep_per_prompt=1, source="s")
    assert counts["correct"] == 1 and more == []


def test_count_rows_matches_hand_packing():
    assert data.count_rows([100, 100, 100], 256, seed=0) == 2  # two fit a row, the third starts one
    assert data.count_rows([100, 100, 100], 256, seed=0, pack=False) == 3
    assert data.count_rows([200, 60, 60, 60], 256, seed=1) in (2, 3)  # order-dependent greedy fill
    lengths = [30] * 17
    assert data.count_rows(lengths, 256, seed=0) == 3  # 8 a row: 8 + 8 + 1


def test_steps_to_reach_an_accuracy_use_a_running_mean(tmp_path):
    from r1jax.stages import recipe

    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": i + 1, "accuracy": a}) + "\n"
                            for i, a in enumerate([0.1, 0.4, 0.1, 0.4])))
    curve = recipe.running_mean(path, "accuracy", window=3)
    np.testing.assert_allclose(curve, [0.1, 0.25, 0.2, 0.3])
    assert recipe.first_step_reaching(curve, 0.25) == 2 and recipe.first_step_reaching(curve, 0.3) == 4
    assert recipe.first_step_reaching(curve, 0.5) is None


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    out = tmp_path_factory.mktemp("base")
    lm.pretrain(override_paths(lm.PretrainConfig(out_dir=str(out)), {
        "preset": "tiny", "trainer.steps": 30, "batch_size": 8, "seq_len": 256, "n_examples": 600, "language": "both",
        "trainer.checkpoint_every": 100, "trainer.log_every": 10}))
    return out


def test_sft_fine_tunes_the_init_model_for_the_given_epochs(tiny_base, tmp_path):
    records = [{"prompt": f"Say hello to Anna {i}.", "response": "|special_token| greet |special_token| Hello, Anna!"}
               for i in range(40)]
    write_sft_jsonl(tmp_path / "d.jsonl", records)
    cfg = override_paths(lm.SFTConfig(out_dir=str(tmp_path / "sft"), init_dir=str(tiny_base),
                                      data=str(tmp_path / "d.jsonl"), epochs=8.0, batch_size=2, seq_len=128),
                         {"optim.learning_rate": 1e-2, "optim.warmup_steps": 2, "trainer.log_every": 1,
                          "trainer.checkpoint_every": 1000})
    summary = lm.sft(cfg)
    assert (tmp_path / "sft" / "tokenizer.model").read_bytes() == (tiny_base / "tokenizer.model").read_bytes()
    tok = runtime.stage_tokenizer(tiny_base)
    # 38 training records (2 held out for the accuracy check), packed into 128-token rows
    lengths = [2 + len(tok.encode(render_r1_zero(r["prompt"]))) + len(tok.encode(" " + r["response"]))
               for r in records[2:]]
    per_row = 128 // lengths[0]
    assert len(set(lengths)) <= 2 and summary["steps"] == round(8.0 * -(-38 // per_row) / 2)
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "sft" / "metrics.jsonl")]
    assert losses[-1] < 0.2 * losses[0]  # the response is learnt
    assert summary["heldout_answer_token_accuracy"] > 0.7
    # it starts from the base's parameters: with a vanishing learning rate it ends there too
    frozen = lm.sft(override_paths(cfg, {"out_dir": str(tmp_path / "frozen"), "optim.learning_rate": 1e-12,
                                         "epochs": 0.1}))
    model_cfg = from_dict(ModelConfig, checkpoint.read_run_config(tiny_base / "ckpt")["model"])
    for a, b in zip(jax.tree.leaves(checkpoint.restore_params(tiny_base / "ckpt", model_cfg)),
                    jax.tree.leaves(checkpoint.restore_params(frozen["checkpoint"], model_cfg))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-8)

    bad = tmp_path / "long.jsonl"
    write_sft_jsonl(bad, records[:3] + [{"prompt": "x", "response": "y " * 200}])
    with pytest.raises(ValueError, match=r"long\.jsonl:4: .* longer than SFTConfig.seq_len=128"):
        lm.sft(lm.SFTConfig(out_dir=str(tmp_path / "sft2"), init_dir=str(tiny_base), data=str(bad), seq_len=128))
    with pytest.raises(ValueError, match=r"d\.jsonl: 40 records .* pack into \d+ rows .* lower SFTConfig.batch_size"):
        lm.sft(dataclasses.replace(cfg, out_dir=str(tmp_path / "sft3"), batch_size=64))


def test_whole_recipe_runs_end_to_end_at_tiny_sizes(tmp_path):
    """Every stage in order from one call, each reading the previous stage's directory; the
    report holds every stage's evaluation and the three comparisons. (Each stage's behaviour,
    resuming included, is tested in its own file; this checks the wiring and the provenance
    between stages.)"""
    from r1jax.stages import recipe

    # A tiny model pretrained for a minute rarely writes a correct worked solution, so the cold
    # start comes from a user's file here (the R1-Zero path is the same `collect` as stage 4's).
    rng, own = random.Random(0), []
    for ex in generate("world", 400, 5, language="both"):
        style, text = world_response(ex, rng)
        if style == "check":
            own.append({"prompt": ex.prompt, "response": to_cold_start(text, ex)})
    write_sft_jsonl(tmp_path / "own.jsonl", own)
    cfg = recipe.R1Config(out_dir=str(tmp_path / "r1"), model="tiny", student_model="tiny", pretrain_steps=120,
                          student_pretrain_steps=20, zero_steps=2, reasoning_steps=1, rl_all_steps=1,
                          student_rl_steps=1, prompts_per_step=4, grpo=GRPOConfig(group_size=4), cold_start_prompts=96,
                          rejection_prompts=32, general_records=8, rm_steps=4, distill_prompts=32, distill_modes="",
                          max_new_tokens=48, eval_problems=4, eval_samples=2,
                          sft_batch=1, cold_start_data=str(tmp_path / "own.jsonl"))
    result = recipe.r1(cfg)
    out = tmp_path / "r1"
    stages = result["stages"]
    assert set(stages) == {"base", "r1zero", "r1zero_language", "cold_sft", "reasoning_rl", "ablation_no_language",
                           "sft", "rl_all", "student_base", "student_rl", "student_sft"}
    for r in stages.values():
        assert 0.0 <= r["pass@1"] <= 1.0 and r["problems"] == 4 and r["samples"] == 2
    # held out: the world's test split, in both languages
    expressions = [p.removeprefix("Compute ").removeprefix("计算 ").rstrip(".。") for p in result["heldout"]]
    assert len(set(result["heldout"])) == 4 and all(world_split(e) == "test" for e in expressions)
    assert checkpoint.read_run_config(out / "cold_sft" / "ckpt")["sft"]["data"] == str(tmp_path / "own.jsonl")
    # rejection sampling keeps correct outputs of stage 3 with provenance, and adds general records
    rejection = read_sft_jsonl(out / "rejection.jsonl")
    assert [r["kind"] for r in rejection].count("general") == 8
    step = checkpoint.latest_step(out / "reasoning_rl" / "ckpt")
    assert all(r["source"].endswith(f"reasoning_rl/ckpt/{step}") and r["rewards"]["accuracy"] == 1.0
               for r in rejection if r["kind"] == "reasoning")
    # stages start from the right parents: stage 3 reads cold_sft, SFT reads the base, RL-all the SFT model
    assert json.loads(json.dumps(checkpoint.read_run_config(out / "reasoning_rl" / "ckpt")["grpo"]))[
        "base_dir"].endswith("cold_sft")
    assert checkpoint.read_run_config(out / "sft" / "ckpt")["sft"]["init_dir"].endswith("base")
    rl_all = checkpoint.read_run_config(out / "rl_all" / "ckpt")["grpo"]
    assert rl_all["base_dir"].endswith("sft") and rl_all["reward_model"].endswith("rm")
    metrics = [json.loads(line) for line in open(out / "rl_all" / "metrics.jsonl")]
    assert "reward/helpfulness" in metrics[0] and "reward/harmlessness" in metrics[0]
    student = from_dict(ModelConfig, checkpoint.read_run_config(out / "student_sft" / "ckpt")["model"])
    assert student.d_model < 128 or student.n_layers < 4  # narrower or shallower than the teacher would be
    table = (out / "r1.md").read_text()
    assert "Table 6" in table and "Language-consistency reward" in table and "Cold start against R1-Zero" in table
    assert "Language drift (RL from the base)" in table
    # the drift ablation: R1-Zero from the same base with the language reward added, nothing else changed
    zero, zero_language = (checkpoint.read_run_config(out / n / "ckpt")["grpo"] for n in ("r1zero", "r1zero_language"))
    assert zero_language["reward_weights"] == zero["reward_weights"] + ",language=1"
    assert zero_language["base_dir"] == zero["base_dir"]
    assert "language_mixing_rate" in json.loads((out / "r1zero_language" / "metrics.jsonl").read_text().splitlines()[0])
    for png in ("r1_stages.png", "cold_start_vs_r1_zero.png", "language_drift.png"):
        assert (out / png).stat().st_size > 0
