"""The network around the cells: input, a stack of L layers, the readout and the loss.

    x_t    token ids (one-hot, or rows of an embedding E) or float features
    h^0_t  = x_t  (or E[x_t]);  h^l_t = cell(h^{l-1}_t, h^l_{t-1})  for l = 1..L
    z_t    = V h^L_t + c                      (1) readout
    L      = loss(z_t, y_t) averaged over the positions with a target

Targets sit at every step (language model) or only at the last step (many-to-one). With lengths,
each cell keeps a row's state fixed past its length, so the last step holds each sequence's own
last state, and padding gets zero weight in the loss.

Backward runs once, top to bottom: the readout gives dL/dh^L_t for every t; each layer's backward
through time returns dL/dh^{l-1}_t for the layer below; the bottom one gives dE, or dx for features.

Everything here is pure: parameters are a dict of arrays (keys below), the forward caches are
returned and passed back, nothing is stored.

    E        (V, E)       embedding, only with embedding_dim
    l{k}.W   (G H, D_k)   input weights of layer k (D_0 = input_size or embedding_dim, else H)
    l{k}.U   (G H, H)     recurrent weights
    l{k}.b   (G H,)       input-side bias        (PyTorch's bias_ih)
    l{k}.b_U (G H,)       recurrent-side bias    (PyTorch's bias_hh)
    V        (K, H)       readout weights;  c (K,) readout bias
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import checks, losses
from .activations import NONLINEARITIES
from .cells import CELLS
from .inputs import gather_rows, scatter_rows


@dataclass(frozen=True)
class Arch:
    """The shape of a network: everything but the parameter values."""

    cell: str
    input_size: int
    hidden_size: int
    output_size: int
    num_layers: int = 1
    embedding_dim: int | None = None
    nonlinearity: str = "tanh"

    def __post_init__(self):
        checks.one_of("cell", self.cell, tuple(CELLS))
        checks.one_of("nonlinearity", self.nonlinearity, NONLINEARITIES)
        if self.cell != "rnn" and self.nonlinearity != "tanh":
            raise ValueError(f"nonlinearity: applies to cell='rnn' only; got {self.nonlinearity!r} "
                             f"with cell={self.cell!r} (leave it at 'tanh')")
        for name in ("input_size", "hidden_size", "output_size", "num_layers"):
            checks.positive_int(name, getattr(self, name))
        if self.embedding_dim is not None:
            checks.positive_int("embedding_dim", self.embedding_dim)

    @property
    def module(self):
        return CELLS[self.cell]

    @property
    def options(self):
        return {"nonlinearity": self.nonlinearity} if self.cell == "rnn" else {}

    def layer_input_size(self, k):
        if k > 0:
            return self.hidden_size
        return self.embedding_dim or self.input_size

    def param_shapes(self):
        G, H = self.module.GATES * self.hidden_size, self.hidden_size
        shapes = {}
        if self.embedding_dim:
            shapes["E"] = (self.input_size, self.embedding_dim)
        for k in range(self.num_layers):
            shapes |= {f"l{k}.W": (G, self.layer_input_size(k)), f"l{k}.U": (G, H),
                       f"l{k}.b": (G,), f"l{k}.b_U": (G,)}
        return shapes | {"V": (self.output_size, H), "c": (self.output_size,)}


class Result(NamedTuple):
    loss: float
    grads: dict          # same keys and shapes as params
    state: object        # final state, public layout: (L, B, H), or (h, c) for lstm
    dx: object           # dL/dx (T, B, D) for float inputs, else None
    dstate0: object      # dL/d(initial state), same layout as state


def init_params(arch, rng, dtype):
    """PyTorch's defaults: nn.Embedding N(0, 1); cells uniform(±1/sqrt(H)); nn.Linear uniform(±1/sqrt(H))."""
    params = {}
    if arch.embedding_dim:
        params["E"] = rng.standard_normal((arch.input_size, arch.embedding_dim)).astype(dtype)
    for k in range(arch.num_layers):
        p = arch.module.init_params(rng, arch.layer_input_size(k), arch.hidden_size, dtype)
        params |= {f"l{k}.{name}": a for name, a in p.items()}
    bound = 1.0 / np.sqrt(arch.hidden_size)
    params["V"] = rng.uniform(-bound, bound, (arch.output_size, arch.hidden_size)).astype(dtype)
    params["c"] = rng.uniform(-bound, bound, (arch.output_size,)).astype(dtype)
    return params


def layer(params, k):
    return {name: params[f"l{k}.{name}"] for name in ("W", "U", "b", "b_U")}


