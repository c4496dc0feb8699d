"""Math answers as text: find the final answer in a completion and normalise its surface form.

Part of `r1jax.rewards.math` (which re-exports the public names); no parsing or evaluation here.
"""

from __future__ import annotations

import re

__all__ = ["answer_parts", "last_boxed", "all_boxed", "normalize", "is_prose", "plain_number"]

MAX_COMPLETION_CHARS = 200_000


# ----------------------------------------------------------------------------- extraction

def _matching_brace(s: str, open_idx: int) -> int:
    depth = 0
    for i in range(open_idx, len(s)):
        if s[i] == "{":
            depth += 1
        elif s[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, contents) of every \\boxed{...} / \\fbox{...} (nested braces), in order."""
    out = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*", text):
        i = m.end()
        if i < len(text) and text[i] == "{":
            j = _matching_brace(text, i)
            if j > 0:
                out.append((m.start(), j + 1, text[i + 1:j]))
        elif i < len(text):  # "\boxed 5"
            tok = re.match(r"[^\s$.,]+", text[i:])
            if tok:
                out.append((m.start(), i + tok.end(), tok.group(0)))
    return out


def all_boxed(text: str) -> list[str]:
    """Contents of every \\boxed{...} / \\fbox{...} (nested braces), in order."""
    return [c for _, _, c in _boxed_spans(text)]


def last_boxed(text: str) -> str | None:
    boxed = all_boxed(text)
    return boxed[-1] if boxed else None


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
# "The answer is ...", "Final answer: ...": the word, then is / : / = before the answer (not
# "the answer from the previous step", nor the word inside an <answer> tag left unclosed).
_PHRASE = re.compile(r"(?<![</\w])(?:final answer|the answer|answer)\s*(?:is|:|=|would be|will be)\s*:?\s*"
                     r"(.+?)(?:\.(?=\s|$)|\n|$)", re.I | re.S)
_NUMBER = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?(?:\s*/\s*[0-9]+)?%?|-?\.[0-9]+")
# Math spans: $$...$$, \(...\), \[...\], and $...$ by pandoc's rule (no space just inside either
# dollar, no digit just after the closing one), so the dollars of "$400 + $60 = $460" are money.
_MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|\$(?!\s)([^$]+?)(?<!\s)\$(?!\d)|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)
# "So x = 2 or x = 3.": values of named unknowns, as a last sentence says them. A value starts
# and ends with a non-space, so each space belongs to one place in the pattern (a pattern that
# could split spaces several ways takes exponential time to fail on "x = 1 , y = 2 , ...").
_UNKNOWN = r"[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*[^=\s](?:[^=]*[^=\s])?"
_EQUATIONS = re.compile(
    rf"(?:so|thus|therefore|hence|then)?,?\s*({_UNKNOWN}(?:\s*(?:,|\bor\b|\band\b)\s*{_UNKNOWN})*)\s*", re.I)
# What may stand between two answers of one list: "\boxed{2} and \boxed{3}", "$x = 2$ or $x = 3$",
# "\boxed{1}, \boxed{4}". Anything else ("\boxed{2}, no wait, \boxed{3}") ends the list.
_CONNECTIVE = re.compile(r"(?:\s|,|;|\$|\\quad|\\qquad|\\text\{\s*(?:and|or)\s*\}|\band\b|\bor\b|[a-zA-Z]\s*=)*",
                         re.I)


def _math_spans(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), next(g for g in m.groups() if g is not None)) for m in _MATH_SPAN.finditer(text)]


def _last_run(spans: list[tuple[int, int, str]], text: str) -> list[str]:
    """The last answer among `spans` of `text`, after the answers before it that only connectives
    separate from it: several answers stated together are the parts of one answer ("2, 3"),
    never a choice of candidates for the grader. [] without spans."""
    if not spans:
        return []
    k = len(spans) - 1
    while k > 0 and _CONNECTIVE.fullmatch(text[spans[k - 1][1]:spans[k][0]]):
        k -= 1
    return [c for _, _, c in spans[k:]]


def _candidates(completion: str, mode: str) -> list[list[str]]:
    """Readings of the final answer (each a list of its parts) by priority; `answer_parts` picks
    one. Several only where the first may be prose ("So 2 boxes hold 10 items" then its last
    number)."""
    # GSM8K's calculator notes ("$4+$2=$<<4+2=6>>6") are not part of what the text says
    text = re.sub(r"<<[^<>\n]*>>", "", completion[-MAX_COMPLETION_CHARS:])
    if mode not in ("auto", "answer_tag", "boxed", "last_number"):
        raise ValueError(f"unknown extraction mode {mode!r}")
    if mode in ("auto", "answer_tag"):
        tags = _ANSWER_TAG.findall(text)
        if tags:
            inner = tags[-1]
            return [_last_run(_boxed_spans(inner), inner) or [inner.strip()]]
        if mode == "answer_tag":
            return []
        if "<answer>" in text:  # an answer cut off (or never closed): the answer is what follows the tag
            text = text[text.rindex("<answer>") + len("<answer>"):]
    if mode in ("auto", "boxed"):
        boxed = _last_run(_boxed_spans(text), text)
        if boxed or mode == "boxed":
            return [boxed] if boxed else []
    if mode == "auto":
        hashes = re.findall(r"^####\s*(\S[^\n]*?)\s*$", text, re.M)  # GSM8K's final-answer line
        if hashes:
            return [[hashes[-1]]]
        phrases = list(_PHRASE.finditer(text))
        if phrases:
            cand = phrases[-1].group(1).strip().strip("*").strip()  # "**Answer:** 7", "**7**"
            span = _last_run(_math_spans(cand), cand)
            return ([span] if span else []) + [[cand]] + _last_number(cand)
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        if lines:
            span = _last_run(_math_spans(lines[-1]), lines[-1])
            if span:
                return [span] + _last_number(lines[-1])
            # "... the solutions are 1, 2, and 3." / "so x equals 5"
            last = re.split(r"(?<=[^0-9])\.\s+", lines[-1].strip())[-1]
            verb = list(re.finditer(r"\b(?:is|are|equals|was|were|be|gives|get)\s+(.+?)\.?$", last))
            if verb:
                return [[verb[-1].group(1)]] + _last_number(last)
            eq = _EQUATIONS.fullmatch(last)
            if eq:  # "So x = 2 or x = 3.", but not a chain of working "5 - 4 = 1. 1 - 9 = -8."
                return [[eq.group(1)]] + _last_number(last)
    return _last_number(text)


def answer_parts(completion: str, mode: str = "auto") -> list[str]:
    """The parts of the completion's one final answer, chosen without looking at the gold
    (`r1jax.rewards.math.final_answer` joins them); [] when it has none.

    mode 'answer_tag': the last <answer>...</answer> (R1-Zero template; a \\boxed{} inside it wins);
    'boxed': the last \\boxed{}; 'last_number': the last number; 'auto': the answer tag, else the
    last \\boxed{}, else a GSM8K-style "#### N" line, else an "answer is ..." phrase (its math
    span if it has one), else the last math span of the last line, or what its last sentence
    says the answer "is" or equals, else the last number.
    Answers stated together ("\\boxed{2} and \\boxed{3}", "$2$ or $3$") are the parts of one
    answer. Where the reading is prose ("Janet makes 9 * 2 = $18 every day", `is_prose`), the
    answer is its last number instead.
    """
    cands = _candidates(completion, mode)
    return next((c for c in cands if not is_prose(normalize(", ".join(c)))), cands[0] if cands else [])


# Words that formulas are written with: not a sign of prose.
_FORMULA_WORDS = {"sin", "cos", "tan", "sec", "csc", "cot", "log", "ln", "exp", "sqrt", "arcsin", "arccos", "arctan",
                  "pi", "inf", "infty", "in", "and", "or", "mod", "pmod"}


def is_prose(s: str) -> bool:
    """Does a normalised reading have words around its answer ("about 11", "were left", "on: 12 +
    6 = 18", "Janet makes 9 * 2 = 18 every day")? A word of 2+ letters outside LaTeX commands
    and formula words. A one-word answer ("Evelyn") is prose too, but is still the answer when
    no other reading (a last number) is left."""
    words = re.findall(r"\b[a-zA-Z]{2,}\b", re.sub(r"\\[a-zA-Z]+", " ", s))
    return any(w.lower() not in _FORMULA_WORDS for w in words)


def _last_number(text: str) -> list[list[str]]:
    nums = _NUMBER.findall(text)
    return [[nums[-1].rstrip(",")]] if nums else []


# ----------------------------------------------------------------------------- normalisation

_UNIT_WORDS = (r"(?:units?|sq\.?|square|cubic|cm|m|km|mm|in|inch(?:es)?|feet|foot|ft|yards?|miles?|meters?|"
               r"centimeters?|kilometers?|degrees?|dollars?|cents?|hours?|hrs?|minutes?|mins?|seconds?|secs?|"
               r"days?|weeks?|months?|years?|pounds?|lbs?|kg|grams?|g|liters?|mph|people|students?|apples?|"
               r"points?|ways?|times?|percent)")

_REPLACEMENTS = [
    ("^{\\circ}", ""), ("^\\circ", ""), ("^{\\prime}", "'"),
    ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\cfrac", "\\frac"), ("\\left", ""), ("\\right", ""),
    ("\\bigl", ""), ("\\bigr", ""), ("\\Bigl", ""), ("\\Bigr", ""), ("\\big", ""), ("\\Big", ""),
    ("\\displaystyle", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""), ("\\quad", " "),
    ("\\qquad", " "), ("~", " "), ("\\$", ""), ("$", ""), ("\\%", "%"), ("{,}", ""), ("\\le ", "\\leq "),
    ("\\ge ", "\\geq "), ("≤", "\\leq "), ("≥", "\\geq "), ("−", "-"), ("×", "\\times "), ("÷", "\\div "),
    ("·", "\\cdot "), ("π", "\\pi "), ("√", "\\sqrt "), ("∞", "\\infty "), ("°", ""), ("\\circ", ""),
    ("\\degree", ""), ("\\neq", "≠"), ("\\ne ", "≠"), ("\\lbrace", "\\{"), ("\\rbrace", "\\}"),
]


def _strip_text_macros(s: str) -> str:
    """\\text{abc} -> abc for every text-like macro (nested braces respected)."""
    for _ in range(20):
        m = re.search(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname|mathit|textnormal)\s*\{", s)
        if not m:
            break
        j = _matching_brace(s, m.end() - 1)
        if j < 0:
            break
        s = s[:m.start()] + s[m.end():j] + s[j + 1:]
    return s


_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}


def plain_number(s: str) -> str:
    """A whole answer that is one number written with thousands separators ("7,425,000") or as a
    mixed number ("1\\frac{4}{5}", a proper fraction: MATH's golds write them so), as a plain
    number ("7425000", "\\frac{9}{5}"); anything else unchanged ("1,2" is a list, and the parser
    would read "1\\frac{4}{5}" as a product)."""
    if re.fullmatch(r"-?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?%?", s):
        return s.replace(",", "")
    mixed = re.fullmatch(r"(-?)([0-9]{1,30})\s*\\frac\{([0-9]{1,30})\}\{([0-9]{1,30})\}", s)
    if mixed and int(mixed.group(3)) < int(mixed.group(4)):
        sign, whole, num, den = mixed.group(1), int(mixed.group(2)), int(mixed.group(3)), int(mixed.group(4))
        return f"{sign}\\frac{{{whole * den + num}}}{{{den}}}"
    return s


def normalize(ans: str) -> str:
    """Canonical surface form of an answer string (no parsing)."""
    s = ans.strip()
    s = re.sub(r"\\(?:begin|end)\{(?:align\*?|aligned|equation\*?|gathered)\}", "", s)
    for a, b in _REPLACEMENTS:
        s = s.replace(a, b)
    s = re.sub(r"(?<!\\)\\ ", " ", s)  # a TeX space, but not the matrix row break (two backslashes)
    s = re.sub(r"\\text\{\s*(?:" + _UNIT_WORDS + r")\s*\}(\^\{?[0-9]\}?)?", "", s)  # \text{ cm}^2
    s = _strip_text_macros(s)
    s = re.sub(r"\^\{\s*\}", "", s)
    s = s.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    s = s.strip().rstrip(".").strip()
    s = re.sub(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*", "", s, flags=re.I)
    # trailing unit words: "12 apples", "5 cm^2", "30 degrees"
    s = re.sub(r"(?<=[0-9}%])\s*(?:" + _UNIT_WORDS + r")(?:\^\{?[0-9]\}?)?(?:\s+(?:[a-z]+))*\s*$", "", s, flags=re.I)
    s = re.sub(r"\s+", " ", s).strip()
    s = _NUMBER_WORDS.get(s.lower(), s)
    # "1, 2, and 3", "x = 2 or x = 3": a list of answers
    s = re.sub(r"(?<=[0-9}a-zA-Z)\]])\s*,?\s+(?:and|or)\s+(?=[-0-9\\a-zA-Z(\[])", ", ", s)
    return plain_number(s)
