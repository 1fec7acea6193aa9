"""LSTM in PyTorch's formulation (nn.LSTM): gates stacked i, f, g, o along the first axis of
W, U, b, b_U, no peepholes; with a projection of the output (nn.LSTM's proj_size) when p holds R.

With a_t = W x_t + b + U h_{t-1} + b_U split into its i, f, g, o blocks:

    (0) (h_{t-1}, c_{t-1}) = 0 where r_t = 1 (reset: a new sequence starts at t on that row); then
    (1) i_t = σ(a_i)    f_t = σ(a_f)    g_t = tanh(a_g)    o_t = σ(a_o)
    (2) c_t = f_t * c_{t-1} + i_t * g_t
    (3) m_t = o_t * tanh(c_t)                    h_t = m_t without a projection
    (3') h_t = R m_t                             with one (p["R"], PyTorch's weight_hr): h_t is P wide
    (4) (h_t, c_t) = (h_{t-1}, c_{t-1}) where the row has ended (mask_t = 0): it keeps its state

Backward, with dh_t = dL/dh_t (from above) + dh_next (optionally clipped elementwise to
[-clip_dh, clip_dh]), and dc_t = dc_next (both from step t+1):
    (4b) on rows where mask_t = 0, dh_t and dc_t pass to step t-1 unchanged and are 0 below
    (3'b) dm_t = dh_t R                 (dm_t = dh_t without a projection)
    (3b) do = dm_t * tanh(c_t)          dc_t += dm_t * o_t * (1 - tanh(c_t)^2)
    (2b) di = dc_t * g_t    dg = dc_t * i_t    df = dc_t * c_{t-1}    dc_next = dc_t * f_t
    (1b) da_t = [di * i(1-i), df * f(1-f), dg * (1-g^2), do * o(1-o)]
         dh_next = da_t U
    (0b) dh_next = dc_next = 0 on rows reset at t
    dW = sum_t da_t^T x_t,  dU = sum_t da_t^T h_{t-1},  db = db_U = sum_t da_t
    (3'b) dR = sum_t dh_t^T m_t         (dh_t after (4b): 0 on rows that have ended)

The cell path (2) is why LSTM keeps gradients alive: dc_{t-1} = dc_t * f_t, with no matrix
product and no squashing derivative when f_t is near 1.

Shapes: xs (T, B, D) floats or (T, B) ids; W (4H, D); U (4H, S); b, b_U (4H,); R (P, H);
h_t (B, S) with S = P with a projection, H without; c_t, m_t (B, H); state (h, c);
mask, reset (T, B, 1) bool or None. The cache ends with ms (T, B, H), the m_t of (3), None without
a projection (h_t is m_t then).
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
PROJECTION = "R"  # the parameter whose presence in p turns (3') on: R (P, H), PyTorch's weight_hr
state_names = common.named_state("h", "c")  # the parts of the state


def init_params(rng, input_size, hidden_size, dtype, proj_size=None):
    """W, U, b, b_U as PyTorch initialises them, and with proj_size = P the projection R (P, H), U
    then (4H, P): every entry uniform in (-1/sqrt(H), 1/sqrt(H)). Without proj_size the same
    numbers from the same rng as common.init_uniform."""
    if proj_size is None:
        return init_uniform(rng, input_size, hidden_size, GATES, dtype)
    check_proj_size(hidden_size, proj_size)
    k, G = 1.0 / np.sqrt(hidden_size), GATES * hidden_size
    shapes = {"W": (G, input_size), "U": (G, proj_size), "b": (G,), "b_U": (G,)}
    p = {name: rng.uniform(-k, k, shape).astype(dtype) for name, shape in shapes.items()}
    p[PROJECTION] = init_projection(rng, hidden_size, proj_size, dtype)
    return p


def init_projection(rng, hidden_size, proj_size, dtype):
    """R (P, H) as nn.LSTM initialises weight_hr: uniform in (-1/sqrt(H), 1/sqrt(H)), H the hidden size."""
    check_proj_size(hidden_size, proj_size)
    k = 1.0 / np.sqrt(hidden_size)
    return rng.uniform(-k, k, (proj_size, hidden_size)).astype(dtype)


def check_proj_size(hidden_size, proj_size):
    if isinstance(proj_size, bool) or not isinstance(proj_size, int | np.integer) or not 0 < proj_size < hidden_size:
        raise ValueError(f"proj_size: expected an int in 1..{hidden_size - 1} (below the hidden size {hidden_size}, "
                         f"as nn.LSTM requires), got {proj_size!r}; leave it None for no projection")


def projection(p, H):
    """R (P, H) of p, or None without a projection; a ValueError when its shape does not fit U's."""
    R = p.get(PROJECTION)
    if R is not None and R.shape != (p["U"].shape[1], H):
        raise ValueError(f"R: expected shape (P, H) = {(p['U'].shape[1], H)} (U is {p['U'].shape}), got {R.shape}")
    return R


