"""What every stage shares: the mesh, a stage directory's model and tokenizer, and ONE training loop.

A stage directory is what a stage writes and the next one reads: `ckpt/` (orbax, with the
run config that holds the `ModelConfig` under "model") and the tokenizer (`tokenizer.model`,
or `tokenizer.json` for an imported model). `run_loop` is the loop of every training stage:
resume, checkpoints, SIGTERM/Ctrl-C, progress bar, metrics.jsonl + TensorBoard.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import tqdm

from r1jax import checkpoint, report, sharding
from r1jax.config import MeshConfig, ModelConfig, ModelOverrides, TrainerConfig, apply_overrides
from r1jax.model import FlaxModel, model_from_json
from r1jax.tokenizer import load_tokenizer

__all__ = ["make_mesh", "is_lead", "barrier", "write_text", "load_stage", "stage_tokenizer", "stage_model_config",
           "copy_tokenizer", "stop_on_signals", "run_loop", "resume_or_init", "NonFiniteError", "RUN_LOGS",
           "trim_logs"]

# The JSON-lines logs of a run directory, one line per record, each with the step that wrote it.
RUN_LOGS = ("metrics.jsonl", "samples.jsonl", "aha.jsonl")


class NonFiniteError(RuntimeError):
    """Too many training steps in a row had a non-finite loss or gradient (trainer.max_nonfinite_steps)."""


def make_mesh(spec: str) -> jax.sharding.Mesh:
    """The mesh of a `mesh` field ('data=2,fsdp=2,tensor=2'); '' puts every device on 'data'."""
    return sharding.make_mesh(MeshConfig.parse(spec) if spec else MeshConfig(data=jax.device_count()))


def is_lead() -> bool:
    """The process that writes a run's files (metrics, summaries, reports, data sets): process 0.
    Checkpoints are the exception: every process writes its own shards (orbax)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches this point (e.g. until the lead has written a file)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # only on several hosts
        multihost_utils.sync_global_devices(name)


def write_text(path: str | Path, text: str) -> None:
    """Write a run's file from the lead process only (every process computed the same text)."""
    if is_lead():
        Path(path).write_text(text)


def stage_tokenizer(directory: str | Path):
    """A stage directory's tokenizer: tokenizer.model, else a tokenizer.json (imported models)."""
    directory = Path(directory)
    return load_tokenizer(directory / "tokenizer.model" if (directory / "tokenizer.model").exists() else directory)


def stage_model_config(directory: str | Path, overrides: ModelOverrides | None = None) -> ModelConfig | FlaxModel:
    """The model saved with a stage directory's checkpoint (`r1jax.model`'s interface: a
    ModelConfig or a FlaxModel), with `overrides` applied."""
    cfg = model_from_json(checkpoint.read_run_config(Path(directory) / "ckpt")["model"])
    return cfg if overrides is None else apply_overrides(cfg, overrides)


def load_stage(directory: str | Path, overrides: ModelOverrides | None = None, out: str | Path | None = None):
    """(model, tokenizer) of a stage directory, the model with `overrides` applied; with `out`,
    the directory the next stage writes: created, and handed the tokenizer."""
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        copy_tokenizer(directory, out)
    return stage_model_config(directory, overrides), stage_tokenizer(directory)


def copy_tokenizer(src: str | Path, out: str | Path) -> None:
    """Every stage directory carries its tokenizer, so the next stage needs only that directory."""
    src, out = Path(src), Path(out)
    if not is_lead():
        return
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json"):  # the config names EOS / PAD
        if (src / name).exists() and not (out / name).exists():
            shutil.copyfile(src / name, out / name)


@contextlib.contextmanager
def stop_on_signals():
    """A flag set by SIGTERM (preemption) or Ctrl-C, so a loop can save, then exit cleanly."""
    stop = {"now": False}
    handlers = {s: signal.signal(s, lambda *_: stop.update(now=True)) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)


def resume_or_init(ckpt: checkpoint.Checkpointer, target: Any, init: Callable[[], Any], with_ref: bool = False):
    """(state, restored): the newest intact checkpoint of `ckpt` restored into `target` (abstract
    state with shardings), or `init()` and None when the directory holds none. A checkpoint that
    cannot be read is set aside with a warning (`Checkpointer.restore_intact`)."""
    restored = ckpt.restore_intact(target, with_ref=with_ref)
    if restored is None:
        return init(), None
    print(f"resumed from {ckpt.directory}/{restored.step}")
    return restored.state, restored


def _scalar(v):
    return v if isinstance(v, (int, float)) else float(v)


def trim_logs(out: str | Path, step: int, names: tuple[str, ...] = RUN_LOGS) -> None:
    """Cut the run logs `names` in `out` back to `step`: the first line of a later step and all
    after it go, and so does a last line torn by a kill. A run resumed from the checkpoint of
    `step` then writes each later step once, however far past the checkpoint it had logged
    before it was killed. Cut in place, so a handle already open for appending stays valid.
    Lead process only."""
    if not is_lead():
        return
    for name in names:
        path = Path(out) / name
        if not path.exists():
            continue
        with open(path, "rb+") as f:
            offset, cut = 0, None
            for line in f:
                try:
                    record = json.loads(line) if line.endswith(b"\n") else None
                except ValueError:
                    record = None
                if record is None:  # torn or garbled: cut only if nothing follows it
                    cut = offset if cut is None else cut
                elif isinstance(record, dict) and record.get("step", 0) > step:
                    cut = offset if cut is None else cut
                    break
                else:
                    cut = None
                offset += len(line)
            if cut is not None:
                f.truncate(cut)
                print(f"{path}: cut back to step {step}, where this run resumes")


