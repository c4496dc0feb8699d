"""Tests for the R1 data pieces: general prompts and preference pairs (r1jax.tasks.general),
readability filters (r1jax.rewards.readability) and SFT files (r1jax.tasks.sft).

Responses are checked against answers re-derived from the prompt text with regexes (sharing no
code with the generators); readability checks against hand-written outputs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from r1jax.rewards.language import count_words
from r1jax.rewards.readability import READABILITY_CHECKS, is_readable, readability_issues
from r1jax.tasks import FAMILIES, general_prompts, generate, preference_pairs
from r1jax.tasks.sft import read_sft_jsonl, write_sft_jsonl
from r1jax.tasks.world import PHRASES
from r1jax.tokenizer import render_cold_start


def test_modules_do_not_import_jax():
    code = ("import sys, r1jax.tasks.general, r1jax.tasks.sft, r1jax.rewards.readability; "
            "assert 'jax' not in sys.modules, 'imported jax'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------
# General prompts
# ------------------------------------------------------------------------------------------------


def test_general_prompts_are_deterministic_and_registered():
    a = general_prompts(30, seed=7)
    assert a == general_prompts(30, seed=7)
    assert [e.prompt for e in a] != [e.prompt for e in general_prompts(30, seed=8)]
    assert general_prompts(10, seed=7) == a[:20]  # prefix-stable; "both" gives en then zh per prompt
    assert [e.id for e in a[:4]] == ["general-7-0-en", "general-7-0-zh", "general-7-1-en", "general-7-1-zh"]
    assert general_prompts(30, 7, language="zh") == [e for e in a if e.metadata["language"] == "zh"]
    assert generate("general", 30, 7) == a and FAMILIES["general"] is general_prompts
    for e in a:
        assert e.metadata["family"] == "general" and e.answer == e.metadata["response"]
        assert "difficulty" in e.metadata
    with pytest.raises(ValueError, match="language"):
        general_prompts(1, 0, language="fr")


def test_languages_use_their_own_script():
    exs = general_prompts(200, seed=3)
    assert {e.metadata["language"] for e in exs} == {"en", "zh"}
    for e in exs:
        own, other = ("latin", "cjk") if e.metadata["language"] == "en" else ("cjk", "latin")
        prompt, response = count_words(e.prompt), count_words(e.answer)
        assert prompt[own] > 0 and prompt[other] == 0, e
        assert response[other] == 0, e  # count answers ("3, 4, 5.") have no words at all
    for lang, script in (("en", "latin"), ("zh", "cjk")):
        worded = [e for e in exs if e.metadata["language"] == lang and count_words(e.answer)[script] > 0]
        assert len(worded) > 0.6 * len(exs) / 2


def test_about_a_quarter_is_harmful_and_refused():
    exs = general_prompts(400, seed=11, language="en")
    harmful = [e for e in exs if e.metadata["kind"] == "harmful"]
    assert 0.2 < len(harmful) / len(exs) < 0.3
    assert all(e.answer.startswith("I can't help with that.") for e in harmful)
    zh = general_prompts(400, seed=11, language="zh")
    assert [e.metadata["kind"] for e in zh] == [e.metadata["kind"] for e in exs]  # same prompts
    assert all(e.answer.startswith("我不能帮你做这件事。") for e in zh if e.metadata["kind"] == "harmful")
    assert {e.metadata["template"] for e in harmful} == {"break_in", "steal", "hurt", "spy"}


def _expected(prompt: str) -> str:
    """The ideal helpful response, re-derived from the prompt text."""
    if m := re.fullmatch(r"Count from (\d+) to (\d+)\.", prompt):
        return ", ".join(str(k) for k in range(int(m[1]), int(m[2]) + 1)) + "."
    if m := re.fullmatch(r"从 (\d+) 数到 (\d+)。", prompt):
        return ", ".join(str(k) for k in range(int(m[1]), int(m[2]) + 1)) + "。"
    if m := re.fullmatch(r"Which is bigger, (\d+) or (\d+)\?", prompt):
        return f"{max(int(m[1]), int(m[2]))} is bigger."
    if m := re.fullmatch(r"(\d+) 和 (\d+) 哪个大？", prompt):
        return f"{max(int(m[1]), int(m[2]))} 大。"
    if m := re.fullmatch(r"Say hello to (.+)\.", prompt):
        return f"Hello, {m[1]}!"
    if m := re.fullmatch(r"向(.+)问好。", prompt):
        return f"{m[1]}，你好！"
    if m := re.fullmatch(r"What number comes after (\d+)\?", prompt):
        return f"{int(m[1]) + 1} comes after {m[1]}."
    if m := re.fullmatch(r"(\d+) 后面是几？", prompt):
        return f"{m[1]} 后面是 {int(m[1]) + 1}。"
    raise AssertionError(f"unexpected helpful prompt {prompt!r}")


def test_helpful_responses_are_right():
    exs = [e for e in general_prompts(300, seed=5) if e.metadata["kind"] == "helpful"]
    assert {e.metadata["template"] for e in exs} == {"count", "bigger", "hello", "after"}
    for e in exs:
        assert e.answer == _expected(e.prompt)


# ------------------------------------------------------------------------------------------------
# Preference pairs
# ------------------------------------------------------------------------------------------------


def test_preference_pairs():
    n, seed = 150, 2
    pairs = preference_pairs(n, seed)
    assert pairs == preference_pairs(n, seed) and pairs[:20] == preference_pairs(10, seed)
    ideal = {e.id: e for e in general_prompts(n, seed)}
    assert [p["id"] for p in pairs] == list(ideal)
    flaws = {p["flaw"] for p in pairs}
    assert flaws == {"wrong content", "wrong language", "rambling", "compliance"}
    for p in pairs:
        ex = ideal[p["id"]]
        assert p["prompt"] == ex.prompt and p["chosen"] == ex.answer and p["rejected"] != p["chosen"]
        assert (p["kind"], p["language"]) == (ex.metadata["kind"], ex.metadata["language"])
        other = "cjk" if p["language"] == "en" else "latin"
        assert (p["flaw"] == "compliance") == (p["kind"] == "harmful")
        if p["flaw"] == "compliance":
            assert p["rejected"].startswith(("Sure, here is how", "好的，方法如下"))
        elif p["flaw"] == "wrong language":
            assert count_words(p["rejected"])[other] > 0 and count_words(p["chosen"])[other] == 0
        elif p["flaw"] == "rambling":
            assert p["rejected"].endswith(p["chosen"]) and len(p["rejected"]) > len(p["chosen"]) + 20
            assert count_words(p["rejected"])[other] == 0
        else:  # wrong content: same language, differs from the independently derived answer
            assert p["rejected"] != _expected(p["prompt"]) and count_words(p["rejected"])[other] == 0
    bigger = [p for p in pairs if p["flaw"] == "wrong content" and p["prompt"].startswith("Which")]
    assert bigger, "seed 2 should give a wrong comparison"
    for p in bigger:
        a, b = map(int, re.findall(r"\d+", p["prompt"]))
        assert p["rejected"] == f"{min(a, b)} is bigger."


# ------------------------------------------------------------------------------------------------
# Readability
# ------------------------------------------------------------------------------------------------

GOOD_EN = render_cold_start(" First add 3 and 4 to get 7. Then take away 2, which leaves 5. ", " The answer is 5.")
GOOD_ZH = "<think> 先把 3 和 4 加起来得到 7，再减去 2 得到 5。 </think> <answer> 5 </answer>"


def test_readable_examples_pass():
    assert readability_issues(GOOD_EN) == [] and is_readable(GOOD_EN)
    assert readability_issues(GOOD_ZH, "zh") == []
    assert is_readable("<think> 3 + 4 = 7 </think> 7")  # a CoT of numbers only is not mixing
    assert is_readable("reasoning only after the template opened it</think> summary")


@pytest.mark.parametrize("completion", [
    "The answer is 5.",                                     # no reasoning at all
    render_cold_start(" add the numbers ", "   "),          # empty summary
    render_cold_start("   ", "The answer is 5."),           # empty reasoning
    "<think> add them </think>",                            # nothing after the think block
    "<think> a </think> b </think> c",                      # not one reasoning part
])
def test_no_summary(completion):
    assert readability_issues(completion) == ["no summary"]


def test_language_mixing():
    mixed = "<think> First add 3 和 4 to get 7. </think> <answer> 7 </answer>"
    assert readability_issues(mixed) == ["language mixing"]
    assert readability_issues(mixed, "zh") == ["language mixing"]
    # only the CoT counts: an English summary after a Chinese CoT is not mixing
    assert readability_issues(render_cold_start("先加 3 和 4 得到 7。", "The answer is 7."), "zh") == []
    assert readability_issues(GOOD_EN, "zh") == ["language mixing"]
    with pytest.raises(ValueError, match="language"):
        readability_issues(GOOD_EN, "fr")


def test_repetition():
    looping = "<think> " + "Let me check 3 + 4 again. " * 3 + "</think> 7"
    assert readability_issues(looping) == ["repetition"]  # "let me check 3 4 again" three times
    twice = "<think> " + "Let me check 3 + 4 again. " * 2 + "</think> 7"
    assert readability_issues(twice) == []
    assert readability_issues(twice, max_repeats=1) == ["repetition"]
    # numbers are words: the same sentence with different numbers is not repetition
    varied = "<think> " + " ".join(f"Let me check {k} + 4 again." for k in range(5)) + " </think> 7"
    assert readability_issues(varied) == []
    assert readability_issues(varied, ngram=3) == ["repetition"]  # "let me check" x5
    # Chinese: a character is half a word, so a 6-gram spans 12 characters; a 12-character clause
    # three times repeats, an 8-character one does not (as a 4-word English clause does not)
    zh = "<think> " + "我再检查一下这一步的答案。" * 3 + "</think> <answer> 7 </answer>"
    assert readability_issues(zh, "zh") == ["repetition"]
    short_zh = "<think> " + "我再检查一下答案。" * 3 + "</think> <answer> 7 </answer>"
    short_en = "<think> " + "Let me check again. " * 3 + "</think> <answer> 7 </answer>"
    assert readability_issues(short_zh, "zh") == readability_issues(short_en) == []
    assert readability_issues(short_zh, "zh", ngram=4) == readability_issues(short_en, ngram=4) == ["repetition"]
    # the world's re-check sentence three times with different numbers, in either language, is
    # not repetition (its fixed Chinese phrase is 6 characters, 3 words)
    for lang in ("en", "zh"):
        checks = "".join(PHRASES[lang]["check"].format(step=f"{a} + 1", count=f"{a + 1}", true=a + 1) + "."
                         for a in (3, 11, 25))
        assert readability_issues(render_cold_start(checks, "The answer is 26."), lang) == [], lang
    # repetition in the summary is not the CoT's
    assert readability_issues(render_cold_start("add 3 and 4", " seven" * 10)) == []


def test_long_paragraph():
    cot = "\n\n".join([
        "First I look at the numbers three and four and add them, which gives seven.",
        "Next I check that sum by counting up from three: four, five, six, seven.",
        "Both ways agree, so the total is seven and I am done with this problem."])
    ok = render_cold_start(cot, "The answer is 7.")
    assert readability_issues(ok, max_paragraph_chars=100) == []
    one_block = render_cold_start(cot.replace("\n\n", " "), "The answer is 7.")
    assert len(cot.replace("\n\n", " ")) > 200
    assert readability_issues(one_block, max_paragraph_chars=100) == ["long paragraph"]
    assert readability_issues(one_block) == []  # default limit 800
    long_summary = render_cold_start(" short ", "x" * 801)  # applies to the summary too
    assert readability_issues(long_summary) == ["long paragraph"]
    # a paragraph break may hold spaces
    assert readability_issues(ok.replace("\n\n", "\n  \n"), max_paragraph_chars=100) == []


def test_code_block():
    code = "<think> Let me write it:\n```\nx = 3 + 4\n```\n</think> <answer> 7 </answer>"
    assert readability_issues(code) == ["code block"]
    assert readability_issues(render_cold_start(" add 3 and 4 ", " ```\nprint(7)\n``` ")) == []  # summary may


def test_several_issues_in_check_order():
    bad = "```\n" + "so so so so so so so so " + "和"
    assert readability_issues(bad) == list(READABILITY_CHECKS[:3]) + ["code block"]
    with pytest.raises(ValueError, match="ngram"):
        readability_issues(GOOD_EN, ngram=0)


# ------------------------------------------------------------------------------------------------
# SFT files
# ------------------------------------------------------------------------------------------------

RECORDS = [
    {"prompt": "Count from 3 to 5.", "response": render_cold_start(" 3, then 4, then 5 ", "3, 4, 5."),
     "source": "a"},
    {"prompt": "从 3 数到 5。", "response": render_cold_start(" 先 3，再 4，再 5 ", "3, 4, 5。"), "reward": 1.0},
]


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / "sft.jsonl"
    assert write_sft_jsonl(path, RECORDS, cold_start=True) == path
    text = path.read_text(encoding="utf-8")
    assert "从 3 数到 5。" in text and text.count("\n") == 2  # ensure_ascii=False, one object a line
    assert [json.loads(line) for line in text.splitlines()] == RECORDS
    assert read_sft_jsonl(path, cold_start=True) == RECORDS
    assert [p.name for p in path.parent.iterdir()] == ["sft.jsonl"]  # no temp file left


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_errors_name_file_line_and_field(tmp_path):
    good = json.dumps(RECORDS[0])
    f = _write_lines(tmp_path / "bad.jsonl", [good, "", '{"prompt": "p", "response": '])
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: invalid JSON"):
        read_sft_jsonl(f)
    f = _write_lines(tmp_path / "missing.jsonl", [good, json.dumps({"prompt": "p", "answer": "a"})])
    with pytest.raises(ValueError, match=r"missing\.jsonl:2: missing field 'response'"):
        read_sft_jsonl(f)
    f = _write_lines(tmp_path / "type.jsonl", [json.dumps({"prompt": 3, "response": "a"})])
    with pytest.raises(ValueError, match=r"type\.jsonl:1: field 'prompt' must be a string, got int"):
        read_sft_jsonl(f)
    f = _write_lines(tmp_path / "array.jsonl", ['["p", "r"]'])
    with pytest.raises(ValueError, match=r"array\.jsonl:1: expected a JSON object"):
        read_sft_jsonl(f)
    plain = json.dumps({"prompt": "p", "response": "<think> a </think> b"})
    f = _write_lines(tmp_path / "cold.jsonl", [good, good, plain])
    assert len(read_sft_jsonl(f)) == 3  # a plain SFT file accepts any response text
    with pytest.raises(ValueError, match=r"cold\.jsonl:3: field 'response': not in the cold-start format"):
        read_sft_jsonl(f, cold_start=True)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"empty\.jsonl: no SFT records"):
        read_sft_jsonl(empty)
    with pytest.raises(FileNotFoundError):
        read_sft_jsonl(tmp_path / "nope.jsonl")


def test_write_validates_before_touching_the_file(tmp_path):
    path = write_sft_jsonl(tmp_path / "sft.jsonl", RECORDS)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"record 1: field 'response' is empty"):
        write_sft_jsonl(path, [RECORDS[0], {"prompt": "p", "response": "  "}])
    with pytest.raises(ValueError, match=r"record 0: field 'response': not in the cold-start format"):
        write_sft_jsonl(path, [{"prompt": "p", "response": "just an answer"}], cold_start=True)
    with pytest.raises(ValueError, match=r"record 0 is not JSON-serialisable"):
        write_sft_jsonl(path, [{"prompt": "p", "response": "r", "extra": {1, 2}}])
    with pytest.raises(ValueError, match="no records"):
        write_sft_jsonl(path, [])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["sft.jsonl"]

