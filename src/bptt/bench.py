"""Training speed and memory of bptt against PyTorch and JAX on a character language model.

Every framework starts from the same weights (bptt's) and trains on the same windows of Tiny
Shakespeare (embedding 64, vocabulary 65, Adam lr 2e-3, global-norm clipping at 5, window 64,
batch 32 unless a configuration says otherwise, float32), each window from a zero state. For each
configuration the frameworks are timed in alternation, `repeats` times, each time `steps` training
steps after `warmup` untimed ones, so that drift of the machine hits all alike; the validation
loss of each after the same steps is reported (it must agree: the same computation).

Each framework runs in a worker process of its own (one per configuration), which imports only
that framework; the parent alternates them. Peak resident memory is each worker's own, read after
its timed steps.
PyTorch and JAX are optional: one that is not installed is skipped with a message.

    from bptt import bench
    rows = bench.run(["lstm-h256"], steps=20, warmup=3, repeats=3, frameworks=("bptt", "torch", "jax"))
    rows = bench.step_cost("lstm-h256", [16, 64, 256, 1024])        # ms per step as the window T grows
"""

import datetime
import importlib
import importlib.metadata
import json
import math
import os
import platform
import resource
import shlex
import statistics
import sys
import time

import numpy as np

from . import checks, clipping, engine, heap, optim, tasks, train
from .cells import CELLS as REFERENCE_CELLS
from .config import TrainConfig

BASE = {"embedding": 64, "batch": 32, "window": 64, "layers": 1, "optimizer": "adam", "lr": 2e-3, "clip": 5.0,
        "dtype": "float32"}

CONFIGS = {
    "rnn-h256": {"cell": "rnn", "hidden": 256},
    "gru-h256": {"cell": "gru", "hidden": 256},
    "lstm-h128": {"cell": "lstm", "hidden": 128},
    "lstm-h256": {"cell": "lstm", "hidden": 256},
    "lstm-h256-l2": {"cell": "lstm", "hidden": 256, "layers": 2},
    "lstm-h512-b64": {"cell": "lstm", "hidden": 512, "batch": 64},
}

CELLS = ("rnn", "gru", "lstm")
FRAMEWORKS = ("bptt", "torch", "jax")
LABELS = {"bptt": "bptt", "torch": "PyTorch", "jax": "JAX"}
MODULES = {"bptt": None, "torch": "torch", "jax": "jax"}       # the optional import each one needs


def config(name_or_cfg, **changes):
    """A TrainConfig: a name of CONFIGS (on BASE), or a TrainConfig as it is; changes replace fields."""
    if isinstance(name_or_cfg, TrainConfig):
        cfg = name_or_cfg
    elif name_or_cfg in CONFIGS:
        cfg = TrainConfig(**(BASE | CONFIGS[name_or_cfg]))
    else:
        raise ValueError(f"config: expected one of {', '.join(CONFIGS)} or a TrainConfig, got {name_or_cfg!r}")
    cfg = cfg.replace(**changes) if changes else cfg
    if cfg.cell not in CELLS or cfg.task != "lm" or cfg.tie:
        raise ValueError(f"config: the benchmark runs an untied language model with a cell in {', '.join(CELLS)}; "
                         f"got task={cfg.task!r}, cell={cfg.cell!r}, tie={cfg.tie}")
    return cfg


def label(cfg):
    """The name of a configuration, as CONFIGS names them: lstm-h256, lstm-h256-l2, lstm-h512-b64, ..."""
    for name in CONFIGS:
        if config(name) == cfg:
            return name
    extra = [f"{k}{v}" for k, v, default in (("l", cfg.layers, 1), ("b", cfg.batch, 32), ("t", cfg.window, 64),
                                              ("e", cfg.embedding, 64)) if v != default]
    return "-".join([cfg.cell, f"h{cfg.hidden}", *extra])


def flops_per_step(cfg, V):
    """FLOPs of one training step (forward + backward = 3 x forward; a multiply-add counts as 2):

        per layer and token   2 G H (D + H)      G = 1 (rnn), 3 (gru), 4 (lstm); D = input size of
                                                 the layer (the embedding E, or V one-hot, for the
                                                 first; H above it)
        readout per token     2 H V
        step                  3 B T (sum over layers + readout)

    Elementwise work (gates, softmax, Adam) and the embedding lookup are not counted. For example
    lstm-h256 (E 64, V 65, B 32, T 64): 3 * 2048 * (2*4*256*320 + 2*256*65) = 4,231,004,160.
    """
    G = REFERENCE_CELLS[cfg.cell].GATES
    per_token = sum(2 * G * cfg.hidden * ((cfg.embedding or V) if k == 0 else cfg.hidden) + 2 * G * cfg.hidden ** 2
                    for k in range(cfg.layers)) + 2 * cfg.hidden * V
    return 3 * per_token * cfg.batch * cfg.window


