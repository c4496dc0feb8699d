"""`r1jax <command>`: the stages and tools from the shell.

A stage's flags are derived from its nested frozen config, so a flag and the field it sets
have the same dotted name: `--out-dir` -> out_dir, `--grpo.beta` -> grpo.beta,
`--optim.learning-rate` -> optim.learning_rate (dashes or underscores). `--config FILE` starts
from an experiment file's `get_config()`; flags given beside it override its fields;
`--print-config` prints the resolved config as JSON and exits.

An error in what was asked (a bad flag value, a missing or damaged file, a directory that is
not one) ends the command with one line, `r1jax <command>: <what is wrong>`, on stderr and exit
status 2 (a run stopped by non-finite losses: 1); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib.util
import json
import os
import sys
from pathlib import Path

from r1jax.config import flat_fields, override_paths

# command -> (module, config class, stage function, help). Modules are imported when a command
# runs, so `r1jax plan` or `--help` does not pay for jax and the stages.
STAGES = {
    "world": ("r1jax.stages.world", "WorldConfig", "world", "the main job: pretrain the embedded world's base, "
              "run R1-Zero, evaluate both on held-out problems"),
    "r1": ("r1jax.stages.recipe", "R1Config", "r1", "the whole R1 recipe and distillation on the embedded world, "
           "with the paper's comparisons"),
    "pretrain": ("r1jax.stages.lm", "PretrainConfig", "pretrain",
                 "train the tokenizer and base model of the embedded CPU world"),
    "grpo": ("r1jax.stages.grpo", "RLConfig", "grpo",
             "GRPO from a base with rule rewards (R1-Zero); with other rewards, R1's RL stages 3 and 6"),
    "collect": ("r1jax.stages.collect", "CollectConfig", "collect",
                "sample a policy, keep correct readable outputs: cold-start data, rejection sampling, "
                "distillation data"),
    "sft": ("r1jax.stages.lm", "SFTConfig", "sft", "supervised fine-tuning on a JSONL of prompt/response records"),
    "rm": ("r1jax.stages.reward_model", "RewardModelConfig", "train_reward_model",
           "train a reward model on preference pairs"),
    "distill": ("r1jax.stages.distill", "DistillConfig", "distill", "logit or on-policy distillation into a student"),
    "eval": ("r1jax.evaluate", "EvalConfig", "evaluate", "pass@1 over k samples, pass@k, cons@k on benchmarks; "
             "or score a samples file (--samples FILE --benchmark NAME)"),
}
ALIASES = {"grpo": ["r1-zero"]}


def parse_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes", "on"):
        return True
    if text.lower() in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_type(annotation: str):
    """The flag parser of a field from its annotation string ('int', 'bool | None', ...)."""
    for name, parse in (("bool", parse_bool), ("int", int), ("float", float)):
        if name in annotation.replace("| None", "").split():
            return parse
    return str


def stage_default(cls, path: str):
    """The value a default `cls` has at dotted `path`. A nested part's default is the stage's own
    instance of it (`RLConfig.trainer` runs 50 steps where `TrainerConfig()` runs 100), so `--help`
    must read it from there, not from the part's class."""
    head, _, rest = path.partition(".")
    f = next(f for f in dataclasses.fields(cls) if f.name == head)
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default
    for name in rest.split(".") if rest else ():
        value = getattr(value, name)
    return value


