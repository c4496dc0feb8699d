"""The learned reward model of the R1 pipeline (paper sec. 2.3.4: RL for all scenarios scores
general prompts with a reward model; see `r1jax.rewards.reward_model` for which part of an
output each judgement sees).

A scalar head on the decoder: the score of a (prompt, response) is w . h + b at the last real
token of `[bos] render_r1_zero(prompt) + " " + response [eos]`, h the final normed hidden
state. `train_reward_model` fits it to preference pairs with the Bradley-Terry loss, starting
the backbone from a stage's checkpoint and the head at zero; `LearnedRewardModel` loads the
result for RL.

Parameters: {"backbone": <model params>, "head": {"w": [D] float32, "b": [] float32}}. The
Bradley-Terry loss sees only score differences, so b gets no gradient and stays at its 0 init
(it is there to shift scores, e.g. to centre them on a reference set, without retraining).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from r1jax import checkpoint, losses, runtime, sampling, sharding, train
from r1jax.config import ModelConfig, ModelOverrides, OptimConfig, TrainerConfig, from_dict
from r1jax.model import forward, param_axes, param_shapes
from r1jax.tasks.benchmarks import jsonl_objects
from r1jax.tokenizer import load_tokenizer, render_r1_zero

__all__ = ["rm_param_axes", "abstract_rm_params", "rm_scores", "rm_train_step", "encode", "score_rows",
           "read_pairs", "batch_indices", "RewardModelConfig", "train_reward_model", "LearnedRewardModel"]


def rm_param_axes(model_cfg: ModelConfig) -> dict:
    """Logical axes of the reward model's parameters (the head's w lies along the model dim)."""
    return {"backbone": param_axes(model_cfg), "head": {"w": ("embed",), "b": ()}}


def abstract_rm_params(model_cfg: ModelConfig, mesh: Mesh | None = None) -> dict:
    """ShapeDtypeStructs of the reward model's parameters, with shardings on `mesh` when given.
    The head is float32 whatever the backbone's dtype: it is tiny and the score is its output."""
    shapes = {"backbone": param_shapes(model_cfg), "head": {
        "w": jax.ShapeDtypeStruct((model_cfg.d_model,), jnp.float32), "b": jax.ShapeDtypeStruct((), jnp.float32)}}
    if mesh is None:
        return shapes
    shard = sharding.tree_shardings(mesh, rm_param_axes(model_cfg), shapes)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes, shard)


def rm_scores(model_cfg: ModelConfig, params: dict, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """Scores [B] (float32) of right-padded rows tokens, mask [B, T] (mask False at padding).

    Read at each row's last real token: with causal attention it is the one position that
    has seen the whole text, and right padding after it cannot reach it.
    """
    hidden, _ = forward(model_cfg, params["backbone"], tokens, mask=mask, return_hidden=True)  # [B, T, D]
    last = jnp.maximum(mask.sum(axis=1) - 1, 0)
    h = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0].astype(jnp.float32)  # [B, D]
    return h @ params["head"]["w"] + params["head"]["b"]


def rm_train_step(state: train.TrainState, batch: dict, *, model_cfg: ModelConfig,
                  tx: optax.GradientTransformation) -> tuple[train.TrainState, dict]:
    """One Bradley-Terry step. batch: tokens, mask [2B, T], the B chosen rows then the B rejected."""

    def loss_fn(params):
        scores = rm_scores(model_cfg, params, batch["tokens"], batch["mask"])
        n = scores.shape[0] // 2
        return losses.bradley_terry_loss(scores[:n], scores[n:])

    return train.apply_gradients(state, tx, loss_fn)


def encode(tok, prompt: str, response: str) -> list[int]:
    """The token ids a (prompt, response) is scored on: [bos] template(prompt) + " " + response [eos]."""
    return [*tok.bos, *tok.encode(render_r1_zero(prompt) + " " + response), tok.eos_id]


@functools.partial(jax.jit, static_argnums=0)
def _jit_scores(model_cfg, params, tokens, mask):
    return rm_scores(model_cfg, params, tokens, mask)


def _bucket(n: int, cap: int) -> int:
    """Padded length for a batch whose longest row has n tokens: a power of two >= 64 (so a
    few shapes compile), capped at the model's max_seq_len."""
    return min(max(64, 1 << (n - 1).bit_length()), max(cap, n))


