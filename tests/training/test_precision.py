"""--precision bf16 in the trainer: what it refuses (one line naming the flag), that it reaches the
engine (the run differs from float32's and its checkpoint holds float32), and the CLI's message."""

import numpy as np
import pytest

from bptt import files
from bptt.cli.app import main
from bptt.training import train
from bptt.training.config import TrainConfig


@pytest.mark.parametrize("kw, message", [
    (dict(dtype="float64"), "got --dtype float64"),
    (dict(engine="numpy"), "got --engine numpy"),
    (dict(adaptive_softmax="10", level="word"), "got --adaptive-softmax 10"),
    (dict(gradient="rtrl", hidden=4, batch=2), "got --gradient rtrl"),
    (dict(cell="skip"), "runs the cells rnn, gru and lstm"),
])
def test_refused_with_the_flag_named(kw, message):
    with pytest.raises(ValueError, match=f"precision: 'bf16' .*{message}"):
        TrainConfig(precision="bf16", **kw)


def test_reaches_the_engine_and_checkpoints_float32(tmp_path, text):
    base = dict(data=text, hidden=16, layers=1, embedding=8, batch=4, window=8, steps=6, eval_every=3,
                eval_batch=2)
    runs = {p: train.train(TrainConfig(**base, precision=p), tmp_path / p) for p in ("float32", "bf16")}
    assert all(r.status == "done" for r in runs.values())
    a, _ = files.load_arrays(tmp_path / "float32" / "checkpoint.safetensors")
    b, _ = files.load_arrays(tmp_path / "bf16" / "checkpoint.safetensors")
    assert all(v.dtype == np.float32 for k, v in b.items() if k.startswith("param/"))
    assert not np.array_equal(a["param/l0.U"], b["param/l0.U"])
    assert np.allclose(a["param/l0.U"], b["param/l0.U"], atol=1e-2)


def test_cli_error_is_one_line(capsys, tmp_path):
    assert main(["train", str(tmp_path / "r"), "--precision", "bf16", "--dtype", "float64"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --precision: 'bf16'")


def test_a_cpu_without_avx512_bf16_is_one_line_naming_the_flag(capsys, tmp_path, text, monkeypatch):
    from bptt.fast import bf16

    monkeypatch.setattr(bf16, "path", lambda: None)       # a CPU without AVX512-BF16 (HARDWARE, read when
                                                          # kernels compile, is left alone)
    assert main(["train", str(tmp_path / "r"), "--data", text, "--precision", "bf16", "--steps", "2"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --precision: 'bf16' needs a CPU with AVX512-BF16"), err
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()


def test_a_bf16_run_is_used_in_float32_on_any_cpu(tmp_path, text, capsys, monkeypatch):
    """bptt.load, eval and sample of a run trained in bf16 work on a CPU without AVX512-BF16; bench
    refuses bf16 there in the parent, one line, before any worker starts."""
    import bptt
    from bptt.fast import bf16

    run = tmp_path / "r"
    assert train.train(TrainConfig(data=text, hidden=8, layers=1, embedding=4, batch=2, window=6, steps=4,
                                   eval_every=2, eval_batch=2, precision="bf16"), run).status == "done"
    monkeypatch.setattr(bf16, "path", lambda: None)
    assert bptt.load(str(run)).network.arch.precision == "float32"
    assert main(["eval", str(run), "--data", text]) == 0
    assert main(["sample", str(run), "--tokens", "5", "--seed", "1"]) == 0
    capsys.readouterr()
    assert main(["bench", "--hidden", "8", "--layers", "1", "--batch", "2", "--window", "4", "--steps", "1",
                 "--repeats", "1", "--frameworks", "bptt", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --precision: 'bf16' needs a CPU with AVX512-BF16"), err
