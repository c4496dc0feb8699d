"""Rule-based rewards and their per-stage combination. Plain Python: never imports jax.

Each named reward maps (completions, examples) to one score per completion. A stage's
`RewardConfig` names the rewards it sums and their weights; every named reward is returned
separately as well so that it can be logged on its own.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from r1jax.rewards import format as fmt
from r1jax.rewards import math as math_reward
from r1jax.rewards.code import code_rewards, problem_from_example
from r1jax.rewards.language import language_consistency
from r1jax.rewards.reward_model import RewardModel, harmlessness, helpfulness
from r1jax.tasks import Example, countdown_check, extract_countdown_expression

__all__ = ["RewardConfig", "compute_rewards", "accuracy", "RULE_REWARDS"]


def accuracy(completions: Sequence[str], examples: Sequence[Example], timeout: float = 0.5) -> np.ndarray:
    """1/0 by the example's own checker: countdown by its expression rules, code by calling its
    function on the cases in the sandbox, everything else by math answer equivalence (extraction mode from
    `metadata['answer_mode']`, default auto)."""
    out = np.zeros(len(completions), np.float32)
    math_idx, code_idx = [], []
    for i, (c, ex) in enumerate(zip(completions, examples)):
        if ex.metadata.get("family") == "code":
            code_idx.append(i)
        elif ex.metadata.get("family") == "countdown":
            expr = extract_countdown_expression(c)
            out[i] = float(expr is not None and countdown_check(expr, ex.metadata["numbers"], ex.metadata["target"]))
        else:
            math_idx.append(i)
    if code_idx:
        problems = [problem_from_example(examples[i]) for i in code_idx]
        out[code_idx] = code_rewards([completions[i] for i in code_idx], problems)
    by_mode: dict[str, list[int]] = {}
    for i in math_idx:
        by_mode.setdefault(examples[i].metadata.get("answer_mode", "auto"), []).append(i)
    for mode, idx in by_mode.items():
        ok = math_reward.grade_batch([completions[i] for i in idx], [examples[i].answer for i in idx], mode=mode,
                                     timeout=timeout)
        out[idx] = np.asarray(ok, np.float32)
    return out


RULE_REWARDS: dict[str, Callable[[Sequence[str], Sequence[Example]], np.ndarray]] = {
    "accuracy": accuracy,
    "format": lambda cs, exs: np.array([fmt.r1_zero_format(c) for c in cs], np.float32),
    "format_r1": lambda cs, exs: np.array([fmt.r1_format(c) for c in cs], np.float32),
    "language": lambda cs, exs: np.array([language_consistency(c, ex.metadata.get("language", "en"))
                                          for c, ex in zip(cs, exs)], np.float32),
}
_MODEL_REWARDS = {"helpfulness": helpfulness, "harmlessness": harmlessness}


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """Named rewards and weights; the total is their weighted sum. The R1-Zero default is the
    paper's: accuracy + format with the same weight. R1's reasoning RL adds ('language', 1.0)."""

    weights: tuple[tuple[str, float], ...] = (("accuracy", 1.0), ("format", 1.0))

    def __post_init__(self):
        valid = set(RULE_REWARDS) | set(_MODEL_REWARDS)
        unknown = [name for name, _ in self.weights if name not in valid]
        if unknown:
            raise ValueError(f"RewardConfig.weights: unknown reward(s) {unknown}; valid: {sorted(valid)}")


def compute_rewards(completions: Sequence[str], examples: Sequence[Example], cfg: RewardConfig,
                    reward_models: dict[str, RewardModel] | None = None) -> dict[str, np.ndarray]:
    """{name: scores [N]} for every configured reward, plus 'total' (the weighted sum). Each
    example gets only the rewards of its kind: the rule rewards (`RULE_REWARDS`) for reasoning
    prompts, the reward models for general ones (family 'general'); the others are 0 for it."""
    if len(completions) != len(examples):
        raise ValueError(f"{len(completions)} completions but {len(examples)} examples")
    # R1's RL for all scenarios mixes prompt kinds (sec. 2.3.4): reasoning prompts are scored by
    # rules (accuracy, format, language consistency), general prompts (family 'general') by
    # reward models only: helpfulness for helpful requests, harmlessness for harmful ones. The
    # format and language rewards score a reasoning part, which the paper leaves out of its
    # answers to simple queries ("no CoT"): applied to general prompts they would reward adding
    # one. A reward that does not apply to an example is 0; every group holds one prompt, so that
    # constant never changes an advantage.
    general = np.array([ex.metadata.get("family") == "general" for ex in examples])
    kind = np.array([ex.metadata.get("kind", "") for ex in examples])
    applies = {**{name: ~general for name in RULE_REWARDS}, "helpfulness": general & (kind == "helpful"),
               "harmlessness": general & (kind == "harmful")}
    missing = [n for n, _ in cfg.weights if n in _MODEL_REWARDS and n not in (reward_models or {})]
    if missing:
        raise ValueError(f"reward {missing[0]!r} needs a reward model: pass reward_models={{{missing[0]!r}: model}}")
    out = {}
    for name, _ in cfg.weights:
        idx = np.flatnonzero(applies.get(name, np.ones(len(examples), bool)))
        out[name] = np.zeros(len(examples), np.float32)
        if not len(idx):
            continue
        sub_c, sub_e = [completions[i] for i in idx], [examples[i] for i in idx]
        if name in RULE_REWARDS:
            out[name][idx] = RULE_REWARDS[name](sub_c, sub_e)
        else:
            out[name][idx] = _MODEL_REWARDS[name](reward_models[name], [ex.prompt for ex in sub_e], sub_c)
    out["total"] = sum(w * out[name] for name, w in cfg.weights).astype(np.float32)
    return out
