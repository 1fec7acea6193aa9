"""bptt train / eval / sample, in-process, and their error paths."""

import json

import numpy as np
import pytest
from conftest import SMALL, TEXT

import bptt
from bptt.cli import main
from bptt.training import opening


def test_train_eval_sample(tmp_path, text, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--data", text, "--out", run, "--steps", "8", "--sample", "40", *SMALL]) == 0
    out, err = capsys.readouterr()
    assert "validation" in out and "unigram" in out and "uniform" in out and "bits/char" in out
    assert "training lstm 1x10" in err and "valid loss" in err
    assert main(["eval", run, "--data", text, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = bptt.load(run).score(TEXT)                      # one stream, every token after the first
    loss = expected["loss"]
    assert result["loss"] == loss and result["tokens"] == expected["tokens"] == len(TEXT) - 1
    assert result["bits_per_char"] == pytest.approx(loss / np.log(2))
    assert result["perplexity"] == pytest.approx(np.exp(loss))

    args = ["sample", run, "--prime", "ROMEO:", "--tokens", "60", "--temperature", "0.7", "--top-k", "5", "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("ROMEO:")
    assert main(args[:-1] + ["4"]) == 0
    assert capsys.readouterr().out != first
    assert main(["sample", run, "--greedy", "--tokens", "20"]) == 0


def test_a_run_directory_is_enough_to_sample_and_evaluate(tmp_path, capsys):
    """The training text may be gone: sampling and evaluation read only the run directory."""
    data = tmp_path / "train.txt"
    data.write_text(TEXT)
    run = str(tmp_path / "run")
    assert main(["train", "--data", str(data), "--out", run, "--steps", "4", *SMALL]) == 0
    other = tmp_path / "test.txt"
    other.write_text(TEXT[:300])
    data.unlink()
    capsys.readouterr()
    assert main(["sample", run, "--tokens", "20", "--seed", "1"]) == 0
    assert len(capsys.readouterr().out) >= 20
    assert main(["eval", run, "--data", str(other), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] > 0


def test_resume_from_the_command_line(tmp_path, text, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--data", text, "--out", run, "--steps", "4", *SMALL]) == 0
    assert main(["train", "--out", run, "--resume", "--steps", "8"]) == 0
    assert opening.Run(run).load()[3].step == 8
    assert "resuming at step 4" in capsys.readouterr().err


def test_resume_settles_the_options_once(tmp_path, text, capsys, monkeypatch):
    """bptt train --resume checks the run, reads config.json and resolves the options once
    (opening.settle, before training starts); the run is opened with what that gave."""
    run = str(tmp_path / "run")
    assert main(["train", "--data", text, "--out", run, "--steps", "4", *SMALL]) == 0
    counted = {"settle": 0, "config": 0, "check_resumable": 0}

    def counting(name, real):
        def call(*args, **kwargs):
            counted[name] += 1
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(opening, "settle", counting("settle", opening.settle))
    monkeypatch.setattr(opening.Run, "config", counting("config", opening.Run.config))
    monkeypatch.setattr(opening.Run, "check_resumable", counting("check_resumable", opening.Run.check_resumable))
    assert main(["train", "--out", run, "--resume", "--steps", "6", "--lr", "0.001"]) == 0
    assert counted == {"settle": 1, "config": 1, "check_resumable": 1}
    assert opening.Run(run).config().lr == 0.001 and opening.Run(run).load()[3].step == 6


@pytest.mark.parametrize("content,message", [
    (b"", "the file is empty"),
    (b"good line\n\xff\xfe bad bytes\n", "line 2: not valid UTF-8"),
    (b"tiny", "--batch: 3 streams need at least 6 training tokens (2 per stream)"),
])
def test_bad_training_files(tmp_path, content, message, capsys):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    assert main(["train", "--data", str(path), "--valid", str(path), "--out", str(tmp_path / "run"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_other_errors(tmp_path, text, capsys):
    assert main(["train", "--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "r")]) == 2
    assert "missing.txt: file not found" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nothing"), "--data", text]) == 2
    assert "RUN_DIR: " in capsys.readouterr().err
    assert main(["train", "--data", text, "--out", str(tmp_path / "r"), "--window", "8", "--backprop", "4"]) == 2
    assert "backprop: expected k2 >= window" in capsys.readouterr().err
    assert main(["train", "--out", "x", "--cell", "transformer"]) == 2
    assert capsys.readouterr().err.startswith("error: --cell: invalid choice: 'transformer'")


def test_help_lists_every_option(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ["--data", "--valid", "--level", "--cell", "--hidden", "--layers", "--embedding", "--batch",
                   "--window", "--steps", "--epochs", "--optimizer", "--lr", "--clip", "--dropout", "--seed",
                   "--out", "--resume", "--backprop", "--clip-dh", "--schedule", "--max-time"]:
        assert option in out


def test_classification_from_the_command_line(tmp_path, capsys):
    good = tmp_path / "train.tsv"
    good.write_text("".join(f"{'cat rat' if i % 2 else 'cat mat'} {'sat ' * (i % 3)}\t{i % 2}\n" for i in range(40)))
    run = str(tmp_path / "run")
    small = [a for a in SMALL if a not in ("--window", "6")]             # no TBPTT windows in classification
    assert main(["train", "--task", "classify", "--data", str(good), "--level", "word", "--out", run,
                 "--steps", "6", *small]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "prior" in out
    assert main(["eval", run, "--data", str(good), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["accuracy"] <= 1 and result["examples"] == 40
    assert main(["sample", run]) == 2
    assert "holds a classifier" in capsys.readouterr().err

    bad = tmp_path / "bad.tsv"
    bad.write_text("cat mat\t1\ncat rat without a label\nmat\t0\n")
    assert main(["train", "--task", "classify", "--data", str(bad), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "bad.tsv: line 2" in err and "no tab" in err
