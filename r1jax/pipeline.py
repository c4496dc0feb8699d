"""The stages of the recipe, each reading the previous stage's checkpoint.

`pretrain` builds the embedded CPU world's base model: a sentencepiece tokenizer and a small
decoder pretrained on generated documents that answer arithmetic-chain problems in the R1-Zero
template with mixed quality (`STYLES`). `r1_zero` runs GRPO from such a base (or any
checkpoint with a tokenizer). Later stages (SFT, distillation) start from a stage's `ckpt/`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import signal
import time
from pathlib import Path

import jax
import numpy as np
import tqdm

import jax.numpy as jnp

from r1jax import checkpoint, data, losses, report, sampling, sharding, train
from r1jax.config import MeshConfig, ModelConfig, from_dict, get_preset, override
from r1jax.rewards import RewardConfig, compute_rewards
from r1jax.tasks import generate
from r1jax.tokenizer import render_r1_zero
from r1jax.model import forward
from r1jax.tokenizer import load_tokenizer, train_sentencepiece

__all__ = ["PretrainConfig", "pretrain", "world_corpus", "world_response", "R1ZeroConfig", "r1_zero"]


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    out_dir: str = "runs/base"
    model: str = "small"  # a preset name; vocab_size is replaced by the tokenizer's
    vocab_size: int = 512
    steps: int = 600
    batch_size: int = 32
    seq_len: int = 192
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    checkpoint_every: int = 100
    log_every: int = 10  # steps between metrics.jsonl lines (each one waits for the device)
    n_examples: int = 20000
    seed: int = 0
    mesh: str = ""  # e.g. 'data=2,fsdp=2,tensor=2'; default: all devices on 'data'


# How the base's training documents answer a problem, and how often. Like web text, most
# answers are terse or sloppy: short guesses, solutions with a slip, broken formats; careful
# step-by-step work is a minority and self-correction ("wait, let me check") is rare.
STYLES = {"steps": 0.20, "guess": 0.25, "slip": 0.15, "reflect": 0.05, "broken": 0.35}


def world_response(ex, rng: random.Random) -> tuple[str, str]:
    """(style, response text after "Assistant:") for an `arithmetic_chain` example."""
    steps = ex.metadata["steps"]
    answer = int(ex.answer)
    style = rng.choices(list(STYLES), weights=list(STYLES.values()))[0]
    line = lambda l, op, r, res: f"{l} {op} {r} = {res}."  # noqa: E731

    def worked(slip_at=None, fix=False):
        lines, value = [], steps[0][0]
        for k, (_, op, r, res) in enumerate(steps):
            true = value + r if op == "+" else value - r if op == "-" else value * r
            if k == slip_at:
                wrong = true + rng.choice([-10, -2, -1, 1, 2, 10])
                lines.append(line(value, op, r, wrong))
                if fix:
                    lines.append(f"Wait, let me check: {value} {op} {r} = {true}, not {wrong}.")
                else:
                    true = wrong
            else:
                lines.append(line(value, op, r, true))
            value = true
        return " ".join(lines), value

    if style == "steps":
        text, value = worked()
        return style, f"<think> {text} </think> <answer> {value} </answer>"
    if style == "guess":
        g = answer if rng.random() < 0.25 else answer + rng.choice([-20, -10, -5, -3, -1, 1, 3, 5, 10, 20])
        return style, f"<think> It is about {g}. </think> <answer> {g} </answer>"
    if style in ("slip", "reflect"):
        text, value = worked(slip_at=rng.randrange(len(steps)), fix=style == "reflect")
        return style, f"<think> {text} </think> <answer> {value} </answer>"
    text, value = worked() if rng.random() < 0.5 else ("", answer + rng.choice([-5, -1, 1, 5]))
    form = rng.choice(["The answer is {v}.", "<think> {t} </think> {v}", "<answer> {v} </answer>", "{t} So {v}."])
    return style, form.format(t=text, v=value).strip()


def world_corpus(n: int, seed: int) -> list[tuple[str, str]]:
    """(prompt in the R1-Zero template, response) documents of the embedded world."""
    rng = random.Random(seed + 1)
    return [(render_r1_zero(ex.prompt), world_response(ex, rng)[1]) for ex in generate("chain", n, seed)]


def _answer_accuracy(cfg: ModelConfig, params, batch: dict) -> tuple[float, float]:
    """Teacher-forced greedy accuracy on answer tokens: (per token, whole answer exact)."""
    logits, _ = jax.jit(lambda p, t, m: forward(cfg, p, t, mask=m))(params, batch["tokens"], batch["mask"])
    pred = np.asarray(logits[:, :-1].argmax(-1))
    target, lm = batch["tokens"][:, 1:], batch["loss_mask"][:, 1:] > 0
    right = (pred == target) | ~lm
    return float((right & lm).sum() / lm.sum()), float(right.all(axis=1).mean())


def pretrain(cfg: PretrainConfig) -> dict:
    """Train (or resume) the tokenizer and base model of the embedded world. Returns a summary."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = world_corpus(cfg.n_examples, cfg.seed)
    tok_path = out / "tokenizer.model"
    tok = load_tokenizer(tok_path) if tok_path.exists() else train_sentencepiece(
        [p + " " + r for p, r in docs[:5000]], tok_path, cfg.vocab_size)
    model_cfg = override(get_preset(cfg.model), vocab_size=tok.vocab_size)
    optim = train.OptimConfig(learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
                              total_steps=cfg.steps, weight_decay=0.01)
    tx = train.make_optimizer(optim)
    mesh = sharding.make_mesh(MeshConfig.parse(cfg.mesh) if cfg.mesh else MeshConfig(data=jax.device_count()))

    # '<s> prompt response </s>' with the loss on the response only (the base learns to answer,
    # not to imitate the template), which is also what the accuracy below is measured on.
    examples = [[tok.bos_id, *tok.encode(p), *tok.encode(" " + r), tok.eos_id] for p, r in docs]
    answer_from = [1 + len(tok.encode(p)) for p, _ in docs]
    n_eval = max(len(examples) // 20, 1)
    eval_batch = _pad([e for e in examples[:n_eval]], answer_from[:n_eval], cfg.seq_len, tok.pad_id)
    batches = data.lm_batches(examples[n_eval:], seq_len=cfg.seq_len, batch_size=cfg.batch_size,
                              pad_id=tok.pad_id, seed=cfg.seed, loss_from=answer_from[n_eval:])

    ckpt = checkpoint.Checkpointer(out / "ckpt", {"model": model_cfg, "optim": optim, "pretrain": cfg})
    state_sh = train.state_shardings(mesh, model_cfg, tx)
    restored = ckpt.restore(train.abstract_state(mesh, model_cfg, tx))
    iterator = iter(batches)
    if restored is None:
        state = jax.jit(lambda k: train.init_state(model_cfg, tx, k), out_shardings=state_sh)(
            jax.random.key(cfg.seed))
    else:
        state = restored.state
        iterator.set_state(restored.data_state)
        print(f"resumed from {ckpt.directory}/{restored.step}")
    example_batch = next(iter(batches))  # a fresh iterator: only its shapes are used
    step_fn = train.compile_step(lambda s, b: train.lm_train_step(s, b, model_cfg=model_cfg, tx=tx),
                                 mesh, state_sh, train.batch_shardings(mesh, example_batch))

    start_step = int(state.step)
    writer = report.MetricsWriter(out)
    t0 = time.time()
    try:
        with _stop_on_signals() as stop, tqdm.tqdm(
                total=cfg.steps, initial=start_step, desc="pretrain", unit="step", dynamic_ncols=True) as bar:
            for step in range(start_step, cfg.steps):
                state, metrics = step_fn(state, next(iterator))
                if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                    m = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    # batches have a similar token count, so the last one stands for the interval
                    elapsed, t0 = max(time.time() - t0, 1e-9), time.time()
                    m.update(tokens_per_s=m.pop("tokens") * cfg.log_every / elapsed)
                    writer.write(step + 1, m)
                    bar.set_postfix(loss=f"{m['loss']:.3f}")
                bar.update(1)
                if _end_of_step(step, cfg.steps, cfg.checkpoint_every, stop,
                                lambda: ckpt.save(state, data_state=iterator.get_state())):
                    break
    finally:
        ckpt.close()
        writer.close()
    token_acc, exact = _answer_accuracy(model_cfg, state.params, eval_batch)
    summary = {"step": int(state.step), "params": sum(x.size for x in jax.tree.leaves(state.params)),
               "vocab_size": tok.vocab_size, "heldout_answer_token_accuracy": token_acc,
               "heldout_answer_exact": exact, "checkpoint": str(ckpt.directory), "tokenizer": str(tok_path)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _end_of_step(step: int, total: int, every: int, stop: dict, save) -> bool:
    """Save when a checkpoint is due or a signal asked to stop; True if the loop must end."""
    if (step + 1) % every == 0 or step + 1 == total or stop["now"]:
        save()
    if stop["now"]:
        print(f"\nstopped at step {step + 1}; checkpoint saved, rerun to resume")
    return stop["now"]


@contextlib.contextmanager
def _stop_on_signals():
    """A flag set by SIGTERM (preemption) or Ctrl-C, so a loop can save, then exit cleanly."""
    stop = {"now": False}
    handlers = {s: signal.signal(s, lambda *_: stop.update(now=True)) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)


def _pad(examples, loss_from, seq_len, pad_id) -> dict:
    return next(iter(data.lm_batches(examples, seq_len=seq_len, batch_size=len(examples), pad_id=pad_id, seed=0,
                                     loss_from=loss_from)))


@dataclasses.dataclass(frozen=True)
class R1ZeroConfig:
    """GRPO from a base model with rule rewards only (DeepSeek-R1-Zero). Paper settings, for
    reference: lr 3e-6, beta 0.001, 16 samples a question, temperature 1, 32 questions a step,
    reference refreshed every 400 steps, 16 mini-batches (policy updates) per rollout."""

    out_dir: str = "runs/r1zero"
    base_dir: str = "runs/base"  # a `pretrain` output: tokenizer.model and ckpt/
    families: str = "chain"  # comma-separated task families (r1jax.tasks.FAMILIES)
    n_train: int = 4000  # generated training problems (drawn in a seeded order, then reused)
    steps: int = 50
    prompts_per_step: int = 16
    group_size: int = 16
    minibatches: int = 4  # policy updates per rollout
    learning_rate: float = 1e-4
    beta: float = 0.001  # 0 runs no reference model at all
    ref_refresh: int = 400  # replace the reference by the policy every this many steps
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 80
    max_prompt_tokens: int = 112
    eps_low: float = 0.2
    eps_high: float = 0.2
    kl_estimator: str = "k3"
    agg: str = "seq-mean-token-mean"
    adv_scale: str = "group"
    drop_zero_variance: bool = False  # mask out groups whose rewards are all equal
    truncation: str = "keep"  # 'keep', 'mask' (no gradient from outputs cut at max_new_tokens) or 'penalty'
    overlong_buffer: int = 8  # 'penalty': reward falls linearly to -1 over the last this many tokens
    reward_weights: str = "accuracy=1,format=1"
    checkpoint_every: int = 25
    sample_every: int = 10
    seed: int = 0
    mesh: str = ""

    def __post_init__(self):
        if self.truncation not in ("keep", "mask", "penalty"):
            raise ValueError(f"R1ZeroConfig.truncation must be keep, mask or penalty, got {self.truncation!r}")
        if (self.prompts_per_step * self.group_size) % self.minibatches:
            raise ValueError(f"prompts_per_step * group_size = {self.prompts_per_step * self.group_size} rollouts "
                             f"do not split into {self.minibatches} mini-batches")

    def rewards(self) -> RewardConfig:
        pairs = [p.split("=") for p in self.reward_weights.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f"R1ZeroConfig.reward_weights {self.reward_weights!r}: expected 'name=w,name=w'")
        return RewardConfig(weights=tuple((k.strip(), float(v)) for k, v in pairs))


def overlong_penalty(lengths: np.ndarray, max_new: int, buffer: int) -> np.ndarray:
    """DAPO's soft overlong punishment, in tokens: 0 up to max_new - buffer, then linear to -1."""
    return -np.clip((lengths - (max_new - buffer)) / max(buffer, 1), 0.0, 1.0)


def r1_zero(cfg: R1ZeroConfig) -> dict:
    """Run (or resume) GRPO from `cfg.base_dir`. Writes metrics.jsonl, samples.jsonl and ckpt/."""
    out, base = Path(cfg.out_dir), Path(cfg.base_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(base / "tokenizer.model")
    model_cfg = from_dict(ModelConfig, checkpoint.read_run_config(base / "ckpt")["model"])
    reward_cfg = cfg.rewards()
    grpo = train.GRPOConfig(eps_low=cfg.eps_low, eps_high=cfg.eps_high, beta=cfg.beta, kl_estimator=cfg.kl_estimator,
                            agg=cfg.agg, max_len=cfg.max_new_tokens, temperature=cfg.temperature)
    tx = train.make_optimizer(train.OptimConfig(learning_rate=cfg.learning_rate, warmup_steps=0, schedule="constant",
                                                weight_decay=0.0, total_steps=cfg.steps))
    mesh = sharding.make_mesh(MeshConfig.parse(cfg.mesh) if cfg.mesh else MeshConfig(data=jax.device_count()))
    state_sh = train.state_shardings(mesh, model_cfg, tx)

    pool = [ex for fam in cfg.families.split(",") for ex in generate(fam.strip(), cfg.n_train, cfg.seed)]
    order = np.random.default_rng(cfg.seed).permutation(len(pool))
    Q, G, N, P = cfg.prompts_per_step, cfg.group_size, cfg.max_new_tokens, cfg.max_prompt_tokens
    sampler = sampling.make_sampler(model_cfg, sampling.SamplingConfig(
        max_new_tokens=N, temperature=cfg.temperature, top_p=cfg.top_p, stop_tokens=(tok.eos_id,),
        pad_id=tok.pad_id), mesh=mesh, group_size=G)

    ckpt = checkpoint.Checkpointer(out / "ckpt", {"model": model_cfg, "r1_zero": cfg})
    restored = ckpt.restore(train.abstract_state(mesh, model_cfg, tx), with_ref=cfg.beta > 0) \
        if ckpt.latest_step() is not None else None
    if restored is None:
        params = checkpoint.restore_params(base / "ckpt", model_cfg, mesh)
        state = jax.jit(lambda p: train.init_state(model_cfg, tx, None, params=p), out_shardings=state_sh)(params)
        ref_params = jax.tree.map(jnp.copy, state.params) if cfg.beta else None
    else:
        state, ref_params = restored.state, restored.ref_params
        print(f"resumed from {ckpt.directory}/{restored.step}")

    B = Q * G
    mb_example = {"tokens": np.zeros((B // cfg.minibatches, P + N), np.int32),
                  "mask": np.zeros((B // cfg.minibatches, P + N), bool),
                  "completion_mask": np.zeros((B // cfg.minibatches, N), np.float32),
                  "old_logp": np.zeros((B // cfg.minibatches, N), np.float32),
                  "ref_logp": np.zeros((B // cfg.minibatches, N), np.float32),
                  "advantages": np.zeros((B // cfg.minibatches,), np.float32)}
    update = train.compile_step(lambda s, b: train.grpo_train_step(s, b, model_cfg=model_cfg, tx=tx, cfg=grpo),
                                mesh, state_sh, train.batch_shardings(mesh, mb_example))
    ref_logp_fn = jax.jit(lambda p, t, m: train.completion_logprobs(model_cfg, p, t, m, N, cfg.temperature)[0])

    start = int(state.step) // cfg.minibatches  # one GRPO step = `minibatches` optimizer updates
    writer = report.MetricsWriter(out)
    base_key = jax.random.key(cfg.seed)
    summary: dict = {}
    try:
        with _stop_on_signals() as stop, open(out / "samples.jsonl", "a") as samples_log, \
                open(out / "aha.jsonl", "a") as aha_log, tqdm.tqdm(
                    total=cfg.steps, initial=start, desc="r1-zero", unit="step", dynamic_ncols=True) as bar:
            for step in range(start, cfg.steps):
                t0 = time.time()
                key = jax.random.fold_in(base_key, step)  # the RNG stream is a function of the step: resumable
                examples = [pool[order[(step * Q + i) % len(pool)]] for i in range(Q)]
                prompt_ids = [[tok.bos_id, *tok.encode(render_r1_zero(ex.prompt))][-P:] for ex in examples]
                prompts, pmask = tok.pad_batch(prompt_ids, length=P)
                roll = jax.device_get(sampler(state.params, prompts, pmask, key))
                t_sample = time.time() - t0

                t1 = time.time()
                lengths = np.asarray(roll.lengths)
                texts = [tok.decode([t for t in row[:n] if t != tok.eos_id]) for row, n in zip(roll.tokens, lengths)]
                group_examples = [ex for ex in examples for _ in range(G)]
                rewards = compute_rewards(texts, group_examples, reward_cfg)
                total = rewards["total"].copy()
                if cfg.truncation == "penalty":
                    total += overlong_penalty(lengths, N, cfg.overlong_buffer)
                adv = np.asarray(losses.group_advantages(jnp.asarray(total), G, cfg.adv_scale))
                cmask = (np.arange(N)[None] < lengths[:, None]).astype(np.float32)
                if cfg.truncation == "mask":
                    cmask[np.asarray(roll.truncated)] = 0.0
                if cfg.drop_zero_variance:
                    flat = total.reshape(Q, G)
                    cmask[np.repeat(flat.std(1) == 0, G)] = 0.0
                tokens = np.concatenate([np.repeat(prompts, G, 0), np.asarray(roll.tokens)], 1)
                mask = np.concatenate([np.repeat(pmask, G, 0), cmask > 0], 1)
                batch = {"tokens": tokens, "mask": mask, "completion_mask": cmask,
                         "old_logp": np.asarray(roll.logprobs), "advantages": adv.astype(np.float32)}
                batch["ref_logp"] = (np.asarray(ref_logp_fn(ref_params, tokens, mask)) if cfg.beta
                                     else np.zeros_like(batch["old_logp"]))
                t_reward = time.time() - t1

                t2 = time.time()
                perm = np.random.default_rng([cfg.seed, step]).permutation(B)
                step_metrics = []
                for mb in np.split(perm, cfg.minibatches):
                    state, m = update(state, {k: v[mb] for k, v in batch.items()})
                    step_metrics.append(m)
                step_metrics = jax.device_get(step_metrics)
                t_update = time.time() - t2
                if cfg.beta and (step + 1) % cfg.ref_refresh == 0:
                    ref_params = jax.tree.map(jnp.copy, state.params)

                m = {k: float(np.mean([x[k] for x in step_metrics])) for k in step_metrics[0]}
                m.update({f"reward/{k}": float(v.mean()) for k, v in rewards.items()})
                n_tok = int(lengths.sum())
                reflective = np.array([report.reflection_count(t) > 0 for t in texts])
                m.update(accuracy=float(rewards.get("accuracy", np.zeros(1)).mean()),
                         reflection_rate=float(reflective.mean()),
                         response_length_mean=float(lengths.mean()), response_length_max=int(lengths.max()),
                         truncation_rate=float(np.asarray(roll.truncated).mean()), learning_rate=cfg.learning_rate,
                         tokens_per_s=n_tok / max(time.time() - t0, 1e-9), time_sample=t_sample,
                         time_reward=t_reward, time_update=t_update)
                writer.write(step + 1, m)
                correct = rewards.get("accuracy", np.zeros(B))
                for i in np.flatnonzero(reflective & (correct > 0))[:2]:  # candidate "aha" moments
                    aha_log.write(json.dumps({"step": step + 1, "prompt": group_examples[i].prompt,
                                              "answer": group_examples[i].answer, "completion": texts[i]}) + "\n")
                if step % cfg.sample_every == 0 or step + 1 == cfg.steps:
                    for i in range(0, B, G):  # the first sample of every prompt
                        samples_log.write(json.dumps({"step": step + 1, "prompt": examples[i // G].prompt,
                                                      "answer": examples[i // G].answer, "completion": texts[i],
                                                      **{k: float(v[i]) for k, v in rewards.items()}}) + "\n")
                bar.set_postfix(reward=f"{m['reward/total']:.2f}", acc=f"{m['accuracy']:.2f}",
                                len=f"{m['response_length_mean']:.0f}")
                bar.update(1)
                summary = {"step_metrics": m}
                if _end_of_step(step, cfg.steps, cfg.checkpoint_every, stop, lambda: ckpt.save(
                        state, rng=key, data_state={"next_prompt": (step + 1) * Q}, ref_params=ref_params)):
                    break
    finally:
        ckpt.close()
        writer.close()
    summary = {"step": int(state.step) // cfg.minibatches, "checkpoint": str(ckpt.directory), **summary}
    if jax.process_index() == 0:
        report.plot_metrics(out)
        summary["report"] = str(report.write_report(out, "R1-Zero run", summary))
    return summary
