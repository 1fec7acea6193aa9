"""GEMM against a weight packed once per window: C = A B + beta C, the recurrent product of every step.

A time loop multiplies by the same recurrent weight at every step (forward h_{t-1} U^T, backward
da_t U), with few rows (the batch, split over the cores). A BLAS call re-packs the weight on every
one of those calls; here it is packed once per window and stays in the core's cache:

    pack(B)          B (K, N) as panels (P, K, NC): panel p holds columns p*NC .. p*NC+NC-1,
                     row k of a panel contiguous; the last panel zero-padded to NC columns
    gemm(A, Bp, C)   for every panel, for every tile of MR rows: one register-blocked microkernel

The microkernel (`_tile`) keeps an MR x NC tile of C in registers for the whole sum over k: MR = 6
rows times NV = 4 vectors of 512 bits (16 float32 or 8 float64), 24 accumulators. Each k loads
the NV vectors of panel row k, broadcasts A[i, k] for each of the MR rows and issues MR * NV fused
multiply-adds. It is written as LLVM IR (a numba intrinsic) because LLVM vectorises plain loops
to 256-bit vectors here and does not keep such a tile in registers; written out, it runs at about
twice the rate of OpenBLAS on these shapes (docs/fast-engine.md). One intrinsic holds a tile for each row
count 1..MR (a switch on the rows left); a last panel narrower than NC runs on as few vectors as
cover it (a vocabulary of 65 classes costs 64 + 16 columns, not 2 x 64). `_tile_reference` is the
same tile as three plain loops, the oracle the kernel is tested against at both widths.

Sums run in order k = 0 .. K-1 per element, with fused multiply-adds: round-off differs from a
BLAS, nothing else (tested against NumPy in float64 to 1e-13).
"""

import threading

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import rows


def _vector_bytes():
    """64 (512-bit registers) where the CPU has AVX-512, else 32 (AVX2's 256 bits; LLVM splits
    wider vectors on older CPUs, so the kernel stays correct anywhere)."""
    try:
        return 64 if llvm.get_host_cpu_features().get("avx512f") else 32
    except RuntimeError:
        return 32


VECTOR_BYTES = _vector_bytes()
NV = 4 if VECTOR_BYTES == 64 else 2          # vectors per panel row: 4 x 16 float32 with AVX-512
MR = 6                # rows per tile: MR * NV accumulators (24 of AVX-512's 32 registers, 12 of AVX2's 16)
KB = 128              # gemm_tn: rows of X and Y per block (a panel of the block, KB x NC, stays in L1)
TB = 16               # pack: the side of the squares a transposing pack moves at a time (2-4x a plain loop)
TN_C_BYTES = 2 ** 19  # gemm_tn: rows of C per pass, about this many bytes of them (with a block of X, Y in L2)

JIT = {"nogil": True, "cache": True, "error_model": "numpy"}
PARALLEL_BYTES = 1 << 19  # pack: a matrix this large (a 512 x 256 float32) is packed on every core


