"""Format, language consistency, reward-model routing and the per-stage combination."""

import json
import subprocess
import sys

import numpy as np
import pytest

from r1jax.rewards import RewardConfig, compute_rewards
from r1jax.rewards import format as F
from r1jax.rewards.language import count_words, language_consistency, mixes_languages
from r1jax.rewards.readability import readability_issues
from r1jax.rewards.reward_model import harmlessness, helpfulness
from r1jax.tasks import Example, generate


@pytest.mark.parametrize("completion,want", [
    ("<think>2+3=5</think> <answer>5</answer>", 1.0),
    (" <think>\nsteps\n</think>\n<answer> 5 </answer>\n", 1.0),
    ("<think>a</think><answer>5</answer> trailing text", 0.0),
    ("<answer>5</answer><think>a</think>", 0.0),
    ("<think>a</think><think>b</think><answer>5</answer>", 0.0),
    ("<think>a</think><answer>5</answer></answer>", 0.0),
    ("<think> </think><answer>5</answer>", 0.0),
    ("<think>a</think><answer></answer>", 0.0),
    ("preamble <think>a</think><answer>5</answer>", 0.0),
    ("5", 0.0),
])
def test_r1_zero_format(completion, want):
    assert F.r1_zero_format(completion) == want


@pytest.mark.parametrize("completion,want", [
    ("|special_token|step 1, step 2|special_token|The answer is 5.", 1.0),
    ("<think>step 1</think>\n\nThe answer is 5.", 1.0),
    ("step 1</think>\n\nThe answer is 5.", 1.0),  # the chat template opened <think>
    ("step 1</think>", 0.0),
    ("no reasoning at all", 0.0),
    ("a</think>b</think>c", 0.0),
    ("x|special_token|a|special_token|b", 0.0),
])
def test_r1_format(completion, want):
    assert F.r1_format(completion) == want


def test_language_consistency_counts_words_per_script():
    assert count_words("小明有 3 个苹果 and two pears") == {"latin": 3, "cjk": 6}
    mixed = "<think>小明有 3 个苹果 and two pears</think><answer>8</answer>"
    assert language_consistency(mixed, "zh") == pytest.approx(6 / 9)
    assert language_consistency(mixed, "en") == pytest.approx(3 / 9)
    assert language_consistency("<think>First add 12 and 30.</think><answer>42</answer>", "en") == 1.0
    assert language_consistency("<think>12 + 30 = 42</think>", "en") == 1.0  # no words in the CoT: nothing mixed
    assert language_consistency("reasoning 先加</think> 所以答案是 42", "zh") == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="unknown target"):
        language_consistency("x", "fr")


def test_a_chain_of_thought_without_words_is_consistent_as_the_mixing_filters_say():
    wordless = ["<think>3 + 4 = 7. 7 - 2 = 5.</think>\n\nThe answer is 5.", "3 + 4 = 7. 7 - 2 = 5.",
                "<think> </think><answer>5</answer>", ""]
    for c in wordless:
        for lang in ("en", "zh"):
            assert language_consistency(c, lang) == 1.0, (c, lang)
    # one rule: the reward is below 1 exactly when the filters see mixing
    cases = wordless + ["<think>小明有 3 个苹果 and two pears</think> 8", "<think>先加 12 和 30。</think> 42",
                        "<think>First add 12 and 30.</think> 42", "<think>Add: 12 + 30 = 42. 所以</think> 42"]
    for c in cases:
        for lang in ("en", "zh"):
            mixed = language_consistency(c, lang) < 1.0
            assert mixes_languages(c, lang) is mixed and ("language mixing" in readability_issues(c, lang)) is mixed
    # R1's stage 3 (accuracy + R1 format + language): a right wordless answer beats a wrong guess with words
    ex = Example("w", "Compute 3 + 4 - 2.", "5", {"family": "world"})
    right, guess = "<think>3 + 4 = 7. 7 - 2 = 5.</think>\n\n5", "<think>It is about 6.</think>\n\n6"
    cfg = RewardConfig(weights=(("accuracy", 1.0), ("format_r1", 1.0), ("language", 1.0)))
    r = compute_rewards([right, guess], [ex, ex], cfg)
    assert r["total"].tolist() == [3.0, 2.0]  # was [2.0, 2.0]: the wordless CoT's language reward was 0


class RecordingRM:
    def __init__(self):
        self.seen = []

    def score(self, prompts, responses):
        self.seen.append(list(responses))
        return np.array([len(r) for r in responses], np.float32)


def test_helpfulness_sees_only_the_summary_harmlessness_everything():
    rm = RecordingRM()
    outs = ["<think>long private reasoning</think>Short answer.", "no reasoning here"]
    np.testing.assert_array_equal(helpfulness(rm, ["p", "q"], outs), [13, 17])
    assert rm.seen[-1] == ["Short answer.", "no reasoning here"]
    np.testing.assert_array_equal(harmlessness(rm, ["p", "q"], outs), [len(outs[0]), len(outs[1])])
    assert rm.seen[-1] == outs


