"""SIGKILL `bptt train` at seeded random moments, resume it until it completes, and compare it with
an uninterrupted run: the checkpoint's arrays bit for bit, its metadata, and metrics.jsonl record for
record (no record lost or duplicated).

A kill can land anywhere: during imports and compilation, between writing config.json and the first
checkpoint (then there is nothing to resume and the run starts afresh), inside an atomic write,
between appending a metric record and the checkpoint that covers it, or after the last checkpoint.
Each test kills a few times; at least one kill is drawn after training has started (metrics.jsonl
changed), since the first second of a process is imports.
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import NamedTuple

import numpy as np
import pytest

from bptt.files import load_arrays

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nAy me!\n\n" * 10
STEPS = 60
SMALL = ["--hidden", "8", "--layers", "1", "--embedding", "4", "--batch", "3", "--window", "6",
         "--eval-every", "3", "--eval-batch", "2", "--log-every", "1", "--dtype", "float64"]
TIMING = {"tokens_per_s", "elapsed"}                  # wall-clock values: differ between any two runs
# what --resume says when the kill came before the first checkpoint (no directory, an empty one, set-up files only)
NOTHING_TO_RESUME = re.compile(r"no checkpoint|nothing to resume|no run to resume|not a bptt run directory",
                               re.IGNORECASE)
KILLS = 3

CASES = {   # seed: options beyond SMALL; each exercises state a resume must restore
    0: ["--cell", "lstm"],                                                    # Adam moments, carried (h, c)
    1: ["--cell", "gru", "--dropout", "0.2", "--schedule", "plateau"],        # the dropout RNG, the plateau state
    2: ["--cell", "rnn", "--optimizer", "sgd", "--momentum", "0.9", "--separator", "\\n\\n",
        "--flow-every", "4", "--backprop", "9"],                              # document resets, flow records
}


def signature(path):
    """What changes when a file is rewritten or appended to (None: absent)."""
    try:
        s = os.stat(path)
    except FileNotFoundError:
        return None
    return s.st_ino, s.st_size, s.st_mtime_ns


def launch(argv, log):
    out = open(log + ".out", "w")
    err = open(log + ".err", "w")
    try:
        return subprocess.Popen([sys.executable, "-m", "bptt", *argv], stdout=out, stderr=err,
                                cwd=os.path.dirname(log))
    finally:
        out.close()
        err.close()


def output(log):
    with open(log + ".out") as out, open(log + ".err") as err:
        return f"--- stdout\n{out.read()[-3000:]}\n--- stderr\n{err.read()[-3000:]}"


def records(run):
    with open(os.path.join(run, "metrics.jsonl")) as f:
        lines = f.read().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


class Timing(NamedTuple):
    """The uninterrupted run's wall time: from start to exit, and from its first metric record to its last."""

    total: float
    training: float


def run_uninterrupted(argv, run, log):
    metrics = os.path.join(run, "metrics.jsonl")
    start = time.perf_counter()
    proc = launch(argv, log)
    first = last = None
    seen = signature(metrics)
    while proc.poll() is None:
        now = signature(metrics)
        if now != seen:
            seen, last = now, time.perf_counter()
            first = first or last
        time.sleep(0.002)
    end = time.perf_counter()
    assert proc.returncode == 0, f"the uninterrupted run failed ({proc.returncode})\n{output(log)}"
    assert first is not None, f"metrics.jsonl was never written\n{output(log)}"
    return Timing(end - start, last - first)


def checkpoint_step(run):
    try:
        return load_arrays(os.path.join(run, "checkpoint.safetensors"))[1]["step"]
    except Exception:  # absent, or torn by the kill: the run restarts from wherever it can
        return 0


def kill_at_random(proc, run, rng, timing, mode, before, step):
    """SIGKILL proc after a delay drawn from rng: from its start, within the whole run ("start") or
    before its first metric record ("early"), or from the moment its metrics.jsonl changes
    ("training"; the delay is drawn within the steps it has left, as the uninterrupted run took
    them). Returns what happened, for the assertion messages."""
    metrics = os.path.join(run, "metrics.jsonl")
    started = time.perf_counter()
    if mode == "training":
        while proc.poll() is None and signature(metrics) == before:
            time.sleep(0.002)
        delay = rng.uniform(0, 0.8 * timing.training * (STEPS - step) / STEPS)
    elif mode == "early":                             # before the first metric record: imports, set-up
        delay = rng.uniform(0, timing.total - timing.training)
    else:
        delay = rng.uniform(0, timing.total)
    deadline = time.perf_counter() + delay
    while proc.poll() is None and time.perf_counter() < deadline:
        time.sleep(0.002)
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=120)
    # the process may exit on its own between poll() and the signal: then the kill did not land
    # (a zombie still accepts the signal), and the run is judged by its own exit code
    killed = alive and proc.returncode == -signal.SIGKILL
    return {"mode": mode, "from_step": step, "delay": round(delay, 3),
            "at": round(time.perf_counter() - started, 3), "killed": killed, "rc": proc.returncode}


