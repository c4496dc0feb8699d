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
import functools
import json
import os
import warnings
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

__all__ = ["Checkpointer", "Restored", "ConfigMismatchError", "UnreadableCheckpointError", "restore_params",
           "read_run_config", "abstract_params",
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


# Fields that are not a run's identity: how a forward runs, not what it computes (ModelConfig's
# remat, remat_policy, scan_layers, attention, attention_block, head_chunk: a run saved with one
# setting resumes with the other, e.g. remat switched on to fit a bigger batch), when the loop
# gives up on non-finite steps, and where the run directory is (`out_dir`: a run directory is the
# same run wherever it lives, however its path is spelled).
_NOT_IDENTITY = {"remat", "remat_policy", "scan_layers", "attention", "attention_block", "head_chunk",
                 "max_nonfinite_steps", "out_dir"}
# Fields that name a file or directory (a base stage, a data set): compared as paths, see `_Places`.
_PATH_FIELDS = {"data", "path", "pairs", "tokenizer", "reward_model"}


@dataclasses.dataclass
class _Places:
    """Where relative paths of a config start (the working directory) and where its checkpoint
    directory was, for the config saved and the current one. Two values of a path field are the
    same if they name the same place, or the same place relative to the checkpoint directory (a
    recipe's folder moved as a whole: its stages name each other relative to it)."""

    saved_cwd: str
    saved_dir: str
    cwd: str
    directory: str

    def same(self, saved: str, current: str) -> bool:
        if not (saved and current):
            return False
        a = os.path.realpath(os.path.join(self.saved_cwd, saved))
        b = os.path.realpath(os.path.join(self.cwd, current))
        return a == b or os.path.relpath(a, self.saved_dir) == os.path.relpath(b, self.directory)


def _diff(saved: Any, current: Any, prefix: str = "", places: _Places | None = None) -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for k in sorted((set(saved) | set(current)) - _NOT_IDENTITY):
            out += _diff(saved.get(k, "<absent>"), current.get(k, "<absent>"), f"{prefix}{k}.", places)
        return out
    key = prefix[:-1].rsplit(".", 1)[-1]
    if (places is not None and isinstance(saved, str) and isinstance(current, str)
            and (key in _PATH_FIELDS or key.endswith("_dir")) and places.same(saved, current)):
        return []
    return [] if saved == current else [f"{prefix[:-1] or 'config'}: saved {saved!r}, now {current!r}"]


def _extends(difference: str, saved: Any, current: Any) -> bool:
    """A difference in `<X>.trainer.steps` alone, where `<X>.optim.schedule` is constant in both
    configs: the run goes on for more (or fewer) steps on the same learning rates, as an RL run
    extended past its planned end. Under a cosine schedule the number of steps sets every
    learning rate, so there it stays a different config."""
    path = difference.split(":", 1)[0]
    if not (path == "trainer.steps" or path.endswith(".trainer.steps")):
        return False
    parent = path.split(".")[:-2]

    def schedule(config: Any) -> Any:
        for key in (*parent, "optim", "schedule"):
            config = config.get(key) if isinstance(config, dict) else None
        return config
    return schedule(saved) == schedule(current) == "constant"


def _where(directory: Path) -> dict:
    """Saved with every step, so that a moved run can tell its paths apart (`_Places`)."""
    return {"cwd": os.path.realpath(os.getcwd()), "directory": os.path.realpath(directory)}


_all_finite = jax.jit(lambda tree: functools.reduce(
    jnp.logical_and, [jnp.isfinite(x).all() for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)],
    jnp.bool_(True)))


