"""The RL stage: GRPO from a stage directory with rule rewards (DeepSeek-R1-Zero), and with
R1's rewards its stages 3 (+ language consistency) and 6 (+ a learned reward model).

One step: collect G rollouts of each of Q prompts, score them, turn rewards into group
advantages, then `grpo.minibatches` policy updates on mini-batches of the rollouts.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from r1jax import attention, checkpoint, data, losses, report, runtime, sampling, train
from r1jax.config import DataConfig, GRPOConfig, ModelOverrides, OptimConfig, RolloutConfig, TrainerConfig
from r1jax.rewards import RewardConfig, compute_rewards
from r1jax.rewards.language import mixes_languages
from r1jax.stages.reward_model import LearnedRewardModel
from r1jax.tasks.datafiles import draw, prompt_pool

__all__ = ["RLConfig", "grpo", "overlong_penalty", "round_up", "zero_variance_rows"]


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """GRPO from a stage directory. The defaults run the embedded world; the paper's R1-Zero
    settings are lr 3e-6, beta 0.001, 16 samples a question at temperature 1, 32 questions a
    step, the reference refreshed every 400 steps and 16 mini-batches a rollout."""

    out_dir: str = "runs/r1zero"
    base_dir: str = "runs/base"  # tokenizer.model or tokenizer.json, and ckpt/ (e.g. a `pretrain` output)
    families: str = "world"  # comma-separated task families with knobs, e.g. 'world:language=both,general'
    n_train: int = 4000  # generated training problems (drawn in a seeded order, then reused)
    data: DataConfig = DataConfig()  # a training set on disk instead of the generated families
    prompts_per_step: int = 16
    reward_weights: str = "accuracy=1,format=1"  # R1 stages add language=1, format_r1, helpfulness, harmlessness
    reward_model: str = ""  # a reward-model stage directory (r1jax.stages.reward_model) for helpfulness / harmlessness
    sample_every: int = 10  # steps between samples.jsonl entries
    trainer: TrainerConfig = TrainerConfig(steps=50, checkpoint_every=25)
    optim: OptimConfig = OptimConfig(learning_rate=1e-4, schedule="constant", weight_decay=0.0)
    grpo: GRPOConfig = GRPOConfig()
    rollout: RolloutConfig = RolloutConfig()
    model: ModelOverrides = ModelOverrides()

    def __post_init__(self):
        for name in ("prompts_per_step", "n_train", "sample_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rollout.temperature <= 0:  # the update's pi_theta is softmax(logits / temperature)
            raise ValueError(f"rollout.temperature must be > 0 for RL (a group's samples must differ and the "
                             f"update divides by it), got {self.rollout.temperature}")
        if (self.prompts_per_step * self.grpo.group_size) % self.grpo.minibatches:
            raise ValueError(f"prompts_per_step * grpo.group_size = {self.prompts_per_step * self.grpo.group_size} "
                             f"rollouts do not split into grpo.minibatches={self.grpo.minibatches} mini-batches")
        self.rewards()

    def rewards(self) -> RewardConfig:
        pairs = [p.split("=") for p in self.reward_weights.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f"reward_weights {self.reward_weights!r}: expected 'name=w,name=w'")
        for name, weight in pairs:
            try:
                float(weight)
            except ValueError:
                raise ValueError(f"reward_weights {self.reward_weights!r}: the weight of {name.strip()!r} must be a "
                                 f"number, got {weight.strip()!r} (e.g. 'accuracy=1,format=0.5')") from None
        try:
            return RewardConfig(weights=tuple((k.strip(), float(v)) for k, v in pairs))
        except ValueError as e:
            raise ValueError(f"reward_weights {self.reward_weights!r}: {e}") from None


def round_up(n: int, cap: int, multiple: int = 32) -> int:
    """n rounded up to a `data.bucket` of `multiple` (every multiple up to 8 of them, then four
    sizes a doubling, at most 25% above n), at most `cap`: the widths of a run's updates come
    from a few shapes, so a few programs compile. Plain multiples of 32 would give a 32k budget
    1,024 widths, a compile at almost every step while lengths grow; up to 256 tokens the two
    are the same."""
    return min(data.bucket(n, multiple), cap)


def overlong_penalty(lengths: np.ndarray, max_new: int, buffer: int) -> np.ndarray:
    """DAPO's soft overlong punishment, in tokens: 0 up to max_new - buffer, then linear to -1."""
    return -np.clip((lengths - (max_new - buffer)) / max(buffer, 1), 0.0, 1.0)


