"""AWD-LSTM's regularisers (Merity, Keskar & Socher 2017), as options of engine.loss_and_grads:
the masks they draw, the weights they change and the terms they add to the loss, each with its
backward. Every mask is inverted: a kept entry is scaled by 1/(1-p), so nothing changes at evaluation.

    weight drop (weight_drop = p)        U~ = U * M_U, M_U (G H, P) per layer and direction, one per call,
                                         shared by every row and step (DropConnect; AWD's WeightDrop on
                                         weight_hh);  dU = dU~ * M_U
    embedding dropout (dropout_embedding) E~ = E * m_E, m_E (V, 1): whole words dropped for the call
                                         (AWD's dropoute), the input side only: a tied readout reads E;
                                         dE = dE~ * m_E, then the readout's dV is added
    locked dropout                       x~ = x * m, m (1, B, n): one mask per row, the same at every step
        dropout_input                    on layer 0's input, an embedding or float features (dropouti)
        dropout_hidden                   on the inputs of layers 1..L-1 (dropouth)
        dropout_output                   on the top layer's output, the readout's input (dropout)
    AR  (alpha)                          alpha mean(h~^2) over the T B W elements of the top layer's
                                         output after dropout_output:  dh~ += 2 alpha h~ / (T B W)
    TAR (beta)                           beta mean((h_t - h_{t-1})^2) over the (T-1) B W elements of the
                                         undropped top output:  dh_t += 2 beta (h_t - h_{t-1}) / ((T-1) B W),
                                         dh_{t-1} -= the same  (0 when T = 1)

These are the means of AWD-LSTM's main.py, `alpha * dropped_rnn_hs[-1].pow(2).mean()` and
`beta * (rnn_hs[-1][1:] - rnn_hs[-1][:-1]).pow(2).mean()`: over every element of the window,
padding (lengths) and positions without a target (loss_mask) included.

Masks are drawn from one generator in this order, each only when its rate is above 0 (draw):
the per-step `dropout` masks (engine.dropout_masks), then m_E, then M_U for l0.U, l0_reverse.U,
l1.U, ... (param_shapes' order), then the locked masks bottom to top (input, hidden 1..L-1, output).
"""

from typing import NamedTuple

import numpy as np

from .. import checks

RATES = ("weight_drop", "dropout_input", "dropout_hidden", "dropout_output", "dropout_embedding")
LOCKED = ("dropout_input", "dropout_hidden", "dropout_output")
TERMS = ("alpha", "beta")


class Options(NamedTuple):
    """The regularisers of one call, validated (options())."""

    weight_drop: float = 0.0
    dropout_input: float = 0.0
    dropout_hidden: float = 0.0
    dropout_output: float = 0.0
    dropout_embedding: float = 0.0
    alpha: float = 0.0
    beta: float = 0.0

    @property
    def masked(self):
        """Whether any mask is drawn."""
        return any(getattr(self, name) > 0 for name in RATES)

    @property
    def locked(self):
        return any(getattr(self, name) > 0 for name in LOCKED)


class Masks(NamedTuple):
    drops: list          # the input of layers 0..L-1 and the readout's: (T, B, n), (1, B, n) locked, or None
    weights: dict        # parameter name -> the mask multiplied into it: "l{k}.U" (weight drop), "E" (V, 1)


def options(**given):
    """Options from keyword arguments (the others 0), each checked: a rate in [0, 1), alpha and beta
    finite and >= 0; an unknown name is a TypeError listing the known ones."""
    unknown = sorted(set(given) - set(Options._fields))
    if unknown:
        raise TypeError(f"{', '.join(unknown)}: not an option of loss_and_grads; the regularisers are "
                        f"{', '.join(Options._fields)}")
    for name, value in given.items():
        if name in RATES:
            given[name] = checks.real(name, value, "a probability in [0, 1)", lambda v: 0 <= v < 1)
        else:
            given[name] = checks.real(name, value, checks.NONNEGATIVE, checks.nonnegative)
    return Options(**given)


def generator(rng, needed):
    """rng as a np.random.Generator: an int seed starts one (the same masks on every call, for checks);
    a TypeError naming `needed` (the rate that draws) when it is neither."""
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a np.random.Generator (or an int seed) when {needed} > 0, "
                        f"got {type(rng).__name__}")
    return rng


def rows_drawn(rows, B):
    """(rows drawn, the slice kept): all B, or for rows = (start, stop, of) all `of` rows of the whole
    batch and these (a rank of data-parallel training keeps its rows of one process's masks)."""
    if rows is None:
        return B, slice(None)
    if not (isinstance(rows, tuple) and len(rows) == 3 and all(isinstance(v, int) for v in rows)
            and 0 <= rows[0] <= rows[1] <= rows[2] and rows[1] - rows[0] == B):
        raise ValueError(f"dropout_rows: expected (start, stop, of), ints with 0 <= start <= stop <= of and "
                         f"stop - start = {B} (the batch's rows), got {rows!r}")
    return rows[2], slice(rows[0], rows[1])


