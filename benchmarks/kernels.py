"""The GEMM kernels alone, on one thread, against PyTorch's on the same shapes and against this machine's
measured peak: what bounds the training step (docs/fast-engine.md, "The kernels against the peak").

Per shape (rows x K x N, the rows of one thread where the time loop splits the batch over two cores):

  bptt f32    packed.gemm (bf16.product on float32 panels), B packed once, as the time loops run it
  bptt bf16   bf16.product: A's pairs made at every call, then bf16.gemm (as the time loops run it)
  torch f32   torch.mm into a preallocated C, one thread (MKL's sgemm in the pinned CPU build)
  torch bf16  torch.mm of bfloat16 tensors (oneDNN's matmul), one thread, A converted at every call
              as autocast converts it

and the peak of each precision: bptt's own register tile on operands that stay in L1 and L2 (60 rows x
K 256 x 64 columns, repeated), which issues nothing but the multiply-adds and their operands' loads.
The process is pinned to one core: oneDNN's matmul ran on two threads under torch.set_num_threads(1).

    python benchmarks/kernels.py
    python benchmarks/kernels.py --markdown kernels.md

The small shapes are repeated in a compiled loop for bptt and a Python loop for PyTorch (a call's
Python overhead, about 2 us, is in PyTorch's figure: its LSTM calls its kernels from C++).
"""

import argparse
import os
import sys
import time

import numpy as np
from numba import njit

try:
    import torch
except ImportError:                                   # a test-only dependency: say so, no traceback
    sys.exit("benchmarks/kernels.py: needs PyTorch, bptt's test dependency (make test installs torch==2.13.0 "
             "into .venv; run this with .venv/bin/python)")

from bptt.bench.tables import machine_line
from bptt.fast import aligned, bf16, packed
from bptt.fast.bf16 import product

SHAPES = [  # (rows, K, N, what)
    (16, 128, 512, "LSTM H128 forward, a thread's rows"),
    (16, 256, 1024, "LSTM H256 forward"),
    (16, 1024, 256, "LSTM H256 backward (da U)"),
    (128, 2048, 1024, "LSTM H256 dU^T, a thread's half"),
    (32, 512, 2048, "LSTM H512 batch 64 forward"),
    (32, 2048, 512, "LSTM H512 batch 64 backward"),
    (192, 200, 700, "word readout, a chunk of classes (z = V h^T)"),
    (200, 192, 700, "word readout, dh^T += V^T dz of a chunk"),
    (1024, 1024, 1024, "square"),
]


@njit(nogil=True, error_model="numpy")
def _repeat(A, Bp, C, n):
    for _ in range(n):
        product(A, Bp, C, 0.0)


def _best(run, flop, seconds=0.25):
    """FLOP/s of the best of several timed batches of calls of run(n)."""
    run(1)
    n = 1
    while True:
        start = time.perf_counter()
        run(n)
        if time.perf_counter() - start > seconds / 10 or n > 1 << 20:
            break
        n *= 2
    times = []
    for _ in range(7):
        start = time.perf_counter()
        run(n)
        times.append((time.perf_counter() - start) / n)
    return flop / min(times)


def bptt_rate(A, B, precision):
    Bp = bf16.panels(B, False, precision)
    C = aligned.empty((A.shape[0], B.shape[1]), np.float32)
    return _best(lambda n: _repeat(A, Bp, C, n), 2.0 * A.shape[0] * A.shape[1] * B.shape[1])


def torch_rate(A, B, precision):
    a, b = torch.from_numpy(A), torch.from_numpy(B)
    if precision == "bf16":
        b16, c = b.to(torch.bfloat16), torch.empty((A.shape[0], B.shape[1]), dtype=torch.bfloat16)

        def run(n):
            for _ in range(n):
                torch.mm(a.to(torch.bfloat16), b16, out=c)
    else:
        c = torch.empty((A.shape[0], B.shape[1]))

        def run(n):
            for _ in range(n):
                torch.mm(a, b, out=c)
    return _best(run, 2.0 * A.shape[0] * A.shape[1] * B.shape[1])


@njit(nogil=True, error_model="numpy")
def _repeat_tile(A2, Bp, C, n):
    for _ in range(n):
        bf16.gemm(A2, Bp, C, 0.0)


@njit(nogil=True, error_model="numpy")
def _repeat_tile_f32(A, Bp, C, n):
    for _ in range(n):
        packed.gemm(A, Bp, C, 0.0)


def peak(precision):
    """bptt's register tile on operands that stay in L1 and L2 (60 rows x K 256 x 64 columns: ten tiles of
    6 rows over one panel; bf16: A's pairs made once), repeated: the multiply-adds and their operands' loads."""
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((60, 256)).astype(np.float32), rng.standard_normal((256, 64)).astype(np.float32)
    C = aligned.empty((60, 64), np.float32)
    if precision == "bf16":
        A2, Bp = bf16.pairs(A), bf16.pack(B, False)
        return _best(lambda n: _repeat_tile(A2, Bp, C, n), 2.0 * 60 * 256 * 64)
    Bp = packed.pack(B, False)
    return _best(lambda n: _repeat_tile_f32(A, Bp, C, n), 2.0 * 60 * 256 * 64)


def rows_of_table(shapes):
    rng = np.random.default_rng(0)
    out = []
    for M, K, N, what in shapes:
        A, B = rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal((K, N)).astype(np.float32)
        rates = [bptt_rate(A, B, "float32"), torch_rate(A, B, "float32")]
        if bf16.path():
            rates += [bptt_rate(A, B, "bf16"), torch_rate(A, B, "bf16")]
        out.append((f"{M} x {K} x {N}", what, rates))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--markdown", help="also write the table to this file (refused if it exists)")
    args = parser.parse_args(argv)
    if args.markdown and os.path.exists(args.markdown):
        parser.error(f"--markdown: {args.markdown} exists; give a new file (nothing is overwritten)")
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})     # one core: oneDNN's matmul ignores set_num_threads
    torch.set_num_threads(1)
    low = bool(bf16.path())
    heads = ["shape (rows x K x N)", "what", "bptt f32", "torch f32"] + (["bptt bf16", "torch bf16"] if low else [])
    peaks = [peak("float32")] + ([peak("bf16")] if low else [])
    low_peak = f", bf16 {peaks[1] / 1e9:.0f} ({bf16.path()})" if low else " (no bf16 path)"
    lines = [machine_line(), "one thread on one core, GFLOP/s (% of the peak); peak (bptt's tile, operands in "
             f"L1/L2): float32 {peaks[0] / 1e9:.0f}" + low_peak,
             "", "| " + " | ".join(heads) + " |", "|" + "---|" * 2 + "---:|" * (len(heads) - 2)]
    for shape, what, rates in rows_of_table(SHAPES):
        cells = [f"{r / 1e9:.0f} ({100 * r / peaks[i // 2]:.0f}%)" for i, r in enumerate(rates)]
        lines.append(f"| {shape} | {what} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "x", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
