"""The run directory never loses a user's work and never trains on something other than what it
says (issue 12). Each test names the item of the issue it covers; each fails on the code before it."""

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL as LM
from conftest import TEXT

from bptt import files
from bptt.cli import main
from bptt.training import opening, train

SMALL = [*LM, "--dtype", "float64"]


def snapshot(folder):
    """{path: (bytes, mtime)} of every file under folder."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in Path(folder).rglob("*") if p.is_file()}


def error(capsys):
    """The one-line error that ends stderr (progress lines may come before it)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.endswith("\n"), err
    last = err.splitlines()[-1]
    assert last.startswith("error: "), err
    return last


def trained(tmp_path, text, capsys, steps=8, name="run", extra=()):
    run = str(tmp_path / name)
    assert main(["train", "--out", run, "--data", text, "--steps", str(steps), *SMALL, *extra]) == 0
    capsys.readouterr()
    return run


# 1. a user's files are never overwritten -----------------------------------------------------------

@pytest.mark.parametrize("files", [
    {"config.json": "{}"},
    {"metrics.jsonl": '{"loss": 1}\n'},
    {"best.safetensors": "mine", "notes.txt": "my notes"},
])
def test_item01_refuses_a_directory_with_user_files(tmp_path, text, capsys, files):
    out = tmp_path / "mine"
    out.mkdir()
    for name, content in files.items():
        (out / name).write_text(content)
    before = snapshot(out)
    assert main(["train", "--out", str(out), "--data", text, "--steps", "2", *SMALL]) == 2
    err = error(capsys)
    assert "is not empty and not a bptt run" in err and sorted(files)[0] in err
    assert snapshot(out) == before


def test_item01_a_run_that_lost_its_checkpoint_is_not_free(tmp_path, text, capsys):
    run = Path(trained(tmp_path, text, capsys))
    (run / "checkpoint.safetensors").unlink()
    before = snapshot(run)
    assert main(["train", "--out", str(run), "--data", text, "--steps", "2", *SMALL]) == 2
    assert "holds a bptt run whose checkpoint.safetensors is missing" in error(capsys)
    assert snapshot(run) == before


def test_item01_a_run_killed_while_being_created_can_be_started_again(tmp_path, text, capsys):
    run = Path(trained(tmp_path, text, capsys, steps=2))
    for name in ("checkpoint.safetensors", "best.safetensors", "metrics.jsonl"):
        (run / name).unlink()                                # as if SIGKILLed before the first checkpoint
    assert main(["train", "--out", str(run), "--resume"]) == 2
    assert "has no checkpoint to resume from" in error(capsys)
    assert main(["train", "--out", str(run), "--data", text, "--steps", "2", *SMALL]) == 0


def test_item01_an_empty_directory_is_used(tmp_path, text, capsys):
    (tmp_path / "empty").mkdir()
    trained(tmp_path, text, capsys, steps=2, name="empty")
    assert json.loads((tmp_path / "empty" / "run.json").read_text())["format"] == "bptt run"


# 2. one process at a time -------------------------------------------------------------------------

def test_item02_a_second_process_is_refused_while_the_first_holds_the_lock(tmp_path, text, capsys):
    run = trained(tmp_path, text, capsys, steps=4)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from bptt.training import rundir; "
                               "rundir.Directory(sys.argv[1]).lock(); print('locked', flush=True); "
                               "time.sleep(60)", run],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(run)
        assert main(["train", "--out", run, "--resume", "--steps", "8"]) == 2
        assert "another bptt process is training in this run directory" in error(capsys)
        assert snapshot(run) == before
    finally:
        holder.kill()                                       # SIGKILL: the kernel releases the lock
        holder.wait()
        holder.stdout.close()
    assert main(["train", "--out", run, "--resume", "--steps", "8"]) == 0
    assert opening.Run(run).load()[3].step == 8


