"""A user's own Flax module through r1jax (`r1jax.model.FlaxModel`): saved as a stage directory,
fine-tuned by SFT, trained by two GRPO steps and sampled with the jitted sampler; the sampler's
log-probs agree with a teacher-forced pass and every hand-off restores the parameters it saved."""

import json

import jax
import jax.numpy as jnp
import numpy as np

from r1jax import checkpoint, model, runtime, sampling, train
from r1jax.config import GRPOConfig, RolloutConfig, TrainerConfig
from r1jax.stages.grpo import RLConfig, grpo
from r1jax.stages.lm import SFTConfig, sft
from r1jax.tasks.sft import write_sft_jsonl
from r1jax.tasks.world import world_corpus
from r1jax.tokenizer import R1_ZERO_TEMPLATE, train_sentencepiece


def _base(tmp_path):
    """A stage directory holding a FlaxModel's random parameters and a world tokenizer."""
    base = tmp_path / "base"
    base.mkdir()
    tok = train_sentencepiece([p + " " + r for p, r in world_corpus(300, 0)], base / "tokenizer.model", 512,
                              extra_symbols=tuple(R1_ZERO_TEMPLATE.split("{prompt}")))
    toy = model.FlaxModel(factory="flax_toy:make", kwargs=(("vocab", tok.vocab_size),), vocab_size=tok.vocab_size)
    params = model.init_params(toy, jax.random.key(0))
    ckpt = checkpoint.Checkpointer(base / "ckpt", {"model": toy})
    ckpt.save(train.TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state={}), force=True)
    ckpt.close()
    return base, toy, tok, params


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_a_flax_module_trains_by_sft_and_grpo_and_samples(tmp_path):
    base, toy, tok, params = _base(tmp_path)
    assert runtime.stage_model_config(base) == toy  # the hand-off rebuilds the model from its run config
    assert _same(checkpoint.restore_params(base / "ckpt", toy), params)
    # the parameters' logical axes come from the module's own annotations
    assert model.param_axes(toy)["Embed_0"]["embedding"] == ("vocab", "embed")

    write_sft_jsonl(tmp_path / "sft.jsonl", [{"prompt": f"Compute {i} + 1.", "response": f"<answer> {i + 1} </answer>"}
                                              for i in range(40)])
    s = sft(SFTConfig(out_dir=str(tmp_path / "sft"), init_dir=str(base), data=str(tmp_path / "sft.jsonl"),
                      seq_len=64, batch_size=2, trainer=TrainerConfig(steps=3, log_every=1)))
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "sft" / "metrics.jsonl")]
    assert s["step"] == 3 and losses[-1] < losses[0]

    out = grpo(RLConfig(out_dir=str(tmp_path / "rl"), base_dir=str(tmp_path / "sft"), prompts_per_step=2,
                        n_train=8, trainer=TrainerConfig(steps=2, checkpoint_every=2),
                        grpo=GRPOConfig(group_size=4, minibatches=2, beta=0.04),
                        rollout=RolloutConfig(max_new_tokens=12, max_prompt_tokens=48)))
    assert out["step"] == 2
    metrics = [json.loads(line) for line in open(tmp_path / "rl" / "metrics.jsonl")]
    assert [m["step"] for m in metrics] == [1, 2] and all(np.isfinite(m["loss"]) for m in metrics)
    # the first update starts at the sampler's policy: its ratios are 1 up to float rounding
    assert abs(metrics[0]["ratio_mean"] - 1.0) < 1e-4

    trained = checkpoint.restore_params(tmp_path / "rl" / "ckpt", runtime.stage_model_config(tmp_path / "rl"))
    # an untrained module earns no reward, so the advantages were 0: the update's gradient through
    # the module is checked on rollouts with advantages of both signs
    rows = jnp.asarray(np.random.default_rng(0).integers(3, tok.vocab_size, (4, 16)), jnp.int32)
    batch = {"tokens": rows, "mask": jnp.ones((4, 16), bool), "completion_mask": jnp.ones((4, 6), jnp.float32),
             "advantages": jnp.array([1.0, -1.0, 0.5, -0.5])}
    batch["old_logp"] = batch["ref_logp"] = train.completion_logprobs(toy, trained, rows, batch["mask"], 6)[0]
    tx = train.make_optimizer(train.OptimConfig(learning_rate=1e-3, schedule="constant", weight_decay=0.0))
    state = train.init_state(toy, tx, None, params=trained)
    new, m = jax.jit(lambda st, b: train.grpo_train_step(st, b, model_cfg=toy, tx=tx, cfg=GRPOConfig()))(state, batch)
    assert float(m["ratio_mean"]) == 1.0 and float(m["grad_norm"]) > 0 and not _same(new.params, trained)

    # the jitted sampler on the trained module: its log-probs are the teacher-forced ones
    sampler = sampling.make_sampler(toy, sampling.SamplingConfig(max_new_tokens=10, stop_tokens=(tok.eos_id,),
                                                                 pad_id=tok.pad_id), group_size=2)
    prompts, pmask = tok.pad_batch([[*tok.bos, *tok.encode("Compute 3 + 4.")], [*tok.bos, *tok.encode("Compute 12.")]])
    roll = sampler(trained, prompts, pmask, jax.random.key(1))
    tokens = jnp.concatenate([jnp.repeat(prompts, 2, 0), roll.tokens], 1)
    done = jnp.arange(10)[None] < roll.lengths[:, None]
    mask = jnp.concatenate([jnp.repeat(pmask, 2, 0), done], 1)
    logp, _ = train.completion_logprobs(toy, trained, tokens, mask, 10)
    np.testing.assert_allclose(np.where(done, logp, 0.0), roll.logprobs, atol=2e-5)
    assert int(roll.lengths.min()) >= 1
