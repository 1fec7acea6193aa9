"""What every cell shares: the parameter layout and PyTorch's default initialisation."""

import numpy as np


def init_uniform(rng, input_size, hidden_size, gates, dtype):
    """W (G, D), U (G, H), b (G,), b_U (G,) with G = gates * H, every entry uniform in
    (-1/sqrt(H), 1/sqrt(H)): PyTorch's default for nn.RNN, nn.GRU and nn.LSTM."""
    k = 1.0 / np.sqrt(hidden_size)
    G = gates * hidden_size
    shapes = {"W": (G, input_size), "U": (G, hidden_size), "b": (G,), "b_U": (G,)}
    return {name: rng.uniform(-k, k, shape).astype(dtype) for name, shape in shapes.items()}


def named_state(*names):
    """state_names(**options) of a cell whose state parts do not depend on its options."""
    def state_names(**options):
        return names
    return state_names


def reaching(dh_t, t, clip_dh, dh_trace):
    """dL/dh_t once every path has reached it (from the layer above and from step t+1): clipped to
    [-clip_dh, clip_dh] when asked (Mikolov's cutoff) and recorded in dh_trace[t] (diagnostics)."""
    if clip_dh is not None:
        np.clip(dh_t, -clip_dh, clip_dh, out=dh_t)
    if dh_trace is not None:
        dh_trace[t] = dh_t
    return dh_t


def previous(s0, ss, reset):
    """s_{t-1} as step t saw it, for every t: (T, B, H); zero on rows reset at t."""
    prev = np.concatenate([s0[None], ss[:-1]])
    return prev if reset is None else np.where(reset, 0, prev)


def previous_at(s0, ss, reset, t):
    """s_{t-1} as step t saw it: (B, H), one step of previous() without building all T."""
    prev = ss[t - 1] if t > 0 else s0
    return prev if reset is None else np.where(reset[t], 0, prev)


def held(mask_t, d):
    """Split the gradient reaching a state at a step where rows past their length only hold the
    previous state: (the part through the cell, the part passed straight to the previous state)."""
    return np.where(mask_t, d, 0), np.where(mask_t, 0, d)


def hold_and_reset(J, mask, reset, t):
    """A step's Jacobian J (B, S, S) where rows are held (past their length: the identity) or reset
    (a zero state was used instead of the previous one: zero)."""
    if mask is not None:
        J = np.where(mask[t][:, :, None], J, np.eye(J.shape[1], dtype=J.dtype))
    if reset is not None:
        J = np.where(reset[t][:, :, None], 0, J)
    return J