def test_item02_two_fresh_runs_started_together(tmp_path, text):
    """Started at the same moment into one directory: one trains, the other is refused."""
    run = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "bptt", "train", "--out", run, "--data", text, "--steps", "6", *SMALL]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "already holds a run" in refused or "another bptt process" in refused
    records = opening.Run(run).records()
    assert [r["step"] for r in records if "split" not in r] == list(range(1, 7))   # one run's records, once


# 3. --resume keeps the saved budget ---------------------------------------------------------------

def test_item03_resume_after_an_interruption_continues_to_the_saved_budget(tmp_path, text, capsys):
    run = str(tmp_path / "run")
    cfg = train.TrainConfig(data=text, hidden=10, layers=1, embedding=5, batch=3, window=6, eval_every=4,
                            eval_batch=2, log_every=1, steps=30)
    train.train(cfg, run, on_step=lambda p: p.step == 5)
    assert main(["train", "--out", run, "--resume"]) == 0                # exactly what the message after Ctrl-C says
    assert opening.Run(run).load()[3].step == 30
    assert main(["train", "--out", run, "--resume"]) == 2
    assert "already reached its budget (steps 30) at step 30" in error(capsys)
    assert main(["train", "--out", run, "--resume", "--steps", "34"]) == 0
    assert opening.Run(run).load()[3].step == 34 and opening.Run(run).config().steps == 34


# 4. flags on --resume ----------------------------------------------------------------------------

@pytest.mark.parametrize("flag,value", [("--hidden", "64"), ("--cell", "gru"), ("--window", "16"),
                                        ("--embedding", "0"), ("--optimizer", "sgd")])
def test_item04_a_flag_that_cannot_change_on_resume_is_an_error(tmp_path, text, capsys, flag, value):
    run = trained(tmp_path, text, capsys, steps=4)
    before = snapshot(run)
    assert main(["train", "--out", run, "--resume", "--steps", "8", flag, value]) == 2
    err = error(capsys)
    assert err.startswith(f"error: {flag}: cannot change when resuming")
    assert snapshot(run) == before


def test_item04_the_header_shows_what_really_runs(tmp_path, text, capsys):
    run = trained(tmp_path, text, capsys, steps=4)
    assert main(["train", "--out", run, "--resume", "--steps", "8", "--lr", "0.001", "--hidden", "10"]) == 0
    err = capsys.readouterr().err
    assert "training lstm 1x10 (" in err and f"on {text}" in err and "adam lr 0.001" in err
    assert "changed on resume: lr 0.002 -> 0.001" in err and "changed on resume: steps 4 -> 8" in err
    changed = [r for r in opening.Run(run).records() if "changed" in r]
    assert changed == [{"step": 4, "changed": {"steps": [4, 8], "lr": [0.002, 0.001]}}]


# 5. the data must be the data the run started on ---------------------------------------------------

@pytest.mark.parametrize("edit", ["append", "shorten", "delete"])
def test_item05_resume_refuses_a_changed_data_file(tmp_path, text, capsys, edit):
    run = trained(tmp_path, text, capsys, steps=4)
    path = Path(text)
    if edit == "append":
        path.write_text(TEXT + "more")
    elif edit == "shorten":
        path.write_text(TEXT[:100])
    else:
        path.unlink()
    assert main(["train", "--out", run, "--resume", "--steps", "8"]) == 2
    err = error(capsys)
    assert err.startswith("error: --data: ") and text in err and ("changed since the run started" in err or
                                                                  "file not found" in err)
    assert opening.Run(run).load()[3].step == 4


# 7. the skip RNN with an embedding on the fast engine -----------------------------------------------

def test_item07_skip_rnn_trains_from_the_command_line(tmp_path, text, capsys):
    run = trained(tmp_path, text, capsys, steps=3, extra=["--cell", "skip"])
    assert opening.Run(run).load()[3].step == 3


# 8. a full disk -----------------------------------------------------------------------------------

