"""bptt.heap: glibc's malloc thresholds, measured by the page faults of a process."""

import subprocess
import sys


def test_reuse_freed_memory_serves_a_step_from_the_heap():
    """After heap.reuse_freed_memory, allocating and filling the same 8 MB arrays again faults in no
    fresh pages (without it glibc may map them anew on every step: bptt/heap.py)."""
    code = """
import resource, numpy as np
from bptt.heap import reuse_freed_memory
assert reuse_freed_memory()
for _ in range(3):
    a = np.empty((64, 32, 1024), np.float32); a[...] = 1; b = np.empty_like(a); b[...] = 2; del a, b
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = np.empty((64, 32, 1024), np.float32); a[...] = 1; b = np.empty_like(a); b[...] = 2; del a, b
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 20)
"""
    faults = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert faults < 50                                   # 4096 pages per step if they were mapped anew
