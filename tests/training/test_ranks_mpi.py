"""Data-parallel training under mpiexec (bptt.training.ranks; the MPICH wheel of requirements-test.txt,
oversubscribed on a 2-core machine): 2 ranks x B/2 rows give one process's parameters with B rows to
1e-10 in float64; a checkpoint of 2 ranks resumes on 1 and the reverse, exactly; a signal stops
every rank at the same step; a rank that dies ends the job with the last checkpoint intact; an
error is one line, from rank 0. Each job is a process of its own, started here."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bptt.files import load_arrays

BIN = Path(sys.executable).parent
MPIEXEC = BIN / "mpiexec"
TOL = 1e-10

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n") * 12

# An LM with document resets (--separator), TBPTT(6, 9) (a carried state computed from the window
# start), dropout (masks of the whole batch), 2 LSTM layers and a gradient-flow record.
LM = ["--separator", "\\n\\n", "--cell", "lstm", "--hidden", "12", "--layers", "2", "--embedding", "6",
      "--batch", "4", "--window", "6", "--backprop", "9", "--dropout", "0.2", "--dtype", "float64",
      "--eval-every", "5", "--eval-batch", "4", "--flow-every", "7", "--engine", "fast"]
# 9 training examples in batches of 4: every third batch has 1 row, so one of the 2 ranks has none.
EXAMPLES = [("a good happy film", "pos"), ("bad sad dull", "neg"), ("happy good", "pos"), ("dull and bad film", "neg"),
            ("a film so good", "pos"), ("sad", "neg"), ("good good happy", "pos"), ("bad film", "neg"),
            ("so dull so sad a film", "neg"), ("happy", "pos"), ("bad", "neg")]
CLASSIFY = ["--task", "classify", "--level", "word", "--cell", "gru", "--hidden", "8", "--layers", "1",
            "--embedding", "5", "--batch", "4", "--dropout", "0.1", "--dtype", "float64", "--eval-every", "5",
            "--valid-fraction", "0.2", "--engine", "fast"]


def bptt(args, ranks=None, **kw):
    """bptt ARGS in a process of its own, or on `ranks` MPI ranks."""
    head = [str(MPIEXEC), "-n", str(ranks), str(BIN / "bptt")] if ranks else [str(BIN / "bptt")]
    return subprocess.run(head + [str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)


def trained(args, ranks=None):
    done = bptt(args, ranks)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def checkpoint(run):
    arrays, meta = load_arrays(Path(run) / "checkpoint.safetensors")
    return arrays, meta


def assert_same(run, reference):
    """The same arrays (parameters, optimiser state, carried state) and progress, to TOL."""
    a, meta_a = checkpoint(run)
    b, meta_b = checkpoint(reference)
    assert sorted(a) == sorted(b)
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert worst < TOL, f"{run} differs from {reference} by {worst:.3g}"
    for key in ("step", "epoch", "window", "tokens", "clipped", "rng"):
        assert meta_a[key] == meta_b[key], key
    assert meta_a["best_valid"] == pytest.approx(meta_b["best_valid"], rel=1e-12, abs=0)


def records(run, kind):
    lines = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if kind in r]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    (d / "text.txt").write_text(TEXT)
    (d / "reviews.tsv").write_text("".join(f"{text}\t{label}\n" for text, label in EXAMPLES))
    return d


@pytest.fixture(scope="module")
def lm_one(data, tmp_path_factory):
    """The reference: one process, 20 steps."""
    run = tmp_path_factory.mktemp("lm") / "one"
    trained(["train", run, "--data", data / "text.txt", *LM, "--steps", 20])
    return run


def test_mpiexec_is_installed():
    assert MPIEXEC.exists(), "mpiexec (the mpich wheel of requirements-test.txt) is missing"


def test_lm_on_two_ranks_equals_one_process(data, lm_one, tmp_path):
    done = trained(["train", tmp_path / "two", "--data", data / "text.txt", *LM, "--steps", 20], ranks=2)
    assert_same(tmp_path / "two", lm_one)
    state = [k for k in checkpoint(tmp_path / "two")[0] if k.startswith("state/")]     # compared above too:
    assert len(state) == 2 and checkpoint(tmp_path / "two")[0][state[0]].shape == (2, 4, 12)   # all 4 streams'

    assert done.stdout.count("best validation") == 1                     # rank 0 alone prints
    assert done.stderr.count("data-parallel on 2 MPI ranks, 2 rows of each batch per rank\n") == 1
    flows, reference = records(tmp_path / "two", "flow"), records(lm_one, "flow")
    assert [r["step"] for r in flows] == [7, 14] == [r["step"] for r in reference]
    for r, ref in zip(flows, reference):
        np.testing.assert_allclose(np.array(r["flow"]), np.array(ref["flow"]), rtol=1e-10, atol=0)
        for name, norm in ref["grad_norms"].items():
            assert r["grad_norms"][name] == pytest.approx(norm, rel=1e-10)
    for kind in ("lr", "split"):                                          # training and validation losses
        losses = [r["loss"] for r in records(tmp_path / "two", kind)]
        assert losses == pytest.approx([r["loss"] for r in records(lm_one, kind)], rel=1e-10)
        assert len(losses) == (2 if kind == "lr" else 4)                  # every 10 steps; every 5


def test_classification_on_two_ranks_equals_one_process(data, tmp_path):
    args = ["--data", data / "reviews.tsv", *CLASSIFY, "--steps", 20]
    trained(["train", tmp_path / "one", *args])
    trained(["train", tmp_path / "two", *args], ranks=2)
    assert_same(tmp_path / "two", tmp_path / "one")
    valid = records(tmp_path / "two", "split")
    assert [r["loss"] for r in valid] == pytest.approx([r["loss"] for r in records(tmp_path / "one", "split")],
                                                       rel=1e-10)


AWD = ["--weight-drop", "0.3", "--dropout-input", "0.2", "--dropout-hidden", "0.2", "--dropout-output", "0.3",
       "--dropout-embedding", "0.1", "--alpha", "2", "--beta", "1"]


@pytest.mark.parametrize("task", ["lm", "classify"])
def test_awd_regularisers_on_two_ranks_equal_one_process(data, tmp_path, task):
    """Weight drop (one mask for the whole batch), locked masks drawn for the whole batch, embedding
    dropout, AR and TAR: 2 ranks equal 1 process; a classifier's rank with no rows moves its generator
    as the other does."""
    if task == "lm":
        args = ["--data", data / "text.txt", *[a for a in LM if a not in ("--dropout", "0.2")], *AWD, "--steps", 12]
    else:
        args = ["--data", data / "reviews.tsv", *[a for a in CLASSIFY if a not in ("--dropout", "0.1")], *AWD,
                "--steps", 12]
    trained(["train", tmp_path / "one", *args])
    trained(["train", tmp_path / "two", *args], ranks=2)
    assert_same(tmp_path / "two", tmp_path / "one")


@pytest.mark.parametrize("first, then", [(2, None), (None, 2)])
def test_resume_on_another_number_of_ranks_continues_exactly(data, lm_one, tmp_path, first, then):
    run = tmp_path / "run"
    trained(["train", run, "--data", data / "text.txt", *LM, "--steps", 10], ranks=first)
    trained(["train", run, "--resume", "--steps", 20], ranks=then)
    assert_same(run, lm_one)


def test_a_signal_stops_every_rank_at_one_step_and_the_run_resumes_exactly(data, tmp_path):
    args = ["--data", data / "text.txt", *LM[:-2], "--eval-every", "1000", "--steps", 100000]
    run = tmp_path / "run"
    job = subprocess.Popen([str(MPIEXEC), "-n", "2", str(BIN / "bptt"), "train", str(run), *map(str, args)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not records(run, "lr") if (run / "metrics.jsonl").exists() else True:
            assert time.monotonic() < deadline and job.poll() is None, job.communicate()
            time.sleep(0.2)
        job.send_signal(signal.SIGINT)                      # mpiexec passes it to every rank
        out, err = job.communicate(timeout=300)
    finally:
        job.kill()
    assert job.returncode == 130, err[-3000:]
    assert out.count("stopped at step") == 1 and "Traceback" not in err
    step = checkpoint(run)[1]["step"]
    assert step >= 10
    trained(["train", run, "--resume", "--steps", step + 3])
    trained(["train", tmp_path / "one", *args[:-1], step + 3])
    assert_same(run, tmp_path / "one")


def rank_pid(run, rank):
    """The pid of the process of `rank` training into run (from /proc: its environment and command line)."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(run).encode() in cmdline and f"PMI_RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def test_a_rank_that_dies_ends_the_job_and_the_checkpoint_stays_intact(data, tmp_path):
    run = tmp_path / "run"
    args = ["--data", data / "text.txt", *LM[:-2], "--eval-every", "3", "--steps", 100000]
    job = subprocess.Popen([str(MPIEXEC), "-n", "2", str(BIN / "bptt"), "train", str(run), *map(str, args)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (run / "checkpoint.safetensors").exists() or checkpoint(run)[1]["step"] < 6:
            assert time.monotonic() < deadline and job.poll() is None, job.communicate()
            time.sleep(0.1)
        os.kill(rank_pid(run, 1), signal.SIGKILL)
        out, err = job.communicate(timeout=120)
    finally:
        job.kill()
    assert job.returncode != 0
    assert "BAD TERMINATION" in out and "Killed (signal 9)" in out        # mpiexec says which rank and how
    step = checkpoint(run)[1]["step"]                                     # intact: its checksum holds
    assert step >= 6 and step % 3 == 0
    done = trained(["train", run, "--resume", "--steps", step + 2])
    assert checkpoint(run)[1]["step"] == step + 2 and "Traceback" not in done.stderr


@pytest.mark.parametrize("args, message", [
    (["--batch", "5"], "error: --batch: 5 rows cannot be shared equally by 2 ranks (mpiexec -n 2); give a --batch "
                       "divisible by 2, or a number of ranks that divides 5\n"),
    (["--hidden", "0"], "error: --hidden: expected a positive int, got 0\n"),
])
def test_an_error_is_one_line_from_rank_0_and_leaves_nothing(data, tmp_path, args, message):
    done = bptt(["train", tmp_path / "run", "--data", data / "text.txt", "--steps", 2, *args], ranks=2)
    assert done.returncode == 2
    assert done.stderr == message
    assert not (tmp_path / "run").exists()
