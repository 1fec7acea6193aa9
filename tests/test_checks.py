"""bptt.checks, the validation under every layer: each check returns what the engine uses (plain
ints and floats, NumPy's types converted) and refuses anything else in one sentence naming the
argument, what was expected and what was given."""

import numpy as np
import pytest

from bptt import checks


@pytest.mark.parametrize("value", [5, np.int64(5), np.int32(5), np.uint8(5)])
def test_positive_int_returns_a_plain_int(value):
    got = checks.positive_int("hidden_size", value)
    assert got == 5 and type(got) is int


@pytest.mark.parametrize("value, error, message", [
    (5.0, TypeError, "hidden_size: expected a positive int, got 5.0 (float)"),
    (True, TypeError, "hidden_size: expected a positive int, got True (bool)"),
    ("5", TypeError, "hidden_size: expected a positive int, got '5' (str)"),
    (0, ValueError, "hidden_size: expected a positive int, got 0"),
    (-3, ValueError, "hidden_size: expected a positive int, got -3"),
])
def test_positive_int_refuses(value, error, message):
    with pytest.raises(error) as e:
        checks.positive_int("hidden_size", value)
    assert str(e.value) == message


def test_positive_int_minimum_and_flag():
    assert checks.positive_int("seed", 0, minimum=0) == 0
    with pytest.raises(ValueError, match=r"^skip: expected an int >= 2, got 1$"):
        checks.positive_int("skip", 1, minimum=2)
    assert checks.flag("tie_weights", np.bool_(True)) is True
    with pytest.raises(TypeError, match=r"^tie_weights: expected True or False, got 1 \(int\)$"):
        checks.flag("tie_weights", 1)


def test_real_returns_a_plain_float_and_names_the_argument():
    got = checks.real("lr", np.float32(0.5), checks.NONNEGATIVE, checks.nonnegative)
    assert got == 0.5 and type(got) is float
    with pytest.raises(ValueError, match=r"^lr: expected a finite float >= 0, got -1$"):
        checks.real("lr", -1, checks.NONNEGATIVE, checks.nonnegative)
    with pytest.raises(ValueError, match=r"^lr: expected a finite float >= 0, got inf$"):
        checks.real("lr", float("inf"), checks.NONNEGATIVE, checks.nonnegative)
    with pytest.raises(ValueError, match=r"^lr: expected a finite float >= 0, got nan$"):
        checks.real("lr", float("nan"), checks.NONNEGATIVE, checks.nonnegative)
    with pytest.raises(TypeError, match=r"^lr: expected a finite float >= 0, got False \(bool\)$"):
        checks.real("lr", False, checks.NONNEGATIVE, checks.nonnegative)


def test_one_of_and_float_dtype():
    assert checks.one_of("cell", "gru", ("rnn", "gru")) == "gru"
    with pytest.raises(ValueError, match=r"^cell: expected one of 'rnn', 'gru'; got 'GRU'$"):
        checks.one_of("cell", "GRU", ("rnn", "gru"))
    assert checks.float_dtype("float32") == np.float32
    with pytest.raises(TypeError, match=r"^dtype: expected np.float32 or np.float64, got float16$"):
        checks.float_dtype(np.float16)
    with pytest.raises(TypeError, match=r"^dtype: expected np.float32 or np.float64, got 'float99'"):
        checks.float_dtype("float99")


def test_arrays_masks_and_lengths():
    with pytest.raises(TypeError, match=r"^x: expected a numeric array, got <U1 array"):
        checks.array("x", ["a"])
    with pytest.raises(TypeError, match=r"^x: expected an array, got list"):
        checks.array("x", [[1], [1, 2]])
    with pytest.raises(ValueError, match=r"^y: expected finite values, got nan at index \(1,\)$"):
        checks.finite("y", np.array([0.0, np.nan]))
    mask = checks.lengths_mask([2, 1], 3, 2)
    assert mask.shape == (3, 2, 1) and mask[:, :, 0].tolist() == [[True, True], [True, False], [False, False]]
    with pytest.raises(ValueError, match=r"lengths: expected every length in \[1, T\] = \[1, 3\], got min 0"):
        checks.lengths_mask([0, 1], 3, 2)
    with pytest.raises(ValueError, match=r"^reset: expected a bool array of shape \(T, B\) = \(3, 2\)"):
        checks.bool_mask("reset", np.zeros((3, 2), int), 3, 2)


def test_params_names_the_wrong_key_shape_and_dtype():
    shapes = {"W": (2, 3), "c": (2,)}
    good = {"W": np.zeros((2, 3)), "c": np.zeros(2)}
    assert checks.params(good, shapes) == np.float64
    with pytest.raises(ValueError, match=r"^params: missing 'c' \(expected keys: W, c\)$"):
        checks.params({"W": good["W"]}, shapes)
    with pytest.raises(ValueError, match=r"^params\['W'\]: expected shape \(2, 3\), got \(3, 2\)$"):
        checks.params({"W": np.zeros((3, 2)), "c": good["c"]}, shapes)
    with pytest.raises(ValueError, match=r"^params\['W'\]: expected float64 like the other parameters, got float32"):
        checks.params({"W": np.zeros((2, 3), np.float32), "c": good["c"]}, shapes, np.float64)


def test_state_inputs_and_targets():
    h = checks.state(None, ("h", "c"), 1, 2, 3, np.float32)
    assert [a.shape for a in h] == [(1, 2, 3), (1, 2, 3)] and h[0].dtype == np.float32
    with pytest.raises(TypeError, match=r"^state: expected a tuple \(h, c\) of arrays"):
        checks.state(np.zeros((1, 2, 3)), ("h", "c"), 1, 2, 3, np.float32)
    x, T, B = checks.inputs([[0, 4]], 5, False, np.float64)
    assert (T, B) == (1, 2)
    with pytest.raises(ValueError, match=r"^x: expected token ids in \[0, 5\), got min 0 and max 5$"):
        checks.valid_inputs(np.array([[0, 5]]), 5, None)
    with pytest.raises(ValueError, match=r"^y: expected class ids in \[0, 3\) \(output_size\), got min 0 and max 3$"):
        checks.targets([[0, 3]], "every", "cross_entropy", 1, 2, 3, np.float64, None)
