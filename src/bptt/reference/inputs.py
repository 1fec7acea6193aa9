"""Input projections shared by every cell, and the row gather behind one-hot and embedding inputs.

A layer's input is either token ids or float vectors:

    ids     xs (T, B) int    x_t is the one-hot vector e_{xs[t]}, never materialised:
                             W x_t is column xs[t] of W, i.e. a row gather from W^T.
    floats  xs (T, B, D)     W x_t is an ordinary matmul.

Either way the projection of all T steps is computed before the time loop, and its weight
gradient after the backward loop, each as one operation over all T*B rows.
"""

from typing import NamedTuple

import numpy as np


def is_ids(xs):
    return np.issubdtype(xs.dtype, np.integer)


def gather_rows(M, ids):
    """M[ids]: (N, G) gathered at ids (T, B) -> (T, B, G)."""
    return M[ids]


def scatter_rows(num_rows, ids, d):
    """Gradient of gather_rows: dM[i] = sum of d[t, b] over every (t, b) with ids[t, b] == i."""
    G = d.shape[-1]
    dM = np.zeros((num_rows, G), dtype=d.dtype)
    np.add.at(dM, ids.reshape(-1), d.reshape(-1, G))
    return dM


def project(W, b, xs, matmul=np.matmul):
    """W x_t + b for every t at once. W (G, D), b (G,) -> (T, B, G). matmul: the product to use
    (the fast engine passes its own)."""
    if is_ids(xs):
        return gather_rows(W.T, xs) + b
    T, B, D = xs.shape
    P = matmul(xs.reshape(T * B, D), W.T)
    P += b                                                  # in place: P keeps the product's memory
    return P.reshape(T, B, -1)


def project_backward(W, xs, da, matmul=np.matmul):
    """Given da = dL/d(W x_t + b) for every t, shape (T, B, G): returns (dW (G, D), dxs).

    dW = sum_t da_t^T x_t in one matmul (a scatter-add for ids); dxs = da_t W, or None for ids.
    """
    G = da.shape[-1]
    if is_ids(xs):
        return scatter_rows(W.shape[1], xs, da).T, None
    T, B, D = xs.shape
    da2 = da.reshape(T * B, G)
    return matmul(da2.T, xs.reshape(T * B, D)), matmul(da2, W).reshape(T, B, D)


class Embedded(NamedTuple):
    """Inputs x_t = E[ids_t] left unmaterialised, for the fast engine: the first layer's input
    projection W x_t + b is then row ids_t of the table E W^T + b (V, G), one small GEMM per
    window instead of one over all T*B tokens (bptt.fast.window). E (V, D), ids (T, B)."""

    E: np.ndarray
    ids: np.ndarray
