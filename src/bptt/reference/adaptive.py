"""The adaptive softmax (Grave et al. 2017, "Efficient softmax approximation for GPUs"), as PyTorch's
nn.AdaptiveLogSoftmaxWithLoss(in_features=H, n_classes=K, cutoffs, div_value, head_bias): an exact
distribution over K classes, cheaper to train than a full readout when the classes are sorted by
frequency (class 0 the most frequent).

The cutoffs 0 < c_1 < ... < c_n < K (and c_{n+1} = K) split the classes into the shortlist [0, c_1)
and n clusters: cluster i = [c_i, c_{i+1}), of s_i = c_{i+1} - c_i classes, i = 1..n. The head
scores the shortlist and one token per cluster (c_1 + n logits); cluster i's tail projects h down
to h_i = floor(H / div_value^i) units and scores its own classes from there.

Forward, for the rows h (N, H) (targets y (N,), weights w (N,) of each row in the mean):
    (A1) z   = V h + c                     head logits (N, c_1 + n); c only with head_bias
    (A2) a   = log_softmax(z)
    (A3) u_i = P_i h                       cluster i's projection (N_i, h_i), on the rows S_i whose
                                           target is in cluster i (every row for log_probs)
    (A4) z_i = V_i u_i                     cluster i's logits (N_i, s_i): a readout of its own on u_i
    (A5) q_i = log_softmax(z_i)
    (A6) log p(k) = a[k]                               k < c_1             the shortlist
         log p(k) = a[c_1 + i - 1] + q_i[k - c_i]      c_i <= k < c_{i+1}  cluster i
    (A7) L = - sum_n w_n log p(y_n)

Only the clusters some target falls in are computed (PyTorch's forward); the others' gradients are 0.
The distribution is exact: for each row the head's softmax sums to 1 and so does each cluster's, so
sum_k p(k) = 1 (log_probs builds all K; log_likelihood never holds more than one cluster's columns).

Backward, with g_n the head's index of y_n (y_n itself in the shortlist, c_1 + i - 1 in cluster i):
    (A2b) dz_n   = w_n (softmax(z_n) - e_{g_n})             from (A7), (A6): -log p(y_n) holds a[g_n]
    (A1b) dV     = dz^T h      dc = sum_n dz_n      dh = dz V
    (A5b) dz_i,n = w_n (softmax(z_i,n) - e_{y_n - c_i})     n in S_i, from (A7), (A6): q_i[y_n - c_i]
    (A4b) dV_i   = dz_i^T u_i      du_i = dz_i V_i
    (A3b) dP_i   = du_i^T h_{S_i}      dh_{S_i} += du_i P_i

Parameters, in PyTorch's Linear layout (out, in), so that parity tests copy arrays without transposing:
    head.V    (c_1 + n, H)     PyTorch's head.weight
    head.c    (c_1 + n,)       head.bias (head_bias=True only)
    tail{i}.P (h_i, H)         tail.{i-1}.0.weight, cluster i's projection (i = 1..n)
    tail{i}.V (s_i, h_i)       tail.{i-1}.1.weight, cluster i's output layer
PyTorch gives a cluster with H // div_value^i = 0 a projection of no units (its classes then get a
uniform distribution whatever h is); here that layout is refused (param_shapes says how to fix it).
"""

import numbers
import re
from typing import NamedTuple

import numpy as np

from .. import checks
from .losses import cross_entropy, log_softmax

FIX_CUTOFFS = "(a list of ints, strictly increasing, each in (0, K): [c_1, ..., c_n])"


class Layout(NamedTuple):
    """The sizes of an adaptive softmax, read from its parameters (layout) or its arguments."""

    H: int                      # input features
    K: int                      # classes
    cutoffs: tuple              # (c_1, ..., c_n)
    hidden: tuple               # (h_1, ..., h_n): each tail's projection size
    head_bias: bool

    def clusters(self):
        """(i, c_i, c_{i+1}) for the clusters i = 1..n."""
        bounds = (*self.cutoffs, self.K)
        return [(i, bounds[i - 1], bounds[i]) for i in range(1, len(self.cutoffs) + 1)]


