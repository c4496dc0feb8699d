"""Math answers as text: find the final answer in a completion and normalise its surface form.

Part of `r1jax.rewards.math` (which re-exports the public names); no parsing or evaluation here.
"""

from __future__ import annotations

import re

__all__ = ["extract_answer", "last_boxed", "all_boxed", "normalize"]

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


def all_boxed(text: str) -> list[str]:
    """Contents of every \\boxed{...} / \\fbox{...} (nested braces), in order."""
    out = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*", text):
        i = m.end()
        if i < len(text) and text[i] == "{":
            j = _matching_brace(text, i)
            if j > 0:
                out.append(text[i + 1:j])
        elif i < len(text):  # "\boxed 5"
            tok = re.match(r"[^\s$.,]+", text[i:])
            if tok:
                out.append(tok.group(0))
    return out


def last_boxed(text: str) -> str | None:
    boxed = all_boxed(text)
    return boxed[-1] if boxed else None


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
_PHRASE = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=|would be|will be)?\s*:?\s*(.+?)(?:\.(?=\s|$)|\n|$)", re.I | re.S)
_NUMBER = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?(?:\s*/\s*[0-9]+)?%?|-?\.[0-9]+")
_MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)


def extract_answer(completion: str, mode: str = "auto") -> list[str]:
    """Candidate final answers, most specific first.

    mode 'answer_tag': the last <answer>...</answer> (R1-Zero template);
    'boxed': the last \\boxed{} (R1 style; several boxed answers also give their list);
    'last_number': the last number; 'auto': answer tag, else boxed, else a GSM8K-style
    "#### N" line, else an "answer is ..." phrase, else the last math span of the last line, else the last number.
    """
    text = completion[-MAX_COMPLETION_CHARS:]
    if mode not in ("auto", "answer_tag", "boxed", "last_number"):
        raise ValueError(f"unknown extraction mode {mode!r}")
    if mode in ("auto", "answer_tag"):
        tags = _ANSWER_TAG.findall(text)
        if tags:
            inner = tags[-1]
            boxed = all_boxed(inner)
            return [boxed[-1]] if boxed else [inner.strip()]
        if mode == "answer_tag":
            return []
    if mode in ("auto", "boxed"):
        boxed = all_boxed(text)
        if boxed:
            return [boxed[-1]] + ([", ".join(boxed)] if len(boxed) > 1 else [])
        if mode == "boxed":
            return []
    if mode == "auto":
        hashes = re.findall(r"^####\s*(\S[^\n]*?)\s*$", text, re.M)  # GSM8K's final-answer line
        if hashes:
            return [hashes[-1]]
        phrases = list(_PHRASE.finditer(text))
        if phrases:
            cand = phrases[-1].group(1).strip()
            spans = [next(g for g in m.groups() if g is not None) for m in _MATH_SPAN.finditer(cand)]
            out = [spans[-1]] if spans else []
            return out + [cand] + _last_number(cand)
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        if lines:
            spans = [next(g for g in m.groups() if g is not None) for m in _MATH_SPAN.finditer(lines[-1])]
            if spans:
                return [spans[-1]] + _last_number(lines[-1])
            # "... the solutions are 1, 2, and 3." / "so x equals 5"
            last = re.split(r"(?<=[^0-9])\.\s+", lines[-1].strip())[-1]
            verb = list(re.finditer(r"\b(?:is|are|equals|was|were|be|gives|get)\s+(.+?)\.?$", last))
            if verb:
                return [verb[-1].group(1)] + _last_number(last)
            eq = re.fullmatch(r"(?:so|thus|therefore|hence|then)?,?\s*([^=]*=.*?)\.?", last, re.I)
            if eq:  # "So x = 2 or x = 3."
                return [eq.group(1)] + _last_number(last)
    return _last_number(text)


def _last_number(text: str) -> list[str]:
    nums = _NUMBER.findall(text)
    return [nums[-1].rstrip(",")] if nums else []


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
    # a thousands-separated number "7,425,000" (the whole answer, so lists like "1,2" survive)
    if re.fullmatch(r"-?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?%?", s):
        s = s.replace(",", "")
    return s
