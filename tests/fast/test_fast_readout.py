"""bptt.fast.readout, the fused readout + cross-entropy, against the unfused NumPy path it replaces
(losses.cross_entropy on z = h V^T + c, then dV = dz^T h, dc = sum dz, dh = dz V) in float64 to
round-off: tiles and partial tiles, several panels of classes, zero weights, one to three blocks;
the same cut by classes (large K), and the forward-only log-likelihood of both."""

import numpy as np
import pytest

from bptt.fast import readout
from bptt.reference import losses

ROUND_OFF = 1e-12


def relative(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-300)


def unfused(h, V, c, y, w):
    value, dz = losses.cross_entropy(h @ V.T + c, y, w)
    return value, dz.T @ h, dz.sum(axis=0), dz @ V


def problem(N, H, K, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((N, H)).astype(dtype)
    V = (rng.standard_normal((K, H)) * 3).astype(dtype)            # wide logits: the max shift matters
    c = rng.standard_normal(K).astype(dtype)
    y = rng.integers(0, K, N)
    w = rng.random(N).astype(dtype)
    w[rng.random(N) < 0.2] = 0                                      # padding rows
    return h, V, c, y, w / max(w.sum(), 1)


@pytest.mark.parametrize("N", [1, 5, readout.TILE - 1, readout.TILE, readout.TILE + 7, 3 * readout.TILE + 50])
@pytest.mark.parametrize("H, K", [(1, 2), (16, 65), (70, 64), (33, 150)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_equals_unfused(N, H, K, threads):
    h, V, c, y, w = problem(N, H, K)
    ref = unfused(h, V, c, y, w)
    got = readout.cross_entropy(h, V, c, y, w, threads=threads)
    assert relative(got[0], ref[0]) < ROUND_OFF
    for a, b in zip(got[1:], ref[1:], strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert relative(a, b) < ROUND_OFF


def test_float32_stays_float32_and_near():
    h, V, c, y, w = problem(300, 40, 65, dtype=np.float32)
    ref = unfused(h.astype(np.float64), V.astype(np.float64), c.astype(np.float64), y, w.astype(np.float64))
    got = readout.cross_entropy(h, V, c, y, w)
    assert all(a.dtype == np.float32 for a in got[1:])
    assert relative(got[0], ref[0]) < 1e-6
    for a, b in zip(got[1:], ref[1:], strict=True):
        assert relative(a, b) < 1e-5


def test_strided_rows_and_int32_targets():
    h, V, c, y, w = problem(200, 24, 30, seed=3)
    wide = np.zeros((200, 40))
    wide[:, 5:29] = h
    ref = unfused(h, V, c, y, w)
    got = readout.cross_entropy(wide[:, 5:29], V, c, y.astype(np.int32), w, threads=2)
    for a, b in zip(got, ref, strict=True):
        assert relative(a, b) < ROUND_OFF


# ---- cut by classes (a word vocabulary) and forward only ----------------------------------------

KC = readout.KC


@pytest.mark.parametrize("N", [1, 7, 130])
@pytest.mark.parametrize("H, K", [(1, 2), (16, KC - 1), (33, KC + 5), (20, 3 * KC + 1)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_by_classes_equals_unfused(N, H, K, threads):
    h, V, c, y, w = problem(N, H, K, seed=N + K)
    ref = unfused(h, V, c, y, w)
    got = readout.cross_entropy(h, V, c, y, w, threads=threads, classes=True)
    assert relative(got[0], ref[0]) < ROUND_OFF
    for a, b in zip(got[1:], ref[1:], strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert relative(a, b) < ROUND_OFF


def test_by_classes_in_float32_and_chosen_for_a_large_vocabulary():
    h, V, c, y, w = problem(150, 24, 3 * KC + 7, seed=2, dtype=np.float32)
    ref = unfused(*(a.astype(np.float64) for a in (h, V, c)), y, w.astype(np.float64))
    got = readout.cross_entropy(h, V, c, y, w, classes=True)
    assert all(a.dtype == np.float32 for a in got[1:])
    assert relative(got[0], ref[0]) < 1e-6
    for a, b in zip(got[1:], ref[1:], strict=True):
        assert relative(a, b) < 1e-5
    # a tile of logits over ROW_TILE_BYTES is cut by classes: K = 1024 is not, in float32; 1025 is
    assert not readout.by_classes(1024, np.float32) and readout.by_classes(1025, np.float32)
    assert readout.by_classes(513, np.float64) and not readout.by_classes(10000, np.float32, by=False)


def log_softmax_rows(h, V, c, y):
    z = h.astype(np.float64) @ V.T.astype(np.float64) + c
    return losses.log_softmax(z)[np.arange(len(y)), y], z.argmax(axis=1)


@pytest.mark.parametrize("classes", [False, True])
@pytest.mark.parametrize("N, H, K", [(1, 3, 2), (readout.TILE + 9, 16, 65), (40, 12, KC + 3), (300, 8, 2 * KC)])
@pytest.mark.parametrize("threads", [1, 2])
def test_log_likelihood_equals_log_softmax(classes, N, H, K, threads):
    h, V, c, y, _ = problem(N, H, K, seed=5)
    ref_logp, ref_arg = log_softmax_rows(h, V, c, y)
    logp, arg = readout.log_likelihood(h, V, c, y, threads=threads, classes=classes)
    assert logp.dtype == np.float64 and logp.shape == (N,)
    assert np.max(np.abs(logp - ref_logp)) < ROUND_OFF * max(1, np.abs(ref_logp).max())
    assert np.array_equal(arg, ref_arg)


@pytest.mark.parametrize("classes", [False, True])
def test_log_likelihood_ties_and_float32(classes):
    """Equal logits: log p = -log K and the first class is the prediction, as argmax gives it; float32
    within its round-off."""
    K = 2 * KC + 1
    h, V, c, y, _ = problem(20, 6, K, seed=8, dtype=np.float32)
    logp, arg = readout.log_likelihood(h, np.zeros_like(V), np.zeros_like(c), y, threads=2, classes=classes)
    assert np.allclose(logp, -np.log(K), rtol=1e-6) and np.all(arg == 0)
    ref_logp, _ = log_softmax_rows(h, V, c, y)
    logp, _ = readout.log_likelihood(h, V, c, y, threads=2, classes=classes)
    assert np.max(np.abs(logp - ref_logp)) < 1e-5 * np.abs(ref_logp).max()
