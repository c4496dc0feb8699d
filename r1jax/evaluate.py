"""Evaluation by the paper's protocol: k samples per problem, pass@1 averaged over them, pass@k, cons@k.

Two modes, one output format:

    sample:      evaluate(EvalConfig(checkpoint="runs/r1zero", benchmark="math500,aime24"))
    score-only:  evaluate(EvalConfig(samples="other_server.jsonl", benchmark="math500"))

Samples file (the score-only input, and the `samples.jsonl` this module writes, so an
evaluation's own output can be rescored): JSON lines, one line per sample,

    {"id": "math500-test/precalculus/807.json", "completion": "<think> ... </think> <answer> ... </answer>"}

`id` is the problem's `Example.id` from `r1jax.tasks` (gsm8k-<0-based record index>,
math500-<unique_id>, aime24-<id>, amc23-<id>, <family>-<seed>-<index> for generated tasks);
a problem's samples are the lines with its id, in file order. Optional fields: `n_tokens`
(int, response length in tokens) and `truncated` (bool, stopped by the token limit); without
them lengths are reported in characters only. Any other field is ignored. A line that is not
JSON, lacks a field, has a wrongly typed field or an unknown id, and a problem without any
sample, are errors naming the file and line (or the ids); nothing is scored then.

Output, per benchmark in `<out_dir>/<benchmark>/`: samples.jsonl (id, sample, prompt,
completion, extracted answer, gold, correct, format, n_tokens, truncated), summary.json,
summary.md, chart.png; `<out_dir>/summary.{json,md}` gather the benchmarks of the call.
Summaries are written only when every problem has all its samples, so a partial result is
never presented as complete. Sampling is resumable: samples.jsonl is appended one batch of
problems at a time and a rerun samples only the problems it does not hold (with the same RNG
keys, so the result is the one an uninterrupted run gives).

Multi-host: each JAX process holds the model on its own devices and samples its share of the
batches of problems (those left are dealt out round-robin, process i taking every
process_count-th); the tokens are gathered to process 0, which decodes, scores and writes.
(Tested on one process with 8 devices; not yet run on a real pod.)
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import math
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from r1jax.rewards import accuracy
from r1jax.rewards import format as fmt
from r1jax.rewards.math import match_batch
from r1jax.rewards.workers import TASKS, WorkerPool
from r1jax.tasks import BENCHMARKS, FAMILIES, Example, extract_countdown_expression, generate, load_benchmark
from r1jax.tasks.benchmarks import jsonl_objects
from r1jax.tokenizer import load_tokenizer, prompt_tokens

__all__ = ["EvalConfig", "pass_at_k", "majority_votes", "cons_at_k", "load_problems", "read_samples",
           "score_samples", "summarize", "summary_markdown", "evaluate", "DEFAULT_K"]

# Samples per problem when EvalConfig.k is 0: the paper's 64 for AIME, 16 (its MATH-500 value) elsewhere.
DEFAULT_K = {"aime24": 64}
# EvalConfig.template -> r1jax.tokenizer.render_prompt's name (the first two are this command's older spellings)
TEMPLATES = {"r1_zero": "r1-zero", "chat": "r1-chat", "r1-zero": "r1-zero", "r1-chat": "r1-chat", "model": "model",
             "none": "none"}


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Every field is a flag of `r1jax eval` (`--max-new-tokens` -> max_new_tokens)."""

    out_dir: str = "runs/eval"
    benchmark: str = "math500"  # comma-separated: gsm8k, math500, aime24, amc23 or a task family (chain, ...)
    checkpoint: str = ""  # a stage output (tokenizer.model + ckpt/), a ckpt/ folder, or a Hugging Face folder
    tokenizer: str = ""  # default: tokenizer.model beside the checkpoint (or its base's), or the HF folder's
    samples: str = ""  # score-only mode: a JSONL of completions made elsewhere (format: module docstring)
    k: int = 0  # samples per problem; 0: DEFAULT_K (64 for AIME, 16 otherwise)
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 1024  # the paper uses 32768 for its long-CoT models
    template: str = "r1_zero"  # r1_zero (the paper's), chat (R1's <think> turn), model (its chat template), none
    answer_mode: str = "auto"  # answer extraction: auto, answer_tag, boxed, last_number
    limit: int = 0  # evaluate the first `limit` problems only; 0: all
    n_generated: int = 100  # problems drawn for a generated task family
    task_seed: int = 1000  # their seed; training draws use small seeds (RLConfig.trainer.seed = 0)
    seed: int = 0  # sampling RNG
    batch_size: int = 8  # problems per sampler call (k rows each)
    timeout: float = 1.0  # seconds per answer check; a check that takes longer scores 0
    data_dir: str = ""  # real benchmark files (default: r1jax.tasks.default_data_dir())
    mesh: str = ""  # this process's devices, e.g. 'data=2,tensor=4'; default: all local devices on 'data'

    def __post_init__(self):
        if self.template not in TEMPLATES:
            raise ValueError(f"EvalConfig.template must be one of {', '.join(TEMPLATES)}, got {self.template!r}")
        if self.answer_mode not in ("auto", "answer_tag", "boxed", "last_number"):
            raise ValueError(f"EvalConfig.answer_mode must be auto, answer_tag, boxed or last_number, "
                             f"got {self.answer_mode!r}")
        for name, lo in (("k", 0), ("limit", 0), ("n_generated", 1), ("batch_size", 1), ("max_new_tokens", 1)):
            if getattr(self, name) < lo:
                raise ValueError(f"EvalConfig.{name} must be >= {lo}, got {getattr(self, name)}")

    def names(self) -> list[str]:
        return [b.strip() for b in self.benchmark.split(",") if b.strip()]


