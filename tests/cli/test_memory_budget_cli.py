"""bptt train --memory-budget: trains and resumes exactly as without it; bad values are one-line
errors naming the flag."""

import os

import numpy as np
import pytest
from conftest import SMALL

from bptt import files
from bptt.cli import main
from bptt.model import engine

ARGS = [*SMALL, "--dtype", "float64", "--steps", "6", "--dropout", "0.2"]


def params(run):
    arrays = files.load_arrays(os.path.join(run, "checkpoint.safetensors"))[0]
    return {k: v for k, v in arrays.items() if k.startswith("param/")}


def test_trains_and_resumes_as_without_it(tmp_path, text, monkeypatch):
    slots = []
    policy = engine.recompute_by_policy
    monkeypatch.setattr(engine, "recompute_by_policy", lambda *a: (slots.append(a[-1]), policy(*a))[1])
    assert main(["train", str(tmp_path / "plain"), "--data", text, *ARGS]) == 0
    assert main(["train", str(tmp_path / "budget"), "--data", text, *ARGS, "--memory-budget", "90000"]) == 0
    assert slots and all(1 <= m < 6 for m in slots)                    # the policy ran, with a few slots
    assert main(["train", str(tmp_path / "split"), "--data", text, *ARGS[:-4], "--steps", "3", "--dropout", "0.2",
                 "--memory-budget", "90000"]) == 0
    assert main(["train", str(tmp_path / "split"), "--resume", "--steps", "6"]) == 0
    plain, budget, split = (params(tmp_path / name) for name in ("plain", "budget", "split"))
    assert plain.keys() == budget.keys() == split.keys()
    for k in plain:
        assert np.allclose(budget[k], plain[k], rtol=1e-12, atol=1e-14), k
        assert np.array_equal(split[k], budget[k]), k                   # resumed: bit for bit


@pytest.mark.parametrize("args,message", [
    (["--memory-budget", "lots"], "--memory-budget: expected a size in bytes, such as 500MB, 2GB or 123456, "
                                  "got 'lots'"),
    (["--memory-budget=-5MB"], "--memory-budget: expected a size in bytes"),
    (["--memory-budget", "0"], "--memory-budget: expected a positive size in bytes"),
    (["--memory-budget", "1MB", "--recompute-every", "3"], "--memory-budget: --recompute-every also chooses"),
    (["--memory-budget", "1MB", "--alpha", "1"], "--memory-budget: recomputes the window in segments from its "
                                                  "start; --alpha and --beta (AR, TAR) read the whole window"),
    (["--memory-budget", "100"], "--memory-budget: '100' (100 bytes) holds no step; the minimum is"),
])
def test_bad_values_are_one_line_errors(tmp_path, text, capsys, args, message):
    assert main(["train", "--out", str(tmp_path / "run"), "--data", text, *SMALL, "--steps", "2", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: {message}")
