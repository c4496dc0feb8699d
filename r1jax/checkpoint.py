"""Orbax checkpoints of a run: params, optimizer state, step, RNG key, data position, config.

Layout of one step directory (written by orbax to a temporary name and renamed when
complete, so a crash mid-save never leaves a step that `latest_step` would pick):

    <dir>/<step>/params/      StandardSave of the parameter pytree
    <dir>/<step>/opt_state/   StandardSave of the optimizer state
    <dir>/<step>/meta/        JSON: step, RNG key data, data-iterator state, run config

Parameters are a separate item so the next stage (or a student) can restore them alone.
Restoring takes abstract arrays carrying the target shardings, so a checkpoint written on
one mesh loads onto any other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh

from r1jax.config import ModelConfig
from r1jax.model import param_axes, param_shapes
from r1jax.sharding import tree_shardings
from r1jax.train import TrainState

__all__ = ["Checkpointer", "Restored", "ConfigMismatchError", "restore_params", "read_run_config", "abstract_params",
           "config_json"]


class ConfigMismatchError(ValueError):
    """The directory holds checkpoints of a different run configuration."""


@dataclasses.dataclass
class Restored:
    step: int
    state: TrainState
    rng: jax.Array | None
    data_state: Any
    ref_params: Any = None  # the frozen reference policy of an RL run, when one was saved


def config_json(cfg: Any) -> Any:
    """A config (dataclass, dict of dataclasses, ...) as plain JSON values."""
    def plain(o):
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        raise TypeError(f"cannot store {type(o).__name__} {o!r} in a checkpoint's run config")
    return json.loads(json.dumps(cfg, default=plain))


# ModelConfig fields that choose how a forward runs, not what it computes: a run saved with one
# setting resumes with the other (e.g. remat switched on to fit a bigger batch).
_EXECUTION_ONLY = {"remat", "scan_layers"}


def _diff(saved: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for k in sorted((set(saved) | set(current)) - _EXECUTION_ONLY):
            out += _diff(saved.get(k, "<absent>"), current.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return [] if saved == current else [f"{prefix[:-1] or 'config'}: saved {saved!r}, now {current!r}"]


def _check_shapes(saved_meta: Any, target: Any, what: str, directory: Path, step: int) -> None:
    """Fail with the parameter path and both shapes if the checkpoint does not fit `target`."""
    def flat(tree):  # orbax metadata turns namedtuple fields into dict keys: compare by plain names
        return {tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path): leaf
                for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

    saved, wanted = flat(saved_meta), flat(target)
    problems = []
    for path, t in wanted.items():
        name = "".join(f"[{p!r}]" if not p.isdigit() else f"[{p}]" for p in path)
        if path not in saved:
            problems.append(f"{what}{name} is missing from the checkpoint (expected shape {tuple(t.shape)})")
        elif tuple(saved[path].shape) != tuple(t.shape):
            problems.append(f"{what}{name}: checkpoint has shape {tuple(saved[path].shape)}, "
                            f"the requested config needs {tuple(t.shape)}")
    problems += [f"{what}{list(p)} is in the checkpoint but not in the requested config"
                 for p in saved if p not in wanted]
    if problems:
        raise ValueError(f"checkpoint {directory}/{step} does not fit the requested config:\n  "
                         + "\n  ".join(problems))


def _manager(directory: Path, **options) -> ocp.CheckpointManager:
    # Handlers are named up front so that metadata and partial restores work on a manager
    # that has not saved anything in this process.
    return ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(**options), item_handlers={
        "params": ocp.StandardCheckpointHandler(), "opt_state": ocp.StandardCheckpointHandler(),
        "ref_params": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})


def abstract_params(model_cfg: ModelConfig, mesh: Mesh | None = None) -> dict:
    """ShapeDtypeStructs of the parameters with their shardings on `mesh`; without a mesh, on this
    process's first device (so a checkpoint written on any topology, by any number of processes,
    restores here)."""
    shapes = param_shapes(model_cfg)
    if mesh is None:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), shapes)
    shard = tree_shardings(mesh, param_axes(model_cfg), shapes)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes, shard)


class Checkpointer:
    """Saves and restores one run directory; keeps the last `max_to_keep` steps.

    `run_config` (any dataclass or JSON-able value) is stored with every step. Opening a
    directory whose latest checkpoint has a different config raises `ConfigMismatchError`
    before anything is written, so a mistyped output directory can never rotate away the
    last good checkpoint of another run.
    """

    def __init__(self, directory: str | Path, run_config: Any, *, max_to_keep: int = 3,
                 async_save: bool = True):
        self.directory = Path(directory).absolute()
        self.run_config = config_json(run_config)
        self._mngr = _manager(self.directory, max_to_keep=max_to_keep, create=True,
                              enable_async_checkpointing=async_save)
        latest = self._mngr.latest_step()
        if latest is not None:
            saved = self._read_meta(latest)["config"]
            diff = _diff(saved, self.run_config)
            if diff:
                raise ConfigMismatchError(
                    f"{self.directory} holds checkpoints (latest step {latest}) of a different config; "
                    f"refusing to write there. Differences:\n  " + "\n  ".join(diff)
                    + "\nUse a new directory, or the saved config to resume.")

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def _read_meta(self, step: int) -> dict:
        return self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def save(self, state: TrainState, *, rng: jax.Array | None = None, data_state: Any = None,
             ref_params: Any = None, force: bool = False) -> bool:
        """Save at `state.step` (asynchronously; `wait()` blocks until it is on disk)."""
        step = int(jax.device_get(state.step))
        meta = {"step": step, "config": self.run_config, "data_state": data_state,
                "rng": None if rng is None else np.asarray(jax.random.key_data(rng)).tolist()}
        items = {"params": ocp.args.StandardSave(state.params), "meta": ocp.args.JsonSave(meta)}
        if jax.tree.leaves(state.opt_state):  # a params-only checkpoint (e.g. an HF import) has none
            items["opt_state"] = ocp.args.StandardSave(state.opt_state)
        if ref_params is not None:
            items["ref_params"] = ocp.args.StandardSave(ref_params)
        return self._mngr.save(step, force=force, args=ocp.args.Composite(**items))

    def restore(self, target: TrainState, step: int | None = None, with_ref: bool = False) -> Restored | None:
        """Restore `step` (default: the latest complete one) into `target`'s shapes and shardings.

        `target` holds `jax.ShapeDtypeStruct`s with `.sharding` set (see
        `r1jax.train.abstract_state`). Returns None if the directory has no checkpoint.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        saved = self._mngr.item_metadata(step)
        if saved.get("opt_state") is None:
            raise ValueError(f"checkpoint {self.directory}/{step} holds parameters only (no optimizer state); "
                             "load them with r1jax.checkpoint.restore_params and start a fresh optimizer")
        _check_shapes(saved["params"], target.params, "params", self.directory, step)
        _check_shapes(saved["opt_state"], target.opt_state, "opt_state", self.directory, step)
        items = dict(params=ocp.args.StandardRestore(target.params),
                     opt_state=ocp.args.StandardRestore(target.opt_state), meta=ocp.args.JsonRestore())
        if with_ref:  # the reference policy has the parameters' shapes and shardings
            if saved.get("ref_params") is None:
                raise ValueError(f"checkpoint {self.directory}/{step} has no reference policy (ref_params)")
            items["ref_params"] = ocp.args.StandardRestore(target.params)
        out = self._mngr.restore(step, args=ocp.args.Composite(**items))
        meta = out["meta"]
        rng = None if meta["rng"] is None else jax.random.wrap_key_data(np.asarray(meta["rng"], np.uint32))
        state = TrainState(step=jax.device_put(jnp.asarray(meta["step"], jnp.int32), target.step.sharding),
                           params=out["params"], opt_state=out["opt_state"])
        return Restored(step=step, state=state, rng=rng, data_state=meta["data_state"],
                        ref_params=out["ref_params"] if with_ref else None)

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()


