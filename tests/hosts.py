"""Start an `r1jax` command on several JAX processes on this machine, as several hosts would
run it (jax.distributed on localhost; the CLI switches CPU collectives to gloo)."""

import os
import socket
import subprocess
import sys

TIMEOUT = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_hosts(processes: int, devices: int, args: list[str]) -> list[subprocess.CompletedProcess]:
    """`r1jax <args>` on `processes` JAX processes with `devices` CPU devices each; each one's result."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    if processes > 1:
        env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}", JAX_NUM_PROCESSES=str(processes))
    procs = [subprocess.Popen([sys.executable, "-m", "r1jax.cli", *args], env={**env, "JAX_PROCESS_ID": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(processes)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=TIMEOUT)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results
