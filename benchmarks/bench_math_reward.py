"""Math answer checking: throughput and worst-case latency, r1jax vs Hugging Face math-verify;
and 10,000 hostile completions through `grade_batch`.

    pip install math-verify   # the baseline (used by open-r1 and TRL's accuracy reward)
    python benchmarks/bench_math_reward.py [--n 2000] [--adversarial 10000]

Workload: MATH-500 and GSM8K gold answers as completions "... so the answer is \\boxed{X}.",
half correct and half paired with another problem's answer. r1jax runs `grade_batch` on its
worker processes (one per core); math-verify runs in-process as its users call it. Also
reports how often the two agree, and the slowest adversarial input for r1jax (each check is
killed after 0.5 s by design) and for math-verify (run in a subprocess, capped at 20 s).

Hostile workload (`adversarial`, --adversarial N, 0 to skip): N completions drawn from the
families below with random sizes (huge exponents, factorials and binomials, boxes and braces
nested 10,000 deep, strings up to 1 MB, long whitespace runs, unclosed delimiters, lists and
matrices of thousands of items, Python / sympy / LaTeX injection), graded against small golds.
It prints the wall time and how many checks hit the 0.5 s kill; the checks are bounded (see
docs/evaluation.md), so the target is 0 kills and well under 15 s on 2 cores. The same
families, one of each, are a test (tests/test_math_reward.py).
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


MB = 1_000_000


def _lists(rng, n):
    return ", ".join(str(rng.randrange(10 ** 6)) for _ in range(n))


# name -> completion(rng). Sizes are drawn from a few values so that the large strings repeat
# (one object each), which keeps 10,000 of them in memory.
FAMILIES = {
    # numbers too big to compute
    "power tower": lambda r: rf"\boxed{{{r.randint(2, 9)}^{{{r.randint(2, 9)}^{{{r.randint(2, 9)}^{{99}}}}}}}}",
    "python power": lambda r: f"<answer>{r.randint(2, 9)}**{r.randint(2, 9)}**{r.randint(2, 9)}**9</answer>",
    "negative power": lambda r: rf"\boxed{{10^{{-10^{{{r.randint(5, 50)}}}}}}}",
    "factorial": lambda r: rf"\boxed{{{r.choice([10 ** 6, 10 ** 5, 99999, 171, 301])}!}}",
    "factorial of a power": lambda r: rf"\boxed{{(10^{{{r.randint(3, 200)}}})!}}",
    "repeated factorial": lambda r: rf"\boxed{{{r.randint(100, 300)}" + "!" * r.randint(2, 40) + "}",
    "product of factorials": lambda r: r"\boxed{" + r"300!\cdot " * r.randint(10, 40) + "1}",
    "binomial": lambda r: rf"\boxed{{\binom{{{r.choice([10 ** 5, 10 ** 6, 2 * 10 ** 6])}}}{{{r.randint(1, 5)}00000}}}}",
    "binomial of a power": lambda r: rf"\boxed{{\binom{{10^{{{r.randint(3, 300)}}}}}{{{r.randint(1, 9999)}}}}}",
    "binomial, non-integer": lambda r: rf"\boxed{{\binom{{{r.randint(10 ** 4, 10 ** 6)}.5}}{{{r.randint(1, 9999)}}}}}",
    "sine of a power": lambda r: rf"\boxed{{\sin(10^{{{r.randint(100, 400)}}})}}",
    "exp of a power": lambda r: rf"\boxed{{e^{{10^{{{r.randint(3, 9)}}}}}}}",
    "scientific notation": lambda r: rf"<answer>1.5e{r.choice(['', '-'])}{r.randint(300, 10 ** 6)}</answer>",
    # nesting
    "nested boxes": lambda r: r"\boxed{" * (n := r.choice([5000, 10000])) + "3" + "}" * n,
    "nested boxes, then an answer": lambda r: r"\boxed{" * (n := r.choice([5000, 10000])) + "}" * n + r" so \boxed{3}",
    "unclosed boxes, 1 MB": lambda r: r"\boxed{" * (MB // 7),
    "nested parentheses": lambda r: "<answer>" + "(" * (n := r.choice([10**4, 10**5])) + "1" + ")" * n + "</answer>",
    "nested braces": lambda r: r"\boxed{" + "{" * (n := r.choice([10 ** 4, 10 ** 5])) + "1" + "}" * n + "}",
    "nested square roots": lambda r: r"\boxed{" + r"\sqrt{" * (n := r.choice([200, 2000])) + "3" + "}" * n + "}",
    "nested fractions": lambda r: r"\boxed{" + r"\frac{1}{" * (n := r.choice([200, 2000])) + "3" + "}" * n + "}",
    "nested text macros": lambda r: r"\boxed{" + r"\text{" * (n := r.choice([20, 5000])) + "3" + "}" * n + "}",
    # long strings
    "1 MB of digits in a box": lambda r: r"\boxed{" + "9" * r.choice([MB, MB // 10]) + "}",
    "1 MB of digits": lambda r: "7" * r.choice([MB, MB // 10]),
    "1 MB of letters": lambda r: "a" * r.choice([MB, MB // 10]),
    "1 MB of spaces": lambda r: " " * r.choice([MB, MB // 10]),
    "whitespace after ####": lambda r: "#### 1" + " " * r.choice([150_000, 190_000]) + "x",
    "whitespace after '####'": lambda r: "####" + r.choice([" ", "\t", " \n"]) * r.choice([10 ** 5, MB // 2]) + "3",
    "many #### lines": lambda r: "#### 1 " * r.choice([10 ** 4, 10 ** 5]),
    "whitespace after 'answer is'": lambda r: "The answer is" + " " * r.choice([2 * 10 ** 5, MB]),
    "whitespace after 'Answer:'": lambda r: "Answer:" + " " * r.choice([2 * 10 ** 5, MB]) + ":",
    "many 'answer is'": lambda r: "The answer is 1. " * r.choice([10 ** 4, 6 * 10 ** 4]),
    "many lines": lambda r: "1\n" * r.choice([10 ** 5, 3 * 10 ** 5]),
    "unclosed answer tags": lambda r: "<answer>" * r.choice([10 ** 4, 10 ** 5]),
    "unclosed answer tags with text": lambda r: "<answer>x" * r.choice([10 ** 4, 10 ** 5]) + "</answer",
    "unclosed \\(": lambda r: "\\(" * r.choice([10 ** 4, 10 ** 5]),
    "unclosed \\[": lambda r: "x \\[" * r.choice([10 ** 4, 5 * 10 ** 4]),
    "unclosed $$": lambda r: "The answer is " + "$$a" * r.choice([10 ** 4, 6 * 10 ** 4]),
    "unclosed $": lambda r: "$ a" * r.choice([10 ** 4, 6 * 10 ** 4]) + "$",
    "money": lambda r: "$4 + " * r.choice([10 ** 4, 10 ** 5]) + "$5",
    "calculator notes": lambda r: r.choice(["<<", "<<1"]) * r.choice([10 ** 4, 10 ** 5]) + "1",
    "many 'is'": lambda r: "is a " * r.choice([10 ** 4, 4 * 10 ** 4]),
    "many unknowns": lambda r: "So x = 1" + " , y = 2" * r.choice([10 ** 3, 2 * 10 ** 4]) + r.choice([" z", " ="]),
    "units": lambda r: "1 m" * r.choice([10 ** 4, 6 * 10 ** 4]) + "!",
    "unclosed text macros": lambda r: r"\boxed{" + r"\text{a" * r.choice([10 ** 3, 2 * 10 ** 4]) + "}",
    "many boxes": lambda r: r"\boxed{1} " * r.choice([10 ** 3, 10 ** 5]),
    "many boxes stated together": lambda r: r"\boxed{1} and " * r.choice([100, 2 * 10 ** 4]),
    # big structures
    "long list": lambda r: r"\boxed{" + _lists(r, r.choice([100, 300, 3000])) + "}",
    "long lists stated together": lambda r: " and ".join(r"\boxed{" + _lists(r, 300) + "}" for _ in range(8)),
    "long set": lambda r: r"\boxed{\{" + _lists(r, r.choice([100, 300])) + r"\}}",
    "long union": lambda r: r"\boxed{" + r"(1,2)\cup " * r.choice([100, 2000]) + "(1,2)}",
    "matrix 1000x1000": lambda r: r"\boxed{\begin{pmatrix}" + "\\\\".join(
        "&".join(["1"] * 1000) for _ in range(r.choice([10, 1000]))) + r"\end{pmatrix}}",
    "unclosed matrices": lambda r: r"\boxed{" + r"\begin{matrix}" * r.choice([100, 10 ** 4]) + "}",
    "long sum": lambda r: r"\boxed{" + "1 + " * r.choice([100, 10 ** 4]) + "1 = 2}",
    "many variables": lambda r: r"\boxed{" + "+".join(sorted(r.sample("abcdfghjklmnopqrstuvwxyz", 20))) + "}",
    # code and markup
    "python injection": lambda r: "<answer>__import__('os').system('true')</answer>",
    "sympy injection": lambda r: r"\boxed{Symbol('x').__class__.__mro__}",
    "latex injection": lambda r: r"\boxed{\input{/etc/passwd}}",
    "unicode digits": lambda r: r"\boxed{" + r.choice(["３", "٣", "𝟑"]) + "}",
    "percent signs": lambda r: r"\boxed{" + "50\\%" * r.choice([10, 1000]) + "}",
}


def adversarial(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n (completion, gold) pairs, the families in turn, each with random sizes."""
    rng = random.Random(seed)
    cache: dict = {}
    names = list(FAMILIES)
    items = []
    for i in range(n):
        name = names[i % len(names)]
        text = FAMILIES[name](rng)
        if len(text) > 10_000:  # one object per large string
            text = cache.setdefault((name, len(text), text[:64], text[-64:]), text)
        items.append((text, rng.choice(["3", "1", r"\frac{1}{2}", "1, 2", "x + 1"])))
    return items


def run_adversarial(n: int) -> None:
    items = adversarial(n)
    comps, golds = [c for c, _ in items], [g for _, g in items]
    pool = default_pool()
    M.grade_batch(["\\boxed{3}"] * 8, ["3"] * 8)  # start the workers
    kills = pool.restarts
    t0 = time.perf_counter()
    out = M.grade_batch(comps, golds)
    dt = time.perf_counter() - t0
    kills = pool.restarts - kills
    mb = sum(len(c) for c in comps) / MB
    print(f"\nhostile completions: {n} ({len(FAMILIES)} families, {mb:.0f} MB of text), {pool.n_workers} workers")
    print("| wall s | checks/s | worker kills (0.5 s limit) | scored True |\n|---|---|---|---|")
    print(f"| {dt:.1f} | {n / dt:.0f} | {kills} | {sum(out)} |")


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
    ap.add_argument("--n", type=int, default=2000, help="honest checks (0: skip)")
    ap.add_argument("--adversarial", type=int, default=10_000, help="hostile completions (0: skip)")
    args = ap.parse_args()
    if args.adversarial:
        run_adversarial(args.adversarial)
    if not args.n:
        return
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
