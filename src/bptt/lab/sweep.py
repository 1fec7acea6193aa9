"""Which cells solve a long-range problem, as the sequence length T grows: one training run per
(cell, T) with the same budget, a table, and (optionally) an HTML report with the figures.

The cells compared are the seeds' and their remedies:

    rnn-tanh      Elman RNN, tanh, PyTorch's default initialisation
    rnn-sigmoid   Elman RNN, sigmoid (slope at most 1/4: the seeds' vanishing example)
    rnn-relu      ReLU RNN with the identity recurrent initialisation: the IRNN (Le et al. 2015)
    gru           GRU (PyTorch's formulation)
    lstm          LSTM with forget-gate bias 1 (Jozefowicz et al. 2015)
    skip-tanh     tanh RNN with a second recurrent connection 8 steps back (the seeds' skip RNN)

The names are the cell names of gradcheck and train (`--cell rnn-relu`); each comes with the
initialisation its paper recommends. "irnn" and "skip-rnn", their former names, are still accepted.
"""

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from .. import files
from ..training import problems, rundir

VARIANTS = {
    "rnn-tanh": dict(cell="rnn", nonlinearity="tanh"),
    "rnn-sigmoid": dict(cell="rnn", nonlinearity="sigmoid"),
    "rnn-relu": dict(cell="rnn", nonlinearity="relu", recurrent_init="identity"),
    "gru": dict(cell="gru"),
    "lstm": dict(cell="lstm", forget_bias=1.0),
    "skip-tanh": dict(cell="skip", nonlinearity="tanh", skip=8),
}
ALIASES = {"irnn": "rnn-relu", "skip-rnn": "skip-tanh"}


def one_run(base, problem, cell, T, out):
    """Train one (cell, T) into out/{cell}-T{T}; returns its row of results."""
    from ..training import train  # (not at import: bptt task --help stays light)

    cfg = base.replace(task=problem, length=int(T), embedding=0, **VARIANTS[cell])
    start = time.perf_counter()
    outcome = train.train(cfg, Path(out) / f"{cell}-T{T}")
    row = {"cell": cell, "T": int(T), "solved": bool(outcome.valid["solved"]),
           "test_loss": round(outcome.valid["loss"], 5), "steps": outcome.progress.step,
           "seconds": round(time.perf_counter() - start, 1)}
    if "accuracy" in outcome.valid:
        row["accuracy"] = round(outcome.valid["accuracy"], 4)
    return row


def check(problem, lengths, cells):
    """The cells (aliases resolved) after checking the problem, its lengths and the cell names."""
    for T in lengths:
        problems.check_length(problem, T, "--lengths")
    cells = [ALIASES.get(c, c) for c in cells]
    unknown = sorted(set(cells) - set(VARIANTS))
    if unknown:
        raise ValueError(f"cells: unknown {unknown}; expected some of {', '.join(VARIANTS)}")
    return cells


EXECUTORS = ("processes", "mpi")


def mpi_pool():
    """mpi4py.futures' pool of the MPI ranks this program was started with:

        mpiexec -n N python -m mpi4py.futures -m bptt task ... --executor mpi

    rank 0 runs the sweep, ranks 1..N-1 train its runs (N - 1 at a time)."""
    try:
        from mpi4py import MPI
        from mpi4py.futures import MPIPoolExecutor
    except ImportError as e:
        raise ValueError(f"--executor: 'mpi' needs mpi4py and an MPI library (pip install 'bptt[mpi]'): {e}") from None
    if MPI.COMM_WORLD.Get_size() < 2:
        raise ValueError("--executor: 'mpi' runs under MPI with workers: mpiexec -n N python -m mpi4py.futures "
                         "-m bptt task ... --executor mpi (N >= 2: rank 0 leads, the others train)")
    return MPIPoolExecutor()


def run(base, problem, lengths, cells, out, on_run=None, jobs=1, executor="processes"):
    """Train every (cell, T), `jobs` runs at a time in separate processes (one BLAS thread each),
    or on the ranks of an MPI job (executor="mpi", mpi_pool); returns the rows of results.json (also
    written to out). The rows are the same whatever runs them: each run is seeded by its config."""

    cells = check(problem, lengths, cells)
    if executor not in EXECUTORS:
        raise ValueError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    pool = mpi_pool() if executor == "mpi" else None
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "is a file" if not out.is_dir() else "is not empty"
        raise ValueError(f"--out: {out} {what}; a sweep writes its runs only into a new or empty directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out: cannot create {out} ({e.strerror})") from None
    rundir.check_writable(out)
    todo = [(cell, int(T)) for cell in dict.fromkeys(cells) for T in dict.fromkeys(lengths)]
    rows = []
    if pool is None and jobs == 1:
        for cell, T in todo:
            rows.append(one_run(base, problem, cell, T, out))
            if on_run is not None:
                on_run(rows[-1])
    else:
        if pool is None:
            os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"   # read by each new process
            pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
        with pool:
            futures = [pool.submit(one_run, base, problem, cell, T, out) for cell, T in todo]
            for future in as_completed(futures):
                rows.append(future.result())
                if on_run is not None:
                    on_run(rows[-1])
        rows.sort(key=lambda r: todo.index((r["cell"], r["T"])))
    files.write_json_atomic(out / "results.json", {"problem": problem, "config": base.to_json(), "runs": rows})
    return rows


