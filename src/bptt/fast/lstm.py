"""The LSTM of bptt.reference.lstm with its time loops compiled: same equations (numbered as there),
same arguments, same cache, so either backward accepts either forward's cache.

Per step, one GEMM and one fused pass over the gates:
    forward   a_t = h_{t-1} U^T  (packed GEMM)  then, row by row, + the input row W x_t + b + b_U
              (window.input_table) and (1)-(4) in one loop
    backward  (4b)-(1b) in one loop writing da_t, then dh_next = da_t U  (packed GEMM)
dW, dU, db stay outside the loop as single GEMMs over all T*B rows (window.py). U arrives packed
once per window (packed.pack): U^T for the forward GEMM, U for the backward one.
"""

import numpy as np
from numba import njit, prange

# the cell's declarations and the functions that need no compiling: the reference's
from ..reference.lstm import EXTRA, GATE_NAMES, GATES, OPTIONS, init_params, state_names, step_jacobian  # noqa: F401
from . import aligned, rows
from .common import incoming, live_rows, previous_rows
from .nonlinear import ONE, ZERO, sigmoid, tanh
from .packed import gemm, pack
from .window import input_table, project_backward, recurrent_grad

JIT = {"nogil": True, "cache": True, "error_model": "numpy", "fastmath": {"contract", "arcp", "nsz", "reassoc"}}


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
        gemm(h_prev[:live], U_T, a[:live], 0.0)            # (1) U h_{t-1}, the rows still running
        for r in range(b1 - b0):                           # per row, loops from 0: they vectorise
            ar, row = a[r], b0 + r
            if not mask[t, row]:                           # (4) ended: the state is held, no gates
                ar[:] = ZERO
                cs[t, row] = c_prev[r]
                hs[t, row] = h_prev[r]
                tanh_cs[t, row] = ZERO
                continue
            x = table[ids[t, row]]                         # (1) W x_t + b + b_U
            for j in range(2 * H):
                ar[j] = sigmoid(x[j] + ar[j], approx)      # (1) i, f
            for j in range(H):                             # (not range(2H, 3H): that one stays scalar)
                ar[2 * H + j] = tanh(x[2 * H + j] + ar[2 * H + j], approx)          # (1) g
            for j in range(H):
                ar[3 * H + j] = sigmoid(x[3 * H + j] + ar[3 * H + j], approx)       # (1) o
            h_t, c_t, tc_t, cp = hs[t, row], cs[t, row], tanh_cs[t, row], c_prev[r]
            for j in range(H):
                c_t[j] = ar[H + j] * cp[j] + ar[j] * ar[2 * H + j]      # (2)
                tc_t[j] = tanh(c_t[j], approx)
                h_t[j] = ar[3 * H + j] * tc_t[j]           # (3)


@njit(**JIT)
def backward_rows(dhs, dh_T, dc_T, U, gates, c0, cs, tanh_cs, mask, reset, clip, trace, das, dh0, dc0,
                  b0, b1):
    """Rows b0:b1: writes da_t (T, B, 4H) for every step and the gradient reaching the initial state.
    clip <= 0: no clipping; trace (T, B, H) receives dL/dh_t when it has T rows."""
    T, H = gates.shape[0], cs.shape[2]
    n = b1 - b0
    dh_next, dc_next = dh_T[b0:b1].copy(), dc_T[b0:b1].copy()
    dh_held = np.zeros((n, H), gates.dtype)
    dh, zeros = np.empty(H, gates.dtype), np.zeros(H, gates.dtype)
    for t in range(T - 1, -1, -1):
        for r in range(n):
            row = b0 + r
            incoming(dh, dhs[t, row], dh_next[r], clip, trace, t, row)
            da = das[t, row]
            if not mask[t, row]:                           # (4b) dh_t and dc_t pass to step t-1 unchanged
                da[:] = ZERO
                dh_held[r] = dh
                continue
            g_t, tc, dc = gates[t, row], tanh_cs[t, row], dc_next[r]
            c_prev = zeros if reset[t, row] else (c0[row] if t == 0 else cs[t - 1, row])
            for j in range(H):
                i, f, g, o = g_t[j], g_t[H + j], g_t[2 * H + j], g_t[3 * H + j]
                do = dh[j] * tc[j]                         # (3b)
                dc_t = dc[j] + dh[j] * o * (ONE - tc[j] * tc[j])          # (3b)
                da[j] = dc_t * g * i * (ONE - i)           # (2b), (1b) di
                da[H + j] = dc_t * c_prev[j] * f * (ONE - f)               # (2b), (1b) df
                da[2 * H + j] = dc_t * i * (ONE - g * g)   # (2b), (1b) dg
                da[3 * H + j] = do * o * (ONE - o)         # (1b) do
                dc[j] = dc_t * f                           # (2b) dc_next
        live = live_rows(mask[t, b0:b1])
        gemm(das[t, b0:b0 + live], U, dh_next[:live], 0.0)  # (1b) dh_next = da_t U; the rest is held below
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


def forward(p, xs, state0, mask=None, reset=None, approx=None, threads=None):
    W, U, b, b_U = p["W"], p["U"], p["b"], p["b_U"]
    h0, c0 = (np.ascontiguousarray(s) for s in state0)
    table, ids = input_table(W, b, xs, b_U, mask)          # (1) W x_t + b + b_U = table[ids_t], both biases once
    (T, B), H = ids.shape, U.shape[1]
    gates = aligned.empty((T, B, 4 * H), table.dtype)
    hs, cs, tanh_cs = (aligned.empty((T, B, H), table.dtype) for _ in range(3))
    m, r = rows.masks(mask, reset, T, B)
    rows.run(forward_rows, (table, ids, gates, pack(U, True), h0, c0, hs, cs, tanh_cs, m, r,
                            rows.approximate(approx, table.dtype)), rows.blocks(B, threads), forward_blocks)
    cache = (xs, state0, hs, cs, tanh_cs, gates, mask, reset)
    return hs, (hs[-1].copy(), cs[-1].copy()), cache


def backward(p, dhs, dstate_T, cache, clip_dh=None, dh_trace=None, threads=None):
    W, U = p["W"], p["U"]
    xs, (h0, c0), hs, cs, tanh_cs, gates, mask, reset = cache
    T, B, H = hs.shape
    das = aligned.empty_like(gates)                        # (T, B, 4H): dL/da_t
    dh0, dc0 = aligned.empty_like(hs[0]), aligned.empty_like(hs[0])
    m, r = rows.masks(mask, reset, T, B)
    rows.run(backward_rows, (np.ascontiguousarray(dhs), *(np.ascontiguousarray(d) for d in dstate_T),
                             pack(U, False), gates, np.ascontiguousarray(c0), cs, tanh_cs, m, r,
                             rows.clip(clip_dh, gates.dtype), rows.trace(dh_trace, gates.dtype), das, dh0, dc0),
             rows.blocks(B, threads), backward_blocks)
    dU = recurrent_grad(das, h0, hs, reset, mask=mask)
    dW, dxs, db = project_backward(W, xs, das, mask)
    return dxs, (dh0, dc0), {"W": dW, "U": dU, "b": db, "b_U": db.copy()}
