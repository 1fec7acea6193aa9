"""The fast engine (bptt.fast) against the NumPy reference cells, which the gradient checks prove:
float64 agreement to round-off over the whole case matrix, threads and row blocks, the rational
tanh to its stated error, and float32 training curves that follow the reference's."""

import dataclasses

import numpy as np
import pytest

from bptt import fast
from bptt.fast import nonlinear, rows
from bptt.lab import gradcheck
from bptt.model import engine
from bptt.model.network import Network
from bptt.reference import CELLS

ROUND_OFF = 1e-12


def relative(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-300)


def both_engines(case, **training):
    out = []
    for name in ("numpy", "fast"):
        net = gradcheck.network(dataclasses.replace(case, engine=name))
        problem = gradcheck.problem(case)
        extra = {"reset": problem.pop("reset", None), "loss_mask": problem.pop("loss_mask", None)}
        out.append(engine.loss_and_grads(net.params, net.arch, **problem, **extra, **training))
    return out


def parts(state):
    """A public state as a tuple of arrays: (h,) or (h, c)."""
    return state if isinstance(state, tuple) else (state,)


def assert_same(ref, got, tol=ROUND_OFF):
    assert relative(got.loss, ref.loss) < tol
    for name in ref.grads:
        assert relative(got.grads[name], ref.grads[name]) < tol, name
    for a, b in zip(parts(got.state), parts(ref.state), strict=True):
        assert relative(a, b) < tol
    assert (got.dx is None) == (ref.dx is None)
    if ref.dx is not None:
        assert relative(got.dx, ref.dx) < tol
    for a, b in zip(parts(got.dstate0), parts(ref.dstate0), strict=True):
        assert relative(a, b) < tol


MATRIX = [c for c in gradcheck.all_cases() if not c.cell.startswith("skip")]
TRAINING = [c for c in gradcheck.training_cases() if not c.cell.startswith("skip")]
OPTIONS = [c for c in (*gradcheck.bidirectional_cases(), *gradcheck.initial_state_cases(),
                       *gradcheck.projection_cases(), *gradcheck.adaptive_cases())
           if not c.cell.startswith("skip")]
EVERY = MATRIX + TRAINING + OPTIONS


@pytest.mark.parametrize("case", EVERY, ids=[c.label().replace(" ", "-") for c in EVERY])
def test_float64_equals_reference(case):
    ref, got = both_engines(case, dropout=case.dropout, rng=7 if case.dropout else None)
    assert_same(ref, got)


AWD = [c for c in gradcheck.awd_cases() if not c.cell.startswith("skip")]


@pytest.mark.parametrize("case", AWD, ids=[c.label().replace(" ", "-") for c in AWD])
def test_regularisers_equal_reference(case):
    """AWD-LSTM's options (the same masks: an int seed; the fast engine runs rows sorted by length
    and folds the embedding under dropout_embedding alone)."""
    ref, got = both_engines(case, **case.training(seed=7))
    assert_same(ref, got)


@pytest.mark.parametrize("cell", [c for c in gradcheck.CELL_NAMES if not c.startswith("skip")])
def test_clip_dh_and_trace_equal_reference(cell):
    case = gradcheck.Case(cell, 2, "float", with_state=True, with_lengths=True, with_reset=True)
    ref, got = both_engines(case, clip_dh=0.05, trace=True)
    assert_same(ref, got)
    for a, b in zip(got.dhs, ref.dhs):
        assert relative(a, b) < ROUND_OFF


def cell_problem(cell, T, B, D, H, dtype, seed=0):
    rng = np.random.default_rng(seed)
    name, _, f = cell.partition("-")
    p = CELLS[name].init_params(rng, D, H, dtype)
    xs = rng.standard_normal((T, B, D)).astype(dtype)
    state0 = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in CELLS[name].state_names())
    mask = np.arange(T)[:, None, None] < rng.integers(1, T + 1, (1, B, 1))
    reset = rng.random((T, B, 1)) < 0.1
    dhs = rng.standard_normal((T, B, H)).astype(dtype)
    dstate = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in CELLS[name].state_names())
    options = {"nonlinearity": f} if name == "rnn" else {}
    return name, p, xs, state0, mask, reset, dhs, dstate, options


