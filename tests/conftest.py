"""Test setup: 8 simulated CPU devices (set before jax is imported) and shared fixtures."""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One XLA compilation cache for the run, shared with the CLI subprocesses the tests start: many
# tests compile the same tiny model's steps, and a hit skips the compile. A fresh directory per
# run, so no run's time or result depends on an earlier one.
_xla_cache = tempfile.mkdtemp(prefix="r1jax-test-xla-cache-")
atexit.register(shutil.rmtree, _xla_cache, True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _xla_cache
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def tiny_cfg():
    from r1jax.config import get_preset
    return get_preset("tiny")


@pytest.fixture(scope="session")
def qwen_like_tokenizer(tmp_path_factory):
    """A folder with a byte-level BPE tokenizer.json (trained here on world documents and a few
    English and Chinese lines) and a tokenizer_config.json like Qwen's: no BOS token, EOS = PAD =
    <|endoftext|>, the R1 tags as single tokens."""
    import json
    tokenizers = pytest.importorskip("tokenizers", reason="HF tokenizers need the 'hf' extra")
    from r1jax.tasks.world import world_corpus
    texts = [p + " " + r for p, r in world_corpus(300, 0)]
    texts += [f"What is {a} + {b}? The answer is {a + b}." for a in range(60) for b in (3, 17, 42)]
    texts += ["小明有 3 个苹果，又买了 5 个。", "一共有多少个苹果？答案是 8。"] * 20
    specials = ["<|endoftext|>", "<think>", "</think>", "<answer>", "</answer>"]
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=500, special_tokens=specials,
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    out = tmp_path_factory.mktemp("qwen_like_tokenizer")
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": {"content": "<|endoftext|>"}, "pad_token": "<|endoftext|>", "bos_token": None}))
    return out


@pytest.fixture(scope="session")
def tiny_world_base(tmp_path_factory):
    """A stage directory: the embedded world's tokenizer and a tiny base pretrained for 10 steps."""
    from r1jax.config import override_paths
    from r1jax.stages import lm
    d = tmp_path_factory.mktemp("tiny_world_base")
    lm.pretrain(override_paths(lm.PretrainConfig(out_dir=str(d)), {
        "preset": "tiny", "trainer.steps": 10, "batch_size": 8, "seq_len": 192, "n_examples": 300,
        "trainer.checkpoint_every": 10, "trainer.log_every": 5}))
    return d
