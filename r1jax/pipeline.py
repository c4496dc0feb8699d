"""The stages of the recipe, each reading the previous stage's checkpoint.

Stage 0 (this file so far): `pretrain`, which builds the embedded CPU world's base model:
a sentencepiece tokenizer trained on a generated arithmetic corpus and a tiny decoder
pretrained on it with next-token loss. Later stages (GRPO, SFT, distillation) start from
its `ckpt/` directory and `tokenizer.model`.
"""

from __future__ import annotations

import dataclasses
import json
import random
import signal
import time
from pathlib import Path

import jax
import numpy as np
import tqdm

from r1jax import checkpoint, data, sharding, train
from r1jax.config import MeshConfig, ModelConfig, get_preset, override
from r1jax.losses import token_logprobs
from r1jax.model import forward
from r1jax.tokenizer import load_tokenizer, train_sentencepiece

__all__ = ["PretrainConfig", "pretrain", "arithmetic_corpus"]


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    out_dir: str = "runs/base"
    model: str = "tiny"  # a preset name; vocab_size is replaced by the tokenizer's
    vocab_size: int = 512
    steps: int = 300
    batch_size: int = 64
    seq_len: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    checkpoint_every: int = 100
    log_every: int = 10  # steps between metrics.jsonl lines (each one waits for the device)
    n_examples: int = 20000
    seed: int = 0
    mesh: str = ""  # e.g. 'data=2,fsdp=2,tensor=2'; default: all devices on 'data'


def arithmetic_corpus(n: int, seed: int) -> list[str]:
    """Lines 'a op b = c' with a, b < 100: a stand-in world until the task families land."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b, op = rng.randrange(100), rng.randrange(100), rng.choice("+-*")
        c = a + b if op == "+" else a - b if op == "-" else a * b
        lines.append(f"{a} {op} {b} = {c}")
    return lines


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
    lines = arithmetic_corpus(cfg.n_examples, cfg.seed)
    tok_path = out / "tokenizer.model"
    tok = load_tokenizer(tok_path) if tok_path.exists() else train_sentencepiece(lines, tok_path, cfg.vocab_size)
    model_cfg = override(get_preset(cfg.model), vocab_size=tok.vocab_size)
    optim = train.OptimConfig(learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
                              total_steps=cfg.steps, weight_decay=0.01)
    tx = train.make_optimizer(optim)
    mesh = sharding.make_mesh(MeshConfig.parse(cfg.mesh) if cfg.mesh else MeshConfig(data=jax.device_count()))

    # Each line is '<s> a op b = c </s>'; loss on everything, accuracy reported on ' c </s>'.
    examples = [[tok.bos_id, *tok.encode(line), tok.eos_id] for line in lines]
    answer_from = [1 + len(tok.encode(line.split("=")[0] + "=")) for line in lines]
    n_eval = max(len(examples) // 20, 1)
    eval_batch = _pad([e for e in examples[:n_eval]], answer_from[:n_eval], cfg.seq_len, tok.pad_id)
    batches = data.lm_batches(examples[n_eval:], seq_len=cfg.seq_len, batch_size=cfg.batch_size,
                              pad_id=tok.pad_id, seed=cfg.seed)

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

    stop = {"now": False}  # SIGTERM (preemption) and Ctrl-C: save, then exit cleanly
    handlers = {s: signal.signal(s, lambda *_: stop.update(now=True)) for s in (signal.SIGTERM, signal.SIGINT)}
    start_step = int(state.step)
    t0 = time.time()
    try:
        with open(out / "metrics.jsonl", "a") as log, tqdm.tqdm(
                total=cfg.steps, initial=start_step, desc="pretrain", unit="step", dynamic_ncols=True) as bar:
            for step in range(start_step, cfg.steps):
                state, metrics = step_fn(state, next(iterator))
                if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                    m = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    # batches have a similar token count, so the last one stands for the interval
                    elapsed, t0 = max(time.time() - t0, 1e-9), time.time()
                    m.update(step=step + 1, tokens_per_s=m.pop("tokens") * cfg.log_every / elapsed)
                    log.write(json.dumps(m) + "\n")
                    bar.set_postfix(loss=f"{m['loss']:.3f}")
                bar.update(1)
                if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps or stop["now"]:
                    ckpt.save(state, data_state=iterator.get_state())
                if stop["now"]:
                    print(f"\nstopped at step {step + 1}; checkpoint saved, rerun to resume")
                    break
    finally:
        ckpt.close()
        for s, h in handlers.items():
            signal.signal(s, h)
    token_acc, exact = _answer_accuracy(model_cfg, state.params, eval_batch)
    summary = {"step": int(state.step), "params": sum(x.size for x in jax.tree.leaves(state.params)),
               "vocab_size": tok.vocab_size, "heldout_answer_token_accuracy": token_acc,
               "heldout_answer_exact": exact, "checkpoint": str(ckpt.directory), "tokenizer": str(tok_path)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _pad(examples, loss_from, seq_len, pad_id) -> dict:
    return next(iter(data.lm_batches(examples, seq_len=seq_len, batch_size=len(examples), pad_id=pad_id, seed=0,
                                     loss_from=loss_from)))
