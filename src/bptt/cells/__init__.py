"""The recurrent cells. Each is a module with the same pure functions:

    init_params(rng, input_size, hidden_size, dtype) -> {"W", "U", "b", "b_U"}
    forward(p, xs, state0, mask=None, **options)     -> (hs, state_T, cache)
    backward(p, dhs, dstate_T, cache)                -> (dxs, dstate0, grads)

and two constants: GATES (how many H-blocks W and U stack) and STATE (names of the state parts).
States are tuples of (B, H) arrays: (h,) for rnn and gru, (h, c) for lstm.
"""

from . import gru, lstm, rnn

CELLS = {"rnn": rnn, "gru": gru, "lstm": lstm}