# ----------------------------------------------------------------------------- metrics

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k)
    (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", eq. 1).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), the same ratio written as c factors in [0, 1],
    so nothing overflows (C(1024, 512) has 307 digits) and the error stays at rounding level.
    """
    for name, v in (("n", n), ("c", c), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"pass_at_k: {name} must be an int, got {v!r}")
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def majority_votes(answer_lists: Sequence[Sequence[str | None]],
                   same: Callable[[list[tuple[str, str]]], list[bool]] | None = None,
                   timeout: float = 1.0) -> list[int | None]:
    """For each problem's answers (one per sample, None = no answer), the index of the sample
    whose answer wins the majority vote, or None when no sample has an answer.

    Votes are counted per class of equivalent answers, not per string ("0.5" and "\\frac{1}{2}"
    vote together). Identical strings share a class; distinct strings are compared with
    `same([(a, b), ...])` (default: `r1jax.rewards.math.match_batch`, the checker that grades
    correctness, with a as the reference). Classes form greedily in sample order: an answer
    joins the first class whose first answer it matches, else opens a new class (the checker
    is not guaranteed transitive, so classes are anchored on one answer).

    Tie break: among classes with the most votes, the one whose first sample came earliest
    wins. Sample order is generation order, so the rule is deterministic and does not
    depend on the answers' text. The returned index is that first sample.
    """
    uniq = [list(dict.fromkeys(a for a in answers if a)) for answers in answer_lists]
    pairs = [(u[i], u[j]) for u in uniq for j in range(len(u)) for i in range(j)]
    if same is None:
        same = lambda ps: match_batch([a for a, _ in ps], [b for _, b in ps], timeout=timeout)  # noqa: E731
    verdicts = iter(same(pairs) if pairs else [])
    out: list[int | None] = []
    for answers, u in zip(answer_lists, uniq):
        matches = {(i, j): next(verdicts) for j in range(len(u)) for i in range(j)}
        leaders: list[int] = []  # indices into u of each class's first answer
        cls_of: dict[str, int] = {}
        for j, a in enumerate(u):
            leader = next((i for i in leaders if matches[i, j]), None)
            if leader is None:
                leaders.append(j)
            cls_of[a] = j if leader is None else leader
        votes: Counter = Counter()
        first: dict[int, int] = {}
        for idx, a in enumerate(answers):
            if a:
                votes[cls_of[a]] += 1
                first.setdefault(cls_of[a], idx)
        out.append(first[min(votes, key=lambda c: (-votes[c], first[c]))] if votes else None)
    return out


def cons_at_k(answers: Sequence[str | None], gold: str, timeout: float = 1.0) -> bool:
    """Is the majority answer (see `majority_votes`) of one problem's k samples equivalent to gold?"""
    winner = majority_votes([answers], timeout=timeout)[0]
    return winner is not None and match_batch([gold], [answers[winner]], timeout=timeout)[0]


# ----------------------------------------------------------------------------- problems and scoring

def load_problems(name: str, cfg: EvalConfig) -> list[Example]:
    """All problems of a real benchmark or generated family (not yet cut to cfg.limit)."""
    if name in BENCHMARKS:
        return load_benchmark(name, cfg.data_dir or None)
    if name in FAMILIES:
        return generate(name, cfg.n_generated, cfg.task_seed)
    raise ValueError(f"unknown benchmark {name!r}; valid names: real benchmarks {', '.join(BENCHMARKS)}; "
                     f"generated task families {', '.join(FAMILIES)}")


_POOL: WorkerPool | None = None


def _extract_pool() -> WorkerPool:
    # Extraction runs regexes over hostile text up to 200k characters: it gets the same hard
    # time limit in a worker process as grading (r1jax.rewards.workers explains why processes).
    global _POOL
    if _POOL is None:
        _POOL = WorkerPool(tasks={**TASKS, "math.extract": ("r1jax.rewards.math", "final_answer")})
        atexit.register(_POOL.close)
    return _POOL


def _extract(completions: list[str], examples: list[Example], mode: str, timeout: float) -> list[str | None]:
    """The answer each sample votes with. Countdown: its expression, spaces removed. Math: its one
    final answer (`r1jax.rewards.math.final_answer`), the answer that is graded, chosen without
    the gold: a vote that used the gold to pick among a sample's readings would count the key."""
    out: list[str | None] = [None] * len(completions)
    math_idx = []
    for i, (c, ex) in enumerate(zip(completions, examples)):
        if ex.metadata.get("family") == "countdown":
            expr = extract_countdown_expression(c)
            out[i] = expr.replace(" ", "") if expr else None
        else:
            math_idx.append(i)
    found = _extract_pool().map("math.extract", [(completions[i], mode) for i in math_idx], timeout)
    for i, answer in zip(math_idx, found):
        out[i] = answer if isinstance(answer, str) else None  # False: timed out
    return out


def score_samples(samples: list[dict], problems: dict[str, Example], cfg: EvalConfig) -> list[dict]:
    """Rows of samples.jsonl for samples {id, completion[, n_tokens, truncated]}: the extracted
    answer, correctness by `r1jax.rewards.accuracy` (the training reward's checker) and format."""
    exs = [problems[s["id"]] for s in samples]
    if cfg.answer_mode != "auto":  # `accuracy` reads the extraction mode from the example
        exs = [dataclasses.replace(ex, metadata={**ex.metadata, "answer_mode": cfg.answer_mode}) for ex in exs]
    completions = [s["completion"] for s in samples]
    correct = accuracy(completions, exs, timeout=cfg.timeout)
    extracted = _extract(completions, exs, cfg.answer_mode, cfg.timeout)
    # the chat template opens <think> in the prompt, so its outputs have R1's shape, not R1-Zero's
    form = fmt.r1_format if TEMPLATES[cfg.template] == "r1-chat" else fmt.r1_zero_format
    seen: Counter = Counter()
    rows = []
    for s, ex, ok, ans in zip(samples, exs, correct, extracted):
        rows.append({"id": ex.id, "sample": seen[ex.id], "prompt": ex.prompt, "completion": s["completion"],
                     "extracted": ans, "gold": ex.answer, "correct": bool(ok),
                     "format": bool(form(s["completion"])), "n_tokens": s.get("n_tokens"),
                     "truncated": s.get("truncated")})
        seen[ex.id] += 1
    return rows


def read_samples(path: str | Path, examples: Sequence[Example], limit: int = 0) -> list[dict]:
    """Parse a samples file (format: module docstring) against the problems `examples`.

    Lines of problems past `limit` are skipped. Raises ValueError naming file:line for a bad
    line, and the problems that have no sample.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"samples file not found: {path}")
    known = {ex.id for ex in examples}
    wanted = [ex.id for ex in (examples[:limit] if limit else examples)]
    keep = set(wanted)
    types = {"id": str, "completion": str, "n_tokens": int, "truncated": bool}
    out = []
    for where, rec in jsonl_objects(path):
        for field, typ in types.items():
            if field not in rec and field in ("id", "completion"):
                raise ValueError(f"{where}: missing field {field!r} (each line needs 'id' and 'completion')")
            v = rec.get(field)
            # bool is an int in Python; JSON true is not a token count
            if v is not None and (not isinstance(v, typ) or (typ is int and isinstance(v, bool))):
                raise ValueError(f"{where}: field {field!r} must be {typ.__name__}, got {type(v).__name__}")
        if rec["id"] not in known:
            raise ValueError(f"{where}: unknown id {rec['id']!r} (ids look like {examples[0].id!r})")
        if rec["id"] in keep:
            out.append({k: rec.get(k) for k in types})
    have = {r["id"] for r in out}
    missing = [i for i in wanted if i not in have]
    if missing:
        raise ValueError(f"{path}: {len(missing)} of {len(wanted)} problems have no sample, "
                         f"e.g. {', '.join(missing[:3])}")
    return out


# ----------------------------------------------------------------------------- summary

def _mean(xs) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


def summarize(rows: list[dict], examples: Sequence[Example], name: str, timeout: float = 1.0) -> dict:
    """The benchmark's numbers from its scored rows (every example must have at least one).

    pass@1: mean over problems of the share of correct samples; its standard error is the
    standard deviation of those shares over problems / sqrt(problems) (so it covers both the
    choice of problems and the sampling noise). pass@k for k = 1, 2, 4, ... up to the smallest
    sample count n, and n itself; cons@n: the majority answer is right.
    """
    by_id: dict[str, list[dict]] = {ex.id: [] for ex in examples}
    for r in rows:
        by_id[r["id"]].append(r)
    groups = [by_id[ex.id] for ex in examples]
    if not groups or any(not g for g in groups):
        raise ValueError(f"{name}: every problem needs at least one sample")
    n = np.array([len(g) for g in groups])
    c = np.array([sum(r["correct"] for r in g) for g in groups])
    share = c / n
    k_min = int(n.min())
    ks = sorted({2 ** i for i in range(k_min.bit_length()) if 2 ** i <= k_min} | {k_min})

    winners = majority_votes([[r["extracted"] for r in g] for g in groups], timeout=timeout)
    math_idx = [i for i, (ex, w) in enumerate(zip(examples, winners))
                if w is not None and ex.metadata.get("family") != "countdown"]
    cons = np.zeros(len(groups), bool)
    for i, w in enumerate(winners):  # countdown: any valid expression is right, so use its own check
        if w is not None and examples[i].metadata.get("family") == "countdown":
            cons[i] = groups[i][w]["correct"]
    ok = match_batch([examples[i].answer for i in math_idx], [groups[i][winners[i]]["extracted"] for i in math_idx],
                     timeout=timeout) if math_idx else []
    cons[math_idx] = ok

    flat = [r for g in groups for r in g]
    chars = [len(r["completion"]) for r in flat]
    tokens = [r["n_tokens"] for r in flat if r.get("n_tokens") is not None]
    trunc = [r["truncated"] for r in flat if r.get("truncated") is not None]
    summary = {
        "benchmark": name, "problems": len(groups), "samples": int(n.sum()), "k": k_min,
        "pass@1": float(share.mean()),
        "pass@1_stderr": float(share.std(ddof=1) / math.sqrt(len(groups))) if len(groups) > 1 else 0.0,
        "pass@k": {str(k): float(np.mean([pass_at_k(int(a), int(b), k) for a, b in zip(n, c)])) for k in ks},
        f"cons@{k_min}": float(cons.mean()),
        "format_rate": _mean([r["format"] for r in flat]),
        "answer_rate": _mean([r["extracted"] is not None for r in flat]),
        "length_chars_mean": _mean(chars), "length_chars_max": int(max(chars)),
        # token counts and truncation are known for our own samples, or when the file gives them
        "length_tokens_mean": _mean(tokens) if len(tokens) == len(flat) else None,
        "length_tokens_max": int(max(tokens)) if tokens and len(tokens) == len(flat) else None,
        "truncation_rate": _mean(trunc) if len(trunc) == len(flat) else None,
    }
    for key in ("subject", "level"):  # MATH-500's tables
        if all(key in ex.metadata for ex in examples):
            table: dict = {}
            for ex, s in zip(examples, share):
                table.setdefault(str(ex.metadata[key]), []).append(float(s))
            summary[f"by_{key}"] = {k: {"problems": len(v), "pass@1": float(np.mean(v))}
                                    for k, v in sorted(table.items())}
    return summary


def _fmt(x, pct=True) -> str:
    return "-" if x is None else f"{100 * x:.1f}" if pct else f"{x:.0f}"


def summary_markdown(summaries: list[dict]) -> str:
    """A table, one row per benchmark (percentages), then the per-subject / per-level tables."""
    lines = ["| benchmark | problems | k | pass@1 (± s.e.) | cons@k | pass@k | format | answered | "
             "mean len | max len | truncated |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        unit = "tok" if s["length_tokens_mean"] is not None else "chars"
        mean_len = s["length_tokens_mean"] if unit == "tok" else s["length_chars_mean"]
        max_len = s["length_tokens_max"] if unit == "tok" else s["length_chars_max"]
        top, cons = max(s["pass@k"], key=int), s[f"cons@{s['k']}"]
        lines.append(f"| {s['benchmark']} | {s['problems']} | {s['k']} | {_fmt(s['pass@1'])} ± "
                     f"{_fmt(s['pass@1_stderr'])} | {_fmt(cons)} | "
                     f"{_fmt(s['pass@k'][top])} (k={top}) | {_fmt(s['format_rate'])} | {_fmt(s['answer_rate'])} | "
                     f"{_fmt(mean_len, False)} {unit} | {_fmt(max_len, False)} {unit} | "
                     f"{_fmt(s['truncation_rate'])} |")
    for s in summaries:
        for key in ("subject", "level"):
            if f"by_{key}" in s:
                lines += ["", f"{s['benchmark']} by {key}:", "", f"| {key} | problems | pass@1 |", "|---|---|---|"]
                lines += [f"| {k} | {v['problems']} | {_fmt(v['pass@1'])} |" for k, v in s[f"by_{key}"].items()]
    return "\n".join(lines) + "\n"


def _plot(summary: dict, path: Path) -> None:
    """pass@k against k with cons@k, and pass@1 by level when the benchmark has levels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = summary.get("by_level")
    fig, axes = plt.subplots(1, 2 if levels else 1, figsize=(10 if levels else 5.5, 3.5), squeeze=False)
    ax = axes[0, 0]
    ks = sorted(summary["pass@k"], key=int)
    ax.plot([int(k) for k in ks], [100 * summary["pass@k"][k] for k in ks], "o-", label="pass@k")
    k = summary["k"]
    ax.plot([k], [100 * summary[f"cons@{k}"]], "s", label=f"cons@{k}")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 100)
    ax.set_xlabel("k")
    ax.set_ylabel("%")
    ax.set_title(f"{summary['benchmark']}: {summary['problems']} problems")
    ax.grid(alpha=0.3)
    ax.legend()
    if levels:
        ax = axes[0, 1]
        ax.bar(list(levels), [100 * v["pass@1"] for v in levels.values()])
        ax.set_ylim(0, 100)
        ax.set_xlabel("level")
        ax.set_title("pass@1 by level")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_summary(bench_dir: Path, summary: dict) -> None:
    (bench_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (bench_dir / "summary.md").write_text(f"# {summary['benchmark']}\n\n" + summary_markdown([summary]))
    _plot(summary, bench_dir / "chart.png")


def _write_rows(path: Path, rows: list[dict], mode: str = "w") -> None:
    with path.open(mode, encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


# ----------------------------------------------------------------------------- sampling

def _run_config(cfg: EvalConfig, name: str, k: int) -> dict:
    """The settings a benchmark's samples depend on; a resumed run must have the same ones."""
    skip = ("out_dir", "benchmark", "samples", "timeout", "data_dir", "mesh", "k")
    return {"benchmark": name, "k": k, **{f: v for f, v in dataclasses.asdict(cfg).items() if f not in skip}}


def _check_out_dir(bench_dir: Path, run_cfg: dict | None) -> None:
    """A sampled run's folder holds config.json beside samples.jsonl, a scored file's has none.
    Neither mode may overwrite the other's samples, and a sampled run resumes only the same
    evaluation (run_cfg: `_run_config`; None in score-only mode)."""
    sampled, has_rows = (bench_dir / "config.json").exists(), (bench_dir / "samples.jsonl").exists()
    if (run_cfg is None and sampled) or (run_cfg is not None and has_rows and not sampled):
        raise ValueError(f"{bench_dir} holds the samples of a {'sampled' if sampled else 'score-only'} "
                         "evaluation; use another out_dir")
    saved = json.loads((bench_dir / "config.json").read_text()) if sampled else None
    if run_cfg is not None and saved is not None and saved != run_cfg:
        diff = [f"{f}: saved {saved.get(f)!r}, now {run_cfg.get(f)!r}"
                for f in sorted(set(saved) | set(run_cfg)) if saved.get(f) != run_cfg.get(f)]
        raise ValueError(f"{bench_dir} holds samples of a different evaluation; use another out_dir. "
                         "Differences:\n  " + "\n  ".join(diff))


def _finished(path: Path, k: int) -> dict[str, list[dict]]:
    """Problems of samples.jsonl that hold all k samples. A torn last line (the run was killed
    mid-write) and incomplete problems are dropped from the file, then sampled again."""
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise ValueError(f"{path}:{i + 1}: invalid JSON in the middle of the file; not resuming") from None
    by_id: dict[str, list[dict]] = {}
    for r in rows:
        by_id.setdefault(r["id"], []).append(r)
    done = {i: rs for i, rs in by_id.items() if len(rs) == k}
    if sum(map(len, done.values())) != len(lines):
        _write_rows(path, [r for rs in done.values() for r in rs])
    return done


def _load_model(cfg: EvalConfig, mesh):
    """(model config, params on `mesh`, tokenizer) for cfg.checkpoint; mismatches are errors."""
    from r1jax import checkpoint
    from r1jax.config import ModelConfig, from_dict

    path = Path(cfg.checkpoint)
    if not cfg.checkpoint or not path.exists():
        raise FileNotFoundError(f"checkpoint {cfg.checkpoint!r} not found (a stage output, ckpt/ folder or HF folder)")
    if (path / "config.json").is_file():  # a Hugging Face model folder
        from r1jax import hf
        model_cfg, params = hf.load_hf(path, mesh=mesh)
        tok_path = Path(cfg.tokenizer or path)
    else:
        ckpt_dir = path / "ckpt" if (path / "ckpt").is_dir() else path
        saved = checkpoint.read_run_config(ckpt_dir)
        if "model" not in saved:
            raise ValueError(f"{ckpt_dir}: the saved run config has no 'model' entry")
        model_cfg = from_dict(ModelConfig, saved["model"])
        params = checkpoint.restore_params(ckpt_dir, model_cfg, mesh)
        # a pretrain output holds its tokenizer; an RL stage uses its base's (run config 'base_dir')
        candidates = [ckpt_dir.parent / "tokenizer.model"] + [
            Path(v["base_dir"]) / "tokenizer.model" for v in saved.values() if isinstance(v, dict) and "base_dir" in v]
        tok_path = Path(cfg.tokenizer) if cfg.tokenizer else next((p for p in candidates if p.is_file()), None)
        if tok_path is None:
            raise FileNotFoundError(f"no tokenizer found for {path} (looked for {', '.join(map(str, candidates))}); "
                                    "pass --tokenizer")
    tok = load_tokenizer(tok_path)
    if tok.vocab_size > model_cfg.vocab_size:
        raise ValueError(f"tokenizer {tok_path} has {tok.vocab_size} tokens but the model's vocab_size is "
                         f"{model_cfg.vocab_size}: they do not belong together")
    return model_cfg, params, tok


def _gather(x: np.ndarray) -> np.ndarray:
    """[process_count, *x.shape]: every process's x, on every process."""
    import jax
    if jax.process_count() == 1:
        return x[None]
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=False))


