"""The LSTM of bptt.reference.lstm with its time loops compiled: same equations (numbered as there),
same arguments, same cache, so either backward accepts either forward's cache.

Per step, one GEMM and one fused pass over the gates:
    forward   a_t = h_{t-1} U^T  (packed GEMM)  then, row by row, + the input row W x_t + b + b_U
              (window.input_table) and (1)-(4) in one loop
    backward  (4b)-(1b) in one loop writing da_t, then dh_next = da_t U  (packed GEMM)
dW, dU, db stay outside the loop as single GEMMs over all T*B rows (window.py); the backward loop
also sums the input table's gradient for token inputs (window.loop_table) and, in bf16, writes da_t's
bf16 panels for dU (window.loop_panels). U arrives packed once per window (packed.pack): U^T for the
forward GEMM, U for the backward one.

With a projection (p holds R, (P, H)) the kernels *_projected run instead, with one more packed
GEMM per step each way:
    forward   (1)-(3) row by row into m_t, then h_t = m_t R^T  (3', packed GEMM), then (4)
    backward  dL/dh_t row by row (4b), then dm_t = dh_t R  (3'b, packed GEMM), then (3b)-(1b) as above
and dR = sum_t dh_t^T m_t after the loop, one GEMM over all T*B rows (matmul.py). The rows of the
gate arithmetic (gates_row, gates_row_backward) are the same code in both pairs of kernels.
"""

import numpy as np
from numba import njit, prange

# the cell's declarations and the functions that need no compiling: the reference's
from ..reference.lstm import (  # noqa: F401
    EXTRA,
    GATE_NAMES,
    GATES,
    OPTIONS,
    PROJECTION,
    init_params,
    init_projection,
    projection,
    state_names,
    step_jacobian,
)
from . import aligned, rows
from .bf16 import pair_rows, panels, product
from .common import add_to_table, incoming, live_rows, own_table, previous_rows, step_rows
from .matmul import matmul
from .nonlinear import ONE, ZERO, sigmoid, tanh
from .window import (
    filled,
    input_table,
    loop_panels,
    loop_rows,
    loop_table,
    loop_table_sum,
    project_backward,
    read_after_loop,
    recurrent_grad,
)

FASTMATH = {"contract", "arcp", "nsz", "reassoc"}
JIT = {"nogil": True, "cache": True, "error_model": "numpy", "fastmath": FASTMATH}
ROW = {"inline": "always", "error_model": "numpy", "fastmath": FASTMATH}      # inlined into the kernels


@njit(**ROW)
def gates_row(ar, x, cp, c_t, tc_t, m_t, approx):
    """(1)-(3) on one row: ar (4H) holds U h_{t-1} and becomes i, f, g, o; x (4H) is W x_t + b + b_U,
    cp c_{t-1} (H); writes c_t, tanh(c_t) and m_t = o_t * tanh(c_t) (h_t itself without a projection).
    The loops run over views of the gates indexed from 0, as gates_row_backward's (here that measured
    no faster than indexing as ar[2 H + j]: the views are for reading the equations)."""
    H = cp.size
    a_if, x_if = ar[:2 * H], x[:2 * H]
    for j in range(2 * H):
        a_if[j] = sigmoid(x_if[j] + a_if[j], approx)       # (1) i, f
    i, f, g, o = ar[:H], ar[H:2 * H], ar[2 * H:3 * H], ar[3 * H:4 * H]
    x_g, x_o = x[2 * H:3 * H], x[3 * H:4 * H]
    for j in range(H):
        g[j] = tanh(x_g[j] + g[j], approx)                 # (1) g
    for j in range(H):
        o[j] = sigmoid(x_o[j] + o[j], approx)              # (1) o
    for j in range(H):
        c_t[j] = f[j] * cp[j] + i[j] * g[j]                # (2)
        tc_t[j] = tanh(c_t[j], approx)
        m_t[j] = o[j] * tc_t[j]                            # (3)


