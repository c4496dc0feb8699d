"""Training sets from files: JSONL, JSON and Parquet, one file, a glob, or a folder of shards as
Hugging Face dataset repositories lay them out (`data/train-00000-of-00004.parquet`).

Each record becomes an `Example` (a prompt and the reference answer the rewards check). The
layout is detected from the first record's fields, or named:

    gsm8k    {question, answer ending in "#### 72"}                -> "72"
    math     {problem, solution with \\boxed{...}[, answer]}         -> answer, else the last box
    numina   {problem, solution, answer} (NuminaMath, open-r1)      -> answer
    verl     {prompt: [{role, content}, ...], reward_model: {ground_truth}, data_source}
                                                                   -> the last user turn, ground_truth

`prompt_field` / `answer_field` override where the prompt and answer are read. A record that
cannot be used is reported with its file, row and field and counted; more than `max_bad_records`
of them stop the read with that list. Nothing is dropped without a line saying so.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np

from r1jax.config import DataConfig
from r1jax.rewards.math_extract import last_boxed
from r1jax.tasks.benchmarks import gsm8k_final_answer
from r1jax.tasks.common import Example
from r1jax.tasks.registry import task_pool

__all__ = ["data_files", "read_records", "detect_format", "to_example", "load_examples", "prompt_pool", "draw"]

SUFFIXES = (".jsonl", ".json", ".parquet")


SPLITS = ("train", "test", "validation", "valid", "val", "dev", "eval")


def _split_of(f: Path, root: Path) -> str | None:
    """The split a hub-style file names ('data/train-00000-of-00002.parquet', 'test/x.jsonl')."""
    words = {w for part in f.relative_to(root).with_suffix("").parts for w in re.split(r"[-_.]", part.lower())}
    found = words & set(SPLITS)
    return found.pop() if len(found) == 1 else None


def data_files(path: str) -> list[Path]:
    """The data files of `path`, sorted: the file itself, a glob's matches, or every data file
    under a folder (shards in name order). A folder that holds several splits (a hub dataset's
    train and test shards) is an error: reading them all would train on the test set."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix in SUFFIXES and f.is_file())
        splits = Counter(s for s in (_split_of(f, p) for f in files) if s)
        if len(splits) > 1:
            held = ", ".join(f"{s}: {n} file(s)" for s, n in splits.items())
            raise ValueError(f"{path}: the folder holds several splits ({held}); point data.path at one, "
                             f"e.g. '{p / '**' / 'train*'}'")
    elif any(c in path for c in "*?["):
        files = sorted(Path(f) for f in glob.glob(path, recursive=True) if Path(f).suffix in SUFFIXES)
    else:
        if not p.is_file():
            raise FileNotFoundError(f"data file {path} does not exist")
        files = [p]
    bad = [f for f in files if f.suffix not in SUFFIXES]
    if bad or not files:
        raise ValueError(f"{path}: expected .jsonl, .json or .parquet files, found "
                         f"{', '.join(map(str, bad)) if bad else 'none'}")
    return files


