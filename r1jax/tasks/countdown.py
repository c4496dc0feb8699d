"""The countdown family and its answer checker.

    countdown  "Using the numbers [3, 7, 25, 2], ... make 48."  -> one valid expression

A model's answer is any expression that uses every number once and hits the target, so answers
are checked by `countdown_check`, a small restricted parser (no eval/exec), after
`extract_countdown_expression` has taken the candidate out of a completion.
"""

from __future__ import annotations

import random

from r1jax.tasks.common import Example, Tree, check_int, render_tree, task_metadata, tree_value

__all__ = ["countdown", "countdown_check", "extract_countdown_expression"]

_MAX_EXPR_CHARS = 200   # longer "expressions" are rejected before any parsing work
_MAX_DEPTH = 20         # parenthesis nesting limit; also bounds the parser's recursion
_MAX_ATTEMPTS = 10_000  # random draws per example before giving up on impossible knobs


def _tree_over(rng: random.Random, numbers: list[int]) -> Tree:
    """A random binary expression tree using each of `numbers` once, in the given order."""
    if len(numbers) == 1:
        return numbers[0]
    split = rng.randint(1, len(numbers) - 1)
    return (rng.choice("+-*/"), _tree_over(rng, numbers[:split]), _tree_over(rng, numbers[split:]))


def _positive_int_value(tree: Tree) -> int | None:
    """The tree's value if every intermediate result is a positive integer, else None.

    Generated solutions stay within classic Countdown rules (no fractions or negatives along
    the way) so the reference is a natural one; the checker itself accepts any exact route.
    """
    if isinstance(tree, int):
        return tree
    op, left, right = tree
    a, b = _positive_int_value(left), _positive_int_value(right)
    if a is None or b is None:
        return None
    if op == "+":
        result = a + b
    elif op == "-":
        result = a - b
    elif op == "*":
        result = a * b
    else:
        if a % b:
            return None
        result = a // b
    return result if result > 0 else None


def countdown(n: int, seed: int, *, n_numbers: int = 4, max_number: int = 25,
              max_target: int = 100) -> list[Example]:
    """Countdown puzzles: combine all given numbers once each with + - * / to hit a target.

    The target comes from a random expression tree over the drawn numbers, so a solution is
    guaranteed; draws whose value is not a positive integer <= max_target are retried.
    answer = that solution's expression; metadata has `numbers` (list[int]) and `target` (int).
    """
    check_int("n", n, 0)
    check_int("seed", seed, -(2**63))
    check_int("n_numbers", n_numbers, 1, 10)
    check_int("max_number", max_number, 1)
    check_int("max_target", max_target, 1)
    rng = random.Random(seed)
    difficulty = {"n_numbers": n_numbers, "max_number": max_number, "max_target": max_target}
    examples = []
    for i in range(n):
        for _ in range(_MAX_ATTEMPTS):
            numbers = [rng.randint(1, max_number) for _ in range(n_numbers)]
            order = numbers[:]
            rng.shuffle(order)  # the solution need not use the numbers in the order shown
            tree = _tree_over(rng, order)
            target = _positive_int_value(tree)
            if target is not None and target <= max_target:
                break
        else:
            raise RuntimeError(f"countdown: no target <= {max_target} found in {_MAX_ATTEMPTS} draws "
                               f"(n_numbers={n_numbers}, max_number={max_number})")
        solution = render_tree(tree)
        # Self-check the render/parse round trip: the reference must pass our own checker.
        if not countdown_check(solution, numbers, target):
            raise RuntimeError(f"countdown: generated solution {solution!r} fails countdown_check")
        examples.append(Example(
            id=f"countdown-{seed}-{i}",
            prompt=(f"Using the numbers {numbers}, each exactly once, with + - * / and parentheses, "
                    f"make {target}."),
            answer=solution,
            metadata=task_metadata("countdown", seed, i, difficulty, numbers=numbers, target=target),
        ))
    return examples


class _Reject(Exception):
    """Internal: the text is not an acceptable countdown expression."""


# Unicode operators a model may plausibly write; anything else non-ASCII is rejected.
_OPERATOR_ALIASES = str.maketrans({"×": "*", "÷": "/", "−": "-"})
_DIGITS = "0123456789"  # explicit ASCII set: str.isdigit() would also accept "３" or "²"


