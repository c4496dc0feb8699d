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
import re
import shutil
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
from r1jax.rewards.format import split_reasoning
from r1jax.rewards.language import cot_of, count_words, language_consistency
from r1jax.rewards.readability import readability_issues
from r1jax.tasks import generate, general_prompts, preference_pairs
from r1jax.tokenizer import R1_ZERO_TEMPLATE, render_cold_start, render_r1_zero
from r1jax.model import forward
from r1jax.tokenizer import load_tokenizer, train_sentencepiece

__all__ = ["PretrainConfig", "pretrain", "world_corpus", "world_response", "encode_doc", "R1ZeroConfig", "r1_zero", "rollout",
           "evaluate_policy", "WorldConfig", "world"]


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    out_dir: str = "runs/base"
    model: str = "small"  # a preset name; vocab_size is replaced by the tokenizer's
    vocab_size: int = 512
    steps: int = 600
    batch_size: int = 16  # rows of seq_len tokens, each packed with several documents
    seq_len: int = 256
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    checkpoint_every: int = 100
    log_every: int = 10  # steps between metrics.jsonl lines (each one waits for the device)
    n_examples: int = 20000
    language: str = "en"  # the world problems' language: en, zh or both (the R1 pipeline's bilingual world)
    tokenizer: str = ""  # an existing tokenizer.model to reuse (a student shares its teacher's)
    seed: int = 0
    mesh: str = ""  # e.g. 'data=2,fsdp=2,tensor=2'; default: all devices on 'data'


# How the base's training documents answer a problem, and how often. Like web text, most
# answers are terse or sloppy: half are guesses, and worked solutions often carry an uncaught
# slip. A few writers re-check every step by counting ("Wait, let me check: 14 + 4: 15, 16,
# 17, 18.") and fix what was wrong. Counting is slower but a small model gets it right far
# more often than a step done at once, so RL has a reason to favour long, reflective answers.
STYLES = {"guess": 0.50, "direct": 0.30, "check": 0.20}
SLIP_RATE = {"direct": 0.3, "check": 0.4}  # per step
# Independently of the style, a third of the documents end without the answer tags.
ENDINGS = {"en": {" <answer> {v} </answer>": 0.65, " {v}": 0.20, " The answer is {v}.": 0.15},
           "zh": {" <answer> {v} </answer>": 0.65, " {v}": 0.20, " 答案是 {v}。": 0.15}}
SLIPS = (-10, -2, -1, 1, 2, 10)
# The words of the chain of thought in each language. Numbers are not words, so a CoT of bare
# steps has none; guesses and re-checks carry the language.
PHRASES = {"en": {"guess": "It is about {v}.", "check": " Wait, let me check: {step}: {count}. So {true}",
                  "right": ".", "wrong": ", not {shown}."},
           "zh": {"guess": "大约是 {v}。", "check": " 等等，检查一下：{step}：{count}。所以是 {true}",
                  "right": "。", "wrong": "，不是 {shown}。"}}
# Writers answering in Chinese re-check in English this often, as R1-Zero's CoT mixes languages
# (a whole re-check sentence switches, so the mixing is visible to `language_consistency`).
MIX_RATE = 0.4


def world_response(ex, rng: random.Random) -> tuple[str, str]:
    """(style, response text after "Assistant:") for a `world` (or + / - `chain`) example, in
    the problem's language (metadata['language'], default English)."""
    steps, lang = ex.metadata["steps"], ex.metadata.get("language", "en")
    style = rng.choices(list(STYLES), weights=list(STYLES.values()))[0]
    endings = ENDINGS[lang]
    ending = rng.choices(list(endings), weights=list(endings.values()))[0]
    if style == "guess":
        answer = int(ex.answer)
        value = answer if rng.random() < 0.2 else answer + rng.choice(SLIPS)
        return style, f"<think> {PHRASES[lang]['guess'].format(v=value)} </think>" + ending.format(v=value)
    check_lang = "en" if lang == "zh" and style == "check" and rng.random() < MIX_RATE else lang
    lines, value = [], steps[0][0]
    for _, op, r, _ in steps:
        true = value + r if op == "+" else value - r
        shown = true + rng.choice(SLIPS) if rng.random() < SLIP_RATE[style] else true
        line = f"{value} {op} {r} = {shown}."
        if style == "check":
            sign, ph = (1 if op == "+" else -1), PHRASES[check_lang]
            count = ", ".join(str(value + sign * k) for k in range(1, r + 1))
            line += ph["check"].format(step=f"{value} {op} {r}", count=count, true=true) + (
                ph["right"] if shown == true else ph["wrong"].format(shown=shown))
        else:
            true = shown  # an uncaught slip carries on
        lines.append(line)
        value = true
    return style, f"<think> {' '.join(lines)} </think>" + ending.format(v=value)


