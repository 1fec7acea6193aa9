"""Skip RNN: an Elman RNN with a second recurrent connection that jumps s steps back in time,
one of the seeds' remedies. Gradient paths through S are s times shorter: a dependency T steps
back is reached through about T/s Jacobian factors instead of T.

Forward, for t = 1..T, with h_{t-1}, ..., h_{t-s} from the state for t <= s:
    (0) h_{t-j} = 0 for the steps before a reset of the row (a new sequence starts at t on that row)
    (1) a_t = W x_t + b + U h_{t-1} + b_U + S h_{t-s}
    (2) h_t = f(a_t)                            f in {tanh, relu, sigmoid}
    (3) h_t = h_{t-1} where m_t = 0             rows past their length keep their state

Backward, with dh_t = dL/dh_t from above, from step t+1 (through U) and from step t+s (through S),
optionally clipped elementwise to [-clip_dh, clip_dh]:
    (3b) on rows with m_t = 0, dh_t passes to h_{t-1} unchanged and is 0 for (2b)
    (2b) da_t = dh_t * f'(a_t)
    (1b) dh_{t-1} += da_t U        dh_{t-s} += da_t S        (nothing across a reset: (0b))
         dW = sum_t da_t^T x_t,  dU = sum_t da_t^T h_{t-1},  dS = sum_t da_t^T h_{t-s},  db = db_U = sum_t da_t

The state is the last s hidden states, newest first: (h_T, h_{T-1}, ..., h_{T-s+1}); its Jacobian
over one step is the block companion matrix [[diag(f') U, 0, ..., diag(f') S], [I, 0, ...], ...].

Shapes: xs (T, B, D) or (T, B) ids; W (H, D); U, S (H, H); b, b_U (H,); each state part (B, H);
mask, reset (T, B, 1) bool or None. The history is kept in one array of T + s positions:
position s - 1 + t holds h_t (t = 0..T), positions 0..s-2 the older initial states.
"""

import numpy as np

from . import activations, common
from .common import init_uniform
from .inputs import project, project_backward

GATE_NAMES = ("h",)  # the gate blocks of W, U, b, b_U, stacked in this order (PyTorch's)
GATES = len(GATE_NAMES)
EXTRA = ("S",)  # parameters beyond W, U, b, b_U, each (H, H)
OPTIONS = ("nonlinearity", "skip")  # the Arch fields that forward takes


def state_names(nonlinearity, skip):
    return tuple(f"h{j}" for j in range(skip))              # h0 = h_{t-1}, h1 = h_{t-2}, ...


def init_params(rng, input_size, hidden_size, dtype):
    p = init_uniform(rng, input_size, hidden_size, GATES, dtype)
    k = 1.0 / np.sqrt(hidden_size)
    return p | {"S": rng.uniform(-k, k, (hidden_size, hidden_size)).astype(dtype)}


def skip_mask(reset, skip):
    """(T, B, 1): whether h_{t-s} belongs to the same sequence as step t (no reset in t-s+1..t)."""
    if reset is None:
        return None
    r = np.concatenate([np.zeros((1,) + reset.shape[1:], int), np.cumsum(reset, axis=0)])   # resets before t
    T = len(reset)
    since = r[np.arange(1, T + 1)] - r[np.maximum(np.arange(1, T + 1) - skip, 0)]
    return since == 0


def history(state0, T):
    """The (T + s, B, H) array of hidden states, the initial ones filled in (oldest first)."""
    s = len(state0)
    hist = np.empty((T + s,) + state0[0].shape, dtype=state0[0].dtype)
    hist[:s] = state0[::-1]                                  # h_{-(s-1)}, ..., h_{-1}, h_0
    return hist


def forward(p, xs, state0, mask=None, reset=None, nonlinearity="tanh", skip=2):
    W, U, S, b, b_U = p["W"], p["U"], p["S"], p["b"], p["b_U"]
    assert len(state0) == skip, "the state holds the last `skip` hidden states"
    ax = project(W, b, xs)                                   # (T, B, H): W x_t + b, all t
    ax += b_U                                                # (1) both biases, once for all t
    U_T, S_T = np.ascontiguousarray(U.T), np.ascontiguousarray(S.T)    # contiguous copies, faster in BLAS
    T, s = len(ax), skip
    hist = history(state0, T)
    keep_skip = skip_mask(reset, s)
    for t in range(T):
        h_prev, h_skip = hist[s - 1 + t], hist[t]            # h_{t-1}, h_{t-s}
        if reset is not None:
            h_prev = np.where(reset[t], 0, h_prev)           # (0)
            h_skip = np.where(keep_skip[t], h_skip, 0)
        a_t = ax[t] + h_prev @ U_T + h_skip @ S_T            # (1)
        h_t = activations.apply(nonlinearity, a_t)           # (2)
        if mask is not None:
            h_t = np.where(mask[t], h_t, h_prev)             # (3)
        hist[s + t] = h_t
    cache = (xs, hist, mask, reset, keep_skip, nonlinearity, s)
    final = tuple(h if gone is None else np.where(gone, 0, h)
                  for h, gone in zip(final_parts(hist, s), stale(reset, s), strict=True))
    return hist[s:], final, cache


