"""Running a compiled time loop over the rows of a batch, on one thread or several.

The rows of a batch are independent recurrences, so the batch splits into blocks of rows that
run side by side with no synchronisation inside the time loop: each block is one call of the
compiled loop on its own thread (the loops release the GIL). The per-step GEMMs inside the loop
are single-threaded (packed.py), so there is one thread per core and no second pool competing.
"""

import os
import threading

import numpy as np

MIN_ROWS = 8          # below this many rows per block a step is too small to share


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
    edges = np.linspace(0, B, n + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def run(kernel, args, parts):
    """kernel(*args, b0, b1) for every block (b0, b1) of rows, each block on its own thread."""
    if len(parts) == 1:
        kernel(*args, *parts[0])
        return
    errors = []

    def work(b0, b1):
        try:
            kernel(*args, b0, b1)
        except BaseException as e:             # re-raised in the caller's thread
            errors.append(e)

    workers = [threading.Thread(target=work, args=part) for part in parts[1:]]
    for w in workers:
        w.start()
    work(*parts[0])
    for w in workers:
        w.join()
    if errors:
        raise errors[0]


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
