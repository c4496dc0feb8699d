"""SFT data sets on disk: JSON lines of {"prompt", "response", ...provenance}.

The R1 stages pass SFT data between them as files (cold-start samples, rejection-sampled
reasoning data plus general data, distillation sets), so a person can read, filter and swap
them.  Every line is one JSON object with string fields "prompt" and "response", or a
multi-turn conversation {"messages": [{role, content}, ...]}; any other keys (source, id,
reward, ...) are provenance and are kept as they are.  A cold-start set also needs
each response in the paper's `|special_token|<reasoning>|special_token|<summary>` format.

A bad line raises ValueError("<file>:<line>: ...") instead of being skipped, so a broken file
never silently shrinks a training set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from r1jax.tasks.datafiles import read_records
from r1jax.tokenizer import parse_cold_start

__all__ = ["read_sft_jsonl", "write_sft_jsonl", "from_messages"]

_FIELDS = ("prompt", "response")


def _problem(record, cold_start: bool) -> str | None:
    """Why `record` is not a valid SFT record (naming the field), or None if it is."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    if "messages" in record and "prompt" not in record:
        if cold_start:
            return "field 'messages': a cold-start set needs prompt/response records, not a conversation"
        return _conversation_problem(record["messages"])
    for key in _FIELDS:
        if key not in record:
            return f"missing field {key!r}"
        if not isinstance(record[key], str):
            return f"field {key!r} must be a string, got {type(record[key]).__name__}"
        if not record[key].strip():
            return f"field {key!r} is empty"
    if cold_start:
        try:
            parse_cold_start(record["response"])
        except ValueError as e:
            return f"field 'response': {e}"
    return None


def _conversation_problem(messages) -> str | None:
    """Why `messages` is not a conversation an SFT loss can train on: an optional system turn,
    then user and assistant turns alternating, ending with an assistant turn."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return "field 'messages' must be a list of {role, content} objects"
    roles = [m.get("role") for m in messages]
    turns = roles[1:] if roles[:1] == ["system"] else roles
    if not turns or turns != ["user", "assistant"] * (len(turns) // 2):
        return (f"field 'messages': expected user and assistant turns alternating, ending with an assistant turn "
                f"(after an optional system turn), got roles {roles}")
    for i, m in enumerate(messages):
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            return f"field 'messages': turn {i} ({m['role']}) has no text content"
    return None


def from_messages(record: dict) -> dict:
    """A chat-message record ({"messages": [{role, content}, ...]}, open-r1's and OpenThoughts'
    layout) as an SFT record. One user turn and its answer (after an optional system turn, which
    is dropped) become {"prompt", "response"}, trainable with every template; a longer
    conversation stays {"messages": [...]} (system turn kept), trainable with the model's chat
    template, which marks every assistant turn for the loss. Other fields are kept as
    provenance. A record that is not such a conversation raises ValueError naming why."""
    problem = _conversation_problem(record["messages"])
    if problem:
        raise ValueError(problem)
    messages = record["messages"]
    turns = [m for m in messages if m["role"] != "system"]
    rest = {k: v for k, v in record.items() if k != "messages"}
    if len(turns) > 2:
        return {**rest, "messages": messages}
    return {**rest, "prompt": turns[0]["content"], "response": turns[1]["content"]}


def read_sft_jsonl(path: str | os.PathLike, *, cold_start: bool = False) -> list[dict]:
    """The records of an SFT set, in file order (blank lines skipped): {"prompt", "response"}
    objects, or chat-message records (`from_messages`), from a JSONL, JSON or Parquet file, a
    glob or a folder of shards (`r1jax.tasks.datafiles.read_records`).

    cold_start=True also requires every response to be in the cold-start format (so no
    multi-turn conversations).  Raises
    FileNotFoundError for a missing file and ValueError naming "<file>:<line>" and the field for
    a bad record, or the file for one with no records.
    """
    records = []
    for where, record in read_records(str(path)):
        if isinstance(record, dict) and "messages" in record and "prompt" not in record:
            try:
                record = from_messages(record)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
        problem = _problem(record, cold_start)
        if problem:
            raise ValueError(f"{where}: {problem}")
        records.append(record)
    if not records:
        raise ValueError(f"{path}: no SFT records (the file is empty)")
    return records


def write_sft_jsonl(path: str | os.PathLike, records: Iterable[dict], *, cold_start: bool = False) -> Path:
    """Write `records` one JSON object a line (UTF-8, Chinese kept readable) and return the path.

    Every record is validated as `read_sft_jsonl` would (error names "record <i>" and the field)
    before anything is written, and the file is replaced atomically (temp file + os.replace), so
    a crash or a bad record never leaves a half-written or truncated data set behind.
    """
    records = list(records)
    if not records:
        raise ValueError(f"write_sft_jsonl: no records to write to {path}")
    lines = []
    for i, record in enumerate(records):
        problem = _problem(record, cold_start)
        if problem:
            raise ValueError(f"write_sft_jsonl: record {i}: {problem}")
        try:
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        except (TypeError, ValueError) as e:
            raise ValueError(f"write_sft_jsonl: record {i} is not JSON-serialisable: {e}") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left over if writing failed
    return path