def learning_curves(out, rows):
    """{label: (steps, test losses)} from each run's metrics.jsonl."""
    from ..training import train

    curves = {}
    for r in rows:
        records = train.Run(Path(out) / f"{r['cell']}-T{r['T']}").records()
        evals = [rec for rec in records if rec.get("split") == "valid"]
        curves[f"{r['cell']} T={r['T']}"] = ([e["step"] for e in evals], [e["loss"] for e in evals])
    return curves


def report(out, problem, rows):
    """out/report.html: the success grid, gradient profiles at initialisation, learning curves."""
    from ..training import train
    from . import diagnostics, figures, page

    out = Path(out)
    p = problems.get(problem)
    results = {}
    for r in rows:
        results.setdefault(r["cell"], {})[r["T"]] = r["solved"]
    success_png = figures.success(results, out / "success", f"{problem}: solved within {rows[0]['steps']} steps")

    T = max(r["T"] for r in rows)
    profiles = {}
    for cell in results:
        run = train.Run(out / f"{cell}-T{T}")
        cfg = run.config()
        net = train.build_network(cfg.replace(dtype="float64"), p.input_size, p.output_size)   # as initialised
        x, y = p.generate(T, 8, np.random.default_rng(0))
        if p.target == "every":
            y = y[-1]
        loss = p.loss
        profiles[cell] = diagnostics.gradient_norms(net.params, net.arch, x, y, target="last", loss=loss)[-1]
    flow_png = figures.gradient_norms(profiles, out / "gradient_norms",
                                      f"{problem}, T={T}: ||dL_T/dh_k|| at initialisation")
    reach = sorted(((norms[0] / norms[-1], cell) for cell, norms in profiles.items()), reverse=True)
    reach_text = ", ".join(f"{cell} {ratio:.1e}" for ratio, cell in reach)

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.6))
    cells, lengths = list(results), sorted({r["T"] for r in rows})
    styles = ["-", "--", ":", "-."]
    for r, (label, (steps, losses)) in zip(rows, learning_curves(out, rows).items()):
        ax.semilogy(steps, figures.positive(losses), color=f"C{cells.index(r['cell'])}",
                    linestyle=styles[lengths.index(r["T"]) % len(styles)], label=label)
    ax.axhline(p.baseline(T), color="k", linewidth=0.8, label=f"trivial answer (T={T})")
    ax.set_xlabel("training step")
    ax.set_ylabel("test loss")
    ax.set_title(f"{problem}: test loss during training (colour: cell, line style: T)")
    ax.legend(fontsize=6, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5))
    curves_png = figures.save(fig, out / "learning_curves")

    solved = sorted({r["cell"] for r in rows if r["solved"] and r["T"] == T})
    failed = sorted({r["cell"] for r in rows if not r["solved"] and r["T"] == T})
    order = ["cell", "T", "solved", "test_loss", "accuracy", "steps", "seconds"]
    rows = [{k: r[k] for k in order if k in r} for r in rows]
    sections = [
        ("Which cells solve it", success_png,
         f"Each cell was trained with the same budget for each length T. At T={T}, solved: "
         f"{', '.join(solved) or 'none'}; failed: {', '.join(failed) or 'none'}. Success means {p.description}.",
         rows),
        ("Gradient flow at initialisation", flow_png,
         "The norm of the gradient of the final loss with respect to each hidden state, against how far "
         "back that state is, before any training. A line that falls steeply means the loss cannot reach "
         f"early steps: the vanishing gradient. The fraction of it that reaches the first step: {reach_text}. "
         "Training changes this: see bptt diagnose on a trained run.", None),
        ("Learning curves", curves_png,
         "Test loss as training goes on; the black line is the loss of the trivial answer. A curve that "
         "stays on it has learned nothing about the long-range dependency.", None),
    ]
    return page.write(out / "report.html", f"bptt task {problem}", sections,
                             intro=f"{problems.__doc__.split(chr(10))[0]} Budget: {rows[0]['steps']} steps per run.")
