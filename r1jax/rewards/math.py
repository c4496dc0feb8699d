"""Math answer checking: extract the final answer from a completion and compare it with the gold one.

Model output is hostile input, so nothing here calls `eval`, `exec` or `sympify` on text.
Answers go through a small restricted parser (LaTeX and plain notation) into an AST whose
evaluation is bounded (digits, exponents, factorials, nesting, length). Numbers compare
exactly with `Fraction` where possible, else numerically in complex floating point;
expressions with variables compare by evaluation at random complex points (probabilistic
identity testing: two different expressions agreeing at 4 random points is vanishingly
unlikely). This replaces `sympy.simplify`, whose run time is unbounded and whose import
alone takes longer than the per-item limit. Every check is bounded by explicit limits (how much
of a completion is read and how: `math_extract`; what is parsed and computed: `math_expr`; how
much comparing one check may do: MAX_MATCH_WORK), so it ends by itself in milliseconds. The
public `grade`/`answers_match` also run in worker processes with a hard per-item time limit
(`r1jax.rewards.workers`), a backstop: a check that took too long would be killed and score
False; the caller never blocks or crashes. Their arguments are checked first (TypeError,
ValueError), before any worker work.

Comparison rules (see `answers_match`): numbers (integers, decimals, fractions, percents,
thousands separators, scientific notation, decimal commas), LaTeX forms, units and `\\text{}`,
degrees, labelled answers (`x = 3`, `(p, q) = (3, 2)`, `AB = 4, CD = 5` vs the values), equations
up to a constant factor, inequalities vs intervals, tuples/points (ordered), intervals and
unions (bracket types matter), sets and bare lists (unordered, repeats ignored), `\\pm`,
matrices, decimals vs the exact values they round (3+ significant digits), multiple-choice
letters, plain words.
"""

from __future__ import annotations

import functools
import re
from typing import Sequence

from r1jax.rewards.math_expr import DECIMAL, Node, ParseError, exprs_equal, parse_expr, proportional, rounds_to
from r1jax.rewards.math_extract import (
    MAX_ANSWER_TEXT,
    MAX_COMPLETION_CHARS,
    MODES,
    answer_parts,
    decimal_comma,
    last_boxed,
    normalize,
    plain_number,
)
from r1jax.rewards.workers import default_pool

__all__ = ["final_answer", "grade", "answers_match", "grade_batch", "match_batch", "last_boxed"]


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


_MATRIX = re.compile(r"\\begin\{(?:[pbvBV]?matrix|array)\}(.*)\\end\{(?:[pbvBV]?matrix|array)\}", re.S)
# What an answer names rather than computes: x, a_{37}, f(x), \theta (not \infty or \pi, values)
_VARIABLE = re.compile(r"[a-zA-Z](?:_\{?\w+\}?)?(?:\([a-zA-Z]\))?|\\(?!infty|pi\b)[a-zA-Z]+")
# Working without unknowns, '180 - 135' of '180 - 135 = 45', '2 x 17' of '2 x 17 = 34'
_WORKING = re.compile(r"[-–+*/().,%0-9\s]+(?:(?:\\(?:times|cdot|div)|(?<=[0-9]) ?x ?(?=[0-9]))[-–+*/().,%0-9\s]+)*")
_RELATION = re.compile(r"(\\leq|\\geq|<|>)")


def _is_label(lhs: str) -> bool:
    """Is `lhs` of 'lhs = value' a name for the value ('x', '(p, q)', 'AB', '|AB|', 'f(x)',
    'V_1 : V_2', '\\frac{NO}{BO}'), not an expression it is equated with ('a + 3z', '2x', '7')?
    No sum or difference at top level, not starting with a digit."""
    lhs = lhs.strip()
    return not lhs or (not lhs[0].isdigit() and len(_split_top(lhs, ["+", "-"])) == 1)


