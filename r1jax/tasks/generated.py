"""Seeded, reproducible generated task families with exactly known answers.

These are the cheap, verifiable tasks used for GRPO warm-up and for tests of the reward path:

    arithmetic        "Compute (12 + 7) * 3 - 5."                       -> "52"
    countdown         "Using the numbers [3, 7, 25, 2], ... make 48."     -> one valid expression
    linear_equations  "Solve for x: 3x + 5 = 2x - 7."                   -> "-12", "(2, -1/3)", ...
    word_problems     templated GSM8K-style stories                      -> integer
    bilingual         the same small problems in English and Chinese     -> integer
    general           simple queries and harmful requests (general.py)   -> ideal response

Every family is `family(n, seed, **knobs) -> list[Example]`.  All randomness comes from one
`random.Random(seed)` consumed in order, so the same (seed, n, knobs) gives identical examples
and the first k examples of a larger n equal those of n=k.  Answers are computed exactly
(ints and `fractions.Fraction`), never with floats, and nothing here evaluates text with
eval/exec: countdown answers are checked by a small restricted parser (`countdown_check`).
"""

from __future__ import annotations

import dataclasses
import inspect
import random
import zlib
from fractions import Fraction
from typing import Callable, Union

from r1jax.tasks import Example

__all__ = [
    "FAMILIES",
    "arithmetic_chain",
    "arithmetic",
    "bilingual",
    "countdown",
    "countdown_check",
    "extract_countdown_expression",
    "format_fraction",
    "generate",
    "linear_equations",
    "word_problems",
]

# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------

# An expression tree is an int leaf or a tuple (op, left, right) with op in "+-*/".
Tree = Union[int, tuple]

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def format_fraction(value: Fraction | int) -> str:
    """Exact number as the answer string: "42", "-7/3" (Fraction keeps it reduced)."""
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _render(tree: Tree) -> str:
    """Infix text with only the parentheses needed to keep the tree's meaning.

    A child gets parentheses when it binds more loosely than its parent, and a right child also
    when it has the same precedence unless regrouping is harmless (a + (b + c), a * (b * c)),
    because "-" and "/" are not associative and mixed same-level ops read ambiguously.
    """
    if isinstance(tree, int):
        return str(tree)
    op, left, right = tree
    left_text, right_text = _render(left), _render(right)
    if not isinstance(left, int) and _PREC[left[0]] < _PREC[op]:
        left_text = f"({left_text})"
    if not isinstance(right, int):
        looser = _PREC[right[0]] < _PREC[op]
        same_level = _PREC[right[0]] == _PREC[op] and not (right[0] == op and op in "+*")
        if looser or same_level:
            right_text = f"({right_text})"
    return f"{left_text} {op} {right_text}"


