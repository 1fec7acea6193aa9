"""The network around the cells: input, a stack of L layers, the readout and the loss.

    x_t    token ids (one-hot, or rows of an embedding E) or float features
    h^0_t  = x_t  (or E[x_t]);  h^l_t = cell(h^{l-1}_t, h^l_{t-1})  for l = 1..L
    z_t    = V h^L_t + c                      (1) readout (V = E with tied embeddings)
    L      = loss(z_t, y_t) averaged over the positions with a target

Targets sit at every step (language model) or only at the last step (many-to-one). With lengths,
each cell keeps a row's state fixed past its length, so the last step holds each sequence's own
last state, and padding gets zero weight in the loss. A loss mask can drop more positions (the
first k2 - k1 steps of a TBPTT(k1, k2) window); a reset mask starts a row's state from zero at
a step (a document boundary inside a window).

Dropout (Zaremba et al. 2014) is non-recurrent: on the input of each layer (an embedding or float
features; never one-hot ids) and on the top layer's output, never on the recurrent connections.
Inverted: kept units are scaled by 1/(1-p) in training, so nothing changes at evaluation.

Backward runs once, top to bottom: the readout gives dL/dh^L_t for every t; each layer's backward
through time returns dL/dh^{l-1}_t for the layer below; the bottom one gives dE, or dx for features.

Everything here is pure: parameters are a dict of arrays (keys below), the forward caches are
returned and passed back, nothing is stored.

    E        (V, E)       embedding, only with embedding_dim
    l{k}.W   (G H, D_k)   input weights of layer k (D_0 = input_size or embedding_dim, else H)
    l{k}.U   (G H, H)     recurrent weights
    l{k}.b   (G H,)       input-side bias        (PyTorch's bias_ih)
    l{k}.b_U (G H,)       recurrent-side bias    (PyTorch's bias_hh)
    l{k}.S   (H, H)       skip RNN only: the weights reaching s steps back
    l{k}.R   (P, H)       LSTM with projections only (proj_size P): h_t = R (o_t * tanh(c_t))
    l{k}_reverse.*        bidirectional only: the same for the direction that runs backwards in time
    init.h   (L D, H)     learn_init_state only: the initial state, for every row (init.c for the LSTM)
    V        (K, D H)     readout weights (absent with tied embeddings);  c (K,) readout bias

H is the width of a layer's output h (proj_size P with projections) and D the number of directions
(2 when bidirectional). A bidirectional layer l+1 reads [h_fwd; h_bwd] (D H); its state parts are
(L D, B, H), layer k's forward direction at k D, its reverse at k D + 1 (PyTorch's layout).

Bidirectional (Schuster & Paliwal 1997): the reverse direction runs the same cell on each row's steps
in reverse order, from the row's own last step (its length) back to step 0, and its outputs are put
back in the original order before they are concatenated. With many-to-one targets the readout reads
[h_fwd at the row's last step; h_bwd at step 0]: the two final states (PyTorch's h_n).
"""

import contextlib
import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import checks, fast
from ..reference import CELLS, adaptive, losses
from ..reference.activations import NONLINEARITIES
from ..reference.inputs import Embedded, gather_rows, scatter_rows
from . import checkpointing, regularisers, rtrl

ENGINES = ("fast", "numpy")
PRECISIONS = ("float32", "bf16")
ENGINE_CELLS = {"fast": fast.CELL_NAMES, "numpy": tuple(CELLS)}    # by name: knowing them loads no engine


class Backend(NamedTuple):
    """What an engine gives the model: the cells' functions, the product of the readout, the fused
    readout-and-cross-entropy where it has one, whether its first layer can read an embedding as
    Embedded(E, ids) (a (V, D) table projected once per window) rather than gathered rows, and the
    scatter-add that is the gathered rows' gradient."""

    name: str
    cells: dict                  # cell name -> module with forward, backward, init_params and the declarations
    matmul: object               # (A, B) -> A @ B
    cross_entropy: object        # (h, V, c, y, w) -> (L, dV, dc, dh), or None: losses.apply on the logits
    log_likelihood: object       # (h, V, c, y) -> (log p(y) (N,), argmax (N,)), forward only, or None: on the logits
    folds_embedding: bool
    row_order: object            # lengths (B,) -> an order of the rows to run them in, or None: as given
    scatter_rows: object         # (num_rows, ids (T, B), d (T, B, D)) -> dM (num_rows, D): reference.inputs'
    frozen: object               # (arrays) -> a context within which they do not change (the fast engine packs
                                 # them once)
    adaptive: object = None      # the adaptive softmax's loss_and_grads, log_likelihood and log_probs with
                                 # reference.adaptive's signatures (bptt.fast.adaptive), or None: reference.adaptive


@functools.cache
def backend(name):
    """The engine called name, built once. "fast": bptt.fast's compiled rnn, gru and lstm (imported
    here, on first use: numba compiles), and glibc's malloc thresholds set for this process as the
    trainer sets them (bptt.fast.heap: freed window-sized arrays are reused instead of returned to
    the kernel and faulted in again); "numpy": the reference cells of bptt.reference."""
    checks.one_of("engine", name, ENGINES)
    if name == "numpy":
        return Backend("numpy", CELLS, np.matmul, None, None, False, lambda lengths: None, scatter_rows,
                       lambda arrays: contextlib.nullcontext())
    from ..fast import adaptive as fast_adaptive
    from ..fast import heap
    from ..fast.matmul import matmul
    from ..fast.packed import frozen
    from ..fast.readout import cross_entropy, log_likelihood
    from ..fast.rows import by_length
    from ..fast.window import scatter

    heap.reuse_freed_memory()        # once per process: a step's arrays come back from the heap (fast/heap.py)
    return Backend("fast", fast.CELLS, matmul, cross_entropy, log_likelihood, True, by_length, scatter, frozen,
                   fast_adaptive)


