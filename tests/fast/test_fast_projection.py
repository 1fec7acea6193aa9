"""The compiled LSTM with a projection (p["R"], nn.LSTM's proj_size) against the NumPy reference cell,
which tests/reference/test_lstm_projection.py proves: float64 to round-off over input kinds (floats,
one-hot ids, Embedded rows), lengths (rows of different lengths, in any order or longest first, and
steps where every row has ended), resets, clip_dh and dh_trace, and blocks of rows on threads;
float32 within its round-off; either backward on either forward's cache. Only the cell is tested
here: the engine's reordering of rows by length is its own business."""

from dataclasses import dataclass

import numpy as np
import pytest

from bptt.fast import lstm, packed
from bptt.reference import lstm as reference
from bptt.reference.inputs import Embedded

T, B, D, H, P, V = 9, 13, 4, 19, 7, 6       # H, 4H and P: full and narrow panels at either vector width
ROUND_OFF = 1e-12
MIXED = np.array([9, 1, 5, 9, 3, 7, 2, 9, 4, 6, 8, 1, 5])        # T = 9: rows ended at different steps
LENGTHS = {None: None, "mixed": MIXED, "sorted": np.sort(MIXED)[::-1],   # longest first: ended rows last
           "short": np.minimum(MIXED, T - 3)}                   # the last 3 steps have no running row


@dataclass(frozen=True)
class Case:
    inputs: str = "float"           # "float" (T, B, D), "ids" (T, B) one-hot, "embedded": Embedded(E, ids)
    lengths: str | None = None      # a key of LENGTHS
    reset: bool = False
    clip_dh: float | None = None    # with it, dh_trace is recorded too
    threads: int = 1                # blocks of rows
    cell: str = "lstm"              # (for tests/fast/warm_cache.py's groups: every test here takes a case)

    def label(self):
        parts = [self.inputs, self.lengths or "", "reset" * self.reset, f"clip{self.clip_dh}" * bool(self.clip_dh),
                 f"threads{self.threads}"]
        return "-".join(part for part in parts if part)


CASES = [Case("float"), Case("ids"), Case("embedded"), Case("float", "mixed", True, 0.3, 2),
         Case("ids", "sorted", True, None, 3), Case("embedded", "mixed", False, 0.3, 4), Case("float", "sorted"),
         Case("float", "short", True, 0.3, 2), Case("embedded", "short", True, None, 1)]


def problem(case, dtype=np.float64, seed=0, sizes=(T, B, D, H, P)):
    """(p, xs for the fast cell, xs for the reference, state0, mask, reset, dhs, dstate_T)."""
    T_, B_, D_, H_, P_ = sizes
    rng = np.random.default_rng(seed)
    p = reference.init_params(rng, D_, H_, dtype, proj_size=P_)
    if case.inputs == "float":
        xs = ref_xs = rng.standard_normal((T_, B_, D_)).astype(dtype)
    elif case.inputs == "ids":
        xs = ref_xs = rng.integers(0, D_, (T_, B_))
    else:
        xs = Embedded(rng.standard_normal((V, D_)).astype(dtype), rng.integers(0, V, (T_, B_)))
        ref_xs = xs.E[xs.ids]
    state0 = (rng.standard_normal((B_, P_)).astype(dtype), rng.standard_normal((B_, H_)).astype(dtype))
    lengths = LENGTHS[case.lengths]
    mask = None if lengths is None else (np.arange(T_)[:, None] < np.resize(lengths, B_))[:, :, None]
    reset = rng.random((T_, B_, 1)) < 0.15 if case.reset else None
    dhs = rng.standard_normal((T_, B_, P_)).astype(dtype)
    dstate = (rng.standard_normal((B_, P_)).astype(dtype), rng.standard_normal((B_, H_)).astype(dtype))
    return p, xs, ref_xs, state0, mask, reset, dhs, dstate


def relative(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-300)


def run(cell, case, p, xs, state0, mask, reset, dhs, dstate, **fast):
    """(hs, state_T, dxs, dstate0, grads, trace) of one forward and backward of cell; fast: the fast
    cell's approx and threads (backward takes threads only)."""
    hs, state, cache = cell.forward(p, xs, state0, mask, reset, **fast)
    threads = {"threads": fast["threads"]} if "threads" in fast else {}
    trace = np.zeros_like(dhs) if case.clip_dh else None
    dxs, dstate0, grads = cell.backward(p, dhs, dstate, cache, case.clip_dh, trace, **threads)
    return hs, state, dxs, dstate0, grads, trace


