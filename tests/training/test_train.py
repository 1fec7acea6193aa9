"""Training runs: exact resume, atomic checkpoints under a crash, divergence, the schedule."""

import json
import os

import numpy as np
import pytest

from bptt import files
from bptt.training import opening, tasks, train
from bptt.training.config import TrainConfig

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 8


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return str(path)


def small(corpus, **kw):
    base = dict(data=corpus, hidden=12, layers=2, embedding=6, batch=4, window=8, steps=14, eval_every=5,
                log_every=2, eval_batch=2, dtype="float64")
    return TrainConfig(**(base | kw))


def arrays(run_dir):
    return files.load_arrays(os.path.join(run_dir, "checkpoint.safetensors"))


@pytest.mark.parametrize("kw", [
    dict(),
    dict(dropout=0.2, schedule="plateau", optimizer="sgd", lr=0.5, momentum=0.9, nesterov=True),
    dict(cell="gru", backprop=13, schedule="cosine", warmup=3, clip=0.5, clip_mode="value", dtype="float32"),
    dict(cell="rnn", nonlinearity="relu", recurrent_init="identity", optimizer="adagrad", lr=0.05, clip_dh=0.1),
    dict(separator="\n\n", backprop=11, tie=True, embedding=12, dropout=0.1),
    dict(recompute_every=3, cell="gru", flow_every=4),
    dict(precision="bf16", dtype="float32", dropout=0.1),          # bf16 products, float32 checkpoint
])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, corpus, kw):
    cfg = small(corpus, **kw)
    whole = train.train(cfg, tmp_path / "whole")
    assert whole.status == "done" and whole.progress.step == 14

    stopped = train.train(cfg, tmp_path / "split", on_step=lambda p: p.step == 7)
    assert stopped.status == "interrupted" and stopped.progress.step == 7
    resumed = train.train(cfg, tmp_path / "split", resume=True)
    assert resumed.progress.step == 14

    a, meta_a = arrays(tmp_path / "whole")
    b, meta_b = arrays(tmp_path / "split")
    assert a.keys() == b.keys()
    for name in a:                                             # parameters, optimiser and carried state
        assert np.array_equal(a[name], b[name]), name          # bit for bit
    assert meta_a["rng"] == meta_b["rng"] and meta_a["window"] == meta_b["window"]
    log_a = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    log_b = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    strip = lambda log: [{k: v for k, v in r.items() if k not in ("tokens_per_s", "elapsed")} for r in log]  # noqa: E731
    assert strip(log_a) == strip(log_b)                        # no record lost or written twice


def test_a_crash_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, corpus, monkeypatch):
    cfg = small(corpus)
    saves = []
    real_replace = os.replace

    def crash_on_third_checkpoint(src, dst):
        if str(dst).endswith("checkpoint.safetensors"):
            saves.append(dst)
            if len(saves) == 3:
                raise OSError("simulated crash during the rename")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_third_checkpoint)
    with pytest.raises(files.FileError, match="checkpoint.safetensors: cannot write .simulated crash"):
        train.train(cfg, tmp_path / "run")
    monkeypatch.setattr(os, "replace", real_replace)
    params, opt_state, carried, progress = opening.Run(tmp_path / "run").load()
    assert progress.step == 5                                   # the second save (initial, step 5) survived
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    resumed = train.train(cfg, tmp_path / "run", resume=True)
    assert resumed.progress.step == 14
    train.train(cfg, tmp_path / "whole")
    a, b = arrays(tmp_path / "whole")[0], arrays(tmp_path / "run")[0]
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_divergence_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, corpus):
    cfg = small(corpus, cell="rnn", nonlinearity="relu", optimizer="sgd", lr=1e10, clip=0, steps=50)
    with pytest.raises(train.Diverged, match=r"diverged at step \d+: loss .* The last good checkpoint \(step \d+\)"):
        train.train(cfg, tmp_path / "run")
    params, _, _, progress = opening.Run(tmp_path / "run").load()
    assert all(np.all(np.isfinite(v)) for v in params.values())


