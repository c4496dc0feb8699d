"""Language consistency (DeepSeek-R1 sec. 2.3.3): Num(Words_target) / Num(Words) over the CoT.

Words are counted per script: a run of Latin letters is one word; every CJK ideograph (or
kana/hangul syllable) is one word, since Chinese has no spaces and the character is the
unit a reader sees mixed in. Digits, punctuation and math symbols are not words.

A CoT without words ("3 + 4 = 7. 7 - 2 = 5.", or an empty one) scores 1.0: the paper's ratio
is 0/0 there, and the reward exists to penalise mixing, which needs words. This is the rule of
the mixing and readability filters too (`mixes_languages`: the reward is below 1 exactly when
the CoT mixes), so a right wordless answer is not scored like a wrong one with words.
"""

from __future__ import annotations

import re

from r1jax.rewards.format import split_reasoning

__all__ = ["count_words", "language_consistency", "cot_of", "mixes_languages"]

LATIN_WORD = r"[A-Za-z\u00C0-\u024F]+(?:'[A-Za-z]+)?"
CJK_CHAR = r"[\u4E00-\u9FFF\u3400-\u4DBF\uF900-\uFAFF\u3040-\u30FF\uAC00-\uD7AF]"
_WORD = re.compile(f"(?P<latin>{LATIN_WORD})|(?P<cjk>{CJK_CHAR})")
_SCRIPT = {"en": "latin", "zh": "cjk"}
_TAGS = re.compile(r"</?(?:think|answer)>")


def count_words(text: str) -> dict[str, int]:
    """{'latin': n, 'cjk': m} word counts (tags are not words)."""
    counts = {"latin": 0, "cjk": 0}
    for m in _WORD.finditer(_TAGS.sub(" ", text)):
        counts[m.lastgroup] += 1
    return counts


def cot_of(completion: str) -> str:
    """The chain of thought: the reasoning part if the output has one, else all of it."""
    m = re.search(r"<think>(.*?)</think>", completion, re.S)
    if m:
        return m.group(1)
    parts = split_reasoning(completion)
    return parts[0] if parts else completion


def language_consistency(completion: str, target: str = "en") -> float:
    """Share of the CoT's words in the target language ('en' or 'zh'); 1.0 for a CoT without
    words, which mixes nothing (see the module docstring)."""
    if target not in _SCRIPT:
        raise ValueError(f"language_consistency: unknown target {target!r}; valid: {', '.join(_SCRIPT)}")
    counts = count_words(cot_of(completion))
    total = sum(counts.values())
    return counts[_SCRIPT[target]] / total if total else 1.0


def mixes_languages(completion: str, language: str) -> bool:
    """Some word of the chain of thought is not in the target language (the paper's language
    mixing): the language reward is below 1. A CoT of bare numbers has no words and does not mix."""
    return language_consistency(completion, language) < 1.0
