"""The work of a layer outside its time loop, over the whole window at once: the input projection
before it and the weight gradients after it, as few and as large GEMMs as possible.

Inputs come in three kinds (bptt.reference.inputs): float features (T, B, D); token ids (T, B), one-hot,
never materialised; and Embedded(E, ids), x_t = E[ids_t]. For the two kinds of ids the projection
of a token depends on its id only, so it is a row of a table (V, G) built once per window:

    ids            table = W^T + b            (one-hot: W x_t is column ids_t of W)
    Embedded       table = E W^T + b          one (V, D) x (D, G) GEMM instead of (T B, D) x (D, G)
    floats         table = X W^T + b          (T B, G), row t B + b for x_t[b]
    W x_t + b = table[ids_t]                  read by the time loop itself, row by row: the
                                              (T, B, G) projection is never gathered into an array

and the backward pass scatters the gradients of a_t back onto the table's rows first:

    dP[v] = sum of da_t[b] over the (t, b) with ids[t, b] = v          (V, G)
    ids:       dW = dP^T                          db = sum_v dP[v]
    Embedded:  dW = dP^T E,  dE = dP W            db = sum_v dP[v]

(dP inside the backward loop itself, each block of rows into its own copy while da_t is in cache,
when a copy is at most LOOP_TABLE_BYTES: loop_table; after the loop otherwise, scatter_rows)

so dW and dE cost (V, G) x (V, D) GEMMs instead of (T B, G) x (T B, D) ones: the same sums,
grouped by token (float round-off differs, nothing else).

With lengths, the positions past a row's length carry nothing (da_t = 0 there, and the time
loops skip them). When they are many (a batch of texts of 5 to 60 words is about two thirds
padding) the products over all T B positions are taken over the real ones only
(live_positions): the float table of the real positions, dW = da^T x, dx = da W and
dU = da^T h_prev over them, gathered once.
"""

import functools

import numpy as np
from numba import njit, prange

from ..reference import inputs
from ..reference.common import previous
from ..reference.inputs import Embedded, is_ids
from . import aligned, bf16, rows
from .matmul import bf16_tn_packed, parts
from .matmul import matmul as _matmul
from .packed import gemm_tn

SCATTER_PARALLEL = 1 << 18   # scatter_rows: a d of this many elements (a window of 2048 x 128) is summed on every core
SCATTER_COLUMNS = 64         # ... in ranges of at least this many columns each
LOOP_TABLE_BYTES = 1 << 20  # loop_table: each block of rows sums its own dP in the backward loop up to this size
LIVE_FRACTION = 0.9  # gather the real positions when fewer than this fraction of the window's are real


def live_positions(mask):
    """The flat indices t B + b of the real positions of a (T, B, 1) mask; None when there is no
    mask, no real position (a segment of padding, in recomputation), or so few are padding
    (LIVE_FRACTION) that gathering would cost more than it saves."""
    if mask is None:
        return None
    flat = mask.reshape(-1)
    real = flat.sum()
    if real == 0 or real >= LIVE_FRACTION * flat.size:
        return None
    return np.flatnonzero(flat)


def scatter(num_rows, ids, d):
    """scatter_rows on any layout of ids (T, B) and d (T, B, D): the gradient of gathered rows."""
    return scatter_rows(num_rows, np.ascontiguousarray(ids), np.ascontiguousarray(d))


