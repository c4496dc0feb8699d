"""The whole DeepSeek-R1 recipe on the embedded CPU world, in one command from this file:

    python experiments/world/r1_recipe.py [--out-dir runs/r1]

cold-start data from R1-Zero -> cold-start SFT -> reasoning RL with the language-consistency
reward -> rejection sampling + general data -> SFT of the base -> reward model -> RL for all
scenarios -> distillation into a smaller student (SFT, logits, on-policy) against RL on that
student, with the paper's three comparisons written to runs/r1/r1.md. Equivalent to `r1jax r1`
with these settings; change a field here to run an ablation of the whole recipe.
"""

import sys

from r1jax import cli
from r1jax.recipe import R1Config


def get_config() -> R1Config:
    return R1Config(out_dir="runs/r1")


if __name__ == "__main__":
    cfg = get_config()
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(cfg).items() if not isinstance(v, bool)]
    cli.main(["r1", *flags, *sys.argv[1:]])