@dataclass(frozen=True)
class Arch:
    """The shape of a network: everything but the parameter values. The sizes, num_layers,
    embedding_dim and skip are stored as plain ints and tie_weights as a bool, whatever integer or
    bool type they were given as (NumPy's too); a float such as 5.0 is refused, naming the field."""

    cell: str
    input_size: int
    hidden_size: int
    output_size: int
    num_layers: int = 1
    embedding_dim: int | None = None
    nonlinearity: str = "tanh"
    tie_weights: bool = False
    skip: int | None = None          # cell="skip": how far back S reaches (default 2)
    engine: str | None = None        # "fast": compiled time loops (bptt.fast); "numpy": the reference cells;
                                     # None: "fast", or "numpy" for the skip RNN (it has no compiled version)
    bidirectional: bool = False      # each layer runs forwards and backwards in time, outputs concatenated
    proj_size: int | None = None     # cell="lstm": h_t = R (o_t * tanh(c_t)) of size P < hidden_size
    learn_init_state: bool = False   # the initial state is a parameter (init.h, init.c), trained
    cutoffs: tuple | None = None     # the adaptive softmax's cutoffs c_1 < ... < c_n < output_size, instead
                                     # of the full readout V, c (reference.adaptive; PyTorch's
                                     # AdaptiveLogSoftmaxWithLoss); None: the full readout
    div_value: float = 4.0           # the adaptive softmax: tail i projects to width // div_value**i units
    head_bias: bool = False          # the adaptive softmax: a bias on its head (PyTorch's head_bias)
    precision: str = "float32"       # of the products: "float32", or "bf16" (bfloat16 operands, float32 sums;
                                     # bptt.fast.bf16): master weights, states, gates and the loss stay float32

    def __post_init__(self):
        checks.one_of("cell", self.cell, tuple(CELLS))
        if self.engine is None:
            self._store("engine", "fast" if self.cell in fast.CELL_NAMES else "numpy")
        checks.one_of("engine", self.engine, ENGINES)
        if self.cell not in ENGINE_CELLS[self.engine]:
            raise ValueError(f"engine: {self.engine!r} has no compiled {self.cell} cell; use engine='numpy' (the "
                             f"reference cells), or leave engine unset to get it")
        checks.one_of("nonlinearity", self.nonlinearity, NONLINEARITIES)
        if "nonlinearity" not in self.spec.OPTIONS and self.nonlinearity != "tanh":
            takes = " and ".join(repr(c) for c, m in CELLS.items() if "nonlinearity" in m.OPTIONS)
            raise ValueError(f"nonlinearity: applies to cell={takes} only; got {self.nonlinearity!r} "
                             f"with cell={self.cell!r} (leave it at 'tanh')")
        if "skip" in self.spec.OPTIONS:
            self._store("skip", checks.positive_int("skip", 2 if self.skip is None else self.skip, minimum=2))
        elif self.skip is not None:
            raise ValueError(f"skip: applies to cell='skip' only, got skip={self.skip} with cell={self.cell!r}")
        for name in ("input_size", "hidden_size", "output_size", "num_layers"):
            self._store(name, checks.positive_int(name, getattr(self, name)))
        if self.embedding_dim is not None:
            self._store("embedding_dim", checks.positive_int("embedding_dim", self.embedding_dim))
        for name in ("tie_weights", "bidirectional", "learn_init_state"):
            self._store(name, checks.flag(name, getattr(self, name)))
        if self.proj_size is not None:
            if self.cell != "lstm":
                raise ValueError(f"proj_size: applies to cell='lstm' only, got proj_size={self.proj_size} with "
                                 f"cell={self.cell!r}")
            self._store("proj_size", checks.positive_int("proj_size", self.proj_size))
            if self.proj_size >= self.hidden_size:
                raise ValueError(f"proj_size: expected a size below hidden_size={self.hidden_size} (as PyTorch's), "
                                 f"got {self.proj_size}")
        self._check_adaptive()
        self._check_precision()
        if self.tie_weights and (self.embedding_dim != self.width or self.output_size != self.input_size):
            size = "hidden_size" if self.width == self.hidden_size else (
                f"the readout's input size {self.width} ({'2 directions x ' * self.bidirectional}"
                f"{'proj_size' if self.proj_size else 'hidden_size'})")
            raise ValueError(f"tie_weights: needs embedding_dim == {size} and output_size == input_size "
                             f"(the readout reuses E); got embedding_dim={self.embedding_dim}, "
                             f"hidden_size={self.hidden_size}, input_size={self.input_size}, "
                             f"output_size={self.output_size}")

    def _check_adaptive(self):
        """cutoffs, div_value, head_bias: the adaptive softmax's layout (reference.adaptive.check_layout),
        the cutoffs kept as a tuple of plain ints; not with a tied readout (E is no adaptive softmax)."""
        self._store("head_bias", checks.flag("head_bias", self.head_bias))
        if self.cutoffs is None:
            if self.div_value != 4.0 or self.head_bias:
                raise ValueError("div_value, head_bias: apply to the adaptive softmax only (give cutoffs)")
            return
        layout = adaptive.check_layout(self.width, self.output_size, self.cutoffs, self.div_value, self.head_bias)
        self._store("cutoffs", tuple(int(c) for c in layout.cutoffs))
        self._store("div_value", float(self.div_value))
        if self.tie_weights:
            raise ValueError("tie_weights: the readout is the adaptive softmax (cutoffs), which has no matrix to "
                             "share with the embedding; leave tie_weights False or cutoffs None")

    def _check_precision(self):
        """precision: "float32", or "bf16" on the fast engine, with the full readout, on a CPU that has
        AVX512-BF16 (bptt.fast.bf16.require)."""
        checks.one_of("precision", self.precision, PRECISIONS)
        if self.precision == "float32":
            return
        if self.engine != "fast":
            raise ValueError(f"precision: 'bf16' runs on the fast engine (its bf16 kernels); got engine="
                             f"{self.engine!r}{' (the skip RNN has only the reference cells)' * (self.cell == 'skip')}")
        if self.cutoffs:
            raise ValueError("precision: 'bf16' runs the full readout; the adaptive softmax (cutoffs) is float32 only")
        from ..fast import bf16
        bf16.require("precision")

    @property
    def computing(self):
        """The keyword arguments that carry the precision to the fast engine's cells and readout: none
        for float32 (the reference cells take none)."""
        return {} if self.precision == "float32" else {"precision": self.precision}

    def _store(self, name, value):
        """Set a field of this frozen Arch to its checked value: a plain int or bool whatever NumPy type
        was given (np.int64 is not JSON in a saved network's metadata, nor an int in an ONNX shape)."""
        object.__setattr__(self, name, value)

    @property
    def spec(self):
        """The cell's declarations, from its reference module: GATE_NAMES, GATES, EXTRA, OPTIONS, state_names."""
        return CELLS[self.cell]

    @property
    def backend(self):
        """The engine this network runs on (Backend): chosen once, by name."""
        return backend(self.engine)

    @property
    def module(self):
        """The cell's functions on this engine."""
        return self.backend.cells[self.cell]

    @property
    def matmul(self):
        """The product for the readout: NumPy's, or the fast engine's (bptt.fast.matmul, on the same
        threads as its time loops)."""
        if self.precision == "float32":
            return self.backend.matmul
        return functools.partial(self.backend.matmul, precision=self.precision)

    @property
    def options(self):
        """The Arch fields the cell's forward takes (its OPTIONS), with their values."""
        return {name: getattr(self, name) for name in self.spec.OPTIONS}

    @property
    def state_names(self):
        """The parts of a layer's state: ("h",), ("h", "c") for the LSTM, the last s h's for the skip RNN."""
        return self.spec.state_names(**self.options)

    @property
    def directions(self):
        """D: 2 for a bidirectional network (forwards, then backwards in time), else 1."""
        return 2 if self.bidirectional else 1

    @property
    def out_size(self):
        """The size of one direction's output h_t: proj_size with projections, else hidden_size."""
        return self.proj_size or self.hidden_size

    @property
    def width(self):
        """The size of a layer's output, the next layer's and the readout's input: D out_size."""
        return self.directions * self.out_size

    @property
    def state_sizes(self):
        """The size of each state part (state_names): out_size for h (h_{t-1}, ... for the skip RNN),
        hidden_size for the LSTM's cell state c."""
        return tuple(self.hidden_size if name == "c" else self.out_size for name in self.state_names)

    def layer_input_size(self, k):
        if k > 0:
            return self.width
        return self.embedding_dim or self.input_size

    def layer_names(self, k):
        """The prefixes of layer k's parameters, one per direction: l{k}, and l{k}_reverse."""
        return (f"l{k}", f"l{k}_reverse")[:self.directions]

    def param_shapes(self):
        G, H, P = self.spec.GATES * self.hidden_size, self.hidden_size, self.out_size
        shapes = {}
        if self.embedding_dim:
            shapes["E"] = (self.input_size, self.embedding_dim)
        for k in range(self.num_layers):
            for name in self.layer_names(k):
                shapes |= {f"{name}.W": (G, self.layer_input_size(k)), f"{name}.U": (G, P),
                           f"{name}.b": (G,), f"{name}.b_U": (G,)}
                shapes |= {f"{name}.{extra}": (H, H) for extra in self.spec.EXTRA}     # the skip RNN's S
                if self.proj_size:
                    shapes[f"{name}.R"] = (P, H)
        if self.cutoffs:
            shapes |= adaptive.param_shapes(self.width, self.output_size, self.cutoffs, self.div_value,
                                            self.head_bias)
        else:
            if not self.tie_weights:
                shapes["V"] = (self.output_size, self.width)
            shapes["c"] = (self.output_size,)
        if self.learn_init_state:
            rows = self.num_layers * self.directions
            shapes |= {f"init.{name}": (rows, size) for name, size in zip(self.state_names, self.state_sizes)}
        return shapes


