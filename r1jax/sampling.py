"""Jitted sampling: prefill a left-padded batch into the KV cache, then decode one token at a
time in a `lax.while_loop` that stops as soon as every sequence has finished.

Stored log-probs: for each sampled token, log softmax(logits / temperature) at that token,
i.e. the temperature-scaled distribution *before* top-k / top-p truncation. GRPO's
importance ratio pi_theta / pi_old must compare the same distribution family on both sides:
the trainer recomputes log softmax(logits / temperature) for pi_theta, and truncation is a
sampling device, not part of the policy; taking old log-probs from the truncated (renormalised)
distribution would bias every ratio by the nucleus mass. Greedy decoding stores temperature-1
log-probs.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from r1jax.config import ModelConfig, RolloutConfig
from r1jax.model import Cache, forward, init_cache, lm_head, param_axes, param_shapes, repeat_cache, unstack_layers
from r1jax.sharding import logical_spec, tree_shardings
from r1jax.tokenizer import prompt_tokens

__all__ = ["SamplingConfig", "Samples", "sample_token", "generate", "make_sampler", "rollout_sampler", "to_host",
           "prompt_ids", "rollout"]


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 disables
    stop_tokens: tuple[int, ...] = ()
    pad_id: int = 0

    def __post_init__(self):
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0 or self.max_new_tokens <= 0:
            raise ValueError(f"invalid SamplingConfig {self}: need temperature >= 0, 0 < top_p <= 1, top_k >= 0, "
                             "max_new_tokens > 0")


@flax.struct.dataclass
class Samples:
    tokens: jax.Array  # [B, N] int32 completion tokens (pad_id after the end)
    logprobs: jax.Array  # [B, N] float32 log-prob of each token (0 after the end)
    lengths: jax.Array  # [B] int32 tokens generated, the stop token included
    truncated: jax.Array  # [B] bool: hit max_new_tokens without a stop token


@flax.struct.dataclass
class _Loop:
    step: jax.Array  # []
    cache: Cache
    logits: jax.Array  # [B, V] next-token logits
    positions: jax.Array  # [B] RoPE position of the next token
    tokens: jax.Array  # [B, N]
    logprobs: jax.Array  # [B, N]
    done: jax.Array  # [B]
    lengths: jax.Array  # [B]
    key: jax.Array


def _uniforms(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """float32 uniforms on the grid k / 2^24, k in [0, 2^24): every value float32 holds exactly
    in [0, 1) at that spacing, from the top 24 of 32 random bits."""
    return (jax.random.bits(key, shape, jnp.uint32) >> 8).astype(jnp.float32) * 2.0 ** -24


def _inverse_cdf(u: jax.Array, weights: jax.Array) -> jax.Array:
    """Index drawn with probability weights / weights.sum() per row (weights [..., n] >= 0, u
    [...] in [0, 1)): the first index of positive weight whose running sum exceeds u * total.

    XLA's float32 cumsum is not monotone (on CPU it sums in a tree, and neighbouring running sums
    can differ by an ulp either way), so indexing by `sum(cumsum <= target)` drew zero-weight
    indices at the dips. Here the running sums of positive-weight indices are made monotone by a
    running max (exact: max never rounds), and a zero-weight index only repeats its predecessor's,
    so the first index whose running max exceeds the target always has positive weight."""
    running = jax.lax.cummax(jnp.where(weights > 0, jnp.cumsum(weights, axis=-1), 0.0), axis=weights.ndim - 1)
    total = running[..., -1:]
    # u * total can round up to total: keep the target below it, so that some running sum exceeds it
    target = jnp.minimum(u[..., None] * total, jnp.nextafter(total, 0.0))
    return jnp.minimum(jnp.sum(running <= target, axis=-1), weights.shape[-1] - 1)


def _block_size(vocab: int) -> int:
    """The block of the two-level draw: the smallest power of two >= sqrt(vocab), at least 2."""
    return 1 << max(1, (int(np.ceil(np.sqrt(vocab))) - 1).bit_length())


def _draw(u: jax.Array, weights: jax.Array) -> jax.Array:
    """Index drawn with probability weights / weights.sum() per row (weights [B, V] >= 0) from
    two uniforms a row (u [B, 2] on the 2^-24 grid): a block of b ~ sqrt(V) indices by its mass,
    then an index within the block by its weight, each an `_inverse_cdf` over at most ~sqrt(V)
    sums. A single float32 inverse CDF over the whole vocabulary resolves masses only to
    2^-24 of the total: over 151,936 tokens every token's mass was off by up to that much (a
    total-variation distance of 2-3e-3 from the softmax, and the tail below it never drawn).
    Two levels resolve a token's mass to 2^-24 of its block's: a total variation of at most
    about (V / b + b) 2^-25 (2.4e-5 at V = 151,936), 1e-5 measured, exact up to that float32
    rounding. An index of zero weight is never drawn (nor one past V, unless every weight is 0
    or NaN: then the last)."""
    B, V = weights.shape
    b = _block_size(V)
    n_blocks = -(-V // b)
    w = jnp.pad(weights, ((0, 0), (0, n_blocks * b - V))).reshape(B, n_blocks, b)
    block = _inverse_cdf(u[:, 0], w.sum(-1))
    inner = jnp.take_along_axis(w, block[:, None, None], axis=1)[:, 0]
    return jnp.minimum(block * b + _inverse_cdf(u[:, 1], inner), V - 1)


def sample_token(key: jax.Array, logits: jax.Array, cfg: SamplingConfig) -> tuple[jax.Array, jax.Array]:
    """(token [B], log-prob [B] under the temperature-scaled, untruncated distribution). The
    token is drawn from the softmax of logits / temperature, truncated to the top k and the top
    p and renormalised, by `_draw` (two uniforms a row; the Gumbel-max trick of
    `jax.random.categorical` needs V uniforms and two logs a row, and its float32 Gumbels resolve
    probabilities only down to ~1e-7, like a one-level inverse CDF)."""
    logits = logits.astype(jnp.float32)
    if cfg.temperature == 0:
        token = jnp.argmax(logits, axis=-1)
        return token, jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], -1)[:, 0]
    scaled = logits / cfg.temperature
    logp = jax.nn.log_softmax(scaled)
    probs = jnp.exp(logp)
    if cfg.top_k:
        kth = jax.lax.top_k(scaled, cfg.top_k)[0][:, -1:]
        probs = jnp.where(scaled < kth, 0.0, probs)
    u = _uniforms(key, (logits.shape[0], 2))
    if cfg.top_p < 1.0:
        order = jnp.argsort(-probs, axis=-1)
        sorted_probs = jnp.take_along_axis(probs, order, -1)
        # keep the smallest prefix whose mass reaches top_p of what is left after top-k: a token
        # stays if the mass before it is < top_p (the running max keeps the kept set a prefix
        # where float32's cumsum dips)
        before = jax.lax.cummax(jnp.cumsum(sorted_probs, -1) - sorted_probs, axis=1)
        sorted_probs = jnp.where(before < cfg.top_p * sorted_probs.sum(-1, keepdims=True), sorted_probs, 0.0)
        token = jnp.take_along_axis(order, _draw(u, sorted_probs)[:, None], -1)[:, 0]
    else:
        token = _draw(u, probs)
    return token, jnp.take_along_axis(logp, token[:, None], -1)[:, 0]


def generate(model_cfg: ModelConfig, cfg: SamplingConfig, params: dict, prompts: jax.Array,
             prompt_mask: jax.Array, key: jax.Array, group_size: int = 1) -> Samples:
    """Sample `group_size` completions for each left-padded prompt [Q, P] (mask [Q, P]); rows
    [q * G, (q + 1) * G) of the result belong to prompt q. jit with static configs."""
    Q, P = prompts.shape
    B, N = Q * group_size, cfg.max_new_tokens
    positions = jnp.maximum(jnp.cumsum(prompt_mask, axis=1) - 1, 0).astype(jnp.int32)
    # every use casts a weight to the compute dtype: cast once here, not at every decode step
    # (float32 weights with bfloat16 compute otherwise convert the whole model per token)
    params = jax.tree.map(lambda w: w.astype(model_cfg.dtype), params)
    if not model_cfg.scan_layers:  # slice the layers out of the stacked weights once, not every step
        params = {**params, "layers": unstack_layers(params["layers"])}
    # Prefill each prompt once, and only the last position goes through the LM head (the
    # prompt's [Q, P, V] logits would be the largest buffer of sampling at real sizes).
    hidden, cache = forward(model_cfg, params, prompts, positions, init_cache(model_cfg, Q, P + N),
                            mask=prompt_mask, return_hidden=True)
    logits = lm_head(model_cfg, params, hidden[:, -1:])
    if group_size > 1:  # then copy the prompt's cache to its G samples
        cache = repeat_cache(model_cfg, cache, group_size)
        logits, positions = jnp.repeat(logits, group_size, axis=0), jnp.repeat(positions, group_size, axis=0)
    stops = jnp.asarray(cfg.stop_tokens or (-1,), jnp.int32)

    def body(s: _Loop) -> _Loop:
        key, sub = jax.random.split(s.key)
        token, logp = sample_token(sub, s.logits, cfg)
        token = jnp.where(s.done, cfg.pad_id, token).astype(jnp.int32)
        logp = jnp.where(s.done, 0.0, logp)
        lengths = s.lengths + (~s.done).astype(jnp.int32)
        done = s.done | jnp.isin(token, stops)
        tokens = s.tokens.at[:, s.step].set(token)
        logprobs = s.logprobs.at[:, s.step].set(logp)
        # finished rows are fed padding that nothing attends to
        step_logits, cache = forward(model_cfg, params, token[:, None], s.positions[:, None], s.cache,
                                     mask=~s.done[:, None])
        return _Loop(step=s.step + 1, cache=cache, logits=step_logits[:, -1], positions=s.positions + 1,
                     tokens=tokens, logprobs=logprobs, done=done, lengths=lengths, key=key)

    init = _Loop(step=jnp.zeros((), jnp.int32), cache=cache, logits=logits[:, -1], positions=positions[:, -1] + 1,
                 tokens=jnp.full((B, N), cfg.pad_id, jnp.int32), logprobs=jnp.zeros((B, N), jnp.float32),
                 done=jnp.zeros((B,), bool), lengths=jnp.zeros((B,), jnp.int32), key=key)
    out = jax.lax.while_loop(lambda s: (s.step < N) & ~jnp.all(s.done), body, init)
    truncated = ~out.done if cfg.stop_tokens else jnp.ones((B,), bool)
    return Samples(tokens=out.tokens, logprobs=out.logprobs, lengths=out.lengths, truncated=truncated)


def make_sampler(model_cfg: ModelConfig, cfg: SamplingConfig, mesh: Mesh | None = None,
                 group_size: int = 1) -> Callable:
    """A jitted `sampler(params, prompts, prompt_mask, key) -> Samples` that draws `group_size`
    completions per prompt (rows [q * G, (q + 1) * G) belong to prompt q). With a mesh, the
    batch is split over ('data', 'fsdp') and the parameters keep the model's sharding."""

    def run(params, prompts, prompt_mask, key):
        return generate(model_cfg, cfg, params, prompts, prompt_mask, key, group_size)

    if mesh is None:
        return jax.jit(run)
    params_sh = tree_shardings(mesh, param_axes(model_cfg), param_shapes(model_cfg))

    @functools.lru_cache(maxsize=8)
    def compiled(batch: int, length: int):
        batch_sh = jax.sharding.NamedSharding(mesh, logical_spec(("batch", None), (batch, length), mesh))
        return jax.jit(run, in_shardings=(params_sh, batch_sh, batch_sh, None)), batch_sh

    def sampler(params, prompts, prompt_mask, key):
        fn, batch_sh = compiled(*np.shape(prompts))
        if jax.process_count() > 1:  # every host holds the same prompts and gives its devices' rows
            prompts, prompt_mask = (x if isinstance(x, jax.Array) else
                                    jax.make_array_from_callback(np.shape(x), batch_sh, lambda i, x=x: np.asarray(x)[i])
                                    for x in (prompts, prompt_mask))
        with jax.set_mesh(mesh):
            return fn(params, prompts, prompt_mask, key)

    return sampler


