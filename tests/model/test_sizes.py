"""Network's integer arguments (input_size, hidden_size, output_size, num_layers, embedding_dim, skip,
seed) take any integer, NumPy's too, and the Arch keeps plain ints: a network built from NumPy
sizes is the one built from ints, and saves and loads back equal (np.int64 is not JSON, so it used
to fail in save). A float such as 5.0, a bool or a string is a TypeError naming the argument;
tie_weights takes True or False, NumPy's too. The ONNX side is tests/interop/test_export_dtype.py."""

import numpy as np
import pytest

import bptt

INT_TYPES = [np.int64, np.int32, np.int16, np.uint8]
LSTM = dict(cell="lstm", input_size=7, hidden_size=4, output_size=6, num_layers=2, embedding_dim=3, seed=1)
SKIP = dict(cell="skip", input_size=7, hidden_size=4, output_size=6, num_layers=2, skip=3, seed=1)
ARGUMENTS = [(LSTM, name) for name in ("input_size", "hidden_size", "output_size", "num_layers", "embedding_dim",
                                       "seed")] + [(SKIP, "skip")]
FIELDS = ("input_size", "hidden_size", "output_size", "num_layers", "embedding_dim", "skip")


def with_numpy_ints(kw, names, int_type):
    return kw | {name: int_type(kw[name]) for name in names}


def assert_plain(arch):
    for name in FIELDS:
        value = getattr(arch, name)
        assert value is None or type(value) is int, f"arch.{name} is {type(value).__name__}"
    assert type(arch.tie_weights) is bool


def assert_same_network(a, b):
    assert a.arch == b.arch and a.dtype == b.dtype and list(a.params) == list(b.params)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)


@pytest.mark.parametrize("kw, name", ARGUMENTS, ids=[name for _, name in ARGUMENTS])
@pytest.mark.parametrize("int_type", INT_TYPES, ids=lambda t: t.__name__)
def test_numpy_integer_argument_saves_and_loads_back_equal(tmp_path, kw, name, int_type):
    net = bptt.Network(**with_numpy_ints(kw, [name], int_type))
    net.save(tmp_path / "m.safetensors")                          # np.int64 in the metadata: not JSON
    back = bptt.Network.load(tmp_path / "m.safetensors")
    assert_same_network(back, net)
    x = np.random.default_rng(0).integers(0, 7, (5, 3))
    assert np.array_equal(back.forward(x)[0], net.forward(x)[0])
    assert_same_network(net, bptt.Network(**kw))                  # seed=np.int64(1) is seed=1
    assert_plain(net.arch)
    assert_plain(back.arch)


def test_every_argument_numpy_at_once_and_numpy_bool_tie_weights(tmp_path):
    kw = dict(cell="gru", input_size=8, hidden_size=5, output_size=8, num_layers=3, embedding_dim=5, seed=2)
    net = bptt.Network(**with_numpy_ints(kw, ["input_size", "hidden_size", "output_size", "num_layers",
                                              "embedding_dim", "seed"], np.int64), tie_weights=np.True_)
    net.save(tmp_path / "tied.safetensors")
    assert_same_network(bptt.Network.load(tmp_path / "tied.safetensors"), net)
    assert_plain(net.arch)
    assert net.arch.tie_weights is True and "V" not in net.params


@pytest.mark.parametrize("kw, name", ARGUMENTS, ids=[name for _, name in ARGUMENTS])
@pytest.mark.parametrize("bad", [5.0, np.float64(5), True, np.True_, "5", np.array(5)],
                         ids=["float", "np.float64", "bool", "np.bool_", "str", "0-d array"])
def test_floats_bools_and_strings_are_refused_naming_the_argument(kw, name, bad):
    with pytest.raises(TypeError, match=rf"^{name}: expected (a positive int|an int >= [02]), got .+ \(\w+\)$"):
        bptt.Network(**kw | {name: bad})


def test_skip_zero_is_refused_not_taken_for_the_default():
    with pytest.raises(ValueError, match=r"^skip: expected an int >= 2, got 0$"):
        bptt.Network(**SKIP | {"skip": 0})
    with pytest.raises(TypeError, match=r"^skip: expected an int >= 2, got False \(bool\)$"):
        bptt.Network(**SKIP | {"skip": False})
    assert bptt.Network(**SKIP | {"skip": None}).arch.skip == 2


@pytest.mark.parametrize("bad", [1, 0, "yes", None])
def test_tie_weights_takes_true_or_false(bad):
    with pytest.raises(TypeError, match=rf"^tie_weights: expected True or False, got {bad!r} \(\w+\)$"):
        bptt.Network("lstm", 6, 4, 6, embedding_dim=4, tie_weights=bad)
