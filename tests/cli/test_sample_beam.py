"""bptt sample --beam, --length-penalty, --stop-at-line-end and --interactive, in-process: each prints
what bptt.load(RUN).sample or .session gives; every combination that would change nothing, and
every bad value, is one "error:" line naming the option; --interactive continues one text from
the lines of stdin, ends at EOF with exit 0 and at Ctrl-C with exit 130."""

import io
import re

import pytest
from conftest import SMALL, TEXT

import bptt
from bptt.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample")
    (folder / "text.txt").write_text(TEXT)
    path = str(folder / "run")
    assert main(["train", path, "--data", str(folder / "text.txt"), "--steps", "150", "--lr", "0.01", *SMALL]) == 0
    return path


def printed(capsys, *argv):
    capsys.readouterr()
    assert main(["sample", *argv]) == 0
    return capsys.readouterr().out


def error(capsys, argv, code=2):
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_beam_prints_the_beam_search_of_the_library(run, capsys):
    trained = bptt.load(run)
    assert printed(capsys, run, "--prime", "ROMEO:", "--tokens", "20", "--beam", "3") == \
        "ROMEO:" + trained.sample("ROMEO:", 20, beam=3) + "\n"
    assert printed(capsys, run, "--tokens", "30", "--beam", "1") == printed(capsys, run, "--tokens", "30", "--greedy")
    assert printed(capsys, run, "--tokens", "30", "--beam", "4") != printed(capsys, run, "--tokens", "30", "--greedy")


def test_a_text_stops_at_its_first_line_end(run, capsys):
    trained = bptt.load(run)
    line = trained.sample("JULIET:\nAy", 200, seed=3, stop_at_line_end=True)
    assert len(line) > 1 and line.endswith("\n") and line.count("\n") == 1
    assert printed(capsys, run, "--prime", "JULIET:\nAy", "--tokens", "200", "--seed", "3", "--stop-at-line-end") == \
        "JULIET:\nAy" + line + "\n"
    best = {alpha: trained.sample("JULIET:\nAy", 30, beam=3, stop_at_line_end=True, length_penalty=float(alpha))
            for alpha in ("0", "5")}
    assert len(best["0"]) < len(best["5"])                      # a longer line wins when length is rewarded
    for alpha, text in best.items():
        assert printed(capsys, run, "--prime", "JULIET:\nAy", "--tokens", "30", "--beam", "3", "--stop-at-line-end",
                       "--length-penalty", alpha) == "JULIET:\nAy" + text + "\n"


@pytest.mark.parametrize("args,message", [
    (["--beam", "3", "--temperature", "0.5"],
     "--beam: searches for the most likely continuation, drawing nothing; --temperature does not apply"),
    (["--beam", "3", "--greedy", "--top-k", "2"], "--beam: .*; --greedy and --top-k do not apply"),
    (["--beam", "3", "--top-p", "0.9"], "--beam: .*; --top-p does not apply"),
    (["--greedy", "--temperature", "2"], "--greedy: takes the most likely token; --temperature does not apply"),
    (["--beam", "2", "--seed", "3"], "--seed: --beam draws nothing at random; leave --seed out"),
    (["--greedy", "--seed", "0"], "--seed: --greedy draws nothing at random; leave --seed out"),
    (["--length-penalty", "0.6"], "--length-penalty: ranks beam search's continuations of different lengths, "
                                  "which need --beam and --stop-at-line-end"),
    (["--beam", "2", "--length-penalty", "0"], "--length-penalty: .*need --beam and --stop-at-line-end"),
    (["--stop-at-line-end", "--length-penalty", "1"], "--length-penalty: .*need --beam and --stop-at-line-end"),
    (["--beam", "0"], "--beam: expected a positive int, got '0'"),
    (["--beam", "two"], "--beam: expected a positive int, got 'two'"),
    (["--beam", "2.5"], "--beam: expected a positive int, got '2.5'"),
    (["--beam", "2", "--stop-at-line-end", "--length-penalty", "-1"],
     "--length-penalty: expected a number >= 0, got '-1'"),
    (["--beam", "2", "--stop-at-line-end", "--length-penalty", "nan"],
     "--length-penalty: expected a number >= 0, got 'nan'"),
])
def test_options_that_would_change_nothing_or_bad_values_are_one_line(tmp_path, capsys, args, message):
    """Checked before the run is read (RUN does not exist): what was asked is said first."""
    err = error(capsys, ["sample", str(tmp_path / "RUN"), *args])
    assert re.match(f"error: {message}", err), err