def gemm_peak(n=1024, repeats=5):
    """The float32 GEMM rate of this machine in FLOP/s: the best of `repeats` n^3 NumPy matmuls."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / min(times)


class Ours:
    name = "bptt"

    def __init__(self, cfg, task, weights=None):
        self.net = weights or train.build_network(cfg, task.input_size, task.output_size)
        self.opt, self.cfg = optim.Adam(), cfg
        heap.reuse_freed_memory()                 # as train.train does
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

        from . import torch_reference

        self.torch, self.cfg = torch, cfg
        self.model = torch_reference.build(weights.arch, weights.torch_state_dict(), np.dtype(cfg.dtype))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.V = task.output_size

    def step(self, x, y):
        t = self.torch
        hs, _ = self.model(t.as_tensor(x), None)
        loss = t.nn.functional.cross_entropy(self.model.head(hs).reshape(-1, self.V), t.as_tensor(y).reshape(-1))
        self.opt.zero_grad()
        loss.backward()
        t.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.opt.step()

    def valid_loss(self, task, weights):
        weights.load_torch_state_dict({k: v.detach().numpy() for k, v in self.model.state_dict().items()})
        return task.evaluate(weights.params, weights.arch)["loss"]


def jax_loss(arch):
    """loss(params, x, y): mean cross-entropy over all T B positions of the network arch in JAX, from a
    zero state, params keyed as bptt's (E, l{k}.W, l{k}.U, l{k}.b, l{k}.b_U, V, c). Gates and
    formulas are PyTorch's (see bptt.cells): a = W x_t + b + U h_{t-1} + b_U, and
        rnn   h = tanh(a)
        gru   r, z = σ(a_r), σ(a_z);  n = tanh(W_n x_t + b_n + r (U_n h_{t-1} + b_Un));  h = n + z (h_{t-1} - n)
        lstm  i, f, g, o = σ, σ, tanh, σ of a's blocks;  c = f c_{t-1} + i g;  h = o tanh(c)
    The time loop is a jax.lax.scan; the input projections of all steps are one matmul before it."""
    import jax
    import jax.numpy as jnp

    H, L, cell = arch.hidden_size, arch.num_layers, arch.cell

    def rnn(U_T, b_U):
        def f(h, ax_t):
            h = jnp.tanh(ax_t + h @ U_T + b_U)
            return h, h
        return f

    def gru(U_T, b_U):
        def f(h, ax_t):
            ah = h @ U_T + b_U
            rz = jax.nn.sigmoid(ax_t[:, :2 * H] + ah[:, :2 * H])
            r, z = rz[:, :H], rz[:, H:]
            n = jnp.tanh(ax_t[:, 2 * H:] + r * ah[:, 2 * H:])
            h = n + z * (h - n)
            return h, h
        return f

    def lstm(U_T, b_U):
        def f(hc, ax_t):
            h, c = hc
            a = ax_t + h @ U_T + b_U
            i, f_, o = jax.nn.sigmoid(a[:, :H]), jax.nn.sigmoid(a[:, H:2 * H]), jax.nn.sigmoid(a[:, 3 * H:])
            c = f_ * c + i * jnp.tanh(a[:, 2 * H:3 * H])
            h = o * jnp.tanh(c)
            return (h, c), h
        return f

    cells = {"rnn": rnn, "gru": gru, "lstm": lstm}

    def loss(params, x, y):
        xs = params["E"][x] if "E" in params else jax.nn.one_hot(x, arch.input_size, dtype=params["c"].dtype)
        B = x.shape[1]
        for k in range(L):
            W, U, b, b_U = (params[f"l{k}.{n}"] for n in ("W", "U", "b", "b_U"))
            ax = xs @ W.T + b                                              # (T, B, G H)
            h0 = jnp.zeros((B, H), xs.dtype)
            _, xs = jax.lax.scan(cells[cell](U.T, b_U), (h0, h0) if cell == "lstm" else h0, ax)
        z = xs @ params["V"].T + params["c"]                               # (T, B, K)
        logp = jax.nn.log_softmax(z, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[..., None], axis=-1))

    return loss


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

        self.jax, self.cfg = jax, cfg
        self.betas, self.eps, self.t = (0.9, 0.999), 1e-8, 0
        self.params = {k: jnp.asarray(v) for k, v in weights.params.items()}
        self.m = {k: jnp.zeros_like(v) for k, v in self.params.items()}
        self.v = {k: jnp.zeros_like(v) for k, v in self.params.items()}
        grad = jax.value_and_grad(jax_loss(weights.arch))
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


def windows(task, cfg, n, seed=0):
    """n training windows (x, y), each (T, B) ids, at random places of the training stream."""
    room = len(task.stream) - cfg.window - 1
    if room < 1:
        raise ValueError(f"window: expected fewer than {len(task.stream) - 1} steps (the training text holds "
                         f"{len(task.stream)} per stream at batch {cfg.batch}), got {cfg.window}")
    starts = np.random.default_rng(seed).integers(0, room, n)
    return [(task.stream[s:s + cfg.window], task.stream[s + 1:s + cfg.window + 1]) for s in starts]


def own_peak_rss_mb():
    """Peak resident size of this process's own memory in MB: VmHWM of /proc/self/status where there is
    one, else ru_maxrss. On Linux ru_maxrss survives execve: a process started from a larger one (as
    subprocess starts it, by vfork or fork and exec) reports at least the parent's size at that moment,
    while VmHWM belongs to the new address space alone."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss          # kilobytes; bytes on macOS
        return rss / 2 ** 20 if sys.platform == "darwin" else rss / 1024


