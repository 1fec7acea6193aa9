"""The report of a sweep (bptt task ... --report): which cells solve the problem at each T, how the
gradient reaches back through time at initialisation, and the learning curves, as one HTML page
with its figures (DIR/report.html)."""

from pathlib import Path

import numpy as np

from ..training import building, opening, problems
from . import diagnostics, figures, page
from .sweep import run_name


def report(out, problem, rows):
    """out/report.html: the success grid, gradient profiles at initialisation, learning curves."""
    out = Path(out)
    p = problems.get(problem)
    results = {}
    for r in rows:
        results.setdefault(r["cell"], {})[r["T"]] = r["solved"]
    budget = rows[0]["steps"]
    success_png = figures.success(results, out / "success", f"{problem}: solved within {budget} steps")
    T = max(r["T"] for r in rows)
    profiles = initial_profiles(out, p, list(results), T)
    flow_png = figures.gradient_norms(profiles, out / "gradient_norms",
                                      f"{problem}, T={T}: ||dL_T/dh_k|| at initialisation")
    reach = sorted(((norms[0] / norms[-1], cell) for cell, norms in profiles.items()), reverse=True)
    reach_text = ", ".join(f"{cell} {ratio:.1e}" for ratio, cell in reach)
    curves_png = curves_figure(out, problem, p, rows, list(results), T)
    solved = sorted({r["cell"] for r in rows if r["solved"] and r["T"] == T})
    failed = sorted({r["cell"] for r in rows if not r["solved"] and r["T"] == T})
    order = ["cell", "T", "solved", "test_loss", "accuracy", "steps", "seconds"]
    table = [{k: r[k] for k in order if k in r} for r in rows]
    sections = [
        ("Which cells solve it", success_png,
         f"Each cell was trained with the same budget for each length T. At T={T}, solved: "
         f"{', '.join(solved) or 'none'}; failed: {', '.join(failed) or 'none'}. Success means {p.description}.",
         table),
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
                      intro=f"{problems.__doc__.split(chr(10))[0]} Budget: {budget} steps per run.")


def initial_profiles(out, p, cells, T):
    """{cell: ||dL_T/dh_k|| for k = 1..T} of each cell's T run as initialised (float64), on 8 of the
    problem's sequences: how far back the loss reaches before any training."""
    profiles = {}
    for cell in cells:
        cfg = opening.Run(out / run_name(cell, T)).config()
        net = building.build_network(cfg.replace(dtype="float64"), p.input_size, p.output_size)   # as initialised
        x, y = p.generate(T, 8, np.random.default_rng(0))
        if p.target == "every":
            y = y[-1]
        profiles[cell] = diagnostics.gradient_norms(net.params, net.arch, x, y, target="last", loss=p.loss)[-1]
    return profiles


def learning_curves(out, rows):
    """{label: (steps, test losses)} from each run's metrics.jsonl."""
    curves = {}
    for r in rows:
        records = opening.Run(Path(out) / run_name(r["cell"], r["T"])).records()
        evals = [rec for rec in records if rec.get("split") == "valid"]
        curves[f"{r['cell']} T={r['T']}"] = ([e["step"] for e in evals], [e["loss"] for e in evals])
    return curves


def curves_figure(out, problem, p, rows, cells, T):
    """out/learning_curves.png: each run's test loss as it trains (colour: cell, line style: T), with
    the trivial answer's loss at the longest T."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.6))
    lengths = sorted({r["T"] for r in rows})
    styles = ["-", "--", ":", "-."]
    for r, (label, (steps, losses)) in zip(rows, learning_curves(out, rows).items()):
        ax.semilogy(steps, figures.positive(losses), color=f"C{cells.index(r['cell'])}",
                    linestyle=styles[lengths.index(r["T"]) % len(styles)], label=label)
    ax.axhline(p.baseline(T), color="k", linewidth=0.8, label=f"trivial answer (T={T})")
    ax.set_xlabel("training step")
    ax.set_ylabel("test loss")
    ax.set_title(f"{problem}: test loss during training (colour: cell, line style: T)")
    ax.legend(fontsize=6, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return figures.save(fig, out / "learning_curves")
