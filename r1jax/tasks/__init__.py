"""Task data for RL and evaluation: seeded generated families and real benchmark loaders.

Everything here is plain Python (no jax), so data preparation, reward workers and tests can
import it cheaply.  Every task is an `Example`: a prompt plus a reference answer string that
the verifier (``r1jax.rewards``) compares against a model's extracted answer.

Modules (imports point one way: common <- families <- registry <- this package):

    common      Example and the helpers the generated families share
    arithmetic  arithmetic, arithmetic_chain        countdown  countdown and its answer checker
    linear      linear_equations                    word       word_problems
    bilingual   bilingual (and its vocabulary)      general    general_prompts, preference_pairs
    world       the embedded world's problems, test split and pretraining corpus
    registry    FAMILIES, generate, task_pool        benchmarks real benchmark loaders
    sft         SFT JSONL files
"""

from __future__ import annotations

from r1jax.tasks.arithmetic import arithmetic, arithmetic_chain
from r1jax.tasks.benchmarks import BENCHMARKS, default_data_dir, load_benchmark
from r1jax.tasks.bilingual import bilingual
from r1jax.tasks.common import Example, format_fraction
from r1jax.tasks.countdown import countdown, countdown_check, extract_countdown_expression
from r1jax.tasks.general import general_prompts, preference_pairs
from r1jax.tasks.linear import linear_equations
from r1jax.tasks.registry import FAMILIES, generate, task_pool
from r1jax.tasks.word import word_problems

__all__ = [
    "BENCHMARKS",
    "FAMILIES",
    "Example",
    "arithmetic",
    "arithmetic_chain",
    "bilingual",
    "countdown",
    "countdown_check",
    "default_data_dir",
    "extract_countdown_expression",
    "format_fraction",
    "general_prompts",
    "generate",
    "linear_equations",
    "load_benchmark",
    "preference_pairs",
    "task_pool",
    "word_problems",
]
