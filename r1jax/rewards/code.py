"""Code reward: run the candidate program and the problem's tests in a sandboxed subprocess.

What the sandbox does (Linux, util-linux `unshare`/`setpriv`, run as root as on our machines):
- new network namespace: no interface is up, so every connection fails (loopback included);
- new mount namespace: every mount is remounted read-only except a fresh working directory,
  so the program cannot write anywhere else;
- new PID namespace with `--kill-child`: when the sandbox ends (or is killed on timeout), the
  kernel kills every process the program started, fork bombs included;
- the program runs as user `nobody` (so RLIMIT_NPROC applies; it does not for root), with
  limits on CPU seconds, address space, file size (which also caps stdout/stderr, written to
  files) and open files, in its own session whose process group is killed at the wall limit.
Where namespaces are not permitted (`sandbox_isolation()` says which), the program still gets
the rlimits, its own process group and a prelude that makes `socket` raise; the file system
is then not protected and `RunResult.isolation` says so. This is resource-limited process
isolation, not a security boundary like gVisor or nsjail: run untrusted code at scale there.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

from r1jax.tasks import Example

__all__ = ["SandboxLimits", "RunResult", "run_sandboxed", "sandbox_isolation", "CodeProblem", "extract_code",
           "code_reward", "code_rewards", "generated_code_problems", "reference_solution", "as_example"]


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: int = 2
    wall_seconds: float = 5.0
    memory_bytes: int = 512 << 20
    file_size_bytes: int = 1 << 20  # also the cap on captured stdout and stderr
    max_processes: int = 32  # per sandbox user (RLIMIT_NPROC)
    max_open_files: int = 64


@dataclasses.dataclass(frozen=True)
class RunResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    wall_time: float
    isolation: dict


# The prelude for the fallback path only: without a network namespace, make sockets fail.
_NO_SOCKETS = textwrap.dedent("""\
    import socket as _s
    def _refuse(*a, **k):
        raise PermissionError("network access is disabled in the r1jax sandbox")
    _s.socket = _s.create_connection = _s.socketpair = _s.fromfd = _refuse
    del _s, _refuse
""")

# Runs as root inside the new namespaces: make every mount read-only except the working dir,
# then drop to `nobody` and run the program.
_INSIDE = textwrap.dedent("""\
    set -e
    mount --make-rprivate /
    mount --bind "$WD" "$WD"
    awk '{print $2}' /proc/self/mounts | while read -r m; do
      m=$(printf '%b' "$m")
      [ "$m" = "$WD" ] || mount -o remount,bind,ro "$m" 2>/dev/null || true
    done
    cd "$WD"
    exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "$PY" -I -S prog.py
""")


@functools.lru_cache(maxsize=1)
def sandbox_isolation() -> dict:
    """Which isolation this machine allows (checked once by trying it)."""
    ok = False
    if sys.platform == "linux" and shutil.which("unshare") and shutil.which("setpriv") and os.geteuid() == 0:
        try:
            ok = subprocess.run(["unshare", "--net", "--mount", "--pid", "--fork", "true"], timeout=10,
                                capture_output=True).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
    if ok:  # the sandbox user must be able to start this interpreter, or every program would "fail"
        probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                                "-I", "-S", "-c", "pass"], timeout=30, capture_output=True, text=True)
        if probe.returncode != 0:
            raise RuntimeError(f"the code sandbox runs programs as user nobody, who cannot start {sys.executable}: "
                               f"{probe.stderr.strip()[:300]} (e.g. a Python installed under /root, mode 700); "
                               "use a Python installed where every user can read it")
    return {"net_namespace": ok, "readonly_fs": ok, "pid_namespace": ok, "unprivileged_user": ok}


def _limits(limits: SandboxLimits):
    def apply():
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_bytes, limits.file_size_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run_sandboxed(program: str, stdin: str = "", limits: SandboxLimits = SandboxLimits()) -> RunResult:
    """Run `program` (Python source) in the sandbox; never raises for anything the program does."""
    isolation = sandbox_isolation()
    isolated = isolation["net_namespace"]
    work = tempfile.mkdtemp(prefix="r1jax-sandbox-")
    out_dir = tempfile.mkdtemp(prefix="r1jax-sandbox-out-")
    try:
        os.chmod(work, 0o777)  # the program runs as `nobody`
        with open(os.path.join(work, "prog.py"), "w") as f:
            f.write(program if isolated else _NO_SOCKETS + program)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "WD": work, "PY": sys.executable}
        if isolated:
            cmd = ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", _INSIDE]
        else:
            cmd = [sys.executable, "-I", "-S", "prog.py"]
        with open(os.path.join(out_dir, "out"), "w+b") as out, open(os.path.join(out_dir, "err"), "w+b") as err:
            start = time.monotonic()
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=work, env=env,
                                    start_new_session=True, preexec_fn=_limits(limits))
            try:
                proc.communicate(stdin.encode(), timeout=limits.wall_seconds)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc.pid)  # whatever is left of the session, in every case
                proc.wait()
            wall = time.monotonic() - start
            out.seek(0)
            err.seek(0)
            stdout = out.read(limits.file_size_bytes).decode("utf-8", "replace")
            stderr = err.read(limits.file_size_bytes).decode("utf-8", "replace")
        return RunResult(returncode=None if timed_out else proc.returncode, stdout=stdout, stderr=stderr,
                         timed_out=timed_out, wall_time=wall, isolation=dict(isolation))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ----------------------------------------------------------------------------- problems

@dataclasses.dataclass(frozen=True)
class CodeProblem:
    id: str
    prompt: str
    tests: str  # Python source with asserts that call `entry_point`
    entry_point: str
    template: str = ""  # which generator made it (for reference solutions)


_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.S)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)


def extract_code(completion: str) -> str | None:
    """The last fenced code block, else the last <answer>...</answer>, else None."""
    blocks = _FENCE.findall(completion)
    if blocks:
        return blocks[-1]
    answers = _ANSWER.findall(completion)
    return answers[-1].strip() if answers else None


def code_reward(completion: str, problem: CodeProblem, limits: SandboxLimits = SandboxLimits()) -> float:
    """1.0 iff the extracted program plus the problem's tests exit with status 0 in the sandbox."""
    code = extract_code(completion) if isinstance(completion, str) else None
    if not code:
        return 0.0
    marker = f"R1JAX-TESTS-PASSED-{random.getrandbits(64):016x}"
    # The marker is printed only after the tests ran; a program that calls exit(0) early fails.
    program = f"{code}\n\n{problem.tests}\n\nprint({marker!r})\n"
    try:
        result = run_sandboxed(program, limits=limits)
    except Exception:  # e.g. the OS refused to start a process: no reward, the trainer goes on
        return 0.0
    return float(result.returncode == 0 and not result.timed_out and marker in result.stdout)


