"""grain pipelines: deterministic for a seed, split per host, resumable from a saved state."""

from __future__ import annotations

from typing import Sequence

import grain
import jax
import numpy as np

__all__ = ["lm_batches", "count_rows", "bucket", "pack_rollouts"]


def lm_batches(examples: Sequence[Sequence[int]], *, seq_len: int, batch_size: int, pad_id: int,
               seed: int, loss_spans: Sequence[Sequence[tuple[int, int]]] | None = None, pack: bool = False,
               split_hosts: bool = True) -> grain.IterDataset:
    """Endless shuffled batches of right-padded token sequences for next-token training.

    Each batch is {'tokens' [B, T] int32, 'mask' [B, T] bool, 'loss_mask' [B, T] float32}
    with T = seq_len and B = batch_size // process_count (this host's rows of the global
    batch). `loss_spans[i]` are the [start, end) token spans of example i that are trained on
    (e.g. the response in SFT, every assistant turn of a conversation; default the whole
    example). Save `iterator.get_state()` with a checkpoint and `set_state` it on restart to
    continue exactly where the run stopped.

    pack=True fills each row with several whole examples (in a seeded random order, so batches
    stay i.i.d.) instead of padding every short example to seq_len, and adds 'segment_ids'
    (1, 2, ... per example, 0 at padding) and 'positions' (restarting at 0 per example) for
    `r1jax.model.forward`, which then keeps attention inside each example.

    split_hosts=False gives every host the whole batch (e.g. an evaluation batch every host scores).
    """
    too_long = [i for i, e in enumerate(examples) if len(e) > seq_len]
    if too_long:
        raise ValueError(f"{len(too_long)} example(s) longer than seq_len={seq_len}, first at index "
                         f"{too_long[0]} ({len(examples[too_long[0]])} tokens)")
    hosts, host = (jax.process_count(), jax.process_index()) if split_hosts else (1, 0)
    if batch_size % hosts:
        raise ValueError(f"batch_size {batch_size} is not divisible by {hosts} hosts")
    spans = [[(0, len(e))] for e in examples] if loss_spans is None else list(loss_spans)

    # Every host builds the same global rows from the same seed and keeps its share of each batch.
    rows = _rows([len(e) for e in examples], seq_len, seed, pack)
    n_batches = len(rows) // batch_size
    if n_batches == 0:
        raise ValueError(f"{len(examples)} examples make {len(rows)} rows, fewer than one batch of {batch_size}")
    share = batch_size // hosts

    def to_arrays(b: int) -> dict:
        first = b * batch_size + host * share
        tokens = np.full((share, seq_len), pad_id, np.int32)
        loss_mask = np.zeros((share, seq_len), np.float32)
        segments = np.zeros((share, seq_len), np.int32)
        positions = np.zeros((share, seq_len), np.int32)
        for r, row in enumerate(rows[first:first + share]):
            at = 0
            for s, i in enumerate(row):
                n = len(examples[i])
                tokens[r, at:at + n] = examples[i]
                for start, end in spans[i]:
                    loss_mask[r, at + start:at + end] = 1.0
                segments[r, at:at + n] = s + 1
                positions[r, at:at + n] = np.arange(n)
                at += n
        out = {"tokens": tokens, "mask": segments > 0, "loss_mask": loss_mask}
        if pack:
            out.update(segment_ids=segments, positions=positions)
        return out

    return grain.MapDataset.range(n_batches).shuffle(seed=seed).repeat(None).map(to_arrays).to_iter_dataset()


def _rows(lengths: Sequence[int], seq_len: int, seed: int, pack: bool) -> list[list[int]]:
    """Example indices of each row: a seeded shuffle, filled greedily up to seq_len if packing."""
    rows: list[list[int]] = []
    used = 0
    for i in np.random.default_rng(seed).permutation(len(lengths)).tolist():
        if not rows or not pack or used + lengths[i] > seq_len:
            rows.append([])
            used = 0
        rows[-1].append(i)
        used += lengths[i]
    return rows


