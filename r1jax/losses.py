"""Losses as pure jax.numpy functions of arrays (no model, no config objects).

Shapes: N sequences, T tokens, V vocab. `mask` is 1.0 on tokens that count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["token_logprobs", "next_token_loss"]


def token_logprobs(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log softmax(logits)[targets]: logits [N, T, V] float, targets [N, T] int -> [N, T] float32.

    Computed as logit - logsumexp so the [N, T, V] log-softmax is never materialised.
    """
    logits = logits.astype(jnp.float32)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def next_token_loss(logits: jax.Array, tokens: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy of predicting tokens[:, 1:] from logits[:, :-1] over `mask[:, 1:]`.

    logits [N, T, V], tokens [N, T], mask [N, T] -> (loss, number of counted tokens). The
    mean is over tokens, so every counted token weighs the same (the usual SFT convention).
    """
    lp = token_logprobs(logits[:, :-1], tokens[:, 1:])
    m = mask[:, 1:].astype(jnp.float32)
    n = jnp.maximum(m.sum(), 1.0)
    return -(lp * m).sum() / n, m.sum()
