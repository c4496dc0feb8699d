"""Train state, optimizer and jitted steps with explicit shardings and donated state."""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from r1jax import losses
from r1jax.config import GRPOConfig, ModelConfig, OptimConfig
from r1jax.model import forward, init_params, lm_head, param_axes
from r1jax.sharding import logical_spec, replicated, tree_shardings

__all__ = ["TrainState", "learning_rate_schedule", "make_optimizer", "init_state", "state_shardings",
           "abstract_state", "batch_shardings", "apply_gradients", "lm_loss", "lm_train_step", "compile_step",
           "head_chunks", "head_logprobs", "completion_logprobs", "packed_completion_logprobs", "rollout_logprobs",
           "grpo_train_step", "logit_distill_step", "on_policy_distill_step"]


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # [] int32
    params: Any
    opt_state: Any


def learning_rate_schedule(cfg: OptimConfig, total_steps: int = 1000, updates_per_step: int = 1) -> optax.Schedule:
    """Linear warmup over `cfg.warmup_steps`, then constant or cosine decay until `total_steps`,
    counted in the stage's steps; the returned schedule takes the optimizer's update count, of
    which a step makes `updates_per_step` (a GRPO step's mini-batches share their step's rate)."""
    warmup = optax.linear_schedule(0.0, cfg.learning_rate, max(cfg.warmup_steps, 1))
    decay_steps = max(total_steps - cfg.warmup_steps, 1)
    if cfg.schedule == "cosine":
        after = optax.cosine_decay_schedule(cfg.learning_rate, decay_steps, alpha=0.1)
    else:
        after = optax.constant_schedule(cfg.learning_rate)
    by_step = optax.join_schedules([warmup, after], [cfg.warmup_steps]) if cfg.warmup_steps else after
    return by_step if updates_per_step == 1 else lambda count: by_step(count // updates_per_step)


def _decay_mask(params):
    """Weight decay on matrices only: not on norm scales or attention biases."""
    def decays(path, _):
        name = str(getattr(path[-1], "key", path[-1]))
        return not (name.endswith("norm") or name in ("bq", "bk", "bv"))
    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(cfg: OptimConfig, total_steps: int = 1000,
                   updates_per_step: int = 1) -> optax.GradientTransformation:
    """AdamW (no decay on norms and biases) after global-norm clipping; `total_steps` (of
    `updates_per_step` updates each) ends the cosine."""
    adamw = optax.adamw(learning_rate_schedule(cfg, total_steps, updates_per_step), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                        weight_decay=cfg.weight_decay, mask=_decay_mask)
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw) if cfg.grad_clip else adamw


def init_state(model_cfg: ModelConfig, tx: optax.GradientTransformation, key: jax.Array,
               params: Any = None) -> TrainState:
    params = init_params(model_cfg, key) if params is None else params
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def state_shardings(mesh: Mesh, model_cfg: ModelConfig, tx: optax.GradientTransformation,
                    params: Any = None, axes: Any = None) -> TrainState:
    """Shardings of the whole train state, derived from `jax.eval_shape` of its init.

    Optimizer moments mirror their parameter's sharding (found with `optax.tree_map_params`,
    so any optax chain works); scalars such as step counts are replicated. `params` (shapes)
    and `axes` (their logical axes) replace the model's tree, e.g. a reward model's.
    """
    if params is None:
        abstract = jax.eval_shape(functools.partial(init_state, model_cfg, tx), jax.random.key(0))
    else:
        abstract = jax.eval_shape(lambda p: init_state(model_cfg, tx, None, params=p), params)
    params = tree_shardings(mesh, param_axes(model_cfg) if axes is None else axes, abstract.params)
    opt = optax.tree_map_params(tx, lambda _, s: s, abstract.opt_state, params,
                                transform_non_params=lambda _: replicated(mesh))
    return TrainState(step=replicated(mesh), params=params, opt_state=opt)


def abstract_state(mesh: Mesh, model_cfg: ModelConfig, tx: optax.GradientTransformation) -> TrainState:
    """The train state as ShapeDtypeStructs carrying their shardings: a restore target."""
    abstract = jax.eval_shape(functools.partial(init_state, model_cfg, tx), jax.random.key(0))
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, state_shardings(mesh, model_cfg, tx))


