"""Losses as pure jax.numpy functions of arrays (no model, no config objects).

Shapes: N sequences, T tokens, V vocab. `mask` is 1.0 on tokens that count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["token_logprobs", "next_token_loss", "group_advantages", "kl_penalty", "grpo_loss", "LOG_RATIO_CLAMP"]

# exp() of a log-ratio beyond this overflows float32 or means the sample is off-policy anyway.
LOG_RATIO_CLAMP = 20.0


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


def group_advantages(rewards: jax.Array, group_size: int, scale: str = "group", eps: float = 1e-6) -> jax.Array:
    """GRPO advantages (DeepSeekMath eq. 3): each output's reward minus its group's mean.

    rewards [N], N = Q * group_size with the G samples of a prompt contiguous -> [N].
    scale 'group': divide by the group's std (population, ddof=0) + eps, as in the paper;
    'batch': divide by the std of all N rewards (keeps easy/hard prompts on one scale);
    'none': no scaling (Dr. GRPO, which removes the std's difficulty bias).
    A group whose rewards are all equal gets advantage 0 (never NaN).
    """
    if rewards.shape[0] % group_size:
        raise ValueError(f"{rewards.shape[0]} rewards do not split into groups of {group_size}")
    r = rewards.astype(jnp.float32).reshape(-1, group_size)  # [Q, G]
    centered = r - r.mean(axis=1, keepdims=True)
    if scale == "group":
        centered = centered / (r.std(axis=1, keepdims=True) + eps)
    elif scale == "batch":
        centered = centered / (r.std() + eps)
    elif scale != "none":
        raise ValueError(f"group_advantages: scale must be 'group', 'batch' or 'none', got {scale!r}")
    return centered.reshape(-1)


def kl_penalty(logp: jax.Array, ref_logp: jax.Array, estimator: str = "k3") -> jax.Array:
    """Per-token estimate of KL(pi_theta || pi_ref) from samples of pi_theta [N, T].

    With d = log pi_ref - log pi_theta (clamped): k1 = -d, k2 = d^2 / 2, k3 = exp(d) - d - 1
    (Schulman's estimators; k3 is the paper's, unbiased and always >= 0). In the loss, k1's
    gradient is zero in expectation, so it does not regularise: use k3 (or k2).
    """
    d = jnp.clip(ref_logp - logp, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    if estimator == "k1":
        return -d
    if estimator == "k2":
        return 0.5 * d * d
    if estimator == "k3":
        return jnp.exp(d) - d - 1.0
    raise ValueError(f"kl_estimator must be 'k1', 'k2' or 'k3', got {estimator!r}")


def grpo_loss(logp: jax.Array, old_logp: jax.Array, ref_logp: jax.Array | None, advantages: jax.Array,
              mask: jax.Array, *, eps_low: float = 0.2, eps_high: float = 0.2, beta: float = 0.001,
              kl_estimator: str = "k3", agg: str = "seq-mean-token-mean", max_len: int | None = None,
              entropy: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """The GRPO objective (DeepSeekMath eq. 3, as used by DeepSeek-R1), negated for descent.

    logp, old_logp, ref_logp, mask: [N, T] (log-probs of the sampled tokens under the policy
    being trained, the policy that sampled them, and the reference; mask 1 on completion
    tokens); advantages: [N]. Per token: min(r A, clip(r, 1-eps_low, 1+eps_high) A) - beta KL
    with r = exp(logp - old_logp) (log-ratio clamped before exp). For A < 0 the min takes the
    pessimistic side too: a ratio above 1+eps_high is not clipped.

    agg 'seq-mean-token-mean': mean over sequences of each sequence's token mean (the paper);
    'token-mean': one mean over all tokens (DAPO); 'seq-mean-token-sum-norm': token sums
    divided by the constant `max_len` (default T), then the mean over sequences (Dr. GRPO).
    `ref_logp` may be None when beta == 0 (no reference model is run).
    `entropy` [N, T], if given, is reported as a metric.
    """
    mask = mask.astype(jnp.float32)
    log_ratio = jnp.clip(logp - old_logp, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = jnp.exp(log_ratio)
    adv = advantages.astype(jnp.float32)[:, None]
    unclipped = ratio * adv
    clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    per_token = -jnp.minimum(unclipped, clipped)
    n_tok = jnp.maximum(mask.sum(), 1.0)
    metrics = {}
    if beta:
        if ref_logp is None:
            raise ValueError("grpo_loss: beta > 0 needs ref_logp")
        kl = kl_penalty(logp, ref_logp, kl_estimator)
        per_token = per_token + beta * kl
        metrics["kl"] = (kl * mask).sum() / n_tok
    if agg == "seq-mean-token-mean":
        loss = ((per_token * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0)).mean()
    elif agg == "token-mean":
        loss = (per_token * mask).sum() / n_tok
    elif agg == "seq-mean-token-sum-norm":
        loss = ((per_token * mask).sum(1) / float(max_len or logp.shape[1])).mean()
    else:
        raise ValueError(f"grpo_loss: unknown agg {agg!r}")
    masked_mean = lambda x: (x * mask).sum() / n_tok  # noqa: E731
    big = jnp.finfo(jnp.float32).max
    metrics.update(
        clip_frac_low=masked_mean(((ratio < 1.0 - eps_low) & (adv < 0)).astype(jnp.float32)),
        clip_frac_high=masked_mean(((ratio > 1.0 + eps_high) & (adv > 0)).astype(jnp.float32)),
        ratio_mean=masked_mean(ratio),
        ratio_min=jnp.where(mask > 0, ratio, big).min(),
        ratio_max=jnp.where(mask > 0, ratio, -big).max(),
    )
    if entropy is not None:
        metrics["entropy"] = masked_mean(entropy)
    return loss, metrics
