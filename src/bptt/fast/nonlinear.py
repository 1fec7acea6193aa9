"""Scalar nonlinearities for the compiled loops, inlined into them.

Exact: `math.tanh`, and sigmoid(a) = (1 + tanh(a/2)) / 2 as in bptt.reference.activations. The float64
engine uses only these, so it agrees with the NumPy reference to round-off.

Approximate (float32 only): a rational tanh. This llvmlite has no vector math library, so
`math.tanh` and `math.exp` stay scalar calls (~10 ns each) and keep the gate loops from being
vectorised; a ratio of two polynomials is plain arithmetic, which LLVM turns into AVX-512.

    tanh(x) ≈ x P(v) / Q(v),  v = (x / X)^2,  x clamped to [-X, X],  X = 7.9053111
    P of degree 6 and Q of degree 3, fitted in float64 (linearised least squares on the relative
    error, then Lawson reweighting towards minimax) by benchmarks/fit_tanh.py.

Measured on every float32 in [-20, 20] against float64 tanh: max relative error 3.7e-7 and max
absolute error 3.7e-7 (about 6 units in the last place near |tanh| = 1; np.tanh in float32
has 6e-8). The sigmoid (1 + tanh(a/2)) / 2 then has absolute error below 2e-7.
tests/fast/test_fast.py holds both bounds.

exp (float32 only, for the softmax of bptt.fast.readout): the same reason, the usual reduction

    exp(x) = 2^n e^r,   n = round(x log2 e),   r = x - n ln 2   (ln 2 in two parts, Cody and Waite)
    e^r ≈ 1 + r + r^2/2! + ... + r^7/7!   on |r| <= ln 2 / 2 (truncation below 6e-9)

with 2^n written straight into a float's exponent bits, and x clamped to [-87, 88] (exp(-87) is
1.6e-38, the smallest normal float32 is 1.2e-38, so below -87 the absolute error is under 1.7e-38).
Measured against float64 exp on 20 million points of [-87, 88]: max relative error 7.9e-8, within
one rounding (tests/fast/test_fast.py holds 1.5e-7). The reduction is compiled without
reassociation, as a function of its own, which LLVM inlines and vectorises with its caller.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# Constants are float32 so that float32 arithmetic stays float32 (numba widens float32 with a
# Python float or int to float64); 0, 0.5 and 1 are exact in both, so float64 code is unchanged by them.
ZERO, HALF, ONE = np.float32(0.0), np.float32(0.5), np.float32(1.0)
X = np.float32(7.90531110763549805)
INV_X2 = np.float32(1.0 / (7.90531110763549805 ** 2))
P0, P1, P2, P3, P4, P5, P6 = (np.float32(c) for c in (
    9.99999998e-01, 8.20416808e+00, 1.23157061e+01, 2.85247842e+00, -3.43415996e-01, 6.17385128e-02,
    -7.09247926e-03))
Q0, Q1, Q2, Q3 = (np.float32(c) for c in (1.0, 2.903548164e+01, 9.643066667e+01, 6.392211682e+01))

FLAGS = {"inline": "always", "error_model": "numpy", "fastmath": {"contract", "arcp", "nsz", "reassoc"}}


@njit(**FLAGS)
def tanh_rational(x):
    x = min(max(x, -X), X)
    v = x * x * INV_X2
    p = P0 + v * (P1 + v * (P2 + v * (P3 + v * (P4 + v * (P5 + v * P6)))))
    q = Q0 + v * (Q1 + v * (Q2 + v * Q3))
    return x * p / q


@njit(**FLAGS)
def tanh(x, approx):
    """tanh(x), rational when approx (float32 only)."""
    return tanh_rational(x) if approx else math.tanh(x)


@njit(**FLAGS)
def sigmoid(x, approx):
    """1 / (1 + e^-x) = (1 + tanh(x/2)) / 2."""
    return HALF + HALF * tanh(HALF * x, approx)


LOG2E = np.float32(1.4426950408889634)
LN2_HI, LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)     # ln 2 = LN2_HI + LN2_LO
EXP_LO, EXP_HI = np.float32(-87.0), np.float32(88.0)
E3, E4, E5, E6, E7 = (np.float32(1.0 / math.factorial(k)) for k in range(3, 8))


@intrinsic
def _pow2(typingctx, n):
    """2^n as a float32 for an int32 n in [-126, 127]: (n + 127) as the exponent bits."""
    if n != types.int32:
        return None

    def codegen(context, builder, sig, args):
        bits = builder.shl(builder.add(args[0], ir.Constant(ir.IntType(32), 127)), ir.Constant(ir.IntType(32), 23))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(types.int32), codegen


@njit(error_model="numpy", fastmath={"contract"})
def exp_poly(x):
    """e^x for a float32 x, vectorisable (module docstring)."""
    x = min(max(x, EXP_LO), EXP_HI)
    n = np.floor(x * LOG2E + HALF)
    r = (x - n * LN2_HI) - n * LN2_LO
    p = ONE + r * (ONE + r * (HALF + r * (E3 + r * (E4 + r * (E5 + r * (E6 + r * E7))))))
    return p * _pow2(np.int32(n))


@njit(**FLAGS)
def exp(x, approx):
    """e^x, by the polynomial when approx (float32 only)."""
    return exp_poly(x) if approx else math.exp(x)
