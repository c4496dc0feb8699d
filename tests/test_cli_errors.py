"""`r1jax <command>` errors a person can read: an error in what was asked is one line naming the
flag, field or file and what is valid, on stderr with exit status 2, before any training work;
--debug shows the traceback; a bug still shows its traceback."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import pytest

from r1jax import checkpoint, cli, train

ROOT = Path(__file__).resolve().parents[1]


def _error(argv, capsys) -> str:
    """stderr of `r1jax argv`, which must end with exit status 2 and one line (plus the --debug hint)."""
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2, stop.value.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    if lines[-1] == "(--debug shows the traceback)":
        lines = lines[:-1]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def dirs(tmp_path):
    """Flags that keep a command away from ./runs: an empty base and a fresh output directory."""
    (tmp_path / "base").mkdir()
    return ["--base-dir", str(tmp_path / "base"), "--out-dir", str(tmp_path / "out")]


@pytest.mark.parametrize("flags,message", [
    (["--reward-weights", "accuracy=one"],
     "r1jax grpo: reward_weights 'accuracy=one': the weight of 'accuracy' must be a number, got 'one' "
     "(e.g. 'accuracy=1,format=0.5')"),
    (["--grpo.minibatches", "0"], "r1jax grpo: grpo.minibatches must be positive, got 0"),
    (["--grpo.kl-estimator", "k4"], "r1jax grpo: grpo.kl_estimator must be one of k1, k2, k3, got 'k4'"),
    (["--trainer.steps", "-5"], "r1jax grpo: trainer.steps must be >= 0, got -5"),
    (["--sample-every", "0"], "r1jax grpo: sample_every must be >= 1, got 0"),
    (["--prompts-per-step", "0"], "r1jax grpo: prompts_per_step must be >= 1, got 0"),
    (["--n-train", "0"], "r1jax grpo: n_train must be >= 1, got 0"),
    (["--rollout.temperature", "0"], "r1jax grpo: rollout.temperature must be > 0 for RL (a group's samples must "
                                     "differ and the update divides by it), got 0.0"),
    (["--prompts-per-step", "3", "--grpo.minibatches", "5"],
     "r1jax grpo: prompts_per_step * grpo.group_size = 48 rollouts do not split into grpo.minibatches=5 mini-batches"),
])
def test_invalid_fields_are_one_line_before_any_work(flags, message, dirs, tmp_path, capsys):
    assert _error(["grpo", *dirs, *flags], capsys) == message
    assert not (tmp_path / "out").exists()  # nothing was started


@pytest.mark.parametrize("flag", [["--batch-size", "0"], ["--epochs", "-1"]])
def test_sft_sizes_are_checked_before_any_work(flag, tmp_path, capsys):
    message = _error(["sft", "--init-dir", str(tmp_path), "--data", str(tmp_path / "d.jsonl"), "--out-dir",
                      str(tmp_path / "out"), *flag], capsys)
    assert message.startswith("r1jax sft: SFTConfig: batch_size and seq_len must be >= 1 and epochs > 0, got ")
    assert not (tmp_path / "out").exists()


def test_no_prefix_matching(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["pretrain", "--step", "3"])
    assert stop.value.code == 2
    assert "unknown argument(s) --step 3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # plan's flags too: --min is not --minibatches
        cli.main(["plan", "--model", "tiny", "--mesh", "data=1", "--min", "2"])
    assert stop.value.code == 2 and "unrecognized arguments: --min 2" in capsys.readouterr().err


@pytest.mark.parametrize("command, flag, default", [
    ("r1-zero", "--trainer.steps", "50"), ("r1-zero", "--optim.schedule", "'constant'"),
    ("pretrain", "--trainer.steps", "600"), ("rm", "--trainer.steps", "200"),
    ("collect", "--rollout.temperature", "0.7"), ("r1", "--grpo.group-size", "8")])
def test_help_gives_the_stage_default_of_a_nested_field(command, flag, default, capsys):
    """A stage's nested part has the stage's defaults, not its class's (TrainerConfig() runs 100
    steps), and --help says what an unset flag will be: the value --print-config shows."""
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    metavar = flag.removeprefix("--").replace("-", "_").upper()
    assert re.search(rf"{re.escape(flag)} {metavar}(, \S+ {metavar})? default: {re.escape(default)} ", help_text)
    cli.main([command, "--print-config"])
    value = json.loads(capsys.readouterr().out)
    for key in flag.removeprefix("--").replace("-", "_").split("."):
        value = value[key]
    assert repr(value) == default


def test_out_dir_that_is_a_file(dirs, tmp_path, capsys):
    (tmp_path / "out").write_text("not a directory")
    assert _error(["grpo", *dirs], capsys) == \
        f"r1jax grpo: --out-dir {tmp_path / 'out'}: is a file, not a directory; name a new or existing directory"


def test_a_damaged_checkpoint_of_the_previous_stage_names_its_file(tiny_cfg, tmp_path, capsys):
    base = tmp_path / "base"  # a previous stage's checkpoint: a run config and (here, tiny) parameters
    ckpt = checkpoint.Checkpointer(base / "ckpt", {"model": tiny_cfg}, async_save=False)
    ckpt.save(train.TrainState(step=jnp.zeros((), jnp.int32), params={"w": jnp.zeros(2)}, opt_state={}))
    ckpt.close()
    meta = base / "ckpt" / "0" / "meta" / "metadata"
    meta.write_text('{"step": 0, "conf')
    line = _error(["grpo", "--base-dir", str(base), "--out-dir", str(tmp_path / "out")], capsys)
    assert line.startswith(f"r1jax grpo: {meta}: the checkpoint's run config cannot be read (JSONDecodeError: "
                           "Unterminated string starting at: line 1 column 13"), line
    assert f"move {base / 'ckpt' / '0'} aside" in line
    with pytest.raises(checkpoint.UnreadableCheckpointError, match="meta/metadata"):  # the library's error
        checkpoint.read_run_config(base / "ckpt")


@pytest.mark.parametrize("argv,message", [
    (["convert", "ckpt-to-hf", "{tmp}/nothing", "{tmp}/hf"], "r1jax convert: {tmp}/nothing: no complete checkpoint"),
    (["grpo", "--config", "{tmp}/nothing.py"], "r1jax grpo: --config {tmp}/nothing.py: no such Python file"),
    (["grpo", "--config", "{tmp}/broken.py"], "r1jax grpo: --config {tmp}/broken.py, line 2: '(' was never closed"),
    (["grpo", "--config", str(ROOT / "experiments" / "students_llama_8b.py")],
     f"r1jax grpo: --config {ROOT / 'experiments' / 'students_llama_8b.py'}: get_config() returned a SFTConfig, "
     "this command takes a RLConfig"),
])
def test_missing_and_wrong_files(argv, message, tmp_path, capsys):
    (tmp_path / "broken.py").write_text("def get_config():\n    return (\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    line = _error(argv, capsys)
    assert line.startswith(message.replace("{tmp}", str(tmp_path))), line


def test_debug_shows_the_traceback_and_bugs_keep_theirs(dirs, monkeypatch, capsys):
    for argv in (["grpo", *dirs, "--grpo.minibatches", "0", "--debug"], ["--debug", "grpo", *dirs,
                                                                          "--grpo.minibatches", "0"]):
        with pytest.raises(cli.UsageError, match="grpo.minibatches must be positive"):
            cli.main(argv)

    def bug(argv):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(cli, "_main", bug)
    with pytest.raises(ZeroDivisionError):  # not an error in what was asked: its traceback is the report
        cli.main(["grpo"])


def test_the_installed_command(tmp_path):
    exe = Path(sys.executable).parent / "r1jax"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "r1jax.cli"]
    r = subprocess.run([*cmd, "grpo", "--out-dir", str(tmp_path / "out"), "--grpo.kl-estimator", "k4"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == ["r1jax grpo: grpo.kl_estimator must be one of k1, k2, k3, got 'k4'",
                                     "(--debug shows the traceback)"]


@pytest.mark.parametrize("env, joins", [
    ({}, None),
    ({"TPU_WORKER_HOSTNAMES": "w0,w1"}, ()),
    ({"TPU_WORKER_HOSTNAMES": "w0"}, None),  # a single-host slice
    ({"SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2"}, ()),
    ({"SLURM_STEP_NODELIST": "n1", "SLURM_NTASKS": "1"}, None),
    ({"SLURM_NTASKS": "4"}, None),  # a batch script's own process, outside any srun step
    ({"OMPI_MCA_orte_hnp_uri": "1.2.3.4:5", "OMPI_COMM_WORLD_SIZE": "2"}, ()),
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
     ("127.0.0.1:1234", 2, 1)),
])
def test_which_environments_join_a_multi_host_run(env, joins, monkeypatch):
    """A cluster JAX can read joins with no arguments (JAX reads it); explicit variables are
    passed on; one process alone never waits for peers."""
    import jax
    for name in ("TPU_WORKER_HOSTNAMES", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "OMPI_MCA_orte_hnp_uri",
                 "OMPI_COMM_WORLD_SIZE", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **kw: calls.append((a, kw)))
    cli.init_distributed()
    assert calls == ([] if joins is None else [(joins, {"heartbeat_timeout_seconds": 100})])
