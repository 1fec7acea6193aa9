"""Describing a network has no global side effects (issue 22, item 5): building an Arch or a Network,
whatever its engine, neither loads numba nor changes the process's allocator; the fast engine is
loaded (and glibc's thresholds set, bptt.fast.heap) by its first use, model.engine.backend("fast")."""

import subprocess
import sys

PROBE = """
import sys
import bptt
from bptt.model.engine import Arch
for cell in ("rnn", "gru", "lstm", "skip"):
    Arch(cell, 5, 4, 3, num_layers=2)
    bptt.Network(cell, 5, 4, 3, embedding_dim=2)
bptt.Network("lstm", 5, 4, 3, engine="fast")
print("numba" in sys.modules, "bptt.fast.heap" in sys.modules, "bptt.fast.lstm" in sys.modules)
bptt.Network("lstm", 5, 4, 3).forward([[0, 1]])
print("numba" in sys.modules, "bptt.fast.heap" in sys.modules)
"""


def test_an_architecture_loads_no_engine_until_it_runs():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["False False False", "True True"]