@njit(**ROW)
def gates_row_backward(dm, g_t, tc, dc, c_prev, da):
    """(3b)-(1b) on one row: dm (H) = dL/dm_t (dL/dh_t without a projection), g_t (4H) the gates, tc
    tanh(c_t), dc (H) dc_next, replaced by the next one down; writes da (4H) = dL/da_t. Over views
    indexed from 0: indexed as da[H + j] the loop stayed partly scalar (0.44 against 0.11 ms for a
    thread's rows of an LSTM H256 window, 2-core AMD EPYC Zen 5, AVX-512)."""
    H = dc.size
    i, f, g, o = g_t[:H], g_t[H:2 * H], g_t[2 * H:3 * H], g_t[3 * H:4 * H]
    di, df, dg, do = da[:H], da[H:2 * H], da[2 * H:3 * H], da[3 * H:4 * H]
    for j in range(H):
        do_t = dm[j] * tc[j]                               # (3b)
        dc_t = dc[j] + dm[j] * o[j] * (ONE - tc[j] * tc[j])         # (3b)
        di[j] = dc_t * g[j] * i[j] * (ONE - i[j])          # (2b), (1b) di
        df[j] = dc_t * c_prev[j] * f[j] * (ONE - f[j])     # (2b), (1b) df
        dg[j] = dc_t * i[j] * (ONE - g[j] * g[j])          # (2b), (1b) dg
        do[j] = do_t * o[j] * (ONE - o[j])                 # (1b) do
        dc[j] = dc_t * f[j]                                # (2b) dc_next


@njit(**JIT)
def forward_rows(table, ids, gates, U_T, h0, c0, hs, cs, tanh_cs, mask, reset, approx, b0, b1):
    """Rows b0:b1 of every step: gates (T, B, 4H) receives i, f, g, o. W x_t + b + b_U = table[ids[t, b]]."""
    T, H = gates.shape[0], hs.shape[2]
    hw = np.zeros((b1 - b0, H), gates.dtype)               # h_{t-1}, c_{t-1} with reset rows zeroed
    cw = np.zeros((b1 - b0, H), gates.dtype)
    for t in range(T):
        h_prev = previous_rows(h0[b0:b1] if t == 0 else hs[t - 1, b0:b1], reset[t, b0:b1], hw)    # (0)
        c_prev = previous_rows(c0[b0:b1] if t == 0 else cs[t - 1, b0:b1], reset[t, b0:b1], cw)
        a, live = gates[t, b0:b1], live_rows(mask[t, b0:b1])
        product(h_prev[:live], U_T, a[:live], 0.0)            # (1) U h_{t-1}, the rows still running
        for r in range(b1 - b0):                           # per row, loops from 0: they vectorise
            ar, row = a[r], b0 + r
            if not mask[t, row]:                           # (4) ended: the state is held, no gates
                ar[:] = ZERO
                cs[t, row] = c_prev[r]
                hs[t, row] = h_prev[r]
                tanh_cs[t, row] = ZERO
                continue
            gates_row(ar, table[ids[t, row]], c_prev[r], cs[t, row], tanh_cs[t, row], hs[t, row], approx)   # (1)-(3)


@njit(**JIT)
def backward_rows(dhs, dh_T, dc_T, U, gates, c0, cs, tanh_cs, mask, reset, clip, trace, das, ids, dPs, starts,
                  dap, dh0, dc0, b0, b1):
    """Rows b0:b1: writes da_t (T, B, 4H) for every step and the gradient reaching the initial state.
    clip <= 0: no clipping; trace (T, B, H) receives dL/dh_t when it has T rows. ids, dPs, starts
    (window.loop_table): da_t summed onto the block's own gradient of the input table, if it has rows;
    dap (window.loop_panels): da_t's bf16 pairs, for dU, if it has panels."""
    T, B, H = gates.shape[0], gates.shape[1], cs.shape[2]
    n = b1 - b0
    dP = own_table(dPs, starts, b0)
    dh_next, dc_next = dh_T[b0:b1].copy(), dc_T[b0:b1].copy()
    dh_held = np.zeros((n, H), gates.dtype)
    dh, zeros = np.empty(H, gates.dtype), np.zeros(H, gates.dtype)
    for t in range(T - 1, -1, -1):
        da_t = step_rows(das, t)
        for r in range(n):
            row = b0 + r
            incoming(dh, dhs[t, row], dh_next[r], clip, trace, t, row)
            da = da_t[row]
            if not mask[t, row]:                           # (4b) dh_t and dc_t pass to step t-1 unchanged
                da[:] = ZERO
                dh_held[r] = dh
                continue
            c_prev = zeros if reset[t, row] else (c0[row] if t == 0 else cs[t - 1, row])
            gates_row_backward(dh, gates[t, row], tanh_cs[t, row], dc_next[r], c_prev, da)     # (3b)-(1b)
            add_to_table(dP, ids, t, row, da)              # dW x_t: onto the table row read at (1)
        pair_rows(dap, da_t, t * B, b0, b1)                # da_t as bf16 pairs, for dU
        live = live_rows(mask[t, b0:b1])
        product(da_t[b0:b0 + live], U, dh_next[:live], 0.0)    # (1b) dh_next = da_t U; the rest is held below
        for r in range(n):
            row = b0 + r
            if reset[t, row]:                              # (0b)
                dh_next[r], dc_next[r] = 0, 0
            elif not mask[t, row]:
                dh_next[r] = dh_held[r]                    # (4b) da_t = 0 on this row
    dh0[b0:b1], dc0[b0:b1] = dh_next, dc_next


