"""engine.score, the forward-only evaluation: its sum of -log p equals loss_value's mean times the
positions counted (lengths, resets, many-to-one), both engines agree to round-off in float64,
including a vocabulary large enough for the fast readout to cut its work by classes."""

import numpy as np
import pytest

import bptt
from bptt.model import engine
from bptt.reference.losses import log_softmax

ENGINES = ("fast", "numpy")


def nets(cell, V, K, **kw):
    return [bptt.Network(cell, V, 6, K, num_layers=2, embedding_dim=4, seed=3, engine=e, **kw) for e in ENGINES]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("V", [11, 700])                    # 700: the fast readout cuts by classes (K V, float64)
def test_every_step_with_lengths_and_resets(cell, V):
    rng = np.random.default_rng(1)
    T, B = 7, 5
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    lengths, reset = np.array([7, 3, 5, 1, 6]), rng.random((T, B)) < 0.2
    state = (rng.standard_normal((2, B, 6)), rng.standard_normal((2, B, 6)))
    state = state if cell == "lstm" else state[0]
    scores = []
    for net in nets(cell, V, V):
        s = engine.score(net.params, net.arch, x, y, state, lengths=lengths, reset=reset)
        mean = engine.loss_value(net.params, net.arch, x, y, state, lengths=lengths, reset=reset)
        assert s.count == lengths.sum()
        assert abs(s.total / s.count - mean) < 1e-12 * mean
        z, final = engine.logits(net.params, net.arch, x, state, lengths, reset)
        counted = np.arange(T)[:, None] < lengths
        assert s.correct == int((z.argmax(-1) == y)[counted].sum())
        for a, b in zip(*(p if isinstance(p, tuple) else (p,) for p in (s.state, final)), strict=True):
            assert np.array_equal(a, b)
        scores.append(s)
    assert abs(scores[0].total - scores[1].total) < 1e-12 * scores[1].total
    assert scores[0].correct == scores[1].correct


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_last_step_of_each_length(cell):
    rng = np.random.default_rng(2)
    T, B, K = 9, 6, 3
    x, y, lengths = rng.integers(0, 20, (T, B)), rng.integers(0, K, B), np.array([9, 2, 4, 1, 9, 5])
    for net in nets(cell, 20, K):
        s = engine.score(net.params, net.arch, x, y, target="last", lengths=lengths)
        z, _ = engine.logits(net.params, net.arch, x, lengths=lengths)
        z_last = z[lengths - 1, np.arange(B)]
        logp = log_softmax(z_last)[np.arange(B), y]
        assert s.count == B and abs(s.total + logp.sum()) < 1e-12 * abs(logp.sum())
        assert s.correct == int((z_last.argmax(1) == y).sum())


def test_bad_targets_are_named():
    net = nets("lstm", 10, 10)[0]
    x = np.zeros((3, 2), np.int64)
    with pytest.raises(ValueError, match=r"y: expected class ids in \[0, 10\)"):
        engine.score(net.params, net.arch, x, np.full((3, 2), 10))
    with pytest.raises(ValueError, match="y: expected int class ids of shape"):
        engine.score(net.params, net.arch, x, np.zeros((3, 2)))


@pytest.mark.parametrize("engine_name", ENGINES)
def test_evaluating_gives_the_same_numbers_and_sampling_is_unchanged(engine_name):
    """engine.evaluating(params, arch) (the fast engine packs each weight once inside it) changes no
    number: logits of several windows inside it equal those outside, to the bit."""
    from bptt.training import generate

    net = bptt.Network("lstm", 30, 16, 30, num_layers=2, embedding_dim=8, seed=1, engine=engine_name)
    x = np.random.default_rng(0).integers(0, 30, (6, 4))
    outside = [engine.logits(net.params, net.arch, x[i:i + 2])[0] for i in range(0, 6, 2)]
    with engine.evaluating(net.params, net.arch):
        inside = [engine.logits(net.params, net.arch, x[i:i + 2])[0] for i in range(0, 6, 2)]
    assert all(np.array_equal(a, b) for a, b in zip(inside, outside, strict=True))
    a = generate.sample(net.params, net.arch, [1, 2, 3], 12, np.random.default_rng(5))
    z, state = engine.logits(net.params, net.arch, np.array([[1], [2], [3]]))
    first = np.argmax(z[-1, 0])
    greedy = generate.sample(net.params, net.arch, [1, 2, 3], 3, np.random.default_rng(5), greedy=True)
    assert greedy[0] == first and len(a) == 12
