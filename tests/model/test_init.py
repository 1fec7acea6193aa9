import numpy as np
import pytest

import bptt
from bptt.model import init


def test_orthogonal_blocks():
    net = bptt.Network("gru", 5, 6, 3, num_layers=2)
    init.apply(net.params, net.arch, np.random.default_rng(0), recurrent="orthogonal")
    for k in range(2):
        U = net.params[f"l{k}.U"]
        for g in range(3):
            block = U[g * 6:(g + 1) * 6]
            assert np.allclose(block @ block.T, np.eye(6), atol=1e-13)
            assert np.allclose(np.abs(np.linalg.eigvals(block)), 1, atol=1e-12)   # spectral radius 1


def test_identity_rnn():
    net = bptt.Network("rnn", 5, 4, 3, nonlinearity="relu")
    init.apply(net.params, net.arch, np.random.default_rng(0), recurrent="identity", identity_scale=0.9)
    assert np.array_equal(net.params["l0.U"], 0.9 * np.eye(4))
    assert not net.params["l0.b"].any() and not net.params["l0.b_U"].any()
    assert 0 < np.abs(net.params["l0.W"]).max() < 0.01


def test_xavier_bounds_and_forget_bias():
    net = bptt.Network("lstm", 10, 4, 3, num_layers=2)
    init.apply(net.params, net.arch, np.random.default_rng(0), weights="xavier", recurrent="xavier", forget_bias=1.0)
    assert np.abs(net.params["l0.W"]).max() <= np.sqrt(6 / 14)
    assert np.abs(net.params["l1.U"]).max() <= np.sqrt(6 / 8)
    for k in range(2):
        b, b_U = net.params[f"l{k}.b"], net.params[f"l{k}.b_U"]
        assert np.array_equal(b[4:8] + b_U[4:8], np.ones(4))
    assert net.params["l0.W"].dtype == np.float64


def test_errors():
    net = bptt.Network("gru", 5, 4, 3)
    with pytest.raises(ValueError, match=r"forget_bias: applies to a cell with a forget gate \(cell='lstm'\) only"):
        init.apply(net.params, net.arch, np.random.default_rng(0), forget_bias=1.0)
    with pytest.raises(ValueError, match="recurrent: expected one of"):
        init.apply(net.params, net.arch, np.random.default_rng(0), recurrent="eye")


def test_spectral_radius():
    net = bptt.Network("gru", 5, 6, 3, num_layers=2)
    init.apply(net.params, net.arch, np.random.default_rng(0), recurrent="orthogonal", radius=1.5)
    for k in range(2):
        for g in range(3):
            block = net.params[f"l{k}.U"][g * 6:(g + 1) * 6]
            assert np.abs(np.linalg.eigvals(block)).max() == pytest.approx(1.5)