def count_rows(lengths: Sequence[int], seq_len: int, seed: int, pack: bool = True) -> int:
    """How many rows `lm_batches` makes of examples of these lengths (one epoch, all hosts)."""
    return len(_rows(lengths, seq_len, seed, pack))


def bucket(n: int, multiple: int) -> int:
    """n rounded up to a multiple of `multiple` whose count of multiples has at most three
    significant bits (1-8, 10, 12, 14, 16, 20, 24, 28, 32, 40, ...): at most 25% above n, and four
    sizes per doubling, so shapes drawn from a run's varying sizes compile a few programs."""
    k = -(-max(n, 1) // multiple)
    step = 1 << max(k.bit_length() - 3, 0)
    return -(-k // step) * step * multiple


def pack_rollouts(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], *, width: int,
                  rows_multiple: int = 1, tokens_multiple: int = 128, min_rows: int = 0, min_tokens: int = 0) -> dict:
    """Rollouts (prompt i then completion i, no padding) packed into rows of `width` tokens, for
    a GRPO update that runs no padding through the model or the LM head
    (`train.packed_completion_logprobs`).

    Sequences go into rows by first-fit decreasing length; each keeps its own segment id (1, 2,
    ... along its row, 0 at padding) and positions from 0, so attention stays inside it and it is
    computed as it would be alone. The row count is at least `min_rows` and rounded up to a
    multiple of `rows_multiple` (the devices the rows split over; empty rows are all padding).
    Returns tokens, segment_ids, positions [R, width] and, one entry per completion token (M of
    them, at least `min_tokens`, rounded up to a multiple of `tokens_multiple * rows_multiple`;
    a caller that packs several mini-batches passes the largest sizes, `bucket`ed, so that
    they share one shape), the (rows, cols) of the
    hidden state that predicts it, the token itself (targets) and where it goes in the loss's
    per-rollout layout (seq, pos); padding entries have seq = len(prompts), out of range.
    """
    lengths = [len(p) + len(c) for p, c in zip(prompts, completions)]
    if max(lengths) > width:
        raise ValueError(f"a rollout of {max(lengths)} tokens does not fit a packed row of {width}")
    free: list[int] = []  # tokens left in each row
    where = [None] * len(lengths)
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        r = next((r for r, f in enumerate(free) if f >= lengths[i]), None)
        if r is None:
            free.append(width)
            r = len(free) - 1
        where[i] = (r, width - free[r])
        free[r] -= lengths[i]
    n_rows = -(-max(len(free), min_rows) // rows_multiple) * rows_multiple
    tokens = np.zeros((n_rows, width), np.int32)
    segments = np.zeros((n_rows, width), np.int32)
    positions = np.zeros((n_rows, width), np.int32)
    multiple = tokens_multiple * rows_multiple
    n_flat = -(-max(sum(len(c) for c in completions), min_tokens, 1) // multiple) * multiple
    flat = {k: np.zeros(n_flat, np.int32) for k in ("rows", "cols", "targets", "seq", "pos")}
    flat["seq"][:] = len(prompts)
    at_flat = 0
    # Segment ids in position order along each row (1, 2, ...), so a block of a row spans an
    # interval of them: blockwise attention skips the tiles between two documents by comparing
    # intervals.
    segment_of, in_row = {}, [0] * n_rows
    for i in sorted(range(len(prompts)), key=lambda i: where[i]):
        in_row[where[i][0]] += 1
        segment_of[i] = in_row[where[i][0]]
    for i, ((r, at), p, c) in enumerate(zip(where, prompts, completions)):
        n = len(p) + len(c)
        tokens[r, at:at + n] = [*p, *c]
        segments[r, at:at + n] = segment_of[i]
        positions[r, at:at + n] = np.arange(n)
        sl = slice(at_flat, at_flat + len(c))
        flat["rows"][sl], flat["cols"][sl] = r, at + len(p) - 1 + np.arange(len(c))
        flat["targets"][sl], flat["seq"][sl], flat["pos"][sl] = c, i, np.arange(len(c))
        at_flat += len(c)
    return {"tokens": tokens, "segment_ids": segments, "positions": positions, **flat}
