"""The whole DeepSeek-R1 recipe on the embedded CPU world:

    r1jax r1 --config experiments/world/r1_recipe.py [--out-dir runs/r1] [--grpo.beta 0.01 ...]

cold-start data from R1-Zero -> cold-start SFT -> reasoning RL with the language-consistency
reward -> rejection sampling + general data -> SFT of the base -> reward model -> RL for all
scenarios -> distillation into a smaller student (SFT, logits, on-policy) against RL on that
student, with the paper's three comparisons written to runs/r1/r1.md. Equivalent to `r1jax r1`
with these settings; change a field here (or give it as a flag) to run an ablation of the recipe.
"""

from r1jax.config import GRPOConfig
from r1jax.stages.recipe import R1Config


def get_config() -> R1Config:
    return R1Config(out_dir="runs/r1", grpo=GRPOConfig(group_size=8, beta=0.001))
