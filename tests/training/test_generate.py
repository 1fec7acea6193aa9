import numpy as np
import pytest

import bptt
from bptt.training import generate


def test_distribution_temperature_top_k_top_p():
    z = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    assert np.allclose(generate.distribution(z), [0.5, 0.3, 0.15, 0.05])
    assert np.allclose(generate.distribution(z, top_k=2), [0.625, 0.375, 0, 0])
    assert np.allclose(generate.distribution(z, top_p=0.75), [0.625, 0.375, 0, 0])    # 0.5 + 0.3 >= 0.75
    assert np.allclose(generate.distribution(z, top_p=0.79), [0.625, 0.375, 0, 0])
    assert np.allclose(generate.distribution(z, top_p=0.81), [0.5, 0.3, 0.15, 0] / np.float64(0.95))
    cold = generate.distribution(z, temperature=0.5)
    assert np.allclose(cold, np.array([0.5, 0.3, 0.15, 0.05]) ** 2 / np.sum(np.array([0.5, 0.3, 0.15, 0.05]) ** 2))
    with pytest.raises(ValueError, match="temperature: expected a positive number"):
        generate.distribution(z, temperature=0)
    with pytest.raises(ValueError, match="top_p: expected a probability"):
        generate.distribution(z, top_p=1.5)


def test_sampling_is_reproducible_and_greedy_is_deterministic():
    net = bptt.Network("gru", 7, 8, 7, embedding_dim=4, seed=1)
    a = generate.sample(net.params, net.arch, [1, 2], 50, np.random.default_rng(5))
    b = generate.sample(net.params, net.arch, [1, 2], 50, np.random.default_rng(5))
    c = generate.sample(net.params, net.arch, [1, 2], 50, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 7
    g = generate.sample(net.params, net.arch, [1, 2], 20, None, greedy=True)
    # greedy by hand: feed the argmax back, one step at a time
    z, state = net.forward(np.array([[1], [2]]))
    for i in range(20):
        assert g[i] == z[-1, 0].argmax()
        z, state = net.forward(np.array([[g[i]]]), state)


def test_sampled_frequencies_follow_the_distribution():
    net = bptt.Network("rnn", 3, 2, 3, seed=0)
    net.params["V"][:] = 0
    net.params["c"][:] = np.log([0.6, 0.3, 0.1])
    ids = generate.sample(net.params, net.arch, [0], 20000, np.random.default_rng(0))
    freq = np.bincount(ids, minlength=3) / len(ids)
    assert np.allclose(freq, [0.6, 0.3, 0.1], atol=0.015)
    only_top = generate.sample(net.params, net.arch, [0], 200, np.random.default_rng(0), top_k=1)
    assert set(only_top) == {0}


def test_word_samples_become_lines():
    from bptt.training.data import Detokenizer

    def text(tokens, level):
        shown = Detokenizer(level)
        return "".join(shown.next(token) for token in tokens)

    assert text(["to", "be", "<eos>", "or", "<eos>", "<eos>", "not"], "word") == "to be\nor\n\nnot"
    assert text(list("ab\nc"), "char") == "ab\nc"


def test_prime_ids_read_a_prime_as_training_reads_text():
    """Words with <eos> at each line end, the last line left open unless the prime ends with one; no
    prime: a line start (the first token of a character vocabulary without a line end); an unknown
    character is named. bptt sample and bptt.load(...).sample both start from these."""
    from bptt.training import data

    words = data.Vocab(("<eos>", "<unk>", "cat", "the"), "word")
    ids, shown = generate.prime_ids(words, "the cat\nthe", "word")
    assert words.decode(ids) == ["the", "cat", "<eos>", "the"] and shown == "the cat\nthe"
    assert words.decode(generate.prime_ids(words, "the cat\n", "word")[0]) == ["the", "cat", "<eos>"]
    assert generate.prime_ids(words, "   ", "word") == (words.encode(["<eos>"]), "")
    chars = data.Vocab(("a", "b"), "char")
    assert chars.decode(generate.prime_ids(chars, "", "char")[0]) == ["a"]
    with pytest.raises(ValueError, match="prime: characters not in the training vocabulary: 'z'"):
        generate.prime_ids(chars, "az", "char")
