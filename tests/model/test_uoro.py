"""UORO (model/rtrl.py): a seed fixes the estimate; the loss, the final state and the readout's
gradients are BPTT's exactly; and the estimate of the recurrent parameters' gradient is unbiased: its
mean over n = 3200 draws agrees with BPTT's gradient coordinate by coordinate (a z-test with a
stated false-alarm rate), and the error of the mean shrinks as 1/sqrt(n).

Draws are vectorised over rows: the batch tiled PER_GROUP times is one call whose rows draw their
own signs, and whose gradient (a mean over the rows) is the mean of PER_GROUP independent estimates
for the untiled batch. GROUPS such calls, seeds 0..GROUPS-1, give GROUPS independent group means."""

import functools
import statistics

import numpy as np
import pytest

import bptt
from bptt.lab import gradcheck
from bptt.model import engine

SIZES = dict(T=4, B=2, V=4, E=3, H=3, K=3)
CASES = [gradcheck.Case("rnn-tanh", 2, "embedding", "every", "cross_entropy", **SIZES),
         gradcheck.Case("rnn-relu", 1, "onehot", "last", "cross_entropy", **SIZES),
         gradcheck.Case("rnn-sigmoid", 2, "float", "every", "mse", **SIZES),
         gradcheck.Case("gru", 2, "embedding", "last", "mse", **SIZES),
         gradcheck.Case("lstm", 2, "float", "every", "cross_entropy", with_state=True, **SIZES)]
GROUPS, PER_GROUP = 320, 10          # n = 3200 draws, in 16 disjoint sets of 200 (20 groups each)
FALSE_ALARM = 1e-6                   # the chance that the z-test of one case fails although UORO is unbiased
READOUT = ("V", "c")                 # given exactly by UORO too, as by RTRL (R3)


def label(case):
    return case.label().replace(" ", "-")


def tiled(kw, m):
    """The problem's batch repeated m times along the rows: axis 1 of x, of the state and of y with a
    target at every step, axis 0 of y with one at the last step."""
    def repeat(a, axis):
        return np.concatenate([a] * m, axis=axis)

    parts = tuple(repeat(s, 1) for s in gradcheck.state_parts(kw["state"]))
    state = None if not parts else parts if len(parts) > 1 else parts[0]
    return kw | dict(x=repeat(kw["x"], 1), y=repeat(kw["y"], 0 if kw["target"] == "last" else 1), state=state)


@functools.cache
def estimates(case):
    """(GROUPS group means of PER_GROUP UORO estimates (GROUPS, P), BPTT's gradient (P,)) over the
    recurrent parameters (E and the layers' W, U, b, b_U), flattened in the parameters' order."""
    net = gradcheck.network(case)
    kw = gradcheck.problem(case)
    names = [name for name in net.params if name not in READOUT]
    exact = engine.loss_and_grads(net.params, net.arch, **kw).grads
    many = tiled(kw, PER_GROUP)
    draws = [engine.loss_and_grads(net.params, net.arch, **many, algorithm="uoro", seed=seed).grads
             for seed in range(GROUPS)]
    return (np.array([np.concatenate([g[name].ravel() for name in names]) for g in draws]),
            np.concatenate([exact[name].ravel() for name in names]))


def t_threshold(p, dof):
    """The |t| that Student's t with dof degrees of freedom exceeds with probability p: the normal
    quantile's Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5), error O(dof^-4)."""
    x = statistics.NormalDist().inv_cdf(1 - p / 2)
    g1 = (x ** 3 + x) / 4
    g2 = (5 * x ** 5 + 16 * x ** 3 + 3 * x) / 96
    g3 = (3 * x ** 7 + 19 * x ** 5 + 17 * x ** 3 - 15 * x) / 384
    return x + g1 / dof + g2 / dof ** 2 + g3 / dof ** 3


def z_scores(samples, target):
    """Per coordinate, (mean - target) / its standard error, from the sample standard deviation, on the
    coordinates whose samples vary; the others must equal target (no sign reaches them)."""
    mean, sd = samples.mean(axis=0), samples.std(axis=0, ddof=1)
    scale = np.abs(target).max()
    varies = sd > 1e-12 * scale
    assert np.all(np.abs(mean[~varies] - target[~varies]) <= 1e-12 * scale)
    return (mean - target)[varies] / (sd[varies] / np.sqrt(len(samples)))