def _value(tree: Tree) -> Fraction:
    """Exact value of a tree; raises ZeroDivisionError on division by zero."""
    if isinstance(tree, int):
        return Fraction(tree)
    op, left, right = tree
    a, b = _value(left), _value(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b


def _check_int(name: str, value, lo: int, hi: int | None = None) -> None:
    """Reject bad counts/knobs early with a message naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")


def _metadata(family: str, seed: int, index: int, difficulty: dict, language: str = "en", **extra) -> dict:
    """The metadata every generated Example carries, plus family-specific fields."""
    return {"family": family, "seed": seed, "index": index, "difficulty": dict(difficulty),
            "language": language, **extra}


# ---------------------------------------------------------------------------------------------
# (1) Arithmetic
# ---------------------------------------------------------------------------------------------

# Multiplication uses one small factor so results stay in a mental-arithmetic range.
_SMALL_FACTOR_MAX = 12


def _arith_tree(rng: random.Random, n_ops: int, max_value: int) -> Tree:
    """A random tree with exactly n_ops operators, integer leaves in [1, max_value].

    Every subtree has an integer value: a division's dividend is a leaf chosen as a multiple of
    the divisor subtree's value, so division is always exact.
    """
    if n_ops == 0:
        return rng.randint(1, max_value)
    op = rng.choice("+-*/")
    if op == "/":
        divisor = _arith_tree(rng, n_ops - 1, max_value)
        d = abs(int(_value(divisor)))
        if d != 0 and d <= max_value:
            hi = max_value // d
            return ("/", d * rng.randint(min(2, hi), hi), divisor)
        # The divisor is 0 or too large for a leaf dividend: add or subtract a leaf instead.
        return (rng.choice("+-"), divisor, rng.randint(1, max_value))
    if op == "*":
        sub = _arith_tree(rng, n_ops - 1, max_value)
        small = rng.randint(2, max(2, min(max_value, _SMALL_FACTOR_MAX)))
        return ("*", sub, small) if rng.random() < 0.5 else ("*", small, sub)
    n_left = rng.randint(0, n_ops - 1)
    return (op, _arith_tree(rng, n_left, max_value), _arith_tree(rng, n_ops - 1 - n_left, max_value))


def arithmetic(n: int, seed: int, *, n_ops: int = 2, max_value: int = 100) -> list[Example]:
    """Multi-step integer expressions with + - * / and parentheses: "Compute (12 + 7) * 3 - 5.".

    n_ops:     number of binary operators per expression (>= 1).
    max_value: largest leaf operand (>= 2); one factor of each product is at most 12.
    Division appears only when exact, so every answer is an integer (possibly negative).
    """
    _check_int("n", n, 0)
    _check_int("seed", seed, -(2**63))
    _check_int("n_ops", n_ops, 1, 12)
    _check_int("max_value", max_value, 2)
    rng = random.Random(seed)
    difficulty = {"n_ops": n_ops, "max_value": max_value}
    examples = []
    for i in range(n):
        tree = _arith_tree(rng, n_ops, max_value)
        value = _value(tree)
        assert value.denominator == 1, "arithmetic trees only divide exactly"
        expression = _render(tree)
        examples.append(Example(
            id=f"arith-{seed}-{i}",
            prompt=f"Compute {expression}.",
            answer=format_fraction(value),
            metadata=_metadata("arithmetic", seed, i, difficulty, expression=expression),
        ))
    return examples


# ---------------------------------------------------------------------------------------------
# (2) Countdown
# ---------------------------------------------------------------------------------------------

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
    _check_int("n", n, 0)
    _check_int("seed", seed, -(2**63))
    _check_int("n_numbers", n_numbers, 1, 10)
    _check_int("max_number", max_number, 1)
    _check_int("max_target", max_target, 1)
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
        solution = _render(tree)
        # Self-check the render/parse round trip: the reference must pass our own checker.
        if not countdown_check(solution, numbers, target):
            raise RuntimeError(f"countdown: generated solution {solution!r} fails countdown_check")
        examples.append(Example(
            id=f"countdown-{seed}-{i}",
            prompt=(f"Using the numbers {numbers}, each exactly once, with + - * / and parentheses, "
                    f"make {target}."),
            answer=solution,
            metadata=_metadata("countdown", seed, i, difficulty, numbers=numbers, target=target),
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
        return _value(tree) == target
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


# ---------------------------------------------------------------------------------------------
# (3) Linear equations
# ---------------------------------------------------------------------------------------------

_VARIABLES = ("x", "y", "z")


def _side(coefs: list[int], names: tuple[str, ...] | list[str], const: int) -> str:
    """One side of an equation, e.g. "3x - y + 5"; zero terms omitted, "0" if nothing is left."""
    parts = []
    for coef, name in zip(coefs, names):
        if coef:
            parts.append(("-" if coef < 0 else "+", ("" if abs(coef) == 1 else str(abs(coef))) + name))
    if const or not parts:
        parts.append(("-" if const < 0 else "+", str(abs(const))))
    text = ("-" if parts[0][0] == "-" else "") + parts[0][1]
    for sign, term in parts[1:]:
        text += f" {sign} {term}"
    return text


def _solve(matrix: list[list[int]], rhs: list[int]) -> list[Fraction] | None:
    """Exact Gaussian elimination; None when the matrix is singular (determinant 0)."""
    size = len(matrix)
    rows = [[Fraction(v) for v in row] + [Fraction(b)] for row, b in zip(matrix, rhs)]
    for col in range(size):
        pivot = next((r for r in range(col, size) if rows[r][col] != 0), None)
        if pivot is None:
            return None
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(size):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col] / rows[col][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col])]
    return [rows[i][size] / rows[i][i] for i in range(size)]


def _nonzero(rng: random.Random, bound: int) -> int:
    value = 0
    while value == 0:
        value = rng.randint(-bound, bound)
    return value


def linear_equations(n: int, seed: int, *, n_vars: int = 1, max_coef: int = 9) -> list[Example]:
    """Linear equations with a unique rational solution.

    n_vars=1: "Solve for x: 3x + 5 = 2x - 7." (answer "-12", or a reduced fraction "-7/3");
              metadata lhs=[a, b], rhs=[c, d] meaning a*x + b = c*x + d.
    n_vars=2/3: a system "Solve the system of equations: ..." with answer "(x, y)" / "(x, y, z)".
    Every coefficient (and, for one variable, constant) is in [-max_coef, max_coef]; a system's
    right-hand sides follow from its solution.  Every variant stores metadata `coefficients`
    (matrix A), `constants` (b) of the normal form A v = b, and `variables`.
    """
    _check_int("n", n, 0)
    _check_int("seed", seed, -(2**63))
    _check_int("n_vars", n_vars, 1, 3)
    _check_int("max_coef", max_coef, 1)
    rng = random.Random(seed)
    difficulty = {"n_vars": n_vars, "max_coef": max_coef}
    names = _VARIABLES[:n_vars]
    examples = []
    for i in range(n):
        if n_vars == 1:
            a = _nonzero(rng, max_coef)
            c = a
            while c == a:  # a != c keeps x in the equation, so the solution is unique
                c = rng.randint(-max_coef, max_coef)
            b, d = rng.randint(-max_coef, max_coef), rng.randint(-max_coef, max_coef)
            solution = [Fraction(d - b, a - c)]
            prompt = f"Solve for x: {_side([a], names, b)} = {_side([c], names, d)}."
            answer = format_fraction(solution[0])
            extra = {"lhs": [a, b], "rhs": [c, d], "coefficients": [[a - c]], "constants": [d - b]}
        else:
            matrix, rhs, solution = _random_system(rng, n_vars, max_coef)
            equations = "\n".join(f"{_side(row, names, 0)} = {b}" for row, b in zip(matrix, rhs))
            prompt = (f"Solve the system of equations:\n{equations}\n"
                      f"Give the answer as ({', '.join(names)}).")
            answer = "(" + ", ".join(format_fraction(v) for v in solution) + ")"
            extra = {"coefficients": matrix, "constants": rhs}
        examples.append(Example(
            id=f"linear-{seed}-{i}",
            prompt=prompt,
            answer=answer,
            metadata=_metadata("linear", seed, i, difficulty, variables=list(names), **extra),
        ))
    return examples


def _random_system(rng: random.Random, size: int, max_coef: int):
    """(matrix, rhs, solution): coefficients in [-max_coef, max_coef], det != 0, integer rhs.

    The solution is drawn first (integers in [-max_coef, max_coef], sometimes over a common
    denominator 2 or 3 so that some answers are fractions) and each row is redrawn until it
    has at least two non-zero coefficients (no give-away "9y = 3" rows) and an integer
    right-hand side.  The system is then solved exactly again, which both checks the
    determinant and makes the stored answer the system's actual solution.
    """
    while True:
        denominator = rng.choice((1, 1, 1, 2, 3))
        chosen = [Fraction(rng.randint(-max_coef, max_coef), denominator) for _ in range(size)]
        matrix, rhs = [], []
        for _ in range(size):
            for _ in range(200):
                row = [rng.randint(-max_coef, max_coef) for _ in range(size)]
                value = sum(coef * v for coef, v in zip(row, chosen))
                if sum(1 for coef in row if coef) >= 2 and value.denominator == 1:
                    break
            else:
                break  # e.g. max_coef=1 with thirds: draw a new solution
            matrix.append(row)
            rhs.append(int(value))
        if len(matrix) < size:
            continue
        solution = _solve(matrix, rhs)
        if solution is not None:
            return matrix, rhs, solution


# ---------------------------------------------------------------------------------------------
# (4) Word problems (English, GSM8K style)
# ---------------------------------------------------------------------------------------------

_NAMES = ["Alice", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal",
          "Keiko", "Liam", "Maya", "Noah", "Priya", "Omar"]
_OBJECTS = [("apple", "apples"), ("marble", "marbles"), ("sticker", "stickers"), ("pencil", "pencils"),
            ("cookie", "cookies"), ("book", "books"), ("shell", "shells"), ("card", "cards")]
_GOODS = [("notebook", "notebooks"), ("pen", "pens"), ("sandwich", "sandwiches"), ("ticket", "tickets"),
          ("toy car", "toy cars"), ("plant", "plants"), ("T-shirt", "T-shirts"), ("mug", "mugs")]
_SPEND_ON = ["a jacket", "books", "groceries", "a concert ticket", "a gift", "lunch", "art supplies"]
_VEHICLES = [("train", "km", 60, 120), ("car", "km", 40, 90), ("cyclist", "miles", 8, 20),
             ("bus", "miles", 30, 60), ("runner", "km", 6, 12)]
_CONTAINERS = [("truck", "trucks"), ("crate", "crates"), ("box", "boxes"), ("bag", "bags")]

# Each template: (rng, steps) -> (prompt, answer, solution expression over the prompt's numbers).
WordTemplate = Callable[[random.Random, int], tuple[str, int, str]]


def _word_collection(rng: random.Random, steps: int) -> tuple[str, int, str]:
    """Start with some objects, then `steps` events that add or remove some."""
    name, other = rng.sample(_NAMES, 2)
    _, plural = rng.choice(_OBJECTS)
    count = rng.randint(10, 50)
    sentences = [f"{name} has {count} {plural}."]
    expr = str(count)
    for _ in range(steps):
        kind = rng.choice(("find", "give", "packs"))
        if kind == "give" and count > 1:
            k = rng.randint(1, count - 1)
            sentences.append(f"{name} gives {k} {plural} to {other}.")
            count -= k
            expr += f" - {k}"
        elif kind == "packs":
            packs, per = rng.randint(2, 5), rng.randint(2, 10)
            sentences.append(f"Then {name} buys {packs} packs with {per} {plural} in each pack.")
            count += packs * per
            expr += f" + {packs} * {per}"
        else:
            k = rng.randint(1, 20)
            sentences.append(f"{name} finds {k} more {plural}.")
            count += k
            expr += f" + {k}"
    sentences.append(f"How many {plural} does {name} have now?")
    return " ".join(sentences), count, expr


def _word_shopping(rng: random.Random, steps: int) -> tuple[str, int, str]:
    """Buy `steps` kinds of goods at unit prices; total cost."""
    name = rng.choice(_NAMES)
    goods = rng.sample(_GOODS, steps)
    purchases = [(rng.randint(2, 9), rng.randint(1, 20), g) for g in goods]
    phrases = [f"{q} {g[1]} for ${p} each" for q, p, g in purchases]
    listing = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    prompt = f"{name} buys {listing}. How many dollars does {name} spend in total?"
    total = sum(q * p for q, p, _ in purchases)
    return prompt, total, " + ".join(f"{q} * {p}" for q, p, _ in purchases)


def _word_spending(rng: random.Random, steps: int) -> tuple[str, int, str]:
    """Money left after spending fractions of it and fixed amounts."""
    name = rng.choice(_NAMES)
    things = rng.sample(_SPEND_ON, steps)
    money = rng.randint(2, 10) * 60  # divisible by 2, 3, 4, 5 so the first fraction is exact
    sentences = [f"{name} has ${money}."]
    expr = str(money)
    for j, thing in enumerate(things):
        then = "" if j == 0 else "Then "
        divisors = [d for d in (2, 3, 4, 5) if money % d == 0]
        if divisors and rng.random() < 0.5:
            d = rng.choice(divisors)
            what = "the money" if j == 0 else "the remaining money"
            sentences.append(f"{then}{name} spends 1/{d} of {what} on {thing}.")
            expr = f"({expr}) - ({expr}) / {d}"
            money -= money // d
        else:
            # At most half of what is left, so money stays positive through every stage.
            k = rng.randint(1, max(1, money // 2))
            sentences.append(f"{then}{name} spends ${k} on {thing}.")
            expr = f"({expr}) - {k}"
            money -= k
    sentences.append(f"How many dollars does {name} have left?")
    return " ".join(sentences), money, expr


def _word_ages(rng: random.Random, steps: int) -> tuple[str, int, str]:
    """A chain of age relations from the youngest person to the one asked about."""
    people = rng.sample(_NAMES, steps + 1)
    age = rng.randint(3, 15)
    expr = str(age)
    facts = [f"{people[0]} is {age} years old."]
    for older, younger in zip(people[1:], people[:-1]):
        kind = rng.choice(("older", "times", "younger"))
        if kind == "times" and age * 3 <= 90:
            k = rng.randint(2, 3)
            facts.append(f"{older} is {k} times as old as {younger}.")
            age *= k
            expr = f"({expr}) * {k}"
        elif kind == "younger" and age > 2:
            d = rng.randint(1, age - 1)
            facts.append(f"{older} is {d} years younger than {younger}.")
            age -= d
            expr = f"({expr}) - {d}"
        else:
            d = rng.randint(1, 10)
            facts.append(f"{older} is {d} years older than {younger}.")
            age += d
            expr = f"({expr}) + {d}"
    facts.reverse()  # state the relations top-down, as such problems are usually written
    return " ".join(facts) + f" How old is {people[-1]}?", age, expr


def _word_sharing(rng: random.Random, steps: int) -> tuple[str, int, str]:
    """Objects shared equally among friends, possibly after buying boxes and keeping some."""
    name = rng.choice(_NAMES)
    single, plural = rng.choice(_OBJECTS)
    if steps == 1:
        friends = rng.randint(2, 8)
        each = rng.randint(2, 15)
        total = each * friends
        prompt = (f"{name} has {total} {plural} and shares them equally among {friends} friends. "
                  f"How many {plural} does each friend get?")
        return prompt, each, f"{total} / {friends}"
    boxes, per_box = rng.randint(2, 9), rng.randint(3, 12)
    count = boxes * per_box
    expr = f"{boxes} * {per_box}"
    sentences = [f"{name} buys {boxes} boxes of {plural} with {per_box} {plural} in each box."]
    for _ in range(steps - 2):  # extra steps: more objects arrive before sharing
        k = rng.randint(1, 15)
        sentences.append(f"A neighbour gives {name} {k} more {plural}.")
        count += k
        expr += f" + {k}"
    # keep = count % friends < friends and friends <= count // 2, so each friend gets >= 1.
    friends = rng.randint(2, min(8, count // 2))
    keep = count % friends
    share = count - keep
    if keep:
        kept = single if keep == 1 else plural
        sentences.append(f"{name} keeps {keep} {kept} and shares the rest equally among {friends} friends.")
        expr = f"({expr} - {keep}) / {friends}"
    else:
        sentences.append(f"{name} shares all of them equally among {friends} friends.")
        expr = f"({expr}) / {friends}"
    sentences.append(f"How many {plural} does each friend get?")
    return " ".join(sentences), share // friends, expr


def _word_rates(rng: random.Random, steps: int) -> tuple[str, int, str]:
    """Distance from speed x time over `steps` legs of a trip."""
    vehicle, unit, lo, hi = rng.choice(_VEHICLES)
    legs = [(rng.randint(lo, hi), rng.randint(1, 5)) for _ in range(steps)]
    sentences = []
    for j, (speed, hours) in enumerate(legs):
        subject = f"A {vehicle}" if j == 0 else f"Then the {vehicle}"
        hour_word = "hour" if hours == 1 else "hours"
        sentences.append(f"{subject} travels at {speed} {unit} per hour for {hours} {hour_word}.")
    sentences.append(f"How many {unit} does the {vehicle} travel in total?")
    total = sum(s * h for s, h in legs)
    return " ".join(sentences), total, " + ".join(f"{s} * {h}" for s, h in legs)


def _word_groups(rng: random.Random, steps: int) -> tuple[str, int, str]:
    """Nested groups (trucks of crates of boxes ...): a product of `steps` + 1 factors."""
    name = rng.choice(_NAMES)
    _, plural = rng.choice(_OBJECTS)
    containers = _CONTAINERS[len(_CONTAINERS) - steps:]
    factors = [rng.randint(2, 9) for _ in range(steps + 1)]
    sentences = [f"{name} has {factors[0]} {containers[0][1]}."]
    inner = [c[1] for c in containers[1:]] + [plural]
    for (outer_single, _), what, k in zip(containers, inner, factors[1:]):
        sentences.append(f"Each {outer_single} holds {k} {what}.")
    sentences.append(f"How many {plural} does {name} have in total?")
    total = 1
    for k in factors:
        total *= k
    return " ".join(sentences), total, " * ".join(map(str, factors))


_WORD_TEMPLATES: dict[str, WordTemplate] = {
    "collection": _word_collection,
    "shopping": _word_shopping,
    "spending": _word_spending,
    "ages": _word_ages,
    "sharing": _word_sharing,
    "rates": _word_rates,
    "groups": _word_groups,
}


def word_problems(n: int, seed: int, *, steps: int = 2) -> list[Example]:
    """Templated GSM8K-style word problems with integer answers.

    steps (1-4) is the number of stages in each story (events, purchases, relations, legs of
    a trip, nesting levels), so larger values need more arithmetic steps.  Templates: collection
    (gain/lose objects), shopping (total cost), spending (money left after fractions/amounts),
    ages (chain of relations), sharing (equal shares), rates (distance), groups (nested counts).
    metadata["solution"] is an arithmetic expression over the prompt's numbers giving the answer.
    """
    _check_int("n", n, 0)
    _check_int("seed", seed, -(2**63))
    _check_int("steps", steps, 1, 4)
    rng = random.Random(seed)
    names = sorted(_WORD_TEMPLATES)
    examples = []
    for i in range(n):
        template = rng.choice(names)
        prompt, answer, solution = _WORD_TEMPLATES[template](rng, steps)
        examples.append(Example(
            id=f"word-{seed}-{i}",
            prompt=prompt,
            answer=str(answer),
            metadata=_metadata("word", seed, i, {"steps": steps}, template=template, solution=solution),
        ))
    return examples


# ---------------------------------------------------------------------------------------------
# (5) Bilingual (English / Chinese) problems
# ---------------------------------------------------------------------------------------------

# (English name, Chinese name, he/she, him/her, his/her, 他/她)
_BI_NAMES = [
    ("Xiaoming", "小明", "he", "him", "his", "他"),
    ("Xiaohong", "小红", "she", "her", "her", "她"),
    ("Lily", "莉莉", "she", "her", "her", "她"),
    ("Tom", "汤姆", "he", "him", "his", "他"),
    ("Li Lei", "李雷", "he", "him", "his", "他"),
    ("Han Meimei", "韩梅梅", "she", "her", "her", "她"),
    ("Wang Fang", "王芳", "she", "her", "her", "她"),
    ("Zhang Wei", "张伟", "he", "him", "his", "他"),
]
# (English singular, English plural, Chinese noun, Chinese measure word)
_BI_OBJECTS = [
    ("apple", "apples", "苹果", "个"),
    ("pencil", "pencils", "铅笔", "支"),
    ("book", "books", "书", "本"),
    ("candy", "candies", "糖", "块"),
    ("orange", "oranges", "橘子", "个"),
    ("flower", "flowers", "花", "朵"),
    ("stamp", "stamps", "邮票", "张"),
    ("marble", "marbles", "弹珠", "颗"),
]


def _bi_add_sub(rng: random.Random) -> tuple[str, str, int, str]:
    en_name, zh_name, he, _, _, ta = rng.choice(_BI_NAMES)
    _, plural, noun, m = rng.choice(_BI_OBJECTS)
    a, b = rng.randint(5, 30), rng.randint(1, 20)
    c = rng.randint(1, a + b - 1)
    en = (f"{en_name} has {a} {plural}. {he.capitalize()} buys {b} more, then gives {c} to a friend. "
          f"How many {plural} does {he} have now?")
    zh = f"{zh_name}有 {a} {m}{noun}，又买了 {b} {m}，然后送给朋友 {c} {m}。{ta}现在有多少{m}{noun}？"
    return en, zh, a + b - c, f"{a} + {b} - {c}"


def _bi_change(rng: random.Random) -> tuple[str, str, int, str]:
    en_name, zh_name, he, _, _, ta = rng.choice(_BI_NAMES)
    _, plural, noun, m = rng.choice(_BI_OBJECTS)
    q, p = rng.randint(2, 9), rng.randint(1, 9)
    paid = 50 if q * p < 50 else 100
    en = (f"{en_name} buys {q} {plural} at {p} yuan each and pays with a {paid}-yuan note. "
          f"How much change does {he} get, in yuan?")
    zh = f"{zh_name}买了 {q} {m}{noun}，每{m} {p} 元，付了 {paid} 元。{ta}应找回多少元？"
    return en, zh, paid - q * p, f"{paid} - {q} * {p}"


def _bi_sharing(rng: random.Random) -> tuple[str, str, int, str]:
    en_name, zh_name, he, _, _, ta = rng.choice(_BI_NAMES)
    _, plural, noun, m = rng.choice(_BI_OBJECTS)
    friends, each = rng.randint(2, 9), rng.randint(2, 12)
    total = friends * each
    en = (f"{en_name} has {total} {plural} and shares them equally among {friends} friends. "
          f"How many {plural} does each friend get?")
    zh = f"{zh_name}有 {total} {m}{noun}，平均分给 {friends} 个朋友。每个朋友分到多少{m}{noun}？"
    return en, zh, each, f"{total} / {friends}"


def _bi_groups(rng: random.Random) -> tuple[str, str, int, str]:
    _, plural, noun, m = rng.choice(_BI_OBJECTS)
    boxes, per = rng.randint(2, 9), rng.randint(2, 12)
    en = f"There are {boxes} boxes with {per} {plural} in each box. How many {plural} are there in total?"
    zh = f"有 {boxes} 盒{noun}，每盒 {per} {m}。一共有多少{m}{noun}？"
    return en, zh, boxes * per, f"{boxes} * {per}"


def _bi_distance(rng: random.Random) -> tuple[str, str, int, str]:
    speed, hours = rng.randint(4, 12) * 10, rng.randint(2, 6)
    en = f"A car travels {speed} kilometers per hour. How many kilometers does it travel in {hours} hours?"
    zh = f"一辆汽车每小时行驶 {speed} 千米。{hours} 小时行驶多少千米？"
    return en, zh, speed * hours, f"{speed} * {hours}"


def _bi_ages(rng: random.Random) -> tuple[str, str, int, str]:
    en_name, zh_name, he, him, his, ta = rng.choice(_BI_NAMES)
    age, k = rng.randint(5, 12), rng.randint(3, 5)
    en = (f"{en_name} is {age} years old. {his.capitalize()} father is {k} times as old as {him}. "
          f"How old is {his} father?")
    zh = f"{zh_name}今年 {age} 岁，{ta}爸爸的年龄是{ta}的 {k} 倍。{ta}爸爸今年多少岁？"
    return en, zh, age * k, f"{age} * {k}"


_BI_TEMPLATES: dict[str, Callable[[random.Random], tuple[str, str, int, str]]] = {
    "add_sub": _bi_add_sub,
    "change": _bi_change,
    "sharing": _bi_sharing,
    "groups": _bi_groups,
    "distance": _bi_distance,
    "ages": _bi_ages,
}
_LANGUAGES = ("en", "zh", "both")


def bilingual(n: int, seed: int, *, language: str = "both") -> list[Example]:
    """Small problems posed in English and/or Chinese (numbers as Arabic digits in both).

    n is the number of underlying problems.  language="en" or "zh" gives n Examples in that
    language; "both" gives 2n, an English then a Chinese Example per problem, sharing
    metadata["pair_id"] and the answer.  The problems do not depend on `language`, so the
    English Examples of "en" and of "both" are identical (same ids too: "bilingual-<seed>-<i>-en").
    """
    _check_int("n", n, 0)
    _check_int("seed", seed, -(2**63))
    if language not in _LANGUAGES:
        raise ValueError(f"language must be one of {_LANGUAGES}, got {language!r}")
    rng = random.Random(seed)
    names = sorted(_BI_TEMPLATES)
    wanted = ("en", "zh") if language == "both" else (language,)
    examples = []
    for i in range(n):
        template = rng.choice(names)
        en, zh, answer, solution = _BI_TEMPLATES[template](rng)
        pair_id = f"bilingual-{seed}-{i}"
        for lang in wanted:
            examples.append(Example(
                id=f"{pair_id}-{lang}",
                prompt=en if lang == "en" else zh,
                answer=str(answer),
                # No difficulty knobs: `language` only picks which renderings are returned, so
                # it is not recorded and the Examples are identical across language modes.
                metadata=_metadata("bilingual", seed, i, {}, language=lang,
                                   pair_id=pair_id, template=template, solution=solution),
            ))
    return examples


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# (6) Arithmetic chains: the embedded world's R1-Zero family
# ---------------------------------------------------------------------------------------------

def arithmetic_chain(n: int, seed: int, *, min_ops: int = 1, max_ops: int = 3, max_value: int = 50,
                     ops: str = "+-+-*") -> list[Example]:
    """Left-to-right chains "Compute 23 + 15 - 7." whose worked solution is one line per op.

    Difficulty is the number of operations (uniform in [min_ops, max_ops]); each operation is
    drawn from `ops` (repeat a symbol to weight it); multiplication uses a factor up to 9.
    metadata['steps'] holds (left, op, right, result) per operation, so a corpus can write
    correct, slipped or re-checked solutions of the same problem.
    """
    if not ops or set(ops) - set("+-*"):
        raise ValueError(f"ops must be a non-empty string of + - *, got {ops!r}")
    _check_int("n", n, 0)
    _check_int("min_ops", min_ops, 1)
    _check_int("max_ops", max_ops, min_ops)
    _check_int("max_value", max_value, 2)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        value = rng.randint(1, max_value)
        text, steps = str(value), []
        for _ in range(rng.randint(min_ops, max_ops)):
            op = rng.choice(ops)
            right = rng.randint(2, 9) if op == "*" else rng.randint(1, max_value)
            result = value + right if op == "+" else value - right if op == "-" else value * right
            # a product binds tighter than the chain, so multiplying the running value needs parentheses
            text = f"({text}) * {right}" if op == "*" and steps else f"{text} {op} {right}"
            steps.append((value, op, right, result))
            value = result
        out.append(Example(id=f"chain-{seed}-{i}", prompt=f"Compute {text}.", answer=str(value),
                           metadata=_metadata("chain", seed, i, {"min_ops": min_ops, "max_ops": max_ops,
                                                                 "max_value": max_value, "ops": ops},
                                              steps=steps, n_ops=len(steps))))
    return out


# One problem in this many belongs to the world's test split: held out of every corpus and RL
# pool by construction, whatever their sizes and seeds (a hash of the problem, not of the draw).
WORLD_TEST_SHARE = 6


def world_split(expression: str) -> str:
    """'test' or 'train' for a world problem's expression ("3 + 6 + 9 - 9")."""
    return "test" if zlib.crc32(expression.encode()) % WORLD_TEST_SHARE == 0 else "train"


def world_problems(n: int, seed: int, *, min_ops: int = 1, max_ops: int = 3, language: str = "en",
                   split: str = "train") -> list[Example]:
    """The embedded CPU world's problems (r1jax.pipeline): chains of additions and subtractions
    of one-digit numbers ("Compute 3 + 6 + 9 - 9."), which a 1M-parameter model learns to work
    out in minutes.

    language="zh" poses them in Chinese ("计算 3 + 6 + 9 - 9。"); "both" draws the language of
    each problem (seeded), for the R1 stages' language-consistency reward. The problems
    themselves do not depend on `language`; metadata['language'] names the target language.

    split="test" draws from the one problem in WORLD_TEST_SHARE that "train" (every corpus and
    RL pool) never holds (`world_split`), at the same mix of difficulties.
    """
    if language not in _LANGUAGES:
        raise ValueError(f"language must be one of {_LANGUAGES}, got {language!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    rng = random.Random(f"world-language-{seed}")
    chains, drawn = [], n
    while len(chains) < n:  # draw more until n problems of the split (a longer draw extends a shorter one)
        drawn = 2 * drawn + 16
        chains = [e for e in arithmetic_chain(drawn, seed, min_ops=min_ops, max_ops=max_ops, max_value=9, ops="+-")
                  if world_split(e.prompt.removeprefix("Compute ").removesuffix(".")) == split][:n]
    out = []
    for e in chains:
        lang = rng.choice(("en", "zh")) if language == "both" else language
        prompt = e.prompt if lang == "en" else "计算 " + e.prompt.removeprefix("Compute ").removesuffix(".") + "。"
        out.append(dataclasses.replace(
            e, id="world" + e.id.removeprefix("chain") + ("-zh" if lang == "zh" else ""), prompt=prompt,
            metadata={**e.metadata, "family": "world", "language": lang}))
    return out


# general.py builds on this module's helpers and vocabulary, so it is imported only once they
# are defined (a top-of-file import would be circular).
from r1jax.tasks.general import general_prompts  # noqa: E402

FAMILIES: dict[str, Callable[..., list[Example]]] = {
    "chain": arithmetic_chain,
    "world": world_problems,
    "arithmetic": arithmetic,
    "countdown": countdown,
    "linear": linear_equations,
    "word": word_problems,
    "bilingual": bilingual,
    "general": general_prompts,
}


def generate(family: str, n: int, seed: int, **knobs) -> list[Example]:
    """`FAMILIES[family](n, seed, **knobs)` with clear errors for a misspelt family or knob."""
    if family not in FAMILIES:
        raise ValueError(f"unknown task family {family!r}; valid families: {', '.join(FAMILIES)}")
    fn = FAMILIES[family]
    valid = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(knobs) - set(valid))
    if unknown:
        raise ValueError(f"unknown knob(s) {', '.join(unknown)} for task family {family!r}; "
                         f"valid knobs: {', '.join(valid) or '(none)'}")
    return fn(n, seed, **knobs)
