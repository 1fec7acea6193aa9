"""bptt train --gradient rtrl | uoro: online training with the influence carried across windows."""

import json
import os

import numpy as np
import pytest

from bptt import files
from bptt.cli import main
from bptt.training import building, forward_mode, tasks, train
from bptt.training.config import TrainConfig


@pytest.fixture
def corpus(text):
    """conftest's small text, as a file."""
    return text


def small(corpus, **kw):
    base = dict(data=corpus, hidden=6, layers=2, embedding=5, batch=2, window=3, steps=6, eval_every=4,
                log_every=1, eval_batch=2, dtype="float64", optimizer="sgd", lr=0.5)
    return TrainConfig(**(base | kw))


def checkpoint(run_dir):
    return files.load_arrays(os.path.join(run_dir, "checkpoint.safetensors"))


def params(run_dir):
    arrays, _ = checkpoint(run_dir)
    return {name: a for name, a in arrays.items() if name.startswith("param/")}


def largest_difference(a, b):
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[name] - b[name]))) for name in a)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_rtrl_carries_the_influence_across_windows(tmp_path, corpus, cell, monkeypatch):
    # the first window starts from (R0): its gradient, hence the first update, is BPTT's
    train.train(small(corpus, cell=cell, steps=1), tmp_path / "bptt1")
    train.train(small(corpus, cell=cell, steps=1, gradient="rtrl"), tmp_path / "rtrl1")
    assert largest_difference(params(tmp_path / "bptt1"), params(tmp_path / "rtrl1")) < 1e-12

    # later windows get credit from before their start: the runs part
    train.train(small(corpus, cell=cell), tmp_path / "bptt")
    train.train(small(corpus, cell=cell, gradient="rtrl"), tmp_path / "rtrl")
    assert largest_difference(params(tmp_path / "bptt"), params(tmp_path / "rtrl")) > 1e-6

    # ... and only through the carried influence: reset at every window, RTRL is BPTT over the window
    window = forward_mode.window
    monkeypatch.setattr(forward_mode, "window", lambda *args: window(*args[:-1], None))
    train.train(small(corpus, cell=cell, gradient="rtrl"), tmp_path / "reset")
    assert largest_difference(params(tmp_path / "bptt"), params(tmp_path / "reset")) < 1e-10


@pytest.mark.parametrize("gradient", ["rtrl", "uoro"])
@pytest.mark.parametrize("stop", [3, 5])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, corpus, gradient, stop):
    cfg = small(corpus, gradient=gradient, cell="lstm", steps=9, eval_every=4, optimizer="adam", lr=0.01)
    whole = train.train(cfg, tmp_path / "whole")
    assert whole.status == "done" and whole.progress.step == 9

    stopped = train.train(cfg, tmp_path / "split", on_step=lambda p: p.step == stop)
    assert stopped.status == "interrupted" and stopped.progress.step == stop
    saved, meta = checkpoint(tmp_path / "split")
    assert any(name.startswith("influence/") for name in saved)          # the influence, with the checkpoint
    assert (meta["signs"] is not None) == (gradient == "uoro")
    assert train.train(cfg, tmp_path / "split", resume=True).progress.step == 9

    a, meta_a = checkpoint(tmp_path / "whole")
    b, meta_b = checkpoint(tmp_path / "split")
    assert a.keys() == b.keys() and any(name.startswith("influence/") for name in a)
    for name in a:                                        # parameters, optimiser, state and influence
        assert np.array_equal(a[name], b[name]), name     # bit for bit
    assert meta_a["signs"] == meta_b["signs"] and meta_a["rng"] == meta_b["rng"]
    strip = lambda run: [{k: v for k, v in json.loads(line).items() if k not in ("tokens_per_s", "elapsed")}  # noqa: E731
                         for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert strip(tmp_path / "whole") == strip(tmp_path / "split")


def test_a_resume_that_forgets_the_influence_would_differ(tmp_path, corpus, monkeypatch):
    """The resume test above can fail: restarting the influence at (R0) on resume changes the numbers."""
    cfg = small(corpus, gradient="rtrl", steps=8)
    train.train(cfg, tmp_path / "whole")
    train.train(cfg, tmp_path / "split", on_step=lambda p: p.step == 4)
    monkeypatch.setattr(forward_mode, "from_arrays", lambda gradient, arrays: None)
    train.train(cfg, tmp_path / "split", resume=True)
    assert largest_difference(params(tmp_path / "whole"), params(tmp_path / "split")) > 0


def test_uoro_is_deterministic_for_a_seed(tmp_path, corpus):
    for name in ("a", "b"):
        train.train(small(corpus, gradient="uoro", cell="gru"), tmp_path / name)
    train.train(small(corpus, gradient="rtrl", cell="gru"), tmp_path / "rtrl")
    a, meta_a = checkpoint(tmp_path / "a")
    b, meta_b = checkpoint(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[name], b[name]) for name in a) and meta_a["signs"] == meta_b["signs"]
    assert largest_difference(params(tmp_path / "a"), params(tmp_path / "rtrl")) > 1e-8     # an estimate


