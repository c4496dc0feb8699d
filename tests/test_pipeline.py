"""End to end: the pretrain stage (interrupt + resume == uninterrupted) and the convert CLI."""

import json
import os
import signal

import jax
import numpy as np
import pytest

from r1jax import checkpoint, cli, hf, sampling, sharding, train
from r1jax.config import MeshConfig, ModelConfig, OptimConfig, from_dict, override, override_paths
from r1jax.model import init_params
from r1jax.stages import lm
from r1jax.stages.grpo import RLConfig, grpo
from r1jax.tasks import task_pool
from r1jax.tasks.world import STYLES, world_response

CFG = {"preset": "tiny", "trainer.steps": 12, "batch_size": 8, "seq_len": 192, "trainer.checkpoint_every": 4,
       "n_examples": 300, "optim.warmup_steps": 2, "trainer.log_every": 1}


def _pretrain_cfg(out_dir, **changes):
    return override_paths(lm.PretrainConfig(out_dir=out_dir), {**CFG, **changes})


def _interrupt_after(monkeypatch, n_steps):
    """Make the n-th training step send SIGTERM to this process, as a preemption would."""
    real = train.compile_step

    def compile_step(*args, **kwargs):
        step = real(*args, **kwargs)
        calls = {"n": 0}

        def run(state, batch):
            calls["n"] += 1
            if calls["n"] == n_steps:
                os.kill(os.getpid(), signal.SIGTERM)
            return step(state, batch)
        return run

    monkeypatch.setattr(lm.train, "compile_step", compile_step)


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, monkeypatch):
    straight = lm.pretrain(_pretrain_cfg(str(tmp_path / "a")))
    assert straight["step"] == 12
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "a" / "metrics.jsonl")]
    assert losses[-1] < losses[0] - 1.0  # it learns

    with monkeypatch.context() as m:
        _interrupt_after(m, 6)
        first = lm.pretrain(_pretrain_cfg(str(tmp_path / "b")))
    assert first["step"] == 6  # SIGTERM: saved at the step it was in, exited cleanly
    resumed = lm.pretrain(_pretrain_cfg(str(tmp_path / "b")))
    assert resumed["step"] == 12

    model_cfg = from_dict(ModelConfig, checkpoint.read_run_config(tmp_path / "a" / "ckpt")["model"])
    a = checkpoint.restore_params(tmp_path / "a" / "ckpt", model_cfg)
    b = checkpoint.restore_params(tmp_path / "b" / "ckpt", model_cfg)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    with pytest.raises(checkpoint.ConfigMismatchError, match="learning_rate"):
        lm.pretrain(_pretrain_cfg(str(tmp_path / "b"), **{"optim.learning_rate": 1e-4}))


def test_convert_round_trip_through_the_cli(tmp_path, tiny_cfg, capsys):
    params = init_params(tiny_cfg, jax.random.key(0))
    hf.save_hf(tmp_path / "hf", tiny_cfg, params)
    cli.main(["convert", "hf-to-ckpt", str(tmp_path / "hf"), str(tmp_path / "ckpt")])
    cli.main(["convert", "ckpt-to-hf", str(tmp_path / "ckpt"), str(tmp_path / "hf2")])
    assert "wrote qwen2 model (107,072 params)" in capsys.readouterr().out
    tx = train.make_optimizer(OptimConfig())
    with pytest.raises(ValueError, match="holds parameters only"):
        checkpoint.Checkpointer(tmp_path / "ckpt", {"model": tiny_cfg}).restore(
            train.abstract_state(sharding.make_mesh(MeshConfig(), devices=jax.devices()[:1]), tiny_cfg, tx))
    cfg2, params2 = hf.load_hf(tmp_path / "hf2")
    assert override(cfg2, scan_layers=tiny_cfg.scan_layers) == tiny_cfg  # HF configs do not say how layers run
    for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_world_corpus_styles_are_right_where_they_claim_to_be():
    import random
    import re

    from r1jax.tasks import generate

    rng, counts, checks = random.Random(0), {s: 0 for s in STYLES}, 0
    examples = generate("world", 4000, 5)
    for ex in examples:
        style, text = world_response(ex, rng)
        counts[style] += 1
        final = re.findall(r"-?\d+", text.split("</think>")[1])[-1]
        if style == "check":
            assert final == ex.answer, text  # every slip is caught, so re-checked work ends right
            pattern = r"Wait, let me check: (-?\d+) ([+-]) (\d+): ([-\d, ]+)\. So (-?\d+)"
            for a, op, b, count, result in re.findall(pattern, text):
                sign = 1 if op == "+" else -1
                # counting one at a time from a, b times, lands on the true result
                assert [int(x) for x in count.split(", ")] == [int(a) + sign * k for k in range(1, int(b) + 1)]
                assert int(result) == int(a) + sign * int(b)
                checks += 1
        else:
            assert "Wait" not in text
    assert checks > 1000
    for style, share in STYLES.items():
        assert abs(counts[style] / len(examples) - share) < 0.03, counts


