"""One training step of each framework, on the same weights (bptt's): bptt's engine, PyTorch's
nn modules (interop.torch_reference) and JAX (interop.jax_reference), each with Adam and
global-norm clipping as PyTorch defines them. A runner has step(x, y), valid_loss(task, weights)
and compile_seconds (None where nothing is compiled ahead)."""

import importlib
import math
import time

import numpy as np

from ..model import engine
from ..training import clipping, optim, train

FRAMEWORKS = ("bptt", "torch", "jax")
LABELS = {"bptt": "bptt", "torch": "PyTorch", "jax": "JAX"}
MODULES = {"bptt": None, "torch": "torch", "jax": "jax"}       # the optional import each one needs


class Ours:
    name = "bptt"

    def __init__(self, cfg, task, weights=None):
        self.net = weights or train.build_network(cfg, task.input_size, task.output_size)
        self.opt, self.cfg = optim.Adam(), cfg
        self.state = self.opt.init(self.net.params)
        # compiled code: loaded from numba's disk cache, or compiled on a fresh install; timed here
        # on a two-step window (no update), so that it is reported apart from the timed steps
        start = time.perf_counter()
        ids = np.zeros((2, cfg.batch), np.int64)
        engine.loss_and_grads(self.net.params, self.net.arch, ids, ids)
        self.compile_seconds = time.perf_counter() - start

    def step(self, x, y):
        r = engine.loss_and_grads(self.net.params, self.net.arch, x, y)
        clipping.clip_global_norm(r.grads, self.cfg.clip)
        self.opt.step(self.net.params, r.grads, self.state, self.cfg.lr)

    def valid_loss(self, task, weights=None):
        return task.evaluate(self.net.params, self.net.arch)["loss"]


class Torch:
    name = "PyTorch"

    def __init__(self, cfg, task, weights):
        import torch

        from ..interop import torch_reference

        self.torch, self.cfg = torch, cfg
        self.model = torch_reference.build(weights.arch, weights.torch_state_dict(), np.dtype(cfg.dtype))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.V = task.output_size

    def step(self, x, y, state=None):
        """One update on the window (x, y) from state (None: zeros); returns the final state, detached:
        the next window of a stream starts from its values (truncated BPTT)."""
        t = self.torch
        hs, state = self.model(t.as_tensor(x), state)
        loss = t.nn.functional.cross_entropy(self.model.head(hs).reshape(-1, self.V), t.as_tensor(y).reshape(-1))
        self.opt.zero_grad()
        loss.backward()
        t.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.opt.step()
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()

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
        self.betas, self.eps, self.t = (0.9, 0.999), 1e-8, 0
        self.params = {k: jnp.asarray(v) for k, v in weights.params.items()}
        self.m = {k: jnp.zeros_like(v) for k, v in self.params.items()}
        self.v = {k: jnp.zeros_like(v) for k, v in self.params.items()}
        grad = jax.value_and_grad(jax_reference.loss(weights.arch))
        (b1, b2), eps, max_norm = self.betas, self.eps, cfg.clip

        def train_step(params, m, v, x, y, step_size, bc2_sqrt):
            loss, g = grad(params, x, y)
            if max_norm:
                norm = jnp.linalg.norm(jnp.stack([jnp.linalg.norm(a.ravel()) for a in g.values()]))
                coef = jnp.minimum(max_norm / (norm + 1e-6), 1.0)
                g = {k: a * coef for k, a in g.items()}
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

    def step(self, x, y):
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
    weights = train.build_network(cfg, task.input_size, task.output_size)
    return RUNNERS[framework](cfg, task, weights)
