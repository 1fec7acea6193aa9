"""The GRU of bptt.reference.gru with its time loops compiled: same equations (numbered as there),
same arguments, same cache, so either backward accepts either forward's cache.

Per step, one GEMM and fused passes over the gates:
    forward   h_{t-1} U^T  (packed GEMM)  then (1)-(5) row by row, adding b_U and reading
              W x_t + b from the input table (window.input_table)
    backward  (5b)-(1b) row by row writing dax_t and dah_t, then dh_next = dh_t z + dah_t U  (packed GEMM, beta = 1)
dW, dU, db, db_U stay outside the loop as single GEMMs and sums over all T*B rows (window.py). U arrives
packed once per window (packed.pack): U^T for the forward GEMM, U for the backward one.
"""

import numpy as np
from numba import njit, prange

# the cell's declarations and the functions that need no compiling: the reference's
from ..reference.gru import EXTRA, GATE_NAMES, GATES, OPTIONS, init_params, state_names, step_jacobian  # noqa: F401
from . import aligned, rows
from .bf16 import pair_rows, panels, product
from .common import add_to_table, incoming, live_rows, own_table, previous_rows, step_rows
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

JIT = {"nogil": True, "cache": True, "error_model": "numpy", "fastmath": {"contract", "arcp", "nsz", "reassoc"}}


@njit(**JIT)
def forward_rows(table, ids, gates, U_T, b_U, h0, hs, ah_ns, mask, reset, approx, b0, b1):
    """Rows b0:b1 of every step: gates (T, B, 3H) receives r, z, n. W x_t + b = table[ids[t, b]]."""
    T, H = gates.shape[0], hs.shape[2]
    n_rows = b1 - b0
    hw = np.zeros((n_rows, H), gates.dtype)                # h_{t-1} with reset rows zeroed
    ah = np.empty((n_rows, 3 * H), gates.dtype)            # U h_{t-1}
    for t in range(T):
        h_prev = previous_rows(h0[b0:b1] if t == 0 else hs[t - 1, b0:b1], reset[t, b0:b1], hw)    # (0)
        live = live_rows(mask[t, b0:b1])
        product(h_prev[:live], U_T, ah[:live], 0.0)           # U h_{t-1}, the rows still running
        for r in range(n_rows):
            row = b0 + r
            g, a, hp, h_t, ah_n = gates[t, row], ah[r], h_prev[r], hs[t, row], ah_ns[t, row]
            if not mask[t, row]:                           # (5) ended: the state is held, no gates
                g[:], ah_n[:] = ZERO, ZERO
                h_t[:] = hp
                continue
            x = table[ids[t, row]]                         # W x_t + b
            for j in range(2 * H):
                g[j] = sigmoid(x[j] + (a[j] + b_U[j]), approx)          # (1), (2) r, z
            rg, z, n = g[:H], g[H:2 * H], g[2 * H:3 * H]   # views indexed from 0: loops that vectorise (lstm.gates_row)
            a_n, b_n, x_n = a[2 * H:3 * H], b_U[2 * H:3 * H], x[2 * H:3 * H]
            for j in range(H):
                ah_n[j] = a_n[j] + b_n[j]                  # U_n h_{t-1} + b_U,n
                n[j] = tanh(x_n[j] + rg[j] * ah_n[j], approx)          # (3) n
            for j in range(H):
                h_t[j] = n[j] + z[j] * (hp[j] - n[j])      # (4)


