"""The adaptive softmax (reference/adaptive.py, PyTorch's AdaptiveLogSoftmaxWithLoss) on the fast
engine's kernels: the same equations (A1)-(A7) and (A1b)-(A5b), the same numbers to round-off.

The head and each tail are readouts of their own, so each is one call of the fused readout and
cross-entropy (readout.cross_entropy: z, the softmax, L, dz, dV and dh per block of rows, or per
chunk of classes for a large head or tail, on the engine's threads) instead of NumPy's z, softmax,
dz and three BLAS products over the whole array:

    head       L_h, dV, dc, dh = cross_entropy(h, V, c, g, w)        (A1), (A2), (A6), (A7), (A1b), (A2b)
    cluster i  h_S = h[S_i]                                          the rows whose target is in cluster i
               u_i = h_S P_i^T                                       (A3)  matmul.matmul
               L_i, dV_i, _, du_i = cross_entropy(u_i, V_i, 0, y - c_i, w)    (A4), (A5), (A4b), (A5b)
               dP_i = du_i^T h_S,   dh[S_i] += du_i P_i              (A3b) matmul.matmul

with g_n the head's target (y_n in the shortlist, the cluster's token c_1 + i - 1 otherwise) and a
zero bias for the tails (and for a head without head_bias; its dc is dropped). Nothing of the size
of the logits outlives its call. Forward only (log_likelihood) scores each cluster's rows with
readout.logsumexp_by_classes, which keeps a chunk of logits at a time; log_probs writes the (N, K)
distribution the caller asked for.

Measured on a 2-core AMD EPYC (AVX-512), float32, K = 33,278, cutoffs [2000, 10000], B = 32, T = 35,
a 2-layer LSTM, on a machine shared with other jobs: the readout's loss and gradients take 23 ms
instead of reference.adaptive's 63 ms at H = 256 (126 vs 205 ms at H = 650); an epoch
(benchmarks/adaptive.py) runs 4.3-5x faster than bptt's full softmax.
"""

import numpy as np

from ..reference import adaptive
from ..reference.losses import log_softmax
from .matmul import matmul
from .readout import cross_entropy, logsumexp_by_classes


def tail_loss(P, V, h_S, t, w_S):
    """(A3)-(A5), (A3b)-(A5b) for one cluster's rows h_S (N_i, H), targets t in [0, s_i):
    (L_i, dP_i, dV_i, dh_S)."""
    u = matmul(h_S, P.T)                                     # (A3) (N_i, h_i)
    L, dV, _, du = cross_entropy(u, V, np.zeros(V.shape[0], u.dtype), t, w_S)   # (A4), (A5), (A4b), (A5b)
    return L, matmul(du.T, h_S), dV, matmul(du, P)          # (A3b) dP_i = du^T h_S, dh_S = du P_i


def loss_and_grads(p, h, y, w):
    """As reference.adaptive.loss_and_grads: (L, grads {name: array like p[name]}, dh (N, H))."""
    lay = adaptive.layout(p)
    h, y, w = adaptive.rows(lay, p["head.V"].dtype, h, y, w)
    if h.shape[0] == 0:
        return adaptive.loss_and_grads(p, h, y, w)
    h, y = np.ascontiguousarray(h), np.ascontiguousarray(y, dtype=np.int64)
    c_1 = lay.cutoffs[0]
    g = y.copy()
    grads, loss, scatter = {}, 0.0, []
    for i, lo, hi in lay.clusters():
        P, V = p[f"tail{i}.P"], p[f"tail{i}.V"]
        S = np.flatnonzero((y >= lo) & (y < hi))             # S_i
        if S.size == 0:
            grads[f"tail{i}.P"], grads[f"tail{i}.V"] = np.zeros_like(P), np.zeros_like(V)
            continue
        g[S] = c_1 + i - 1
        L_i, grads[f"tail{i}.P"], grads[f"tail{i}.V"], dh_S = tail_loss(P, V, h[S], y[S] - lo, w[S])
        loss += L_i
        scatter.append((S, dh_S))
    c = p["head.c"] if lay.head_bias else np.zeros(p["head.V"].shape[0], h.dtype)
    L_head, grads["head.V"], dc, dh = cross_entropy(h, p["head.V"], c, g, w)    # (A1), (A2), (A1b), (A2b)
    if lay.head_bias:
        grads["head.c"] = dc
    for S, dh_S in scatter:
        dh[S] += dh_S                                        # (A3b) dh[S_i] += du_i P_i
    return loss + L_head, {name: grads[name] for name in p}, dh