def test_imported_model_with_a_tokenizer_without_bos(tmp_path, tiny_cfg, qwen_like_tokenizer):
    """A Hugging Face model with Qwen's kind of tokenizer (no BOS), set up as the README says:
    `r1jax convert` for ckpt/, tokenizer.json and tokenizer_config.json copied beside it. R1-Zero
    runs from it, SFT runs from R1-Zero's folder (which must carry both tokenizer files), and no
    sequence starts with a BOS it does not have; a prompt too long for max_prompt_tokens fails
    before any step instead of being cut."""
    import shutil

    from r1jax.config import override
    from r1jax.tasks.sft import write_sft_jsonl
    from r1jax.tokenizer import load_tokenizer, render_r1_zero

    tok = load_tokenizer(qwen_like_tokenizer)
    cfg = override(tiny_cfg, vocab_size=tok.vocab_size)
    hf.save_hf(tmp_path / "hf", cfg, init_params(cfg, jax.random.key(0)))
    base = tmp_path / "base"
    cli.main(["convert", "hf-to-ckpt", str(tmp_path / "hf"), str(base / "ckpt")])
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(qwen_like_tokenizer / name, base / name)

    prompt = render_r1_zero("Compute 1 + 2.")
    ids, [(start, end)] = lm.encode_doc(tok, prompt, "<answer> 3 </answer>")
    assert end == len(ids)
    assert ids[:start] == tok.encode(prompt) and ids[start:] == [*tok.encode(" <answer> 3 </answer>"), tok.eos_id]
    pool = task_pool("world", 50, 0)
    longest = max(len(tok.encode(render_r1_zero(ex.prompt))) for ex in pool)
    assert sampling.prompt_ids(tok, pool[:1], longest)[0] == tok.encode(render_r1_zero(pool[0].prompt))

    rl = {"trainer.steps": 1, "prompts_per_step": 2, "grpo.group_size": 2, "grpo.minibatches": 1,
          "rollout.max_new_tokens": 8, "n_train": 50}
    with pytest.raises(ValueError,
                       match=f"is {longest} tokens in the r1-zero template, more than max_prompt_tokens=32"):
        grpo(override_paths(RLConfig(out_dir=str(tmp_path / "short"), base_dir=str(base)), rl))
    assert not (tmp_path / "short" / "ckpt").exists() or checkpoint.latest_step(tmp_path / "short" / "ckpt") is None
    out = grpo(override_paths(RLConfig(out_dir=str(tmp_path / "rl"), base_dir=str(base)),
                              {**rl, "rollout.max_prompt_tokens": longest}))
    assert out["step"] == 1
    write_sft_jsonl(tmp_path / "sft.jsonl", [{"prompt": ex.prompt, "response": f"<answer> {ex.answer} </answer>"}
                                             for ex in pool[:40]])
    out = lm.sft(override_paths(lm.SFTConfig(out_dir=str(tmp_path / "sft"), init_dir=str(tmp_path / "rl"),
                                             data=str(tmp_path / "sft.jsonl"), epochs=1, batch_size=2,
                                             seq_len=2 * longest), {"trainer.log_every": 1}))
    assert out["steps"] >= 1 and (tmp_path / "sft" / "tokenizer_config.json").exists()
