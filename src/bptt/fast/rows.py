"""Running a compiled time loop over the rows of a batch, on one thread or several.

The rows of a batch are independent recurrences, so the batch splits into blocks of rows that
run side by side with no synchronisation inside the time loop: each block is one call of the
compiled loop on a core of its own. The per-step GEMMs inside the loop are single-threaded
(packed.py), so there is one thread per core and no second pool competing.

Each kernel has a parallel form, compiled with numba's `prange` over the blocks:

    @njit(**rows.PARALLEL)
    def forward_blocks(args, blocks):
        for i in prange(blocks.shape[0]):
            forward_rows(*args, blocks[i, 0], blocks[i, 1])

numba runs it on its own pool of threads (OpenMP where libgomp is installed, its workqueue
otherwise), which stay alive between calls: starting a Python thread per call and handing it
the GIL cost 0.2 to 0.4 ms per call on this machine, about ten times per training step
(docs/fast-engine.md). An exception raised inside a prange is lost, so the kernels that run
this way must not raise: their arguments are checked before they are called.

GNU OpenMP does not survive fork(): a child that starts a parallel region after its parent used
one is terminated. In a process forked from another, the blocks therefore run one after the other
in the calling thread (correct, one core); processes started by spawn are unaffected.
"""

import os

import numba
import numpy as np

from . import caching  # noqa: F401  (numba's cache keyed by the whole engine: before any kernel is defined)

MIN_ROWS = 3          # below this many rows per block a step is too small to share. Measured on the pool
                      # (2-core AMD EPYC Zen 4, LSTM H256, T 64): two blocks instead of one at batch 6,
                      # 8 and 10 make a step 1.4-1.6x faster (10 rows: 12.2 -> 7.7 ms); 8 was chosen
                      # when each block started a Python thread of its own
PARALLEL = {"parallel": True, "nogil": True, "cache": True}       # a kernel's parallel form
_process = {"forked": False}                                       # set in the child of a fork()
if hasattr(os, "register_at_fork"):                               # POSIX
    os.register_at_fork(after_in_child=lambda: _process.update(forked=True))


def threads_available():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def blocks(B, threads=None):
    """Row ranges [(b0, b1), ...] to run side by side, each >= MIN_ROWS rows; threads=None: one
    block per available core."""
    if threads is None:
        threads = threads_available()
    if not (isinstance(threads, int) and threads >= 1):
        raise ValueError(f"threads: expected a positive int or None (one per core), got {threads!r}")
    n = max(1, min(threads, B // MIN_ROWS))
    return split(B, n)


def split(size, n):
    """[0, size) cut into n ranges at round(i size / n), as np.linspace(0, size, n + 1).round() cuts it
    (in plain Python: a training step asks for some fifty of these)."""
    edges = [round(i * size / n) for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def by_length(lengths, threads=None):
    """An order of the rows of a batch with these lengths (B,) for the time loops, or None when the
    rows are in such an order already: the longest first within each block of rows (blocks()), so
    that at every step the rows that have ended are the last of their block and the step skips
    them (common.live_rows); the rows dealt to the blocks in turn, so that each gets as much work."""
    parts = blocks(len(lengths), threads)
    dealt = [[] for _ in parts]
    room = [b1 - b0 for b0, b1 in parts]
    j = 0
    for row in np.argsort(-np.asarray(lengths), kind="stable"):
        while len(dealt[j]) == room[j]:
            j = (j + 1) % len(parts)
        dealt[j].append(row)
        j = (j + 1) % len(parts)
    order = np.concatenate(dealt).astype(np.int64)
    return None if np.array_equal(order, np.arange(len(order))) else order


def run(kernel, args, parts, on_threads):
    """kernel(*args, b0, b1) for every block (b0, b1) of rows: one block in this thread, several
    through on_threads(args, blocks), the kernel's parallel form, one block per thread (in a forked
    process: one after the other, module docstring)."""
    if len(parts) == 1 or _process["forked"]:
        for b0, b1 in parts:
            kernel(*args, b0, b1)
        return
    numba.set_num_threads(min(len(parts), numba.config.NUMBA_NUM_THREADS))
    on_threads(args, np.array(parts, np.int64).reshape(-1, 2))


def masks(mask, reset, T, B):
    """The (T, B, 1) masks of the cells as (T, B) bool arrays, all-true / all-false when None."""
    m = np.ones((T, B), bool) if mask is None else np.ascontiguousarray(mask[:, :, 0])
    r = np.zeros((T, B), bool) if reset is None else np.ascontiguousarray(reset[:, :, 0])
    return m, r


def approximate(approx, dtype):
    """Whether to use the rational tanh: by default in float32, never in float64."""
    if approx is None:
        return dtype == np.float32
    if approx and dtype != np.float32:
        raise ValueError(f"approx: the rational tanh is for float32 only, got dtype {np.dtype(dtype).name}")
    return bool(approx)


def clip(clip_dh, dtype):
    return dtype.type(0 if clip_dh is None else clip_dh)


def trace(dh_trace, dtype):
    return np.empty((0, 0, 0), dtype) if dh_trace is None else dh_trace
