"""Long rollouts: memory and time of a GRPO update, dense attention + whole-vocabulary head
against blockwise attention + chunked head, and the planner's estimate against XLA's figure.

    python benchmarks/bench_long.py [--lengths 1024,2048,4096,8192] [--repeats 3]
    python benchmarks/bench_long.py --decode [--budget 4096] [--stops 6]
    python benchmarks/bench_long.py --pack [--budget 1024]

A small Qwen2-shaped model (d 128, 2 layers, 4/2 heads, vocab 8192, remat on, float32) takes
the gradient of the GRPO loss (`train.completion_logprobs` + `losses.grpo_loss`) on one row of
T tokens (64 prompt + T - 64 completion). For each T the table prints XLA's compiled temporary
memory (`compiled.memory_analysis().temp_size_in_bytes`: what the update needs beyond its
inputs and outputs) for both settings, `plan.activation_bytes` for the blockwise setting (the
planner's estimate of the same quantity) and its ratio to XLA's, and the time per token of a
gradient (best of --repeats, compile excluded) with the ratio blockwise / dense.

--decode: the sampler with a long token budget and answers that stop far short of it. A random
model (d 256, 4 layers, 4/2 heads, vocab 1024, the CPU presets' layer loop) samples 16 rows of
32 prompt tokens with max_new_tokens --budget; --stops stop tokens (default six) end a row:
six after about 150 tokens on average, two after about 500, so the batch finishes far short of
the budget. Dense attention reads
every cache slot at every step; blockwise decoding (`attention.decode_attention`) reads the
filled blocks only. Both draw the same tokens (checked); tokens/s = generated tokens / time.

--pack: one RL step's updates (64 rollouts, 4 mini-batches) on a long-tailed length
distribution like an R1-Zero batch (completion lengths exponential with mean a third of the
budget, cut at the budget; prompts 16-64 tokens), d 128, 2 layers, vocab 8192, attention
blocks of --block tokens. Padded, length-grouped: the default, mini-batches of similar length
(`length_grouped`), each cut to its longest rollout;
padded, random: the same random mini-batches as packed, each cut to its longest rollout;
packed: random mini-batches packed into rows (`grpo.pack`) as wide as the attention's tiles
(`attention.tiled_length`, as `r1jax.stages.grpo` packs them). Tokens/s counts real tokens
(prompts + completions) over the updates' time (compiles excluded: each shape runs once first).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import subprocess
import time

import jax
import jax.numpy as jnp

from r1jax import attention, losses, plan, sampling, train
from r1jax.config import ModelConfig
from r1jax.model import init_params

MiB = 1 << 20
PROMPT = 64


def grad_fn(cfg: ModelConfig, T: int):
    n_new = T - PROMPT

    def loss(p, b):
        logp, _ = train.completion_logprobs(cfg, p, b["tokens"], b["mask"], n_new)
        return losses.grpo_loss(logp, b["old_logp"], None, b["advantages"], b["completion_mask"], beta=0.0)[0]

    params = init_params(cfg, jax.random.key(0))
    batch = {"tokens": jax.random.randint(jax.random.key(1), (1, T), 0, cfg.vocab_size), "mask": jnp.ones((1, T), bool),
             "completion_mask": jnp.ones((1, n_new)), "old_logp": jnp.full((1, n_new), -8.0),
             "advantages": jnp.ones((1,))}
    compiled = jax.jit(jax.grad(loss)).lower(params, batch).compile()
    return compiled, params, batch


def best_time(compiled, params, batch, repeats: int) -> float:
    jax.block_until_ready(compiled(params, batch))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(compiled(params, batch))
        times.append(time.perf_counter() - t)
    return min(times)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def decode_table(budget: int, repeats: int, stops: int) -> None:
    base = ModelConfig(vocab_size=1024, d_model=256, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=64, d_ff=768,
                       qkv_bias=True, tie_embeddings=True, max_seq_len=budget + 64, scan_layers=False)
    params = init_params(base, jax.random.key(0))
    prompts = jax.random.randint(jax.random.key(1), (16, 32), 10, 1024)
    mask = jnp.ones((16, 32), bool)
    cfg = sampling.SamplingConfig(temperature=1.0, max_new_tokens=budget, stop_tokens=tuple(range(1, stops + 1)),
                                  pad_id=0)
    print(f"# {cpu_model()}, jax {jax.__version__}; sampler, 16 rows, prompt 32, budget {budget}, {stops} stop tokens, "
          "d 256, 4 layers")
    print("| attention | steps | mean length | best s | tokens/s |\n|---|---|---|---|---|")
    results = {}
    for name in ("dense", "blockwise"):
        sampler = sampling.make_sampler(dataclasses.replace(base, attention=name), cfg)
        out = jax.block_until_ready(sampler(params, prompts, mask, jax.random.key(2)))  # compile
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = jax.block_until_ready(sampler(params, prompts, mask, jax.random.key(2)))
            times.append(time.perf_counter() - t)
        results[name] = out
        n = int(out.lengths.sum())
        print(f"| {name} | {int(out.lengths.max())} | {n / 16:.0f} | {min(times):.2f} | {n / min(times):.0f} |",
              flush=True)
    assert (results["dense"].tokens == results["blockwise"].tokens).all()


def pack_table(budget: int, repeats: int, block: int) -> None:
    import functools

    import numpy as np

    from r1jax import data
    from r1jax.config import GRPOConfig
    from r1jax.stages.grpo import round_up
    cfg = ModelConfig(vocab_size=8192, d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=32, d_ff=384,
                      qkv_bias=True, tie_embeddings=True, max_seq_len=budget + 64, scan_layers=True,
                      attention_block=block)
    rng = np.random.default_rng(0)
    B, M, P = 64, 4, 64
    lengths = np.minimum(rng.exponential(budget / 3, B).astype(int) + 1, budget)
    prompt_lens = rng.integers(16, P + 1, B)
    prompts = [rng.integers(10, 8192, n).tolist() for n in prompt_lens]
    completions = [rng.integers(10, 8192, n).tolist() for n in lengths]
    tx = train.make_optimizer(train.OptimConfig())
    state = train.init_state(cfg, tx, jax.random.key(0))
    step = jax.jit(functools.partial(train.grpo_train_step, model_cfg=cfg, tx=tx, cfg=GRPOConfig(beta=0.0),
                                     max_len=budget))

    def common(mb, n):
        return {"completion_mask": (np.arange(n)[None] < lengths[mb, None]).astype(np.float32),
                "old_logp": np.full((len(mb), n), -9.0, np.float32), "ref_logp": np.zeros((len(mb), n), np.float32),
                "advantages": rng.normal(size=len(mb)).astype(np.float32)}

    def padded(mb):
        n = round_up(int(lengths[mb].max()), budget)
        tokens, mask = np.zeros((len(mb), P + n), np.int32), np.zeros((len(mb), P + n), bool)
        for r, i in enumerate(mb):
            tokens[r, P - prompt_lens[i]:P], mask[r, P - prompt_lens[i]:P] = prompts[i], True
            tokens[r, P:P + lengths[i]], mask[r, P:P + lengths[i]] = completions[i], True
        return {"tokens": tokens, "mask": mask, **common(mb, n)}

    def packed(mb):
        n = round_up(int(lengths[mb].max()), budget)
        rows = data.pack_rollouts([prompts[i] for i in mb], [completions[i] for i in mb],
                                  width=attention.tiled_length(cfg, P + round_up(int(lengths.max()), budget)))
        return {**rows, **common(mb, n)}

    grouped = np.array_split(np.argsort(lengths, kind="stable"), M)
    shuffled = np.array_split(rng.permutation(B), M)
    real = int(lengths.sum() + prompt_lens.sum())
    print(f"# {cpu_model()}, jax {jax.__version__}; one RL step's updates: {B} rollouts, {M} mini-batches, "
          f"budget {budget}, mean completion {lengths.mean():.0f}, max {lengths.max()}; d 128, 2 layers, vocab 8192, "
          f"attention block {block} (auto: dense up to one block)")
    print("| update | tokens through the model | best s | real tokens/s |\n|---|---|---|---|")
    result = {}
    for name, batches in (("padded, length-grouped", [padded(mb) for mb in grouped]),
                          ("padded, random mini-batches", [padded(mb) for mb in shuffled]),
                          ("packed, random mini-batches", [packed(mb) for mb in shuffled])):
        for b in batches:
            jax.block_until_ready(step(state, b))  # compile each shape
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            for b in batches:
                jax.block_until_ready(step(state, b))
            times.append(time.perf_counter() - t)
        result[name] = real / min(times)
        through = sum(b["tokens"].size for b in batches)
        print(f"| {name} | {through} | {min(times):.2f} | {result[name]:.0f} |", flush=True)
    for baseline in ("padded, length-grouped", "padded, random mini-batches"):
        print(f"packed / {baseline}: {result['packed, random mini-batches'] / result[baseline]:.2f}x tokens per second")


def shapes_table(budget: int, steps: int) -> None:
    """How many update programs a long run compiles: the widths padded mini-batches take over an
    R1-Zero-like run (mean length growing linearly from a twentieth to a third of the budget,
    long-tailed, length-grouped mini-batches), rounded to plain multiples of 32 against the
    bucketed widths the GRPO stage uses (`grpo.round_up`). Numpy only: no model runs."""
    import numpy as np

    from r1jax.stages.grpo import round_up
    rng = np.random.default_rng(0)
    B, M = 512, 8  # the paper's 32 prompts x 16 samples, in 8 mini-batches (experiments/r1_zero_*)
    widths = {"multiples of 32": set(), "bucketed (round_up)": set()}
    through = dict.fromkeys(widths, 0)
    real = 0
    for step in range(steps):
        mean = budget * (1 / 20 + (1 / 3 - 1 / 20) * step / max(steps - 1, 1))
        lengths = np.sort(np.minimum(rng.exponential(mean, B).astype(int) + 1, budget))
        real += int(lengths.sum())
        for mb in np.split(lengths, M):
            for name, width in (("multiples of 32", min(-(-int(mb.max()) // 32) * 32, budget)),
                                ("bucketed (round_up)", round_up(int(mb.max()), budget))):
                widths[name].add(width)
                through[name] += width * len(mb)
    print(f"# padded, length-grouped updates over {steps} steps: {B} rollouts a step in {M} mini-batches, budget "
          f"{budget}, mean completion {budget // 20} -> {budget // 3} (exponential, capped)")
    print("| widths | update programs compiled | completion tokens through the model / real |\n|---|---|---|")
    for name in widths:
        print(f"| {name} | {len(widths[name])} | {through[name] / real:.3f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="1024,2048,4096,8192")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--block", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--decode", action="store_true", help="the sampler table instead")
    ap.add_argument("--pack", action="store_true", help="the packed-update table instead")
    ap.add_argument("--shapes", action="store_true", help="the table of update shapes over a long run instead")
    ap.add_argument("--steps", type=int, default=400, help="with --shapes: RL steps simulated")
    ap.add_argument("--budget", type=int, help="max new tokens (default 4096 with --decode, 1024 with --pack, "
                    "32768 with --shapes)")
    ap.add_argument("--stops", type=int, default=6, help="with --decode: how many stop tokens (fewer: longer answers)")
    args = ap.parse_args()
    if args.decode:
        return decode_table(args.budget or 4096, args.repeats, args.stops)
    if args.shapes:
        return shapes_table(args.budget or 32768, args.steps)
    if args.pack:
        return pack_table(args.budget or 1024, args.repeats, args.block)
    base = ModelConfig(vocab_size=8192, d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=32, d_ff=384,
                       qkv_bias=True, tie_embeddings=True, max_seq_len=16384, remat=True, scan_layers=True)
    dense = dataclasses.replace(base, attention="dense", head_chunk=1 << 30)
    long = dataclasses.replace(base, attention="blockwise", attention_block=args.block, head_chunk=args.chunk)
    print(f"# {cpu_model()}, jax {jax.__version__}; GRPO gradient, 1 row, d 128, 2 layers, vocab 8192, remat, "
          f"block {args.block}, head chunk {args.chunk}")
    print("| T | dense temp MiB | blockwise temp MiB | planner MiB | planner / XLA | dense ms/token | "
          "blockwise ms/token | blockwise / dense time |")
    print("|---|---|---|---|---|---|---|---|")
    for T in map(int, args.lengths.split(",")):
        row = {}
        for name, cfg in (("dense", dense), ("blockwise", long)):
            compiled, params, batch = grad_fn(cfg, T)
            row[name] = (compiled.memory_analysis().temp_size_in_bytes, best_time(compiled, params, batch,
                                                                                  args.repeats) / T * 1e3)
            del compiled
        est = plan.activation_bytes(long, "grpo", 1, PROMPT, T - PROMPT, 0.0)
        (dm, dt), (bm, bt) = row["dense"], row["blockwise"]
        print(f"| {T} | {dm / MiB:.0f} | {bm / MiB:.0f} | {est / MiB:.0f} | {est / bm:.2f} | {dt:.3f} | {bt:.3f} | "
              f"{bt / dt:.2f} |", flush=True)


if __name__ == "__main__":
    main()
