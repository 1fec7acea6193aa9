"""Rows sorted by length on the fast engine (engine.prepare, bptt.fast.rows.by_length): a row that
has ended is skipped by every step (bptt.fast.common.live_rows), and everything the caller gets
back is in the caller's order: the same loss, gradients, states, input gradients, traces, logits
and dropout masks as the reference engine, which runs the rows as given, to round-off in float64."""

import numpy as np
import pytest

import bptt
from bptt.fast import rows
from bptt.fast.common import live_rows
from bptt.model import engine

ROUND_OFF = 1e-12


def close(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) <= ROUND_OFF * max(1.0, np.max(np.abs(b)))


def test_by_length_sorts_each_block_longest_first_and_shares_the_work():
    lengths = np.random.default_rng(0).integers(1, 40, 37)
    order = rows.by_length(lengths, threads=3)
    assert sorted(order) == list(range(37))
    parts = rows.blocks(37, 3)
    totals = []
    for b0, b1 in parts:
        block = lengths[order[b0:b1]]
        assert np.all(np.diff(block) <= 0)                          # longest first
        totals.append(block.sum())
    assert max(totals) - min(totals) <= lengths.max()               # dealt in turn
    assert rows.by_length(np.array([9, 7, 7, 2])) is None           # one block, already sorted
    assert live_rows(np.array([True, False, True, False, False])) == 3
    assert live_rows(np.zeros(4, bool)) == 0


def pair(cell, inputs, **kw):
    V = 7
    nets = [bptt.Network(cell, V, 5, 4, num_layers=2, embedding_dim=3 if inputs == "embedding" else None,
                         seed=2, engine=e, **kw) for e in ("fast", "numpy")]
    return nets


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("inputs", ["embedding", "float"])
@pytest.mark.parametrize("target", ["every", "last"])
def test_shuffled_lengths_on_two_blocks_equal_the_reference(cell, inputs, target):
    rng = np.random.default_rng(3)
    T, B, L, H = 9, 19, 2, 5                                   # 19 rows: two blocks of rows on two threads
    lengths = rng.integers(1, T + 1, B)
    x = rng.integers(0, 7, (T, B)) if inputs == "embedding" else rng.standard_normal((T, B, 7))
    y = rng.integers(0, 4, (T, B) if target == "every" else B)
    parts = [rng.standard_normal((L, B, H)) for _ in range(2 if cell == "lstm" else 1)]
    state = tuple(parts) if cell == "lstm" else parts[0]
    reset = rng.random((T, B)) < 0.15
    fast, ref = pair(cell, inputs)
    assert engine.prepare(fast.params, fast.arch, x, state, lengths).order is not None
    kw = dict(state=state, target=target, lengths=lengths, reset=reset, dropout=0.3, rng=11, trace=True)
    a = engine.loss_and_grads(fast.params, fast.arch, x, y, **kw)
    b = engine.loss_and_grads(ref.params, ref.arch, x, y, **kw)
    assert abs(a.loss - b.loss) <= ROUND_OFF * b.loss
    assert all(close(a.grads[k], b.grads[k]) for k in b.grads)
    for got, want in ((a.state, b.state), (a.dstate0, b.dstate0)):
        for p, q in zip(*(s if isinstance(s, tuple) else (s,) for s in (got, want)), strict=True):
            assert close(p, q)
    assert (a.dx is None) == (b.dx is None) and (a.dx is None or close(a.dx, b.dx))
    assert all(close(p, q) for p, q in zip(a.dhs, b.dhs, strict=True))
    za, sa = engine.logits(fast.params, fast.arch, x, state, lengths, reset)
    zb, sb = engine.logits(ref.params, ref.arch, x, state, lengths, reset)
    assert close(za, zb)
    if target == "every":
        r = engine.loss_and_grads(fast.params, fast.arch, x, y, recompute_every=4, **kw)
        assert abs(r.loss - b.loss) <= ROUND_OFF * b.loss and all(close(r.grads[k], b.grads[k]) for k in b.grads)
        assert all(close(p, q) for p, q in zip(r.dhs, b.dhs, strict=True))


def test_live_positions_gathers_a_window_of_mostly_padding_only():
    """The products over the window's positions (the float table, dW, dx, dU) run over the real
    positions when padding is most of it (bptt.fast.window.live_positions); not for a window of few
    padded positions, none, or all (a segment of padding in recomputation)."""
    from bptt.fast.window import LIVE_FRACTION, live_positions

    mask = np.zeros((4, 5, 1), bool)
    mask[:2, :2] = True                                          # 4 of 20 positions real
    assert live_positions(mask).tolist() == [0, 1, 5, 6]         # t B + b
    assert live_positions(None) is None and live_positions(~mask & False) is None
    assert LIVE_FRACTION == 0.9
    mostly = np.ones((10, 10, 1), bool)
    mostly[-1] = False                                           # 90 of 100 real: not worth gathering
    assert live_positions(mostly) is None
    mostly[-2, 0] = False                                        # 89
    assert len(live_positions(mostly)) == 89


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_jacobians_of_shuffled_lengths_come_in_the_callers_order(cell):
    """bptt.lab.diagnostics reads the engine's caches, whose rows the fast engine sorts by length:
    its Jacobian products are given back in the caller's order, equal to the reference's."""
    from bptt.lab import diagnostics

    rng = np.random.default_rng(4)
    T, B = 5, 4
    x, lengths = rng.standard_normal((T, B, 7)), np.array([2, 5, 1, 4])
    fast, ref = pair(cell, "float")
    assert engine.prepare(fast.params, fast.arch, x, None, lengths).order is not None
    for layer in (0, 1):
        a = diagnostics.jacobian_products(fast.params, fast.arch, x, None, lengths, layer=layer)
        b = diagnostics.jacobian_products(ref.params, ref.arch, x, None, lengths, layer=layer)
        assert close(a, b)
