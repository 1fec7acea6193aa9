"""BPTT next to the algorithms that approximate it or carry it forward: each one's gradient of one
stream's loss against full BPTT's, and what it costs per step.

The stream is T steps of B rows, x (T, B) ids or (T, B, D) features, with a target at every step (a
language model: the loss is the mean over the T B positions) or at the last step only. Every
algorithm runs with the parameters held fixed, from a zero state, in float64, on the NumPy reference
cells (the fast engine's compiled loops would time BPTT apart from RTRL and UORO, which run there):

    BPTT       one window of T steps: the exact gradient g (engine.loss_and_grads)
    TBPTT(k)   windows of k steps, the state carried from one to the next as values (nothing flows
               back past a window's start); window w's gradient g_w of its own mean loss, weighted by
               its share of the positions, T_w / T (target at every step), so that with k = T the sum
               is g itself; with the target at the last step only the last window has a loss
    RTRL       the influence matrices carried forward (model/rtrl.py): g again, exactly (a check)
    UORO       the rank-one unbiased estimate, one run per seed: the mean over n seeds, and each seed
               on its own (mean and standard deviation of its cosine and relative error)

Against g, over all parameters concatenated and per parameter array:

    cosine(ĝ, g) = ĝ·g / (|ĝ| |g|)        relative error = |ĝ - g| / |g|

Time per step: the call's wall clock / T, the median of `repeats` calls (UORO: of its seeds' calls).
Memory: the peak of the NumPy and Python allocations during one call, measured by tracemalloc in a
separate call (tracing slows the interpreter, so that call is not timed), above what was allocated
before it; bytes per step = that peak / T. BPTT's grows with T (it keeps every step's cache),
TBPTT(k)'s with k, RTRL's with B S P (the influence matrices: S the state size, P the parameters
reaching it), UORO's with B (S + P).

RTRL costs O(B S^2 P) per step: rtrl_cost estimates its influence matrices' bytes and the stream's
multiply-adds, and compare refuses (ValueError) a network above MAX_RTRL_BYTES or MAX_RTRL_FLOPS
unless told to skip RTRL (rtrl=False).

    compare(params, arch, x, y)  ->  {"T", "B", "parameters", "rows": [row, ...]}
    row: {"algorithm", "k", "cosine", "relative_error", "seconds_per_step", "peak_bytes",
          "bytes_per_step", "per_parameter": {name: {"cosine", "relative_error"}}}
         UORO's row adds "seeds", "seed_cosine" and "seed_relative_error" ({"mean", "std", "values"})
"""

import dataclasses
import statistics
import time
import tracemalloc
from typing import NamedTuple

import numpy as np

from .. import checks
from ..model import engine
from ..model.rtrl import SUPPORTED_CELLS, UNSUPPORTED_ARCH, layout
from ..reference import form

DEFAULT_KS = (1, 2, 5, 10, 20, 50)      # TBPTT(k) for these k below T, and k = T
DEFAULT_SEEDS = 20                      # UORO runs
REPEATS = 3                             # timed calls per algorithm (the median counts)
MAX_RTRL_BYTES = 1 << 30                # RTRL's influence matrices, float64: refused above 1 GiB
MAX_RTRL_FLOPS = 5e11                   # and above 5e11 multiply-adds over the stream (minutes on one core)


def check_network(arch):
    """A ValueError naming the first part of arch that RTRL and UORO do not support (model/rtrl.py)."""
    if arch.cell not in SUPPORTED_CELLS:
        raise ValueError(f"cell: RTRL and UORO run {', '.join(SUPPORTED_CELLS)}; got cell={arch.cell!r}")
    for name, what in UNSUPPORTED_ARCH.items():
        if getattr(arch, name):
            raise ValueError(f"{name}: RTRL and UORO do not support {what}; got {name}={getattr(arch, name)!r}")


def rtrl_cost(arch, B, T):
    """(bytes, multiply-adds) of RTRL on a stream of T steps and B rows, float64: its influence matrices
    M^k (B, S, P_k), and (R1)'s J_t M^k_{t-1} at every step, B S^2 P_k each."""
    ends = layout(arch).ends
    S = sum(arch.state_sizes)
    return 8 * B * S * sum(ends), T * B * S * S * sum(ends)