@njit(**JIT)
def forward_rows_projected(table, ids, gates, U_T, R_T, h0, c0, hs, cs, tanh_cs, ms, mask, reset, approx, b0, b1):
    """forward_rows with the projection (3'): ms (T, B, H) receives m_t, hs (T, B, P) h_t = m_t R^T.
    R_T = panels(R, True, precision)."""
    T, H, P = gates.shape[0], cs.shape[2], hs.shape[2]
    hw = np.zeros((b1 - b0, P), gates.dtype)               # h_{t-1}, c_{t-1} with reset rows zeroed
    cw = np.zeros((b1 - b0, H), gates.dtype)
    for t in range(T):
        h_prev = previous_rows(h0[b0:b1] if t == 0 else hs[t - 1, b0:b1], reset[t, b0:b1], hw)    # (0)
        c_prev = previous_rows(c0[b0:b1] if t == 0 else cs[t - 1, b0:b1], reset[t, b0:b1], cw)
        a, live = gates[t, b0:b1], live_rows(mask[t, b0:b1])
        product(h_prev[:live], U_T, a[:live], 0.0)            # (1) U h_{t-1}, the rows still running
        for r in range(b1 - b0):
            ar, row = a[r], b0 + r
            if not mask[t, row]:                           # (4) ended: c is held (h below), no gates
                ar[:] = ZERO
                cs[t, row] = c_prev[r]
                tanh_cs[t, row] = ZERO
                ms[t, row] = ZERO
                continue
            gates_row(ar, table[ids[t, row]], c_prev[r], cs[t, row], tanh_cs[t, row], ms[t, row], approx)   # (1)-(3)
        product(ms[t, b0:b0 + live], R_T, hs[t, b0:b0 + live], 0.0)     # (3') h_t = R m_t
        for r in range(b1 - b0):
            if not mask[t, b0 + r]:
                hs[t, b0 + r] = h_prev[r]                  # (4) after the GEMM, which wrote 0 on rows < live


@njit(**JIT)
def backward_rows_projected(dhs, dh_T, dc_T, U, R, gates, c0, cs, tanh_cs, mask, reset, clip, trace, das, ids, dPs,
                            starts, dap, dh_cells, dh0, dc0, b0, b1):
    """backward_rows with the projection: dh_cells (T, B, P) receives dL/dh_t after (4b) (0 on rows
    that have ended), for dR; dm_t = dh_t R with R packed (panels(R, False, precision))."""
    T, B, H, P = gates.shape[0], gates.shape[1], cs.shape[2], dhs.shape[2]
    n = b1 - b0
    dP = own_table(dPs, starts, b0)
    dh_next, dc_next = dh_T[b0:b1].copy(), dc_T[b0:b1].copy()
    dh_held = np.zeros((n, P), gates.dtype)
    dm, zeros = np.zeros((n, H), gates.dtype), np.zeros(H, gates.dtype)
    for t in range(T - 1, -1, -1):
        for r in range(n):
            row = b0 + r
            dh = dh_cells[t, row]
            incoming(dh, dhs[t, row], dh_next[r], clip, trace, t, row)
            if not mask[t, row]:                           # (4b) dh_t and dc_t pass to step t-1 unchanged
                dh_held[r] = dh
                dh[:] = ZERO
        live = live_rows(mask[t, b0:b1])
        product(dh_cells[t, b0:b0 + live], R, dm[:live], 0.0)            # (3'b) dm_t = dh_t R
        da_t = step_rows(das, t)
        for r in range(n):
            row = b0 + r
            da = da_t[row]
            if not mask[t, row]:
                da[:] = ZERO
                continue
            c_prev = zeros if reset[t, row] else (c0[row] if t == 0 else cs[t - 1, row])
            gates_row_backward(dm[r], gates[t, row], tanh_cs[t, row], dc_next[r], c_prev, da)   # (3b)-(1b)
            add_to_table(dP, ids, t, row, da)
        pair_rows(dap, da_t, t * B, b0, b1)
        product(da_t[b0:b0 + live], U, dh_next[:live], 0.0)    # (1b) dh_next = da_t U; the rest is held below
        for r in range(n):
            row = b0 + r
            if reset[t, row]:                              # (0b)
                dh_next[r], dc_next[r] = 0, 0
            elif not mask[t, row]:
                dh_next[r] = dh_held[r]                    # (4b) da_t = 0 on this row
    dh0[b0:b1], dc0[b0:b1] = dh_next, dc_next


