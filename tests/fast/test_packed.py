"""The fast engine's own GEMM (bptt.fast.packed, bptt.fast.matmul) against NumPy's.

float64 products agree to round-off (1e-13 of the largest entry); float32 ones to the float32
error of a length-K sum. Shapes cover every row count of the last tile (1..MR), partial panels,
last panels covered by 1, 2 or all NV vectors, K = 0 and 1, strided rows, beta = 0 / 1 / 0.5 and splits over threads.
The microkernel itself is checked against its plain-loop reference (packed._tile_reference) for every
row count and vector count. These tests run at the host's vector width here, and at the other width
in a process of their own (tests/fast/test_fast_widths.py)."""

import os

import numpy as np
import pytest
from numba import literally, njit

from bptt.fast import packed
from bptt.fast import rows as fast_rows
from bptt.fast.matmul import matmul, parts

SHAPES = [(1, 1, 1), (7, 5, 3), (13, 33, 65), (16, 256, 1024), (43, 17, 100), (6, 0, 64), (5, 9, 64),
          (12, 31, 129), (2, 300, 1), (9, 20, 90), (11, 7, 44)]     # last panels of 1, 2 and NV vectors
TOL = {np.float64: 1e-13, np.float32: 3e-6}


def rel_err(got, want):
    return np.abs(got - want).max(initial=0) / max(1.0, np.abs(want).max(initial=0))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("M, K, N", SHAPES)