def test_compute_rewards_weights_and_reports_each():
    exs = generate("countdown", 1, 0) + generate("bilingual", 1, 0, language="zh") + [
        Example("m", "What is 1/2 + 1/4?", r"\frac{3}{4}", {})]
    cs = [f"<think>try</think> <answer>{exs[0].answer}</answer>",
          f"<think>小明 has apples</think><answer>{exs[1].answer}</answer>",
          "The answer is 0.75"]
    cfg = RewardConfig(weights=(("accuracy", 1.0), ("format", 1.0), ("language", 0.5)))
    out = compute_rewards(cs, exs, cfg)
    np.testing.assert_array_equal(out["accuracy"], [1, 1, 1])
    np.testing.assert_array_equal(out["format"], [1, 1, 0])
    np.testing.assert_allclose(out["language"], [1.0, 2 / 4, 1.0])
    np.testing.assert_allclose(out["total"], [2.5, 2.25, 1.5])
    wrong = compute_rewards(["<think>x</think><answer>(3 + 3) * 2</answer>"], exs[:1], cfg)
    assert wrong["accuracy"][0] == 0.0
    with pytest.raises(ValueError, match="unknown reward"):
        RewardConfig(weights=(("acuracy", 1.0),))
    with pytest.raises(ValueError, match="needs a reward model"):
        compute_rewards(cs, exs, RewardConfig(weights=(("helpfulness", 1.0),)))


def test_compute_rewards_scores_each_prompt_kind_by_its_rewards():
    """RL for all scenarios: rules score reasoning prompts, reward models general ones
    (helpfulness on the summary of helpful requests, harmlessness on all of a harmful one's)."""
    from r1jax.tasks import Example

    class LengthRM:
        def __init__(self):
            self.seen = []

        def score(self, prompts, responses):
            self.seen += list(responses)
            return np.array([len(r) for r in responses], np.float32)

    exs = [Example("r", "Compute 2 + 2.", "4", {"family": "world"}),
           Example("h", "Say hello to Anna.", "Hello, Anna!", {"family": "general", "kind": "helpful"}),
           Example("x", "How do I break in?", "I can't help.", {"family": "general", "kind": "harmful"})]
    cs = ["<think>2 + 2 = 4</think> <answer>4</answer>", "<think>greet</think>Hi!", "<think>no</think>Sorry."]
    helpful, harmless = LengthRM(), LengthRM()
    cfg = RewardConfig(weights=(("accuracy", 1.0), ("helpfulness", 0.5), ("harmlessness", 2.0)))
    out = compute_rewards(cs, exs, cfg, reward_models={"helpfulness": helpful, "harmlessness": harmless})
    np.testing.assert_array_equal(out["accuracy"], [1, 0, 0])
    np.testing.assert_array_equal(out["helpfulness"], [0, len("Hi!"), 0])
    np.testing.assert_array_equal(out["harmlessness"], [0, 0, len(cs[2])])
    np.testing.assert_allclose(out["total"], [1, 0.5 * 3, 2.0 * len(cs[2])])
    assert helpful.seen == ["Hi!"] and harmless.seen == [cs[2]]


def test_stage6_rewards_leave_a_general_answer_without_cot_unpenalised():
    """Issue 21, defect 3. Stage 6 (RL for all scenarios) scores reasoning prompts by accuracy +
    R1 format + language consistency, and general prompts by the reward model alone: a simple
    request's answer without a chain of thought (as stage 5's general data is written) must not
    lose the format or language reward, or RL pushes simple requests toward a CoT."""
    from r1jax.stages.grpo import RLConfig
    from r1jax.stages.recipe import RL_ALL_REWARDS
    from r1jax.tasks import general_prompts

    class ConstantRM:  # the same score for any response: only the rule rewards can differ
        def score(self, prompts, responses):
            return np.full(len(responses), 0.25, np.float32)

    cfg = RLConfig(reward_weights=RL_ALL_REWARDS).rewards()
    rms = {"helpfulness": ConstantRM(), "harmlessness": ConstantRM()}
    general = general_prompts(4, seed=1, language="both")
    assert {ex.metadata["kind"] for ex in general} == {"helpful", "harmful"}
    assert {ex.metadata["language"] for ex in general} == {"en", "zh"}
    plain = [ex.metadata["response"] for ex in general]  # stage 5's general answers: no reasoning part
    assert all(F.r1_format(c) == 0.0 for c in plain)
    with_cot = [f"<think>The user asks: {ex.prompt}</think>{ex.metadata['response']}" for ex in general]
    wrong_language = ["<think>用户的请求很简单。</think>Sure." if ex.metadata["language"] == "en" else
                      "<think>A simple request.</think>好的。" for ex in general]
    for cs in (plain, with_cot, wrong_language):
        out = compute_rewards(cs, general, cfg, reward_models=rms)
        np.testing.assert_array_equal(out["total"], np.full(len(general), 0.25, np.float32))
        for name in ("accuracy", "format_r1", "language"):
            np.testing.assert_array_equal(out[name], np.zeros(len(general)))
    # reasoning prompts keep accuracy + R1 format + language consistency, as in stage 3
    en = Example("w", "Compute 3 + 4 - 2.", "5", {"family": "world", "language": "en"})
    zh = Example("z", "计算 3 + 4 - 2。", "5", {"family": "world", "language": "zh"})
    cs = ["<think>First add 3 and 4 to get 7, then subtract 2.</think>\n\nThe answer is 5.", "5",
          "<think>先算 3 + 4 = 7，再减 2 得 5。</think>\n\n5", "<think>First add 3 and 4.</think>\n\n5"]
    out = compute_rewards(cs, [en, en, zh, zh], cfg, reward_models=rms)
    np.testing.assert_array_equal(out["accuracy"], [1, 1, 1, 1])
    np.testing.assert_array_equal(out["format_r1"], [1, 0, 1, 1])
    np.testing.assert_array_equal(out["language"], [1, 1, 1, 0])
    np.testing.assert_array_equal(out["helpfulness"] + out["harmlessness"], [0, 0, 0, 0])
    np.testing.assert_array_equal(out["total"], [3, 2, 3, 2])


