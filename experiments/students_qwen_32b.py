"""Distil DeepSeek-R1 into Qwen2.5-32B by SFT (the paper's DeepSeek-R1-Distill-Qwen-32B).

The paper's distillation: supervised fine-tuning of the base model on the ~800k samples
curated from DeepSeek-R1 (about 600k reasoning traces kept by rejection sampling, 200k
non-reasoning samples), with no RL stage on the student.

Hyper-parameters the paper does not give for this stage (learning rate, schedule, sequence
length, batch) are common choices for full SFT at this size, not the paper's. Parameters are
kept in float32 with bfloat16 compute: at learning rates near 1e-5 a bfloat16 weight would
round most updates away.

Memory from the planner:

    r1jax plan --model qwen2.5-32b --mesh data=1,fsdp=64,tensor=2 --stage sft --batch 64 \
        --prompt-len 1024 --max-new-tokens 15360 --param-dtype float32 --dtype bfloat16 --device v5p-256

    qwen2.5-32b (32.76B params), sft on mesh data=1,fsdp=64,tensor=2 (128 devices)
    64 sequences x 16384 tokens a step
    1 row per device; params float32, compute bfloat16, remat on, blockwise attention, LM head 1024 tokens at a time
    per device:
      parameters           0.96 GiB
      optimizer state      1.91 GiB
      gradients            0.96 GiB
      reference model      0.00 GiB
      activations         16.17 GiB  (update, estimate)
      update phase        19.99 GiB
      peak                19.99 GiB
    fits on v5p-256 (95 GiB HBM per chip): 21% of HBM at peak
"""

from r1jax.config import ModelOverrides, OptimConfig, TrainerConfig
from r1jax.stages.lm import SFTConfig

PLAN = dict(
    model_name="qwen2.5-32b", mesh="data=1,fsdp=64,tensor=2", stage="sft", batch=64,
    prompt_len=1024, max_new_tokens=15360, param_dtype="float32", dtype="bfloat16", remat=True
)
DEVICE = "v5p-256"


def get_config() -> SFTConfig:
    """`r1jax sft --config experiments/students_qwen_32b.py`; import the base first with
    `r1jax convert hf-to-ckpt Qwen2.5-32B runs/qwen_32b-base/ckpt --dtype float32` and copy its
    tokenizer.json and tokenizer_config.json beside ckpt/."""
    return SFTConfig(
        init_dir="runs/qwen_32b-base",
        out_dir="runs/qwen_32b-distilled",
        data="data/r1_distill.jsonl",  # the ~800k curated samples, one {"prompt", "response"} a line
        epochs=2.0,
        batch_size=PLAN["batch"],
        seq_len=PLAN["prompt_len"] + PLAN["max_new_tokens"],
        trainer=TrainerConfig(steps=0, checkpoint_every=500, log_every=10, mesh=PLAN["mesh"]),
        optim=OptimConfig(learning_rate=1e-05, warmup_steps=100, schedule="cosine", weight_decay=0.0),
        model=ModelOverrides(remat=PLAN["remat"], dtype=PLAN["dtype"]),
    )