def head_log_softmax(p, h):
    """(A1), (A2): a = log_softmax(V h + c) (N, c_1 + n) in float64, the product in h's dtype."""
    z = matmul(h, p["head.V"].T)
    if "head.c" in p:
        z += p["head.c"]
    return log_softmax(z.astype(np.float64))


def log_probs(p, h):
    """As reference.adaptive.log_probs: log p (N, K) in p's dtype."""
    lay = adaptive.layout(p)
    h, _, _ = adaptive.rows(lay, p["head.V"].dtype, h)
    if h.shape[0] == 0:
        return adaptive.log_probs(p, h)
    c_1 = lay.cutoffs[0]
    a = head_log_softmax(p, np.ascontiguousarray(h))        # (A1), (A2)
    out = np.empty((h.shape[0], lay.K), h.dtype)
    out[:, :c_1] = a[:, :c_1]                                # (A6) the shortlist
    for i, lo, hi in lay.clusters():
        z = matmul(matmul(h, p[f"tail{i}.P"].T), p[f"tail{i}.V"].T)     # (A3), (A4) (N, s_i)
        out[:, lo:hi] = a[:, c_1 + i - 1, None] + log_softmax(z)        # (A5), (A6)
    return out


def log_likelihood(p, h, y):
    """As reference.adaptive.log_likelihood: (log p(y_n) (N,) float64, the argmax class (N,)), one
    cluster at a time on the rows that need it (those whose target is in it, and those whose head
    prefers a cluster token), each cluster's logits a chunk at a time (readout.logsumexp_by_classes).
    Computed in p's dtype, the log-sum-exps combined in float64."""
    lay = adaptive.layout(p)
    h, y, _ = adaptive.rows(lay, p["head.V"].dtype, h, y)
    if h.shape[0] == 0:
        return adaptive.log_likelihood(p, h, y)
    h, y = np.ascontiguousarray(h), np.ascontiguousarray(y, dtype=np.int64)
    c_1, N = lay.cutoffs[0], h.shape[0]
    a = head_log_softmax(p, h)                               # (A1), (A2)
    logp = np.empty(N)
    shortlist = y < c_1
    logp[shortlist] = a[shortlist, y[shortlist]]             # (A6) the shortlist
    best_class = a[:, :c_1].argmax(axis=1)
    best = a[np.arange(N), best_class]
    open_rows = a.argmax(axis=1) >= c_1                      # the head prefers a cluster
    for i, lo, hi in lay.clusters():
        R = np.flatnonzero(open_rows | ((y >= lo) & (y < hi)))
        if R.size == 0:
            continue
        V = p[f"tail{i}.V"]
        u = matmul(h[R], p[f"tail{i}.P"].T)                  # (A3)
        t = np.clip(y[R] - lo, 0, hi - lo - 1)               # rows not in the cluster read class 0, unused
        _, m, s, zt, k, _ = logsumexp_by_classes(u, V, np.zeros(V.shape[0], u.dtype), t, False)   # (A4), (A5)
        base = a[R, c_1 + i - 1]
        mine = (y[R] >= lo) & (y[R] < hi)
        logp[R[mine]] = (base + zt - m - np.log(s))[mine]    # (A6) log p(y_n) for the cluster's targets
        top = base - np.log(s)                               # (A6) at the cluster's argmax k: z_k = m
        better = top > best[R]                               # strictly: ties keep the lower class
        best[R[better]], best_class[R[better]] = top[better], lo + k[better]
    return logp, best_class
