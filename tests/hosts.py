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


def start_hosts(processes: int, devices: int, args: list[str], **env_extra: str) -> list[subprocess.Popen]:
    """`r1jax <args>` started on `processes` JAX processes with `devices` CPU devices each."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu",
           **env_extra}
    if processes > 1:
        env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}", JAX_NUM_PROCESSES=str(processes))
    return [subprocess.Popen([sys.executable, "-m", "r1jax.cli", *args], env={**env, "JAX_PROCESS_ID": str(i)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(processes)]


def run_hosts(processes: int, devices: int, args: list[str], **env_extra: str) -> list[subprocess.CompletedProcess]:
    """`start_hosts`, waited for: each process's result."""
    procs = start_hosts(processes, devices, args, **env_extra)
    results = []
    for p in procs:
        out, err = p.communicate(timeout=TIMEOUT)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results
