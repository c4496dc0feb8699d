"""The embedded CPU world: its problems, their held-out test split, and its pretraining corpus.

The world (r1jax.stages.world) pretrains a 1M-parameter model on `world_corpus`, documents that
answer one-digit addition/subtraction chains (`world_problems`, in English and/or Chinese) in
the R1-Zero template with mixed quality, then runs R1-Zero and the R1 stages on the same
problems.  `world_split` holds one problem in `WORLD_TEST_SHARE` out of every corpus and RL
pool; `world_heldout` draws the evaluation set from it.  `refine_language` is the cold start's
rewrite of the world's English re-check sentences into the problem's language.
"""

from __future__ import annotations

import dataclasses
import random
import re
import zlib

from r1jax.tasks.arithmetic import arithmetic_chain
from r1jax.tasks.common import LANGUAGES, Example
from r1jax.tasks.general import preference_pairs
from r1jax.tokenizer import render_r1_zero

__all__ = [
    "ENDINGS",
    "GUESS_EXACT",
    "MIX_RATE",
    "PHRASES",
    "SLIPS",
    "SLIP_RATE",
    "STYLES",
    "SUMMARY",
    "WORLD_TEST_SHARE",
    "refine_language",
    "world_corpus",
    "world_heldout",
    "world_problems",
    "world_response",
    "world_split",
]


# ---------------------------------------------------------------------------------------------
# Problems and the test split
# ---------------------------------------------------------------------------------------------

# One problem in this many belongs to the world's test split: held out of every corpus and RL
# pool by construction, whatever their sizes and seeds (a hash of the problem, not of the draw).
WORLD_TEST_SHARE = 6


def world_split(expression: str) -> str:
    """'test' or 'train' for a world problem's expression ("3 + 6 + 9 - 9")."""
    return "test" if zlib.crc32(expression.encode()) % WORLD_TEST_SHARE == 0 else "train"


def world_problems(n: int, seed: int, *, min_ops: int = 1, max_ops: int = 3, language: str = "en",
                   split: str = "train") -> list[Example]:
    """The embedded CPU world's problems (r1jax.stages.world): chains of additions and subtractions
    of one-digit numbers ("Compute 3 + 6 + 9 - 9."), which a 1M-parameter model learns to work
    out in minutes.

    language="zh" poses them in Chinese ("计算 3 + 6 + 9 - 9。"); "both" draws the language of
    each problem (seeded), for the R1 stages' language-consistency reward. The problems
    themselves do not depend on `language`; metadata['language'] names the target language.

    split="test" draws from the one problem in WORLD_TEST_SHARE that "train" (every corpus and
    RL pool) never holds (`world_split`), at the same mix of difficulties.
    """
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    rng = random.Random(f"world-language-{seed}")
    chains, drawn = [], n
    while len(chains) < n:  # draw more until n problems of the split (a longer draw extends a shorter one)
        drawn = 2 * drawn + 16
        chains = [e for e in arithmetic_chain(drawn, seed, min_ops=min_ops, max_ops=max_ops, max_value=9, ops="+-")
                  if world_split(e.prompt.removeprefix("Compute ").removesuffix(".")) == split][:n]
    out = []
    for e in chains:
        lang = rng.choice(("en", "zh")) if language == "both" else language
        prompt = e.prompt if lang == "en" else "计算 " + e.prompt.removeprefix("Compute ").removesuffix(".") + "。"
        out.append(dataclasses.replace(
            e, id="world" + e.id.removeprefix("chain") + ("-zh" if lang == "zh" else ""), prompt=prompt,
            metadata={**e.metadata, "family": "world", "language": lang}))
    return out


# ---------------------------------------------------------------------------------------------
# The pretraining corpus
# ---------------------------------------------------------------------------------------------

# How the base's training documents answer a problem, and how often. Like web text, most
# answers are terse or sloppy: most are guesses (rarely exact), and worked solutions often
# carry an uncaught slip. A few writers re-check every step by counting ("Wait, let me check:
# 14 + 4: 15, 16, 17, 18.") and fix what was wrong. Counting is slower but a small model gets
# it right far more often than a step done at once, so RL has a reason to favour long,
# reflective answers. The shares keep the base's pass@1 low, as R1-Zero's was (15.6% on AIME
# before RL), however well the base learns the corpus: a document answers right 24% of the
# time (one to three steps), most of that by re-checking.
STYLES = {"guess": 0.65, "direct": 0.20, "check": 0.15}
GUESS_EXACT = 0.05  # a guess hits the answer this often
SLIP_RATE = {"direct": 0.5, "check": 0.4}  # per step
# Independently of the style, a third of the documents end without the answer tags.
ENDINGS = {"en": {" <answer> {v} </answer>": 0.65, " {v}": 0.20, " The answer is {v}.": 0.15},
           "zh": {" <answer> {v} </answer>": 0.65, " {v}": 0.20, " 答案是 {v}。": 0.15}}
SLIPS = (-10, -2, -1, 1, 2, 10)
# The words of the chain of thought in each language. Numbers are not words, so a CoT of bare
# steps has none; guesses and re-checks carry the language.
PHRASES = {"en": {"guess": "It is about {v}.", "check": " Wait, let me check: {step}: {count}. So {true}",
                  "right": ".", "wrong": ", not {shown}."},
           "zh": {"guess": "大约是 {v}。", "check": " 等等，检查一下：{step}：{count}。所以是 {true}",
                  "right": "。", "wrong": "，不是 {shown}。"}}