@njit(**JIT)
def backward_rows(dhs, dh_T, U, gates, ah_ns, h0, hs, mask, reset, clip, trace, daxs, dahs, ids, dPs, starts, dap,
                  dh0, b0, b1):
    """Rows b0:b1: writes dax_t, dah_t (T, B, 3H) for every step and the gradient reaching h_0.
    clip <= 0: no clipping; trace (T, B, H) receives dL/dh_t when it has T rows. ids, dPs, starts
    (window.loop_table): dax_t summed onto the block's own gradient of the input table, if it has rows;
    dap (window.loop_panels): dah_t's bf16 pairs, for dU, if it has panels."""
    T, B, H = gates.shape[0], gates.shape[1], hs.shape[2]
    n_rows = b1 - b0
    dP = own_table(dPs, starts, b0)
    dh_next = dh_T[b0:b1].copy()
    dh, zeros = np.empty(H, gates.dtype), np.zeros(H, gates.dtype)
    for t in range(T - 1, -1, -1):
        dax_t = step_rows(daxs, t)
        for r in range(n_rows):
            row = b0 + r
            incoming(dh, dhs[t, row], dh_next[r], clip, trace, t, row)
            dax, dah = dax_t[row], dahs[t, row]
            if not mask[t, row]:                           # (5b) all of dh_t passes to step t-1
                dax[:], dah[:] = ZERO, ZERO
                dh_next[r] = dh
                continue
            g, ah_n, d_direct = gates[t, row], ah_ns[t, row], dh_next[r]
            h_prev = zeros if reset[t, row] else (h0[row] if t == 0 else hs[t - 1, row])
            rg, z, n = g[:H], g[H:2 * H], g[2 * H:3 * H]   # views indexed from 0: loops that vectorise
            dax_r, dax_z, dax_n = dax[:H], dax[H:2 * H], dax[2 * H:3 * H]
            dah_r, dah_z, dah_n = dah[:H], dah[H:2 * H], dah[2 * H:3 * H]
            for j in range(H):
                da_n = dh[j] * (ONE - z[j]) * (ONE - n[j] * n[j])       # (4b), (3b)
                dz = dh[j] * (h_prev[j] - n[j])            # (4b)
                dax_r[j] = da_n * ah_n[j] * rg[j] * (ONE - rg[j])       # (3b), (1b)
                dax_z[j] = dz * z[j] * (ONE - z[j])        # (2b)
                dax_n[j] = da_n
                dah_r[j], dah_z[j] = dax_r[j], dax_z[j]
                dah_n[j] = da_n * rg[j]                    # (3b)
                d_direct[j] = dh[j] * z[j]                 # (4b) the direct path
            add_to_table(dP, ids, t, row, dax)             # dW x_t: onto the table row read at (1)
        pair_rows(dap, dahs[t], t * B, b0, b1)             # dah_t as bf16 pairs, for dU
        live = live_rows(mask[t, b0:b1])
        product(dahs[t, b0:b0 + live], U, dh_next[:live], 1.0)   # (4b) dh_next += dah_t U (dah = 0 past live)
        for r in range(n_rows):
            if reset[t, b0 + r]:
                dh_next[r] = ZERO                          # (0b)
    dh0[b0:b1] = dh_next


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


def forward(p, xs, state0, mask=None, reset=None, approx=None, threads=None, precision="float32"):
    W, U, b, b_U = p["W"], p["U"], p["b"], p["b_U"]
    (h0,) = state0
    table, ids = input_table(W, b, xs, mask=mask, precision=precision)          # W x_t + b = table[ids_t]
    (T, B), H = ids.shape, U.shape[1]
    gates = aligned.empty((T, B, 3 * H), table.dtype)
    hs, ah_ns = aligned.empty((T, B, H), table.dtype), aligned.empty((T, B, H), table.dtype)
    m, r = rows.masks(mask, reset, T, B)
    rows.run(forward_rows, (table, ids, gates, panels(U, True, precision), np.ascontiguousarray(b_U),
                            np.ascontiguousarray(h0),
                            hs, ah_ns, m, r, rows.approximate(approx, table.dtype)),
             rows.blocks(B, threads), forward_blocks)
    cache = (xs, state0, hs, gates, ah_ns, mask, reset)
    return hs, (hs[-1].copy(),), cache


def backward(p, dhs, dstate_T, cache, clip_dh=None, dh_trace=None, threads=None, precision="float32"):
    W, U = p["W"], p["U"]
    xs, (h0,), hs, gates, ah_ns, mask, reset = cache
    T, B, H = hs.shape
    dh0 = aligned.empty_like(hs[0])
    m, r = rows.masks(mask, reset, T, B)
    blocks = rows.blocks(B, threads)
    ids, dPs, starts = loop_table(W, xs, blocks)           # dW x_t summed in the loop, where it pays
    daxs = loop_rows(T, B, 3 * H, gates.dtype, read_after_loop(dPs))    # dL/d(W x_t + b), or one step's
    dahs = aligned.empty_like(gates)                       # dL/d(U h_{t-1} + b_U)
    dap = loop_panels(T, B, 3 * H, mask, precision)        # bf16: dah's pairs made in the loop, for dU
    rows.run(backward_rows, (np.ascontiguousarray(dhs), np.ascontiguousarray(dstate_T[0]), panels(U, False, precision),
                             gates, ah_ns, np.ascontiguousarray(h0), hs, m, r, rows.clip(clip_dh, gates.dtype),
                             rows.trace(dh_trace, gates.dtype), daxs, dahs, ids, dPs, starts, dap, dh0),
             blocks, backward_blocks)
    dU = recurrent_grad(dahs, h0, hs, reset, mask=mask, precision=precision, panels=filled(dap))
    db_U = dahs.reshape(T * B, 3 * H).sum(axis=0)
    dW, dxs, db = project_backward(W, xs, daxs, mask, precision, loop_table_sum(dPs))
    return dxs, (dh0,), {"W": dW, "U": dU, "b": db, "b_U": db_U}
