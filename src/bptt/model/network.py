"""Network: an architecture and its parameters, with the public API over the engine."""

import numpy as np

from .. import checks
from . import engine as engine_
from . import onnx_export, saved, torch_names


class Network:
    """A stack of recurrent layers with a dense readout, trained by BPTT.

    input_size is the vocabulary size when x holds int ids (one-hot unless embedding_dim is set)
    and the feature size when x holds floats. nonlinearity applies to cell="rnn" (and "skip") only.
    cell="skip": the skip RNN, h_t = f(W x_t + U h_{t-1} + S h_{t-skip} + b), skip >= 2 (default 2).
    tie_weights: the readout reuses the embedding (V = E; Press & Wolf 2017, Inan et al. 2017).
    engine: "fast" (the time loops compiled with numba, bptt.fast) or "numpy" (the reference cells,
    plain NumPy, which the fast engine is tested against); the same equations and results. None
    (the default): "fast", and "numpy" for the skip RNN, which has no compiled version
    (engine="fast" with cell="skip" is a ValueError).
    The sizes, num_layers, embedding_dim, skip and seed are ints, NumPy's too (kept as plain ints, so
    the network saves and exports); a float such as 5.0, or a bool, is a TypeError naming the argument.
    """

    def __init__(self, cell, input_size, hidden_size, output_size, num_layers=1, embedding_dim=None,
                 nonlinearity="tanh", dtype=np.float64, seed=0, tie_weights=False, skip=None, engine=None):
        self.arch = engine_.Arch(cell, input_size, hidden_size, output_size, num_layers, embedding_dim,
                                 nonlinearity, tie_weights, skip, engine)
        self.dtype = checks.float_dtype(dtype)
        if isinstance(seed, np.random.Generator):
            rng = seed
        else:
            rng = np.random.default_rng(checks.positive_int("seed", seed, minimum=0))
        self.params = engine_.init_params(self.arch, rng, self.dtype)

    def __repr__(self):
        a = self.arch
        return (f"Network(cell={a.cell!r}, input_size={a.input_size}, hidden_size={a.hidden_size}, "
                f"output_size={a.output_size}, num_layers={a.num_layers}, embedding_dim={a.embedding_dim}, "
                f"nonlinearity={a.nonlinearity!r}, dtype=np.{self.dtype})")

    def checked_params(self):
        """self.params, checked (checks.params) against the architecture and against self.dtype: a
        parameter replaced by one of another dtype is named even when most of them were replaced."""
        checks.params(self.params, self.arch.param_shapes(), self.dtype)
        return self.params

    def forward(self, x, state=None, lengths=None):
        """Logits (T, B, K) for every step and the final state; no cache is kept."""
        return engine_.logits(self.checked_params(), self.arch, x, state, lengths)

    def score(self, x, y, state=None, target="every", lengths=None, reset=None):
        """Forward only: Score(total, count, correct, state), total = -sum of log p(y) in nats over
        the positions with a target (engine.score)."""
        return engine_.score(self.checked_params(), self.arch, x, y, state, target, lengths, reset)

    def save(self, path, overwrite=False):
        """The parameters, architecture and dtype in one safetensors file (bptt.model.saved), written
        atomically; an existing file is refused unless overwrite=True."""
        saved.write(path, self.arch, self.dtype, self.checked_params(), overwrite)

    def to_onnx(self, path, inputs="ids", overwrite=False, dtype=np.float32):
        """The network as an ONNX model with ONNX's RNN/GRU/LSTM operators (bptt.model.onnx_export):
        inputs x, h0 (and c0), outputs logits, h_n (and c_n), T and B dynamic. Needs the onnx package.
        float32 whatever self.dtype is, unless dtype=np.float64: ONNX Runtime runs these operators in
        float32 only and cannot run a float64 graph (other runtimes may)."""
        onnx_export.write(self, path, inputs, overwrite, dtype)

    @classmethod
    def load(cls, path, engine=None):
        """The Network saved in path by save(), on its engine (or the one given)."""
        fields, dtype, params = saved.read(path)
        fields = dict(fields)
        if engine is not None:
            fields["engine"] = engine
        net = cls(**fields, dtype=dtype)
        checks.params(params, net.arch.param_shapes(), net.dtype)
        net.params = {name: params[name] for name in net.params}
        return net

    def loss_and_grads(self, x, y, state=None, target="every", loss="cross_entropy", lengths=None, **training):
        """(loss, grads, final state). training: reset, loss_mask, dropout, rng, clip_dh (see
        engine.loss_and_grads, which also gives the gradients of the inputs and initial state)."""
        r = engine_.loss_and_grads(self.checked_params(), self.arch, x, y, state, target, loss, lengths, **training)
        return r.loss, r.grads, r.state

    def load_torch_state_dict(self, sd):
        """Replace the parameters by those of a PyTorch model named as in bptt.model.torch_names."""
        self.params = torch_names.from_torch(sd, self.arch.param_shapes(), self.dtype)

    def torch_state_dict(self, arrays=None):
        """The parameters (or any dict keyed exactly like them, e.g. grads) in PyTorch's names; other
        keys are a ValueError that names them and the keys expected."""
        return torch_names.to_torch(self.params if arrays is None else arrays, self.arch.param_shapes())
