"""bptt.training.clipping against torch.nn.utils.clip_grad_norm_ / clip_grad_value_ in float64 (1e-14),
per-parameter clipping against the formula by hand, non-finite norms, dtypes and errors."""

import math

import numpy as np
import pytest
import torch

from bptt.training import clipping

SHAPES = {"l0.W": (4, 3), "l0.b": (4,), "V": (2, 4)}


def gradients(dtype=np.float64, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return {k: (scale * rng.standard_normal(s)).astype(dtype) for k, s in SHAPES.items()}


def torch_clip(grads, clip):
    """Apply torch's clipping function to tensors holding grads; returns (its result, the clipped grads)."""
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads.values()]
    for x, g in zip(tensors, grads.values(), strict=True):
        x.grad = torch.tensor(g)
    result = clip(tensors)
    return result, {k: x.grad.numpy() for k, x in zip(grads, tensors, strict=True)}


def test_global_norm():
    grads = gradients()
    expected = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
    assert clipping.global_norm(grads) == pytest.approx(expected, rel=1e-14)
    assert clipping.global_norm({}) == 0.0
    assert type(clipping.global_norm(gradients(np.float32))) is float


@pytest.mark.parametrize("max_norm", [0.5, 1.0, 3.0, 1e3], ids=lambda m: f"max_norm={m}")
def test_clip_global_norm_matches_torch(max_norm):
    grads = gradients()
    original = {k: g.copy() for k, g in grads.items()}
    total, expected = torch_clip(grads, lambda ts: torch.nn.utils.clip_grad_norm_(ts, max_norm, foreach=False))
    norm = clipping.clip_global_norm(grads, max_norm)
    assert norm == pytest.approx(total.item(), rel=1e-14)
    for k, g in grads.items():
        np.testing.assert_allclose(g, expected[k], rtol=1e-14, atol=0)
    if max_norm > norm:
        for k, g in grads.items():
            np.testing.assert_array_equal(g, original[k])
    else:
        assert clipping.global_norm(grads) == pytest.approx(max_norm, rel=1e-5)


def test_clip_per_parameter_by_hand():
    grads = gradients()
    grads["l0.b"] *= 0.01                                         # the one array below max_norm
    original = {k: g.copy() for k, g in grads.items()}
    max_norm = 1.0
    norms = clipping.clip_per_parameter(grads, max_norm)
    assert set(norms) == set(SHAPES)
    for k, g0 in original.items():
        n = math.sqrt(float(np.sum(g0 * g0)))
        assert norms[k] == pytest.approx(n, rel=1e-14)
        coef = max_norm / (n + 1e-6)
        expected = g0 * coef if coef < 1 else g0
        np.testing.assert_allclose(grads[k], expected, rtol=1e-14, atol=0)
    np.testing.assert_array_equal(grads["l0.b"], original["l0.b"])
    assert norms["l0.b"] < max_norm < min(norms["l0.W"], norms["V"])


@pytest.mark.parametrize("limit", [0.1, 0.7, 10.0], ids=lambda m: f"limit={m}")
def test_clip_value_matches_torch(limit):
    grads = gradients()
    count = sum(int(np.sum(np.abs(g) > limit)) for g in grads.values())
    _, expected = torch_clip(grads, lambda ts: torch.nn.utils.clip_grad_value_(ts, limit, foreach=False))
    assert clipping.clip_value(grads, limit) == count
    for k, g in grads.items():
        np.testing.assert_array_equal(g, expected[k])
    assert (count == 0) == (limit == 10.0)


def test_float32_stays_float32():
    for clip in (clipping.clip_global_norm, clipping.clip_per_parameter, clipping.clip_value):
        grads = gradients(np.float32, scale=10.0)
        clip(grads, 0.5)
        assert all(g.dtype == np.float32 for g in grads.values())
    grads = gradients(np.float32, scale=10.0)
    clipping.clip_global_norm(grads, 0.5)
    assert clipping.global_norm(grads) == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize("bad", [math.inf, math.nan, 1e200])