def add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per leaf field of `cls` (nested configs as dotted paths); unset flags stay absent."""
    parser.add_argument("--config", help="an experiment file whose get_config() returns this command's config")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    for path, f in flat_fields(cls).items():
        names = ["--" + path.replace("_", "-")] + (["--" + path] if "_" in path else [])
        kind = _parse_type(str(f.type))
        help_text = f"default: {stage_default(cls, path)!r}"
        if kind is parse_bool:
            parser.add_argument(*names, dest=path, type=parse_bool, nargs="?", const=True, default=argparse.SUPPRESS,
                                metavar="true|false", help=help_text)
            parser.add_argument("--no-" + path.replace("_", "-"), dest=path, action="store_const", const=False,
                                default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        else:
            parser.add_argument(*names, dest=path, type=kind, default=argparse.SUPPRESS, help=help_text)


class UsageError(ValueError):
    """An error in what was asked for: `main` prints it as one line (see the module docstring)."""


def load_experiment(path: str, cls):
    """The config that an experiment file's `get_config()` returns; it must be a `cls`."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if spec is None or not Path(path).is_file():
        raise UsageError(f"--config {path}: no such Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise UsageError(f"--config {path}, line {e.lineno}: {e.msg}") from e
    if not hasattr(module, "get_config"):
        raise UsageError(f"--config {path}: the file defines no get_config()")
    try:
        cfg = module.get_config()
    except (ValueError, TypeError) as e:  # a field the file sets is not valid
        raise UsageError(f"--config {path}: get_config(): {e}") from e
    if not isinstance(cfg, cls):
        raise UsageError(f"--config {path}: get_config() returned a {type(cfg).__name__}, this command takes a "
                         f"{cls.__name__}")
    return cfg


def config_from_args(cls, args: argparse.Namespace):
    """The config of a parsed command line: the experiment file's (or the defaults), then the flags.
    Every field is validated here (the config classes' __post_init__), before any work: an
    invalid one is a UsageError naming it and what is valid."""
    base = load_experiment(args.config, cls) if args.config else cls()
    changes = {path: getattr(args, path) for path in flat_fields(cls) if hasattr(args, path)}
    try:
        cfg = override_paths(base, changes)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from e
    out_dir = getattr(cfg, "out_dir", None)
    if out_dir and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UsageError(f"--out-dir {out_dir}: is a file, not a directory; name a new or existing directory")
    return cfg


def _convert(args) -> None:
    import jax

    from r1jax import checkpoint, hf, train
    from r1jax.config import ModelConfig, from_dict

    if args.direction == "hf-to-ckpt":
        cfg, params = hf.load_hf(args.src, dtype=args.dtype)
        ckpt = checkpoint.Checkpointer(args.dst, {"model": cfg})
        ckpt.save(train.TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params, opt_state={}),
                  force=True)
        ckpt.close()
        print(f"wrote {cfg.arch} model ({sum(x.size for x in jax.tree.leaves(params)):,} params) to {args.dst}")
    else:
        saved = checkpoint.read_run_config(args.src)
        if "model" not in saved:
            raise UsageError(f"{args.src}: the saved run config has no 'model' entry")
        cfg = from_dict(ModelConfig, saved["model"])
        params = checkpoint.restore_params(args.src, cfg)
        hf.save_hf(args.dst, cfg, params)
        print(f"wrote Hugging Face {cfg.arch} checkpoint to {args.dst}")


def init_distributed() -> None:
    """Join the other hosts of a multi-host run before anything touches a device. JAX finds its
    peers itself on a Cloud TPU pod slice (TPU_WORKER_HOSTNAMES lists several workers), in a
    SLURM step of several tasks (`srun`) and under Open MPI's `mpirun` with several processes;
    elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID. One process
    alone (a SLURM job without srun, a laptop) joins nothing: initialising would wait for peers
    that never come. When a host dies the others abort once it has missed heartbeats for
    R1JAX_HEARTBEAT_TIMEOUT seconds (default 100, jax's); rerun every process to resume from
    the last checkpoint."""
    import jax
    # several processes on CPUs (a test of the multi-host path on one machine) talk through gloo
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    env = os.environ
    heartbeat = int(env.get("R1JAX_HEARTBEAT_TIMEOUT", "100"))
    cluster = ("," in env.get("TPU_WORKER_HOSTNAMES", "")
               or ("SLURM_STEP_NODELIST" in env and int(env.get("SLURM_NTASKS", "1")) > 1)
               or ("OMPI_MCA_orte_hnp_uri" in env and int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1))
    if cluster:
        jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat)
    elif env.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(env["JAX_COORDINATOR_ADDRESS"], int(env["JAX_NUM_PROCESSES"]),
                                   int(env["JAX_PROCESS_ID"]), heartbeat_timeout_seconds=heartbeat)


