"""Math answers as text: find the final answer in a completion and normalise its surface form.

Part of `r1jax.rewards.math` (which re-exports the public names); no parsing or evaluation here.
"""

from __future__ import annotations

import re

__all__ = ["answer_parts", "last_boxed", "all_boxed", "normalize", "is_prose", "plain_number", "decimal_comma"]

MAX_COMPLETION_CHARS = 200_000


# ----------------------------------------------------------------------------- extraction
#
# Bounds: every function here runs in time linear in its input (no regex that can backtrack
# over a long run, no scan per opening of a box), and reads at most:
#   MAX_COMPLETION_CHARS  the last 200,000 characters of a completion;
#   MAX_BOXES             its last 100 \boxed / \fbox commands (a real answer has a handful);
#   MAX_BOX_CHARS         10,000 characters inside one box, nested at most MAX_BOX_NESTING
#                         braces deep: a longer or deeper box is not an answer;
#   MAX_READING_CHARS     the last 10,000 characters of an "answer is" phrase, of the last line,
#                         and of the text where its last number is looked for;
#   MAX_ANSWER_PARTS      32 answers stated together ("\boxed{2} and \boxed{3}");
#   MAX_ANSWER_TEXT       1,600 characters of an answer to normalise (a longer one is compared
#                         as it is: no gold answer is that long).

MAX_BOXES = 100
MAX_BOX_CHARS = 10_000
MAX_BOX_NESTING = 12
MAX_READING_CHARS = 10_000
MAX_ANSWER_PARTS = 32
MAX_ANSWER_TEXT = 1_600


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


def _balanced_group(depth: int) -> re.Pattern:
    """'{...}' with balanced braces at most `depth` deep inside, group 1 the inside. Possessive
    quantifiers: a failed match never backtracks, so it costs at most the text it read."""
    inside = r"[^{}]*+"
    for _ in range(depth):
        inside = r"[^{}]*+(?:\{" + inside + r"\}[^{}]*+)*+"
    return re.compile(r"\{(" + inside + r")\}")


_BOX = re.compile(r"\\(?:boxed|fbox)\s*")
_BOX_GROUP = _balanced_group(MAX_BOX_NESTING)
_BOX_BARE = re.compile(r"[^\s$.,]+")  # "\boxed 5"


def _box_starts(text: str) -> list[int]:
    """Positions of the last MAX_BOXES box commands, in order (found from the end by `rfind`, so a
    text of a million boxes costs what one of MAX_BOXES does)."""
    starts = []
    for name in ("\\boxed", "\\fbox"):
        end = len(text)
        for _ in range(MAX_BOXES):
            end = text.rfind(name, 0, end)
            if end < 0:
                break
            starts.append(end)
    return sorted(starts)[-MAX_BOXES:]


def _box_at(text: str, start: int) -> tuple[int, str] | None:
    """(end, contents) of the box command at `start`, or None when it has no readable contents."""
    i = _BOX.match(text, start).end()
    if i >= len(text):
        return None
    if text[i] == "{":
        g = _BOX_GROUP.match(text, i, i + MAX_BOX_CHARS + 2)
        return (g.end(), g.group(1)) if g else None
    tok = _BOX_BARE.match(text, i, i + MAX_BOX_CHARS)
    return (tok.end(), tok.group(0)) if tok else None


def _unwrap(contents: str) -> str:
    """'\\boxed{\\boxed{3}}' holds the answer 3: a box whose contents are one box is that box."""
    for _ in range(MAX_BOX_NESTING):
        inner = contents.strip()
        m = _BOX.match(inner)
        box = _box_at(inner, 0) if m else None
        if box is None or box[0] != len(inner):
            break
        contents = box[1]
    return contents


