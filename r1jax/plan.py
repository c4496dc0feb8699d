"""`r1jax plan`: per-device memory of a training stage, before any chip is rented.

Every figure except the activations comes from the shapes of the real objects, never from a
parameter-count formula: the train state is `jax.eval_shape` of `train.init_state` with the
real optimizer, the KV cache is `jax.eval_shape` of `model.init_cache`, and each array's
per-device share is `NamedSharding(...).shard_shape` under `train.state_shardings` /
`model.cache_axes` and the one rules table in `r1jax.sharding`. The mesh is a
`jax.sharding.AbstractMesh`, so a 256-chip pod is planned on a laptop CPU.

Activations are an estimate (`activation_bytes`). The loss of the stage
(`train.completion_logprobs` + `losses.grpo_loss` for GRPO, `train.lm_loss` for SFT) is traced
on *one device's share* of the work: the mini-batch rows that device holds (batch split over
data x fsdp) and the attention heads, KV heads, MLP width and vocabulary that the tensor axis
leaves it (read off the real parameter shardings), with the model's attention (dense or
blockwise) and LM-head chunk. The residuals that JAX's autodiff keeps for the backward pass
(the leaves of `jax.vjp`'s closure under `jax.eval_shape`, parameters excluded) are summed;
with `remat` one layer's residuals are added, because the backward pass recomputes one layer
at a time; then the backward's transients: the gradient of one LM-head chunk's float32 logits
(and, chunked, the chunk's recomputed logits) and, with blockwise attention, three float32
score tiles of every head. `benchmarks/bench_long.py` compares the estimate with XLA's
compiled temporary memory at 1k-8k tokens (docs/performance.md). Other XLA temporaries are
not counted, hence the 10% margin in `fits`.

Sampling and the update do not hold their working memory at the same time (the sampler's
cache lives inside its jitted call), so the peak is parameters + optimizer + reference plus
the larger of (KV cache + sampling logits) and (gradients + activations). The sampling logits
are one float32 vocabulary row per rollout (`sampling.generate` runs the LM head on the last
prompt position only, and then on one new token at a time). The
reference model's log-probs are assumed to be scored in the update's mini-batches, where they
need less than the update itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import re

import jax
import jax.numpy as jnp
from jax.sharding import AbstractMesh, NamedSharding

from r1jax import losses, model, train
from r1jax.attention import attention_kind
from r1jax.config import ATTENTION, GRPOConfig, MeshConfig, ModelConfig, get_preset, override
from r1jax.sharding import MESH_AXES, logical_spec, tree_shardings

__all__ = ["HBM_GIB", "MemoryPlan", "abstract_mesh", "activation_bytes", "plan", "chip_type", "fits", "format_plan",
           "add_parser", "main"]

GiB = 1 << 30

# HBM per chip (one JAX device) in GiB.
HBM_GIB = {"v4": 32, "v5e": 16, "v5p": 95, "v6e": 32, "h100": 80, "h200": 141, "a100-40gb": 40,
           "a100-80gb": 80}
USABLE = 0.9  # leave 10% for XLA's temporaries, fragmentation and the runtime


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Bytes per device (the most loaded one where shares differ)."""

    model: str
    mesh: str
    stage: str
    n_devices: int
    n_params: int
    summary: str  # two lines: rows and tokens; rows per device and dtypes
    params: int
    optimizer: int
    gradients: int
    reference: int
    kv_cache: int
    sampling_logits: int
    activations: int

    @property
    def resident(self) -> int:
        return self.params + self.optimizer + self.reference

    @property
    def sampling(self) -> int:
        return self.resident + self.kv_cache + self.sampling_logits

    @property
    def update(self) -> int:
        return self.resident + self.gradients + self.activations

    @property
    def peak(self) -> int:
        return max(self.sampling, self.update)


def abstract_mesh(spec: MeshConfig | str) -> AbstractMesh:
    """A ('data', 'fsdp', 'tensor') mesh of any size without devices."""
    cfg = MeshConfig.parse(spec) if isinstance(spec, str) else spec
    return AbstractMesh((cfg.data, cfg.fsdp, cfg.tensor), MESH_AXES)


def _device_bytes(tree, shardings) -> int:
    return sum(math.prod(s.shard_shape(x.shape)) * jnp.dtype(x.dtype).itemsize
               for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)))


