"""The interface a learned reward model offers to RL (the model itself is trained in the R1
pipeline's reward-model stage). Following the paper (sec. 2.3.4): helpfulness is judged on
the final summary only, so the reward cannot be gamed through the reasoning; harmlessness
is judged on the whole response, reasoning included."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from r1jax.rewards.format import split_reasoning

__all__ = ["RewardModel", "helpfulness", "harmlessness", "summary_of"]


class RewardModel(Protocol):
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """One scalar per (prompt, response) pair, shape [N]."""
        ...


def summary_of(completion: str) -> str:
    """The part after the reasoning; an output without reasoning is all summary."""
    parts = split_reasoning(completion)
    return parts[1] if parts else completion


def helpfulness(rm: RewardModel, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
    return np.asarray(rm.score(list(prompts), [summary_of(c) for c in completions]), np.float32)


def harmlessness(rm: RewardModel, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
    return np.asarray(rm.score(list(prompts), list(completions)), np.float32)
