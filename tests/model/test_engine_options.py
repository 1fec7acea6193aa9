"""What training adds to the engine, checked for meaning (finite differences are in
test_gradients.py): resets, loss masks, dropout, tied embeddings, the hidden-gradient cutoff."""

import numpy as np
import pytest

import bptt
from bptt.interop import torch_reference
from bptt.lab import gradcheck
from bptt.model import engine
from bptt.reference.losses import log_softmax

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")]


def make(cell, nonlinearity="tanh", **kw):
    sizes = dict(input_size=6, hidden_size=5, output_size=6, num_layers=2) | kw
    return bptt.Network(cell, nonlinearity=nonlinearity, seed=3, **sizes)


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
def test_a_reset_starts_that_row_afresh(cell, nonlinearity):
    net = make(cell, nonlinearity)
    x = np.random.default_rng(0).integers(0, 6, (8, 2))
    state = tuple(np.random.default_rng(1).standard_normal((2, 2, 2, 5)))
    state = state if cell == "lstm" else state[0]
    reset = np.zeros((8, 2), bool)
    reset[3, 1] = True                                      # row 1 starts a new document at t = 3
    z, final = engine.logits(net.params, net.arch, x, state, reset=reset)
    z_plain, final_plain = net.forward(x, state)
    assert np.array_equal(z[:, 0], z_plain[:, 0])           # row 0 untouched
    assert np.array_equal(z[:3, 1], z_plain[:3, 1])
    z_fresh, final_fresh = net.forward(x[3:, 1:2])          # row 1 from t = 3, from zeros
    assert np.allclose(z[3:, 1], z_fresh[:, 0], rtol=0, atol=1e-14)
    for a, b in zip(gradcheck.state_parts(final), gradcheck.state_parts(final_fresh), strict=True):
        assert np.allclose(a[:, 1], b[:, 0], rtol=0, atol=1e-14)
    # and nothing flows back across the reset: the initial state of row 1 gets no gradient
    y = x % 6
    r = engine.loss_and_grads(net.params, net.arch, x, y, state, reset=reset | (np.arange(8) == 0)[:, None])
    assert all(np.all(d == 0) for d in gradcheck.state_parts(r.dstate0))


def test_loss_mask_averages_over_the_chosen_positions():
    net = make("lstm")
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 6, (6, 3)), rng.integers(0, 6, (6, 3))
    keep = np.zeros((6, 3), bool)
    keep[4:] = True                                         # the last k1 = 2 of k2 = 6 steps
    z, _ = net.forward(x)
    per_position = -np.take_along_axis(log_softmax(z), y[..., None], axis=-1)[..., 0]
    loss, _, _ = net.loss_and_grads(x, y, loss_mask=keep)
    assert loss == pytest.approx(per_position[keep].mean(), rel=1e-14)
    with pytest.raises(ValueError, match="loss_mask: no position left"):
        net.loss_and_grads(x, y, loss_mask=np.zeros((6, 3), bool))
    with pytest.raises(ValueError, match=r"loss_mask: expected a bool array of shape \(T, B\) = \(6, 3\)"):
        net.loss_and_grads(x, y, loss_mask=np.ones((6, 2), bool))


