"""RTRL (model/rtrl.py) gives BPTT's loss, gradients, final state and dL/ds_0, in float64 to 1e-10
norm-relative per array, against both engines' BPTT; the cells' step partials compose to their
step Jacobians; and what it does not support is a ValueError naming the argument."""

import dataclasses

import numpy as np
import pytest

import bptt
from bptt.lab import gradcheck
from bptt.model import engine
from bptt.reference import CELLS, form

FORMS = ("rnn-tanh", "rnn-relu", "rnn-sigmoid", "gru", "lstm")
MATRIX = [gradcheck.Case(cell, layers, inputs, target, T=5, B=2, V=5, E=3, H=4, K=5)
          for cell in FORMS for layers in (1, 2) for inputs in gradcheck.INPUT_KINDS for target in ("every", "last")]
TOLERANCE = 1e-10


def label(case):
    return case.label().replace(" ", "-")


def check_equal(case, dtype=np.float64, tolerance=TOLERANCE, engines=("numpy", "fast")):
    """RTRL against full BPTT on each engine: the loss, every gradient, the final state and dstate0."""
    rtrl = None
    for name in engines:
        net = gradcheck.network(dataclasses.replace(case, engine=name), dtype)
        kw = gradcheck.problem(case, dtype)
        full = engine.loss_and_grads(net.params, net.arch, **kw)
        if rtrl is None:
            rtrl = engine.loss_and_grads(net.params, net.arch, **kw, algorithm="rtrl")
        assert rtrl.loss == pytest.approx(full.loss, rel=tolerance), name
        assert list(rtrl.grads) == list(full.grads)
        for param in full.grads:
            assert rtrl.grads[param].dtype == dtype
            assert gradcheck.rel_err(rtrl.grads[param], full.grads[param]) < tolerance, (name, param)
        pairs = [*zip(gradcheck.state_parts(rtrl.state), gradcheck.state_parts(full.state), strict=True),
                 *zip(gradcheck.state_parts(rtrl.dstate0), gradcheck.state_parts(full.dstate0), strict=True)]
        assert len(pairs) == 2 * len(net.arch.state_names)
        for a, b in pairs:
            assert a.shape == b.shape and gradcheck.rel_err(a, b) < tolerance, name
        assert rtrl.dx is None and rtrl.dhs is None
    return rtrl


@pytest.mark.parametrize("case", MATRIX, ids=[label(c) for c in MATRIX])
def test_rtrl_equals_bptt(case):
    check_equal(case)


STATE_CASES = [gradcheck.Case(cell, 2, inputs, "every", with_state=True, T=6, B=2, V=5, E=4, H=3, K=5)
               for cell in FORMS for inputs in ("onehot", "float")]


@pytest.mark.parametrize("case", STATE_CASES, ids=[label(c) for c in STATE_CASES])
def test_rtrl_from_a_given_initial_state(case):
    """A state passed in: RTRL starts from it and gives dL/ds_0 of each layer and row (its columns in M)."""
    rtrl = check_equal(case)
    assert all(np.abs(part).max() > 1e-6 for part in gradcheck.state_parts(rtrl.dstate0))


LOSS_CASES = [gradcheck.Case(cell, layers, "embedding", target, loss, T=4, B=2, V=5, E=3, H=5, K=4)
              for cell in FORMS for layers, target in ((1, "every"), (2, "last")) for loss in ("cross_entropy", "mse")]


@pytest.mark.parametrize("case", LOSS_CASES, ids=[label(c) for c in LOSS_CASES])
def test_rtrl_with_each_loss(case):
    check_equal(case)


def test_rtrl_with_tied_weights():
    """V = E: the readout's dV joins E's influence-carried gradient (engine.with_readout)."""
    check_equal(gradcheck.Case("lstm", 2, "embedding", tied=True, T=5, B=2, V=5, E=4, H=4, K=5))


def test_rtrl_in_float32_matches_float32_bptt_to_its_rounding():
    """float32 in, float32 out: the same computation in another dtype (tested in float64 above); the
    two orders of summation differ by a few float32 roundings (2e-6 is 17 float32 epsilons)."""
    check_equal(gradcheck.Case("gru", 2, "embedding", T=5, B=2, V=5, E=3, H=4, K=5), np.float32, 2e-6, ("numpy",))


def test_network_takes_the_algorithm():
    net = bptt.Network("lstm", 5, 4, 5, num_layers=2, embedding_dim=3, engine="numpy")
    x = np.random.default_rng(0).integers(0, 5, (5, 2))
    loss, grads, state = net.loss_and_grads(x, x)
    loss_r, grads_r, state_r = net.loss_and_grads(x, x, algorithm="rtrl")
    assert loss_r == pytest.approx(loss, rel=TOLERANCE)
    assert all(gradcheck.rel_err(grads_r[name], grads[name]) < TOLERANCE for name in grads)
    assert all(gradcheck.rel_err(a, b) < TOLERANCE for a, b in zip(state_r, state, strict=True))
    default = net.loss_and_grads(x, x, algorithm="bptt")           # the default, named
    assert default[0] == loss and all(np.array_equal(default[1][name], grads[name]) for name in grads)


