"""Arrays that start on a cache line.

NumPy aligns a new array to 16 bytes and numba to 32. The compiled loops move 64-byte (AVX-512)
vectors along the rows of their arrays, and a vector that straddles two cache lines costs two
accesses: the packed GEMM runs ~20% slower on a panel 16 or 32 bytes off a line (docs/fast-engine.md).
The engine's window-sized arrays (gates, states, their gradients) are therefore allocated here.
"""

import numpy as np

LINE = 64


def empty(shape, dtype):
    """np.empty(shape, dtype), its first element on a LINE-byte boundary."""
    dtype = np.dtype(dtype)
    shape = tuple(shape) if np.ndim(shape) else (int(shape),)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.empty(nbytes + LINE, np.uint8)
    skip = -buf.ctypes.data % LINE
    return buf[skip:skip + nbytes].view(dtype).reshape(shape)


def empty_like(a):
    return empty(a.shape, a.dtype)
