"""GRPO advantages and loss against hand-computed values and a loop-by-loop numpy reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import losses


def test_token_logprobs_and_next_token_loss():
    logits = np.random.default_rng(0).normal(size=(2, 4, 7)).astype(np.float32)
    tokens = np.array([[1, 2, 3, 4], [5, 6, 0, 0]])
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], np.float32)
    lp = np.asarray(losses.token_logprobs(logits, tokens))
    ref = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(lp, np.take_along_axis(ref, tokens[..., None], -1)[..., 0], atol=1e-5)
    loss, n = losses.next_token_loss(logits, tokens, mask)
    picked = [ref[0, 0, 2], ref[0, 1, 3], ref[0, 2, 4], ref[1, 0, 6]]
    assert float(n) == 4 and float(loss) == pytest.approx(-np.mean(picked), abs=1e-5)


def test_group_advantages_by_hand():
    r = jnp.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # 2 groups of 4; the second has no variance
    a = np.asarray(losses.group_advantages(r, 4))
    np.testing.assert_allclose(a[:4], [1, -1, -1, 1], atol=1e-5)  # mean 0.5, std 0.5
    np.testing.assert_array_equal(a[4:], 0.0)
    a = np.asarray(losses.group_advantages(r, 4, scale="none"))
    np.testing.assert_allclose(a, [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])
    a = np.asarray(losses.group_advantages(r, 4, scale="batch"))
    np.testing.assert_allclose(a, np.array([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]) / np.std(np.asarray(r)), rtol=1e-5)
    with pytest.raises(ValueError, match="groups of 3"):
        losses.group_advantages(r, 3)


def _reference(logp, old, ref, adv, mask, eps_low, eps_high, beta, est, agg, max_len):
    """The GRPO objective written out token by token with Python floats."""
    N, T = logp.shape
    per = np.zeros((N, T))
    for i in range(N):
        for t in range(T):
            r = math.exp(logp[i, t] - old[i, t])
            obj = min(r * adv[i], min(max(r, 1 - eps_low), 1 + eps_high) * adv[i])
            d = ref[i, t] - logp[i, t]
            kl = {"k1": -d, "k2": d * d / 2, "k3": math.exp(d) - d - 1}[est]
            per[i, t] = -(obj - beta * kl)
    if agg == "token-mean":
        return (per * mask).sum() / mask.sum()
    if agg == "seq-mean-token-mean":
        return np.mean([(per[i] * mask[i]).sum() / mask[i].sum() for i in range(N)])
    return np.mean([(per[i] * mask[i]).sum() / max_len for i in range(N)])


@pytest.mark.parametrize("agg", ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("est", ["k1", "k2", "k3"])
def test_grpo_loss_matches_reference(agg, est):
    rng = np.random.default_rng(1)
    N, T = 6, 5
    old = rng.normal(-2, 0.5, (N, T))
    logp = old + rng.normal(0, 0.4, (N, T))  # ratios well away from 1, on both sides of the clip
    ref = logp + rng.normal(0, 0.3, (N, T))
    adv = np.array([1.5, -1.0, 0.3, -2.0, 0.0, 0.7])  # negative advantages with ratio != 1 included
    mask = (rng.random((N, T)) > 0.3).astype(np.float64)
    mask[:, 0] = 1
    kw = dict(eps_low=0.2, eps_high=0.28, beta=0.04)
    want = _reference(logp, old, ref, adv, mask, kw["eps_low"], kw["eps_high"], kw["beta"], est, agg, 8)
    got, m = losses.grpo_loss(*(jnp.asarray(x, jnp.float32) for x in (logp, old, ref, adv, mask)),
                              kl_estimator=est, agg=agg, max_len=8, **kw)
    assert float(got) == pytest.approx(want, abs=1e-5)
    ratio = np.exp(logp - old)
    sel = mask > 0
    assert float(m["ratio_min"]) == pytest.approx(ratio[sel].min(), rel=1e-5)
    assert float(m["ratio_max"]) == pytest.approx(ratio[sel].max(), rel=1e-5)
    low = ((ratio < 0.8) & (adv[:, None] < 0) & sel).sum() / sel.sum()
    high = ((ratio > 1.28) & (adv[:, None] > 0) & sel).sum() / sel.sum()
    assert float(m["clip_frac_low"]) == pytest.approx(low) and float(m["clip_frac_high"]) == pytest.approx(high)
    assert low > 0 and high > 0  # the test really exercises both clips


def test_negative_advantage_takes_the_pessimistic_side():
    """A < 0, ratio 1.5 > 1 + eps: min(1.5 * -1, 1.2 * -1) = -1.5, so the loss is 1.5 (unclipped),
    and the gradient still pushes the ratio down. A trainer that clips here gets 1.2 and no gradient."""
    old = jnp.zeros((1, 1))
    logp = jnp.log(jnp.full((1, 1), 1.5))
    loss, _ = losses.grpo_loss(logp, old, None, jnp.array([-1.0]), jnp.ones((1, 1)), beta=0.0)
    assert float(loss) == pytest.approx(1.5, rel=1e-6)
    g = jax.grad(lambda lp: losses.grpo_loss(lp, old, None, jnp.array([-1.0]), jnp.ones((1, 1)), beta=0.0)[0])(logp)
    assert float(g[0, 0]) == pytest.approx(1.5, rel=1e-5)  # d(ratio * 1)/d logp = ratio
    # A > 0 with the ratio above the clip: the clipped side wins and the gradient is zero
    g = jax.grad(lambda lp: losses.grpo_loss(lp, old, None, jnp.array([1.0]), jnp.ones((1, 1)), beta=0.0)[0])(logp)
    assert float(g[0, 0]) == 0.0


def test_k3_gradient_pulls_towards_the_reference_and_k1_does_not_on_average():
    rng = np.random.default_rng(2)
    logits = jnp.asarray(rng.normal(size=8), jnp.float32)
    ref_logits = jnp.asarray(rng.normal(size=8), jnp.float32)
    p = jax.nn.softmax(logits)

    def expected_kl_grad(est):  # E_{x~pi}[grad of the estimator], computed exactly over the support
        def f(lg):
            logp = jax.nn.log_softmax(lg)
            kl = losses.kl_penalty(logp, jax.nn.log_softmax(ref_logits), est)
            return (jax.lax.stop_gradient(p) * kl).sum()
        return jax.grad(f)(logits)

    true_kl_grad = jax.grad(lambda lg: (jax.nn.softmax(lg) * (jax.nn.log_softmax(lg)
                                                              - jax.nn.log_softmax(ref_logits))).sum())(logits)
    k1 = expected_kl_grad("k1")
    np.testing.assert_allclose(k1, 0.0, atol=1e-6)  # the trap: k1 in the loss has zero expected gradient
    k3 = expected_kl_grad("k3")
    assert float(jnp.dot(k3, true_kl_grad)) > 0  # k3 descends the true KL


def test_zero_variance_group_no_nan_and_beta_zero_needs_no_reference():
    adv = losses.group_advantages(jnp.ones(4), 4)
    loss, m = losses.grpo_loss(jnp.zeros((4, 3)), jnp.zeros((4, 3)), None, adv, jnp.ones((4, 3)), beta=0.0)
    assert float(loss) == 0.0 and np.isfinite(float(m["ratio_mean"])) and "kl" not in m
    with pytest.raises(ValueError, match="needs ref_logp"):
        losses.grpo_loss(jnp.zeros((4, 3)), jnp.zeros((4, 3)), None, adv, jnp.ones((4, 3)), beta=0.1)
    huge, _ = losses.grpo_loss(jnp.full((1, 1), 80.0), jnp.zeros((1, 1)), jnp.zeros((1, 1)), jnp.ones(1),
                               jnp.ones((1, 1)), eps_high=1e9, beta=0.1)
    assert np.isfinite(float(huge))  # the clamped log-ratio cannot overflow exp


# Rewards of every group in these tests: 301 values in [0, 3] (most not exact in binary, like 2.7,
# whose float32 mean over a group is an ulp off) at the group sizes GRPO runs with.
VALUES = np.linspace(0.0, 3.0, 301)
GROUP_SIZES = (7, 8, 12, 16, 64)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_a_group_of_equal_rewards_gets_exactly_zero_advantage(scale):
    for G in GROUP_SIZES:
        a = np.asarray(losses.group_advantages(jnp.asarray(np.repeat(VALUES, G)), G, scale))
        # the formula alone gave e.g. -0.323 for sixteen rewards of 2.7 (scale 'group')
        assert np.abs(a).max() == 0.0, (G, scale, float(np.abs(a).max()))


def test_constant_groups_are_the_dropped_ones_and_other_groups_follow_the_formula():
    from r1jax.stages.grpo import zero_variance_rows  # the stage's rule for --grpo.drop-zero-variance

    rng = np.random.default_rng(0)
    for G in GROUP_SIZES:
        constant = np.repeat(VALUES, G).reshape(-1, G)
        one_off = constant.copy()
        one_off[:, 0] += 0.5  # every group but one member constant
        spread = rng.choice([0.0, 0.5, 1.0, 2.7, 3.0], size=(len(VALUES), G))
        spread[:, :2] = [0.0, 3.0]  # never constant
        groups = np.concatenate([constant, one_off, spread])
        total = groups.reshape(-1)
        adv = np.asarray(losses.group_advantages(jnp.asarray(total), G)).reshape(-1, G)
        is_constant = np.asarray(losses.constant_groups(jnp.asarray(total), G))
        dropped = zero_variance_rows(total, G).reshape(-1, G)
        want = np.arange(len(groups)) < len(VALUES)
        np.testing.assert_array_equal(is_constant, want)
        np.testing.assert_array_equal(dropped, np.repeat(want[:, None], G, 1))  # the stage drops just those
        np.testing.assert_array_equal(np.all(adv == 0, axis=1), want)  # and they are the groups with advantage 0
        # non-constant groups: (r - mean) / (std + eps) computed in float64 from the float32 rewards
        r = groups[~want].astype(np.float32).astype(np.float64)
        ref = (r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + 1e-6)
        np.testing.assert_allclose(adv[~want], ref, rtol=1e-5, atol=1e-5)


def test_token_mean_weighs_every_token_alike_in_any_mini_batch():
    """DAPO's token-mean divides by the batch's token count. Split into length-grouped
    mini-batches, each dividing by its own count, a band of 10-token answers weighed each token
    10x a band of 100-token ones: the paper's per-sequence mean again. With the step's count
    over the number of mini-batches as the divisor, every token weighs 1 / 55 in either."""
    T = 100
    masks = [jnp.arange(T)[None] < 10, jnp.arange(T)[None] < 100]  # one mini-batch each
    zeros, adv = jnp.zeros((1, T)), jnp.ones(1)

    def weight(mask, **kw):
        g = jax.grad(lambda lp: losses.grpo_loss(lp, zeros, None, adv, mask.astype(jnp.float32), beta=0.0,
                                                 agg="token-mean", **kw)[0])(zeros)
        return -float(g[0, 0])

    assert [weight(m) for m in masks] == pytest.approx([1 / 10, 1 / 100])  # each mini-batch's own count
    assert [weight(m, token_norm=jnp.full(1, 110 / 2)) for m in masks] == pytest.approx([1 / 55, 1 / 55])
    # one mini-batch holding both: the plain count, the same weight per token as the whole batch's
    both = jnp.concatenate(masks).astype(jnp.float32)
    g = jax.grad(lambda lp: losses.grpo_loss(lp, jnp.zeros((2, T)), None, jnp.ones(2), both, beta=0.0,
                                             agg="token-mean")[0])(jnp.zeros((2, T)))
    assert -float(g[0, 0]) == pytest.approx(1 / 110) and -float(g[1, 0]) == pytest.approx(1 / 110)


def test_the_learning_rate_schedule_counts_the_stages_steps_not_its_updates():
    """A GRPO step makes `minibatches` optimizer updates; the cosine over 50 steps must end at
    step 50, not after 50 updates (12 steps at 4 mini-batches)."""
    from r1jax.config import OptimConfig
    from r1jax.train import learning_rate_schedule

    cfg = OptimConfig(learning_rate=1.0, schedule="cosine")
    by_update = learning_rate_schedule(cfg, 50, updates_per_step=4)
    cosine = lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / 50))  # noqa: E731
    for update in (0, 3, 4, 100, 199):
        assert float(by_update(update)) == pytest.approx(cosine(update // 4), rel=1e-6)
    warm = learning_rate_schedule(OptimConfig(learning_rate=1.0, warmup_steps=10, schedule="constant"), 50, 4)
    assert float(warm(20)) == pytest.approx(0.5) and float(warm(40)) == pytest.approx(1.0)  # steps 5 and 10
