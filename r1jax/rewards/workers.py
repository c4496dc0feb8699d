"""Worker processes that run reward checks with a hard per-item time limit.

Why processes and not `signal.alarm`: alarms only work on the main thread (a trainer's
reward thread would silently score everything 0) and cannot interrupt C code such as a
huge integer power. Each item runs in a worker process; if it takes longer than the limit
the worker is killed (SIGKILL) and replaced, and the item scores False.

Workers are plain `python -m r1jax.rewards.workers` subprocesses speaking JSON lines
(`[index, task, args]` in, `[index, result]` out), not multiprocessing children: those
re-import the caller's main script, which breaks a researcher's script without an
`if __name__ == "__main__"` guard. A worker caps its own address space, so a memory bomb
fails inside it. One item is in flight per worker, so the parent never blocks on a stuck
worker, and the clock of an item starts when it is sent to a worker that is ready.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import resource
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["WorkerPool", "default_pool", "TASKS"]

# task name -> (module, function). Only these can be run; items are plain JSON data.
TASKS = {
    "math.grade": ("r1jax.rewards.math", "_grade_local"),
    "math.match": ("r1jax.rewards.math", "_answers_match_local"),
}
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class _Worker:
    def __init__(self, memory_bytes: int, tasks: dict):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "r1jax.rewards.workers", str(memory_bytes), json.dumps(tasks)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, start_new_session=True, bufsize=0)
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        self.ready = False
        self.item: int | None = None  # index in flight
        self.started = 0.0

    def send(self, line: bytes) -> None:
        self.proc.stdin.write(line)

    def read_lines(self) -> list | None:
        """Complete lines available now; None at EOF (the worker died)."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            return None
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(x) for x in lines]

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


class WorkerPool:
    """`map(task, items, timeout)` over `n_workers` processes, results in input order.

    `tasks` names the functions workers may run, as {name: (module, function)}.
    """

    def __init__(self, n_workers: int | None = None, memory_bytes: int = 2 << 30, tasks: dict | None = None):
        self.n_workers = n_workers or max(1, min(os.cpu_count() or 1, 8))
        self.memory_bytes = memory_bytes
        self.tasks = dict(TASKS if tasks is None else tasks)
        self._workers: list[_Worker] = []
        self.restarts = 0

    def map(self, task: str, items: Sequence[Sequence], timeout: float) -> list[Any]:
        """Results in input order; an item that fails or takes longer than `timeout` is False.
        An item that is not JSON data raises (TypeError) and so does an interrupt; either way the
        workers with an item in flight are replaced, so no later call waits on or reads a stale
        answer."""
        if task not in self.tasks:
            raise KeyError(f"unknown task {task!r}; known: {', '.join(self.tasks)}")
        try:
            return self._map(task, items, timeout)
        except BaseException:
            for w in list(self._workers):
                if w.item is not None:
                    self._replace(w)
            raise

    def _map(self, task: str, items: Sequence[Sequence], timeout: float) -> list[Any]:
        results: list[Any] = [False] * len(items)
        todo = list(range(len(items)))[::-1]  # a stack: pop() gives items in order
        while len(self._workers) < self.n_workers:
            self._workers.append(_Worker(self.memory_bytes, self.tasks))
        while todo or any(w.item is not None for w in self._workers):
            for w in self._workers:  # give every idle, ready worker one item
                if w.ready and w.item is None and todo:
                    line = (json.dumps([todo[-1], task, list(items[todo[-1]])]) + "\n").encode()
                    w.item = todo.pop()
                    w.started = time.monotonic()
                    try:
                        w.send(line)
                    except BrokenPipeError:
                        w.started = -timeout  # dead: replaced below, its item stays False
            now = time.monotonic()
            deadline = min((w.started + timeout for w in self._workers if w.item is not None), default=now + 1.0)
            readable, _, _ = select.select([w.fd for w in self._workers], [], [], max(deadline - now, 0))
            for w in [w for w in self._workers if w.fd in readable]:
                lines = w.read_lines()
                if lines is None:
                    self._replace(w)
                    continue
                for idx, value in lines:
                    if idx == "ready":
                        w.ready = True
                    elif idx == w.item:
                        results[idx] = value
                        w.item = None
            now = time.monotonic()
            for w in list(self._workers):
                if w.item is not None and now - w.started > timeout:
                    self._replace(w)
        return results

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self._workers[self._workers.index(w)] = _Worker(self.memory_bytes, self.tasks)
        self.restarts += 1

    def close(self) -> None:
        for w in self._workers:
            w.kill()
        self._workers = []


_POOL: WorkerPool | None = None


def default_pool() -> WorkerPool:
    """The process-wide pool used by `r1jax.rewards.math.grade` and friends."""
    global _POOL
    if _POOL is None:
        _POOL = WorkerPool()
        atexit.register(_POOL.close)
    return _POOL


def _serve(memory_bytes: int, tasks: dict) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    sys.setrecursionlimit(10_000)
    funcs = {name: getattr(importlib.import_module(mod), fn) for name, (mod, fn) in tasks.items()}
    out = sys.stdout.buffer
    out.write(b'["ready", null]\n')
    out.flush()
    for line in sys.stdin.buffer:
        idx, task, args = json.loads(line)
        try:
            result = funcs[task](*args)
        except BaseException:  # MemoryError, RecursionError, anything: the item fails, the worker lives
            result = False
        out.write((json.dumps([idx, result]) + "\n").encode())
        out.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), json.loads(sys.argv[2]))