@pytest.mark.parametrize("seed", sorted(CASES))
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path, seed):
    rng = random.Random(seed)
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    ref, run = str(tmp_path / "reference"), str(tmp_path / "killed")
    options = ["--data", str(text), "--steps", str(STEPS), "--seed", str(seed), *SMALL, *CASES[seed]]
    fresh = ["train", "--out", run, *options]
    resume = ["train", "--out", run, "--resume"]     # exactly what a user types: the saved budget is kept
    timing = run_uninterrupted(["train", "--out", ref, *options], ref, str(tmp_path / "reference"))

    # sometimes one kill during set-up first; then one mid-training for sure (a "start" kill may come
    # after the run completed, ending the test)
    modes = (["early"] if rng.random() < 0.5 else []) + ["training"]
    modes += [rng.choice(["start", "training"]) for _ in range(KILLS - len(modes))]
    history, argv = [], fresh
    for attempt in range(KILLS + 10):
        mode = modes.pop(0) if modes else None
        log = str(tmp_path / f"attempt{attempt}")
        before, step = signature(os.path.join(run, "metrics.jsonl")), checkpoint_step(run)
        proc = launch(argv, log)
        if mode is None:
            proc.wait(timeout=120)
            event = {"mode": None, "from_step": step, "killed": False, "rc": proc.returncode}
        else:
            event = kill_at_random(proc, run, rng, timing, mode, before, step)
        event["argv"] = "resume" if argv is resume else "fresh"
        event["to_step"] = checkpoint_step(run)
        history.append(event)
        if event["killed"] and event["mode"] == "training" and event["to_step"] >= STEPS and not any(
                e["killed"] and e["mode"] == "training" and e["to_step"] < STEPS for e in history):
            shutil.rmtree(run)                        # the kill came after the last checkpoint (this run was
            argv = fresh                              # faster than the reference that timed it): the one kill
            modes.insert(0, "training")               # while training is still to come, again afresh
            continue
        if event["killed"]:
            argv = resume
            continue
        if event["rc"] == 0:
            landed = any(e["killed"] and e["mode"] == "training" and e["to_step"] < STEPS for e in history)
            if landed or not modes:
                break                                 # completed
            shutil.rmtree(run)                        # it finished before its kill came (the reference run,
            argv = fresh                              # which timed the kills, was slower): again, afresh
            continue
        with open(log + ".err") as f:
            err = f.read()
        assert argv is resume and event["rc"] == 2, f"attempt {attempt} failed: {history}\n{output(log)}"
        if NOTHING_TO_RESUME.search(err):             # killed before the first checkpoint: start afresh
            assert not os.path.exists(os.path.join(run, "checkpoint.safetensors")), \
                f"--resume said there is nothing to resume, but {run} holds a checkpoint\n{output(log)}"
            event["nothing_to_resume"] = True
            if mode is not None:
                modes.insert(0, mode)                 # that process was not the one to kill
            argv = fresh
            continue
        # killed after the last checkpoint, before the process exited: the run is complete
        assert re.search(r"budget", err) and checkpoint_step(run) == STEPS, \
            f"attempt {attempt}: resume refused: {history}\n{output(log)}"
        event["already_complete"] = True
        break
    else:
        pytest.fail(f"the run never completed: {history}")
    print(f"seed {seed}: {history}")
    assert any(e["killed"] and e["mode"] == "training" and e["to_step"] < STEPS for e in history), \
        f"no kill landed while training ran: {history}"

    for name in ("checkpoint.safetensors", "best.safetensors"):
        expected, expected_meta = load_arrays(os.path.join(ref, name))
        got, got_meta = load_arrays(os.path.join(run, name))
        assert sorted(got) == sorted(expected), f"{name}: different arrays ({history})"
        for key in expected:
            assert got[key].dtype == expected[key].dtype and got[key].shape == expected[key].shape, (name, key)
            assert np.array_equal(got[key], expected[key]), f"{name}: {key} differs after {history}"
        assert got_meta["step"] == expected_meta["step"], (name, history)
        assert {k: v for k, v in got_meta.items() if k not in TIMING} == \
               {k: v for k, v in expected_meta.items() if k not in TIMING}, (name, history)
    assert checkpoint_step(run) == STEPS

    expected, got = records(ref), records(run)
    steps = [r["step"] for r in got]
    assert got == expected, (f"metrics.jsonl differs after {history}: {len(got)} records (steps {steps}) "
                             f"against {len(expected)}")