def _local_rows(mesh, rows: int, length: int) -> int:
    """Rows of a [rows, length] batch that one device holds (batch over data x fsdp when it divides)."""
    return NamedSharding(mesh, logical_spec(("batch", None), (rows, length), mesh)).shard_shape((rows, length))[0]


def _local_model(cfg: ModelConfig, param_sh) -> ModelConfig:
    """The model as one device sees it in the forward pass: heads, KV heads, MLP width and
    vocabulary split by the tensor axis as the parameter shardings split them; d_model whole
    (fsdp gathers weights before use)."""
    p = model.param_shapes(cfg)
    n = param_sh["layers"]["wq"].shard_shape(p["layers"]["wq"].shape)[2]
    k = param_sh["layers"]["wk"].shard_shape(p["layers"]["wk"].shape)[2]
    f = param_sh["layers"]["w_gate"].shard_shape(p["layers"]["w_gate"].shape)[2]
    v = param_sh["embed"].shard_shape(p["embed"].shape)[0]
    if n % k:  # KV heads kept whole while query heads split: count the unsplit attention (over-estimate)
        n, k = cfg.n_heads, cfg.n_kv_heads
    return override(cfg, n_heads=n, n_kv_heads=k, d_ff=f, vocab_size=v)


def _residual_bytes(cfg, stage: str, rows: int, prompt_len: int, n_new: int, beta: float) -> int:
    """Bytes autodiff saves for the backward pass of the stage's loss (see the module docstring)."""
    T = prompt_len + n_new
    S = jax.ShapeDtypeStruct
    params = model.param_shapes(cfg)
    if stage == "grpo":
        batch = {"tokens": S((rows, T), jnp.int32), "mask": S((rows, T), bool),
                 "completion_mask": S((rows, n_new), jnp.float32), "old_logp": S((rows, n_new), jnp.float32),
                 "ref_logp": S((rows, n_new), jnp.float32), "advantages": S((rows,), jnp.float32)}

        def loss(p, b):  # as in train.grpo_train_step
            logp, entropy = train.completion_logprobs(cfg, p, b["tokens"], b["mask"], n_new)
            return losses.grpo_loss(logp, b["old_logp"], b["ref_logp"] if beta else None, b["advantages"],
                                    b["completion_mask"], beta=beta, entropy=jax.lax.stop_gradient(entropy))[0]
    else:
        batch = {"tokens": S((rows, T), jnp.int32), "mask": S((rows, T), bool), "loss_mask": S((rows, T), bool)}

        def loss(p, b):  # as in train.lm_train_step
            return train.lm_loss(cfg, p, b)[0]

    closure = jax.eval_shape(lambda p, b: jax.vjp(lambda q: loss(q, b), p)[1], params, batch)
    # parameters handed to the backward pass are the weights themselves, counted elsewhere
    weights = {(x.shape, x.dtype) for x in jax.tree.leaves(params)}
    return sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(closure)
               if (x.shape, x.dtype) not in weights)


def activation_bytes(cfg: ModelConfig, stage: str, rows: int, prompt_len: int, n_new: int, beta: float) -> int:
    """Activation memory of one device's update: the residuals autodiff keeps, with `cfg.remat`
    one layer's residuals more (the backward recomputes a layer at a time), and the transients of
    the backward pass. The LM head's: the gradient of its float32 logits, plus, when it runs in
    chunks (`ModelConfig.head_chunk` positions), one chunk's recomputed logits (unchunked, the
    residuals already hold them). Blockwise attention's: one [block, block] score tile of every
    head, three times (scores, probabilities, their gradient; float32). Checked against XLA's
    compiled temporary memory by `benchmarks/bench_long.py` (docs/performance.md)."""
    T = prompt_len + n_new
    out = _residual_bytes(cfg, stage, rows, prompt_len, n_new, beta)
    if cfg.remat:
        one, two = (_residual_bytes(override(cfg, n_layers=n, remat=False), stage, rows, prompt_len, n_new, beta)
                    for n in (1, 2))
        out += two - one
    predicted = n_new if stage == "grpo" else T - 1
    out += (2 if predicted > cfg.head_chunk else 1) * rows * min(cfg.head_chunk, predicted) * cfg.vocab_size * 4
    if attention_kind(cfg, T) == "blockwise":
        out += 3 * rows * cfg.n_heads * min(cfg.attention_block, T) ** 2 * 4
    return out


