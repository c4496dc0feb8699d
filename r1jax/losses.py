"""Losses as pure jax.numpy functions of arrays (no model, no config objects).

Shapes: N sequences, T tokens, V vocab. `mask` is 1.0 on tokens that count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["token_logprobs", "next_token_loss", "constant_groups", "group_advantages", "kl_penalty", "grpo_loss",
           "LOG_RATIO_CLAMP", "bradley_terry_loss"]

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


def constant_groups(rewards: jax.Array, group_size: int) -> jax.Array:
    """Which groups have all their rewards equal: rewards [N] -> [N / group_size] bool.

    The one definition of a constant group, shared by `group_advantages` (their advantages are
    exactly 0) and the RL stage's `drop_zero_variance`. It compares the float32 rewards the
    advantages are computed from (max == min): `std == 0` is not a test for it, because the
    float32 mean of equal values that are not exact in binary (2.7) is an ulp off, so their
    computed std is that ulp.
    """
    if rewards.shape[0] % group_size:
        raise ValueError(f"{rewards.shape[0]} rewards do not split into groups of {group_size}")
    r = rewards.astype(jnp.float32).reshape(-1, group_size)
    return r.max(axis=1) == r.min(axis=1)


def group_advantages(rewards: jax.Array, group_size: int, scale: str = "group", eps: float = 1e-6) -> jax.Array:
    """GRPO advantages (DeepSeekMath eq. 3): each output's reward minus its group's mean.

    rewards [N], N = Q * group_size with the G samples of a prompt contiguous -> [N].
    scale 'group': divide by the group's std (population, ddof=0) + eps, as in the paper;
    'batch': divide by the std of all N rewards (keeps easy/hard prompts on one scale);
    'none': no scaling (Dr. GRPO, which removes the std's difficulty bias).
    A group whose rewards are all equal (`constant_groups`) gets advantage exactly 0, whatever
    the scale: the formula would give it rounding error / (rounding error + eps), -0.32 for
    sixteen rewards of 2.7 (see `constant_groups`), a push on samples that were all scored alike.
    """
    constant = constant_groups(rewards, group_size)  # also checks that the groups split evenly
    r = rewards.astype(jnp.float32).reshape(-1, group_size)  # [Q, G]
    centered = r - r.mean(axis=1, keepdims=True)
    if scale == "group":
        centered = centered / (r.std(axis=1, keepdims=True) + eps)
    elif scale == "batch":
        centered = centered / (r.std() + eps)
    elif scale != "none":
        raise ValueError(f"group_advantages: scale must be 'group', 'batch' or 'none', got {scale!r}")
    return jnp.where(constant[:, None], 0.0, centered).reshape(-1)


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
              token_norm: jax.Array | None = None, entropy: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """The GRPO objective (DeepSeekMath eq. 3, as used by DeepSeek-R1), negated for descent.

    logp, old_logp, ref_logp, mask: [N, T] (log-probs of the sampled tokens under the policy
    being trained, the policy that sampled them, and the reference; mask 1 on completion
    tokens); advantages: [N]. Per token: min(r A, clip(r, 1-eps_low, 1+eps_high) A) - beta KL
    with r = exp(logp - old_logp) (log-ratio clamped before exp). For A < 0 the min takes the
    pessimistic side too: a ratio above 1+eps_high is not clipped.

    agg 'seq-mean-token-mean': mean over sequences of each sequence's token mean (the paper);
    'token-mean': one mean over all tokens (DAPO); 'seq-mean-token-sum-norm': token sums
    divided by the constant `max_len` (default T), then the mean over sequences (Dr. GRPO).
    `token_norm` (a scalar, or [N] equal values) replaces token-mean's divisor, the masked token
    count of this call: a training step that splits its rollouts into mini-batches passes its
    whole batch's count over the number of mini-batches, so that every token weighs the same
    whatever mini-batch it lands in (with length-grouped mini-batches a band of short answers
    would otherwise weigh each of its tokens as many times more as its answers are shorter,
    which is the per-sequence mean token-mean exists to remove).
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
        loss = (per_token * mask).sum() / (n_tok if token_norm is None else jnp.mean(token_norm))
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


def bradley_terry_loss(chosen: jax.Array, rejected: jax.Array) -> tuple[jax.Array, dict]:
    """Reward-model loss on preference pairs: mean of -log sigmoid(chosen - rejected), [N] each.

    log_sigmoid keeps large margins finite in both directions (no exp overflow). Metrics:
    accuracy (share of pairs scored chosen > rejected; a tie counts half, so a model that
    cannot tell the two apart, e.g. a zero-initialised head, scores 0.5) and the mean margin.
    """
    margin = chosen.astype(jnp.float32) - rejected.astype(jnp.float32)
    accuracy = jnp.mean((margin > 0) + 0.5 * (margin == 0))
    return -jax.nn.log_sigmoid(margin).mean(), {"accuracy": accuracy, "margin": margin.mean()}


__all__ += ["topk_distill_loss", "student_topk_logprobs", "topk_kl", "on_policy_distill_loss"]


def topk_distill_loss(student_logits: jax.Array, teacher_topk_logp: jax.Array, teacher_topk_idx: jax.Array,
                      mask: jax.Array, temperature: float = 1.0) -> tuple[jax.Array, dict]:
    """Forward KL(teacher || student) per position from the teacher's top-k, mean over `mask`.

    student_logits [B, T, V]; teacher_topk_logp [B, T, K]: the teacher's log-probs (at the same
    temperature) of its K most likely tokens teacher_topk_idx [B, T, K]; mask [B, T]. With
    p = the teacher's top-k renormalised (log p_k = logp_k - logsumexp over the k) and
    q = softmax(student_logits / temperature) over the whole vocabulary, each position costs
    sum_k p_k (log p_k - log q(idx_k)).

    Why renormalise: the top k hold a mass m < 1 of the teacher. Weighted by the raw p_k the
    sum is a cross-entropy minus a constant, not a divergence: it is not >= 0, not 0 when the
    student matches, and a position scales by its own m (uncertain positions would weigh
    less). Renormalised, it is the exact KL from a proper distribution (the teacher cut to its
    top k), 0 iff q equals it, and equal to the full-vocabulary KL when K = V; the tail the
    teacher leaves out is reported as `teacher_topk_mass`.
    Metrics: forward_kl (= the loss), teacher_topk_mass (m), student_topk_mass (the student's
    mass on the teacher's top k), tokens (positions counted).
    """
    return topk_kl(student_topk_logprobs(student_logits, teacher_topk_idx, temperature), teacher_topk_logp, mask)


def student_topk_logprobs(student_logits: jax.Array, idx: jax.Array, temperature: float = 1.0) -> jax.Array:
    """log q(idx) [B, T, K] for q = softmax(student_logits / temperature) over the whole
    vocabulary, as logit - logsumexp (no [B, T, V] log-softmax is materialised)."""
    scaled = student_logits.astype(jnp.float32) / temperature
    return jnp.take_along_axis(scaled, idx, axis=-1) - jax.nn.logsumexp(scaled, -1, keepdims=True)


def topk_kl(log_q: jax.Array, teacher_topk_logp: jax.Array, mask: jax.Array) -> tuple[jax.Array, dict]:
    """`topk_distill_loss` from the student's log-probs at the teacher's top-k ids, log_q
    [B, T, K] (`student_topk_logprobs`): what a chunked LM head computes a chunk at a time."""
    mask = mask.astype(jnp.float32)
    t_logp = teacher_topk_logp.astype(jnp.float32)
    log_m = jax.nn.logsumexp(t_logp, axis=-1, keepdims=True)
    log_p = t_logp - log_m
    kl = (jnp.exp(log_p) * (log_p - log_q)).sum(-1)
    n = jnp.maximum(mask.sum(), 1.0)
    # where(), not a product: padding positions may hold anything, even non-finite values
    masked_mean = lambda x: jnp.where(mask > 0, x, 0.0).sum() / n  # noqa: E731
    loss = masked_mean(kl)
    return loss, {"forward_kl": loss, "teacher_topk_mass": masked_mean(jnp.exp(log_m[..., 0])),
                  "student_topk_mass": masked_mean(jnp.exp(log_q).sum(-1)), "tokens": mask.sum()}


def on_policy_distill_loss(logp: jax.Array, old_logp: jax.Array, teacher_logp: jax.Array,
                           mask: jax.Array) -> tuple[jax.Array, dict]:
    """On-policy distillation: the student samples, the teacher scores each sampled token, and
    the student takes a policy-gradient step on the per-token reward -KL.

    logp, old_logp, teacher_logp, mask: [B, N] log-probs of the sampled tokens under the
    student being trained, the student that sampled them, and the teacher. Per token the
    advantage is A = teacher_logp - old_logp (minus the sampled reverse KL, a constant: no
    gradient flows through it) and the loss is -mean over masked tokens of
    exp(logp - old_logp) * A (log-ratio clamped before exp, as in grpo_loss).

    At logp == old_logp the gradient is (log q - log p) grad log q for the sampled token,
    whose expectation under the student q is the gradient of KL(q || p) at that position
    (the other term of that gradient, sum q grad log q, is 0). Each token is credited with its
    own KL only, not with the KL of the tokens it leads to (a discount of 0): a low-variance,
    dense signal, as the teacher grades every token.
    Metrics: reverse_kl (mean of old_logp - teacher_logp over masked tokens), ratio_mean.
    """
    mask = mask.astype(jnp.float32)
    adv = jax.lax.stop_gradient(teacher_logp.astype(jnp.float32) - old_logp.astype(jnp.float32))
    ratio = jnp.exp(jnp.clip(logp - old_logp, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    n = jnp.maximum(mask.sum(), 1.0)
    masked_mean = lambda x: (x * mask).sum() / n  # noqa: E731
    return -masked_mean(ratio * adv), {"reverse_kl": masked_mean(-adv), "ratio_mean": masked_mean(ratio)}
