"""One training step of each framework, on the same weights (bptt's): bptt's engine, PyTorch's
nn modules (interop.torch_reference) and JAX (interop.jax_reference), each with Adam (or plain SGD)
and global-norm clipping as PyTorch defines them. A runner has step(batch) (batch: the keyword
arguments of engine.loss_and_grads, x and y, and for a classifier target="last" and lengths),
valid_loss(task, weights) and compile_seconds (None where nothing is compiled ahead).

Dropout is non-recurrent in both bptt and PyTorch (on the embedding, between layers, on the top
layer's output), drawn from each framework's own generator: with dropout the validation losses
agree in distribution, not to round-off. The JAX runner has no dropout and no lengths: such a
workload skips it (unsupported())."""

import importlib
import math
import time

import numpy as np

from ..model import engine
from ..training import building, clipping, train

FRAMEWORKS = ("bptt", "torch", "jax")
LABELS = {"bptt": "bptt", "torch": "PyTorch", "jax": "JAX"}
MODULES = {"bptt": None, "torch": "torch", "jax": "jax"}       # the optional import each one needs


def unsupported(framework, cfg):
    """Why framework cannot run cfg's workload, or None."""
    if framework != "jax":
        return None
    if cfg.precision != "float32":
        return "the JAX reference runs float32 only (no bf16 runner)"
    if cfg.task != "lm":
        return "the JAX reference has no lengths (classification)"
    if cfg.dropout:
        return "the JAX reference has no dropout"
    if cfg.adaptive_softmax:
        return "the JAX reference has no adaptive softmax"
    return None


class Ours:
    name = "bptt"

    def __init__(self, cfg, task, weights=None):
        self.net = weights or building.build_network(cfg, task.input_size, task.output_size)
        self.opt, self.cfg = building.make_optimizer(cfg), cfg
        self.state = self.opt.init(self.net.params)
        self.rng = np.random.default_rng(cfg.seed + 2)
        # compiled code: loaded from numba's disk cache, or compiled on a fresh install; timed here
        # on a two-step window (no update), so that it is reported apart from the timed steps
        start = time.perf_counter()
        ids = np.zeros((2, cfg.batch), np.int64)
        engine.loss_and_grads(self.net.params, self.net.arch, ids, ids)
        self.compile_seconds = time.perf_counter() - start

    def step(self, batch):
        r = engine.loss_and_grads(self.net.params, self.net.arch, **batch, dropout=self.cfg.dropout, rng=self.rng)
        nonzero = train.embedding_rows(self.net.arch, batch["x"], r.grads)      # as bptt train steps
        if self.cfg.clip:
            clipping.clip_global_norm(r.grads, self.cfg.clip, rows=nonzero)
        self.opt.step(self.net.params, r.grads, self.state, self.cfg.lr, rows=nonzero)

    def valid_loss(self, task, weights=None):
        return task.evaluate(self.net.params, self.net.arch)["loss"]


class Torch:
    """PyTorch's nn modules on bptt's weights; with --precision bf16 the step's forward runs under
    torch.autocast("cpu", torch.bfloat16), as PyTorch's documentation suggests (its LSTM then runs
    oneDNN's bf16 kernels, its Linear a bf16 GEMM; the loss is float32, the weights stay float32)."""

    name = "PyTorch"

    def __init__(self, cfg, task, weights):
        import torch

        from ..interop import torch_reference

        self.torch, self.cfg = torch, cfg
        self.model = torch_reference.build(weights.arch, weights.torch_state_dict(), np.dtype(cfg.dtype))
        self.model.rnn.dropout = cfg.dropout           # nn.LSTM's between layers; the others in step()
        make = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[cfg.optimizer]
        self.opt = make(self.model.parameters(), lr=cfg.lr)
        self.K = task.output_size
        torch.manual_seed(cfg.seed)

    def step(self, batch, state=None):
        """One update on batch (x, y; a classifier's target="last" and lengths: pack_padded_sequence,
        the readout on h_n) from state (None: zeros); returns the final state, detached: the next
        window of a stream starts from its values (truncated BPTT)."""
        t, m = self.torch, self.model
        with t.autocast("cpu", dtype=t.bfloat16, enabled=self.cfg.precision == "bf16"):   # its users' bf16 switch
            loss, state = self.loss(batch, state)
        self.opt.zero_grad()
        loss.backward()
        if self.cfg.clip:
            t.nn.utils.clip_grad_norm_(m.parameters(), self.cfg.clip)
        self.opt.step()
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()

    def loss(self, batch, state):
        """The mean loss of batch and the final state (under autocast for --precision bf16)."""
        t, m, p = self.torch, self.model, self.cfg.dropout
        x = t.as_tensor(batch["x"])
        if m.arch.embedding_dim:
            xs = m.embedding(x)
        else:
            xs = t.nn.functional.one_hot(x, m.arch.input_size).to(m.head.weight.dtype)
        xs = t.nn.functional.dropout(xs, p) if p and m.arch.embedding_dim else xs
        if "lengths" in batch:
            packed = t.nn.utils.rnn.pack_padded_sequence(xs, t.as_tensor(batch["lengths"]), enforce_sorted=False)
            _, state = m.rnn(packed, state)
            h_n = state[0] if isinstance(state, tuple) else state              # h_n: (L D, B, H)
            h = t.cat([h_n[-2], h_n[-1]], dim=1) if m.arch.bidirectional else h_n[-1]    # the top layer's
        else:
            h, state = m.rnn(xs, state)
        h = t.nn.functional.dropout(h, p) if p else h
        y = t.as_tensor(batch["y"]).reshape(-1)
        if m.arch.cutoffs:                                   # AdaptiveLogSoftmaxWithLoss: its mean loss
            loss = m.head(h.reshape(y.shape[0], -1), y).loss
        else:
            loss = t.nn.functional.cross_entropy(m.head(h).reshape(-1, self.K), y)
        return loss, state

    def valid_loss(self, task, weights):
        weights.load_torch_state_dict({k: v.detach().numpy() for k, v in self.model.state_dict().items()})
        return task.evaluate(weights.params, weights.arch)["loss"]


