"""The whole DeepSeek-R1 recipe on the embedded CPU world, stage by stage, and the paper's
comparisons in miniature. Every stage is a function of `r1jax.stages` that reads the previous
stage's directory and resumes on its own; this file only wires them together and measures.

    base/            pretrain: tokenizer + bilingual base (world problems in English and Chinese)
    r1zero/          R1-Zero from the base (accuracy + format)            -> cold_start.jsonl
    r1zero_language/ the same + the language-consistency reward (the drift ablation)
    cold_sft/        1-2. cold start: SFT of the base on readable R1-Zero samples
    reasoning_rl/    3. GRPO with accuracy + format + language consistency
    rejection.jsonl  4. rejection sampling of stage 3 + general (non-reasoning) data
    sft/             5. SFT of the base on it (4 epochs)
    rm/              reward model (Bradley-Terry) on generated preference pairs
    rl_all/          6. GRPO on reasoning + general prompts (rules + reward model)
    distill.jsonl    7. the final model's samples;  student_base/ student_sft/ (+ student_logits/,
                     student_on_policy/ from student_sft) against student_rl/: the paper's Table 6
    ablation_no_language/   stage 3 without the language reward
    r1.json, r1.md   every stage's held-out evaluation and the comparisons
    r1_stages.png, cold_start_vs_r1_zero.png, language_drift.png
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

from r1jax import checkpoint, runtime
from r1jax.config import GRPOConfig, RolloutConfig, TrainerConfig
from r1jax.stages.collect import CollectConfig, collect
from r1jax.stages.distill import DistillConfig, distill
from r1jax.stages.grpo import RLConfig, grpo
from r1jax.stages.lm import PretrainConfig, SFTConfig, pretrain, sft
from r1jax.stages.reward_model import RewardModelConfig, train_reward_model
from r1jax.stages.world import evaluate_policy
from r1jax.tasks.general import preference_pairs
from r1jax.tasks.sft import read_sft_jsonl
from r1jax.tasks.world import world_heldout

__all__ = ["R1Config", "RL_ALL_REWARDS", "r1", "r1_table", "plot_r1", "running_mean", "first_step_reaching"]


@dataclasses.dataclass(frozen=True)
class R1Config:
    """Sizes of every stage; the defaults run the whole recipe on 2 CPU cores."""

    out_dir: str = "runs/r1"
    model: str = "small"  # the teacher's preset
    student_model: str = "student"  # a third of the teacher's parameters (d 64, 4 layers)
    pretrain_steps: int = 800  # as the main job's base (r1jax.stages.world.WorldConfig)
    # a student whose own RL cannot yet find the counting style (the paper's point); from 800 steps
    # its RL does (0.81 held-out pass@1) and distillation adds little over it (docs/recipe.md)
    student_pretrain_steps: int = 600
    zero_steps: int = 15  # R1-Zero, the source of cold-start data (and its language-reward ablation)
    reasoning_steps: int = 15  # stage 3 (and its no-language ablation)
    rl_all_steps: int = 8  # stage 6
    student_rl_steps: int = 15  # Table 6's "RL on the small model"
    prompts_per_step: int = 16
    cold_start_prompts: int = 512
    cold_start_epochs: float = 6.0  # the sets are small (hundreds of records): more passes than the paper's 2-3
    sft_epochs: float = 4.0
    sft_batch: int = 4  # packed rows of 256 tokens
    rejection_prompts: int = 512
    general_records: int = 256
    rm_steps: int = 150
    distill_prompts: int = 512
    distill_modes: str = "logits,on-policy"  # beyond the paper's SFT; '' for SFT only
    cold_start_data: str = ""  # your own cold-start JSONL instead of R1-Zero's samples (stage 1)
    max_new_tokens: int = 224  # three-operation answers after the cold start run to ~200 tokens
    eval_problems: int = 64
    eval_samples: int = 8
    seed: int = 0
    mesh: str = ""
    grpo: GRPOConfig = GRPOConfig(group_size=8)  # every RL stage's objective (beta, clip, ...) and group size


FAMILY = "world:language=both"
# Stage 6's rewards. `compute_rewards` scores each prompt only by those that fit its kind:
# reasoning prompts by accuracy + R1 format + language consistency (as in stage 3), general
# prompts by the reward model alone (helpfulness or harmlessness), never by the format or
# language reward, whose reasoning part a simple request's answer is not meant to have.
RL_ALL_REWARDS = "accuracy=1,format_r1=1,language=1,helpfulness=1,harmlessness=1"


def running_mean(metrics_file: Path, key: str, window: int = 3) -> list[float]:
    """`key` of each step of a run, averaged over the last `window` steps (rollout accuracy is
    noisy: a step sees 16 prompts)."""
    values = [json.loads(line)[key] for line in open(metrics_file)]
    return [float(np.mean(values[max(0, i - window + 1):i + 1])) for i in range(len(values))]


def first_step_reaching(curve: list[float], level: float) -> int | None:
    """The first step (1-based) whose value reaches `level`, None if none does."""
    return next((i + 1 for i, v in enumerate(curve) if v >= level), None)


def r1(cfg: R1Config) -> dict:
    """Run (or resume) every stage; writes r1.json and r1.md in `out_dir`."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    minutes: dict[str, float] = {}
    Q, N = cfg.prompts_per_step, cfg.max_new_tokens

    def trainer(default: TrainerConfig, steps: int = 0) -> TrainerConfig:
        return dataclasses.replace(default, steps=steps or default.steps, seed=cfg.seed, mesh=cfg.mesh)

    def timed(name, fn, *args):
        t0 = time.time()
        result = fn(*args)
        minutes[name] = minutes.get(name, 0.0) + (time.time() - t0) / 60
        # a stage that a signal stopped returns early with its checkpoint saved (SFT's summary
        # holds the step count it computed from its epochs)
        if "step" in result and result["step"] < result.get("steps", getattr(getattr(args[0], "trainer", None),
                                                                              "steps", 0)):
            raise KeyboardInterrupt(f"stage {name} stopped at step {result['step']}; rerun to resume")
        return result

    def rl(name, init, steps, rewards, families=FAMILY, temperature=1.0, max_prompt_tokens=32, **kw):
        timed(name, grpo, RLConfig(
            out_dir=str(out / name), base_dir=str(init), families=families, prompts_per_step=Q, reward_weights=rewards,
            trainer=trainer(RLConfig.trainer, steps), grpo=cfg.grpo,
            rollout=RolloutConfig(temperature=temperature, max_new_tokens=N, max_prompt_tokens=max_prompt_tokens),
            **kw))
        return out / name

    def gather(name, policy, n, **kw):
        path = out / f"{name}.jsonl"
        if not path.exists():  # written atomically at the end: present means complete
            timed(name, collect, CollectConfig(
                out=str(path), policy_dir=str(policy), families=FAMILY, n_prompts=n,
                rollout=dataclasses.replace(CollectConfig.rollout, max_new_tokens=N), seed=cfg.seed + 101,
                mesh=cfg.mesh, **kw))
        return path

    def fine_tune(name, init, data, epochs):
        timed(name, sft, SFTConfig(out_dir=str(out / name), init_dir=str(init), data=str(data), epochs=epochs,
                                   batch_size=cfg.sft_batch, trainer=trainer(SFTConfig.trainer)))
        return out / name

    pre = PretrainConfig(out_dir=str(out / "base"), preset=cfg.model, language="both",
                         trainer=trainer(PretrainConfig.trainer, cfg.pretrain_steps))
    timed("pretrain", pretrain, pre)
    base = out / "base"

    # R1-Zero, then its correct and readable samples rewritten into the cold-start format (stage 1)
    zero = rl("r1zero", base, cfg.zero_steps, "accuracy=1,format=1")
    # The language-consistency ablation where drift can happen: R1-Zero from the base mixes
    # languages more with every step (the paper's observation); the same run with the reward.
    zero_language = rl("r1zero_language", base, cfg.zero_steps, "accuracy=1,format=1,language=1")
    if cfg.cold_start_data:
        read_sft_jsonl(cfg.cold_start_data, cold_start=True)  # file:line errors before any training
        cold_data = Path(cfg.cold_start_data)
    else:
        cold_data = gather("cold_start", zero, cfg.cold_start_prompts, rewrite="cold-start", keep_per_prompt=2)
    cold = fine_tune("cold_sft", base, cold_data, cfg.cold_start_epochs)  # stage 2
    # Stage 3, and the ablation without the language reward. The paper's clip ratio of 10 for
    # this stage goes with its lr of 3e-6; at this world's lr of 1e-4 it let four updates move
    # the policy to a KL of 1.1 from the reference within the first step, so the clip stays 0.2.
    reasoning = rl("reasoning_rl", cold, cfg.reasoning_steps, "accuracy=1,format_r1=1,language=1")
    no_lang = rl("ablation_no_language", cold, cfg.reasoning_steps, "accuracy=1,format_r1=1")
    rejection = gather("rejection", reasoning, cfg.rejection_prompts, general=cfg.general_records)  # stage 4
    sft_dir = fine_tune("sft", base, rejection, cfg.sft_epochs)  # stage 5

    pairs = out / "preference_pairs.jsonl"
    if not pairs.exists():
        runtime.write_text(pairs, "".join(json.dumps(p, ensure_ascii=False) + "\n"
                                          for p in preference_pairs(512, cfg.seed + 3, language="both")))
    runtime.barrier("r1jax:pairs")
    timed("rm", train_reward_model, RewardModelConfig(out_dir=str(out / "rm"), base_dir=str(sft_dir), pairs=str(pairs),
                                                     trainer=trainer(RewardModelConfig.trainer, cfg.rm_steps)))
    rl_all = rl("rl_all", sft_dir, cfg.rl_all_steps, RL_ALL_REWARDS,
                families=FAMILY + ",general:n=1000", reward_model=str(out / "rm"), temperature=0.7,
                max_prompt_tokens=64)  # stage 6; general requests run to ~45 tokens in the template

    # Stage 7: distillation into a smaller student with its own pretrained initialisation,
    # against RL on that student directly (the paper's Table 6)
    student_pre = PretrainConfig(out_dir=str(out / "student_base"), preset=cfg.student_model, language="both",
                                 tokenizer=str(base / "tokenizer.model"),
                                 trainer=trainer(PretrainConfig.trainer, cfg.student_pretrain_steps))
    timed("student_pretrain", pretrain, student_pre)
    distill_data = gather("distill", rl_all, cfg.distill_prompts, general=cfg.general_records)
    students = {"student_sft": fine_tune("student_sft", out / "student_base", distill_data, cfg.sft_epochs)}
    for mode in filter(None, cfg.distill_modes.split(",")):
        name = "student_" + mode.replace("-", "_")
        # logit distillation replaces SFT (from the student's base); on-policy distillation
        # continues from the SFT student, where its own samples are already mostly well formed,
        # at a sixth of the learning rate. From the 450-step student of the old corpus, 3e-4 took it
        # from 0.430 to 0.328 held-out pass@1, 1e-4 to 0.467, 5e-5 to 0.445; from today's 600-step
        # student 1e-4 took it from 0.686 to 0.656, 5e-5 to 0.717, 2e-5 to 0.709 (docs/recipe.md)
        on_policy = mode == "on-policy"
        init = students["student_sft"] if on_policy else out / "student_base"
        optim = dataclasses.replace(DistillConfig.optim, learning_rate=5e-5) if on_policy else DistillConfig.optim
        timed(name, distill, DistillConfig(
            out_dir=str(out / name), teacher_dir=str(rl_all), student_dir=str(init), mode=mode, optim=optim,
            data=str(distill_data), families=FAMILY, rollout=RolloutConfig(max_new_tokens=N),
            trainer=trainer(DistillConfig.trainer)))
        students[name] = out / name
    student_rl = rl("student_rl", out / "student_base", cfg.student_rl_steps, "accuracy=1,format=1")

    # Held-out evaluation of every stage on the world's test split, which no pool above holds
    heldout = world_heldout(cfg.eval_problems, cfg.seed, language="both")
    stages = {"base": (base, "format"), "r1zero": (zero, "format"), "r1zero_language": (zero_language, "format"),
              "cold_sft": (cold, "format_r1"),
              "reasoning_rl": (reasoning, "format_r1"), "ablation_no_language": (no_lang, "format_r1"),
              "sft": (sft_dir, "format_r1"), "rl_all": (rl_all, "format_r1"),
              "student_base": (out / "student_base", "format"), "student_rl": (student_rl, "format"),
              **{k: (v, "format_r1") for k, v in students.items()}}
    results = {}
    t0 = time.time()
    for name, (directory, fmt) in stages.items():
        model_cfg, tok = runtime.load_stage(directory)
        params = checkpoint.restore_params(directory / "ckpt", model_cfg)
        results[name] = evaluate_policy(model_cfg, params, tok, heldout,
                                        samples=cfg.eval_samples, max_new_tokens=N, format_reward=fmt, seed=cfg.seed)
        results[name]["params"] = sum(x.size for x in jax.tree.leaves(params))
    minutes["evaluation"] = (time.time() - t0) / 60

    # Cold start against R1-Zero: RL steps until the rollouts' accuracy (running mean) reaches
    # the best R1-Zero reached in its run
    zero_curve = running_mean(zero / "metrics.jsonl", "accuracy")
    cold_curve = running_mean(no_lang / "metrics.jsonl", "accuracy")
    best = max(zero_curve)
    comparison = {"r1_zero_best_train_accuracy": best, "r1_zero_steps": first_step_reaching(zero_curve, best),
                  "cold_start_steps": first_step_reaching(cold_curve, best),
                  "cold_start_best_train_accuracy": max(cold_curve)}
    result = {"stages": results, "minutes": minutes, "heldout": [ex.prompt for ex in heldout],
              "cold_start_vs_r1_zero": comparison}
    runtime.write_text(out / "r1.json", json.dumps(result, indent=2))
    runtime.write_text(out / "r1.md", r1_table(result))
    if runtime.is_lead():
        plot_r1(out)
    return result


