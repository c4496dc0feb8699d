"""Several hosts simulated by several JAX processes on this machine (jax.distributed on localhost,
CPU collectives over gloo): a stage on 2 processes x 2 devices gives the metrics and parameters
of the same stage on 1 process x 4 devices, with a global batch that the old host-local
shardings replicated with different rows per host; a checkpoint written by 2 processes restores
on 1; a batch that cannot split over the hosts' devices is an error naming the sizes."""

import json

import jax
import numpy as np
import pytest
from hosts import run_hosts, start_hosts

from r1jax import checkpoint, runtime


def _ok(results):
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    return results


def _metrics(directory):
    return [json.loads(line) for line in open(directory / "metrics.jsonl")]


def _params(directory):
    return jax.tree.leaves(checkpoint.restore_params(directory / "ckpt", runtime.stage_model_config(directory)))


PRETRAIN = ["pretrain", "--preset", "tiny", "--n-examples", "300", "--seq-len", "192", "--batch-size", "4",
            "--trainer.steps", "3", "--trainer.log-every", "1", "--trainer.checkpoint-every", "3"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    d = tmp_path_factory.mktemp("multihost")
    one = _ok(run_hosts(1, 4, [*PRETRAIN, "--out-dir", str(d / "one")]))
    two = _ok(run_hosts(2, 2, [*PRETRAIN, "--out-dir", str(d / "two")]))
    return d, one, two


def test_pretraining_on_two_hosts_equals_one_host(pretrained):
    """Global batch 4 on 2 hosts x 2 devices: 2 rows a host. With shardings from the host-local
    shape [2, T] the batch axis was dropped, and the hosts trained different models."""
    d, _, two = pretrained
    one_m, two_m = _metrics(d / "one"), _metrics(d / "two")
    assert [m["step"] for m in two_m] == [1, 2, 3]
    np.testing.assert_allclose([m["loss"] for m in two_m], [m["loss"] for m in one_m], rtol=1e-5)
    for a, b in zip(_params(d / "one"), _params(d / "two")):  # written by 2 processes, restored on 1
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    for r in two:  # both processes finish the same run (gloo prints its connections first)
        assert json.loads(r.stdout[r.stdout.index("{\n"):])["step"] == 3


def test_rl_on_two_hosts_equals_one_host(pretrained, tmp_path):
    d, _, _ = pretrained
    rl = ["grpo", "--base-dir", str(d / "one"), "--trainer.steps", "2", "--prompts-per-step", "2",
          "--grpo.group-size", "4", "--grpo.minibatches", "2", "--rollout.max-new-tokens", "16",
          "--rollout.max-prompt-tokens", "64", "--n-train", "8", "--grpo.beta", "0.04"]
    _ok(run_hosts(1, 4, [*rl, "--out-dir", str(tmp_path / "one")]))
    _ok(run_hosts(2, 2, [*rl, "--out-dir", str(tmp_path / "two")]))
    one_m, two_m = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert len(two_m) == 2
    for a, b in zip(one_m, two_m):
        assert a["response_length_mean"] == b["response_length_mean"]  # the same rollouts
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-4, atol=1e-6)
    # four Adam updates (lr 1e-4) from all-reduces summed in another order: an element whose
    # gradient is near 0 can move by a fraction of lr differently (measured: 7.4e-6 at most)
    for a, b in zip(_params(tmp_path / "one"), _params(tmp_path / "two")):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=3e-5)


def test_a_batch_that_does_not_split_over_the_hosts_is_an_error(tmp_path):
    args = [*PRETRAIN, "--out-dir", str(tmp_path / "bad"), "--batch-size", "2"]
    results = run_hosts(2, 2, args)
    assert all(r.returncode != 0 for r in results)
    assert "2 rows (1 on each of 2 hosts) do not split over data x fsdp = 4 x 1 devices" in results[0].stderr


def test_eval_on_two_hosts_equals_one_host(pretrained, tmp_path):
    """Each process samples its share of the problems on its own devices; process 0 scores them."""
    d, _, _ = pretrained
    ev = ["eval", "--checkpoint", str(d / "one"), "--benchmark", "chain", "--limit", "6", "--k", "2",
          "--max-new-tokens", "8", "--batch-size", "2"]
    _ok(run_hosts(1, 2, [*ev, "--out-dir", str(tmp_path / "one")]))
    _ok(run_hosts(2, 2, [*ev, "--out-dir", str(tmp_path / "two")]))

    def rows(where):
        lines = open(tmp_path / where / "chain" / "samples.jsonl")
        return sorted((r["id"], r["completion"]) for r in map(json.loads, lines))

    assert len(rows("two")) == 12 and rows("two") == rows("one")
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["chain"]["problems"] == 6


def test_a_killed_host_stops_the_others_and_a_restart_resumes(tmp_path):
    """SIGKILL one of two processes after a checkpoint: the other aborts once the dead one misses
    its heartbeats, saying another task died; rerunning both resumes from the last checkpoint."""
    import signal
    import time
    args = [*PRETRAIN, "--out-dir", str(tmp_path / "run"), "--trainer.steps", "40", "--trainer.checkpoint-every", "5"]
    procs = start_hosts(2, 2, args, R1JAX_HEARTBEAT_TIMEOUT="10")
    deadline = time.time() + 300
    while not (tmp_path / "run" / "ckpt" / "10").is_dir():
        assert time.time() < deadline and procs[0].poll() is None, "no checkpoint at step 10"
        time.sleep(0.5)
    procs[1].send_signal(signal.SIGKILL)
    _, err = procs[0].communicate(timeout=120)
    procs[1].communicate()
    assert procs[0].returncode != 0 and "another task died" in err
    results = _ok(run_hosts(2, 2, args, R1JAX_HEARTBEAT_TIMEOUT="10"))
    assert "resumed from" in results[0].stdout + results[0].stderr
    assert json.loads(results[0].stdout[results[0].stdout.index("{\n"):])["step"] == 40
