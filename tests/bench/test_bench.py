"""bptt.bench and `bptt bench`: the FLOP formula, the command on a tiny model, optional frameworks
skipped. Nothing here asserts on a time (JAX is not a test dependency and is not run)."""

import sys

import numpy as np
import pytest

from bptt import bench
from bptt.bench import harness, runners, tables, workload
from bptt.cli import main
from bptt.training.config import TrainConfig

TINY = ["--hidden", "16", "--layers", "1", "--batch", "4", "--window", "8", "--steps", "2", "--repeats", "1",
        "--warmup", "1"]


def test_flops_per_step_by_hand():
    # rnn, G = 1, H 2, E 3, V 5, 2 layers, B 2, T 3:
    # layer 0: 2*1*2*(3+2) = 20; layer 1: 2*1*2*(2+2) = 16; readout 2*2*5 = 20; 3*B*T*56 = 1008
    cfg = bench.config(TrainConfig(cell="rnn", hidden=2, embedding=3, layers=2, batch=2, window=3))
    assert bench.flops_per_step(cfg, 5) == 1008
    # lstm, G = 4: 3*B*T*(2*4*2*(3+2)) + readout = 18*(80+20)
    assert bench.flops_per_step(cfg.replace(cell="lstm", layers=1), 5) == 1800
    # one-hot inputs: D = V for the first layer
    assert bench.flops_per_step(cfg.replace(embedding=0, layers=1), 5) == 18 * (2 * 2 * (5 + 2) + 20)
    # the docstring's example
    assert bench.flops_per_step(bench.config("lstm-h256"), 65) == 4_231_004_160
    # a classifier: the layers over its real tokens (here 7), one readout of K = 3 classes per sequence (B = 2)
    assert bench.flops_per_step(cfg.replace(layers=1), 5, 3, tokens=7, readouts=2) == \
        3 * (7 * 2 * 2 * (3 + 2) + 2 * 2 * 2 * 3)
    # a word-level model: the readout is over the vocabulary
    assert bench.flops_per_step(cfg.replace(layers=1), 1000) == 18 * (2 * 2 * (3 + 2) + 2 * 2 * 1000)


def rows_of(out, prefix):
    return [line for line in out.splitlines() if line.startswith(prefix)]


def two_step_rows(argv, capsys, label):
    """bptt bench argv on two timed steps of bptt and PyTorch: the validation losses of the rows
    labelled `label`, checked to be one per framework."""
    assert main(["bench", *argv, "--steps", "2", "--repeats", "1", "--warmup", "1", "--no-rss",
                 "--frameworks", "bptt", "torch"]) == 0
    rows = rows_of(capsys.readouterr().out, label)
    assert [r.split()[1] for r in rows] == ["bptt", "PyTorch"]
    return [float(r.split()[7]) for r in rows]