@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-relu", "rnn-sigmoid", "gru", "lstm"])
@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_row_blocks_on_threads_equal_reference(cell, threads):
    """B = 43 rows split into 1 to 5 blocks of uneven size, each on its own thread."""
    name, p, xs, state0, mask, reset, dhs, dstate, options = cell_problem(cell, 9, 43, 6, 5, np.float64)
    ref_cell, fast_cell = CELLS[name], fast.CELLS[name]
    assert len(rows.blocks(43, threads)) == threads
    hs_r, s_r, cache_r = ref_cell.forward(p, xs, state0, mask, reset, **options)
    hs_f, s_f, cache_f = fast_cell.forward(p, xs, state0, mask, reset, **options, threads=threads)
    assert relative(hs_f, hs_r) < ROUND_OFF
    for a, b in zip(s_f, s_r):
        assert relative(a, b) < ROUND_OFF
    trace_r, trace_f = np.zeros_like(hs_r), np.zeros_like(hs_r)
    dx_r, d0_r, g_r = ref_cell.backward(p, dhs, dstate, cache_r, 0.7, trace_r)
    dx_f, d0_f, g_f = fast_cell.backward(p, dhs, dstate, cache_f, 0.7, trace_f, threads=threads)
    assert relative(dx_f, dx_r) < ROUND_OFF and relative(trace_f, trace_r) < ROUND_OFF
    for a, b in zip(d0_f, d0_r):
        assert relative(a, b) < ROUND_OFF
    for k in g_r:
        assert relative(g_f[k], g_r[k]) < ROUND_OFF, k


@pytest.mark.parametrize("cell", ["rnn-tanh", "gru", "lstm"])
def test_caches_are_interchangeable(cell):
    """Either engine's backward runs on the other's forward cache (the same layout): diagnostics
    (step_jacobian) and checkpointing read it."""
    name, p, xs, state0, mask, reset, dhs, dstate, options = cell_problem(cell, 6, 4, 3, 5, np.float64)
    ref_cell, fast_cell = CELLS[name], fast.CELLS[name]
    _, _, cache_f = fast_cell.forward(p, xs, state0, mask, reset, **options)
    _, _, cache_r = ref_cell.forward(p, xs, state0, mask, reset, **options)
    for a, b in zip(ref_cell.backward(p, dhs, dstate, cache_f)[2].values(),
                    fast_cell.backward(p, dhs, dstate, cache_r)[2].values()):
        assert relative(a, b) < ROUND_OFF
    for t in range(6):
        assert relative(ref_cell.step_jacobian(p, cache_f, t), ref_cell.step_jacobian(p, cache_r, t)) < ROUND_OFF


def test_rational_tanh_within_its_stated_error():
    x = np.linspace(-20, 20, 4_000_001, dtype=np.float32)
    x = np.concatenate([x, np.float32([0, -0.0, 1e-30, -1e-30, 1e-7, 7.9, 8.0, 1e4, -1e4])])
    exact = np.tanh(x.astype(np.float64))
    got = elementwise(nonlinear.tanh)(x)
    assert got.dtype == np.float32
    assert np.abs(got - exact).max() < 4e-7                                # absolute
    assert (np.abs(got - exact) / np.maximum(np.abs(exact), 1e-38)).max() < 4e-7     # relative
    assert np.abs(got).max() <= 1.0
    s_exact = 0.5 * (1 + np.tanh(0.5 * x.astype(np.float64)))              # 1 / (1 + e^-x), no overflow
    assert np.abs(elementwise(nonlinear.sigmoid)(x) - s_exact).max() < 2.5e-7


def test_exp_polynomial_within_its_stated_error():
    x = np.concatenate([np.linspace(-87, 88, 4_000_001, dtype=np.float32),
                        np.float32([0, -0.0, 1e-30, -1e-7, 0.3465736, -0.3465736, 0.3465737, -87, 88])])
    exact = np.exp(x.astype(np.float64))
    got = elementwise(nonlinear.exp)(x)
    assert got.dtype == np.float32
    assert (np.abs(got - exact) / exact).max() < 1.5e-7                      # relative
    assert got[x == 0].tolist() == [1.0, 1.0]                                # the row's max gets exactly 1
    below = elementwise(nonlinear.exp)(np.float32([-87.5, -100, -1e4, -np.inf]))
    assert (below >= 0).all() and (below < 1.7e-38).all()                    # clamped: absolute error < 1.7e-38


