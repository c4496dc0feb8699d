"""What every task module shares: the `Example` record and the generated families' helpers.

Every generated family is `family(n, seed, **knobs) -> list[Example]`.  All randomness comes
from one `random.Random(seed)` consumed in order, so the same (seed, n, knobs) gives identical
examples and the first k examples of a larger n equal those of n=k.  Answers are computed
exactly (ints and `fractions.Fraction`), never with floats.  The helpers here check a family's
arguments (`check_int`), build its metadata (`task_metadata`) and handle expression trees
(`render_tree`, `tree_value`) and exact numbers (`format_fraction`).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Union

__all__ = [
    "LANGUAGES",
    "Example",
    "Tree",
    "check_int",
    "format_fraction",
    "render_tree",
    "task_metadata",
    "tree_value",
]


@dataclasses.dataclass(frozen=True)
class Example:
    """One task instance.

    id:       stable identifier, e.g. "arith-0-3" or "gsm8k-17" (unique within a family/benchmark).
    prompt:   the question text shown to the model (no chat template applied).
    answer:   the reference answer as a string: integers "42", reduced fractions "-3/4",
              tuples "(2, -1/3)" for systems, or a benchmark's own answer text (LaTeX for MATH).
    metadata: family/benchmark specific details (knobs, coefficients, raw answers, ...).

    `metadata` is excluded from hashing (a dict is unhashable) but still takes part in ==,
    so Examples can be put in sets/dict keys by (id, prompt, answer).
    """

    id: str
    prompt: str
    answer: str
    metadata: dict = dataclasses.field(default_factory=dict, hash=False)


# The `language` argument of the bilingual families: one language, or both renderings.
LANGUAGES = ("en", "zh", "both")

# An expression tree is an int leaf or a tuple (op, left, right) with op in "+-*/".
Tree = Union[int, tuple]

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def format_fraction(value: Fraction | int) -> str:
    """Exact number as the answer string: "42", "-7/3" (Fraction keeps it reduced)."""
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def render_tree(tree: Tree) -> str:
    """Infix text with only the parentheses needed to keep the tree's meaning.

    A child gets parentheses when it binds more loosely than its parent, and a right child also
    when it has the same precedence unless regrouping is harmless (a + (b + c), a * (b * c)),
    because "-" and "/" are not associative and mixed same-level ops read ambiguously.
    """
    if isinstance(tree, int):
        return str(tree)
    op, left, right = tree
    left_text, right_text = render_tree(left), render_tree(right)
    if not isinstance(left, int) and _PREC[left[0]] < _PREC[op]:
        left_text = f"({left_text})"
    if not isinstance(right, int):
        looser = _PREC[right[0]] < _PREC[op]
        same_level = _PREC[right[0]] == _PREC[op] and not (right[0] == op and op in "+*")
        if looser or same_level:
            right_text = f"({right_text})"
    return f"{left_text} {op} {right_text}"


def tree_value(tree: Tree) -> Fraction:
    """Exact value of a tree; raises ZeroDivisionError on division by zero."""
    if isinstance(tree, int):
        return Fraction(tree)
    op, left, right = tree
    a, b = tree_value(left), tree_value(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b


def check_int(name: str, value, lo: int, hi: int | None = None) -> None:
    """Reject bad counts/knobs early with a message naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")


def task_metadata(family: str, seed: int, index: int, difficulty: dict, language: str = "en", **extra) -> dict:
    """The metadata every generated Example carries, plus family-specific fields."""
    return {"family": family, "seed": seed, "index": index, "difficulty": dict(difficulty),
            "language": language, **extra}