def test_bench_on_a_word_level_text_with_dropout_and_sgd(tmp_path, capsys):
    """--data, --level word, --max-vocab, --dropout, --optimizer sgd, --lr, --clip: the user's workload,
    named in the table. PyTorch's runner (timed in a worker of its own by the command; here in this
    process) applies the same options: SGD, nn.LSTM's dropout and its own on the embedding and the
    output; JAX (no dropout in its reference) is skipped with a message, not silently."""
    torch = pytest.importorskip("torch")
    from bptt.bench import workload
    from bptt.training import tasks

    text = tmp_path / "words.txt"
    text.write_text("the cat sat on the mat and the rat ran to the cat\n" * 40)
    options = ["--data", str(text), "--level", "word", "--max-vocab", "6", "--hidden", "8", "--layers", "1",
               "--embedding", "4",
               "--batch", "4", "--window", "5", "--dropout", "0.1", "--optimizer", "sgd", "--lr", "0.5", "--clip", "1"]
    assert main(["bench", *options, "--steps", "2", "--repeats", "1", "--warmup", "1", "--no-rss",
                 "--frameworks", "bptt"]) == 0
    (row,) = rows_of(capsys.readouterr().out, "lstm-h8-b4-t5-e4-word-d0.1-sgd")
    assert abs(float(row.split()[7]) - np.log(6)) < 1                  # near uniform over the 6 words
    cfg = bench.config(TrainConfig(**(bench.BASE | {"hidden": 8, "embedding": 4, "batch": 4, "window": 5})),
                       data=str(text), level="word", max_vocab=6, dropout=0.1, optimizer="sgd", lr=0.5, clip=1.0)
    task = tasks.make(cfg)
    runner = runners.make_runner("torch", cfg, task)
    assert isinstance(runner.opt, torch.optim.SGD) and runner.model.rnn.dropout == 0.1
    before = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}
    for batch, tokens, flops in workload.batches(task, cfg, 2):
        runner.step(batch)
        assert tokens == 20 and flops == bench.flops_per_step(cfg, 6)
    assert all(not torch.equal(before[k], v) for k, v in runner.model.state_dict().items())
    cfg = bench.config("lstm-h128", dropout=0.1)
    assert runners.unsupported("jax", cfg) == "the JAX reference has no dropout"
    assert runners.unsupported("torch", cfg) is None and runners.unsupported("jax", bench.config("lstm-h128")) is None
    printed = []
    assert tables.able(["bptt", "jax"], cfg, printed.append) == ["bptt"]
    assert printed == ["JAX skipped for lstm-h128-d0.1: the JAX reference has no dropout"]