def _print_result(command: str, module, cfg, result) -> None:
    """What each command prints when it ends: the tables of the world job, the recipe and eval,
    the summary JSON of a single stage."""
    if command == "world":
        print(module.world_table(result) if "stopped" not in result
              else f"stopped during {result['stopped']}; rerun to resume")
    elif command == "r1":
        print(module.r1_table(result))
    elif command == "eval":
        if result:
            print(module.summary_markdown(list(result.values())), end="")
            print(f"written to {cfg.out_dir}/")
    else:
        print(json.dumps(result, indent=2))


DEBUG_HELP = "on an error, show its Python traceback instead of one line"


def _user_error(e: BaseException) -> int | None:
    """The exit status for an error that is about what was asked (2), or a run stopped on
    purpose (1); None for anything else (a bug: its traceback is the useful report).

    ValueError (invalid fields, ConfigMismatchError, unreadable checkpoints and data files),
    KeyError (unknown names: presets, tasks, benchmarks), OSError (missing files, a file where a
    directory should be, permissions, a full disk) and runtime.NonFiniteError."""
    runtime = sys.modules.get("r1jax.runtime")
    if runtime is not None and isinstance(e, runtime.NonFiniteError):
        return 1
    return 2 if isinstance(e, (ValueError, KeyError, OSError)) else None


def _message(e: BaseException) -> str:
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        return e.args[0]  # str(KeyError) quotes its message
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e) or type(e).__name__


def main(argv: list[str] | None = None) -> None:
    """Run one command. An error about what was asked is one line on stderr and exit status 2
    (`_user_error`), unless --debug is given."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), "r1jax")
    try:
        _main(argv)
    except Exception as e:
        status = _user_error(e)
        if status is None or "--debug" in argv:
            raise
        print(f"r1jax {command}: {_message(e)}\n(--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(status) from None


def _main(argv: list[str]) -> None:
    import importlib

    from r1jax import plan

    parser = argparse.ArgumentParser(prog="r1jax", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    subparsers = []
    for name, (module, cls, _, help_text) in STAGES.items():
        p = sub.add_parser(name, aliases=ALIASES.get(name, []), help=help_text, allow_abbrev=False)
        add_config_flags(p, getattr(importlib.import_module(module), cls))
        subparsers.append(p)
    subparsers.append(plan.add_parser(sub))
    c = sub.add_parser("convert", help="Hugging Face safetensors <-> r1jax orbax checkpoint", allow_abbrev=False)
    c.add_argument("direction", choices=["hf-to-ckpt", "ckpt-to-hf"])
    c.add_argument("src", type=Path)
    c.add_argument("dst", type=Path)
    c.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="parameter dtype for hf-to-ckpt (default: the checkpoint's)")
    subparsers.append(c)
    for p in subparsers:  # --debug before or after the command; no prefix matching (--step is not --steps)
        p.allow_abbrev = False
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)

    args, unknown = parser.parse_known_args(argv)
    command = next((n for n, a in ALIASES.items() if args.command in a), args.command)
    if unknown and command not in STAGES:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if unknown:  # name the valid flags, the closest first
        module_name, cls_name, _, _ = STAGES[command]
        cls = getattr(importlib.import_module(module_name), cls_name)
        valid = ["--config", "--print-config", "--debug", *("--" + p.replace("_", "-") for p in flat_fields(cls))]
        close = difflib.get_close_matches(unknown[0].split("=")[0], valid, n=3)
        parser.exit(2, f"r1jax {args.command}: unknown argument(s) {' '.join(unknown)}"
                       + (f"; did you mean {' or '.join(close)}?" if close else "")
                       + f"\nvalid flags: {' '.join(valid)}\n")
    if command in STAGES:
        module_name, cls_name, fn, _ = STAGES[command]
        module = importlib.import_module(module_name)
        cfg = config_from_args(getattr(module, cls_name), args)
        if args.print_config:
            print(json.dumps(dataclasses.asdict(cfg), indent=2))
            return
        init_distributed()
        try:
            result = getattr(module, fn)(cfg)
        except KeyboardInterrupt as stopped:  # the recipe: a stage stopped by a signal, checkpoint saved
            print(f"{stopped}")
            return
        _print_result(command, module, cfg, result)
    elif command == "plan":
        plan.main(args)
    elif command == "convert":
        _convert(args)


if __name__ == "__main__":
    main(sys.argv[1:])
