"""Task data for RL and evaluation: seeded generated families and real benchmark loaders.

Everything here is plain Python (no jax), so data preparation, reward workers and tests can
import it cheaply.  Every task is an `Example`: a prompt plus a reference answer string that
the verifier (``r1jax.rewards``) compares against a model's extracted answer.
"""

from __future__ import annotations

import dataclasses


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


# The submodules import `Example` from this package, so they are imported after it is defined.
from r1jax.tasks.benchmarks import BENCHMARKS, default_data_dir, load_benchmark  # noqa: E402
from r1jax.tasks.generated import (  # noqa: E402
    arithmetic_chain,
    FAMILIES,
    arithmetic,
    bilingual,
    countdown,
    countdown_check,
    extract_countdown_expression,
    format_fraction,
    generate,
    linear_equations,
    word_problems,
)
from r1jax.tasks.general import general_prompts, preference_pairs  # noqa: E402

__all__ = [
    "Example",
    "BENCHMARKS",
    "default_data_dir",
    "load_benchmark",
    "FAMILIES",
    "arithmetic_chain",
    "arithmetic",
    "bilingual",
    "countdown",
    "countdown_check",
    "extract_countdown_expression",
    "format_fraction",
    "general_prompts",
    "generate",
    "linear_equations",
    "preference_pairs",
    "word_problems",
]