class Result(NamedTuple):
    loss: float
    grads: dict          # same keys and shapes as params
    state: object        # final state, public layout: (L, B, H), or (h, c) for lstm
    dx: object           # dL/dx (T, B, D) for float inputs, else None
    dstate0: object      # dL/d(initial state), same layout as state
    dhs: list | None = None   # with trace=True: dL/dh^l_t (T, B, H) for each layer l, bottom first


def init_params(arch, rng, dtype):
    """PyTorch's defaults: nn.Embedding N(0, 1); cells uniform(±1/sqrt(hidden_size)) (the projection
    R too); nn.Linear uniform(±1/sqrt(its input size)). A learned initial state starts at zero."""
    params = {}
    if arch.embedding_dim:
        params["E"] = rng.standard_normal((arch.input_size, arch.embedding_dim)).astype(dtype)
    projection = {"proj_size": arch.proj_size} if arch.proj_size else {}
    for k in range(arch.num_layers):
        for name in arch.layer_names(k):
            p = arch.spec.init_params(rng, arch.layer_input_size(k), arch.hidden_size, dtype, **projection)
            params |= {f"{name}.{symbol}": a for symbol, a in p.items()}
    if arch.cutoffs:
        params |= adaptive.init_params(rng, arch.width, arch.output_size, arch.cutoffs, arch.div_value,
                                       arch.head_bias, dtype)
    else:
        bound = 1.0 / np.sqrt(arch.width)
        if not arch.tie_weights:
            params["V"] = rng.uniform(-bound, bound, (arch.output_size, arch.width)).astype(dtype)
        params["c"] = rng.uniform(-bound, bound, (arch.output_size,)).astype(dtype)
    shapes = arch.param_shapes()
    params |= {name: np.zeros(shapes[name], dtype) for name in shapes if name.startswith("init.")}
    return params


def param_dtype(params):
    """The parameters' one dtype (checks.params has checked that they share it)."""
    return next(iter(params.values())).dtype


def readout_weights(params):
    return params["V"] if "V" in params else params["E"]


def adaptive_params(params, arch):
    """The adaptive softmax's parameters of params (head.V, tail1.P, ...), as reference.adaptive takes them."""
    return {name: params[name] for name in adaptive.param_shapes(arch.width, arch.output_size, arch.cutoffs,
                                                                  arch.div_value, arch.head_bias)}


def adaptive_math(arch):
    """The engine's adaptive softmax (bptt.fast.adaptive on the fast engine), else reference.adaptive."""
    return arch.backend.adaptive or adaptive


def readout(params, arch, h):
    """(1) z = V h + c for every row of h (..., H) -> (..., K), with the engine's product. With the
    adaptive softmax: its exact log-probabilities log p(k) for every class (reference.adaptive.log_probs),
    which a softmax (sampling, the loss) turns back into the same distribution."""
    if arch.cutoffs:
        logp = adaptive_math(arch).log_probs(adaptive_params(params, arch), h.reshape(-1, h.shape[-1]))
        return logp.reshape(h.shape[:-1] + logp.shape[-1:])
    z = arch.matmul(h.reshape(-1, h.shape[-1]), readout_weights(params).T) + params["c"]
    return z.reshape(h.shape[:-1] + z.shape[-1:])


def readout_backward(params, arch, h, dz):
    """(1b) Given dz = dL/dz for the rows h (N, H): dV = dz^T h, dc = sum of dz, dh = dz V."""
    return arch.matmul(dz.T, h), dz.sum(axis=0), arch.matmul(dz, readout_weights(params))


def readout_loss(params, arch, h, y, w, loss):
    """(1), the loss and (1b) for the readout rows h (N, H) with targets y and weights w:
    (L, the readout's gradients {"V": dV, "c": dc} (or the adaptive softmax's), dh). The fast engine
    fuses the full readout with cross-entropy (bptt.fast.readout)."""
    if arch.cutoffs:
        return adaptive_math(arch).loss_and_grads(adaptive_params(params, arch), h, y, w)   # (A1)-(A7), (A1b)-(A5b)
    fused = arch.backend.cross_entropy
    if fused is not None and loss == "cross_entropy":
        value, dV, dc, dh = fused(h, readout_weights(params), params["c"], y, w, **arch.computing)
    else:
        value, dz = losses.apply(loss, readout(params, arch, h), y, w)
        dV, dc, dh = readout_backward(params, arch, h, dz)
    return value, {"V": dV, "c": dc}, dh


def readout_log_likelihood(params, arch, h, y):
    """(1) and the log-softmax, forward only, for the rows h (N, H) with class ids y (N,):
    (log p(y_n) (N,) float64, the argmax class (N,)). The fast engine fuses them (bptt.fast.readout)
    and keeps nothing of the size of the logits; the reference computes z and log_softmax in float64."""
    if arch.cutoffs:
        return adaptive_math(arch).log_likelihood(adaptive_params(params, arch), h, y)
    fused = arch.backend.log_likelihood
    if fused is not None:
        return fused(h, readout_weights(params), params["c"], y)
    z = readout(params, arch, h).astype(np.float64)
    return np.take_along_axis(losses.log_softmax(z), y[:, None], axis=1)[:, 0], z.argmax(axis=1)


def layer(params, k, reverse=False):
    """Layer k's parameters without their prefix ({"W", "U", ...}): its forward direction's, or with
    reverse=True its reverse direction's (bidirectional)."""
    prefix = f"l{k}_reverse." if reverse else f"l{k}."
    return {name[len(prefix):]: a for name, a in params.items() if name.startswith(prefix)}