def _everywhere(ok: bool) -> bool:
    """`ok` on every process (each reads its own shards of a checkpoint)."""
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils
    return bool(np.all(multihost_utils.process_allgather(np.array([ok]))))


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
        raise ConfigMismatchError(f"checkpoint {directory}/{step} does not fit the requested config:\n  "
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
    last good checkpoint of another run. Where the directory is, and how its path is spelled,
    is not part of the config (`_NOT_IDENTITY`, `_Places`): a moved run resumes. Nor is the
    number of steps under a constant learning rate (`_extends`): such a run can be extended.

    A step that cannot be read (a truncated file, garbled metadata) while an older one can is
    moved aside to `<step>.corrupt` with a warning, never deleted, and the older one is used
    (`restore_intact`). A state with a NaN or infinity is never saved (`save` raises).
    """

    def __init__(self, directory: str | Path, run_config: Any, *, max_to_keep: int = 3,
                 async_save: bool = True):
        self.directory = Path(directory).absolute()
        self.run_config = config_json(run_config)
        self._mngr = _manager(self.directory, max_to_keep=max_to_keep, create=True,
                              enable_async_checkpointing=async_save)
        latest, meta, unreadable = self._newest(self._read_meta)
        if latest is not None:
            here = _where(self.directory)
            saved_where = meta.get("where") or here  # checkpoints written before it was saved: here
            places = _Places(saved_where["cwd"], saved_where["directory"], here["cwd"], here["directory"])
            diff = [d for d in _diff(meta["config"], self.run_config, places=places)
                    if not _extends(d, meta["config"], self.run_config)]
            if diff:
                raise ConfigMismatchError(
                    f"{self.directory} holds checkpoints (latest step {latest}) of a different config; "
                    f"refusing to write there. Differences:\n  " + "\n  ".join(diff)
                    + "\nUse a new directory, or the saved config to resume.")
        for step, error in unreadable:  # this run's directory: set its unreadable steps aside
            self._set_aside(step, error)

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def _read_meta(self, step: int) -> dict:
        return self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def _newest(self, read: Any) -> tuple[int | None, Any, list]:
        """(step, read(step), unreadable) for the newest step that `read` reads on every process,
        with the newer steps it failed on and their errors; (None, None, []) without steps. If
        no step can be read, the newest one's error is raised."""
        failed = []
        for step in sorted(self.all_steps(), reverse=True):
            try:
                out, error = read(step), None
            except ConfigMismatchError:
                raise
            except Exception as e:  # orbax / tensorstore errors of a damaged step
                out, error = None, e
            if _everywhere(error is None):
                return step, out, failed
            failed.append((step, error))
        if failed:
            steps = ", ".join(str(s) for s, _ in failed)
            raise RuntimeError(f"{self.directory}: no checkpoint can be read (steps {steps}); the newest "
                               f"failed with: {_first_line(failed[0][1])}") from failed[0][1]
        return None, None, []

    def _set_aside(self, step: int, error: Exception | None) -> None:
        """Move an unreadable step to `<step>.corrupt` (which orbax ignores), never deleting it."""
        src = self.directory / str(step)
        dst = self.directory / f"{step}.corrupt"
        n = 0
        while dst.exists():
            n += 1
            dst = self.directory / f"{step}.corrupt-{n}"
        if jax.process_index() == 0:  # one process moves it and says so
            src.rename(dst)
            warnings.warn(f"checkpoint {src} cannot be read ({_first_line(error)}); moved to {dst} (kept, not "
                          f"deleted) and an older step is used", stacklevel=3)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"r1jax:set_aside:{step}")
        self._mngr.reload()

    def save(self, state: TrainState, *, rng: jax.Array | None = None, data_state: Any = None,
             ref_params: Any = None, force: bool = False) -> bool:
        """Save at `state.step` (asynchronously; `wait()` blocks until it is on disk). A state
        whose parameters, optimizer state or reference parameters hold a NaN or an infinity is
        an error: a checkpoint is never non-finite."""
        step = int(jax.device_get(state.step))
        if not bool(_all_finite((state.params, state.opt_state, ref_params))):
            raise ValueError(f"step {step}: the parameters or optimizer state are not finite; not saving them "
                             f"to {self.directory}, whose checkpoints stay finite")
        meta = {"step": step, "config": self.run_config, "data_state": data_state,
                "rng": None if rng is None else np.asarray(jax.random.key_data(rng)).tolist(),
                "where": _where(self.directory)}
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
            raise ConfigMismatchError(
                f"checkpoint {self.directory}/{step} holds parameters only (no optimizer state); "
                "load them with r1jax.checkpoint.restore_params and start a fresh optimizer")
        _check_shapes(saved["params"], target.params, "params", self.directory, step)
        _check_shapes(saved["opt_state"], target.opt_state, "opt_state", self.directory, step)
        items = dict(params=ocp.args.StandardRestore(target.params),
                     opt_state=ocp.args.StandardRestore(target.opt_state), meta=ocp.args.JsonRestore())
        if with_ref:  # the reference policy has the parameters' shapes and shardings
            if saved.get("ref_params") is None:
                raise ConfigMismatchError(f"checkpoint {self.directory}/{step} has no reference policy (ref_params)")
            items["ref_params"] = ocp.args.StandardRestore(target.params)
        out = self._mngr.restore(step, args=ocp.args.Composite(**items))
        meta = out["meta"]
        rng = None if meta["rng"] is None else jax.random.wrap_key_data(np.asarray(meta["rng"], np.uint32))
        state = TrainState(step=jax.device_put(jnp.asarray(meta["step"], jnp.int32), target.step.sharding),
                           params=out["params"], opt_state=out["opt_state"])
        return Restored(step=step, state=state, rng=rng, data_state=meta["data_state"],
                        ref_params=out["ref_params"] if with_ref else None)

    def restore_intact(self, target: TrainState, with_ref: bool = False) -> Restored | None:
        """`restore` of the newest step that can be read; newer ones that cannot are moved aside
        with a warning (`_set_aside`). None if the directory has no checkpoint; an error if no
        step can be read (nothing is moved then)."""
        _, restored, unreadable = self._newest(lambda step: self.restore(target, step, with_ref=with_ref))
        for step, error in unreadable:
            self._set_aside(step, error)
        return restored

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()


