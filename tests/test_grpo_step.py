"""The GRPO update: the trainer sees the sampler's distribution, the loss equals an independent
computation from full logits, updates follow the advantages, and a mesh changes nothing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import losses, sampling, sharding, train
from r1jax.config import GRPOConfig, MeshConfig, OptimConfig
from r1jax.model import forward

N_NEW, G, T = 6, 4, 0.8


@pytest.fixture(scope="module")
def rollout(tiny_cfg):
    tx = train.make_optimizer(OptimConfig(learning_rate=3e-3, schedule="constant", weight_decay=0.0))
    state = train.init_state(tiny_cfg, tx, jax.random.key(0))
    rng = np.random.default_rng(0)
    prompts = rng.integers(4, tiny_cfg.vocab_size, (2, 5)).astype(np.int32)
    pmask = np.ones((2, 5), bool)
    pmask[1, :2] = False
    prompts[~pmask] = 0
    s = sampling.make_sampler(tiny_cfg, sampling.SamplingConfig(max_new_tokens=N_NEW, temperature=T), group_size=G)(
        state.params, prompts, pmask, jax.random.key(1))
    rewards = jnp.array([1.0, 0, 0, 0, 0, 1, 1, 0])
    batch = {"tokens": np.concatenate([np.repeat(prompts, G, 0), np.asarray(s.tokens)], 1),
             "mask": np.concatenate([np.repeat(pmask, G, 0), np.ones((2 * G, N_NEW), bool)], 1),
             "completion_mask": (np.arange(N_NEW)[None] < np.asarray(s.lengths)[:, None]).astype(np.float32),
             "old_logp": np.asarray(s.logprobs), "ref_logp": np.asarray(s.logprobs),
             "advantages": np.asarray(losses.group_advantages(rewards, G))}
    return tiny_cfg, tx, state, batch


def test_trainer_logprobs_equal_the_samplers(rollout):
    cfg, _, state, batch = rollout
    logp, entropy = train.completion_logprobs(cfg, state.params, batch["tokens"], batch["mask"], N_NEW, T)
    np.testing.assert_allclose(np.asarray(logp), batch["old_logp"], atol=1e-5)  # ratio 1 on the first update
    assert (np.asarray(entropy) > 0).all()


def test_loss_equals_an_independent_full_logits_computation(rollout):
    cfg, tx, state, batch = rollout
    gcfg = GRPOConfig(beta=0.04, eps_high=0.28)
    # perturb the policy so ratios and KL are not trivially 1 and 0
    params = jax.tree.map(lambda x: x * 1.05, state.params)
    pos = np.maximum(np.cumsum(batch["mask"], 1) - 1, 0)
    full, _ = forward(cfg, params, batch["tokens"], positions=pos, mask=batch["mask"])
    logp = losses.token_logprobs(np.asarray(full)[:, -N_NEW - 1:-1] / T, batch["tokens"][:, -N_NEW:])
    want, _ = losses.grpo_loss(logp, batch["old_logp"], batch["ref_logp"], batch["advantages"],
                               batch["completion_mask"], eps_low=0.2, eps_high=0.28, beta=0.04)
    _, metrics = train.grpo_train_step(state.replace(params=params), batch, model_cfg=cfg, tx=tx, cfg=gcfg,
                                       temperature=T)
    assert float(metrics["loss"]) == pytest.approx(float(want), abs=1e-5)
    assert float(metrics["kl"]) > 0 and float(metrics["ratio_max"]) != 1.0


def test_updates_follow_the_advantages(rollout):
    cfg, tx, state, batch = rollout
    gcfg = GRPOConfig(beta=0.0)
    step = jax.jit(lambda s, b: train.grpo_train_step(s, b, model_cfg=cfg, tx=tx, cfg=gcfg, temperature=T))
    before = train.completion_logprobs(cfg, state.params, batch["tokens"], batch["mask"], N_NEW, T)[0]
    s = state
    for _ in range(5):
        s, m = step(s, batch)
    after = train.completion_logprobs(cfg, s.params, batch["tokens"], batch["mask"], N_NEW, T)[0]
    seq_change = np.asarray(((after - before) * batch["completion_mask"]).sum(1))
    adv = batch["advantages"]
    assert (seq_change[adv > 0] > 0).all() and (seq_change[adv < 0] < 0).all()


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 2, 2), (1, 2, 4)])
def test_sharded_grpo_step_matches_one_device(rollout, shape):
    cfg, _, state, batch = rollout
    # Adam's first step is lr * g / (|g| + eps): for a near-zero gradient it turns float noise of
    # the sharded reduction order into up to lr-sized differences; lr 5e-4 keeps those below 1e-5
    tx = train.make_optimizer(OptimConfig(learning_rate=5e-4, schedule="constant", weight_decay=0.0))
    gcfg = GRPOConfig(beta=0.04)
    fn = lambda s, b: train.grpo_train_step(s, b, model_cfg=cfg, tx=tx, cfg=gcfg, temperature=T)  # noqa: E731
    ref_state, ref_m = jax.jit(fn)(state, batch)
    mesh = sharding.make_mesh(MeshConfig(*shape))
    state_sh = train.state_shardings(mesh, cfg, tx)
    step = train.compile_step(fn, mesh, state_sh, train.batch_shardings(mesh, batch))
    # the step donates its input: give it a copy, so the shared fixture's arrays stay alive
    new_state, m = step(jax.device_put(jax.tree.map(jnp.copy, state), state_sh), batch)
    assert float(m["loss"]) == pytest.approx(float(ref_m["loss"]), abs=1e-5)
    for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(ref_state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