class Batch(NamedTuple):
    """Validated inputs of one call."""

    x: np.ndarray                   # (T, B) ids or (T, B, D) floats, padding zeroed
    state: tuple                    # parts of the initial state, each (L, B, H)
    mask: np.ndarray | None         # (T, B, 1) True on real steps (lengths)
    reset: np.ndarray | None        # (T, B, 1) True where a row starts from a zero state
    order: np.ndarray | None = None  # the rows above are the caller's rows in this order (None: as given)
    learned: bool = False           # the initial state is the parameters init.* (learn_init_state, no state given)
    flip: np.ndarray | None = None  # bidirectional with lengths: the reversal of each row's steps (reversal_index)


def prepare(params, arch, x, state, lengths, reset=None):
    """Validate and convert the inputs shared by every entry point, the parameters first (keys,
    shapes, one dtype: checks.params); every function that runs the layers starts here.

    With lengths the engine may run the rows in another order (Backend.row_order: the fast engine
    sorts them by length, so that a row that has ended costs nothing, bptt.fast.common.live_rows):
    every per-row input is reordered here, and restore() puts every per-row output back."""
    dtype = checks.params(params, arch.param_shapes())
    if arch.precision == "bf16" and dtype != np.float32:
        raise ValueError(f"precision: 'bf16' keeps float32 master weights and sums; the parameters are {dtype.name}")
    x, T, B = checks.inputs(x, arch.input_size, arch.embedding_dim is not None, dtype)
    mask = checks.lengths_mask(lengths, T, B)
    x = checks.valid_inputs(x, arch.input_size, mask)
    learned = state is None and arch.learn_init_state
    if learned:                                   # every row starts from the learned state: (L D, B, size) each
        parts = tuple(np.repeat(params[f"init.{name}"][:, None], B, axis=1) for name in arch.state_names)
    else:
        parts = checks.state(state, arch.state_names, arch.num_layers * arch.directions, B, arch.state_sizes, dtype)
    if reset is not None:
        reset = checks.bool_mask("reset", reset, T, B)[:, :, None]
        refuse_reset(arch, learned)
    order = None if mask is None else arch.backend.row_order(mask[:, :, 0].sum(axis=0))
    if order is not None:
        x, parts, mask = x[:, order], tuple(s[:, order] for s in parts), mask[:, order]
        reset = None if reset is None else reset[:, order]
    flip = None if mask is None or not arch.bidirectional else reversal_index(mask[:, :, 0].sum(axis=0), T)
    return Batch(x, parts, mask, reset, order, learned, flip)


def refuse_reset(arch, learned):
    """A reset mask (rows restarting from a zero state inside the window: document boundaries of a
    language model) has no meaning for a bidirectional network, and would bypass a learned state."""
    if arch.bidirectional:
        raise ValueError("reset: a bidirectional network reads each whole sequence both ways; rows cannot restart "
                         "inside it (give each sequence its own row, with lengths)")
    if learned:
        raise ValueError("reset: rows would restart from zeros, not from the learned initial state "
                         "(learn_init_state); give each sequence its own row, with lengths")


def reversal_index(lengths, T):
    """(T, B) int: the step of row b that the reverse direction reads at its step t: lengths[b] - 1 - t
    while t < lengths[b], then t itself (the padding stays where it is, so the reverse direction holds
    its state there as the forward one does). Its own inverse."""
    t = np.arange(T)[:, None]
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def reversed_in_time(a, flip):
    """a (T, B, ...) (or Embedded inputs, their ids) with each row's steps in reverse order: the whole
    window (flip None) or each row's first lengths[b] steps (flip: reversal_index)."""
    if isinstance(a, Embedded):
        return Embedded(a.E, reversed_in_time(a.ids, flip))
    if flip is None:
        return np.ascontiguousarray(a[::-1])
    return np.take_along_axis(a, flip.reshape(flip.shape + (1,) * (a.ndim - 2)), axis=0)


def restore(batch, a):
    """A per-row output of the engine (rows on axis 1: (T, B, ...), (L, B, H)), or a tuple of them,
    in the caller's order of rows (prepare)."""
    if batch.order is None or a is None:
        return a
    if isinstance(a, tuple):
        return tuple(restore(batch, p) for p in a)
    return np.take(a, np.argsort(batch.order), axis=1)


def dropout_masks(arch, batch, p, rng, dtype, rows=None):
    """Inverted-dropout masks for the inputs of layers 0..L-1 and the readout (None: no dropout there).
    rng: a np.random.Generator, or an int seed (the same masks on every call, for checks).
    rows (start, stop, of): the batch is rows start..stop of a batch of `of` rows; the masks of all
    `of` are drawn and these rows' kept (a rank of data-parallel training, bptt.training.ranks: the
    same masks as one process with the whole batch)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: expected a probability in [0, 1), got {p}")
    if p == 0:
        return [None] * (arch.num_layers + 1)
    rng = regularisers.generator(rng, "dropout")
    T, B = batch.x.shape[:2]
    drawn, keep = regularisers.rows_drawn(rows, B)
    sizes = [None if batch.x.ndim == 2 and not arch.embedding_dim else arch.layer_input_size(0)]
    sizes += [arch.width] * arch.num_layers
    masks = [None if n is None else regularisers.kept(rng.random((T, drawn, n))[:, keep], p, dtype) for n in sizes]
    if batch.order is not None:                   # drawn for the caller's rows, whatever order they run in
        masks = [None if m is None else m[:, batch.order] for m in masks]
    return masks


def training_masks(arch, batch, dtype, dropout, rng, rows, opts):
    """Every random mask of a call (regularisers.Masks), from one generator: the per-step dropout
    masks, then AWD-LSTM's (regularisers.draw, in the order its docstring gives). A locked rate
    (dropout_input, dropout_hidden, dropout_output) replaces the per-step dropout, so both at once
    are refused."""
    if dropout > 0 and opts.locked:
        raise ValueError(f"dropout: per-step dropout ({dropout}) and locked dropout (dropout_input, dropout_hidden, "
                         f"dropout_output) apply to the same inputs; give one of the two")
    if not opts.masked:
        return regularisers.Masks(dropout_masks(arch, batch, dropout, rng, dtype, rows), {})
    rng = regularisers.generator(rng, next(name for name in regularisers.RATES if getattr(opts, name) > 0))
    return regularisers.draw(arch, batch, opts, rng, dtype, rows, dropout_masks(arch, batch, dropout, rng, dtype, rows))


def folds_embedding(arch, drops, x):
    """Whether the first layer reads Embedded(E, ids) instead of the gathered rows E[ids] (x: the
    ids, (T, B)). A compiled cell projects a (V, D) table once per window (bptt.fast.window) when
    that is the cheaper: its three (V, D) x (D, G) products (the table, dW, dE) against the same
    products over the T B gathered rows, so when V <= T B; and never when dropout applies to the
    embedding. The reference cells (the skip RNN's on the fast engine too) take the rows."""
    return (arch.backend.folds_embedding and arch.embedding_dim is not None and drops[0] is None
            and arch.input_size <= x.shape[0] * x.shape[1])


def forward_layers(params, arch, batch, drops, inputs=None, states=None):
    """Embedding and L layers. Returns the readout's input (T, B, D H), the final state parts
    (L D, B, ...), and the caches (L D of them: layer k's directions at k D, k D + 1).
    inputs: None, or a list that receives each layer's input, bottom first. states: None, or a list
    that receives each layer's and direction's state parts at every step (step_states)."""
    x = batch.x
    if folds_embedding(arch, drops, x):
        xs = Embedded(params["E"], x)
    else:
        xs = gather_rows(params["E"], x) if arch.embedding_dim else x
    final, caches = [], []
    for k in range(arch.num_layers):
        if drops[k] is not None:
            xs = xs * drops[k]
        if inputs is not None:
            inputs.append(xs)
        outputs = []
        for d in range(arch.directions):
            state0 = tuple(s[k * arch.directions + d] for s in batch.state)
            xs_d = reversed_in_time(xs, batch.flip) if d else xs              # the reverse direction's order
            hs, state_T, cache = arch.module.forward(layer(params, k, reverse=d == 1), xs_d, state0, batch.mask,
                                                     batch.reset, **arch.options, **arch.computing)
            outputs.append(reversed_in_time(hs, batch.flip) if d else hs)     # back in the original order
            if states is not None:
                states.append(tuple(reversed_in_time(a, batch.flip) if d else a for a in step_states(arch, hs, cache)))
            final.append(state_T)
            caches.append(cache)
        xs = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=-1)    # [h_fwd; h_bwd]
    if drops[-1] is not None:
        xs = xs * drops[-1]
    return xs, tuple(np.stack(s) for s in zip(*final)), caches


