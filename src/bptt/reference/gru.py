"""GRU in PyTorch's formulation (nn.GRU): the reset gate multiplies after the recurrent matmul,
and the hidden-side bias of the candidate, b_Un, stays inside that product.

Gates are stacked r, z, n along the first axis of W, U, b, b_U (PyTorch's order). With
ax_t = W x_t + b and ah_t = U h_{t-1} + b_U, each split into its r, z, n blocks:

    (0) h_{t-1} = 0 where r_t = 1 (reset: a new sequence starts at t on that row); then
    (1) r_t = σ(ax_r + ah_r)
    (2) z_t = σ(ax_z + ah_z)
    (3) n_t = tanh(ax_n + r_t * ah_n)
    (4) h_t = (1 - z_t) * n_t + z_t * h_{t-1}  =  n_t + z_t * (h_{t-1} - n_t)
    (5) h_t = h_{t-1} where m_t = 0                rows past their length keep their state

Backward, with dh_t = dL/dh_t (from above) + dh_next (from step t+1), optionally clipped
elementwise to [-clip_dh, clip_dh]:
    (5b) on rows where m_t = 0, dh_t passes to step t-1 unchanged and is 0 below
    (4b) dn = dh_t * (1 - z_t)          dz = dh_t * (h_{t-1} - n_t)      dh_{t-1} += dh_t * z_t
    (3b) da_n = dn * (1 - n_t^2)        dr = da_n * ah_n                 dah_n = da_n * r_t
    (2b) da_z = dz * z_t (1 - z_t)
    (1b) da_r = dr * r_t (1 - r_t)
    dax_t = [da_r, da_z, da_n]          dah_t = [da_r, da_z, dah_n]      dh_{t-1} += dah_t U
    (0b) dh_next = 0 on rows reset at t
    dW = sum_t dax_t^T x_t,  db = sum_t dax_t,  dU = sum_t dah_t^T h_{t-1},  db_U = sum_t dah_t

Shapes: xs (T, B, D) floats or (T, B) ids; W (3H, D); U (3H, H); b, b_U (3H,); h_t (B, H);
state (h,) with h (B, H); mask, reset (T, B, 1) bool or None.
"""

import numpy as np

from . import common
from .activations import sigmoid
from .common import init_uniform, previous
from .inputs import project, project_backward

GATE_NAMES = ("r", "z", "n")  # the gate blocks of W, U, b, b_U, stacked in this order (PyTorch's)
GATES = len(GATE_NAMES)
EXTRA = ()  # parameters beyond W, U, b, b_U, each (H, H)
OPTIONS = ()  # the Arch fields that forward takes
state_names = common.named_state("h")  # the parts of the state


def init_params(rng, input_size, hidden_size, dtype):
    return init_uniform(rng, input_size, hidden_size, GATES, dtype)


def forward(p, xs, state0, mask=None, reset=None):
    W, U, b, b_U = p["W"], p["U"], p["b"], p["b_U"]
    (h_prev,) = state0
    H = U.shape[1]
    ax = project(W, b, xs)                                   # (T, B, 3H): W x_t + b, all t
    U_T = np.ascontiguousarray(U.T)                          # h @ U_T: a contiguous copy, faster in BLAS
    T, B = ax.shape[:2]
    gates = np.empty_like(ax)                                # (T, B, 3H): r_t, z_t, n_t
    ah_ns = np.empty((T, B, H), dtype=ax.dtype)              # (T, B, H): ah_n
    hs = np.empty((T, B, H), dtype=ax.dtype)
    for t in range(T):
        if reset is not None:
            h_prev = np.where(reset[t], 0, h_prev)           # (0)
        ah = h_prev @ U_T + b_U                              # (B, 3H)
        rz = sigmoid(ax[t, :, :2 * H] + ah[:, :2 * H])       # (1), (2)
        r, z = rz[:, :H], rz[:, H:]
        n = np.tanh(ax[t, :, 2 * H:] + r * ah[:, 2 * H:])    # (3)
        h_t = n + z * (h_prev - n)                           # (4)
        if mask is not None:
            h_t = np.where(mask[t], h_t, h_prev)             # (5)
        gates[t, :, :2 * H] = rz
        gates[t, :, 2 * H:] = n
        ah_ns[t] = ah[:, 2 * H:]
        hs[t] = h_t
        h_prev = h_t
    cache = (xs, state0, hs, gates, ah_ns, mask, reset)
    return hs, (h_prev,), cache


