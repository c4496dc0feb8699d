"""One GRPO iteration: r1jax against TRL's `GRPOTrainer` and google-tunix's `GRPOLearner`.

    python benchmarks/bench_grpo.py [--iters 3] [--dtype float32|bfloat16] [--threads 0|1|2]
        [--systems r1jax,trl,tunix]
        [--r1jax-python .venv/bin/python] [--trl-python /work/trl-venv/bin/python]
        [--tunix-python /work/tunix-venv/bin/python]

Run it with the r1jax venv's python: it writes one random Qwen2 (hidden 256, 4 layers, 4/2
heads, ff 768, vocab 1024, untied head: 3.67M params) with transformers into a temp dir, plus a
word-level tokenizer whose token i >= 3 is the word "t{i}" (0-2: <pad>, </s>, <unk>), then runs
itself once per system in that system's venv (`--system trl` etc.), each loading the same
weights (r1jax through `r1jax.hf.load_hf`, tunix through its Qwen2 safetensors loader). Every
system does the same iteration on CPU: 2 prompts of 16 tokens x 8 samples = 16 rollouts, 128
completion tokens each (no row can stop early: r1jax gets no stop token, TRL `min_new_tokens`,
tunix a stop id the model cannot emit), temperature 1, a cheap rule reward (share of even token
ids), group advantages (std-scaled), one policy update (clip at global norm 1, AdamW, beta 0, so
no reference model; per-sequence token mean, eps 0.2).

The time per iteration is the median of `--iters` after one warm-up iteration (compilation),
split into generation and update where the system allows: r1jax's `generate` is the sampler
alone (its reward and advantages are a separate ~1 ms), TRL's and tunix's include their reward
and advantage code, which they run in the same call; TRL's update is its step minus that.
Each column is its own median, so they need not add up. For r1jax it also prints the update's
matmuls timed alone and summed (`bench_flops.step_dots`): the update's floor with XLA's
matmuls (in bfloat16, the batched ones with a float32 result, which XLA's CPU runtime cannot run
alone, are timed with a bfloat16 result: `bench_flops.dots_alone_seconds`). `--dtype bfloat16`
runs every system in bfloat16 mixed precision with float32 weights (r1jax `ModelConfig.dtype`,
TRL `bf16=True`, which is TRL's default, through torch autocast; tunix's model `dtype`); the
default is float32 throughout. `--threads N` sets every system to N
CPU threads (OMP/MKL and torch; 1 also makes XLA's CPU backend single-threaded); the default 0
leaves each library's own. On a machine shared with other work, torch's default of one thread
per core can stall badly (its OpenMP threads wait on each other): compare with `--threads 1`.
A system whose venv is missing is reported as "not installed"; one that fails prints its error
and "failed".
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

Q, G, P, N = 2, 8, 16, 128  # prompts, group size, prompt tokens, completion tokens
VOCAB = 1024
PAD, EOS, UNK = 0, 1, 2  # the tokenizer's <pad>, </s>, <unk>; prompts use ids 3 and up
LR = 1e-5
HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent


def prompt_ids():
    import numpy as np
    return np.random.default_rng(0).integers(3, VOCAB, (Q, P)).astype(np.int32)


def reward_rule(token_rows) -> list[float]:
    """The cheap rule reward all systems use: the share of even token ids in a completion."""
    return [sum(1 for t in row if t % 2 == 0) / max(len(row), 1) for row in token_rows]


def text_ids(text: str) -> list[int]:
    return [int(w[1:]) for w in text.split() if w.startswith("t") and w[1:].isdigit()]


def make_model(directory: str) -> int:
    """Random Qwen2 + word-level tokenizer saved to `directory`; returns the parameter count."""
    import tokenizers
    import torch
    import transformers
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(vocab_size=VOCAB, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                   tie_word_embeddings=False, bos_token_id=None, eos_token_id=EOS,
                                   pad_token_id=PAD, torch_dtype="float32")
    model = transformers.Qwen2ForCausalLM(cfg)
    model.save_pretrained(directory)
    vocab = {"<pad>": PAD, "</s>": EOS, "<unk>": UNK, **{f"t{i}": i for i in range(3, VOCAB)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.decoder = tokenizers.decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                                unk_token="<unk>", padding_side="left")
    fast.save_pretrained(directory)
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------- r1jax

def run_r1jax(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from r1jax import hf, losses, sampling, sharding, train
    from r1jax.config import MeshConfig, override

    cfg, params = hf.load_hf(args.model_dir)
    cfg = override(cfg, scan_layers=False, dtype=args.dtype)  # scan_layers: r1jax's CPU setting
    grpo = train.GRPOConfig(beta=0.0)  # paper defaults otherwise: eps 0.2, k3 (unused), seq-mean-token-mean
    tx = train.make_optimizer(train.OptimConfig(learning_rate=LR, warmup_steps=0, schedule="constant",
                                                weight_decay=0.0), total_steps=1000)
    mesh = sharding.make_mesh(MeshConfig(data=jax.device_count()))
    state_sh = train.state_shardings(mesh, cfg, tx)
    state = jax.jit(lambda p: train.init_state(cfg, tx, None, params=p), out_shardings=state_sh)(params)
    sampler = sampling.make_sampler(cfg, sampling.SamplingConfig(max_new_tokens=N, temperature=1.0), group_size=G)
    example = {"tokens": np.zeros((Q * G, P + N), np.int32), "mask": np.zeros((Q * G, P + N), bool),
               "completion_mask": np.zeros((Q * G, N), np.float32), "old_logp": np.zeros((Q * G, N), np.float32),
               "ref_logp": np.zeros((Q * G, N), np.float32), "advantages": np.zeros((Q * G,), np.float32)}
    step = functools.partial(train.grpo_train_step, model_cfg=cfg, tx=tx, cfg=grpo)
    update = train.compile_step(step, mesh, state_sh, train.batch_shardings(mesh, example))
    prompts = prompt_ids()
    pmask = np.ones_like(prompts, bool)

    times = []
    for it in range(args.iters + 1):
        t0 = time.perf_counter()
        roll = jax.device_get(sampler(state.params, prompts, pmask, jax.random.key(it)))
        t1 = time.perf_counter()
        lengths = np.asarray(roll.lengths)
        assert int(lengths.sum()) == Q * G * N, lengths
        rewards = np.asarray(reward_rule(roll.tokens.tolist()), np.float32)
        adv = np.asarray(losses.group_advantages(jnp.asarray(rewards), G), np.float32)
        cmask = (np.arange(N)[None] < lengths[:, None]).astype(np.float32)
        batch = {"tokens": np.concatenate([np.repeat(prompts, G, 0), roll.tokens], 1),
                 "mask": np.concatenate([np.repeat(pmask, G, 0), cmask > 0], 1), "completion_mask": cmask,
                 "old_logp": np.asarray(roll.logprobs), "ref_logp": np.zeros_like(roll.logprobs),
                 "advantages": adv}
        t2 = time.perf_counter()
        state, metrics = update(state, batch)
        metrics = jax.device_get(metrics)
        t3 = time.perf_counter()
        if it:  # the first iteration compiles
            times.append({"generate": t1 - t0, "reward": t2 - t1, "update": t3 - t2, "total": t3 - t0})
    assert np.isfinite(metrics["loss"])
    # The update's floor with XLA's matmuls: each of its matmuls timed alone, summed (bench_flops)
    import bench_flops
    with jax.set_mesh(mesh):
        dots = bench_flops.step_dots(step, state, batch)
    out = summarize(times, extra=f"jax {jax.__version__}, {jax.device_count()} {jax.devices()[0].platform} device")
    substituted: list = []
    alone = bench_flops.dots_alone_seconds(dots, 11, substituted)
    return {**out, "update_matmuls_alone": alone, "matmuls": sum(dots.values()),
            "matmuls_substituted": sum(dots[k] for k in substituted)}


# ------------------------------------------------------------------------------------------- TRL

def run_trl(args) -> dict:
    import datasets
    import torch
    import transformers
    import trl

    if args.threads:
        torch.set_num_threads(args.threads)
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(args.model_dir)  # Auto* would pick Qwen2's BPE
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    texts = [" ".join(f"t{i}" for i in row) for row in prompt_ids().tolist()]
    assert [tok(t, add_special_tokens=True)["input_ids"] for t in texts] == prompt_ids().tolist()
    steps = args.iters + 1
    # the same Q prompts every step, in order (RepeatSampler gives each one G consecutive rows)
    data = datasets.Dataset.from_dict({"prompt": texts * steps})

    def reward(completions, completion_ids, **kw):
        assert all(len(c) == N for c in completion_ids), [len(c) for c in completion_ids]
        return reward_rule(completion_ids)

    with tempfile.TemporaryDirectory() as out:
        config = trl.GRPOConfig(
            output_dir=out, use_cpu=True, report_to="none", save_strategy="no", logging_steps=10 ** 6,
            per_device_train_batch_size=Q * G, gradient_accumulation_steps=1, num_generations=G,
            steps_per_generation=1, num_iterations=1, max_steps=steps, learning_rate=LR, weight_decay=0.0,
            lr_scheduler_type="constant", max_grad_norm=1.0, beta=0.0, loss_type="grpo", scale_rewards="group",
            epsilon=0.2, max_completion_length=N, temperature=1.0, top_p=1.0, top_k=0,
            generation_kwargs={"min_new_tokens": N}, shuffle_dataset=False, dataloader_num_workers=0,
            seed=0, disable_tqdm=True, log_completions=False, bf16=args.dtype == "bfloat16")
        trainer = trl.GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=data,
                                  processing_class=tok)

        gen_times, step_times = [], []
        inner = trainer._generate_and_score_completions

        def timed_generate(*a, **k):  # generation + reward + advantages (TRL does them in one call)
            t0 = time.perf_counter()
            out_ = inner(*a, **k)
            gen_times.append(time.perf_counter() - t0)
            return out_

        trainer._generate_and_score_completions = timed_generate

        class StepTimer(transformers.TrainerCallback):
            def on_step_begin(self, *a, **k):
                self.t0 = time.perf_counter()

            def on_step_end(self, *a, **k):  # after the optimizer step
                step_times.append(time.perf_counter() - self.t0)

        trainer.add_callback(StepTimer())
        trainer.train()
    assert len(step_times) == steps == len(gen_times), (step_times, gen_times)
    times = [{"generate": g, "update": s - g, "total": s} for g, s in zip(gen_times[1:], step_times[1:])]
    return summarize(times, extra=f"trl {trl.__version__}, transformers {transformers.__version__}, torch "
                                  f"{torch.__version__} ({torch.get_num_threads()} threads); generate includes "
                                  "TRL's reward and advantage computation, update = step - generate")


# ----------------------------------------------------------------------------------------- tunix

def run_tunix(args) -> dict:
    import jax
    import numpy as np
    import optax
    import transformers
    from tunix.models.qwen2 import model as qwen2_model
    from tunix.models.qwen2 import params as qwen2_params
    from tunix.rl import rl_cluster as rl_cluster_lib
    from tunix.rl.grpo import grpo_learner
    from tunix.rl.rollout import base_rollout

    hf_cfg = json.loads((Path(args.model_dir) / "config.json").read_text())
    rope = hf_cfg.get("rope_parameters") or {}
    cfg = qwen2_model.ModelConfig(
        num_layers=hf_cfg["num_hidden_layers"], vocab_size=hf_cfg["vocab_size"], embed_dim=hf_cfg["hidden_size"],
        hidden_dim=hf_cfg["intermediate_size"], num_heads=hf_cfg["num_attention_heads"],
        head_dim=hf_cfg["hidden_size"] // hf_cfg["num_attention_heads"],
        num_kv_heads=hf_cfg["num_key_value_heads"], rope_theta=int(hf_cfg.get("rope_theta", rope.get("rope_theta"))),
        norm_eps=hf_cfg["rms_norm_eps"], use_tied_embedding=hf_cfg["tie_word_embeddings"],
        dtype=jax.numpy.dtype(args.dtype))
    mesh = jax.make_mesh((1, 1), ("fsdp", "tp"), devices=jax.devices()[:1],
                         axis_types=(jax.sharding.AxisType.Auto,) * 2)  # as tunix.utils.mesh builds it
    actor = qwen2_params.create_model_from_safe_tensors(args.model_dir, cfg, mesh)
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(args.model_dir)
    texts = [" ".join(f"t{i}" for i in row) for row in prompt_ids().tolist()]
    steps = args.iters + 1

    # the same optimizer as r1jax: global-norm clipping at 1, then AdamW without weight decay
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(LR, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.0))
    with tempfile.TemporaryDirectory() as out:
        from tunix.sft import metrics_logger
        cluster_config = rl_cluster_lib.ClusterConfig(
            role_to_mesh={rl_cluster_lib.Role.ACTOR: mesh, rl_cluster_lib.Role.REFERENCE: mesh,
                          rl_cluster_lib.Role.ROLLOUT: mesh},
            rollout_engine="vanilla", offload_to_cpu=False,
            training_config=rl_cluster_lib.RLTrainingConfig(
                actor_optimizer=tx, eval_every_n_steps=10 ** 6, max_steps=steps,
                metrics_logging_options=metrics_logger.MetricsLoggerOptions(log_dir=out, flush_every_n_steps=10 ** 6),
                pbar_description=None),
            # no EOS can stop a row: the only stop id is one the model cannot sample (== vocab size)
            rollout_config=base_rollout.RolloutConfig(
                max_tokens_to_generate=N, max_prompt_length=P, kv_cache_size=P + N, temperature=1.0, top_p=1.0,
                top_k=None, eos_tokens=[VOCAB]))
        cluster = rl_cluster_lib.RLCluster(actor=actor, reference=None, tokenizer=tok, cluster_config=cluster_config)
        learner = grpo_learner.GRPOLearner(
            rl_cluster=cluster, algo_config=grpo_learner.GRPOConfig(num_generations=G, num_iterations=1, beta=0.0,
                                                                   epsilon=0.2),
            reward_fns=lambda prompts, completions, **kw: reward_rule([text_ids(c) for c in completions]))

        gen_times, upd_times, step_times, sync_times, lengths = [], [], [], [], []

        def timed(fn, sink, post=None):
            def wrapper(*a, **k):
                t0 = time.perf_counter()
                out_ = fn(*a, **k)
                if post:
                    post(out_)
                sink.append(time.perf_counter() - t0)
                return out_
            return wrapper

        # generation + rewards + advantages (tunix does them in one call); the update; one whole step
        learner._generate_and_compute_advantage = timed(
            learner._generate_and_compute_advantage, gen_times,
            lambda ex: lengths.append(np.asarray(ex.completion_mask).sum(1).tolist()))
        cluster.update_actor = timed(cluster.update_actor, upd_times, lambda _: jax.block_until_ready(
            jax.tree.leaves(cluster.actor_trainer.model)))
        learner._run_global_step = timed(learner._run_global_step, step_times)
        cluster.sync_weights = timed(cluster.sync_weights, sync_times)  # called after a step if not shared
        learner.train([{"prompts": np.array(texts)} for _ in range(steps)])  # an array: tunix np.repeat()s it
    assert len(step_times) == steps, (step_times, gen_times, upd_times)
    n_tokens = [sum(x) for x in lengths]
    sync_times = sync_times or [0.0] * steps
    times = [{"generate": g, "update": u, "sync": y, "total": s + y}
             for g, u, s, y in zip(gen_times[1:], upd_times[1:], step_times[1:], sync_times[1:])]
    return summarize(times, extra=f"google-tunix {_version('google-tunix')}, jax {jax.__version__}; generate includes "
                                  f"tunix's reward and advantage computation; completion tokens per step {n_tokens} "
                                  "(mask counts non-pad tokens); "
                                  f"weights synced to the sampler: {learner.should_sync_weights}")


def _version(dist: str) -> str:
    from importlib.metadata import version
    return version(dist)


# ---------------------------------------------------------------------------------- orchestration

def summarize(times: list[dict], extra: str = "") -> dict:
    out = {k: statistics.median(t[k] for t in times) for k in times[0]}
    out["iters"] = len(times)
    out["all_totals"] = [round(t["total"], 3) for t in times]
    out["info"] = extra
    return out


RUNNERS = {"r1jax": run_r1jax, "trl": run_trl, "tunix": run_tunix}


def child(args) -> None:
    result = RUNNERS[args.system](args)
    print("RESULT " + json.dumps(result), flush=True)


def child_env(threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": ""}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if threads == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                            "intra_op_parallelism_threads=1").strip()
    return env


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", choices=list(RUNNERS), help="run one system here (used by the orchestrator)")
    ap.add_argument("--model-dir", help="the checkpoint to load (made by the orchestrator)")
    ap.add_argument("--iters", type=int, default=3, help="measured iterations after one warm-up")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="compute dtype of every system (weights stay float32)")
    ap.add_argument("--systems", default="r1jax,trl,tunix")
    ap.add_argument("--r1jax-python", default=str(ROOT / ".venv/bin/python"))
    ap.add_argument("--trl-python", default="/work/trl-venv/bin/python")
    ap.add_argument("--tunix-python", default="/work/tunix-venv/bin/python")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per system")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for every system (OMP/MKL threads and torch.set_num_threads; 1 also makes XLA's "
                         "CPU backend single-threaded); 0: each library's default")
    args = ap.parse_args()
    if args.system:
        return child(args)

    pythons = {"r1jax": args.r1jax_python, "trl": args.trl_python, "tunix": args.tunix_python}
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    results: dict[str, dict | str] = {}
    with tempfile.TemporaryDirectory() as d:
        n_params = make_model(d)
        for name in systems:
            py = pythons[name]
            if not Path(py).exists():
                results[name] = "not installed"
                print(f"[{name}] {py} not found: not installed", flush=True)
                continue
            cmd = [py, str(HERE), "--system", name, "--model-dir", d, "--iters", str(args.iters),
                   "--threads", str(args.threads), "--dtype", args.dtype]
            print(f"[{name}] {' '.join(cmd)}", flush=True)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT,
                                      env=child_env(args.threads))
            except subprocess.TimeoutExpired:
                results[name] = f"failed (timeout {args.timeout} s)"
                continue
            line = next((x for x in proc.stdout.splitlines()[::-1] if x.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                results[name] = f"failed (exit {proc.returncode})"
                print(proc.stdout[-3000:], proc.stderr[-6000:], sep="\n", flush=True)
                continue
            results[name] = json.loads(line[len("RESULT "):])
            print(f"[{name}] {results[name]}", flush=True)

    print(f"\n{Q} prompts x {G} samples x {N} forced completion tokens (prompt {P}), one update, beta 0; "
          f"random Qwen2 {n_params / 1e6:.2f}M params, {args.dtype} compute, CPU, {os.cpu_count()} cores, "
          f"threads {args.threads or 'library defaults'}; "
          f"median of {args.iters} iterations after a warm-up\n")
    print("| system | generate s | update s | total s | ratio vs r1jax |\n|---|---|---|---|---|")
    base = results.get("r1jax")
    for name in systems:
        r = results[name]
        if isinstance(r, str):
            print(f"| {name} | {r} | | | |")
            continue
        ratio = f"{r['total'] / base['total']:.2f}" if isinstance(base, dict) else "-"
        gen = f"{r['generate']:.3f}" if r.get("generate") is not None else "-"
        upd = f"{r['update']:.3f}" if r.get("update") is not None else "-"
        print(f"| {name} | {gen} | {upd} | {r['total']:.3f} | {ratio} |")
    for name in systems:
        if isinstance(results[name], dict):
            print(f"\n{name}: {results[name].get('info', '')}; totals {results[name]['all_totals']}")
    if isinstance(base, dict):
        print(f"\nr1jax's update, its matmuls alone (each timed alone at its shapes, summed): "
              f"{base['update_matmuls_alone']:.3f} s, "
              f"{base['update_matmuls_alone'] / base['update']:.0%} of its update")
        if base.get("matmuls_substituted"):
            print(f"({base['matmuls_substituted']} of its {base['matmuls']} matmuls, bfloat16 x bfloat16 batched ones "
                  "with a float32 result, which XLA's CPU runtime runs only inside a fusion, timed with a bfloat16 "
                  "result: bench_flops.dots_alone_seconds)")
    if isinstance(base, dict) and isinstance(results.get("trl"), dict):
        print(f"\ntarget r1jax <= 0.5 x TRL: r1jax / TRL = {base['total'] / results['trl']['total']:.2f}")


if __name__ == "__main__":
    main()
