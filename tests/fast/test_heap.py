"""bptt.fast.heap: glibc's malloc thresholds, measured by the page faults of a process."""

import subprocess
import sys


def test_reuse_freed_memory_serves_a_step_from_the_heap():
    """After heap.reuse_freed_memory, allocating and filling the same 8 MB arrays again faults in no
    fresh pages (without it glibc may map them anew on every step: bptt/heap.py)."""
    code = """
import resource, numpy as np
from bptt.fast.heap import reuse_freed_memory
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


FAULTS_PER_STEP = """
import resource, sys, numpy as np
import bptt
net = bptt.Network("lstm", 65, 256, 65, embedding_dim=64, dtype=np.float32, engine=sys.argv[1])
rng = np.random.default_rng(0)
small = rng.integers(0, 65, (2, 32))
net.loss_and_grads(small, small)                      # a first call on a small window, as a user's might be
x, y = rng.integers(0, 65, (64, 32)), rng.integers(0, 65, (64, 32))
for _ in range(3):
    net.loss_and_grads(x, y)
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    net.loss_and_grads(x, y)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 5)
"""


def test_a_loop_over_network_gets_the_trainers_heap():
    """A program's own loop over Network.loss_and_grads on the fast engine: its steps come from the
    heap as the trainer's do (the engine sets the thresholds on first use), not from fresh pages;
    the reference engine leaves the allocator alone, and faults (the check can fail)."""
    def faults(engine):
        done = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP, engine], capture_output=True, text=True,
                              check=True)
        return float(done.stdout)

    assert faults("fast") < 100
    assert faults("numpy") > 1000