def _sample_benchmark(name: str, examples: list[Example], k: int, cfg: EvalConfig, model, bench_dir: Path) -> None:
    """Sample and score the problems samples.jsonl does not hold yet (see the module docstring)."""
    import jax
    import tqdm

    from r1jax import sampling

    model_cfg, params, tok, mesh = model
    lead = jax.process_index() == 0
    path = bench_dir / "samples.jsonl"
    done = set(_finished(path, k)) if lead else set()
    mask = np.array([ex.id in done for ex in examples])
    if jax.process_count() > 1:  # every process must agree on the work left
        from jax.experimental import multihost_utils
        mask = np.asarray(multihost_utils.broadcast_one_to_all(mask))
    B = cfg.batch_size
    batches = [list(range(i, min(i + B, len(examples)))) for i in range(0, len(examples), B)]
    todo = [b for b, idx in enumerate(batches) if not mask[idx].all()]
    sampler = sampling.make_sampler(model_cfg, sampling.SamplingConfig(
        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
        stop_tokens=(tok.eos_id,), pad_id=tok.pad_id), mesh=mesh, group_size=k)
    template = TEMPLATES[cfg.template]
    P, me = jax.process_count(), jax.process_index()
    by_id = {ex.id: ex for ex in examples}
    with tqdm.tqdm(total=len(examples), initial=int(mask.sum()), desc=name, unit="problem", dynamic_ncols=True,
                   disable=not lead) as bar:
        for r in range(0, len(todo), P):
            round_batches = todo[r:r + P]
            b = round_batches[me] if me < len(round_batches) else round_batches[0]  # idle: repeat, discarded
            idx = batches[b] + [batches[b][-1]] * (B - len(batches[b]))  # fixed shape: one compile
            ids = [prompt_tokens(tok, examples[i].prompt, template) for i in idx]
            width = -(-max(map(len, ids)) // 64) * 64  # prompt lengths in steps of 64: few compiles
            prompts, pmask = tok.pad_batch(ids, length=width)
            # the key depends on the batch alone, so a resumed run draws what an uninterrupted one would
            out = jax.device_get(sampler(params, prompts, pmask, jax.random.fold_in(jax.random.key(cfg.seed), b)))
            tokens, lengths, trunc = (_gather(np.asarray(x)) for x in (out.tokens, out.lengths, out.truncated))
            if not lead:
                continue
            samples = []
            for p, bb in enumerate(round_batches):
                for q, i in enumerate(batches[bb]):
                    if mask[i]:
                        continue
                    for row in range(q * k, (q + 1) * k):
                        n = int(lengths[p, row])
                        text = tok.decode([t for t in tokens[p, row, :n] if t != tok.eos_id])
                        samples.append({"id": examples[i].id, "completion": text, "n_tokens": n,
                                        "truncated": bool(trunc[p, row])})
            _write_rows(path, score_samples(samples, by_id, cfg), mode="a")
            bar.update(sum(not mask[i] for bb in round_batches for i in batches[bb]))


# ----------------------------------------------------------------------------- entry points

def evaluate(cfg: EvalConfig) -> dict[str, dict]:
    """Evaluate every benchmark of `cfg` (sampling from cfg.checkpoint, or scoring cfg.samples).
    Returns {benchmark: summary} on process 0 ({} elsewhere) and writes the files listed in the
    module docstring."""
    import jax

    names = cfg.names()
    if not names:
        raise ValueError("EvalConfig.benchmark is empty")
    problem_sets = {name: load_problems(name, cfg) for name in names}  # bad names fail before any work
    if cfg.samples and len(names) != 1:
        raise ValueError(f"score-only mode scores one benchmark per samples file, got {names}")
    if bool(cfg.samples) == bool(cfg.checkpoint):
        raise ValueError("give exactly one of checkpoint (sample and score) or samples (score only)")
    lead = jax.process_index() == 0
    out = Path(cfg.out_dir)
    ks = {name: cfg.k or DEFAULT_K.get(name, 16) for name in names}
    if lead:  # refuse a wrong output folder before any work (and before touching its files)
        for name in names:
            _check_out_dir(out / name, None if cfg.samples else _run_config(cfg, name, ks[name]))
    model = None
    if cfg.checkpoint:
        from r1jax import sharding
        from r1jax.config import MeshConfig
        # each process holds the model on its own devices and samples its share of the problems
        mesh = sharding.make_mesh(MeshConfig.parse(cfg.mesh) if cfg.mesh else MeshConfig(data=jax.local_device_count()),
                                  devices=jax.local_devices())
        model = (*_load_model(cfg, mesh), mesh)

    summaries = {}
    for name, everything in problem_sets.items():
        examples = everything[:cfg.limit] if cfg.limit else everything
        bench_dir = out / name
        if lead:
            bench_dir.mkdir(parents=True, exist_ok=True)
            for stale in ("summary.json", "summary.md", "chart.png"):  # only a finished run has a summary
                (bench_dir / stale).unlink(missing_ok=True)
        if cfg.samples:
            if not lead:
                continue
            samples = read_samples(cfg.samples, everything, cfg.limit)
            rows = score_samples(samples, {ex.id: ex for ex in examples}, cfg)
            _write_rows(bench_dir / "samples.jsonl", rows)
        else:
            if lead:
                (bench_dir / "config.json").write_text(json.dumps(_run_config(cfg, name, ks[name]), indent=2) + "\n")
            _sample_benchmark(name, examples, ks[name], cfg, model, bench_dir)
            if not lead:
                continue
            rows = [json.loads(line) for line in open(bench_dir / "samples.jsonl", encoding="utf-8")]
        summaries[name] = summarize(rows, examples, name, cfg.timeout)
        _write_summary(bench_dir, summaries[name])
    if lead:
        (out / "summary.json").write_text(json.dumps(summaries, indent=2) + "\n")
        (out / "summary.md").write_text(summary_markdown(list(summaries.values())))
    return summaries
