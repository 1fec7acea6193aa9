"""The public API: shapes, dtypes, state carrying, one-hot as a gather, padding, PyTorch names."""

import numpy as np
import pytest

import bptt
from bptt.lab import gradcheck
from bptt.model import engine
from bptt.reference.losses import log_softmax

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("rnn", "sigmoid"), ("gru", "tanh"), ("lstm", "tanh")]


def make(cell, nonlinearity="tanh", dtype=np.float64, **kw):
    sizes = dict(input_size=6, hidden_size=5, output_size=4, num_layers=2) | kw
    return bptt.Network(cell, nonlinearity=nonlinearity, dtype=dtype, seed=1, **sizes)


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
def test_shapes_and_dtypes(cell, nonlinearity):
    for dtype in (np.float32, np.float64):
        net = make(cell, nonlinearity, dtype)
        x = np.random.default_rng(0).integers(0, 6, (7, 3))
        logits, state = net.forward(x)
        assert logits.shape == (7, 3, 4) and logits.dtype == dtype
        parts = state if cell == "lstm" else (state,)
        assert len(parts) == (2 if cell == "lstm" else 1)
        assert all(s.shape == (2, 3, 5) and s.dtype == dtype for s in parts)
        loss, grads, state2 = net.loss_and_grads(x, x % 4)
        assert isinstance(loss, float)
        assert grads.keys() == net.params.keys()
        assert all(grads[k].shape == p.shape and grads[k].dtype == dtype for k, p in net.params.items())


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
def test_loss_is_the_cross_entropy_of_forward_logits(cell, nonlinearity):
    net = make(cell, nonlinearity)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 6, (5, 2)), rng.integers(0, 4, (5, 2))
    logits, state = net.forward(x)
    loss, _, state2 = net.loss_and_grads(x, y)
    logp = log_softmax(logits)
    expected = -np.take_along_axis(logp, y[..., None], axis=-1).mean()
    assert loss == pytest.approx(expected, rel=1e-14)
    for a, b in zip(gradcheck.state_parts(state), gradcheck.state_parts(state2), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
def test_carrying_the_state_splits_a_sequence_exactly(cell, nonlinearity):
    net = make(cell, nonlinearity)
    x = np.random.default_rng(2).integers(0, 6, (9, 2))
    whole, _ = net.forward(x)
    first, state = net.forward(x[:4])
    second, _ = net.forward(x[4:], state)
    assert np.allclose(np.concatenate([first, second]), whole, rtol=0, atol=1e-14)


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
def test_one_hot_ids_equal_explicit_one_hot_vectors(cell, nonlinearity):
    net = make(cell, nonlinearity)
    rng = np.random.default_rng(3)
    ids, y = rng.integers(0, 6, (5, 3)), rng.integers(0, 4, (5, 3))
    vectors = np.eye(6)[ids]                                # (T, B, V), the matrix bptt never builds
    loss_ids, g_ids, _ = net.loss_and_grads(ids, y)
    loss_vec, g_vec, _ = net.loss_and_grads(vectors, y)
    assert loss_ids == pytest.approx(loss_vec, rel=1e-14)
    for k in g_ids:
        assert np.allclose(g_ids[k], g_vec[k], rtol=1e-12, atol=1e-15), k


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
@pytest.mark.parametrize("target", ["every", "last"])
def test_padding_is_ignored_and_the_state_stops_at_each_length(cell, nonlinearity, target):
    net = make(cell, nonlinearity)
    rng = np.random.default_rng(4)
    T, B = 6, 3
    lengths = np.array([6, 2, 4])
    x = rng.integers(0, 6, (T, B))
    y = rng.integers(0, 4, (T, B) if target == "every" else (B,))
    pad = np.arange(T)[:, None] >= lengths
    x_junk, y_junk = x.copy(), y.copy()
    x_junk[pad] = -1                                        # out of range, but padding: never read
    if target == "every":
        y_junk[pad] = 99
    loss, grads, state = net.loss_and_grads(x, y, target=target, lengths=lengths)
    loss_j, grads_j, state_j = net.loss_and_grads(x_junk, y_junk, target=target, lengths=lengths)
    assert loss == loss_j
    assert all(np.array_equal(grads[k], grads_j[k]) for k in grads)
    # each row equals that sequence run alone, unpadded
    for b in range(B):
        n = lengths[b]
        yb = y[:n, b:b + 1] if target == "every" else y[b:b + 1]
        _, _, alone = net.loss_and_grads(x[:n, b:b + 1], yb, target=target)
        for s, s_alone in zip(gradcheck.state_parts(state), gradcheck.state_parts(alone), strict=True):
            assert np.allclose(s[:, b], s_alone[:, 0], rtol=0, atol=1e-15)


def test_many_to_one_learns_the_seeds_toy_sentiment_example():
    """The seeds' one-hot example: 3 words ('cat', 'mat', 'rat'), sequences of different lengths,
    one label each at the end. Plain gradient descent with BPTT fits it."""
    vocab = {"cat": 0, "mat": 1, "rat": 2}
    sentences = [("cat mat rat", 1), ("cat mat rat rat rat mat", 1), ("mat mat cat", 0)]
    T = max(len(s.split()) for s, _ in sentences)
    x = np.zeros((T, len(sentences)), dtype=np.int64)
    for b, (s, _) in enumerate(sentences):
        x[:len(s.split()), b] = [vocab[w] for w in s.split()]
    lengths = np.array([len(s.split()) for s, _ in sentences])
    y = np.array([label for _, label in sentences])
    net = bptt.Network("rnn", input_size=3, hidden_size=8, output_size=2, seed=0)
    first, _, _ = net.loss_and_grads(x, y, target="last", lengths=lengths)
    assert first > 0.5                                     # about ln 2 = 0.69 at initialisation
    for _ in range(300):
        loss, grads, _ = net.loss_and_grads(x, y, target="last", lengths=lengths)
        for k in net.params:
            net.params[k] -= 0.5 * grads[k]
    assert loss < 0.02 < first
    logits, _ = net.forward(x, lengths=lengths)
    assert list(logits[lengths - 1, np.arange(3)].argmax(axis=1)) == list(y)


def test_torch_state_dict_round_trip_and_names():
    net = make("gru", embedding_dim=3)
    sd = net.torch_state_dict()
    assert sorted(sd) == sorted(["embedding.weight", "head.weight", "head.bias"] + [
        f"rnn.{w}_l{k}" for k in range(2) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")])
    assert sd["rnn.weight_ih_l0"].shape == (15, 3) and sd["rnn.weight_hh_l1"].shape == (15, 5)
    other = make("gru", embedding_dim=3)
    other.load_torch_state_dict({k: v * 2 for k, v in sd.items()})
    assert all(np.array_equal(other.params[k], 2 * net.params[k]) for k in net.params)
    assert "embedding.weight" not in make("gru").torch_state_dict()


def test_seed_makes_initialisation_reproducible():
    a, b, c = make("lstm"), make("lstm"), bptt.Network("lstm", 6, 5, 4, num_layers=2, seed=2)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["l0.W"], c.params["l0.W"])
    bound = 1 / np.sqrt(5)
    assert all(np.abs(v).max() <= bound for k, v in a.params.items())


def test_input_gradients_for_float_features():
    """engine.loss_and_grads also returns dL/dx and dL/d(state0); None for ids."""
    net = make("lstm", input_size=3)
    x = np.random.default_rng(5).standard_normal((4, 2, 3))
    r = engine.loss_and_grads(net.params, net.arch, x, np.zeros((4, 2), dtype=int))
    assert r.dx.shape == x.shape
    assert [d.shape for d in r.dstate0] == [(2, 2, 5), (2, 2, 5)]
    r_ids = engine.loss_and_grads(net.params, net.arch, np.zeros((4, 2), dtype=int), np.zeros((4, 2), dtype=int))
    assert r_ids.dx is None
