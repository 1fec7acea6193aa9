"""LSTM in PyTorch's formulation (nn.LSTM): gates stacked i, f, g, o along the first axis of
W, U, b, b_U, no peepholes, no projection.

With a_t = W x_t + b + U h_{t-1} + b_U split into its i, f, g, o blocks:

    (0) (h_{t-1}, c_{t-1}) = 0 where r_t = 1 (reset: a new sequence starts at t on that row); then
    (1) i_t = σ(a_i)    f_t = σ(a_f)    g_t = tanh(a_g)    o_t = σ(a_o)
    (2) c_t = f_t * c_{t-1} + i_t * g_t
    (3) h_t = o_t * tanh(c_t)
    (4) (h_t, c_t) = (h_{t-1}, c_{t-1}) where m_t = 0     rows past their length keep their state

Backward, with dh_t = dL/dh_t (from above) + dh_next (optionally clipped elementwise to
[-clip_dh, clip_dh]), and dc_t = dc_next (both from step t+1):
    (4b) on rows where m_t = 0, dh_t and dc_t pass to step t-1 unchanged and are 0 below
    (3b) do = dh_t * tanh(c_t)          dc_t += dh_t * o_t * (1 - tanh(c_t)^2)
    (2b) di = dc_t * g_t    dg = dc_t * i_t    df = dc_t * c_{t-1}    dc_next = dc_t * f_t
    (1b) da_t = [di * i(1-i), df * f(1-f), dg * (1-g^2), do * o(1-o)]
         dh_next = da_t U
    (0b) dh_next = dc_next = 0 on rows reset at t
    dW = sum_t da_t^T x_t,  dU = sum_t da_t^T h_{t-1},  db = db_U = sum_t da_t

The cell path (2) is why LSTM keeps gradients alive: dc_{t-1} = dc_t * f_t, with no matrix
product and no squashing derivative when f_t is near 1.

Shapes: xs (T, B, D) floats or (T, B) ids; W (4H, D); U (4H, H); b, b_U (4H,);
h_t, c_t (B, H); state (h, c); mask, reset (T, B, 1) bool or None.
"""

import numpy as np

from . import common
from .activations import sigmoid_
from .common import init_uniform, previous
from .inputs import project, project_backward

GATE_NAMES = ("i", "f", "g", "o")  # the gate blocks of W, U, b, b_U, stacked in this order (PyTorch's)
GATES = len(GATE_NAMES)
EXTRA = ()  # parameters beyond W, U, b, b_U, each (H, H)
OPTIONS = ()  # the Arch fields that forward takes
state_names = common.named_state("h", "c")  # the parts of the state


def init_params(rng, input_size, hidden_size, dtype):
    return init_uniform(rng, input_size, hidden_size, GATES, dtype)


def forward(p, xs, state0, mask=None, reset=None):
    W, U, b, b_U = p["W"], p["U"], p["b"], p["b_U"]
    h_prev, c_prev = state0
    H = U.shape[1]
    ax = project(W, b, xs)                                   # (T, B, 4H): W x_t + b, all t
    ax += b_U                                                # (1) both biases, once for all t
    U_T = np.ascontiguousarray(U.T)                          # h @ U_T: a contiguous copy, faster in BLAS
    T, B = ax.shape[:2]
    gates = np.empty_like(ax)                                # (T, B, 4H): i_t, f_t, g_t, o_t
    hs = np.empty((T, B, H), dtype=ax.dtype)
    cs = np.empty((T, B, H), dtype=ax.dtype)
    tanh_cs = np.empty((T, B, H), dtype=ax.dtype)
    for t in range(T):
        if reset is not None:
            h_prev = np.where(reset[t], 0, h_prev)           # (0)
            c_prev = np.where(reset[t], 0, c_prev)
        a_t = gates[t]                                       # (B, 4H), becomes the gates in place
        np.matmul(h_prev, U_T, out=a_t)
        a_t += ax[t]                                         # (1) a_t
        sigmoid_(a_t[:, :2 * H])                             # (1) i, f
        np.tanh(a_t[:, 2 * H:3 * H], out=a_t[:, 2 * H:3 * H])     # (1) g
        sigmoid_(a_t[:, 3 * H:])                             # (1) o
        i, f, g, o = a_t[:, :H], a_t[:, H:2 * H], a_t[:, 2 * H:3 * H], a_t[:, 3 * H:]
        c_t = f * c_prev + i * g                             # (2)
        tanh_cs[t] = np.tanh(c_t)
        h_t = o * tanh_cs[t]                                 # (3)
        if mask is not None:
            c_t = np.where(mask[t], c_t, c_prev)             # (4)
            h_t = np.where(mask[t], h_t, h_prev)
        hs[t], cs[t] = h_t, c_t
        h_prev, c_prev = h_t, c_t
    cache = (xs, state0, hs, cs, tanh_cs, gates, mask, reset)
    return hs, (h_prev, c_prev), cache