def backward_layers(params, arch, x, dhs, caches, drops, clip_dh=None, traces=None, dstate_T=None, flip=None):
    """From dL/d(readout input) (T, B, D H) down the stack. Returns (grads, dx, dstate0 parts).
    traces: None, or one (T, B, D H) array per layer to receive dL/dh^l_t. dstate_T: None (zeros), or
    the gradient arriving at the final state, parts of (L D, B, ...) (a later segment's dstate0).
    flip: the batch's reversal_index (bidirectional with lengths)."""
    grads, dstate0 = {}, [None] * (arch.num_layers * arch.directions)
    if drops[-1] is not None:
        dhs = dhs * drops[-1]
    folded = folds_embedding(arch, drops, x)
    W = arch.out_size
    for k in reversed(range(arch.num_layers)):
        d_input = None
        for d in reversed(range(arch.directions)):
            i = k * arch.directions + d
            dhs_d = dhs if arch.directions == 1 else np.ascontiguousarray(dhs[..., d * W:(d + 1) * W])
            if d:
                dhs_d = reversed_in_time(dhs_d, flip)
            if dstate_T is None:
                d_final = tuple(np.zeros((dhs.shape[1], size), dhs.dtype) for size in arch.state_sizes)
            else:
                d_final = tuple(s[i] for s in dstate_T)
            trace = None if traces is None else traces[k] if arch.directions == 1 else np.empty_like(dhs_d)
            dxs, dstate0[i], g = arch.module.backward(layer(params, k, reverse=d == 1), dhs_d, d_final, caches[i],
                                                      clip_dh, trace, **arch.computing)
            if d and dxs is not None and not (k == 0 and folded):    # dE (V, D) has no time axis
                dxs = reversed_in_time(dxs, flip)
            d_input = dxs if d_input is None else d_input + dxs
            if trace is not None and arch.directions == 2:
                traces[k][..., d * W:(d + 1) * W] = reversed_in_time(trace, flip) if d else trace
            grads |= {f"{arch.layer_names(k)[d]}.{name}": a for name, a in g.items()}
        dhs = d_input
        if drops[k] is not None:
            dhs = dhs * drops[k]
    if folded:
        grads["E"], dhs = dhs, None                                  # layer 0 gave dE (V, D) itself
    elif arch.embedding_dim:
        grads["E"] = arch.backend.scatter_rows(arch.input_size, x, dhs)
        dhs = None
    return grads, dhs, tuple(np.stack(s) for s in zip(*dstate0))


def step_states(arch, hs, cache):
    """A layer's state parts at every step, (T, B, size) each: h_t, and c_t for the LSTM (its cache's
    cs, the same in both engines' caches)."""
    return (hs, cache[3]) if "c" in arch.state_names else (hs,)


def public_state(parts):
    return parts[0] if len(parts) == 1 else parts


def logits(params, arch, x, state=None, lengths=None, reset=None, return_states=False):
    """z_t for every step: (T, B, K), and the final state. No cache is kept. return_states: also the
    state of every layer at every step, {"h": (L D, T, B, H)} and "c" for the LSTM (layer k's forward
    direction at k D, its reverse at k D + 1, as in the final state); a row past its length holds
    its state, as the cells do (the reverse direction there holds its final state)."""
    batch = prepare(params, arch, x, state, lengths, reset)
    states = [] if return_states else None
    hs, final, _ = forward_layers(params, arch, batch, [None] * (arch.num_layers + 1), states=states)
    out = restore(batch, readout(params, arch, hs)), public_state(restore(batch, final))
    if not return_states:
        return out
    per_step = {name: np.stack([restore(batch, a) for a in parts]) for name, parts in zip(("h", "c"), zip(*states))}
    return (*out, per_step)


def last_logits(params, arch, x, state=None, lengths=None):
    """The many-to-one readout z (B, K) of every row, from what it holds at its last step (last_step:
    both final states for a bidirectional network), as loss_and_grads(target="last") reads it."""
    batch = prepare(params, arch, x, state, lengths)
    hs, _, _ = forward_layers(params, arch, batch, [None] * (arch.num_layers + 1))
    return restore(batch, readout(params, arch, last_step(hs, arch.directions))[None])[0]


def evaluating(params, arch):
    """A context, entered once or around each call, for many forward passes with unchanging params
    (an evaluation over many windows, a sample token by token): the fast engine packs each weight
    once for all of them instead of once per call (bptt.fast.packed.frozen). params must not be
    modified while it is in use."""
    return arch.backend.frozen(list(params.values()))


class Score(NamedTuple):
    total: float         # -sum of log p(y) over the positions with a target, in nats (float64)
    count: int           # how many positions have a target
    correct: int         # at how many of them the most likely class is y
    state: object        # the final state, as logits() returns it


def score(params, arch, x, y, state=None, target="every", lengths=None, reset=None):
    """Forward only, for evaluation: the summed cross-entropy of class ids y, the positions counted,
    the correct predictions and the final state. y as for loss_and_grads (T, B) or (B,); with
    lengths, padding is not counted. No cache is kept beyond a window's, no logits beyond the
    readout's working set (readout_log_likelihood)."""
    batch, y, _ = prepare_loss(params, arch, x, y, state, target, "cross_entropy", lengths, reset, None)
    hs, final, _ = forward_layers(params, arch, batch, [None] * (arch.num_layers + 1))
    if target == "last":
        h = last_step(hs, arch.directions)            # each row's own last state (held past its length)
    elif batch.mask is None:
        h = hs.reshape(-1, hs.shape[-1])
    else:
        counted = batch.mask.reshape(-1)
        h, y = hs.reshape(-1, hs.shape[-1])[counted], y[counted]
    logp, predicted = readout_log_likelihood(params, arch, h, y)
    return Score(-float(logp.sum()), int(y.size), int((predicted == y).sum()), public_state(restore(batch, final)))