def forward(p, xs, state0, mask=None, reset=None):
    W, U, b, b_U = p["W"], p["U"], p["b"], p["b_U"]
    h_prev, c_prev = state0
    H, S = U.shape[0] // GATES, U.shape[1]                   # S: the width of h, P with a projection
    R = projection(p, H)
    ax = project(W, b, xs)                                   # (T, B, 4H): W x_t + b, all t
    ax += b_U                                                # (1) both biases, once for all t
    U_T = np.ascontiguousarray(U.T)                          # h @ U_T: a contiguous copy, faster in BLAS
    T, B = ax.shape[:2]
    gates = np.empty_like(ax)                                # (T, B, 4H): i_t, f_t, g_t, o_t
    hs = np.empty((T, B, S), dtype=ax.dtype)
    cs = np.empty((T, B, H), dtype=ax.dtype)
    tanh_cs = np.empty((T, B, H), dtype=ax.dtype)
    ms = None if R is None else np.empty((T, B, H), dtype=ax.dtype)
    R_T = None if R is None else np.ascontiguousarray(R.T)
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
        h_t = o * tanh_cs[t]                                 # (3) m_t
        if R is not None:
            ms[t] = h_t
            h_t = h_t @ R_T                                  # (3') h_t = R m_t
        if mask is not None:
            c_t = np.where(mask[t], c_t, c_prev)             # (4)
            h_t = np.where(mask[t], h_t, h_prev)
        hs[t], cs[t] = h_t, c_t
        h_prev, c_prev = h_t, c_t
    cache = (xs, state0, hs, cs, tanh_cs, gates, mask, reset, ms)
    return hs, (h_prev, c_prev), cache


def backward(p, dhs, dstate_T, cache, clip_dh=None, dh_trace=None):
    W, U = p["W"], p["U"]
    xs, (h0, c0), hs, cs, tanh_cs, gates, mask, reset, ms = cache
    T, B, H = cs.shape
    R = projection(p, H)
    h_prevs, c_prevs = previous(h0, hs, reset), previous(c0, cs, reset)   # (T, B, S), (T, B, H)
    das = np.empty_like(gates)                               # (T, B, 4H): dL/da_t
    dh_cells = None if R is None else np.empty_like(hs)      # (T, B, P): dh_t after (4b), for dR
    dh_next, dc_next = dstate_T
    for t in reversed(range(T)):
        c_prev = c_prevs[t]
        i, f, g, o = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:3 * H], gates[t, :, 3 * H:]
        dh_t = common.reaching(dhs[t] + dh_next, t, clip_dh, dh_trace)   # dL/dh_t, all paths
        dc_t = dc_next
        if mask is not None:
            dh_t, dh_held = common.held(mask[t], dh_t)       # (4b)
            dc_t, dc_held = common.held(mask[t], dc_t)
        dm_t = dh_t
        if R is not None:
            dh_cells[t] = dh_t
            dm_t = dh_t @ R                                  # (3'b)
        do = dm_t * tanh_cs[t]                               # (3b)
        dc_t = dc_t + dm_t * o * (1 - tanh_cs[t] ** 2)       # (3b)
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
    dU = da2.T @ h_prevs.reshape(T * B, -1)
    db = da2.sum(axis=0)
    dW, dxs = project_backward(W, xs, das)
    grads = {"W": dW, "U": dU, "b": db, "b_U": db.copy()}
    if R is not None:
        grads[PROJECTION] = dh_cells.reshape(T * B, -1).T @ ms.reshape(T * B, H)        # (3'b) dR
    return dxs, (dh_next, dc_next), grads


def step_jacobian(p, cache, t):
    """d(h_t, c_t)/d(h_{t-1}, c_{t-1}): (B, S + H, S + H), the blocks from (1)-(3'):
        dc/dh = diag(c_{t-1} f(1-f)) U_f + diag(g i(1-i)) U_i + diag(i (1-g^2)) U_g
        dc/dc = diag(f)
        dm/dh = diag(tanh(c_t) o(1-o)) U_o + diag(o (1-tanh^2 c_t)) dc/dh
        dm/dc = diag(o (1-tanh^2 c_t) f)
        dh/dh = R dm/dh,  dh/dc = R dm/dc      (h = m without a projection)
    the identity on rows past their length, zero on rows reset at t."""
    xs, (h0, c0), hs, cs, tanh_cs, gates, mask, reset, ms = cache
    U, H = p["U"], cs.shape[2]
    R = projection(p, H)
    U_i, U_f, U_g, U_o = U[:H], U[H:2 * H], U[2 * H:3 * H], U[3 * H:]
    i, f, g, o = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:3 * H], gates[t, :, 3 * H:]
    c_prev = common.previous_at(c0, cs, reset, t)
    col = lambda v: v[:, :, None]                                   # noqa: E731  diag(v) M, batched
    dc_dh = col(c_prev * f * (1 - f)) * U_f + col(g * i * (1 - i)) * U_i + col(i * (1 - g * g)) * U_g
    dc_dc = np.eye(H) * col(f)
    dtanh = o * (1 - tanh_cs[t] ** 2)
    dh_dh = col(tanh_cs[t] * o * (1 - o)) * U_o + col(dtanh) * dc_dh          # dm/dh
    dh_dc = np.eye(H) * col(dtanh * f)                                         # dm/dc
    if R is not None:
        dh_dh, dh_dc = R @ dh_dh, R @ dh_dc                                    # (3')
    J = np.concatenate([np.concatenate([dh_dh, dh_dc], axis=2), np.concatenate([dc_dh, dc_dc], axis=2)], axis=1)
    return common.hold_and_reset(J, mask, reset, t)


def step_partials(p, cache, t):
    """The partial derivatives of step t, from which RTRL and UORO build every Jacobian (model/rtrl.py),
    for the state s = (h, c) (rows h then c) and a_t = W x_t + b + U h_{t-1} + b_U; each gate block
    diagonal (diag(v_i), diag(v_f), diag(v_g), diag(v_o) side by side, (B, H, 4H)):
        dc_t/da_t: v = [g i(1-i), c_{t-1} f(1-f), i (1-g^2), 0]                             (1), (2)
        dh_t/da_t: o (1-tanh^2 c_t) dc_t/da_t + [0, 0, 0, tanh(c_t) o(1-o)]                  (3)
        dax = dah = [dh_t/da_t; dc_t/da_t]  (B, 2H, 4H)     (both biases sit in a_t)
        dprev = d(h_t, c_t)/d(h_{t-1}, c_{t-1}), a_t held: dh/dc = diag(o (1-tanh^2 c_t) f), dc/dc = diag(f),
                0 on h_{t-1}   (B, 2H, 2H)
    so that step_jacobian = dprev + dah U (on h_{t-1}). Without a projection; steps without lengths or resets."""
    xs, (h0, c0), hs, cs, tanh_cs, gates, mask, reset, ms = cache
    assert mask is None and reset is None and ms is None, "step_partials: no lengths, resets or projection"
    H = cs.shape[2]
    i, f, g, o = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:3 * H], gates[t, :, 3 * H:]
    c_prev = c0 if t == 0 else cs[t - 1]
    dtanh = o * (1 - tanh_cs[t] ** 2)                                         # (3): dh_t/dc_t
    zero = np.zeros_like(o)
    dc = np.concatenate([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), zero], axis=1)     # (2), (1)
    dh = dc * np.tile(dtanh, GATES) + np.concatenate([zero, zero, zero, tanh_cs[t] * o * (1 - o)], axis=1)  # (3)
    blocks = np.tile(np.eye(H, dtype=cs.dtype), GATES)                        # (H, 4H): [I I I I]
    da = np.concatenate([blocks * dh[:, None, :], blocks * dc[:, None, :]], axis=1)
    eye = np.eye(H, dtype=cs.dtype)
    dprev = np.zeros((len(f), 2 * H, 2 * H), cs.dtype)
    dprev[:, :H, H:] = eye * (dtanh * f)[:, None, :]                          # (3), (2): dh_t/dc_{t-1}
    dprev[:, H:, H:] = eye * f[:, None, :]                                    # (2): dc_t/dc_{t-1}
    return da, da, dprev
