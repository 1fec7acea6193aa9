"""Gradient clipping, in place on a dict of gradient arrays, as torch.nn.utils does it.

Clipping by norm (Pascanu, Mikolov and Bengio 2013, "On the difficulty of training recurrent
neural networks") rescales an exploding gradient to length max_norm and keeps its direction:

    ‖g‖ = sqrt(Σ_k Σ_i g_k[i]²)                summed in float64 over every array k
    g  <- g · max_norm / (‖g‖ + 1e-6)          only when that factor is < 1

A non-finite norm (inf or nan) is returned and nothing is scaled: the caller decides what a
diverged step means (torch would scale by 0 or nan). Scale factors are Python floats, so float32
gradients stay float32.

rows ({name: sorted row indices}, optional): the caller's word that grads[name] is zero outside
those rows of its first axis (a word-level embedding's gradient: the window's tokens). The norm
and the scaling then read and write those rows alone (fast.arrays): the same norm, to round-off
(the sum taken row by row), and the same gradients.
"""

import math

import numpy as np

from .. import checks
from ..checks import real
from ..fast import arrays

EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s guard against division by 0


def _positive(name, value):
    return real(name, value, "a float > 0", lambda x: x > 0.0)


def _sum_of_squares(g, rows=None):
    """sum_i g_i^2 accumulated in float64 (an overflowing norm is inf, reported as such), on the
    engine's threads (fast.arrays), not np.dot: a multithreaded BLAS dot would leave its threads
    spinning beside the time loops."""
    return arrays.squares(g, rows)


def _scale(g, norm, max_norm, rows=None):
    """g <- g max_norm / (norm + 1e-6) when that is < 1 and norm is finite."""
    coef = max_norm / (norm + EPS) if math.isfinite(norm) else 1.0
    if coef < 1.0:
        arrays.scale(g, coef, rows)


def global_norm(grads, rows=None):
    """‖g‖ = sqrt(Σ_k Σ_i g_k[i]²) over all arrays, accumulated in float64; a Python float."""
    grads = checks.float_arrays("grads", grads)
    rows = checks.nonzero_rows(rows, grads)
    return math.sqrt(sum(_sum_of_squares(g, rows.get(k)) for k, g in grads.items()))


def clip_global_norm(grads, max_norm, norm=None, rows=None):
    """Scale every array by max_norm / (‖g‖ + 1e-6) when that is < 1, as torch.nn.utils.clip_grad_norm_.
    Returns ‖g‖ before clipping. norm: ‖g‖ when the caller has it (global_norm(grads)), not summed again."""
    max_norm = _positive("max_norm", max_norm)
    rows = checks.nonzero_rows(rows, grads)
    norm = global_norm(grads, rows) if norm is None else norm
    for k, g in grads.items():
        _scale(g, norm, max_norm, rows.get(k))
    return norm


def clip_per_parameter(grads, max_norm, rows=None):
    """Clip each array to its own norm ‖g_k‖ by the same formula. Returns {k: ‖g_k‖ before clipping}."""
    max_norm = _positive("max_norm", max_norm)
    grads = checks.float_arrays("grads", grads)
    rows = checks.nonzero_rows(rows, grads)
    norms = {k: math.sqrt(_sum_of_squares(g, rows.get(k))) for k, g in grads.items()}
    for k, g in grads.items():
        _scale(g, norms[k], max_norm, rows.get(k))
    return norms


def clip_value(grads, limit):
    """g <- clip(g, -limit, limit) elementwise, as torch.nn.utils.clip_grad_value_ (nan stays nan).
    Returns how many entries were clipped."""
    limit = _positive("limit", limit)
    clipped = 0
    for g in checks.float_arrays("grads", grads).values():
        clipped += int(np.count_nonzero(g > limit)) + int(np.count_nonzero(g < -limit))
        np.clip(g, -limit, limit, out=g)
    return clipped


def clip(grads, threshold, mode="norm", rows=None):
    """Clip grads in place as a run is configured (--clip threshold, 0: off; --clip-mode): by the global
    norm, each array's norm ("param") or each entry ("value"). Returns (the global norm before
    clipping, whether anything changed); a non-finite norm is returned as it is, nothing clipped."""
    norm = global_norm(grads, rows)
    if threshold == 0 or not math.isfinite(norm):
        return norm, False
    if mode == "norm":
        clip_global_norm(grads, threshold, norm, rows)
        return norm, norm > threshold
    if mode == "param":
        return norm, any(n > threshold for n in clip_per_parameter(grads, threshold, rows).values())
    return norm, clip_value(grads, threshold) > 0
