"""Sample a policy and keep its correct, readable outputs as an SFT set (JSONL with provenance):
R1's cold-start data from R1-Zero (stage 1), rejection sampling of the reasoning-RL policy
(stage 4, plus non-reasoning records) and a teacher's distillation set (stage 7)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import tqdm

from r1jax import checkpoint, runtime, sampling
from r1jax.config import DataConfig, ModelOverrides, RolloutConfig
from r1jax.rewards import RewardConfig, compute_rewards
from r1jax.rewards.format import split_reasoning
from r1jax.rewards.readability import readability_issues
from r1jax.tasks import general_prompts
from r1jax.tasks.datafiles import prompt_pool
from r1jax.tasks.sft import write_sft_jsonl
from r1jax.tasks.world import SUMMARY, refine_language
from r1jax.tokenizer import render_cold_start

__all__ = ["CollectConfig", "collect", "to_cold_start", "select_samples"]


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """Which policy to sample, on which prompts, and what to keep."""

    out: str = "runs/sft.jsonl"
    policy_dir: str = "runs/r1zero"  # tokenizer + ckpt/
    families: str = "world:language=both"  # reasoning prompts (r1jax.tasks.task_pool)
    n_prompts: int = 256
    data: DataConfig = DataConfig()  # prompts from a file instead of the generated families
    samples: int = 4  # per prompt
    keep_per_prompt: int = 1  # distinct kept outputs per prompt at most
    # 'cold-start': '<think> R </think> <answer> v </answer>' -> '|special_token| R |special_token| summary'
    rewrite: str = "none"
    general: int = 0  # general prompts (both languages) whose ideal responses, without CoT, join the set
    seed: int = 0
    mesh: str = ""  # e.g. 'data=2,fsdp=2,tensor=2'; default: all devices on 'data'
    rollout: RolloutConfig = RolloutConfig(temperature=0.7, top_p=0.95)
    model: ModelOverrides = ModelOverrides()

    def __post_init__(self):
        if self.rewrite not in ("none", "cold-start"):
            raise ValueError(f"CollectConfig.rewrite must be none or cold-start, got {self.rewrite!r}")


def to_cold_start(completion: str, ex) -> str | None:
    """A correct R1-Zero output in the cold-start format: its reasoning (the world's fixed
    sentences in the problem's language, `refine_language`), then a one-sentence summary stating
    the answer in that language; None if it has no reasoning part."""
    parts = split_reasoning(completion)
    if parts is None or not parts[0].strip():
        return None
    language = ex.metadata.get("language", "en")
    reasoning = refine_language(parts[0].strip(), language)
    return render_cold_start(" " + reasoning + " ", SUMMARY[language].format(v=ex.answer))


def select_samples(group, texts, truncated, records: list, counts: dict, issues: dict, *, rewrite: str,
                   keep_per_prompt: int, source: str) -> None:
    """Append to `records` the correct, complete and readable samples (rewritten if asked), at
    most `keep_per_prompt` distinct ones a prompt (the longest), with provenance; tally `counts`
    and readability `issues`."""
    weights = (("accuracy", 1.0), ("format", 1.0), ("format_r1", 1.0), ("language", 1.0))
    r = compute_rewards(texts, group, RewardConfig(weights=weights))
    kept = {rec["prompt_id"]: 0 for rec in records}
    for rec in records:
        kept[rec["prompt_id"]] += 1
    seen = {(rec["prompt"], rec["response"]) for rec in records}
    # a prompt's longer outputs are looked at first: the cold start wants long, readable CoT
    first = {}
    order = sorted(range(len(texts)), key=lambda j: (first.setdefault(group[j].id, j), -len(texts[j])))
    for j in order:
        ex, text = group[j], texts[j]
        counts["sampled"] += 1
        if r["accuracy"][j] < 1 or truncated[j]:
            continue
        counts["correct"] += 1
        response = to_cold_start(text, ex) if rewrite == "cold-start" else text.strip()
        language = ex.metadata.get("language", "en")
        found = ["no reasoning"] if response is None else readability_issues(response, language)
        for name in found:
            issues[name] = issues.get(name, 0) + 1
        if found:
            continue
        counts["readable"] += 1
        if kept.get(ex.id, 0) < keep_per_prompt and (ex.prompt, response) not in seen:  # deduplicated
            kept[ex.id] = kept.get(ex.id, 0) + 1
            seen.add((ex.prompt, response))
            records.append({"prompt": ex.prompt, "response": response, "kind": "reasoning", "prompt_id": ex.id,
                            "source": source, "rewards": {k: float(v[j]) for k, v in r.items()}})


def collect(cfg: CollectConfig) -> dict:
    """Write `cfg.out`; returns counts (sampled, correct, readable, kept) for the report."""
    policy = Path(cfg.policy_dir)
    model_cfg, tok = runtime.load_stage(policy, cfg.model)
    mesh = runtime.make_mesh(cfg.mesh)
    source_step = checkpoint.latest_step(policy / "ckpt")
    params = checkpoint.restore_params(policy / "ckpt", model_cfg, mesh, step=source_step)
    examples, bad_records = prompt_pool(cfg.data, cfg.families, cfg.n_prompts, cfg.seed)
    sampler = sampling.rollout_sampler(model_cfg, cfg.rollout, tok, mesh=mesh, group_size=cfg.samples)
    records, counts, issues = [], {"prompts": len(examples), "sampled": 0, "correct": 0, "readable": 0}, {}
    for i in tqdm.tqdm(range(0, len(examples), 32), desc="collect", unit="batch", dynamic_ncols=True):
        chunk = examples[i:i + 32]
        *_, roll, texts = sampling.rollout(sampler, params, tok, chunk, cfg.rollout.max_prompt_tokens,
                                           jax.random.key(cfg.seed + i), cfg.rollout.template)
        select_samples([ex for ex in chunk for _ in range(cfg.samples)], texts, roll.truncated, records, counts,
                       issues, rewrite=cfg.rewrite, keep_per_prompt=cfg.keep_per_prompt,
                       source=f"{policy.absolute()}/ckpt/{source_step}")
    # Non-reasoning data (the paper's ~200k): general requests with the world's ideal answers,
    # written without a chain of thought, as the paper does for simple queries.
    general = general_prompts(cfg.general // 2, cfg.seed + 1, language="both") if cfg.general else []
    records += [{"prompt": ex.prompt, "response": ex.metadata["response"], "kind": "general", "prompt_id": ex.id,
                 "source": "r1jax.tasks.general"} for ex in general]
    if not records:
        raise RuntimeError(f"collect: none of {counts['sampled']} samples of {policy} was correct and readable "
                           f"(correct: {counts['correct']}; readability issues: {issues})")
    if runtime.is_lead():  # every process sampled the same records
        write_sft_jsonl(cfg.out, records)
    summary = {**counts, "kept_reasoning": len(records) - len(general), "general": len(general),
               "issues": issues, "out": cfg.out, "bad_records": len(bad_records)}
    runtime.write_text(Path(cfg.out).with_suffix(".summary.json"), json.dumps(summary, indent=2))
    runtime.barrier("r1jax:collect")
    return summary
