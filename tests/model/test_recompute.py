"""Checkpointed BPTT gives the gradients of full BPTT, in float64 to 1e-12, whatever the segment."""

import numpy as np
import pytest

from bptt.lab import gradcheck
from bptt.model import engine

CASES = [gradcheck.Case(cell, 2, inputs, target, loss, state, lengths, T=11)
         for cell in gradcheck.CELL_NAMES
         for inputs, target, loss, state, lengths in [("onehot", "every", "cross_entropy", True, True),
                                                       ("float", "last", "mse", True, False),
                                                       ("embedding", "every", "mse", False, True)]]
CASES += [gradcheck.Case("lstm", 2, "embedding", with_reset=True, with_loss_mask=True, with_state=True, T=11),
          gradcheck.Case("gru", 2, "embedding", tied=True, E=4, H=4, K=5, T=11),
          gradcheck.Case("skip-tanh", 1, "float", skip=3, with_reset=True, with_lengths=True, T=11)]


@pytest.mark.parametrize("case", CASES, ids=[c.label().replace(" ", "-") for c in CASES])
@pytest.mark.parametrize("every", [1, 3, 4, 11, 20])
def test_checkpointed_equals_full_bptt(case, every):
    net = gradcheck.network(case)
    kw = gradcheck.problem(case)
    full = engine.loss_and_grads(net.params, net.arch, **kw)
    ckpt = engine.loss_and_grads(net.params, net.arch, **kw, recompute_every=every)
    assert ckpt.loss == pytest.approx(full.loss, rel=1e-13)
    for name in full.grads:
        assert gradcheck.rel_err(ckpt.grads[name], full.grads[name]) < 1e-12, name
    for a, b in zip(gradcheck.state_parts(ckpt.state), gradcheck.state_parts(full.state), strict=True):
        assert np.array_equal(a, b)
    for a, b in zip(gradcheck.state_parts(ckpt.dstate0), gradcheck.state_parts(full.dstate0), strict=True):
        assert gradcheck.rel_err(a, b) < 1e-12
    if full.dx is not None:
        assert gradcheck.rel_err(ckpt.dx, full.dx) < 1e-12


def test_segment_length_is_checked():
    case = gradcheck.Case("lstm", T=4)
    net = gradcheck.network(case)
    with pytest.raises(ValueError, match="recompute_every: expected a positive int, got 0"):
        engine.loss_and_grads(net.params, net.arch, **gradcheck.problem(case), recompute_every=0)


DROPOUT_CASES = [gradcheck.Case(cell, 2, inputs, target, "cross_entropy", True, lengths, T=11)
                 for cell in gradcheck.CELL_NAMES
                 for inputs, target, lengths in [("embedding", "every", True), ("float", "last", False)]]


@pytest.mark.parametrize("case", DROPOUT_CASES, ids=[c.label().replace(" ", "-") for c in DROPOUT_CASES])
@pytest.mark.parametrize("every", [1, 4, 11])
def test_recomputation_composes_with_dropout_and_traces(case, every):
    """One BPTT path: recompute_every is an option of engine.loss_and_grads, so it takes dropout (the
    masks drawn once per window, here fixed by an int seed) and the flow traces like full BPTT."""
    net = gradcheck.network(case)
    kw = gradcheck.problem(case) | dict(dropout=0.3, rng=7, trace=True)
    full = engine.loss_and_grads(net.params, net.arch, **kw)
    ckpt = engine.loss_and_grads(net.params, net.arch, **kw, recompute_every=every)
    assert ckpt.loss == pytest.approx(full.loss, rel=1e-13)
    assert full.loss != pytest.approx(engine.loss_and_grads(net.params, net.arch, **gradcheck.problem(case)).loss,
                                      rel=1e-6)                 # dropout did change the loss
    for name in full.grads:
        assert gradcheck.rel_err(ckpt.grads[name], full.grads[name]) < 1e-12, name
    for a, b in zip(ckpt.dhs, full.dhs, strict=True):
        assert gradcheck.rel_err(a, b) < 1e-12
    if full.dx is not None:
        assert gradcheck.rel_err(ckpt.dx, full.dx) < 1e-12
