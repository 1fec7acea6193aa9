"""The README's Python examples run as written."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_examples_run():
    found = blocks()
    assert len(found) >= 3
    scope = {}
    exec(compile(found[0], "README.md", "exec"), scope)
    net, grads, logits = scope["net"], scope["grads"], scope["logits"]
    assert logits.shape == (64, 32, 65) and grads.keys() == net.params.keys()
    assert abs(scope["loss"] - np.log(65)) < 0.1          # about ln K at initialisation
    _, now, _ = net.loss_and_grads(scope["x"], scope["y"])           # at the parameters after the README's step
    for k in now:                                                     # the memory budget: the same gradients
        assert np.allclose(scope["grads_in_20MB"][k], now[k], rtol=1e-10, atol=1e-14)
    small, x, y = scope["small"], scope["x"][:20, :4], scope["y"][:20, :4]
    _, bptt_grads, _ = small.loss_and_grads(x, y)
    for k in bptt_grads:
        assert np.allclose(scope["grads_rtrl"][k], bptt_grads[k], rtol=1e-10, atol=1e-14)
    assert scope["grads_uoro"].keys() == bptt_grads.keys()
    exec(compile(found[1], "README.md", "exec"), scope)
    assert "rnn.weight_hh_l1" in scope["torch_grads"]


def test_readme_streaming_example_runs():
    (example,) = [b for b in blocks() if "net.stepper()" in b]
    scope = {}
    exec(compile(example, "README.md", "exec"), scope)
    assert scope["z_t"].shape == (4, 65) and scope["z_window"].shape == (3, 4, 65)
    assert all(p.shape == (2, 4, 128) for p in scope["state"])
    assert all(a.flags.writeable for a in scope["net"].params.values())     # released by the with block


def test_readme_layer_options_example_runs():
    (example,) = [b for b in blocks() if "bidirectional=True" in b]
    scope = {}
    exec(compile(example, "README.md", "exec"), scope)
    assert scope["h_n"].shape == (4, 8, 48) and scope["c_n"].shape == (4, 8, 64)
    assert scope["states"]["h"].shape == (4, 40, 8, 48) and scope["states"]["c"].shape == (4, 40, 8, 64)
    assert scope["grads"]["init.h"].shape == (4, 48) and np.any(scope["grads"]["init.h"])
    assert scope["logits"].shape == (40, 8, 3) and abs(scope["loss"] - np.log(3)) < 0.2


def test_readme_load_example_runs_on_a_trained_run(tmp_path, monkeypatch, capsys):
    """bptt.load on a run made by `bptt train` (a small one), scoring, sampling, save and load, and
    the ONNX export run in ONNX Runtime."""
    from bptt.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "runs/shakespeare", "--steps", "20", "--hidden", "16", "--layers", "1",
                 "--embedding", "8", "--eval-every", "10"]) == 0
    capsys.readouterr()
    (example,) = [b for b in blocks() if "bptt.load(" in b and "session(" not in b]
    scope = {}
    exec(compile(example, "README.md", "exec"), scope)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("{'loss': ") and out[0].endswith("'tokens': 27, 'streams': 1}")     # 28 characters
    assert len("\n".join(out[1:])) == 200                    # the continuation alone, 200 characters
    net, run = scope["net"], scope["run"]
    assert all(np.array_equal(net.params[k], run.network.params[k]) for k in net.params)
    assert scope["ids"].tolist() == run.vocab.encode(list("ROMEO:")).tolist()
    z, (h, _) = net.forward(scope["ids"][:, None])
    assert np.max(np.abs(scope["logits"] - z)) < 1e-5 and np.max(np.abs(scope["h_n"] - h)) < 1e-5

    (example,) = [b for b in blocks() if "run.session(" in b]
    scope = {}
    exec(compile(example, "README.md", "exec"), scope)
    chat = scope["chat"]
    assert chat.text == "ROMEO:\n" + scope["romeo"] + "JULIET:\n" + scope["juliet"]
    for part in (scope["romeo"], scope["juliet"]):
        assert part.endswith("\n") or len(part) == 200


def readme_command(start):
    """The README's shell command that starts with `start` (continued lines joined), as arguments."""
    import shlex

    text = README.read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith(start)]
    return shlex.split(line.split("#")[0])


def test_readme_mpiexec_lines_run(tmp_path):
    """The README's two mpiexec lines as written (the sweep: with fewer steps and a smaller test set;
    the training run: a smaller model for a few steps), under the mpiexec of the mpich wheel."""
    import subprocess
    import sys

    bin_ = Path(sys.executable).parent
    train = readme_command("mpiexec -n 2 bptt train")
    sweep = readme_command("mpiexec -n 5 python -m mpi4py.futures -m bptt task")
    for argv, extra in ((train, ["--steps", "4", "--hidden", "16", "--layers", "1", "--embedding", "8",
                                 "--eval-every", "4"]),
                        (sweep, ["--steps", "6", "--test-size", "20"])):
        assert argv[:2] == ["mpiexec", "-n"]
        argv = [str(bin_ / "mpiexec"), *argv[1:3], str(bin_ / argv[3]), *argv[4:]]     # the programs of the venv
        done = subprocess.run(argv + extra, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "runs/shakespeare-2/checkpoint.safetensors").exists()
    assert (tmp_path / "runs/adding-mpi/results.json").exists()