# ----------------------------------------------------------------------------- rollouts of task prompts

def rollout_sampler(model_cfg: ModelConfig, cfg: RolloutConfig, tok, *, mesh: Mesh | None = None,
                    group_size: int = 1) -> Callable:
    """`make_sampler` for a stage's `RolloutConfig`, stopping at the tokenizer's EOS."""
    return make_sampler(model_cfg, SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                                  top_p=cfg.top_p, stop_tokens=(tok.eos_id,), pad_id=tok.pad_id),
                        mesh=mesh, group_size=group_size)


def to_host(x: jax.Array) -> np.ndarray:
    """The whole value of a (possibly multi-host) array on every host."""
    if jax.process_count() == 1:
        return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils  # only on several hosts
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def prompt_ids(tok, examples, max_prompt: int, template: str = "r1-zero") -> list[list[int]]:
    """The token ids of each example's prompt in `template` (r1jax.tokenizer.render_prompt); an
    error, not a cut, for one longer than `max_prompt` (a cut would drop the template's start,
    which the rewards' format rests on)."""
    ids = [prompt_tokens(tok, ex.prompt, template) for ex in examples]
    longest = max(range(len(ids)), key=lambda i: len(ids[i]))
    if len(ids[longest]) > max_prompt:
        raise ValueError(f"problem {examples[longest].id!r} is {len(ids[longest])} tokens in the {template} template, "
                         f"more than max_prompt_tokens={max_prompt} (--rollout.max-prompt-tokens): raise it")
    return ids


def rollout(sampler, params, tok, examples, max_prompt: int, key, template: str = "r1-zero"):
    """Sample completions of `examples` in `template`: (prompts [Q, P], prompt_mask [Q, P],
    Samples on the host, decoded completion texts), G texts per example in order."""
    prompts, pmask = tok.pad_batch(prompt_ids(tok, examples, max_prompt, template), length=max_prompt)
    roll = jax.tree.map(to_host, sampler(params, prompts, pmask, key))
    texts = [tok.decode([t for t in row[:n] if t != tok.eos_id]) for row, n in zip(roll.tokens, roll.lengths)]
    return prompts, pmask, roll, texts