@pytest.mark.parametrize("name", FORMS)
def test_step_partials_compose_to_the_step_jacobian(name):
    """step_jacobian = dprev + dah U (U on h_{t-1}), at every step; the partials' shapes (B, S, G), (B, S, S)."""
    cell, nonlinearity = form(name)
    module = CELLS[cell]
    rng = np.random.default_rng(3)
    T, B, D, H = 4, 3, 2, 5
    p = module.init_params(rng, D, H, np.float64)
    state0 = tuple(rng.standard_normal((B, H)) for _ in module.state_names())
    options = {"nonlinearity": nonlinearity} if nonlinearity else {}
    _, _, cache = module.forward(p, rng.standard_normal((T, B, D)), state0, **options)
    S, G = H * len(state0), module.GATES * H
    for t in range(T):
        dax, dah, dprev = module.step_partials(p, cache, t)
        assert dax.shape == dah.shape == (B, S, G) and dprev.shape == (B, S, S)
        composed = dprev.copy()
        composed[:, :, :H] += dah @ p["U"]
        assert gradcheck.rel_err(composed, module.step_jacobian(p, cache, t)) < 1e-14


def refusal_cases():
    """(Network keyword arguments, loss_and_grads keyword arguments, the argument the message names)."""
    T, B = 4, 2
    cases = [(dict(cell="skip"), {}, "cell"), (dict(bidirectional=True), {}, "bidirectional"),
             (dict(proj_size=2), {}, "proj_size"), (dict(learn_init_state=True), {}, "learn_init_state"),
             (dict(cutoffs=(2,), div_value=2.0), {}, "cutoffs")]
    options = dict(lengths=np.array([4, 3]), reset=np.zeros((T, B), bool), loss_mask=np.ones((T, B), bool),
                   dropout=0.5, rng=np.random.default_rng(0), dropout_rows=(0, 2, 4), clip_dh=1.0, trace=True,
                   recompute_every=2, weight_drop=0.5, dropout_input=0.5, dropout_hidden=0.5, dropout_output=0.5,
                   dropout_embedding=0.5, alpha=1.0, beta=1.0)
    cases += [({}, {name: value}, name) for name, value in options.items()]
    return cases


@pytest.mark.parametrize("algorithm", ["rtrl", "uoro"])
@pytest.mark.parametrize("net_kw,kw,name", refusal_cases(), ids=[c[2] for c in refusal_cases()])
def test_what_is_not_supported_is_refused_by_name(algorithm, net_kw, kw, name):
    args = dict(cell="lstm", input_size=5, hidden_size=3, output_size=5, num_layers=2, embedding_dim=3) | net_kw
    net = bptt.Network(**args)
    x = np.random.default_rng(0).integers(0, 5, (4, 2))
    seed = {"seed": 0} if algorithm == "uoro" else {}
    draws = "dropout" in name or name == "weight_drop"
    net.loss_and_grads(x, x, algorithm="bptt", **kw, **({"rng": 0} if draws else {}))     # BPTT takes it
    with pytest.raises(ValueError, match=rf"^{name}: algorithm='{algorithm}' does not support"):
        net.loss_and_grads(x, x, algorithm=algorithm, **seed, **kw)


def test_the_algorithm_and_its_seed_are_checked():
    net = bptt.Network("gru", 5, 3, 5)
    x = np.zeros((4, 2), np.int64)
    with pytest.raises(ValueError, match="^algorithm: expected one of 'bptt', 'rtrl', 'uoro'; got 'RTRL'"):
        net.loss_and_grads(x, x, algorithm="RTRL")
    for algorithm in ("bptt", "rtrl"):
        with pytest.raises(ValueError, match=f"^seed: applies to algorithm='uoro' only.*algorithm='{algorithm}'"):
            net.loss_and_grads(x, x, algorithm=algorithm, seed=1)
    with pytest.raises(ValueError, match="^seed: algorithm='uoro' draws random signs"):
        net.loss_and_grads(x, x, algorithm="uoro")
    with pytest.raises(TypeError, match="^seed: expected an int >= 0, got 1.5"):
        net.loss_and_grads(x, x, algorithm="uoro", seed=1.5)
    with pytest.raises(TypeError, match="^unknown: not an option of loss_and_grads"):
        net.loss_and_grads(x, x, algorithm="rtrl", unknown=1)
