"""Train-step FLOP/s of r1jax as a share of a jitted float32 matmul's FLOP/s on this machine.

    python benchmarks/bench_flops.py [--repeats 5] [--matmul-repeats 20] [--matmul 1024]
        [--dtype float32|bfloat16]

`--dtype bfloat16` runs the steps with bfloat16 compute (float32 weights) and measures them
against a bfloat16 matmul with float32 accumulation, the same precision (on CPUs with bfloat16
matrix units that reference is several times the float32 one).

Steps (each jitted and donated with `r1jax.train.compile_step`, random weights and tokens):
`lm_train_step` on the `small` preset at [16, 256] (pretrain's default batch, two packed
documents a row) and on the bench_grpo model (random Qwen2, hidden 256, 4 layers, 4/2 heads,
ff 768, vocab 1024, untied head, 3.67M params) at [16, 144]; `grpo_train_step` (beta 0) on both
at 16 rows x (16 prompt + 128 completion) tokens. Both models run their layers in a Python loop
(`scan_layers=False`, r1jax's CPU setting). The time of a step is the median of
`--repeats` after a warm-up call; the matmul's is the median of `--matmul-repeats`, timed right
before and after each step (on a shared machine the available compute changes from minute to
minute), and each step's share is against the mean of those two.

FLOPs are counted two ways. `model`: analytic, 2 x (matmul parameters) per token through each
weight, the LM head only where the step computes it (all positions for lm, completion positions
for GRPO), plus attention's two [T, T] einsums per head and layer (computed dense, so not halved
for the causal mask); a training step is 3x the forward (the backward is twice the forward).
`xla`: `compiled.cost_analysis()['flops']` of the same step (a layer scan, if a config used
one, is unrolled for counting: XLA counts a while loop's body once; everything else XLA counts
is in: elementwise, softmax, optimizer). The share uses `model` FLOPs (the MFU convention); the
xla share is shown beside it.

A second table gives each step's ceiling: its matmuls (every `dot_general` in its jaxpr, the
backward's included; their FLOPs equal the `model` count) each timed alone at its own shapes and
summed. That is the step's time if nothing but its matmuls ran, each as fast as XLA runs it
alone, so the share computed from it bounds what removing every elementwise op, copy and
scheduling gap could reach: small matmuls ([2304, 256] x [256, 768], attention's per-head
[288, 64] x [64, 144]) run well below the 1024-cube reference.
"""

from __future__ import annotations

import argparse
import collections
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

from r1jax import sharding, train
from r1jax.config import MeshConfig, ModelConfig, get_preset, override
from r1jax.model import count_params

BENCH_GRPO = ModelConfig(vocab_size=1024, d_model=256, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=64, d_ff=768,
                         qkv_bias=True, tie_embeddings=False, max_seq_len=1024, scan_layers=False)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_flops_per_s(n: int, repeats: int, dtype: str = "float32") -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    mm = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
    jax.block_until_ready(mm(a, b))
    return 2 * n ** 3 / median_time(lambda: jax.block_until_ready(mm(a, b)), repeats)


def model_flops(cfg: ModelConfig, batch: int, seq: int, head_positions: int) -> float:
    """Analytic FLOPs of one training step (3 x forward) on [batch, seq] tokens."""
    D, N, K, H, F, L = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_ff, cfg.n_layers
    layer_matmul = D * N * H + 2 * D * K * H + N * H * D + 3 * D * F
    fwd = (2 * L * layer_matmul * batch * seq + 2 * D * cfg.vocab_size * batch * head_positions
           + L * 2 * 2 * batch * seq * seq * N * H)
    return 3.0 * fwd


def xla_flops(step, state, batch) -> float:
    """XLA's count for the step. XLA counts a while loop's body once, whatever its trip count, so
    the layer `lax.scan` is traced fully unrolled here (only for counting; the timed step is the
    library's own)."""
    scan = jax.lax.scan
    jax.lax.scan = functools.partial(scan, unroll=True)
    try:
        cost = jax.jit(step).lower(state, batch).compile().cost_analysis()
    finally:
        jax.lax.scan = scan
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))