@njit(**rows.PARALLEL)
def forward_blocks(args, blocks):
    """forward_rows(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        forward_rows(*args, blocks[i, 0], blocks[i, 1])


@njit(**rows.PARALLEL)
def backward_blocks(args, blocks):
    """backward_rows(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        backward_rows(*args, blocks[i, 0], blocks[i, 1])


@njit(**rows.PARALLEL)
def forward_blocks_projected(args, blocks):
    """forward_rows_projected(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        forward_rows_projected(*args, blocks[i, 0], blocks[i, 1])


@njit(**rows.PARALLEL)
def backward_blocks_projected(args, blocks):
    """backward_rows_projected(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        backward_rows_projected(*args, blocks[i, 0], blocks[i, 1])


def forward(p, xs, state0, mask=None, reset=None, approx=None, threads=None, precision="float32"):
    W, U, b, b_U = p["W"], p["U"], p["b"], p["b_U"]
    h0, c0 = (np.ascontiguousarray(s) for s in state0)
    table, ids = input_table(W, b, xs, b_U, mask, precision)   # (1) W x_t + b + b_U = table[ids_t], both biases once
    (T, B), H, S = ids.shape, U.shape[0] // GATES, U.shape[1]           # S: the width of h, P with a projection
    R = projection(p, H)
    gates = aligned.empty((T, B, 4 * H), table.dtype)
    hs = aligned.empty((T, B, S), table.dtype)
    cs, tanh_cs = (aligned.empty((T, B, H), table.dtype) for _ in range(2))
    m, r = rows.masks(mask, reset, T, B)
    approx = rows.approximate(approx, table.dtype)
    if R is None:
        ms = None
        rows.run(forward_rows, (table, ids, gates, panels(U, True, precision), h0, c0, hs, cs, tanh_cs, m, r, approx),
                 rows.blocks(B, threads), forward_blocks)
    else:
        ms = aligned.empty((T, B, H), table.dtype)         # m_t of (3)
        rows.run(forward_rows_projected, (table, ids, gates, panels(U, True, precision), panels(R, True, precision),
                                          h0, c0, hs, cs, tanh_cs, ms,
                                          m, r, approx),
                 rows.blocks(B, threads), forward_blocks_projected)
    cache = (xs, state0, hs, cs, tanh_cs, gates, mask, reset, ms)
    return hs, (hs[-1].copy(), cs[-1].copy()), cache


def backward(p, dhs, dstate_T, cache, clip_dh=None, dh_trace=None, threads=None, precision="float32"):
    W, U = p["W"], p["U"]
    xs, (h0, c0), hs, cs, tanh_cs, gates, mask, reset, ms = cache
    T, B, H = cs.shape
    R = projection(p, H)
    dh0, dc0 = aligned.empty_like(hs[0]), aligned.empty_like(cs[0])
    m, r = rows.masks(mask, reset, T, B)
    dh_T, dc_T = (np.ascontiguousarray(d) for d in dstate_T)
    blocks = rows.blocks(B, threads)
    ids, dPs, starts = loop_table(W, xs, blocks)           # dW x_t summed in the loop, where it pays
    dap = loop_panels(T, B, 4 * H, mask, precision)        # bf16: da's pairs made in the loop, for dU and dW
    das = loop_rows(T, B, 4 * H, gates.dtype, read_after_loop(dPs, dap))    # (T, B, 4H) dL/da_t, or one step's
    shared = (gates, np.ascontiguousarray(c0), cs, tanh_cs, m, r, rows.clip(clip_dh, gates.dtype),
              rows.trace(dh_trace, gates.dtype), das, ids, dPs, starts, dap)
    if R is None:
        rows.run(backward_rows, (np.ascontiguousarray(dhs), dh_T, dc_T, panels(U, False, precision), *shared, dh0, dc0),
                 blocks, backward_blocks)
    else:
        dh_cells = aligned.empty_like(hs)                  # (T, B, P): dL/dh_t after (4b), for dR
        rows.run(backward_rows_projected, (np.ascontiguousarray(dhs), dh_T, dc_T, panels(U, False, precision),
                                           panels(R, False, precision), *shared, dh_cells, dh0, dc0),
                 blocks, backward_blocks_projected)
    dU = recurrent_grad(das, h0, hs, reset, mask=mask, precision=precision, panels=filled(dap))
    dW, dxs, db = project_backward(W, xs, das, mask, precision, loop_table_sum(dPs), filled(dap))
    grads = {"W": dW, "U": dU, "b": db, "b_U": db.copy()}
    if R is not None:
        grads[PROJECTION] = matmul(dh_cells.reshape(T * B, -1).T, np.ascontiguousarray(ms).reshape(T * B, H),
                                  precision=precision)  # (3'b)
    return dxs, (dh0, dc0), grads
