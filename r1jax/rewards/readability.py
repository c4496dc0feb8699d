"""Readability filters for cold-start data and rejection sampling (DeepSeek-R1 sec. 2.3.1, 2.3.3).

The paper keeps only "correct and readable" samples: no mixed languages in the chain of thought,
no repetition, no overlong paragraphs, no code blocks in the CoT, and a summary at the end.
Each check is a plain rule on the text so a filtered data set can report why samples went:

    no summary       the output is not reasoning + summary (r1jax.rewards.format.split_reasoning),
                     or one of the two parts is blank
    language mixing  some CoT word is not in the target language (`mixes_languages`; a CoT
                     without words is fine, and its language reward is 1)
    repetition       a word n-gram of the CoT (numbers count as words) occurs > max_repeats times;
                     a CJK character counts as half a word (a Chinese word is about two
                     characters), so a Chinese n-gram spans 2n characters
    long paragraph   a blank-line separated paragraph of the reasoning or of the summary (of the
                     whole output if it has no such parts) is over max_paragraph_chars
    code block       the CoT contains ```
"""

from __future__ import annotations

import re
from collections import Counter

from r1jax.rewards.format import split_reasoning

# The words of the language reward (Latin runs, single CJK characters), so both agree on what
# a word is; the repetition check adds numbers, since a looping CoT often repeats arithmetic.
from r1jax.rewards.language import CJK_CHAR, LATIN_WORD, cot_of, mixes_languages

__all__ = ["READABILITY_CHECKS", "readability_issues", "is_readable"]

READABILITY_CHECKS = ("no summary", "language mixing", "repetition", "long paragraph", "code block")
_LANGUAGES = ("en", "zh")
_REPEAT_WORD = re.compile(rf"{LATIN_WORD}|(?P<cjk>{CJK_CHAR})|\d+(?:\.\d+)?")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _max_ngram_count(text: str, n: int) -> int:
    """How often the most frequent word n-gram of `text` occurs (0 if it has fewer than n words).

    An n-gram is the shortest run of words from a position on that makes n words, a CJK
    character counting 1/2. Counting each character as a whole word made a fixed 6-character
    Chinese phrase ("等等，检查一下") a repeated 6-gram in every CoT that re-checks three times,
    while its English twin ("Wait, let me check") is 4 words and its 6-grams take in the numbers
    that follow, which differ between re-checks."""
    matches = list(_REPEAT_WORD.finditer(text))
    words = [m.group().lower() for m in matches]
    weights = [0.5 if m.lastgroup == "cjk" else 1.0 for m in matches]
    grams = Counter()
    for i in range(len(words)):
        total, j = 0.0, i
        while j < len(words) and total < n:
            total, j = total + weights[j], j + 1
        if total >= n:
            grams[tuple(words[i:j])] += 1
    return max(grams.values(), default=0)


def readability_issues(completion: str, language: str = "en", *, max_paragraph_chars: int = 800,
                       ngram: int = 6, max_repeats: int = 2) -> list[str]:
    """The names of the failed checks (in READABILITY_CHECKS order); [] for a readable output.

    The CoT is the reasoning part (`cot_of`: the <think> block, the cold-start reasoning, or the
    whole output when it has no reasoning part). language is the target, "en" or "zh".
    """
    if language not in _LANGUAGES:
        raise ValueError(f"language must be one of {_LANGUAGES}, got {language!r}")
    _check_positive("max_paragraph_chars", max_paragraph_chars)
    _check_positive("ngram", ngram)
    _check_positive("max_repeats", max_repeats)
    parts = split_reasoning(completion)
    cot = cot_of(completion)
    failed = {
        "no summary": parts is None or not parts[0].strip() or not parts[1].strip(),
        "language mixing": mixes_languages(completion, language),
        "repetition": _max_ngram_count(cot, ngram) > max_repeats,
        # The reasoning and the summary are measured apart: the marker between them ends a paragraph.
        "long paragraph": any(len(p.strip()) > max_paragraph_chars
                              for part in (parts or (completion,)) for p in _PARAGRAPH_BREAK.split(part)),
        "code block": "```" in cot,
    }
    return [name for name in READABILITY_CHECKS if failed[name]]


def is_readable(completion: str, language: str = "en", *, max_paragraph_chars: int = 800, ngram: int = 6,
                max_repeats: int = 2) -> bool:
    """True iff `readability_issues` finds nothing."""
    return not readability_issues(completion, language, max_paragraph_chars=max_paragraph_chars, ngram=ngram,
                                  max_repeats=max_repeats)
