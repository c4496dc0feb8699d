"""Frozen configuration dataclasses and named model presets.

A preset is a real model shape (Qwen2.5, Llama 3) or a tiny CPU size. Configs are
immutable; derive a variant with `override(cfg, field=value)`, which rejects unknown
field names and lists the valid ones (a typo in an experiment file is an error, not
a silently ignored setting).
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["RopeScaling", "ModelConfig", "MeshConfig", "PRESETS", "get_preset", "override",
           "to_dict", "from_dict"]


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1 frequency-dependent RoPE scaling (HF `rope_type: llama3`)."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of a Llama 3 / Qwen2 / Qwen2.5 decoder.

    `arch` only matters for Hugging Face export ('qwen2' or 'llama'); the forward pass is
    the same code for both, switched by `qkv_bias`, `tie_embeddings` and `rope_scaling`.
    """

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    arch: str = "qwen2"
    rope_theta: float = 10_000.0
    rope_scaling: RopeScaling | None = None
    norm_eps: float = 1e-6
    qkv_bias: bool = False
    tie_embeddings: bool = False
    max_seq_len: int = 4096
    param_dtype: str = "float32"  # storage dtype of the parameters
    dtype: str = "float32"  # compute dtype of matmuls; norms and softmax run in float32
    remat: bool = False  # recompute each layer in the backward pass (saves activation memory)
    # True: run the layer stack with lax.scan, one compiled layer body whatever the depth (fast
    # compiles for deep models). False: a Python loop over the layers, compile time growing with
    # depth; on CPU decoding is 1.6-1.9x faster (each layer's KV cache is updated in place and
    # the sampler slices the layers out of the stacked weights once, not every step), training
    # 5-20%. r1jax's CPU presets use it.
    scan_layers: bool = True

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"ModelConfig.n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"ModelConfig.head_dim must be even for RoPE, got {self.head_dim}")
        if self.arch not in ("qwen2", "llama"):
            raise ValueError(f"ModelConfig.arch must be 'qwen2' or 'llama', got {self.arch!r}")
        for name in ("param_dtype", "dtype"):
            if getattr(self, name) not in ("float32", "bfloat16", "float16"):
                raise ValueError(f"ModelConfig.{name} must be float32, bfloat16 or float16, "
                                 f"got {getattr(self, name)!r}")
        if isinstance(self.rope_scaling, dict):  # from JSON
            object.__setattr__(self, "rope_scaling", RopeScaling(**self.rope_scaling))


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh sizes. Their product must equal the number of devices used.

    `data` replicates parameters, `fsdp` shards parameters and batch, `tensor` shards
    heads and the MLP width (Megatron-style).
    """

    data: int = 1
    fsdp: int = 1
    tensor: int = 1

    @classmethod
    def parse(cls, text: str) -> "MeshConfig":
        """Parse 'data=2,fsdp=2,tensor=2' (missing axes default to 1)."""
        sizes = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key not in ("data", "fsdp", "tensor") or not value.isdigit():
                raise ValueError(f"bad mesh spec {part!r} in {text!r}: expected e.g. 'data=2,fsdp=2,tensor=2'")
            sizes[key] = int(value)
        return cls(**sizes)

    @property
    def size(self) -> int:
        return self.data * self.fsdp * self.tensor


def _qwen(vocab, d, layers, heads, kv, ff, *, tie, theta=1_000_000.0, eps=1e-6, max_len=32768):
    return ModelConfig(vocab_size=vocab, d_model=d, n_layers=layers, n_heads=heads, n_kv_heads=kv,
                       head_dim=d // heads, d_ff=ff, arch="qwen2", rope_theta=theta, norm_eps=eps,
                       qkv_bias=True, tie_embeddings=tie, max_seq_len=max_len, param_dtype="bfloat16",
                       dtype="bfloat16")


def _llama3(d, layers, heads, ff):
    return ModelConfig(vocab_size=128256, d_model=d, n_layers=layers, n_heads=heads, n_kv_heads=8,
                       head_dim=d // heads, d_ff=ff, arch="llama", rope_theta=500_000.0,
                       rope_scaling=RopeScaling(), norm_eps=1e-5, max_seq_len=131072,
                       param_dtype="bfloat16", dtype="bfloat16")


def _tiny(vocab, d, layers, heads, kv, ff):
    return ModelConfig(vocab_size=vocab, d_model=d, n_layers=layers, n_heads=heads, n_kv_heads=kv,
                       head_dim=d // heads, d_ff=ff, qkv_bias=True, tie_embeddings=True, max_seq_len=1024,
                       scan_layers=False)


# Shapes from each model's published config.json on the Hugging Face hub.
PRESETS: dict[str, ModelConfig] = {
    # CPU sizes: tests (tiny) and the embedded world (small, base model of a few million params).
    "tiny": _tiny(512, 64, 2, 4, 2, 128),
    "small": _tiny(2048, 128, 4, 4, 2, 384),
    "qwen2.5-0.5b": _qwen(151936, 896, 24, 14, 2, 4864, tie=True),
    "qwen2.5-1.5b": _qwen(151936, 1536, 28, 12, 2, 8960, tie=True),
    "qwen2.5-7b": _qwen(152064, 3584, 28, 28, 4, 18944, tie=False),
    "qwen2.5-14b": _qwen(152064, 5120, 48, 40, 8, 13824, tie=False, eps=1e-5),
    "qwen2.5-32b": _qwen(152064, 5120, 64, 40, 8, 27648, tie=False, eps=1e-5),
    "qwen2.5-math-1.5b": _qwen(151936, 1536, 28, 12, 2, 8960, tie=True, theta=10_000.0, max_len=4096),
    "qwen2.5-math-7b": _qwen(152064, 3584, 28, 28, 4, 18944, tie=False, theta=10_000.0, max_len=4096),
    "llama3.1-8b": _llama3(4096, 32, 32, 14336),
    "llama3.3-70b": _llama3(8192, 80, 64, 28672),
}


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown model preset {name!r}; valid presets: {', '.join(PRESETS)}") from None


def override(cfg, **changes):
    """`dataclasses.replace` that names the valid fields when given an unknown one."""
    valid = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(changes) - valid)
    if unknown:
        raise TypeError(f"{type(cfg).__name__} has no field(s) {', '.join(unknown)}; "
                        f"valid fields: {', '.join(sorted(valid))}")
    return dataclasses.replace(cfg, **changes)


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict[str, Any]):
    """Inverse of `to_dict`; unknown keys are an error naming them."""
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    return cls(**data)
