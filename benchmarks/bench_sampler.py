"""Sampler throughput: r1jax vs `transformers` `generate`, same Qwen2 config and weights.

    python benchmarks/bench_sampler.py [--batch 16] [--new 128] [--repeats 3]

A random Qwen2 (hidden 256, 4 layers, 4/2 heads, ff 768, vocab 1024) is built with
transformers, saved, and loaded into r1jax with `r1jax.hf.load_hf`, so both sample from the
same weights. r1jax runs twice: with `scan_layers=False` (its CPU setting: a Python loop over
the layers, a KV cache per layer) and with the layer scan (its TPU setting); the ratio is the
loop's. Sampling is on (temperature 1, top-p 1), no stop token, so every row produces exactly
`--new` tokens. Times exclude compilation (one warm-up call each); the best of `--repeats` runs
is reported.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
import numpy as np
import torch
import transformers

from r1jax import hf, sampling
from r1jax.config import override


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    hf_cfg = transformers.Qwen2Config(vocab_size=1024, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                      tie_word_embeddings=True)
    model = transformers.Qwen2ForCausalLM(hf_cfg).eval()
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        cfg, params = hf.load_hf(d)
    prompts = np.random.default_rng(0).integers(0, 1024, (args.batch, args.prompt)).astype(np.int32)
    mask = np.ones_like(prompts, bool)
    n_tokens = args.batch * args.new

    ours = {}
    for name, scan in (("r1jax make_sampler, layer loop", False), ("r1jax make_sampler, layer scan", True)):
        sampler = sampling.make_sampler(override(cfg, scan_layers=scan),
                                        sampling.SamplingConfig(max_new_tokens=args.new, temperature=1.0))
        jax.block_until_ready(sampler(params, prompts, mask, jax.random.key(0)))  # compile
        ours[name] = []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            out = jax.block_until_ready(sampler(params, prompts, mask, jax.random.key(r + 1)))
            ours[name].append(time.perf_counter() - t0)
        assert int(out.lengths.sum()) == n_tokens

    ids = torch.tensor(prompts, dtype=torch.long)
    kw = dict(max_new_tokens=args.new, min_new_tokens=args.new, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
              attention_mask=torch.ones_like(ids), pad_token_id=0)
    with torch.no_grad():
        model.generate(ids, **{**kw, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up
        theirs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            gen = model.generate(ids, **kw)
            theirs.append(time.perf_counter() - t0)
    assert gen.shape == (args.batch, args.prompt + args.new)

    b = n_tokens / min(theirs)
    print(f"\nbatch {args.batch} x {args.new} new tokens, prompt {args.prompt}, "
          f"{sum(x.size for x in jax.tree.leaves(params)) / 1e6:.2f}M params, jax {jax.__version__} "
          f"({jax.devices()[0].platform}), torch {torch.__version__} ({torch.get_num_threads()} threads)\n")
    print("| sampler | best s | tokens/s |\n|---|---|---|")
    for name, times in ours.items():
        print(f"| {name} | {min(times):.3f} | {n_tokens / min(times):.0f} |")
    print(f"| transformers generate | {min(theirs):.3f} | {b:.0f} |")
    a = n_tokens / min(ours["r1jax make_sampler, layer loop"])
    print(f"\nratio r1jax (layer loop) / transformers: {a / b:.2f}x")


if __name__ == "__main__":
    main()