def check_rtrl(arch, B, T):
    """A ValueError when RTRL would take more than MAX_RTRL_BYTES or MAX_RTRL_FLOPS."""
    size, flops = rtrl_cost(arch, B, T)
    if size > MAX_RTRL_BYTES or flops > MAX_RTRL_FLOPS:
        S, P = sum(arch.state_sizes), layout(arch).ends[-1]
        raise ValueError(f"rtrl: RTRL on this network carries influence matrices of {size / 2**30:.2f} GiB "
                         f"(B {B} x S {S} x P {P} float64) and takes {flops:.2g} multiply-adds over T {T} steps, "
                         f"above the limit of {MAX_RTRL_BYTES / 2**30:.0f} GiB and {MAX_RTRL_FLOPS:.0e}; skip it "
                         f"(rtrl=False), or compare on fewer rows, fewer steps or a smaller network")


def truncations(T, ks=None):
    """The k of TBPTT(k), sorted: DEFAULT_KS below T and T itself, or the ks given (each 1..T)."""
    if ks is None:
        return sorted({k for k in DEFAULT_KS if k < T} | {T})
    ks = [checks.positive_int("ks", k) for k in ks]
    if not ks or max(ks) > T:
        raise ValueError(f"ks: expected one or more k from 1 to T = {T} (the stream's steps), got {ks}")
    return sorted(set(ks))


def flat(grads, names):
    return np.concatenate([grads[name].ravel() for name in names])


def cosine(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na and nb else float("nan")


def relative_error(a, b):
    nb = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / nb) if nb else float("nan")


def agreement(grads, full):
    """cosine and relative error of grads against full, over all parameters and per parameter."""
    names = sorted(full)
    a, b = flat(grads, names), flat(full, names)
    return {"cosine": cosine(a, b), "relative_error": relative_error(a, b),
            "per_parameter": {name: {"cosine": cosine(grads[name].ravel(), full[name].ravel()),
                                     "relative_error": relative_error(grads[name], full[name])} for name in names}}


def peak_bytes(call):
    """The peak bytes that tracemalloc sees allocated during call() above what was before it."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        call()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        if started:
            tracemalloc.stop()


def timed(call):
    """(call()'s value, its wall clock in seconds)."""
    start = time.perf_counter()
    value = call()
    return value, time.perf_counter() - start


def measured(call, T, repeats):
    """(call()'s gradients, seconds per step: the median of repeats calls / T, peak bytes of one call)."""
    peak = peak_bytes(call)
    runs = [timed(call) for _ in range(repeats)]
    return runs[-1][0], statistics.median(seconds for _, seconds in runs) / T, peak


def full_bptt(params, arch, x, y, target, loss):
    """BPTT over the whole stream: one window of T steps."""
    return engine.loss_and_grads(params, arch, x, y, None, target, loss).grads


def truncated(params, arch, x, y, target, loss, k):
    """TBPTT(k): windows of k steps, the state carried between them as values, each window's gradient
    weighted by its share T_w / T of the positions (target="every"); with target="last", the windows
    before the last only carry the state forward."""
    T = len(x)
    grads = {name: np.zeros_like(p) for name, p in params.items()}
    state = None
    for a in range(0, T, k):
        b = min(a + k, T)
        if target == "last" and b < T:
            state = engine.final_state(params, arch, x[a:b], state)
            continue
        r = engine.loss_and_grads(params, arch, x[a:b], y[a:b] if target == "every" else y, state, target, loss)
        share = (b - a) / T if target == "every" else 1.0
        for name in grads:
            grads[name] += share * r.grads[name]
        state = r.state
    return grads


def forward_mode(params, arch, x, y, target, loss, algorithm, seed=None):
    """RTRL's gradient, or UORO's estimate with its signs from seed, over the whole stream."""
    return engine.loss_and_grads(params, arch, x, y, None, target, loss, algorithm=algorithm, seed=seed).grads


def row(algorithm, k, grads, full, seconds_per_step, peak, T):
    return {"algorithm": algorithm, "k": k, **agreement(grads, full), "seconds_per_step": seconds_per_step,
            "peak_bytes": int(peak), "bytes_per_step": peak / T}


def spread(values):
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values), "values": values}


def uoro_row(params, arch, x, y, target, loss, full, seeds, seed):
    """UORO over seeds runs, signs from seed's spawned streams: the mean estimate's agreement, and each
    run's (mean and spread), time per step the median over the runs."""
    children = np.random.SeedSequence(seed).spawn(seeds)

    def run(child):
        return forward_mode(params, arch, x, y, target, loss, "uoro", np.random.default_rng(child))

    peak = peak_bytes(lambda: run(children[0]))
    runs = [timed(lambda child=child: run(child)) for child in children]
    mean = {name: sum(g[name] for g, _ in runs) / seeds for name in full}
    each = [agreement(g, full) for g, _ in runs]
    T = len(x)
    out = row(f"UORO, mean of {seeds}", None, mean, full, statistics.median(s for _, s in runs) / T, peak, T)
    return out | {"seeds": seeds, "seed_cosine": spread(a["cosine"] for a in each),
                  "seed_relative_error": spread(a["relative_error"] for a in each)}