def elementwise(f):
    """f(x, approx=True) applied to every element of x, compiled (f inlines as in the loops)."""
    from numba import njit

    @njit
    def apply(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = f(x[i], True)
        return out

    return apply


@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-sigmoid", "gru", "lstm"])
def test_float32_approximation_stays_near_exact(cell):
    """In float32 the rational tanh changes a window's outputs and gradients by float32 round-off."""
    name, p, xs, state0, mask, reset, dhs, dstate, options = cell_problem(cell, 20, 16, 8, 32, np.float32)
    fast_cell = fast.CELLS[name]
    out = {}
    for approx in (False, True):
        hs, _, cache = fast_cell.forward(p, xs, state0, mask, reset, **options, approx=approx)
        out[approx] = hs, fast_cell.backward(p, dhs, dstate, cache)[2]
    assert relative(out[True][0], out[False][0]) < 2e-6
    for k in out[False][1]:
        assert relative(out[True][1][k], out[False][1][k]) < 2e-5, k


@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-relu", "rnn-sigmoid", "gru", "lstm"])
@pytest.mark.parametrize("approx", [False, True])
def test_float32_near_float64_reference(cell, approx):
    """A float32 window (B = 43 rows on two blocks, H = 33: last panels of a few columns) against
    the reference in float64 from the same float32 numbers: outputs and every gradient within
    float32 round-off grown over 12 steps (measured: 3.4e-7 at most)."""
    name, p, xs, state0, mask, reset, dhs, dstate, options = cell_problem(cell, 12, 43, 8, 33, np.float32)
    p64 = {k: v.astype(np.float64) for k, v in p.items()}

    def wide(state):
        return tuple(x.astype(np.float64) for x in state)

    hs_r, s_r, cache_r = CELLS[name].forward(p64, xs.astype(np.float64), wide(state0), mask, reset, **options)
    dx_r, d0_r, g_r = CELLS[name].backward(p64, dhs.astype(np.float64), wide(dstate), cache_r)
    hs_f, s_f, cache_f = fast.CELLS[name].forward(p, xs, state0, mask, reset, **options, approx=approx, threads=2)
    dx_f, d0_f, g_f = fast.CELLS[name].backward(p, dhs, dstate, cache_f, threads=2)
    assert hs_f.dtype == dx_f.dtype == np.float32
    for got, want in [(hs_f, hs_r), (dx_f, dx_r), *zip(s_f, s_r), *zip(d0_f, d0_r)]:
        assert relative(got, want) < 2e-6
    for k in g_r:
        assert g_f[k].dtype == np.float32 and relative(g_f[k], g_r[k]) < 2e-6, k


def test_approximation_refused_in_float64():
    name, p, xs, state0, *_ = cell_problem("lstm", 3, 2, 2, 3, np.float64)
    with pytest.raises(ValueError, match="approx: the rational tanh is for float32 only"):
        fast.lstm.forward(p, xs, state0, approx=True)


def test_bad_threads_named():
    with pytest.raises(ValueError, match="threads: expected a positive int"):
        rows.blocks(32, 0)


def test_unknown_engine_named():
    with pytest.raises(ValueError, match="engine"):
        Network("lstm", 5, 4, 5, engine="jit")


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_float32_training_follows_reference(cell):
    """300 Adam steps of a character model in float32, fast (rational tanh, two row blocks) and
    reference from the same weights on the same windows: the loss curves stay together."""
    from bptt.training import clipping, optim

    text = np.frombuffer(b"the cat sat on the mat. the rat ate the cat's hat. " * 40, np.uint8) % 32
    curves = {}
    for name in ("numpy", "fast"):
        net = Network(cell, 32, 32, 32, embedding_dim=16, dtype=np.float32, seed=3, engine=name)
        opt = optim.Adam()
        state = opt.init(net.params)
        rng = np.random.default_rng(0)
        losses = []
        for _ in range(300):
            starts = rng.integers(0, len(text) - 21, 16)
            x = np.stack([text[s:s + 20] for s in starts], axis=1).astype(np.int64)
            y = np.stack([text[s + 1:s + 21] for s in starts], axis=1).astype(np.int64)
            r = engine.loss_and_grads(net.params, net.arch, x, y)
            clipping.clip_global_norm(r.grads, 5.0)
            opt.step(net.params, r.grads, state, 1e-2)
            losses.append(r.loss)
        curves[name] = np.array(losses)
    assert curves["fast"][-1] < 0.5 * curves["fast"][0]                   # it learns
    assert np.abs(curves["fast"] - curves["numpy"]).max() < 2e-3 * curves["numpy"].max()

