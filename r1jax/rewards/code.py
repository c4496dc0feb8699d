"""Code reward: call the candidate's function in a sandboxed subprocess, compare outside it.

The sandbox (Linux, run as root as on our machines; util-linux `unshare`, `setpriv`, `mount`,
coreutils `chroot`):
- new network namespace: no interface is up, so every connection fails (loopback included);
- new PID namespace whose init is a root shell: when the sandbox ends (or is killed at the wall
  limit) the kernel kills every process the program started, fork bombs and setsid children
  included; a fresh /proc shows only these processes;
- new mount namespace and a private root: a tmpfs of `disk_bytes` (and a few hundred inodes)
  holding /work (the program's only writable directory), /proc, /dev/{null,zero,random,urandom}
  and, read-only, /usr, /lib* and the interpreter's own prefix. Nothing else of the host is
  there: not the project, its data, /tmp or the sockets in it;
- the program runs under a uid of its own (`SANDBOX_UID_BASE` + a free slot, locked across
  processes), so RLIMIT_NPROC counts only its own processes: a fork bomb in one sandbox cannot
  starve another; no_new_privs, no capabilities; limits on CPU seconds, address space, file size
  (which also caps stdout/stderr, written to files outside) and open files.
This is resource-limited process isolation, not a security boundary like gVisor or nsjail:
run untrusted code at scale there. Where it cannot be set up (not root, not Linux, no
namespaces) `run_sandboxed` refuses, naming why, unless R1JAX_ALLOW_UNSANDBOXED_CODE=1 is set:
then the program runs with the rlimits, its own process group and a prelude that makes
`socket` raise, which `import _socket` bypasses. A sandbox that cannot start the program raises
`SandboxError` (the run stops with its cause): only what happens after the program started is
the program's failure.

The reward: the harness (`sandbox_harness.py`, copied in) loads the program, calls its entry
point on each case's arguments and sends the return values back encoded by exact type and
value; they are compared here with the expected values, which never enter the sandbox. An
object whose `__eq__` is always True, a forged success line, or `os._exit(0)` before the calls
all score 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from r1jax.rewards import sandbox_harness
from r1jax.rewards.sandbox_harness import decode, encode
from r1jax.tasks import Example

__all__ = ["SandboxLimits", "RunResult", "SandboxError", "run_sandboxed", "sandbox_isolation", "CodeProblem",
           "extract_code", "code_reward", "code_rewards", "generated_code_problems", "reference_solution",
           "as_example", "problem_from_example", "ALLOW_UNSANDBOXED_ENV", "SANDBOX_UID_BASE"]

ALLOW_UNSANDBOXED_ENV = "R1JAX_ALLOW_UNSANDBOXED_CODE"
# Uids no account uses (below 2**31 for tools that read uid_t as signed); slot i runs as BASE + i.
SANDBOX_UID_BASE = 2_000_000_000
_UID_SLOTS = 4096
_MAX_RETURNED_BYTES = 1 << 20


class SandboxError(OSError):
    """The sandbox itself failed (could not be set up, or did not start the program): not a
    wrong program, so not a reward of 0, but an error that stops the run with its cause."""


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: int = 2
    wall_seconds: float = 5.0  # counted from the moment the program starts
    memory_bytes: int = 512 << 20
    file_size_bytes: int = 1 << 20  # also the cap on captured stdout and stderr
    max_processes: int = 32  # RLIMIT_NPROC of the sandbox's own uid
    max_open_files: int = 64
    disk_bytes: int = 16 << 20  # the tmpfs holding /work
    startup_seconds: float = 60.0  # a sandbox that has not started the program by then is a SandboxError


@dataclasses.dataclass(frozen=True)
class RunResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    wall_time: float
    isolation: dict
    returned: list | None = None  # with `calls`: each call's encoded result, None if the harness sent none


# The prelude for the opted-in unisolated path only: make the socket module refuse.
_NO_SOCKETS = textwrap.dedent("""\
    import socket as _s
    def _refuse(*a, **k):
        raise PermissionError("network access is disabled in the r1jax sandbox")
    _s.socket = _s.create_connection = _s.socketpair = _s.fromfd = _refuse
    del _s, _refuse
