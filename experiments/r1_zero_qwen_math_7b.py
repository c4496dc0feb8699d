"""R1-Zero-style GRPO of Qwen2.5-Math-7B on a v4-64 slice.

DeepSeek-R1-Zero's recipe on a smaller base: GRPO straight from the base model with rule
rewards only (answer accuracy + format, equal weights), prompted with the paper's template.
Paper settings: lr 3e-6, KL coefficient 0.001 (k3 estimator, in the loss), 16 samples per
question at temperature 1, 32 questions a step, the reference replaced by the policy every
400 steps, each rollout batch split into 16 mini-batches (16 policy updates per rollout).
Qwen2.5-Math has a 4k context, so prompt (512) + completion (3584) fill it. Parameters are
float32 (bfloat16 compute): a 3e-6 step is far below bfloat16's resolution for these weights.

Run it on every worker (tpu_setup/launch.sh) after importing the base model:

    r1jax convert hf-to-ckpt Qwen2.5-Math-7B runs/qwen-math-7b-base/ckpt --dtype float32
    cp Qwen2.5-Math-7B/tokenizer.json Qwen2.5-Math-7B/tokenizer_config.json runs/qwen-math-7b-base/
    mkdir -p runs/data && cp ../shared/data/gsm8k_train.jsonl runs/data/
    r1jax grpo --config experiments/r1_zero_qwen_math_7b.py

Memory from the planner:

    r1jax plan --model qwen2.5-math-7b --mesh data=1,fsdp=32,tensor=1 --stage grpo --batch 32 \
        --group 16 --minibatches 16 \
        --prompt-len 512 --max-new-tokens 3584 --param-dtype float32 --dtype bfloat16 --device v4-64

    qwen2.5-math-7b (7.62B params), grpo on mesh data=1,fsdp=32,tensor=1 (32 devices)
    512 rollouts a step (32 prompts x 16), 16 updates of 32 rows x 4096 tokens (512 prompt + 3584 new)
    1 row per device; params float32, compute bfloat16, remat on, blockwise attention, LM head 1024 tokens at a time
    per device:
      parameters           0.89 GiB
      optimizer state      1.78 GiB
      gradients            0.89 GiB
      reference model      0.89 GiB
      KV cache             3.50 GiB  (sampling)
      sampling logits      0.01 GiB  (sampling)
      activations          3.79 GiB  (update, estimate)
      sampling phase       7.06 GiB
      update phase         8.22 GiB
      peak                 8.22 GiB
    fits on v4-64 (32 GiB HBM per chip): 26% of HBM at peak

At the paper's budget, 32,768 tokens (512 prompt + 32,256 new; it needs a base with a 32k
context, which Qwen2.5-Math is not), the same step fits with blockwise attention and the
chunked LM head (the defaults past 512 tokens):

    r1jax plan --model qwen2.5-math-7b --mesh data=1,fsdp=64,tensor=1 --stage grpo --batch 32 \
        --group 16 --minibatches 8 \
        --prompt-len 512 --max-new-tokens 32256 --param-dtype float32 --dtype bfloat16 --device v5p-128

    qwen2.5-math-7b (7.62B params), grpo on mesh data=1,fsdp=64,tensor=1 (64 devices)
    512 rollouts a step (32 prompts x 16), 8 updates of 64 rows x 32768 tokens (512 prompt + 32256 new)
    1 row per device; params float32, compute bfloat16, remat on, blockwise attention, LM head 1024 tokens at a time
    per device:
      parameters           0.44 GiB
      optimizer state      0.89 GiB
      gradients            0.44 GiB
      reference model      0.44 GiB
      KV cache            14.00 GiB  (sampling)
      sampling logits      0.00 GiB  (sampling)
      activations         18.55 GiB  (update, estimate)
      sampling phase      15.78 GiB
      update phase        20.77 GiB
      peak                20.77 GiB
    fits on v5p-128 (95 GiB HBM per chip): 22% of HBM at peak
"""

from r1jax.config import DataConfig, GRPOConfig, ModelOverrides, OptimConfig, RolloutConfig, TrainerConfig
from r1jax.stages.grpo import RLConfig

PLAN = dict(
    model_name="qwen2.5-math-7b", mesh="data=1,fsdp=32,tensor=1", stage="grpo", batch=32, group=16,
    minibatches=16, prompt_len=512, max_new_tokens=3584, param_dtype="float32", dtype="bfloat16",
    remat=True, beta=0.001
)
DEVICE = "v4-64"
PLAN_PAPER = dict(
    model_name="qwen2.5-math-7b", mesh="data=1,fsdp=64,tensor=1", stage="grpo", batch=32, group=16,
    minibatches=8, prompt_len=512, max_new_tokens=32256, param_dtype="float32", dtype="bfloat16",
    remat=True, beta=0.001
)
DEVICE_PAPER = "v5p-128"


def get_config() -> RLConfig:
    """`r1jax grpo --config experiments/r1_zero_qwen_math_7b.py` (the paper's R1-Zero settings)."""
    return RLConfig(
        base_dir="runs/qwen-math-7b-base",
        out_dir="runs/qwen-math-7b-r1zero",
        data=DataConfig(path="runs/data/gsm8k_train.jsonl"),  # GSM8K's 7,473 problems (the shared data folder)
        prompts_per_step=PLAN["batch"],
        reward_weights="accuracy=1,format=1",
        trainer=TrainerConfig(steps=1000, checkpoint_every=50, mesh=PLAN["mesh"]),
        optim=OptimConfig(learning_rate=3e-6, schedule="constant", weight_decay=0.0),
        grpo=GRPOConfig(group_size=PLAN["group"], minibatches=PLAN["minibatches"], beta=PLAN["beta"], ref_refresh=400),
        rollout=RolloutConfig(temperature=1.0, top_p=1.0, max_new_tokens=PLAN["max_new_tokens"],
                              max_prompt_tokens=PLAN["prompt_len"]),
        model=ModelOverrides(remat=PLAN["remat"], dtype=PLAN["dtype"]),
    )