class _NonFiniteGuard:
    """Counts the steps whose update was skipped (metrics["skipped"] > 0: a non-finite loss or
    gradient, see `r1jax.train.apply_gradients`); `raise_if_stuck` raises NonFiniteError once
    `limit` came in a row (0: never).

    The flags stay on the device until `check` fetches them, so the host need not wait for a
    step to finish before it dispatches the next: `check(pending=1)` leaves the newest unread."""

    def __init__(self, limit: int):
        self.limit, self.flags, self.streak, self.interval, self.error = limit, [], 0, 0, None

    def add(self, step: int, metrics: dict) -> None:
        self.flags.append((step, metrics.get("skipped", 0)))

    def check(self, pending: int = 0) -> None:
        while len(self.flags) > pending:
            step, flag = self.flags.pop(0)
            skipped = float(np.asarray(jax.device_get(flag))) > 0
            self.interval += skipped
            self.streak = self.streak + 1 if skipped else 0
            if self.limit and self.streak >= self.limit and self.error is None:
                self.error = NonFiniteError(
                    f"step {step}: the loss or gradients were not finite at {self.streak} steps in a row "
                    f"(steps {step - self.streak + 1}-{step}); their updates were skipped and training stops "
                    f"(trainer.max_nonfinite_steps={self.limit}). Every checkpoint holds finite parameters; a "
                    "smaller optim.learning_rate, more optim.warmup_steps or optim.grad_clip usually helps.")

    def interval_count(self) -> int:
        """Skipped steps since the last call."""
        self.check()
        n, self.interval = self.interval, 0
        return n

    def raise_if_stuck(self) -> None:
        if self.error is not None:
            raise self.error


def run_loop(state: Any, step_fn: Callable[[Any, int], tuple[Any, dict]], *, out: Path,
             ckpt: checkpoint.Checkpointer, save: Callable[[Any, int], dict], trainer: TrainerConfig, steps: int,
             start: int, desc: str, postfix: dict[str, tuple[str, str]], rate: tuple[str, str] | None = None,
             logs: tuple[str, ...] = RUN_LOGS) -> tuple[Any, dict]:
    """Run `step_fn(state, step) -> (state, metrics)` for step = start .. steps - 1.

    Every `trainer.log_every` steps (and at the last) the metrics are fetched from the device
    and written to out/metrics.jsonl and TensorBoard (process 0 only); with `rate` = (key,
    name), metrics[key] (a count per step) becomes name = count per second over the interval.
    A checkpoint (`ckpt.save(state, **save(state, step + 1))`) is written every
    `trainer.checkpoint_every` steps, at the end, and when SIGTERM or Ctrl-C asks the loop to
    stop, which it then does. `postfix` maps progress-bar labels to (metric, format).
    Returns the last state and the last metrics written.

    Faults: the run logs `logs` in `out` are first cut back to `start` (`trim_logs`: a run
    killed after its checkpoint logged steps it now runs again). A step whose metrics["skipped"]
    is > 0 had a non-finite loss or gradient and left the parameters as they were
    (`r1jax.train.apply_gradients`); each metrics line's "skipped" counts those since the
    previous line, and `trainer.max_nonfinite_steps` of them in a row raise NonFiniteError.
    """
    trim_logs(out, start, logs)
    writer = report.MetricsWriter(out)
    guard = _NonFiniteGuard(trainer.max_nonfinite_steps)
    last: dict = {}
    t0 = time.time()
    try:
        with stop_on_signals() as stop, tqdm.tqdm(total=steps, initial=start, desc=desc, unit="step",
                                                  dynamic_ncols=True) as bar:
            for step in range(start, steps):
                state, metrics = step_fn(state, step)
                guard.add(step + 1, metrics)
                guard.check(pending=1)  # the steps before this one, which it waited for on the device
                if (step + 1) % trainer.log_every == 0 or step + 1 == steps:
                    last = {k: _scalar(jax.device_get(v)) for k, v in metrics.items()}  # in the step's order
                    last["skipped"] = guard.interval_count()
                    if rate is not None:  # steps have a similar count, so the last stands for the interval
                        elapsed, t0 = max(time.time() - t0, 1e-9), time.time()
                        last[rate[1]] = last.pop(rate[0]) * trainer.log_every / elapsed
                    writer.write(step + 1, last)
                    bar.set_postfix({label: format(last[key], fmt) for label, (key, fmt) in postfix.items()})
                bar.update(1)
                guard.raise_if_stuck()  # after the line that shows it
                if (step + 1) % trainer.checkpoint_every == 0 or step + 1 == steps or stop["now"]:
                    guard.check()
                    guard.raise_if_stuck()
                    ckpt.save(state, **save(state, step + 1))
                if stop["now"]:
                    print(f"\nstopped at step {step + 1}; checkpoint saved, rerun to resume")
                    break
    finally:
        ckpt.close()
        writer.close()
    return state, last
