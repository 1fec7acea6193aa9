"""Streaming inference: the logits of one token (or a short window) at a time for many independent
streams, the rows of a batch, the state carried from call to call by the caller.

    with net.stepper() as s:                  # the weights packed once, for every call inside
        z_t, state = s.step(x_t, state)       # x_t (B,) ids or (B, D) floats  ->  z_t (B, K)
        z, state = s.step(x, state)           # a short window x (T, B) or (T, B, D)  ->  z (T, B, K)

A step gives what engine.logits(params, arch, x, state) gives for the same tokens (to round-off: the
same equations, summed in the same order), and a state in the same layout, (L, B, H) or (h, c) for
the LSTM; state None is zeros (or the learned initial state, learn_init_state). Fed token by token, a
sequence's logits are those of one forward over it. On the fast engine one compiled call runs the
stack and the readout for the whole window (bptt.fast.stepping) with no per-call validation of the
weights and nothing kept between calls but the packed weights; on the numpy engine, and for the
skip RNN, a step is engine.logits on the window, the reference. A bidirectional network reads each
sequence backwards too: it has no steps.

The packed weights are a copy, so they must not go stale. While a Stepper is open the parameter
arrays it packed are read-only (flags.writeable = False: an in-place update such as an optimiser's
`p -= lr * g` raises ValueError), and each step checks that the parameters are still those arrays: a
dict or an array replaced since (net.params = ..., load_torch_state_dict) is validated and packed
again before the step runs. close() (the end of a `with` block, or the Stepper's garbage collection)
makes the arrays writeable again. Not seen: a write through another view of a parameter's memory
(its base, if the caller holds one).
"""

import operator
import weakref

import numpy as np

from .. import checks
from . import engine


def step(params, arch, x, state=None):
    """The logits of x, one step (B,) / (B, D) or a short window (T, B) / (T, B, D), and the state after
    it (Stepper.step), with the weights packed for this call alone: open a Stepper to take many."""
    with Stepper(params, arch) as stepper:
        return stepper.step(x, state)


class Stepper:
    """Steps of a network with its weights prepared once (module docstring).

    params: the parameters, a dict keyed as arch.param_shapes(), or a function that returns the
    current dict (Network.stepper passes one: a network whose params are replaced is followed).
    threads: at most this many threads (None: one per core; a step with few rows always runs on one).
    dtype: the dtype the parameters must have (None: theirs). A context manager; close() releases
    the parameters."""

    def __init__(self, params, arch, threads=None, dtype=None):
        if arch.bidirectional:
            raise ValueError("bidirectional: a bidirectional network reads each whole sequence backwards too, so it "
                             "cannot take a stream one token at a time; run forward on whole sequences")
        self.arch = arch
        self.threads = None if threads is None else checks.positive_int("threads", threads)
        self._source = params if callable(params) else (lambda: params)
        self._dtype = dtype
        self._compiled = arch.engine == "fast" and not arch.cutoffs     # else the reference, engine.logits
        self._held, self._arrays, self._weights, self._release = None, (), {}, None
        self._blocks = {}                     # (B, kind) -> the blocks of rows of a step (fast.stepping.row_blocks)
        self._none = {}                       # dtype -> the empty ids and floats that stand for no input of a kind
        self._layout = (arch.state_names, arch.state_sizes)     # read once: Arch computes them at every call
        self.closed, self.dtype = False, None
        self._current()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Make the parameters writeable again; a step after this is an error."""
        if self._release is not None:
            self._release()
        self.closed = True

    def step(self, x, state=None):
        """(z, state): the logits of x, (B, K) for one step x (B,) of ids or (B, D) of floats, (T, B, K) for
        a window (T, B) or (T, B, D), and the state after it, as engine.logits returns it; state: the
        state before it, as engine.logits takes it (None: zeros, or the learned initial state). The
        caller's state is not changed."""
        if self.closed:
            raise ValueError("stepper: closed; open another (net.stepper(), or Stepper(params, arch))")
        params, dtype = self._current()
        xs, one = inputs(x, self.arch, dtype)
        if not self._compiled:                 # the reference: it checks the state, and the values of x, itself
            z, final = engine.logits(params, self.arch, xs, state)
            return (z[0] if one else z), final
        parts = start(state, self.arch, xs.shape[1], dtype, params, self._layout)
        z = self._run(xs, parts, dtype)
        return (z[0] if one else z), engine.public_state(parts)

    def _run(self, xs, parts, dtype):
        """The compiled steps of the window xs from the state parts (updated in place): the logits."""
        from ..fast import stepping

        T, B = xs.shape[:2]
        none = self._none.get(dtype) or self._none.setdefault(dtype, (np.zeros((0, 0), np.int64),
                                                                      np.zeros((0, 0, 0), dtype)))
        ids, floats = (xs, none[1]) if xs.ndim == 2 else (none[0], xs)
        cells = parts[1] if len(parts) > 1 else none[1]
        if stepping.invalid(ids, self.arch.input_size, floats, parts[0], cells):
            refuse(xs, parts, self.arch)
        kind = xs.ndim == 3                   # float features: layer 0's W packed; ids: its input table
        if kind not in self._weights:
            self._weights[kind] = self._packed(self._held, kind)
        if (B, kind) not in self._blocks:
            self._blocks[B, kind] = stepping.row_blocks(B, self._weights[kind], self.threads)
        z = np.empty((T, B, self.arch.output_size), dtype)
        stepping.run(self._weights[kind], ids, floats, parts[0], cells, z, self._blocks[B, kind])
        return z

    def _current(self):
        """(params, dtype): the parameters now, packed again first if they are not those packed."""
        params = self._source()
        if (params is self._held and len(params) == len(self._arrays)
                and all(map(operator.is_, params.values(), self._arrays))
                and not any(a.flags.writeable for a in self._arrays)):
            return params, self.dtype
        self.dtype = checks.params(params, self.arch.param_shapes(), self._dtype)
        if self._compiled:
            self._hold(params)
        return params, self.dtype

    def _hold(self, params):
        """Hold the arrays of params read-only until close() (or the next _hold), their packed weights
        to be made again."""
        if self._release is not None:
            self._release()
        self._held, self._arrays, self._weights = params, tuple(params.values()), {}
        frozen = [a for a in self._arrays if a.flags.writeable]
        for a in frozen:
            a.flags.writeable = False
        self._release = weakref.finalize(self, thaw, frozen)

    def _packed(self, params, floats):
        """The weights of params for fast.stepping, for float features or for ids."""
        from ..fast import stepping

        layers = [engine.layer(params, k) for k in range(self.arch.num_layers)]
        return stepping.pack_weights(self.arch.cell, layers, params.get("E"), engine.readout_weights(params),
                                     params["c"], self.arch.nonlinearity, floats)


