"""Every experiment file is a runnable config: `get_config()` returns its stage's config, and
`r1jax <stage> --config FILE` with flags that shrink it to a tiny world runs one step of it, on
2 processes x 2 devices as on 2 hosts. Files that differ only in what the flags replace (the
students' model names, meshes and paths) give one tiny config: that one runs once."""

import importlib
import importlib.util
import json
from pathlib import Path

import pytest
from hosts import run_hosts

from r1jax import cli
from r1jax.config import TrainerConfig
from r1jax.stages.grpo import RLConfig
from r1jax.stages.lm import PretrainConfig, SFTConfig, pretrain
from r1jax.stages.recipe import R1Config
from r1jax.stages.world import WorldConfig
from r1jax.tasks.sft import write_sft_jsonl

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p for p in (ROOT / "experiments").rglob("*.py") if p.name != "regenerate.py")
TINY_RUNS: dict[str, str] = {}  # tiny config -> the experiment that ran it
COMMAND = {RLConfig: "grpo", SFTConfig: "sft", R1Config: "r1", WorldConfig: "world"}


def _config(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.fixture(scope="module")
def tiny_stage(tmp_path_factory):
    """A tiny pretrained base and an SFT file of the world's format."""
    d = tmp_path_factory.mktemp("experiments")
    pretrain(PretrainConfig(out_dir=str(d / "base"), preset="tiny", batch_size=4, seq_len=256, n_examples=400,
                            trainer=TrainerConfig(steps=4, checkpoint_every=4, log_every=2)))
    write_sft_jsonl(d / "sft.jsonl", [{"prompt": f"Compute {i} + 2.",
                                       "response": f"<think> {i} + 2 = {i + 2}. </think> <answer> {i + 2} </answer>"}
                                      for i in range(40)])
    # the RL experiments' training set (GSM8K), in little
    (d / "gsm8k.jsonl").write_text("".join(json.dumps({"question": f"Compute {i} + 2.", "answer": f"#### {i + 2}"})
                                           + "\n" for i in range(8)))
    return d


def test_every_experiment_returns_its_stages_config():
    assert len(EXPERIMENTS) >= 10
    for path in EXPERIMENTS:
        assert type(_config(path)) in COMMAND, f"{path}: get_config() returns {type(_config(path)).__name__}"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_experiment_runs_one_step_at_a_tiny_size(path, tiny_stage, tmp_path, capsys):
    cfg = _config(path)
    command = COMMAND[type(cfg)]
    flags = ["--config", str(path), "--out-dir", str(tmp_path / "out"), "--trainer.mesh", ""]
    if command == "grpo":
        flags += ["--base-dir", str(tiny_stage / "base"), "--trainer.steps", "1", "--prompts-per-step", "2",
                  "--grpo.group-size", "2", "--grpo.minibatches", "1", "--rollout.max-new-tokens", "8",
                  "--n-train", "4", "--data.path", str(tiny_stage / "gsm8k.jsonl")]
    elif command == "sft":
        flags += ["--init-dir", str(tiny_stage / "base"), "--data", str(tiny_stage / "sft.jsonl"), "--seq-len", "64",
                  "--batch-size", "4", "--trainer.steps", "1"]
    else:  # the world job and the whole recipe are runs of many stages, tested end to end elsewhere
        cli.main([command, "--config", str(path), "--print-config"])
        assert json.loads(capsys.readouterr().out)["out_dir"] == cfg.out_dir
        return
    cli.main([command, *flags, "--print-config"])
    tiny = json.loads(capsys.readouterr().out)
    tiny.pop("out_dir")
    key = json.dumps(tiny, sort_keys=True)
    if key in TINY_RUNS:  # the same run as an earlier file's, which ran (or failed) as its own test
        return
    TINY_RUNS[key] = path.stem
    for r in run_hosts(2, 2, [command, *flags]):
        assert r.returncode == 0, r.stderr[-3000:]
        assert json.loads(r.stdout[r.stdout.index("{\n"):])["step"] == 1  # after gloo's connection lines
    metrics = [json.loads(line) for line in open(tmp_path / "out" / "metrics.jsonl")]
    assert len(metrics) == 1 and metrics[0]["step"] == 1 and metrics[0]["loss"] == metrics[0]["loss"]  # not NaN


def test_flags_override_the_experiment_file_and_typos_are_errors(capsys):
    path = ROOT / "experiments" / "r1_zero_qwen_math_1_5b.py"
    cli.main(["grpo", "--config", str(path), "--grpo.beta", "0.04", "--optim.learning-rate", "1e-5",
              "--model.remat", "false", "--print-config"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["grpo"]["beta"] == 0.04 and printed["optim"]["learning_rate"] == 1e-5
    assert printed["model"]["remat"] is False and printed["grpo"]["group_size"] == 16  # the file's, kept
    with pytest.raises(SystemExit):
        cli.main(["grpo", "--grpo.bta", "0.1"])
    err = capsys.readouterr().err
    assert "unknown argument(s) --grpo.bta 0.1; did you mean --grpo.beta" in err and "valid flags: --config" in err
    with pytest.raises(SystemExit, match="2"):  # one line on stderr, exit status 2 (tests/test_cli_errors.py)
        cli.main(["grpo", "--grpo.kl-estimator", "k4", "--print-config"])
    assert "r1jax grpo: grpo.kl_estimator must be one of k1, k2, k3, got 'k4'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no prefix matching: --step is not --steps
        cli.main(["pretrain", "--step", "3"])
    with pytest.raises(SystemExit, match="2"):
        cli.main(["grpo", "--config", str(ROOT / "experiments" / "students_llama_8b.py"), "--print-config"])
    assert "get_config() returned a SFTConfig, this command takes a RLConfig" in capsys.readouterr().err


def test_the_config_manual_lists_every_flag_of_every_stage():
    """docs/configs.md's field tables name every flag, so the manual cannot fall behind a new field."""
    from r1jax.config import flat_fields
    text = (ROOT / "docs" / "configs.md").read_text()
    for module, name, _, _ in (v for k, v in cli.STAGES.items() if k not in ("world", "r1", "eval")):
        cls = getattr(importlib.import_module(module), name)
        missing = [p for p in flat_fields(cls) if f"`--{p.replace('_', '-')}`" not in text]
        assert not missing, f"docs/configs.md lacks {name}'s flags {missing}"


@pytest.mark.parametrize("name, cls", [("main_job", WorldConfig), ("r1_recipe", R1Config)])
def test_the_world_experiment_files_are_the_commands_measured_defaults(name, cls):
    """Their docstrings say `r1jax world` / `r1jax r1` with these settings: the numbers in the
    README come from the defaults, so the files must be the defaults (main_job.py once kept a
    450-step base after the default moved to 800)."""
    assert _config(ROOT / "experiments" / "world" / f"{name}.py") == cls()
