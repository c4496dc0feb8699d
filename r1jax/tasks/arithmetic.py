"""Integer arithmetic families: multi-step expressions and left-to-right chains.

    arithmetic        "Compute (12 + 7) * 3 - 5."   -> "52"
    arithmetic_chain  "Compute 23 + 15 - 7."        -> "31", with one worked step per operation

The chains are also the problems of the embedded world (r1jax.tasks.world).
"""

from __future__ import annotations

import random

from r1jax.tasks.common import Example, Tree, check_int, format_fraction, render_tree, task_metadata, tree_value

__all__ = ["arithmetic", "arithmetic_chain"]


# ---------------------------------------------------------------------------------------------
# Arithmetic expressions
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
        d = abs(int(tree_value(divisor)))
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
    check_int("n", n, 0)
    check_int("seed", seed, -(2**63))
    check_int("n_ops", n_ops, 1, 12)
    check_int("max_value", max_value, 2)
    rng = random.Random(seed)
    difficulty = {"n_ops": n_ops, "max_value": max_value}
    examples = []
    for i in range(n):
        tree = _arith_tree(rng, n_ops, max_value)
        value = tree_value(tree)
        assert value.denominator == 1, "arithmetic trees only divide exactly"
        expression = render_tree(tree)
        examples.append(Example(
            id=f"arith-{seed}-{i}",
            prompt=f"Compute {expression}.",
            answer=format_fraction(value),
            metadata=task_metadata("arithmetic", seed, i, difficulty, expression=expression),
        ))
    return examples


# ---------------------------------------------------------------------------------------------
# Arithmetic chains: the embedded world's R1-Zero family
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
    check_int("n", n, 0)
    check_int("min_ops", min_ops, 1)
    check_int("max_ops", max_ops, min_ops)
    check_int("max_value", max_value, 2)
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
                           metadata=task_metadata("chain", seed, i, {"min_ops": min_ops, "max_ops": max_ops,
                                                                     "max_value": max_value, "ops": ops},
                                                  steps=steps, n_ops=len(steps))))
    return out