def batch_shardings(mesh: Mesh, batch: dict, batch_is_global: bool = False) -> dict:
    """Split every batch array over its leading (batch) axis; other axes replicated.

    The sharding is that of the GLOBAL batch. By default `batch` holds this host's rows (as
    `compile_step` takes it), so the global batch has process_count times its rows, and on
    several hosts it must split over ('data', 'fsdp'): a batch that did not would be
    "replicated" with different rows on each host, and the hosts would train different models.
    With `batch_is_global` every host holds the whole batch and any split is correct.
    """
    hosts = 1 if batch_is_global else jax.process_count()
    out = {}
    for k, v in batch.items():
        shape = (v.shape[0] * hosts, *v.shape[1:])
        spec = logical_spec(("batch",) + (None,) * (v.ndim - 1), shape, mesh)
        if hosts > 1 and shape[0] % (mesh.shape["data"] * mesh.shape["fsdp"]):
            raise ValueError(f"batch {k!r}: {shape[0]} rows ({v.shape[0]} on each of {hosts} hosts) do not split over "
                             f"data x fsdp = {mesh.shape['data']} x {mesh.shape['fsdp']} devices; make the global "
                             f"batch a multiple of {mesh.shape['data'] * mesh.shape['fsdp']}")
        out[k] = NamedSharding(mesh, spec)
    return out


def apply_gradients(state: TrainState, tx: optax.GradientTransformation,
                    loss_fn: Callable[[Any], tuple[jax.Array, dict]],
                    active: jax.Array | None = None) -> tuple[TrainState, dict]:
    """The one update of every train step: gradients of `loss_fn(params) -> (loss, metrics)`,
    an optimizer step, and the metrics with the loss and the gradients' global norm added.

    A step whose loss or gradients (or the parameters or optimizer state it would produce) are
    not finite is skipped: parameters and optimizer state stay as they were, the step count
    still advances, and metrics["skipped"] is 1 (else 0). One NaN element would otherwise, once
    global-norm clipping divides by the NaN norm, make every parameter NaN.

    `active` False (a mini-batch with nothing to learn from: every token masked) also keeps
    parameters and optimizer state, without counting as skipped: its gradient is zero, but
    AdamW would still move every weight by its momentum and decay.
    """
    def all_finite(tree):
        return functools.reduce(jnp.logical_and, [jnp.isfinite(x).all() for x in jax.tree.leaves(tree)
                                                  if jnp.issubdtype(x.dtype, jnp.inexact)], jnp.bool_(True))

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.tree.norm(grads)  # non-finite if any gradient element is
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & all_finite(params) & all_finite(opt_state)
    keep = ok if active is None else ok & active
    params, opt_state = jax.tree.map(lambda new, old: jnp.where(keep, new, old), (params, opt_state),
                                     (state.params, state.opt_state))
    metrics = {**metrics, "loss": loss, "grad_norm": grad_norm, "skipped": (~ok).astype(jnp.int32)}
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def lm_loss(model_cfg: ModelConfig, params, batch: dict) -> tuple[jax.Array, dict]:
    """Next-token prediction: the mean cross-entropy over loss_mask[:, 1:] (every counted token
    weighs the same, the usual SFT convention), the LM head run `head_logprobs`' chunk at a time.
    batch: tokens [B, T] int, mask [B, T] (real tokens), loss_mask [B, T] (tokens that are
    predicted, e.g. response only for SFT); packed batches also carry positions and segment_ids
    [B, T] (see `r1jax.data.lm_batches(pack=True)`)."""
    hidden, _ = forward(model_cfg, params, batch["tokens"], batch.get("positions"), mask=batch["mask"],
                        segment_ids=batch.get("segment_ids"), return_hidden=True)
    logp, _ = head_logprobs(model_cfg, params, hidden[:, :-1], batch["tokens"][:, 1:], with_entropy=False)
    m = batch["loss_mask"][:, 1:].astype(jnp.float32)
    return -(logp * m).sum() / jnp.maximum(m.sum(), 1.0), {"tokens": m.sum()}


def lm_train_step(state: TrainState, batch: dict, *, model_cfg: ModelConfig,
                  tx: optax.GradientTransformation) -> tuple[TrainState, dict]:
    """One next-token-prediction step (`lm_loss`)."""
    return apply_gradients(state, tx, lambda params: lm_loss(model_cfg, params, batch))