def score_rows(model_cfg: ModelConfig, params: dict, tok, rows: Sequence[Sequence[int]], batch_rows: int = 32,
               mesh: Mesh | None = None) -> np.ndarray:
    """Scores [N] float32 of encoded rows (see `encode`), `batch_rows` at a time; the last batch
    is filled up with copies of its first row so that every call has the same row count."""
    out = []
    for i in range(0, len(rows), batch_rows):
        chunk = list(rows[i:i + batch_rows])
        n = len(chunk)
        tokens, mask = tok.pad_batch(chunk + chunk[:1] * (batch_rows - n),
                                     _bucket(max(map(len, chunk)), model_cfg.max_seq_len), left=False)
        if mesh is None:
            scores = _jit_scores(model_cfg, params, tokens, mask)
        else:
            with jax.set_mesh(mesh):
                scores = _jit_scores(model_cfg, params, tokens, mask)
        out.append(sampling.to_host(scores).astype(np.float32)[:n])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def read_pairs(path: str | Path) -> list[tuple[str, str, str, str]]:
    """(where, prompt, chosen, rejected) of each line of a JSONL file of {"prompt", "chosen",
    "rejected"} strings; `where` is "<file>:<line>". A bad line raises ValueError naming it."""
    pairs = []
    for where, rec in jsonl_objects(Path(path)):
        for key in ("prompt", "chosen", "rejected"):
            if key not in rec:
                raise ValueError(f"{where}: field {key!r} is missing")
            if not isinstance(rec[key], str):
                raise ValueError(f"{where}: field {key!r} must be a string, got {type(rec[key]).__name__}")
        pairs.append((where, rec["prompt"], rec["chosen"], rec["rejected"]))
    if not pairs:
        raise ValueError(f"{path}: no preference pairs")
    return pairs


@dataclasses.dataclass(frozen=True)
class RewardModelConfig:
    """Bradley-Terry training of a reward model on preference pairs, from a stage's checkpoint."""

    out_dir: str = "runs/rm"
    base_dir: str = "runs/base"  # tokenizer.model and ckpt/ (e.g. a `pretrain` or SFT output)
    pairs: str = "pairs.jsonl"  # one {"prompt", "chosen", "rejected"} object a line
    batch_size: int = 16  # pairs a step (2 * batch_size rows)
    max_len: int = 128  # tokens of template + response; a longer pair is an error naming its line
    eval_fraction: float = 0.1  # pairs held out (never trained on) for the final accuracy
    trainer: TrainerConfig = TrainerConfig(steps=200, checkpoint_every=100, log_every=10)
    # constant learning rate: a finished run extended with more steps equals one started with them
    optim: OptimConfig = OptimConfig(learning_rate=1e-4, schedule="constant", weight_decay=0.0)
    model: ModelOverrides = ModelOverrides()

    def __post_init__(self):
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(f"RewardModelConfig.eval_fraction must be in (0, 1), got {self.eval_fraction}")
        for name in ("batch_size", "max_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RewardModelConfig.{name} must be positive, got {getattr(self, name)}")
        if self.trainer.steps <= 0:
            raise ValueError(f"RewardModelConfig.trainer.steps must be positive, got {self.trainer.steps}")


def _encoded_pairs(cfg: RewardModelConfig, tok) -> tuple[list[list[int]], list[list[int]]]:
    """Chosen and rejected rows of every pair, in file order; a row over max_len is an error."""
    chosen, rejected = [], []
    for where, prompt, c, r in read_pairs(cfg.pairs):
        for name, response, rows in (("chosen", c, chosen), ("rejected", r, rejected)):
            ids = encode(tok, prompt, response)
            if len(ids) > cfg.max_len:
                raise ValueError(f"{where}: prompt + {name} is {len(ids)} tokens, more than max_len={cfg.max_len}")
            rows.append(ids)
    return chosen, rejected


def batch_indices(train_ids: np.ndarray, step: int, batch_size: int, seed: int) -> np.ndarray:
    """The pair indices of `step`: the steps walk through one seeded shuffle of the training
    pairs per epoch, so a batch is a function of the step alone (exact resume)."""
    epochs, offsets = np.divmod(step * batch_size + np.arange(batch_size), len(train_ids))
    perms = {e: np.random.default_rng([seed, e]).permutation(len(train_ids)) for e in set(epochs.tolist())}
    return np.array([train_ids[perms[e][o]] for e, o in zip(epochs.tolist(), offsets)])


