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

That holds while a tile of logits, TILE x K, fits in a core's cache. A word vocabulary does not:
K = 10,000 makes it 5 MB, and every tile would read and write all of dV (K, H). Beyond ROW_TILE_BYTES
the work is cut by classes instead, in chunks of KC classes, each thread a range of them, with z
transposed (zT, K x N: a chunk of classes is a block of contiguous rows):

    pass 1, per chunk   zT[k] = V[k] h^T + c[k]                       (1)  V read in place, h^T packed once
                        m_n = max over the classes so far (m_c: after chunk c),  s_n = sum of exp(z_nk - m_n)
                        (the running log-sum-exp: s_n <- s_n exp(m_old - m_n) + sum over the chunk)
                        eT[k] = exp(zT[k] - m_c) in place of zT[k]
    the threads' (m, s) combined:  L = -sum_n w_n (z[y_n, n] - m_n - log s_n)
    pass 2, per chunk   dzT[k] = w (eT[k] exp(m_c - m) / s - e_y)     (1b), in place: one exp per row
                        dc[k] = sum_n dzT[k, n],  dV[k] = dzT[k] h,  dh += dzT[k]^T V[k]   (1b)

Each thread owns its classes' rows of dV and dc, and sums its own dh; only h is packed. eT (K, N)
is the one array of the size of the logits, written once and read once; each logit is
exponentiated once. Forward only (evaluation,
log_likelihood) is pass 1 on a chunk-sized buffer: nothing of the size of the logits.
The same numbers as losses.cross_entropy on engine.readout, up to round-off (tests/fast/test_fast_readout.py).
"""

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from . import aligned, bf16, rows
from .bf16 import panels, product, product_tn
from .matmul import MIN_FLOP, parts
from .nonlinear import ZERO, exp
from .packed import MR, gemm, gemm_tn, pack

JIT = {"nogil": True, "cache": True, "error_model": "numpy", "fastmath": {"contract", "arcp", "nsz", "reassoc"}}
TILE = 128           # rows per tile: z (TILE, K) stays in L1
ROW_TILE_BYTES = 2 ** 19   # a tile of logits larger than this (K > 1024 in float32): cut by classes
KC = 192             # classes per chunk, a multiple of packed.MR: the chunk's zT (KC, N) stays in L2


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
        product(hi, VTp, zi, 0.0)                          # (1) z = h V^T
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
        product(zi, Vp, dh[i0:i0 + r], 0.0)                # (1b) dh = dz V
        product_tn(zi, hi, dV, 1.0, 0, K, Vp)              # (1b) dV += dz^T h
    values[slot] = total


@njit(**rows.PARALLEL)
def cross_entropy_blocks(args, blocks):
    """cross_entropy_rows(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        cross_entropy_rows(*args, blocks[i, 0], blocks[i, 1])


def by_classes(K, dtype, by=None):
    """Whether to cut the work by classes: when a tile of logits outgrows ROW_TILE_BYTES, or as told."""
    return TILE * K * np.dtype(dtype).itemsize > ROW_TILE_BYTES if by is None else bool(by)


def cross_entropy(h, V, c, y, w, threads=None, classes=None, precision="float32"):
    """Loss and gradients of the readout rows h (N, H): (L, dV, dc, dh), with V (K, H), c (K,),
    y (N,) class ids and w (N,) the rows' weights. As losses.cross_entropy(engine.readout(h)) then
    engine.readout_backward. classes: cut the work by classes (True) or by rows (False); None:
    by classes for a large K (by_classes). precision="bf16": the three products take bf16 operands
    (bf16.py); the logits, the softmax, the loss and dz stay float32."""
    N, H = h.shape
    K = c.size
    h = np.ascontiguousarray(h)
    if by_classes(K, h.dtype, classes):
        return cross_entropy_by_classes(h, V, c, y, w, threads, precision)
    parts = rows.blocks(N, threads) if threads is not None or 6.0 * N * H * K >= MIN_FLOP else [(0, N)]
    dh = aligned.empty_like(h)
    dVs, dcs = np.zeros((len(parts), K, H), h.dtype), np.zeros((len(parts), K), h.dtype)
    values = np.zeros(len(parts))
    starts = np.array([n0 for n0, _ in parts], np.int64)
    rows.run(cross_entropy_rows, (h, panels(V, True, precision), panels(V, False, precision), c,
                                  np.ascontiguousarray(y),
                                  w.astype(h.dtype, copy=False), dh, dVs, dcs, values, starts,
                                  rows.approximate(None, h.dtype)), parts, cross_entropy_blocks)
    dV, dc = dVs[0], dcs[0]
    for i in range(1, len(parts)):
        dV += dVs[i]
        dc += dcs[i]
    return float(values.sum()), dV, dc, dh


@njit(**JIT)
def log_likelihood_rows(h, VTp, c, y, logp, arg, approx, n0, n1):
    """Rows n0:n1, forward only: logp[n] = log softmax(V h_n + c)[y_n], arg[n] = the first class of
    the largest logit."""
    K = c.size
    R = min(TILE, n1 - n0)
    z = np.empty((R, K), h.dtype)
    for i0 in range(n0, n1, R):
        r = min(R, n1 - i0)
        zi = z[:r]
        gemm(h[i0:i0 + r], VTp, zi, 0.0)                   # (1) z = h V^T
        for q in range(r):
            zq = zi[q]
            m, best = zq[0] + c[0], 0
            for k in range(K):
                zq[k] += c[k]                              # (1) + c
                if zq[k] > m:
                    m, best = zq[k], k
            s = ZERO
            for k in range(K):
                s += exp(zq[k] - m, approx)
            logp[i0 + q] = zq[y[i0 + q]] - m - math.log(s)
            arg[i0 + q] = best


@njit(**rows.PARALLEL)
def log_likelihood_blocks(args, blocks):
    """log_likelihood_rows(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        log_likelihood_rows(*args, blocks[i, 0], blocks[i, 1])


def log_likelihood(h, V, c, y, threads=None, classes=None):
    """The readout forward only, for evaluation: (log p (N,) float64, argmax (N,)) with log p[n] =
    log softmax(V h_n + c)[y_n] and argmax[n] the predicted class (the first of the largest logit).
    Nothing of the size of the logits is kept. classes: as cross_entropy."""
    N, H = h.shape
    K = c.size
    h, y = np.ascontiguousarray(h), np.ascontiguousarray(y)
    if by_classes(K, h.dtype, classes):
        _, m, s, zy, arg, _ = logsumexp_by_classes(h, V, c, y, False, threads)
        return zy - m - np.log(s), arg
    parts = rows.blocks(N, threads) if threads is not None or 2.0 * N * H * K >= MIN_FLOP else [(0, N)]
    logp, arg = np.empty(N), np.empty(N, np.int64)
    rows.run(log_likelihood_rows, (h, pack(V, True), c, y, logp, arg, rows.approximate(None, h.dtype)), parts,
             log_likelihood_blocks)
    return logp, arg


# ---- cut by classes (large K) -------------------------------------------------------------------

@njit(**JIT)
def class_logits(V, hTp, c, y, z, keep, ms, ss, zy, args, mk, first, starts, approx, k0, k1):
    """Pass 1 over the classes k0:k1 in chunks of KC, into this range's slot of ms, ss, args (P, N)
    (its index in starts): the running max m and sum s of exp(z - m) of each row n, and the first
    class of the max. keep: z (1, K, N) receives e[k0:k1] = exp(zT - m_c) with zT = V h^T + c and
    m_c the running max after chunk c, which is kept in mk[c] (chunks, N; this range's chunks from
    first[slot] on), so that pass 2 rescales instead of exponentiating again; else z (P, KC, N)
    holds each chunk of the range in turn, and the argmax is found (args; not with keep).
    zy[n] = z[y_n, n] for y_n in k0:k1."""
    slot = np.searchsorted(starts, k0)
    m, s, arg = ms[slot], ss[slot], args[slot]
    N = zy.size
    mc = np.empty(N, z.dtype)
    for a in range(k0, k1, KC):
        b = min(a + KC, k1)
        zc = z[0, a:b] if keep else z[slot, :b - a]
        product(V[a:b], hTp, zc, 0.0)                       # (1) z = V h^T for these classes
        mc[:] = m
        for k in range(b - a):
            zk, ck = zc[k], c[a + k]
            if keep:                                        # training: no argmax, a plain (vectorised) max
                for n in range(N):
                    zk[n] += ck                             # (1) + c
                    mc[n] = max(mc[n], zk[n])
            else:
                for n in range(N):
                    zk[n] += ck                             # (1) + c
                    if zk[n] > mc[n]:
                        mc[n] = zk[n]
                        arg[n] = a + k
        for n in range(N):
            if a <= y[n] < b:
                zy[n] = zc[y[n] - a, n]
            s[n] *= exp(m[n] - mc[n], approx)               # the sum so far, at the new max
            m[n] = mc[n]
        if keep:
            mk[first[slot] + (a - k0) // KC] = m
            for k in range(b - a):
                zk = zc[k]
                for n in range(N):
                    zk[n] = exp(zk[n] - m[n], approx)       # e = exp(z - m_c), kept for pass 2
                    s[n] += zk[n]
        else:
            for k in range(b - a):
                zk = zc[k]
                for n in range(N):
                    s[n] += exp(zk[n] - m[n], approx)


@njit(**rows.PARALLEL)
def class_logits_blocks(args, blocks):
    """class_logits(*args, k0, k1) for every range of classes, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        class_logits(*args, blocks[i, 0], blocks[i, 1])


@njit(**JIT)
def class_gradients(eT, h, hp, V, y, w, m, mk, first, scale, dV, dc, dhs, starts, approx, k0, k1):
    """Pass 2 over the classes k0:k1: dz = w (softmax - e_y) in place of eT[k0:k1] (pass 1's
    exp(z - m_c), times exp(m_c - m) w / s: scale = w / s), dc and dV of those classes, and this
    range's slot of dhs (P, N, H) += their dz^T V. In bf16 (add_dz_V) V is given as V^T's pairs and
    dhs is (P, H, N)."""
    slot = np.searchsorted(starts, k0)
    dh = dhs[slot]
    N = h.shape[0]
    f = np.empty(N, eT.dtype)
    for a in range(k0, k1, KC):
        b = min(a + KC, k1)
        z = eT[a:b]
        m_c = mk[first[slot] + (a - k0) // KC]
        for n in range(N):
            f[n] = exp(m_c[n] - m[n], approx) * scale[n]   # p = e exp(m_c - m) / s
        for k in range(b - a):
            zk, total = z[k], ZERO
            for n in range(N):
                zk[n] *= f[n]                               # w_n p_nk
                total += zk[n]
            dc[a + k] = total
        for n in range(N):
            if a <= y[n] < b:
                z[y[n] - a, n] -= w[n]                      # (1b) dz = w (p - e_y)
                dc[y[n]] -= w[n]
        product(z, hp, dV[a:b], 0.0)                        # (1b) dV = dz^T h, these classes' rows
        add_dz_V(z, V, a, b, dh)                            # (1b) dh += dz V


def add_dz_V(z, V, a, b, dh):
    """dh += z^T V[a:b] for the chunk z = dz of the classes a:b (KC, N): float, dh (N, H); bf16, with V
    given as bf16.pairs_of_columns(V) (H, K2) and dh^T (H, N) += V[a:b]^T z, z packed along its classes
    (two rows at a time): no transposing conversion of z, V^T's pairs made once a step. a is even; an
    odd b is K itself, where V's pairs end on a zero."""


@overload(add_dz_V)
def _add_dz_V(z, V, a, b, dh):
    if V.dtype == types.uint32:
        def low(z, V, a, b, dh):
            bf16.gemm(V[:, a // 2:(b + 1) // 2], bf16.pack_panels(z, False), dh, 1.0)
        return low

    def full(z, V, a, b, dh):
        gemm_tn(z, V[a:b], dh, 1.0, 0, z.shape[1])
    return full


@njit(**rows.PARALLEL)
def class_gradients_blocks(args, blocks):
    """class_gradients(*args, k0, k1) for every range of classes, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        class_gradients(*args, blocks[i, 0], blocks[i, 1])


def logsumexp_by_classes(h, V, c, y, keep, threads=None, precision="float32"):
    """Pass 1 on every thread, the threads' results combined: ((eT, mk, first) or None, m, s, zy, arg, ranges),
    m and s as float64 (N,). keep: eT (K, N) = exp(zT - m_c) and the chunks' maxima mk (chunks, N)
    are returned for pass 2 (class_logits), and arg is not found (zeros); else each thread uses a
    chunk buffer. ranges: the threads' ranges of classes (matmul.parts, cut at multiples of
    packed.MR so that the threads get as many classes each: cut at multiples of KC, 2,002 classes
    would split 1,152 / 850)."""
    N, H = h.shape
    K = c.size
    ranges = parts(K, threads, 2.0 * K * N * H, MR, 1)
    z = aligned.empty((1, K, N) if keep else (len(ranges), KC, N), h.dtype)
    ms = np.full((len(ranges), N), -np.inf, h.dtype)
    ss, zy = np.zeros((len(ranges), N), h.dtype), np.zeros(N, h.dtype)
    args = np.zeros((len(ranges), N), np.int64)
    chunks = [-(-(b - a) // KC) for a, b in ranges]
    first = np.cumsum([0] + chunks[:-1]).astype(np.int64)
    mk = np.empty((sum(chunks) if keep else 0, N), h.dtype)
    starts = np.array([a for a, _ in ranges], np.int64)
    Vx = bf16.pairs_on_cores(V) if precision == "bf16" else V    # bf16: V's pairs once, for every chunk
    rows.run(class_logits, (Vx, panels(h, True, precision), c, np.ascontiguousarray(y), z, keep, ms, ss, zy, args,
                            mk, first, starts,
                            rows.approximate(None, h.dtype)), ranges, class_logits_blocks)
    m = ms.max(axis=0).astype(np.float64)
    s = (ss * np.exp(ms - m)).sum(axis=0)                   # each thread's sum at the common max
    top = np.argmax(ms == ms.max(axis=0), axis=0)           # the first thread holding the max: its class
    return (z[0], mk, first) if keep else None, m, s, zy, args[top, np.arange(N)], ranges


def cross_entropy_by_classes(h, V, c, y, w, threads=None, precision="float32"):
    """cross_entropy for a large K, cut by classes (module docstring)."""
    N, H = h.shape
    (eT, mk, first), m, s, zy, _, ranges = logsumexp_by_classes(h, V, c, y, True, threads, precision)
    value = -float(np.dot(w.astype(np.float64), zy - m - np.log(s)))
    dV, dc = aligned.empty(V.shape, h.dtype), np.empty(c.size, h.dtype)
    low = precision == "bf16"
    dhs = np.zeros((len(ranges), H, N) if low else (len(ranges), N, H), h.dtype)
    starts = np.array([a for a, _ in ranges], np.int64)
    Vx = bf16.pairs_of_columns_on_cores(V) if low else V
    rows.run(class_gradients, (eT, h, panels(h, False, precision), Vx, np.ascontiguousarray(y),
                               w.astype(h.dtype, copy=False),
                               m.astype(h.dtype), mk, first, (w / s).astype(h.dtype), dV, dc, dhs, starts,
                               rows.approximate(None, h.dtype)), ranges, class_gradients_blocks)
    dh = dhs[0]
    for i in range(1, len(ranges)):
        dh += dhs[i]
    return value, dV, dc, np.ascontiguousarray(dh.T) if low else dh
