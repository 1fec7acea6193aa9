"""The Elman RNN of bptt.reference.rnn with its time loops compiled: same equations (numbered as
there), same arguments, same cache, so either backward accepts either forward's cache.

Per step, one GEMM and one pass over the row:
    forward   a_t = h_{t-1} U^T (packed GEMM, written where h_t goes) + W x_t + b + b_U  then (2)-(3)
    backward  (3b)-(2b) row by row writing da_t, then dh_next = da_t U  (packed GEMM)
"""

import numpy as np
from numba import njit, prange

# the cell's declarations and the functions that need no compiling: the reference's
from ..reference.rnn import EXTRA, GATE_NAMES, GATES, OPTIONS, init_params, state_names, step_jacobian  # noqa: F401
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
CODES = {"tanh": 0, "relu": 1, "sigmoid": 2}


@njit(**JIT)
def forward_rows(table, ids, hs, U_T, h0, mask, reset, f, approx, b0, b1):
    """Rows b0:b1 of every step: hs (T, B, H) receives h_t. W x_t + b + b_U = table[ids[t, b]].
    f: 0 tanh, 1 relu, 2 sigmoid."""
    T, H = hs.shape[0], hs.shape[2]
    hw = np.zeros((b1 - b0, H), hs.dtype)
    for t in range(T):
        h_prev = previous_rows(h0[b0:b1] if t == 0 else hs[t - 1, b0:b1], reset[t, b0:b1], hw)    # (0)
        a, live = hs[t, b0:b1], live_rows(mask[t, b0:b1])
        product(h_prev[:live], U_T, a[:live], 0.0)            # (1) U h_{t-1}, the rows still running
        for r in range(b1 - b0):
            if not mask[t, b0 + r]:
                a[r] = h_prev[r]                           # (3) ended: the state is held
                continue
            h, x = a[r], table[ids[t, b0 + r]]             # (1) + W x_t + b + b_U
            if f == 0:
                for j in range(H):
                    h[j] = tanh(x[j] + h[j], approx)       # (2)
            elif f == 1:
                for j in range(H):
                    h[j] = max(x[j] + h[j], ZERO)
            else:
                for j in range(H):
                    h[j] = sigmoid(x[j] + h[j], approx)


@njit(**JIT)
def backward_rows(dhs, dh_T, U, hs, mask, reset, f, clip, trace, das, ids, dPs, starts, dap, dh0, b0, b1):
    """Rows b0:b1: writes da_t (T, B, H) for every step and the gradient reaching h_0. ids, dPs, starts
    (window.loop_table): da_t summed onto the block's own gradient of the input table, if it has rows;
    dap (window.loop_panels): da_t's bf16 pairs, for dU, if it has panels."""
    T, B, H = hs.shape[0], hs.shape[1], hs.shape[2]
    n_rows = b1 - b0
    dP = own_table(dPs, starts, b0)
    dh_next = dh_T[b0:b1].copy()
    dh_held = np.zeros((n_rows, H), hs.dtype)
    for t in range(T - 1, -1, -1):
        da_t = step_rows(das, t)
        for r in range(n_rows):
            row = b0 + r
            da, h = da_t[row], hs[t, row]
            incoming(da, dhs[t, row], dh_next[r], clip, trace, t, row)     # dL/dh_t, made da_t below
            if not mask[t, row]:                           # (3b)
                dh_held[r] = da
                da[:] = ZERO
            elif f == 0:
                for j in range(H):
                    da[j] *= ONE - h[j] * h[j]             # (2b)
            elif f == 1:
                for j in range(H):
                    da[j] = da[j] if h[j] > ZERO else ZERO
            else:
                for j in range(H):
                    da[j] *= h[j] * (ONE - h[j])
            if mask[t, row]:
                add_to_table(dP, ids, t, row, da)          # dW x_t: onto the table row read at (1)
        pair_rows(dap, da_t, t * B, b0, b1)                # da_t as bf16 pairs, for dU
        live = live_rows(mask[t, b0:b1])
        product(da_t[b0:b0 + live], U, dh_next[:live], 0.0)    # (1b) dh_next = da_t U; the rest is held below
        for r in range(n_rows):
            if reset[t, b0 + r]:
                dh_next[r] = ZERO                          # (0b)
            elif not mask[t, b0 + r]:
                dh_next[r] = dh_held[r]                    # (3b)
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


def forward(p, xs, state0, mask=None, reset=None, nonlinearity="tanh", approx=None, threads=None, precision="float32"):
    W, U, b, b_U = p["W"], p["U"], p["b"], p["b_U"]
    (h0,) = state0
    table, ids = input_table(W, b, xs, b_U, mask, precision)   # (1) W x_t + b + b_U = table[ids_t], both biases once
    (T, B), H = ids.shape, U.shape[1]
    hs = aligned.empty((T, B, H), table.dtype)
    m, r = rows.masks(mask, reset, T, B)
    rows.run(forward_rows, (table, ids, hs, panels(U, True, precision), np.ascontiguousarray(h0), m, r,
                            CODES[nonlinearity],
                            rows.approximate(approx, table.dtype)), rows.blocks(B, threads), forward_blocks)
    cache = (xs, state0, hs, mask, reset, nonlinearity)
    return hs, (hs[-1].copy(),), cache


def backward(p, dhs, dstate_T, cache, clip_dh=None, dh_trace=None, threads=None, precision="float32"):
    W, U = p["W"], p["U"]
    xs, (h0,), hs, mask, reset, nonlinearity = cache
    T, B, H = hs.shape
    dh0 = aligned.empty_like(hs[0])
    m, r = rows.masks(mask, reset, T, B)
    blocks = rows.blocks(B, threads)
    ids, dPs, starts = loop_table(W, xs, blocks)           # dW x_t summed in the loop, where it pays
    dap = loop_panels(T, B, H, mask, precision)            # bf16: da's pairs made in the loop, for dU and dW
    das = loop_rows(T, B, H, hs.dtype, read_after_loop(dPs, dap))      # (T, B, H) dL/da_t, or one step's
    rows.run(backward_rows, (np.ascontiguousarray(dhs), np.ascontiguousarray(dstate_T[0]), panels(U, False, precision),
                             hs, m, r, CODES[nonlinearity], rows.clip(clip_dh, hs.dtype),
                             rows.trace(dh_trace, hs.dtype), das, ids, dPs, starts, dap, dh0), blocks, backward_blocks)
    dU = recurrent_grad(das, h0, hs, reset, mask=mask, precision=precision, panels=filled(dap))
    dW, dxs, db = project_backward(W, xs, das, mask, precision, loop_table_sum(dPs), filled(dap))
    return dxs, (dh0,), {"W": dW, "U": dU, "b": db, "b_U": db.copy()}