def train_reward_model(cfg: RewardModelConfig) -> dict:
    """Train (or resume) a reward model; writes ckpt/, tokenizer.model, metrics.jsonl and
    summary.json (held-out pair accuracy) in `cfg.out_dir`. Returns the summary."""
    out, base, seed = Path(cfg.out_dir), Path(cfg.base_dir), cfg.trainer.seed
    tok = load_tokenizer(base / "tokenizer.model")
    chosen, rejected = _encoded_pairs(cfg, tok)  # before any model work: a bad file fails fast
    n = len(chosen)
    order = np.random.default_rng(seed).permutation(n)
    n_eval = max(1, round(n * cfg.eval_fraction))
    eval_ids, train_ids = order[:n_eval], order[n_eval:]
    if len(train_ids) == 0:
        raise ValueError(f"{cfg.pairs}: {n} pair(s) leave none for training after holding out {n_eval}")
    out.mkdir(parents=True, exist_ok=True)

    model_cfg = runtime.stage_model_config(base, cfg.model)
    tx = train.make_optimizer(cfg.optim)
    mesh = runtime.make_mesh(cfg.trainer.mesh)
    state_sh = train.state_shardings(mesh, model_cfg, tx, params=abstract_rm_params(model_cfg),
                                     axes=rm_param_axes(model_cfg))

    # `steps` is left out of the run config so that a run can be resumed with more steps; the
    # file's hash is in it because the held-out split depends on the pairs' content.
    run_config = {"model": model_cfg, "reward_model": {**dataclasses.asdict(cfg), "trainer": {
        **dataclasses.asdict(cfg.trainer), "steps": None}},
        "pairs_sha256": hashlib.sha256(Path(cfg.pairs).read_bytes()).hexdigest()}
    ckpt = checkpoint.Checkpointer(out / "ckpt", run_config)  # refuses another run's directory
    runtime.copy_tokenizer(base, out)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            jax.eval_shape(lambda p: train.init_state(model_cfg, tx, None, params=p),
                                           abstract_rm_params(model_cfg)), state_sh)

    def init():
        head = {"w": jnp.zeros((model_cfg.d_model,), jnp.float32), "b": jnp.zeros((), jnp.float32)}
        params = {"backbone": checkpoint.restore_params(base / "ckpt", model_cfg, mesh), "head": head}
        return jax.jit(lambda p: train.init_state(model_cfg, tx, None, params=p), out_shardings=state_sh)(params)

    state, _ = runtime.resume_or_init(ckpt, abstract, init)

    # every row is padded to the longest of the file: one compiled shape for the whole run
    length = max(len(r) for r in chosen + rejected)

    def batch_at(step: int) -> dict:
        ids = batch_indices(train_ids, step, cfg.batch_size, seed)
        tokens, mask = tok.pad_batch([chosen[i] for i in ids] + [rejected[i] for i in ids], length, left=False)
        return {"tokens": tokens, "mask": mask}

    update = train.compile_step(lambda s, b: rm_train_step(s, b, model_cfg=model_cfg, tx=tx), mesh, state_sh,
                                train.batch_shardings(mesh, batch_at(0), True), batch_is_global=True)

    def step_fn(state, step):
        state, metrics = update(state, batch_at(step))
        return state, {**metrics, "pairs": cfg.batch_size}

    state, _ = runtime.run_loop(
        state, step_fn, out=out, ckpt=ckpt, save=lambda s, next_step: {"data_state": {
            "next_pair": next_step * cfg.batch_size}}, trainer=cfg.trainer, steps=cfg.trainer.steps,
        start=int(state.step), desc="reward model", postfix={"loss": ("loss", ".3f"), "acc": ("accuracy", ".2f")},
        rate=("pairs", "pairs_per_s"))

    scores = score_rows(model_cfg, state.params, tok, [chosen[i] for i in eval_ids] + [rejected[i] for i in eval_ids],
                        mesh=mesh)
    loss, m = jax.device_get(losses.bradley_terry_loss(jnp.asarray(scores[:n_eval]), jnp.asarray(scores[n_eval:])))
    summary = {"step": int(state.step), "train_pairs": len(train_ids), "heldout_pairs": n_eval,
               "heldout_accuracy": float(m["accuracy"]), "heldout_loss": float(loss),
               "heldout_margin": float(m["margin"]), "checkpoint": str(ckpt.directory),
               "tokenizer": str(out / "tokenizer.model")}
    runtime.write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


class LearnedRewardModel:
    """A trained reward model (`train_reward_model`'s out_dir) as an `r1jax.rewards.reward_model.RewardModel`."""

    def __init__(self, model_cfg: ModelConfig, params: dict, tok, batch_rows: int = 32, mesh: Mesh | None = None):
        self.model_cfg, self.params, self.tok, self.batch_rows, self.mesh = model_cfg, params, tok, batch_rows, mesh

    @classmethod
    def load(cls, directory: str | Path, mesh: Mesh | None = None, batch_rows: int = 32) -> "LearnedRewardModel":
        directory = Path(directory)
        tok = load_tokenizer(directory / "tokenizer.model")
        run = checkpoint.read_run_config(directory / "ckpt")
        if "reward_model" not in run:
            raise ValueError(f"{directory / 'ckpt'} is not a reward model checkpoint (its run config has no "
                             f"'reward_model' entry; keys: {', '.join(run)})")
        model_cfg = from_dict(ModelConfig, run["model"])
        params = checkpoint.restore_params(directory / "ckpt", model_cfg, target=abstract_rm_params(model_cfg, mesh))
        return cls(model_cfg, params, tok, batch_rows, mesh)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """One float32 score per (prompt, response), shape [N]."""
        if len(prompts) != len(responses):
            raise ValueError(f"score: {len(prompts)} prompts but {len(responses)} responses")
        rows = [encode(self.tok, p, r) for p, r in zip(prompts, responses)]
        too_long = [i for i, r in enumerate(rows) if len(r) > self.model_cfg.max_seq_len]
        if too_long:
            raise ValueError(f"score: pair {too_long[0]} is {len(rows[too_long[0]])} tokens, more than the "
                             f"model's max_seq_len={self.model_cfg.max_seq_len}")
        return score_rows(self.model_cfg, self.params, self.tok, rows, self.batch_rows, self.mesh)
