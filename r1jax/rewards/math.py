"""Math answer checking: extract the final answer from a completion and compare it with the gold one.

Model output is hostile input, so nothing here calls `eval`, `exec` or `sympify` on text.
Answers go through a small restricted parser (LaTeX and plain notation) into an AST whose
evaluation is bounded (digits, exponents, factorials, nesting, length). Numbers compare
exactly with `Fraction` where possible, else numerically in complex floating point;
expressions with variables compare by evaluation at random complex points (probabilistic
identity testing: two different expressions agreeing at 4 random points is vanishingly
unlikely). This replaces `sympy.simplify`, whose run time is unbounded and whose import
alone takes longer than the per-item limit. The public `grade`/`answers_match` run
in worker processes with a hard per-item time limit (`r1jax.rewards.workers`): a check that
takes too long is killed and scores False; the caller never blocks or crashes.

Comparison rules (see `answers_match`): numbers (integers, decimals, fractions, percents,
thousands separators, scientific notation), LaTeX forms, units and `\\text{}`, degrees,
equations `x = 3` vs `3`, tuples/points (ordered), intervals and unions (bracket types
matter), sets and bare lists (unordered), matrices, multiple-choice letters, plain words.
"""

from __future__ import annotations

import cmath
import math
import random
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

__all__ = ["extract_answer", "grade", "answers_match", "grade_batch", "match_batch", "last_boxed"]

MAX_ANSWER_CHARS = 400  # longer "answers" are not parsed (string equality only)
MAX_COMPLETION_CHARS = 200_000
MAX_DIGITS = 60
MAX_DEPTH = 40
MAX_EXP_BITS = 4096  # exact results beyond ~4096 bits fall back to floats
MAX_FACTORIAL = 300
REL_TOL = 1e-6


class ParseError(ValueError):
    pass


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


# ----------------------------------------------------------------------------- parser

_TOKEN = re.compile(r"""
    (?P<num>[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)
  | (?P<cmd>\\[a-zA-Z]+|\\\{|\\\}|\\\\)
  | (?P<var>[a-zA-Z])
  | (?P<op>\*\*|<=|>=|[-+*/^!(){}\[\],=<>%|'≠&_])
  | (?P<ws>\s+)
""", re.X)

_FUNCS = {"sin", "cos", "tan", "sec", "csc", "cot", "log", "ln", "exp", "arcsin", "arccos", "arctan", "sqrt"}
_GREEK = {"alpha", "beta", "gamma", "delta", "theta", "phi", "lambda", "mu", "sigma", "omega", "epsilon", "rho",
          "tau", "psi", "varphi", "vartheta", "eta", "xi", "zeta", "kappa", "nu", "chi"}


def _tokenize(s: str) -> list[tuple[str, str]]:
    out, i = [], 0
    while i < len(s):
        m = _TOKEN.match(s, i)
        if not m:
            raise ParseError(f"unexpected character {s[i]!r}")
        i = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        text = m.group(kind)
        if kind == "num" and len(text) > MAX_DIGITS:
            raise ParseError("number too long")
        if kind == "op" and text == "**":
            text = "^"
        out.append((kind, text))
    # plain-text function names (sin, log, sqrt) are letters in the stream: fuse them
    fused, j = [], 0
    while j < len(out):
        for name in sorted(_FUNCS | {"pi", "infty", "inf"}, key=len, reverse=True):
            n = len(name)
            if all(k < len(out) and out[k][0] == "var" for k in range(j, j + n)) and \
                    "".join(out[k][1] for k in range(j, j + n)) == name:
                fused.append(("cmd", "\\" + ("infty" if name == "inf" else name)))
                j += n
                break
        else:
            fused.append(out[j])
            j += 1
    return fused


@dataclass(frozen=True)
class Node:
    op: str  # 'num', 'var', 'const', '+', '*', '^', 'neg', 'inv', 'fact', 'func', 'pct'
    args: tuple = ()
    value: object = None