def test_bench_classifies_a_labelled_file_as_pytorch_packed_sequences_do(tmp_path, capsys):
    """--task classify: variable lengths, the loss at each text's last step; PyTorch's
    pack_padded_sequence + nn.LSTM + nn.Linear on h_n from the same weights reaches the same loss."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    words = ["cat", "mat", "rat", "sat", "on", "the"]
    lines = [" ".join(rng.choice(words, rng.integers(2, 9))) + ("\tyes\n" if i % 3 else "\tno\n")
             for i in range(60)]
    data = tmp_path / "labelled.tsv"
    data.write_text("".join(lines))
    loss = two_step_rows(["--task", "classify", "--data", str(data), "--level", "word", "--hidden", "8",
                          "--layers", "1", "--embedding", "4", "--batch", "8"], capsys, "lstm-h8-b8-e4-word-classify")
    assert abs(loss[0] - loss[1]) < 1e-4                        # the same computation from the same weights
    assert main(["bench", "--task", "classify"]) == 2
    assert "error: --task: 'classify' needs --data" in capsys.readouterr().err
    assert main(["bench", "--task", "classify", "--data", str(data), "--lengths", "4"]) == 2
    assert "error: --lengths: measures a language model's step" in capsys.readouterr().err
    assert main(["bench", "--optimizer", "rmsprop"]) == 2
    assert "error: --optimizer: invalid choice: 'rmsprop'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="optimizer: the benchmark runs adam or sgd"):
        bench.config("lstm-h128", optimizer="adagrad")


def test_bench_command_prints_a_row_per_framework(capsys):
    pytest.importorskip("torch")
    assert main(["bench", *TINY, "--frameworks", "bptt", "torch", "--no-rss"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("lstm-h16-b4-t8")]
    assert [r.split()[1] for r in rows] == ["bptt", "PyTorch"]
    assert "peak RSS (MB)" in out and "validation losses differ by at most" in out
    assert out.startswith("CPU: ") and "bptt's kernels: " in out.splitlines()[0]
    assert any(bits in out.splitlines()[0] for bits in ("256-bit", "512-bit"))
    loss = [float(r.split()[7]) for r in rows]
    assert abs(loss[0] - loss[1]) < 1e-4                       # the same computation from the same weights


def test_bench_in_bf16_runs_pytorch_under_autocast(capsys, monkeypatch):
    """--precision bf16: bptt's bf16 kernels (or the emulation here) against PyTorch under autocast; the row
    names it, the first line names the instruction path; JAX has no bf16 runner and says so."""
    torch = pytest.importorskip("torch")
    from bptt.training import tasks

    assert main(["bench", *TINY, "--frameworks", "bptt", "torch", "--no-rss", "--precision", "bf16"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("lstm-h16-b4-t8-bf16")]
    assert [r.split()[1] for r in rows] == ["bptt", "PyTorch"]
    assert "bf16: " in out.splitlines()[0]
    loss = [float(r.split()[7]) for r in rows]
    assert abs(loss[0] - loss[1]) < 2e-2                       # bf16 rounding, each framework its own
    cfg = bench.config("lstm-h128", precision="bf16", hidden=16, batch=4, window=8)
    runner = runners.make_runner("torch", cfg, tasks.make(cfg))
    entered, real = [], torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: entered.append(k) or real(*a, **k))
    runner.step(workload.batches(tasks.make(cfg), cfg, 1)[0][0])
    assert entered == [{"dtype": torch.bfloat16, "enabled": True}]
    assert runners.unsupported("jax", cfg) == "the JAX reference runs float32 only (no bf16 runner)"


def test_missing_framework_is_skipped_with_a_message(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "jax", None)              # import jax now raises ImportError
    monkeypatch.setitem(sys.modules, "torch", None)
    assert runners.available(["bptt", "torch", "jax"]) == ["bptt"]
    out = capsys.readouterr().out
    assert "PyTorch not installed" in out and "JAX not installed" in out
    assert bench.run(["lstm-h128"], frameworks=["jax"]) == []
    assert "JAX not installed" in capsys.readouterr().out
    assert main(["bench", *TINY, "--frameworks", "jax", "torch"]) == 2
    captured = capsys.readouterr()
    assert "skipped" in captured.out and "error: --frameworks: none of jax, torch is installed" in captured.err


def test_bad_arguments(capsys):
    assert main(["bench", "--hidden", "0"]) == 2
    assert "error: --hidden: expected a positive int, got 0" in capsys.readouterr().err     # TrainConfig's words
    assert main(["bench", "--embedding", "-1"]) == 2
    assert "error: --embedding: expected an int >= 0, got -1" in capsys.readouterr().err
    assert main(["bench", "--window", "100000000", "--frameworks", "bptt"]) == 2
    assert "error: --window: expected fewer than" in capsys.readouterr().err
    assert main(["bench", "--data", "/no/such/words.txt", "--level", "word", "--frameworks", "bptt"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: /no/such/words.txt: file not found")     # before any table
    assert main(["bench", "--frameworks", "tensorflow"]) == 2
    assert "error: --frameworks: invalid choice: 'tensorflow'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="config: expected one of"):
        bench.config("lstm-h9999")


def test_worker_reports_its_own_peak_rss_and_compile_time():
    (m,) = harness.measure(bench.config("lstm-h128", hidden=8, batch=2, window=4), ["bptt"], steps=1, warmup=1,
                         repeats=1, validate=False)
    assert m["framework"] == "bptt" and "error" not in m and m["peak_rss_mb"] > 1
    # the first call loads (or compiles) every kernel of a step: a measured time, not a placeholder,
    # and below the whole measurement's
    assert isinstance(m["compile_s"], float) and 0 < m["compile_s"] < 600


def test_step_cost_and_markdown(capsys):
    rows = bench.step_cost(bench.config("lstm-h128", hidden=8, batch=2), [4, 8], steps=1, warmup=0,
                           frameworks=["bptt"], rss=False)
    assert [(r["T"], r["framework"]) for r in rows] == [(4, "bptt"), (8, "bptt")]
    assert all(r["ms_per_step"] > 0 and r["peak_rss_mb"] is None for r in rows)
    text = bench.markdown(rows, bench.LENGTH_COLUMNS, title="step cost")
    lines = text.splitlines()
    assert lines[0] == "# step cost" and any(line.startswith("- **cpu**: ") for line in lines)
    assert any(line.startswith("- **vector width**: ") and "-bit" in line for line in lines)
    assert any(line.startswith("- **command**: `") for line in lines)
    table = [line for line in lines if line.startswith("|")]
    assert table[0].startswith("| config | T | framework | ms/step") and len(table) == 2 + len(rows)
    assert table[2].split("|")[2].strip() == "4" and table[2].split("|")[6].strip() == "-"


def test_bench_command_measures_lengths_into_a_new_markdown_file(tmp_path, capsys):
    """--lengths and --markdown (what benchmarks/speed.py passes on): the table, then the file; an
    existing file is refused and left as it was; --configs and a shape option together are refused."""
    out = tmp_path / "length.md"
    argv = ["bench", "--hidden", "8", "--layers", "1", "--batch", "2", "--lengths", "4", "8", "--steps", "1",
            "--warmup", "0", "--frameworks", "bptt", "--no-rss", "--markdown", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert [line.split()[1] for line in printed.splitlines() if line.startswith("lstm-h8-b2")] == ["4", "8"]
    text = out.read_text()
    assert text.startswith("# bptt step cost vs window T\n") and f"written: {out}" in printed
    assert main(argv) == 2
    assert "--markdown: expected a new file" in capsys.readouterr().err and out.read_text() == text
    assert main(["bench", "--configs", "lstm-h256", "--batch", "4"]) == 2
    assert "error: --batch: describes your own configuration" in capsys.readouterr().err


def test_speed_script_passes_its_defaults_to_bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "speed.py"
    spec = importlib.util.spec_from_file_location("speed", path)
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    assert speed.argv([]) == ["bench", "--configs", "all"]
    assert speed.argv(["--lengths", "16", "64"]) == ["bench", "--configs", "lstm-h256", "--lengths", "16", "64"]
    assert speed.argv(["--configs", "gru-h256"]) == ["bench", "--configs", "gru-h256"]
    assert speed.argv(["--hidden", "64"]) == ["bench", "--hidden", "64"]


def test_classify_script_labels_the_speeches_of_the_play_text():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "classify.py"
    spec = importlib.util.spec_from_file_location("classify_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    text = ("First Citizen:\nBefore we proceed any further,\nhear me speak.\n\nAll:\nSpeak, speak.\n\n"
            "First Citizen:\nYou are all resolved rather to die than to famish?\n")
    assert list(script.speeches(text))[1] == ("All", "Speak, speak.")
    lines = script.labelled(text).splitlines()                 # "Speak, speak." has 2 words: left out
    assert lines == ["Before we proceed any further, hear me speak.\tFirst Citizen",
                     "You are all resolved rather to die than to famish?\tFirst Citizen"]
    assert script.argv(["--steps", "2"], "f.tsv")[-4:] == ["--data", "f.tsv", "--steps", "2"]


def test_evaluation_script_compares_validation_with_training(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "evaluation.py"
    spec = importlib.util.spec_from_file_location("evaluation_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--hidden", "8", "--layers", "1", "--embedding", "4", "--batch", "4", "--window", "8",
                        "--eval-batch", "4", "--steps", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("CPU: ") and out[1].split()[0] == "training" and out[2].split()[0] == "validation"
    assert "validation streams 4: validation / training = " in out[3]


def test_scaling_script_model_and_its_allreduce_under_mpiexec():
    """benchmarks/scaling.py: the ring-allreduce model by hand, and the 2-rank allreduce it measures
    under mpiexec (MPICH from the test requirements)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "scaling.py"
    spec = importlib.util.spec_from_file_location("scaling_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    # 4 machines, 1e6 values of 4 bytes at 8 Gb/s (1e9 B/s), 10 µs: 2 * 3/4 * 4e6 / 1e9 + 6 * 1e-5 = 6.06 ms
    assert abs(script.ring_allreduce(1e6, 4, 8.0, 1e-5) - 6.06e-3) < 1e-12 and script.ring_allreduce(1e6, 1, 8, 1) == 0
    # a 30 ms step: without overlap 4 * 30 / 36.06; with overlap the 6.06 ms hide in the 20 ms backward
    assert abs(script.speedup(0.03, 1e6, 4, 8.0, 1e-5, False) - 4 * 0.03 / 0.03606) < 1e-9
    assert script.speedup(0.03, 1e6, 4, 8.0, 1e-5, True) == 4.0
    times = script.measured_allreduce([10, 1000], repeats=3)
    assert sorted(times) == [10, 1000] and all(0 < t < 1 for t in times.values())
