"""grain pipelines: deterministic for a seed, split per host, resumable from a saved state."""

from __future__ import annotations

from typing import Sequence

import grain
import jax
import numpy as np

__all__ = ["lm_batches"]


def lm_batches(examples: Sequence[Sequence[int]], *, seq_len: int, batch_size: int, pad_id: int,
               seed: int, loss_from: Sequence[int] | None = None) -> grain.IterDataset:
    """Endless shuffled batches of right-padded token sequences for next-token training.

    Each batch is {'tokens' [B, T] int32, 'mask' [B, T] bool, 'loss_mask' [B, T] float32}
    with B = batch_size // process_count (this host's share: each host reads a disjoint
    shard). `loss_from[i]` is the first token of example i that is trained on (e.g. the
    first response token in SFT; default 0). Save `iterator.get_state()` with a checkpoint
    and `set_state` it on restart to continue exactly where the run stopped.
    """
    too_long = [i for i, e in enumerate(examples) if len(e) > seq_len]
    if too_long:
        raise ValueError(f"{len(too_long)} example(s) longer than seq_len={seq_len}, first at index "
                         f"{too_long[0]} ({len(examples[too_long[0]])} tokens)")
    if batch_size % jax.process_count():
        raise ValueError(f"batch_size {batch_size} is not divisible by {jax.process_count()} hosts")
    starts = [0] * len(examples) if loss_from is None else list(loss_from)

    def to_arrays(i: int) -> dict:
        ids = np.asarray(examples[i], np.int32)
        tokens = np.full(seq_len, pad_id, np.int32)
        tokens[:len(ids)] = ids
        mask = np.arange(seq_len) < len(ids)
        return {"tokens": tokens, "mask": mask, "loss_mask": (mask & (np.arange(seq_len) >= starts[i])).astype(
            np.float32)}

    ds = grain.MapDataset.range(len(examples)).shuffle(seed=seed).repeat(None)
    ds = ds[jax.process_index()::jax.process_count()]
    return ds.map(to_arrays).batch(batch_size // jax.process_count(), drop_remainder=True).to_iter_dataset()
