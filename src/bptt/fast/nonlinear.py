"""Scalar nonlinearities for the compiled loops, inlined into them.

Exact: `math.tanh`, and sigmoid(a) = (1 + tanh(a/2)) / 2 as in bptt.activations. The float64
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
tests/test_fast.py holds both bounds.
"""

import math

import numpy as np
from numba import njit

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
