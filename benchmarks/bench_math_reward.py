"""Math answer checking: throughput and worst-case latency, r1jax vs Hugging Face math-verify.

    pip install math-verify   # the baseline (used by open-r1 and TRL's accuracy reward)
    python benchmarks/bench_math_reward.py [--n 2000]

Workload: MATH-500 and GSM8K gold answers as completions "... so the answer is \\boxed{X}.",
half correct and half paired with another problem's answer. r1jax runs `grade_batch` on its
worker processes (one per core); math-verify runs in-process as its users call it. Also
reports how often the two agree, and the slowest adversarial input for r1jax (each check is
killed after 0.5 s by design) and for math-verify (run in a subprocess, capped at 20 s).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from r1jax.rewards import math as M
from r1jax.rewards.workers import default_pool

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ADVERSARIAL = ["__import__('os').system('true')", "9**9**9**9", r"10^{10^{10^{10}}}",
               "(" * 100_000 + "1" + ")" * 100_000,
               "1000000!", r"\frac{1}{0}", "2^{2^{2^{2^{2^{2^{2}}}}}}", "9" * 100_000, "３"]


def workload(n: int, seed: int = 0):
    golds = [json.loads(line)["answer"] for line in open(DATA / "math500_test.jsonl")]
    golds += [json.loads(line)["answer"].split("####")[-1].strip() for line in open(DATA / "gsm8k_test.jsonl")]
    rng = random.Random(seed)
    items = []
    for i in range(n):
        g = rng.choice(golds)
        p = g if i % 2 == 0 else rng.choice(golds)
        items.append((f"Let me work through it step by step. So the answer is \\boxed{{{p}}}.", g))
    return items


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    items = workload(args.n)
    comps, golds = [c for c, _ in items], [g for _, g in items]

    M.grade_batch(comps[:50], golds[:50])  # start the workers
    t0 = time.perf_counter()
    ours = M.grade_batch(comps, golds)
    t_ours = time.perf_counter() - t0
    rows = [("r1jax grade_batch", default_pool().n_workers, len(items) / t_ours, sum(ours) / len(ours))]

    try:
        from math_verify import parse, verify
    except ImportError:
        print("math-verify not installed: pip install math-verify (baseline skipped)")
        parse = None
    if parse is not None:
        t0 = time.perf_counter()
        # math-verify only parses delimited LaTeX, so the gold goes in \boxed{} as its users do
        theirs = [bool(verify(parse(f"\\boxed{{{g}}}"), parse(c))) for c, g in items]
        t_theirs = time.perf_counter() - t0
        rows.append(("math-verify parse+verify", 1, len(items) / t_theirs, sum(theirs) / len(theirs)))

    print(f"\n{len(items)} checks (half correct), MATH-500 + GSM8K answers\n")
    print(f"| {'checker':28} | processes | checks/s | accepted |")
    print(f"|{'-' * 30}|-----------|----------|----------|")
    for name, procs, rate, acc in rows:
        print(f"| {name:28} | {procs:9} | {rate:8.0f} | {acc:8.3f} |")
    if parse is not None:
        agree = sum(a == b for a, b in zip(ours, theirs)) / len(items)
        print(f"\nthroughput ratio r1jax / math-verify: {rows[0][2] / rows[1][2]:.1f}x; the two agree on {agree:.1%}")
        print("per-core ratio: {:.1f}x".format((rows[0][2] / rows[0][1]) / rows[1][2]))

    print("\n| adversarial answer | r1jax s | math-verify s |\n|---|---|---|")
    worst = 0.0
    for a in ADVERSARIAL:
        t0 = time.perf_counter()
        assert M.grade(f"\\boxed{{{a}}}", "3") is False
        dt = time.perf_counter() - t0
        worst = max(worst, dt)
        base = "-"
        if parse is not None:
            code = ("import sys; from math_verify import parse, verify; "
                    "verify(parse('$3$'), parse(sys.stdin.read()))")
            t1 = time.perf_counter()
            try:
                subprocess.run([sys.executable, "-c", code], input="\\boxed{" + a + "}", text=True, timeout=20,
                               capture_output=True)
                base = f"{time.perf_counter() - t1:.2f} (incl. ~1 s startup)"
            except subprocess.TimeoutExpired:
                base = "> 20 (killed)"
        print(f"| {a[:28]!r} | {dt:.3f} | {base} |")
    print(f"\nr1jax worst-case latency of one adversarial check: {worst:.3f} s")


if __name__ == "__main__":
    main()