def full_disk_on(monkeypatch, name):
    real = files._write_atomic

    def fail(path, data, replace=True):
        if Path(path).name == name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data, replace)

    monkeypatch.setattr(files, "_write_atomic", fail)


def test_item08_disk_full_while_checkpointing(tmp_path, text, capsys, monkeypatch):
    run = trained(tmp_path, text, capsys, steps=4)
    before = (Path(run) / "checkpoint.safetensors").read_bytes()
    full_disk_on(monkeypatch, "checkpoint.safetensors")
    assert main(["train", "--out", run, "--resume", "--steps", "8"]) == 2
    err = error(capsys)
    assert "checkpoint.safetensors: cannot write (No space left on device" in err and "--resume" in err
    assert (Path(run) / "checkpoint.safetensors").read_bytes() == before
    monkeypatch.undo()
    assert main(["train", "--out", run, "--resume", "--steps", "8"]) == 0


def test_item08_disk_full_while_appending_a_metric(tmp_path, text, capsys, monkeypatch):
    run = trained(tmp_path, text, capsys, steps=4)
    metrics = Path(run) / "metrics.jsonl"
    size = metrics.stat().st_size
    real_open = open

    class Full:
        """A file whose writes put 7 bytes on disk, then fail as a full disk does."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def tell(self):
            return self.f.tell()

        def truncate(self, n):
            return self.f.truncate(n)

        def flush(self):
            self.f.flush()

        def write(self, data):
            self.f.write(data[:7])
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def opener(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        return Full(f) if str(path).endswith("metrics.jsonl") and "a" in mode else f

    monkeypatch.setattr("builtins.open", opener)
    assert main(["train", "--out", run, "--resume", "--steps", "8"]) == 2
    assert "metrics.jsonl: cannot write (No space left on device" in error(capsys)
    monkeypatch.undo()
    assert metrics.stat().st_size == size                   # the half line was cut back
    assert main(["train", "--out", run, "--resume", "--steps", "8"]) == 0


@pytest.mark.parametrize("damage,ok", [
    ('{"step": 5, "loss": 1.', True),                         # torn last line: dropped
    ("\n\n", True),                                           # blank lines: skipped
    ("not json\n", False),
    ('{"loss": 1}\n', False),
])
def test_item08_torn_and_bad_metric_lines(tmp_path, text, capsys, damage, ok):
    run = trained(tmp_path, text, capsys, steps=4)
    metrics = Path(run) / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    if ok:
        metrics.write_text("".join(lines) + damage)
    else:
        metrics.write_text("".join(lines[:2]) + damage + "".join(lines[2:]))
    code = main(["train", "--out", run, "--resume", "--steps", "8"])
    if ok:
        assert code == 0
        assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()][-1] == 8
    else:
        assert code == 2
        assert f"{metrics}: line 3:" in error(capsys)


# 9. read-only places are found before any work ----------------------------------------------------

@contextlib.contextmanager
def read_only(folder):
    """folder made read-only: a read-only tmpfs mounted on it (as root, whom permissions do not stop),
    else its permission bits."""
    folder.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
        assert done.returncode == 0, f"cannot mount a read-only tmpfs as root: {done.stderr}"
        try:
            yield folder
        finally:
            subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)


def test_item09_read_only_places(tmp_path, text, capsys):
    with read_only(tmp_path / "ro") as ro:
        assert main(["train", "--out", str(ro / "new"), "--data", text, "--steps", "2", *SMALL]) == 2
        assert f"cannot create {ro / 'new'}" in error(capsys)
    run = trained(tmp_path, text, capsys, steps=4)
    os.chmod(run, 0o555)
    try:
        if os.geteuid() != 0:
            assert main(["train", "--out", run, "--resume", "--steps", "8"]) == 2
            assert "cannot write in this directory" in error(capsys)
    finally:
        os.chmod(run, 0o755)
    with read_only(tmp_path / "ro") as ro:
        assert main(["diagnose", run, "--out", str(ro / "report.html")]) == 2
        assert f"{ro}: cannot write in this directory" in error(capsys)
        assert not (Path(run) / "diagnose" / "gradient_norms.png").exists()     # refused before the work


def test_item09_a_read_only_run_directory_refuses_resume(tmp_path, text, capsys, monkeypatch):
    """Root ignores permission bits, so this one case is simulated: the probe's open fails."""
    run = trained(tmp_path, text, capsys, steps=4)
    real_open = open

    def opener(path, mode="r", *a, **kw):
        if str(path).endswith(".probe.tmp"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr("builtins.open", opener)
    assert main(["train", "--out", run, "--resume", "--steps", "8"]) == 2
    assert "cannot write in this directory (Read-only file system)" in error(capsys)


# 10. config.json that disagrees with the checkpoint ------------------------------------------------

@pytest.mark.parametrize("edit", [{"hidden": 20}, {"layers": 2}, {"cell": "gru"}, {"embedding": 0}])
def test_item10_an_edited_config_is_named(tmp_path, text, capsys, edit):
    run = trained(tmp_path, text, capsys, steps=4)
    cfg = json.loads((Path(run) / "config.json").read_text())
    (Path(run) / "config.json").write_text(json.dumps(cfg | edit))
    for argv in (["train", run, "--resume", "--steps", "8"], ["sample", run, "--tokens", "5"],
                 ["eval", run, "--data", text]):
        assert main(argv) == 2
        err = error(capsys)
        assert "config.json (with vocab.json) does not match" in err, err
        assert "checkpoint.safetensors" in err or "best.safetensors" in err, err


# 11. files where directories belong, infinities, impossible sizes, Ctrl-C while starting -------------

def test_item11_files_and_sizes(tmp_path, text, capsys):
    for argv, message in [
        (["eval", text, "--data", text], f"RUN_DIR: {text} is a file, expected a run directory"),
        (["sample", text], f"RUN_DIR: {text} is a file"),
        (["diagnose", text], f"RUN_DIR: {text} is a file"),
        (["train", "--out", text, "--data", text], f"--out: {text} is a file, expected a run directory"),
        (["train", str(tmp_path / "r"), "--data", text, "--epochs", "inf"],
         "--epochs: expected a positive number, got inf"),
        (["train", str(tmp_path / "r"), "--data", text, "--hidden", "100000000"], "GiB of memory available"),
    ]:
        assert main(argv) == 2, argv
        assert message in error(capsys)
    assert not (tmp_path / "r").exists()


def test_item11_ctrl_c_while_starting_prints_no_traceback(tmp_path, text):
    for delay in (0.1, 0.2, 0.35, 0.6):    # (before 0.05 s the interpreter itself is starting)
        p = subprocess.Popen([sys.executable, "-m", "bptt", "train", "--out", str(tmp_path / f"r{delay}"),
                              "--data", text, "--steps", "50", *SMALL],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        assert "Traceback" not in err and "Traceback" not in out, (delay, err)
        # 130 from bptt's handler; -SIGINT where the interpreter re-raises the signal at exit after it
        # (seen once under load): either way the run was interrupted and no traceback was shown
        assert p.returncode in (0, 130, -signal.SIGINT), (delay, p.returncode, err)


# 12. SIGTERM saves and stops; stale temporaries are cleaned ---------------------------------------

def test_item12_sigterm_saves_and_stops(tmp_path, text):
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "bptt", "train", "--out", str(run), "--data", text, "--steps", "100000",
                          *SMALL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(opening.Run(run).records()) < 6:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "saved. Continue with: bptt train" in out
    progress = opening.Run(run).load()[3]
    assert progress.step >= 5
    assert opening.Run(run).records()[-1]["step"] <= progress.step


def test_item12_stale_temporaries_are_removed(tmp_path, text, capsys):
    run = Path(trained(tmp_path, text, capsys, steps=4))
    stale = run / ".best.safetensors.abc123.tmp"
    stale.write_bytes(b"half a file")
    assert main(["train", "--out", str(run), "--resume", "--steps", "5"]) == 0
    assert not stale.exists()


# 14. the advice after divergence works ------------------------------------------------------------

def test_item14_the_advice_after_divergence_can_be_followed(tmp_path, text, capsys):
    run = str(tmp_path / "run")
    argv = ["train", run, "--data", text, "--steps", "30", "--cell", "rnn", "--nonlinearity", "relu",
            "--optimizer", "sgd", "--lr", "1e10", "--clip", "0", *SMALL]
    assert main(argv) == 1
    err = capsys.readouterr().err
    advice = err[err.index("bptt train "):].split(" (or")[0].split()
    assert advice[:4] == ["bptt", "train", run, "--resume"] and advice[4] == "--lr"
    assert main(advice[1:] + ["--lr", "0.01"]) == 0          # a much lower rate than the advice's
    assert opening.Run(run).load()[3].step == 30


# 15. validation files that are too small or hold unknown characters --------------------------------

def test_item15_validation_files(tmp_path, text, capsys):
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("R")
    assert main(["train", "--out", str(tmp_path / "r"), "--data", text, "--valid", str(tiny), *SMALL]) == 2
    assert f"--valid {tiny}: 1 token(s); validation needs at least 2" in error(capsys)
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("ROMEO:\nBut\nZebra!\n")
    assert main(["train", "--out", str(tmp_path / "r"), "--data", text, "--valid", str(unknown), *SMALL]) == 2
    assert f"--valid {unknown}: line 3: 'Z' not in the training vocabulary" in error(capsys)
    assert not (tmp_path / "r").exists()
    run = trained(tmp_path, text, capsys, steps=2)
    assert main(["eval", run, "--data", str(unknown)]) == 2
    assert f"--data {unknown}: line 3:" in error(capsys)
    assert main(["sample", run, "--prime", "Zebra"]) == 2
    assert "--prime: characters not in the training vocabulary: 'Z'" in error(capsys)


# 16. classification inputs, a lost vocabulary, relative paths ---------------------------------------

def test_item16_one_class_and_header_rows(tmp_path, capsys):
    one = tmp_path / "one.tsv"
    one.write_text("".join(f"cat mat {i}\tpos\n" for i in range(20)))
    assert main(["train", "--out", str(tmp_path / "r"), "--task", "classify", "--data", str(one),
                 "--level", "word"]) == 2
    assert "has a single label ('pos')" in error(capsys)
    header = tmp_path / "header.tsv"
    header.write_text("text\tlabel\n" + "".join(f"cat {'mat' if i % 2 else 'rat'}\t{i % 2}\n" for i in range(20)))
    assert main(["train", "--out", str(tmp_path / "r"), "--task", "classify", "--data", str(header), "--level", "word",
                 "--steps", "2", "--hidden", "4", "--embedding", "3", "--batch", "4"]) == 0
    assert "line 1 of" in capsys.readouterr().err
    assert opening.Run(tmp_path / "r").labels().labels == ("0", "1")


def test_item16_a_deleted_vocabulary_is_rebuilt_and_saved(tmp_path, text, capsys):
    run = trained(tmp_path, text, capsys, steps=4)
    vocab = (Path(run) / "vocab.json").read_text()
    (Path(run) / "vocab.json").unlink()
    assert main(["train", "--out", run, "--resume", "--steps", "6"]) == 0
    assert "vocab.json was missing: rebuilt" in capsys.readouterr().err
    assert (Path(run) / "vocab.json").read_text() == vocab
    assert main(["sample", run, "--tokens", "5"]) == 0


def test_item16_relative_paths_resume_from_anywhere(tmp_path, capsys, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "text.txt").write_text(TEXT)
    monkeypatch.chdir(tmp_path / "a")
    assert main(["train", "--out", "run", "--data", "text.txt", "--steps", "4", *SMALL]) == 0
    assert "on text.txt" in capsys.readouterr().err            # shown as given
    assert json.loads(Path("run/config.json").read_text())["data"] == str(tmp_path / "a" / "text.txt")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", "a/run", "--resume", "--steps", "6"]) == 0
    assert opening.Run(tmp_path / "a" / "run").load()[3].step == 6


# 17. a flipped byte in a checkpoint ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["checkpoint.safetensors", "best.safetensors"])
def test_item17_flipped_bytes_are_detected(tmp_path, text, capsys, name):
    run = trained(tmp_path, text, capsys, steps=4)
    path = Path(run) / name
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0x01                                        # in the last tensor's data
    path.write_bytes(bytes(raw))
    argv = ["train", run, "--resume", "--steps", "6"] if name.startswith("check") else ["sample", run]
    assert main(argv) == 2
    assert f"{path}: corrupted: its tensors do not match the checksum" in error(capsys)


def test_item17_checksums_are_written_and_checked(tmp_path):
    path = tmp_path / "c.safetensors"
    files.save_arrays(path, {"a": np.arange(10.0)}, {"step": 1})
    arrays, meta = files.load_arrays(path)
    assert meta == {"step": 1} and np.array_equal(arrays["a"], np.arange(10.0))
    assert files.checksum({"a": np.arange(10.0)}) != files.checksum({"a": np.arange(10.0) + 1e-12})


# siblings found on the way --------------------------------------------------------------------------

def test_sibling_a_long_range_problem_trains_from_the_command_line(tmp_path, capsys):
    """The display read keys that only a classifier has: KeyError for --task adding."""
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--task", "adding", "--length", "8", "--steps", "3", "--hidden", "6",
                 "--layers", "1", "--embedding", "0", "--batch", "4", "--eval-every", "3", "--test-size", "16"]) == 0
    out, err = capsys.readouterr()
    assert "on the adding problem, T = 8" in err and "test set: loss" in out