def test_learning_reduces_the_validation_loss_below_the_baselines(tmp_path, corpus):
    cfg = small(corpus, steps=150, eval_every=50, lr=1e-2, hidden=32)
    out = train.train(cfg, tmp_path / "run")
    run = opening.Run(tmp_path / "run")
    task = run.task()
    baselines = task.baselines()
    assert out.valid_loss < baselines["unigram"] - 0.5 < baselines["uniform"]
    valid = [r for r in opening.Run(tmp_path / "run").records() if r.get("split") == "valid"]
    best = min(valid, key=lambda r: r["loss"])                # best.safetensors is the best record's model
    assert (out.best_valid, out.progress.best_step) == (best["loss"], best["step"]) and len(valid) == 3
    net, meta = run.network("best")
    loss = task.evaluate(net.params, net.arch)["loss"]
    assert loss == pytest.approx(out.best_valid, rel=1e-12) and meta["step"] == out.progress.best_step


def test_existing_runs_and_resume_errors(tmp_path, corpus):
    cfg = small(corpus, steps=2)
    with pytest.raises(ValueError, match="--resume: .* does not exist; there is no run to resume"):
        train.train(cfg, tmp_path / "run", resume=True)
    train.train(cfg, tmp_path / "run")
    with pytest.raises(ValueError, match="--out: .* already holds a run; pass --resume"):
        train.train(cfg, tmp_path / "run")


def test_word_level(tmp_path, corpus):
    cfg = small(corpus, level="word", steps=6, window=5, batch=2)
    train.train(cfg, tmp_path / "run")
    vocab = opening.Run(tmp_path / "run").vocab()
    assert vocab.level == "word" and "<eos>" in vocab.index and "<unk>" in vocab.index
    assert "Citizen:" in vocab.index


def test_config_errors():
    with pytest.raises(ValueError, match="backprop: expected k2 >= window"):
        TrainConfig(window=10, backprop=5)
    with pytest.raises(ValueError, match="tie: needs embedding == hidden"):
        TrainConfig(tie=True)
    with pytest.raises(ValueError, match="dropout: expected a probability"):
        TrainConfig(dropout=1.0)
    with pytest.raises(ValueError, match="config: unknown keys"):
        TrainConfig.from_json({"hiden": 3})


