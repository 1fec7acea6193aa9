"""Losses on the readout z = V h + c, each returning (loss, dz).

Rows are the positions that carry a target (N = T*B for targets at every step, B for the last
step only); w (N,) weights them: 1/n on the n counted rows, 0 on padding.

    cross_entropy:  p = softmax(z),  L = -sum_n w_n log p_n[y_n]
                    log p = z - max z - log sum exp(z - max z)      (stable log-sum-exp)
                    dz_n = w_n (p_n - e_{y_n})
    mse:            L = sum_n w_n (1/K) sum_k (z_nk - y_nk)^2        (mean over elements)
                    dz_n = w_n (2/K) (z_n - y_n)

Shapes: z (N, K); y (N,) int for cross_entropy, (N, K) float for mse; w (N,).
"""

import numpy as np

LOSSES = ("cross_entropy", "mse")


def log_softmax(z):
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy(z, y, w):
    logp = log_softmax(z)
    rows = np.arange(len(y))
    loss = -(w * logp[rows, y]).sum()
    dz = np.exp(logp)
    dz[rows, y] -= 1
    dz *= w[:, None]
    return float(loss), dz


def mse(z, y, w):
    K = z.shape[1]
    err = z - y
    loss = (w * (err * err).sum(axis=1)).sum() / K
    dz = (2 / K) * w[:, None] * err
    return float(loss), dz


def apply(name, z, y, w):
    if name == "cross_entropy":
        return cross_entropy(z, y, w)
    if name == "mse":
        return mse(z, y, w)
    raise ValueError(f"loss: expected one of {LOSSES}, got {name!r}")