def _worker(conn, framework, cfg_json, n_windows):
    """One framework in its own process: build its runner on bptt's weights, then obey the parent:
    ("steps", i, j) trains on windows i..j-1 and answers the seconds taken; ("rss",) answers the peak
    resident MB so far; ("valid",) answers the validation loss; ("stop",) ends."""
    try:
        cfg = TrainConfig.from_json(json.loads(cfg_json))
        task = tasks.LanguageModel(cfg)
        runner = make_runner(framework, cfg, task)
        data = windows(task, cfg, n_windows)
        conn.send(("ready", getattr(runner, "compile_seconds", None), task.output_size))
        while True:
            cmd = conn.recv()
            if cmd[0] == "steps":
                start = time.perf_counter()
                for x, y in data[cmd[1]:cmd[2]]:
                    runner.step(x, y)
                conn.send(time.perf_counter() - start)
            elif cmd[0] == "rss":
                conn.send(own_peak_rss_mb())
            elif cmd[0] == "valid":
                conn.send(runner.valid_loss(task, train.build_network(cfg, task.input_size, task.output_size)))
            else:
                break
    except Exception as e:                                   # reported by the parent, with the framework named
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def _ask(framework, conn, *cmd):
    conn.send(cmd)
    answer = conn.recv()
    if isinstance(answer, tuple) and answer[0] == "error":
        raise RuntimeError(f"{LABELS[framework]} worker: {answer[1]}")
    return answer


SETTLE_S = 0.3        # idle time before each timed chunk: the previous worker's threads stop spinning


