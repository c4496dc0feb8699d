"""What every stage shares: the mesh, a stage directory's model and tokenizer, and ONE training loop.

A stage directory is what a stage writes and the next one reads: `ckpt/` (orbax, with the
run config that holds the `ModelConfig` under "model") and the tokenizer (`tokenizer.model`,
or `tokenizer.json` for an imported model). `run_loop` is the loop of every training stage:
resume, checkpoints, SIGTERM/Ctrl-C, progress bar, metrics.jsonl + TensorBoard.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Callable

import jax
import tqdm

from r1jax import checkpoint, report, sharding
from r1jax.config import MeshConfig, ModelConfig, ModelOverrides, TrainerConfig, apply_overrides
from r1jax.model import FlaxModel, model_from_json
from r1jax.tokenizer import load_tokenizer

__all__ = ["make_mesh", "is_lead", "barrier", "write_text", "load_stage", "stage_tokenizer", "stage_model_config",
           "copy_tokenizer", "stop_on_signals", "run_loop", "resume_or_init"]


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
    """(state, restored): the latest checkpoint of `ckpt` restored into `target` (abstract state with
    shardings), or `init()` and None when the directory holds none."""
    restored = ckpt.restore(target, with_ref=with_ref) if ckpt.latest_step() is not None else None
    if restored is None:
        return init(), None
    print(f"resumed from {ckpt.directory}/{restored.step}")
    return restored.state, restored


def _scalar(v):
    return v if isinstance(v, (int, float)) else float(v)


def run_loop(state: Any, step_fn: Callable[[Any, int], tuple[Any, dict]], *, out: Path,
             ckpt: checkpoint.Checkpointer, save: Callable[[Any, int], dict], trainer: TrainerConfig, steps: int,
             start: int, desc: str, postfix: dict[str, tuple[str, str]], rate: tuple[str, str] | None = None
             ) -> tuple[Any, dict]:
    """Run `step_fn(state, step) -> (state, metrics)` for step = start .. steps - 1.

    Every `trainer.log_every` steps (and at the last) the metrics are fetched from the device
    and written to out/metrics.jsonl and TensorBoard (process 0 only); with `rate` = (key,
    name), metrics[key] (a count per step) becomes name = count per second over the interval.
    A checkpoint (`ckpt.save(state, **save(state, step + 1))`) is written every
    `trainer.checkpoint_every` steps, at the end, and when SIGTERM or Ctrl-C asks the loop to
    stop, which it then does. `postfix` maps progress-bar labels to (metric, format).
    Returns the last state and the last metrics written.
    """
    writer = report.MetricsWriter(out)
    last: dict = {}
    t0 = time.time()
    try:
        with stop_on_signals() as stop, tqdm.tqdm(total=steps, initial=start, desc=desc, unit="step",
                                                  dynamic_ncols=True) as bar:
            for step in range(start, steps):
                state, metrics = step_fn(state, step)
                if (step + 1) % trainer.log_every == 0 or step + 1 == steps:
                    last = {k: _scalar(jax.device_get(v)) for k, v in metrics.items()}  # in the step's order
                    if rate is not None:  # steps have a similar count, so the last stands for the interval
                        elapsed, t0 = max(time.time() - t0, 1e-9), time.time()
                        last[rate[1]] = last.pop(rate[0]) * trainer.log_every / elapsed
                    writer.write(step + 1, last)
                    bar.set_postfix({label: format(last[key], fmt) for label, (key, fmt) in postfix.items()})
                bar.update(1)
                if (step + 1) % trainer.checkpoint_every == 0 or step + 1 == steps or stop["now"]:
                    ckpt.save(state, **save(state, step + 1))
                if stop["now"]:
                    print(f"\nstopped at step {step + 1}; checkpoint saved, rerun to resume")
                    break
    finally:
        ckpt.close()
        writer.close()
    return state, last
