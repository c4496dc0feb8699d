"""The registry of seeded, reproducible generated task families with exactly known answers.

These are the cheap, verifiable tasks used for GRPO warm-up and for tests of the reward path:

    family      module         prompt                                           -> answer
    chain       arithmetic.py  "Compute 23 + 15 - 7."                           -> "31"
    world       world.py       "Compute 3 + 6 + 9 - 9." or "计算 3 + 6 + 9 - 9。"  -> "9"
    arithmetic  arithmetic.py  "Compute (12 + 7) * 3 - 5."                      -> "52"
    countdown   countdown.py   "Using the numbers [3, 7, 25, 2], ... make 48."  -> one valid expression
    linear      linear.py      "Solve for x: 3x + 5 = 2x - 7."                  -> "-12", "(2, -1/3)", ...
    word        word.py        templated GSM8K-style stories                    -> integer
    bilingual   bilingual.py   the same small problems in English and Chinese   -> integer
    general     general.py     simple queries and harmful requests              -> ideal response

Every family is `family(n, seed, **knobs) -> list[Example]`, seeded and prefix-stable (see
r1jax.tasks.common).  Nothing here evaluates text with eval/exec: countdown answers are checked
by a small restricted parser (`r1jax.tasks.countdown.countdown_check`).
"""

from __future__ import annotations

import inspect
from typing import Callable

from r1jax.tasks.arithmetic import arithmetic, arithmetic_chain
from r1jax.tasks.bilingual import bilingual
from r1jax.tasks.common import Example
from r1jax.tasks.countdown import countdown
from r1jax.tasks.general import general_prompts
from r1jax.tasks.linear import linear_equations
from r1jax.tasks.word import word_problems
from r1jax.tasks.world import world_problems

__all__ = ["FAMILIES", "generate", "task_pool"]

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


def task_pool(spec: str, n: int, seed: int) -> list:
    """`n` generated problems of each family in `spec`: 'world,general' or with knobs,
    'world:language=both:max_ops=2' (r1jax.tasks.generate); the knob n=... sets a family's own count."""
    pool = []
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, *knobs = item.split(":")
        pairs = [k.split("=") for k in knobs]
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f"task family spec {item!r}: knobs are written name=value, e.g. 'world:language=both'")
        knobs = {k: int(v) if v.lstrip("-").isdigit() else v for k, v in pairs}
        pool += generate(name, knobs.pop("n", n), seed, **knobs)
    return pool
