"""The memory planner against figures computed by hand from the published model shapes."""

import argparse
import importlib.util
import textwrap
from pathlib import Path

import pytest

from r1jax import plan as planner

BF16, F32 = 2, 4


def test_qwen_1_5b_on_fsdp8_by_hand():
    # Qwen2.5-1.5B: L=28 layers, D=1536, 12 heads, 2 KV heads of 128, MLP 8960, vocab 151936, tied head.
    L, D, N, K, H, F, V = 28, 1536, 12, 2, 128, 8960, 151936
    # fsdp splits every matrix along D; norms and QKV biases have no D axis and stay whole.
    split = V * D + L * D * (N * H + 2 * K * H) + L * N * H * D + 3 * L * D * F
    whole = 2 * L * D + L * (N * H + 2 * K * H) + D
    params = BF16 * (split // 8 + whole)
    assert split + whole == 1_543_714_304 and params == 386_182_144  # 1.54B params, 0.36 GiB a device

    Q, G, P, new = 4, 4, 64, 64
    p = planner.plan("qwen2.5-1.5b", "fsdp=8", "grpo", batch=Q, group=G, minibatches=2, max_new_tokens=new,
                     prompt_len=P)
    assert p.n_devices == 8 and p.n_params == split + whole
    assert p.params == params == p.gradients == p.reference
    # AdamW keeps two moments shaped like the parameters, plus two int32 step counts
    # (Adam's and the learning-rate schedule's), replicated.
    assert p.optimizer == 2 * params + 2 * 4
    # Sampler cache: Q*G = 16 rows over fsdp=8 -> 2 rows, P + new = 128 slots, 2 KV heads, k and v.
    rows, S = Q * G // 8, P + new
    assert p.kv_cache == 2 * L * rows * S * K * H * BF16 + rows * S + 4
    assert p.sampling_logits == rows * V * F32  # the last position's logits only
    assert p.sampling == params + p.optimizer + params + p.kv_cache + p.sampling_logits
    assert p.update == params + p.optimizer + params + params + p.activations
    assert p.peak == max(p.sampling, p.update)


def test_llama_8b_on_a_3d_mesh_by_hand():
    # Llama-3.1-8B: L=32, D=4096, 32 heads, 8 KV heads of 128, MLP 14336, vocab 128256, untied head, no bias.
    L, D, N, K, H, F, V = 32, 4096, 32, 8, 128, 14336, 128256
    # data=2 replicates; every matrix has one axis on fsdp (D) and one on tensor (heads/MLP/vocab): /4.
    split = 2 * V * D + L * D * (N * H + 2 * K * H) + L * N * H * D + 3 * L * D * F
    whole = 2 * L * D + D
    p = planner.plan("llama3.1-8b", "data=2,fsdp=2,tensor=2", "sft", batch=8, max_new_tokens=96, prompt_len=32,
                     param_dtype="float32")
    assert p.n_devices == 8 and p.n_params == split + whole == 8_030_261_248
    assert p.params == F32 * (split // 4 + whole)
    assert p.optimizer == 2 * p.params + 8
    assert p.reference == p.kv_cache == p.sampling_logits == 0  # SFT: no reference, no sampler
    assert p.update == p.peak == 4 * p.params + 8 + p.activations


def test_pod_sized_mesh_on_cpu():
    # 256 devices on a machine with 8: the mesh is abstract.
    p = planner.plan("qwen2.5-math-7b", "data=2,fsdp=64,tensor=2", "grpo", batch=32, group=16, minibatches=2,
                     max_new_tokens=256, prompt_len=256)
    assert p.n_devices == 256
    big = planner.plan("qwen2.5-math-7b", "data=2,fsdp=64,tensor=2", "grpo", batch=32, group=16, minibatches=2,
                       max_new_tokens=256, prompt_len=256, beta=0.0)
    assert big.reference == 0 and big.params == p.params


def test_activations_scale_with_rows_and_remat_saves():
    kw = dict(max_new_tokens=128, prompt_len=64, group=4, beta=0.0)
    one = planner.plan("qwen2.5-0.5b", "fsdp=8", batch=16, minibatches=2, **kw)   # 32 rows -> 4 per device
    two = planner.plan("qwen2.5-0.5b", "fsdp=8", batch=16, minibatches=1, **kw)   # 64 rows -> 8 per device
    assert 1.9 < two.activations / one.activations < 2.1  # residuals grow with the rows a device holds
    no_remat = planner.plan("qwen2.5-0.5b", "fsdp=8", batch=16, minibatches=2, remat=False, **kw)
    assert no_remat.activations > 2 * one.activations
    # the float32 logits of the completion (4 rows x 128 tokens x vocab) alone are a floor
    assert one.activations > 4 * 128 * 151936 * F32


def test_fits_and_device_names():
    assert planner.chip_type("v5p") == ("v5p", None)
    assert planner.chip_type("v4-32") == ("v4", 16)  # v4 names count TensorCores, two per chip
    assert planner.chip_type("v5litepod-16") == ("v5e", 16)
    assert planner.chip_type("H100") == ("h100", None)
    with pytest.raises(ValueError, match="unknown device 'v7'"):
        planner.chip_type("v7")
    p = planner.plan("qwen2.5-0.5b", "fsdp=8", "sft", batch=8, max_new_tokens=64, prompt_len=64)
    ok, frac = planner.fits(p, "v5e")
    assert ok and frac == p.peak / (16 << 30)
    huge = planner.plan("llama3.3-70b", "fsdp=8", "sft", batch=8, max_new_tokens=64, prompt_len=64)
    # 70.6B bf16 weights, gradients and two AdamW moments on 8 chips: about 66 GiB each
    assert planner.fits(huge, "h200")[0] and not planner.fits(huge, "v6e")[0]


def test_cli(capsys):
    parser = argparse.ArgumentParser(prog="r1jax")
    planner.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plan", "--model", "qwen2.5-0.5b", "--mesh", "fsdp=4,tensor=2", "--batch", "4",
                              "--group", "2", "--max-new-tokens", "32", "--prompt-len", "32", "--device", "v6e-8"])
    planner.main(args)
    out = capsys.readouterr().out
    assert "per device:" in out and "KV cache" in out and "fits on v6e-8 (32 GiB HBM per chip)" in out
    bad = parser.parse_args(["plan", "--model", "qwen2.5-0.5b", "--mesh", "fsdp=4", "--batch", "3", "--group", "1",
                             "--minibatches", "2"])
    with pytest.raises(SystemExit, match="do not split into 2 mini-batches"):
        planner.main(bad)