def prepare(params, arch, x, state, lengths):
    """Validate and convert the inputs shared by forward and loss_and_grads."""
    dtype = params["V"].dtype
    x, T, B = checks.inputs(x, arch.input_size, arch.embedding_dim is not None, dtype)
    mask = checks.lengths_mask(lengths, T, B)
    x = checks.valid_inputs(x, arch.input_size, mask)
    parts = checks.state(state, arch.module.STATE, arch.num_layers, B, arch.hidden_size, dtype)
    return x, mask, parts


def forward_layers(params, arch, x, state_parts, mask):
    """Embedding and L layers. Returns hs of the top layer (T, B, H), the final state parts, caches."""
    xs = gather_rows(params["E"], x) if arch.embedding_dim else x
    final, caches = [], []
    for k in range(arch.num_layers):
        state0 = tuple(s[k] for s in state_parts)
        xs, state_T, cache = arch.module.forward(layer(params, k), xs, state0, mask, **arch.options)
        final.append(state_T)
        caches.append(cache)
    return xs, tuple(np.stack(s) for s in zip(*final)), caches


def backward_layers(params, arch, x, dhs, caches):
    """From dL/dh^L_t (T, B, H) down the stack. Returns (grads, dx, dstate0 parts)."""
    grads, dstate0 = {}, []
    for k in reversed(range(arch.num_layers)):
        dstate_T = tuple(np.zeros_like(dhs[0]) for _ in arch.module.STATE)
        dhs, ds0, g = arch.module.backward(layer(params, k), dhs, dstate_T, caches[k])
        grads |= {f"l{k}.{name}": a for name, a in g.items()}
        dstate0.insert(0, ds0)
    if arch.embedding_dim:
        grads["E"] = scatter_rows(arch.input_size, x, dhs)
        dhs = None
    return grads, dhs, tuple(np.stack(s) for s in zip(*dstate0))


def public_state(parts):
    return parts[0] if len(parts) == 1 else parts


def logits(params, arch, x, state=None, lengths=None):
    """z_t for every step: (T, B, K), and the final state. No cache is kept."""
    x, mask, parts = prepare(params, arch, x, state, lengths)
    hs, final, _ = forward_layers(params, arch, x, parts, mask)
    return hs @ params["V"].T + params["c"], public_state(final)     # (1)


def prepare_loss(params, arch, x, y, state, target, loss, lengths):
    checks.one_of("target", target, checks.TARGETS)
    checks.one_of("loss", loss, losses.LOSSES)
    x, mask, parts = prepare(params, arch, x, state, lengths)
    T, B = x.shape[:2]
    y = checks.targets(y, target, loss, T, B, arch.output_size, params["V"].dtype, mask)
    return x, y, mask, parts


def readout_rows(hs, target, mask):
    """The top-layer states that carry a target, (N, H), and their weights w (N,) in the mean."""
    T, B, H = hs.shape
    if target == "every":
        h = hs.reshape(T * B, H)                                  # N = T B
        counted = np.ones(T * B, hs.dtype) if mask is None else mask.reshape(-1).astype(hs.dtype)
    else:
        h = hs[-1]                                                # N = B: each row's own last step
        counted = np.ones(B, hs.dtype)
    return h, counted / counted.sum()


def loss_value(params, arch, x, y, state=None, target="every", loss="cross_entropy", lengths=None):
    """The loss alone (for finite differences): forward, readout, loss."""
    x, y, mask, parts = prepare_loss(params, arch, x, y, state, target, loss, lengths)
    hs, _, _ = forward_layers(params, arch, x, parts, mask)
    h, w = readout_rows(hs, target, mask)
    return losses.apply(loss, h @ params["V"].T + params["c"], y, w)[0]


def loss_and_grads(params, arch, x, y, state=None, target="every", loss="cross_entropy", lengths=None):
    """Loss, gradients of every parameter, of the float inputs and of the initial state, by BPTT."""
    x, y, mask, parts = prepare_loss(params, arch, x, y, state, target, loss, lengths)
    V, c = params["V"], params["c"]

    hs, final, caches = forward_layers(params, arch, x, parts, mask)
    h, w = readout_rows(hs, target, mask)
    z = h @ V.T + c                                               # (1) (N, K)
    value, dz = losses.apply(loss, z, y, w)

    dV = dz.T @ h                                                 # (1b)
    dc = dz.sum(axis=0)                                           # (1b)
    dh = dz @ V                                                   # (1b) (N, H)
    if target == "every":
        dhs = dh.reshape(hs.shape)
    else:
        dhs = np.zeros_like(hs)
        dhs[-1] = dh
    grads, dx, dstate0 = backward_layers(params, arch, x, dhs, caches)
    grads |= {"V": dV, "c": dc}
    return Result(value, {name: grads[name] for name in params}, public_state(final), dx,
                  public_state(dstate0))
