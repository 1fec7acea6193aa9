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
    step_partials(p, cache, t)  (rnn, gru, lstm)     -> d state_t / d(W x_t + b), d(U h_{t-1} + b_U), d state_{t-1}

and its declarations, which the rest of bptt reads instead of testing a cell's name:

    GATE_NAMES   the gate blocks W, U, b and b_U stack, in PyTorch's order; GATES = len(GATE_NAMES)
    EXTRA        parameters beyond W, U, b, b_U, each (H, H): the skip RNN's ("S",)
    OPTIONS      the Arch fields forward takes: ("nonlinearity",) for rnn, ("nonlinearity", "skip")
    state_names(**options)  the parts of the state: ("h",), ("h", "c"), or the skip RNN's last s h's

States are tuples of (B, H) arrays: (h,) for rnn and gru, (h, c) for lstm; S = H * len(state_names).
The LSTM with projections (its p holds PROJECTION = "R", (P, H)) has h (B, P) and c (B, H), S = P + H,
and its cache ends with m_t = o_t * tanh(c_t) (T, B, H) (None without R).
backward writes dL/dh_t (the total gradient reaching h_t) into dh_trace (T, B, H) when given.
"""

from . import gru, lstm, rnn, skip
from .activations import NONLINEARITIES

CELLS = {"rnn": rnn, "gru": gru, "lstm": lstm, "skip": skip}

# A cell's name on the command line and in the lab: the cell ("gru"), or a cell that takes a
# nonlinearity with it ("rnn-relu": the Elman RNN with ReLU). One meaning everywhere: the name says
# the equations, never an initialisation (bptt task's IRNN is "irnn", rnn-relu with U = I).
FORMS = (*CELLS, *(f"{name}-{f}" for name, cell in CELLS.items() if "nonlinearity" in cell.OPTIONS
                   for f in NONLINEARITIES))


def form(name):
    """(cell, nonlinearity or None) of a name of FORMS: "rnn-relu" -> ("rnn", "relu"), "gru" -> ("gru", None)."""
    if name not in FORMS:
        raise ValueError(f"cell: expected one of {', '.join(FORMS)}; got {name!r}")
    cell, _, nonlinearity = name.partition("-")
    return cell, nonlinearity or None
