"""Bad input gets a ValueError or TypeError that names the argument, says what was expected and
what was given; never a NumPy traceback from deep inside."""

import numpy as np
import pytest

import bptt

T, B, V, H, K = 4, 2, 5, 3, 3


def net(cell="lstm", **kw):
    return bptt.Network(cell, input_size=V, hidden_size=H, output_size=K, num_layers=2, **kw)


IDS = np.zeros((T, B), dtype=np.int64)
NAN_X = np.zeros((T, B, V))
NAN_X[1, 1, 2] = np.nan

BAD_CONSTRUCTION = [
    (dict(cell="transformer"), ValueError, "cell: expected one of 'rnn', 'gru', 'lstm', 'skip'; got 'transformer'"),
    (dict(cell="rnn", nonlinearity="softplus"), ValueError, "nonlinearity: expected one of"),
    (dict(cell="gru", nonlinearity="relu"), ValueError,
     "nonlinearity: applies to cell='rnn' and 'skip' only; got 'relu'"),
    (dict(hidden_size=0), ValueError, "hidden_size: expected a positive int, got 0"),
    (dict(cell="skip", skip=1), ValueError, "skip: expected an int >= 2, got 1"),
    (dict(cell="gru", skip=3), ValueError, "skip: applies to cell='skip' only"),
    (dict(input_size=2.5), TypeError, "input_size: expected a positive int, got 2.5"),
    (dict(num_layers=True), TypeError, "num_layers: expected a positive int, got True"),
    (dict(output_size=-1), ValueError, "output_size: expected a positive int, got -1"),
    (dict(embedding_dim=0), ValueError, "embedding_dim: expected a positive int, got 0"),
    (dict(dtype=np.int32), TypeError, "dtype: expected np.float32 or np.float64, got int32"),
    (dict(dtype="banana"), TypeError, "dtype: expected np.float32 or np.float64"),
    (dict(seed=-1), ValueError, "seed: expected an int >= 0, got -1"),
]


@pytest.mark.parametrize("kw,error,message", BAD_CONSTRUCTION)
def test_construction(kw, error, message):
    args = dict(cell="lstm", input_size=V, hidden_size=H, output_size=K) | kw
    with pytest.raises(error) as e:
        bptt.Network(**args)
    assert message in str(e.value)


BAD_X = [
    (np.zeros(T, dtype=np.int64), "x: expected int token ids of shape (T, B)", "got int64 array of shape (4,)"),
    (np.zeros((T, B, V, 1)), "x: expected", "got float64 array of shape (4, 2, 5, 1)"),
    (np.zeros((T, B, V + 1)), "x: expected", "(input_size is 5)"),
    (np.full((T, B), V), "x: expected token ids in [0, 5)", "max 5"),
    (np.full((T, B), -1), "x: expected token ids in [0, 5)", "min -1"),
    (np.zeros((0, B), dtype=np.int64), "x: expected at least one time step", "T = 0"),
    (np.zeros((T, 0), dtype=np.int64), "x: expected at least one time step", "B = 0"),
    (NAN_X, "x: expected finite values", "nan at index (1, 1, 2)"),
    (np.full((T, B, V), np.inf), "x: expected finite values", "inf"),
    (np.zeros((T, B), dtype=bool), "x: expected", "bool"),
    ([["a", "b"]], "x: expected a numeric array", "<U1"),
    ([[1, 2], [3]], "x: expected an array", "list"),
]


@pytest.mark.parametrize("x,expected,given", BAD_X)
def test_inputs(x, expected, given):
    with pytest.raises((ValueError, TypeError)) as e:
        net().loss_and_grads(x, IDS)
    assert expected in str(e.value) and given in str(e.value)
    with pytest.raises((ValueError, TypeError)):
        net().forward(x)


def test_float_inputs_with_an_embedding():
    with pytest.raises(ValueError, match=r"x: expected int token ids of shape \(T, B\) in \[0, 5\); got float64"):
        net(embedding_dim=2).forward(np.zeros((T, B, V)))