def step_dots(step, *args) -> collections.Counter:
    """Every matmul the step runs, autodiff's backward ones included, read from its jaxpr:
    {(lhs shape, rhs shape, dtypes, dimension numbers, output dtype): count}. A scan's body
    counts `length` times; a while loop's trip count is unknown, so it is refused."""
    dots = collections.Counter()

    def walk(jaxpr, times):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                a, b = (v.aval for v in eqn.invars)
                key = (a.shape, b.shape, str(a.dtype), str(b.dtype), eqn.params["dimension_numbers"],
                       str(eqn.outvars[0].aval.dtype))
                dots[key] += times
            elif eqn.primitive.name == "while":
                raise ValueError("a while loop in the step: its matmuls' trip count is unknown")
            for sub in jex_core.jaxprs_in_params(eqn.params):
                walk(sub, times * eqn.params.get("length", 1) if eqn.primitive.name == "scan" else times)

    walk(jax.make_jaxpr(step)(*args).jaxpr, 1)
    return dots


def dot_flops(key) -> float:
    """2 x batch x M x K x N: the lhs holds batch x M x K, the rhs's free axes N."""
    a, b, _, _, ((_, rhs_contract), (_, rhs_batch)), _ = key
    return 2.0 * np.prod(a) * np.prod([d for i, d in enumerate(b) if i not in rhs_contract + rhs_batch])


def dots_alone_seconds(dots: collections.Counter, repeats: int, substituted: list | None = None) -> float:
    """The step's matmuls timed one at a time (each its own jitted dot_general on random inputs of
    the same shapes and dtypes, median of `repeats`), summed with their counts: the time the step
    would take if nothing but its matmuls ran, each at the speed XLA gives it alone.

    XLA's CPU runtime cannot run some of them alone: a bfloat16 x bfloat16 batched matmul with a
    float32 result (attention's scores) is rejected op by op ("Unsupported element type for
    DotThunk::Execute: BF16 x BF16 = F32") and runs only inside the step's fusions. Those are
    timed with a result in the operands' dtype, the same multiply-adds (XLA accumulates a
    bfloat16 dot in float32 either way), and their keys are appended to `substituted`."""
    total = 0.0
    for i, (key, n) in enumerate(dots.items()):
        a, b, da, db, dims, out = key
        x = jax.random.normal(jax.random.key(2 * i), a, jnp.float32).astype(da)
        y = jax.random.normal(jax.random.key(2 * i + 1), b, jnp.float32).astype(db)
        mm = jax.jit(functools.partial(jax.lax.dot_general, dimension_numbers=dims, preferred_element_type=out))
        try:
            jax.block_until_ready(mm(x, y))
        except jax.errors.JaxRuntimeError as e:
            if "UNIMPLEMENTED" not in str(e) or da != db or jnp.dtype(da).itemsize >= jnp.dtype(out).itemsize:
                raise
            mm = jax.jit(functools.partial(jax.lax.dot_general, dimension_numbers=dims, preferred_element_type=da))
            jax.block_until_ready(mm(x, y))
            if substituted is not None:
                substituted.append(key)
        total += n * median_time(lambda: jax.block_until_ready(mm(x, y)), repeats)
    return total


def lm_batch(cfg: ModelConfig, B: int, T: int, rng) -> dict:
    half = T // 2  # two packed documents a row, as pretrain's batches
    seg = np.where(np.arange(T) < half, 1, 2).astype(np.int32)
    pos = np.where(seg == 1, np.arange(T), np.arange(T) - half).astype(np.int32)
    return {"tokens": rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32), "mask": np.ones((B, T), bool),
            "loss_mask": np.ones((B, T), np.float32),
            "positions": np.broadcast_to(pos, (B, T)).copy(),
            "segment_ids": np.broadcast_to(seg, (B, T)).copy()}


def grpo_batch(cfg: ModelConfig, B: int, P: int, N: int, rng) -> dict:
    return {"tokens": rng.integers(0, cfg.vocab_size, (B, P + N)).astype(np.int32), "mask": np.ones((B, P + N), bool),
            "completion_mask": np.ones((B, N), np.float32),
            "old_logp": np.full((B, N), -np.log(cfg.vocab_size), np.float32),
            "ref_logp": np.zeros((B, N), np.float32),
            "advantages": rng.standard_normal(B).astype(np.float32)}


