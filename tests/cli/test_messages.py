"""What the command line says (issue 21, items 9 and 10): a sign of life before the fast engine
compiles, and the small things a user notices. Each test fails on the code before it."""

from pathlib import Path

import pytest
from conftest import SMALL

import bptt.fast
from bptt.cli import main

COMPILING = "compiling the fast engine for this CPU (once, a minute or two; later runs load it)"


def error(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.splitlines()[-1]


@pytest.mark.parametrize("stale, extra, said", [(["lstm"], [], True), ([], [], False),
                                                (["lstm"], ["--engine", "numpy"], False)])
def test_item9_the_first_compile_is_announced_before_the_run_starts(tmp_path, text, capsys, monkeypatch, stale,
                                                                     extra, said):
    monkeypatch.setattr(bptt.fast, "stale_modules", lambda cells=(): stale)
    assert main(["train", str(tmp_path / "r"), "--data", text, "--steps", "1", *SMALL, *extra]) == 0
    err = capsys.readouterr().err
    assert err.count(COMPILING) == said
    if said:
        assert err.startswith(COMPILING)                           # before the header, not after the wait


def test_item9_the_cache_check_knows_every_cached_module():
    """stale_modules reads numba's index files: after the engine ran every cell (this suite has), each
    module it lists has them, and no other module of bptt.fast does."""
    from bptt import Network

    for cell in ("rnn", "gru", "lstm"):
        Network(cell, 3, 2, 3).forward([[0, 1]])
    assert bptt.fast.stale_modules() == []
    cache = Path(bptt.fast.__file__).parent / "__pycache__"
    cached = {p.name.split(".")[0] for p in cache.glob("*.nbi")}
    assert cached - set(bptt.fast.ON_REQUEST) == {*bptt.fast.CACHED, "rnn", "gru", "lstm"}
    assert bptt.fast.stale_modules(("skip",)) == []                # no compiled skip RNN: nothing to compile


def test_item10_an_empty_run_directory_is_refused(tmp_path, text, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for argv in (["train", "", "--data", text], ["train", "--out", "", "--data", text]):
        assert main([*argv, "--steps", "1", *SMALL]) == 2
        assert "empty; give the run directory" in error(capsys)
    assert list(tmp_path.iterdir()) == [Path(text)]


def test_item10_a_window_longer_than_the_streams_says_the_window_used(tmp_path, text, capsys):
    assert main(["train", str(tmp_path / "r"), "--data", text, "--steps", "1", *SMALL, "--window", "100000"]) == 0
    err = capsys.readouterr().err
    assert "TBPTT(100000" not in err
    assert "TBPTT(224, 224)" in err and "each of the 3 streams holds 224 steps, fewer than --window 100000" in err


def test_item10_resume_names_an_option_the_run_left_unset(tmp_path, text, capsys):
    assert main(["train", str(tmp_path / "r"), "--data", text, "--steps", "1", *SMALL]) == 0
    capsys.readouterr()
    assert main(["train", str(tmp_path / "r"), "--resume", "--engine", "numpy", "--steps", "2"]) == 2
    assert "--engine: cannot change when resuming (the run has no value, the default, got 'numpy')" in error(capsys)


def test_item10_valid_fraction_with_valid_reads_as_a_sentence(tmp_path, text, capsys):
    assert main(["train", str(tmp_path / "r"), "--data", text, "--valid", text, "--valid-fraction", "0.2",
                 *SMALL]) == 2
    assert error(capsys) == ("error: --valid-fraction: applies to a run without --valid (the share of --data it "
                             f"holds out for validation) only; got 0.2 with valid='{text}'")


def test_item10_a_long_range_problem_counts_no_epochs_and_small_counts_read(tmp_path, capsys):
    assert main(["train", str(tmp_path / "r"), "--task", "adding", "--length", "6", "--steps", "3", "--hidden", "4",
                 "--batch", "2", "--test-size", "4", "--embedding", "0"]) == 0
    out = capsys.readouterr().out
    assert "epoch" not in out and "0.00M" not in out and "\n3 steps, 36 tokens in " in out


def test_item10_a_one_token_text_has_no_negative_zero(tmp_path, capsys):
    data = tmp_path / "a.txt"
    data.write_text("a" * 80)
    assert main(["train", str(tmp_path / "r"), "--data", str(data), "--steps", "2", *SMALL]) == 0
    out, err = capsys.readouterr()
    assert "-0.0" not in out + err and "unigram baseline 0.000" in err