def _strip_lhs(s: str) -> str:
    """The value an answer states: 'x = 3' -> '3', '(p, q) = (3, 2)' -> '(3, 2)', 'x \\in [2, 5]'
    -> '[2, 5]', working '180 - 135 = 45' -> '45', a chain 'x = 5+5+1 = 11' -> '11' (its last
    side), 'x = 1/3 \\approx 0.33' -> '1/3' (the exact value before an approximation), 'h = 8,000'
    -> '8000' (`plain_number`). An equation whose left side is an expression ('a + 3z = 0') is
    kept: 0 is not its value."""
    approx = _split_top(s, ["\\approx"])
    if len(approx) > 1:
        s = approx[0] if "=" in approx[0] else approx[-1]
    member = _split_top(s, ["\\in "])
    if len(member) == 2 and _VARIABLE.fullmatch(member[0]):
        return plain_number(member[1])
    sides = _split_top(s, ["="])
    if len(sides) > 2 and len(_split_top(s, [","])) > 1:  # 'x = 3, y = 4': a list, each item labelled
        return s
    if len(sides) > 2 or (len(sides) == 2 and (_is_label(sides[0]) or (
            _WORKING.fullmatch(sides[0]) and not re.search(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", sides[1]))))):
        return plain_number(sides[-1])
    return s


def _as_interval(s: str) -> tuple[str, str] | None:
    """An inequality in one unknown as (unknown, interval): 'x \\geq 5', '5 \\leq x' -> ('x', '[5,
    \\infty)'), '-x > -1' -> ('x', '(-\\infty, 1)'), '-1 < x \\leq 3' -> ('x', '(-1, 3]'); None
    for anything else."""
    parts = [x.strip() for x in _RELATION.split(s)]
    if not all(parts) or not all(_balanced(x) for x in parts[::2]):
        return None
    upper = {"<": ")", "\\leq": "]"}
    if len(parts) == 3:
        a, op, b = parts
        if not _VARIABLE.fullmatch(a):
            flip = {"<": ">", ">": "<", "\\leq": "\\geq", "\\geq": "\\leq"}
            if _VARIABLE.fullmatch(b):  # '5 \leq x' is 'x \geq 5'
                a, op, b = b, flip[op], a
            elif a[0] == "-" and _VARIABLE.fullmatch(a[1:].strip()):  # '-x > -1' is 'x < 1'
                a, op, b = a[1:].strip(), flip[op], f"-({b})"
            else:
                return None
        if op in upper:
            return a, f"(-\\infty, {b}{upper[op]}"
        return a, f"{'(' if op == '>' else '['}{b}, \\infty)"
    if len(parts) == 5 and _VARIABLE.fullmatch(parts[2]):
        lo, op1, x, op2, hi = parts
        if op1 in upper and op2 in upper:
            return x, f"{'(' if op1 == '<' else '['}{lo}, {hi}{upper[op2]}"
        if op1 not in upper and op2 not in upper:  # '3 \geq x > -1'
            return x, f"{'(' if op2 == '>' else '['}{hi}, {lo}{')' if op1 == '>' else ']'}"
    return None


def _plus_minus(s: str) -> str:
    """'1 \\pm \\sqrt{19}' as the list of its two values '1 + \\sqrt{19}, 1 - \\sqrt{19}'; an answer
    with no top-level \\pm, or with more than one, unchanged."""
    if len(_split_top(s, ["\\pm"])) != 2 or len(_split_top(s, [","])) != 1:
        return s
    return f"{s.replace(chr(92) + 'pm', '+', 1)}, {s.replace(chr(92) + 'pm', '-', 1)}"


# Work done by one check's comparisons, at most: one unit per structural comparison (a list of n
# items against another is up to n * n of them), EXPR_COST per expression parsed and evaluated
# (tens of microseconds). A real answer needs tens to hundreds (20 numbers against the same 20
# reversed: 2,200); a hostile "1, 2, ..., 300" against "301, ..., 600" would need 990,000.
MAX_MATCH_WORK = 5_000
EXPR_COST = 10


class _OutOfWork(Exception):
    pass


def _match(g: str, p: str, work: list[int]) -> bool:
    """`_match_norm` within the work left in `work` (one check's budget, [MAX_MATCH_WORK] at its
    start, shared by its comparisons): a comparison that would need more is False."""
    try:
        return _match_norm(g, p, 0, work)
    except _OutOfWork:
        return False


def _match_norm(g: str, p: str, depth: int, work: list[int]) -> bool:
    """Compare two normalised answer strings structurally; `work` holds the work left."""
    work[0] -= 1
    if work[0] < 0:
        raise _OutOfWork
    if depth > 6:
        return False
    if g == p:
        return True
    if g.replace(" ", "").lower() == p.replace(" ", "").lower():
        return True
    if max(len(g), len(p)) > MAX_ANSWER_TEXT:  # not an answer to compare by structure
        return False
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
        return len(rg) == len(rp) and all(
            len(a) == len(b) and all(_match_norm(x, y, depth + 1, work) for x, y in zip(a, b)) for a, b in zip(rg, rp))
    # unions of intervals / sets
    if "\\cup" in g or "\\cup" in p:
        ug, up = _split_top(g, ["\\cup"]), _split_top(p, ["\\cup"])
        return _unordered(ug, up, depth, work)
    if "\\pm" in g or "\\pm" in p:
        g2, p2 = _plus_minus(g), _plus_minus(p)
        if (g2, p2) != (g, p):
            return _match_norm(g2, p2, depth + 1, work)
    # a decimal comma ("3,5" against 3.5): only against one number that is not whole (see decimal_comma)
    dg, dp = decimal_comma(g), decimal_comma(p)
    if dg and DECIMAL.fullmatch(p) or dp and DECIMAL.fullmatch(g):
        return _match_norm(dg or g, dp or p, depth + 1, work)
    # sets: \{a, b\}
    sg, sp = _set_items(g), _set_items(p)
    if sg is not None or sp is not None:
        return _unordered(sg if sg is not None else _split_top(g, [","]),
                          sp if sp is not None else _split_top(p, [","]), depth, work)
    # bare lists "1, 2, 3", "(1, 2), (3, 4)", "x = 3, y = 4": the order of solutions is not part of
    # the answer; each item is compared whole (a label on an item is that item's)
    lg, lp = _split_top(g, [","]), _split_top(p, [","])
    if (len(lg) > 1 or len(lp) > 1) and _bracketed(g) is None and _bracketed(p) is None:
        g2, p2 = _strip_lhs(g), _strip_lhs(p)
        if (g2, p2) != (g, p) and "," not in g2 + p2:  # 'h = 8,000' is one number
            return _match_norm(g2, p2, depth + 1, work)
        return _unordered(lg, lp, depth, work)
    # inequalities against intervals and against each other: 'x \geq 5', '5 \leq x', '[5, \infty)'
    ig, ip = _as_interval(g), _as_interval(p)
    if ig or ip:
        if ig and ip and ig[0] != ip[0]:
            return False
        return _match_norm(ig[1] if ig else g, ip[1] if ip else p, depth + 1, work)
    # equations: the same sides, or the same equation times a constant ('2x+2y=4' is 'x+y=2')
    eg, ep = _split_top(g, ["="]), _split_top(p, ["="])
    if len(eg) == len(ep) == 2:
        if (_match_norm(eg[0], ep[0], depth + 1, work) and _match_norm(eg[1], ep[1], depth + 1, work)) or (
                _match_norm(eg[0], ep[1], depth + 1, work) and _match_norm(eg[1], ep[0], depth + 1, work)):
            return True
        work[0] -= 2 * EXPR_COST
        if _same_equation(eg, ep):
            return True
    # what an answer is labelled with or works out to: 'x = 3' and '3', '(p, q) = (3, 2)'
    g2, p2 = _strip_lhs(g), _strip_lhs(p)
    if (g2, p2) != (g, p):
        return _match_norm(g2, p2, depth + 1, work)
    # tuples and intervals: brackets must agree
    tg, tp = _bracketed(g), _bracketed(p)
    if tg or tp:
        if tg and tp:
            (og, eg, cg), (op_, ep, cp) = tg, tp
            return (og, cg) == (op_, cp) and len(eg) == len(ep) and all(
                _match_norm(x, y, depth + 1, work) for x, y in zip(eg, ep))
        return False
    work[0] -= EXPR_COST
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


def _distinct(items: list[str]) -> list[str]:
    """Items without repeats written alike: a set of solutions lists each once."""
    seen: set[str] = set()
    return [x for x in items if not (x.replace(" ", "") in seen or seen.add(x.replace(" ", "")))]


def _unordered(a: list[str], b: list[str], depth: int, work: list[int]) -> bool:
    a, b = _distinct(a), _distinct(b)
    if len(a) != len(b):
        return False
    if sorted(x.replace(" ", "") for x in a) == sorted(y.replace(" ", "") for y in b):
        return True  # the same items written the same way: no pairwise comparisons needed
    left = list(b)
    for x in a:
        hit = next((k for k, y in enumerate(left) if _match_norm(x, y, depth + 1, work)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


@functools.lru_cache(maxsize=4096)
def _parsed(s: str) -> Node | None:
    """`parse_expr(s)`, None where it fails; cached, since a list is compared item by item."""
    try:
        return parse_expr(s)
    except (ParseError, ValueError, RecursionError, ZeroDivisionError):
        return None


def _expr_match(g: str, p: str) -> bool:
    """Equal values, or a decimal and an exact value that rounds to it ('0.333' and 1/3: `rounds_to`)."""
    ng, np_ = _parsed(g), _parsed(p)
    if ng is None or np_ is None:
        return False
    try:
        return exprs_equal(ng, np_) or (DECIMAL.fullmatch(p) is not None and DECIMAL.fullmatch(g) is None
                                         and rounds_to(ng, p)) or (
            DECIMAL.fullmatch(g) is not None and DECIMAL.fullmatch(p) is None and rounds_to(np_, g))
    except (RecursionError, MemoryError, OverflowError, ValueError, ZeroDivisionError):
        return False


def _same_equation(eg: list[str], ep: list[str]) -> bool:
    """Are 'a = b' and 'c = d' one equation up to a constant factor: a - b = k (c - d), k != 0?"""
    nodes = [_parsed(x) for x in (*eg, *ep)]
    if any(n is None for n in nodes):
        return False
    a, b, c, d = nodes
    try:
        return proportional(Node("+", (a, Node("neg", (b,)))), Node("+", (c, Node("neg", (d,)))))
    except (RecursionError, MemoryError, OverflowError, ValueError, ZeroDivisionError):
        return False


# ----------------------------------------------------------------------------- in-process API

def _answers_match_local(gold: str, pred: str) -> bool:
    """The comparison itself; bounded, but call `answers_match` to get a hard time limit."""
    if not isinstance(gold, str) or not isinstance(pred, str):
        return False
    g_raw = gold.strip()
    if "box" in g_raw:  # a gold given as boxed answers ("\\boxed{1} and \\boxed{-2}") is what they say together
        g_raw = final_answer(g_raw, "boxed") or g_raw
    g, p = normalize(g_raw), normalize(pred)
    if not p:
        return False
    if len(p) > MAX_ANSWER_TEXT:
        return g == p
    work = [MAX_MATCH_WORK]
    if _match(g, p, work):
        return True
    # a gold answer that is itself a sentence: "The answer is 12 apples." / "She has $5 left"
    if _is_sentence(g):
        gc = normalize(final_answer(gold, "auto") or "")
        if gc and gc != g and _match(gc, p, work):
            return True
    return False


def _is_sentence(s: str) -> bool:
    """Two or more words of 3+ letters outside LaTeX commands: prose, not a formula."""
    return len(re.findall(r"\b[a-zA-Z]{3,}\b", re.sub(r"\\[a-zA-Z]+", " ", s))) >= 2


# Parts of one answer compared with each other, at most: a hostile run of thousands of boxes is
# kept as it is rather than compared pairwise.
MAX_PARTS_COMPARED = 8


def final_answer(completion: str, mode: str = "auto") -> str | None:
    """The completion's one final answer, chosen without looking at the gold; None if it has none.

    Which text is the answer: `r1jax.rewards.math_extract.answer_parts` (the answer tag, else the
    last \\boxed{}, else an "answer is" phrase, ..., else the last number). Answers stated
    together are one list ("\\boxed{2} and \\boxed{3}" -> "2, 3"), except that a part equivalent
    to a later one is the same answer written twice and is dropped ("\\boxed{15\\frac{39}{40}},
    or \\boxed{\\frac{639}{40}}" -> "\\frac{639}{40}"). This one answer is what is graded and
    what votes in cons@k: "The answer is 3 or 5." is wrong for gold 5, and the vote never sees
    the gold.
    """
    if not isinstance(completion, str):
        return None
    parts = answer_parts(completion, mode)
    if 1 < len(parts) <= MAX_PARTS_COMPARED:
        norm, work = [normalize(a) for a in parts], [MAX_MATCH_WORK]
        parts = [a for i, a in enumerate(parts) if not any(_match(b, norm[i], work) for b in norm[i + 1:] if b)]
    return ", ".join(parts) if parts else None


def _grade_local(completion: str, gold: str, mode: str = "auto") -> bool:
    # One answer per completion, chosen without the gold: trying several readings against the
    # gold would mark "The answer is 3 or 5." right for 5 (and for 3).
    if not isinstance(completion, str):
        return False
    answer = final_answer(completion, mode)
    return answer is not None and _answers_match_local(gold, answer)


# ----------------------------------------------------------------------------- safe public API
#
# Arguments are checked here, before any item reaches a worker: a wrong type or an unknown mode
# is the caller's error (TypeError / ValueError naming the argument), not an answer scored False.

def _strings(values, name: str, fn: str) -> list[str]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{fn}: {name} must be a sequence of str, got {type(values).__name__}")
    values = list(values)
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise TypeError(f"{fn}: {name}[{i}] is {type(v).__name__}, not str")
    return values


def _check_options(fn: str, timeout, mode: str | None = None) -> None:
    if mode is not None and mode not in MODES:
        raise ValueError(f"{fn}: mode {mode!r} is not one of {', '.join(map(repr, MODES))}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"{fn}: timeout must be a positive number of seconds, got {timeout!r}")


def grade(completion: str, gold: str, *, mode: str = "auto", timeout: float = 0.5) -> bool:
    """Is the final answer in `completion` equivalent to `gold`? Runs in a worker process with
    a hard time limit (a backstop: the checks are bounded, see the module docstring); a check
    that fails or times out is False. TypeError for a non-str argument, ValueError for an
    unknown `mode` or a bad `timeout`."""
    for name, v in (("completion", completion), ("gold", gold)):
        if not isinstance(v, str):
            raise TypeError(f"grade: {name} is {type(v).__name__}, not str")
    return grade_batch([completion], [gold], mode=mode, timeout=timeout)[0]


def answers_match(gold: str, pred: str, *, timeout: float = 0.5) -> bool:
    """Are two final answers equivalent (see the module docstring for the rules)?"""
    for name, v in (("gold", gold), ("pred", pred)):
        if not isinstance(v, str):
            raise TypeError(f"answers_match: {name} is {type(v).__name__}, not str")
    return match_batch([gold], [pred], timeout=timeout)[0]


def grade_batch(completions: Sequence[str], golds: Sequence[str], *, mode: str = "auto",
                timeout: float = 0.5) -> list[bool]:
    """`grade` for N items across worker processes, in order; timed-out items are False."""
    completions = _strings(completions, "completions", "grade_batch")
    golds = _strings(golds, "golds", "grade_batch")
    _check_options("grade_batch", timeout, mode)
    if len(completions) != len(golds):
        raise ValueError(f"grade_batch: {len(completions)} completions but {len(golds)} gold answers")
    # only a completion's tail is read (MAX_COMPLETION_CHARS): the rest need not be sent
    return default_pool().map("math.grade", [(c[-MAX_COMPLETION_CHARS:], g, mode) for c, g in zip(completions, golds)],
                              timeout)


def match_batch(golds: Sequence[str], preds: Sequence[str], *, timeout: float = 0.5) -> list[bool]:
    """`answers_match` for N pairs across worker processes, in order."""
    golds = _strings(golds, "golds", "match_batch")
    preds = _strings(preds, "preds", "match_batch")
    _check_options("match_batch", timeout)
    if len(golds) != len(preds):
        raise ValueError(f"match_batch: {len(golds)} gold answers but {len(preds)} predicted ones")
    return default_pool().map("math.match", list(zip(golds, preds)), timeout)