def test_dropout_is_inverted_and_off_at_zero():
    net = make("gru", embedding_dim=4)
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 6, (5, 4)), rng.integers(0, 6, (5, 4))
    plain = net.loss_and_grads(x, y)[0]
    assert net.loss_and_grads(x, y, dropout=0.0, rng=np.random.default_rng(0))[0] == plain
    a = net.loss_and_grads(x, y, dropout=0.5, rng=np.random.default_rng(0))[0]
    b = net.loss_and_grads(x, y, dropout=0.5, rng=np.random.default_rng(0))[0]
    other = net.loss_and_grads(x, y, dropout=0.5, rng=np.random.default_rng(1))[0]
    assert a == b != other and a != plain
    batch = engine.prepare(net.params, net.arch, x, None, None)
    masks = engine.dropout_masks(net.arch, batch, 0.25, np.random.default_rng(0), np.float64)
    assert [m.shape for m in masks] == [(5, 4, 4), (5, 4, 5), (5, 4, 5)]
    assert set(np.unique(np.concatenate([m.ravel() for m in masks]))) == {0.0, 1 / 0.75}
    one_hot = make("gru")
    masks = engine.dropout_masks(one_hot.arch, engine.prepare(one_hot.params, one_hot.arch, x, None, None),
                                 0.25, np.random.default_rng(0), np.float64)
    assert masks[0] is None                                 # never on one-hot ids
    with pytest.raises(TypeError, match="rng: expected a np.random.Generator"):
        net.loss_and_grads(x, y, dropout=0.5)
    with pytest.raises(ValueError, match=r"dropout: expected a probability in \[0, 1\), got 1.0"):
        net.loss_and_grads(x, y, dropout=1.0, rng=np.random.default_rng(0))


@pytest.mark.parametrize("cell", gradcheck.CELL_NAMES)
def test_tied_embeddings_match_pytorch(cell):
    case = gradcheck.Case(cell, 2, "embedding", tied=True, E=4, H=4, K=5, with_state=True, with_lengths=True)
    errors = gradcheck.against_torch(case)
    assert errors.pop("loss") < 1e-10
    assert max(errors.values()) < 1e-8, errors
    net = gradcheck.network(case)
    assert "V" not in net.params
    sd = net.torch_state_dict()
    assert sd["head.weight"] is net.params["E"]
    with pytest.raises(ValueError, match="head.weight.*same values as 'embedding.weight'"):
        net.load_torch_state_dict(sd | {"head.weight": sd["head.weight"] + 1})
    with pytest.raises(ValueError, match="tie_weights: needs embedding_dim == hidden_size"):
        bptt.Network("lstm", 5, 4, 5, embedding_dim=3, tie_weights=True)


def test_model_from_torch_tied_state_dict_loads():
    net = bptt.Network("lstm", 7, 4, 7, embedding_dim=4, tie_weights=True)
    sd = torch_reference.random_state_dict(net.arch, np.float64, seed=0)
    assert np.array_equal(sd["head.weight"], sd["embedding.weight"])
    net.load_torch_state_dict(sd)
    assert np.array_equal(net.params["E"], sd["embedding.weight"])


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
def test_hidden_gradient_cutoff(cell, nonlinearity):
    """Mikolov's cutoff bounds dL/dh_t at every step; a cutoff above every value changes nothing."""
    net = make(cell, nonlinearity, num_layers=1)
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 6, (6, 3)), rng.integers(0, 6, (6, 3))
    _, exact, _ = net.loss_and_grads(x, y)
    _, same, _ = net.loss_and_grads(x, y, clip_dh=1e6)
    assert all(np.array_equal(exact[k], same[k]) for k in exact)
    _, cut, _ = net.loss_and_grads(x, y, clip_dh=1e-4)
    assert np.array_equal(cut["V"], exact["V"]) and np.array_equal(cut["c"], exact["c"])
    assert not np.allclose(cut["l0.U"], exact["l0.U"])
    # with T = 1 the cut gradient is the readout's dh, clipped: check db by hand for the RNN
    if cell == "rnn" and nonlinearity == "tanh":
        V = net.params["V"]
        z, _ = net.forward(x[:1])
        p = np.exp(log_softmax(z[0]))
        p[np.arange(3), y[0]] -= 1
        dh = np.clip((p / 3) @ V, -1e-4, 1e-4)
        h = np.tanh(net.params["l0.W"].T[x[0]] + net.params["l0.b"] + net.params["l0.b_U"])
        _, g, _ = net.loss_and_grads(x[:1], y[:1], clip_dh=1e-4)
        assert np.allclose(g["l0.b"], (dh * (1 - h * h)).sum(axis=0), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="clip_dh: expected a positive number"):
        net.loss_and_grads(x, y, clip_dh=0)
