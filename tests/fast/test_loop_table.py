"""The gradient of the input table summed inside the backward loop (window.loop_table): for token ids
and embedded ids, on 1 to 5 blocks of rows, with rows that end early and resets, every cell (the LSTM
with a projection too) equals the reference to round-off in float64, and equals the same engine with
the sum left to a scatter after the loop (the path a large table takes)."""

import numpy as np
import pytest
from test_fast import ROUND_OFF, cell_problem, relative

from bptt import fast
from bptt.fast import rows, window
from bptt.reference import CELLS
from bptt.reference.inputs import Embedded, scatter_rows

V = 7


def problem(cell, kind, threads, projection=False):
    name, p, floats, state0, mask, reset, dhs, dstate, options = cell_problem(cell, 9, 43, 6, 5, np.float64)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, V, floats.shape[:2])
    if kind == "ids":
        p = {**p, "W": rng.standard_normal((p["W"].shape[0], V))}
        fast_xs, ref_xs = ids, ids
    else:
        E = rng.standard_normal((V, 6))
        fast_xs, ref_xs = Embedded(E, ids), E[ids]
    if projection:
        p = {**p, "R": rng.standard_normal((3, 5)) * 0.5, "U": rng.standard_normal((4 * 5, 3)) * 0.5}
        dhs, dstate = dhs[..., :3], (dstate[0][:, :3], dstate[1])
        state0 = (state0[0][:, :3], state0[1])
    return name, p, fast_xs, ref_xs, state0, mask, reset, dhs, dstate, options


def gradients(cell, p, xs, state0, mask, reset, dhs, dstate, options, threads=None):
    kw = {} if threads is None else {"threads": threads}
    _, _, cache = cell.forward(p, xs, state0, mask, reset, **options, **kw)
    return cell.backward(p, dhs, dstate, cache, 0.7, **kw)


CELL_CASES = [("rnn-tanh", False), ("rnn-relu", False), ("gru", False), ("lstm", False), ("lstm", True)]


@pytest.mark.parametrize("cell, projection", CELL_CASES, ids=["rnn-tanh", "rnn-relu", "gru", "lstm", "lstm-proj"])
@pytest.mark.parametrize("kind", ["ids", "embedded"])
@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_table_gradient_summed_in_the_loop_equals_reference(cell, projection, kind, threads, monkeypatch):
    name, p, fast_xs, ref_xs, state0, mask, reset, dhs, dstate, options = problem(cell, kind, threads, projection)
    assert len(rows.blocks(43, threads)) == threads
    W = p["W"]
    ids, dPs, _ = window.loop_table(W, fast_xs, rows.blocks(43, threads))
    assert dPs.shape == (threads, V, W.shape[0]) and ids.shape == (9, 43)      # this path is the one tested
    dx_r, d0_r, g_r = gradients(CELLS[name], p, ref_xs, state0, mask, reset, dhs, dstate, options)
    dx_f, d0_f, g_f = gradients(fast.CELLS[name], p, fast_xs, state0, mask, reset, dhs, dstate, options, threads)
    for k in g_r:
        assert relative(g_f[k], g_r[k]) < ROUND_OFF, k
    if kind == "embedded":
        assert relative(dx_f, scatter_rows(V, fast_xs.ids, dx_r)) < ROUND_OFF         # dE
    monkeypatch.setattr(window, "LOOP_TABLE_BYTES", 0)                            # the scatter after the loop
    assert window.loop_table(W, fast_xs, rows.blocks(43, threads))[1].shape == (1, 0, W.shape[0])
    dx_s, _, g_s = gradients(fast.CELLS[name], p, fast_xs, state0, mask, reset, dhs, dstate, options, threads)
    for k in g_r:
        assert relative(g_s[k], g_f[k]) < ROUND_OFF, k


def test_float_inputs_and_large_tables_are_left_to_the_scatter():
    W = np.zeros((4, 6), np.float32)
    parts = rows.blocks(32, 2)
    assert window.loop_table(W, np.zeros((3, 32, 6), np.float32), parts)[1].shape == (1, 0, 4)
    big = np.zeros((window.LOOP_TABLE_BYTES // 4 // 4 + 1, 2), np.float32)
    assert window.loop_table(W, Embedded(big, np.zeros((3, 32), np.int64)), parts)[1].shape == (1, 0, 4)
    assert window.loop_table(W, np.zeros((3, 32), np.int64), parts)[1].shape == (2, 6, 4)
