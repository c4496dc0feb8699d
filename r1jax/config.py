"""Frozen configuration dataclasses and named model presets.

A preset is a real model shape (Qwen2.5, Llama 3) or a tiny CPU size. Configs are
immutable; derive a variant with `override(cfg, field=value)`, which rejects unknown
field names and lists the valid ones (a typo in an experiment file is an error, not
a silently ignored setting).
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["RopeScaling", "ModelConfig", "MeshConfig", "PRESETS", "get_preset", "override", "to_dict",
           "from_dict", "override_paths", "flat_fields", "TrainerConfig", "OptimConfig", "GRPOConfig",
           "RolloutConfig", "DataConfig", "ModelOverrides",
           "apply_overrides"]


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1 frequency-dependent RoPE scaling (HF `rope_type: llama3`)."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


ATTENTION = ("auto", "dense", "blockwise", "splash", "cudnn")  # ModelConfig.attention
REMAT_POLICIES = ("full", "save-dots")  # ModelConfig.remat_policy


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
    remat_policy: str = "full"  # with remat: 'full' keeps only each layer's input, 'save-dots' its matmuls too
    # True: the layer stack runs under lax.scan, one compiled layer body whatever the depth.
    # False: a Python loop over the layers; compile time grows with depth, but each layer's KV
    # cache is updated in place (docs/performance.md measures both). The CPU presets use it.
    scan_layers: bool = True
    # cache-less forwards (training): 'dense' holds [T, T] scores; 'blockwise' an online softmax
    # over key blocks, memory linear in T (r1jax/attention.py); 'splash' the Pallas TPU kernel
    # (interpreted off a TPU: slow); 'cudnn' cuDNN's fused kernel (NVIDIA GPUs only); 'auto' dense
    # up to one block, beyond it splash on a TPU, cudnn on a GPU where it fits, else blockwise
    attention: str = "auto"
    attention_block: int = 512  # query and key block of blockwise and splash attention (tokens)
    head_chunk: int = 1024  # tokens per LM-head chunk in the training losses; never [rows, T, V] at once

    def __post_init__(self):
        if self.remat_policy not in REMAT_POLICIES:
            raise ValueError(f"ModelConfig.remat_policy must be one of {', '.join(REMAT_POLICIES)}, "
                             f"got {self.remat_policy!r}")
        if self.attention not in ATTENTION:
            raise ValueError(f"ModelConfig.attention must be one of {', '.join(ATTENTION)}, got {self.attention!r}")
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff",
                     "attention_block", "head_chunk"):
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
    "student": _tiny(2048, 64, 4, 4, 2, 256),  # a third of small's parameters at the world's vocabulary (512)
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


def flat_fields(cls, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Every leaf field of a (nested) config class by its dotted path, e.g. 'grpo.beta'."""
    out = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default):
            out.update(flat_fields(type(f.default), f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = f
    return out


def override_paths(cfg, changes: dict[str, Any]):
    """`cfg` with dotted-path fields replaced: {'grpo.beta': 0.0, 'out_dir': 'x'}. An unknown
    path is an error naming the valid ones; each changed config validates itself."""
    valid = flat_fields(type(cfg))
    unknown = sorted(set(changes) - set(valid))
    if unknown:
        raise TypeError(f"{type(cfg).__name__} has no field(s) {', '.join(unknown)}; valid fields: {', '.join(valid)}")
    top, nested = {}, {}
    for path, value in changes.items():
        head, _, rest = path.partition(".")
        (nested.setdefault(head, {}).__setitem__(rest, value) if rest else top.__setitem__(head, value))
    top.update({head: override_paths(getattr(cfg, head), sub) for head, sub in nested.items()})
    return dataclasses.replace(cfg, **top)


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict[str, Any]):
    """Inverse of `to_dict`; unknown keys are an error naming them."""
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    return cls(**data)


# ----------------------------------------------------------------------------- stage building blocks
# Each stage's config (r1jax.stages) composes these, so a knob is declared once, with its default,
# here; the CLI turns a nested field into a dotted flag (`--grpo.beta`, `--optim.learning-rate`).


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """The training loop (r1jax.runtime.run_loop): length, checkpoints, logging, seed, devices."""

    steps: int = 100  # optimizer steps (RL: rollout steps); SFT: 0 derives them from `epochs`
    checkpoint_every: int = 100  # steps between checkpoints (also saved at the end and on SIGTERM)
    log_every: int = 1  # steps between metrics.jsonl lines (each one waits for the device)
    seed: int = 0
    mesh: str = ""  # e.g. 'data=2,fsdp=2,tensor=2'; default: all devices on 'data'
    max_nonfinite_steps: int = 3  # non-finite steps (skipped) in a row that stop the run with an error; 0: never

    def __post_init__(self):
        for name in ("steps", "checkpoint_every", "log_every", "max_nonfinite_steps"):
            if getattr(self, name) < (1 if name in ("checkpoint_every", "log_every") else 0):
                raise ValueError(f"trainer.{name} must be "
                                 f"{'positive' if name in ('checkpoint_every', 'log_every') else '>= 0'}, "
                                 f"got {getattr(self, name)}")
        if self.mesh:
            MeshConfig.parse(self.mesh)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup, then a constant or cosine schedule, and global-norm clipping."""

    learning_rate: float = 3e-4
    warmup_steps: int = 0
    schedule: str = "cosine"  # 'cosine' (to 10% of the peak over the run's steps) or 'constant'
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping

    def __post_init__(self):
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"optim.schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.learning_rate < 0 or self.warmup_steps < 0 or self.grad_clip < 0:
            raise ValueError(f"optim: learning_rate, warmup_steps and grad_clip must be >= 0, got {self}")


KL_ESTIMATORS = ("k1", "k2", "k3")
# how a question is written for the policy (r1jax.tokenizer.render_prompt)
PROMPT_TEMPLATES = ("r1-zero", "r1-chat", "model", "none")
AGGREGATIONS = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm")


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    """GRPO (DeepSeekMath eq. 3) as R1-Zero runs it; defaults are the paper's where it gives one.

    The first five fields are the objective's (`r1jax.losses.grpo_loss`), the rest shape the
    rollout batch around it. The policy's temperature is the rollout's (`RolloutConfig`).
    """

    eps_low: float = 0.2  # clip range below 1 of the ratio pi_theta / pi_old
    eps_high: float = 0.2  # and above 1 (DAPO's clip-higher raises it)
    beta: float = 0.001  # KL coefficient; 0 runs no reference model at all
    kl_estimator: str = "k3"  # k1, k2 or k3 (Schulman's; the paper's k3)
    agg: str = "seq-mean-token-mean"  # token aggregation: the paper's, DAPO's token-mean, Dr. GRPO's ...-norm
    group_size: int = 16  # samples per prompt (the paper's 16)
    minibatches: int = 4  # policy updates per rollout batch (the paper's 16)
    adv_scale: str = "group"  # divide advantages by the group's std ('group'), the batch's, or not ('none': Dr. GRPO)
    drop_zero_variance: bool = False  # mask out groups whose rewards are all equal (DAPO's dynamic sampling)
    truncation: str = "keep"  # outputs cut at max_new_tokens: 'keep', 'mask' (no gradient) or 'penalty'
    overlong_buffer: int = 8  # 'penalty': the reward falls linearly to -1 over the last this many tokens
    length_grouped: bool = True  # mini-batches of rollouts of similar length, each cut to its longest
    pack: bool = False  # pack rollouts into rows (no padding through the model); mini-batches random
    ref_refresh: int = 400  # replace the reference by the policy every this many steps (the paper's 400)
    # pi_old in the ratio: 'sampler' (the log-probs the sampler drew with), 'recompute' (one more
    # forward with the training step's numerics, as TRL does) or 'auto': recompute unless the
    # compute dtype is float32, where both agree to float rounding (in bfloat16 the sampler's
    # cached decoding and the training forward differ by up to ~0.05 a token)
    old_logp: str = "auto"

    def __post_init__(self):
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"grpo.kl_estimator must be one of {', '.join(KL_ESTIMATORS)}, got {self.kl_estimator!r}")
        if self.agg not in AGGREGATIONS:
            raise ValueError(f"grpo.agg must be one of {', '.join(AGGREGATIONS)}, got {self.agg!r}")
        if self.truncation not in ("keep", "mask", "penalty"):
            raise ValueError(f"grpo.truncation must be keep, mask or penalty, got {self.truncation!r}")
        if self.old_logp not in ("auto", "sampler", "recompute"):
            raise ValueError(f"grpo.old_logp must be auto, sampler or recompute, got {self.old_logp!r}")
        if self.adv_scale not in ("group", "batch", "none"):
            raise ValueError(f"grpo.adv_scale must be group, batch or none, got {self.adv_scale!r}")
        for name in ("group_size", "minibatches", "ref_refresh"):
            if getattr(self, name) < 1:
                raise ValueError(f"grpo.{name} must be positive, got {getattr(self, name)}")
        if self.beta < 0 or self.eps_low < 0 or self.eps_high < 0:
            raise ValueError(f"grpo: beta, eps_low and eps_high must be >= 0, got {self}")


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """How a stage samples its policy: the prompt budget and the sampler's settings."""

    temperature: float = 1.0  # also the temperature of pi_theta in the GRPO ratio
    top_p: float = 1.0
    max_new_tokens: int = 160
    max_prompt_tokens: int = 32  # the world's template is one token each side of the question
    template: str = "r1-zero"  # the prompt: r1-zero (the paper's), r1-chat, model (its own chat template), none

    def __post_init__(self):
        if self.template not in PROMPT_TEMPLATES:
            raise ValueError(f"rollout.template must be r1-zero, r1-chat, model or none, got {self.template!r}")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1 or self.max_prompt_tokens < 1:
            raise ValueError(f"rollout: need temperature >= 0, 0 < top_p <= 1, max_new_tokens >= 1 and "
                             f"max_prompt_tokens >= 1, got {self}")


DATA_FORMATS = ("auto", "gsm8k", "math", "numina", "verl")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """A training set on disk (r1jax.tasks.datafiles reads it; its docstring lists the layouts)."""

    path: str = ""  # a file, a glob or a folder of .jsonl / .json / .parquet shards; '' uses generated tasks
    format: str = "auto"  # gsm8k, math, numina, verl, or auto (detected from the first record's fields)
    prompt_field: str = ""  # where the prompt is read (default: the format's)
    answer_field: str = ""  # where the reference answer is read (default: the format's)
    max_bad_records: int = 0  # unusable records tolerated (each one reported); one more stops the read

    def __post_init__(self):
        if self.format not in DATA_FORMATS:
            raise ValueError(f"data.format must be one of {', '.join(DATA_FORMATS)}, got {self.format!r}")
        if self.max_bad_records < 0:
            raise ValueError(f"data.max_bad_records must be >= 0, got {self.max_bad_records}")


@dataclasses.dataclass(frozen=True)
class ModelOverrides:
    """How a stage runs the model it loads; None keeps the checkpoint's setting. Only execution
    settings: what a forward computes is fixed by the checkpoint."""

    remat: bool | None = None  # recompute each layer in the backward pass
    remat_policy: str | None = None  # with remat: full (keep only layer inputs) or save-dots (keep matmuls)
    scan_layers: bool | None = None  # lax.scan over the layer stack instead of a Python loop
    dtype: str | None = None  # compute dtype: float32, bfloat16 or float16
    attention: str | None = None  # training attention: auto, dense, blockwise, splash or cudnn
    attention_block: int | None = None  # blockwise and splash attention's block (tokens)
    head_chunk: int | None = None  # tokens per LM-head chunk in the training losses


def apply_overrides(model_cfg: ModelConfig, overrides: ModelOverrides) -> ModelConfig:
    """`model_cfg` with the fields `overrides` sets (those not None)."""
    changes = {k: v for k, v in dataclasses.asdict(overrides).items() if v is not None}
    return dataclasses.replace(model_cfg, **changes) if changes else model_cfg
