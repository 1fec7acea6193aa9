"""Streaming inference compiled: a few steps of the whole stack and its readout for rows b0:b1, with
the weights packed once (pack_weights) for every call after it, and no per-step cache kept.

The cells' forward passes (rnn.py, gru.py, lstm.py) run one layer over a whole window; a stream
feeds one token (or a short window) at a time, for which a window's set-up (an input table, caches
of every step, a pack of U, a separate readout, a thread dispatch) would cost more than the step. Here
one compiled call runs, for each step t of the window and each layer k (bottom first):

    ax = W_k x^k_t            x^0_t: a row of the input table (ids, or an embedding folded in), an
                              embedding row E[x_t] or float features (packed GEMM); x^k_t = h^{k-1}_t
    ah = U_k h^k_{t-1}        packed GEMM
    h^k_t (c^k_t) = the cell's equations on ax + bias and ah, row by row    (the fast cells' (1)-(4))
    h^k_t = R_k m^k_t         the LSTM with projections (3'): packed GEMM
    z_t = V h^L_t + c         packed GEMM, the readout (1)

updating the state, (L, B, H) parts (h of an LSTM with projections: (L, B, P)), in place. The input
projection ax and the bias are added as the fast forward adds them ((W x_t + b + b_U) + U h_{t-1};
the GRU keeps b_U with U h_{t-1}), and float32 uses the same rational tanh (nonlinear.py), so a
step agrees with the forward over the same tokens to round-off (tests/model/test_streaming.py).

Rows are independent: a large batch runs as blocks of rows on numba's threads (rows.run), a small
one in the calling thread (row_blocks: below MIN_FLOP per block a thread costs more than it saves).
"""

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from . import aligned, rows
from .matmul import matmul
from .nonlinear import ZERO, sigmoid, tanh
from .packed import gemm, pack_panels, width

JIT = {"nogil": True, "cache": True, "error_model": "numpy", "fastmath": {"contract", "arcp", "nsz", "reassoc"}}
INLINE = {"inline": "always", "error_model": "numpy"}
CODES = {"tanh": 0, "relu": 1, "sigmoid": 2}        # the RNN's nonlinearity, as rnn.CODES
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
TABLE_BYTES = 2 ** 25    # an embedding is folded into the input table E W^T + b (V, G) up to this size; beyond it
                         # (a word vocabulary with a large G) its row is gathered and projected at each step
MIN_FLOP = 2e6          # the work of a block of rows of a step, at least: below it a second thread costs more than it
                         # saves. Measured on a 2-core AMD EPYC (AVX-512), float32 H256, one step a call, best of 7 x
                         # 400 calls, two threads against one: LSTM (0.59 MFLOP a row) 0.6-1.0x as fast with blocks of
                         # 2 or 3 rows, 1.2-1.4x with 4, 1.4-1.6x with 6; GRU (0.46) 0.9x with 4 rows, 1.3x with 6;
                         # RNN (0.2) 1.0-1.1x with 8 to 12 rows, 1.3-1.5x with 16 to 24


class Weights(NamedTuple):
    """A network's weights as the step kernels read them (pack_weights). G = gates * H; P panels."""

    cell: str
    code: int                # the RNN's nonlinearity (CODES)
    approx: bool             # float32: the rational tanh of the fast engine
    table: np.ndarray        # (V, G) layer 0's W x_t + bias for ids, or (0, G)
    E: np.ndarray            # (V, D) the embedding gathered at each step when it is not in the table, or (0, 0)
    W0p: np.ndarray          # (P, D, NC) layer 0's W^T packed (embedding rows or float features), or (P, 0, NC)
    Wp: np.ndarray           # (L - 1, P, S, NC) the W^T of layers 1..L-1 packed (S: h's width, H or proj_size)
    Up: np.ndarray           # (L, P, S, NC) the U^T of every layer packed
    Rp: np.ndarray           # (L, P_S, H, NC) the LSTM's projections R^T packed, or (0, 1, 0, NC) without
    bias: np.ndarray         # (L, G) added to W x_t: b + b_U (the GRU: b); zero for layer 0 read from the table
    bias_U: np.ndarray       # (L, G) the GRU's b_U, added to U h_{t-1}; (L, 0) for the other cells
    Vp: np.ndarray           # (P_K, S, NC) V^T packed
    c: np.ndarray            # (K,) the readout's bias


