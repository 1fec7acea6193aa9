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


def row_sparse(shape, dtype, rows, seed=3):
    """An array that is zero outside `rows` of its first axis (a word-level embedding's gradient)."""
    g = np.zeros(shape, dtype)
    g[rows] = draw((len(rows),) + shape[1:], dtype, seed)
    return g


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 3), (257, 16), (25303, 16), (40, 3, 5)])
def test_passes_over_the_nonzero_rows_equal_the_whole_array_passes(shape, dtype):
    """Given the rows outside which an array is zero, each pass reads those alone and gives the numbers of
    the whole-array pass: the sum to round-off (taken row by row), scale and axpy bit for bit, the other
    rows untouched."""
    rng = np.random.default_rng(0)
    nonzero = np.unique(rng.integers(0, shape[0], max(1, shape[0] // 20)))
    g = row_sparse(shape, dtype, nonzero)
    assert arrays.squares(g, nonzero) == pytest.approx(float(np.sum(g.astype(np.float64) ** 2)), rel=1e-13, abs=0)
    ours, theirs = g.copy(), g.copy()
    arrays.scale(ours, 0.37, nonzero)
    theirs *= 0.37
    np.testing.assert_array_equal(ours, theirs)
    p = draw(shape, dtype, 5)
    ours, theirs = p.copy(), p.copy()
    arrays.axpy(ours, -0.1, g, nonzero)
    theirs -= 0.1 * g
    np.testing.assert_array_equal(ours, theirs)
    assert ours.dtype == dtype


def test_axpy_over_rows_keeps_signed_zeros_and_a_positive_factor_takes_the_whole_array():
    """p + a 0 = p bit for bit only for a <= 0 (-0.0 + +0.0 is +0.0): a > 0 takes the whole-array pass."""
    p = np.full((4, 3), -0.0)
    g = np.zeros((4, 3))
    g[1] = 1.0
    for a in (-0.5, 0.5):
        ours, theirs = p.copy(), p.copy()
        arrays.axpy(ours, a, g, np.array([1]))
        theirs += a * g
        np.testing.assert_array_equal(np.signbit(ours), np.signbit(theirs))
        np.testing.assert_array_equal(ours, theirs)


def test_scale_over_rows_with_a_negative_factor_takes_the_whole_array():
    """+0.0 * a is -0.0 for a < 0: a row pass would leave the other rows' +0.0, so a <= 0 scales them all."""
    g = np.zeros((4, 3))
    g[1] = 1.0
    ours, theirs = g.copy(), g.copy()
    arrays.scale(ours, -0.5, np.array([1]))
    theirs *= -0.5
    np.testing.assert_array_equal(np.signbit(ours), np.signbit(theirs))