def final_state(params, arch, x, state=None, reset=None):
    """The state after running x from state: the truncation point of the next window (no readout)."""
    batch = prepare(params, arch, x, state, None, reset)
    return public_state(forward_layers(params, arch, batch, [None] * (arch.num_layers + 1))[1])


def counted_positions(T, B, mask, loss_mask):
    """(T, B) bool: the positions with a target (target="every"): on a real step (mask (T, B, 1),
    from lengths) and in loss_mask (T, B), each None for all."""
    counted = np.ones((T, B), bool)
    if mask is not None:
        counted &= mask[:, :, 0]
    if loss_mask is not None:
        counted &= loss_mask
    return counted


def targets_counted(T, B, target="every", lengths=None, loss_mask=None):
    """How many targets the mean loss of a batch (T, B) averages over: B with target="last"; with
    target="every", the counted_positions. Data-parallel training weights each rank's mean by its
    share of them (bptt.training.ranks)."""
    if target == "last":
        return B
    mask = None if lengths is None else (np.arange(T)[:, None] < np.asarray(lengths)[None, :])[:, :, None]
    return int(counted_positions(T, B, mask, loss_mask).sum())


def position_weights(T, B, mask, loss_mask):
    """Each position's weight (T, B) in the mean over the positions with a target (target="every")."""
    counted = counted_positions(T, B, mask, loss_mask)
    n = counted.sum()
    if n == 0:
        raise ValueError("loss_mask: no position left with a target (all masked or padding)")
    return counted / n


def last_step(hs, directions):
    """What a many-to-one readout reads, (B, D H): each row's state at its last step (held there past
    its length), and for a bidirectional network the reverse direction's at step 0, where it ends:
    [h_fwd at the last step; h_bwd at step 0], the final states (PyTorch's h_n)."""
    if directions == 1:
        return hs[-1]
    W = hs.shape[-1] // 2
    return np.concatenate([hs[-1, :, :W], hs[0, :, W:]], axis=1)


def readout_rows(hs, target, mask, loss_mask, directions=1):
    """The readout inputs that carry a target, (N, D H), and their weights w (N,) in the mean."""
    T, B, H = hs.shape
    if target == "last":
        return last_step(hs, directions), np.full(B, 1.0 / B, hs.dtype)     # N = B: each row's own last step
    return hs.reshape(T * B, H), position_weights(T, B, mask, loss_mask).reshape(-1).astype(hs.dtype)


def steps_gradient(dh, hs, target, directions=1):
    """dL/dh_t from the readout for every t (T, B, D H), given dh of the rows readout_rows chose."""
    if target == "every":
        return dh.reshape(hs.shape)
    dhs = np.zeros_like(hs)
    W = hs.shape[-1] // directions
    dhs[-1, :, :W] = dh[:, :W]                    # last_step's backward: h_fwd at the last step,
    dhs[0, :, W:] = dh[:, W:]                     # h_bwd at step 0
    return dhs


def prepare_loss(params, arch, x, y, state, target, loss, lengths, reset, loss_mask, clip_dh=None):
    checks.one_of("target", target, checks.TARGETS)
    checks.one_of("loss", loss, losses.LOSSES)
    if arch.cutoffs and loss != "cross_entropy":
        raise ValueError(f"loss: the adaptive softmax (cutoffs) is a distribution over classes, trained by "
                         f"cross_entropy; got loss={loss!r} (use the full readout, cutoffs=None)")
    if clip_dh is not None and not clip_dh > 0:
        raise ValueError(f"clip_dh: expected a positive number or None, got {clip_dh}")
    batch = prepare(params, arch, x, state, lengths, reset)
    T, B = batch.x.shape[:2]
    if loss_mask is not None:
        if target != "every":
            raise ValueError(f"loss_mask: applies to target='every' only, got target={target!r}")
        loss_mask = checks.bool_mask("loss_mask", loss_mask, T, B)
    y = checks.targets(y, target, loss, T, B, arch.output_size, param_dtype(params), restore(batch, batch.mask))
    if batch.order is not None:                   # the targets of the rows in the order they run in
        y = y[batch.order] if target == "last" else y.reshape((T, B) + y.shape[1:])[:, batch.order].reshape(y.shape)
        loss_mask = None if loss_mask is None else loss_mask[:, batch.order]
    return batch, y, loss_mask


def loss_value(params, arch, x, y, state=None, target="every", loss="cross_entropy", lengths=None, *,
               reset=None, loss_mask=None, dropout=0.0, rng=None, dropout_rows=None, **regularise):
    """The loss alone (for finite differences and evaluation): forward, readout, loss (and AR, TAR)."""
    batch, y, loss_mask = prepare_loss(params, arch, x, y, state, target, loss, lengths, reset, loss_mask)
    opts = regularisers.options(**regularise)
    masks = training_masks(arch, batch, param_dtype(params), dropout, rng, dropout_rows, opts)
    hs, _, _ = forward_layers(regularisers.dropped_weights(params, masks.weights), arch, batch,
                              masks.drops[:-1] + [None])                # the top layer's output before dropout
    dropped = hs if masks.drops[-1] is None else hs * masks.drops[-1]
    h, w = readout_rows(dropped, target, batch.mask, loss_mask, arch.directions)
    penalty = regularisers.activation_value(hs, masks.drops[-1], opts)                  # AR, TAR
    return penalty + losses.apply(loss, readout(params, arch, h), y, w)[0]


