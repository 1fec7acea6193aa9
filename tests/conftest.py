"""What the tests share: a small text, the options of a model that trains in milliseconds, the
fixture that writes the text to a file, the one that loads a benchmark script; and, before a run of
the whole suite on a cold numba cache, the fast engine compiled once (tests/fast/warm_cache.py)
instead of once in every test process."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bptt.fast import stale_modules

TESTS = Path(__file__).resolve().parent
os.environ.setdefault("BPTT_BF16_EMULATE", "1")    # --precision bf16 runs on the emulation on a CPU without
                                                   # AVX512-BF16 (tests only; a user gets an error there)

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nAy me!\n\n" * 10
SMALL = ["--hidden", "10", "--layers", "1", "--embedding", "5", "--batch", "3", "--window", "6",
         "--eval-every", "4", "--eval-batch", "2", "--log-every", "1"]


@pytest.fixture
def text(tmp_path):
    """The path of a file holding TEXT."""
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return str(path)


@pytest.fixture
def script():
    """script(name): benchmarks/<name>.py loaded as a module (the benchmark scripts' tests)."""
    def load(name):
        spec = importlib.util.spec_from_file_location(name, TESTS.parent / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


def pytest_sessionstart(session):
    """Before a run of the whole suite (in the controller, before pytest-xdist starts its workers: its
    own sessionstart runs last): start the check at the other vector width in the background, for
    tests/fast/test_fast_widths.py to collect (other_width_run), and, on a cold numba cache, compile
    the fast engine once (tests/fast/warm_cache.py): `base` beside that check, then the cells and the
    readout spread over the cores. Each worker then loads the compiled kernels instead of compiling
    all of them at the same time as the other."""
    config = session.config
    whole_suite = all(Path(arg).resolve() == TESTS for arg in config.args)
    if hasattr(config, "workerinput") or not whole_suite:
        return
    config.bptt_other_width = start_other_width()
    if not stale_modules():
        return
    run_groups([["base"]])
    cores = max(1, min(os.cpu_count() or 1, 4))
    shares = [[] for _ in range(cores)]
    for name in sorted(("lstm", "readout", "gru", "rnn"), key=lambda g: -WARM_COST[g]):   # longest first
        min(shares, key=lambda share: sum(WARM_COST[g] for g in share)).append(name)
    run_groups([share for share in shares if share])


WARM_COST = {"lstm": 42, "readout": 35, "gru": 33, "rnn": 32}   # s of one core each, after base (49 s); AMD EPYC Zen 4


def run_groups(shares):
    """warm_cache.py GROUP... for each share of groups, in processes side by side; returns when all end."""
    script = TESTS / "fast" / "warm_cache.py"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    procs = [subprocess.Popen([sys.executable, str(script), *share], env=env, cwd=script.parent,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for share in shares]
    for proc in procs:
        proc.wait()


def start_other_width():
    """tests/fast/fast_width_check.py at the vector width this CPU does not use, started now in its own
    numba cache, its output going to files in a new directory; a thread writes the exit status to
    `rc` when it ends. The directory is given to the workers in BPTT_OTHER_WIDTH_RUN."""
    import tempfile
    import threading

    sys.path.insert(0, str(TESTS / "fast"))
    import fast_width_check

    other = fast_width_check.other_width()
    folder = Path(tempfile.mkdtemp(prefix="bptt-other-width-"))
    argv, env = fast_width_check.command(other, folder / "numba")
    out, err = open(folder / "stdout", "w"), open(folder / "stderr", "w")
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err)

    def wait():
        code = proc.wait()
        out.close()
        err.close()
        try:
            (folder / "rc.tmp").write_text(str(code))
            os.replace(folder / "rc.tmp", folder / "rc")
        except OSError:                               # the session ended first and removed the folder
            pass

    threading.Thread(target=wait, daemon=True).start()
    (folder / "width").write_text(str(other))
    os.environ["BPTT_OTHER_WIDTH_RUN"] = str(folder)
    return proc, folder


def pytest_sessionfinish(session):
    started = getattr(session.config, "bptt_other_width", None)
    if started is not None:
        proc, folder = started
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