def thaw(arrays):
    """Make arrays writeable again (those a Stepper made read-only); one whose memory has become
    read-only meanwhile stays as it is."""
    for a in arrays:
        try:
            a.flags.writeable = True
        except ValueError:
            pass


def inputs(x, arch, dtype):
    """(xs, one): x as a window, (T, B) int64 ids or (T, B, D) floats of dtype, C-contiguous, and whether
    x was one step (B,) or (B, D); any other shape or kind is refused. Its values are checked later: by
    the compiled step (refuse), or by engine.logits."""
    a = x if isinstance(x, np.ndarray) else checks.array("x", x)
    V, embedded = arch.input_size, arch.embedding_dim is not None
    if a.dtype.kind in "iu" and a.ndim in (1, 2):
        xs = np.ascontiguousarray(a if a.ndim == 2 else a[None], np.int64)
    elif a.dtype.kind == "f" and a.ndim in (2, 3) and not embedded and a.shape[-1] == V:
        xs = np.ascontiguousarray(a if a.ndim == 3 else a[None], dtype)
    else:
        expected = f"int token ids of shape (B,) for one step or (T, B) for a window, in [0, {V})"
        if not embedded:
            expected += f"; or floats of shape (B, {V}) or (T, B, {V})"
        raise ValueError(f"x: expected {expected}; got {checks.describe(a)}"
                         + (f" (input_size is {V})" if a.dtype.kind == "f" and not embedded else ""))
    if xs.size == 0:
        raise ValueError(f"x: expected at least one step and one row, got {checks.describe(a)}")
    return xs, a.ndim == xs.ndim - 1


def start(state, arch, B, dtype, params, layout=None):
    """The state before a step as fresh C-contiguous parts (L, B, H) of dtype, which the step then
    updates. None: zeros, or the learned initial state (learn_init_state: params' init.h, init.c for
    every row); else checked as engine.logits checks it (its shape; floats, cast to dtype), its
    values by the step (refuse). layout: (arch.state_names, arch.state_sizes), if known."""
    (names, sizes), L = layout or (arch.state_names, arch.state_sizes), arch.num_layers
    if state is None and arch.learn_init_state:
        return tuple(np.repeat(params[f"init.{name}"][:, None], B, axis=1) for name in names)
    parts = (state,) if len(names) == 1 else state
    if type(parts) is tuple and len(parts) == len(names):          # the usual case: the state a step returned
        fresh = [p.copy() for p, size in zip(parts, sizes)
                 if type(p) is np.ndarray and p.dtype == dtype and p.shape == (L, B, size)]
        if len(fresh) == len(names):
            return tuple(fresh)
    parts = checks.state(state, names, L, B, sizes, dtype)
    return parts if state is None else tuple(np.array(p, dtype, order="C") for p in parts)


def refuse(xs, parts, arch):
    """The error for a window xs and state parts that fast.stepping.invalid found wrong: as engine.logits
    words it (checks.valid_inputs, checks.state)."""
    checks.valid_inputs(xs, arch.input_size, None)
    for name, part in zip(arch.state_names, parts):
        checks.finite(f"state {name}" if len(parts) > 1 else "state", part)
    raise AssertionError("fast.stepping.invalid refused inputs that checks accepts")