def head_chunks(model_cfg: ModelConfig, params, hidden: jax.Array, fn: Callable, *args: jax.Array) -> Any:
    """`fn(logits, *args)` over the LM head's float32 logits of hidden states [B, N, D],
    `ModelConfig.head_chunk` positions at a time: fn takes logits [B, c, V] and the matching
    [B, c, ...] slices of `args` and returns arrays [B, c, ...], which come back whole [B, N, ...].

    Each chunk is rematerialized in the backward pass (a scan of `jax.checkpoint`), so neither
    pass ever holds more than [B, head_chunk, V] logits: at R1's 32k-token rollouts and Qwen's
    152k vocabulary the whole [B, N, V] would be 20 GB a row. Up to one chunk it is the plain
    computation, bit for bit."""
    def piece(h, *a):
        return fn(lm_head(model_cfg, params, h), *a)

    B, N, D = hidden.shape
    chunk = getattr(model_cfg, "head_chunk", N)
    if N <= chunk:
        return piece(hidden, *args)
    n = -(-N // chunk)

    def split(x):  # [B, N, ...] -> [n, B, chunk, ...]; padded positions are computed and cut off
        x = jnp.pad(x, ((0, 0), (0, n * chunk - N)) + ((0, 0),) * (x.ndim - 2))
        return x.reshape(B, n, chunk, *x.shape[2:]).swapaxes(0, 1)

    _, out = jax.lax.scan(lambda _, xs: (None, jax.checkpoint(piece)(*xs)), None, tuple(map(split, (hidden, *args))))
    return jax.tree.map(lambda a: a.swapaxes(0, 1).reshape(B, n * chunk, *a.shape[3:])[:, :N], out)


def head_logprobs(model_cfg: ModelConfig, params, hidden: jax.Array, targets: jax.Array, temperature: float = 1.0,
                  with_entropy: bool = True) -> tuple[jax.Array, jax.Array | None]:
    """log softmax(lm_head(hidden) / temperature)[targets] [B, N] float32, and the entropy of that
    distribution at each position (None without `with_entropy`), from hidden states [B, N, D];
    the head runs in chunks (`head_chunks`)."""
    def fn(logits, t):
        logits = logits / temperature
        if not with_entropy:
            return losses.token_logprobs(logits, t), None
        logp_all = jax.nn.log_softmax(logits)
        return jnp.take_along_axis(logp_all, t[..., None], axis=-1)[..., 0], -(jnp.exp(logp_all) * logp_all).sum(-1)

    return head_chunks(model_cfg, params, hidden, fn, targets)


def completion_logprobs(model_cfg: ModelConfig, params, tokens: jax.Array, mask: jax.Array, n_new: int,
                        temperature: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """log softmax(logits / T) of the last `n_new` tokens of each row, and the entropy there.

    tokens, mask: [B, P + N] (left-padded prompt, then completion). Only the N positions that
    predict completion tokens go through the LM head (chunked: `head_logprobs`): the prompt's
    [B, P, V] logits, most of the vocabulary-sized work for long prompts, are never computed.
    """
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
    hidden, _ = forward(model_cfg, params, tokens, positions, mask=mask, return_hidden=True)
    return head_logprobs(model_cfg, params, hidden[:, -n_new - 1:-1], tokens[:, -n_new:], temperature)


def packed_completion_logprobs(model_cfg: ModelConfig, params, batch: dict, temperature: float = 1.0
                               ) -> tuple[jax.Array, jax.Array]:
    """`completion_logprobs` of rollouts packed into rows (`r1jax.data.pack_rollouts`): batch
    holds the packed tokens, segment_ids, positions [R, W] and, one entry per completion token
    [M], the (rows, cols) of the hidden state that predicts it, the token (targets) and its
    place (seq, pos) in the per-rollout layout [B, N] of completion_mask. The forward runs no
    padding and the LM head only the M real tokens; the log-probs and entropy come back [B, N]
    (0 where no token is), the layout the loss takes."""
    hidden, _ = forward(model_cfg, params, batch["tokens"], batch["positions"], mask=batch["segment_ids"] > 0,
                        segment_ids=batch["segment_ids"], return_hidden=True)
    logp, entropy = head_logprobs(model_cfg, params, hidden[batch["rows"], batch["cols"]][None],
                                  batch["targets"][None], temperature)
    shape = batch["completion_mask"].shape
    return tuple(jnp.zeros(shape).at[batch["seq"], batch["pos"]].set(x[0], mode="drop") for x in (logp, entropy))


def rollout_logprobs(model_cfg: ModelConfig, params, batch: dict, temperature: float = 1.0
                     ) -> tuple[jax.Array, jax.Array]:
    """log-probs and entropy [B, N] of a GRPO batch's completions, packed (`segment_ids` in the
    batch) or left-padded prompt + completion rows."""
    if "segment_ids" in batch:
        return packed_completion_logprobs(model_cfg, params, batch, temperature)
    return completion_logprobs(model_cfg, params, batch["tokens"], batch["mask"], batch["completion_mask"].shape[1],
                               temperature)


def grpo_train_step(state: TrainState, batch: dict, *, model_cfg: ModelConfig, tx: optax.GradientTransformation,
                    cfg: GRPOConfig, temperature: float = 1.0, max_len: int | None = None) -> tuple[TrainState, dict]:
    """One policy update on a mini-batch of rollouts.

    batch: tokens, mask [B, P + N] (or packed rows: `rollout_logprobs`); completion_mask,
    old_logp, ref_logp [B, N] (ref_logp is ignored when beta == 0); advantages [B]; optional
    token_norm [B] (token-mean's divisor, `losses.grpo_loss`). pi_theta is
    log softmax(logits / temperature), the rollout's distribution; `max_len` is Dr. GRPO's
    constant normaliser (agg 'seq-mean-token-sum-norm').
    """
    def loss_fn(params):
        logp, entropy = rollout_logprobs(model_cfg, params, batch, temperature)
        return losses.grpo_loss(logp, batch["old_logp"], batch.get("ref_logp") if cfg.beta else None,
                                batch["advantages"], batch["completion_mask"], eps_low=cfg.eps_low,
                                eps_high=cfg.eps_high, beta=cfg.beta, kl_estimator=cfg.kl_estimator, agg=cfg.agg,
                                max_len=max_len, token_norm=batch.get("token_norm"),
                                entropy=jax.lax.stop_gradient(entropy))

    # a mini-batch whose every completion token is masked (truncated or zero-variance rollouts)
    return apply_gradients(state, tx, loss_fn, active=batch["completion_mask"].sum() > 0)


def compile_step(step_fn: Callable, mesh: Mesh, state_sharding: TrainState, batch_sharding: dict,
                 batch_is_global: bool = False) -> Callable:
    """jit `step_fn(state, batch) -> (state, metrics)` with explicit shardings; the input
    state is donated (its buffers are reused for the new state). Runs under the mesh so
    activation annotations (`r1jax.sharding.constrain`) take effect.

    On several hosts a numpy batch becomes one global array: by default each host passes its
    own rows (`r1jax.data.lm_batches` gives each host its share); with `batch_is_global` every
    host holds the whole batch (e.g. rollouts every host computed alike) and contributes the
    slices its devices own."""
    jitted = jax.jit(step_fn, in_shardings=(state_sharding, batch_sharding),
                     out_shardings=(state_sharding, replicated(mesh)), donate_argnums=0)

    def to_global(x, sh):
        if jax.process_count() == 1 or isinstance(x, jax.Array):
            return x
        if batch_is_global:
            return jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx])
        return jax.make_array_from_process_local_data(sh, x)

    def run(state, batch):
        batch = {k: to_global(v, batch_sharding[k]) for k, v in batch.items()}
        with jax.set_mesh(mesh):
            return jitted(state, batch)

    return run


