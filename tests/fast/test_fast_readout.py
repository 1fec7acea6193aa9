"""bptt.fast.readout, the fused readout + cross-entropy, against the unfused NumPy path it replaces
(losses.cross_entropy on z = h V^T + c, then dV = dz^T h, dc = sum dz, dh = dz V) in float64 to
round-off: tiles and partial tiles, several panels of classes, zero weights, one to three blocks."""

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