def test_sibling_a_problem_with_real_inputs_and_an_embedding_is_refused_before_training(tmp_path, capsys):
    """The default embedding with --task adding failed at the first step, after the header."""
    assert main(["train", "--out", str(tmp_path / "r"), "--task", "adding", "--steps", "1", "--hidden", "6"]) == 2
    assert "--embedding: the adding problem's inputs are real numbers" in error(capsys)
    assert not (tmp_path / "r").exists()


def test_sibling_diagnose_writes_no_figure_beside_a_user_report(tmp_path, text, capsys):
    """The figures went next to --out, overwriting any gradient_norms.png of the user's there."""
    run = trained(tmp_path, text, capsys, steps=4)
    mine = tmp_path / "reports"
    mine.mkdir()
    (mine / "gradient_norms.png").write_bytes(b"my picture")
    before = snapshot(mine)
    assert main(["diagnose", run, "--out", str(mine / "report.html")]) == 0
    after = snapshot(mine)
    assert after.pop(mine / "report.html")[0].startswith(b"<!DOCTYPE html>") and after == before
    assert (Path(run) / "diagnose" / "gradient_norms.png").exists()
    assert main(["diagnose", run, "--out", str(mine / "report.html")]) == 2       # not overwritten either
    assert "exists; bptt does not overwrite" in error(capsys)


