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
thousands separators, scientific notation), LaTeX forms, units and `\\text{}`, degrees,
equations `x = 3` vs `3`, tuples/points (ordered), intervals and unions (bracket types
matter), sets and bare lists (unordered), matrices, multiple-choice letters, plain words.
"""

from __future__ import annotations

import functools
import re
from typing import Sequence

from r1jax.rewards.math_expr import Node, ParseError, exprs_equal, parse_expr
from r1jax.rewards.math_extract import (
    MAX_ANSWER_TEXT,
    MAX_COMPLETION_CHARS,
    MODES,
    answer_parts,
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


_MATRIX = re.compile(r"\\begin\{[pbvBV]?matrix\}(.*)\\end\{[pbvBV]?matrix\}", re.S)
# The left side of 'x = 3', 'f(x) = ...', '\theta = ...', or of working without unknowns '180 - 135 = 45'
_EQ_LHS = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?(?:\([a-zA-Z]\))?\s*(?:=|\\in)\s*(?!.*=)|^\\[a-zA-Z]+\s*=\s*(?!.*=)"
                     r"|^[-–+*/().,%0-9\s]+(?:(?:\\(?:times|cdot|div)|(?<=[0-9]) ?x ?(?=[0-9]))[-–+*/().,%0-9\s]+)*"
                     r"=\s*(?!.*=)")
_INEQ = re.compile(r"^([a-zA-Z])\s*(<|>|\\leq|\\geq|<=|>=)\s*(.+)$")


def _strip_lhs(s: str) -> str:
    """'x = 3' -> '3' (one variable, one '='), 'f(x) = ...' -> '...', '180 - 135 = 45' -> '45',
    'h = 8,000' -> '8000' (`plain_number`)."""
    return plain_number(_EQ_LHS.sub("", s, count=1).strip())


def _inequality_as_interval(s: str) -> str | None:
    m = _INEQ.match(s)
    if not m:
        return None
    op, bound = m.group(2), m.group(3)
    return {"<": f"(-\\infty, {bound})", ">": f"({bound}, \\infty)", "\\leq": f"(-\\infty, {bound}]",
            "<=": f"(-\\infty, {bound}]", "\\geq": f"[{bound}, \\infty)", ">=": f"[{bound}, \\infty)"}[op]


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
    # inequality vs interval
    for a, b in ((g, p), (p, g)):
        iv = _inequality_as_interval(a)
        if iv is not None and _INEQ.match(b) is None:
            return _match_norm(iv, b, depth + 1, work) if a is g else _match_norm(g, iv, depth + 1, work)
    # equations
    g2, p2 = _strip_lhs(g), _strip_lhs(p)
    if (g2, p2) != (g, p):
        return _match_norm(g2, p2, depth + 1, work)
    if "=" in g and "=" in p and "\\leq" not in g:
        gs, ps = _split_top(g, ["="]), _split_top(p, ["="])
        return len(gs) == len(ps) == 2 and (
            (_match_norm(gs[0], ps[0], depth + 1, work) and _match_norm(gs[1], ps[1], depth + 1, work))
            or (_match_norm(gs[0], ps[1], depth + 1, work) and _match_norm(gs[1], ps[0], depth + 1, work)))
    # sets: \{a, b\}
    sg, sp = _set_items(g), _set_items(p)
    if sg is not None or sp is not None:
        return _unordered(sg if sg is not None else _split_top(g, [","]),
                          sp if sp is not None else _split_top(p, [","]), depth, work)
    # tuples and intervals: brackets must agree
    tg, tp = _bracketed(g), _bracketed(p)
    if tg or tp:
        if tg and tp:
            (og, eg, cg), (op_, ep, cp) = tg, tp
            return (og, cg) == (op_, cp) and len(eg) == len(ep) and all(
                _match_norm(x, y, depth + 1, work) for x, y in zip(eg, ep))
        return False
    # bare lists "1, 2, 3": the order of solutions is not part of the answer
    lg, lp = _split_top(g, [","]), _split_top(p, [","])
    if len(lg) > 1 or len(lp) > 1:
        return len(lg) == len(lp) and _unordered(lg, lp, depth, work)
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


def _unordered(a: list[str], b: list[str], depth: int, work: list[int]) -> bool:
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
    ng, np_ = _parsed(g), _parsed(p)
    if ng is None or np_ is None:
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
