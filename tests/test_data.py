"""grain pipelines: packing keeps every example whole and separate, and is resumable."""

import jax
import numpy as np

from r1jax import data, model


def _examples(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return [list(rng.integers(4, 100, rng.integers(3, 30))) for _ in range(n)]


def test_packed_rows_hold_each_example_once_with_its_own_positions_and_loss():
    ex = _examples()
    # two trained spans an example (an SFT conversation's assistant turns), the rest masked
    spans = [[(1, len(e) // 3), (len(e) // 2, len(e))] for e in ex]
    # batch_size 1 drops no row, so the first epoch holds every example exactly once
    it = iter(data.lm_batches(ex, seq_len=64, batch_size=1, pad_id=0, seed=3, loss_spans=spans, pack=True))
    seen, rows = [], 0
    while len(seen) < len(ex):
        b = next(it)
        rows += 1
        seg, pos, tok, lm = b["segment_ids"][0], b["positions"][0], b["tokens"][0], b["loss_mask"][0]
        assert b["tokens"].shape == (1, 64) and ((seg > 0) == b["mask"][0]).all()
        for s in range(1, seg.max() + 1):
            idx = np.flatnonzero(seg == s)
            assert (np.diff(idx) == 1).all() and (pos[idx] == np.arange(len(idx))).all()
            k = ex.index(tok[idx].tolist())
            want = np.zeros(len(idx))
            for a, b_ in spans[k]:
                want[a:b_] = 1
            assert (lm[idx] == want).all()
            seen.append(k)
        assert lm[seg == 0].sum() == 0
    assert sorted(seen) == list(range(len(ex)))
    assert rows < len(ex) / 2  # rows really hold several examples (lengths 3-29 in rows of 64)


def test_unpacked_batches_are_padded_examples_and_resume_from_state():
    ex = _examples()
    ds = data.lm_batches(ex, seq_len=32, batch_size=4, pad_id=0, seed=1)
    it = iter(ds)
    first = next(it)
    assert set(first) == {"tokens", "mask", "loss_mask"}
    for r in range(4):
        n = int(first["mask"][r].sum())
        assert first["tokens"][r, :n].tolist() in ex and (first["tokens"][r, n:] == 0).all()
    state = it.get_state()
    expected = [next(it)["tokens"] for _ in range(3)]
    again = iter(ds)
    again.set_state(state)
    for e in expected:
        np.testing.assert_array_equal(next(again)["tokens"], e)


def test_packed_forward_equals_each_document_alone(tiny_cfg):
    params = model.init_params(tiny_cfg, jax.random.key(0), std=0.2)
    ex = _examples(6, seed=5)
    b = next(iter(data.lm_batches(ex, seq_len=96, batch_size=1, pad_id=0, seed=0, pack=True)))
    logits, _ = model.forward(tiny_cfg, params, b["tokens"], b["positions"], mask=b["mask"],
                              segment_ids=b["segment_ids"])
    seg = b["segment_ids"][0]
    assert seg.max() >= 2  # the test needs at least two documents in the row
    for s in range(1, seg.max() + 1):
        idx = np.flatnonzero(seg == s)
        alone, _ = model.forward(tiny_cfg, params, b["tokens"][:, idx])
        np.testing.assert_allclose(np.asarray(logits[0, idx]), np.asarray(alone[0]), atol=1e-5, rtol=1e-4)
