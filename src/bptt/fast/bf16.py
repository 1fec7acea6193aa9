"""bfloat16 products with float32 accumulation: C = A B + beta C with A and B rounded to bfloat16.

bfloat16 is float32's top 16 bits: the same exponent range, 8 significant bits instead of 24. A
float32 x becomes bf16(x) by round-to-nearest-even on the 16 bits dropped (to_bf16; NaN stays a
quiet NaN). The product of two bf16 values is exact in float32, so the only rounding of a product
is in the sums, which stay float32.

NumPy has no bfloat16 type. Here a pair of bf16 values along the contracted axis k lives in one
uint32: bf16(x_{2i}) in the low 16 bits, bf16(x_{2i+1}) in the high ones, the layout of AVX512-BF16's
`vdpbf16ps`, which for each of 16 float32 lanes computes

    acc += a_{2i+1} b_{2i+1}      then      acc += a_{2i} b_{2i}          (each sum rounded to float32)

with bf16 inputs of exponent 0 read as zero and results below float32's smallest normal flushed to
zero (DAZ, FTZ). So a product over K runs over K2 = ceil(K / 2) pairs (an odd K is padded with zero):

    pairs(A)          A (M, K) float32 -> (M, K2) uint32, the rows of the left operand
    pack(B, trans)    B (K, N) (B^T given as (N, K) when trans) -> panels (P, K2, NC) uint32, as
                      packed.pack lays out float32 panels, a pair where packed.pack has one value
    gemm(A2, Bp, C)   for every panel, for every tile of MR rows: one microkernel, C float32

The microkernel keeps an MR x NC tile of C in registers, as packed._tile does: per pair k it loads
the NV vectors of panel row k, broadcasts the pair A2[r, k] of each of the MR rows and issues MR x NV
`vdpbf16ps` (twice the multiply-adds of float32's FMAs per instruction). It is built from LLVM IR
(`llvm.x86.avx512bf16.dpbf16ps.512`) where the CPU has AVX512-BF16 (HARDWARE). Elsewhere the same
tile runs as plain compiled loops that emulate the instruction exactly (_tile_emulated), for tests:
a user asking for bf16 on such a CPU gets an error (require), never float32 in its place.
`reference` is the product as NumPy array operations, the oracle both are tested against, bit for bit.

Sums run over the pairs k = 0 .. K2 - 1 in order, the odd element of a pair before the even one;
C = acc + beta C at the end (beta C rounded, then the sum: no fused multiply-add, so the emulation
is exact).
"""

import os

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import packed, rows
from .packed import MR, NV, VECTOR_BYTES

EMULATE = "BPTT_BF16_EMULATE"   # "1": a CPU without AVX512-BF16 runs bf16 on the emulating kernel (tests only)
JIT = {"nogil": True, "cache": True, "error_model": "numpy"}
KB = 128                        # pairs of k per block of gemm: a panel's block (KB x NC uint32, 32 KB) stays in L1
TINY = np.float32(2.0 ** -126)  # float32's smallest normal: results below it are flushed to zero (FTZ)


def _has_bf16():
    """Whether this CPU (or numba's NUMBA_CPU_FEATURES, when a test fakes another CPU) has AVX512-BF16,
    and the kernel is built at 512 bits (the hardware tile is 16 float32 lanes)."""
    if VECTOR_BYTES != 64:
        return False
    faked = numba.config.CPU_FEATURES
    if faked:
        return "+avx512bf16" in faked.split(",")
    try:
        return bool(llvm.get_host_cpu_features().get("avx512bf16"))
    except RuntimeError:
        return False


HARDWARE = _has_bf16()


def path():
    """The instruction path bf16 products take here: "avx512-bf16", "emulated" or None (none allowed)."""
    if HARDWARE:
        return "avx512-bf16"
    return "emulated" if os.environ.get(EMULATE) == "1" else None


def require(name="precision"):
    """Refuse bf16 where this CPU cannot run it (no AVX512-BF16; emulation is for tests only)."""
    if path() is None:
        raise ValueError(f"{name}: 'bf16' needs a CPU with AVX512-BF16 (the vdpbf16ps instruction: AMD Zen 4 and "
                         f"later, Intel Cooper Lake, Sapphire Rapids and later); this CPU has none. Use 'float32'")


# ---- conversion --------------------------------------------------------------------------------

