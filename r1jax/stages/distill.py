"""Distillation beyond the paper: the student learns from the teacher's distribution, not only
from its samples.

The paper distils by plain SFT on teacher-written samples (`r1jax.stages.lm.sft` on
`r1jax.stages.collect`'s output). Two denser
signals, both from the teacher's log-probs:

- 'logits': on fixed SFT text, the student matches the teacher's next-token distribution (its
  top k, renormalised) at every response token: forward KL(teacher || student), knowledge
  distillation in Hinton's sense (`losses.topk_distill_loss`).
- 'on-policy': the student samples completions of task prompts, the teacher scores every
  sampled token, and the student follows the policy gradient of the sampled reverse
  KL(student || teacher) (`losses.on_policy_distill_loss`). It learns on the states it reaches
  itself, which text written by the teacher never shows it.

Token ids pass between the two models unchanged, so teacher and student must share a tokenizer.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path

import jax
import numpy as np

from r1jax import checkpoint, data, runtime, sampling, train
from r1jax.config import DataConfig, ModelConfig, ModelOverrides, OptimConfig, RolloutConfig, TrainerConfig
from r1jax.model import count_params, forward
from r1jax.stages.grpo import round_up
from r1jax.stages.lm import encode_sft
from r1jax.tasks.datafiles import draw, prompt_pool

__all__ = ["DistillConfig", "distill", "teacher_topk", "check_same_tokenizer"]

MODES = ("logits", "on-policy")


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """A student trained on a frozen teacher's log-probs, from the student's own base (fresh optimizer)."""

    out_dir: str = "runs/distill"
    teacher_dir: str = "runs/r1zero"  # a stage directory: tokenizer.model (or tokenizer.json) and ckpt/
    student_dir: str = "runs/base"  # the student's own base, any size: the same tokenizer, and ckpt/
    mode: str = "on-policy"  # 'logits' (teacher top-k on SFT text) or 'on-policy' (student samples, teacher scores)
    data: str = ""  # logits mode: an SFT JSONL of {"prompt", "response"}
    families: str = "world"  # on-policy mode: task families of the prompts (r1jax.tasks.task_pool)
    n_prompts: int = 4000  # on-policy mode: generated prompts per family (drawn in a seeded order, then reused)
    prompt_data: DataConfig = DataConfig()  # on-policy mode: prompts from a file instead of the generated families
    top_k: int = 16  # logits mode: teacher tokens kept per position
    batch_size: int = 16  # logits mode: packed rows of seq_len tokens; on-policy mode: prompts, one sample each
    seq_len: int = 256  # logits mode
    trainer: TrainerConfig = TrainerConfig(steps=100, checkpoint_every=50)
    optim: OptimConfig = OptimConfig(learning_rate=3e-4, schedule="constant", weight_decay=0.0)
    # rollout.temperature is that of both distributions (and of the student's sampling in on-policy mode)
    rollout: RolloutConfig = RolloutConfig()
    model: ModelOverrides = ModelOverrides()  # the student's execution settings

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"DistillConfig.mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "logits" and not self.data:
            raise ValueError("DistillConfig.data: mode 'logits' needs an SFT JSONL of {\"prompt\", \"response\"}")
        if self.rollout.temperature <= 0 or self.top_k < 1:
            raise ValueError(f"DistillConfig: need rollout.temperature > 0 and top_k >= 1, got "
                             f"temperature={self.rollout.temperature}, top_k={self.top_k}")


def check_same_tokenizer(teacher, student) -> None:
    """Raise ValueError unless two loaded tokenizers are the same tokenizer (same file bytes)."""
    what = "distillation compares token ids, so teacher and student need one tokenizer"
    if teacher.vocab_size != student.vocab_size:
        raise ValueError(f"teacher and student tokenizers differ: {teacher.path} has {teacher.vocab_size} tokens, "
                         f"{student.path} has {student.vocab_size}; {what}")
    if teacher.path.read_bytes() != student.path.read_bytes():
        raise ValueError(f"teacher and student tokenizers differ: {teacher.path} and {student.path} both have "
                         f"{teacher.vocab_size} tokens but are different files; {what}")


def teacher_topk(model_cfg: ModelConfig, params, batch: dict, *, k: int, temperature: float = 1.0,
                 vocab: int | None = None) -> tuple[jax.Array, jax.Array]:
    """The teacher's top-k next-token log-probs and ids [B, T, K] at every position of a text
    batch (as `r1jax.data.lm_batches` makes it; packed rows keep their positions and segments).
    Log-probs are normalised over the teacher's whole vocabulary; only the first `vocab` ids
    (the tokenizer's: a checkpoint's vocabulary may be padded past it) can be chosen."""
    hidden, _ = forward(model_cfg, params, batch["tokens"], batch.get("positions"), mask=batch["mask"],
                        segment_ids=batch.get("segment_ids"), return_hidden=True)
    # the LM head a chunk of positions at a time: never the whole [B, T, V] logits
    def top(logits):
        return tuple(jax.lax.top_k(jax.nn.log_softmax(logits / temperature)[..., :vocab], k))

    return train.head_chunks(model_cfg, params, hidden, top)


def distill(cfg: DistillConfig) -> dict:
    """Train (or resume) a student from `cfg.student_dir` on a frozen teacher from `cfg.teacher_dir`.
    Writes ckpt/, metrics.jsonl, the tokenizer and summary.json in `cfg.out_dir`."""
    out, teacher_dir, student_dir = Path(cfg.out_dir), Path(cfg.teacher_dir), Path(cfg.student_dir)
    teacher_cfg, teacher_tok = runtime.load_stage(teacher_dir)
    student_cfg, tok = runtime.load_stage(student_dir, cfg.model)
    check_same_tokenizer(teacher_tok, tok)
    for who, mc in (("teacher", teacher_cfg), ("student", student_cfg)):
        if mc.vocab_size < tok.vocab_size:
            raise ValueError(f"the {who}'s model has {mc.vocab_size} vocabulary rows, fewer than the "
                             f"{tok.vocab_size} tokens of {tok.path}")
    out.mkdir(parents=True, exist_ok=True)
    runtime.copy_tokenizer(student_dir, out)

    tx = train.make_optimizer(cfg.optim, total_steps=cfg.trainer.steps)
    mesh = runtime.make_mesh(cfg.trainer.mesh)
    state_sh = train.state_shardings(mesh, student_cfg, tx)
    teacher_params = checkpoint.restore_params(teacher_dir / "ckpt", teacher_cfg, mesh)

    # "model" is the student's config, so later stages read this checkpoint like any other stage's
    ckpt = checkpoint.Checkpointer(out / "ckpt", {"model": student_cfg, "teacher_model": teacher_cfg, "distill": cfg})

    def init():
        params = checkpoint.restore_params(student_dir / "ckpt", student_cfg, mesh)
        return jax.jit(lambda p: train.init_state(student_cfg, tx, None, params=p), out_shardings=state_sh)(params)

    state, restored = runtime.resume_or_init(ckpt, train.abstract_state(mesh, student_cfg, tx), init)
    make = _logits_mode if cfg.mode == "logits" else _on_policy_mode
    update, data_state = make(cfg, tok, teacher_cfg, student_cfg, teacher_params, mesh, state_sh, tx,
                              None if restored is None else restored.data_state)

    def step_fn(state, step):
        # every step is logged: the KL curve is what a distillation run is read by, and a
        # teacher forward per step already costs far more than fetching a few scalars
        t0 = time.time()
        state, m = update(state, step)
        m = {k: float(v) for k, v in jax.device_get(m).items()}
        return state, {**m, "learning_rate": cfg.optim.learning_rate, "time_step": time.time() - t0}

    kl_name = "forward_kl" if cfg.mode == "logits" else "reverse_kl"
    state, last = runtime.run_loop(state, step_fn, out=out, ckpt=ckpt,
                                   save=lambda s, next_step: {"data_state": data_state(next_step)},
                                   trainer=cfg.trainer, steps=cfg.trainer.steps, start=int(state.step),
                                   desc=f"distill ({cfg.mode})", postfix={"kl": (kl_name, ".3f")})
    summary = {"step": int(state.step), "mode": cfg.mode, "params": count_params(state.params),
               "teacher_params": count_params(teacher_params), "checkpoint": str(ckpt.directory),
               "tokenizer": str(out / tok.path.name)}
    if last:
        summary["step_metrics"] = last
    runtime.write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _logits_mode(cfg, tok, teacher_cfg, student_cfg, teacher_params, mesh, state_sh, tx, data_state):
    """(step_fn(state, step) -> (state, metrics), data_state(next_step)) for mode 'logits'."""
    encoded = encode_sft(cfg.data, tok, cfg.seq_len, "DistillConfig.seq_len")
    examples, spans = [e for e, _ in encoded], [s for _, s in encoded]
    batches = data.lm_batches(examples, seq_len=cfg.seq_len, batch_size=cfg.batch_size, pad_id=tok.pad_id,
                              seed=cfg.trainer.seed, loss_spans=spans, pack=True)
    iterator = iter(batches)
    if data_state is not None:
        iterator.set_state(data_state)
    example = next(iter(batches))  # a fresh iterator: only its shapes are used
    B, T = example["tokens"].shape
    example.update(teacher_topk_logp=np.zeros((B, T, cfg.top_k), np.float32),
                   teacher_topk_idx=np.zeros((B, T, cfg.top_k), np.int32))
    batch_sh = train.batch_shardings(mesh, example)
    # The teacher's output goes straight into the step, so it is laid out as the step expects.
    topk = jax.jit(functools.partial(teacher_topk, teacher_cfg, k=cfg.top_k, temperature=cfg.rollout.temperature,
                                     vocab=tok.vocab_size),
                   out_shardings=(batch_sh["teacher_topk_logp"], batch_sh["teacher_topk_idx"]))
    update = train.compile_step(functools.partial(train.logit_distill_step, model_cfg=student_cfg, tx=tx,
                                                  temperature=cfg.rollout.temperature), mesh, state_sh, batch_sh)

    def step_fn(state, step):
        # one global array per field (each host holds its rows), read by the teacher and the step alike
        batch = {k: jax.make_array_from_process_local_data(batch_sh[k], v) for k, v in next(iterator).items()}
        with jax.set_mesh(mesh):
            logp, idx = topk(teacher_params, batch)
        return update(state, {**batch, "teacher_topk_logp": logp, "teacher_topk_idx": idx})

    return step_fn, lambda _: iterator.get_state()


def _on_policy_mode(cfg, tok, teacher_cfg, student_cfg, teacher_params, mesh, state_sh, tx, data_state):
    """(step_fn(state, step) -> (state, metrics), data_state(next_step)) for mode 'on-policy'.
    The prompts and the sampling key are functions of the step, so there is no data state to restore."""
    pool, _ = prompt_pool(cfg.prompt_data, cfg.families, cfg.n_prompts, cfg.trainer.seed)
    B, N, P, T = cfg.batch_size, cfg.rollout.max_new_tokens, cfg.rollout.max_prompt_tokens, cfg.rollout.temperature
    # a prompt too long for P fails now, not at the step that draws it
    sampling.prompt_ids(tok, pool, P, cfg.rollout.template)
    sampler = sampling.rollout_sampler(student_cfg, cfg.rollout, tok, mesh=mesh)
    example = {"tokens": np.zeros((B, P + N), np.int32), "mask": np.zeros((B, P + N), bool),
               **{k: np.zeros((B, N), np.float32) for k in ("completion_mask", "old_logp", "teacher_logp")}}
    update = train.compile_step(functools.partial(train.on_policy_distill_step, model_cfg=student_cfg, tx=tx,
                                                  temperature=T),
                                mesh, state_sh, train.batch_shardings(mesh, example, True), batch_is_global=True)
    score = jax.jit(lambda p, t, m, n: train.completion_logprobs(teacher_cfg, p, t, m, n, T)[0], static_argnums=3)
    base_key = jax.random.key(cfg.trainer.seed)

    def step_fn(state, step):
        examples = draw(pool, cfg.trainer.seed, step * B, B)
        key = jax.random.fold_in(base_key, step)
        prompts, pmask, roll, _ = sampling.rollout(sampler, state.params, tok, examples, P, key, cfg.rollout.template)
        lengths = np.asarray(roll.lengths)
        # only the columns some rollout uses, rounded up so that a handful of shapes compile
        n_used, p_used = round_up(int(lengths.max()), N), round_up(int(pmask.sum(1).max()), P)
        cmask = (np.arange(n_used)[None] < lengths[:, None]).astype(np.float32)
        tokens = np.concatenate([prompts[:, P - p_used:], roll.tokens[:, :n_used]], 1)
        mask = np.concatenate([pmask[:, P - p_used:], cmask > 0], 1)
        batch = {"tokens": tokens, "mask": mask, "completion_mask": cmask,
                 "old_logp": np.asarray(roll.logprobs)[:, :n_used],
                 "teacher_logp": sampling.to_host(score(teacher_params, tokens, mask, n_used))}
        state, m = update(state, batch)
        return state, {**m, "response_length_mean": float(lengths.mean()),
                       "truncation_rate": float(np.asarray(roll.truncated).mean())}

    return step_fn, lambda next_step: {"next_prompt": next_step * B}
