"""The readout and the cross-entropy loss with their gradients, fused: one compiled pass per block
of rows instead of five whole-array steps (z, log-softmax, loss, dz, three GEMMs).

For a tile of rows n of h (N, H), with y_n the target class and w_n the row's weight in the mean:

    z_n  = V h_n + c                                  (1)   packed GEMM, V^T packed once
    L   -= w_n (z_n[y_n] - m_n - log s_n)                   m_n = max z_n, s_n = sum_k exp(z_nk - m_n)
    dz_n = w_n (exp(z_n - m_n) / s_n - e_{y_n})       (1b)  the softmax's gradient, in place of z_n
    dh_n = dz_n V                                     (1b)  packed GEMM, V packed once
    dV  += dz^T h,  dc += sum_n dz_n                  (1b)  one GEMM per tile (packed.gemm_tn, nothing copied)

The tile (TILE rows) stays in cache from z to dV. Blocks of rows run on the cores side by side
(rows.run); each sums its own L, dV and dc, and the caller adds the blocks' sums in block order.
The same numbers as losses.cross_entropy on engine.readout, up to round-off (tests/fast/test_fast_readout.py).
"""

import math

import numpy as np
from numba import njit, prange

from . import aligned, rows
from .matmul import MIN_FLOP
from .nonlinear import ZERO, exp
from .packed import gemm, gemm_tn, pack

JIT = {"nogil": True, "cache": True, "error_model": "numpy", "fastmath": {"contract", "arcp", "nsz", "reassoc"}}
TILE = 128           # rows per tile: z (TILE, K) stays in L1


@njit(**JIT)
def cross_entropy_rows(h, VTp, Vp, c, y, w, dh, dVs, dcs, values, starts, approx, n0, n1):
    """Rows n0:n1: dh[n0:n1], and this block's L, dV, dc into its slot of values, dVs, dcs.
    approx: exp by nonlinear.exp_poly (float32)."""
    K = c.size
    slot = np.searchsorted(starts, n0)
    dV, dc = dVs[slot], dcs[slot]
    R = min(TILE, n1 - n0)
    z = np.empty((R, K), h.dtype)
    total = 0.0
    for i0 in range(n0, n1, R):
        r = min(R, n1 - i0)
        zi, hi = z[:r], h[i0:i0 + r]
        gemm(hi, VTp, zi, 0.0)                             # (1) z = h V^T
        for q in range(r):
            zq, wq, yq = zi[q], w[i0 + q], y[i0 + q]
            m = zq[0] + c[0]
            for k in range(K):
                zq[k] += c[k]                              # (1) + c
                m = max(m, zq[k])
            z_y, s = zq[yq], ZERO
            for k in range(K):
                zq[k] = exp(zq[k] - m, approx)
                s += zq[k]
            total -= wq * (z_y - m - math.log(s))          # L = -sum_n w_n log p_n[y_n]
            scale = wq / s
            for k in range(K):
                zq[k] *= scale                             # w_n p_n
            zq[yq] -= wq                                   # (1b) dz_n = w_n (p_n - e_{y_n})
            for k in range(K):
                dc[k] += zq[k]                             # (1b) dc
        gemm(zi, Vp, dh[i0:i0 + r], 0.0)                   # (1b) dh = dz V
        gemm_tn(zi, hi, dV, 1.0, 0, K)                     # (1b) dV += dz^T h
    values[slot] = total


@njit(**rows.PARALLEL)
def cross_entropy_blocks(args, blocks):
    """cross_entropy_rows(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        cross_entropy_rows(*args, blocks[i, 0], blocks[i, 1])


def cross_entropy(h, V, c, y, w, threads=None):
    """Loss and gradients of the readout rows h (N, H): (L, dV, dc, dh), with V (K, H), c (K,),
    y (N,) class ids and w (N,) the rows' weights. As losses.cross_entropy(engine.readout(h)) then
    engine.readout_backward."""
    N, H = h.shape
    K = c.size
    h = np.ascontiguousarray(h)
    parts = rows.blocks(N, threads) if threads is not None or 6.0 * N * H * K >= MIN_FLOP else [(0, N)]
    dh = aligned.empty_like(h)
    dVs, dcs = np.zeros((len(parts), K, H), h.dtype), np.zeros((len(parts), K), h.dtype)
    values = np.zeros(len(parts))
    starts = np.array([n0 for n0, _ in parts], np.int64)
    rows.run(cross_entropy_rows, (h, pack(V, True), pack(V, False), c, np.ascontiguousarray(y),
                                  w.astype(h.dtype, copy=False), dh, dVs, dcs, values, starts,
                                  rows.approximate(None, h.dtype)), parts, cross_entropy_blocks)
    dV, dc = dVs[0], dcs[0]
    for i in range(1, len(parts)):
        dV += dVs[i]
        dc += dcs[i]
    return float(values.sum()), dV, dc, dh
