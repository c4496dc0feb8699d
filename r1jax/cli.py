"""`r1jax <command>`: the stages and tools from the shell.

Every command's flags are generated from its frozen config dataclass, so a flag and the
config field it sets always have the same name (`--learning-rate` -> `learning_rate`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def _add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    for f in dataclasses.fields(cls):
        kind = type(f.default)
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=kind, default=f.default, help=f"default: {f.default!r}")


def _config_from_args(cls, args: argparse.Namespace):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


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
            raise SystemExit(f"{args.src}: the saved run config has no 'model' entry")
        cfg = from_dict(ModelConfig, saved["model"])
        params = checkpoint.restore_params(args.src, cfg)
        hf.save_hf(args.dst, cfg, params)
        print(f"wrote Hugging Face {cfg.arch} checkpoint to {args.dst}")


def _init_distributed() -> None:
    """Join the other hosts of a multi-host run before anything touches a device: on a Cloud
    TPU pod slice (TPU_WORKER_HOSTNAMES lists several workers) JAX finds its peers itself;
    elsewhere (GPU clusters) set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID."""
    import os
    import jax
    if "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
        jax.distributed.initialize()
    elif os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(os.environ["JAX_COORDINATOR_ADDRESS"], int(os.environ["JAX_NUM_PROCESSES"]),
                                   int(os.environ["JAX_PROCESS_ID"]))


# command -> (module, config class, stage function, help); each reads the previous stage's directory
STAGES = {
    "pretrain": ("r1jax.pipeline", "PretrainConfig", "pretrain", "train the tokenizer and base model of the embedded CPU world"),
    "r1-zero": ("r1jax.pipeline", "R1ZeroConfig", "r1_zero",
                "GRPO from a base with rule rewards (R1-Zero); with other rewards, R1's RL stages"),
    "collect": ("r1jax.pipeline", "CollectConfig", "collect",
                "sample a policy, keep correct readable outputs: cold-start data, rejection sampling, distillation data"),
    "sft": ("r1jax.pipeline", "SFTConfig", "sft", "supervised fine-tuning on a JSONL of prompt/response records"),
    "rm": ("r1jax.rm", "RewardModelConfig", "train_reward_model", "train a reward model on preference pairs"),
    "distill": ("r1jax.distill", "DistillConfig", "distill", "logit or on-policy distillation into a student"),
}


def main(argv: list[str] | None = None) -> None:
    import importlib

    from r1jax.pipeline import WorldConfig
    from r1jax.recipe import R1Config

    parser = argparse.ArgumentParser(prog="r1jax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    w = sub.add_parser("world", help="the main job: pretrain the embedded world's base, run R1-Zero, "
                                     "evaluate both on held-out problems")
    _add_config_flags(w, WorldConfig)
    r1 = sub.add_parser("r1", help="the whole R1 recipe and distillation on the embedded world, with the "
                                   "paper's comparisons (r1jax.recipe)")
    _add_config_flags(r1, R1Config)
    for name, (module, cls, _, help_text) in STAGES.items():
        _add_config_flags(sub.add_parser(name, help=help_text), getattr(importlib.import_module(module), cls))

    from r1jax import evaluate, plan
    evaluate.add_parser(sub)
    plan.add_parser(sub)

    c = sub.add_parser("convert", help="Hugging Face safetensors <-> r1jax orbax checkpoint")
    c.add_argument("direction", choices=["hf-to-ckpt", "ckpt-to-hf"])
    c.add_argument("src", type=Path)
    c.add_argument("dst", type=Path)
    c.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="parameter dtype for hf-to-ckpt (default: the checkpoint's)")

    args = parser.parse_args(argv)
    if args.command not in ("plan", "convert"):
        _init_distributed()
    if args.command == "world":
        from r1jax.pipeline import world, world_table
        result = world(_config_from_args(WorldConfig, args))
        print(world_table(result) if "stopped" not in result else f"stopped during {result['stopped']}; rerun to resume")
    elif args.command == "r1":
        from r1jax.recipe import r1, r1_table
        try:
            print(r1_table(r1(_config_from_args(R1Config, args))))
        except KeyboardInterrupt as stopped:
            print(f"{stopped}")
    elif args.command in STAGES:
        module, cls, fn, _ = STAGES[args.command]
        module = importlib.import_module(module)
        print(json.dumps(getattr(module, fn)(_config_from_args(getattr(module, cls), args)), indent=2))
    elif args.command == "eval":
        evaluate.main(args)
    elif args.command == "plan":
        plan.main(args)
    elif args.command == "convert":
        _convert(args)


if __name__ == "__main__":
    main(sys.argv[1:])