@pytest.mark.parametrize("trans", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_gemm(dtype, M, K, N, trans, beta):
    rng = np.random.default_rng(M * 1000 + K * 10 + N)
    A = rng.standard_normal((M + 2, K + 3)).astype(dtype)[1:M + 1, 2:K + 2]         # strided rows
    B = rng.standard_normal((K, N)).astype(dtype)
    C0 = rng.standard_normal((M, N + 4)).astype(dtype)[:, :N]
    C0[0, 0] = np.nan if beta == 0 else C0[0, 0]       # beta = 0 ignores C's old values, NaN included
    C = C0.copy()
    Bp = packed.pack(np.ascontiguousarray(B.T) if trans else B, trans)
    assert Bp.shape == (-(-N // Bp.shape[2]), K, Bp.shape[2])
    packed.gemm(A, Bp, C, beta)
    want = A.astype(np.float64) @ B + (beta * C0 if beta else 0)
    assert rel_err(C, want) < TOL[dtype]


@njit
def tile(A, Bk, C, beta, rows, nv):
    """packed._tile itself, nv made a literal (one compiled tile per vector count)."""
    packed._tile(A, Bk, C, beta, rows, literally(nv))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("K", [0, 1, 37])
def test_tile_equals_reference(dtype, K):
    """The IR microkernel against its plain loops, for every row count 1..MR, every vector count
    1..NV, beta 0 and 1, A read row-major (gemm) and transposed in place (gemm_tn), every operand
    inside a wider array. The reference sums in float64, so the bound is the kernel's own error:
    each element is K + 1 fused multiply-adds (the last one beta C), each rounding by at most
    eps / 2 of a partial sum, so |C - reference| <= (K + 1) eps (|A| |Bk| + |beta C|) element by
    element (a factor 2 to spare): at K = 37, 8e-15 of |A| |Bk| in float64, 5e-6 in float32."""
    rng = np.random.default_rng(K)
    eps = np.finfo(dtype).eps
    L = packed.VECTOR_BYTES // np.dtype(dtype).itemsize
    NC = packed.NV * L
    rows_major = rng.standard_normal((packed.MR + 1, K + 3)).astype(dtype)[:packed.MR, 1:K + 1]
    transposed = rng.standard_normal((K, packed.MR + 2)).astype(dtype)[:, 1:packed.MR + 1].T
    Bk = rng.standard_normal((K, NC + 8)).astype(dtype)[:, :NC]         # a panel of a wider Y, as in gemm_tn
    for A in (rows_major, transposed):
        for rows in range(1, packed.MR + 1):
            for nv in range(1, packed.NV + 1):
                for beta in (0.0, 1.0):
                    C0 = rng.standard_normal((packed.MR + 1, NC + 5)).astype(dtype)
                    C0[0, 2] = np.nan if beta == 0 else C0[0, 2]     # beta = 0 ignores C's old values
                    got, want = C0.copy(), C0.copy()
                    tile(A, Bk, got[:, 2:NC + 2], dtype(beta), rows, nv)
                    packed._tile_reference(A, Bk, want[:, 2:NC + 2], beta, rows, nv)
                    w = nv * L
                    bound = (K + 1) * eps * (np.abs(A[:rows].astype(np.float64)) @ np.abs(Bk[:, :w])
                                             + (beta * np.abs(C0[:rows, 2:w + 2]) if beta else 0))
                    inside = (slice(0, rows), slice(2, w + 2))
                    assert (np.abs(got[inside] - want[inside]) <= bound).all(), (A.strides, rows, nv, beta)
                    outside = np.ones(C0.shape, bool)
                    outside[inside] = False
                    assert np.array_equal(got[outside], C0[outside], equal_nan=True), (rows, nv, beta)   # untouched


def test_pack_layout():
    NC = packed.NV * packed.VECTOR_BYTES // 4                      # float32 columns per panel
    B = np.arange(3 * (NC + 6), dtype=np.float32).reshape(3, NC + 6)
    Bp = packed.pack(B, False)
    assert Bp.shape == (2, 3, NC)
    assert np.array_equal(Bp[0], B[:, :NC]) and np.array_equal(Bp[1, :, :6], B[:, NC:])
    assert not Bp[1, :, 6:].any()                                  # the padding is zero
    assert np.array_equal(packed.pack(np.ascontiguousarray(B.T), True), Bp)
    assert packed.pack(B.astype(np.float64), False).shape[2] == NC // 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N, K", [(1, 1), (packed.TB, packed.TB), (70, 33), (200, 48), (2 * packed.TB + 3, 100)])
def test_transposing_pack_equals_the_plain_one(dtype, N, K):
    """pack(B, True) moves TB x TB squares through a buffer and the edges one by one: the same
    panels as pack(B^T, False), every element placed."""
    B = np.random.default_rng(N + K).standard_normal((N, K)).astype(dtype)
    assert np.array_equal(packed.pack(B, True), packed.pack(np.ascontiguousarray(B.T), False))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("K, M, N", [(1, 1, 1), (7, 5, 3), (300, 13, 65), (0, 6, 4), (513, 31, 33), (2016, 64, 256),
                                     (40, 20, 90), (150, 200, 1100)])     # 90: a 2-vector last panel; 1100: C in passes
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_gemm_tn_rows(dtype, K, M, N, beta):
    rng = np.random.default_rng(K + M + N)
    X, Y = rng.standard_normal((K, M)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    C0 = rng.standard_normal((M, N)).astype(dtype)
    C = C0.copy()
    m0 = M // 3
    packed.gemm_tn(X, Y, C, beta, m0, M)
    assert np.array_equal(C[:m0], C0[:m0])                         # rows outside m0:m1 untouched
    want = X.T.astype(np.float64) @ Y + beta * C0
    assert rel_err(C[m0:], want[m0:]) < TOL[dtype]


def test_gemm_blocks_of_k():
    """K beyond one block of gemm_tn: the blocks after the first accumulate onto the first."""
    rng = np.random.default_rng(5)
    K = 2 * packed.KB + 7
    X, Y = rng.standard_normal((K, 9)), rng.standard_normal((K, 70))
    C = np.full((9, 70), np.nan)
    packed.gemm_tn(X, Y, C, 0.0, 0, 9)
    assert rel_err(C, X.T @ Y) < 1e-13


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", ["rows", "A transposed", "B transposed", "both strided", "empty"])
def test_matmul(threads, case):
    rng = np.random.default_rng(threads)
    M, K, N = 50, 37, 70
    A, B = rng.standard_normal((M, K)), rng.standard_normal((K, N))
    if case == "A transposed":
        A = np.ascontiguousarray(A.T).T
    elif case == "B transposed":
        B = np.ascontiguousarray(B.T).T
    elif case == "both strided":
        A, B = rng.standard_normal((M, 2 * K))[:, ::2], rng.standard_normal((2 * K, N))[::2]
    elif case == "empty":
        A, B = A[:, :0], B[:0]
    got = matmul(A, B, threads=threads)
    assert got.shape == (M, N) and got.dtype == np.float64
    assert rel_err(got, A @ B) < 1e-13
    f32 = matmul(A.astype(np.float32), B.astype(np.float32), threads=threads)
    assert f32.dtype == np.float32 and rel_err(f32, A @ B) < 3e-6


def test_parts_cover_the_rows():
    for M in (1, 5, 6, 47, 48, 97, 1024):
        for threads in (1, 2, 3):
            ranges = parts(M, threads)
            assert ranges[0][0] == 0 and ranges[-1][1] == M and len(ranges) <= threads
            assert all(b0 < b1 for b0, b1 in ranges)
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            assert all(b0 % packed.MR == 0 for b0, _ in ranges)


def test_matmul_bad_shapes():
    with pytest.raises(ValueError, match="matmul: expected A"):
        matmul(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="shapes of A"):
        packed.gemm(np.ones((2, 3)), packed.pack(np.ones((4, 5)), False), np.ones((2, 5)), 0.0)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("T", [1, 2, 5])
@pytest.mark.parametrize("with_reset", [False, True])
def test_recurrent_grad(threads, T, with_reset):
    """dU = sum_t da_t^T h_{t-1} with h_{-1} = h0 and reset rows zeroed, on 1 to 3 blocks of dU's rows
    (the parallel path) and with a last panel narrower than the kernel's."""
    from bptt.fast import window

    rng = np.random.default_rng(T + threads)
    B, G, H = 7, 150, 70
    das, hs, h0 = rng.standard_normal((T, B, G)), rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    reset = rng.random((T, B, 1)) < 0.3 if with_reset else None
    want = np.zeros((G, H))
    for t in range(T):
        h_prev = (h0 if t == 0 else hs[t - 1]) * (1 if reset is None else ~reset[t])
        want += das[t].T @ h_prev
    assert len(parts(G, threads)) == threads
    got = window.recurrent_grad(das, h0, hs, reset, threads)
    assert got.shape == (G, H) and rel_err(got, want) < 1e-13
    f32 = window.recurrent_grad(das.astype(np.float32), h0.astype(np.float32), hs.astype(np.float32), reset, threads)
    assert f32.dtype == np.float32 and rel_err(f32, want) < 3e-6


def _product_in_child(A, B, queue):
    queue.put(float(np.abs(matmul(A, B, threads=2) - A @ B).max()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_forked_child_runs_the_blocks_itself():
    """GNU OpenMP terminates a forked child that starts a parallel region after its parent did; the
    child runs the blocks one after the other instead, and gets the same product."""
    import multiprocessing

    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((400, 300)), rng.standard_normal((300, 200))
    assert rel_err(matmul(A, B, threads=2), A @ B) < 1e-13          # the parent uses the pool first
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_product_in_child, args=(A, B, queue))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    assert queue.get(timeout=10) < 1e-10


def test_frozen_weights_are_packed_once_and_only_inside():
    """packed.frozen(arrays): inside it a given array (or a view of it at the same address) is packed
    once; another array, and anything outside the scope, is packed on every call; the scope can be
    entered again (a sample, token by token) and nests."""
    rng = np.random.default_rng(0)
    W, other = rng.standard_normal((40, 30)), rng.standard_normal((40, 30))
    weights = packed.frozen([W])
    with weights:
        first = packed.pack(W, True)
        assert packed.pack(W, True) is first                         # the same panels
        assert packed.pack(W.T, False) is not first                  # another layout: its own panels
        assert np.array_equal(packed.pack(W.T, False), first)
        assert packed.pack(other, True) is not packed.pack(other, True)
        with packed.frozen([other]):
            assert packed.pack(W, True) is not first                 # the inner scope holds only `other`
        assert packed.pack(W, True) is first                         # the outer one again
    assert packed.pack(W, True) is not first                         # outside: packed afresh
    with weights:
        assert packed.pack(W, True) is first                         # entered again: kept
    assert np.array_equal(first, packed.pack_panels(W, True))


@pytest.mark.parametrize("trans", [False, True])
@pytest.mark.parametrize("shape", [(1120, 256), (256, 1030), (517, 300), (2050, 64)])
def test_a_large_matrix_is_packed_on_every_core_as_on_one(shape, trans):
    """pack() shares the panels of a matrix of PARALLEL_BYTES or more among the cores: the same
    panels, padding included, as pack_panels on one thread, and in a forked process."""
    B = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    assert B.nbytes >= packed.PARALLEL_BYTES
    np.testing.assert_array_equal(packed.pack(B, trans), packed.pack_panels(B, trans))
    np.testing.assert_array_equal(packed.pack(B[:, ::2], trans), packed.pack_panels(B[:, ::2], trans))


def test_a_large_matrix_in_a_forked_process_is_packed_in_the_calling_thread(monkeypatch):
    B = np.random.default_rng(1).standard_normal((700, 300))
    monkeypatch.setitem(fast_rows._process, "forked", True)
    np.testing.assert_array_equal(packed.pack(B, True), packed.pack_panels(B, True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T, B, G", [(3, 4, 5), (64, 32, 1024), (40, 33, 200), (70, 64, 72)])
def test_scatter_rows_on_every_core_equals_np_add_at(dtype, T, B, G):
    """The embedding's row gradient, each thread its own columns above SCATTER_PARALLEL: every element
    summed in the same (t, b) order as np.add.at, bit for bit, repeated ids included."""
    from bptt.fast import window

    rng = np.random.default_rng(G)
    ids = rng.integers(0, 7, (T, B))
    d = rng.standard_normal((T, B, G)).astype(dtype)
    expected = np.zeros((9, G), dtype)
    np.add.at(expected, ids.reshape(-1), d.reshape(-1, G))
    assert np.array_equal(window.scatter_rows(9, ids, d), expected)     # the last three: on every core
