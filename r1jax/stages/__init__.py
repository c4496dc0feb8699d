"""The stages of the R1 recipe, one module each (`r1jax <command>` runs one): lm (pretrain,
sft), grpo (R1-Zero and R1's RL stages 3 and 6), collect (cold-start, rejection-sampling and
distillation data), reward_model, distill (logit and on-policy), recipe (the R1 recipe) and
world (the main job). Each is a frozen config and a function that reads the previous stage's
directory and writes its own (`r1jax.runtime`)."""
