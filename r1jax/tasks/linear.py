"""The linear equations family: one equation in x, or a 2x2 / 3x3 system, solved exactly.

    linear_equations  "Solve for x: 3x + 5 = 2x - 7."   -> "-12", "(2, -1/3)", ...
"""

from __future__ import annotations

import random
from fractions import Fraction

from r1jax.tasks.common import Example, check_int, format_fraction, task_metadata

__all__ = ["linear_equations"]

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
    check_int("n", n, 0)
    check_int("seed", seed, -(2**63))
    check_int("n_vars", n_vars, 1, 3)
    check_int("max_coef", max_coef, 1)
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
            metadata=task_metadata("linear", seed, i, difficulty, variables=list(names), **extra),
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
