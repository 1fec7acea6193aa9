"""The specification layer on its own: each cell's declarations agree with what its functions do,
and the losses and nonlinearities are exact where they are known in closed form (float64)."""

import numpy as np
import pytest

from bptt.reference import CELLS, activations, losses

OPTIONS = {"nonlinearity": "tanh", "skip": 3}


@pytest.mark.parametrize("name", sorted(CELLS))
def test_declarations_match_the_parameters_and_the_state(name):
    """GATES blocks in W, U, b, b_U; EXTRA (H, H) matrices; forward takes exactly OPTIONS and returns
    one (B, H) array per state_names part; backward returns a gradient for every parameter."""
    cell, H, D, T, B = CELLS[name], 5, 3, 4, 2
    rng = np.random.default_rng(0)
    p = cell.init_params(rng, D, H, np.float64)
    G = cell.GATES * H
    assert cell.GATES == len(cell.GATE_NAMES) == len(set(cell.GATE_NAMES))
    expected = {"W": (G, D), "U": (G, H), "b": (G,), "b_U": (G,)} | {e: (H, H) for e in cell.EXTRA}
    assert {k: v.shape for k, v in p.items()} == expected
    options = {k: OPTIONS[k] for k in cell.OPTIONS}
    names = cell.state_names(**options)
    state0 = tuple(rng.standard_normal((B, H)) for _ in names)
    hs, state, cache = cell.forward(p, rng.standard_normal((T, B, D)), state0, **options)
    assert hs.shape == (T, B, H) and len(state) == len(names) and all(s.shape == (B, H) for s in state)
    _, dstate0, grads = cell.backward(p, np.ones((T, B, H)), tuple(np.zeros((B, H)) for _ in names), cache)
    assert grads.keys() == p.keys() and len(dstate0) == len(names)
    with pytest.raises(TypeError):
        cell.forward(p, rng.standard_normal((T, B, D)), state0, **options, not_an_option=1)


def test_log_softmax_is_exact_and_stable():
    z = np.array([[1000.0, 999.0, -1000.0], [0.0, np.log(2.0), np.log(3.0)]])
    got = losses.log_softmax(z)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got[1], np.log([1 / 6, 2 / 6, 3 / 6]), rtol=0, atol=1e-15)
    np.testing.assert_allclose(got[0, :2], [-np.log1p(np.exp(-1.0)), -1 - np.log1p(np.exp(-1.0))], rtol=0, atol=1e-15)


def test_the_losses_and_their_gradients_in_closed_form():
    """Rows weighted by w (1/n on counted rows, 0 on padding): cross-entropy -sum w log p[y] with
    dz = w (softmax(z) - onehot(y)); squared error sum w mean_k (z - y)^2 with dz = w 2 (z - y) / K."""
    rng = np.random.default_rng(1)
    z, y, w = rng.standard_normal((4, 5)), np.array([0, 3, 4, 1]), np.array([1.0, 0.0, 2.0, 1.0]) / 4
    L, dz = losses.apply("cross_entropy", z, y, w)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert L == pytest.approx(-(w * np.log(p[np.arange(4), y])).sum(), rel=1e-14)
    np.testing.assert_allclose(dz, w[:, None] * (p - np.eye(5)[y]), rtol=0, atol=1e-15)
    target = rng.standard_normal((4, 5))
    L, dz = losses.apply("mse", z, target, w)
    assert L == pytest.approx((w * ((z - target) ** 2).mean(1)).sum(), rel=1e-14)
    np.testing.assert_allclose(dz, w[:, None] * 2 * (z - target) / 5, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", activations.NONLINEARITIES)
def test_derivative_from_the_output_equals_central_differences(name):
    a = np.linspace(-3, 3, 61) + 0.05                          # away from relu's kink at 0
    eps = 1e-6
    numeric = (activations.apply(name, a + eps) - activations.apply(name, a - eps)) / (2 * eps)
    np.testing.assert_allclose(activations.derivative(name, activations.apply(name, a)), numeric, atol=1e-9)