def scatter_rows(num_rows, ids, d):
    """dM (num_rows, G) with dM[v] = sum of d[t, b] over the (t, b) where ids[t, b] = v. The zeros are
    NumPy's: an array above glibc's mmap threshold (32 MiB: a 33,278-word embedding of 256) comes as
    fresh pages, which NumPy asks the kernel to back with huge pages; numba's allocation faults them
    in 4 KiB at a time (13.8 ms a step instead of 1.2, 2-core AMD EPYC Zen 5). A large d is summed on
    every core, each thread its own columns (multiples of 16), so every element's sum keeps its order."""
    G = d.shape[2]
    dM = np.zeros((num_rows, G), d.dtype)
    n = max(1, min(rows.threads_available(), G // SCATTER_COLUMNS)) if d.size >= SCATTER_PARALLEL else 1
    edges = [G * i // n // 16 * 16 for i in range(n)] + [G]
    rows.run(scatter_add, (dM, ids, d), list(zip(edges[:-1], edges[1:])), scatter_blocks)
    return dM


@njit(nogil=True, cache=True)
def scatter_add(dM, ids, d, c0, c1):
    """dM[ids[t, b], c0:c1] += d[t, b, c0:c1] for every (t, b), in order."""
    for t in range(ids.shape[0]):
        for b in range(ids.shape[1]):
            row, src = dM[ids[t, b]], d[t, b]
            for j in range(c0, c1):
                row[j] += src[j]


@njit(**rows.PARALLEL)
def scatter_blocks(args, blocks):
    """scatter_add(*args, c0, c1) for every range of columns, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        scatter_add(*args, blocks[i, 0], blocks[i, 1])


def loop_table(W, xs, parts):
    """What a backward loop needs to sum dP, the gradient of the input table, itself: (ids (T, B), dPs,
    starts). For token ids (one-hot or Embedded) whose dP (V, G) takes at most LOOP_TABLE_BYTES, dPs
    (n, V, G) holds zeros for each of the n blocks of rows (parts) and starts (n,) their first rows
    (common.own_table); otherwise ids and starts are empty, dPs (1, 0, G) too, and project_backward
    scatters after the loop. Summing da_t while it is in cache saves reading all of da (T B G) again: 0.6-0.9 ms of
    an lstm-h256 step (2-core AMD EPYC Zen 5, AVX-512)."""
    G = W.shape[0]
    V = xs.E.shape[0] if isinstance(xs, Embedded) else W.shape[1] if is_ids(xs) else None
    if V is None or V * G * W.itemsize > LOOP_TABLE_BYTES:
        return np.zeros((0, 0), np.int64), np.zeros((1, 0, G), W.dtype), np.zeros(0, np.int64)
    ids = xs.ids if isinstance(xs, Embedded) else xs
    starts = np.array([b0 for b0, _ in parts], np.int64)
    return np.ascontiguousarray(ids, np.int64), np.zeros((len(parts), V, G), W.dtype), starts


def loop_panels(T, B, G, mask, precision):
    """bf16 panels of da (T B, G), pack(da, False) as it would be, for the backward loop to fill as it
    computes da_t (bf16.pair_rows), or an empty (0, 0, NC) that it leaves alone: float32, or a mask of
    mostly padding (the products then run over the real positions, gathered). With them dU (and dW of
    float inputs) skip converting all of da after the loop (8 MB at LSTM H256: 0.25-0.5 ms a step)."""
    if precision != "bf16" or live_positions(mask) is not None:
        return bf16.empty_panels(0, G)
    return bf16.empty_panels(T * B, G)


def loop_rows(T, B, G, dtype, kept):
    """The array a backward loop writes da_t (B, G) into: every step's, (T, B, G), when something after
    the loop reads them (kept), else one step's rows (1, B, G) that every step rewrites (common.step_rows).
    Writing a window's da (8 MB at LSTM H256) that nothing reads cost 1-7% of an lstm-h256 bf16 step, 6%
    of an lstm-h128 one (benchmarks/loop_work.py --what rows; 2-core AMD EPYC Zen 5, AVX-512)."""
    return aligned.empty((T if kept else 1, B, G), dtype)


def read_after_loop(dPs, panels=None):
    """Whether anything after a backward loop reads the da it wrote: the scatter of the input table's
    gradient does unless the loop summed it (loop_table: dW, dE and db then come from dP), and the
    products of dU (and dW of float inputs) do unless the loop wrote da's bf16 panels (loop_panels;
    panels None: no product reads this da, as the GRU's dL/d(W x_t + b))."""
    return dPs.shape[1] == 0 or (panels is not None and panels.shape[0] == 0)


def filled(panels):
    """panels (loop_panels) if the loop filled them, else None."""
    return panels if panels.shape[0] else None


def loop_table_sum(dPs):
    """dP (V, G) from the blocks' own copies (loop_table), summed in block order; None when the loop
    summed none."""
    if dPs.shape[1] == 0:
        return None
    return dPs[0] if dPs.shape[0] == 1 else dPs.sum(axis=0)


def input_table(W, b, xs, b_U=None, mask=None, precision="float32"):
    """(table, ids) with W x_t + b (+ b_U) = table[ids[t, b]] for every real t and row b: table
    (V, G) for ids, (T B, G) for float inputs (then ids[t, b] = t B + b), or with a mask (T, B, 1)
    of mostly padding the rows of the real positions only (padding reads row 0: the time loops never
    read it). The biases are added in one pass, as b + b_U. precision: of the products (matmul); the
    one-hot table has none (W x_t is a column of W, exact)."""
    bias = b if b_U is None else b + b_U
    matmul = functools.partial(_matmul, precision=precision)
    if isinstance(xs, Embedded):
        table, ids = matmul(xs.E, W.T), np.ascontiguousarray(xs.ids)
        table += bias
    elif is_ids(xs):
        table, ids = np.add(W.T, bias, order="C"), np.ascontiguousarray(xs)   # rows contiguous, as gathered
    else:
        T, B, D = xs.shape
        live = live_positions(mask)
        if live is None:
            table = inputs.project(W, bias, xs, matmul).reshape(T * B, -1)
            ids = np.arange(T * B).reshape(T, B)
        else:
            table = inputs.project(W, bias, xs.reshape(T * B, 1, D)[live], matmul).reshape(live.size, -1)
            ids = np.zeros(T * B, np.int64)
            ids[live] = np.arange(live.size)
            ids = ids.reshape(T, B)
    return table, ids


def project_backward(W, xs, da, mask=None, precision="float32", dP=None, panels=None):
    """Given da (T, B, G) = dL/d(W x_t + b): (dW, dxs, db). dxs is dE (V, D) for Embedded inputs,
    None for one-hot ids, (T, B, D) for floats (zero on padding; with a mask of mostly padding the
    products run over the real positions only). precision: of the products (matmul). dP: the table's
    gradient when the backward loop summed it (loop_table_sum), scattered from da here otherwise (with
    dP and ids, da is not read: it may be one step's rows, loop_rows).
    panels: da's bf16 panels when the loop wrote them (loop_panels), for dW = da^T x."""
    matmul = functools.partial(_matmul, precision=precision)
    if isinstance(xs, Embedded):
        dP = scatter_rows(xs.E.shape[0], np.ascontiguousarray(xs.ids), da) if dP is None else dP    # (V, G)
        return matmul(dP.T, xs.E), matmul(dP, W), dP.sum(axis=0)
    if is_ids(xs):
        dP = scatter_rows(W.shape[1], np.ascontiguousarray(xs), da) if dP is None else dP           # (V, G)
        return np.ascontiguousarray(dP.T), None, dP.sum(axis=0)
    live = live_positions(mask)
    if live is None and panels is not None:
        T, B, D = xs.shape
        dW = bf16_tn_packed(panels, np.ascontiguousarray(xs).reshape(T * B, D), aligned.empty(W.shape, W.dtype))
        return dW, matmul(da.reshape(T * B, -1), W).reshape(T, B, D), da.reshape(T * B, -1).sum(axis=0)
    if live is None:
        dW, dxs = inputs.project_backward(W, xs, da, matmul)
        return dW, dxs, da.reshape(-1, da.shape[-1]).sum(axis=0)
    T, B, D = xs.shape
    da_live = da.reshape(T * B, 1, -1)[live]                 # the real positions as a window of one step
    dW, dx_live = inputs.project_backward(W, xs.reshape(T * B, 1, D)[live], da_live, matmul)
    dxs = np.zeros((T * B, D), da.dtype)
    dxs[live] = dx_live[:, 0]
    return dW, dxs.reshape(T, B, D), da_live.sum(axis=(0, 1))


@njit(nogil=True, cache=True)
def _recurrent_grad_rows(da0, h0, das, hs, dU, m0, m1):
    """Rows m0:m1 of dU = da_0^T h0 + sum_{t>=1} da_t^T h_{t-1}: da0 (B, G), h0 (B, H), das (K, G) and
    hs (K, H) the rows of steps 1..T-1 and 0..T-2 (K may be 0)."""
    gemm_tn(da0, h0, dU, 0.0, m0, m1)
    gemm_tn(das, hs, dU, 1.0, m0, m1)


@njit(**rows.PARALLEL)
def _recurrent_grad_blocks(args, blocks):
    """_recurrent_grad_rows(*args, b0, b1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        _recurrent_grad_rows(*args, blocks[i, 0], blocks[i, 1])


def recurrent_grad(das, h0, hs, reset, threads=None, mask=None, precision="float32", panels=None):
    """dU = sum_t da_t^T h_{t-1} (G, H), the rows of dU split over the cores (threads: as matmul.parts);
    with no resets h_{t-1} is read in place from hs (steps 1..T-1) and h0 (step 0), not copied. With
    a mask (T, B, 1) of mostly padding, over the real positions only (da_t = 0 on the others).
    precision="bf16": one bf16 product over the T B rows, with da's panels the backward loop wrote when it
    did (panels: loop_panels; das may then be one step's rows, loop_rows), h_{t-1} then read in place
    unless rows are reset (bf16.pairs_of_stacked_columns, not a copy: 2 MB at LSTM H256);
    without panels, h_{t-1} gathered (its pairs are copies anyway)."""
    (T, B, H), G = hs.shape, das.shape[2]
    matmul = functools.partial(_matmul, precision=precision)
    live = live_positions(mask)
    if live is not None:
        first = live < B                                   # step 0: h_{t-1} is h0
        h_prev = np.empty((live.size, H), das.dtype)
        h_prev[~first] = hs.reshape(T * B, H)[live[~first] - B]
        h_prev[first] = h0[live[first]]
        if reset is not None:
            h_prev[reset.reshape(-1)[live]] = 0
        return matmul(das.reshape(T * B, G)[live].T, h_prev, threads)
    if panels is not None:                                 # bf16, da's panels from the loop
        if reset is None:                                  # h_{t-1}: h_0, then hs[:-1] in place
            first, rest = np.ascontiguousarray(h0, das.dtype), hs[:-1].reshape((T - 1) * B, H)
        else:
            first, rest = None, previous(h0, hs, reset).reshape(T * B, H)
        return bf16_tn_packed(panels, rest, aligned.empty((G, H), das.dtype), threads, first=first)
    if reset is not None or precision == "bf16":
        return matmul(das.reshape(T * B, G).T, previous(h0, hs, reset).reshape(T * B, H), threads)
    dU = aligned.empty((G, H), das.dtype)
    rows.run(_recurrent_grad_rows, (das[0], np.ascontiguousarray(h0, das.dtype), das[1:].reshape((T - 1) * B, G),
                                    hs[:-1].reshape((T - 1) * B, H), dU), parts(G, threads, 2.0 * T * B * G * H),
             _recurrent_grad_blocks)
    return dU