def _tokenize(text: str) -> list[str]:
    """Integers, + - * / ( ); spaces/tabs skipped; any other character rejects the text."""
    tokens = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t":
            i += 1
        elif c in _DIGITS:
            j = i
            while j < len(text) and text[j] in _DIGITS:
                j += 1
            tokens.append(text[i:j])
            i = j
        elif c in "+-*/()":
            tokens.append(c)
            i += 1
        else:
            raise _Reject(f"character {c!r} not allowed")
    return tokens


class _Parser:
    """Recursive descent over the grammar

        expr   := term (("+" | "-") term)*
        term   := factor (("*" | "/") factor)*
        factor := INTEGER | "(" expr ")"

    producing a tree (int | (op, left, right)).  There are no unary operators, so "**", "--3"
    or "-3" fail to parse.  Recursion only happens through "(", whose depth is capped.
    """

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self) -> str | None:
        token = self._peek()
        self.pos += 1
        return token

    def parse(self) -> Tree:
        tree = self._expr(0)
        if self.pos != len(self.tokens):
            raise _Reject("trailing tokens")
        return tree

    def _expr(self, depth: int) -> Tree:
        tree = self._term(depth)
        while self._peek() in ("+", "-"):
            op = self._next()
            tree = (op, tree, self._term(depth))
        return tree

    def _term(self, depth: int) -> Tree:
        tree = self._factor(depth)
        while self._peek() in ("*", "/"):
            op = self._next()
            tree = (op, tree, self._factor(depth))
        return tree

    def _factor(self, depth: int) -> Tree:
        token = self._next()
        if token == "(":
            if depth + 1 > _MAX_DEPTH:
                raise _Reject("nesting too deep")
            tree = self._expr(depth + 1)
            if self._next() != ")":
                raise _Reject("unbalanced parentheses")
            return tree
        if token is not None and token[0] in _DIGITS:
            return int(token)
        raise _Reject(f"expected a number or '(', got {token!r}")


def _leaves(tree: Tree) -> list[int]:
    """The integer literals of a tree (iteratively, so long chains need no deep recursion)."""
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, int):
            out.append(node)
        else:
            stack.extend((node[1], node[2]))
    return out


def countdown_check(expression: str, numbers: list[int], target: int) -> bool:
    """True iff `expression` uses every number in `numbers` exactly once and equals `target`.

    Safe on hostile input: only digits, + - * / ( ), spaces and the aliases × ÷ − are accepted;
    text over 200 characters or nested deeper than 20 parentheses is rejected before any
    arithmetic; the numbers used are compared before evaluating (so no huge intermediates);
    evaluation is exact with Fraction.  Never raises: anything wrong gives False.
    """
    try:
        if not isinstance(expression, str) or len(expression) > _MAX_EXPR_CHARS:
            return False
        if isinstance(target, bool) or not isinstance(target, int):
            return False
        if not isinstance(numbers, (list, tuple)) or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in numbers):
            return False
        tree = _Parser(_tokenize(expression.translate(_OPERATOR_ALIASES))).parse()
        if sorted(_leaves(tree)) != sorted(numbers):
            return False
        return tree_value(tree) == target
    except (_Reject, ZeroDivisionError, RecursionError):
        return False


def extract_countdown_expression(completion: str) -> str | None:
    """The candidate expression in a model completion, or None if there is none.

    Takes the content of the last <answer>...</answer> if present, else the last non-empty
    line; of a multi-line answer block the last non-empty line.  A trailing "= <number>"
    (the model restating the target) is removed.  Uses only find/rfind and an anchored match
    on a short suffix, so a megabyte of text costs linear time.
    """
    if not isinstance(completion, str):
        return None
    text = completion
    close = completion.rfind("</answer>")
    if close != -1:
        open_ = completion.rfind("<answer>", 0, close)
        if open_ != -1:
            text = completion[open_ + len("<answer>"):close]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    candidate = lines[-1]
    eq = candidate.rfind("=")
    if eq != -1 and _is_number_text(candidate[eq + 1:].strip()):
        candidate = candidate[:eq].strip()
    return candidate or None


def _is_number_text(text: str) -> bool:
    """"48", "-3", "48.0": a plain ASCII number (what a restated target looks like)."""
    body = text[1:] if text.startswith("-") else text
    whole, _, frac = body.partition(".")
    return bool(whole) and all(c in _DIGITS for c in whole) and all(c in _DIGITS for c in frac)