def world_corpus(n: int, seed: int, language: str = "en") -> list[tuple[str, str]]:
    """(prompt in the R1-Zero template, response) documents of the embedded world. The
    bilingual world (language 'zh' or 'both') also holds general requests (r1jax.tasks.general)
    answered well or badly, as web text would, about one document in five."""
    rng = random.Random(seed + 1)
    docs = [(render_r1_zero(ex.prompt), world_response(ex, rng)[1])
            for ex in generate("world", n, seed, language=language)]
    if language != "en":
        pairs = preference_pairs(n // 8, seed + 2, language=language)
        docs += [(render_r1_zero(p["prompt"]), p["chosen"] if rng.random() < 0.6 else p["rejected"]) for p in pairs]
        rng.shuffle(docs)
    return docs


def _answer_accuracy(cfg: ModelConfig, params, batch: dict, rows: int = 64) -> tuple[float, float]:
    """Teacher-forced greedy accuracy on answer tokens: (per token, whole answer exact). Runs
    `rows` rows at a time: the logits and attention of a thousand rows would take gigabytes."""
    predict = jax.jit(lambda p, t, m: forward(cfg, p, t, mask=m)[0][:, :-1].argmax(-1))
    pred = np.concatenate([np.asarray(predict(params, batch["tokens"][i:i + rows], batch["mask"][i:i + rows]))
                           for i in range(0, len(batch["tokens"]), rows)])
    target, lm = batch["tokens"][:, 1:], batch["loss_mask"][:, 1:] > 0
    right = (pred == target) | ~lm
    return float((right & lm).sum() / lm.sum()), float(right.all(axis=1).mean())


def _mesh(spec: str):
    return sharding.make_mesh(MeshConfig.parse(spec) if spec else MeshConfig(data=jax.device_count()))


def _stage_tokenizer(directory: Path):
    """A stage directory's tokenizer: tokenizer.model, else a tokenizer.json (imported models)."""
    return load_tokenizer(directory / "tokenizer.model" if (directory / "tokenizer.model").exists() else directory)


def _copy_tokenizer(src: Path, out: Path) -> None:
    """Every stage directory carries its tokenizer, so the next stage needs only that directory."""
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json"):  # the config names EOS / PAD
        if (src / name).exists() and not (out / name).exists():
            shutil.copyfile(src / name, out / name)


def encode_doc(tok, prompt: str, response: str) -> tuple[list[int], int]:
    """A training document '<s> prompt response </s>' (the prompt already in its template; '<s>'
    only if the tokenizer has one) as token ids, and the index of its first response token: the
    loss starts there (the model learns to answer, not to imitate the template)."""
    head = [*tok.bos, *tok.encode(prompt)]
    return [*head, *tok.encode(" " + response), tok.eos_id], len(head)


def encode_sft(path: str | Path, tok, seq_len: int, field: str) -> list[tuple[list[int], int]]:
    """Every record of an SFT JSONL (`r1jax.tasks.sft`), prompt in the R1-Zero template, as an
    `encode_doc` document; an error naming file:line and `field` if any is longer than `seq_len`."""
    from r1jax.tasks.sft import read_sft_jsonl
    encoded = [encode_doc(tok, render_r1_zero(r["prompt"]), r["response"]) for r in read_sft_jsonl(path)]
    too_long = [i for i, (e, _) in enumerate(encoded) if len(e) > seq_len]
    if too_long:
        raise ValueError(f"{path}:{too_long[0] + 1}: {len(encoded[too_long[0]][0])} tokens, longer than "
                         f"{field}={seq_len} ({len(too_long)} such records)")
    return encoded


def _train_lm(out: Path, run_config: dict, model_cfg: ModelConfig, tok, encoded: list[tuple[list[int], int]], *,
              steps: int, batch_size: int, seq_len: int, learning_rate: float, warmup_steps: int,
              checkpoint_every: int, log_every: int, seed: int, mesh: str, init_ckpt: Path | None,
              desc: str) -> dict:
    """Next-token training on `encode_doc` documents, loss on the response only,
    packed rows with per-document attention (grain pipeline), resumable. Starts from random
    weights (`init_ckpt` None: pretraining) or the parameters of `init_ckpt` (SFT)."""
    optim = train.OptimConfig(learning_rate=learning_rate, warmup_steps=warmup_steps, total_steps=steps,
                              weight_decay=0.01)
    tx = train.make_optimizer(optim)
    mesh = _mesh(mesh)
    # the accuracy below is measured on the response tokens too
    examples, answer_from = [e for e, _ in encoded], [a for _, a in encoded]
    n_eval = max(len(examples) // 20, 1)
    eval_batch = _pad(examples[:n_eval], answer_from[:n_eval], seq_len, tok.pad_id)
    batches = data.lm_batches(examples[n_eval:], seq_len=seq_len, batch_size=batch_size, pad_id=tok.pad_id,
                              seed=seed, loss_from=answer_from[n_eval:], pack=True)

    ckpt = checkpoint.Checkpointer(out / "ckpt", {"model": model_cfg, "optim": optim, **run_config})
    state_sh = train.state_shardings(mesh, model_cfg, tx)
    restored = ckpt.restore(train.abstract_state(mesh, model_cfg, tx))
    iterator = iter(batches)
    if restored is not None:
        state = restored.state
        iterator.set_state(restored.data_state)
        print(f"resumed from {ckpt.directory}/{restored.step}")
    elif init_ckpt is None:
        state = jax.jit(lambda k: train.init_state(model_cfg, tx, k), out_shardings=state_sh)(jax.random.key(seed))
    else:
        params = checkpoint.restore_params(init_ckpt, model_cfg, mesh)
        state = jax.jit(lambda p: train.init_state(model_cfg, tx, None, params=p), out_shardings=state_sh)(params)
    example_batch = next(iter(batches))  # a fresh iterator: only its shapes are used
    step_fn = train.compile_step(lambda s, b: train.lm_train_step(s, b, model_cfg=model_cfg, tx=tx),
                                 mesh, state_sh, train.batch_shardings(mesh, example_batch))

    start_step = int(state.step)
    writer = report.MetricsWriter(out)
    t0 = time.time()
    try:
        with _stop_on_signals() as stop, tqdm.tqdm(
                total=steps, initial=start_step, desc=desc, unit="step", dynamic_ncols=True) as bar:
            for step in range(start_step, steps):
                state, metrics = step_fn(state, next(iterator))
                if (step + 1) % log_every == 0 or step + 1 == steps:
                    m = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    # batches have a similar token count, so the last one stands for the interval
                    elapsed, t0 = max(time.time() - t0, 1e-9), time.time()
                    m.update(tokens_per_s=m.pop("tokens") * log_every / elapsed)
                    writer.write(step + 1, m)
                    bar.set_postfix(loss=f"{m['loss']:.3f}")
                bar.update(1)
                if _end_of_step(step, steps, checkpoint_every, stop,
                                lambda: ckpt.save(state, data_state=iterator.get_state())):
                    break
    finally:
        ckpt.close()
        writer.close()
    token_acc, exact = _answer_accuracy(model_cfg, state.params, eval_batch)
    summary = {"step": int(state.step), "params": sum(x.size for x in jax.tree.leaves(state.params)),
               "vocab_size": tok.vocab_size, "heldout_answer_token_accuracy": token_acc,
               "heldout_answer_exact": exact, "checkpoint": str(ckpt.directory)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def pretrain(cfg: PretrainConfig) -> dict:
    """Train (or resume) the tokenizer and base model of the embedded world. Returns a summary."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = world_corpus(cfg.n_examples, cfg.seed, cfg.language)
    tok_path = out / "tokenizer.model"
    if cfg.tokenizer and not tok_path.exists():  # a student shares its teacher's tokenizer
        shutil.copyfile(cfg.tokenizer, tok_path)
    # The template around the question is one piece each side: the same words in every prompt
    # would otherwise be most of every sequence on a CPU.
    head, tail = R1_ZERO_TEMPLATE.split("{prompt}")
    tok = load_tokenizer(tok_path) if tok_path.exists() else train_sentencepiece(
        [p + " " + r for p, r in docs[:5000]], tok_path, cfg.vocab_size, extra_symbols=(head, tail))
    model_cfg = override(get_preset(cfg.model), vocab_size=tok.vocab_size)
    summary = _train_lm(out, {"pretrain": cfg}, model_cfg, tok, [encode_doc(tok, p, r) for p, r in docs],
                        steps=cfg.steps, batch_size=cfg.batch_size,
                        seq_len=cfg.seq_len, learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
                        checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every, seed=cfg.seed,
                        mesh=cfg.mesh, init_ckpt=None, desc="pretrain")
    summary["tokenizer"] = str(tok_path)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    """Supervised fine-tuning on a JSONL of {"prompt", "response"} (r1jax.tasks.sft): the R1
    cold start (stage 2), SFT on rejection-sampled data (stage 5) and the paper's distillation
    (a student on its teacher's samples). Prompts are rendered in the R1-Zero template."""

    out_dir: str = "runs/sft"
    init_dir: str = "runs/base"  # a stage directory (tokenizer + ckpt/) whose parameters are fine-tuned
    data: str = "runs/sft.jsonl"
    epochs: float = 2.0  # the paper fine-tunes 2-3 epochs
    batch_size: int = 16  # rows of seq_len tokens, packed with documents
    seq_len: int = 256
    learning_rate: float = 1e-3
    warmup_steps: int = 10
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    mesh: str = ""


def sft(cfg: SFTConfig) -> dict:
    """Fine-tune (or resume) `init_dir`'s model on `data`; writes `out_dir` (tokenizer + ckpt/)."""
    out, init = Path(cfg.out_dir), Path(cfg.init_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = _stage_tokenizer(init)
    _copy_tokenizer(init, out)
    model_cfg = from_dict(ModelConfig, checkpoint.read_run_config(init / "ckpt")["model"])
    encoded = encode_sft(cfg.data, tok, cfg.seq_len, "SFTConfig.seq_len")
    lengths = [len(e) for e, _ in encoded]
    rows = data.count_rows(lengths[max(len(encoded) // 20, 1):], cfg.seq_len, cfg.seed, pack=True)
    if rows < cfg.batch_size:
        raise ValueError(f"{cfg.data}: {len(encoded)} records (a twentieth held out) pack into {rows} rows of "
                         f"{cfg.seq_len} tokens, fewer than one batch: lower SFTConfig.batch_size ({cfg.batch_size})")
    steps = max(1, round(cfg.epochs * rows / cfg.batch_size))
    # a small set gives few steps: warm up over at most a tenth of them
    summary = _train_lm(out, {"sft": cfg}, model_cfg, tok, encoded, steps=steps, batch_size=cfg.batch_size,
                        seq_len=cfg.seq_len, learning_rate=cfg.learning_rate,
                        warmup_steps=min(cfg.warmup_steps, steps // 10),
                        checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every, seed=cfg.seed,
                        mesh=cfg.mesh, init_ckpt=init / "ckpt", desc="sft")
    summary.update(records=len(encoded), epochs=cfg.epochs, steps=steps)
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
    base_dir: str = "runs/base"  # tokenizer.model or tokenizer.json, and ckpt/ (e.g. a `pretrain` output)
    families: str = "world"  # comma-separated task families with knobs, e.g. 'world:language=both,general'
    n_train: int = 4000  # generated training problems (drawn in a seeded order, then reused)
    steps: int = 50
    prompts_per_step: int = 16
    group_size: int = 16
    minibatches: int = 4  # policy updates per rollout
    length_grouped: bool = True  # mini-batches of rollouts of similar length, each cut to its longest (faster)
    learning_rate: float = 1e-4
    beta: float = 0.001  # 0 runs no reference model at all
    ref_refresh: int = 400  # replace the reference by the policy every this many steps
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 160
    max_prompt_tokens: int = 32  # the world's template is one token each side of the question
    eps_low: float = 0.2
    eps_high: float = 0.2
    kl_estimator: str = "k3"
    agg: str = "seq-mean-token-mean"
    adv_scale: str = "group"
    drop_zero_variance: bool = False  # mask out groups whose rewards are all equal
    truncation: str = "keep"  # 'keep', 'mask' (no gradient from outputs cut at max_new_tokens) or 'penalty'
    overlong_buffer: int = 8  # 'penalty': reward falls linearly to -1 over the last this many tokens
    reward_weights: str = "accuracy=1,format=1"  # R1 stages add language=1, format_r1, helpfulness, harmlessness
    reward_model: str = ""  # a reward-model stage directory (r1jax.rm) for helpfulness / harmlessness
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


def to_host(x: jax.Array) -> np.ndarray:
    """The whole value of a (possibly multi-host) array on every host."""
    if jax.process_count() == 1:
        return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def prompt_ids(tok, examples, max_prompt: int) -> list[list[int]]:
    """The token ids of each example's prompt in the R1-Zero template; an error, not a cut, for
    one longer than `max_prompt` (a cut would drop the template's start, which the rewards'
    format rests on)."""
    ids = [[*tok.bos, *tok.encode(render_r1_zero(ex.prompt))] for ex in examples]
    longest = max(range(len(ids)), key=lambda i: len(ids[i]))
    if len(ids[longest]) > max_prompt:
        raise ValueError(f"problem {examples[longest].id!r} is {len(ids[longest])} tokens in the R1-Zero template, "
                         f"more than max_prompt_tokens={max_prompt} (--max-prompt-tokens): raise it")
    return ids


def rollout(sampler, params, tok, examples, max_prompt: int, key):
    """Sample completions of `examples` in the R1-Zero template: (prompts, prompt_mask,
    Samples on the host, decoded completion texts), G texts per example in order."""
    prompts, pmask = tok.pad_batch(prompt_ids(tok, examples, max_prompt), length=max_prompt)
    roll = jax.tree.map(to_host, sampler(params, prompts, pmask, key))
    texts = [tok.decode([t for t in row[:n] if t != tok.eos_id]) for row, n in zip(roll.tokens, roll.lengths)]
    return prompts, pmask, roll, texts


def mixes_languages(completion: str, language: str) -> bool:
    """Some word of the chain of thought is not in the target language (the paper's language
    mixing; a CoT of bare numbers has no words and does not mix)."""
    counts = count_words(cot_of(completion))
    return 0 < sum(counts.values()) and language_consistency(completion, language) < 1.0


def evaluate_policy(model_cfg: ModelConfig, params, tok, examples, *, samples: int = 8, temperature: float = 0.6,
                    top_p: float = 0.95, max_new_tokens: int = 160, max_prompt_tokens: int = 32,
                    batch_prompts: int = 32, format_reward: str = "format", mesh=None, seed: int = 0) -> dict:
    """pass@1 over `samples` completions a problem (the paper's protocol: T=0.6, top-p 0.95),
    format rate (`format_reward`: 'format' for R1-Zero's tags, 'format_r1' for R1's reasoning +
    summary), mean length, reflection, language-mixing, readability (r1jax.rewards.readability)
    and truncation rates, overall and by
    `metadata['n_ops']`."""
    sampler = sampling.make_sampler(model_cfg, sampling.SamplingConfig(
        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop_tokens=(tok.eos_id,),
        pad_id=tok.pad_id), mesh=mesh, group_size=samples)
    cfg = RewardConfig(weights=(("accuracy", 1.0), (format_reward, 1.0)))
    rows = []
    for i in range(0, len(examples), batch_prompts):
        chunk = examples[i:i + batch_prompts]
        *_, roll, texts = rollout(sampler, params, tok, chunk, max_prompt_tokens, jax.random.key(seed + i))
        group = [ex for ex in chunk for _ in range(samples)]
        r = compute_rewards(texts, group, cfg)
        rows += [(ex.metadata.get("n_ops", 0), a, f, n, report.reflection_count(t) > 0, tr, mixes_languages(t, ex.metadata.get("language", "en")),
                  not readability_issues(t, ex.metadata.get("language", "en")))
                 for ex, a, f, n, t, tr in zip(group, r["accuracy"], r[format_reward], roll.lengths, texts,
                                               roll.truncated)]
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


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """Sample a policy and keep its correct, readable outputs as an SFT dataset (JSONL with
    provenance): cold-start data from R1-Zero (stage 1, rewrite 'cold-start'), rejection
    sampling of the reasoning-RL policy (stage 4, plus `general` non-reasoning records) and a
    teacher's distillation set (stage 7)."""

    out: str = "runs/sft.jsonl"
    policy_dir: str = "runs/r1zero"  # tokenizer + ckpt/
    families: str = "world:language=both"  # reasoning prompts (see task_pool)
    n_prompts: int = 256
    samples: int = 4  # per prompt
    keep_per_prompt: int = 1  # distinct kept outputs per prompt at most
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 160
    max_prompt_tokens: int = 32
    rewrite: str = "none"  # 'cold-start': '<think> R </think> <answer> v </answer>' -> '|special_token| R |special_token| summary'
    general: int = 0  # general prompts (both languages) whose ideal responses, without CoT, join the set
    seed: int = 0
    mesh: str = ""

    def __post_init__(self):
        if self.rewrite not in ("none", "cold-start"):
            raise ValueError(f"CollectConfig.rewrite must be none or cold-start, got {self.rewrite!r}")


SUMMARY = {"en": " The answer is {v}.", "zh": " 答案是 {v}。"}


def _phrase_regex(template: str) -> str:
    """A `PHRASES` template as a regex: its fields become named groups."""
    number = r"-?\d+"
    fields = {"step": rf"{number} [-+] \d+", "count": rf"{number}(?:, {number})*"}
    return "".join(f"(?P<{part[1:-1]}>{fields.get(part[1:-1], number)})" if part.startswith("{") else re.escape(part)
                   for part in re.split(r"(\{\w+\})", template))


_EN = PHRASES["en"]
_EN_CHECK = re.compile(_phrase_regex(_EN["check"]) + f"(?:{re.escape(_EN['right'])}|{_phrase_regex(_EN['wrong'])})")
_EN_GUESS = re.compile(_phrase_regex(_EN["guess"]))


def refine_language(reasoning: str, language: str) -> str:
    """The world's English re-check and guess sentences in a chain of thought, rewritten in the
    problem's language: the cold start's post-processing of R1-Zero outputs (the paper has
    human annotators refine them, sec. 2.3.1). R1-Zero learns to re-check Chinese problems in
    English; whether any of its samples stays readable Chinese depends on the run (46 of
    486 cold-start records in one run, none of 421 in another), and without such records
    the cold start, and the language reward after it, never see a readable Chinese CoT. Only
    the world's fixed sentences are rewritten; any other English stays and is filtered out."""
    if language == "en":
        return reasoning
    ph = PHRASES[language]
    checked = _EN_CHECK.sub(lambda m: ph["check"].format(**m.groupdict()) + (
        ph["right"] if m["shown"] is None else ph["wrong"].format(shown=m["shown"])), reasoning)
    return _EN_GUESS.sub(lambda m: ph["guess"].format(v=m["v"]), checked)


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
        found = ["no reasoning"] if response is None else readability_issues(response, ex.metadata.get("language", "en"))
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
    from r1jax.tasks.sft import write_sft_jsonl

    policy = Path(cfg.policy_dir)
    tok = _stage_tokenizer(policy)
    model_cfg = from_dict(ModelConfig, checkpoint.read_run_config(policy / "ckpt")["model"])
    mesh = _mesh(cfg.mesh)
    source_step = checkpoint.latest_step(policy / "ckpt")
    params = checkpoint.restore_params(policy / "ckpt", model_cfg, mesh, step=source_step)
    examples = task_pool(cfg.families, cfg.n_prompts, cfg.seed)
    sampler = sampling.make_sampler(model_cfg, sampling.SamplingConfig(
        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
        stop_tokens=(tok.eos_id,), pad_id=tok.pad_id), mesh=mesh, group_size=cfg.samples)
    records, counts, issues = [], {"prompts": len(examples), "sampled": 0, "correct": 0, "readable": 0}, {}
    for i in tqdm.tqdm(range(0, len(examples), 32), desc="collect", unit="batch", dynamic_ncols=True):
        chunk = examples[i:i + 32]
        *_, roll, texts = rollout(sampler, params, tok, chunk, cfg.max_prompt_tokens, jax.random.key(cfg.seed + i))
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
    write_sft_jsonl(cfg.out, records)
    summary = {**counts, "kept_reasoning": len(records) - len(general), "general": len(general),
               "issues": issues, "out": cfg.out}
    Path(cfg.out).with_suffix(".summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _round_up(n: int, cap: int, multiple: int = 32) -> int:
    return min(-(-max(n, 1) // multiple) * multiple, cap)


def overlong_penalty(lengths: np.ndarray, max_new: int, buffer: int) -> np.ndarray:
    """DAPO's soft overlong punishment, in tokens: 0 up to max_new - buffer, then linear to -1."""
    return -np.clip((lengths - (max_new - buffer)) / max(buffer, 1), 0.0, 1.0)


def task_pool(spec: str, n: int, seed: int) -> list:
    """`n` generated problems of each family in `spec`: 'world,general' or with knobs,
    'world:language=both:max_ops=2' (r1jax.tasks.generate); the knob n=... sets a family's own count."""
    pool = []
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, *knobs = item.split(":")
        pairs = [k.split("=") for k in knobs]
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f"task family spec {item!r}: knobs are written name=value, e.g. 'world:language=both'")
        knobs = {k: int(v) if v.lstrip("-").isdigit() else v for k, v in pairs}
        pool += generate(name, knobs.pop("n", n), seed, **knobs)
    return pool


def r1_zero(cfg: R1ZeroConfig) -> dict:
    """Run (or resume) GRPO from `cfg.base_dir`. Writes metrics.jsonl, samples.jsonl and ckpt/."""
    out, base = Path(cfg.out_dir), Path(cfg.base_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = _stage_tokenizer(base)
    _copy_tokenizer(base, out)
    model_cfg = from_dict(ModelConfig, checkpoint.read_run_config(base / "ckpt")["model"])
    reward_cfg = cfg.rewards()
    grpo = train.GRPOConfig(eps_low=cfg.eps_low, eps_high=cfg.eps_high, beta=cfg.beta, kl_estimator=cfg.kl_estimator,
                            agg=cfg.agg, max_len=cfg.max_new_tokens, temperature=cfg.temperature)
    tx = train.make_optimizer(train.OptimConfig(learning_rate=cfg.learning_rate, warmup_steps=0, schedule="constant",
                                                weight_decay=0.0, total_steps=cfg.steps))
    mesh = _mesh(cfg.mesh)
    state_sh = train.state_shardings(mesh, model_cfg, tx)
    reward_models = {}
    if cfg.reward_model:
        from r1jax.rm import LearnedRewardModel
        rm = LearnedRewardModel.load(cfg.reward_model, mesh=mesh)
        reward_models = {"helpfulness": rm, "harmlessness": rm}

    pool = task_pool(cfg.families, cfg.n_train, cfg.seed)
    order = np.random.default_rng(cfg.seed).permutation(len(pool))
    Q, G, N, P = cfg.prompts_per_step, cfg.group_size, cfg.max_new_tokens, cfg.max_prompt_tokens
    prompt_ids(tok, pool, P)  # a prompt too long for P fails now, not at the step that draws it
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
                                mesh, state_sh, train.batch_shardings(mesh, mb_example), batch_is_global=True)
    ref_logp_fn = jax.jit(lambda p, t, m, n: train.completion_logprobs(model_cfg, p, t, m, n, cfg.temperature)[0],
                          static_argnums=3)

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
                prompts, pmask, roll, texts = rollout(sampler, state.params, tok, examples, P, key)
                t_sample = time.time() - t0

                t1 = time.time()
                lengths = np.asarray(roll.lengths)
                group_examples = [ex for ex in examples for _ in range(G)]
                rewards = compute_rewards(texts, group_examples, reward_cfg, reward_models)
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
                # Updates see only the columns some rollout uses (rounded up to a multiple of 32,
                # so a handful of shapes compile): early in RL most answers are short.
                n_used, p_used = _round_up(int(lengths.max()), N), _round_up(int(pmask.sum(1).max()), P)
                tokens = np.concatenate([np.repeat(prompts[:, P - p_used:], G, 0), roll.tokens[:, :n_used]], 1)
                mask = np.concatenate([np.repeat(pmask[:, P - p_used:], G, 0), cmask[:, :n_used] > 0], 1)
                batch = {"tokens": tokens, "mask": mask, "completion_mask": cmask[:, :n_used],
                         "old_logp": np.asarray(roll.logprobs)[:, :n_used], "advantages": adv.astype(np.float32)}
                t_reward = time.time() - t1

                t2 = time.time()
                rng = np.random.default_rng([cfg.seed, step])
                perm = rng.permutation(B)
                if cfg.length_grouped:  # rollouts of similar length share a mini-batch, in random order
                    perm = perm[np.argsort(lengths[perm], kind="stable")]
                minibatches = np.split(perm, cfg.minibatches)
                if cfg.length_grouped:
                    minibatches = [minibatches[i] for i in rng.permutation(cfg.minibatches)]
                step_metrics = []
                for mb in minibatches:
                    n_mb = _round_up(int(lengths[mb].max()), N)  # each mini-batch cut to its longest rollout
                    mb_batch = {k: v[mb][:, :p_used + n_mb] if k in ("tokens", "mask") else
                                v[mb][:, :n_mb] if v.ndim == 2 else v[mb] for k, v in batch.items()}
                    # the reference is frozen, so scoring it a mini-batch at a time bounds its memory
                    mb_batch["ref_logp"] = (np.asarray(ref_logp_fn(ref_params, mb_batch["tokens"], mb_batch["mask"], n_mb))
                                            if cfg.beta else np.zeros_like(mb_batch["old_logp"]))
                    state, m = update(state, mb_batch)
                    step_metrics.append(m)
                step_metrics = jax.device_get(step_metrics)
                t_update = time.time() - t2
                if cfg.beta and (step + 1) % cfg.ref_refresh == 0:
                    ref_params = jax.tree.map(jnp.copy, state.params)

                m = {k: float(np.mean([x[k] for x in step_metrics])) for k in step_metrics[0]}
                m.update({f"reward/{k}": float(v.mean()) for k, v in rewards.items()})
                n_tok = int(lengths.sum())
                reflective = np.array([report.reflection_count(t) > 0 for t in texts])
                n_ops = np.array([ex.metadata.get("n_ops", 0) for ex in group_examples])
                m.update({f"response_length_ops{k}": float(lengths[n_ops == k].mean()) for k in np.unique(n_ops) if k})
                reasoning = np.array([ex.metadata.get("family") != "general" for ex in group_examples])
                m.update(accuracy=float(rewards.get("accuracy", np.zeros(B))[reasoning].mean()) if reasoning.any() else 0.0,
                         reflection_rate=float(reflective.mean()),
                         language_mixing_rate=float(np.mean([mixes_languages(t, ex.metadata.get("language", "en"))
                                                             for t, ex in zip(texts, group_examples)])),
                         response_length_mean=float(lengths.mean()), response_length_max=int(lengths.max()),
                         truncation_rate=float(np.asarray(roll.truncated).mean()), learning_rate=cfg.learning_rate,
                         tokens_per_s=n_tok / max(time.time() - t0, 1e-9), time_sample=t_sample,
                         time_reward=t_reward, time_update=t_update)
                writer.write(step + 1, m)
                correct = rewards.get("accuracy", np.zeros(B))
                lead = jax.process_index() == 0  # one host writes the logs
                for i in np.flatnonzero(reflective & (correct > 0))[:2 * lead]:  # candidate "aha" moments
                    aha_log.write(json.dumps({"step": step + 1, "prompt": group_examples[i].prompt,
                                              "answer": group_examples[i].answer, "completion": texts[i]}) + "\n")
                if lead and (step % cfg.sample_every == 0 or step + 1 == cfg.steps):
                    for i in range(0, B, G):  # the first sample of every prompt
                        samples_log.write(json.dumps({"step": step + 1, "prompt": examples[i // G].prompt,
                                                      "answer": examples[i // G].answer, "completion": texts[i],
                                                      **{k: float(v[i]) for k, v in rewards.items()}}) + "\n")
                samples_log.flush()
                aha_log.flush()
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


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """The main job on the embedded CPU world: pretrain a base, evaluate it, run R1-Zero from
    it, evaluate the policy. Settings of each stage not listed here are their configs' defaults."""

    out_dir: str = "runs/world"
    model: str = "small"  # the base's preset
    pretrain_steps: int = 450
    pretrain_batch: int = 16  # rows of 256 tokens, packed with documents
    rl_steps: int = 25  # held-out pass@1 at 25 and 30 steps was the same (0.69-0.73) for seeds 0-2
    group_size: int = 16  # R1-Zero samples per problem
    max_new_tokens: int = 224  # prompt (<= 32) + 224 = a pretraining row; 160 cut off 4-6% of trained answers
    eval_problems: int = 64  # held-out problems (none appears in pretraining or RL)
    eval_samples: int = 8  # completions per problem for pass@1 (T=0.6, top-p 0.95, as the paper)
    seed: int = 0
    mesh: str = ""


def world_heldout(n: int, seed: int, language: str = "en") -> list:
    """`n` distinct problems of the world's test split, which no pretraining corpus or RL pool
    holds whatever its size and seed (r1jax.tasks.generated.world_split), at the training mix of
    difficulties: the held-out set of `world` and of the R1 recipe."""
    drawn = generate("world", 4 * n, seed + 7919, split="test", language=language)
    heldout = list({ex.prompt: ex for ex in drawn}.values())[:n]
    if len(heldout) < n:
        raise ValueError(f"eval_problems={n}: only {len(heldout)} distinct test problems drawn")
    return heldout


def world(cfg: WorldConfig) -> dict:
    """Run (or resume) the whole world job; writes `world.md` and `world.json` in `out_dir`."""
    out = Path(cfg.out_dir)
    t0 = time.time()
    pre = PretrainConfig(out_dir=str(out / "base"), model=cfg.model, steps=cfg.pretrain_steps, batch_size=cfg.pretrain_batch,
                         seed=cfg.seed, mesh=cfg.mesh)
    rl = R1ZeroConfig(out_dir=str(out / "r1zero"), base_dir=pre.out_dir, steps=cfg.rl_steps, seed=cfg.seed,
                      group_size=cfg.group_size, max_new_tokens=cfg.max_new_tokens, mesh=cfg.mesh)
    if pretrain(pre)["step"] < pre.steps:  # stopped by a signal: checkpoint saved, nothing more to do
        return {"stopped": "pretrain"}
    t_pre = time.time() - t0
    heldout = world_heldout(cfg.eval_problems, cfg.seed)
    tok = load_tokenizer(Path(pre.out_dir) / "tokenizer.model")
    model_cfg = from_dict(ModelConfig, checkpoint.read_run_config(Path(pre.out_dir) / "ckpt")["model"])
    mesh = _mesh(cfg.mesh)

    def evaluate(ckpt_dir: Path) -> dict:
        params = checkpoint.restore_params(ckpt_dir, model_cfg, mesh)
        return evaluate_policy(model_cfg, params, tok, heldout, samples=cfg.eval_samples,
                               max_new_tokens=rl.max_new_tokens, max_prompt_tokens=rl.max_prompt_tokens,
                               mesh=mesh, seed=cfg.seed)

    base_eval = evaluate(Path(pre.out_dir) / "ckpt")
    t1 = time.time()
    if r1_zero(rl)["step"] < rl.steps:
        return {"stopped": "r1_zero"}
    t_rl = time.time() - t1
    final_eval = evaluate(Path(rl.out_dir) / "ckpt")
    result = {"base": base_eval, "r1_zero": final_eval, "heldout": [ex.prompt for ex in heldout], "minutes": {
        "pretrain": t_pre / 60, "r1_zero": t_rl / 60, "total": (time.time() - t0) / 60}}
    (out / "world.json").write_text(json.dumps(result, indent=2))
    (out / "world.md").write_text(world_table(result))
    return result


def world_table(result: dict) -> str:
    """Markdown: base against R1-Zero policy on the held-out problems, overall and by difficulty."""
    b, f = result["base"], result["r1_zero"]
    lines = [f"Held-out problems: {b['problems']}, {b['samples']} samples each (T=0.6, top-p 0.95).", "",
             "| metric | base | R1-Zero |", "|---|---|---|"]
    for k in ("pass@1", "format", "length", "reflection", "truncated"):
        lines.append(f"| {k} | {b[k]:.3f} | {f[k]:.3f} |")
    lines += ["", "| operations | base pass@1 | R1-Zero pass@1 | base length | R1-Zero length |", "|---|---|---|---|---|"]
    for k in sorted(b["by_ops"], key=int):
        bb, ff = b["by_ops"][k], f["by_ops"][k]
        lines.append(f"| {k} | {bb['pass@1']:.3f} | {ff['pass@1']:.3f} | {bb['length']:.1f} | {ff['length']:.1f} |")
    m = result["minutes"]
    lines += ["", f"Minutes: pretraining {m['pretrain']:.1f}, R1-Zero {m['r1_zero']:.1f}, total {m['total']:.1f}."]
    return "\n".join(lines) + "\n"
