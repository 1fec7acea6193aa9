"""bptt.fast.adaptive, the adaptive softmax on the fast engine's kernels, against reference.adaptive
(its oracle) in float64 to round-off: loss, every gradient, dh, log_probs, log_likelihood and its
argmax, for one and three clusters, with and without head_bias, unused clusters, heads and tails
small enough for readout's cut by rows and large enough for its cut by classes; float32 close. Then
a Network with cutoffs on engine="fast" against engine="numpy" in float64."""

import numpy as np
import pytest

import bptt
from bptt.fast import adaptive as fast_adaptive
from bptt.model import engine
from bptt.reference import adaptive

ROUND_OFF = 1e-12

# (H, K, cutoffs, div_value, head_bias, targets, N): "skip" leaves cluster 2 (and the shortlist)
# without a target, "short" every cluster; K = 3000 puts the head and cluster 1 past
# readout.ROW_TILE_BYTES (cut by classes), N = 300 past a tile of rows.
CASES = [
    (8, 10, [4], 4.0, False, "all", 13),
    (8, 10, [4], 4.0, True, "all", 13),
    (16, 20, [3, 7, 12], 2.0, True, "all", 40),
    (64, 20, [3, 7, 12], 4.0, False, "all", 13),       # h_i = 16, 4, 1
    (16, 20, [3, 7, 12], 2.0, False, "skip", 13),
    (12, 9, [2, 8], 2.5, True, "short", 13),
    (12, 9, [2, 8], 2.0, False, "all", 13),             # cluster 2 has a single class
    (32, 3000, [1100, 2000], 4.0, True, "all", 300),
    (32, 3000, [700], 2.0, False, "zipf", 300),
]
IDS = [f"H{c[0]}-K{c[1]}-cut{'.'.join(map(str, c[2]))}-bias{int(c[4])}-{c[5]}-N{c[6]}" for c in CASES]


def relative(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-300)


def targets(rng, K, cutoffs, which, N):
    bounds = [0, *cutoffs, K]
    if which == "zipf":                                 # most targets in the shortlist, as in a corpus
        return np.minimum(rng.zipf(1.3, N) - 1, K - 1)
    if which == "all":
        y = np.concatenate([rng.integers(lo, hi, 2) for lo, hi in zip(bounds, bounds[1:])])
        return rng.permutation(np.concatenate([y, rng.integers(0, K, N - len(y))]))
    if which == "skip":
        y = np.concatenate([rng.integers(bounds[1], bounds[2], 2), rng.integers(bounds[3], K, 2)])
    else:
        y = rng.integers(0, cutoffs[0], 2)
    return rng.permutation(np.resize(y, N))


def setup(case, dtype=np.float64, seed=0):
    H, K, cutoffs, div_value, head_bias, which, N = case
    rng = np.random.default_rng(seed)
    p = adaptive.init_params(rng, H, K, cutoffs, div_value, head_bias, dtype)
    p = {k: (v * 3).astype(dtype) for k, v in p.items()}              # wide logits: the max shift matters
    h = rng.standard_normal((N, H)).astype(dtype)
    w = rng.random(N).astype(dtype)
    w[rng.random(N) < 0.2] = 0                                         # padding rows
    return p, h, targets(rng, K, cutoffs, which, N), w / max(w.sum(), 1)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loss_and_grads_equal_the_reference(case):
    p, h, y, w = setup(case)
    L, grads, dh = fast_adaptive.loss_and_grads(p, h, y, w)
    L_ref, grads_ref, dh_ref = adaptive.loss_and_grads(p, h, y, w)
    assert abs(L - L_ref) <= ROUND_OFF * abs(L_ref)
    assert list(grads) == list(grads_ref)
    for name in grads_ref:
        assert grads[name].dtype == grads_ref[name].dtype and grads[name].shape == grads_ref[name].shape
        if not grads_ref[name].any():                                  # an unused cluster: exactly 0
            assert not grads[name].any(), name
        else:
            assert relative(grads[name], grads_ref[name]) < ROUND_OFF, name
    assert relative(dh, dh_ref) < ROUND_OFF


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_log_probs_and_log_likelihood_equal_the_reference(case):
    p, h, y, _ = setup(case)
    logp = fast_adaptive.log_probs(p, h)
    logp_ref = adaptive.log_probs(p, h)
    assert logp.dtype == logp_ref.dtype and np.abs(logp - logp_ref).max() < ROUND_OFF * 100
    ll, arg = fast_adaptive.log_likelihood(p, h, y)
    ll_ref, arg_ref = adaptive.log_likelihood(p, h, y)
    assert np.abs(ll - ll_ref).max() < ROUND_OFF * 100
    assert np.array_equal(arg, arg_ref) and np.array_equal(arg, logp_ref.argmax(axis=1))


@pytest.mark.parametrize("case", [CASES[2], CASES[7], CASES[8]], ids=[IDS[2], IDS[7], IDS[8]])
def test_float32_is_close(case):
    p32, h32, y, w32 = setup(case, np.float32)
    p = {k: v.astype(np.float64) for k, v in p32.items()}
    L, grads, dh = fast_adaptive.loss_and_grads(p32, h32, y, w32)
    L_ref, grads_ref, dh_ref = adaptive.loss_and_grads(p, h32.astype(np.float64), y, w32.astype(np.float64))
    assert dh.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    assert abs(L - L_ref) < 1e-5 * abs(L_ref)
    assert all(relative(grads[k], grads_ref[k]) < 1e-4 for k in grads_ref if grads_ref[k].any())
    assert relative(dh, dh_ref) < 1e-4
    logp = fast_adaptive.log_probs(p32, h32)
    assert logp.dtype == np.float32
    assert np.abs(logp - adaptive.log_probs(p, h32.astype(np.float64))).max() < 1e-4
    ll, _ = fast_adaptive.log_likelihood(p32, h32, y)
    assert np.abs(ll - adaptive.log_likelihood(p, h32.astype(np.float64), y)[0]).max() < 1e-4


@pytest.mark.parametrize("head_bias", [False, True])
def test_network_fast_equals_numpy(head_bias):
    kw = dict(num_layers=2, embedding_dim=12, cutoffs=[40, 200], div_value=2.0, head_bias=head_bias, seed=3,
              dtype=np.float64)
    fast = bptt.Network("lstm", 700, 16, 700, engine="fast", **kw)
    ref = bptt.Network("lstm", 700, 16, 700, engine="numpy", **kw)
    assert fast.arch.backend.adaptive is fast_adaptive and ref.arch.backend.adaptive is None
    rng = np.random.default_rng(4)
    x = np.minimum(rng.zipf(1.2, (21, 9)) - 1, 699)
    a = engine.loss_and_grads(fast.params, fast.arch, x[:-1], x[1:])
    b = engine.loss_and_grads(ref.params, ref.arch, x[:-1], x[1:])
    assert abs(a.loss - b.loss) <= ROUND_OFF * abs(b.loss)
    assert all(relative(a.grads[k], b.grads[k]) < ROUND_OFF for k in b.grads if b.grads[k].any())
    s, s_ref = fast.score(x[:-1], x[1:]), ref.score(x[:-1], x[1:])
    assert abs(s.total - s_ref.total) <= ROUND_OFF * abs(s_ref.total) and s.correct == s_ref.correct
    logp, _ = fast.forward(x)
    logp_ref, _ = ref.forward(x)
    assert np.abs(logp - logp_ref).max() < ROUND_OFF * 100