def prepared(params, arch, x, target, loss, seeds, repeats):
    """params in float64, arch on the NumPy reference cells, x's floats in float64; the options checked."""
    check_network(arch)
    checks.one_of("target", target, checks.TARGETS)
    checks.one_of("loss", loss, ("cross_entropy", "mse"))
    checks.positive_int("seeds", seeds, minimum=0)
    checks.positive_int("repeats", repeats)
    x = np.asarray(x)
    if x.ndim not in (2, 3) or len(x) == 0:
        raise ValueError(f"x: expected a stream (T, B) of ids or (T, B, D) of features, T >= 1; got shape {x.shape}")
    params = {name: np.asarray(p, np.float64) for name, p in params.items()}
    return params, dataclasses.replace(arch, engine="numpy"), x if x.ndim == 2 else x.astype(np.float64)


def compare(params, arch, x, y, target="every", loss="cross_entropy", ks=None, seeds=DEFAULT_SEEDS, rtrl=True,
            seed=0, repeats=REPEATS):
    """Every algorithm's gradient of the stream's loss against full BPTT's, and its cost (module doc):
    BPTT itself, TBPTT(k) for each k of truncations(T, ks), RTRL (unless rtrl=False; refused when too
    big, check_rtrl) and UORO over seeds runs (none for seeds=0), its signs from seed."""
    params, arch, x = prepared(params, arch, x, target, loss, seeds, repeats)
    T, B = x.shape[:2]
    ks = truncations(T, ks)
    if rtrl:
        check_rtrl(arch, B, T)
    stream = (params, arch, x, y, target, loss)
    full, seconds, peak = measured(lambda: full_bptt(*stream), T, repeats)
    rows = [row("BPTT", T, full, full, seconds, peak, T)]
    for k in ks:
        grads, seconds, peak = measured(lambda k=k: truncated(*stream, k), T, repeats)
        rows.append(row(f"TBPTT({k})", k, grads, full, seconds, peak, T))
    if rtrl:
        grads, seconds, peak = measured(lambda: forward_mode(*stream, "rtrl"), T, repeats)
        rows.append(row("RTRL", None, grads, full, seconds, peak, T))
    if seeds:
        rows.append(uoro_row(*stream, full, seeds, seed))
    return {"T": T, "B": B, "parameters": int(sum(p.size for p in params.values())), "rows": rows}



class Stream(NamedTuple):
    """What compare reads: the network and one stream, and where they come from (for the reader)."""

    params: dict
    arch: object
    x: np.ndarray            # (T, B) ids or (T, B, D) features
    y: np.ndarray            # (T, B) ids or (T, B, K) with target="every"; (B,) or (B, K) with "last"
    target: str
    loss: str
    source: str


def fresh(cell="lstm", hidden=32, layers=1, steps=50, batch=4, seed=0):
    """A fresh character-level network (PyTorch's initialisation, weights from seed, one-hot input) on
    the first (steps + 1) batch characters of the shipped Tiny Shakespeare, cut into batch streams."""
    from ..training import data, tasks

    text = tasks.shipped_text()
    tokens = sorted(set(text))                                    # the whole text's 65 characters
    index = {c: i for i, c in enumerate(tokens)}
    ids = np.array([index[c] for c in text[:(steps + 1) * batch]])
    stream = data.batchify(ids, batch)                            # (steps + 1, batch)
    name, nonlinearity = form(cell)
    arch = engine.Arch(name, len(tokens), hidden, len(tokens), num_layers=layers,
                       nonlinearity=nonlinearity or "tanh", engine="numpy")
    params = engine.init_params(arch, np.random.default_rng(seed), np.float64)
    return Stream(params, arch, stream[:-1], stream[1:], "every", "cross_entropy",
                  f"a fresh character-level {cell} {layers}x{hidden} (seed {seed}) on the first {len(ids)} "
                  f"characters of Tiny Shakespeare")