class _Parser:
    """Recursive descent over tokens; implicit multiplication; LaTeX \\frac, \\sqrt, functions."""

    def __init__(self, tokens):
        self.t, self.i, self.depth = tokens, 0, 0

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def take(self, text=None):
        tok = self.peek()
        if tok[0] is None or (text is not None and tok[1] != text):
            raise ParseError(f"expected {text!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def enter(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("nesting too deep")

    def parse(self) -> Node:
        node = self.expr()
        if self.i != len(self.t):
            raise ParseError(f"trailing tokens from {self.t[self.i][1]!r}")
        return node

    def expr(self) -> Node:
        self.enter()
        node = self.term()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            rhs = self.term()
            node = Node("+", (node, rhs if op == "+" else Node("neg", (rhs,))))
        self.depth -= 1
        return node

    def term(self) -> Node:
        node = self.unary()
        while True:
            kind, text = self.peek()
            if text in ("*", "/", "\\cdot", "\\times", "\\div"):
                self.take()
                rhs = self.unary()
                node = Node("*", (node, Node("inv", (rhs,)) if text in ("/", "\\div") else rhs))
            elif kind in ("num", "var") or text in ("(", "{", "\\frac", "\\sqrt", "\\pi", "\\infty") or (
                    kind == "cmd" and (text[1:] in _FUNCS or text[1:] in _GREEK or text == "\\binom")):
                node = Node("*", (node, self.unary()))  # implicit multiplication: 2x, 3\sqrt{2}, (a)(b)
            else:
                return node

    def unary(self) -> Node:
        if self.peek()[1] == "-":
            self.take()
            return Node("neg", (self.unary(),))
        if self.peek()[1] == "+":
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> Node:
        base = self.postfix()
        if self.peek()[1] == "^":
            self.take()
            self.enter()
            exp = self.group_or_atom(allow_unary=True)
            self.depth -= 1
            return Node("^", (base, exp))
        return base

    def postfix(self) -> Node:
        node = self.atom()
        while self.peek()[1] in ("!", "%"):
            node = Node("fact" if self.take()[1] == "!" else "pct", (node,))
        return node

    def group_or_atom(self, allow_unary=False) -> Node:
        if self.peek()[1] == "{":
            self.take("{")
            node = self.expr()
            self.take("}")
            return node
        if allow_unary and self.peek()[1] == "-":
            self.take()
            return Node("neg", (self.group_or_atom(),))
        kind, text = self.take()
        if kind == "num":  # \frac12, x^23 in TeX means x^2 3; take one digit
            if len(text) > 1 and "." not in text:
                self.t.insert(self.i, ("num", text[1:]))
                text = text[0]
            return Node("num", value=Fraction(text))
        if kind == "var":
            return Node("var", value=text)
        self.i -= 1
        return self.atom()

    def atom(self) -> Node:
        kind, text = self.take()
        if kind == "num":
            if self.peek() == ("var", "e") and self.i + 1 < len(self.t) and (
                    self.t[self.i + 1][0] == "num" or self.t[self.i + 1][1] in ("-", "+")):
                self.take()  # scientific notation 1.5e-3
                sign = -1 if self.peek()[1] == "-" else 1
                if self.peek()[1] in ("-", "+"):
                    self.take()
                exp = int(self.take()[1]) * sign
                if abs(exp) > 400:
                    raise ParseError("exponent too large")
                return Node("num", value=Fraction(text) * Fraction(10) ** exp)
            return Node("num", value=Fraction(text))
        if kind == "var":
            if text == "e":
                return Node("const", value="e")
            if text == "i":
                return Node("const", value="i")
            return Node("var", value=text)
        if text in ("(", "[", "{"):
            self.enter()
            node = self.expr()
            self.take({"(": ")", "[": "]", "{": "}"}[text])
            self.depth -= 1
            return node
        if text == "|":
            node = self.expr()
            self.take("|")
            return Node("func", (node,), "abs")
        if kind == "cmd":
            name = text[1:]
            if name == "frac":
                num = self.group_or_atom()
                den = self.group_or_atom()
                return Node("*", (num, Node("inv", (den,))))
            if name == "binom":
                return Node("func", (self.group_or_atom(), self.group_or_atom()), "binom")
            if name == "sqrt":
                if self.peek()[1] == "[":
                    self.take("[")
                    index = self.expr()
                    self.take("]")
                    return Node("^", (self.group_or_atom(), Node("inv", (index,))))
                return Node("^", (self.group_or_atom(), Node("num", value=Fraction(1, 2))))
            if name == "pi":
                return Node("const", value="pi")
            if name == "infty":
                return Node("const", value="inf")
            if name in _GREEK:
                return Node("var", value=name)
            if name in _FUNCS:
                if self.peek()[1] == "^":  # \sin^2 x
                    self.take()
                    power = self.group_or_atom()
                    return Node("^", (Node("func", (self.unary(),), name), power))
                return Node("func", (self.unary(),), name)
        raise ParseError(f"unexpected token {text!r}")


def parse_expr(s: str) -> Node:
    if len(s) > MAX_ANSWER_CHARS:
        raise ParseError("answer too long")
    tokens = _tokenize(s)
    if not tokens:
        raise ParseError("empty")
    return _Parser(tokens).parse()


# ----------------------------------------------------------------------------- evaluation

class _Inexact(Exception):
    """The exact (Fraction) evaluator cannot represent this value."""


def _exact(node: Node) -> Fraction:
    op = node.op
    if op == "num":
        return node.value
    if op == "+":
        return _exact(node.args[0]) + _exact(node.args[1])
    if op == "*":
        return _exact(node.args[0]) * _exact(node.args[1])
    if op == "neg":
        return -_exact(node.args[0])
    if op == "inv":
        v = _exact(node.args[0])
        if v == 0:
            raise ZeroDivisionError
        return 1 / v
    if op == "pct":
        return _exact(node.args[0]) / 100
    if op == "fact":
        v = _exact(node.args[0])
        if v.denominator != 1 or v < 0 or v > MAX_FACTORIAL:
            raise _Inexact
        return Fraction(math.factorial(int(v)))
    if op == "^":
        b, e = _exact(node.args[0]), _exact(node.args[1])
        if e.denominator != 1:
            raise _Inexact
        bits = max(b.numerator.bit_length(), b.denominator.bit_length(), 1)
        if abs(e) * bits > MAX_EXP_BITS:
            raise _Inexact
        if b == 0 and e < 0:
            raise ZeroDivisionError
        return b ** int(e)
    if op == "func" and node.value == "binom":
        n, k = _exact(node.args[0]), _exact(node.args[1])
        if n.denominator != 1 or k.denominator != 1 or not 0 <= k <= n <= MAX_FACTORIAL:
            raise _Inexact
        return Fraction(math.comb(int(n), int(k)))
    if op == "func" and node.value == "abs":
        return abs(_exact(node.args[0]))
    raise _Inexact


_FUNC_IMPL = {"sin": cmath.sin, "cos": cmath.cos, "tan": cmath.tan, "exp": cmath.exp, "ln": cmath.log,
              "log": cmath.log, "arcsin": cmath.asin, "arccos": cmath.acos, "arctan": cmath.atan,
              "sec": lambda z: 1 / cmath.cos(z), "csc": lambda z: 1 / cmath.sin(z), "cot": lambda z: 1 / cmath.tan(z),
              "sqrt": cmath.sqrt, "abs": abs}


def _numeric(node: Node, env: dict) -> complex:
    op = node.op
    if op == "num":
        return complex(float(node.value))
    if op == "var":
        if node.value not in env:
            raise KeyError(node.value)
        return env[node.value]
    if op == "const":
        return {"pi": complex(math.pi), "e": complex(math.e), "i": 1j, "inf": complex(math.inf)}[node.value]
    if op == "+":
        return _numeric(node.args[0], env) + _numeric(node.args[1], env)
    if op == "*":
        return _numeric(node.args[0], env) * _numeric(node.args[1], env)
    if op == "neg":
        return -_numeric(node.args[0], env)
    if op == "inv":
        return 1 / _numeric(node.args[0], env)
    if op == "pct":
        return _numeric(node.args[0], env) / 100
    if op == "fact":
        v = _numeric(node.args[0], env)
        if v.imag or v.real < 0 or v.real > 170:
            raise OverflowError
        return complex(math.gamma(v.real + 1))
    if op == "^":
        b, e = _numeric(node.args[0], env), _numeric(node.args[1], env)
        if abs(e) > 1e4 or (abs(b) > 1 and abs(e) * math.log(abs(b)) > 700):
            raise OverflowError
        if b.imag == 0 and e.imag == 0 and b.real < 0 and float(e.real).is_integer():
            return complex(b.real ** int(e.real))
        if b.imag == 0 and b.real < 0 and e.imag == 0:  # real odd root of a negative number: (-8)^(1/3) = -2
            inv = 1 / e.real
            if abs(inv - round(inv)) < 1e-12 and round(inv) % 2 == 1:
                return complex(-((-b.real) ** e.real))
        return b ** e
    if op == "func":
        if node.value == "binom":
            n, k = _numeric(node.args[0], env), _numeric(node.args[1], env)
            return complex(math.comb(int(n.real), int(k.real)))
        return complex(_FUNC_IMPL[node.value](_numeric(node.args[0], env)))
    raise ValueError(op)


def _free_vars(node: Node) -> set:
    if node.op == "var":
        return {node.value}
    out = set()
    for a in node.args:
        out |= _free_vars(a)
    return out


def _close(a: complex, b: complex, tol: float = REL_TOL) -> bool:
    if any(math.isnan(x) for x in (a.real, a.imag, b.real, b.imag)):
        return False
    if any(math.isinf(x) for x in (a.real, a.imag, b.real, b.imag)):
        return a == b
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def _percent_variants(node: Node) -> list[Node]:
    """'50%' may be meant as 50 or 0.5: both are accepted."""
    if node.op == "pct":
        return [node, node.args[0]]
    return [node]


def exprs_equal(a: Node, b: Node) -> bool:
    for x in _percent_variants(a):
        for y in _percent_variants(b):
            if _exprs_equal(x, y):
                return True
    return False


def _exprs_equal(a: Node, b: Node) -> bool:
    try:
        return _exact(a) == _exact(b)
    except (_Inexact, ZeroDivisionError, OverflowError, ValueError):
        pass
    vars_ = sorted(_free_vars(a) | _free_vars(b))
    if len(vars_) > 6:
        return False
    rng = random.Random(0)
    agree = 0
    for _ in range(4):
        env = {v: complex(rng.uniform(0.5, 2.5), rng.uniform(-0.5, 0.5)) if vars_ else 0 for v in vars_}
        try:
            va, vb = _numeric(a, env), _numeric(b, env)
        except (ZeroDivisionError, OverflowError, ValueError, KeyError, TypeError):
            continue
        if not _close(va, vb):
            return False
        agree += 1
        if not vars_:
            return True
    return agree >= 2


# ----------------------------------------------------------------------------- structures

def _split_top(s: str, seps: Sequence[str]) -> list[str]:
    """Split at separators outside (), [], {}."""
    parts, depth, cur, i = [], 0, [], 0
    while i < len(s):
        c = s[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if depth == 0:
            sep = next((x for x in seps if s.startswith(x, i)), None)
            if sep:
                parts.append("".join(cur))
                cur = []
                i += len(sep)
                continue
        cur.append(c)
        i += 1
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def _balanced(s: str) -> bool:
    depth = 0
    for c in s:
        depth += c in "([{"
        depth -= c in ")]}"
        if depth < 0:
            return False
    return depth == 0


_MATRIX = re.compile(r"\\begin\{[pbvBV]?matrix\}(.*)\\end\{[pbvBV]?matrix\}", re.S)
_EQ_LHS = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?(?:\([a-zA-Z]\))?\s*(?:=|\\in)\s*(?!.*=)|^\\[a-zA-Z]+\s*=\s*(?!.*=)")
_INEQ = re.compile(r"^([a-zA-Z])\s*(<|>|\\leq|\\geq|<=|>=)\s*(.+)$")


def _strip_lhs(s: str) -> str:
    """'x = 3' -> '3' (one variable, one '='), 'f(x) = ...' -> '...'."""
    return _EQ_LHS.sub("", s, count=1).strip()


def _inequality_as_interval(s: str) -> str | None:
    m = _INEQ.match(s)
    if not m:
        return None
    op, bound = m.group(2), m.group(3)
    return {"<": f"(-\\infty, {bound})", ">": f"({bound}, \\infty)", "\\leq": f"(-\\infty, {bound}]",
            "<=": f"(-\\infty, {bound}]", "\\geq": f"[{bound}, \\infty)", ">=": f"[{bound}, \\infty)"}[op]


def _match_norm(g: str, p: str, depth: int = 0) -> bool:
    """Compare two normalised answer strings structurally."""
    if depth > 6:
        return False
    if g == p:
        return True
    if g.replace(" ", "").lower() == p.replace(" ", "").lower():
        return True
    # multiple choice: "(C)", "C", "C)" all name choice C
    mc = re.fullmatch(r"\(?([A-Ea-e])\)?", g)
    if mc:
        pm = re.fullmatch(r"\(?([A-Ea-e])\)?(?:\s.*)?", p)
        return bool(pm) and pm.group(1).upper() == mc.group(1).upper()
    # matrices
    mg, mp = _MATRIX.search(g), _MATRIX.search(p)
    if mg or mp:
        if not (mg and mp):
            return False
        rg = [_split_top(r, ["&"]) for r in _split_top(mg.group(1), ["\\\\"]) if r.strip()]
        rp = [_split_top(r, ["&"]) for r in _split_top(mp.group(1), ["\\\\"]) if r.strip()]
        return len(rg) == len(rp) and all(len(a) == len(b) and all(_match_norm(x, y, depth + 1) for x, y in zip(a, b))
                                          for a, b in zip(rg, rp))
    # unions of intervals / sets
    if "\\cup" in g or "\\cup" in p:
        ug, up = _split_top(g, ["\\cup"]), _split_top(p, ["\\cup"])
        return _unordered(ug, up, depth)
    # inequality vs interval
    for a, b in ((g, p), (p, g)):
        iv = _inequality_as_interval(a)
        if iv is not None and _INEQ.match(b) is None:
            return _match_norm(iv, b, depth + 1) if a is g else _match_norm(g, iv, depth + 1)
    # equations
    g2, p2 = _strip_lhs(g), _strip_lhs(p)
    if (g2, p2) != (g, p):
        return _match_norm(g2, p2, depth + 1)
    if "=" in g and "=" in p and "\\leq" not in g:
        gs, ps = _split_top(g, ["="]), _split_top(p, ["="])
        return len(gs) == len(ps) == 2 and (
            (_match_norm(gs[0], ps[0], depth + 1) and _match_norm(gs[1], ps[1], depth + 1))
            or (_match_norm(gs[0], ps[1], depth + 1) and _match_norm(gs[1], ps[0], depth + 1)))
    # sets: \{a, b\}
    sg, sp = _set_items(g), _set_items(p)
    if sg is not None or sp is not None:
        return _unordered(sg if sg is not None else _split_top(g, [","]),
                          sp if sp is not None else _split_top(p, [","]), depth)
    # tuples and intervals: brackets must agree
    tg, tp = _bracketed(g), _bracketed(p)
    if tg or tp:
        if tg and tp:
            (og, eg, cg), (op_, ep, cp) = tg, tp
            return (og, cg) == (op_, cp) and len(eg) == len(ep) and all(
                _match_norm(x, y, depth + 1) for x, y in zip(eg, ep))
        return False
    # bare lists "1, 2, 3": the order of solutions is not part of the answer
    lg, lp = _split_top(g, [","]), _split_top(p, [","])
    if len(lg) > 1 or len(lp) > 1:
        return len(lg) == len(lp) and _unordered(lg, lp, depth)
    return _expr_match(g, p)


def _set_items(s: str) -> list[str] | None:
    """Items of '\\{a, b\\}' or '{a, b}' (a plain brace group with a top-level comma)."""
    m = re.fullmatch(r"\\\{(.*)\\\}", s)
    if m:
        return _split_top(m.group(1), [","])
    if len(s) >= 2 and s[0] == "{" and s[-1] == "}" and _balanced(s[1:-1]):
        items = _split_top(s[1:-1], [","])
        return items if len(items) > 1 else None
    return None


def _bracketed(s: str):
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _balanced(s[1:-1]):
        items = _split_top(s[1:-1], [","])
        if len(items) >= 2:
            return s[0], items, s[-1]
    return None


def _unordered(a: list[str], b: list[str], depth: int) -> bool:
    if len(a) != len(b):
        return False
    left = list(b)
    for x in a:
        hit = next((k for k, y in enumerate(left) if _match_norm(x, y, depth + 1)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


def _expr_match(g: str, p: str) -> bool:
    try:
        ng, np_ = parse_expr(g), parse_expr(p)
    except (ParseError, ValueError, RecursionError, ZeroDivisionError):
        return False
    try:
        return exprs_equal(ng, np_)
    except (RecursionError, MemoryError, OverflowError, ValueError, ZeroDivisionError):
        return False


# ----------------------------------------------------------------------------- in-process API

def _answers_match_local(gold: str, pred: str) -> bool:
    """The comparison itself; bounded, but call `answers_match` to get a hard time limit."""
    if not isinstance(gold, str) or not isinstance(pred, str):
        return False
    g_raw = gold.strip()
    boxed = last_boxed(g_raw)
    if boxed is not None:
        g_raw = boxed
    g, p = normalize(g_raw), normalize(pred)
    if not p:
        return False
    if len(p) > 4 * MAX_ANSWER_CHARS:
        return g == p
    if _match_norm(g, p):
        return True
    # a gold answer that is itself a sentence: "The answer is 12 apples." / "She has $5 left"
    if _is_sentence(g):
        for cand in extract_answer(gold, "auto"):
            gc = normalize(cand)
            if gc and gc != g and _match_norm(gc, p):
                return True
    return False


def _is_sentence(s: str) -> bool:
    """Two or more words of 3+ letters outside LaTeX commands: prose, not a formula."""
    return len(re.findall(r"\b[a-zA-Z]{3,}\b", re.sub(r"\\[a-zA-Z]+", " ", s))) >= 2


def _grade_local(completion: str, gold: str, mode: str = "auto") -> bool:
    if not isinstance(completion, str):
        return False
    return any(_answers_match_local(gold, cand) for cand in extract_answer(completion, mode)[:4])


# ----------------------------------------------------------------------------- safe public API

def grade(completion: str, gold: str, *, mode: str = "auto", timeout: float = 0.5) -> bool:
    """Is the final answer in `completion` equivalent to `gold`? Runs in a worker process with
    a hard time limit; any failure or timeout is False."""
    return grade_batch([completion], [gold], mode=mode, timeout=timeout)[0]


def answers_match(gold: str, pred: str, *, timeout: float = 0.5) -> bool:
    """Are two final answers equivalent (see the module docstring for the rules)?"""
    return match_batch([gold], [pred], timeout=timeout)[0]


def grade_batch(completions: Sequence[str], golds: Sequence[str], *, mode: str = "auto",
                timeout: float = 0.5) -> list[bool]:
    """`grade` for N items across worker processes, in order; timed-out items are False."""
    from r1jax.rewards.workers import default_pool
    if len(completions) != len(golds):
        raise ValueError(f"{len(completions)} completions but {len(golds)} gold answers")
    return default_pool().map("math.grade", [(c, g, mode) for c, g in zip(completions, golds)], timeout)


def match_batch(golds: Sequence[str], preds: Sequence[str], *, timeout: float = 0.5) -> list[bool]:
    from r1jax.rewards.workers import default_pool
    return default_pool().map("math.match", list(zip(golds, preds)), timeout)