def assert_near(got, want, tol, embedded_ids=None):
    hs, state, dxs, dstate0, grads, trace = got
    r_hs, r_state, r_dxs, r_dstate0, r_grads, r_trace = want
    if embedded_ids is not None:                           # the reference's dx_t summed into the rows of E
        dE = np.zeros((V, r_dxs.shape[2]))
        np.add.at(dE, embedded_ids, r_dxs)
        r_dxs = dE
    errors = {"hs": relative(hs, r_hs), "h_T": relative(state[0], r_state[0]), "c_T": relative(state[1], r_state[1]),
              "dh0": relative(dstate0[0], r_dstate0[0]), "dc0": relative(dstate0[1], r_dstate0[1])}
    errors |= {k: relative(grads[k], r_grads[k]) for k in r_grads}
    assert (dxs is None) == (r_dxs is None) and grads.keys() == r_grads.keys() == {"W", "U", "b", "b_U", "R"}
    if dxs is not None:
        errors["dxs"] = relative(dxs, r_dxs)
    if r_trace is not None:
        errors["trace"] = relative(trace, r_trace)
    assert max(errors.values()) < tol, errors


@pytest.mark.parametrize("case", CASES, ids=[c.label() for c in CASES])
def test_float64_equals_reference(case):
    p, xs, ref_xs, state0, mask, reset, dhs, dstate = problem(case)
    want = run(reference, case, p, ref_xs, state0, mask, reset, dhs, dstate)
    got = run(lstm, case, p, xs, state0, mask, reset, dhs, dstate, threads=case.threads)
    assert_near(got, want, ROUND_OFF, xs.ids if case.inputs == "embedded" else None)
    if case.clip_dh:
        assert np.abs(got[5]).max() == case.clip_dh         # the clip binds


CASES32 = [Case("float", "mixed", True, threads=2), Case("embedded", "mixed", True, 0.3, threads=2)]


@pytest.mark.parametrize("case", CASES32, ids=[c.label() for c in CASES32])
def test_float32_near_float64_reference(case):
    """B = 43 rows on two blocks, H = 33, P = 17, T = 12 (the last 3 steps with no running row):
    float32 outputs and every gradient, with the rational tanh and without, against the reference
    in float64 from the same float32 numbers (measured: 3e-7 at most)."""
    p, xs, ref_xs, state0, mask, reset, dhs, dstate = problem(case, np.float32, 1, (12, 43, 8, 33, 17))
    wide = {k: v.astype(np.float64) for k, v in p.items()}
    want = run(reference, case, wide, ref_xs.astype(np.float64), tuple(s.astype(np.float64) for s in state0), mask,
               reset, dhs.astype(np.float64), tuple(d.astype(np.float64) for d in dstate))
    for approx in (False, True):
        got = run(lstm, case, p, xs, state0, mask, reset, dhs, dstate, approx=approx, threads=case.threads)
        assert all(a.dtype == np.float32 for a in (got[0], *got[1], got[2], *got[3], *got[4].values()))
        assert_near(got, want, 2e-6, xs.ids if case.inputs == "embedded" else None)


@pytest.mark.parametrize("case", [Case("float", "mixed", True)], ids=["float-mixed-reset"])
def test_caches_are_interchangeable(case):
    """Either engine's backward on the other's forward cache (one layout: the m_t of (3) last), and
    step_jacobian on either; a plain LSTM's cache ends with None in both."""
    p, xs, _, state0, mask, reset, dhs, dstate = problem(case, seed=2)
    _, _, cache_r = reference.forward(p, xs, state0, mask, reset)
    _, _, cache_f = lstm.forward(p, xs, state0, mask, reset, threads=2)
    assert len(cache_f) == len(cache_r) == 9 and cache_f[-1].shape == cache_r[-1].shape == (T, B, H)
    for backward in (reference.backward, lstm.backward):
        a, b = backward(p, dhs, dstate, cache_f), backward(p, dhs, dstate, cache_r)
        for x, y in zip((a[0], *a[1], *a[2].values()), (b[0], *b[1], *b[2].values()), strict=True):
            assert relative(x, y) < ROUND_OFF
    for t in range(T):
        assert relative(lstm.step_jacobian(p, cache_f, t), reference.step_jacobian(p, cache_r, t)) < ROUND_OFF
    plain = {k: v for k, v in reference.init_params(np.random.default_rng(0), D, H, np.float64).items()}
    zeros = (np.zeros((B, H)), np.zeros((B, H)))
    assert lstm.forward(plain, xs, zeros)[2][-1] is None and reference.forward(plain, xs, zeros)[2][-1] is None


@pytest.mark.parametrize("case", [Case("ids", "sorted")], ids=["ids-sorted"])
def test_frozen_weights_and_a_misfit_r(case):
    """Inside packed.frozen (an evaluation's scope) U and R are packed once and give the same numbers;
    an R whose shape does not fit U's is named."""
    p, xs, _, state0, mask, _, _, _ = problem(case, seed=3)
    hs, state, _ = lstm.forward(p, xs, state0, mask)
    with packed.frozen(p.values()) as scope:
        for _ in range(2):
            again, state_again, _ = lstm.forward(p, xs, state0, mask)
            assert np.array_equal(again, hs) and all(np.array_equal(a, b) for a, b in zip(state_again, state))
    assert len(scope.panels) == 2                          # U^T and R^T, each packed once
    with pytest.raises(ValueError, match=r"R: expected shape \(P, H\) = \(7, 19\)"):
        lstm.forward(p | {"R": p["R"][:, :-1]}, xs, state0)
