"""Code reward: correct programs pass; escapes and bombs score 0, leak nothing, the caller lives."""

import os
import subprocess
import time
import uuid

import pytest

from r1jax.rewards.code import (
    SandboxLimits,
    code_reward,
    extract_code,
    generated_code_problems,
    reference_solution,
    run_sandboxed,
    sandbox_isolation,
)

FAST = SandboxLimits(cpu_seconds=1, wall_seconds=2.0, memory_bytes=256 << 20, file_size_bytes=64 << 10)
ISOLATED = sandbox_isolation()["net_namespace"]
needs_namespaces = pytest.mark.skipif(
    not ISOLATED, reason="this machine does not allow network/mount/PID namespaces (unshare failed)")


def _nobody_processes() -> list[str]:
    out = subprocess.run(["ps", "-u", "65534", "-o", "pid=,cmd="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def _fenced(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}```\nDone."


def test_reference_solutions_pass_and_wrong_ones_fail():
    problems = generated_code_problems(6, seed=3)
    assert len({p.template for p in problems}) == 6
    assert generated_code_problems(6, seed=3) == problems and generated_code_problems(6, seed=4) != problems
    for p in problems:
        assert code_reward(_fenced(reference_solution(p)), p) == 1.0, p.id
    p = next(p for p in problems if p.template == "gcd")
    assert code_reward(_fenced("def gcd(a, b):\n    return a * b\n"), p) == 0.0
    assert code_reward(_fenced("def gcd(a, b)\n    return 1\n"), p) == 0.0  # syntax error
    assert code_reward("I would use Euclid's algorithm.", p) == 0.0  # no code
    assert code_reward(_fenced("def gcd(a, b):\n    return 1\nimport sys\nsys.exit(0)\n"), p) == 0.0  # exits early


def test_code_problems_score_through_accuracy():
    from r1jax.rewards import RewardConfig, compute_rewards
    from r1jax.rewards.code import as_example
    problems = generated_code_problems(3, seed=0)
    completions = [_fenced(reference_solution(problems[0])), _fenced("def nope(): pass\n"),
                   _fenced(reference_solution(problems[2]))]
    out = compute_rewards(completions, [as_example(p) for p in problems], RewardConfig(weights=(("accuracy", 1.0),)))
    assert out["accuracy"].tolist() == [1.0, 0.0, 1.0]


def test_extract_code():
    assert extract_code("a\n```python\nx = 1\n```\nb\n```\ny = 2\n```") == "y = 2\n"
    assert extract_code("<think>t</think><answer>def f(): pass</answer>") == "def f(): pass"
    assert extract_code("nothing") is None


def test_infinite_loop_is_killed_at_the_wall_limit():
    t0 = time.monotonic()
    r = run_sandboxed("while True:\n    pass\n", limits=SandboxLimits(cpu_seconds=30, wall_seconds=1.0))
    assert r.timed_out and r.returncode is None
    assert time.monotonic() - t0 < 2.5
    r = run_sandboxed("while True:\n    pass\n", limits=SandboxLimits(cpu_seconds=1, wall_seconds=10.0))
    assert not r.timed_out and r.returncode != 0  # SIGXCPU at the CPU limit, well before the wall


def test_memory_bomb_fails_inside_the_sandbox():
    t0 = time.monotonic()
    r = run_sandboxed("x = bytearray(10**10)\nprint('allocated')\n", limits=FAST)
    assert r.returncode != 0 and "allocated" not in r.stdout and "MemoryError" in r.stderr
    r = run_sandboxed("xs = []\nwhile True:\n    xs.append(' ' * 10**6)\n", limits=FAST)
    assert r.returncode != 0
    assert time.monotonic() - t0 < 5


def test_huge_output_is_capped():
    r = run_sandboxed("while True:\n    print('x' * 1000)\n", limits=FAST)
    assert r.returncode != 0 and len(r.stdout) <= FAST.file_size_bytes


@needs_namespaces
def test_fork_bomb_is_contained_and_nothing_survives():
    bomb = ("import os, time\nfor _ in range(500):\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
            "time.sleep(60)\n")
    t0 = time.monotonic()
    r = run_sandboxed(bomb, limits=FAST)
    assert r.timed_out and time.monotonic() - t0 < 5
    deadline = time.monotonic() + 3  # the kernel kills and reaps the namespace asynchronously
    while _nobody_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _nobody_processes() == []  # the PID namespace took every child with it


@needs_namespaces
def test_cannot_write_outside_the_working_directory(tmp_path):
    target = f"/tmp/r1jax_escape_{uuid.uuid4().hex}.txt"
    r = run_sandboxed(f"open({target!r}, 'w').write('x')\nprint('wrote')\n", limits=FAST)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert not os.path.exists(target)
    r = run_sandboxed("open('inside.txt', 'w').write('ok')\nprint(open('inside.txt').read())\n", limits=FAST)
    assert r.returncode == 0 and r.stdout.strip() == "ok"  # the working directory is writable


@pytest.mark.parametrize("code", [
    "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\nprint('CONNECTED')\n",
    "import socket\ns = socket.socket(socket.AF_INET)\ns.bind(('127.0.0.1', 0))\ns.listen()\n"
    "s.connect(('8.8.8.8', 53))\n"
    "print('CONNECTED')\n",
])
def test_no_network(code):
    r = run_sandboxed(code, limits=FAST)
    assert "CONNECTED" not in r.stdout and r.returncode != 0


def test_isolation_is_reported():
    r = run_sandboxed("print('hi')", limits=FAST)
    assert r.stdout == "hi\n" and r.returncode == 0 and not r.timed_out
    assert r.isolation == sandbox_isolation()
    assert set(r.isolation) == {"net_namespace", "readonly_fs", "pid_namespace", "unprivileged_user"}
