"""Elementwise nonlinearities and their derivatives, the derivative written in terms of the output.

    tanh:     f(a) = tanh(a)            f'(a) = 1 - f(a)^2           (at most 1)
    sigmoid:  f(a) = 1 / (1 + e^-a)     f'(a) = f(a) (1 - f(a))      (at most 1/4)
    relu:     f(a) = max(a, 0)          f'(a) = [f(a) > 0]           (0 or 1; 0 taken at a = 0)

Writing f' through y = f(a) lets backward read the cached outputs instead of keeping a_t.
"""

import numpy as np

NONLINEARITIES = ("tanh", "relu", "sigmoid")


def sigmoid(a):
    # 1/(1+e^-a) = (1 + tanh(a/2)) / 2, with no overflow for large |a|
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def sigmoid_(a):
    """sigmoid(a) in place (a is overwritten): no temporary arrays, for the gate loops."""
    np.multiply(a, 0.5, out=a)
    np.tanh(a, out=a)
    a += 1
    a *= 0.5
    return a


def relu(a):
    return np.maximum(a, 0)


def apply(name, a):
    if name == "tanh":
        return np.tanh(a)
    if name == "relu":
        return relu(a)
    if name == "sigmoid":
        return sigmoid(a)
    raise ValueError(f"nonlinearity: expected one of {NONLINEARITIES}, got {name!r}")


def derivative(name, y):
    """f'(a) given y = f(a)."""
    if name == "tanh":
        return 1 - y * y
    if name == "relu":
        return (y > 0).astype(y.dtype)
    if name == "sigmoid":
        return y * (1 - y)
    raise ValueError(f"nonlinearity: expected one of {NONLINEARITIES}, got {name!r}")
