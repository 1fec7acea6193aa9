"""bptt.load(RUN_DIR): a run made by `bptt train`, from Python: its network (best or last
checkpoint), vocabulary and config; score() equals the engine's cross-entropy on the text, sample()
equals generate.sample with the same seed (and beam search's), a session continues one text;
classifiers and bad arguments are refused by name."""

import numpy as np
import pytest

import bptt
from bptt.cli import main
from bptt.model import engine
from bptt.reference.losses import log_softmax
from bptt.training import generate

SMALL = ["--hidden", "12", "--layers", "1", "--embedding", "6", "--eval-every", "10"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "char"
    assert main(["train", str(path), "--steps", "20", *SMALL]) == 0
    return path


def test_load_gives_the_runs_network_vocabulary_and_step(run_dir):
    best, last = bptt.load(run_dir), bptt.load(run_dir, checkpoint="last")
    assert last.step == 20 and best.step in (10, 20) and best.config.hidden == 12
    assert best.vocab.size == best.network.arch.input_size == 65 and best.labels is None
    text = "ROMEO:\nIs the day so young?\n"
    ids = best.vocab.encode(list(text))
    z, _ = best.network.forward(ids[:-1, None])
    logp = log_softmax(z[:, 0].astype(np.float64))[np.arange(len(ids) - 1), ids[1:]]
    s = best.score(text)
    assert s["tokens"] == len(text) - 1 and abs(s["loss"] + logp.mean()) < 1e-6
    assert abs(s["perplexity"] - np.exp(s["loss"])) < 1e-9
    drawn = generate.sample(best.network.params, best.network.arch, best.vocab.encode(list("ROMEO:")), 30,
                            np.random.default_rng(4), 0.8)
    assert best.sample("ROMEO:", 30, seed=4, temperature=0.8) == "".join(best.vocab.decode(drawn))
    assert len(best.sample("", 10)) == 10                      # no prime: from a line start


def test_a_word_level_sample_continues_its_prime_as_text(tmp_path):
    """Words set apart by spaces, <eos> a line end; the prime's last line goes on unless it ends
    with a line end (the prime's ids then end with <eos>); the same ids as generate.sample."""
    text = tmp_path / "words.txt"
    text.write_text("the cat sat on the mat\nthe rat ran\n" * 30)
    assert main(["train", str(tmp_path / "w"), "--data", str(text), "--level", "word", "--steps", "6", *SMALL]) == 0
    run = bptt.load(tmp_path / "w")
    net, vocab = run.network, run.vocab
    for prime, ids in (("the cat", ["the", "cat"]), ("the cat\n", ["the", "cat", "<eos>"])):
        drawn = vocab.decode(generate.sample(net.params, net.arch, vocab.encode(ids), 12, np.random.default_rng(1)))
        expected, line_start = "", prime.endswith("\n")
        for token in drawn:
            expected += "\n" if token == "<eos>" else token if line_start else " " + token
            line_start = token == "<eos>"
        assert run.sample(prime, 12, seed=1) == expected
    assert "<eos>" not in run.sample("", 20) and "  " not in run.sample("", 20)


def test_bad_arguments_and_classifiers_are_refused(run_dir, tmp_path):
    with pytest.raises(ValueError, match="checkpoint: expected 'best' or 'last', got 'first'"):
        bptt.load(run_dir, checkpoint="first")
    run = bptt.load(run_dir)
    with pytest.raises(ValueError, match=r"text: 1 token\(s\); a score needs at least 2"):
        run.score("R")
    with pytest.raises(ValueError, match="not in the training vocabulary|characters"):
        run.score("§§§")
    data = tmp_path / "labelled.tsv"
    data.write_text("".join(f"the cat sat {i}\t{'yes' if i % 2 else 'no'}\n" for i in range(30)))
    assert main(["train", str(tmp_path / "cls"), "--task", "classify", "--data", str(data), "--steps", "4",
                 *SMALL]) == 0
    cls = bptt.load(tmp_path / "cls")
    assert cls.labels.size == 2 and cls.labels.decode([0, 1]) == ["no", "yes"]
    with pytest.raises(ValueError, match="score: the run holds a 'classify' model"):
        cls.score("the cat sat")
    with pytest.raises(ValueError, match="session: the run holds a 'classify' model; session needs a language model"):
        cls.session()
    assert engine.score(cls.network.params, cls.network.arch, cls.vocab.encode(list("the cat"))[:, None],
                        np.array([1]), target="last").count == 1


def test_beam_search_and_a_session_from_a_run(run_dir):
    """sample(beam=K) is generate's beam search read as text, beam=1 the greedy text; a session's
    second prompt continues the first's text as one sample of all of it would, with the seed's
    random numbers where the first left them; stop_at_line_end ends the text at its first line end."""
    run = bptt.load(run_dir)
    net, vocab = run.network, run.vocab
    ids = generate.sample(net.params, net.arch, vocab.encode(list("ROMEO:")), 25, None, beam=4)
    assert run.sample("ROMEO:", 25, beam=4) == "".join(vocab.decode(ids))
    assert run.sample("ROMEO:", 40, beam=1) == run.sample("ROMEO:", 40, greedy=True)
    session = run.session(seed=5, temperature=0.8)
    a = session.sample("ROMEO:\n", 30)
    b = session.sample("JULIET:\n", 30)
    assert session.text == "ROMEO:\n" + a + "JULIET:\n" + b
    rng = np.random.default_rng(5)
    rng.random(30)
    once = generate.sample(net.params, net.arch, vocab.encode(list("ROMEO:\n" + a + "JULIET:\n")), 30, rng, 0.8)
    assert b == "".join(vocab.decode(once))
    line = run.sample("ROMEO:\n", 300, seed=2, stop_at_line_end=True)
    assert line.endswith("\n") and line.count("\n") == 1
    assert run.sample("ROMEO:\n", 300, seed=2).startswith(line)
    with pytest.raises(ValueError, match="beam: searches for the most likely continuation, drawing nothing; "
                                         "temperature does not apply"):
        run.session(beam=2, temperature=0.5)
