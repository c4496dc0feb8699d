"""Code reward: correct programs pass; forgeries, escapes and bombs score 0, leak nothing, the caller lives."""

import os
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import r1jax
from r1jax.rewards import code as code_mod
from r1jax.rewards.code import (
    ALLOW_UNSANDBOXED_ENV,
    SANDBOX_UID_BASE,
    SandboxError,
    SandboxLimits,
    code_reward,
    code_rewards,
    extract_code,
    generated_code_problems,
    reference_solution,
    run_sandboxed,
    sandbox_isolation,
)

FAST = SandboxLimits(cpu_seconds=1, wall_seconds=2.0, memory_bytes=256 << 20, file_size_bytes=64 << 10)
ISOLATED = sandbox_isolation()["isolated"]
needs_sandbox = pytest.mark.skipif(not ISOLATED, reason=f"no code sandbox here: {sandbox_isolation()['reason']}")


@pytest.fixture(autouse=True)
def _opt_into_fallback(monkeypatch):
    """Without a sandbox here, the tests that do not need one check what the opted-in fallback does."""
    if not ISOLATED:
        monkeypatch.setenv(ALLOW_UNSANDBOXED_ENV, "1")


def _sandbox_processes() -> list[str]:
    out = subprocess.run(["ps", "-e", "-o", "uid=,pid=,cmd="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split() and int(line.split()[0]) >= SANDBOX_UID_BASE]


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


@needs_sandbox
def test_fork_bomb_is_contained_and_nothing_survives():
    bomb = ("import os, time\nfor _ in range(500):\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
            "time.sleep(60)\n")
    t0 = time.monotonic()
    r = run_sandboxed(bomb, limits=FAST)
    assert r.timed_out and time.monotonic() - t0 < 5
    deadline = time.monotonic() + 3  # the kernel kills and reaps the namespace asynchronously
    while _sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sandbox_processes() == []  # the PID namespace took every child with it


@needs_sandbox
@pytest.mark.parametrize("target", ["/tmp/r1jax_escape_{}.txt", "/usr/r1jax_escape_{}.txt", "/r1jax_escape_{}.txt"])
def test_cannot_write_outside_the_working_directory(target):
    target = target.format(uuid.uuid4().hex)
    r = run_sandboxed(f"open({target!r}, 'w').write('x')\nprint('wrote')\n", limits=FAST)
    # /tmp is not there at all; /usr is a read-only bind; / is a tmpfs the program does not own
    assert r.returncode != 0 and ("FileNotFoundError" in r.stderr or "Read-only file system" in r.stderr
                                  or "PermissionError" in r.stderr), r.stderr
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
    assert r.isolation == {"isolated": ISOLATED}


def _returning(value: str, name: str = "f") -> str:
    return _fenced(f"def {name}(*args):\n    return {value}\n")


def test_results_are_compared_outside_by_type_and_value():
    p = code_mod.CodeProblem(id="t", prompt="", entry_point="f", cases=(((1,), 2), (("a",), (1, 2.5)), ((), True)))
    program = "def f(*a):\n    return {1: 2, 'a': (1, 2.5)}.get(a[0] if a else None, True)\n"
    assert code_reward(_fenced(program), p) == 1.0  # control: the right values
    assert code_reward(_fenced(program.replace("2.5", "2.5000000001")), p) == 1.0  # floats to rel 1e-9
    assert code_reward(_fenced(program.replace("(1, 2.5)", "[1, 2.5]")), p) == 0.0  # a list is not a tuple
    one = code_mod.CodeProblem(id="b", prompt="", entry_point="f", cases=(((), True),))
    assert code_reward(_returning("1"), one) == 0.0  # 1 == True in Python, but it is not a bool
    two = code_mod.CodeProblem(id="i", prompt="", entry_point="f", cases=(((), 2),))
    assert code_reward(_returning("2.0"), two) == 1.0  # numbers compare as numbers
    assert code_reward(_returning("type('I', (int,), {'__eq__': lambda s, o: True})(7)"), two) == 0.0


@pytest.mark.parametrize("forgery", [
    # an object equal to everything
    "class A:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"
    "def {f}(*args):\n    return A()\n",
    # read the harness, print what a success line might be, leave before any call
    "import os\nprint(open('harness.py').read()[:200])\nprint('OK')\nos._exit(0)\n",
    # write a result list straight into the harness's pipe, then leave
    "import json, os\nforged = json.dumps([['bool', True]] * 5).encode()\nfor fd in range(3, 64):\n    try:\n"
    "        os.write(fd, forged)\n    except OSError:\n        pass\nos._exit(0)\n",
    # replace the encoder's view of the world
    "import builtins\nbuiltins.type = lambda x: bool\ndef {f}(*args):\n    return True\n",
])
def test_forged_success_scores_zero(forgery):
    p = next(p for p in generated_code_problems(6, seed=3) if p.template == "gcd")
    assert code_reward(_fenced(reference_solution(p)), p) == 1.0
    assert code_reward(_fenced(forgery.replace("{f}", p.entry_point)), p) == 0.0


@needs_sandbox
def test_concurrent_sandboxes_and_a_fork_bomb_do_not_starve_each_other():
    """Each sandbox has a uid (and so a process limit, 32) of its own: with one shared uid, 64
    at once lost rewards to EAGAIN and a fork bomb zeroed its neighbours."""
    problems = generated_code_problems(64, seed=5)
    # Each right answer waits a second first, so that all 64 are alive at the same time.
    right = [_fenced("import time\ntime.sleep(1)\n" + reference_solution(p)) for p in problems]
    slow = SandboxLimits(wall_seconds=30.0, cpu_seconds=10)  # 64 interpreters share 2 cores here
    assert code_rewards(right, problems, slow, workers=64) == [1.0] * 64
    bomb = _fenced("import os, time\nfor _ in range(500):\n    try:\n        os.fork()\n    except OSError:\n"
                   "        pass\ntime.sleep(6)\n")
    with ThreadPoolExecutor(1) as pool:
        bombed = pool.submit(code_reward, bomb, problems[0], slow)
        time.sleep(1.5)  # the bomb now holds its whole process limit
        assert code_rewards(right[1:9], problems[1:9], slow, workers=8) == [1.0] * 8
        assert bombed.result() == 0.0


@needs_sandbox
def test_private_root_fresh_proc_and_no_host_sockets(tmp_path):
    os.chmod(tmp_path, 0o777)
    path = str(tmp_path / "host.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    os.chmod(path, 0o777)
    try:
        probe = (
            "import os, socket\n"
            "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
            "cmds = [open(f'/proc/{p}/cmdline', 'rb').read() for p in pids]\n"
            "print(len(pids), any(b'pytest' in c for c in cmds))\n"
            f"print(os.path.exists({r1jax.__file__!r}), os.path.exists({path!r}), os.path.exists('/tmp'))\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n"
            f"    s.connect({path!r})\n    print('CONNECTED')\n"
            "except OSError as e:\n    print(type(e).__name__)\n"
            "status = open('/proc/self/status').read()\n"
            "print([line.split()[1] for line in status.splitlines() if line.startswith(('NoNewPrivs', 'CapEff'))])\n"
        )
        r = run_sandboxed(probe, limits=FAST)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        count, saw_host = lines[0].split()
        assert int(count) <= 3 and saw_host == "False"  # the shell, the harness: none of the host's
        assert lines[1] == "False False False" and lines[2] == "FileNotFoundError"
        assert lines[3] == "['0000000000000000', '1']"  # no capabilities, no new privileges
    finally:
        server.close()


@needs_sandbox
def test_work_directory_is_capped():
    limits = SandboxLimits(disk_bytes=4 << 20, file_size_bytes=1 << 20)
    program = ("n = 0\ntry:\n    for i in range(100):\n        open(f'f{i}', 'wb').write(b'x' * (1 << 20))\n"
               "        n += 1\nexcept OSError as e:\n    print(n, e.strerror)\n")
    r = run_sandboxed(program, limits=limits)
    n, why = r.stdout.split(" ", 1)
    assert int(n) <= 4 and why.strip() == "No space left on device"


def test_a_sandbox_that_cannot_start_is_an_error_not_a_zero(monkeypatch):
    p = generated_code_problems(1, seed=0)[0]
    monkeypatch.setattr(code_mod.sys, "executable", "/nonexistent/python3")
    with pytest.raises(SandboxError, match="did not start the program"):
        code_rewards([_fenced(reference_solution(p))], [p])


def test_no_sandbox_means_refusal_unless_opted_in(monkeypatch):
    p = generated_code_problems(1, seed=0)[0]
    monkeypatch.setattr(code_mod, "sandbox_isolation", lambda: {"isolated": False, "reason": "needs root (test)"})
    monkeypatch.delenv(ALLOW_UNSANDBOXED_ENV, raising=False)
    with pytest.raises(SandboxError, match=f"needs root \\(test\\).*{ALLOW_UNSANDBOXED_ENV}=1"):
        code_reward(_fenced(reference_solution(p)), p)
    monkeypatch.setenv(ALLOW_UNSANDBOXED_ENV, "1")
    assert code_reward(_fenced(reference_solution(p)), p) == 1.0  # the rlimit-only fallback, opted into
    assert code_reward(_fenced(f"def {p.entry_point}(*a):\n    return -1\n"), p) == 0.0


def test_every_limit_reaches_the_program():
    limits = SandboxLimits(cpu_seconds=3, memory_bytes=300 << 20, file_size_bytes=70 << 10, max_processes=20,
                           max_open_files=40)
    r = run_sandboxed("import resource\nfor n in ('CPU', 'AS', 'FSIZE', 'NPROC', 'NOFILE', 'CORE'):\n"
                      "    print(*resource.getrlimit(getattr(resource, 'RLIMIT_' + n)))\n", limits=limits)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:6] == ["3 4", f"{300 << 20} {300 << 20}", f"{70 << 10} {70 << 10}", "20 20",
                                        "40 40", "0 0"]


def test_starting_a_sandbox_runs_no_python_in_a_forked_child_of_the_trainer(monkeypatch):
    """A trainer has JAX's threads; Python code between fork and exec (Popen's preexec_fn) can
    deadlock on a lock one of them held. JAX warns at any such fork: none may happen."""
    import warnings

    import jax
    jax.devices()  # JAX's backend and its threads are up, as in a trainer
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_sandboxed("print('ok')\n", limits=FAST).stdout == "ok\n"
    assert not [w for w in caught if "fork" in str(w.message)]