EXPERIMENTS = sorted(p for p in (Path(__file__).resolve().parents[1] / "experiments").glob("*.py")
                     if p.name != "regenerate.py")  # the tool that writes the others


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_experiment_docstrings_hold_the_planners_figures(path):
    """Each experiment's docstring quotes the planner; rerun it so the figures stay true."""
    exp = _load(path)
    p = planner.plan(**exp.PLAN)
    assert textwrap.indent(planner.format_plan(p, exp.DEVICE), "    ") in exp.__doc__
    assert planner.fits(p, exp.DEVICE)[0]
    if hasattr(exp, "PLAN_PAPER"):  # the R1-Zero runs also plan the paper's 32k-token budget
        paper = planner.plan(**exp.PLAN_PAPER)
        assert textwrap.indent(planner.format_plan(paper, exp.DEVICE_PAPER), "    ") in exp.__doc__
        assert planner.fits(paper, exp.DEVICE_PAPER)[0] and exp.PLAN_PAPER["max_new_tokens"] == 32256
    cfg = exp.get_config()  # the run the docstring plans (tests/test_experiments.py runs a step of it)
    assert cfg.trainer.mesh == exp.PLAN["mesh"] and cfg.model.remat == exp.PLAN["remat"]
    assert cfg.model.dtype == exp.PLAN["dtype"]


def test_the_paper_students_and_r1_zero_runs_are_there():
    names = {p.stem for p in EXPERIMENTS}
    assert {"students_qwen_math_1_5b", "students_qwen_math_7b", "students_qwen_14b", "students_qwen_32b",
            "students_llama_8b", "students_llama_70b", "r1_zero_qwen_math_1_5b", "r1_zero_qwen_math_7b"} <= names
