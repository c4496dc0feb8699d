"""Parity with `transformers` on tiny random Qwen2 / Llama models, in both directions."""

import json

import jax
import numpy as np
import pytest

from r1jax import hf, sharding
from r1jax.config import MeshConfig, RopeScaling, override
from r1jax.model import forward, init_params

torch = pytest.importorskip("torch", reason="parity tests need torch (extra 'test': the CPU build torch==2.13.0)")
transformers = pytest.importorskip("transformers", reason="parity tests need transformers (extra 'test')")

TOL = 1e-4


def _hf_model(kind):
    common = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  initializer_range=0.2)  # large weights so logits are O(1) and a 1e-4 match means something
    if kind == "llama3":
        cfg = transformers.LlamaConfig(**common, rope_theta=500000.0, rms_norm_eps=1e-5,
                                       rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                     "high_freq_factor": 4.0,
                                                     "original_max_position_embeddings": 64})
        model = transformers.LlamaForCausalLM(cfg)
    else:
        cfg = transformers.Qwen2Config(**common, rope_theta=10000.0, tie_word_embeddings=(kind == "qwen2-tied"))
        model = transformers.Qwen2ForCausalLM(cfg)
    torch.manual_seed(0)
    with torch.no_grad():  # HF initialises biases and norms to constants; randomise so they are tested
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p) if "norm" in name else 0.3 * torch.randn_like(p))
    return model.eval()


def _inputs(vocab, B=3, T=12):
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, vocab, (B, T))
    mask = np.ones((B, T), bool)
    mask[1, :4] = False  # left padding
    mask[2, :7] = False
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return tokens, mask, positions


def _hf_logits(model, tokens, mask, positions):
    with torch.no_grad():
        out = model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)),
                    position_ids=torch.tensor(positions))
    return out.logits.float().numpy()


def _max_diff(cfg, params, model, tokens, mask, positions):
    ours, _ = forward(cfg, params, tokens, positions=positions, mask=mask)
    ref = _hf_logits(model, tokens, mask, positions)
    assert ref[mask].std() > 0.3, "logits too small for a meaningful comparison"
    return float(np.abs(np.asarray(ours)[mask] - ref[mask]).max())


@pytest.mark.parametrize("kind", ["qwen2-tied", "qwen2-untied", "llama3"])
def test_load_hf_matches_transformers(tmp_path, kind):
    model = _hf_model(kind)
    model.save_pretrained(tmp_path, max_shard_size="100KB")  # sharded, with an index file
    assert (tmp_path / "model.safetensors.index.json").exists()
    cfg, params = hf.load_hf(tmp_path)
    assert cfg.arch == ("llama" if kind == "llama3" else "qwen2")
    assert cfg.tie_embeddings == (kind == "qwen2-tied")
    assert (cfg.rope_scaling is not None) == (kind == "llama3")
    diff = _max_diff(cfg, params, model, *_inputs(cfg.vocab_size))
    print(f"load_hf {kind}: max |logits - transformers| = {diff:.2e}")
    assert diff <= TOL


@pytest.mark.parametrize("arch,tie", [("qwen2", True), ("llama", False)])
def test_save_hf_loads_in_transformers(tmp_path, arch, tie):
    cfg = override(hf.config_from_hf({"architectures": ["Qwen2ForCausalLM"], "vocab_size": 256, "hidden_size": 64,
                                      "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                                      "num_key_value_heads": 2}),
                   arch=arch, tie_embeddings=tie, qkv_bias=(arch == "qwen2"),
                   rope_scaling=RopeScaling(original_max_position_embeddings=64) if arch == "llama" else None)
    params = init_params(cfg, jax.random.key(3), std=0.2)
    params["final_norm"] = params["final_norm"] + 0.3 * jax.random.normal(jax.random.key(4), (64,))
    for name in ("attn_norm", "mlp_norm", "bq", "bk", "bv"):  # init sets these to constants: randomise
        if name in params["layers"]:
            x = params["layers"][name]
            params["layers"][name] = x + 0.3 * jax.random.normal(jax.random.key(5), x.shape)
    hf.save_hf(tmp_path, cfg, params, max_shard_bytes=150_000)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert type(model).__name__ == ("Qwen2ForCausalLM" if arch == "qwen2" else "LlamaForCausalLM")
    diff = _max_diff(cfg, params, model, *_inputs(cfg.vocab_size))
    print(f"save_hf {arch}: max |logits - transformers| = {diff:.2e}")
    assert diff <= TOL
    # And back: our own reader gives the same parameters bit for bit.
    cfg2, params2 = hf.load_hf(tmp_path)
    assert cfg2 == cfg
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_load_hf_onto_a_mesh_is_sharded_and_equal(tmp_path):
    model = _hf_model("qwen2-untied")
    model.save_pretrained(tmp_path)
    cfg, single = hf.load_hf(tmp_path)
    mesh = sharding.make_mesh(MeshConfig(data=1, fsdp=2, tensor=4))
    _, sharded = hf.load_hf(tmp_path, mesh=mesh)
    wq = sharded["layers"]["wq"]
    assert wq.addressable_shards[0].data.shape == (2, 32, 1, 16)
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bfloat16_round_trip(tmp_path):
    model = _hf_model("qwen2-tied").to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    cfg, params = hf.load_hf(tmp_path)
    assert cfg.param_dtype == "bfloat16" and params["embed"].dtype == jax.numpy.bfloat16
    ref = model.model.embed_tokens.weight.detach().float().numpy()
    np.testing.assert_array_equal(np.asarray(params["embed"], np.float32), ref)
    hf.save_hf(tmp_path / "out", cfg, params)
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert again.model.embed_tokens.weight.dtype == torch.bfloat16
    np.testing.assert_array_equal(again.model.embed_tokens.weight.detach().float().numpy(), ref)


def test_unknown_architecture_and_missing_tensors_are_named(tmp_path):
    model = _hf_model("qwen2-untied")
    model.save_pretrained(tmp_path)
    cfg_json = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg_json, "architectures": ["MistralForCausalLM"]}))
    with pytest.raises(ValueError, match="MistralForCausalLM"):
        hf.load_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg_json, "num_hidden_layers": 3}))
    with pytest.raises(KeyError, match=r"model\.layers\.2\.input_layernorm\.weight"):
        hf.load_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg_json, "intermediate_size": 96}))
    with pytest.raises(ValueError,
                       match=r"mlp\.down_proj\.weight has shape \(64, 128\), config.json implies \(64, 96\)"):
        hf.load_hf(tmp_path)