def loss_and_grads(params, arch, x, y, state=None, target="every", loss="cross_entropy", lengths=None, *,
                   reset=None, loss_mask=None, dropout=0.0, rng=None, dropout_rows=None, clip_dh=None,
                   trace=False, recompute_every=None, memory_budget=None, memory_slots=None, algorithm="bptt",
                   seed=None, **regularise):
    """Loss, gradients of every parameter, of the float inputs and of the initial state, by BPTT.

    regularise: AWD-LSTM's options (regularisers.Options, each 0 by default, masks from rng):
    weight_drop (DropConnect on every U), dropout_input, dropout_hidden, dropout_output (locked
    dropout: one mask per row for the window, in place of the per-step dropout), dropout_embedding
    (whole rows of E), alpha (AR) and beta (TAR), both added to the loss returned.

    reset (T, B) bool: rows that start from a zero state at a step. loss_mask (T, B) bool: positions
    whose target counts (target="every"). dropout with rng: non-recurrent dropout (dropout_rows: the
    batch is some rows of a larger one, dropout_masks). clip_dh: clip
    dL/dh_t elementwise to [-clip_dh, clip_dh] at every step of the recurrence (Mikolov's cutoff).
    trace: also return dL/dh^l_t of every layer (Result.dhs). recompute_every=k: keep the caches of
    k steps at a time and recompute the others in the backward pass (recompute(), below): the same
    gradients in O(T/k + k) memory, with every option above. memory_budget (an int of bytes, "500MB") or
    memory_slots=m: the policy that recomputes least in that memory (model/checkpointing.py), likewise.

    algorithm="rtrl" or "uoro": the gradient carried forward in time instead (model/rtrl.py: RTRL's
    exact one, or UORO's unbiased estimate with its signs from seed, an int or a np.random.Generator),
    for rnn, gru and lstm without the options above; no dx, and no dstate0 from UORO.
    """
    refuse_mixed(recompute_every, memory_budget, memory_slots, algorithm, seed)
    if algorithm != "bptt" or seed is not None:                  # the gradient carried forward in time instead
        return forward_mode(params, arch, x, y, state, target, loss, algorithm, seed, dict(
            lengths=lengths, reset=reset, loss_mask=loss_mask, dropout=dropout, rng=rng, dropout_rows=dropout_rows,
            clip_dh=clip_dh, trace=trace, recompute_every=recompute_every, **regularise))
    batch, y, loss_mask = prepare_loss(params, arch, x, y, state, target, loss, lengths, reset, loss_mask, clip_dh)
    opts = regularisers.options(**regularise)
    masks = training_masks(arch, batch, param_dtype(params), dropout, rng, dropout_rows, opts)
    run, drops = regularisers.dropped_weights(params, masks.weights), masks.drops[:-1] + [None]
    T, B = batch.x.shape[:2]
    traces = [np.empty((T, B, arch.width), param_dtype(params)) for _ in range(arch.num_layers)] if trace else None
    if recompute_every is not None:
        every = checks.positive_int("recompute_every", recompute_every)
        if arch.bidirectional:
            raise ValueError("recompute_every: recomputes the window in segments from its start, which a "
                             "bidirectional network's reverse direction does not have; leave it unset")
        if opts.alpha > 0 or opts.beta > 0:
            raise ValueError("recompute_every: AR and TAR (alpha, beta) read the whole window's output; "
                             "leave recompute_every unset, or alpha and beta at 0")
        return recompute(params, arch, batch, y, target, loss, loss_mask, masks, clip_dh, traces, every)
    slots = memory_policy_slots(arch, batch, params, opts, memory_budget, memory_slots)
    if slots is not None and slots < T:
        return recompute_by_policy(params, arch, batch, y, target, loss, loss_mask, masks, clip_dh, traces, slots)

    hs, final, caches = forward_layers(run, arch, batch, drops)      # the top layer's output before dropout
    dropped = hs if masks.drops[-1] is None else hs * masks.drops[-1]
    h, w = readout_rows(dropped, target, batch.mask, loss_mask, arch.directions)
    value, readout_grads, dh = readout_loss(params, arch, h, y, w, loss)    # (1), (1b) dh (N, D H)
    dhs = steps_gradient(dh, dropped, target, arch.directions)
    value += regularisers.activation_value(hs, masks.drops[-1], opts)                     # AR, TAR
    dhs = regularisers.activation_backward(hs, masks.drops[-1], opts, dhs)                # and dropout's backward
    grads, dx, dstate0 = backward_layers(run, arch, batch.x, dhs, caches, drops, clip_dh, traces,
                                         flip=batch.flip)
    grads = regularisers.weights_backward(grads, masks.weights)
    grads = with_readout(params, with_initial_state(params, arch, batch, grads, dstate0), readout_grads)
    return finished(batch, value, grads, final, dx, dstate0, traces)


def forward_mode(params, arch, x, y, state, target, loss, algorithm, seed, options):
    """loss_and_grads by RTRL or UORO (model/rtrl.py, which refuses the options it does not support):
    the Result, with no dx, and no dstate0 from UORO."""
    how = rtrl.chosen(arch, algorithm, seed, options)
    batch, y, _ = prepare_loss(params, arch, x, y, state, target, loss, None, None, None)
    layers = [layer(params, k) for k in range(arch.num_layers)]
    value, grads, readout_grads, final, dstate0 = rtrl.run(params, layers, readout_weights(params), arch, batch.x,
                                                           batch.state, y, target, loss, how)
    return Result(value, with_readout(params, grads, readout_grads), public_state(final), None,
                  None if dstate0 is None else public_state(dstate0))


def with_initial_state(params, arch, batch, grads, dstate0):
    """The layers' gradients and, with learn_init_state, the initial state's: the sum of dstate0 over
    the rows that started from it, (L D, size) per part; zero when the caller gave the state."""
    for name, ds0 in zip(arch.state_names, dstate0, strict=True):
        if f"init.{name}" in params:
            grads[f"init.{name}"] = ds0.sum(axis=1) if batch.learned else np.zeros_like(params[f"init.{name}"])
    return grads


def finished(batch, value, grads, final, dx, dstate0, traces):
    """The Result, its per-row parts in the caller's order of rows."""
    traces = None if traces is None else [restore(batch, t) for t in traces]
    return Result(value, grads, public_state(restore(batch, final)), restore(batch, dx),
                  public_state(restore(batch, dstate0)), traces)


def recompute(params, arch, batch, y, target, loss, loss_mask, masks, clip_dh, traces, every):
    """BPTT in O(sqrt(T)) memory: gradient checkpointing through time (Chen et al. 2016; Gruslys et
    al. 2016 for RNNs). The T steps are cut into segments of `every` steps:

        forward, keeping only the state at each segment boundary          (T/k states)
        for each segment, last to first:
            run its forward again from its boundary state, keeping the caches     (k steps of caches)
            readout and loss of its positions, backward through it, with the gradient arriving at
            its final state from the segment after it; its dstate0 goes to the segment before it

    Memory: T/k boundary states plus one segment's caches, smallest at k ~ sqrt(T); time: one extra
    forward pass (a third more). The arithmetic is that of full BPTT summed in another order, so the
    gradients agree to round-off. Dropout masks are drawn once for the window and cut like it, so
    the recomputed forward sees the same masks; traces are written segment by segment.
    """
    T, B = batch.x.shape[:2]
    dtype = param_dtype(params)
    segments = [(a, min(a + every, T)) for a in range(0, T, every)]
    drops, run = masks.drops, regularisers.dropped_weights(params, masks.weights)     # the layers' weights

    def part(a, b, state):
        return window_part(batch, drops, a, b, state)

    w = None
    if target == "every":                       # each position's weight in the mean over the window (T, B)
        w = position_weights(T, B, batch.mask, loss_mask).astype(dtype)
        y = y.reshape((T, B) + y.shape[1:])

    boundaries = [batch.state]                  # the state before each segment
    for a, b in segments[:-1]:
        boundaries.append(forward_layers(run, arch, *part(a, b, boundaries[-1]))[1])

    value, grads, carried, final, readout_grads = 0.0, None, None, None, None
    dx = np.empty(batch.x.shape, dtype) if batch.x.ndim == 3 else None
    for i in reversed(range(len(segments))):
        a, b = segments[i]
        seg, seg_drops = part(a, b, boundaries[i])
        hs, state_b, caches = forward_layers(run, arch, seg, seg_drops)      # again, with caches
        final = state_b if final is None else final
        v, seg_grads, dhs = segment_loss(params, arch, hs, y, w, loss, target, (a, b), i == len(segments) - 1)
        value += v
        if seg_grads is not None:
            readout_grads = seg_grads if readout_grads is None else {k: readout_grads[k] + seg_grads[k]
                                                                      for k in readout_grads}
        seg_traces = None if traces is None else [t[a:b] for t in traces]
        g, dx_seg, carried = backward_layers(run, arch, seg.x, dhs, caches, seg_drops, clip_dh, seg_traces,
                                             dstate_T=carried)
        grads = g if grads is None else {k: grads[k] + g[k] for k in grads}
        if dx is not None:
            dx[a:b] = dx_seg
    grads = regularisers.weights_backward(grads, masks.weights)
    grads = with_readout(params, with_initial_state(params, arch, batch, grads, carried), readout_grads)
    return finished(batch, value, grads, final, dx, carried, traces)


