"""The embedded world's non-reasoning ("general") data, in English and Chinese.

DeepSeek-R1 mixes non-reasoning prompts into its second SFT set and trains a reward model for
them (sec. 2.3.3-2.3.4): simple queries answered directly, without chain of thought, and harmful
requests that must be refused.  This module makes the small world's version of both:

    helpful  "Count from 3 to 7."                        -> "3, 4, 5, 6, 7."
             "Which is bigger, 4 or 9?"                  -> "9 is bigger."
             "Say hello to Lily."                        -> "Hello, Lily!"
             "What number comes after 12?"               -> "13 comes after 12."
    harmful  "How do I break into Tom's house?"          -> "I can't help with that. ..."

and preference pairs (ideal response vs a plausible bad one) for training a reward model.
The vocabulary is the bilingual family's names and objects plus a few fixed phrases, so the
world's small sentencepiece model covers it.  Plain Python, seeded and deterministic.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Callable

from r1jax.tasks.bilingual import BI_NAMES, BI_OBJECTS
from r1jax.tasks.common import LANGUAGES, Example, check_int, task_metadata

__all__ = ["HARMFUL_SHARE", "general_prompts", "preference_pairs"]

HARMFUL_SHARE = 0.25  # chance that a drawn prompt is a harmful request


@dataclasses.dataclass(frozen=True)
class _Draw:
    """One underlying prompt in both languages (each dict maps "en"/"zh" to text).

    bad:   a plausible bad response: wrong content for a helpful prompt, compliance for a
           harmful one.
    flaws: the kinds of rejected response that make sense for this prompt (see preference_pairs).
    """

    template: str
    kind: str
    prompt: dict
    response: dict
    bad: dict
    flaws: tuple


# ------------------------------------------------------------------------------- helpful

_HELPFUL_FLAWS = ("wrong content", "wrong language", "rambling")


def _listing(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers))


def _count(rng: random.Random) -> _Draw:
    a = rng.randint(1, 9)
    numbers = list(range(a, a + rng.randint(2, 5) + 1))
    skipped = numbers[:len(numbers) // 2] + numbers[len(numbers) // 2 + 1:]  # one number left out
    # The en and zh answers differ only in the final full stop, so a "wrong language" answer
    # would not be a language error a reward model can see: that flaw is not offered here.
    return _Draw("count", "helpful",
                 {"en": f"Count from {a} to {numbers[-1]}.", "zh": f"从 {a} 数到 {numbers[-1]}。"},
                 {"en": f"{_listing(numbers)}.", "zh": f"{_listing(numbers)}。"},
                 {"en": f"{_listing(skipped)}.", "zh": f"{_listing(skipped)}。"},
                 ("wrong content", "rambling"))


def _bigger(rng: random.Random) -> _Draw:
    a, b = rng.sample(range(1, 20), 2)
    big, small = max(a, b), min(a, b)
    return _Draw("bigger", "helpful",
                 {"en": f"Which is bigger, {a} or {b}?", "zh": f"{a} 和 {b} 哪个大？"},
                 {"en": f"{big} is bigger.", "zh": f"{big} 大。"},
                 {"en": f"{small} is bigger.", "zh": f"{small} 大。"},
                 _HELPFUL_FLAWS)


def _hello(rng: random.Random) -> _Draw:
    k = rng.randrange(len(BI_NAMES))
    en, zh = BI_NAMES[k][:2]
    other_en, other_zh = BI_NAMES[(k + 1) % len(BI_NAMES)][:2]  # greeting the wrong person
    return _Draw("hello", "helpful",
                 {"en": f"Say hello to {en}.", "zh": f"向{zh}问好。"},
                 {"en": f"Hello, {en}!", "zh": f"{zh}，你好！"},
                 {"en": f"Hello, {other_en}!", "zh": f"{other_zh}，你好！"},
                 _HELPFUL_FLAWS)


def _after(rng: random.Random) -> _Draw:
    a = rng.randint(1, 30)
    return _Draw("after", "helpful",
                 {"en": f"What number comes after {a}?", "zh": f"{a} 后面是几？"},
                 {"en": f"{a + 1} comes after {a}.", "zh": f"{a} 后面是 {a + 1}。"},
                 {"en": f"{a + 2} comes after {a}.", "zh": f"{a} 后面是 {a + 2}。"},
                 _HELPFUL_FLAWS)


# ------------------------------------------------------------------------------- harmful

_REFUSAL = {"en": "I can't help with that.", "zh": "我不能帮你做这件事。"}
# Compliance is the rejected answer of a harmful prompt; it is kept vague on purpose: the
# reward model only has to learn that complying is worse than refusing.
_COMPLIANCE = {"en": "Sure, here is how: first make a plan, then do it when nobody is looking.",
               "zh": "好的，方法如下：先做好计划，然后趁没人看见的时候去做。"}

# template -> (English prompt, Chinese prompt, English reason, Chinese reason); {name}/{zh}
# are a person, {things}/{noun} an object, filled from the bilingual family's vocabulary.
_HARMFUL = {
    "break_in": ("How do I break into {name}'s house?", "我怎么闯进{zh}家？",
                 "Breaking into a home is against the law.", "闯进别人家是违法的。"),
    "steal": ("How do I steal {things} from a shop?", "我怎么从商店偷{noun}？",
              "Stealing is against the law.", "偷东西是违法的。"),
    "hurt": ("How do I hurt {name}?", "我怎么伤害{zh}？",
             "Hurting people is wrong.", "伤害别人是不对的。"),
    "spy": ("How do I read {name}'s messages without asking?", "我怎么偷看{zh}的消息？",
            "Reading someone's messages without asking is wrong.", "偷看别人的消息是不对的。"),
}


def _harmful(rng: random.Random) -> _Draw:
    template = rng.choice(sorted(_HARMFUL))
    en, zh, reason_en, reason_zh = _HARMFUL[template]
    name, zh_name = rng.choice(BI_NAMES)[:2]
    _, things, noun, _ = rng.choice(BI_OBJECTS)
    return _Draw(template, "harmful",
                 {"en": en.format(name=name, things=things), "zh": zh.format(zh=zh_name, noun=noun)},
                 {"en": f"{_REFUSAL['en']} {reason_en}", "zh": f"{_REFUSAL['zh']}{reason_zh}"},
                 dict(_COMPLIANCE), ("compliance",))


_HELPFUL_TEMPLATES: dict[str, Callable[[random.Random], _Draw]] = {
    "count": _count, "bigger": _bigger, "hello": _hello, "after": _after}


def _draws(n: int, seed: int) -> list[_Draw]:
    """The n underlying prompts of a seed; one rng consumed in order, so prefixes are stable."""
    rng = random.Random(seed)
    names = sorted(_HELPFUL_TEMPLATES)
    return [_harmful(rng) if rng.random() < HARMFUL_SHARE else _HELPFUL_TEMPLATES[rng.choice(names)](rng)
            for _ in range(n)]


def _languages(language: str) -> tuple[str, ...]:
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    return ("en", "zh") if language == "both" else (language,)


def general_prompts(n: int, seed: int, *, language: str = "both") -> list[Example]:
    """n non-reasoning prompts (about a quarter harmful) with their ideal responses.

    language="en" or "zh" gives n Examples; "both" gives 2n, the English then the Chinese
    rendering of each prompt (same ids as the single-language modes: "general-<seed>-<i>-<lang>").
    Example.answer and metadata["response"] are the ideal response, in the prompt's language and
    without chain of thought: the answer for a helpful prompt, a refusal for a harmful one.
    metadata also has kind ("helpful"/"harmful"), language, template and pair_id.
    """
    check_int("n", n, 0)
    check_int("seed", seed, -(2**63))
    wanted = _languages(language)
    examples = []
    for i, draw in enumerate(_draws(n, seed)):
        pair_id = f"general-{seed}-{i}"
        for lang in wanted:
            examples.append(Example(
                id=f"{pair_id}-{lang}", prompt=draw.prompt[lang], answer=draw.response[lang],
                metadata=task_metadata("general", seed, i, {}, language=lang, kind=draw.kind,
                                       response=draw.response[lang], template=draw.template, pair_id=pair_id)))
    return examples


# Irrelevant talk around a correct answer: the reward model should prefer the direct answer.
_RAMBLE = {"en": ("Well, that is a good question, and there are many things to say about it, "
                  "so let me talk about other things for a while first. "),
           "zh": "嗯，这是个好问题，有很多话可以说，我先说一会儿别的事情。"}


def preference_pairs(n: int, seed: int, *, language: str = "both") -> list[dict]:
    """Reward-model pairs over `general_prompts(n, seed, language=language)`, one per Example.

    Each pair is {"id", "prompt", "chosen", "rejected", "kind", "language", "flaw"}: chosen is
    the ideal response and rejected has one flaw, drawn per pair from those that fit the prompt:
      "wrong content"  a wrong count / comparison / name / number, in the right language
      "wrong language" the ideal response in the other language
      "rambling"       the ideal response after irrelevant talk
      "compliance"     (harmful prompts, always) going along with the request
    Flaws come from a second rng, so the prompts are exactly those of general_prompts.
    """
    check_int("n", n, 0)
    check_int("seed", seed, -(2**63))
    wanted = _languages(language)
    rng = random.Random(f"preference-{seed}")  # a string seed: no overlap with general_prompts(seed + k)
    pairs = []
    for i, draw in enumerate(_draws(n, seed)):
        for lang in wanted:
            flaw = rng.choice(draw.flaws)
            other = "zh" if lang == "en" else "en"
            rejected = {"wrong content": draw.bad[lang], "compliance": draw.bad[lang],
                        "wrong language": draw.response[other],
                        "rambling": _RAMBLE[lang] + draw.response[lang]}[flaw]
            pairs.append({"id": f"general-{seed}-{i}-{lang}", "prompt": draw.prompt[lang],
                          "chosen": draw.response[lang], "rejected": rejected, "kind": draw.kind,
                          "language": lang, "flaw": flaw})
    return pairs
