"""NumPy's own OpenBLAS, called from compiled code: one BLAS and one thread pool in the process.

The compiled time loops call `sgemm`/`dgemm` (CBLAS, row-major) through ctypes function pointers,
which numba calls directly in nopython mode. They are the very library NumPy's matmul uses (the
`scipy-openblas` build bundled in NumPy's wheels, 64-bit integers, symbols prefixed `scipy_`), so
no second BLAS with a second pool of spinning threads competes for the two cores.

`set_local_threads(n)` sets how many threads OpenBLAS uses for calls made from the calling
thread only (OpenBLAS >= 0.3.27); the batch-split workers use it to run single-threaded GEMMs
side by side while NumPy's own calls keep the global setting.
"""

import ctypes
import glob
import os

import llvmlite.binding as llvm
import numpy as np
from numba import types
from numba.extending import overload

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def _library_path():
    """The OpenBLAS shared library that NumPy loaded (numpy.libs/ in a wheel install)."""
    root = os.path.dirname(os.path.dirname(np.__file__))
    found = sorted(glob.glob(os.path.join(root, "numpy.libs", "libscipy_openblas*.so*")))
    if not found:
        raise ImportError(f"bptt.fast: NumPy's bundled OpenBLAS not found in {root}/numpy.libs "
                          f"(NumPy {np.__version__}, BLAS: {np.show_config(mode='dicts')['Build Dependencies']['blas']['name']}); "
                          f"use engine='numpy'")
    return found[0]


def _symbol(lib, *names):
    for name in names:
        if hasattr(lib, name):
            return getattr(lib, name)
    raise ImportError(f"bptt.fast: none of {names} in {lib._name}; use engine='numpy'")


_lib = ctypes.CDLL(_library_path())
_i64, _ptr = ctypes.c_int64, ctypes.c_void_p


def _gemm(names, real):
    f = _symbol(_lib, *names)
    # order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc
    f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, _i64, _i64, _i64, real, _ptr, _i64, _ptr, _i64,
                  real, _ptr, _i64]
    f.restype = None
    return f


sgemm = _gemm(("scipy_cblas_sgemm64_", "cblas_sgemm"), ctypes.c_float)
dgemm = _gemm(("scipy_cblas_dgemm64_", "cblas_dgemm"), ctypes.c_double)

_set_local = _symbol(_lib, "openblas_set_num_threads_local")
_set_local.argtypes = [ctypes.c_int]
_set_local.restype = ctypes.c_int


def set_local_threads(n):
    """OpenBLAS threads for calls from this thread; returns the previous value."""
    return _set_local(int(n))


# The same two functions as symbols for compiled code. Registered under fixed names so a function
# that calls them can be cached to disk: the cached machine code refers to the name, which each
# process binds here to its own address (as numba binds its own helper functions).
def _register(name, f):
    llvm.add_symbol(name, ctypes.cast(f, ctypes.c_void_p).value)
    return name


_p = types.intp      # pointers are passed as integer addresses (the same in the C calling convention)
_sig = {np.float32: types.void(types.int32, types.int32, types.int32, types.int64, types.int64, types.int64,
                               types.float32, _p, types.int64, _p, types.int64, types.float32, _p, types.int64),
        np.float64: types.void(types.int32, types.int32, types.int32, types.int64, types.int64, types.int64,
                               types.float64, _p, types.int64, _p, types.int64, types.float64, _p, types.int64)}
_sgemm = types.ExternalFunction(_register("bptt_cblas_sgemm", sgemm), _sig[np.float32])
_dgemm = types.ExternalFunction(_register("bptt_cblas_dgemm", dgemm), _sig[np.float64])


def gemm(A, B, C, beta, trans_b):
    """C = A @ B + beta C (trans_b=False) or A @ B.T + beta C (trans_b=True), from compiled code.
    A (M, K), B (K, N) or (N, K), C (M, N); rows may be strided, each row contiguous."""
    raise NotImplementedError("bptt.fast.blas.gemm is called from compiled code only")


@overload(gemm, jit_options={"cache": True})
def _gemm(A, B, C, beta, trans_b):
    f = _sgemm if A.dtype == types.float32 else _dgemm
    real = A.dtype

    def impl(A, B, C, beta, trans_b):
        M, K = A.shape
        N = C.shape[1]
        size = A.itemsize
        f(np.int32(ROW_MAJOR), np.int32(NO_TRANS), np.int32(TRANS if trans_b else NO_TRANS), M, N, K,
          real(1.0), A.ctypes.data, A.strides[0] // size, B.ctypes.data, B.strides[0] // size,
          real(beta), C.ctypes.data, C.strides[0] // size)
    return impl
