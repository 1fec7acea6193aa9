"""What the tests share: a small text, the options of a model that trains in milliseconds, the
fixture that writes the text to a file; and, before a run of the whole suite on a cold numba cache,
the fast engine compiled once (tests/fast/warm_cache.py) instead of once in every test process."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nAy me!\n\n" * 10
SMALL = ["--hidden", "10", "--layers", "1", "--embedding", "5", "--batch", "3", "--window", "6",
         "--eval-every", "4", "--eval-batch", "2", "--log-every", "1"]


@pytest.fixture
def text(tmp_path):
    """The path of a file holding TEXT."""
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return str(path)


def stale_kernels():
    """The fast engine's modules whose compiled code numba's disk cache lacks or holds for an older
    source (no index file newer than the module), read from the files, without importing numba."""
    fast = Path(importlib.util.find_spec("bptt").submodule_search_locations[0]) / "fast"
    stale = []
    for module in fast.glob("*.py"):
        if "cache" not in module.read_text():
            continue
        indexes = (fast / "__pycache__").glob(f"{module.stem}.*.nbi")
        if not any(index.stat().st_mtime >= module.stat().st_mtime for index in indexes):
            stale.append(module.stem)
    return stale


def pytest_sessionstart(session):
    """For the whole suite on a cold cache: compile the kernels once, split over the cores, before
    pytest-xdist starts its workers (its own sessionstart runs last), so that each worker loads
    them instead of compiling all of them at the same time as the other."""
    config = session.config
    whole_suite = all(Path(arg).resolve() == TESTS for arg in config.args)
    if hasattr(config, "workerinput") or not whole_suite or not stale_kernels():
        return
    shares = max(1, min(os.cpu_count() or 1, 4))
    script = TESTS / "fast" / "warm_cache.py"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    procs = [subprocess.Popen([sys.executable, str(script), str(i), str(shares)], env=env, cwd=script.parent,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(shares)]
    for proc in procs:
        proc.wait()
