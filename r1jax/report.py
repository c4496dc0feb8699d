"""What a run leaves for a person: metrics.jsonl + TensorBoard, PNG plots and a markdown report.

Only process 0 writes (on a pod every host runs the same loop)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import jax

__all__ = ["MetricsWriter", "REFLECTION", "reflection_count", "corrects_itself", "plot_metrics", "write_report"]

# Words of self-checking that the paper sees rise during RL ("wait", re-checks); counted per rollout.
# Chinese has the same words (等等 wait, 检查 check, 验证 verify), without word boundaries. (Not 嗯
# for hmm: the world's Chinese rambling answer opens with it where the English one says "Well".)
REFLECTION = re.compile(r"\b(?:wait|re-?check(?:ing)?|let me (?:check|verify)|double[- ]check|verify|hmm)\b"
                        r"|等等|检查|验证", re.I)


def reflection_count(text: str) -> int:
    return len(REFLECTION.findall(text))


def _strict(v):
    """A metric as strict JSON: a NaN or infinite float becomes null (JSON has no NaN)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _strict(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_strict(x) for x in v]
    return v


class MetricsWriter:
    """Appends one JSON line per step to `metrics.jsonl` and the same scalars to TensorBoard.

    The lines are strict JSON: a non-finite value (a NaN loss) is written as null, and
    TensorBoard gets no point for it."""

    def __init__(self, out_dir: str | Path):
        self.active = jax.process_index() == 0
        if not self.active:
            return
        self.out = Path(out_dir)
        self._log = open(self.out / "metrics.jsonl", "a")
        try:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(str(self.out / "tensorboard"))
        except ImportError:  # TensorBoard is optional; the JSON lines are the record
            self._tb = None

    def write(self, step: int, metrics: dict) -> None:
        if not self.active:
            return
        self._log.write(json.dumps(_strict({"step": step, **metrics}), allow_nan=False) + "\n")
        self._log.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.active:
            self._log.close()
            if self._tb is not None:
                self._tb.close()


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in open(path)] if path.exists() else []


PLOTS = {  # file -> (title, [(metric, label)])
    "reward_accuracy.png": ("Reward and accuracy", [("reward/total", "total reward"), ("accuracy", "accuracy"),
                                                    ("reward/format", "format")]),
    "response_length.png": ("Mean response length (tokens)", [("response_length_mean", "mean length")]),
    "reflection.png": ("Rollouts with reflection words", [("reflection_rate", "share of rollouts")]),
    "kl.png": ("KL to the reference", [("kl", "KL (k3)")]),
}


def plot_metrics(out_dir: str | Path) -> list[Path]:
    """One PNG per entry of PLOTS from metrics.jsonl; returns the files written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    rows = _read(out / "metrics.jsonl")
    written = []
    # lengths by difficulty (operations), when the tasks say it: the paper's Figure 3 per level
    by_ops = sorted({k for r in rows for k in r if k.startswith("response_length_ops")})
    for name, (title, series) in PLOTS.items():
        if name == "response_length.png":
            series = series + [(k, f"{k.removeprefix('response_length_ops')} operations") for k in by_ops]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key, label in series:
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]  # null: not finite
            if pts:
                ax.plot(*zip(*pts), label=label)
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend()
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(out / name)
    return written


# A step and its result, then (before the next step's "=") the re-check's conclusion and what it
# says it replaces: "14 + 4 = 17. Wait, let me check: 14 + 4: 15, 16, 17, 18. So 18, not 17."
# (Chinese: "= 17。 ... 所以是 18，不是 17。").
_STEP_AND_CHECK = re.compile(r"(-?\d+)\s*([+-])\s*(\d+)\s*=\s*(-?\d+)\s*[.。][^=]*?(?:\bSo|所以是)\s*(-?\d+)"
                             r"(?:\s*[,，]\s*(?:not|不是)\s*(-?\d+))?")


def corrects_itself(text: str) -> bool:
    """Whether a completion catches a wrong step result and fixes it, and every re-check in it
    makes sense: concludes the step's right result and, if it names the number it replaces,
    names the one written. Policies also write "14 + 8 = 11. ... So 22, not 9." or "14 + 9 =
    23. ... So 22.", which are not worth quoting as self-correction."""
    fixed = False
    for a, op, b, wrote, checked, replaced in _STEP_AND_CHECK.findall(text):
        right = int(a) + int(b) if op == "+" else int(a) - int(b)
        if int(checked) != right or replaced not in ("", wrote):
            return False
        fixed |= int(wrote) != right
    return fixed


def write_report(out_dir: str | Path, title: str, summary: dict) -> Path:
    """report.md: the summary table, the plots, and one "aha" rollout if the run produced one."""
    out = Path(out_dir)
    rows = _read(out / "metrics.jsonl")
    aha = _read(out / "aha.jsonl")
    lines = [f"# {title}", "", "| metric | first step | last step |", "|---|---|---|"]
    for key in ("reward/total", "accuracy", "reward/format", "response_length_mean", "reflection_rate", "kl"):
        if rows and key in rows[0]:
            first, last = (format(r[key], ".3f") if r.get(key) is not None else "n/a" for r in (rows[0], rows[-1]))
            lines.append(f"| {key} | {first} | {last} |")
    lines += ["", *[f"![{name}]({name})" for name in PLOTS], ""]
    if aha:
        # prefer a rollout that corrects itself ("So 18, not 17.") over one that only re-checks
        a = next((x for x in reversed(aha) if corrects_itself(x["completion"])), aha[-1])
        lines += [f"## An \"aha\" rollout (step {a['step']})", "", f"Prompt: {a['prompt']}", "", "```",
                  a["completion"], "```", f"Reference answer: {a['answer']}; scored correct.", ""]
    else:
        lines += ["No rollout was both correct and reflective (no \"aha\" sample to quote).", ""]
    lines += ["## Summary", "", "```json", json.dumps(summary, indent=2), "```"]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