@njit(inline="always")
def width(dtype_itemsize):
    """NC, the columns of a panel: NV vectors of VECTOR_BYTES."""
    return NV * (VECTOR_BYTES // dtype_itemsize)


@njit(inline="always")
def _panels(K, N, like):
    """Zeroed panels (P, K, NC) for a (K, N) matrix of like's dtype, P = ceil(N / NC), starting on a
    cache line: numba aligns arrays to 32 bytes, and a 64-byte load that straddles two lines makes
    the kernel ~20% slower (docs/fast-engine.md)."""
    NC = width(like.itemsize)
    size = (N + NC - 1) // NC * K * NC
    lanes = VECTOR_BYTES // like.itemsize
    buf = np.zeros(size + lanes, like.dtype)
    skip = (-buf.ctypes.data) % VECTOR_BYTES // like.itemsize
    return buf[skip:skip + size].reshape(((N + NC - 1) // NC, K, NC))


_active = threading.local()          # the frozen() scope this thread is inside, if any


class frozen:
    """A context, entered as often as needed: inside it pack() packs each of these arrays (or a view
    of one, such as W.T) once and gives the same panels again, for forward passes over many windows
    or tokens (an evaluation, a sample) whose weights do not change. The caller promises not to
    modify them while the object lives. Only arrays given here are remembered (held, so that no
    other array can take their memory); other arrays are packed on every call."""

    def __init__(self, arrays):
        self.keep = {a.ctypes.data: a for a in arrays if isinstance(a, np.ndarray) and a.size}
        self.panels = {}
        self.outer = []

    def __enter__(self):
        self.outer.append(getattr(_active, "scope", None))
        _active.scope = self
        return self

    def __exit__(self, *exc):
        _active.scope = self.outer.pop()

    def pack(self, B, trans):
        if B.ctypes.data not in self.keep:
            return pack_panels(B, trans)
        key = (B.ctypes.data, B.shape, B.strides, B.dtype.str, trans)
        if key not in self.panels:
            self.panels[key] = pack_panels(B, trans)
        return self.panels[key]


def pack(B, trans):
    """Panels (P, K, NC) of B (K, N), or of B^T when trans (B given as (N, K)); P = ceil(N / NC).
    Panel p, row k holds B[k, p NC + jj] (B[p NC + jj, k] when trans) for jj < NC, zero beyond N.
    Inside a frozen() scope that holds B, its panels are packed once. A matrix of PARALLEL_BYTES or
    more is packed on every core, its panels shared out (rows.run)."""
    scope = getattr(_active, "scope", None)
    if scope is not None:
        return scope.pack(B, trans)
    if B.nbytes < PARALLEL_BYTES:
        return pack_panels(B, trans)
    K, N = (B.shape[1], B.shape[0]) if trans else B.shape
    Bp = _panels.py_func(K, N, B)       # NumPy's zeros: fresh pages, faulted in by the cores that fill them
    P = Bp.shape[0]
    n = min(rows.threads_available(), P)
    edges = [P * i // n for i in range(n + 1)]
    rows.run(pack_range, (B, trans, Bp), list(zip(edges[:-1], edges[1:])), pack_blocks)
    return Bp


@njit(**JIT)
def pack_panels(B, trans):
    """pack(B, trans), compiled, on this thread (every call packs)."""
    K, N = (B.shape[1], B.shape[0]) if trans else (B.shape[0], B.shape[1])
    Bp = _panels(K, N, B)
    pack_range(B, trans, Bp, 0, Bp.shape[0])
    return Bp


@njit(**rows.PARALLEL)
def pack_blocks(args, blocks):
    """pack_range(*args, p0, p1) for every range of panels, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        pack_range(*args, blocks[i, 0], blocks[i, 1])


@njit(**JIT)
def pack_range(B, trans, Bp, p0, p1):
    """Panels p0:p1 of pack(B, trans) into Bp (zeroed: its padding is left as it is)."""
    K, N = (B.shape[1], B.shape[0]) if trans else (B.shape[0], B.shape[1])
    NC = Bp.shape[2]
    square = np.empty((TB, TB), B.dtype)
    for p in range(p0, p1):
        j0, w = p * NC, min(NC, N - p * NC)
        panel = Bp[p]
        if trans:                      # TB x TB squares of B, each transposed through a small buffer
            for jj0 in range(0, w, TB):
                for k0 in range(0, K, TB):
                    if jj0 + TB <= w and k0 + TB <= K:
                        for a in range(TB):    # read along B's rows, write along the buffer's columns
                            src = B[j0 + jj0 + a]
                            for b in range(TB):
                                square[b, a] = src[k0 + b]
                        for b in range(TB):    # then along the buffer's rows and the panel's
                            dst = panel[k0 + b]
                            for a in range(TB):
                                dst[jj0 + a] = square[b, a]
                    else:                      # an edge of B
                        for jj in range(jj0, min(jj0 + TB, w)):
                            src = B[j0 + jj]
                            for k in range(k0, min(k0 + TB, K)):
                                panel[k, jj] = src[k]
        else:                          # loops, not slice assignments: they vectorise (2x faster)
            for k in range(K):
                src, dst = B[k, j0:j0 + w], panel[k]
                for jj in range(w):
                    dst[jj] = src[jj]


def _array(context, builder, ty, value):
    return cgutils.create_struct_proxy(ty)(context, builder, value=value)


def _splat(builder, vt, x):
    lanes = vt.count
    v = builder.insert_element(ir.Constant(vt, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, ir.Constant(vt, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


@intrinsic(prefer_literal=True)
def _tile(typingctx, A, Bk, C, beta, rows, nv):
    """C[:rows, :nv L] = A[:rows] @ Bk[:, :nv L] + beta C  (1 <= rows <= MR at run time; nv <= NV
    vectors of L lanes, a literal; beta = 0 ignores C's values).

    A (>= rows, K) with any strides (row-major rows, or a packed tile seen transposed), Bk (K, >= nv L)
    one panel with contiguous rows, C (>= rows, >= nv L) with contiguous rows. The row count picks
    one of MR register tiles, each its own loop (a switch in the IR)."""
    if not isinstance(nv, types.IntegerLiteral) or not isinstance(rows, types.Integer):
        return None
    NVEC, dt = nv.literal_value, A.dtype
    itemsize = np.dtype(str(dt)).itemsize
    lanes = VECTOR_BYTES // itemsize

    def codegen(context, builder, sig, args):
        a_arr, b_arr, c_arr, beta_, rows_, _ = args
        i64 = ir.IntType(64)
        ft = context.get_value_type(dt)
        vt = ir.VectorType(ft, lanes)
        vpt = vt.as_pointer()
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{lanes}f{8 * itemsize}")
        const = lambda n: ir.Constant(i64, n)                                      # noqa: E731
        a, b, c = (_array(context, builder, ty, v) for ty, v in zip(sig.args[:3], (a_arr, b_arr, c_arr)))
        K = builder.extract_value(a.shape, 1)
        sa0, sa1, sb, sc = (builder.sdiv(builder.extract_value(x.strides, n), const(itemsize))
                            for x, n in ((a, 0), (a, 1), (b, 0), (c, 0)))
        zero = ir.Constant(vt, [ir.Constant(ft, 0.0)] * lanes)
        exit_ = builder.append_basic_block("tile.exit")
        switch = builder.switch(context.cast(builder, rows_, sig.args[4], types.int64), exit_)
        for R in range(1, MR + 1):
            entry = builder.append_basic_block(f"tile.rows{R}")
            switch.add_case(const(R), entry)
            builder.position_at_end(entry)
            a_rows = [builder.gep(a.data, [builder.mul(const(r), sa0)]) for r in range(R)]   # &A[r, 0]
            head = builder.append_basic_block(f"tile.head{R}")
            body = builder.append_basic_block(f"tile.body{R}")
            done = builder.append_basic_block(f"tile.done{R}")
            builder.branch(head)

            builder.position_at_end(head)                                          # k, acc[r][v]
            k = builder.phi(i64)
            acc = [[builder.phi(vt) for _ in range(NVEC)] for _ in range(R)]
            builder.cbranch(builder.icmp_signed("<", k, K), body, done)

            builder.position_at_end(body)                                          # acc += A[:, k] Bk[k]
            row_k = builder.gep(b.data, [builder.mul(k, sb)])
            bk = [builder.load(builder.bitcast(builder.gep(row_k, [const(v * lanes)]), vpt), align=itemsize)
                  for v in range(NVEC)]
            ka = builder.mul(k, sa1)
            new = []
            for r in range(R):
                x = _splat(builder, vt, builder.load(builder.gep(a_rows[r], [ka])))
                new.append([builder.call(fma, [x, bk[v], acc[r][v]]) for v in range(NVEC)])
            k.add_incoming(const(0), entry)
            k.add_incoming(builder.add(k, const(1)), body)
            for r in range(R):
                for v in range(NVEC):
                    acc[r][v].add_incoming(zero, entry)
                    acc[r][v].add_incoming(new[r][v], body)
            builder.branch(head)

            builder.position_at_end(done)                                          # C = acc + beta C
            targets = [[builder.bitcast(builder.gep(c.data, [builder.add(builder.mul(const(r), sc),
                                                                          const(v * lanes))]), vpt)
                        for v in range(NVEC)] for r in range(R)]
            with builder.if_else(builder.fcmp_ordered("==", beta_, ir.Constant(ft, 0.0))) as (overwrite, update):
                with overwrite:
                    for r in range(R):
                        for v in range(NVEC):
                            builder.store(acc[r][v], targets[r][v], align=itemsize)
                with update:
                    beta_v = _splat(builder, vt, beta_)
                    for r in range(R):
                        for v in range(NVEC):
                            old = builder.load(targets[r][v], align=itemsize)
                            builder.store(builder.call(fma, [beta_v, old, acc[r][v]]), targets[r][v],
                                          align=itemsize)
            builder.branch(exit_)
        builder.position_at_end(exit_)
        return context.get_dummy_value()

    return types.void(A, Bk, C, A.dtype, rows, nv), codegen


def _tile_reference(A, Bk, C, beta, rows, nv):
    """What `_tile(A, Bk, C, beta, rows, nv)` computes, as the obvious loops: the oracle its tests
    compare it with (tests/fast/test_packed.py, at both vector widths through tests/fast/test_fast_widths.py).

    C[i, j] = sum_k A[i, k] Bk[k, j] + beta C[i, j]  for i < rows, j < nv L (L lanes of VECTOR_BYTES),
    with beta = 0 ignoring C's old values (NaN included). Nothing else of C is touched. The sums are
    Python floats, so for float32 this is the product to float64 round-off and the difference is
    all the kernel's. Plain Python: a few milliseconds per tile, for tests only."""
    L = VECTOR_BYTES // A.itemsize
    for i in range(rows):
        for j in range(nv * L):
            s = 0.0
            for k in range(A.shape[1]):
                s += float(A[i, k]) * float(Bk[k, j])
            C[i, j] = s + float(beta) * float(C[i, j]) if beta != 0 else s


@njit(inline="always")
def _narrow_tile(A, panel, tile, C, beta, rows, vectors):
    """C[:rows, :w] = A[:rows] @ panel[:, :w] + beta C, w = C's columns < NC: the product on as few
    vectors as cover w (`vectors`, 1 .. NV), into tile (MR, NC), then its first w columns into C."""
    if vectors == 1:
        _tile(A, panel, tile, 0.0, rows, 1)
    elif vectors == 2:
        _tile(A, panel, tile, 0.0, rows, 2)
    else:
        _tile(A, panel, tile, 0.0, rows, NV)
    for q in range(rows):
        for jj in range(C.shape[1]):
            C[q, jj] = tile[q, jj] + beta * C[q, jj] if beta != 0 else tile[q, jj]


@njit(**JIT)
def gemm(A, Bp, C, beta):
    """C = A B + beta C with Bp = pack(B, ...): A (M, K), C (M, N), rows of each contiguous."""
    M, K = A.shape
    N = C.shape[1]
    P, NC = Bp.shape[0], Bp.shape[2]
    if Bp.shape[1] != K or C.shape[0] != M or N > P * NC or N <= (P - 1) * NC:
        raise ValueError("packed.gemm: shapes of A (M, K), Bp (P, K, NC) and C (M, N) disagree")
    if C.strides[1] != C.itemsize:
        raise ValueError("packed.gemm: the rows of C must be contiguous")
    full = N // NC
    for p in range(full):              # panel outside: it stays in L1/L2 for all the row tiles
        for i in range(0, M, MR):
            _tile(A[i:i + MR], Bp[p], C[i:i + MR, p * NC:(p + 1) * NC], beta, min(MR, M - i), NV)
    if full < P:                       # the last panel, narrower than NC: as few vectors as cover it, then its columns
        j, tile = full * NC, np.empty((MR, NC), C.dtype)
        vectors = -(-(N - j) * NV // NC)
        for i in range(0, M, MR):
            r = min(MR, M - i)
            _narrow_tile(A[i:i + r], Bp[full], tile, C[i:i + r, j:], beta, r, vectors)


@njit(**JIT)
def gemm_tn(X, Y, C, beta, m0, m1):
    """Rows m0:m1 of C = X^T Y + beta C: X (K, M), Y (K, N), C (M, N), rows of each contiguous.

    The shape of the weight gradients (dU = sum_t da_t^T h_{t-1}, K = T B), computed with nothing
    copied: the tile's A is X^T read in place (MR adjacent elements of one row of X per k), its
    panel is NC columns of Y read in place (row stride N). Blocked so that the pieces in use stay
    in the core's L2 cache: MC rows of C (about TN_C_BYTES), and per block of KB rows of X and Y
    every panel of the block against every tile of those rows. Only a last panel narrower than
    NC is copied, zero-padded, per block."""
    K, N = Y.shape
    NC = width(C.itemsize)
    full = N // NC
    mc = max(MR, TN_C_BYTES // max(1, N * C.itemsize) // MR * MR)
    vectors = -(-(N - full * NC) * NV // NC)                # of the last, narrow panel (0: none)
    edge = np.zeros((min(KB, K) if vectors else 0, NC), C.dtype)      # that panel of a block of Y
    tile = np.empty((MR, NC), C.dtype)
    for i0 in range(m0, m1, mc):
        i1 = min(i0 + mc, m1)
        if K == 0:                                          # C = beta C
            for i in range(i0, i1):
                for j in range(N):
                    C[i, j] = beta * C[i, j] if beta != 0 else 0
        for k0 in range(0, K, KB):
            kc = min(KB, K - k0)
            b = beta if k0 == 0 else C.dtype.type(1.0)
            for p in range(full):
                Bk = Y[k0:k0 + kc, p * NC:(p + 1) * NC]
                for i in range(i0, i1, MR):
                    r = min(MR, i1 - i)
                    _tile(X[k0:k0 + kc, i:i + r].T, Bk, C[i:i + r, p * NC:(p + 1) * NC], b, r, NV)
            if vectors == 0:
                continue
            j = full * NC
            edge[:kc, :N - j] = Y[k0:k0 + kc, j:]
            for i in range(i0, i1, MR):
                r = min(MR, i1 - i)
                _narrow_tile(X[k0:k0 + kc, i:i + r].T, edge[:kc], tile, C[i:i + r, j:], b, r, vectors)


@njit(**JIT)
def gemm_rows(A, Bp, C, beta, m0, m1):
    """Rows m0:m1 of gemm(A, Bp, C, beta), for splitting one product over threads."""
    gemm(A[m0:m1], Bp, C[m0:m1], beta)