def measure(cfg, frameworks, steps, warmup, repeats, validate=True, rss=True):
    """Time the frameworks (already checked to be available) on cfg in alternation. Returns one dict per
    framework: framework, rates (tokens/s of each repeat), ms_per_step (median), compile_s, and with
    validate valid_loss, with rss peak_rss_mb.

    Each framework runs in a process of its own, started once per configuration; the parent tells each
    in turn to train its next `steps` windows, so the alternation is the same as in one process. One
    process each because the frameworks' thread pools (OpenBLAS's, PyTorch's OpenMP, XLA's) spin
    while waiting for work and slow each other down when they share a process: an idle worker blocks
    on its pipe instead. An idle worker's threads still spin for a while after its last step (OpenMP
    waits actively before sleeping), so each timed chunk starts after SETTLE_S seconds of quiet.
    Peak RSS is each worker's own (VmHWM), read after the timed steps."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    n = warmup + steps * repeats
    windows(tasks.LanguageModel(cfg), cfg, 1)                  # bad settings fail here, named, not in a worker
    workers = {}
    try:
        for f in frameworks:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, f, json.dumps(cfg.to_json()), n), daemon=True)
            proc.start()
            child.close()
            workers[f] = (proc, parent)
        ready = {f: conn.recv() for f, (_, conn) in workers.items()}
        for f, answer in ready.items():
            if answer[0] == "error":
                raise RuntimeError(f"{LABELS[f]} worker: {answer[1]}")
        times = {f: [] for f in frameworks}
        for f, (_, conn) in workers.items():
            _ask(f, conn, "steps", 0, warmup)
        for rep in range(repeats):
            a = warmup + rep * steps
            for f, (_, conn) in workers.items():                      # alternate: drift hits all alike
                time.sleep(SETTLE_S)
                times[f].append(_ask(f, conn, "steps", a, a + steps) / steps)
        tokens = cfg.batch * cfg.window
        results = []
        for f, (_, conn) in workers.items():
            res = {"framework": f, "V": ready[f][2], "rates": [tokens / t for t in times[f]],
                   "ms_per_step": 1000 * statistics.median(times[f]), "compile_s": ready[f][1]}
            if rss:
                res["peak_rss_mb"] = _ask(f, conn, "rss")
            if validate:
                res["valid_loss"] = _ask(f, conn, "valid")
            results.append(res)
        return results
    finally:
        for proc, conn in workers.values():
            try:
                conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


COLUMNS = [("config", "config", "<14", "{}"), ("framework", "framework", "<9", "{}"),
           ("tokens_per_s", "tokens/s", ">9", "{:.0f}"), ("spread", "spread", ">15", "{}"),
           ("ms_per_step", "ms/step", ">8", "{:.1f}"), ("gflops", "GFLOP/s", ">8", "{:.1f}"),
           ("mfu", "MFU", ">5", "{:.0%}"), ("valid_loss", "valid loss", ">10", "{:.4f}"),
           ("vs_fastest", "vs fastest", ">10", "{:.2f}"), ("peak_rss_mb", "peak RSS (MB)", ">13", "{:.0f}"),
           ("compile_s", "compile (s)", ">11", "{:.2f}")]

LENGTH_COLUMNS = [("config", "config", "<14", "{}"), ("T", "T", ">6", "{}"), ("framework", "framework", "<9", "{}"),
                  ("ms_per_step", "ms/step", ">9", "{:.1f}"), ("us_per_t", "µs per t", ">9", "{:.0f}"),
                  ("peak_rss_mb", "peak RSS (MB)", ">13", "{:.0f}"), ("compile_s", "compile (s)", ">11", "{:.2f}")]


def cell_text(row, key, fmt):
    value = row.get(key)
    return "-" if value is None else fmt.format(value)


def format_header(columns):
    return " ".join(f"{title:{align}}" for _, title, align, _ in columns)


def format_row(row, columns):
    return " ".join(f"{cell_text(row, key, fmt):{align}}" for key, _, align, fmt in columns)


def checked(steps, repeats, warmup, frameworks, out):
    """Validate the counts; return the frameworks that are installed."""
    checks.positive_int("steps", steps)
    checks.positive_int("repeats", repeats)
    checks.positive_int("warmup", warmup, minimum=0)
    return available(frameworks, out)


def run(configs, steps=20, warmup=3, repeats=3, frameworks=FRAMEWORKS, out=print, rss=True, peak=None):
    """Benchmark each configuration (a name of CONFIGS or a TrainConfig) on each framework available,
    printing a table through out as it goes. Returns one dict per (configuration, framework): config,
    framework (bptt, PyTorch, JAX), T, batch, tokens_per_s (median over repeats), tokens_per_s_min,
    tokens_per_s_max, spread, ms_per_step, gflops, mfu (over peak_gflops, the NumPy float32 GEMM rate:
    when not given, measured before the first configuration and again before each next one, the best
    so far kept, so that a busy moment does not lower it), valid_loss, vs_fastest (median rate over the
    fastest's), peak_rss_mb (None with rss=False) and compile_s (the first call: numba's cache load
    or compilation for bptt, XLA's compilation for JAX; None for PyTorch)."""
    cfgs = [config(c) for c in configs]
    frameworks = checked(steps, repeats, warmup, frameworks, out)
    if not frameworks:
        return []
    given, peak = peak, peak or gemm_peak()
    out(f"float32 GEMM peak of this machine (NumPy, 1024^3): {peak / 1e9:.0f} GFLOP/s")
    out(format_header(COLUMNS))
    rows = []
    for i, cfg in enumerate(cfgs):
        if i and not given:
            peak = max(peak, gemm_peak())
        name, tokens = label(cfg), cfg.batch * cfg.window
        results = measure(cfg, frameworks, steps, warmup, repeats, rss=rss)
        best = max(statistics.median(r["rates"]) for r in results)
        flops = flops_per_step(cfg, results[0]["V"])
        for r in results:
            med = statistics.median(r["rates"])
            row = {"config": name, "framework": LABELS[r["framework"]], "T": cfg.window, "batch": cfg.batch,
                   "tokens_per_s": med, "tokens_per_s_min": min(r["rates"]), "tokens_per_s_max": max(r["rates"]),
                   "spread": f"{min(r['rates']):.0f}-{max(r['rates']):.0f}", "ms_per_step": 1000 * tokens / med,
                   "gflops": flops * med / tokens / 1e9, "mfu": flops * med / tokens / peak, "peak_gflops": peak / 1e9,
                   "valid_loss": r["valid_loss"], "vs_fastest": med / best, "peak_rss_mb": r.get("peak_rss_mb"),
                   "compile_s": r["compile_s"]}
            rows.append(row)
            out(format_row(row, COLUMNS))
        losses = {LABELS[r["framework"]]: r["valid_loss"] for r in results}
        if len(losses) > 1:
            spread = max(losses.values()) - min(losses.values())
            out(f"{'':15}validation losses differ by at most {spread:.1e}")
    if rows and rows[-1]["peak_gflops"] > rows[0]["peak_gflops"]:
        out(f"float32 GEMM peak re-measured between configurations: {peak / 1e9:.0f} GFLOP/s at best "
            f"(each row's MFU is over the best measured before it)")
    return rows


def step_cost(cfg="lstm-h256", lengths=(16, 64, 256, 1024), steps=5, warmup=2, repeats=1, frameworks=FRAMEWORKS,
              out=print, rss=True):
    """Cost of one training step as the window T grows: for each T and framework, ms per step (median
    over repeats of `steps` timed steps, frameworks in alternation), µs per time step (ms/step / T:
    flat when the cost is linear in T) and the peak RSS of each framework's worker process. Returns the rows printed."""
    base = config(cfg)
    for T in lengths:
        checks.positive_int("T", T)
    frameworks = checked(steps, repeats, warmup, frameworks, out)
    if not frameworks:
        return []
    out(format_header(LENGTH_COLUMNS))
    rows = []
    for T in lengths:
        c = base.replace(window=T)
        for r in measure(c, frameworks, steps, warmup, repeats, validate=False, rss=rss):
            row = {"config": label(base), "T": T, "framework": LABELS[r["framework"]], "batch": c.batch,
                   "ms_per_step": r["ms_per_step"], "us_per_t": 1000 * r["ms_per_step"] / T,
                   "peak_rss_mb": r.get("peak_rss_mb"), "compile_s": r["compile_s"]}
            rows.append(row)
            out(format_row(row, LENGTH_COLUMNS))
    return rows


def version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine():
    """What the numbers were measured on: CPU model, cores, Python and library versions, command, date."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {"cpu": cpu, "cores": f"{cores}" + (f" ({usable} usable)" if usable != cores else ""),
            "python": platform.python_version(), "numpy": version("numpy"), "numba": version("numba"),
            "torch": version("torch"), "jax": version("jax"), "jaxlib": version("jaxlib"),
            "command": shlex.join([os.path.basename(sys.executable), *sys.argv]),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def markdown(rows, columns=COLUMNS, info=None, title="bptt training speed"):
    """A Markdown document: the machine details, then the rows as a table."""
    info = info or machine()
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: `{v}`" if k == "command" else f"- **{k}**: {v}" for k, v in info.items()]
    peaks = [r["peak_gflops"] for r in rows if r.get("peak_gflops")]
    if peaks:
        lines.append(f"- **float32 GEMM peak** (NumPy, 1024^3, the MFU denominator): {max(peaks):.0f} GFLOP/s")
    lines += ["", "| " + " | ".join(t for _, t, _, _ in columns) + " |",
              "|" + "|".join(":---" if a[0] == "<" else "---:" for _, _, a, _ in columns) + "|"]
    lines += ["| " + " | ".join(cell_text(r, k, f) for k, _, _, f in columns) + " |" for r in rows]
    losses = {}
    for r in rows:
        if r.get("valid_loss") is not None:
            losses.setdefault(r["config"], []).append(r["valid_loss"])
    agree = [f"{c} {max(v) - min(v):.1e}" for c, v in losses.items() if len(v) > 1]
    if agree:
        lines += ["", "Largest difference between the frameworks' validation losses: " + ", ".join(agree) + "."]
    return "\n".join(lines) + "\n"
