"""Rewrites experiments/*.py with the planner's current figures in their docstrings (run from the repo root:
`python experiments/regenerate.py`); tests/test_plan.py fails when a file is out of date."""
import sys
import textwrap

sys.path.insert(0, ".")
from r1jax import plan as P

STUDENT = '''"""{title}

The paper's distillation: supervised fine-tuning of the base model on the ~800k samples
curated from DeepSeek-R1 (about 600k reasoning traces kept by rejection sampling, 200k
non-reasoning samples), with no RL stage on the student.{note}

Hyper-parameters the paper does not give for this stage (learning rate, schedule, sequence
length, batch) are common choices for full SFT at this size, not the paper's. Parameters are
kept in float32 with bfloat16 compute: at learning rates near 1e-5 a bfloat16 weight would
round most updates away.

Memory from the planner:\n\n    {cmd}

{table}
"""

from r1jax.config import ModelOverrides, OptimConfig, TrainerConfig
from r1jax.stages.lm import SFTConfig

PLAN = dict({plan_kwargs})
DEVICE = "{device}"


def get_config() -> SFTConfig:
    """`r1jax sft --config experiments/{stem}.py`; import the base first with
    `r1jax convert hf-to-ckpt {hf_dir} runs/{short}-base/ckpt --dtype float32` and copy its
    tokenizer.json and tokenizer_config.json beside ckpt/."""
    return SFTConfig(
        init_dir="runs/{short}-base",
        out_dir="runs/{short}-distilled",
        data="data/r1_distill.jsonl",  # the ~800k curated samples, one {{"prompt", "response"}} a line
        epochs=2.0,
        batch_size=PLAN["batch"],
        seq_len=PLAN["prompt_len"] + PLAN["max_new_tokens"],
        trainer=TrainerConfig(steps=0, checkpoint_every=500, log_every=10, mesh=PLAN["mesh"]),
        optim=OptimConfig(learning_rate={lr}, warmup_steps=100, schedule="cosine", weight_decay=0.0),
        model=ModelOverrides(remat=PLAN["remat"], dtype=PLAN["dtype"]),
    )
'''

R1ZERO = '''"""{title}

DeepSeek-R1-Zero's recipe on a smaller base: GRPO straight from the base model with rule
rewards only (answer accuracy + format, equal weights), prompted with the paper's template.
Paper settings: lr 3e-6, KL coefficient 0.001 (k3 estimator, in the loss), 16 samples per
question at temperature 1, 32 questions a step, the reference replaced by the policy every
400 steps, each rollout batch split into 16 mini-batches (16 policy updates per rollout).
Qwen2.5-Math has a 4k context, so prompt (512) + completion (3584) fill it. Parameters are
float32 (bfloat16 compute): a 3e-6 step is far below bfloat16's resolution for these weights.

Run it on every worker (tpu_setup/launch.sh) after importing the base model:

    r1jax convert hf-to-ckpt {hf_dir} runs/{short}-base/ckpt --dtype float32
    cp {hf_dir}/tokenizer.json {hf_dir}/tokenizer_config.json runs/{short}-base/
    mkdir -p runs/data && cp ../shared/data/gsm8k_train.jsonl runs/data/
    r1jax grpo --config experiments/{stem}.py

Memory from the planner:\n\n    {cmd}

{table}

At the paper's budget, 32,768 tokens (512 prompt + 32,256 new; it needs a base with a 32k
context, which Qwen2.5-Math is not), the same step fits with blockwise attention and the
chunked LM head (the defaults past 512 tokens):\n\n    {cmd_paper}

{table_paper}
"""

from r1jax.config import DataConfig, GRPOConfig, ModelOverrides, OptimConfig, RolloutConfig, TrainerConfig
from r1jax.stages.grpo import RLConfig

PLAN = dict({plan_kwargs})
DEVICE = "{device}"
PLAN_PAPER = dict({plan_paper_kwargs})
DEVICE_PAPER = "{device_paper}"


def get_config() -> RLConfig:
    """`r1jax grpo --config experiments/{stem}.py` (the paper's R1-Zero settings)."""
    return RLConfig(
        base_dir="runs/{short}-base",
        out_dir="runs/{short}-r1zero",
        data=DataConfig(path="runs/data/gsm8k_train.jsonl"),  # GSM8K's 7,473 problems (the shared data folder)
        prompts_per_step=PLAN["batch"],
        reward_weights="accuracy=1,format=1",
        trainer=TrainerConfig(steps={steps}, checkpoint_every=50, mesh=PLAN["mesh"]),
        optim=OptimConfig(learning_rate=3e-6, schedule="constant", weight_decay=0.0),
        grpo=GRPOConfig(group_size=PLAN["group"], minibatches=PLAN["minibatches"], beta=PLAN["beta"], ref_refresh=400),
        rollout=RolloutConfig(temperature=1.0, top_p=1.0, max_new_tokens=PLAN["max_new_tokens"],
                              max_prompt_tokens=PLAN["prompt_len"]),
        model=ModelOverrides(remat=PLAN["remat"], dtype=PLAN["dtype"]),
    )
'''

def kw_text(kw):
    text = ", ".join(f"{k}={v!r}".replace("'", '"') for k, v in kw.items())
    return "\n" + textwrap.fill(text, 100, initial_indent="    ", subsequent_indent="    ") + "\n"

