"""bptt task on the ranks of an MPI job (--executor mpi, mpi4py.futures under mpiexec from the MPICH
wheel): the same results as on local processes; asked wrongly, one clear line. Each MPI program
runs in a process of its own, started here."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
TASK = ["task", "adding", "--lengths", "5", "8", "--cells", "rnn-tanh", "gru", "--steps", "12", "--test-size", "40"]


def results(out):
    """results.json's runs without their seconds (the only thing that may differ)."""
    data = json.loads((out / "results.json").read_text())
    return data["config"], [{k: v for k, v in r.items() if k != "seconds"} for r in data["runs"]]


def test_mpi_ranks_give_the_results_of_local_processes(tmp_path):
    mpiexec = BIN / "mpiexec"
    assert mpiexec.exists(), "mpiexec (the mpich wheel of requirements-test.txt) is missing"
    done = subprocess.run([str(mpiexec), "-n", "2", sys.executable, "-m", "mpi4py.futures", "-m", "bptt", *TASK,
                           "--out", str(tmp_path / "mpi"), "--executor", "mpi"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    local = subprocess.run([sys.executable, "-m", "bptt", *TASK, "--out", str(tmp_path / "local"), "--jobs", "2"],
                           capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-2000:]
    assert results(tmp_path / "mpi") == results(tmp_path / "local")
    assert [line.split()[:2] for line in done.stdout.splitlines()[2:]] == [["rnn-tanh", "5"], ["rnn-tanh", "8"],
                                                                           ["gru", "5"], ["gru", "8"]]


@pytest.mark.parametrize("extra, message", [
    ([], "error: --executor: 'mpi' runs under MPI with workers: mpiexec -n N python -m mpi4py.futures"),
    (["--jobs", "2"], "error: --jobs: applies to --executor processes; under MPI the ranks are the workers"),
])
def test_mpi_asked_wrongly_is_one_line(tmp_path, extra, message):
    done = subprocess.run([sys.executable, "-m", "bptt", *TASK, "--out", str(tmp_path / "o"), "--executor", "mpi",
                           *extra], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.startswith(message) and "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()