def zero_variance_rows(total: np.ndarray, group_size: int) -> np.ndarray:
    """[N] bool: the rollouts of groups whose rewards are all equal, which `drop_zero_variance`
    masks out. The groups are `losses.constant_groups` of the same float32 rewards, so they
    are exactly the groups `group_advantages` gives advantage 0 (a numpy `std == 0` on the
    float64 total disagreed with it for about half of the reward values tried)."""
    return np.repeat(np.asarray(losses.constant_groups(jnp.asarray(total, jnp.float32), group_size)), group_size)


def grpo(cfg: RLConfig) -> dict:
    """Run (or resume) GRPO from `cfg.base_dir`. Writes metrics.jsonl, samples.jsonl, aha.jsonl and ckpt/."""
    out, base = Path(cfg.out_dir), Path(cfg.base_dir)
    model_cfg, tok = runtime.load_stage(base, cfg.model, out)
    g, ro = cfg.grpo, cfg.rollout
    reward_cfg = cfg.rewards()
    tx = train.make_optimizer(cfg.optim, total_steps=cfg.trainer.steps, updates_per_step=g.minibatches)
    lr_at = train.learning_rate_schedule(cfg.optim, cfg.trainer.steps)  # by GRPO step, for the log
    mesh = runtime.make_mesh(cfg.trainer.mesh)
    state_sh = train.state_shardings(mesh, model_cfg, tx)
    reward_models = {}
    if cfg.reward_model:
        rm = LearnedRewardModel.load(cfg.reward_model, mesh=mesh)
        reward_models = {"helpfulness": rm, "harmlessness": rm}

    seed = cfg.trainer.seed
    pool, bad_records = prompt_pool(cfg.data, cfg.families, cfg.n_train, seed)
    Q, G, N, P = cfg.prompts_per_step, g.group_size, ro.max_new_tokens, ro.max_prompt_tokens
    sampling.prompt_ids(tok, pool, P, ro.template)  # a prompt too long for P fails now, not at the step that draws it
    sampler = sampling.rollout_sampler(model_cfg, ro, tok, mesh=mesh, group_size=G)

    ckpt = checkpoint.Checkpointer(out / "ckpt", {"model": model_cfg, "grpo": cfg})

    def init():
        params = checkpoint.restore_params(base / "ckpt", model_cfg, mesh)
        return jax.jit(lambda p: train.init_state(model_cfg, tx, None, params=p), out_shardings=state_sh)(params)

    state, restored = runtime.resume_or_init(ckpt, train.abstract_state(mesh, model_cfg, tx), init,
                                             with_ref=g.beta > 0)
    # The reference policy: frozen, refreshed every g.ref_refresh steps, saved with the checkpoint.
    ref = {"params": (jax.tree.map(jnp.copy, state.params) if g.beta else None) if restored is None
           else restored.ref_params}

    B = Q * G
    row_multiple = mesh.shape["data"] * mesh.shape["fsdp"]  # packed rows split over the batch devices
    rows = (row_multiple, P + N) if g.pack else (B // g.minibatches, P + N)
    mb_example = {"tokens": np.zeros(rows, np.int32),
                  **({k: np.zeros(rows, np.int32) for k in ("segment_ids", "positions")} if g.pack else
                     {"mask": np.zeros(rows, bool)}),
                  **({k: np.zeros((128 * row_multiple,), np.int32)  # one entry per completion token
                      for k in ("rows", "cols", "targets", "seq", "pos")} if g.pack else {}),
                  **{k: np.zeros((B // g.minibatches, N), np.float32)
                     for k in ("completion_mask", "old_logp", "ref_logp")},
                  **{k: np.zeros((B // g.minibatches,), np.float32) for k in ("advantages", "token_norm")}}
    update = train.compile_step(lambda s, b: train.grpo_train_step(s, b, model_cfg=model_cfg, tx=tx, cfg=g,
                                                                   temperature=ro.temperature, max_len=N),
                                mesh, state_sh, train.batch_shardings(mesh, mb_example, True), batch_is_global=True)
    # log pi(token) of the completions under some parameters: the reference's, and pi_old's when recomputed
    logp_fn = jax.jit(lambda p, b: train.rollout_logprobs(model_cfg, p, b, ro.temperature)[0])
    recompute_old_logp = g.old_logp == "recompute" or (g.old_logp == "auto" and model_cfg.dtype != "float32")
    base_key = jax.random.key(seed)
    lead = runtime.is_lead()  # one host writes the logs

    def step_fn(state, step):
        # COLLECT ROLLOUTS: the prompts and the RNG stream are functions of the step (exact resume)
        t0 = time.time()
        key = jax.random.fold_in(base_key, step)
        examples = draw(pool, seed, step * Q, Q)
        prompts, pmask, roll, texts = sampling.rollout(sampler, state.params, tok, examples, P, key, ro.template)
        t_sample = time.time() - t0

        # SCORE
        t1 = time.time()
        lengths = np.asarray(roll.lengths)
        group_examples = [ex for ex in examples for _ in range(G)]
        rewards = compute_rewards(texts, group_examples, reward_cfg, reward_models)
        total = rewards["total"].copy()
        if g.truncation == "penalty":
            total += overlong_penalty(lengths, N, g.overlong_buffer)

        # ADVANTAGES
        adv = np.asarray(losses.group_advantages(jnp.asarray(total), G, g.adv_scale))
        cmask = (np.arange(N)[None] < lengths[:, None]).astype(np.float32)
        if g.truncation == "mask":
            cmask[np.asarray(roll.truncated)] = 0.0
        if g.drop_zero_variance:
            cmask[zero_variance_rows(total, G)] = 0.0
        # Updates see only the columns some rollout uses: early in RL most answers are short.
        n_used, p_used = round_up(int(lengths.max()), N), round_up(int(pmask.sum(1).max()), P)
        tokens = np.concatenate([np.repeat(prompts[:, P - p_used:], G, 0), roll.tokens[:, :n_used]], 1)
        mask = np.concatenate([np.repeat(pmask[:, P - p_used:], G, 0), cmask[:, :n_used] > 0], 1)
        batch = {"tokens": tokens, "mask": mask, "completion_mask": cmask[:, :n_used],
                 "old_logp": np.asarray(roll.logprobs)[:, :n_used], "advantages": adv.astype(np.float32),
                 # token-mean's one divisor for every mini-batch of the step (losses.grpo_loss)
                 "token_norm": np.full(B, max(cmask.sum(), 1.0) / g.minibatches, np.float32)}
        t_reward = time.time() - t1

        # UPDATE: g.minibatches policy updates on this rollout batch
        t2 = time.time()
        rng = np.random.default_rng([seed, step])
        perm = rng.permutation(B)
        grouped = g.length_grouped and not g.pack  # packed updates need no length bands: random mini-batches
        if grouped:  # rollouts of similar length share a mini-batch, in random order
            perm = perm[np.argsort(lengths[perm], kind="stable")]
        minibatches = np.split(perm, g.minibatches)
        if grouped:
            minibatches = [minibatches[i] for i in rng.permutation(g.minibatches)]
        mb_batches = []
        if g.pack:  # the rollouts without their padding, packed into rows
            # as wide as the attention runs them anyway (its tiles' tail holds rollouts, not padding),
            # every mini-batch of the step in one bucketed shape: a new shape is a new compile
            def pack(mb, **sizes):
                return data.pack_rollouts([prompts[i // G][pmask[i // G]] for i in mb],
                                          [roll.tokens[i, :lengths[i]] for i in mb], rows_multiple=row_multiple,
                                          width=attention.tiled_length(model_cfg, p_used + n_used), **sizes)
            sizes = [(len(p["tokens"]), len(p["seq"])) for p in map(pack, minibatches)]
            packed = [pack(mb, min_rows=data.bucket(max(r for r, _ in sizes), row_multiple),
                           min_tokens=data.bucket(max(t for _, t in sizes), 128 * row_multiple)) for mb in minibatches]
        for j, mb in enumerate(minibatches):
            n_mb = n_used if g.pack else round_up(int(lengths[mb].max()), N)  # padded: cut to its longest
            mb_batch = {k: v[mb][:, :p_used + n_mb] if k in ("tokens", "mask") else
                        v[mb][:, :n_mb] if v.ndim == 2 else v[mb] for k, v in batch.items()}
            if g.pack:
                mb_batch = {**{k: v for k, v in mb_batch.items() if k not in ("tokens", "mask")}, **packed[j]}
            scored = {k: v for k, v in mb_batch.items() if k not in ("old_logp", "ref_logp", "advantages",
                                                                     "token_norm")}
            # pi_old from the training forward, before any update of this step (see GRPOConfig.old_logp)
            if recompute_old_logp:
                mb_batch["old_logp"] = sampling.to_host(logp_fn(state.params, scored))
            # the reference is frozen, so scoring it a mini-batch at a time bounds its memory
            mb_batch["ref_logp"] = np.zeros_like(mb_batch["old_logp"])
            if g.beta:
                mb_batch["ref_logp"] = sampling.to_host(logp_fn(ref["params"], scored))
            mb_batches.append(mb_batch)
        step_metrics = []
        for mb_batch in mb_batches:
            state, m = update(state, mb_batch)
            step_metrics.append(m)
        step_metrics = jax.device_get(step_metrics)
        t_update = time.time() - t2
        if g.beta and (step + 1) % g.ref_refresh == 0:
            ref["params"] = jax.tree.map(jnp.copy, state.params)

        # LOG
        m = {k: float(np.mean([x[k] for x in step_metrics])) for k in step_metrics[0]}
        m.update({f"reward/{k}": float(v.mean()) for k, v in rewards.items()})
        reflective = np.array([report.reflection_count(t) > 0 for t in texts])
        n_ops = np.array([ex.metadata.get("n_ops", 0) for ex in group_examples])
        m.update({f"response_length_ops{k}": float(lengths[n_ops == k].mean()) for k in np.unique(n_ops) if k})
        reasoning = np.array([ex.metadata.get("family") != "general" for ex in group_examples])
        correct = rewards.get("accuracy", np.zeros(B))
        m.update(accuracy=float(correct[reasoning].mean()) if reasoning.any() else 0.0,
                 reflection_rate=float(reflective.mean()),
                 language_mixing_rate=float(np.mean([mixes_languages(t, ex.metadata.get("language", "en"))
                                                     for t, ex in zip(texts, group_examples)])),
                 response_length_mean=float(lengths.mean()), response_length_max=int(lengths.max()),
                 truncation_rate=float(np.asarray(roll.truncated).mean()), learning_rate=float(lr_at(step)),
                 tokens_per_s=int(lengths.sum()) / max(time.time() - t0, 1e-9), time_sample=t_sample,
                 time_reward=t_reward, time_update=t_update)
        for i in np.flatnonzero(reflective & (correct > 0))[:2 * lead]:  # candidate "aha" moments
            aha_log.write(json.dumps({"step": step + 1, "prompt": group_examples[i].prompt,
                                      "answer": group_examples[i].answer, "completion": texts[i]}) + "\n")
        if lead and (step % cfg.sample_every == 0 or step + 1 == cfg.trainer.steps):
            for i in range(0, B, G):  # the first sample of every prompt
                samples_log.write(json.dumps({"step": step + 1, "prompt": examples[i // G].prompt,
                                              "answer": examples[i // G].answer, "completion": texts[i],
                                              **{k: float(v[i]) for k, v in rewards.items()}}) + "\n")
        samples_log.flush()
        aha_log.flush()
        return state, m

    def save(state, next_step):
        return {"rng": jax.random.fold_in(base_key, next_step - 1), "data_state": {"next_prompt": next_step * Q},
                "ref_params": ref["params"]}

    with open(out / "samples.jsonl", "a") as samples_log, open(out / "aha.jsonl", "a") as aha_log:
        state, last = runtime.run_loop(
            state, step_fn, out=out, ckpt=ckpt, save=save, trainer=cfg.trainer, steps=cfg.trainer.steps,
            start=int(state.step) // g.minibatches,  # one GRPO step = `minibatches` optimizer updates
            desc="grpo", postfix={"reward": ("reward/total", ".2f"), "acc": ("accuracy", ".2f"),
                                  "len": ("response_length_mean", ".0f")})
    summary = {"step": int(state.step) // g.minibatches, "checkpoint": str(ckpt.directory)}
    if cfg.data.path:
        summary.update(data=cfg.data.path, records=len(pool), bad_records=len(bad_records))
    if last:
        summary["step_metrics"] = last
    if runtime.is_lead():
        report.plot_metrics(out)
        summary["report"] = str(report.write_report(out, "R1-Zero run", summary))
    return summary