@contextlib.contextmanager
def _read_only(directory: str | Path, step: int | None):
    """(manager, step) for reading `step` (default: the latest complete one) of `directory`."""
    directory = Path(directory).absolute()
    mngr = _manager(directory, read_only=True)
    try:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{directory}: no complete checkpoint")
        yield mngr, step
    finally:
        mngr.close()


def latest_step(directory: str | Path) -> int:
    """The latest complete step of a checkpoint directory (e.g. for provenance records)."""
    with _read_only(directory, None) as (_, step):
        return step


def read_run_config(directory: str | Path, step: int | None = None) -> Any:
    """The run config stored with a checkpoint (JSON values), e.g. to rebuild its ModelConfig."""
    with _read_only(directory, step) as (mngr, step):
        return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]["config"]


def restore_params(directory: str | Path, model_cfg: ModelConfig, mesh: Mesh | None = None,
                   step: int | None = None, target: Any = None) -> dict:
    """Parameters only, e.g. the previous stage's policy or a teacher. Any mesh. `target`
    (ShapeDtypeStructs, with shardings) replaces the model's tree, e.g. a reward model's."""
    with _read_only(directory, step) as (mngr, step):
        target = abstract_params(model_cfg, mesh) if target is None else target
        _check_shapes(mngr.item_metadata(step)["params"], target, "params", Path(directory).absolute(), step)
        return mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target)))["params"]
