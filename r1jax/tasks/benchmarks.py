"""Loaders for the real evaluation benchmarks kept in the shared data folder.

The files live outside the repository (``shared/data`` beside the checkout, see its README),
so every loader takes the folder as an argument and fails with a clear message when it or a
file is missing.  Each record becomes an `Example` whose `answer` is normalised to the form
the verifier compares against:

    gsm8k   {question, answer ending in "#### N"}       -> "N" with thousands commas removed
    math500 {problem, solution, answer, subject, ...}   -> the `answer` field (LaTeX), unchanged
    aime24  {id, problem, solution, answer "025"}       -> str(int(answer)), i.e. "25"
    amc23   {id, problem, answer 27.0}                  -> "27" (shortest float repr if not integral)

A malformed line raises ValueError("<file>:<line>: <reason>") rather than being skipped,
because silently dropping benchmark items would make scores incomparable across runs.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Callable

from r1jax.tasks.common import Example

__all__ = ["BENCHMARKS", "default_data_dir", "load_benchmark", "gsm8k_final_answer", "jsonl_objects"]

# Benchmark name -> file name inside the data folder.
BENCHMARKS: dict[str, str] = {
    "gsm8k": "gsm8k_test.jsonl",
    "math500": "math500_test.jsonl",
    "aime24": "aime24_test.jsonl",
    "amc23": "amc23_test.jsonl",
}

# GSM8K final answers are integers, sometimes written with thousands separators ("1,450,000");
# a decimal point is tolerated so an unusual record is kept rather than rejected.
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class _Malformed(Exception):
    """A record that cannot be turned into an Example; the loader adds file and line."""


def default_data_dir() -> Path:
    """The ``shared/data`` folder beside the repository checkout (it may not exist)."""
    # parents[2] is the repository root (.../r1jax/tasks/benchmarks.py -> repo); the data
    # folder is its sibling ``../shared/data``.  normpath removes the ".." without following
    # symlinks, so the path reported in errors is the one a person would expect.
    return Path(os.path.normpath(Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))


def _field(record: dict, key: str, types: type | tuple[type, ...]):
    """record[key], checked to be present and of the expected JSON type."""
    if key not in record:
        raise _Malformed(f"missing field {key!r}")
    value = record[key]
    # bool is a subclass of int; a JSON true/false is never a valid number or id here.
    if isinstance(value, bool) or not isinstance(value, types):
        raise _Malformed(f"field {key!r} has type {type(value).__name__}")
    return value


def gsm8k_final_answer(raw: str, what: str = "GSM8K answer") -> tuple[str, str]:
    """(rationale, final number) of a GSM8K answer ending in '#### 1,450'; the number without
    thousands commas. A ValueError naming `what` when there is no such final line or it is not a number."""
    if "####" not in raw:
        raise ValueError(f"{what} has no '#### <number>' final line")
    rationale, final = raw.rsplit("####", 1)
    number = final.strip().replace(",", "")
    if not _NUMBER.fullmatch(number):
        raise ValueError(f"{what}: the final answer {final.strip()!r} is not a number")
    return rationale, number


def _gsm8k(record: dict, index: int) -> Example:
    question = _field(record, "question", str)
    raw = _field(record, "answer", str)
    try:
        rationale, number = gsm8k_final_answer(raw)
    except ValueError as e:
        raise _Malformed(str(e)) from None
    return Example(
        id=f"gsm8k-{index}",
        prompt=question,
        answer=number,
        metadata={"benchmark": "gsm8k", "solution": rationale.strip(), "raw_answer": raw},
    )


def _math500(record: dict, index: int) -> Example:
    unique_id = _field(record, "unique_id", str)
    return Example(
        id=f"math500-{unique_id}",
        prompt=_field(record, "problem", str),
        answer=_field(record, "answer", str),
        metadata={
            "benchmark": "math500",
            "subject": _field(record, "subject", str),
            "level": _field(record, "level", int),
            "unique_id": unique_id,
            "solution": _field(record, "solution", str),
        },
    )


def _aime24(record: dict, index: int) -> Example:
    raw = _field(record, "answer", (str, int))
    # AIME answers are integers 000-999 written with leading zeros ("025"); the reference is
    # the plain integer so "25", "025" and "\boxed{25}" all compare equal downstream.
    text = str(raw).strip()
    if not text.isascii() or not text.isdigit():
        raise _Malformed(f"AIME answer {raw!r} is not a non-negative integer")
    record_id = _field(record, "id", (int, str))
    return Example(
        id=f"aime24-{record_id}",
        prompt=_field(record, "problem", str),
        answer=str(int(text)),
        metadata={
            "benchmark": "aime24",
            "raw_answer": raw,
            "solution": record.get("solution", ""),
            "url": record.get("url", ""),
        },
    )


def _amc23(record: dict, index: int) -> Example:
    raw = _field(record, "answer", (int, float))
    if not math.isfinite(raw):  # Python's json accepts NaN/Infinity; no answer is either.
        raise _Malformed(f"AMC answer {raw!r} is not finite")
    # The file stores every answer as a float (27.0); integral ones become "27".
    answer = str(int(raw)) if float(raw).is_integer() else repr(float(raw))
    record_id = _field(record, "id", (int, str))
    return Example(
        id=f"amc23-{record_id}",
        prompt=_field(record, "problem", str),
        answer=answer,
        metadata={"benchmark": "amc23", "raw_answer": raw, "url": record.get("url", "")},
    )


_PARSERS: dict[str, Callable[[dict, int], Example]] = {
    "gsm8k": _gsm8k,
    "math500": _math500,
    "aime24": _aime24,
    "amc23": _amc23,
}


def load_benchmark(name: str, data_dir: str | os.PathLike | None = None,
                   limit: int | None = None) -> list[Example]:
    """The records of benchmark `name` ("gsm8k", "math500", "aime24", "amc23") as Examples.

    data_dir: folder holding the files (default: `default_data_dir()`).
    limit:    keep only the first `limit` records (reading stops there).

    Raises ValueError for an unknown name or a malformed line (message "<file>:<line>: <reason>"),
    FileNotFoundError naming the path when the file is missing.  Blank lines are skipped.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid names: {', '.join(sorted(BENCHMARKS))}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
    folder = default_data_dir() if data_dir is None else Path(data_dir)
    path = folder / BENCHMARKS[name]
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file for {name!r} not found: {path}")

    parse = _PARSERS[name]
    examples: list[Example] = []
    if limit == 0:
        return examples
    for where, record in jsonl_objects(path):
        try:
            # The record index (blank lines not counted) names GSM8K items, which have no id.
            examples.append(parse(record, len(examples)))
        except _Malformed as e:
            raise ValueError(f"{where}: {e}") from None
        if len(examples) == limit:  # stop before reading (and judging) the next line
            break
    return examples


def jsonl_objects(path: Path):
    """Yield ("<file>:<line>", object) for each non-blank line of a JSON-lines file; a line that
    is not a JSON object raises ValueError "<file>:<line>: <reason>"."""
    with Path(path).open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            yield where, record