def write_labeled(path, n, seed=0):
    """Sequences of the seeds' words; the label says whether 'rat' occurs (a many-to-one task)."""
    rng = np.random.default_rng(seed)
    words = ["cat", "mat", "rat", "sat", "hat"]
    lines = []
    for _ in range(n):
        seq = list(rng.choice(words, size=rng.integers(2, 8)))
        lines.append(f"{' '.join(seq)}\t{'yes' if 'rat' in seq else 'no'}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_sequence_classification_learns_and_resumes(tmp_path):
    data = write_labeled(tmp_path / "train.tsv", 300)
    cfg = TrainConfig(task="classify", data=data, level="word", cell="gru", hidden=16, layers=1, embedding=8,
                      batch=16, steps=120, eval_every=40, lr=2e-2, dtype="float64")
    out = train.train(cfg, tmp_path / "run")
    run = opening.Run(tmp_path / "run")
    task = run.task()
    assert task.labels.labels == ("no", "yes") and run.labels() == task.labels
    net, _ = run.network("last")
    result = task.evaluate(net.params, net.arch)
    assert result["accuracy"] > 0.9 > task.baselines()["majority_accuracy"]
    assert result["loss"] == out.valid_loss
    stopped = train.train(cfg, tmp_path / "split", on_step=lambda p: p.step == 50)
    assert stopped.status == "interrupted"
    train.train(cfg, tmp_path / "split", resume=True)
    a, b = arrays(tmp_path / "run")[0], arrays(tmp_path / "split")[0]
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_the_seeds_toy_example_as_a_file(tmp_path):
    path = tmp_path / "seeds.tsv"
    path.write_text("cat mat rat\t1\ncat mat rat rat rat mat\t1\nmat mat cat\t0\n")
    cfg = TrainConfig(task="classify", data=str(path), valid=str(path), level="word", cell="rnn", hidden=8,
                      layers=1, embedding=0, batch=3, steps=200, eval_every=100, lr=0.05, dtype="float64")
    out = train.train(cfg, tmp_path / "run")
    run = opening.Run(tmp_path / "run")
    net, _ = run.network("last")
    assert run.task().evaluate(net.params, net.arch)["accuracy"] == 1.0
    assert out.valid_loss < 0.1


def test_documents_restart_each_stream():
    tokens, starts = tasks.documents("ab\n\ncde\n\nf", "char", "\n\n")
    assert tokens == list("abcdef")
    assert list(starts) == [True, False, True, False, False, True]
    tokens, starts = tasks.documents("a b\nc\n\nd\n", "word", "\n\n")
    assert tokens == ["a", "b", "<eos>", "c", "<eos>", "d", "<eos>"] and list(starts) == [1, 0, 0, 0, 0, 1, 0]


def test_ctrl_c_saves_and_stops(tmp_path, corpus):
    import signal

    cfg = small(corpus, steps=14)

    def press_ctrl_c(progress):
        if progress.step == 6:
            os.kill(os.getpid(), signal.SIGINT)             # delivered to the handler train() installed
        return False

    out = train.train(cfg, tmp_path / "run", on_step=press_ctrl_c)
    assert out.status == "interrupted" and out.progress.step == 6
    assert opening.Run(tmp_path / "run").load()[3].step == 6
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler      # restored


@pytest.mark.parametrize("kw", [dict(), dict(dropout=0.2, flow_every=3)])
def test_recomputing_trains_exactly_as_keeping_everything(tmp_path, corpus, kw):
    """The same run with --recompute-every (with dropout and flow records too): the same parameters,
    to round-off."""
    a = train.train(small(corpus, steps=8, **kw), tmp_path / "a")
    b = train.train(small(corpus, steps=8, recompute_every=3, **kw), tmp_path / "b")
    pa, pb = arrays(tmp_path / "a")[0], arrays(tmp_path / "b")[0]
    for k in pa:
        if k.startswith("param/"):
            assert np.allclose(pa[k], pb[k], rtol=1e-10, atol=1e-13), k
    assert a.valid_loss == pytest.approx(b.valid_loss, rel=1e-10)


@pytest.mark.parametrize("kw", [dict(level="word", optimizer="sgd", lr=0.5, clip=0.1),
                                dict(level="word", optimizer="sgd", lr=0.5, clip=0.1, clip_mode="param"),
                                dict(optimizer="sgd", lr=0.5, dropout_embedding=0.2, clip=0.1),
                                dict(level="word", tie=True, embedding=12, optimizer="sgd", lr=0.5)])
def test_passing_over_the_embeddings_nonzero_rows_trains_as_the_whole_gradient(tmp_path, corpus, monkeypatch, kw):
    """train.nonzero_rows hands clipping and the optimiser the window's tokens, the rows outside which dE
    is zero (None when E is tied to the readout): the same run, to round-off, as without them."""
    seen = []
    real = train.nonzero_rows
    monkeypatch.setattr(train, "nonzero_rows", lambda *a: seen.append(real(*a)) or seen[-1])
    a = train.train(small(corpus, steps=8, **kw), tmp_path / "a")
    assert all((r is None) == bool(kw.get("tie")) for r in seen) and len(seen) == 8
    monkeypatch.setattr(train, "nonzero_rows", lambda *a: None)
    b = train.train(small(corpus, steps=8, **kw), tmp_path / "b")
    pa, pb = arrays(tmp_path / "a")[0], arrays(tmp_path / "b")[0]
    for k in pa:
        if k.startswith("param/"):
            assert np.allclose(pa[k], pb[k], rtol=1e-12, atol=1e-14), k
    assert a.valid_loss == pytest.approx(b.valid_loss, rel=1e-12)
