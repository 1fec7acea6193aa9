"""AWD-LSTM's variable-length BPTT windows (--variable-window; Merity et al. 2017, 4.1): the drawn
lengths follow its main.py, the windows tile the streams, each step's lr is scaled by its length
for that step only, --epochs counts whole passes, and a resumed (or SIGKILLed) run is exact."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bptt import files
from bptt.cli import main
from bptt.model import engine
from bptt.training import building, opening, tasks, train
from bptt.training.config import TrainConfig

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nAy me!\n\n" * 10


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return str(path)


def small(corpus, **kw):
    base = dict(data=corpus, hidden=8, layers=1, embedding=4, batch=3, window=6, variable_window=True, steps=12,
                eval_every=5, log_every=1, eval_batch=2, dtype="float64", engine="numpy")
    return TrainConfig(**(base | kw))


def main_py_lengths(rng, bptt_arg, n):
    """AWD-LSTM main.py's two lines, verbatim but for numpy's Generator in place of np.random."""
    lengths = []
    for _ in range(n):
        bptt = bptt_arg if rng.random() < 0.95 else bptt_arg / 2.
        seq_len = max(5, int(rng.normal(bptt, 5)))
        lengths.append(seq_len)
    return lengths


@pytest.mark.parametrize("k1", [3, 6, 70])
def test_drawn_lengths_are_main_py_s(k1):
    ws, drawn = tasks.variable_windows(100_000, k1, np.random.default_rng([0, 6, 0]))
    assert drawn == main_py_lengths(np.random.default_rng([0, 6, 0]), k1, len(drawn))
    assert min(drawn) >= 5 and len(drawn) > 1000
    if k1 == 70:                                # one window in 20 is drawn around 35: below 50 only those, nearly
        assert 0.03 < np.mean(np.array(drawn) < 50) < 0.07


def test_windows_tile_the_stream_and_differ_by_epoch(corpus):
    task = tasks.make(small(corpus))
    N = len(task.stream)
    seen = []
    for epoch in (0, 1, 2):
        ws, drawn = task.epoch_windows(epoch)
        assert ws[0].start == 0 and ws[-1].stop == N - 1
        assert all(a.stop == b.start for a, b in zip(ws, ws[1:]))      # no step skipped or repeated
        assert all(w.loss_from == w.start and w.stop - w.start == d for w, d in zip(ws[:-1], drawn))
        assert 0 < ws[-1].stop - ws[-1].start <= drawn[-1]              # the last is cut at the stream's end
        xs, ys = zip(*((b["x"], b["y"]) for b, _ in map(lambda i: task.batch(i, epoch), range(len(ws)))))
        assert np.array_equal(np.concatenate(xs), task.stream[:-1])
        assert np.array_equal(np.concatenate(ys), task.stream[1:])
        assert task.epoch_steps(epoch) == len(ws)
        seen.append(drawn)
    assert seen[0] != seen[1] != seen[2]
    again = tasks.make(small(corpus))                                   # another rank, or a resumed run
    assert again.epoch_windows(1)[1] == seen[1] and again.epoch_windows(0)[1] == seen[0]
    assert tasks.make(small(corpus, seed=1)).epoch_windows(0)[1] != seen[0]


def test_each_step_s_lr_is_scaled_by_its_length_for_that_step_only(tmp_path, corpus):
    """SGD by hand: p <- p - (lr * length / window) g, the carried state from window to window."""
    cfg = small(corpus, optimizer="sgd", lr=0.5, clip=0.0, steps=4)
    outcome = train.train(cfg, tmp_path / "run")
    task = tasks.make(cfg)
    net = building.build_network(cfg, task.input_size, task.output_size)
    params, state, lrs = dict(net.params), None, []
    for i in range(4):
        batch, _ = task.batch(i, 0)
        r = engine.loss_and_grads(params, net.arch, state=state, **batch)
        lrs.append(cfg.lr * task.window_length(i, 0) / cfg.window)
        params = {k: p - lrs[-1] * r.grads[k] for k, p in params.items()}
        state = r.state
    assert outcome.progress.step == 4 and len(set(task.epoch_windows(0)[1][:4])) > 1
    got = opening.Run(tmp_path / "run").load()[0]
    for k in params:
        np.testing.assert_allclose(got[k], params[k], rtol=1e-12, atol=1e-14, err_msg=k)
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in log if "lr" in r]
    assert [r["lr"] for r in steps] == lrs                              # from --lr each step: never compounded
    assert [r["window_length"] for r in steps] == task.epoch_windows(0)[1][:4]


def test_epochs_budget_ends_at_an_epoch_s_end(tmp_path, corpus):
    cfg = small(corpus, steps=None, epochs=2, eval_every=1000)
    task = tasks.make(cfg)
    first, second = task.epoch_steps(0), task.epoch_steps(1)
    assert first != second                                  # this corpus and seed: the epochs differ in length
    assert opening.total_steps(cfg, task) == first + second
    assert opening.total_steps(cfg.replace(epochs=1.5), task) == first + -(-second // 2)
    out = train.train(cfg, tmp_path / "run")
    assert (out.progress.step, out.progress.epoch, out.progress.window) == (first + second, 2, 0)
    assert out.progress.tokens == 2 * (len(task.stream) - 1) * cfg.batch     # every target, twice


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, corpus):
    cfg = small(corpus, steps=None, epochs=2.5, dropout=0.2, optimizer="sgd", lr=0.5, momentum=0.9)
    whole = train.train(cfg, tmp_path / "whole")
    stop_at = tasks.make(cfg).epoch_steps(0) - 1                        # the next epoch's draws come after it
    assert train.train(cfg, tmp_path / "split", on_step=lambda p: p.step == stop_at).progress.step == stop_at
    resumed = train.train(cfg, tmp_path / "split", resume=True)
    assert resumed.progress == whole.progress.__class__(**{**whole.progress.__dict__,
                                                           "elapsed": resumed.progress.elapsed})
    (a, meta_a), (b, meta_b) = (files.load_arrays(os.path.join(tmp_path / d, "checkpoint.safetensors"))
                                for d in ("whole", "split"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    strip = lambda d: [{k: v for k, v in json.loads(line).items() if k not in ("tokens_per_s", "elapsed")}  # noqa: E731
                       for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
    assert strip("whole") == strip("split")


def test_sigkill_then_resume_is_bit_for_bit(tmp_path, corpus):
    """As test_kill_resume, one kill after a checkpoint mid-training: the resumed run equals an
    uninterrupted one, arrays, checkpoint metadata and metrics.jsonl."""
    options = ["--data", corpus, "--steps", "60", "--hidden", "8", "--layers", "1", "--embedding", "4", "--batch",
               "3", "--window", "6", "--variable-window", "--eval-every", "3", "--eval-batch", "2", "--log-every",
               "1", "--dtype", "float64", "--dropout", "0.2", "--optimizer", "sgd", "--lr", "0.5"]

    def launch(out, *extra):
        with open(tmp_path / f"{out}.err", "a") as err:
            return subprocess.Popen([sys.executable, "-m", "bptt", "train", "--out", str(tmp_path / out), *extra],
                                    stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path)

    assert launch("reference", *options).wait(timeout=120) == 0
    for attempt in range(5):                          # a kill that came too late (the run done) is tried again
        run = tmp_path / f"killed{attempt}"
        proc, metrics = launch(run.name, *options), run / "metrics.jsonl"
        while proc.poll() is None and not (metrics.exists() and metrics.read_text().count("\n") >= 8):
            time.sleep(0.001)                         # eight records: past the checkpoints of steps 3 and 6
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        killed_at = files.load_arrays(os.path.join(run, "checkpoint.safetensors"))[1]["step"]
        if proc.returncode == -signal.SIGKILL and killed_at < 60:
            break
    else:
        pytest.fail("no kill landed while training ran")
    resumed = launch(run.name, "--resume")
    assert resumed.wait(timeout=120) == 0, (tmp_path / f"{run.name}.err").read_text()
    for name in ("checkpoint.safetensors", "best.safetensors"):
        (a, meta_a), (b, meta_b) = (files.load_arrays(os.path.join(d, name)) for d in (tmp_path / "reference", run))
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), (name, killed_at)
        assert {k: v for k, v in meta_a.items() if k != "elapsed"} == \
               {k: v for k, v in meta_b.items() if k != "elapsed"}
    strip = lambda d: [{k: v for k, v in json.loads(line).items() if k not in ("tokens_per_s", "elapsed")}  # noqa: E731
                       for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert strip(tmp_path / "reference") == strip(run)


@pytest.mark.parametrize("argv, message", [
    (["--task", "classify", "--data", "DATA"],
     "error: --variable-window: applies to --task lm only; got True with task='classify'\n"),
    (["--window", "6", "--backprop", "9"],
     "error: --backprop: --variable-window draws each window's length and backpropagates that window whole "
     "(k2 = k1, as AWD-LSTM); leave --backprop 9 out\n"),
])
def test_refused_where_it_does_not_apply(tmp_path, capsys, argv, message):
    data = tmp_path / "labels.tsv"
    data.write_text("good film\tpos\nbad film\tneg\n" * 3)
    argv = [str(data) if a == "DATA" else a for a in argv]
    assert main(["train", "--out", str(tmp_path / "run"), "--variable-window", *argv]) == 2
    assert capsys.readouterr().err == message
    assert not (tmp_path / "run").exists()
