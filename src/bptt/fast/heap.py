"""Keeping the C heap's freed memory for the next training step.

A training step allocates and frees the same window-sized arrays every time (gates, states,
their gradients: megabytes each). glibc's malloc serves an allocation above its mmap threshold
with fresh pages from the kernel, and that threshold adapts to the sizes freed so far, so whether
a step's arrays come back from the heap or are faulted in page by page depends on the history of
the process. Measured on lstm H256 (batch 32, window 64): a process whose first call was on a
2-step window kept faulting 3,800 pages per step and took 28 ms a step instead of 21.6 ms (an
AVX-512 Xeon, 2026-11-22); 28.8 ms instead of 22.0 on a 2-core AMD EPYC Zen 4 with AVX-512
(2026-11-29, median of 7 fresh processes each).

reuse_freed_memory() fixes both thresholds, which ends the adaptation: allocations up to 32 MiB
(glibc's largest mmap threshold) come from the heap, and up to 256 MiB of freed memory is kept
for reuse instead of being returned to the kernel. Either engine allocates this way. It changes
the whole process's allocator, so nothing calls it on import: the first use of the fast engine does
(model.engine.backend("fast"), the one place that decides; the trainer builds its engine before the
first step, and a program with its own loop over Network.loss_and_grads gets what the trainer
gets). What it costs: a process keeps up to 256 MiB of freed memory instead of returning it to
the kernel at once.
"""

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3        # mallopt's parameters, from glibc's malloc.h
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20


def reuse_freed_memory():
    """Set glibc's malloc thresholds (module docstring). Returns True when they were set, False
    where the C library is not glibc (nothing is changed then)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