def test_a_vocabulary_without_line_ends_cannot_stop_at_one(tmp_path, capsys):
    text = tmp_path / "one-line.txt"
    text.write_text("abcabd" * 80)
    assert main(["train", str(tmp_path / "run"), "--data", str(text), "--steps", "2", *SMALL]) == 0
    assert error(capsys, ["sample", str(tmp_path / "run"), "--stop-at-line-end"]) == \
        "error: --stop-at-line-end: the training vocabulary has no line end ('\\n')"


def test_every_new_option_is_described(capsys):
    capsys.readouterr()
    assert main(["sample", "--help"]) == 0
    page = " ".join(capsys.readouterr().out.split())
    for said in ("--beam K beam search: keep the K most likely continuations", "--length-penalty ALPHA with --beam",
                 "((5 + n) / 6)^ALPHA", "--stop-at-line-end end the text at the first line end drawn",
                 "--interactive then read prompts from stdin, one a line", "Ctrl-D ends"):
        assert said in page, said


class Typed(io.StringIO):
    """stdin as a terminal: what is typed is shown by the terminal, not printed again."""

    def isatty(self):
        return True


def test_interactive_prompts_continue_one_text(run, capsys, monkeypatch):
    """From a pipe the prompts are printed too: stdout is the session's whole text, plus a line end."""
    monkeypatch.setattr("sys.stdin", io.StringIO("JULIET:\nROMEO:\n"))
    out = printed(capsys, run, "--interactive", "--tokens", "15", "--seed", "2")
    session = bptt.load(run).session(seed=2)
    replies = [session.sample("JULIET:\n", 15), session.sample("ROMEO:\n", 15)]
    assert out == session.text + ("" if session.text.endswith("\n") else "\n")
    assert out.startswith("JULIET:\n" + replies[0] + "ROMEO:\n" + replies[1])
    monkeypatch.setattr("sys.stdin", io.StringIO("ROMEO:\n"))
    out = printed(capsys, run, "--interactive", "--prime", "JULIET:", "--tokens", "15", "--beam", "2")
    session = bptt.load(run).session(beam=2)
    session.sample("JULIET:", 15)
    session.sample("ROMEO:\n", 15)
    assert out == session.text + ("" if session.text.endswith("\n") else "\n")


def test_interactive_on_a_terminal_shows_continuations_and_goes_on_after_a_bad_line(run, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", Typed("JULIET:\n\u00a7\nROMEO:\n"))
    capsys.readouterr()
    assert main(["sample", run, "--interactive", "--tokens", "12", "--stop-at-line-end"]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == "error: stdin line 2: characters not in the training vocabulary: '\u00a7'"
    session = bptt.load(run).session(stop_at_line_end=True)
    replies = session.sample("JULIET:\n", 12) + session.sample("ROMEO:\n", 12)
    assert out == replies + ("" if replies.endswith("\n") else "\n")


def test_interactive_from_a_pipe_ends_at_a_bad_line_at_eof_and_at_ctrl_c(run, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("JULIET:\n\u00a7\nROMEO:\n"))
    assert error(capsys, ["sample", run, "--interactive", "--tokens", "5"]) == \
        "error: stdin line 2: characters not in the training vocabulary: '\u00a7'"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert printed(capsys, run, "--interactive") == ""                          # Ctrl-D at once: nothing to say

    lines = iter(["JULIET:\n"])

    class Interrupted(io.StringIO):
        def readline(self, *_):
            line = next(lines, None)
            if line is None:
                raise KeyboardInterrupt
            return line

    monkeypatch.setattr("sys.stdin", Interrupted())
    assert error(capsys, ["sample", run, "--interactive", "--tokens", "5"], code=130) == "interrupted"