""")

# PID 1 of the new namespaces, as root: build the private root, then run the harness under the
# sandbox uid and wait for it (not exec: the program must not be a namespace init, which ignores
# signals it has no handler for, SIGXCPU included). When this shell dies, so does everything in
# the namespace.
_INSIDE = textwrap.dedent("""\
    set -e
    mount --make-rprivate /
    mount -t tmpfs -o "size=$DISK,nr_inodes=512,mode=755" r1jax-sandbox "$R"
    mkdir -p "$R/work" "$R/proc" "$R/dev"
    for p in $SHOW; do
      if [ -L "$p" ]; then
        mkdir -p "$R$(dirname "$p")"; ln -s "$(readlink "$p")" "$R$p"
      else
        mkdir -p "$R$p"; mount --rbind "$p" "$R$p"; mount -o remount,bind,ro "$R$p"
      fi
    done
    mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
    for d in null zero random urandom; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
    cp "$STAGE"/* "$R/work/"
    chown -R "$SUID:$SUID" "$R/work"
    chmod 700 "$R/work"
    chroot "$R" setpriv --reuid="$SUID" --regid="$SUID" --clear-groups --inh-caps=-all --no-new-privs \
      env -i PATH=/usr/bin:/bin LANG=C.UTF-8 HOME=/work "$PY" -I -S /work/harness.py $ARGS
""")


@functools.lru_cache(maxsize=1)
def _visible_paths() -> str:
    """What the private root shows read-only, space-separated: the system libraries and the
    interpreter's prefix (fixed for the process, so found once)."""
    paths = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", os.path.realpath(sys.base_prefix),
             os.path.dirname(os.path.realpath(sys.executable))]
    paths = [p for p in dict.fromkeys(paths) if os.path.lexists(p)]
    if any(c.isspace() for p in paths for c in p):
        raise SandboxError(f"the code sandbox cannot show an interpreter under a path with whitespace: {paths}")
    return " ".join(p for p in paths if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths))


@functools.lru_cache(maxsize=1)
def sandbox_isolation() -> dict:
    """{'isolated': bool, 'reason': why not ('' if isolated)}, found once by trying it."""
    missing = [t for t in ("unshare", "setpriv", "mount", "chroot") if not shutil.which(t, path=_PATH)]
    if sys.platform != "linux":
        reason = f"needs Linux namespaces, this is {sys.platform}"
    elif os.geteuid() != 0:
        reason = "needs root to create its namespaces, private root and uids (this process is not root)"
    elif missing:
        reason = f"needs {missing} (util-linux / coreutils) on PATH"
    else:
        try:
            r = _run("print('ok')", "", SandboxLimits(), None, isolated=True)
            reason = "" if r.returncode == 0 and r.stdout == "ok\n" else (
                f"a trial program failed (status {r.returncode}): {r.stderr.strip()[-300:]}")
        except SandboxError as e:
            reason = str(e)
    return {"isolated": not reason, "reason": reason}


# Sets the limits, then becomes the command (limits survive exec). A wrapper rather than
# Popen(preexec_fn=...): that runs Python in the forked child of a multithreaded trainer (JAX's
# threads), where a lock another thread held at the fork can deadlock it before exec.
_WITH_LIMITS = """import os, resource, sys
end = sys.argv.index("--")
for spec in sys.argv[1:end]:
    name, soft, hard = spec.split(":")
    resource.setrlimit(getattr(resource, "RLIMIT_" + name), (int(soft), int(hard)))
os.execvp(sys.argv[end + 1], sys.argv[end + 1:])
"""


_LAUNCHER = os.path.realpath(sys.executable)  # this process's own interpreter runs _WITH_LIMITS


def _with_limits(cmd: list[str], limits: SandboxLimits) -> list[str]:
    """`cmd` run under the sandbox's resource limits."""
    specs = [("CPU", limits.cpu_seconds, limits.cpu_seconds + 1), ("AS", limits.memory_bytes, limits.memory_bytes),
             ("FSIZE", limits.file_size_bytes, limits.file_size_bytes),
             ("NPROC", limits.max_processes, limits.max_processes),
             ("NOFILE", limits.max_open_files, limits.max_open_files), ("CORE", 0, 0)]
    return [_LAUNCHER, "-I", "-S", "-c", _WITH_LIMITS,
            *(f"{name}:{soft}:{hard}" for name, soft, hard in specs), "--", *cmd]


_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_next_slot = itertools.count(random.randrange(_UID_SLOTS))


@contextlib.contextmanager
def _sandbox_uid():
    """A uid no other sandbox is using, held by an flock (so also across processes). Slots are
    taken in rotation, so a uid is reused only long after its last sandbox's processes died."""
    lock_dir = os.path.join(tempfile.gettempdir(), "r1jax-sandbox-uids")
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    for _ in range(_UID_SLOTS):
        slot = next(_next_slot) % _UID_SLOTS
        fd = os.open(os.path.join(lock_dir, str(slot)), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield SANDBOX_UID_BASE + slot
        finally:
            os.close(fd)
        return
    raise SandboxError(f"all {_UID_SLOTS} sandbox uids are in use")


def run_sandboxed(program: str, stdin: str = "", limits: SandboxLimits = SandboxLimits(),
                  calls: tuple[str, list] | None = None) -> RunResult:
    """Run `program` (Python source) in the sandbox. With `calls=(entry_point, [args, ...])` the
    harness calls `entry_point(*args)` for each and `RunResult.returned` holds the encoded results.
    Never raises for anything the program does; raises SandboxError when the sandbox cannot run
    it (or when there is no sandbox and R1JAX_ALLOW_UNSANDBOXED_CODE=1 is not set)."""
    isolation = sandbox_isolation()
    if not isolation["isolated"] and os.environ.get(ALLOW_UNSANDBOXED_ENV) != "1":
        raise SandboxError(f"refusing to run model-written code without the sandbox: it {isolation['reason']}. "
                           f"Set {ALLOW_UNSANDBOXED_ENV}=1 to run it with resource limits only (no file system, "
                           "network or process isolation)")
    return _run(program, stdin, limits, calls, isolated=isolation["isolated"])


def _run(program: str, stdin: str, limits: SandboxLimits, calls, isolated: bool) -> RunResult:
    # a uid of its own only where the sandbox switches to one (the unisolated fallback cannot)
    with tempfile.TemporaryDirectory(prefix="r1jax-sandbox-") as tmp, \
            (_sandbox_uid() if isolated else contextlib.nullcontext()) as uid:
        stage, root = os.path.join(tmp, "stage"), os.path.join(tmp, "root")
        os.mkdir(stage)
        os.mkdir(root)
        shutil.copy(sandbox_harness.__file__, os.path.join(stage, "harness.py"))
        with open(os.path.join(stage, "prog.py"), "w", encoding="utf-8") as f:
            f.write(program if isolated else _NO_SOCKETS + program)
        args = []
        if calls is not None:
            entry_point, cases = calls
            with open(os.path.join(stage, "cases.json"), "w", encoding="utf-8") as f:
                json.dump({"entry_point": entry_point, "cases": [encode(tuple(a)) for a in cases]}, f)
            args = ["cases.json"]
        with open(os.path.join(tmp, "in"), "w", encoding="utf-8") as f:
            f.write(stdin)
        status_r, status_w = os.pipe()
        env = {"PATH": _PATH, "LANG": "C.UTF-8"}
        if isolated:
            env.update(R=root, STAGE=stage, SUID=str(uid), DISK=str(limits.disk_bytes), SHOW=_visible_paths(),
                       PY=os.path.realpath(sys.executable), ARGS=" ".join([str(status_w), *args]))
            cmd = ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", _INSIDE]
        else:
            cmd = [sys.executable, "-I", "-S", "harness.py", str(status_w), *args]
        with open(os.path.join(tmp, "in"), "rb") as fin, open(os.path.join(tmp, "out"), "w+b") as out, \
                open(os.path.join(tmp, "err"), "w+b") as err:
            try:
                proc = subprocess.Popen(_with_limits(cmd, limits), stdin=fin, stdout=out, stderr=err, cwd=stage,
                                        env=env, start_new_session=True, pass_fds=(status_w,))
            except OSError as e:
                os.close(status_r)
                raise SandboxError(f"the code sandbox could not start a process: {e}") from e
            finally:
                os.close(status_w)
            received, started = bytearray(), threading.Event()
            reader = threading.Thread(target=_drain, args=(status_r, received, started), daemon=True)
            reader.start()
            try:
                deadline = time.monotonic() + limits.startup_seconds
                while not started.wait(0.01) and proc.poll() is None and time.monotonic() < deadline:
                    pass
                if not started.is_set() and proc.poll() is not None:
                    reader.join(1.0)  # it may have started and ended between two looks
                if not started.is_set():
                    timed_out_starting = proc.poll() is None
                    _kill_group(proc.pid)
                    proc.wait()
                    err.seek(0)
                    why = err.read(2000).decode("utf-8", "replace").strip() or "no message"
                    when = (f"within {limits.startup_seconds} s" if timed_out_starting
                            else f"exit status {proc.returncode}")
                    raise SandboxError(f"the code sandbox did not start the program ({when}): {why}")
                start = time.monotonic()
                try:
                    proc.wait(timeout=limits.wall_seconds)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    timed_out = True
            finally:
                _kill_group(proc.pid)  # whatever is left of the session, in every case
                proc.wait()
            wall = time.monotonic() - start
            reader.join(2.0)
            out.seek(0)
            err.seek(0)
            stdout = out.read(limits.file_size_bytes).decode("utf-8", "replace")
            stderr = err.read(limits.file_size_bytes).decode("utf-8", "replace")
        returned = None
        if calls is not None and not timed_out:
            try:
                returned = json.loads(bytes(received[1:]).decode("utf-8"))
            except (ValueError, RecursionError):
                returned = None
        return RunResult(returncode=None if timed_out else proc.returncode, stdout=stdout, stderr=stderr,
                         timed_out=timed_out, wall_time=wall, isolation={"isolated": isolated},
                         returned=returned if isinstance(returned, list) else None)


def _drain(fd: int, into: bytearray, started: threading.Event) -> None:
    """Read the harness's pipe to its end (every writer gone); keep at most _MAX_RETURNED_BYTES."""
    try:
        while chunk := os.read(fd, 1 << 16):
            started.set()
            into.extend(chunk[:max(0, _MAX_RETURNED_BYTES - len(into))])
    finally:
        os.close(fd)


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
    entry_point: str  # the function the program must define
    cases: tuple  # ((args tuple, expected value), ...): plain Python values (see sandbox_harness.encode)
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


def _same(got, want) -> bool:
    """Encoded values equal: same types (bool is not int, list is not tuple), ints and floats
    compared as numbers (floats to a relative 1e-9), sets and dicts whatever their order.
    `got` comes from the program: anything malformed is simply not equal."""
    try:
        if "float" in (got[0], want[0]) and {got[0], want[0]} <= {"int", "float"}:
            return math.isclose(float(got[1]), float(want[1]), rel_tol=1e-9, abs_tol=1e-12)
        if got[0] != want[0] or len(got) != len(want):
            return False
        if got[0] in ("list", "tuple", "set", "dict"):  # encode sorted sets and dict items
            flat = (lambda xs: xs) if got[0] != "dict" else (lambda xs: [v for kv in xs for v in kv])
            a, b = flat(got[1]), flat(want[1])
            return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
        return got == want
    except (TypeError, ValueError, IndexError, OverflowError, RecursionError):
        return False


def code_reward(completion: str, problem: CodeProblem, limits: SandboxLimits = SandboxLimits()) -> float:
    """1.0 iff the extracted program's `entry_point` returns every case's expected value (compared
    here, by type and value); 0.0 for no code, a wrong value, an exception, a timeout or a crash.
    Raises SandboxError when the sandbox itself fails."""
    code = extract_code(completion) if isinstance(completion, str) else None
    if not code:
        return 0.0
    result = run_sandboxed(code, limits=limits, calls=(problem.entry_point, [args for args, _ in problem.cases]))
    got = result.returned
    if got is None or len(got) != len(problem.cases):
        return 0.0
    return float(all(_same(g, encode(want)) for g, (_, want) in zip(got, problem.cases)))


def code_rewards(completions: list[str], problems: list[CodeProblem], limits: SandboxLimits = SandboxLimits(),
                 workers: int | None = None) -> list[float]:
    """`code_reward` for many items, `workers` sandboxes at once (default: one per CPU). Each
    sandbox has its own uid and process limit, so how many run at once changes no score."""
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(pool.map(lambda cp: code_reward(cp[0], cp[1], limits), zip(completions, problems)))


def as_example(problem: CodeProblem) -> Example:
    """The problem as a task Example (family 'code'), scored by `r1jax.rewards.accuracy`. Its
    cases are stored encoded (JSON-safe, types kept: a tuple stays a tuple)."""
    cases = [[encode(tuple(args)), encode(want)] for args, want in problem.cases]
    return Example(id=problem.id, prompt=problem.prompt, answer="", metadata={
        "family": "code", "cases": cases, "entry_point": problem.entry_point, "template": problem.template})


def problem_from_example(example: Example) -> CodeProblem:
    """The inverse of `as_example`."""
    md = example.metadata
    cases = tuple((decode(args), decode(want)) for args, want in md["cases"])
    return CodeProblem(id=example.id, prompt=example.prompt, entry_point=md["entry_point"], cases=cases,
                       template=md.get("template", ""))


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
        cases = tuple((tuple(args), expected(*args)) for args in _cases(rng, kind))
        problems.append(CodeProblem(id=f"code-{seed}-{i}", prompt=prompt, entry_point=kind, cases=cases,
                                    template=kind))
    return problems


def reference_solution(problem: CodeProblem) -> str:
    return _TEMPLATES[problem.template][2]