def plot_r1(out_dir: str | Path) -> list[Path]:
    """r1_stages.png (held-out pass@1 and language mixing of every stage),
    cold_start_vs_r1_zero.png (rollout accuracy, 3-step running mean, of both RL runs) and
    language_drift.png (the rollouts' language mixing over R1-Zero's steps, with and without
    the language reward)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    stages = json.loads((out / "r1.json").read_text())["stages"]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    x = np.arange(len(stages))
    ax.bar(x - 0.2, [r["pass@1"] for r in stages.values()], 0.4, label="held-out pass@1")
    ax.bar(x + 0.2, [r["mixing"] for r in stages.values()], 0.4, label="language mixing rate")
    ax.set_xticks(x, list(stages), rotation=30, ha="right", fontsize=8)
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out / "r1_stages.png", dpi=100)
    plt.close(fig)

    def curves(key: str, ylabel: str, runs: tuple, png: str) -> None:
        """One line per RL run: `key` of its metrics.jsonl, 3-step running mean, over the steps."""
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name, label in runs:
            curve = running_mean(out / name / "metrics.jsonl", key)
            ax.plot(range(1, len(curve) + 1), curve, label=label)
        ax.set_xlabel("GRPO step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / png, dpi=100)
        plt.close(fig)

    curves("accuracy", "rollout accuracy (3-step mean)",
           (("r1zero", "R1-Zero (from the base)"), ("ablation_no_language", "from the cold start"),
            ("reasoning_rl", "from the cold start, + language reward")), "cold_start_vs_r1_zero.png")
    curves("language_mixing_rate", "rollouts mixing languages (3-step mean)",
           tuple((name, f"{label} (held-out pass@1 {stages[name]['pass@1']:.3f}, mixing {stages[name]['mixing']:.3f})")
                 for name, label in (("r1zero", "R1-Zero"), ("r1zero_language", "R1-Zero + language reward"))),
           "language_drift.png")
    return [out / "r1_stages.png", out / "cold_start_vs_r1_zero.png", out / "language_drift.png"]


def r1_table(result: dict) -> str:
    """Markdown: every stage on the held-out problems, then the three comparisons."""
    s = result["stages"]
    any_stage = next(iter(s.values()))
    lines = [f"Held-out bilingual problems: {any_stage['problems']}, {any_stage['samples']} samples each "
             "(T=0.6, top-p 0.95).", "",
             "| stage | params | pass@1 | format | mixing | readable | length | reflection |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in s.items():
        lines.append(f"| {name} | {r['params']:,} | {r['pass@1']:.3f} | {r['format']:.3f} | {r['mixing']:.3f} | "
                     f"{r['readable']:.3f} | {r['length']:.1f} | {r['reflection']:.3f} |")
    students = [k for k in s if k.startswith("student_") and k not in ("student_base", "student_rl")]
    m = result["minutes"]
    cost = {"student_rl": m.get("student_rl", 0.0), "student_sft": m.get("student_sft", 0.0) + m.get("distill", 0.0)}
    lines += ["", "Table 6 in miniature (student pass@1; minutes of student training, the distilled ones plus the "
              "teacher's sampling of the set): "
              + ", ".join(f"{k} {s[k]['pass@1']:.3f}"
                          + (f" ({cost.get(k, m.get(k, 0.0)):.1f} min)" if k != "student_base" else "")
                          for k in ["student_base", "student_rl", *students]) + "."]
    lines += [f"Language drift (RL from the base): held-out mixing {s['r1zero']['mixing']:.3f} without the language "
              f"reward, {s['r1zero_language']['mixing']:.3f} with; pass@1 {s['r1zero']['pass@1']:.3f} without, "
              f"{s['r1zero_language']['pass@1']:.3f} with (language_drift.png: mixing over the steps)."]
    lines += [f"Language-consistency reward in stage 3: mixing {s['reasoning_rl']['mixing']:.3f} with, "
              f"{s['ablation_no_language']['mixing']:.3f} without; pass@1 {s['reasoning_rl']['pass@1']:.3f} with, "
              f"{s['ablation_no_language']['pass@1']:.3f} without."]
    c = result["cold_start_vs_r1_zero"]
    lines += [f"Cold start against R1-Zero: R1-Zero's rollout accuracy (3-step running mean) reaches its best, "
              f"{c['r1_zero_best_train_accuracy']:.2f}, at step {c['r1_zero_steps']}; RL from the cold start reaches "
              f"it at step {c['cold_start_steps']} and peaks at {c['cold_start_best_train_accuracy']:.2f} (same "
              "rewards but R1's format, no language reward). Readability: the table's format, mixing and "
              "readable columns (r1zero against cold_sft and ablation_no_language)."]
    lines += ["", "Minutes: " + ", ".join(f"{k} {v:.1f}" for k, v in m.items())
              + f"; total {sum(m.values()):.1f}."]
    return "\n".join(lines) + "\n"