def logit_distill_step(state: TrainState, batch: dict, *, model_cfg: ModelConfig, tx: optax.GradientTransformation,
                       temperature: float = 1.0) -> tuple[TrainState, dict]:
    """One step of logit distillation (`losses.topk_distill_loss`) on a fixed text batch.

    batch: as lm_train_step's (tokens, mask, loss_mask [B, T]; positions and segment_ids for
    packed rows) plus teacher_topk_logp, teacher_topk_idx [B, T, K], computed by the teacher on
    the same rows: position t holds the teacher's distribution over token t + 1, the shift of
    next_token_loss, so the student's logits at t are compared with it where loss_mask[t + 1].
    """

    def loss_fn(params):
        hidden, _ = forward(model_cfg, params, batch["tokens"], batch.get("positions"), mask=batch["mask"],
                            segment_ids=batch.get("segment_ids"), return_hidden=True)
        log_q = head_chunks(model_cfg, params, hidden[:, :-1],
                            lambda logits, idx: losses.student_topk_logprobs(logits, idx, temperature),
                            batch["teacher_topk_idx"][:, :-1])
        return losses.topk_kl(log_q, batch["teacher_topk_logp"][:, :-1], batch["loss_mask"][:, 1:])

    return apply_gradients(state, tx, loss_fn)


def on_policy_distill_step(state: TrainState, batch: dict, *, model_cfg: ModelConfig,
                           tx: optax.GradientTransformation, temperature: float = 1.0) -> tuple[TrainState, dict]:
    """One on-policy distillation update (`losses.on_policy_distill_loss`) on student rollouts.

    batch: tokens, mask [B, P + N] (left-padded prompt, then completion, as grpo_train_step's);
    completion_mask, old_logp (the sampler's, at `temperature`), teacher_logp (the teacher's
    log-prob of each sampled token at the same temperature) [B, N].
    """
    n_new = batch["completion_mask"].shape[1]
    cmask = batch["completion_mask"].astype(jnp.float32)

    def loss_fn(params):
        logp, entropy = completion_logprobs(model_cfg, params, batch["tokens"], batch["mask"], n_new, temperature)
        loss, metrics = losses.on_policy_distill_loss(logp, batch["old_logp"], batch["teacher_logp"], cmask)
        entropy = (jax.lax.stop_gradient(entropy) * cmask).sum() / jnp.maximum(cmask.sum(), 1.0)
        return loss, {**metrics, "entropy": entropy}

    return apply_gradients(state, tx, loss_fn)
