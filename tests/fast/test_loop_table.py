"""The gradient of the input table summed inside the backward loop (window.loop_table): for token ids
and embedded ids, on 1 to 5 blocks of rows, with rows that end early and resets, every cell (the LSTM
with a projection too) equals the reference to round-off in float64, and equals the same engine with
the sum left to a scatter after the loop (the path a large table takes); in bf16, da's panels written by
the loop equal packing da after it, bit for bit, also where the loop then writes one step's da at a
time (window.loop_rows: nothing after it reads da). No pytest fixtures: tests/fast/fast_width_check.py runs
these at the other vector width too."""

from unittest import mock

import numpy as np
import pytest
from test_fast import ROUND_OFF, cell_problem, relative

from bptt import fast
from bptt.fast import rows, window
from bptt.reference import CELLS
from bptt.reference.inputs import Embedded, scatter_rows

V = 7


def problem(cell, kind, projection=False):
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
def test_table_gradient_summed_in_the_loop_equals_reference(cell, projection, kind, threads):
    name, p, fast_xs, ref_xs, state0, mask, reset, dhs, dstate, options = problem(cell, kind, projection)
    assert len(rows.blocks(43, threads)) == threads
    W = p["W"]
    ids, dPs, _ = window.loop_table(W, fast_xs, rows.blocks(43, threads))
    assert dPs.shape == (threads, V, W.shape[0]) and ids.shape == (9, 43)      # this path is the one tested
    dx_r, d0_r, g_r = gradients(CELLS[name], p, ref_xs, state0, mask, reset, dhs, dstate, options)
    with mock.patch.object(fast.CELLS[name], "loop_rows", wraps=window.loop_rows) as made:
        dx_f, d0_f, g_f = gradients(fast.CELLS[name], p, fast_xs, state0, mask, reset, dhs, dstate, options, threads)
    # the GRU's dL/d(W x_t + b) only feeds dP: one step's rows; the others' da feeds dU (float64: no panels)
    assert [c.args[4] for c in made.call_args_list] == [name != "gru"]
    for k in g_r:
        assert relative(g_f[k], g_r[k]) < ROUND_OFF, k
    if kind == "embedded":
        assert relative(dx_f, scatter_rows(V, fast_xs.ids, dx_r)) < ROUND_OFF         # dE
    with mock.patch.object(window, "LOOP_TABLE_BYTES", 0):                       # the scatter after the loop
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


def bf16_problem(cell, kind, B, projection):
    name, p, fast_xs, _, state0, mask, reset, dhs, dstate, options = problem(cell, kind, projection)
    rng = np.random.default_rng(2)
    T = 9
    f32 = lambda a: np.ascontiguousarray(a[:, :B] if a.ndim == 3 else a[:B], np.float32)   # noqa: E731
    p = {k: v.astype(np.float32) for k, v in p.items()}
    if kind == "float":
        fast_xs = rng.standard_normal((T, B, 6)).astype(np.float32)
    elif kind == "ids":
        fast_xs = fast_xs[:, :B]
    else:
        fast_xs = Embedded(fast_xs.E.astype(np.float32), fast_xs.ids[:, :B])
    mask = np.ones((T, B, 1), bool)
    mask[6:, 0] = False                                   # one row ends early: few enough to keep every position
    return name, p, fast_xs, tuple(f32(s) for s in state0), mask, reset[:, :B], f32(dhs), \
        tuple(f32(s) for s in dstate), options


@pytest.mark.parametrize("cell, projection", CELL_CASES, ids=["rnn-tanh", "rnn-relu", "gru", "lstm", "lstm-proj"])
@pytest.mark.parametrize("kind", ["ids", "embedded", "float"])
@pytest.mark.parametrize("B, threads", [(7, 1), (7, 2), (43, 3), (32, 2)])
@pytest.mark.parametrize("resets", [True, False])
def test_bf16_pairs_made_in_the_loop_equal_the_packed_ones(cell, projection, kind, B, threads, resets):
    """bf16: da_t's pairs written by the backward loop (window.loop_panels, bf16.pair_rows; rows whose partner
    is another thread's or the previous step's as halves: an odd B) give dU and dW bit for bit as packing
    all of da after the loop does. Without resets dU reads h_{t-1} in place (h_0, then hs: an odd B puts
    a pair across the two), against the copy the packed path multiplies."""
    name, p, xs, state0, mask, reset, dhs, dstate, options = bf16_problem(cell, kind, B, projection)
    reset = reset if resets else None
    assert window.live_positions(mask) is None
    cell_f = fast.CELLS[name]
    _, _, cache = cell_f.forward(p, xs, state0, mask, reset, **options, threads=threads, precision="bf16")
    assert window.loop_panels(9, B, p["U"].shape[0], mask, "bf16").shape[0] > 0      # this path is the one tested
    with mock.patch.object(cell_f, "loop_rows", wraps=window.loop_rows) as made:
        dx_l, d0_l, g_l = cell_f.backward(p, dhs, dstate, cache, threads=threads, precision="bf16")
    # token inputs: nothing after the loop reads da (dP and the panels hold it), one step's rows are written
    assert [c.args[4] for c in made.call_args_list] == [kind == "float"]
    unused = lambda T, B, G, mask, precision: window.bf16.empty_panels(0, G)      # noqa: E731  da packed after
    with mock.patch.object(cell_f, "loop_panels", unused):
        dx_p, d0_p, g_p = cell_f.backward(p, dhs, dstate, cache, threads=threads, precision="bf16")
    for k in g_p:
        assert np.array_equal(g_l[k], g_p[k]), k
    assert (dx_l is None and dx_p is None) or np.array_equal(dx_l, dx_p)
    for a, b in zip(d0_l, d0_p, strict=True):
        assert np.array_equal(a, b)
