"""bptt task stops as bptt train does and finishes with --resume (issue 21, items 3 and 4), and the
small items of the same issue in bptt task and bptt gradcheck.

The kill test runs bptt task as a subprocess and sends SIGINT, SIGTERM or SIGKILL to it alone (not
to its workers) at a seeded random moment of the sweep, with --jobs 1 (the runs in the process) and
--jobs 2 (worker processes). After it exits no process it started is left, nothing in --out
changes, SIGINT and SIGTERM give exit 130 and one line on stderr, and --resume finishes the sweep
with the results of a sweep that was never interrupted (every field but "seconds") and the same
weights, bit for bit. The other tests run in-process.
"""

import contextlib
import ctypes
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bptt import files
from bptt.cli.app import main
from bptt.lab import gradcheck, sweep
from bptt.training.config import TrainConfig

OPTIONS = {"--lengths": ["5", "8"], "--cells": ["rnn-tanh", "gru"], "--hidden": ["4"], "--batch": ["3"],
           "--test-size": ["8"], "--steps": ["500"]}
RUNS = ["rnn-tanh-T5", "rnn-tanh-T8", "gru-T5", "gru-T8"]
LATEST = 0.8            # seconds after the sweep started by which the signal is sent (the sweep takes longer)
TOKEN = "BPTT_SWEEP_STOP_TEST"


def task(**changed):
    """bptt task's argv for the sweep, with the options changed ({"lengths": ["5", "9"]})."""
    options = OPTIONS | {"--" + name.replace("_", "-"): values for name, values in changed.items()}
    return ["task", "adding", *[arg for name, values in options.items() for arg in (name, *values)]]


TASK = task()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sweep, never interrupted (in this process)."""
    out = tmp_path_factory.mktemp("reference") / "sweep"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*TASK, "--out", str(out)]) == 0
    return out


def results(out):
    """results.json without the seconds of each run (the one field that may differ)."""
    data = json.loads((out / "results.json").read_text())
    return data["problem"], data["config"], [{k: v for k, v in r.items() if k != "seconds"} for r in data["runs"]]


def assert_same_weights(out, reference):
    """Every run's final checkpoint holds the reference's arrays, bit for bit."""
    for run in RUNS:
        ours, _ = files.load_arrays(out / run / "checkpoint.safetensors")
        theirs, _ = files.load_arrays(reference / run / "checkpoint.safetensors")
        assert ours.keys() == theirs.keys()
        for name in ours:
            assert np.array_equal(ours[name], theirs[name]), f"{run}: {name} differs"


def snapshot(folder):
    """{path: (size, mtime)} of everything under folder, directories included."""
    seen = {}
    for p in folder.rglob("*"):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        seen[p] = (st.st_size, st.st_mtime_ns)
    return seen


def alive_with(token):
    """The live processes (zombies aside) whose environment holds token: every process a command
    started, however it was reparented."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if token.encode() in environ and state not in ("Z", "X"):
            found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ")[:120]))
    return found


def finished_rows(out):
    return json.loads((out / "sweep.json").read_text())["runs"]


def base_config(reference):
    return TrainConfig.from_json(json.loads((reference / "results.json").read_text())["config"])


# 3 and 4: a signal at any moment stops the whole sweep; --resume finishes it ---------------------------------

