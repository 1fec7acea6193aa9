"""BPTT in O(sqrt(T)) memory: gradient checkpointing through time (Chen et al. 2016; Gruslys et al.
2016 for RNNs).

Full BPTT keeps every step's cache (gates, states) until the backward pass: memory grows as T.
Here the T steps are cut into segments of k steps:

    forward, keeping only the state at each segment boundary          (T/k states)
    for each segment, last to first:
        run its forward again from its boundary state, keeping the caches     (k steps of caches)
        readout and loss of its positions, backward through it, with the gradient arriving at
        its final state from the segment after it; its dstate0 goes to the segment before it

Memory: T/k boundary states plus one segment's caches, smallest at k ~ sqrt(T); time: one extra
forward pass (a third more). The arithmetic is that of full BPTT, summed in a different order:
the gradients agree to round-off (tested to 1e-12 in float64).
"""

import numpy as np

from . import checks, engine


def loss_and_grads(params, arch, x, y, state=None, target="every", loss="cross_entropy", lengths=None, *,
                   every, reset=None, loss_mask=None, clip_dh=None):
    """engine.loss_and_grads, keeping caches for `every` steps at a time (no dropout)."""
    batch, y, loss_mask = engine.prepare_loss(params, arch, x, y, state, target, loss, lengths, reset, loss_mask,
                                              clip_dh)
    every = checks.positive_int("every", every)
    T, B = batch.x.shape[:2]
    H = arch.hidden_size
    segments = [(a, min(a + every, T)) for a in range(0, T, every)]
    no_drops = [None] * (arch.num_layers + 1)
    c = params["c"]

    def part(a, b, state):
        cut = lambda m: None if m is None else m[a:b]          # noqa: E731
        return engine.Batch(batch.x[a:b], state, cut(batch.mask), cut(batch.reset))

    # the weights of every position in the mean loss, over the whole window: (T, B)
    if target == "every":
        w = engine.position_weights(T, B, batch.mask, loss_mask).astype(c.dtype)
        y = y.reshape((T, B) + y.shape[1:])

    boundaries = [batch.state]                                 # the state before each segment
    for a, b in segments[:-1]:
        _, state_b, _ = engine.forward_layers(params, arch, part(a, b, boundaries[-1]), no_drops)
        boundaries.append(state_b)

    value, grads, carried, final = 0.0, None, None, None
    dV, dc = np.zeros_like(engine.readout_weights(params)), np.zeros_like(c)
    dx = np.empty(batch.x.shape, c.dtype) if batch.x.ndim == 3 else None
    for i in reversed(range(len(segments))):
        a, b = segments[i]
        seg = part(a, b, boundaries[i])
        hs, state_b, caches = engine.forward_layers(params, arch, seg, no_drops)       # again, with caches
        final = state_b if final is None else final
        if target == "every":
            h, y_seg, w_seg = hs.reshape(-1, H), y[a:b].reshape((-1,) + y.shape[2:]), w[a:b].reshape(-1)
        elif i == len(segments) - 1:                            # many-to-one: the loss is at the very end
            h, y_seg, w_seg = hs[-1], y, np.full(B, 1.0 / B, c.dtype)
        else:
            h = None
        if h is None:
            dhs = np.zeros_like(hs)
        else:
            v, dV_seg, dc_seg, dh = engine.readout_loss(params, arch, h, y_seg, w_seg, loss)
            value += v
            dV += dV_seg
            dc += dc_seg
            dhs = engine.steps_gradient(dh, hs, target)
        g, dx_seg, carried = engine.backward_layers(params, arch, seg.x, dhs, caches, no_drops, clip_dh,
                                                    dstate_T=carried)
        grads = g if grads is None else {k: grads[k] + g[k] for k in grads}
        if dx is not None:
            dx[a:b] = dx_seg
    return engine.Result(value, engine.with_readout(params, grads, dV, dc), engine.public_state(final), dx,
                         engine.public_state(carried))