def backward(p, dhs, dstate_T, cache, clip_dh=None, dh_trace=None):
    W, U = p["W"], p["U"]
    xs, (h0, c0), hs, cs, tanh_cs, gates, mask, reset = cache
    T, B, H = hs.shape
    h_prevs, c_prevs = previous(h0, hs, reset), previous(c0, cs, reset)   # (T, B, H) each
    das = np.empty_like(gates)                               # (T, B, 4H): dL/da_t
    dh_next, dc_next = dstate_T
    for t in reversed(range(T)):
        c_prev = c_prevs[t]
        i, f, g, o = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:3 * H], gates[t, :, 3 * H:]
        dh_t = common.reaching(dhs[t] + dh_next, t, clip_dh, dh_trace)   # dL/dh_t, all paths
        dc_t = dc_next
        if mask is not None:
            dh_t, dh_held = common.held(mask[t], dh_t)       # (4b)
            dc_t, dc_held = common.held(mask[t], dc_t)
        do = dh_t * tanh_cs[t]                               # (3b)
        dc_t = dc_t + dh_t * o * (1 - tanh_cs[t] ** 2)       # (3b)
        das[t, :, :H] = dc_t * g * i * (1 - i)               # (2b), (1b) di
        das[t, :, H:2 * H] = dc_t * c_prev * f * (1 - f)     # (2b), (1b) df
        das[t, :, 2 * H:3 * H] = dc_t * i * (1 - g * g)      # (2b), (1b) dg
        das[t, :, 3 * H:] = do * o * (1 - o)                 # (1b) do
        dc_next = dc_t * f                                   # (2b)
        dh_next = das[t] @ U                                 # (1b)
        if mask is not None:
            dh_next += dh_held
            dc_next = dc_next + dc_held
        if reset is not None:
            dh_next = np.where(reset[t], 0, dh_next)         # (0b)
            dc_next = np.where(reset[t], 0, dc_next)
    da2 = das.reshape(T * B, 4 * H)
    dU = da2.T @ h_prevs.reshape(T * B, H)
    db = da2.sum(axis=0)
    dW, dxs = project_backward(W, xs, das)
    return dxs, (dh_next, dc_next), {"W": dW, "U": dU, "b": db, "b_U": db.copy()}


def step_jacobian(p, cache, t):
    """d(h_t, c_t)/d(h_{t-1}, c_{t-1}): (B, 2H, 2H), the blocks from (1)-(3):
        dc/dh = diag(c_{t-1} f(1-f)) U_f + diag(g i(1-i)) U_i + diag(i (1-g^2)) U_g
        dc/dc = diag(f)
        dh/dh = diag(tanh(c_t) o(1-o)) U_o + diag(o (1-tanh^2 c_t)) dc/dh
        dh/dc = diag(o (1-tanh^2 c_t) f)
    the identity on rows past their length, zero on rows reset at t."""
    xs, (h0, c0), hs, cs, tanh_cs, gates, mask, reset = cache
    U, H = p["U"], hs.shape[2]
    U_i, U_f, U_g, U_o = U[:H], U[H:2 * H], U[2 * H:3 * H], U[3 * H:]
    i, f, g, o = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:3 * H], gates[t, :, 3 * H:]
    c_prev = common.previous_at(c0, cs, reset, t)
    col = lambda v: v[:, :, None]                                   # noqa: E731  diag(v) M, batched
    dc_dh = col(c_prev * f * (1 - f)) * U_f + col(g * i * (1 - i)) * U_i + col(i * (1 - g * g)) * U_g
    dc_dc = np.eye(H) * col(f)
    dtanh = o * (1 - tanh_cs[t] ** 2)
    dh_dh = col(tanh_cs[t] * o * (1 - o)) * U_o + col(dtanh) * dc_dh
    dh_dc = np.eye(H) * col(dtanh * f)
    J = np.concatenate([np.concatenate([dh_dh, dh_dc], axis=2), np.concatenate([dc_dh, dc_dc], axis=2)], axis=1)
    return common.hold_and_reset(J, mask, reset, t)
