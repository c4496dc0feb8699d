"""The benchmarks' own arithmetic: bench_flops reads a step's matmuls from its jaxpr, and their
FLOPs must equal the analytic count it divides by (two independent counts of the same work)."""

import collections
import functools
import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

from r1jax import train
from r1jax.config import GRPOConfig, OptimConfig, override


@pytest.fixture(scope="module")
def bench_flops():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_flops.py"
    spec = importlib.util.spec_from_file_location("bench_flops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dot_flops_of_a_batched_contraction(bench_flops):
    # [B=3, M=5, K=7] x [B=3, K=7, N=2]: 2 * 3 * 5 * 7 * 2 = 420; checked against numpy's einsum shape
    key = ((3, 5, 7), (3, 7, 2), "float32", "float32", (((2,), (1,)), ((0,), (0,))), "float32")
    assert bench_flops.dot_flops(key) == 2 * np.einsum("bmk,bkn->bmn", np.ones((3, 5, 7)), np.ones((3, 7, 2))).size * 7
    # a weight gradient x^T g: [T=11, D=4]^T x [T=11, F=6] contracts T
    assert bench_flops.dot_flops(((11, 4), (11, 6), "float32", "float32", (((0,), (0,)), ((), ())), "float32")) \
        == 2 * 11 * 4 * 6


@pytest.mark.parametrize("kind", ["lm", "grpo"])
@pytest.mark.parametrize("scan", [False, True])
def test_step_matmuls_read_from_the_jaxpr_match_the_analytic_flops(bench_flops, tiny_cfg, kind, scan):
    cfg = override(tiny_cfg, scan_layers=scan)
    tx = train.make_optimizer(OptimConfig(learning_rate=1e-3, schedule="constant"))
    state = train.init_state(cfg, tx, jax.random.key(0))
    rng = np.random.default_rng(0)
    if kind == "lm":
        batch = bench_flops.lm_batch(cfg, 2, 12, rng)
        step = functools.partial(train.lm_train_step, model_cfg=cfg, tx=tx)
        expected = bench_flops.model_flops(cfg, 2, 12, 11)  # the head runs on the 11 positions that predict
    else:
        batch = bench_flops.grpo_batch(cfg, 2, 4, 8, rng)
        step = functools.partial(train.grpo_train_step, model_cfg=cfg, tx=tx, cfg=GRPOConfig(beta=0.0))
        expected = bench_flops.model_flops(cfg, 2, 12, 8)
    dots = bench_flops.step_dots(step, state, batch)
    # per layer 7 forward matmuls (q, k, v, o, gate, up, down) + 2 attention einsums, each with two
    # in the backward; the LM head likewise: 3 x (7 + 2) x layers + 3
    assert sum(dots.values()) == 3 * 9 * cfg.n_layers + 3
    assert sum(n * bench_flops.dot_flops(k) for k, n in dots.items()) == pytest.approx(expected, rel=1e-12)


def test_dots_alone_time_the_bfloat16_matmuls_xla_runs_only_inside_a_fusion(bench_flops):
    # attention's scores in bfloat16: a batched bf16 x bf16 -> f32 dot, which XLA's CPU runtime
    # rejects op by op (bench_grpo.py --dtype bfloat16 crashed on it); a 2-D one it runs alone
    scores = ((2, 2, 16, 12), (2, 12, 2, 2, 16), "bfloat16", "bfloat16", (((2,), (4,)), ((0, 1), (0, 2))), "float32")
    dense = ((24, 64), (64, 32), "bfloat16", "bfloat16", (((1,), (0,)), ((), ())), "float32")
    substituted = []
    assert bench_flops.dots_alone_seconds(collections.Counter({scores: 2, dense: 1}), 1, substituted) > 0
    assert substituted in ([], [scores])  # [] once XLA runs it alone