def test_sibling_a_sweep_needs_a_new_or_empty_directory(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "results.json").write_text("mine")
    assert main(["task", "adding", "--out", str(out), "--lengths", "5", "--cells", "gru", "--steps", "2",
                 "--hidden", "4", "--test-size", "8"]) == 2
    assert "is not empty; a sweep writes its runs only into a new or empty directory" in error(capsys)
    assert (out / "results.json").read_text() == "mine"


def test_sibling_an_option_that_does_not_apply_to_the_task_is_an_error(tmp_path, capsys):
    """--window with --task classify was silently ignored (classification runs full BPTT)."""
    data = tmp_path / "train.tsv"
    data.write_text("".join(f"cat {'mat' if i % 2 else 'rat'}\t{i % 2}\n" for i in range(20)))
    assert main(["train", "--out", str(tmp_path / "r"), "--task", "classify", "--data", str(data), "--window",
                 "16"]) == 2
    assert error(capsys).startswith("error: --window: applies to --task lm only")


def test_sibling_a_problem_too_short_to_be_defined_is_named(tmp_path, capsys):
    """adding (and order) with T = 1 failed inside NumPy ("high <= 0"), naming no option."""
    assert main(["train", "--out", str(tmp_path / "r"), "--task", "adding", "--length", "1", "--embedding", "0"]) == 2
    assert "--length: the adding problem needs T >= 2" in error(capsys)
    assert main(["task", "order", "--lengths", "5", "1", "--out", str(tmp_path / "sweep")]) == 2
    assert "--lengths: the order problem needs T >= 2" in error(capsys)
    assert not (tmp_path / "r").exists() and not (tmp_path / "sweep").exists()