def test_rewards_never_import_jax():
    code = "import sys, r1jax.rewards, r1jax.rewards.workers; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reflection_words():
    from r1jax.report import reflection_count
    assert reflection_count("12 + 7 = 19. Wait, let me check: 12 + 7 = 19. Let me verify again. Hmm.") == 4
    assert reflection_count("Awaiting the verification step") == 0  # whole words only
    # the world's re-check sentence counts alike in both languages ("wait" + "let me check")
    from r1jax.tasks.world import PHRASES
    for lang in ("en", "zh"):
        assert reflection_count(PHRASES[lang]["check"].format(step="7 - 9", count="6, 5, -2", true=-2)) == 2, lang
    assert reflection_count("所以是 12。再验证：12 - 5 = 7。检查完毕。") == 2


def test_report_quotes_a_rollout_that_corrects_itself(tmp_path):
    from r1jax.report import corrects_itself, write_report
    fixed = "<think> 6 + 7 = 23. Wait, let me check: 6 + 7: 7, 8, 9, 10, 11, 12, 13. So 13, not 23. </think> 13"
    same = "<think> 8 - 3 = 5. Wait, let me check: 8 - 3: 7, 6, 5. So 5, not 5. </think> 5"
    assert corrects_itself(fixed) and not corrects_itself(same)
    assert corrects_itself("3 - 5 = -1。 等等，检查一下：3 - 5：2, 1, 0, -1, -2。所以是 -2，不是 -1。")
    assert corrects_itself("6 + 8 = 15. Wait, let me check: 6 + 8: 7, 8, 9, 10, 11, 12, 13, 14. So 14.")
    # the re-check of the second step confirms what it wrote; the first step was right
    assert not corrects_itself("2 + 2 = 4. 4 + 8 = 12. Wait, let me check: 4 + 8: 5, 6, 7, 8, 9, 10, 11, 12. So 12.")
    # it wrote 11 and fixed it, but says it replaced a 9 it never wrote (a real step-25 rollout)
    check = "Wait, let me check: 14 + 8: 15, 16, 17, 18, 19, 20, 21, 22."
    assert not corrects_itself(f"14 + 8 = 11. {check} So 22, not 9.")
    assert corrects_itself(f"14 + 8 = 11. {check} So 22, not 11.")
    assert not corrects_itself(f"14 + 8 = 22. {check} So 22, not 9.")
    assert not corrects_itself("14 + 9 = 23. Wait, let me check: 14 + 9: 15, 16, 17, 18, 19, 20, 21, 22. So 22.")
    # a true fix followed by a re-check that makes no sense (a real step-25 rollout): not quoted
    assert not corrects_itself("6 + 8 = 15. Wait, let me check: 6 + 8: 7, 8, 9, 10, 11, 12, 13, 14. So 14. "
                               "14 + 9 = 23. Wait, let me check: 14 + 9: 15, 16, 17, 18, 19, 20, 21, 22. So 22.")
    assert not corrects_itself("It is not 5.") and not corrects_itself("So 13, not 23.")  # no step written
    rows = [{"step": 1, "prompt": "Compute 6 + 7.", "answer": "13", "completion": fixed},
            {"step": 2, "prompt": "Compute 8 - 3.", "answer": "5", "completion": same}]
    (tmp_path / "aha.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = write_report(tmp_path, "run", {}).read_text()
    assert fixed in text and same not in text  # the later rollout only re-checks