def backward(p, dhs, dstate_T, cache, clip_dh=None, dh_trace=None):
    W, U = p["W"], p["U"]
    xs, (h0,), hs, gates, ah_ns, mask, reset = cache
    T, B, H = hs.shape
    h_prevs = previous(h0, hs, reset)                        # (T, B, H): h_{t-1}
    daxs = np.empty_like(gates)                              # (T, B, 3H): dL/d(W x_t + b)
    dahs = np.empty_like(gates)                              # (T, B, 3H): dL/d(U h_{t-1} + b_U)
    (dh_next,) = dstate_T
    for t in reversed(range(T)):
        h_prev = h_prevs[t]
        r, z, n = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:]
        dh_t = common.reaching(dhs[t] + dh_next, t, clip_dh, dh_trace)   # dL/dh_t, all paths
        if mask is not None:
            dh_t, dh_held = common.held(mask[t], dh_t)       # (5b)
        dn = dh_t * (1 - z)                                  # (4b)
        dz = dh_t * (h_prev - n)                             # (4b)
        da_n = dn * (1 - n * n)                              # (3b)
        dr = da_n * ah_ns[t]                                 # (3b)
        daxs[t, :, :H] = dr * r * (1 - r)                    # (1b)
        daxs[t, :, H:2 * H] = dz * z * (1 - z)               # (2b)
        daxs[t, :, 2 * H:] = da_n
        dahs[t, :, :2 * H] = daxs[t, :, :2 * H]
        dahs[t, :, 2 * H:] = da_n * r                        # (3b)
        dh_next = dh_t * z + dahs[t] @ U                     # (4b), U h_{t-1}
        if mask is not None:
            dh_next += dh_held
        if reset is not None:
            dh_next = np.where(reset[t], 0, dh_next)         # (0b)
    dah2 = dahs.reshape(T * B, 3 * H)
    dU = dah2.T @ h_prevs.reshape(T * B, H)
    db_U = dah2.sum(axis=0)
    db = daxs.reshape(T * B, 3 * H).sum(axis=0)
    dW, dxs = project_backward(W, xs, daxs)
    return dxs, (dh_next,), {"W": dW, "U": dU, "b": db, "b_U": db_U}


def step_jacobian(p, cache, t):
    """dh_t/dh_{t-1}: (B, H, H), from (1)-(4):
        diag(z) + diag((1 - z)(1 - n^2)) [diag(r) U_n + diag(ah_n r (1 - r)) U_r] + diag((h_{t-1} - n) z (1 - z)) U_z
    the identity on rows past their length, zero on rows reset at t."""
    xs, (h0,), hs, gates, ah_ns, mask, reset = cache
    U, H = p["U"], hs.shape[2]
    U_r, U_z, U_n = U[:H], U[H:2 * H], U[2 * H:]
    r, z, n = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:]
    h_prev = common.previous_at(h0, hs, reset, t)
    col = lambda v: v[:, :, None]                                   # noqa: E731  diag(v) M, batched
    dn = col((1 - z) * (1 - n * n)) * (col(r) * U_n + col(ah_ns[t] * r * (1 - r)) * U_r)
    J = np.eye(H) * col(z) + dn + col((h_prev - n) * z * (1 - z)) * U_z
    return common.hold_and_reset(J, mask, reset, t)


def step_partials(p, cache, t):
    """The partial derivatives of step t, from which RTRL and UORO build every Jacobian (model/rtrl.py),
    each gate block diagonal (diag(v_r), diag(v_z), diag(v_n) side by side, (B, H, 3H)):
        dax   = dh_t/d(W x_t + b):          v_r = (1-z)(1-n^2) ah_n r(1-r)   v_z = (h_{t-1} - n) z(1-z)
                                            v_n = (1-z)(1-n^2)                                 (1)-(4)
        dah   = dh_t/d(U h_{t-1} + b_U):    the same, but v_n = (1-z)(1-n^2) r                 (3)
        dprev = dh_t/dh_{t-1}, dax and dah held = diag(z)  (B, H, H)                           (4)
    so that step_jacobian = dprev + dah U. Steps without lengths or resets."""
    xs, (h0,), hs, gates, ah_ns, mask, reset = cache
    assert mask is None and reset is None, "step_partials: for steps without lengths or resets"
    H = hs.shape[2]
    r, z, n = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:]
    h_prev = h0 if t == 0 else hs[t - 1]
    dn = (1 - z) * (1 - n * n)                                                # (4), (3): dh_t/d(ax_n + r ah_n)
    dr = dn * ah_ns[t] * r * (1 - r)                                          # (3), (1)
    dz = (h_prev - n) * z * (1 - z)                                           # (4), (2)
    blocks = np.tile(np.eye(H, dtype=hs.dtype), GATES)                        # (H, 3H): [I I I]
    dax = blocks * np.concatenate([dr, dz, dn], axis=1)[:, None, :]
    dah = blocks * np.concatenate([dr, dz, dn * r], axis=1)[:, None, :]
    return dax, dah, np.eye(H, dtype=hs.dtype) * z[:, None, :]