def cmd_text(kw, device):
    parts = [f"r1jax plan --model {kw['model_name']} --mesh {kw['mesh']} --stage {kw['stage']} --batch {kw['batch']}"]
    if kw["stage"] == "grpo":
        parts.append(f"--group {kw['group']} --minibatches {kw['minibatches']}")
    parts.append(f"--prompt-len {kw['prompt_len']} --max-new-tokens {kw['max_new_tokens']} "
                 f"--param-dtype {kw['param_dtype']} --dtype {kw['dtype']} --device {device}")
    return " \\\n        ".join(parts)

def write(stem, template, kw, device, **fmt):
    p = P.plan(**kw)
    table = textwrap.indent(P.format_plan(p, device), "    ")
    text = template.format(plan_kwargs=kw_text(kw), device=device, table=table, cmd=cmd_text(kw, device),
                           stem=stem, **fmt)
    open(f"experiments/{stem}.py", "w").write(text)
    print(stem, P.fits(p, device))

SFT = dict(stage="sft", prompt_len=1024, max_new_tokens=15360, param_dtype="float32", dtype="bfloat16", remat=True)
STRETCH = ("\n\nQwen2.5-Math's 4k context is stretched to 16k tokens by this SFT, as in the released\n"
           "distilled models.")
LLAMA_70B = ("\n\nThe paper picks Llama-3.3-70B-Instruct because its reasoning is slightly better than\n"
             "Llama-3.1's.")
students = [  # stem, preset, HF name, mesh, batch, device, lr, the paper's model, a note
    ("students_qwen_math_1_5b", "qwen2.5-math-1.5b", "Qwen/Qwen2.5-Math-1.5B", "data=1,fsdp=16,tensor=1", 16,
     "v5p-32", 1e-5, "DeepSeek-R1-Distill-Qwen-1.5B.", STRETCH),
    ("students_qwen_math_7b", "qwen2.5-math-7b", "Qwen/Qwen2.5-Math-7B", "data=1,fsdp=16,tensor=2", 16,
     "v5p-64", 1e-5, "DeepSeek-R1-Distill-Qwen-7B.", STRETCH),
    ("students_qwen_14b", "qwen2.5-14b", "Qwen/Qwen2.5-14B", "data=1,fsdp=32,tensor=2", 32,
     "v5p-128", 1e-5, "DeepSeek-R1-Distill-Qwen-14B.", ""),
    ("students_qwen_32b", "qwen2.5-32b", "Qwen/Qwen2.5-32B", "data=1,fsdp=64,tensor=2", 64,
     "v5p-256", 1e-5, "DeepSeek-R1-Distill-Qwen-32B.", ""),
    ("students_llama_8b", "llama3.1-8b", "meta-llama/Llama-3.1-8B", "data=1,fsdp=16,tensor=2", 16,
     "v5p-64", 1e-5, "DeepSeek-R1-Distill-Llama-8B.", ""),
    ("students_llama_70b", "llama3.3-70b", "meta-llama/Llama-3.3-70B-Instruct", "data=1,fsdp=64,tensor=4", 64,
     "v5p-512", 5e-6, "DeepSeek-R1-Distill-Llama-70B.", LLAMA_70B),
]
for stem, preset, hf, mesh, batch, dev, lr, name, note in students:
    kw = dict(model_name=preset, mesh=mesh, batch=batch, **SFT)
    kw = {k: kw[k] for k in ("model_name", "mesh", "stage", "batch", "prompt_len", "max_new_tokens", "param_dtype",
                             "dtype", "remat")}
    write(stem, STUDENT, kw, dev, title=f"Distil DeepSeek-R1 into {hf.split('/')[1]} by SFT (the paper's {name[:-1]}).",
          hf=hf, lr=lr, note=note, hf_dir=hf.split("/")[1], short=stem.removeprefix("students_"))

for stem, preset, hf, mesh, dev, short, steps in [
    ("r1_zero_qwen_math_1_5b", "qwen2.5-math-1.5b", "Qwen/Qwen2.5-Math-1.5B", "data=1,fsdp=16,tensor=1", "v4-32",
     "qwen-math-1.5b", 1000),
    ("r1_zero_qwen_math_7b", "qwen2.5-math-7b", "Qwen/Qwen2.5-Math-7B", "data=1,fsdp=32,tensor=1", "v4-64",
     "qwen-math-7b", 1000)]:
    kw = dict(model_name=preset, mesh=mesh, stage="grpo", batch=32, group=16, minibatches=16, prompt_len=512,
              max_new_tokens=3584, param_dtype="float32", dtype="bfloat16", remat=True, beta=0.001)
    paper = dict(kw, mesh="data=1,fsdp=64,tensor=1", minibatches=8, max_new_tokens=32256)
    pp = P.plan(**paper)
    print(stem, "at 32k", P.fits(pp, "v5p-128"))
    write(stem, R1ZERO, kw, dev, title=f"R1-Zero-style GRPO of {hf.split('/')[1]} on a {dev} slice.",
          hf=hf, hf_dir=hf.split("/")[1], short=short, steps=steps, plan_paper_kwargs=kw_text(paper),
          device_paper="v5p-128", cmd_paper=cmd_text(paper, "v5p-128"),
          table_paper=textwrap.indent(P.format_plan(pp, "v5p-128"), "    "))
