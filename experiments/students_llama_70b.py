"""Distil DeepSeek-R1 into Llama-3.3-70B-Instruct by SFT (the paper's DeepSeek-R1-Distill-Llama-70B).

The paper's distillation: supervised fine-tuning of the base model on the ~800k samples
curated from DeepSeek-R1 (about 600k reasoning traces kept by rejection sampling, 200k
non-reasoning samples), with no RL stage on the student.

The paper picks Llama-3.3-70B-Instruct because its reasoning is slightly better than
Llama-3.1's.

Hyper-parameters the paper does not give for this stage (learning rate, schedule, sequence
length, batch) are common choices for full SFT at this size, not the paper's. Parameters are
kept in float32 with bfloat16 compute: at learning rates near 1e-5 a bfloat16 weight would
round most updates away.

Memory from the planner:

    r1jax plan --model llama3.3-70b --mesh data=1,fsdp=64,tensor=4 --stage sft --batch 64 \
        --prompt-len 1024 --max-new-tokens 15360 --param-dtype float32 --dtype bfloat16 --device v5p-512

    llama3.3-70b (70.55B params), sft on mesh data=1,fsdp=64,tensor=4 (256 devices)
    64 sequences x 16384 tokens a step
    1 row per device; params float32, compute bfloat16, remat on, blockwise attention, LM head 1024 tokens at a time
    per device:
      parameters           1.03 GiB
      optimizer state      2.06 GiB
      gradients            1.03 GiB
      reference model      0.00 GiB
      activations         25.91 GiB  (update, estimate)
      update phase        30.03 GiB
      peak                30.03 GiB
    fits on v5p-512 (95 GiB HBM per chip): 32% of HBM at peak
"""

from r1jax.config import ModelOverrides, OptimConfig, TrainerConfig
from r1jax.stages.lm import SFTConfig

PLAN = dict(
    model_name="llama3.3-70b", mesh="data=1,fsdp=64,tensor=4", stage="sft", batch=64,
    prompt_len=1024, max_new_tokens=15360, param_dtype="float32", dtype="bfloat16", remat=True
)
DEVICE = "v5p-512"


def get_config() -> SFTConfig:
    """`r1jax sft --config experiments/students_llama_70b.py`; import the base first with
    `r1jax convert hf-to-ckpt Llama-3.3-70B-Instruct runs/llama_70b-base/ckpt --dtype float32` and copy its
    tokenizer.json and tokenizer_config.json beside ckpt/."""
    return SFTConfig(
        init_dir="runs/llama_70b-base",
        out_dir="runs/llama_70b-distilled",
        data="data/r1_distill.jsonl",  # the ~800k curated samples, one {"prompt", "response"} a line
        epochs=2.0,
        batch_size=PLAN["batch"],
        seq_len=PLAN["prompt_len"] + PLAN["max_new_tokens"],
        trainer=TrainerConfig(steps=0, checkpoint_every=500, log_every=10, mesh=PLAN["mesh"]),
        optim=OptimConfig(learning_rate=5e-06, warmup_steps=100, schedule="cosine", weight_decay=0.0),
        model=ModelOverrides(remat=PLAN["remat"], dtype=PLAN["dtype"]),
    )
