"""Language-model stages: `pretrain` (the embedded world's tokenizer and base model) and `sft`
(supervised fine-tuning: R1's cold start, stage 5, and the paper's distillation by SFT).

Both train next-token prediction on '<s> prompt response </s>' documents, loss on the
response only, packed into rows with per-document attention (a grain pipeline), resumable.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import numpy as np

from r1jax import checkpoint, data, runtime, sampling, train
from r1jax.config import (
    PROMPT_TEMPLATES,
    ModelConfig,
    ModelOverrides,
    OptimConfig,
    TrainerConfig,
    apply_overrides,
    get_preset,
    override,
)
from r1jax.model import forward
from r1jax.tasks.sft import read_sft_jsonl
from r1jax.tasks.world import world_corpus
from r1jax.tokenizer import R1_ZERO_TEMPLATE, load_tokenizer, render_prompt, train_sentencepiece

__all__ = ["PretrainConfig", "pretrain", "SFTConfig", "sft", "encode_doc", "encode_chat", "encode_sft", "train_lm"]


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """The embedded world's base: a sentencepiece tokenizer and a decoder pretrained on the world's corpus."""

    out_dir: str = "runs/base"
    preset: str = "small"  # a model preset (r1jax.config.PRESETS); vocab_size is replaced by the tokenizer's
    vocab_size: int = 512
    batch_size: int = 16  # rows of seq_len tokens, each packed with several documents
    seq_len: int = 256
    n_examples: int = 20000  # documents of the world's corpus
    language: str = "en"  # the world problems' language: en, zh or both (the R1 pipeline's bilingual world)
    tokenizer: str = ""  # an existing tokenizer.model to reuse (a student shares its teacher's)
    trainer: TrainerConfig = TrainerConfig(steps=600, checkpoint_every=100, log_every=10)
    optim: OptimConfig = OptimConfig(learning_rate=3e-3, warmup_steps=30, weight_decay=0.01)
    model: ModelOverrides = ModelOverrides()


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    """Supervised fine-tuning on a JSONL of {"prompt", "response"} (r1jax.tasks.sft): the R1
    cold start (stage 2), SFT on rejection-sampled data (stage 5) and the paper's distillation
    (a student on its teacher's samples). Prompts are rendered in the R1-Zero template."""

    out_dir: str = "runs/sft"
    init_dir: str = "runs/base"  # a stage directory (tokenizer + ckpt/) whose parameters are fine-tuned
    data: str = "runs/sft.jsonl"
    epochs: float = 2.0  # the paper fine-tunes 2-3 epochs; sets the steps when trainer.steps is 0
    batch_size: int = 16  # rows of seq_len tokens, packed with documents
    seq_len: int = 256
    template: str = "r1-zero"  # how a prompt is written: r1-zero, r1-chat, model (its chat template), none
    trainer: TrainerConfig = TrainerConfig(steps=0, checkpoint_every=100, log_every=10)
    # warmup over at most a tenth of the steps: a small set gives few
    optim: OptimConfig = OptimConfig(learning_rate=1e-3, warmup_steps=10, weight_decay=0.01)
    model: ModelOverrides = ModelOverrides()

    def __post_init__(self):
        if self.template not in PROMPT_TEMPLATES:
            raise ValueError(f"SFTConfig.template must be one of {', '.join(PROMPT_TEMPLATES)}, got {self.template!r}")
        if self.batch_size < 1 or self.seq_len < 1 or not self.epochs > 0:
            raise ValueError(f"SFTConfig: batch_size and seq_len must be >= 1 and epochs > 0, got batch_size="
                             f"{self.batch_size}, seq_len={self.seq_len}, epochs={self.epochs}")


Encoded = tuple[list[int], list[tuple[int, int]]]  # a document's token ids, the [start, end) spans trained on


def encode_doc(tok, prompt: str, response: str) -> Encoded:
    """A training document '<s> prompt response </s>' (the prompt already in its template; '<s>'
    only if the tokenizer has one) as token ids, and its response span: the loss covers the
    response and '</s>' (the model learns to answer, not to imitate the template)."""
    head = [*tok.bos, *tok.encode(prompt)]
    ids = [*head, *tok.encode(" " + response), tok.eos_id]
    return ids, [(len(head), len(ids))]


def encode_chat(tok, messages: list[dict]) -> Encoded:
    """A conversation as the model's chat template writes it, and the token spans of its assistant
    turns: the loss covers what the assistant says (and its end-of-turn marker) in every turn,
    never the system or user text. Each piece is tokenized on its own, so a span's tokens never
    straddle a turn boundary."""
    text, char_spans = tok.chat_template.assistant_spans(messages)
    ids, spans, at = [], [], 0
    for start, end in char_spans:
        ids += tok.encode(text[at:start])
        first = len(ids)
        ids += tok.encode(text[start:end])
        spans.append((first, len(ids)))
        at = end
    return ids + tok.encode(text[at:]) if text[at:] else ids, spans


def encode_sft(path: str | Path, tok, seq_len: int, field: str, template: str = "r1-zero") -> list[Encoded]:
    """Every record of an SFT set (`r1jax.tasks.sft`) as a training document: the prompt in
    `template` then the response (`encode_doc`), or with template 'model' the model's chat
    template's turns (`encode_chat`: a user turn and the answer, or a whole multi-turn
    conversation). An error naming file:line and `field` if any is longer than `seq_len`, or
    naming the line of a conversation when the template is not 'model'."""
    records = read_sft_jsonl(path)
    if template == "model":
        render_prompt(tok, "", "model")  # a tokenizer without a chat template is an error here
        encoded = [encode_chat(tok, r.get("messages") or [{"role": "user", "content": r["prompt"]},
                                                          {"role": "assistant", "content": r["response"]}])
                   for r in records]
    else:
        talks = [i for i, r in enumerate(records) if "messages" in r]
        if talks:
            raise ValueError(f"{path}:{talks[0] + 1}: a multi-turn conversation ({len(talks)} in the set) needs the "
                             f"model's chat template (template 'model'), not {template!r}")
        encoded = [encode_doc(tok, render_prompt(tok, r["prompt"], template), r["response"]) for r in records]
    too_long = [i for i, (e, _) in enumerate(encoded) if len(e) > seq_len]
    if too_long:
        raise ValueError(f"{path}:{too_long[0] + 1}: {len(encoded[too_long[0]][0])} tokens, longer than "
                         f"{field}={seq_len} ({len(too_long)} such records)")
    return encoded


EVAL_DOCS = 256  # held-out documents the answer accuracy is scored on


def answer_accuracy(cfg: ModelConfig, params, batch: dict, rows: int = 64) -> tuple[float, float]:
    """Teacher-forced greedy accuracy on answer tokens: (per token, whole answer exact). Runs
    `rows` rows at a time: the logits and attention of a thousand rows would take gigabytes."""
    predict = jax.jit(lambda p, t, m: forward(cfg, p, t, mask=m)[0][:, :-1].argmax(-1))
    pred = np.concatenate([sampling.to_host(predict(params, batch["tokens"][i:i + rows], batch["mask"][i:i + rows]))
                           for i in range(0, len(batch["tokens"]), rows)])
    target, lm = batch["tokens"][:, 1:], batch["loss_mask"][:, 1:] > 0
    right = (pred == target) | ~lm
    return float((right & lm).sum() / lm.sum()), float(right.all(axis=1).mean())


def train_lm(out: Path, run_config: dict, model_cfg: ModelConfig, tok, encoded: list[Encoded], *,
             steps: int, batch_size: int, seq_len: int, trainer: TrainerConfig, optim: OptimConfig,
             init_ckpt: Path | None, desc: str) -> dict:
    """Next-token training on `encode_doc` documents (a twentieth held out, at most EVAL_DOCS of
    it scored for the answer accuracy), from random weights (`init_ckpt` None: pretraining) or
    `init_ckpt`'s parameters."""
    tx = train.make_optimizer(optim, total_steps=steps)
    mesh = runtime.make_mesh(trainer.mesh)
    examples, spans = [e for e, _ in encoded], [s for _, s in encoded]
    n_eval = max(len(examples) // 20, 1)
    # scored on at most EVAL_DOCS of them: a sample's standard error is under 3 points, and
    # scoring the world's 1,000 took a tiny model 17 s a stage on a CPU, more than its SFT
    n_score = min(n_eval, EVAL_DOCS)
    eval_batch = next(iter(data.lm_batches(examples[:n_score], seq_len=seq_len, batch_size=n_score, pad_id=tok.pad_id,
                                           seed=0, loss_spans=spans[:n_score], split_hosts=False)))
    batches = data.lm_batches(examples[n_eval:], seq_len=seq_len, batch_size=batch_size, pad_id=tok.pad_id,
                              seed=trainer.seed, loss_spans=spans[n_eval:], pack=True)

    ckpt = checkpoint.Checkpointer(out / "ckpt", {"model": model_cfg, "optim": optim, **run_config})
    state_sh = train.state_shardings(mesh, model_cfg, tx)
    def init():  # random weights (pretraining) or init_ckpt's parameters (SFT)
        if init_ckpt is None:
            return jax.jit(lambda k: train.init_state(model_cfg, tx, k), out_shardings=state_sh)(
                jax.random.key(trainer.seed))
        params = checkpoint.restore_params(init_ckpt, model_cfg, mesh)
        return jax.jit(lambda p: train.init_state(model_cfg, tx, None, params=p), out_shardings=state_sh)(params)

    state, restored = runtime.resume_or_init(ckpt, train.abstract_state(mesh, model_cfg, tx), init)
    iterator = iter(batches)
    if restored is not None:
        iterator.set_state(restored.data_state)
    example_batch = next(iter(batches))  # a fresh iterator: only its shapes are used
    update = train.compile_step(lambda s, b: train.lm_train_step(s, b, model_cfg=model_cfg, tx=tx),
                                mesh, state_sh, train.batch_shardings(mesh, example_batch))

    state, _ = runtime.run_loop(state, lambda s, _: update(s, next(iterator)), out=out, ckpt=ckpt,
                                save=lambda s, _: {"data_state": iterator.get_state()}, trainer=trainer,
                                steps=steps, start=int(state.step), desc=desc, postfix={"loss": ("loss", ".3f")},
                                rate=("tokens", "tokens_per_s"))
    token_acc, exact = answer_accuracy(model_cfg, state.params, eval_batch)
    summary = {"step": int(state.step), "params": sum(x.size for x in jax.tree.leaves(state.params)),
               "vocab_size": tok.vocab_size, "heldout_answer_token_accuracy": token_acc,
               "heldout_answer_exact": exact, "checkpoint": str(ckpt.directory)}
    runtime.write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def pretrain(cfg: PretrainConfig) -> dict:
    """Train (or resume) the tokenizer and base model of the embedded world. Returns a summary."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = world_corpus(cfg.n_examples, cfg.trainer.seed, cfg.language)
    tok_path = out / "tokenizer.model"
    if not tok_path.exists() and runtime.is_lead():  # one process writes it, every process reads it
        if cfg.tokenizer:  # a student shares its teacher's tokenizer
            shutil.copyfile(cfg.tokenizer, tok_path)
        else:  # the template around the question is one piece each side: the same words in every
            # prompt would otherwise be most of every sequence on a CPU
            head, tail = R1_ZERO_TEMPLATE.split("{prompt}")
            train_sentencepiece([p + " " + r for p, r in docs[:5000]], tok_path, cfg.vocab_size,
                                extra_symbols=(head, tail))
    runtime.barrier("r1jax:tokenizer")
    tok = load_tokenizer(tok_path)
    model_cfg = apply_overrides(override(get_preset(cfg.preset), vocab_size=tok.vocab_size), cfg.model)
    summary = train_lm(out, {"pretrain": cfg}, model_cfg, tok, [encode_doc(tok, p, r) for p, r in docs],
                       steps=cfg.trainer.steps, batch_size=cfg.batch_size, seq_len=cfg.seq_len, trainer=cfg.trainer,
                       optim=cfg.optim, init_ckpt=None, desc="pretrain")
    summary["tokenizer"] = str(tok_path)
    runtime.write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def sft(cfg: SFTConfig) -> dict:
    """Fine-tune (or resume) `init_dir`'s model on `data`; writes `out_dir` (tokenizer + ckpt/)."""
    out, init = Path(cfg.out_dir), Path(cfg.init_dir)
    model_cfg, tok = runtime.load_stage(init, cfg.model, out)
    encoded = encode_sft(cfg.data, tok, cfg.seq_len, "SFTConfig.seq_len", cfg.template)
    lengths = [len(e) for e, _ in encoded]
    rows = data.count_rows(lengths[max(len(encoded) // 20, 1):], cfg.seq_len, cfg.trainer.seed, pack=True)
    if rows < cfg.batch_size:
        raise ValueError(f"{cfg.data}: {len(encoded)} records (a twentieth held out) pack into {rows} rows of "
                         f"{cfg.seq_len} tokens, fewer than one batch: lower SFTConfig.batch_size ({cfg.batch_size})")
    steps = cfg.trainer.steps or max(1, round(cfg.epochs * rows / cfg.batch_size))
    optim = dataclasses.replace(cfg.optim, warmup_steps=min(cfg.optim.warmup_steps, steps // 10))
    summary = train_lm(out, {"sft": cfg}, model_cfg, tok, encoded, steps=steps, batch_size=cfg.batch_size,
                       seq_len=cfg.seq_len, trainer=cfg.trainer, optim=optim, init_ckpt=init / "ckpt", desc="sft")
    summary.update(records=len(encoded), epochs=cfg.epochs, steps=steps)
    runtime.write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary
