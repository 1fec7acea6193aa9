"""fast.arrays: the whole-array passes of clipping and SGD give NumPy's numbers, on every core."""

import numpy as np
import pytest

from bptt.fast import arrays, rows

SIZES = [0, 1, 7, arrays.CHUNK - 1, arrays.CHUNK, 3 * arrays.CHUNK + 5, 25303 * 16]


def draw(size, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(size).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", SIZES)
def test_squares_is_the_float64_sum(size, dtype):
    x = draw(size, dtype)
    expected = float(np.sum(x.astype(np.float64) ** 2))
    assert arrays.squares(x) == pytest.approx(expected, rel=1e-13, abs=0)


def test_squares_reads_any_layout_and_overflows_to_inf():
    x = draw((300, 500), np.float32)
    assert arrays.squares(x.T) == pytest.approx(float(np.sum(x.astype(np.float64) ** 2)), rel=1e-13)
    assert arrays.squares(x[:, ::3]) == pytest.approx(float(np.sum(x[:, ::3].astype(np.float64) ** 2)), rel=1e-13)
    big = np.full(arrays.CHUNK * 2, 1e200)
    assert arrays.squares(big) == np.inf
    assert np.isnan(arrays.squares(np.array([1.0, np.nan] * arrays.CHUNK)))


def test_squares_does_not_depend_on_the_number_of_cores(monkeypatch):
    """The chunks' sums are added in chunk order whichever core made them."""
    x = draw(7 * arrays.CHUNK + 11, np.float32)
    together = arrays.squares(x)
    monkeypatch.setattr(rows, "threads_available", lambda: 1)
    assert arrays.squares(x) == together


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", SIZES)
def test_scale_and_axpy_are_numpys_in_place_ops(size, dtype):
    """Bit for bit: x *= a, and p -= lr * d (the product rounded first, no fused multiply-add)."""
    x, d = draw(size, dtype, 1), draw(size, dtype, 2)
    ours, theirs = x.copy(), x.copy()
    arrays.scale(ours, 0.37)
    theirs *= 0.37
    np.testing.assert_array_equal(ours, theirs)
    ours, theirs = x.copy(), x.copy()
    arrays.axpy(ours, -0.1, d)
    theirs -= 0.1 * d
    np.testing.assert_array_equal(ours, theirs)
    assert ours.dtype == dtype


def test_scale_and_axpy_in_place_on_views_that_are_not_contiguous():
    x, d = draw((400, 600), np.float32, 1), draw((600, 400), np.float32, 2)
    ours, theirs = x.copy(), x.copy()
    arrays.axpy(ours.T, -0.5, d)
    theirs.T[...] -= 0.5 * d
    np.testing.assert_array_equal(ours, theirs)
    arrays.scale(ours[:, ::2], 2.0)
    theirs[:, ::2] *= 2.0
    np.testing.assert_array_equal(ours, theirs)


def test_passes_in_a_forked_process_run_in_the_calling_thread(monkeypatch):
    """After fork() the chunks run one after the other (rows.run): the same numbers."""
    x = draw(5 * arrays.CHUNK, np.float32)
    expected = arrays.squares(x)
    monkeypatch.setitem(rows._process, "forked", True)
    assert arrays.squares(x) == expected
    y = x.copy()
    arrays.scale(y, 0.5)
    np.testing.assert_array_equal(y, x * np.float32(0.5))