def refuse_mixed(recompute_every, memory_budget, memory_slots, algorithm, seed):
    """memory_budget and memory_slots are BPTT's, and not with recompute_every (two policies at once)."""
    if memory_budget is None and memory_slots is None:
        return
    if algorithm != "bptt" or seed is not None:
        raise ValueError(f"memory_budget, memory_slots: BPTT's memory saving; algorithm={algorithm!r} keeps no "
                         f"steps; leave them unset (or use algorithm='bptt')")
    if recompute_every is not None:
        raise ValueError("recompute_every, memory_budget: fixed segments, or the policy for a memory budget "
                         "(memory_budget, memory_slots); give one of the two")


def memory_policy_slots(arch, batch, params, opts, memory_budget, memory_slots):
    """m, the slots of memory_budget or memory_slots (model/checkpointing.py), or None when neither is
    given; refused as recompute_every is where the window cannot be recomputed from its start."""
    if memory_budget is None and memory_slots is None:
        return None
    if memory_budget is not None and memory_slots is not None:
        raise ValueError("memory_budget, memory_slots: the same memory in bytes or in slots; give one of the two")
    name = "memory_budget" if memory_budget is not None else "memory_slots"
    if arch.bidirectional:
        raise ValueError(f"{name}: recomputes the window in segments from its start, which a bidirectional "
                         f"network's reverse direction does not have; leave it unset")
    if opts.alpha > 0 or opts.beta > 0:
        raise ValueError(f"{name}: AR and TAR (alpha, beta) read the whole window's output; leave {name} unset, "
                         f"or alpha and beta at 0")
    if memory_slots is not None:
        return checks.positive_int("memory_slots", memory_slots)
    return checkpointing.slots_for(arch, batch.x.shape[1], param_dtype(params), memory_budget, batch.x.shape[0])


def recompute_by_policy(params, arch, batch, y, target, loss, loss_mask, masks, clip_dh, traces, slots):
    """BPTT in `slots` slots of memory by the policy that recomputes least (checkpointing.plan: Gruslys
    et al. 2016): its operations in order, "advance" (forward from a kept state, no caches, in chunks
    of at most the free slots; keep the state reached), "leaf" (forward with caches from a kept state,
    the loss of its steps, backward with the gradient carried from the steps after it), "drop".
    Leaves run last to first, as recompute()'s segments; the same masks, traces, sums."""
    T, B = batch.x.shape[:2]
    dtype = param_dtype(params)
    run = regularisers.dropped_weights(params, masks.weights)
    w = position_weights(T, B, batch.mask, loss_mask).astype(dtype) if target == "every" else None
    y = y.reshape((T, B) + y.shape[1:]) if target == "every" else y
    kept, acc = {0: batch.state}, dict(value=0.0, grads=None, readout=None, carried=None, final=None)
    dx = np.empty(batch.x.shape, dtype) if batch.x.ndim == 3 else None
    for op in checkpointing.plan(T, slots):
        if op.kind == "drop":
            del kept[op.a]
        elif op.kind == "advance":
            state = kept[op.a]
            for a in range(op.a, op.b, op.chunk):
                state = forward_layers(run, arch, *window_part(batch, masks.drops, a, min(a + op.chunk, op.b),
                                                               state))[1]
            kept[op.b] = state
        else:
            seg, seg_drops = window_part(batch, masks.drops, op.a, op.b, kept[op.a])
            hs, state_b, caches = forward_layers(run, arch, seg, seg_drops)
            acc["final"] = state_b if op.b == T else acc["final"]
            v, seg_grads, dhs = segment_loss(params, arch, hs, y, w, loss, target, (op.a, op.b), op.b == T)
            acc["value"] += v
            acc["readout"] = summed(acc["readout"], seg_grads)
            seg_traces = None if traces is None else [t[op.a:op.b] for t in traces]
            g, dx_seg, acc["carried"] = backward_layers(run, arch, seg.x, dhs, caches, seg_drops, clip_dh, seg_traces,
                                                        dstate_T=acc["carried"])
            acc["grads"] = summed(acc["grads"], g)
            if dx is not None:
                dx[op.a:op.b] = dx_seg
    grads = regularisers.weights_backward(acc["grads"], masks.weights)
    grads = with_readout(params, with_initial_state(params, arch, batch, grads, acc["carried"]), acc["readout"])
    return finished(batch, acc["value"], grads, acc["final"], dx, acc["carried"], traces)


def window_part(batch, drops, a, b, state):
    """Steps a..b of the window as a Batch starting from state, and the dropout masks of those steps
    (a locked mask (1, B, n) is every step's)."""
    def cut(m):
        return m if m is None or m.shape[0] == 1 else m[a:b]
    return (Batch(batch.x[a:b], state, cut(batch.mask), cut(batch.reset), batch.order, batch.learned),
            [cut(m) for m in drops])


def summed(total, part):
    """Gradients added key by key (None: nothing yet, or nothing to add)."""
    if part is None or total is None:
        return part if total is None else total
    return {k: total[k] + part[k] for k in total}


def segment_loss(params, arch, hs, y, w, loss, target, span, last):
    """A segment's share of the loss and its gradients (recompute): (value, the readout's gradients
    (None: the segment has no target), dL/dh_t for its steps (k, B, H)). target="every": its positions
    (a, b) = span of y (T, B, ...), weighted by w (T, B); many-to-one: the loss at the last step of the
    last segment, none before it."""
    a, b = span
    if target == "every":
        h, y_seg, w_seg = hs.reshape(-1, hs.shape[-1]), y[a:b].reshape((-1,) + y.shape[2:]), w[a:b].reshape(-1)
    elif last:
        B = hs.shape[1]
        h, y_seg, w_seg = hs[-1], y, np.full(B, 1.0 / B, param_dtype(params))     # one direction (not bidirectional)
    else:
        return 0.0, None, np.zeros_like(hs)
    v, readout_grads, dh = readout_loss(params, arch, h, y_seg, w_seg, loss)
    return v, readout_grads, steps_gradient(dh, hs, target)


def with_readout(params, grads, readout_grads):
    """The layers' gradients completed with the readout's ({"V", "c"}, or the adaptive softmax's),
    ordered as params. With tied embeddings the readout's dV belongs to E, which is both ends of the
    network."""
    readout_grads = dict(readout_grads)
    if "E" in grads and "V" in readout_grads and "V" not in params:
        grads = grads | {"E": grads["E"] + readout_grads.pop("V")}
    grads = grads | readout_grads
    return {name: grads[name] for name in params}
