"""The command line, run in-process."""

import subprocess
import sys

from bptt.cli import main
from bptt.lab import gradcheck


def test_gradcheck_default_prints_a_table_and_passes(capsys):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    for cell in gradcheck.CELL_NAMES:
        assert f"{cell} L2 onehot every cross_entropy state lengths" in out
    assert "l1.U" in out and "c0" in out and "PyTorch autograd" in out
    assert f"{len(gradcheck.CELL_NAMES)} passed, 0 failed" in out
    assert "FAIL" not in out


def test_gradcheck_one_configuration_without_torch(capsys):
    args = ["gradcheck", "--cell", "gru", "--layers", "3", "--inputs", "float", "--target", "last",
            "--loss", "mse", "--no-torch", "--seq-len", "1", "--batch", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "gru L3 float last mse state lengths" in out and "l2.W" in out and "\n  x " in out
    assert "skipped" in out


def test_gradcheck_exits_1_when_a_check_fails(monkeypatch, capsys):
    monkeypatch.setattr(gradcheck, "FD_TOL", 0.0)
    assert main(["gradcheck", "--cell", "rnn-tanh", "--no-torch"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_bad_arguments(capsys):
    assert main(["gradcheck", "--hidden", "0"]) == 2
    assert "error: --hidden: expected a positive int, got '0'" in capsys.readouterr().err


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "bptt", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("bptt ")