def measure(name: str, cfg: ModelConfig, kind: str, batch: dict, repeats: int) -> dict:
    tx = train.make_optimizer(train.OptimConfig(learning_rate=1e-5, schedule="constant", weight_decay=0.01))
    mesh = sharding.make_mesh(MeshConfig(data=jax.device_count()))
    state_sh = train.state_shardings(mesh, cfg, tx)
    init = jax.jit(lambda k: train.init_state(cfg, tx, k), out_shardings=state_sh)
    if kind == "lm":
        step = functools.partial(train.lm_train_step, model_cfg=cfg, tx=tx)
        B, T = batch["tokens"].shape
        flops = model_flops(cfg, B, T, T - 1)  # the last position predicts nothing: no head
    else:
        step = functools.partial(train.grpo_train_step, model_cfg=cfg, tx=tx, cfg=train.GRPOConfig(beta=0.0))
        B, T = batch["tokens"].shape
        flops = model_flops(cfg, B, T, batch["completion_mask"].shape[1])
    with jax.set_mesh(mesh):
        probe = init(jax.random.key(1))  # traced only, for the two counts
        xf = xla_flops(step, probe, batch)
        dots = step_dots(step, probe, batch)
    run = train.compile_step(step, mesh, state_sh, train.batch_shardings(mesh, batch))
    box = [init(jax.random.key(0))]

    def once():
        box[0], m = run(box[0], batch)
        jax.block_until_ready(m)

    once()  # compile
    t = median_time(once, repeats)
    return {"name": name, "params": count_params(box[0].params), "shape": f"{B}x{T}", "s": t, "model_flops": flops,
            "xla_flops": xf, "n_dots": sum(dots.values()), "dot_flops": sum(n * dot_flops(k) for k, n in dots.items()),
            "dots_s": dots_alone_seconds(dots, 2 * repeats + 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--matmul-repeats", type=int, default=20)
    ap.add_argument("--matmul", type=int, default=1024)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="compute dtype of the steps and the reference matmul (weights stay float32)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    small = override(get_preset("small"), max_seq_len=1024, dtype=args.dtype)
    bench_grpo = override(BENCH_GRPO, dtype=args.dtype)
    cases = [
        ("lm_train_step small", small, "lm", lm_batch(small, 16, 256, rng)),
        ("grpo_train_step small", small, "grpo", grpo_batch(small, 16, 16, 128, rng)),
        ("lm_train_step 3.67M", bench_grpo, "lm", lm_batch(bench_grpo, 16, 144, rng)),
        ("grpo_train_step 3.67M", bench_grpo, "grpo", grpo_batch(bench_grpo, 16, 16, 128, rng)),
    ]
    rows = []
    for name, cfg, kind, batch in cases:
        # the matmul is timed right before and after each step (the machine may be shared): the
        # step's share is against their mean
        before = matmul_flops_per_s(args.matmul, args.matmul_repeats, args.dtype)
        r = measure(name, cfg, kind, batch, args.repeats)
        after = matmul_flops_per_s(args.matmul, args.matmul_repeats, args.dtype)
        rows.append({**r, "ref": (before + after) / 2, "mm": (before, after)})
    print(f"\njax {jax.__version__}, {jax.device_count()} {jax.devices()[0].platform} device(s); "
          f"steps and reference in {args.dtype}; reference: jitted {args.matmul}x{args.matmul} @ "
          f"{args.matmul}x{args.matmul}, median of "
          f"{args.matmul_repeats}, timed before and after each step\n")
    print("| step | params | tokens | step s | model GFLOP | xla GFLOP | model GFLOP/s | matmul GFLOP/s (before/after) "
          "| share of matmul (model) | share (xla) |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mf, xf = r["model_flops"] / r["s"], r["xla_flops"] / r["s"]
        print(f"| {r['name']} | {r['params'] / 1e6:.2f}M | {r['shape']} | {r['s']:.3f} | "
              f"{r['model_flops'] / 1e9:.2f} | {r['xla_flops'] / 1e9:.2f} | {mf / 1e9:.1f} | "
              f"{r['mm'][0] / 1e9:.0f}/{r['mm'][1] / 1e9:.0f} | "
              f"{mf / r['ref']:.0%} | {xf / r['ref']:.0%} |")
    print("\nThe same steps' matmuls, each timed alone and summed (the step's time if nothing else ran and "
          "each matmul ran as fast as it does alone); the last column is the share of the matmul reference "
          "the step would reach then, the ceiling of the share above:\n")
    print("| step | matmuls | their GFLOP | alone s | step s | matmuls alone / step | ceiling share |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['n_dots']} | {r['dot_flops'] / 1e9:.2f} | {r['dots_s']:.3f} | {r['s']:.3f} | "
              f"{r['dots_s'] / r['s']:.0%} | {r['model_flops'] / r['dots_s'] / r['ref']:.0%} |")
    best = max(max(r["mm"]) for r in rows)
    print(f"\nbest matmul seen: {best / 1e9:.1f} GFLOP/s; shares against it: "
          + ", ".join(f"{r['name']} {r['model_flops'] / r['s'] / best:.0%}" for r in rows))
    print("target: share >= 60%")


if __name__ == "__main__":
    main()
