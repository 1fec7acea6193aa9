"""Under mpiexec -n 2 only bptt train is data-parallel: every other command runs once, on rank 0,
which says so; the other rank ends at once and writes nothing (issue 21, item 7: export, task,
eval and sample ran once per rank, printing twice, and the second export or task failed on the
first one's file). Real mpiexec jobs (the MPICH wheel of requirements-test.txt)."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL, TEXT

from bptt.cli import main

BIN = Path(sys.executable).parent
NOTE = "runs on MPI rank 0 alone (only bptt train is data-parallel); the other rank has nothing to do"


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    root = tmp_path_factory.mktemp("mpi")
    (root / "text.txt").write_text(TEXT)
    assert main(["train", "--out", str(root / "run"), "--data", str(root / "text.txt"), "--steps", "2", *SMALL]) == 0
    return root


def mpiexec(place, *argv):
    return subprocess.run([str(BIN / "mpiexec"), "-n", "2", str(BIN / "bptt"), *argv], cwd=place,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("argv, once", [
    (["eval", "run", "--data", "text.txt"], "tokens scored as one stream"),
    (["sample", "run", "--tokens", "12", "--seed", "1"], None),
    (["export", "run", "--format", "torch", "--out", "model.safetensors"], "written: model.safetensors"),
    (["export", "run", "--format", "onnx", "--out", "model.onnx"], "written: model.onnx"),
    (["task", "adding", "--lengths", "5", "--cells", "gru", "--steps", "2", "--hidden", "4", "--batch", "2",
      "--test-size", "4", "--out", "sweep"], "adding: cells gru"),
    (["gradcheck", "--cell", "gru", "--seq-len", "2", "--batch", "1", "--hidden", "2", "--layers", "1",
      "--no-torch"], "1 passed, 0 failed"),
    (["diagnose", "run", "--length", "6", "--out", "report.html"], "report: report.html"),
])
def test_other_commands_run_once_on_rank_0(place, argv, once):
    done = mpiexec(place, *argv)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(NOTE) == 1 and "error" not in done.stderr and "Traceback" not in done.stderr
    if once is not None:
        assert done.stdout.count(once) == 1, done.stdout
    else:                                                          # sample: one sample, the one a single process prints
        alone = subprocess.run([str(BIN / "bptt"), *argv], cwd=place, capture_output=True, text=True, timeout=300)
        assert done.stdout == alone.stdout


def test_a_usage_error_is_printed_once(place):
    done = mpiexec(place, "eval", "run", "--streams", "0", "--data", "text.txt")
    assert done.returncode != 0
    assert done.stderr.count("error: --streams: expected a positive int, got '0'") == 1, done.stderr
    done = mpiexec(place, "task", "adding", "--out", "sweep2", "--executor", "mpi")
    assert done.stderr.count("error: --executor: 'mpi' starts as mpiexec -n N python -m mpi4py.futures") == 1
    assert not (place / "sweep2").exists()


def test_help_is_printed_once(place):
    done = mpiexec(place, "eval", "--help")
    assert done.returncode == 0 and done.stdout.count("usage: bptt eval") == 1
