"""The recurrent cells. Each is a module with the same pure functions:

    init_params(rng, input_size, hidden_size, dtype) -> {"W", "U", "b", "b_U"}
    forward(p, xs, state0, mask=None, reset=None, **options) -> (hs, state_T, cache)
    backward(p, dhs, dstate_T, cache, clip_dh=None, dh_trace=None) -> (dxs, dstate0, grads)
    step_jacobian(p, cache, t)                       -> d state_{t+1} / d state_t, (B, S, S)

and two constants: GATES (how many H-blocks W and U stack) and STATE (names of the state parts;
the skip RNN, whose state is its last s hidden states, has state_names(s) instead).
States are tuples of (B, H) arrays: (h,) for rnn and gru, (h, c) for lstm; S = H * len(STATE).
backward writes dL/dh_t (the total gradient reaching h_t) into dh_trace (T, B, H) when given.
"""

from . import gru, lstm, rnn, skip

CELLS = {"rnn": rnn, "gru": gru, "lstm": lstm, "skip": skip}
