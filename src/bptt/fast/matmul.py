"""A @ B for the fast engine's products outside the time loops, on numba's threads (rows.run).

The window-sized products (dU = sum_t da_t^T h_{t-1}, the readout's z = h V^T, dV = dz^T h,
dh = dz V, the input table E W^T) run here instead of in NumPy's BLAS: the same kernels as the time
loops (packed.py), the rows of C split over the cores (rows.run). Besides speed this keeps one
set of threads: a multithreaded BLAS call leaves its worker threads spinning for a while after it
returns, and on two cores they take turns with the time loops that follow (measured in
docs/fast-engine.md).
"""

import numpy as np
from numba import njit, prange

from . import aligned, bf16, rows
from .packed import MR, gemm_rows, gemm_tn, pack

MIN_FLOP = 8e6       # below this a product runs on one thread. Measured with numba's pool: a 4.2 MFLOP
                     # product takes as long on two threads as on one, a 12.6 MFLOP one 12% less


@njit(**rows.PARALLEL)
def gemm_tn_blocks(args, blocks):
    """gemm_tn(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        gemm_tn(*args, blocks[i, 0], blocks[i, 1])


@njit(**rows.PARALLEL)
def gemm_rows_blocks(args, blocks):
    """gemm_rows(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        gemm_rows(*args, blocks[i, 0], blocks[i, 1])


@njit(**rows.PARALLEL)
def bf16_tn_blocks(args, blocks):
    """bf16.gemm_tn(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        bf16.gemm_tn(*args, blocks[i, 0], blocks[i, 1])


@njit(**rows.PARALLEL)
def bf16_tn_stacked_blocks(args, blocks):
    """bf16.gemm_tn_stacked(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        bf16.gemm_tn_stacked(*args, blocks[i, 0], blocks[i, 1])


@njit(**rows.PARALLEL)
def bf16_rows_blocks(args, blocks):
    """bf16.gemm_rows(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        bf16.gemm_rows(*args, blocks[i, 0], blocks[i, 1])


def parts(M, threads=None, flop=MIN_FLOP, unit=MR, least=8):
    """Row ranges of C, one per thread, cut at multiples of unit rows (the kernel's MR), at least
    `least` units each; one range for a product of fewer than MIN_FLOP (when threads is not given)."""
    if threads is None and flop < MIN_FLOP:
        threads = 1
    n = max(1, min(threads or rows.threads_available(), -(-M // (least * unit))))
    edges = [min(M, -(-M * i // n // unit) * unit) for i in range(n + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def matmul(A, B, threads=None, precision="float32"):
    """A (M, K) @ B (K, N) -> (M, N). A either has contiguous rows or is the transpose of an array
    that has (A = X.T: then C = X^T B, the weight-gradient form); anything else is copied first.
    precision="bf16": float32 A and B rounded to bfloat16, float32 sums (bf16.py)."""
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
        raise ValueError(f"matmul: expected A (M, K) and B (K, N), got shapes {A.shape} and {B.shape}")
    M, N = A.shape[0], B.shape[1]
    C = aligned.empty((M, N), np.result_type(A, B))
    A, B = A.astype(C.dtype, copy=False), B.astype(C.dtype, copy=False)
    size, flop = C.itemsize, 2.0 * M * N * A.shape[1]
    if M == 0 or N == 0 or A.shape[1] == 0:
        C[...] = 0
        return C
    if precision == "bf16":
        return _bf16(A, B, C, parts(M, threads, flop), threads)
    if A.strides[1] != size and A.strides[0] == size:             # A = X^T, X (K, M) with contiguous rows
        rows.run(gemm_tn, (A.T, _rows(B), C, 0.0), parts(M, threads, flop), gemm_tn_blocks)
        return C
    Bp = pack(B.T, True) if B.strides[0] == size and B.strides[1] != size else pack(B, False)
    rows.run(gemm_rows, (_rows(A), Bp, C, 0.0), parts(M, threads, flop), gemm_rows_blocks)
    return C


def _bf16(A, B, C, ranges, threads=None):
    """C = A B with bf16 operands (float32 only), B packed as bf16 pairs once. A B converts A once.
    X^T Y (A = X^T) transposes one operand into pairs: X when C has fewer rows than columns (each
    thread its rows of X^T), else Y, through C^T = Y^T X, then C is written from C^T."""
    if C.dtype != np.float32:
        raise ValueError(f"precision: 'bf16' multiplies float32 arrays, got {C.dtype}")
    M, N = C.shape
    if A.strides[1] != C.itemsize and A.strides[0] == C.itemsize:
        if M > N:
            return bf16_tn_packed(bf16.pack(A.T, False), B, C, threads)
        else:
            rows.run(bf16.gemm_tn, (A.T, bf16.pack(B, False), C, 0.0), ranges, bf16_tn_blocks)
    else:
        rows.run(bf16.gemm_rows, (bf16.pairs_on_cores(A), bf16.pack(B, False), C, 0.0), ranges, bf16_rows_blocks)
    return C


def bf16_tn_packed(Xp, Y, C, threads=None, first=None):
    """C (M, N) = X^T Y with bf16 operands, X (K, M) given as its panels Xp = bf16.pack(X, False) (the
    backward loops write da's as they go: bf16.pair_rows), Y (K, N) float32 with contiguous rows:
    through C^T = Y^T X, each thread its rows of C^T (Y's columns made into pairs), and a transpose.
    first (K0, N): Y's first rows, when Y holds only the rest (dU's h_0, then h_1 .. h_{T-1} in place)."""
    (K, N), M = Y.shape, C.shape[0]
    CT = aligned.empty((N, M), np.float32)
    flop = 2.0 * M * N * (K + (0 if first is None else first.shape[0]))
    if first is None:
        rows.run(bf16.gemm_tn, (Y, Xp, CT, 0.0), parts(N, threads, flop), bf16_tn_blocks)
    else:
        rows.run(bf16.gemm_tn_stacked, (first, Y, Xp, CT, 0.0), parts(N, threads, flop), bf16_tn_stacked_blocks)
    rows.run(bf16.transpose_rows, (CT, C), parts(M, threads, flop), bf16.transpose_blocks)
    return C


def _rows(X):
    return X if X.shape[1] <= 1 or X.strides[1] == X.itemsize else np.ascontiguousarray(X)