@pytest.fixture
def token():
    """A mark in the environment of the command a test starts, so that every process it starts can be
    found (alive_with); any left at the end is killed, so that a failing test leaves none either."""
    mark = uuid.uuid4().hex
    yield mark
    for pid, _ in alive_with(mark):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_signal_stops_the_sweep_and_resume_finishes_it(tmp_path, reference, token, signum, jobs):
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "bptt", *TASK, "--jobs", str(jobs), "--out", str(out)]
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:   # files: a worker
        sweep_process = subprocess.Popen(command, stdout=stdout, stderr=stderr,         # left holding a pipe
                                         env=os.environ | {TOKEN: token})               # would block its reader
    deadline = time.monotonic() + 300
    while not out.exists() and sweep_process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)                                    # the sweep has started: its signal handlers are set
    time.sleep(random.Random(f"{signum.name} {jobs}").uniform(0.0, LATEST))
    assert sweep_process.poll() is None, "the sweep ended before the signal"
    sweep_process.send_signal(signum)
    sweep_process.wait(timeout=300)

    before = snapshot(out)
    time.sleep(1.0)
    assert snapshot(out) == before, "a file in --out changed after bptt task exited"
    assert alive_with(token) == [], "bptt task left processes behind"
    printed, errors = (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()
    if signum == signal.SIGKILL:
        assert sweep_process.returncode == -signal.SIGKILL
    else:
        lines = [line for line in errors.splitlines() if line.strip()]
        assert sweep_process.returncode == 130, (printed, errors)
        assert len(lines) == 1 and lines[0].startswith("interrupted: ") and "--resume" in lines[0], errors
        started = [p.name for p in out.iterdir() if p.is_dir()]
        assert len(started) - len(finished_rows(out)) <= jobs, "runs were started after the signal"

    again = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert results(out) == results(reference)
    assert_same_weights(out, reference)


@pytest.mark.parametrize("how", ["a signal to the sweep", "a signal to one worker"])
def test_the_sweep_asks_every_run_in_training_to_stop(tmp_path, how):
    """train_in_pool on threads standing in for the worker processes, each run like in_worker's: it
    does not start once the stop request is set, trains until it is set (or 20 s, and says so), and
    sets it when it stops early itself (a signal to its worker). A signal to the sweep, or a run that
    stopped early, stops every other run; those not started never start."""
    request, started = ctypes.c_byte(0), []

    def work(base, problem, cell, T, out, resume):
        if request.value:
            return None
        started.append((cell, T))
        if how == "a signal to one worker" and (cell, T) == ("rnn-tanh", 5):
            request.value = 1
            return None
        deadline = time.monotonic() + 20
        while not request.value:
            if time.monotonic() > deadline:
                return {"cell": cell, "T": T, "never asked to stop": True}
            time.sleep(0.005)
        return None

    left = dict.fromkeys([("rnn-tanh", 5), ("rnn-tanh", 8), ("gru", 5), ("gru", 8)], False)
    done = []
    complete = sweep.train_in_pool(ThreadPoolExecutor(2), request, work, None, "adding", left, tmp_path,
                                   lambda: how == "a signal to the sweep", lambda key, row: done.append(row))
    assert (complete, request.value, done) == (False, 1, [])
    assert 1 <= len(started) <= 2                         # those that were training: none started after


def test_a_worker_stops_its_run_at_the_step_the_request_comes(tmp_path, reference, monkeypatch):
    """in_worker reads the stop request before the run and after every step: asked after step 7,
    the run saves its checkpoint of step 7 and returns None, and sets the request for the others."""

    class Request:
        reads, value_set = 0, None

        @property
        def value(self):
            self.reads += 1
            return self.reads > 7                         # one read before the run, then one after each step

        @value.setter
        def value(self, v):
            self.value_set = v

    request = Request()
    monkeypatch.setattr(sweep, "_request", request)
    assert sweep.in_worker(base_config(reference), "adding", "gru", 5, tmp_path, False) is None
    assert request.value_set == 1
    assert files.load_arrays(tmp_path / "gru-T5" / "checkpoint.safetensors")[1]["step"] == 7


def test_a_signal_between_two_runs_stops_the_sweep_before_the_next(tmp_path, reference):
    """--jobs 1: a signal that arrives while no run trains (train's own handler is not set) stops the
    sweep instead of starting the next run."""
    out = tmp_path / "sweep"
    base = base_config(reference)

    def on_run(row):
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(sweep.Interrupted) as stopped:
        sweep.run(base, "adding", [5, 8], ["rnn-tanh", "gru"], out, on_run=on_run)
    assert (stopped.value.finished, stopped.value.total) == (1, 4)
    assert sorted(p.name for p in out.iterdir()) == ["rnn-tanh-T5", "sweep.json"]
    sweep.run(base, "adding", [5, 8], ["rnn-tanh", "gru"], out, resume=True)
    assert results(out) == results(reference)


def test_resume_finishes_every_kind_of_unfinished_run(tmp_path, reference, capsys):
    """A sweep interrupted in every way at once: one run recorded as finished, one finished after
    sweep.json was last written, one stopped after 7 steps, one killed while it was being created."""
    out = tmp_path / "sweep"
    shutil.copytree(reference, out)
    (out / "results.json").unlink()
    state = json.loads((out / sweep.SWEEP).read_text())
    state["runs"] = [r for r in state["runs"] if (r["cell"], r["T"]) == ("rnn-tanh", 5)]
    files.write_json_atomic(out / sweep.SWEEP, state)
    shutil.rmtree(out / "gru-T5")
    calls = []
    assert sweep.one_run(base_config(reference), "adding", "gru", 5, out,
                         stop=lambda: calls.append(1) or len(calls) >= 7) is None        # saved, not a crash
    for p in (out / "gru-T8").iterdir():
        if p.name not in ("run.json", "config.json"):
            p.unlink()
    (out / "gru-T8" / ".checkpoint.safetensors.x7k2.tmp").write_bytes(b"half a checkpoint")
    capsys.readouterr()

    assert main([*TASK, "--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in printed[2:]] == [["rnn-tanh", "5"], ["rnn-tanh", "8"], ["gru", "5"],
                                                         ["gru", "8"]]
    assert results(out) == results(reference)
    assert_same_weights(out, reference)
    assert not list((out / "gru-T8").glob(".*.tmp"))


# 4: what --resume refuses, before it prints or writes anything --------------------------------------------

@pytest.mark.parametrize("change, named", [
    (dict(lengths=["5", "9"]), "has --lengths 5 8, this command --lengths 5 9"),
    (dict(cells=["gru", "rnn-tanh"]), "has --cells rnn-tanh gru, this command --cells gru rnn-tanh"),
    (dict(lr=["0.02"]), "has --lr 0.01, this command --lr 0.02"),
    (dict(steps=["501"]), "has --steps 500, this command --steps 501"),
])
def test_resume_refuses_another_sweep_naming_what_differs(tmp_path, reference, capsys, change, named):
    out = tmp_path / "sweep"
    shutil.copytree(reference, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main([*task(**change), "--out", str(out), "--resume"]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err.count("\n") == 1
    assert printed.err.startswith(f"error: --resume: the sweep in {out} {named}; give the options of the interrupted")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("where, message", [
    ("missing", "--resume: {out} does not exist; there is no sweep to resume"),
    ("empty", "--resume: {out} holds no sweep (no sweep.json); start one without --resume"),
    ("user", "--resume: {out} holds no sweep (no sweep.json); start one without --resume"),
    ("corrupt", "{out}/sweep.json: not a bptt sweep file"),
    ("foreign run", "--resume: {out}/gru-T8 is not empty and not a bptt run (it holds 'notes.txt')"),
])
def test_resume_refuses_a_directory_without_this_sweep(tmp_path, reference, capsys, where, message):
    out = tmp_path / "sweep"
    if where == "empty":
        out.mkdir()
    elif where == "user":
        out.mkdir()
        (out / "results.json").write_text("mine")
    elif where in ("corrupt", "foreign run"):
        shutil.copytree(reference, out)
        shutil.rmtree(out / "gru-T8")
        if where == "corrupt":
            (out / "sweep.json").write_text('{"format": "bptt sweep"}')
        else:                                               # a run that sweep.json does not record as finished
            state = json.loads((out / "sweep.json").read_text())
            files.write_json_atomic(out / "sweep.json", state | {"runs": state["runs"][:3]})
            (out / "gru-T8").mkdir()
            (out / "gru-T8" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    assert main([*TASK, "--out", str(out), "--resume"]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err.count("\n") == 1
    assert printed.err.startswith("error: " + message.format(out=out)), printed.err
    assert snapshot(tmp_path) == before


def test_a_new_sweep_refuses_a_directory_and_prints_nothing_first(tmp_path, reference, capsys):
    """The header was printed before --out was refused; a sweep's directory names --resume."""
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    assert main([*TASK, "--out", str(full)]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err.startswith(f"error: --out: {full} is not empty; a sweep writes")
    assert main([*TASK, "--out", str(reference)]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.startswith(f"error: --out: {reference} holds a sweep (sweep.json); pass --resume to finish it")


# the cells' names: --help says every name the errors accept ------------------------------------------------

def test_task_help_names_every_cell_its_errors_list(tmp_path, capsys):
    assert main(["task", "--help"]) == 0
    help_text = "".join(capsys.readouterr().out.split())          # argparse wraps lines, at hyphens too
    assert main(["task", "adding", "--out", str(tmp_path / "o"), "--cells", "transformer"]) == 2
    choices = capsys.readouterr().err.split("choose from", 1)[1].split(")")[0]
    named = re.findall(r"'([^']+)'", choices)
    assert {"irnn", "skip-rnn"} <= set(named) and set(sweep.VARIANTS) <= set(named)
    for name in named:
        assert name in help_text, f"--cells {name} is accepted but task --help does not name it"
    with pytest.raises(ValueError, match="cells: unknown") as refused:
        sweep.check("adding", [5], ["transformer"])
    assert all(name in str(refused.value) for name in named)


# gradcheck: the engine that ran, a size that cannot finish, each case printed as it finishes ------------

def test_gradcheck_labels_the_engine_that_ran(capsys):
    """The skip RNN has no compiled form: asked for the fast engine, it runs on the NumPy reference."""
    assert main(["gradcheck", "--cell", "gru", "skip-tanh", "--layers", "1", "--no-torch"]) == 0
    printed = capsys.readouterr().out
    assert "\nskip-tanh L1 onehot every cross_entropy state lengths numpy\n" in printed
    assert "\ngru L1 onehot every cross_entropy state lengths fast\n" in printed
    assert "skip-tanh on the numpy reference" in printed.splitlines()[0]
    assert gradcheck.Case("skip-tanh", engine="fast").ran_on == "numpy"
    assert gradcheck.Case("skip-tanh", engine="fast").label().endswith(" numpy")
    assert gradcheck.Case("skip-tanh").label() == "skip-tanh L1 onehot every cross_entropy"     # the reference, asked
    assert gradcheck.Case("gru", engine="fast").label().endswith(" fast")


def test_gradcheck_refuses_a_size_whose_finite_differences_cannot_finish(monkeypatch, capsys):
    def started(*args, **kwargs):
        raise AssertionError("the finite differences started")

    monkeypatch.setattr(gradcheck, "compare", started)
    assert main(["gradcheck", "--seq-len", "100000", "--no-torch"]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err.count("\n") == 1
    assert printed.err.startswith("error: --seq-len 100000, --batch 3, --hidden 4, --layers 2: finite differences")
    assert main(["gradcheck", "--hidden", "200", "--no-torch"]) == 2
    assert "--hidden 200" in capsys.readouterr().err


def test_gradcheck_budget_admits_every_case_the_suite_and_the_matrix_check():
    """The refusal is of sizes nobody waits for: the whole matrix and the training cases pass, and
    the count of perturbed entries it is estimated from is the networks' own."""
    cases = [*gradcheck.all_cases(), *gradcheck.training_cases(), gradcheck.Case("skip-tanh", 3, "float", skip=5)]
    for case in cases:
        gradcheck.check_cost(case)
        net, kw = gradcheck.network(case), gradcheck.problem(case)
        entries = sum(a.size for a in net.params.values()) + (kw["x"].size if case.inputs == "float" else 0)
        entries += len(net.arch.state_names) * case.num_layers * case.B * case.H
        assert gradcheck.fd_entries(case) == entries, case.label()


class Pipe(io.StringIO):
    """stdout as a pipe delivers it: what was written reaches the reader when it is flushed."""

    def __init__(self, tty=False):
        super().__init__()
        self.delivered, self.tty = "", tty

    def flush(self):
        self.delivered = self.getvalue()

    def isatty(self):
        return self.tty


def test_gradcheck_prints_each_case_as_it_finishes(monkeypatch):
    screen = Pipe()
    monkeypatch.setattr(sys, "stdout", screen)
    seen, compare = [], gradcheck.compare

    def watched(case, *args, **kwargs):
        seen.append(screen.delivered)
        return compare(case, *args, **kwargs)

    monkeypatch.setattr(gradcheck, "compare", watched)
    assert main(["gradcheck", "--cell", "rnn-tanh", "gru", "--layers", "1", "--no-torch"]) == 0
    assert "gradcheck: fast engine" in seen[0]
    assert "rnn-tanh L1 onehot" in seen[1] and "ok" in seen[1].split("rnn-tanh L1 onehot")[1]


def test_gradcheck_shows_the_progress_of_a_long_case_on_a_terminal(monkeypatch, capsys):
    terminal = Pipe(tty=True)
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["gradcheck", "--cell", "rnn-tanh", "--layers", "1", "--seq-len", "400", "--engine", "numpy",
                 "--no-torch"]) == 0
    assert "entry/s" in terminal.getvalue()
    case = gradcheck.Case("rnn-tanh", 1, T=400, with_state=True, with_lengths=True)
    assert f"/{gradcheck.fd_entries(case)} [" in terminal.getvalue()
