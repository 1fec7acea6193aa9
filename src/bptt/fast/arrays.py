"""Whole-array passes over a parameter's values on every core: the sum of squares that clipping's
norm reads, scaling in place, and the update p <- p - lr d of plain SGD.

A word-level model's embedding and readout are millions of values (25,000 words x 256: 6.5M), so
after the loss and gradients a training step makes three or four passes over memory of that size.
NumPy makes each pass on one core, and `p -= lr * d` writes a temporary of the array's size first.
Here each pass runs once, in place, its chunks shared by the cores (rows.run):

    squares(x)       sum_i x_i^2 in float64: each chunk of CHUNK values summed in order, the chunks'
                     sums added in chunk order, so the result does not depend on the number of cores
    scale(x, a)      x <- a x                               (the same float as NumPy's x *= a)
    axpy(p, a, d)    p <- p + a d, a d rounded first        (the same float as NumPy's p -= lr * d)

Arrays below CHUNK values, or not contiguous, take NumPy's path (the same numbers).

A word-level gradient of the embedding is zero outside the rows of the window's tokens (1,120 of
25,303 in a window of 35 x 32): given those rows (`nonzero`, sorted int64, of the first axis), each
pass reads and writes them alone, on one core; rows outside hold zeros, which add nothing to the
sum, stay zero when scaled, and leave p as it is.
"""

import math

import numpy as np
from numba import njit, prange

from . import rows

CHUNK = 1 << 16                      # values per chunk: 256 KB of float32, a core's share of L2
JIT = {"nogil": True, "cache": True}


@njit(**JIT, fastmath={"reassoc", "contract"})
def sum_of_squares(x):
    """sum_i x_i^2 in float64, vectorised (reassociated)."""
    s = 0.0
    for i in range(x.size):              # by index from 0: `for v in x`, or a shifted range, is not vectorised
        v = np.float64(x[i])
        s += v * v
    return s


@njit(**JIT)
def squares_chunks(x, out, c0, c1):
    """out[c] = sum of x_i^2 (float64) over chunk c, for chunks c0:c1."""
    for c in range(c0, c1):
        out[c] = sum_of_squares(x[c * CHUNK:(c + 1) * CHUNK])


@njit(**rows.PARALLEL)
def squares_blocks(args, blocks):
    for i in prange(blocks.shape[0]):
        squares_chunks(*args, blocks[i, 0], blocks[i, 1])


@njit(**JIT)
def axpy_chunks(p, a, d, c0, c1):
    """p[i] += a d[i] over chunks c0:c1, the product rounded to p's type first (no fused multiply-add)."""
    p, d = p[c0 * CHUNK:c1 * CHUNK], d[c0 * CHUNK:c1 * CHUNK]
    for i in range(p.size):              # by index from 0, as sum_of_squares
        p[i] += a * d[i]


@njit(**rows.PARALLEL)
def axpy_blocks(args, blocks):
    for i in prange(blocks.shape[0]):
        axpy_chunks(*args, blocks[i, 0], blocks[i, 1])


@njit(**JIT)
def scale_chunks(x, a, c0, c1):
    """x[i] *= a over chunks c0:c1."""
    x = x[c0 * CHUNK:c1 * CHUNK]
    for i in range(x.size):
        x[i] *= a


@njit(**rows.PARALLEL)
def scale_blocks(args, blocks):
    for i in prange(blocks.shape[0]):
        scale_chunks(*args, blocks[i, 0], blocks[i, 1])


@njit(**JIT, fastmath={"reassoc", "contract"})
def squares_of_rows(x, rows):
    """sum of x[r]^2 over the rows r, in float64, each row vectorised, the rows in order."""
    s = 0.0
    for r in rows:
        s += sum_of_squares(x[r])
    return s


@njit(**JIT)
def scale_rows(x, rows, a):
    """x[r] *= a for each row r."""
    for r in rows:
        row = x[r]
        for j in range(row.size):
            row[j] *= a


@njit(**JIT)
def axpy_rows(p, a, d, rows):
    """p[r] += a d[r] for each row r, the product rounded first (as axpy_chunks)."""
    for r in rows:
        p_r, d_r = p[r], d[r]
        for j in range(p_r.size):
            p_r[j] += a * d_r[j]


def _rows_view(x):
    """x as (rows, values per row), C-contiguous, for the row passes."""
    return np.ascontiguousarray(x).reshape(x.shape[0], -1)


def chunk_ranges(size):
    """The chunks of an array of `size` values, split into one range per core."""
    n = math.ceil(size / CHUNK)
    return rows.split(n, min(n, rows.threads_available())) if n else []


def _flat(x):
    """x as a flat view for the compiled passes, or None when it has none (not contiguous)."""
    return x.reshape(-1) if x.flags.c_contiguous else None


def squares(x, nonzero=None):
    """sum_i x_i^2 of an array, accumulated in float64 (an overflowing sum is inf); a Python float.
    nonzero: x is zero outside these rows of its first axis (module docstring)."""
    if x.size == 0:
        return 0.0
    if nonzero is not None:
        return float(squares_of_rows(_rows_view(x), nonzero))
    flat = _flat(x)
    if flat is None:
        flat = np.ascontiguousarray(x).reshape(-1)
    out = np.zeros(math.ceil(flat.size / CHUNK))
    rows.run(squares_chunks, (flat, out), chunk_ranges(flat.size), squares_blocks)
    return float(out.sum())


def scale(x, a, nonzero=None):
    """x <- a x in place, a a Python float > 0 (x keeps its dtype). nonzero: as squares."""
    if nonzero is not None and x.flags.c_contiguous and a > 0:          # a 0 stays +0 only for a > 0
        scale_rows(x.reshape(x.shape[0], -1), nonzero, x.dtype.type(a))
        return
    flat = _flat(x)
    if flat is None or x.size < CHUNK:
        x *= a
        return
    rows.run(scale_chunks, (flat, x.dtype.type(a)), chunk_ranges(x.size), scale_blocks)


def axpy(p, a, d, nonzero=None):
    """p <- p + a d in place, as NumPy's p += a * d (a a Python float, d like p), without a temporary.
    nonzero: d is zero outside these rows of its first axis, and only they change (a <= 0: p + a 0 = p)."""
    if nonzero is not None and p.flags.c_contiguous and d.dtype == p.dtype and d.shape == p.shape and a <= 0:
        axpy_rows(p.reshape(p.shape[0], -1), p.dtype.type(a), _rows_view(d), nonzero)
        return
    flat_p, flat_d = _flat(p), _flat(d)
    if flat_p is None or flat_d is None or p.size < CHUNK or d.dtype != p.dtype or d.shape != p.shape:
        p += a * d
        return
    rows.run(axpy_chunks, (flat_p, p.dtype.type(a), flat_d), chunk_ranges(p.size), axpy_blocks)
