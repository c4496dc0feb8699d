"""Math answers as expressions: a restricted, bounded parser and an equality test on its AST.

Part of `r1jax.rewards.math` (see its docstring for why nothing here calls `eval` or sympy).
Numbers compare exactly with `Fraction` where possible, else numerically in complex floating
point; expressions with variables compare by evaluation at random complex points.
"""

from __future__ import annotations

import cmath
import math
import random
import re
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["ParseError", "Node", "parse_expr", "exprs_equal", "proportional", "rounds_to", "DECIMAL"]

MAX_ANSWER_CHARS = 400  # longer "answers" are not parsed (string equality only)
MAX_DIGITS = 60
MAX_DEPTH = 40
MAX_EXP_BITS = 4096  # exact results beyond ~4096 bits fall back to floats
MAX_FACTORIAL = 300
REL_TOL = 1e-6


class ParseError(ValueError):
    pass


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


_WORDS_BY_LETTER: dict[str, list[str]] = {}  # first letter -> the words it starts, longest first
for _w in sorted(_FUNCS | {"pi", "infty", "inf"}, key=len, reverse=True):
    _WORDS_BY_LETTER.setdefault(_w[0], []).append(_w)


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
        for name in _WORDS_BY_LETTER.get(out[j][1], ()) if out[j][0] == "var" else ():
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
            return _binom_numeric(_numeric(node.args[0], env), _numeric(node.args[1], env))
        return complex(_FUNC_IMPL[node.value](_numeric(node.args[0], env)))
    raise ValueError(op)


def _binom_numeric(n: complex, k: complex) -> complex:
    """C(n, k) as a float, for whole 0 <= k <= n only. `math.comb` is unbounded (C(10^6, 5 * 10^5)
    takes minutes), so it runs only where C(n, k) >= (n / j)^j, j = min(k, n - k), is below e^700:
    then j < 1,010 and the result has at most ~2,500 bits."""
    if n.imag or k.imag or not (n.real.is_integer() and k.real.is_integer()) or not 0 <= k.real:
        raise ValueError("binomial of non-integers")
    if k.real > n.real:
        return 0j
    j = min(k.real, n.real - k.real)
    if j > 0 and j * math.log(n.real / j) > 700:
        raise OverflowError
    return complex(math.comb(int(n.real), int(k.real)))


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


def proportional(a: Node, b: Node) -> bool:
    """Is a = c * b for a constant c != 0, with variables in both? The sides of two equations
    moved to one side: "2x+2y-2z=4" is "x+y-z=2" (c = 2), "2x+4y-3=0" is "y=-x/2+3/4" (c = -4).
    Decided as `exprs_equal` is, by evaluation at random complex points."""
    vars_ = sorted(_free_vars(a) | _free_vars(b))
    if not vars_ or len(vars_) > 6 or not (_free_vars(a) and _free_vars(b)):
        return False
    rng = random.Random(1)
    ratio, agree = None, 0
    for _ in range(6):
        env = {v: complex(rng.uniform(0.5, 2.5), rng.uniform(-0.5, 0.5)) for v in vars_}
        try:
            va, vb = _numeric(a, env), _numeric(b, env)
            r = va / vb
        except (ZeroDivisionError, OverflowError, ValueError, KeyError, TypeError):
            continue
        if ratio is None:
            ratio = r
            if not abs(r) > 1e-9:
                return False
        elif not _close(r, ratio):
            return False
        agree += 1
    return agree >= 3


# Digits with a decimal point, as written ("0.333", "-2.6667"): integer part, fraction part.
DECIMAL = re.compile(r"-?([0-9]*)\.([0-9]+)")

# A decimal approximates an exact value only with at least this many significant digits: "0.333"
# is 1/3 and "3.14" is pi, but "0.3" and "0.33" are too coarse to tell 1/3 from 0.3 or 33/100.
MIN_SIGNIFICANT_DIGITS = 3


def rounds_to(exact: Node, decimal: str) -> bool:
    """Is `decimal` (digits with a decimal point, as written: "0.333", "-2.6667") the value of
    `exact` rounded to the places it gives, with MIN_SIGNIFICANT_DIGITS or more? "0.333" and
    "0.3333" are 1/3, "0.334" and "0.3" are not; "1.414" is sqrt 2. `exact` must be a constant."""
    m = DECIMAL.fullmatch(decimal)
    if not m or len((m.group(1) + m.group(2)).lstrip("0")) < MIN_SIGNIFICANT_DIGITS:
        return False
    half_unit = Fraction(1, 2 * 10 ** len(m.group(2)))
    d = Fraction(decimal)
    try:
        return abs(_exact(exact) - d) <= half_unit
    except (_Inexact, ZeroDivisionError, OverflowError, ValueError):
        pass
    if _free_vars(exact):
        return False
    try:
        v = _numeric(exact, {})
    except (ZeroDivisionError, OverflowError, ValueError, KeyError, TypeError):
        return False
    # floating point error of the exact side: far below a half unit of any decimal a person writes
    return abs(v.imag) <= 1e-12 * max(1.0, abs(v)) and abs(v.real - float(d)) <= float(half_unit) * (1 + 1e-9) + \
        1e-12 * abs(v.real)
