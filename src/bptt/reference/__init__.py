"""The specification: the network's mathematics in plain NumPy, the oracle every faster path is
tested against. It owns the recurrent cells (rnn.py, gru.py, lstm.py, skip.py, with common.py's
shared steps), the nonlinearities (activations.py), how inputs enter a layer (inputs.py: one-hot
ids, embedding rows, float features) and the losses (losses.py). It imports nothing from bptt but
checks.

The recurrent cells. Each is a module with the same pure functions:

    init_params(rng, input_size, hidden_size, dtype) -> {"W", "U", "b", "b_U"}
    forward(p, xs, state0, mask=None, reset=None, **options) -> (hs, state_T, cache)
    backward(p, dhs, dstate_T, cache, clip_dh=None, dh_trace=None) -> (dxs, dstate0, grads)
    step_jacobian(p, cache, t)                       -> d state_{t+1} / d state_t, (B, S, S)

and its declarations, which the rest of bptt reads instead of testing a cell's name:

    GATE_NAMES   the gate blocks W, U, b and b_U stack, in PyTorch's order; GATES = len(GATE_NAMES)
    EXTRA        parameters beyond W, U, b, b_U, each (H, H): the skip RNN's ("S",)
    OPTIONS      the Arch fields forward takes: ("nonlinearity",) for rnn, ("nonlinearity", "skip")
    state_names(**options)  the parts of the state: ("h",), ("h", "c"), or the skip RNN's last s h's

States are tuples of (B, H) arrays: (h,) for rnn and gru, (h, c) for lstm; S = H * len(state_names).
backward writes dL/dh_t (the total gradient reaching h_t) into dh_trace (T, B, H) when given.
"""

from . import gru, lstm, rnn, skip

CELLS = {"rnn": rnn, "gru": gru, "lstm": lstm, "skip": skip}