def test_non_finite_norm_is_returned_and_nothing_scaled(bad):
    grads = gradients()
    grads["V"][0, 1] = bad
    original = {k: g.copy() for k, g in grads.items()}
    norm = clipping.clip_global_norm(grads, 1.0)
    assert math.isnan(norm) if math.isnan(bad) else norm == math.inf
    for k, g in grads.items():
        np.testing.assert_array_equal(g, original[k])
    norms = clipping.clip_per_parameter(grads, 1.0)
    np.testing.assert_array_equal(grads["V"], original["V"])
    assert not math.isfinite(norms["V"]) and math.isfinite(norms["l0.W"])


def test_clip_value_leaves_nan():
    grads = {"V": np.array([math.nan, 2.0, -3.0, 0.5])}
    assert clipping.clip_value(grads, 1.0) == 2
    np.testing.assert_array_equal(grads["V"], [math.nan, 1.0, -1.0, 0.5])


@pytest.mark.parametrize(("call", "error", "argument"), [
    (lambda g: clipping.clip_global_norm(g, 0.0), ValueError, "max_norm:"),
    (lambda g: clipping.clip_global_norm(g, -1.0), ValueError, "max_norm:"),
    (lambda g: clipping.clip_global_norm(g, math.nan), ValueError, "max_norm:"),
    (lambda g: clipping.clip_global_norm(g, "1"), TypeError, "max_norm:"),
    (lambda g: clipping.clip_per_parameter(g, 0.0), ValueError, "max_norm:"),
    (lambda g: clipping.clip_value(g, 0.0), ValueError, "limit:"),
    (lambda g: clipping.clip_value(g, -0.5), ValueError, "limit:"),
    (lambda g: clipping.clip_global_norm(list(g.values()), 1.0), TypeError, "grads:"),
    (lambda g: clipping.global_norm(g | {"V": [1.0, 2.0]}), TypeError, "grads['V']:"),
    (lambda g: clipping.clip_value(g | {"V": np.arange(3)}, 1.0), TypeError, "grads['V']:"),
])
def test_errors_name_the_argument(call, error, argument):
    with pytest.raises(error) as e:
        call(gradients())
    assert str(e.value).startswith(argument), str(e.value)


@pytest.mark.parametrize("mode", ["norm", "param", "value"])
def test_the_nonzero_rows_of_a_gradient_give_the_same_clipping(mode):
    """rows={name: rows outside which grads[name] is zero}: the norm to round-off, the gradients as
    without it."""
    rng = np.random.default_rng(0)
    E = np.zeros((500, 8))
    nonzero = np.unique(rng.integers(0, 500, 30))
    E[nonzero] = rng.standard_normal((nonzero.size, 8))
    grads = {"E": E, "U": rng.standard_normal((8, 8))}
    ours, theirs = ({k: g.copy() for k, g in grads.items()} for _ in range(2))
    norm, clipped = clipping.clip(ours, 0.5, mode, rows={"E": nonzero})
    expected_norm, expected_clipped = clipping.clip(theirs, 0.5, mode)
    assert norm == pytest.approx(expected_norm, rel=1e-14) and clipped == expected_clipped
    for k in grads:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-14, atol=0, err_msg=k)
    assert not ours["E"][np.setdiff1d(np.arange(500), nonzero)].any()


@pytest.mark.parametrize("rows, error, message", [
    ([1, 2], TypeError, "rows: expected None or a dict"),
    ({"W": [1]}, ValueError, "rows: 'W' is not one of the gradients"),
    ({"E": [3, 1]}, ValueError, r"rows\['E'\]: expected sorted distinct ints in \[0, 5\)"),
    ({"E": [1, 1]}, ValueError, r"rows\['E'\]: expected sorted distinct ints"),
    ({"E": [0, 5]}, ValueError, r"rows\['E'\]: expected sorted distinct ints in \[0, 5\)"),
    ({"E": [-1]}, ValueError, r"rows\['E'\]"),
    ({"E": [0.5]}, ValueError, r"rows\['E'\]"),
    ({"E": [[0]]}, ValueError, r"rows\['E'\]"),
])
def test_rows_asked_wrongly_are_refused(rows, error, message):
    with pytest.raises(error, match=message):
        clipping.clip({"E": np.ones((5, 2))}, 1.0, rows=rows)
