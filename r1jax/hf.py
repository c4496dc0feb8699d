"""Hugging Face checkpoints (Qwen2ForCausalLM, LlamaForCausalLM) to and from r1jax params.

Reading memory-maps the `.safetensors` files and builds each parameter with
`jax.make_array_from_callback`, so every device shard is read straight from disk for the
tensors it holds: a 70B checkpoint never exists as one host copy. The safetensors format
(8-byte header length, JSON header, raw little-endian data) is read and written here
directly because numpy has no bfloat16 and the `safetensors` numpy API rejects it;
`ml_dtypes` supplies the dtype.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import jax
import ml_dtypes
import numpy as np
from jax.sharding import Mesh, SingleDeviceSharding

from r1jax.config import ModelConfig, RopeScaling, override
from r1jax.model import param_axes, param_shapes
from r1jax.sharding import tree_shardings

__all__ = ["load_hf", "save_hf", "config_from_hf", "config_to_hf"]

_ARCHS = {"Qwen2ForCausalLM": "qwen2", "LlamaForCausalLM": "llama"}
_DTYPES = {"F32": np.dtype(np.float32), "F16": np.dtype(np.float16), "BF16": np.dtype(ml_dtypes.bfloat16),
           "F64": np.dtype(np.float64)}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}


# ----------------------------------------------------------------------------- config

def config_from_hf(hf: dict, source: str = "config.json") -> ModelConfig:
    """ModelConfig from a HF config dict (transformers 4.x `rope_theta`/`rope_scaling` or
    5.x `rope_parameters` layout)."""
    arch_list = hf.get("architectures") or []
    arch = next((_ARCHS[a] for a in arch_list if a in _ARCHS), None)
    if arch is None:
        raise ValueError(f"{source}: unsupported architectures {arch_list}; r1jax reads {', '.join(_ARCHS)}")
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    theta = hf.get("rope_theta", rope.get("rope_theta", 10_000.0))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type == "llama3":
        scaling = RopeScaling(factor=rope["factor"], low_freq_factor=rope["low_freq_factor"],
                              high_freq_factor=rope["high_freq_factor"],
                              original_max_position_embeddings=rope["original_max_position_embeddings"])
    elif rope_type == "default":
        scaling = None
    else:
        raise ValueError(f"{source}: rope type {rope_type!r} is not supported (only default and llama3)")
    if hf.get("use_sliding_window"):
        raise ValueError(f"{source}: use_sliding_window=true is not supported")
    if hf.get("mlp_bias"):
        raise ValueError(f"{source}: mlp_bias=true is not supported")
    if hf.get("hidden_act", "silu") != "silu":
        raise ValueError(f"{source}: hidden_act {hf['hidden_act']!r} is not supported (only silu)")
    heads = hf["num_attention_heads"]
    dtype = str(hf.get("torch_dtype") or hf.get("dtype") or "float32")
    return ModelConfig(
        vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
        n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads, d_ff=hf["intermediate_size"], arch=arch,
        rope_theta=float(theta), rope_scaling=scaling, norm_eps=hf.get("rms_norm_eps", 1e-6),
        qkv_bias=True if arch == "qwen2" else bool(hf.get("attention_bias", False)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        max_seq_len=hf.get("max_position_embeddings", 4096),
        param_dtype=dtype if dtype in ("float32", "bfloat16", "float16") else "float32",
        dtype=dtype if dtype in ("float32", "bfloat16", "float16") else "float32")


def config_to_hf(cfg: ModelConfig, **token_ids) -> dict:
    """HF config.json dict in the 4.x layout that real Qwen2.5 / Llama 3 checkpoints use."""
    if cfg.arch == "qwen2" and not cfg.qkv_bias:
        raise ValueError("Qwen2 always has q/k/v biases; export a bias-free model with arch='llama'")
    out = {
        "architectures": ["Qwen2ForCausalLM" if cfg.arch == "qwen2" else "LlamaForCausalLM"],
        "model_type": cfg.arch, "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff, "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim, "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": cfg.tie_embeddings, "torch_dtype": cfg.param_dtype, "attention_dropout": 0.0,
        **token_ids,
    }
    if cfg.arch == "qwen2":
        out.update(use_sliding_window=False, sliding_window=None)
    else:
        out.update(attention_bias=cfg.qkv_bias, mlp_bias=False)
    if cfg.rope_scaling is not None:
        s = cfg.rope_scaling
        out["rope_scaling"] = {"rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
                               "high_freq_factor": s.high_freq_factor,
                               "original_max_position_embeddings": s.original_max_position_embeddings}
    return out


# ----------------------------------------------------------------------------- name map

def _name_map(cfg: ModelConfig) -> dict:
    """Our param path -> (HF name, with {i} for the layer, HF per-layer shape, transposed?).

    HF linear weights are [out, in]; ours are [in, ..., out]-major with heads split out, so
    ours = hf.T.reshape(our_shape) and hf = ours.reshape(reversed hf_shape).T. Embeddings
    are [V, D] in both.
    """
    D, N, K, H, F, V = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_ff, cfg.vocab_size
    p = "model.layers.{i}."
    layers = {
        "attn_norm": (p + "input_layernorm.weight", (D,), False),
        "wq": (p + "self_attn.q_proj.weight", (N * H, D), True),
        "wk": (p + "self_attn.k_proj.weight", (K * H, D), True),
        "wv": (p + "self_attn.v_proj.weight", (K * H, D), True),
        "wo": (p + "self_attn.o_proj.weight", (D, N * H), True),
        "mlp_norm": (p + "post_attention_layernorm.weight", (D,), False),
        "w_gate": (p + "mlp.gate_proj.weight", (F, D), True),
        "w_up": (p + "mlp.up_proj.weight", (F, D), True),
        "w_down": (p + "mlp.down_proj.weight", (D, F), True),
    }
    if cfg.qkv_bias:
        layers.update(bq=(p + "self_attn.q_proj.bias", (N * H,), False),
                      bk=(p + "self_attn.k_proj.bias", (K * H,), False),
                      bv=(p + "self_attn.v_proj.bias", (K * H,), False))
    out = {"embed": ("model.embed_tokens.weight", (V, D), False), "layers": layers,
           "final_norm": ("model.norm.weight", (D,), False)}
    if not cfg.tie_embeddings:
        out["lm_head"] = ("lm_head.weight", (V, D), True)
    return out


def _is_entry(x) -> bool:
    return isinstance(x, tuple) and len(x) == 3 and isinstance(x[0], str)


def _to_ours(w: np.ndarray, transposed: bool, shape: tuple) -> np.ndarray:
    return (w.T if transposed else w).reshape(shape)


def _to_hf(w: np.ndarray, transposed: bool, hf_shape: tuple) -> np.ndarray:
    return w.reshape(hf_shape[::-1]).T if transposed else w.reshape(hf_shape)


# ----------------------------------------------------------------------------- safetensors

class _SafetensorsDir:
    """Memory-mapped view of every tensor in a checkpoint directory (single or sharded)."""

    def __init__(self, path: Path):
        index = path / "model.safetensors.index.json"
        if index.exists():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        else:
            files = sorted(f.name for f in path.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{path}: no *.safetensors files (and no model.safetensors.index.json)")
        self.entries: dict[str, tuple[np.memmap, dict, int, str]] = {}
        for name in files:
            file = path / name
            mm = np.memmap(file, dtype=np.uint8, mode="r")
            (n,) = struct.unpack("<Q", mm[:8].tobytes())
            header = json.loads(mm[8:8 + n].tobytes())
            header.pop("__metadata__", None)
            for key, info in header.items():
                self.entries[key] = (mm, info, 8 + n, str(file))

    def shape(self, name: str) -> tuple:
        return tuple(self.entries[name][1]["shape"])

    def get(self, name: str) -> np.ndarray:
        mm, info, base, file = self.entries[name]
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{file}: tensor {name} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        return mm[base + begin:base + end].view(_DTYPES[info["dtype"]]).reshape(info["shape"])


def _write_safetensors(file: Path, tensors: dict[str, np.ndarray]) -> None:
    header, offset = {}, 0
    for name, t in tensors.items():
        header[name] = {"dtype": _DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format aligns the data section to 8 bytes
    tmp = file.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for t in tensors.values():
            f.write(np.ascontiguousarray(t).tobytes())
    os.replace(tmp, file)


# ----------------------------------------------------------------------------- load / save

def load_hf(path: str | os.PathLike, mesh: Mesh | None = None, dtype: str | None = None
            ) -> tuple[ModelConfig, dict[str, Any]]:
    """Read a HF Qwen2/Llama checkpoint directory into (ModelConfig, params).

    With a mesh, every parameter is created directly in its sharding (`r1jax.sharding`
    rules), each device reading only its slice. `dtype` overrides the parameter dtype
    (default: the checkpoint's `torch_dtype`).
    """
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise FileNotFoundError(f"{cfg_file} not found: a HF checkpoint directory needs config.json")
    cfg = config_from_hf(json.loads(cfg_file.read_text()), str(cfg_file))
    if dtype is not None:
        cfg = override(cfg, param_dtype=dtype)
    st = _SafetensorsDir(path)
    names = _name_map(cfg)
    needed = [(n.format(i=i), s) for n, s, _ in jax.tree.leaves(names, is_leaf=_is_entry)
              for i in (range(cfg.n_layers) if "{i}" in n else [0])]
    missing = [n for n, _ in needed if n not in st.entries]
    if missing:
        more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
        raise KeyError(f"{path}: checkpoint lacks tensors {', '.join(missing[:10])}{more}")
    for n, s in needed:
        if st.shape(n) != tuple(s):
            raise ValueError(f"{path}: tensor {n} has shape {st.shape(n)}, config.json implies {tuple(s)}")

    abstract = param_shapes(cfg)
    if mesh is None:
        sharding = jax.tree.map(lambda _: SingleDeviceSharding(jax.devices()[0]), abstract)
    else:
        sharding = tree_shardings(mesh, param_axes(cfg), abstract)
    target = np.dtype(ml_dtypes.bfloat16) if cfg.param_dtype == "bfloat16" else np.dtype(cfg.param_dtype)

    def build(entry, aval, shard):
        name, _, transposed = entry
        if "{i}" not in name:
            full = lambda idx: _to_ours(st.get(name), transposed, aval.shape)[idx]  # noqa: E731
        else:
            def full(idx):
                layers = range(cfg.n_layers)[idx[0]]
                return np.stack([_to_ours(st.get(name.format(i=i)), transposed, aval.shape[1:])[idx[1:]]
                                 for i in layers])
        return jax.make_array_from_callback(aval.shape, shard, lambda idx: full(idx).astype(target))

    return cfg, jax.tree.map(build, names, abstract, sharding, is_leaf=_is_entry)


def save_hf(path: str | os.PathLike, cfg: ModelConfig, params: dict, *, max_shard_bytes: int = 4 << 30,
            token_ids: dict | None = None) -> None:
    """Write `config.json` and safetensors that `transformers.AutoModelForCausalLM` loads.

    Tensors are fetched one layer at a time; files above `max_shard_bytes` are split with a
    `model.safetensors.index.json`. `token_ids` adds e.g. {'eos_token_id': 3} to config.json.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config_to_hf(cfg, **(token_ids or {})), indent=2))

    def tensors():
        flat_names = jax.tree.leaves(_name_map(cfg), is_leaf=_is_entry)
        flat_params = jax.tree.leaves(params)
        for (name, hf_shape, transposed), w in zip(flat_names, flat_params):
            if "{i}" in name:
                for i in range(cfg.n_layers):
                    yield name.format(i=i), _to_hf(np.asarray(jax.device_get(w[i])), transposed, hf_shape)
            else:
                yield name, _to_hf(np.asarray(jax.device_get(w)), transposed, hf_shape)

    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, t in tensors():
        if shards[-1] and size + t.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += t.nbytes
    for old in path.glob("model*.safetensors*"):  # a previous export with another sharding
        old.unlink()
    if len(shards) == 1:
        _write_safetensors(path / "model.safetensors", shards[0])
        return
    weight_map, total = {}, 0
    for k, shard in enumerate(shards, 1):
        fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        _write_safetensors(path / fname, shard)
        weight_map.update({n: fname for n in shard})
        total += sum(t.nbytes for t in shard.values())
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
