"""Every analytic gradient against float64 central finite differences, over the whole matrix:
cell x 1 and 3 layers x one-hot / embedding / float input x target every / last x cross-entropy / mse
x with and without initial state x with and without lengths, and the layer options over every cell:
bidirectional (with and without lengths), a learned initial state. Norm-relative error below 1e-7."""

import numpy as np
import pytest

from bptt.lab import gradcheck
from bptt.reference import lstm

CASES = (list(gradcheck.all_cases()) + list(gradcheck.training_cases()) + list(gradcheck.bidirectional_cases())
         + list(gradcheck.initial_state_cases()) + list(gradcheck.projection_cases())
         + list(gradcheck.adaptive_cases()) + list(gradcheck.awd_cases()))


@pytest.mark.parametrize("case", CASES, ids=[c.label().replace(" ", "-") for c in CASES])
def test_finite_differences(case):
    errors = gradcheck.against_finite_differences(case)
    net = gradcheck.network(case)
    expected = set(net.params) | (set() if case.learn_init else set(gradcheck.state_labels(net.arch)))
    expected |= {"x"} if case.inputs == "float" else set()
    assert set(errors) == expected
    bad = {name: e for name, e in errors.items() if not e < 1e-7}
    assert not bad, f"{case.label()}: {bad}"


def test_the_check_catches_a_wrong_gradient(monkeypatch):
    """A BPTT bug as small as 0.1% in one parameter is far above the tolerance."""
    backward = lstm.backward

    def off_by_a_little(*args):
        dxs, dstate0, grads = backward(*args)
        return dxs, dstate0, grads | {"U": grads["U"] * 1.001}

    monkeypatch.setattr(lstm, "backward", off_by_a_little)
    errors = gradcheck.against_finite_differences(gradcheck.Case("lstm", num_layers=1))
    assert errors["l0.U"] > 1e-4
    assert errors["l0.W"] < 1e-7


def test_central_differences_of_a_known_function():
    a = np.array([0.3, -1.2, 2.0])

    def f():
        return float(np.sum(np.sin(a) * a**2))

    g = gradcheck.central_differences(f, a, 1e-3)
    exact = np.cos(a) * a**2 + 2 * a * np.sin(a)
    assert gradcheck.rel_err(g, exact) < 1e-11
    assert np.array_equal(a, [0.3, -1.2, 2.0])          # restored
