"""bptt eval scores every token of the file (issue 21, item 1): by default as one stream with the
state carried through the whole text, equal to bptt.load(RUN).score; with --streams N as N parallel
columns, each from a zero state, and still every token after the first. Each is checked against
an independent computation: Network.forward over each stream at once, in float64, and the
log-softmax written out here."""

import copy
import json

import numpy as np
import pytest
from conftest import SMALL, TEXT

import bptt
from bptt.cli import main
from bptt.training import tasks

WORDS = "the cat sat on the mat\nthe rat sat on the cat\na mat is not a cat\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A character-level run (float32) and a word-level one with documents (float64)."""
    root = tmp_path_factory.mktemp("runs")
    (root / "text.txt").write_text(TEXT * 3)
    (root / "words.txt").write_text((WORDS + "\n") * 30)
    assert main(["train", "--data", str(root / "text.txt"), "--out", str(root / "char"), "--steps", "6",
                 "--dtype", "float32", *SMALL]) == 0
    assert main(["train", "--data", str(root / "words.txt"), "--out", str(root / "word"), "--steps", "4",
                 "--level", "word", "--separator", "\\n\\n", "--dtype", "float64", *SMALL]) == 0
    return root


def reference_loss(run, ids, streams=1, starts=None):
    """Mean -log p of every token after the first, from Network.forward in float64 over each
    column at once (text_columns' layout, written out again here), the state reset at starts."""
    net = copy.copy(run.network)
    net.dtype = np.dtype(np.float64)
    net.params = {k: v.astype(np.float64) for k, v in run.network.params.items()}
    n = len(ids)
    m, r = divmod(n - 1, streams)
    total, first = 0.0, 0
    for j in range(streams):
        last = first + m + (j < r)                                # the column predicts first+1 .. last
        cuts = [first] + [p for p in range(first + 1, last) if starts is not None and starts[p]] + [last]
        for a, b in zip(cuts, cuts[1:] + [None]):                 # a document is run from a zero state
            if b is None:
                break
            z, _ = net.forward(ids[a:b, None])
            z = z[:, 0].astype(np.float64)
            logp = z - z.max(1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(1, keepdims=True))
            total -= logp[np.arange(b - a), ids[a + 1:b + 1]].sum()
        first = last
    return total / (n - 1)


def eval_json(run_dir, path, *extra):
    assert main(["eval", str(run_dir), "--data", str(path), "--json", *extra]) == 0


@pytest.mark.parametrize("n", [2, 3, 40, 777, 5000, 10000])
def test_default_eval_equals_score_and_scores_every_token(runs, tmp_path, capsys, n):
    text = (TEXT * 200)[:n]
    path = tmp_path / "eval.txt"
    path.write_text(text)
    eval_json(runs / "char", path)
    result = json.loads(capsys.readouterr().out)
    run = bptt.load(runs / "char")
    score = run.score(text)
    assert result["tokens"] == score["tokens"] == n - 1 and result["streams"] == 1
    assert result["loss"] == pytest.approx(score["loss"], rel=1e-6)
    ids = run.vocab.encode(list(text))
    assert result["loss"] == pytest.approx(reference_loss(run, ids), rel=1e-5)      # the run is float32


@pytest.mark.parametrize("streams", [2, 3, 7, 32, 5000])
def test_streams_score_every_token_each_column_from_zeros(runs, tmp_path, capsys, streams):
    text = (TEXT * 10)[:1001]
    path = tmp_path / "eval.txt"
    path.write_text(text)
    eval_json(runs / "char", path, "--streams", str(streams))
    result = json.loads(capsys.readouterr().out)
    run = bptt.load(runs / "char")
    used = min(streams, 1000)
    assert result["tokens"] == 1000 and result["streams"] == used
    ids = run.vocab.encode(list(text))
    assert result["loss"] == pytest.approx(reference_loss(run, ids, used), rel=1e-5)
    assert run.score(text, streams=streams)["loss"] == pytest.approx(result["loss"], rel=1e-6)


def test_word_level_documents_reset_the_state_in_float64(runs, tmp_path, capsys):
    text = (WORDS + "\n") * 7 + "the cat is on the rat\n"
    path = tmp_path / "eval.txt"
    path.write_text(text)
    run = bptt.load(runs / "word")
    tokens, starts = tasks.documents(text, "word", "\n\n")
    ids = run.vocab.encode(tokens)
    for streams in (1, 4):
        eval_json(runs / "word", path, "--streams", str(streams))
        result = json.loads(capsys.readouterr().out)
        assert result["tokens"] == len(ids) - 1
        assert result["loss"] == pytest.approx(reference_loss(run, ids, streams, starts), rel=1e-12)


def test_the_output_says_how_the_text_was_read(runs, tmp_path, capsys):
    path = tmp_path / "eval.txt"
    path.write_text(TEXT)
    assert main(["eval", str(runs / "char"), "--data", str(path)]) == 0
    assert f"{len(TEXT) - 1:,} tokens scored as one stream, the state carried through the text" in \
        capsys.readouterr().out
    assert main(["eval", str(runs / "char"), "--data", str(path), "--streams", "4"]) == 0
    assert f"{len(TEXT) - 1:,} tokens scored in 4 parallel streams, each from a zero state" in capsys.readouterr().out


def test_text_columns_predict_each_token_once():
    for n in range(2, 40):
        for streams in range(1, n):
            index, tail = tasks.text_columns(n, streams)
            targets = np.concatenate([index[1:].T.reshape(-1), tail[1]])
            assert sorted(targets) == list(range(1, n))
            assert (index[:-1] + 1 == index[1:]).all() and (tail[0] + 1 == tail[1]).all()
