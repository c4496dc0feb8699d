"""The main job on the embedded CPU world (`r1jax world` with its defaults, written out as a
starting point for an ablation):

    r1jax world --config experiments/world/main_job.py [--seed 1] [--grpo.beta 0.0 ...]

pretrain the world's base (800 steps), evaluate it on 64 held-out problems x 8 samples, run
R1-Zero from it (25 GRPO steps, 16 samples a problem, 224 new tokens), evaluate the policy.
"""

from r1jax.config import GRPOConfig
from r1jax.stages.world import WorldConfig


def get_config() -> WorldConfig:
    return WorldConfig(out_dir="runs/world", pretrain_steps=800, rl_steps=25, max_new_tokens=224,
                       grpo=GRPOConfig(group_size=16, beta=0.001))
