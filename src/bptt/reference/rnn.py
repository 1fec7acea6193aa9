"""Elman RNN, as PyTorch's nn.RNN (nonlinearity tanh or relu) and with sigmoid.

Forward, for t = 1..T:
    (0) h_{t-1} = 0 where r_t = 1               a new sequence starts at t on that row (reset)
    (1) a_t = W x_t + b + U h_{t-1} + b_U
    (2) h_t = f(a_t)                              f in {tanh, relu, sigmoid}
    (3) h_t = h_{t-1} where m_t = 0               rows past their length keep their state

Backward through time, with dh_t = dL/dh_t (direct, from the layer above) + dh_next (from step t+1),
optionally clipped to [-clip_dh, clip_dh] elementwise (Mikolov's cutoff):
    (3b) dh_t is passed unchanged to step t-1 on rows where m_t = 0, and is 0 for (2b) there
    (2b) da_t = dh_t * f'(a_t)
    (1b) dh_next = da_t U                   the δ recursion: dL/dh_{t-1} = diag(f'(a_t)) U ...
    (0b) dh_next = 0 on rows reset at t
         dW = sum_t da_t^T x_t,  dU = sum_t da_t^T h_{t-1},  db = db_U = sum_t da_t

The Jacobian of one step is dh_t/dh_{t-1} = diag(f'(a_t)) U: BPTT multiplies T of them.

Shapes: xs (T, B, D) floats or (T, B) ids; W (H, D); U (H, H); b, b_U (H,); h_t (B, H);
hs (T, B, H); state (h,) with h (B, H); mask, reset (T, B, 1) bool or None.
"""

import numpy as np

from . import activations, common
from .common import init_uniform, previous
from .inputs import project, project_backward

GATE_NAMES = ("h",)  # the gate blocks of W, U, b, b_U, stacked in this order (PyTorch's)
GATES = len(GATE_NAMES)
EXTRA = ()  # parameters beyond W, U, b, b_U, each (H, H)
OPTIONS = ("nonlinearity",)  # the Arch fields that forward takes
state_names = common.named_state("h")  # the parts of the state


def init_params(rng, input_size, hidden_size, dtype):
    return init_uniform(rng, input_size, hidden_size, GATES, dtype)


def forward(p, xs, state0, mask=None, reset=None, nonlinearity="tanh"):
    W, U, b, b_U = p["W"], p["U"], p["b"], p["b_U"]
    (h_prev,) = state0
    ax = project(W, b, xs)                                  # (T, B, H): W x_t + b, all t
    ax += b_U                                               # (1) both biases, once for all t
    U_T = np.ascontiguousarray(U.T)                         # h @ U_T: a contiguous copy, faster in BLAS
    hs = np.empty_like(ax)
    for t in range(len(ax)):
        if reset is not None:
            h_prev = np.where(reset[t], 0, h_prev)          # (0)
        a_t = ax[t] + h_prev @ U_T                          # (1)
        h_t = activations.apply(nonlinearity, a_t)          # (2)
        if mask is not None:
            h_t = np.where(mask[t], h_t, h_prev)            # (3)
        hs[t] = h_t
        h_prev = h_t
    cache = (xs, state0, hs, mask, reset, nonlinearity)
    return hs, (h_prev,), cache


def backward(p, dhs, dstate_T, cache, clip_dh=None, dh_trace=None):
    W, U = p["W"], p["U"]
    xs, (h0,), hs, mask, reset, nonlinearity = cache
    T, B, H = hs.shape
    das = np.empty_like(hs)                                 # (T, B, H): dL/da_t
    (dh_next,) = dstate_T
    for t in reversed(range(T)):
        dh_t = common.reaching(dhs[t] + dh_next, t, clip_dh, dh_trace)   # dL/dh_t, all paths
        if mask is not None:
            dh_t, dh_held = common.held(mask[t], dh_t)      # (3b)
        da_t = dh_t * activations.derivative(nonlinearity, hs[t])   # (2b)
        das[t] = da_t
        dh_next = da_t @ U                                  # (1b)
        if mask is not None:
            dh_next += dh_held
        if reset is not None:
            dh_next = np.where(reset[t], 0, dh_next)        # (0b)
    h_prevs = previous(h0, hs, reset)                       # (T, B, H): h_{t-1}
    da2 = das.reshape(T * B, H)
    dU = da2.T @ h_prevs.reshape(T * B, H)                  # (1b)
    db = da2.sum(axis=0)                                    # (1b)
    dW, dxs = project_backward(W, xs, das)                  # (1b)
    return dxs, (dh_next,), {"W": dW, "U": dU, "b": db, "b_U": db.copy()}


def step_jacobian(p, cache, t):
    """dh_t/dh_{t-1} = diag(f'(a_t)) U for every row: (B, H, H); the identity on rows past their
    length, zero on rows reset at t."""
    xs, (h0,), hs, mask, reset, nonlinearity = cache
    J = activations.derivative(nonlinearity, hs[t])[:, :, None] * p["U"]     # (B, H, H)
    return common.hold_and_reset(J, mask, reset, t)


def step_partials(p, cache, t):
    """The partial derivatives of step t, from which RTRL and UORO build every Jacobian (model/rtrl.py):
        dax   = dh_t/d(W x_t + b)                = diag(f'(a_t))                  (1), (2)
        dah   = dh_t/d(U h_{t-1} + b_U)          = diag(f'(a_t))                  (1), (2)
        dprev = dh_t/dh_{t-1}, dax and dah held  = 0
    dax, dah (B, H, H); dprev (B, H, H); step_jacobian = dprev + dah U. Steps without lengths or resets."""
    xs, (h0,), hs, mask, reset, nonlinearity = cache
    assert mask is None and reset is None, "step_partials: for steps without lengths or resets"
    d = activations.derivative(nonlinearity, hs[t])                          # (B, H): f'(a_t)
    da = np.eye(d.shape[1], dtype=d.dtype) * d[:, None, :]                    # diag(f'(a_t)), batched
    return da, da, np.zeros_like(da)