def test_item01_only_bptt_temporaries_count_as_bptt_files(tmp_path, text, capsys):
    """A hidden .tmp file of the user's is neither "empty" nor a stale temporary to remove."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / ".draft.tmp").write_text("my draft")
    assert main(["train", "--out", str(out), "--data", text, "--steps", "2", *SMALL]) == 2
    assert "is not empty and not a bptt run" in error(capsys) and (out / ".draft.tmp").read_text() == "my draft"
    run = Path(trained(tmp_path, text, capsys, steps=2))
    (run / ".draft.tmp").write_text("my draft")
    (run / ".checkpoint.safetensors.x1y2.tmp").write_bytes(b"half")
    assert main(["train", "--out", str(run), "--resume", "--steps", "3"]) == 0
    assert (run / ".draft.tmp").read_text() == "my draft"
    assert not (run / ".checkpoint.safetensors.x1y2.tmp").exists()


def test_item02_a_start_refused_under_the_lock_removes_nothing(tmp_path, text, monkeypatch):
    """Two starts into a new directory both create it; the one that finds the other's run under the
    lock must leave that run alone (it used to remove every run file there)."""
    from bptt.training import rundir

    out = tmp_path / "run"

    def another_run_appears(folder):
        (out / "run.json").write_text("the other process's")
        raise files.FileError("simulated: refused under the lock")

    monkeypatch.setattr(rundir, "check_writable", another_run_appears)
    cfg = train.TrainConfig(data=text, hidden=4, layers=1, embedding=3, batch=3, window=6, steps=1)
    with pytest.raises(files.FileError, match="simulated"):
        train.train(cfg, out)
    assert (out / "run.json").read_text() == "the other process's"


def test_item11_a_closed_pipe_prints_no_error(tmp_path, text, capsys):
    """bptt sample ... | head: the reader leaves; no traceback, no error line."""
    run = trained(tmp_path, text, capsys, steps=2)
    p = subprocess.Popen([sys.executable, "-m", "bptt", "sample", run, "--tokens", "20000"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    p.stderr.close()
    assert p.wait(timeout=120) == 141 and err == "", err


HELD = """
import os, signal, sys, time
from pathlib import Path
Path("slow_import.py").write_text("import os, signal, time\\nos.kill(os.getpid(), signal.SIGINT)\\ntime.sleep(0.2)\\n"
                                  "DONE = True\\n")
sys.path.insert(0, ".")
from bptt.cli.app import import_held
try:
    import_held("slow_import")
except KeyboardInterrupt:
    print("interrupted after", sys.modules["slow_import"].DONE)
"""


def test_item11_ctrl_c_inside_an_import_waits_for_its_end(tmp_path):
    """Deterministically what the test above meets by chance: a SIGINT inside the import of numba (whose C
    part turns it into an ImportError with a traceback) is held until the import ends, then raised."""
    out = subprocess.run([sys.executable, "-c", HELD], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "interrupted after True", (out.stdout, out.stderr)
