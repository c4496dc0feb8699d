"""The main job on the embedded CPU world: pretrain a base, evaluate it on held-out problems,
run R1-Zero from it, evaluate the policy. Also the held-out evaluation every world stage uses."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

from r1jax import checkpoint, report, runtime, sampling
from r1jax.config import GRPOConfig, ModelConfig, RolloutConfig
from r1jax.rewards import RewardConfig, compute_rewards
from r1jax.rewards.language import mixes_languages
from r1jax.rewards.readability import readability_issues
from r1jax.stages.grpo import RLConfig, grpo
from r1jax.stages.lm import PretrainConfig, pretrain
from r1jax.tasks.world import world_heldout

__all__ = ["WorldConfig", "world", "world_table", "evaluate_policy"]


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """The main job's sizes; settings of each stage not listed here are their configs' defaults."""

    out_dir: str = "runs/world"
    model: str = "small"  # the base's preset
    pretrain_steps: int = 800  # RL solved most three-step chains from this base on seeds 0-4 (450, 650: not all)
    pretrain_batch: int = 16  # rows of 256 tokens, packed with documents
    rl_steps: int = 25  # held-out pass@1 at 25 and 30 steps was the same (0.69-0.73) for seeds 0-2
    max_new_tokens: int = 224  # prompt (<= 32) + 224 = a pretraining row; 160 cut off 4-6% of trained answers
    eval_problems: int = 64  # held-out problems (none appears in pretraining or RL)
    eval_samples: int = 8  # completions per problem for pass@1 (T=0.6, top-p 0.95, as the paper)
    seed: int = 0
    mesh: str = ""
    grpo: GRPOConfig = GRPOConfig()  # R1-Zero's objective and batch (16 samples a problem)


def evaluate_policy(model_cfg: ModelConfig, params, tok, examples, *, samples: int = 8, temperature: float = 0.6,
                    top_p: float = 0.95, max_new_tokens: int = 160, max_prompt_tokens: int = 32,
                    batch_prompts: int = 32, format_reward: str = "format", mesh=None, seed: int = 0) -> dict:
    """pass@1 over `samples` completions a problem (the paper's protocol: T=0.6, top-p 0.95),
    format rate (`format_reward`: 'format' for R1-Zero's tags, 'format_r1' for R1's reasoning +
    summary), mean length, reflection, language-mixing, readability (r1jax.rewards.readability)
    and truncation rates, overall and by `metadata['n_ops']`."""
    rollout_cfg = RolloutConfig(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                max_prompt_tokens=max_prompt_tokens)
    sampler = sampling.rollout_sampler(model_cfg, rollout_cfg, tok, mesh=mesh, group_size=samples)
    cfg = RewardConfig(weights=(("accuracy", 1.0), (format_reward, 1.0)))
    rows = []
    for i in range(0, len(examples), batch_prompts):
        chunk = examples[i:i + batch_prompts]
        *_, roll, texts = sampling.rollout(sampler, params, tok, chunk, max_prompt_tokens, jax.random.key(seed + i))
        group = [ex for ex in chunk for _ in range(samples)]
        r = compute_rewards(texts, group, cfg)
        for ex, a, f, n, t, tr in zip(group, r["accuracy"], r[format_reward], roll.lengths, texts, roll.truncated):
            language = ex.metadata.get("language", "en")
            rows.append((ex.metadata.get("n_ops", 0), a, f, n, report.reflection_count(t) > 0, tr,
                         mixes_languages(t, language), not readability_issues(t, language)))
    arr = np.array(rows, dtype=np.float64)

    def stats(a):
        return {"pass@1": a[:, 1].mean(), "format": a[:, 2].mean(), "length": a[:, 3].mean(),
                "reflection": a[:, 4].mean(), "truncated": a[:, 5].mean(), "mixing": a[:, 6].mean(),
                "readable": a[:, 7].mean()}

    out = {k: float(v) for k, v in stats(arr).items()}
    out["by_ops"] = {int(k): {n: float(v) for n, v in stats(arr[arr[:, 0] == k]).items()}
                     for k in np.unique(arr[:, 0])}
    out["problems"], out["samples"] = len(examples), samples
    return out


def world(cfg: WorldConfig) -> dict:
    """Run (or resume) the whole world job; writes `world.md` and `world.json` in `out_dir`."""
    out = Path(cfg.out_dir)
    t0 = time.time()
    pre = PretrainConfig(out_dir=str(out / "base"), preset=cfg.model, batch_size=cfg.pretrain_batch,
                         trainer=dataclasses.replace(PretrainConfig.trainer, steps=cfg.pretrain_steps, seed=cfg.seed,
                                                     mesh=cfg.mesh))
    rl = RLConfig(out_dir=str(out / "r1zero"), base_dir=pre.out_dir, grpo=cfg.grpo,
                  rollout=RolloutConfig(max_new_tokens=cfg.max_new_tokens),
                  trainer=dataclasses.replace(RLConfig.trainer, steps=cfg.rl_steps, seed=cfg.seed, mesh=cfg.mesh))
    if pretrain(pre)["step"] < pre.trainer.steps:  # stopped by a signal: checkpoint saved, nothing more to do
        return {"stopped": "pretrain"}
    t_pre = time.time() - t0
    heldout = world_heldout(cfg.eval_problems, cfg.seed)
    model_cfg, tok = runtime.load_stage(pre.out_dir)
    mesh = runtime.make_mesh(cfg.mesh)

    def evaluate(ckpt_dir: Path) -> dict:
        params = checkpoint.restore_params(ckpt_dir, model_cfg, mesh)
        return evaluate_policy(model_cfg, params, tok, heldout, samples=cfg.eval_samples,
                               max_new_tokens=rl.rollout.max_new_tokens, max_prompt_tokens=rl.rollout.max_prompt_tokens,
                               mesh=mesh, seed=cfg.seed)

    base_eval = evaluate(Path(pre.out_dir) / "ckpt")
    t1 = time.time()
    if grpo(rl)["step"] < rl.trainer.steps:
        return {"stopped": "r1_zero"}
    t_rl = time.time() - t1
    final_eval = evaluate(Path(rl.out_dir) / "ckpt")
    result = {"base": base_eval, "r1_zero": final_eval, "heldout": [ex.prompt for ex in heldout], "minutes": {
        "pretrain": t_pre / 60, "r1_zero": t_rl / 60, "total": (time.time() - t0) / 60}}
    runtime.write_text(out / "world.json", json.dumps(result, indent=2))
    runtime.write_text(out / "world.md", world_table(result))
    return result


def world_table(result: dict) -> str:
    """Markdown: base against R1-Zero policy on the held-out problems, overall and by difficulty."""
    b, f = result["base"], result["r1_zero"]
    lines = [f"Held-out problems: {b['problems']}, {b['samples']} samples each (T=0.6, top-p 0.95).", "",
             "| metric | base | R1-Zero |", "|---|---|---|"]
    for k in ("pass@1", "format", "length", "reflection", "truncated"):
        lines.append(f"| {k} | {b[k]:.3f} | {f[k]:.3f} |")
    lines += ["", "| operations | base pass@1 | R1-Zero pass@1 | base length | R1-Zero length |",
              "|---|---|---|---|---|"]
    for k in sorted(b["by_ops"], key=int):
        bb, ff = b["by_ops"][k], f["by_ops"][k]
        lines.append(f"| {k} | {bb['pass@1']:.3f} | {ff['pass@1']:.3f} | {bb['length']:.1f} | {ff['length']:.1f} |")
    m = result["minutes"]
    lines += ["", f"Minutes: pretraining {m['pretrain']:.1f}, R1-Zero {m['r1_zero']:.1f}, total {m['total']:.1f}."]
    return "\n".join(lines) + "\n"