def inverted(rng, shape, p, dtype):
    """A mask of `shape`: 1/(1-p) where kept (probability 1-p), else 0."""
    return kept(rng.random(shape), p, dtype)


def kept(u, p, dtype):
    """1/(1-p) where the uniform draw u >= p, else 0, as dtype: the bits of ((u >= p) / (1 - p)).astype(dtype)
    without its float64 quotient array (a word model's mask of 35 x 20 x 200, draw included: 0.86 -> 0.66 ms,
    medians, 2-core AMD EPYC Zen 5)."""
    return np.multiply(u >= p, np.dtype(dtype).type(1 / (1 - p)), dtype=dtype)


def draw(arch, batch, opts, rng, dtype, rows=None, drops=None):
    """The masks of opts, drawn from rng (a Generator: generator()) in the order of the module's
    docstring. drops: the per-step dropout masks already drawn (engine.dropout_masks), kept unless
    a locked rate replaces them. batch: engine.Batch (its x for T, B and the input kind, its order)."""
    weights = {}
    if opts.dropout_embedding > 0:
        if not arch.embedding_dim:
            raise ValueError("dropout_embedding: drops rows of the embedding E, and this network has none "
                             "(give it embedding_dim, or leave dropout_embedding at 0)")
        weights["E"] = inverted(rng, (arch.input_size, 1), opts.dropout_embedding, dtype)
    if opts.weight_drop > 0:
        for k in range(arch.num_layers):
            for name in arch.layer_names(k):
                weights[f"{name}.U"] = inverted(rng, (arch.spec.GATES * arch.hidden_size, arch.out_size),
                                                opts.weight_drop, dtype)
    if opts.locked:
        drops = locked_masks(arch, batch, opts, rng, dtype, rows)
    return Masks(drops, weights)


def locked_masks(arch, batch, opts, rng, dtype, rows):
    """One (1, B, n) mask per row for the input of each layer and the readout (None at rate 0)."""
    T, B = batch.x.shape[:2]
    if opts.dropout_input > 0 and batch.x.ndim == 2 and not arch.embedding_dim:
        raise ValueError("dropout_input: applies to an embedding or float features; this network reads "
                         "one-hot ids (give it embedding_dim, or leave dropout_input at 0)")
    drawn, keep = rows_drawn(rows, B)
    rates = [opts.dropout_input] + [opts.dropout_hidden] * (arch.num_layers - 1) + [opts.dropout_output]
    sizes = [arch.layer_input_size(0)] + [arch.width] * arch.num_layers
    masks = [inverted(rng, (1, drawn, n), p, dtype)[:, keep] if p > 0 else None for p, n in zip(rates, sizes)]
    if batch.order is not None:                   # drawn for the caller's rows, whatever order they run in
        masks = [None if m is None else m[:, batch.order] for m in masks]
    return masks


def dropped_weights(params, weights):
    """The parameters the layers run with: each masked one replaced by its product with its mask."""
    return params if not weights else params | {name: params[name] * m for name, m in weights.items()}


def weights_backward(grads, weights):
    """d(param) = d(masked param) * mask, for the layers' gradients (before a tied readout adds dV to dE)."""
    return grads if not weights else grads | {name: grads[name] * m for name, m in weights.items()}


def activation_value(hs, mask, opts):
    """AR + TAR of the top layer's undropped output hs (T, B, W), mask: dropout_output's (or None)."""
    value = 0.0
    if opts.alpha > 0:
        dropped = hs if mask is None else hs * mask
        value += opts.alpha * float(np.mean(np.square(dropped, dtype=np.float64)))
    if opts.beta > 0 and hs.shape[0] > 1:
        value += opts.beta * float(np.mean(np.square(np.diff(hs, axis=0), dtype=np.float64)))
    return value


def activation_backward(hs, mask, opts, dhs):
    """dL/d(undropped hs) given dhs = dL/d(dropped hs) from the readout: AR's term added before the
    output mask's backward, TAR's after it."""
    if opts.alpha > 0:
        dropped = hs if mask is None else hs * mask
        dhs = dhs + (2 * opts.alpha / hs.size) * dropped
    if mask is not None:
        dhs = dhs * mask
    if opts.beta > 0 and hs.shape[0] > 1:
        diff = (2 * opts.beta / (hs.size - hs[0].size)) * np.diff(hs, axis=0)     # (T-1, B, W)
        dhs = dhs.copy() if mask is None and opts.alpha == 0 else dhs
        dhs[1:] += diff
        dhs[:-1] -= diff
    return dhs