def of_run(run, steps=None, batch=4, seed=0):
    """A trained run's network (its best weights) and a stream of its validation data: a language
    model's first steps + 1 tokens of each of batch validation streams (steps: 50 by default, fewer
    if the streams are shorter); a long-range problem's freshly drawn batch of length steps (default:
    the run's). A classifier's sequences of many lengths are refused."""
    from ..training import data, problems, tasks

    cfg = run.config()
    task = run.task(cfg)                                          # its validation data
    net, meta = run.network("best")
    where = f"run {run.path} ({cfg.cell} {cfg.layers}x{cfg.hidden}, weights of step {meta.get('step', 0)})"
    if isinstance(task, tasks.LanguageModel):
        stream = data.batchify(task.valid, batch)
        if len(stream) < 2 or (steps or 0) > len(stream) - 1:
            raise ValueError(f"steps: the validation data holds {len(stream)} steps in each of {batch} streams; "
                             f"give at most {len(stream) - 1} steps, or fewer rows")
        stream = stream[:min(steps or 50, len(stream) - 1) + 1]
        return Stream(net.params, net.arch, stream[:-1], stream[1:], "every", "cross_entropy",
                      f"{where}, {len(stream) - 1} steps of {batch} validation streams")
    if isinstance(task, tasks.Synthetic):
        T = problems.check_length(cfg.task, steps or cfg.length, "steps")
        x, y = task.problem.generate(T, batch, np.random.default_rng(seed))
        return Stream(net.params, net.arch, x, y, task.problem.target, task.problem.loss,
                      f"{where}, {batch} fresh {cfg.task} sequences of T = {T}")
    raise ValueError(f"RUN_DIR: {run.path} holds a {cfg.task!r} classifier, whose sequences have many lengths; "
                     f"RTRL and UORO here run streams of one length (a language model or a long-range problem)")


def table(result):
    """The comparison as rows of text {column: value}: one per algorithm, UORO's as two (the mean of
    its runs, and one run: mean ± std over the seeds, with the time and memory of one run)."""
    out = []
    for r in result["rows"]:
        cost = {"ms/step": f"{r['seconds_per_step'] * 1e3:.3g}", "peak MiB": f"{r['peak_bytes'] / 2**20:.3g}",
                "KiB/step": f"{r['bytes_per_step'] / 2**10:.3g}"}
        line = {"algorithm": r["algorithm"], "cosine": f"{r['cosine']:.6f}",
                "relative error": f"{r['relative_error']:.3g}"}
        if "seeds" in r:
            out.append(line | {name: "-" for name in cost})
            c, e = r["seed_cosine"], r["seed_relative_error"]
            line = {"algorithm": "UORO, one run", "cosine": f"{c['mean']:.4f} ± {c['std']:.2g}",
                    "relative error": f"{e['mean']:.3g} ± {e['std']:.2g}"}
        out.append(line | cost)
    return out


def parameter_table(result):
    """Each parameter array's relative error against BPTT, one column per algorithm (rows of text)."""
    rows = result["rows"][1:]
    names = list(result["rows"][0]["per_parameter"])
    return [{"parameter": name} | {r["algorithm"]: f"{r['per_parameter'][name]['relative_error']:.3g}" for r in rows}
            for name in names]


def report(result, out, folder, intro):
    """The comparison as a self-contained HTML page at out (lab/page.py), its figures drawn into folder."""
    from . import page

    return page.write(out, "bptt compare-gradients", sections(result, folder), intro)


def sections(result, folder):
    """The report's sections (page.write's): the agreement with BPTT, the cost, and per parameter."""
    from . import figures

    T, rows = result["T"], result["rows"]
    return [
        ("Each gradient against full BPTT", figures.agreement(rows, T, folder / "agreement"),
         f"Cosine similarity and norm-relative error |g' - g| / |g| of each algorithm's gradient g' of the mean "
         f"loss over one stream of T = {T} steps and B = {result['B']} rows against full BPTT's g, over all "
         f"{result['parameters']} parameters, all in float64 with the same weights. TBPTT(k) carries the state "
         f"between windows of k steps but no gradient: its bias shrinks as k grows and vanishes at k = T. RTRL "
         f"carries the exact influence of every parameter forward, so it matches BPTT to round-off. UORO is "
         f"unbiased but noisy: one run against the mean of its runs.", table(result)),
        ("Time and memory per step", figures.cost_per_step(rows, folder / "cost_per_step"),
         "Wall-clock time per step (the median of a few calls, / T) and the peak memory of one call (NumPy and "
         "Python allocations as tracemalloc counts them, above what was allocated before the call; KiB/step is "
         "that peak / T). Every algorithm runs on the NumPy reference cells. BPTT keeps every step of the "
         "window; RTRL keeps influence matrices of B S P numbers and spends O(B S^2 P) per step; UORO keeps "
         "B (S + P).", None),
        ("Per parameter", None, "The relative error of each parameter array's gradient against BPTT's. The "
         "readout's (V, c) needs no gradient through time and TBPTT's forward pass is BPTT's, so TBPTT and UORO "
         "get it exactly (to round-off).",
         parameter_table(result)),
    ]