def test_an_epoch_start_resets_the_influence(tmp_path, corpus, monkeypatch):
    """The influence restarts at (R0) whenever the carried state starts from zeros."""
    given = []
    window = forward_mode.window
    monkeypatch.setattr(forward_mode, "window", lambda *args: given.append(args[-1]) or window(*args))
    cfg = small(corpus, gradient="rtrl", steps=None, epochs=1.5, window=100, eval_every=100)
    train.train(cfg, tmp_path / "run")
    per_epoch = tasks.make(cfg).steps_per_epoch
    assert len(given) == int(np.ceil(1.5 * per_epoch)) and per_epoch > 2
    assert [i for i, influence in enumerate(given) if influence is None] == [0, per_epoch]


def test_an_old_config_without_gradient_loads_as_bptt(corpus):
    d = small(corpus).to_json()
    del d["gradient"]
    assert TrainConfig.from_json(d).gradient == "bptt"


@pytest.mark.parametrize("kw, message", [
    (dict(dropout=0.1), "gradient: 'rtrl' computes the gradient forward in time and does not support "
                        "dropout; got --dropout 0.1: leave it out .or use --gradient bptt."),
    (dict(weight_drop=0.5), "does not support AWD-LSTM's regularisers; got --weight-drop 0.5"),
    (dict(alpha=2.0), "does not support AWD-LSTM's regularisers .AR.; got --alpha 2.0"),
    (dict(recompute_every=2), "does not support recomputation .BPTT's memory saving.; got --recompute-every 2"),
    (dict(memory_budget="1GB"), "does not support recomputation .BPTT's memory saving.; got --memory-budget '1GB'"),
    (dict(flow_every=2), "does not support dL/dh_t records"),
    (dict(adaptive_softmax="10,20"), "does not support the adaptive softmax; got --adaptive-softmax '10,20'"),
    (dict(tie=True, embedding=6), "does not support a readout tied to the embedding; got --tie:"),
    (dict(proj_size=3), "does not support LSTM projections; got --proj-size 3"),
    (dict(clip_dh=0.5), "does not support clipping dL/dh_t"),
    (dict(variable_window=True), "does not support variable-length windows; got --variable-window:"),
    (dict(separator="\n\n"), "does not support state resets at document starts"),
    (dict(backprop=5), "does not support TBPTT.k1, k2. with k2 > k1"),
    (dict(cell="skip"), "does not support --cell skip; it runs rnn, gru and lstm"),
])
def test_what_it_refuses(corpus, kw, message):
    with pytest.raises(ValueError, match=message):
        small(corpus, gradient="rtrl", **kw)
    small(corpus, gradient="rtrl", backprop=3)                                    # k2 = k1 is no overlap


@pytest.mark.parametrize("task", ["adding", "classify"])
def test_a_task_other_than_a_language_model_is_refused(task):
    with pytest.raises(ValueError, match=f"gradient: applies to --task lm only; got 'rtrl' with task='{task}'"):
        TrainConfig(task=task, gradient="rtrl", data="labels.tsv")


def test_bidirectional_and_a_learned_initial_state_are_refused():
    for name in ("bidirectional", "learn_init_state"):
        with pytest.raises(ValueError, match=f"gradient: applies to --task lm only|{name}"):
            TrainConfig(task="adding", gradient="uoro", **{name: True})
        with pytest.raises(ValueError, match=f"{name}: applies to whole sequences"):
            TrainConfig(gradient="uoro", **{name: True})


def test_several_ranks_and_too_large_an_influence_are_refused(corpus, monkeypatch):
    cfg = small(corpus, gradient="rtrl")
    arch = building.build_network(cfg, 20, 20).arch
    with pytest.raises(ValueError, match="gradient: 'rtrl' runs in one process; got 2 MPI ranks"):
        forward_mode.check(cfg, arch, 2)
    forward_mode.check(cfg, arch, 1)
    monkeypatch.setattr(forward_mode, "available_memory", lambda: 1000)
    with pytest.raises(ValueError, match="gradient: 'rtrl' carries .* numbers of influence"):
        forward_mode.check(cfg, arch, 1)


def test_the_command_line(tmp_path, corpus, capsys):
    small_run = ["--hidden", "6", "--layers", "1", "--embedding", "5", "--batch", "2", "--window", "3",
                 "--eval-every", "4", "--eval-batch", "2", "--log-every", "1", "--steps", "5"]
    assert main(["train", "--data", corpus, "--out", str(tmp_path / "run"), "--gradient", "rtrl", *small_run]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["gradient"] == "rtrl"
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--steps", "7"]) == 0
    capsys.readouterr()

    assert main(["train", "--data", corpus, "--out", str(tmp_path / "bogus"), "--gradient", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "--gradient: invalid choice: 'bogus'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert main(["train", "--data", corpus, "--out", str(tmp_path / "d"), "--gradient", "uoro", "--dropout", "0.2",
                 *small_run]) == 2
    err = capsys.readouterr().err
    assert "--gradient: 'uoro' computes the gradient forward in time and does not support dropout" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "d").exists()