def check_layout(H, K, cutoffs, div_value, head_bias):
    """The arguments of param_shapes checked, as a Layout; errors say what to change."""
    H = checks.positive_int("H", H)
    K = checks.positive_int("K", K, minimum=2)
    if isinstance(cutoffs, str | bytes) or not hasattr(cutoffs, "__len__"):
        raise TypeError(f"cutoffs: expected {FIX_CUTOFFS}, got {cutoffs!r} ({type(cutoffs).__name__})")
    cutoffs = list(cutoffs)
    if not cutoffs:
        raise ValueError(f"cutoffs: expected {FIX_CUTOFFS}, got an empty list; give at least one cutoff")
    bad = [c for c in cutoffs if isinstance(c, bool | np.bool_) or not isinstance(c, numbers.Integral)]
    if bad:
        raise TypeError(f"cutoffs: expected {FIX_CUTOFFS}, got {cutoffs!r} ({bad[0]!r} is not an int)")
    cutoffs = tuple(int(c) for c in cutoffs)
    if any(b <= a for a, b in zip(cutoffs, cutoffs[1:])):
        raise ValueError(f"cutoffs: expected {FIX_CUTOFFS}, got {list(cutoffs)}: not strictly increasing")
    if cutoffs[0] <= 0 or cutoffs[-1] >= K:
        raise ValueError(f"cutoffs: expected {FIX_CUTOFFS} with K = {K}, got {list(cutoffs)}: "
                         f"each cutoff must be in [1, {K - 1}]")
    div_value = checks.real("div_value", div_value, "a finite float > 0", lambda x: 0 < x < np.inf)
    head_bias = checks.flag("head_bias", head_bias)
    hidden = tuple(int(H // (div_value ** i)) for i in range(1, len(cutoffs) + 1))   # PyTorch's expression
    if min(hidden) < 1:
        i = hidden.index(min(hidden)) + 1
        raise ValueError(f"div_value: cluster {i}'s projection would have H // div_value**{i} = {H} // {div_value:g}"
                         f"**{i} = 0 units; use a smaller div_value, fewer cutoffs or a larger H")
    return Layout(H, K, cutoffs, hidden, head_bias)


def names(n, head_bias):
    """The parameter names of an adaptive softmax with n clusters, in order, each with PyTorch's."""
    pairs = [("head.V", "head.weight")] + [("head.c", "head.bias")] * head_bias
    for i in range(1, n + 1):
        pairs += [(f"tail{i}.P", f"tail.{i - 1}.0.weight"), (f"tail{i}.V", f"tail.{i - 1}.1.weight")]
    return dict(pairs)


def param_shapes(H, K, cutoffs, div_value=4.0, head_bias=False):
    """{name: shape} of the parameters, in order (the module docstring's table)."""
    lay = check_layout(H, K, cutoffs, div_value, head_bias)
    return shapes_of(lay)


def shapes_of(lay):
    n = len(lay.cutoffs)
    shapes = {"head.V": (lay.cutoffs[0] + n, lay.H)}
    if lay.head_bias:
        shapes["head.c"] = (lay.cutoffs[0] + n,)
    for (i, lo, hi), h_i in zip(lay.clusters(), lay.hidden):
        shapes[f"tail{i}.P"] = (h_i, lay.H)
        shapes[f"tail{i}.V"] = (hi - lo, h_i)
    return shapes


def init_params(rng, H, K, cutoffs, div_value=4.0, head_bias=False, dtype=np.float64):
    """PyTorch's nn.Linear initialisation: every weight and bias uniform in (-1/sqrt(fan_in), 1/sqrt(fan_in)),
    fan_in the layer's input size (H for the head and the projections, h_i for tail i's output layer)."""
    dtype = checks.float_dtype(dtype)
    shapes = param_shapes(H, K, cutoffs, div_value, head_bias)
    fan_in = {name: shapes["head.V"][1] if name == "head.c" else shape[1] for name, shape in shapes.items()}
    return {name: rng.uniform(-1 / np.sqrt(fan_in[name]), 1 / np.sqrt(fan_in[name]), shape).astype(dtype)
            for name, shape in shapes.items()}


def same_keys(what, got, expected):
    """A ValueError naming the missing or unexpected keys of the dict `what`, unless they are expected's."""
    if set(got) == set(expected):
        return
    keys = ", ".join(expected)
    missing = [repr(k) for k in expected if k not in got]
    if missing:
        raise ValueError(f"{what}: missing {', '.join(missing)} (expected keys: {keys})")
    unexpected = [repr(k) for k in got if k not in expected]
    raise ValueError(f"{what}: unexpected {', '.join(unexpected)} (expected keys: {keys})")


def count(keys, pattern):
    """How many clusters keys name: the largest j for which pattern.format(j) matches one of them."""
    regex = re.compile(pattern.replace(".", r"\.").replace("{}", r"(\d+)"))
    found = [int(m.group(1)) for k in keys if isinstance(k, str) and (m := regex.fullmatch(k))]
    return max(found, default=0)


def layout(p):
    """The Layout of the parameters p, read from their shapes, and p checked: exactly the keys of
    names(n, head_bias), NumPy arrays of consistent shapes (param_shapes), one float dtype."""
    if not isinstance(p, dict):
        raise TypeError(f"params: expected a dict of arrays keyed head.V, [head.c], tail1.P, tail1.V, ...; "
                        f"got {type(p).__name__}")
    n = max(count(p, "tail{}.P"), count(p, "tail{}.V"))
    expected = names(n, "head.c" in p)
    same_keys("params", p, expected)
    if n == 0:
        raise ValueError("params: expected at least one cluster (tail1.P, tail1.V); got the head alone")
    for name in expected:
        ndim = 1 if name == "head.c" else 2
        if not isinstance(p[name], np.ndarray) or p[name].ndim != ndim:
            raise TypeError(f"params[{name!r}]: expected a {ndim}-D NumPy array, got {type(p[name]).__name__}"
                            + (f" of shape {p[name].shape}" if isinstance(p[name], np.ndarray) else ""))
    H, c_1 = p["head.V"].shape[1], p["head.V"].shape[0] - n
    sizes = [p[f"tail{i}.V"].shape[0] for i in range(1, n + 1)]
    cutoffs = tuple(int(c) for c in np.cumsum([c_1] + sizes[:-1]))
    hidden = tuple(p[f"tail{i}.P"].shape[0] for i in range(1, n + 1))
    if c_1 < 1 or min(sizes) < 1 or min(hidden) < 1:
        shape_list = ", ".join(f"{k} {a.shape}" for k, a in p.items())
        raise ValueError(f"params: expected head.V with more rows than clusters ({n}) and non-empty tails; "
                         f"got {shape_list}")
    lay = Layout(H, c_1 + sum(sizes), cutoffs, hidden, "head.c" in p)
    dtype = p["head.V"].dtype
    if dtype not in checks.FLOATS:
        raise TypeError(f"params['head.V']: expected float32 or float64, got {dtype}; cast with .astype(np.float64)")
    checks.params(p, shapes_of(lay), dtype)
    return lay


def to_torch(p):
    """p as PyTorch's state_dict names ({"head.weight": V, "tail.0.0.weight": P_1, ...}), the same arrays."""
    lay = layout(p)
    return {torch: p[ours] for ours, torch in names(len(lay.cutoffs), lay.head_bias).items()}


def from_torch(state):
    """A state_dict of nn.AdaptiveLogSoftmaxWithLoss (arrays, or CPU tensors: NumPy reads them) as p, copied."""
    if not hasattr(state, "keys"):
        raise TypeError(f"state_dict: expected a dict keyed head.weight, [head.bias], tail.0.0.weight, ...; "
                        f"got {type(state).__name__}")
    n = max(count(state, "tail.{}.0.weight"), count(state, "tail.{}.1.weight")) + 1
    pairs = names(n, "head.bias" in state)
    same_keys("state_dict", state, list(pairs.values()))
    p = {ours: np.asarray(state[torch]).copy() for ours, torch in pairs.items()}
    layout(p)
    return p


def rows(lay, dtype, h, y=None, w=None):
    """h (N, H) floats in dtype, y (N,) class ids in [0, K), w (N,) floats in dtype, checked."""
    h = checks.array("h", h)
    if h.dtype.kind != "f" or h.ndim != 2 or h.shape[1] != lay.H:
        raise ValueError(f"h: expected floats of shape (N, H) = (N, {lay.H}), got {checks.describe(h)}")
    N = h.shape[0]
    h = h.astype(dtype, copy=False)
    if y is not None:
        y = checks.array("y", y)
        if y.dtype.kind not in "iu" or y.shape != (N,):
            raise ValueError(f"y: expected int class ids of shape (N,) = ({N},), got {checks.describe(y)}")
        if N and (y.min() < 0 or y.max() >= lay.K):
            raise ValueError(f"y: expected class ids in [0, {lay.K}) (K), got min {y.min()} and max {y.max()}")
    if w is not None:
        w = checks.array("w", w)
        if w.dtype.kind != "f" or w.shape != (N,):
            raise ValueError(f"w: expected float weights of shape (N,) = ({N},), got {checks.describe(w)}")
        w = w.astype(dtype, copy=False)
    return h, y, w


def head(p, h):
    """(A1) z = V h + c: (N, c_1 + n)."""
    z = h @ p["head.V"].T
    return z + p["head.c"] if "head.c" in p else z


def loss_and_grads(p, h, y, w):
    """(A1)-(A7) and back: (L, grads {name: array like p[name]}, dh (N, H)), with L = -sum_n w_n log p(y_n)
    (w = 1/N: PyTorch's mean). h (N, H), y (N,) ids in [0, K), w (N,)."""
    lay = layout(p)
    h, y, w = rows(lay, p["head.V"].dtype, h, y, w)
    c_1 = lay.cutoffs[0]
    g = y.copy()                                            # the head's target: y, or its cluster's token
    dh = np.zeros_like(h)
    grads, loss = {}, 0.0
    for i, lo, hi in lay.clusters():
        P_i, V_i = p[f"tail{i}.P"], p[f"tail{i}.V"]
        S = np.flatnonzero((y >= lo) & (y < hi))            # S_i: rows whose target is in cluster i
        if S.size == 0:
            grads[f"tail{i}.P"], grads[f"tail{i}.V"] = np.zeros_like(P_i), np.zeros_like(V_i)
            continue
        g[S] = c_1 + i - 1
        h_S = h[S]                                          # (N_i, H)
        u_i = h_S @ P_i.T                                   # (A3) (N_i, h_i)
        z_i = u_i @ V_i.T                                   # (A4) (N_i, s_i)
        L_i, dz_i = cross_entropy(z_i, y[S] - lo, w[S])     # (A5)-(A7) and (A5b): dz_i = w (softmax(z_i) - e)
        loss += L_i
        grads[f"tail{i}.V"] = dz_i.T @ u_i                  # (A4b)
        du_i = dz_i @ V_i                                   # (A4b) (N_i, h_i)
        grads[f"tail{i}.P"] = du_i.T @ h_S                  # (A3b)
        dh[S] += du_i @ P_i                                 # (A3b)
    L_head, dz = cross_entropy(head(p, h), g, w)            # (A1), (A2), (A6), (A7) and (A2b)
    loss += L_head
    grads["head.V"] = dz.T @ h                              # (A1b)
    if lay.head_bias:
        grads["head.c"] = dz.sum(axis=0)                    # (A1b)
    dh += dz @ p["head.V"]                                  # (A1b)
    return loss, {name: grads[name] for name in p}, dh


def log_probs(p, h):
    """(A6) for every class: log p (N, K) in p's dtype, PyTorch's log_prob; exp sums to 1 on each row."""
    lay = layout(p)
    h, _, _ = rows(lay, p["head.V"].dtype, h)
    c_1 = lay.cutoffs[0]
    a = log_softmax(head(p, h))                             # (A1), (A2) (N, c_1 + n)
    out = np.empty((h.shape[0], lay.K), a.dtype)
    out[:, :c_1] = a[:, :c_1]                               # (A6) the shortlist
    for i, lo, hi in lay.clusters():
        q = log_softmax(h @ p[f"tail{i}.P"].T @ p[f"tail{i}.V"].T)   # (A3)-(A5) (N, s_i)
        out[:, lo:hi] = a[:, c_1 + i - 1, None] + q         # (A6) cluster i
    return out


def log_likelihood(p, h, y):
    """(log p(y_n) (N,) float64, the argmax class of the full distribution (N,)), computed in float64
    one cluster at a time, on the rows that need it: those whose target is in the cluster, and those
    whose head prefers a cluster token (a row whose head argmax is a shortlist class has that class as
    its argmax, since a[k] >= a[j] >= a[j] + q for every cluster token j; ties go to the lower class,
    as np.argmax of log_probs). Equal to log_probs gathered, without its (N, K) array."""
    lay = layout(p)
    h, y, _ = rows(lay, np.float64, h, y)
    p = {name: a.astype(np.float64, copy=False) for name, a in p.items()}
    c_1 = lay.cutoffs[0]
    a = log_softmax(head(p, h))                             # (A1), (A2)
    shortlist = y < c_1
    logp = np.empty(h.shape[0])
    logp[shortlist] = a[shortlist, y[shortlist]]            # (A6) the shortlist
    best_class = a[:, :c_1].argmax(axis=1)
    best = a[np.arange(h.shape[0]), best_class]
    open_rows = a.argmax(axis=1) >= c_1                     # the head prefers a cluster
    for i, lo, hi in lay.clusters():
        R = np.flatnonzero(open_rows | ((y >= lo) & (y < hi)))
        if R.size == 0:
            continue
        q = log_softmax(h[R] @ p[f"tail{i}.P"].T @ p[f"tail{i}.V"].T)   # (A3)-(A5) (N_R, s_i)
        s = a[R, c_1 + i - 1, None] + q                     # (A6) log p of cluster i's classes
        mine = (y[R] >= lo) & (y[R] < hi)
        logp[R[mine]] = s[mine, y[R[mine]] - lo]
        k = s.argmax(axis=1)
        better = s[np.arange(len(R)), k] > best[R]          # strictly: ties keep the lower class
        best[R[better]], best_class[R[better]] = s[better, k[better]], lo + k[better]
    return logp, best_class
