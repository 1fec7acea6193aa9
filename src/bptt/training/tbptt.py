"""Truncated BPTT, TBPTT(k1, k2) (Williams & Peng 1990): every k1 steps, backpropagate k2 >= k1 steps.

A stream of N steps in B parallel rows (time-major, see data.batchify) is cut into windows. The
i-th window ends k1 steps after the previous one and reaches back k2 steps:

    stream   0 ──────────────────────────────────────────────────────────▶ N
    window i          start ─────────────── p ─────────── stop
                      │ k2 - k1 steps:       │ k1 steps:   │
                      │ no loss, but the     │ loss here   │
                      │ gradient flows back  │             │
                      ▲ the state at start is carried in, as values: nothing flows back past it

With k1 = k2 (the common case) windows do not overlap and the state carried into a window is the
previous window's final state: PyTorch's `hidden = hidden.detach()` between windows. With k2 > k1
each step's loss is backpropagated at least k2 - k1 + 1 steps; the state at the next window's
start is one forward pass of k1 steps from this window's start.

Rows may restart at document boundaries: `starts` (N, B) marks the steps where a row begins a new
document, and its state is reset to zero there, inside a window, without breaking the batch.
"""

from typing import NamedTuple

import numpy as np

from .. import checks
from ..model import engine


class Window(NamedTuple):
    start: int       # first input step (the carried state is the state before it)
    loss_from: int   # first step whose target counts (p)
    stop: int        # one past the last input step; targets are steps start+1 .. stop


def windows(N, k1, k2):
    """The TBPTT(k1, k2) windows over a stream of N steps (inputs 0..N-2, targets 1..N-1)."""
    checks.positive_int("k1", k1)
    checks.positive_int("k2", k2)
    if k2 < k1:
        raise ValueError(f"k2: expected k2 >= k1 = {k1} (backpropagate at least the steps with a loss), got {k2}")
    return [Window(max(0, p - (k2 - k1)), p, min(p + k1, N - 1)) for p in range(0, N - 1, k1)]


def window_batch(stream, w, starts=None):
    """Inputs, targets, loss mask and resets of window w over stream (N, B)."""
    x, y = stream[w.start:w.stop], stream[w.start + 1:w.stop + 1]
    loss_mask = None
    if w.loss_from > w.start:
        loss_mask = np.zeros(x.shape[:2], bool)                 # (T, B)
        loss_mask[w.loss_from - w.start:] = True
    reset = None if starts is None else starts[w.start:w.stop]
    return x, y, loss_mask, reset


def next_start_state(params, arch, stream, w, following, state, state_T, starts=None):
    """The state at the following window's start, given the state at w.start and at w.stop."""
    if following.start == w.start:
        return state
    if following.start == w.stop:
        return state_T
    x = stream[w.start:following.start]
    reset = None if starts is None else starts[w.start:following.start]
    return engine.final_state(params, arch, x, state, reset)


def accumulated_gradients(params, arch, stream, k1, k2, starts=None, state=None):
    """Sum over all windows of each window's gradient, weighted by its share of the targets, with
    the parameters held fixed: with k2 covering the stream this is the full-BPTT gradient of the
    mean loss over the whole stream (tested). Returns (mean loss, grads)."""
    ws = windows(len(stream), k1, k2)
    total = sum((w.stop - w.loss_from) for w in ws)
    loss, grads = 0.0, {name: np.zeros_like(p) for name, p in params.items()}
    for i, w in enumerate(ws):
        x, y, loss_mask, reset = window_batch(stream, w, starts)
        r = engine.loss_and_grads(params, arch, x, y, state, reset=reset, loss_mask=loss_mask)
        share = (w.stop - w.loss_from) / total
        loss += share * r.loss
        for name in grads:
            grads[name] += share * r.grads[name]
        if i + 1 < len(ws):
            state = next_start_state(params, arch, stream, w, ws[i + 1], state, r.state, starts)
    return loss, grads