def _first_line(error: BaseException | None) -> str:
    """The root cause of `error` in one line (orbax wraps tensorstore's error in a long one)."""
    while error is not None and error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


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


class UnreadableCheckpointError(ValueError):
    """A checkpoint that another stage loads (`read_run_config`, `restore_params`) cannot be read.
    Unlike a run's own directory (`Checkpointer.restore_intact`), there is no falling back to an
    older step: which step a later stage builds on is not for the loader to change."""


def _unreadable(directory: str | Path, step: int, path: str, what: str, error: Exception) -> UnreadableCheckpointError:
    step_dir = Path(directory).absolute() / str(step)
    return UnreadableCheckpointError(
        f"{step_dir / path}: {what} cannot be read ({_first_line(error)}); step {step} is damaged: restore it "
        f"from a copy, or move {step_dir} aside to load the step before it")


def read_run_config(directory: str | Path, step: int | None = None) -> Any:
    """The run config stored with a checkpoint (JSON values), e.g. to rebuild its ModelConfig.
    UnreadableCheckpointError names the file when it is damaged."""
    with _read_only(directory, step) as (mngr, step):
        try:
            return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]["config"]
        except Exception as e:  # orbax / json errors of a damaged step, without the file's name
            raise _unreadable(directory, step, "meta/metadata", "the checkpoint's run config", e) from e


def restore_params(directory: str | Path, model_cfg: ModelConfig, mesh: Mesh | None = None,
                   step: int | None = None, target: Any = None) -> dict:
    """Parameters only, e.g. the previous stage's policy or a teacher. Any mesh. `target`
    (ShapeDtypeStructs, with shardings) replaces the model's tree, e.g. a reward model's."""
    with _read_only(directory, step) as (mngr, step):
        target = abstract_params(model_cfg, mesh) if target is None else target
        try:
            saved = mngr.item_metadata(step)["params"]
        except Exception as e:
            raise _unreadable(directory, step, "params", "the parameters' metadata", e) from e
        _check_shapes(saved, target, "params", Path(directory).absolute(), step)
        try:
            return mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target)))["params"]
        except Exception as e:
            raise _unreadable(directory, step, "params", "the parameters", e) from e