def plan(model_name: str, mesh: str, stage: str = "grpo", *, batch: int = 32, group: int = 16,
         minibatches: int = 1, max_new_tokens: int = 1024, prompt_len: int = 512, param_dtype: str | None = None,
         dtype: str | None = None, remat: bool = True, beta: float = GRPOConfig.beta,
         attention: str | None = None, head_chunk: int | None = None) -> MemoryPlan:
    """Per-device memory of one stage.

    grpo: `batch` prompts a step, `group` samples each (the sampler holds batch * group rows
    of prompt_len + max_new_tokens slots), `minibatches` policy updates a step, each on
    batch * group / minibatches rows; a reference model is kept when beta > 0.
    sft: `batch` sequences of prompt_len + max_new_tokens tokens a step; group, minibatches
    and beta are unused.
    """
    if stage not in ("grpo", "sft"):
        raise ValueError(f"stage must be 'grpo' or 'sft', got {stage!r}")
    cfg = get_preset(model_name)
    cfg = override(cfg, param_dtype=param_dtype or cfg.param_dtype, dtype=dtype or cfg.dtype, remat=remat,
                   attention=attention or cfg.attention, head_chunk=head_chunk or cfg.head_chunk)
    am = abstract_mesh(mesh)
    tx = train.make_optimizer(train.OptimConfig())
    state = jax.eval_shape(functools.partial(train.init_state, cfg, tx), jax.random.key(0))
    sh = train.state_shardings(am, cfg, tx)
    params = _device_bytes(state.params, sh.params)
    optimizer = _device_bytes(state.opt_state, sh.opt_state)
    T = prompt_len + max_new_tokens
    local = _local_model(cfg, sh.params)

    if stage == "grpo":
        if (batch * group) % minibatches:
            raise ValueError(f"batch * group = {batch * group} rollouts do not split into {minibatches} mini-batches")
        rollouts, rows = batch * group, batch * group // minibatches
        cache = jax.eval_shape(functools.partial(model.init_cache, cfg, rollouts, T))
        kv_cache = _device_bytes(cache, tree_shardings(am, model.cache_axes(cfg), cache))
        sampling_logits = _local_rows(am, rollouts, T) * local.vocab_size * 4  # float32, one position
        reference = params if beta else 0
        summary = (f"{rollouts} rollouts a step ({batch} prompts x {group}), {minibatches} updates of {rows} rows "
                   f"x {T} tokens ({prompt_len} prompt + {max_new_tokens} new)")
    else:
        rows, kv_cache, sampling_logits, reference = batch, 0, 0, 0
        summary = f"{batch} sequences x {T} tokens a step"
    local_rows = _local_rows(am, rows, T)
    activations = activation_bytes(local, stage, local_rows, prompt_len, max_new_tokens, beta)
    summary += (f"\n{local_rows} row{'s' * (local_rows != 1)} per device; params {cfg.param_dtype}, "
                f"compute {cfg.dtype}, remat {'on' if remat else 'off'}, "
                f"{attention_kind(cfg, T)} attention, LM head {cfg.head_chunk} "
                f"tokens at a time")
    n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(state.params))
    return MemoryPlan(model=model_name, mesh=mesh, stage=stage, n_devices=am.size, n_params=n_params,
                      summary=summary, params=params, optimizer=optimizer, gradients=params, reference=reference,
                      kv_cache=kv_cache, sampling_logits=sampling_logits, activations=activations)


