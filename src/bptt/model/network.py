"""Network: an architecture and its parameters, with the public API over the engine."""

import numpy as np

from .. import checks
from . import engine as engine_
from . import onnx_export, saved, streaming, torch_names


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
    bidirectional: every layer also runs backwards in time and the next layer (and the readout) reads
    [h_fwd; h_bwd], as PyTorch's bidirectional=True; its parameters are l{k}_reverse.*, its state
    (2 L, B, H). For whole sequences (many-to-one, or a target per step of a given sequence): not for
    a language model, whose targets are the inputs' future.
    proj_size (cell="lstm"): LSTM with projections, h_t = R (o_t * tanh(c_t)) of size proj_size
    (PyTorch's proj_size, R its weight_hr); the state is (h (L, B, P), c (L, B, H)).
    learn_init_state: the initial state is a parameter, init.h (and init.c), (L D, H) each, trained
    with the rest; used whenever no state is given (it starts at zero).
    cutoffs: the adaptive softmax (Grave et al. 2017, PyTorch's AdaptiveLogSoftmaxWithLoss) instead
    of the full readout V, c: a head over the classes below cutoffs[0] and one token per cluster,
    cluster i's tail projected to width // div_value**i units (head_bias: a bias on the head). Its
    "logits" are exact log-probabilities log p(k); cross_entropy only (reference/adaptive.py).
    precision: "float32", or "bf16": the products (input, recurrent, readout, and their backward ones)
    take bfloat16 operands with float32 sums (bptt.fast.bf16: AVX512-BF16's vdpbf16ps); the parameters
    (dtype=np.float32), the states, the gates and the loss stay float32. The fast engine only, and a
    CPU with AVX512-BF16 (else a ValueError). save() writes float32 weights without it; load() takes it.
    The sizes, num_layers, embedding_dim, skip and seed are ints, NumPy's too (kept as plain ints, so
    the network saves and exports); a float such as 5.0, or a bool, is a TypeError naming the argument.
    """

    def __init__(self, cell, input_size, hidden_size, output_size, num_layers=1, embedding_dim=None,
                 nonlinearity="tanh", dtype=np.float64, seed=0, tie_weights=False, skip=None, engine=None,
                 bidirectional=False, proj_size=None, learn_init_state=False, cutoffs=None, div_value=4.0,
                 head_bias=False, precision="float32"):
        self.arch = engine_.Arch(cell, input_size, hidden_size, output_size, num_layers, embedding_dim,
                                 nonlinearity, tie_weights, skip, engine, bidirectional, proj_size, learn_init_state,
                                 cutoffs, div_value, head_bias, precision)
        self.dtype = checks.float_dtype(dtype)
        if precision == "bf16" and self.dtype != np.float32:
            raise ValueError(f"precision: 'bf16' keeps float32 master weights; give dtype=np.float32, "
                             f"got {self.dtype.name}")
        if isinstance(seed, np.random.Generator):
            rng = seed
        else:
            rng = np.random.default_rng(checks.positive_int("seed", seed, minimum=0))
        self.params = engine_.init_params(self.arch, rng, self.dtype)

    def __repr__(self):
        a = self.arch
        return (f"Network(cell={a.cell!r}, input_size={a.input_size}, hidden_size={a.hidden_size}, "
                f"output_size={a.output_size}, num_layers={a.num_layers}, embedding_dim={a.embedding_dim}, "
                f"nonlinearity={a.nonlinearity!r}"
                + "".join(f", {name}={getattr(a, name)!r}"
                          for name in ("bidirectional", "proj_size", "learn_init_state", "cutoffs")
                          if getattr(a, name))
                + f", dtype=np.{self.dtype})")

    def checked_params(self):
        """self.params, checked (checks.params) against the architecture and against self.dtype: a
        parameter replaced by one of another dtype is named even when most of them were replaced."""
        checks.params(self.params, self.arch.param_shapes(), self.dtype)
        return self.params

    def forward(self, x, state=None, lengths=None, return_states=False):
        """Logits (T, B, K) for every step and the final state; no cache is kept. return_states=True:
        also what every layer holds at every step, {"h": (L D, T, B, H), "c": ... for the LSTM}
        (engine.logits)."""
        return engine_.logits(self.checked_params(), self.arch, x, state, lengths, return_states=return_states)

    def stepper(self, threads=None):
        """A Stepper (bptt.model.streaming) for this network: the weights packed once for many calls of
        its step(x_t, state) -> (logits_t, state), one token (or a short window) of many streams at a
        time. A context manager: while it is open the parameter arrays are read-only (an in-place
        update raises), parameters replaced since a step are packed again before the next one, and
        close() makes them writeable again.

            with net.stepper() as s:
                z_t, state = s.step(x_t, state)      # x_t (B,) ids -> z_t (B, K)
        """
        return streaming.Stepper(lambda: self.params, self.arch, threads, self.dtype)

    def step(self, x_t, state=None):
        """(logits, state) of one step x_t (B,) of ids or (B, D) of floats: logits (B, K); or of a short
        window (T, B) / (T, B, D): logits (T, B, K). state as forward takes and returns it (None: zeros).
        The same numbers as forward over the same tokens. It packs the weights for this call alone:
        for a loop of steps, open net.stepper() once and call its step."""
        with self.stepper() as stepper:
            return stepper.step(x_t, state)

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
    def load(cls, path, engine=None, precision="float32"):
        """The Network saved in path by save(), on its engine (or the one given), computing in precision."""
        fields, dtype, params = saved.read(path)
        fields = dict(fields, precision=precision)
        if engine is not None:
            fields["engine"] = engine
        net = cls(**fields, dtype=dtype)
        checks.params(params, net.arch.param_shapes(), net.dtype)
        net.params = {name: params[name] for name in net.params}
        return net

    def loss_and_grads(self, x, y, state=None, target="every", loss="cross_entropy", lengths=None, **training):
        """(loss, grads, final state). training: reset, loss_mask, dropout, rng, clip_dh, algorithm
        ("bptt", "rtrl" or "uoro") and seed (see engine.loss_and_grads, which also gives the gradients
        of the inputs and initial state)."""
        r = engine_.loss_and_grads(self.checked_params(), self.arch, x, y, state, target, loss, lengths, **training)
        return r.loss, r.grads, r.state

    def load_torch_state_dict(self, sd):
        """Replace the parameters by those of a PyTorch model named as in bptt.model.torch_names."""
        self.params = torch_names.from_torch(sd, self.arch.param_shapes(), self.dtype)

    def torch_state_dict(self, arrays=None):
        """The parameters (or any dict keyed exactly like them, e.g. grads) in PyTorch's names; other
        keys are a ValueError that names them and the keys expected."""
        return torch_names.to_torch(self.params if arrays is None else arrays, self.arch.param_shapes())