# Writers answering in Chinese re-check in English this often, as R1-Zero's CoT mixes languages
# (a whole re-check sentence switches, so the mixing is visible to `language_consistency`).
MIX_RATE = 0.4


def world_response(ex, rng: random.Random) -> tuple[str, str]:
    """(style, response text after "Assistant:") for a `world` (or + / - `chain`) example, in
    the problem's language (metadata['language'], default English)."""
    steps, lang = ex.metadata["steps"], ex.metadata.get("language", "en")
    style = rng.choices(list(STYLES), weights=list(STYLES.values()))[0]
    endings = ENDINGS[lang]
    ending = rng.choices(list(endings), weights=list(endings.values()))[0]
    if style == "guess":
        answer = int(ex.answer)
        value = answer if rng.random() < GUESS_EXACT else answer + rng.choice(SLIPS)
        return style, f"<think> {PHRASES[lang]['guess'].format(v=value)} </think>" + ending.format(v=value)
    check_lang = "en" if lang == "zh" and style == "check" and rng.random() < MIX_RATE else lang
    lines, value = [], steps[0][0]
    for _, op, r, _ in steps:
        true = value + r if op == "+" else value - r
        shown = true + rng.choice(SLIPS) if rng.random() < SLIP_RATE[style] else true
        line = f"{value} {op} {r} = {shown}."
        if style == "check":
            sign, ph = (1 if op == "+" else -1), PHRASES[check_lang]
            count = ", ".join(str(value + sign * k) for k in range(1, r + 1))
            line += ph["check"].format(step=f"{value} {op} {r}", count=count, true=true) + (
                ph["right"] if shown == true else ph["wrong"].format(shown=shown))
        else:
            true = shown  # an uncaught slip carries on
        lines.append(line)
        value = true
    return style, f"<think> {' '.join(lines)} </think>" + ending.format(v=value)


def world_corpus(n: int, seed: int, language: str = "en") -> list[tuple[str, str]]:
    """(prompt in the R1-Zero template, response) documents of the embedded world. The
    bilingual world (language 'zh' or 'both') also holds general requests (r1jax.tasks.general)
    answered well or badly, as web text would, about one document in five."""
    rng = random.Random(seed + 1)
    docs = [(render_r1_zero(ex.prompt), world_response(ex, rng)[1])
            for ex in world_problems(n, seed, language=language)]
    if language != "en":
        pairs = preference_pairs(n // 8, seed + 2, language=language)
        docs += [(render_r1_zero(p["prompt"]), p["chosen"] if rng.random() < 0.6 else p["rejected"]) for p in pairs]
        rng.shuffle(docs)
    return docs


def world_heldout(n: int, seed: int, language: str = "en") -> list:
    """`n` distinct problems of the world's test split, which no pretraining corpus or RL pool
    holds whatever its size and seed (`world_split`), at the training mix of difficulties: the
    held-out set of `world` and of the R1 recipe."""
    drawn = world_problems(4 * n, seed + 7919, split="test", language=language)
    heldout = list({ex.prompt: ex for ex in drawn}.values())[:n]
    if len(heldout) < n:
        raise ValueError(f"eval_problems={n}: only {len(heldout)} distinct test problems drawn")
    return heldout


# ---------------------------------------------------------------------------------------------
# The cold start's language rewrite
# ---------------------------------------------------------------------------------------------

SUMMARY = {"en": " The answer is {v}.", "zh": " 答案是 {v}。"}


def _phrase_regex(template: str) -> str:
    """A `PHRASES` template as a regex: its fields become named groups."""
    number = r"-?\d+"
    fields = {"step": rf"{number} [-+] \d+", "count": rf"{number}(?:, {number})*"}
    return "".join(f"(?P<{part[1:-1]}>{fields.get(part[1:-1], number)})" if part.startswith("{") else re.escape(part)
                   for part in re.split(r"(\{\w+\})", template))


_EN = PHRASES["en"]
_EN_CHECK = re.compile(_phrase_regex(_EN["check"]) + f"(?:{re.escape(_EN['right'])}|{_phrase_regex(_EN['wrong'])})")
_EN_GUESS = re.compile(_phrase_regex(_EN["guess"]))


def refine_language(reasoning: str, language: str) -> str:
    """The world's English re-check and guess sentences in a chain of thought, rewritten in the
    problem's language: the cold start's post-processing of R1-Zero outputs (the paper has
    human annotators refine them, sec. 2.3.1). R1-Zero learns to re-check Chinese problems in
    English; whether any of its samples stays readable Chinese depends on the run (46 of
    486 cold-start records in one run, none of 421 in another), and without such records
    the cold start, and the language reward after it, never see a readable Chinese CoT. Only
    the world's fixed sentences are rewritten; any other English stays and is filtered out."""
    if language == "en":
        return reasoning
    ph = PHRASES[language]
    checked = _EN_CHECK.sub(lambda m: ph["check"].format(**m.groupdict()) + (
        ph["right"] if m["shown"] is None else ph["wrong"].format(shown=m["shown"])), reasoning)
    return _EN_GUESS.sub(lambda m: ph["guess"].format(v=m["v"]), checked)