def code_rewards(completions: list[str], problems: list[CodeProblem],
                 limits: SandboxLimits = SandboxLimits()) -> list[float]:
    """`code_reward` for many items at once (each is a subprocess, so threads suffice)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(lambda cp: code_reward(cp[0], cp[1], limits), zip(completions, problems)))


def as_example(problem: CodeProblem) -> Example:
    """The problem as a task Example (family 'code'), scored by `r1jax.rewards.accuracy`."""
    return Example(id=problem.id, prompt=problem.prompt, answer="", metadata={
        "family": "code", "tests": problem.tests, "entry_point": problem.entry_point, "template": problem.template})


def _cases(rng: random.Random, kind: str) -> list:
    if kind == "sum_above":
        return [([rng.randint(-20, 50) for _ in range(rng.randint(0, 8))], rng.randint(0, 20)) for _ in range(5)]
    if kind == "reverse_words":
        words = ["alpha", "beta", "gamma", "delta", "pi", "rho", "sigma"]
        return [(" ".join(rng.sample(words, rng.randint(1, 5))),) for _ in range(5)]
    if kind == "count_vowels":
        return [("".join(rng.choice("abcdeiouxyzAEIOU ") for _ in range(rng.randint(0, 15))),) for _ in range(5)]
    if kind == "fibonacci":
        return [(rng.randint(0, 30),) for _ in range(5)]
    if kind == "is_palindrome":
        base = ["level", "rotor", "abcba", "python", "ab", "a", "", "noon", "moon"]
        return [(rng.choice(base),) for _ in range(5)]
    if kind == "gcd":
        return [(rng.randint(1, 500), rng.randint(1, 500)) for _ in range(5)]
    raise ValueError(kind)


def _fib(k):
    a, b = 0, 1
    for _ in range(k):
        a, b = b, a + b
    return a


_TEMPLATES = {
    "sum_above": ("Write a function `sum_above(xs, t)` that returns the sum of the numbers in the list `xs` "
                  "that are strictly greater than `t`.", lambda xs, t: sum(x for x in xs if x > t),
                  "def sum_above(xs, t):\n    return sum(x for x in xs if x > t)\n"),
    "reverse_words": ("Write a function `reverse_words(s)` that returns the words of `s` (separated by single "
                      "spaces) in reverse order, joined by single spaces.", lambda s: " ".join(s.split(" ")[::-1]),
                      "def reverse_words(s):\n    return ' '.join(s.split(' ')[::-1])\n"),
    "count_vowels": ("Write a function `count_vowels(s)` that returns how many characters of `s` are vowels "
                     "(a, e, i, o, u, either case).", lambda s: sum(c in "aeiouAEIOU" for c in s),
                     "def count_vowels(s):\n    return sum(c in 'aeiouAEIOU' for c in s)\n"),
    "fibonacci": ("Write a function `fibonacci(k)` that returns the k-th Fibonacci number, with "
                  "fibonacci(0) = 0 and fibonacci(1) = 1.", _fib,
                  "def fibonacci(k):\n    a, b = 0, 1\n    for _ in range(k):\n        a, b = b, a + b\n"
                  "    return a\n"),
    "is_palindrome": ("Write a function `is_palindrome(s)` that returns True if the string `s` reads the same "
                      "backwards, else False.", lambda s: s == s[::-1],
                      "def is_palindrome(s):\n    return s == s[::-1]\n"),
    "gcd": ("Write a function `gcd(a, b)` that returns the greatest common divisor of two positive integers.",
            lambda a, b: __import__("math").gcd(a, b),
            "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n"),
}


def generated_code_problems(n: int, seed: int) -> list[CodeProblem]:
    """Small function-writing problems with seeded test values (the same seed, the same tests)."""
    rng = random.Random(seed)
    names = sorted(_TEMPLATES)
    problems = []
    for i in range(n):
        kind = names[i % len(names)] if i < len(names) else rng.choice(names)
        prompt, expected, _ = _TEMPLATES[kind]
        cases = _cases(rng, kind)
        tests = "\n".join(f"assert {kind}(*{args!r}) == {expected(*args)!r}" for args in cases)
        problems.append(CodeProblem(id=f"code-{seed}-{i}", prompt=prompt, tests=tests, entry_point=kind,
                                    template=kind))
    return problems


def reference_solution(problem: CodeProblem) -> str:
    return _TEMPLATES[problem.template][2]