@pytest.mark.parametrize("case", CASES, ids=[label(c) for c in CASES])
def test_the_mean_of_uoro_estimates_is_bptts_gradient(case):
    """A z-test per coordinate over the GROUPS group means, Bonferroni-corrected: with P coordinates
    each |z| is held below the two-sided FALSE_ALARM / P quantile of Student's t with GROUPS - 1
    degrees of freedom, so an unbiased estimate fails with probability below FALSE_ALARM (as far as
    a mean of PER_GROUP estimates is normal). Seeded: the outcome is the same on every run."""
    samples, exact = estimates(case)
    z = z_scores(samples, exact)
    threshold = t_threshold(FALSE_ALARM / len(z), len(samples) - 1)
    assert len(z) > exact.size / 2                                        # most coordinates are tested
    assert np.abs(z).max() < threshold
    assert np.abs(z_scores(samples, 0.8 * exact)).max() > threshold       # and it sees a bias of 20%


@pytest.mark.parametrize("case", CASES, ids=[label(c) for c in CASES])
def test_the_error_of_the_mean_shrinks_as_one_over_sqrt_n(case):
    """From n = 200 (the root mean square over 16 disjoint sets) to n = 3200, the error of the mean
    falls by sqrt(16) = 4: required between 2 and 8."""
    samples, exact = estimates(case)
    sets = samples.reshape(16, GROUPS // 16, -1).mean(axis=1)             # 16 means of 200 draws
    error_200 = np.sqrt(np.mean(np.sum((sets - exact) ** 2, axis=1)))
    error_3200 = np.linalg.norm(samples.mean(axis=0) - exact)
    assert 2 < error_200 / error_3200 < 8


@pytest.mark.parametrize("case", CASES, ids=[label(c) for c in CASES])
def test_the_loss_state_and_readout_are_exact(case):
    net = gradcheck.network(case)
    kw = gradcheck.problem(case)
    full = engine.loss_and_grads(net.params, net.arch, **kw)
    r = engine.loss_and_grads(net.params, net.arch, **kw, algorithm="uoro", seed=0)
    assert r.loss == pytest.approx(full.loss, rel=1e-12)
    for name in READOUT:
        assert gradcheck.rel_err(r.grads[name], full.grads[name]) < 1e-10, name
    for a, b in zip(gradcheck.state_parts(r.state), gradcheck.state_parts(full.state), strict=True):
        assert gradcheck.rel_err(a, b) < 1e-12
    assert r.dstate0 is None and r.dx is None
    assert list(r.grads) == list(full.grads)
    assert all(r.grads[name].shape == full.grads[name].shape for name in full.grads)


def test_a_seed_fixes_the_estimate():
    case = CASES[-1]
    net = gradcheck.network(case)
    kw = gradcheck.problem(case)

    def grads(seed):
        return engine.loss_and_grads(net.params, net.arch, **kw, algorithm="uoro", seed=seed).grads

    def same(a, b):
        return all(np.array_equal(a[name], b[name]) for name in a)

    assert same(grads(5), grads(5))
    assert not same(grads(5), grads(6))
    rng = np.random.default_rng(5)
    assert same(grads(rng), grads(5))                 # an int seed starts np.random.default_rng(seed)
    assert not same(grads(rng), grads(5))             # a Generator moves on
    _, from_network, _ = net.loss_and_grads(**kw, algorithm="uoro", seed=5)
    assert same(from_network, grads(5))


def test_uoro_runs_in_float32():
    net = bptt.Network("lstm", 4, 3, 3, num_layers=2, embedding_dim=3, dtype=np.float32, engine="numpy")
    x = np.random.default_rng(0).integers(0, 4, (4, 2))
    loss, grads, _ = net.loss_and_grads(x, x % 3, algorithm="uoro", seed=0)
    assert all(g.dtype == np.float32 and np.all(np.isfinite(g)) for g in grads.values())
    assert loss == pytest.approx(net.loss_and_grads(x, x % 3)[0], rel=1e-6)