def read_records(path: str) -> Iterator[tuple[str, object]]:
    """("<file>:<row>", record) for every record of every file of `path` (rows count from 1;
    a JSON file holds a list of records). Text is UTF-8 (a leading byte-order mark is allowed);
    a line that is not UTF-8 or not JSON raises ValueError naming the file and line."""
    for f in data_files(path):
        if f.suffix == ".jsonl":
            with f.open("rb") as lines:  # decoded a line at a time, so that an error names its line
                for n, raw in enumerate(lines, start=1):
                    try:
                        line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
                    except UnicodeDecodeError as e:
                        raise ValueError(f"{f}:{n}: not UTF-8 text (byte {raw[e.start]:#04x} at column "
                                         f"{e.start + 1}); convert the file to UTF-8") from None
                    if line.strip():
                        try:
                            yield f"{f}:{n}", json.loads(line)
                        except json.JSONDecodeError as e:
                            raise ValueError(f"{f}:{n}: invalid JSON ({e.msg} at column {e.colno})") from None
        elif f.suffix == ".json":
            try:
                data = json.loads(f.read_text(encoding="utf-8-sig"))
            except UnicodeDecodeError as e:
                raise ValueError(f"{f}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                                 "convert the file to UTF-8") from None
            except json.JSONDecodeError as e:
                raise ValueError(f"{f}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            rows = data if isinstance(data, list) else data.get("data") if isinstance(data, dict) else None
            if not isinstance(rows, list):
                raise ValueError(f"{f}: a JSON data file holds a list of records (or {{'data': [...]}})")
            for n, record in enumerate(rows, start=1):
                yield f"{f}:{n}", record
        else:
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise ImportError(f"{f}: reading Parquet needs pyarrow: pip install 'r1jax[data]'") from None
            for n, record in enumerate(pq.read_table(f).to_pylist(), start=1):
                yield f"{f}:{n}", record


def detect_format(record: object) -> str:
    """The layout of a record by its fields (see the module docstring)."""
    keys = set(record) if isinstance(record, dict) else set()
    if {"prompt", "reward_model"} <= keys:
        return "verl"
    if {"question", "answer"} <= keys:
        return "gsm8k"
    if {"problem", "solution", "answer"} <= keys:
        return "numina"
    if {"problem", "solution"} <= keys:
        return "math"
    raise ValueError(f"no known layout has the fields {sorted(keys)}: expected gsm8k (question, answer), math "
                     "(problem, solution), numina (problem, solution, answer) or verl (prompt, reward_model); "
                     "name one with data.format and the fields with data.prompt_field / data.answer_field")


_DEFAULT_FIELDS = {"gsm8k": ("question", "answer"), "math": ("problem", "answer"), "numina": ("problem", "answer"),
                   "verl": ("prompt", "reward_model")}


class BadRecord(ValueError):
    """A record that cannot become an Example; the reader adds where it is."""


def _text(record: dict, field: str) -> str:
    if field not in record:
        raise BadRecord(f"field {field!r} is missing")
    value = record[field]
    if not isinstance(value, str) or not value.strip():
        raise BadRecord(f"field {field!r} must be a non-empty string, got {type(value).__name__} {str(value)[:40]!r}")
    return value


def to_example(record: object, fmt: str, prompt_field: str, answer_field: str, name: str) -> Example:
    """One record as an Example of layout `fmt`, reading the prompt and answer from the given fields."""
    if not isinstance(record, dict):
        raise BadRecord(f"expected an object, got {type(record).__name__}")
    metadata = {"family": "data", "source": record.get("data_source", name)}
    if fmt == "verl" and prompt_field == "prompt":
        turns = record.get("prompt")
        users = [t.get("content") for t in turns if isinstance(t, dict) and t.get("role") == "user"] \
            if isinstance(turns, list) else []
        if not users or not isinstance(users[-1], str):
            raise BadRecord("field 'prompt' must be a list of chat messages with a user turn")
        prompt = users[-1]
    else:
        prompt = _text(record, prompt_field)
    if fmt == "verl" and answer_field == "reward_model":
        truth = record.get("reward_model", {}).get("ground_truth") if isinstance(record.get("reward_model"), dict) \
            else None
        if not isinstance(truth, (str, int, float)) or isinstance(truth, bool):
            raise BadRecord("field 'reward_model.ground_truth' is missing or not a string or number")
        answer = str(truth)
        if not answer.strip():  # every completion would score 0 against it
            raise BadRecord("field 'reward_model.ground_truth' is empty")
    elif fmt == "gsm8k" and answer_field == "answer":
        try:
            answer = gsm8k_final_answer(_text(record, "answer"), what="field 'answer'")[1]
        except ValueError as e:
            raise BadRecord(str(e)) from None
    elif fmt == "math" and answer_field == "answer" and "answer" not in record:
        answer = last_boxed(_text(record, "solution"))
        if answer is None:
            raise BadRecord("field 'solution' has no \\boxed{...} answer (and there is no 'answer' field)")
    else:
        answer = record[answer_field] if answer_field in record else None
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            answer = str(answer)
        if not isinstance(answer, str) or not answer.strip():
            raise BadRecord(f"field {answer_field!r} is missing or empty")
    return Example(id="", prompt=prompt, answer=answer.strip(), metadata=metadata)


def load_examples(cfg: DataConfig) -> tuple[list[Example], list[str]]:
    """Every usable record of `cfg.path` as an Example (ids '<file stem>-<row>'), and the report
    of each unusable one ('<file>:<row>: <reason>'). More than cfg.max_bad_records unusable
    records raise ValueError listing them."""
    examples, bad, fmt = [], [], None
    for where, record in read_records(cfg.path):
        if fmt is None:
            fmt = cfg.format
            if fmt == "auto":
                try:
                    fmt = detect_format(record)
                except ValueError as e:
                    if not (cfg.prompt_field and cfg.answer_field):
                        raise ValueError(f"{where}: {e}") from None
                    fmt = "numina"  # no known layout, both fields named: read them as plain text
            prompt_field = cfg.prompt_field or _DEFAULT_FIELDS[fmt][0]
            answer_field = cfg.answer_field or _DEFAULT_FIELDS[fmt][1]
        file, _, row = where.rpartition(":")
        try:
            ex = to_example(record, fmt, prompt_field, answer_field, Path(file).stem)
        except BadRecord as e:
            bad.append(f"{where}: {e}")
            if len(bad) > cfg.max_bad_records:
                raise ValueError(f"{len(bad)} unusable record(s) in {cfg.path}, more than data.max_bad_records="
                                 f"{cfg.max_bad_records}:\n  " + "\n  ".join(bad)) from None
            continue
        examples.append(dataclasses.replace(ex, id=f"{Path(file).stem}-{row}"))
    if not examples:
        raise ValueError(f"{cfg.path}: no usable records")
    return examples, bad


def prompt_pool(data: DataConfig, families: str, n: int, seed: int) -> tuple[list[Example], list[str]]:
    """A stage's prompts: the records of `data.path` when it is set (and the report of the unusable
    ones, also printed), else `n` generated problems of each of `families` (r1jax.tasks.task_pool)."""
    if not data.path:
        return task_pool(families, n, seed), []
    examples, bad = load_examples(data)
    for line in bad:
        print(f"skipped unusable record {line}", file=sys.stderr)
    return examples, bad


@functools.lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng(seed if epoch == 0 else [seed, epoch]).permutation(n)


def draw(pool: list, seed: int, start: int, count: int) -> list:
    """`count` prompts of `pool` from position `start` of a stream that walks a seeded shuffle of
    the pool, a new shuffle each epoch: a function of the position alone, so every host draws the
    same prompts and a resumed run the ones it would have drawn."""
    epochs, offsets = np.divmod(np.arange(start, start + count), len(pool))
    return [pool[_epoch_order(len(pool), seed, int(e))[o]] for e, o in zip(epochs, offsets)]