@intrinsic
def _f32_bits(typingctx, x):
    """The bits of a float32 as a uint32."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(x), codegen


@intrinsic
def _bits_f32(typingctx, u):
    """The float32 whose bits are the uint32 u."""
    if u != types.uint32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(u), codegen


@njit(inline="always")
def to_bf16(x):
    """bf16(x) for a float32 x: its top 16 bits after rounding to nearest, ties to even (uint32 < 2^16).
    NaN stays NaN (quiet); a value that rounds past the largest bf16 becomes infinity."""
    u = _f32_bits(x)
    if (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
        return (u >> np.uint32(16)) | np.uint32(0x40)
    return (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)


@njit(inline="always")
def from_bf16(h):
    """The float32 of the bf16 bits h, read as vdpbf16ps reads it: exponent 0 (zero, subnormal) is a signed zero."""
    h = np.uint32(h)
    if h & np.uint32(0x7F80) == 0:
        h = np.uint32(h & np.uint32(0x8000))
    return _bits_f32(np.uint32(h << np.uint32(16)))


@njit(inline="always")
def _pair(lo, hi):
    return to_bf16(lo) | (to_bf16(hi) << np.uint32(16))


@njit(inline="always")
def round_row(x, out16):
    """out16[j] = bf16 x[j] (uint16) for j < x.size: a loop that vectorises."""
    for j in range(x.size):
        out16[j] = to_bf16(np.float32(x[j]))


@njit(inline="always")
def combine(lo16, hi16, out):
    """out[j] = lo16[j] | hi16[j] << 16 for j < out.size: the pairs of two rows rounded by round_row. Rounding
    both rows and pairing them in one loop (_pair) is slow on short rows: pack(B, False) of a 192 x 700
    chunk, whose panels' rows are 64 wide, ran 2.1-2.6x slower, pairs_of_columns of 2048 x 128 1.5x;
    on rows of 1024 the two measured alike, and within the backward loop's step (pair_rows) _pair
    measured faster (0.14 against 0.17 ms a thread's window) and stays. 2-core AMD EPYC Zen 5, AVX-512."""
    for j in range(out.size):
        out[j] = np.uint32(lo16[j]) | (np.uint32(hi16[j]) << np.uint32(16))


@njit(**JIT)
def pairs(A):
    """A (M, K) float32 (any strides) -> (M, ceil(K/2)) uint32: A2[m, i] = bf16 A[m, 2i] | bf16 A[m, 2i+1] << 16.
    Each row is rounded into its uint16 view (contiguous: the loop vectorises)."""
    out = np.empty((A.shape[0], (A.shape[1] + 1) // 2), np.uint32)
    pairs_rows(A, out, 0, A.shape[0])
    return out


@njit(**JIT)
def pairs_rows(A, out, m0, m1):
    """Rows m0:m1 of out = pairs(A)."""
    K = A.shape[1]
    for m in range(m0, m1):
        a, o = A[m], out[m].view(np.uint16)
        for k in range(K):
            o[k] = to_bf16(a[k])
        if K % 2:
            o[K] = 0


@njit(**rows.PARALLEL)
def pairs_blocks(args, blocks):
    """pairs_rows(*args, m0, m1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        pairs_rows(*args, blocks[i, 0], blocks[i, 1])


def pairs_on_cores(A):
    """pairs(A), its rows shared out over the cores when A takes packed.PARALLEL_BYTES or more (the
    left operand of a window-sized product: da_t of all T B rows is 8 MB at LSTM H256)."""
    if A.nbytes < packed.PARALLEL_BYTES:
        return pairs(A)
    out = np.empty((A.shape[0], (A.shape[1] + 1) // 2), np.uint32)
    rows.run(pairs_rows, (A, out), rows.split(A.shape[0], min(rows.threads_available(), A.shape[0])), pairs_blocks)
    return out


@njit(**JIT)
def pairs_of_columns(X, m0, m1):
    """Columns m0:m1 of X (K, M) float32, transposed: (m1 - m0, ceil(K/2)) uint32, pairs(X[:, m0:m1].T), as the
    transposed view of a (ceil(K/2), m1 - m0) array whose row i pairs X's rows 2i and 2i + 1 (made along X's
    rows, a loop that vectorises; the kernel reads A with any strides). Transposing the pairs as well had
    cost 0.42 ms for 2048 x 128 against 0.09 (one core of a 2-core AMD EPYC Zen 5, AVX-512)."""
    return pairs_of_stacked_columns(X[:0], X, m0, m1)


def pairs_of_columns_on_cores(X):
    """pairs_of_columns(X, 0, M), its pair rows shared out over the cores when X takes packed.PARALLEL_BYTES
    or more (V^T's pairs for the readout by classes, 10,000 x 200)."""
    K, M = X.shape
    if X.nbytes < packed.PARALLEL_BYTES:
        return pairs_of_columns(X, 0, M)
    K2 = (K + 1) // 2
    out = np.empty((K2, M), np.uint32)
    rows.run(pairs_of_columns_rows, (X, out), rows.split(K2, min(rows.threads_available(), K2)),
             pairs_of_columns_blocks)
    return out.T


@njit(**JIT)
def pairs_of_columns_rows(X, out, i0, i1):
    """Pair rows i0:i1 of out (ceil(K/2), M), pairs_of_columns(X, 0, M) transposed, for splitting it over threads."""
    columns_into(X[:0], X, out, i0, i1, 0, X.shape[1])


@njit(**rows.PARALLEL)
def pairs_of_columns_blocks(args, blocks):
    """pairs_of_columns_rows(*args, i0, i1) for every block of pair rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        pairs_of_columns_rows(*args, blocks[i, 0], blocks[i, 1])


@njit(**JIT)
def pairs_of_stacked_columns(X0, X, m0, m1):
    """pairs_of_columns of the rows of X0 (K0, M), then those of X (K - K0, M), read where they are rather
    than copied into one array first (dU's h_{t-1}: h_0, then h_1 .. h_{T-1} of the forward's array)."""
    K2 = (X0.shape[0] + X.shape[0] + 1) // 2
    out = np.empty((K2, m1 - m0), np.uint32)
    columns_into(X0, X, out, 0, K2, m0, m1)
    return out.T


@njit(**JIT)
def columns_into(X0, X, out, i0, i1, m0, m1):
    """Pair rows i0:i1 of out (ceil(K/2), m1 - m0): out[i, b] = bf16 X[2i, m0 + b] | bf16 X[2i + 1, m0 + b] << 16,
    X's rows being X0's (K0 of them) then X's, zero past the last; pairs_of_stacked_columns(X0, X, m0, m1).T."""
    K0 = X0.shape[0]
    K = K0 + X.shape[0]
    lo16, hi16 = np.empty(m1 - m0, np.uint16), np.zeros(m1 - m0, np.uint16)
    for i in range(i0, i1):
        k = 2 * i
        round_row(X0[k, m0:m1] if k < K0 else X[k - K0, m0:m1], lo16)
        if k + 1 < K:
            round_row(X0[k + 1, m0:m1] if k + 1 < K0 else X[k + 1 - K0, m0:m1], hi16)
        else:
            hi16[:] = 0
        combine(lo16, hi16, out[i])


def pack(B, trans):
    """bf16 panels (P, K2, NC) uint32 of B (K, N), or of B^T when trans (B given as (N, K)); P = ceil(N / NC).
    Panel p, pair row i holds the pair (B[2i, j], B[2i+1, j]) of column j = p NC + jj, zero beyond N and K.
    A matrix of packed.PARALLEL_BYTES or more is packed on every core, its panels shared out (rows.run)."""
    K, N = (B.shape[1], B.shape[0]) if trans else B.shape
    if B.nbytes < packed.PARALLEL_BYTES:
        return pack_panels(B, trans)
    Bp = _empty_panels.py_func(K, N)
    P = Bp.shape[0]
    rows.run(pack_range, (B, trans, Bp), rows.split(P, min(rows.threads_available(), P)), pack_blocks)
    return Bp


@njit(inline="always")
def _empty_panels(K, N):
    """Uninitialised panels (P, ceil(K/2), NC) uint32 for a (K, N) matrix, starting on a cache line
    (pack_range writes every element, the padding's zeros too)."""
    NC = packed.width(4)
    size = (N + NC - 1) // NC * ((K + 1) // 2) * NC
    buf = np.empty(size + VECTOR_BYTES // 4, np.uint32)
    skip = (-buf.ctypes.data) % VECTOR_BYTES // 4
    return buf[skip:skip + size].reshape(((N + NC - 1) // NC, (K + 1) // 2, NC))


def empty_panels(K, N):
    """Panels (P, ceil(K/2), NC) uint32 for pack(B, False) of a (K, N) matrix that a time loop fills as it
    computes B's rows (pair_rows): uninitialised but for the halves no row will write (an odd K's last
    pair's high half). An empty (0, 0, NC) when K or N is 0."""
    if K == 0 or N == 0:
        return np.zeros((0, 0, packed.width(4)), np.uint32)
    Bp = _empty_panels.py_func(K, N)
    if K % 2:
        Bp.view(np.uint16)[:, -1, 1::2] = 0
    return Bp


@njit(inline="always")
def pair_rows(Bp, rows_t, k0, b0, b1):
    """Rows b0:b1 of rows_t (n, N) float32, rows k0 + b of a (K, N) matrix B, into its panels Bp
    (empty_panels: pack(B, False) as it would be): row k is the k % 2 half of pair row k // 2, zeros in
    the last panel beyond N. Two rows of a pair in the range go in one pass (a loop that vectorises);
    a row whose partner is outside (a block's edge: another thread's, or the previous step's) is
    written as uint16 halves. Nothing when Bp is empty (float32 products, or float64: the casts are
    there for the typing alone). The loops run over views of the rows, indexed from 0: indexed as
    rows_t[b][p NC + jj] they stayed scalar (0.52 against 0.12 ms for a thread's rows of an LSTM H256
    window, 2-core AMD EPYC Zen 5)."""
    if Bp.shape[0] == 0:
        return
    P, NC, N = Bp.shape[0], Bp.shape[2], rows_t.shape[1]
    halves = Bp.view(np.uint16)
    b = b0
    while b < b1:
        k = k0 + b
        if k % 2 == 0 and b + 1 < b1:
            for p in range(P):
                j0, w = p * NC, min(NC, N - p * NC)
                row, lo, hi = Bp[p, k // 2], rows_t[b, j0:j0 + w], rows_t[b + 1, j0:j0 + w]
                for jj in range(w):
                    row[jj] = _pair(np.float32(lo[jj]), np.float32(hi[jj]))
                for jj in range(w, NC):
                    row[jj] = 0
            b += 2
            continue
        s = k % 2
        for p in range(P):
            j0, w = p * NC, min(NC, N - p * NC)
            row, src = halves[p, k // 2], rows_t[b, j0:j0 + w]
            for jj in range(w):
                row[2 * jj + s] = to_bf16(np.float32(src[jj]))
            for jj in range(w, NC):
                row[2 * jj + s] = 0
        b += 1


@njit(**JIT)
def pack_panels(B, trans):
    """pack(B, trans), compiled, on this thread."""
    K, N = (B.shape[1], B.shape[0]) if trans else (B.shape[0], B.shape[1])
    Bp = _empty_panels(K, N)
    pack_range(B, trans, Bp, 0, Bp.shape[0])
    return Bp


@njit(**rows.PARALLEL)
def pack_blocks(args, blocks):
    """pack_range(*args, p0, p1) for every range of panels, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        pack_range(*args, blocks[i, 0], blocks[i, 1])


@njit(**JIT)
def pack_range(B, trans, Bp, p0, p1):
    """Panels p0:p1 of pack(B, trans) into Bp, every element written (zeros beyond N and K)."""
    if trans:
        _pack_columns(B, Bp, p0, p1)
    else:
        _pack_rows(B, Bp, p0, p1)


@njit(**JIT)
def _pack_columns(B, Bp, p0, p1):
    """pack_range for B^T (B given as (N, K)): each row of B is rounded whole into a uint16 buffer (a loop
    that vectorises), whose uint32 view is that row's pairs, a column of the panel (U^T of an LSTM H128:
    60 -> 14 us)."""
    K, N = B.shape[1], B.shape[0]
    NC, K2 = Bp.shape[2], Bp.shape[1]
    half = np.zeros(2 * K2, np.uint16)                  # an odd K's last pair ends on a zero
    pairs_of_row = half.view(np.uint32)
    for p in range(p0, p1):
        j0, w = p * NC, min(NC, N - p * NC)
        panel = Bp[p]
        for jj in range(w):                             # row j of B: its bf16 values, read as pairs
            src = B[j0 + jj]
            for k in range(K):
                half[k] = to_bf16(src[k])
            for i in range(K2):
                panel[i, jj] = pairs_of_row[i]
        for i in range(K2):                             # the last panel's columns beyond N
            panel[i, w:] = 0


@njit(**JIT)
def _pack_rows(B, Bp, p0, p1):
    """pack_range for B (K, N): rows 2i and 2i + 1 rounded whole (round_row), then paired panel by panel
    (combine) into pair row i; the buffers' zeros beyond N fill the last panel."""
    K, N = B.shape
    NC, K2 = Bp.shape[2], Bp.shape[1]
    j0, j1 = p0 * NC, min(N, p1 * NC)
    lo16, hi16 = np.zeros((p1 - p0) * NC, np.uint16), np.zeros((p1 - p0) * NC, np.uint16)
    for i in range(K2):
        round_row(B[2 * i, j0:j1], lo16)
        if 2 * i + 1 < K:
            round_row(B[2 * i + 1, j0:j1], hi16)
        else:
            hi16[:] = 0                                 # an odd K's last pair ends on a zero
        for p in range(p0, p1):
            q = (p - p0) * NC
            combine(lo16[q:q + NC], hi16[q:q + NC], Bp[p, i])


@njit(**JIT)
def transpose_rows(S, D, i0, i1):
    """Rows i0:i1 of D = S^T (D (M, N), S (N, M)), in squares of packed.TB through a small buffer."""
    TB = packed.TB
    square = np.empty((TB, TB), S.dtype)
    N = S.shape[0]
    for a0 in range(i0, i1, TB):
        na = min(TB, i1 - a0)
        for b0 in range(0, N, TB):
            nb = min(TB, N - b0)
            for b in range(nb):
                src = S[b0 + b, a0:a0 + na]
                for a in range(na):
                    square[a, b] = src[a]
            for a in range(na):
                dst = D[a0 + a, b0:b0 + nb]
                for b in range(nb):
                    dst[b] = square[a, b]


@njit(**rows.PARALLEL)
def transpose_blocks(args, blocks):
    """transpose_rows(*args, i0, i1) for every block of rows, one per thread (rows.run)."""
    for i in prange(blocks.shape[0]):
        transpose_rows(*args, blocks[i, 0], blocks[i, 1])


# ---- the microkernel ---------------------------------------------------------------------------

class _BFloat(ir.Type):
    """LLVM's bfloat type, which llvmlite's IR builder does not name."""

    def _to_string(self):
        return "bfloat"

    def __eq__(self, other):
        return isinstance(other, _BFloat)

    def __hash__(self):
        return hash("bfloat")


@intrinsic(prefer_literal=True)
def _tile_hardware(typingctx, A, Bk, C, beta, rows, nv, cont):
    """C[:rows, :16 nv] = A[:rows] Bk[:, :16 nv] + beta C on bf16 pairs (uint32): A (>= rows, K2) any
    strides, Bk (K2, >= 16 nv) one panel with contiguous rows, C float32 with contiguous rows; beta = 0
    ignores C's values. cont (a literal 1): the sum goes on from C's values instead (the next block of k
    of the same sum, beta unused): the accumulators start from C, as if they had never been stored.
    One register tile per row count 1..MR (a switch), as packed._tile."""
    if not isinstance(nv, types.IntegerLiteral) or not isinstance(rows, types.Integer):
        return None
    if not isinstance(cont, types.IntegerLiteral):
        return None
    NVEC, lanes, CONT = nv.literal_value, 16, bool(cont.literal_value)

    def codegen(context, builder, sig, args):
        a_arr, b_arr, c_arr, beta_, rows_, _, _ = args
        i64, f32, i32 = ir.IntType(64), ir.FloatType(), ir.IntType(32)
        vt, it, bt = ir.VectorType(f32, lanes), ir.VectorType(i32, lanes), ir.VectorType(_BFloat(), 2 * lanes)
        dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, bt, bt]),
                                            "llvm.x86.avx512bf16.dpbf16ps.512")
        const = lambda n: ir.Constant(i64, n)                                      # noqa: E731
        a, b, c = (packed._array(context, builder, ty, v) for ty, v in zip(sig.args[:3], (a_arr, b_arr, c_arr)))
        K2 = builder.extract_value(a.shape, 1)
        sa0, sa1, sb, sc = (builder.sdiv(builder.extract_value(x.strides, n), const(4))
                            for x, n in ((a, 0), (a, 1), (b, 0), (c, 0)))
        zero = ir.Constant(vt, [ir.Constant(f32, 0.0)] * lanes)
        exit_ = builder.append_basic_block("tile.exit")
        switch = builder.switch(context.cast(builder, rows_, sig.args[4], types.int64), exit_)
        for R in range(1, MR + 1):
            entry = builder.append_basic_block(f"tile.rows{R}")
            switch.add_case(const(R), entry)
            builder.position_at_end(entry)
            a_rows = [builder.gep(a.data, [builder.mul(const(r), sa0)]) for r in range(R)]
            vpt = vt.as_pointer()
            targets = [[builder.bitcast(builder.gep(c.data, [builder.add(builder.mul(const(r), sc),
                                                                          const(v * lanes))]), vpt)
                        for v in range(NVEC)] for r in range(R)]
            start = [[builder.load(targets[r][v], align=4) if CONT else zero for v in range(NVEC)] for r in range(R)]
            head, body, done = (builder.append_basic_block(f"tile.{s}{R}") for s in ("head", "body", "done"))
            builder.branch(head)

            builder.position_at_end(head)                                          # k, acc[r][v]
            k = builder.phi(i64)
            acc = [[builder.phi(vt) for _ in range(NVEC)] for _ in range(R)]
            builder.cbranch(builder.icmp_signed("<", k, K2), body, done)

            builder.position_at_end(body)                                          # acc += A[:, k] . Bk[k]
            row_k = builder.gep(b.data, [builder.mul(k, sb)])
            bk = [builder.bitcast(builder.load(builder.bitcast(builder.gep(row_k, [const(v * lanes)]),
                                                               it.as_pointer()), align=4), bt)
                  for v in range(NVEC)]
            ka = builder.mul(k, sa1)
            new = []
            for r in range(R):
                x = builder.bitcast(packed._splat(builder, it, builder.load(builder.gep(a_rows[r], [ka]))), bt)
                new.append([builder.call(dp, [acc[r][v], x, bk[v]]) for v in range(NVEC)])
            k.add_incoming(const(0), entry)
            k.add_incoming(builder.add(k, const(1)), body)
            for r in range(R):
                for v in range(NVEC):
                    acc[r][v].add_incoming(start[r][v], entry)
                    acc[r][v].add_incoming(new[r][v], body)
            builder.branch(head)

            builder.position_at_end(done)                                          # C = acc + beta C
            if CONT:
                for r in range(R):
                    for v in range(NVEC):
                        builder.store(acc[r][v], targets[r][v], align=4)
                builder.branch(exit_)
                continue
            with builder.if_else(builder.fcmp_ordered("==", beta_, ir.Constant(f32, 0.0))) as (overwrite, update):
                with overwrite:
                    for r in range(R):
                        for v in range(NVEC):
                            builder.store(acc[r][v], targets[r][v], align=4)
                with update:
                    beta_v = packed._splat(builder, vt, beta_)
                    for r in range(R):
                        for v in range(NVEC):
                            old = builder.load(targets[r][v], align=4)
                            builder.store(builder.fadd(acc[r][v], builder.fmul(beta_v, old)), targets[r][v],
                                          align=4)
            builder.branch(exit_)
        builder.position_at_end(exit_)
        return context.get_dummy_value()

    return types.void(A, Bk, C, types.float32, rows, nv, cont), codegen


@njit(inline="always")
def _flush(x):
    """x, or a zero of its sign below float32's smallest normal (FTZ)."""
    return x if abs(x) >= TINY else x * np.float32(0.0)


@njit(inline="always")
def _tile_emulated(A, Bk, C, beta, rows, nv, cont=0):
    """What _tile_hardware computes, as compiled loops: vdpbf16ps's order and rounding, DAZ and FTZ
    included. nv vectors of 16 columns. Each sum acc + a b is taken in float64 and rounded to float32
    once: the product of two bf16 is exact there, and the sum needs at most 53 bits wherever its float32
    rounding is in doubt, so this is the instruction's single rounding; float32 arithmetic would
    overflow a product beyond float32's range (3e38 x 3e38) that the instruction carries into the sum."""
    L = nv * (VECTOR_BYTES // 4)
    acc = np.zeros(L, np.float32)
    for r in range(rows):
        for j in range(L):
            acc[j] = C[r, j] if cont else np.float32(0.0)
        for i in range(A.shape[1]):
            a = A[r, i]
            a0, a1 = from_bf16(a & np.uint32(0xFFFF)), from_bf16(a >> np.uint32(16))
            bi = Bk[i]
            for j in range(L):
                b = bi[j]
                s = _flush(np.float32(np.float64(acc[j]) + np.float64(a1) * from_bf16(b >> np.uint32(16))))
                acc[j] = _flush(np.float32(np.float64(s) + np.float64(a0) * from_bf16(b & np.uint32(0xFFFF))))
        for j in range(L):
            C[r, j] = acc[j] if beta == 0 or cont else acc[j] + beta * C[r, j]


def _tile(A, Bk, C, beta, rows, nv, cont):
    """The bf16 tile: the hardware's where the CPU has AVX512-BF16, else the emulation (chosen at compile time)."""


@overload(_tile, jit_options={"inline": "always"}, prefer_literal=True)
def _tile_impl(A, Bk, C, beta, rows, nv, cont):
    if HARDWARE:
        def hardware(A, Bk, C, beta, rows, nv, cont):
            _tile_hardware(A, Bk, C, np.float32(beta), rows, nv, cont)
        return hardware

    def emulated(A, Bk, C, beta, rows, nv, cont):
        _tile_emulated(A, Bk, C, np.float32(beta), rows, nv, cont)
    return emulated


@njit(inline="always")
def _narrow_tile(A, panel, tile, C, beta, rows, vectors):
    """C[:rows, :w] = A[:rows] panel[:, :w] + beta C for a last panel narrower than NC (w = C's columns):
    on as few vectors as cover w, into tile (MR, NC), then its first w columns into C."""
    if vectors == 1:
        _tile(A, panel, tile, 0.0, rows, 1, 0)
    elif vectors == 2:
        _tile(A, panel, tile, 0.0, rows, 2, 0)
    else:
        _tile(A, panel, tile, 0.0, rows, NV, 0)
    for q in range(rows):
        for jj in range(C.shape[1]):
            C[q, jj] = tile[q, jj] + beta * C[q, jj] if beta != 0 else tile[q, jj]


@njit(**JIT)
def gemm(A2, Bp, C, beta):
    """C = A B + beta C: A2 = pairs(A) (M, K2), Bp = pack(B, ...) (P, K2, NC), C (M, N) float32 with
    contiguous rows. With beta = 0 and K2 > KB pairs the sum runs in blocks of KB pairs, each panel's
    block (KB x NC, 32 KB) in L1 while every tile of rows passes over it; the tiles after the first
    block go on from C (cont), so the sum and its rounding are those of one pass."""
    M, K2 = A2.shape
    N = C.shape[1]
    P, NC = Bp.shape[0], Bp.shape[2]
    if Bp.shape[1] != K2 or C.shape[0] != M or N > P * NC or N <= (P - 1) * NC:
        raise ValueError("bf16.gemm: shapes of A2 (M, K2), Bp (P, K2, NC) and C (M, N) disagree")
    if C.strides[1] != C.itemsize:
        raise ValueError("bf16.gemm: the rows of C must be contiguous")
    b = np.float32(beta)
    full = N // NC
    step = KB if b == 0 else max(K2, 1)
    for k0 in range(0, max(K2, 1), step):
        k1 = min(k0 + step, K2)
        for p in range(full):
            panel = Bp[p, k0:k1]
            for i in range(0, M, MR):
                if k0 == 0:
                    _tile(A2[i:i + MR, k0:k1], panel, C[i:i + MR, p * NC:(p + 1) * NC], b, min(MR, M - i), NV, 0)
                else:
                    _tile(A2[i:i + MR, k0:k1], panel, C[i:i + MR, p * NC:(p + 1) * NC], b, min(MR, M - i), NV, 1)
    if full < P:                       # the last, narrow panel: unblocked (its tile is a copy)
        j, tile = full * NC, np.empty((MR, NC), np.float32)
        vectors = -(-(N - j) * NV // NC)
        for i in range(0, M, MR):
            r = min(MR, M - i)
            _narrow_tile(A2[i:i + r], Bp[full], tile, C[i:i + r, j:], b, r, vectors)


@njit(**JIT)
def gemm_rows(A2, Bp, C, beta, m0, m1):
    """Rows m0:m1 of gemm(A2, Bp, C, beta), for splitting one product over threads."""
    gemm(A2[m0:m1], Bp, C[m0:m1], beta)


@njit(**JIT)
def gemm_tn(X, Yp, C, beta, m0, m1):
    """Rows m0:m1 of C = X^T Y + beta C: X (K, M) float32, Yp = pack(Y, False) for Y (K, N), C (M, N)."""
    gemm(pairs_of_columns(X, m0, m1), Yp, C[m0:m1], beta)


@njit(**JIT)
def gemm_tn_stacked(X0, X, Yp, C, beta, m0, m1):
    """gemm_tn with X given as two arrays, the rows of X0 (K0, M) then those of X (pairs_of_stacked_columns)."""
    gemm(pairs_of_stacked_columns(X0, X, m0, m1), Yp, C[m0:m1], beta)


# ---- dispatch: the time loops multiply by float32 or bf16 panels alike ----------------------------

def product(A, Bp, C, beta):
    """C = A Bp + beta C for float32 A (rows contiguous): packed.gemm with float panels, gemm on pairs(A)
    with bf16 panels (uint32). A time loop calls this, and the panels its caller packed choose the
    precision (at compile time)."""


@overload(product)
def _product_impl(A, Bp, C, beta):
    if isinstance(Bp, types.Array) and Bp.dtype == types.uint32:
        if A.dtype == types.uint32:                 # A given as pairs already
            def paired(A, Bp, C, beta):
                gemm(A, Bp, C, beta)
            return paired

        def low(A, Bp, C, beta):
            gemm(pairs(A), Bp, C, beta)
        return low

    def full(A, Bp, C, beta):
        packed.gemm(A, Bp, C, beta)
    return full


def product_tn(X, Y, C, beta, m0, m1, like):
    """Rows m0:m1 of C = X^T Y + beta C (packed.gemm_tn's form), in the precision of the panels `like`
    (float: packed.gemm_tn; bf16 pairs: X^T's rows converted, Y packed here)."""


@overload(product_tn)
def _product_tn_impl(X, Y, C, beta, m0, m1, like):
    if isinstance(like, types.Array) and like.dtype == types.uint32:
        def low(X, Y, C, beta, m0, m1, like):
            gemm(pairs_of_columns(X, m0, m1), pack_panels(Y, False), C[m0:m1], beta)
        return low

    def full(X, Y, C, beta, m0, m1, like):
        packed.gemm_tn(X, Y, C, beta, m0, m1)
    return full


# ---- the oracle ------------------------------------------------------------------------------

def round_bf16(x):
    """bf16(x) of every element of a float32 array, as uint16 bits (NumPy; the same rounding as to_bf16)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = ((u + np.uint32(0x7FFF) + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), r)


def widen(h):
    """The float32 of bf16 bits (uint16), read with DAZ (exponent 0 is zero), as the instruction reads them."""
    h = np.where((h & 0x7F80) == 0, h & 0x8000, h).astype(np.uint32)
    return (h << 16).view(np.float32)


def reference(A, B, C=None, beta=0.0):
    """A B + beta C as vdpbf16ps computes it, in NumPy float32 arithmetic: A (M, K) and B (K, N) rounded
    to bf16, the sum over pairs in order, the odd element of each pair first, every partial sum rounded
    once to float32 (through float64, as _tile_emulated) and flushed below the smallest normal; then
    acc + float32(beta C). For tests: exact, slow."""
    A, B = np.asarray(A, np.float32), np.asarray(B, np.float32)
    K = A.shape[1]
    if K % 2:
        A, B = np.pad(A, ((0, 0), (0, 1))), np.pad(B, ((0, 1), (0, 0)))
    a, b = widen(round_bf16(A)), widen(round_bf16(B))
    acc = np.zeros((A.shape[0], B.shape[1]), np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(0, A.shape[1], 2):
            for k in (i + 1, i):
                acc = (acc.astype(np.float64) + a[:, k:k + 1].astype(np.float64) * b[k:k + 1, :]).astype(np.float32)
                acc = np.where(np.abs(acc) < TINY, acc * np.float32(0), acc)
        if beta == 0:
            return acc
        return acc + np.float32(beta) * np.asarray(C, np.float32)


def panels(B, trans, precision):
    """The panels a time loop multiplies by: packed.pack(B, trans) in float32 (or float64), this module's
    pack(B, trans) for precision="bf16"."""
    return pack(B, trans) if precision == "bf16" else packed.pack(B, trans)