class Jax:
    """The same training step in JAX, one jax.jit-compiled function: value_and_grad of jax_loss, then
    global-norm clipping as torch.nn.utils.clip_grad_norm_ (the norm of the per-array norms;
    g *= min(max_norm / (norm + 1e-6), 1)), then Adam as torch.optim.Adam's defaults
    (β 0.9, 0.999, ε 1e-8, bias-corrected; the step size lr/(1-β1^t) and sqrt(1-β2^t) computed in
    double on the host, as torch does). compile_seconds: tracing and XLA compilation, done ahead of
    the first step for the shapes (window, batch)."""

    name = "JAX"

    def __init__(self, cfg, task, weights):
        import jax
        import jax.numpy as jnp

        from ..interop import jax_reference

        self.jax, self.cfg = jax, cfg
        reason = unsupported("jax", cfg)
        if reason:
            raise ValueError(reason)
        self.betas, self.eps, self.t = (0.9, 0.999), 1e-8, 0
        self.params = {k: jnp.asarray(v) for k, v in weights.params.items()}
        self.m = {k: jnp.zeros_like(v) for k, v in self.params.items()}
        self.v = {k: jnp.zeros_like(v) for k, v in self.params.items()}
        grad = jax.value_and_grad(jax_reference.loss(weights.arch))
        (b1, b2), eps, max_norm = self.betas, self.eps, cfg.clip
        sgd, lr = cfg.optimizer == "sgd", np.float32(cfg.lr)

        def train_step(params, m, v, x, y, step_size, bc2_sqrt):
            loss, g = grad(params, x, y)
            if max_norm:
                norm = jnp.linalg.norm(jnp.stack([jnp.linalg.norm(a.ravel()) for a in g.values()]))
                coef = jnp.minimum(max_norm / (norm + 1e-6), 1.0)
                g = {k: a * coef for k, a in g.items()}
            if sgd:
                return {k: params[k] - lr * g[k] for k in g}, m, v, loss
            m = {k: m[k] + (1 - b1) * (g[k] - m[k]) for k in g}            # torch's lerp
            v = {k: v[k] * b2 + (1 - b2) * g[k] * g[k] for k in g}
            params = {k: params[k] - step_size * m[k] / (jnp.sqrt(v[k]) / bc2_sqrt + eps) for k in g}
            return params, m, v, loss

        self.jitted = jax.jit(train_step, donate_argnums=(0, 1, 2))
        self.shape = (cfg.window, cfg.batch)
        ids = jax.ShapeDtypeStruct(self.shape, np.int32)
        scalar = jax.ShapeDtypeStruct((), np.float32)
        start = time.perf_counter()
        self.compiled = self.jitted.lower(self.params, self.m, self.v, ids, ids, scalar, scalar).compile()
        self.compile_seconds = time.perf_counter() - start

    def step(self, batch):
        x, y = batch["x"], batch["y"]
        self.t += 1
        b1, b2 = self.betas
        step_size = np.float32(self.cfg.lr / (1 - b1 ** self.t))
        bc2_sqrt = np.float32(math.sqrt(1 - b2 ** self.t))
        x, y = np.asarray(x, np.int32), np.asarray(y, np.int32)
        fn = self.compiled if x.shape == self.shape else self.jitted
        self.params, self.m, self.v, loss = fn(self.params, self.m, self.v, x, y, step_size, bc2_sqrt)
        loss.block_until_ready()                   # synchronous like the others: the timer sees the whole step

    def valid_loss(self, task, weights):
        weights.params = {k: np.array(self.params[k], dtype=weights.params[k].dtype) for k in weights.params}
        return task.evaluate(weights.params, weights.arch)["loss"]


RUNNERS = {"bptt": Ours, "torch": Torch, "jax": Jax}


def available(frameworks, out=print):
    """The frameworks of the list whose import works; each other one is reported through out and skipped."""
    keep = []
    for f in frameworks:
        if f not in RUNNERS:
            raise ValueError(f"frameworks: expected some of {', '.join(FRAMEWORKS)}; got {f!r}")
        module = MODULES[f]
        if module is not None:
            try:
                importlib.import_module(module)
            except ImportError as e:
                out(f"{LABELS[f]} not installed ({module}: {e}); skipped")
                continue
        if f not in keep:
            keep.append(f)
    return keep


def make_runner(framework, cfg, task):
    """A runner of framework on the weights bptt initialises for cfg."""
    weights = building.build_network(cfg, task.input_size, task.output_size)
    return RUNNERS[framework](cfg, task, weights)