def chip_type(device: str) -> tuple[str, int | None]:
    """'v5p' -> ('v5p', None); a slice name such as 'v4-32' or 'v5litepod-16' -> (chip, chips in it).

    v4 and v5p slice names count TensorCores (two per chip, one JAX device per chip); v5e
    (v5litepod) and v6e names count chips.
    """
    name = device.lower()
    if name in HBM_GIB:
        return name, None
    m = re.fullmatch(r"(v4|v5p|v5litepod|v6e)-(\d+)", name)
    if not m:
        raise ValueError(f"unknown device {device!r}; valid: {', '.join(HBM_GIB)} or a TPU slice such as "
                         "v4-32, v5litepod-16, v5p-128, v6e-8")
    family, n = m.group(1), int(m.group(2))
    return ("v5e" if family == "v5litepod" else family), (n // 2 if family in ("v4", "v5p") else n)


def fits(p: MemoryPlan, device: str) -> tuple[bool, float]:
    """(peak <= 90% of the chip's HBM, peak as a fraction of HBM)."""
    hbm = HBM_GIB[chip_type(device)[0]] * GiB
    return p.peak <= USABLE * hbm, p.peak / hbm


def _gib(n: int) -> str:
    return f"{n / GiB:8.2f} GiB"


def format_plan(p: MemoryPlan, device: str | None = None) -> str:
    lines = [f"{p.model} ({p.n_params / 1e9:.2f}B params), {p.stage} on mesh {p.mesh} "
             f"({p.n_devices} device{'s' * (p.n_devices != 1)})",
             p.summary, "per device:",
             f"  parameters       {_gib(p.params)}",
             f"  optimizer state  {_gib(p.optimizer)}",
             f"  gradients        {_gib(p.gradients)}",
             f"  reference model  {_gib(p.reference)}"]
    if p.stage == "grpo":
        lines += [f"  KV cache         {_gib(p.kv_cache)}  (sampling)",
                  f"  sampling logits  {_gib(p.sampling_logits)}  (sampling)"]
    lines += [f"  activations      {_gib(p.activations)}  (update, estimate)"]
    if p.stage == "grpo":
        lines += [f"  sampling phase   {_gib(p.sampling)}"]
    lines += [f"  update phase     {_gib(p.update)}", f"  peak             {_gib(p.peak)}"]
    if device:
        chip, chips = chip_type(device)
        ok, frac = fits(p, device)
        verdict = "fits" if ok else "does NOT fit"
        lines.append(f"{verdict} on {device} ({HBM_GIB[chip]} GiB HBM per chip): {frac:.0%} of HBM at peak")
        if chips is not None and chips != p.n_devices:
            lines.append(f"note: {device} has {chips} chips but the mesh has {p.n_devices} devices")
        if ok and not chip.startswith("v") and frac > 0.75:
            lines.append("note: JAX preallocates 75% of a GPU's memory; run with XLA_PYTHON_CLIENT_MEM_FRACTION=.95")
    return "\n".join(lines)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `plan` on an argparse subparsers object (r1jax.cli wires it)."""
    p = subparsers.add_parser("plan", help="per-device memory of a stage on a mesh, and whether it fits a chip")
    p.add_argument("--model", required=True, help="a preset name (r1jax.config.PRESETS)")
    p.add_argument("--mesh", required=True, help="e.g. data=1,fsdp=16,tensor=1")
    p.add_argument("--stage", choices=["grpo", "sft"], default="grpo")
    p.add_argument("--batch", type=int, default=32, help="grpo: prompts a step; sft: sequences a step")
    p.add_argument("--group", type=int, default=16, help="grpo: samples per prompt")
    p.add_argument("--minibatches", type=int, default=1, help="grpo: policy updates a step")
    p.add_argument("--max-new-tokens", type=int, default=1024, help="grpo: sampled tokens; sft: response tokens")
    p.add_argument("--prompt-len", type=int, default=512)
    p.add_argument("--param-dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="default: the preset's")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="compute dtype; default: the preset's")
    p.add_argument("--remat", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--attention", choices=ATTENTION, help="training attention; default: the preset's (auto)")
    p.add_argument("--head-chunk", type=int, help="tokens per LM-head chunk; default: the preset's")
    p.add_argument("--beta", type=float, default=GRPOConfig.beta,
                   help="grpo: KL coefficient; 0 keeps no reference model")
    p.add_argument("--device", default=None, help=f"say whether it fits: {', '.join(HBM_GIB)} or a slice like v4-32")
    return p


def main(args: argparse.Namespace) -> None:
    try:
        if args.device:
            chip_type(args.device)  # a typo fails before the planning work
        result = plan(args.model, args.mesh, args.stage, batch=args.batch, group=args.group,
                      minibatches=args.minibatches, max_new_tokens=args.max_new_tokens, prompt_len=args.prompt_len,
                      param_dtype=args.param_dtype, dtype=args.dtype, remat=args.remat, beta=args.beta,
                      attention=args.attention, head_chunk=args.head_chunk)
    except (ValueError, KeyError) as e:  # bad preset, mesh, device or batch split: a message, not a traceback
        raise SystemExit(f"r1jax plan: {e.args[0] if e.args else e}") from None
    print(format_plan(result, args.device))


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m r1jax.plan")
    main(add_parser(_parser.add_subparsers(dest="command", required=True)).parse_args())
