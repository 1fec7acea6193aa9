"""Online learning on a stream: the hidden state is never reset, the parameters move every k steps.

The stream is x (T, B) ids or (T, B, D) features with y (T, B) a target at every step (or (T, B, K) for
mse): B independent streams side by side. Chunk c is steps [c k, min(c k + k, T)), k_c of them (the last
may be shorter); L_c its mean loss over its k_c B positions; θ_c the parameters while it runs; s the
state, carried from chunk to chunk as it is (never reset, zeros at the stream's start unless given):

    tbptt   g_c = dL_c/dθ by BPTT over chunk c alone, from the state carried in as a value: nothing
            flows back past the chunk's start (TBPTT(k): credit reaches at most k - 1 steps back)
    rtrl    g_c = Σ_{t in c} δ_t M_t / (k_c B), (R2) of model/rtrl.py, M_t = ds_t/dθ carried by (R1) from
            the stream's start and never reset: credit reaches back to the stream's start
    uoro    the same with UORO's unbiased rank-one estimate s̃_t θ̃_t^T of M_t, its signs drawn from seed

    θ_{c+1} = optimizer.step(θ_c, clip(g_c), lr)              (O1) one update per chunk, k = 1 allowed

With lr = 0 (θ held) the chunks' gradients weighted by their share of the stream, Σ_c (k_c / T) g_c, are
full BPTT's gradient of the whole stream's mean loss for rtrl (exactly) and for uoro (in expectation);
for tbptt they are the sum of the chunks' own BPTT gradients. With lr > 0 the influence carried across
an update is the one computed under the old parameters (Williams & Zipser 1989; Tallec & Ollivier 2017).

    train_online(model, xs, ys, gradient, k, optimizer, lr, ...) -> Online(losses, steps, params, state)

model: a bptt.Network or a pair (params, arch); its parameters are copied, never changed in place.
"""

import numbers
from typing import NamedTuple

import numpy as np

from .. import checks
from ..model import engine, rtrl
from ..training import clipping, forward_mode, optim

GRADIENTS = ("tbptt", "rtrl", "uoro")


class Chunk(NamedTuple):
    """What on_chunk sees after chunk `index`'s update: its steps [start, stop), its mean loss L_c and
    gradient g_c (both under θ_c, g_c before clipping), and the parameters θ_{c+1} after (O1)."""

    index: int
    start: int
    stop: int
    loss: float
    grads: dict
    params: dict


class Online(NamedTuple):
    """train_online's result: each chunk's L_c (C,), the steps seen at its end (C,), the parameters
    after the last update and the state after the last step (public layout, as engine's)."""

    losses: np.ndarray
    steps: np.ndarray
    params: dict
    state: object


class Setting(NamedTuple):
    """The checked arguments: the parameters (a copy), arch, the optimiser, lr, clip and the gradient's
    Algorithm (model/rtrl.py) for rtrl and uoro, None for tbptt."""

    params: dict
    arch: object
    optimizer: object
    lr: float
    clip: float | None
    how: object


def checked(model, gradient, k, optimizer, lr, clip, seed):
    """The Setting, after a ValueError or TypeError naming the first bad argument."""
    params, arch = (model.params, model.arch) if hasattr(model, "arch") else unpacked(model)
    checks.one_of("gradient", gradient, GRADIENTS)
    checks.positive_int("k", k)
    if isinstance(optimizer, str):
        optimizer = optim.make(optimizer)
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "step")):
        raise TypeError(f"optimizer: expected a name ('sgd', 'adam', ...) or an optimiser of bptt.training.optim "
                        f"(with init and step), got {optimizer!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr >= 0:
        raise ValueError(f"lr: expected a float >= 0, got {lr!r}")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, numbers.Real) or not clip > 0):
        raise ValueError(f"clip: expected None (no clipping) or a float > 0 (the global norm's limit), got {clip!r}")
    if gradient != "uoro" and seed is not None:
        raise ValueError(f"seed: applies to gradient='uoro' only (its random signs); got seed={seed!r} with "
                         f"gradient={gradient!r}; leave seed None")
    if gradient == "uoro" and seed is None:
        raise ValueError("seed: gradient='uoro' draws random signs; give seed, an int >= 0 or a np.random.Generator")
    how = None if gradient == "tbptt" else rtrl.chosen(arch, gradient, seed, {})     # refuses what it cannot run
    params = {name: np.array(p, copy=True) for name, p in params.items()}
    return Setting(params, arch, optimizer, float(lr), None if clip is None else float(clip), how)


def unpacked(model):
    """(params, arch) from a pair, else a TypeError naming model."""
    if not (isinstance(model, tuple | list) and len(model) == 2 and isinstance(model[1], engine.Arch)):
        raise TypeError(f"model: expected a bptt.Network or a pair (params, arch), got {type(model).__name__}")
    return model


def tbptt_chunk(params, arch, x, y, state, loss):
    """(L_c, g_c, the state after it) by BPTT over the chunk from the state carried in (a value)."""
    r = engine.loss_and_grads(params, arch, x, y, state, "every", loss)
    return r.loss, r.grads, r.state


def forward_chunk(params, arch, x, y, state, loss, how, carried):
    """(L_c, g_c, the state after it, the carried value after it) by RTRL or UORO from carried, what the
    chunk before ended with (None at the stream's start: (R0)), as the trainer's --gradient windows."""
    r, carried = forward_mode.window(params, arch, x, y, state, how, carried, loss)
    return r.loss, r.grads, r.state, carried


def update(setting, grads, opt_state):
    """(O1): θ <- optimizer.step(θ, clip(g), lr) in place on setting.params (g itself left as it was)."""
    if setting.clip is not None:
        grads = {name: g.copy() for name, g in grads.items()}
        clipping.clip(grads, setting.clip)
    setting.optimizer.step(setting.params, grads, opt_state, setting.lr)


def train_online(model, xs, ys, gradient, k, optimizer, lr, clip=None, seed=None, on_chunk=None,
                 loss="cross_entropy", state=None):
    """Online training on the stream xs, ys (module docstring): chunks of k steps, each one's L_c and g_c
    by `gradient` ("tbptt", "rtrl" or "uoro"), then (O1) with optimizer (a name for optim.make, or an
    optimiser) at lr >= 0, the global norm clipped to clip (None: not clipped). seed: UORO's signs (an int,
    or a np.random.Generator), None otherwise. on_chunk(Chunk) after each update; a true return stops the
    stream there. state: the stream's first state (None: zeros). Returns Online."""
    setting = checked(model, gradient, k, optimizer, lr, clip, seed)
    T = len(xs)
    if T < 1 or len(ys) != T:
        raise ValueError(f"xs, ys: expected streams of the same length T >= 1 along axis 0, got {len(xs)} and "
                         f"{len(ys)}")
    opt_state, carried, losses, steps = setting.optimizer.init(setting.params), None, [], []
    for c, start in enumerate(range(0, T, k)):
        stop = min(start + k, T)
        x, y = xs[start:stop], ys[start:stop]
        if setting.how is None:
            value, grads, state = tbptt_chunk(setting.params, setting.arch, x, y, state, loss)
        else:
            value, grads, state, carried = forward_chunk(setting.params, setting.arch, x, y, state, loss,
                                                         setting.how, carried)
        update(setting, grads, opt_state)
        losses.append(value)
        steps.append(stop)
        if on_chunk is not None and on_chunk(Chunk(c, start, stop, value, grads, setting.params)):
            break
    return Online(np.array(losses), np.array(steps), setting.params, state)
