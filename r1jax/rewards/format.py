"""Format rewards (1.0 / 0.0), the paper's rule that the output keeps the template's shape."""

from __future__ import annotations

import re

__all__ = ["r1_zero_format", "r1_format", "split_reasoning"]

_R1_ZERO = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.S)
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
COLD_START_MARK = "|special_token|"


def r1_zero_format(completion: str) -> float:
    """1.0 iff the completion is `<think> reasoning </think> <answer> answer </answer>`: each tag
    exactly once, in this order, non-empty reasoning and answer, only whitespace around."""
    if any(completion.count(tag) != 1 for tag in _TAGS):
        return 0.0
    m = _R1_ZERO.fullmatch(completion)
    return float(bool(m and m.group(1).strip() and m.group(2).strip()))


def split_reasoning(completion: str) -> tuple[str, str] | None:
    """(reasoning, summary) of an R1-style output, or None if it has no such shape.

    Accepted shapes: the cold-start format `|special_token|reasoning|special_token|summary`,
    `<think>reasoning</think>summary`, and `reasoning</think>summary` (the chat template
    already opened the think block in the prompt).
    """
    if completion.count(COLD_START_MARK) == 2:
        head, reasoning, summary = completion.split(COLD_START_MARK)
        return (reasoning, summary) if not head.strip() else None
    if completion.count("</think>") != 1 or completion.count("<think>") > 1:
        return None
    reasoning, summary = completion.split("</think>")
    if "<think>" in reasoning:
        head, reasoning = reasoning.split("<think>")
        if head.strip():
            return None
    return reasoning, summary


def r1_format(completion: str) -> float:
    """1.0 iff the output is reasoning followed by a summary, both non-empty (R1 stages)."""
    parts = split_reasoning(completion)
    return float(bool(parts and parts[0].strip() and parts[1].strip()))