def final_parts(hist, s):
    T = len(hist) - s
    return [hist[T + s - 1 - j] for j in range(s)]            # h_T, h_{T-1}, ..., h_{T-s+1}


def stale(reset, s):
    """For each final state part j: the rows where a reset came after it (it belongs to the old sequence)."""
    if reset is None:
        return [None] * s
    T = len(reset)
    return [reset[max(T - j, 0):].any(axis=0) if j > 0 else None for j in range(s)]


def backward(p, dhs, dstate_T, cache, clip_dh=None, dh_trace=None):
    W, U, S = p["W"], p["U"], p["S"]
    xs, hist, mask, reset, keep_skip, nonlinearity, s = cache
    T = len(hist) - s
    dhist = np.zeros_like(hist)                              # dL/dh at every position
    dhist[s:] += dhs
    for j, (d, gone) in enumerate(zip(dstate_T, stale(reset, s), strict=True)):
        dhist[T + s - 1 - j] += d if gone is None else np.where(gone, 0, d)
    das = np.empty_like(hist[s:])
    for t in reversed(range(T)):
        dh_t = common.reaching(dhist[s + t], t, clip_dh, dh_trace)   # dL/dh_t, all paths
        if mask is not None:
            dh_t, dh_held = common.held(mask[t], dh_t)       # (3b)
        da_t = dh_t * activations.derivative(nonlinearity, hist[s + t])    # (2b)
        das[t] = da_t
        d_prev, d_skip = da_t @ U, da_t @ S                  # (1b)
        if mask is not None:
            d_prev += dh_held
        if reset is not None:
            d_prev = np.where(reset[t], 0, d_prev)           # (0b)
            d_skip = np.where(keep_skip[t], d_skip, 0)
        dhist[s - 1 + t] += d_prev
        dhist[t] += d_skip
    h_prevs, h_skips = hist[s - 1:T + s - 1], hist[:T]       # (T, B, H): h_{t-1}, h_{t-s}
    if reset is not None:
        h_prevs = np.where(reset, 0, h_prevs)
        h_skips = np.where(keep_skip, h_skips, 0)
    H = hist.shape[2]
    da2 = das.reshape(-1, H)
    db = da2.sum(axis=0)
    dW, dxs = project_backward(W, xs, das)
    grads = {"W": dW, "U": da2.T @ h_prevs.reshape(-1, H), "S": da2.T @ h_skips.reshape(-1, H), "b": db,
             "b_U": db.copy()}
    return dxs, tuple(dhist[s - 1 - j] for j in range(s)), grads


def step_jacobian(p, cache, t):
    """d(h_t, ..., h_{t-s+1}) / d(h_{t-1}, ..., h_{t-s}): (B, sH, sH), the block companion matrix."""
    xs, hist, mask, reset, keep_skip, nonlinearity, s = cache
    B, H = hist.shape[1:]
    fprime = activations.derivative(nonlinearity, hist[s + t])[:, :, None]     # (B, H, 1)
    J = np.zeros((B, s * H, s * H))
    J[:, :H, :H] = fprime * p["U"]
    skip_block = fprime * p["S"]
    if reset is not None:
        skip_block = skip_block * keep_skip[t][:, :, None]
    J[:, :H, (s - 1) * H:] += skip_block
    if mask is not None:                                     # held rows: h_t = h_{t-1}
        held = ~mask[t][:, 0]
        J[held, :H, :] = 0
        J[held, :H, :H] = np.eye(H)
    for j in range(1, s):
        J[:, j * H:(j + 1) * H, (j - 1) * H:j * H] = np.eye(H)
    if reset is not None:                                    # a reset discards the whole history
        J[reset[t][:, 0]] = 0
    return J