BAD_Y = [
    (dict(y=np.zeros((T, B + 1), dtype=np.int64)), "y: expected int class ids of shape (4, 2)", "(4, 3)"),
    (dict(y=np.zeros((T, B))), "y: expected int class ids", "float64"),
    (dict(y=np.full((T, B), K)), "y: expected class ids in [0, 3) (output_size)", "max 3"),
    (dict(y=np.zeros((T, B), dtype=np.int64), target="last"), "y: expected int class ids of shape (2,)", "(4, 2)"),
    (dict(y=np.zeros((T, B), dtype=np.int64), loss="mse"), "y: expected floats of shape (4, 2, 3)", "int64"),
    (dict(y=np.full((B, K), np.nan), loss="mse", target="last"), "y: expected finite values", "nan"),
    (dict(y=IDS, target="first"), "target: expected one of 'every', 'last'", "'first'"),
    (dict(y=IDS, loss="hinge"), "loss: expected one of 'cross_entropy', 'mse'", "'hinge'"),
]


@pytest.mark.parametrize("kw,expected,given", BAD_Y)
def test_targets(kw, expected, given):
    with pytest.raises((ValueError, TypeError)) as e:
        net().loss_and_grads(IDS, **kw)
    assert expected in str(e.value) and given in str(e.value)


BAD_LENGTHS = [
    (np.array([T + 1, 1]), "lengths: expected every length in [1, T] = [1, 4]", "max 5"),
    (np.array([0, 1]), "lengths: expected every length in [1, T]", "min 0"),
    (np.array([1, 2, 3]), "lengths: expected ints of shape (B,) = (2,)", "(3,)"),
    (np.array([1.0, 2.0]), "lengths: expected ints", "float64"),
]


@pytest.mark.parametrize("lengths,expected,given", BAD_LENGTHS)
def test_lengths(lengths, expected, given):
    with pytest.raises(ValueError) as e:
        net().loss_and_grads(IDS, IDS, lengths=lengths)
    assert expected in str(e.value) and given in str(e.value)


def test_state():
    zeros = np.zeros((2, B, H))
    with pytest.raises(TypeError,
                       match=r"state: expected a tuple \(h, c\) of arrays of shape \(L, B, H\) = \(2, 2, 3\)"):
        net().forward(IDS, zeros)
    with pytest.raises(ValueError, match=r"state: expected .* got float64 array of shape \(2, 3, 3\) for c"):
        net().forward(IDS, (zeros, np.zeros((2, 3, 3))))
    with pytest.raises(TypeError, match=r"state: expected an array of shape \(L, B, H\) = \(2, 2, 3\), got a tuple"):
        net("gru").forward(IDS, (zeros, zeros))
    with pytest.raises(ValueError, match=r"state: expected .* got float64 array of shape \(1, 2, 3\)"):
        net("rnn").forward(IDS, np.zeros((1, B, H)))
    with pytest.raises(ValueError, match="state: expected finite values"):
        net("rnn").forward(IDS, np.full((2, B, H), np.nan))


def test_torch_state_dict_keys_and_shapes():
    good = net().torch_state_dict()
    with pytest.raises(ValueError, match=r"; 'head.bias' is missing$"):
        net().load_torch_state_dict({k: v for k, v in good.items() if k != "head.bias"})
    with pytest.raises(ValueError, match=r"; 'rnn.weight_ih_l2' is unexpected$"):
        net().load_torch_state_dict(good | {"rnn.weight_ih_l2": good["rnn.weight_ih_l1"]})
    with pytest.raises(ValueError, match=r"state_dict\['rnn.weight_hh_l0'\]: expected shape \(12, 3\), "
                                         r"got float64 array of shape \(3, 12\)"):
        net().load_torch_state_dict(good | {"rnn.weight_hh_l0": good["rnn.weight_hh_l0"].T})
    with pytest.raises(ValueError, match="embedding.weight"):
        net().load_torch_state_dict(good | {"embedding.weight": np.zeros((V, 2))})
    with pytest.raises(TypeError, match="state_dict: expected a dict"):
        net().load_torch_state_dict(list(good.items()))
    with pytest.raises(ValueError, match=r"state_dict\['head.bias'\]: expected finite values"):
        net().load_torch_state_dict(good | {"head.bias": np.full(K, np.inf)})
