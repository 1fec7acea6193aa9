"""bptt train --bidirectional and --learn-init-state from the command line: a classifier and a
long-range problem train, resume exactly, load with bptt.load; the language model refuses them."""

import json

import numpy as np
import pytest

import bptt
from bptt.cli import main
from bptt.files import load_arrays

LINES = ["good fine nice", "bad awful poor", "nice good", "poor bad bad", "fine", "awful"] * 8


@pytest.fixture
def labelled(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text("".join(f"{text}\t{'pos' if i % 2 == 0 else 'neg'}\n" for i, text in enumerate(LINES)))
    return path


def train(*argv):
    return main(["train", "--hidden", "8", "--layers", "2", "--embedding", "4", "--batch", "4", "--eval-every", "5",
                 "--log-every", "5", "--dtype", "float64", *argv])


def resumed_equals_whole(tmp_path, options, steps=12):
    """A run of `steps` steps, and one stopped at half of them and resumed: the same checkpoint, bit
    for bit. Returns the whole run's directory."""
    whole, part = str(tmp_path / "whole"), str(tmp_path / "part")
    assert train("--out", whole, "--steps", str(steps), *options) == 0
    assert train("--out", part, "--steps", str(steps // 2), *options) == 0
    assert main(["train", "--out", part, "--resume", "--steps", str(steps)]) == 0
    a, _ = load_arrays(f"{whole}/checkpoint.safetensors")
    b, _ = load_arrays(f"{part}/checkpoint.safetensors")
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    return whole


def test_bidirectional_classifier_trains_resumes_and_loads(tmp_path, labelled, capsys):
    options = ["--task", "classify", "--data", str(labelled), "--level", "word", "--bidirectional",
               "--learn-init-state", "--cell", "gru"]
    whole = resumed_equals_whole(tmp_path, options, steps=20)
    said = capsys.readouterr()
    assert "training a bidirectional gru 2x8 classifier" in said.out + said.err
    run = bptt.load(whole)
    assert run.network.arch.bidirectional and run.network.arch.learn_init_state
    assert np.any(run.network.params["init.h"])                     # trained away from zero
    assert "l1_reverse.U" in run.network.params
    assert main(["eval", whole, "--data", str(labelled)]) == 0


def test_bidirectional_long_range_problem(tmp_path, capsys):
    run = str(tmp_path / "r")
    assert train("--out", run, "--task", "adding", "--length", "12", "--test-size", "16", "--embedding", "0",
                 "--steps", "5", "--bidirectional", "--learn-init-state") == 0
    net = bptt.load(run).network
    assert net.arch.bidirectional and net.params["V"].shape == (1, 16)


@pytest.mark.parametrize("flag", ["--bidirectional", "--learn-init-state"])
def test_a_language_model_refuses_them(tmp_path, flag, capsys):
    assert train("--out", str(tmp_path / "r"), flag) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag}: applies to whole sequences") and "task='lm'" in err
    assert not (tmp_path / "r").exists()


def test_projected_lstm_language_model_trains_resumes_and_loads(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 20)
    options = ["--data", str(text), "--proj-size", "5", "--window", "6", "--batch", "3", "--tie"]
    whole = resumed_equals_whole(tmp_path, ["--embedding", "5", *options])
    said = capsys.readouterr()
    assert "training lstm 2x8 projected to 5" in said.out + said.err
    net = bptt.load(whole).network
    assert net.params["l1.R"].shape == (5, 8) and net.params["l1.U"].shape == (32, 5)
    assert "rnn.weight_hr_l1" in net.torch_state_dict()
    assert main(["sample", whole, "--tokens", "5"]) == 0


def test_adaptive_softmax_language_model(tmp_path, capsys):
    """--adaptive-softmax: the vocabulary most frequent first, the readout PyTorch's
    AdaptiveLogSoftmaxWithLoss; it trains, resumes exactly, evaluates and samples."""
    text = tmp_path / "words.txt"
    text.write_text("the cat sat on the mat and the dog sat on the log\nthe end of the tale\n" * 30)
    options = ["--data", str(text), "--level", "word", "--adaptive-softmax", "3,8", "--div-value", "2", "--window", "6",
               "--batch", "3"]
    whole = resumed_equals_whole(tmp_path, options)
    run = bptt.load(whole)
    assert run.vocab.tokens[0] == "the" and run.network.arch.cutoffs == (3, 8)
    assert "head.tail.1.1.weight" in run.network.torch_state_dict()
    capsys.readouterr()
    assert main(["eval", whole, "--data", str(text), "--json"]) == 0
    assert main(["sample", whole, "--tokens", "5"]) == 0
    assert train("--out", str(tmp_path / "big"), *options[:4], "--adaptive-softmax", "3,50") == 2
    assert "--adaptive-softmax: the cutoffs must be below the vocabulary's size, 13" in capsys.readouterr().err


def test_a_frequency_vocabulary_out_of_order_is_named(tmp_path, capsys):
    text = tmp_path / "words.txt"
    text.write_text("the cat sat on the mat and the dog sat on the log\n" * 20)
    run = str(tmp_path / "r")
    assert train("--out", run, "--data", str(text), "--level", "word", "--adaptive-softmax", "3", "--steps", "2",
                 "--window", "6", "--batch", "3") == 0
    vocab = json.loads((tmp_path / "r" / "vocab.json").read_text())
    vocab["tokens"][0], vocab["tokens"][1] = vocab["tokens"][1], vocab["tokens"][0]
    (tmp_path / "r" / "vocab.json").write_text(json.dumps(vocab))
    capsys.readouterr()
    assert main(["eval", run, "--data", str(text)]) == 2
    err = capsys.readouterr().err
    assert "vocab.json" in err and "expected the most frequent first" in err and "(entries 1 and 2)" in err


def test_awd_regularisers_train_and_resume_exactly(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 20)
    options = ["--data", str(text), "--window", "6", "--batch", "3", "--weight-drop", "0.5", "--dropout-input", "0.4",
               "--dropout-hidden", "0.3", "--dropout-output", "0.4", "--dropout-embedding", "0.1", "--alpha", "2",
               "--beta", "1"]
    whole = resumed_equals_whole(tmp_path, options)
    plain = str(tmp_path / "plain")
    assert train("--out", plain, "--steps", "12", *options[:6]) == 0
    a, _ = load_arrays(f"{whole}/checkpoint.safetensors")
    c, _ = load_arrays(f"{plain}/checkpoint.safetensors")
    assert not np.array_equal(a["param/l0.U"], c["param/l0.U"])            # they change training