def _stacked(arrays, dtype, K):
    """The panels of each (G, K) array's transpose, stacked: (len, P, K, NC), on a cache line."""
    G = arrays[0].shape[0] if arrays else 1
    NC = width(np.dtype(dtype).itemsize)
    out = aligned.empty((len(arrays), -(-G // NC), K, NC), dtype)
    for i, a in enumerate(arrays):
        out[i] = pack_panels(np.ascontiguousarray(a), True)
    return out


def pack_weights(cell, layers, E, V, c, nonlinearity="tanh", floats=False):
    """Weights for the step kernels. layers: per layer a dict of W (G, D_k), U (G, S), b, b_U (G,) and for
    an LSTM with projections R (S, H), bottom first (S: the width of h); E (V, D) the embedding or None;
    V (K, S), c (K,) the readout. floats: for float features (layer 0's W packed), else for ids
    (one-hot: the table W^T + bias; embedded: E W^T + bias, or beyond TABLE_BYTES E and W packed).
    The arrays are copied: later changes to them do not reach the Weights."""
    W0, (G, S) = layers[0]["W"], layers[0]["U"].shape
    dtype, H = W0.dtype, G // GATES[cell]
    gru = cell == "gru"
    bias = np.stack([p["b"] if gru else p["b"] + p["b_U"] for p in layers])           # (L, G)
    bias_U = np.stack([p["b_U"] for p in layers]) if gru else np.zeros((len(layers), 0), dtype)
    Rs = [p["R"] for p in layers if "R" in p]
    table, E_rows = np.zeros((0, G), dtype), np.zeros((0, 0), dtype)
    if not floats and E is None:
        table = np.add(W0.T, bias[0], order="C")              # W x_t + bias = column x_t of W, + bias
    elif not floats and E.shape[0] * G * dtype.itemsize <= TABLE_BYTES:
        table = matmul(np.ascontiguousarray(E), W0.T)         # the fast forward's window.input_table, once
        table += bias[0]
    elif not floats:
        E_rows = np.array(E, order="C")
    if table.shape[0]:
        bias[0] = 0                                           # in the table already
        W0 = W0[:, :0]
    return Weights(cell, CODES[nonlinearity], rows.approximate(None, dtype), table, E_rows,
                   _stacked([W0], dtype, W0.shape[1])[0], _stacked([p["W"] for p in layers[1:]], dtype, S),
                   _stacked([p["U"] for p in layers], dtype, S), _stacked(Rs, dtype, H if Rs else 0), bias, bias_U,
                   _stacked([V], dtype, S)[0], np.array(c))


@njit(**INLINE)
def project(k, t, ids, xf, w_table, E, W0p, Wp, h, x0, ax, b0, b1):
    """ax = W_k x^k_t for rows b0:b1, the bias left out; nothing for layer 0 read from the table."""
    if k > 0:
        gemm(h[k - 1, b0:b1], Wp[k - 1], ax, 0.0)             # x^k_t = h^{k-1}_t
    elif w_table.shape[0] > 0:
        return
    elif E.shape[0] > 0:
        for r in range(b1 - b0):
            x0[r] = E[ids[t, b0 + r]]                         # x^0_t = E[x_t]
        gemm(x0, W0p, ax, 0.0)
    else:
        gemm(xf[t, b0:b1], W0p, ax, 0.0)                      # float features


@njit(**INLINE)
def readout(h_top, Vp, c, z_t):
    """(1) z_t = V h^L_t + c for the rows of h_top."""
    gemm(h_top, Vp, z_t, 0.0)
    for r in range(z_t.shape[0]):
        zr = z_t[r]
        for k in range(c.size):
            zr[k] += c[k]


@njit(**JIT)
def rnn_rows(ids, xf, table, E, W0p, Wp, Up, Rp, bias, bias_U, Vp, c, h, c_state, z, code, approx, b0, b1):
    """Rows b0:b1 of every step of the window: the RNN's (1)-(2) (rnn.py) in every layer, then the readout.
    h (L, B, H) is the state, updated in place; z (T, B, K) receives the logits; c_state is unused."""
    T, L, H, n = z.shape[0], h.shape[0], h.shape[2], b1 - b0
    ax, ah, x0 = np.empty((n, H), h.dtype), np.empty((n, H), h.dtype), np.empty((n, E.shape[1]), h.dtype)
    for t in range(T):
        for k in range(L):
            project(k, t, ids, xf, table, E, W0p, Wp, h, x0, ax, b0, b1)
            gemm(h[k, b0:b1], Up[k], ah, 0.0)                 # (1) U h_{t-1}
            folded, bl = k == 0 and table.shape[0] > 0, bias[k]
            for r in range(n):
                x, a, h_t = table[ids[t, b0 + r]] if folded else ax[r], ah[r], h[k, b0 + r]
                if code == 0:
                    for j in range(H):
                        h_t[j] = tanh((x[j] + bl[j]) + a[j], approx)            # (2)
                elif code == 1:
                    for j in range(H):
                        h_t[j] = max((x[j] + bl[j]) + a[j], ZERO)
                else:
                    for j in range(H):
                        h_t[j] = sigmoid((x[j] + bl[j]) + a[j], approx)
        readout(h[L - 1, b0:b1], Vp, c, z[t, b0:b1])


@njit(**JIT)
def gru_rows(ids, xf, table, E, W0p, Wp, Up, Rp, bias, bias_U, Vp, c, h, c_state, z, code, approx, b0, b1):
    """Rows b0:b1 of every step of the window: the GRU's (1)-(4) (gru.py) in every layer, then the readout."""
    T, L, H, n = z.shape[0], h.shape[0], h.shape[2], b1 - b0
    ax, ah, x0 = np.empty((n, 3 * H), h.dtype), np.empty((n, 3 * H), h.dtype), np.empty((n, E.shape[1]), h.dtype)
    for t in range(T):
        for k in range(L):
            project(k, t, ids, xf, table, E, W0p, Wp, h, x0, ax, b0, b1)
            gemm(h[k, b0:b1], Up[k], ah, 0.0)                 # U h_{t-1}
            folded, bl, bu = k == 0 and table.shape[0] > 0, bias[k], bias_U[k]
            for r in range(n):
                x, a, h_t = table[ids[t, b0 + r]] if folded else ax[r], ah[r], h[k, b0 + r]
                for j in range(2 * H):
                    a[j] = sigmoid((x[j] + bl[j]) + (a[j] + bu[j]), approx)     # (1), (2) r, z
                rg, z_g, a_n = a[:H], a[H:2 * H], a[2 * H:3 * H]   # views indexed from 0: loops that vectorise
                x_n, bl_n, bu_n = x[2 * H:3 * H], bl[2 * H:3 * H], bu[2 * H:3 * H]
                for j in range(H):
                    n_j = tanh((x_n[j] + bl_n[j]) + rg[j] * (a_n[j] + bu_n[j]), approx)  # (3)
                    h_t[j] = n_j + z_g[j] * (h_t[j] - n_j)  # (4)
        readout(h[L - 1, b0:b1], Vp, c, z[t, b0:b1])


@njit(**JIT)
def lstm_rows(ids, xf, table, E, W0p, Wp, Up, Rp, bias, bias_U, Vp, c, h, c_state, z, code, approx, b0, b1):
    """Rows b0:b1 of every step of the window: the LSTM's (1)-(3') (lstm.py) in every layer, then the readout.
    (h, c_state) (L, B, S), (L, B, H) is the state, updated in place; with projections (Rp has layers)
    m_t = o_t * tanh(c_t) goes to a buffer and h_t = R m_t."""
    T, L, H, n = z.shape[0], h.shape[0], c_state.shape[2], b1 - b0
    ax, ah, x0 = np.empty((n, 4 * H), h.dtype), np.empty((n, 4 * H), h.dtype), np.empty((n, E.shape[1]), h.dtype)
    m, tanh_c = np.empty((n if Rp.shape[0] else 0, H), h.dtype), np.empty(H, h.dtype)
    for t in range(T):
        for k in range(L):
            project(k, t, ids, xf, table, E, W0p, Wp, h, x0, ax, b0, b1)
            gemm(h[k, b0:b1], Up[k], ah, 0.0)                 # (1) U h_{t-1}
            folded, bl = k == 0 and table.shape[0] > 0, bias[k]
            for r in range(n):
                x, a = table[ids[t, b0 + r]] if folded else ax[r], ah[r]
                for j in range(2 * H):
                    a[j] = sigmoid((x[j] + bl[j]) + a[j], approx)               # (1) i, f
                i, f, g, o = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:4 * H]  # views indexed from 0 (lstm.gates_row)
                x_g, bl_g, x_o, bl_o = x[2 * H:3 * H], bl[2 * H:3 * H], x[3 * H:4 * H], bl[3 * H:4 * H]
                for j in range(H):
                    g[j] = tanh((x_g[j] + bl_g[j]) + g[j], approx)              # (1) g
                for j in range(H):
                    o[j] = sigmoid((x_o[j] + bl_o[j]) + o[j], approx)           # (1) o
                c_t, m_t = c_state[k, b0 + r], m[r] if m.shape[0] else h[k, b0 + r]
                for j in range(H):
                    c_t[j] = f[j] * c_t[j] + i[j] * g[j]   # (2)
                for j in range(H):                         # tanh(c_t) through a buffer, as the forward does:
                    tanh_c[j] = tanh(c_t[j], approx)       # fused into the loop above, it made the whole step
                for j in range(H):                         # 1.45x slower (LSTM H256, 16 rows, float32)
                    m_t[j] = o[j] * tanh_c[j]              # (3) h_t = m_t without R
            if m.shape[0]:
                gemm(m, Rp[k], h[k, b0:b1], 0.0)              # (3') h_t = R m_t
        readout(h[L - 1, b0:b1], Vp, c, z[t, b0:b1])


@njit(**rows.PARALLEL)
def rnn_blocks(args, blocks):
    """rnn_rows(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        rnn_rows(*args, blocks[i, 0], blocks[i, 1])


@njit(**rows.PARALLEL)
def gru_blocks(args, blocks):
    """gru_rows(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        gru_rows(*args, blocks[i, 0], blocks[i, 1])


@njit(**rows.PARALLEL)
def lstm_blocks(args, blocks):
    """lstm_rows(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        lstm_rows(*args, blocks[i, 0], blocks[i, 1])


@njit(**INLINE)
def _finite(a):
    """Whether every element of the C-contiguous a is finite: x - x is 0 for those and NaN for inf and
    NaN (compiled without fastmath, which would fold it to 0). A loop without exits: it vectorises."""
    flat = a.reshape(a.size)
    bad = False
    for i in range(flat.size):
        bad |= (flat[i] - flat[i]) != 0
    return not bad


@njit(nogil=True, cache=True)
def invalid(ids, V, xf, h, c_state):
    """What is wrong with a step's inputs, checked before any thread starts: 0 nothing, 1 an id outside
    [0, V), 2 a float input that is not finite, 3 the state's h (or only part) not finite, 4 its c."""
    outside = 0
    flat = ids.reshape(ids.size)
    for i in range(flat.size):
        outside |= (flat[i] < 0) | (flat[i] >= V)
    if outside:
        return 1
    if not _finite(xf):
        return 2
    if not _finite(h):
        return 3
    return 0 if _finite(c_state) else 4


KERNELS = {"rnn": (rnn_rows, rnn_blocks), "gru": (gru_rows, gru_blocks), "lstm": (lstm_rows, lstm_blocks)}


def flop_per_row(w):
    """The floating-point operations of one row of a step with the weights w: two per weight, each
    read once (the packed weights' sizes, panels padded)."""
    return 2 * sum(a.size for a in (w.W0p, w.Wp, w.Up, w.Rp, w.Vp))


def row_blocks(B, w, threads=None):
    """Blocks of rows for a step with the weights w: rows.blocks, each of at least MIN_FLOP."""
    if threads is None:
        threads = rows.threads_available()
    least = max(1, -(-int(MIN_FLOP) // flop_per_row(w)))         # rows
    return rows.blocks(B, max(1, min(threads, B // least)))


def run(w, ids, xf, h, c_state, z, parts):
    """The steps of a window for every row, in place: h, c_state (L, B, H) from the state before to the
    state after it, z (T, B, K) the logits. ids (T, B) int64 (or (0, 0) for float features), xf
    (T, B, D) float features (or (0, 0, 0)); every array C-contiguous, of the weights' dtype, checked
    by the caller (an error inside the threads would be lost). parts: row_blocks."""
    kernel, on_threads = KERNELS[w.cell]
    rows.run(kernel, (ids, xf, w.table, w.E, w.W0p, w.Wp, w.Up, w.Rp, w.bias, w.bias_U, w.Vp, w.c, h, c_state, z,
                      w.code, w.approx), parts, on_threads)