def _boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, contents) of the \\boxed{...} / \\fbox{...} commands of `text` that are not
    inside another one, in order (see the bounds above)."""
    out: list[tuple[int, int, str]] = []
    after = 0
    for start in _box_starts(text):
        if start < after:  # inside the previous box
            continue
        box = _box_at(text, start)
        if box is not None:
            out.append((start, box[0], _unwrap(box[1])))
            after = box[0]
    return out


def all_boxed(text: str) -> list[str]:
    """Contents of every \\boxed{...} / \\fbox{...} (nested braces) not inside another, in order."""
    return [c for _, _, c in _boxed_spans(text)]


def last_boxed(text: str) -> str | None:
    boxed = all_boxed(text)
    return boxed[-1] if boxed else None


def _answer_tags(text: str) -> list[str]:
    """What `<answer>(.*?)</answer>` finds (re.S), by `str.find`: the regex rescans the rest of
    the text from every unclosed tag."""
    out, pos = [], 0
    while True:
        i = text.find("<answer>", pos)
        if i < 0:
            return out
        j = text.find("</answer>", i + len("<answer>"))
        if j < 0:
            return out
        out.append(text[i + len("<answer>"):j])
        pos = j + len("</answer>")


# "The answer is ...", "Final answer: ...": the word, then is / : / = before the answer (not
# "the answer from the previous step", nor the word inside an <answer> tag left unclosed).
# The answer runs to the first full stop before a space, newline or end ("(.+?)" up to one, but
# as character runs, which the regex engine scans without a step per character).
_PHRASE = re.compile(r"(?<![</\w])(?:final answer|the answer|answer)\s*(?:is|:|=|would be|will be)\s*:?\s*"
                     r"(.[^.\n]*+(?:\.(?!\s|$)[^.\n]*+)*+)(?:\.(?=\s|$)|\n|$)", re.I | re.S)
_NUMBER = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?(?:\s*/\s*[0-9]+)?%?|-?\.[0-9]+")
# Math spans: $$...$$, \(...\), \[...\], and $...$ by pandoc's rule (no space just inside either
# dollar, no digit just after the closing one), so the dollars of "$400 + $60 = $460" are money;
# "$ \begin{pmatrix}...\end{pmatrix} $", spaces inside but a LaTeX command, is math too.
# A span holds no opening of its own kind ("\( a \( b \)" is the span " b "), so an opening that
# is never closed reads up to the next one, not to the end of the text.
_MATH_SPAN = re.compile(r"\$\$((?:(?!\$\$).)+?)\$\$|\$(?!\s)([^$]+?)(?<!\s)\$(?!\d)|\$ ([^$\\]*\\[a-zA-Z][^$]*) \$"
                        r"|\\\(((?:(?!\\\().)+?)\\\)|\\\[((?:(?!\\\[).)+?)\\\]", re.S)
_GSM8K_FINAL = re.compile(r"^####\s*(\S[^\n]*)", re.M)  # GSM8K's final-answer line
_VERB = re.compile(r"\b(?:is|are|equals|was|were|be|gives|get)\s+(.+?)\.?$")
# "So x = 2 or x = 3.": values of named unknowns, as a last sentence says them. A value starts
# and ends with a non-space, so each space belongs to one place in the pattern (a pattern that
# could split spaces several ways takes exponential time to fail on "x = 1 , y = 2 , ...").
_UNKNOWN = r"[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*[^=\s](?:[^=]*[^=\s])?"
_EQUATIONS = re.compile(
    rf"(?:so|thus|therefore|hence|then)?,?\s*({_UNKNOWN}(?:\s*(?:,|\bor\b|\band\b)\s*{_UNKNOWN})*)\s*", re.I)
# What may stand between two answers of one list: "\boxed{2} and \boxed{3}", "$x = 2$ or $x = 3$",
# "\boxed{1}, \boxed{4}", "\( y_1 = \boxed{..} \) and \( y_2 = \boxed{..} \)", a word before "and"
# ("\boxed{1} papers and \boxed{2} bins", "\boxed{(3, 3)} \text{ for part (a) and } \boxed{(1, 1)}").
# Anything else ("\boxed{2}, no wait, \boxed{3}") ends the list; so does a gap over MAX_CONNECTIVE.
_CONNECTIVE = re.compile(r"(?:\s|,|;|\$|\\quad|\\qquad|\\[()\[\]]|\\text\{[^{}]{0,30}?\b(?:and|or)\s*\}|\band\b|\bor\b"
                         r"|\b[a-zA-Z]+\s+and\b|[a-zA-Z](?:_\{?\w+\}?)?\s*=)*", re.I)
MAX_CONNECTIVE = 200


def _math_spans(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), next(g for g in m.groups() if g is not None)) for m in _MATH_SPAN.finditer(text)]


def _last_run(spans: list[tuple[int, int, str]], text: str) -> list[str]:
    """The last answer among `spans` of `text`, after the answers before it that only connectives
    separate from it: several answers stated together are the parts of one answer ("2, 3"),
    never a choice of candidates for the grader. [] without spans."""
    if not spans:
        return []
    k = len(spans) - 1
    while k > max(0, len(spans) - MAX_ANSWER_PARTS) and spans[k][0] - spans[k - 1][1] <= MAX_CONNECTIVE and \
            _CONNECTIVE.fullmatch(text[spans[k - 1][1]:spans[k][0]]):
        k -= 1
    return [c for _, _, c in spans[k:]]


def _candidates(completion: str, mode: str) -> list[list[str]]:
    """Readings of the final answer (each a list of its parts) by priority; `answer_parts` picks
    one. Several only where the first may be prose ("So 2 boxes hold 10 items" then its last
    number)."""
    if mode not in MODES:
        raise ValueError(f"unknown extraction mode {mode!r}; valid: {', '.join(MODES)}")
    # GSM8K's calculator notes ("$4+$2=$<<4+2=6>>6") are not part of what the text says
    text = completion[-MAX_COMPLETION_CHARS:]
    if "<<" in text:
        text = re.sub(r"<<[^<>\n]*>>", "", text)
    if mode in ("auto", "answer_tag"):
        tags = _answer_tags(text)
        if tags:
            inner = tags[-1]
            return [_last_run(_boxed_spans(inner), inner) or [inner.strip()]]
        if mode == "answer_tag":
            return []
        if "<answer>" in text:  # an answer cut off (or never closed): the answer is what follows the tag
            text = text[text.rindex("<answer>") + len("<answer>"):]
    first = text.lower().find("answer") if mode == "auto" else -1  # a regex attempt per character: start at the word
    phrases = list(_PHRASE.finditer(text, max(first - 7, 0))) if first >= 0 else []
    if mode in ("auto", "boxed"):
        spans = _boxed_spans(text)
        # "\boxed{255} ... Final Answer: The final answer is $10,455$.": a stated answer after the
        # last box is the later word (unless it is only words: "The answer is correct.")
        restated = bool(spans and phrases) and phrases[-1].start() >= spans[-1][1] and (
            "$" in phrases[-1].group(1) or not _passed_over(phrases[-1].group(1)))
        boxed = [] if restated else _last_run(spans, text)
        if boxed or mode == "boxed":
            return [boxed] if boxed else []
    if mode == "auto":
        hashes = _GSM8K_FINAL.findall(text) if "####" in text else []
        if hashes:
            return [[hashes[-1].rstrip()]]
        if phrases:
            cand = phrases[-1].group(1).strip().strip("*").strip()  # "**Answer:** 7", "**7**"
            tail = cand[-MAX_READING_CHARS:]
            spans = _math_spans(tail)
            # "The largest $n$ is 34": the math names what the answer is about, the number after is it
            if spans and re.match(r"\s*(?:is|are|equals|=)\s+[^$]*[0-9]", tail[spans[-1][1]:]):
                spans = []
            span = _last_run(spans, tail)
            return ([span] if span else []) + [[cand]] + _last_number(tail)
        stripped = text.strip()
        if stripped:
            line = stripped[-MAX_READING_CHARS - 1:].splitlines()[-1][-MAX_READING_CHARS:]
            if line.strip() in ("\\]", "$$"):  # display math over several lines ends the text: read all of it
                opener = stripped.rfind("\\[" if line.strip() == "\\]" else "$$", 0, len(stripped) - 2)
                line = stripped[max(opener, len(stripped) - MAX_READING_CHARS):]
            spans = _math_spans(line)
            span = _last_run(spans, line)
            if span:
                # "... is $(7, 6)$." but not "$d = 90/n$ ... Therefore there are 12 sequences. I hope
                # it is correct.": later sentences that state a number come after the math
                after = line[spans[-1][1]:]
                later = _last_number(after) if re.search(r"[.!?]\s", after) else []
                return later + [span] + _last_number(line)
            # an answer written bare: "(1,2)", "\frac{10}{9}", "1 000", "$\frac13 $" (no words, one
            # sentence, no two numbers side by side unless thousands "1 000"), not its last number
            bare = line.strip().rstrip(".").strip()
            bare = bare if len(bare) <= MAX_ANSWER_TEXT else ""
            if bare and not is_prose(normalize(bare)) and not re.search(r"\.\s", bare) and (
                    not re.search(r"[0-9]\s+[0-9]", bare) or plain_number(bare) != bare):
                return [[bare]] + _last_number(line)
            # "... the solutions are 1, 2, and 3." / "so x equals 5"
            last = re.split(r"(?<=[^0-9])\.\s+", line.strip())[-1]
            verb = _VERB.search(last)  # a match runs to the end of `last`: the first is the only one
            if verb:
                return [[verb.group(1)]] + _last_number(last)
            eq = _EQUATIONS.fullmatch(last)
            if eq:  # "So x = 2 or x = 3.", but not a chain of working "5 - 4 = 1. 1 - 9 = -8."
                return [[eq.group(1)]] + _last_number(last)
            if bare and " " not in normalize(bare):  # one word, "\text{Evelyn}": the answer if it has no number
                return _last_number(line) + [[bare]]
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
    return next((c for c in cands if not _passed_over(", ".join(c))), cands[0] if cands else [])


def _passed_over(reading: str) -> bool:
    """A reading to pass over for the next one: prose, or too long to be an answer."""
    return len(reading) > MAX_ANSWER_TEXT or is_prose(normalize(reading))


MODES = ("auto", "answer_tag", "boxed", "last_number")


# Words that formulas are written with: not a sign of prose.
_FORMULA_WORDS = {"sin", "cos", "tan", "sec", "csc", "cot", "log", "ln", "exp", "sqrt", "arcsin", "arccos", "arctan",
                  "pi", "inf", "infty", "in", "and", "or", "mod", "pmod",
                  "matrix", "pmatrix", "bmatrix", "vmatrix", "Bmatrix", "Vmatrix", "array"}


def is_prose(s: str) -> bool:
    """Does a normalised reading have words around its answer ("about 11", "were left", "on: 12 +
    6 = 18", "Janet makes 9 * 2 = 18 every day")? A word of 2+ letters outside LaTeX commands
    and formula words. A one-word answer ("Evelyn") is prose too, but is still the answer when
    no other reading (a last number) is left."""
    words = re.findall(r"\b[a-zA-Z]{2,}\b", re.sub(r"\\[a-zA-Z]+", " ", s))
    return any(w.lower() not in _FORMULA_WORDS for w in words)


_NOT_IN_NUMBER = re.compile(r"[^-0-9,./%\s]")


def _last_number(text: str) -> list[list[str]]:
    """[[the last number]] of the last MAX_READING_CHARS characters of `text`, or []. The window is
    read from just after its first character that no number contains (so that a number the window
    cuts is not read as a shorter one); all of a text no longer than the window is read."""
    start = max(len(text) - MAX_READING_CHARS, 0)
    if start:
        cut = _NOT_IN_NUMBER.search(text, start)
        start = cut.end() if cut else start
    nums = _NUMBER.findall(text, start)
    return [[nums[-1].rstrip(",")]] if nums else []


# ----------------------------------------------------------------------------- normalisation

_UNIT_WORDS = (r"(?:units?|sq\.?|square|cubic|cm|m|km|mm|in|inch(?:es)?|feet|foot|ft|yards?|miles?|meters?|"
               r"centimeters?|kilometers?|degrees?|dollars?|cents?|hours?|hrs?|minutes?|mins?|seconds?|secs?|"
               r"days?|weeks?|months?|years?|pounds?|lbs?|kg|grams?|g|liters?|mph|people|students?|apples?|"
               r"points?|ways?|times?)")

_REPLACEMENTS = [
    ("^{\\circ}", ""), ("^\\circ", ""), ("^{\\prime}", "'"),
    ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\cfrac", "\\frac"), ("\\left", ""), ("\\right", ""),
    ("\\bigl", ""), ("\\bigr", ""), ("\\Bigl", ""), ("\\Bigr", ""), ("\\big", ""), ("\\Big", ""),
    ("\\displaystyle", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""), ("\\quad", " "),
    ("\\qquad", " "), ("~", " "), ("\\$", ""), ("$", ""), ("\\%", "%"), ("{,}", ""), ("−", "-"),
    ("×", "\\times "), ("÷", "\\div "),
    ("·", "\\cdot "), ("π", "\\pi "), ("√", "\\sqrt "), ("∞", "\\infty "), ("°", ""), ("\\circ", ""),
    ("\\degree", ""), ("\\lbrace", "\\{"), ("\\rbrace", "\\}"),
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
    """A whole answer that is one number written with thousands separators, commas or spaces
    ("7,425,000", "1 000 000"), or as a mixed number ("1\\frac{4}{5}", a proper fraction: MATH's
    golds write them so), as a plain number ("7425000", "\\frac{9}{5}"); anything else unchanged
    ("1,2" is a list, "0,111" is not thousands (see `decimal_comma`), and the parser would read
    "1\\frac{4}{5}" as a product)."""
    if re.fullmatch(r"-?[1-9][0-9]{0,2}(?:(?:,[0-9]{3})+|(?: [0-9]{3})+)(?:\.[0-9]+)?%?", s):
        return s.replace(",", "").replace(" ", "")
    mixed = re.fullmatch(r"(-?)([0-9]{1,30})\s*\\frac\{([0-9]{1,30})\}\{([0-9]{1,30})\}", s)
    if mixed and int(mixed.group(3)) < int(mixed.group(4)):
        sign, whole, num, den = mixed.group(1), int(mixed.group(2)), int(mixed.group(3)), int(mixed.group(4))
        return f"{sign}\\frac{{{whole * den + num}}}{{{den}}}"
    return s


def decimal_comma(s: str) -> str | None:
    """"3,5", "0,111", "1000,99" as "3.5", "0.111", "1000.99": one number with a comma that no
    thousands separator could be (not three digits after it, or a first group of 0 or of more
    than three digits); None for anything else ("1,234" is thousands, "3, 5" a list). Whether it
    is a decimal or a list of two numbers ("3,5") the caller decides: `answers_match` reads it so
    only against one number, which a list of two could never equal."""
    m = re.fullmatch(r"(-?)([0-9]+),([0-9]+)", s)
    if not m or (len(m.group(3)) == 3 and 1 <= len(m.group(2)) <= 3 and m.group(2)[0] != "0"):
        return None
    return f"{m.group(1)}{m.group(2)}.{m.group(3)}"


# Commands written with a doubled backslash ("\\frac", from a JSON or Python string escaped twice).
# Only these names: a doubled backslash is otherwise a matrix row break ("1 \\ x").
_DOUBLED_COMMAND = re.compile(r"\\\\(?=(?:frac|dfrac|tfrac|left|right|sqrt|pi|leq?|geq?|lt|gt|neq|cdot|times|"
                              r"infty|text|mathrm|boxed|pm)(?![a-zA-Z]))")
_RELATIONS = [(re.compile(r"\\(?:leqslant|leq|le)(?![a-zA-Z])|<=|≤"), r"\\leq "),
              (re.compile(r"\\(?:geqslant|geq|ge)(?![a-zA-Z])|>=|≥"), r"\\geq "),
              (re.compile(r"\\lt(?![a-zA-Z])"), "<"), (re.compile(r"\\gt(?![a-zA-Z])"), ">"),
              (re.compile(r"\\(?:neq|ne)(?![a-zA-Z])|!="), "≠")]


def normalize(ans: str) -> str:
    """Canonical surface form of an answer string (no parsing). Text longer than MAX_ANSWER_TEXT
    is only stripped: it is not an answer to compare by form, and some rewrites below scan it
    once per macro."""
    s = ans.strip()
    if len(s) > MAX_ANSWER_TEXT:
        return s
    s = _DOUBLED_COMMAND.sub(r"\\", s)
    # LaTeX thousands separators: "14{,}916", "14 {, }916", "11,\! 111" (the space after "\!" is
    # part of the separator: "11, 111" alone is a list)
    s = re.sub(r"(?<=[0-9])\s*(?:\{\s*,\s*\}|,\\!)\s*(?=[0-9]{3})", ",", s)
    s = re.sub(r"\\(?:begin|end)\{(?:align\*?|aligned|equation\*?|gathered)\}", "", s)
    s = re.sub(r"(\\begin\{array\})\{[lcr|\s]*\}", r"\1", s)  # an array's column spec is layout
    for pattern, repl in _RELATIONS:  # one spelling per relation: "x >= 5", "x \ge 5", "x ≥ 5"
        s = pattern.sub(repl, s)
    for a, b in _REPLACEMENTS:
        s = s.replace(a, b)
    s = re.sub(r"(?<!\\)\\ ", " ", s)  # a TeX space, but not the matrix row break (two backslashes)
    s = re.sub(r"\\text\{\s*(?:" + _UNIT_WORDS + r")\s*\}(\^\{?[0-9]\}?)?", "", s)  # \text{ cm}^2
    s = _strip_text_macros(s)
    s = re.sub(r"\^\{\s*\}", "", s)
    s = s.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    s = s.strip().rstrip(".").strip()
    s = re.sub(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*", "", s, flags=re.I)
    s = re.sub(r"(?<=[0-9}])\s*(?:percent(?:age)?|pct)\b", "%", s, flags=re.I)  # "28 pct" is 28%
    # trailing unit words: "12 apples", "5 cm^2", "30 degrees"
    s = re.sub(r"(?<=[0-9}%])\s*(?:" + _UNIT_WORDS + r")(?:\^\{?[0-9]\}?)?(?:\s+(?:[a-z]+))*\s*$", "", s, flags=re.I)
    s = re.sub(r"\s+", " ", s).strip()
    s = _NUMBER_WORDS.get(s.lower(), s)
    # "1, 2, and 3", "x = 2 or x = 3", "(11,7)or(7,11)": a list of answers
    s = re.sub(r"(?<=[0-9}a-zA-Z)\]])\s*,?\s+(?:and|or)\s+(?=[-0-9\\a-zA-Z(\[])|(?<=\))\s*(?:and|or)\s*(?=\()",
               ", ", s)
    if ";" in s and "=" not in s:  # "-12; -11; -10", "(0;0;0),(0;-2;0)": ";" separates as "," does
        s = s.replace(";", ",")
    return plain_number(s)
