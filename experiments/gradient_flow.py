"""Reproduce the seeds' claims about vanishing and exploding gradients, measured exactly.

    python experiments/gradient_flow.py            # writes docs/figures/*.png and prints the tables

1. Decay rate by nonlinearity: ||dL_T/dh_k|| for sigmoid, tanh and ReLU RNNs at PyTorch's default
   initialisation, and GRU / LSTM, over T = 100 steps; the fitted decay per step and the distance
   at which the gradient has fallen to 1% and to 1e-6 of its value at k = T.
2. The spectral radius of U: a tanh RNN whose U is scaled to radius rho, and a linear-regime check:
   below 1 the gradient vanishes, above 1 it can grow.
3. Identity initialisation: a ReLU RNN with U = I (IRNN) against the default initialisation.
4. Clipping: a tanh RNN with rho = 1.5 trained on the adding problem (T = 50) with SGD, with and
   without global-norm clipping at 1: how often the gradient norm explodes, and what the run reaches.

Every number is an average over 5 random initialisations and 32 random input sequences.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import bptt
from bptt import diagnostics, figures, init, problems, train
from bptt.training import opening
from bptt.training.config import TrainConfig

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"
H, T, SEEDS = 64, 100, 5


def profile(cell, nonlinearity="tanh", recurrent="default", rho=None, T=T, seeds=SEEDS, skip=None, forget_bias=None,
            params=None):
    """Mean over seeds of ||dL_T/dh_k|| / ||dL_T/dh_T|| for k = 0..T, a single layer (given params:
    those of a trained model instead of fresh initialisations)."""
    curves = []
    for seed in range(seeds):
        net = bptt.Network(cell, 2, H, 1, nonlinearity=nonlinearity, seed=seed, skip=skip)
        init.apply(net.params, net.arch, np.random.default_rng(seed), recurrent=recurrent, radius=rho,
                   forget_bias=forget_bias)
        if params is not None:
            net.params = {k: v.astype(np.float64) for k, v in params.items()}
        x, y = problems.adding(T, 32, np.random.default_rng(100 + seed))
        if recurrent == "identity":
            x = np.abs(x)
        norms = diagnostics.gradient_norms(net.params, net.arch, x, y, target="last", loss="mse")[0]
        curves.append(norms / norms[-1])
    return np.exp(np.mean(np.log(np.maximum(curves, 1e-300)), axis=0))      # geometric mean


def horizon(curve, level):
    """The smallest distance T - k at which the relative gradient falls below level (None: never)."""
    below = np.nonzero(curve[::-1] < level)[0]
    return int(below[0]) if below.size else None


def decay_per_step(curve, upto=40):
    """The fitted geometric factor per step over the first `upto` steps back (1 = no decay)."""
    d = np.arange(min(upto, len(curve) - 1) + 1)
    logs = np.log(np.maximum(curve[::-1][d], 1e-300))
    return float(np.exp(np.polyfit(d, logs, 1)[0]))


def table(curves):
    rows = []
    for label, c in curves.items():
        rows.append({"model": label, "decay per step": round(decay_per_step(c), 4),
                     "steps to 1%": horizon(c, 1e-2), "steps to 1e-6": horizon(c, 1e-6),
                     f"ratio at T={len(c) - 1}": f"{c[0]:.2e}"})
    return rows


def clipping_experiment():
    """Train a tanh RNN with U at spectral radius 1.5 on the adding problem, with and without clipping."""
    results = []
    for clip in (0.0, 1.0):
        cfg = TrainConfig(task="adding", length=50, cell="rnn", hidden=H, layers=1, embedding=0, batch=32, steps=1000,
                          eval_every=500, optimizer="sgd", lr=0.05, clip=clip, radius=1.5, log_every=1,
                          test_size=500, seed=0, dtype="float64")
        with tempfile.TemporaryDirectory() as run:
            try:
                result = f"test MSE {train.train(cfg, run).valid['loss']:.4f}"
            except train.Diverged as e:
                result = str(e).split(":")[0] + f" (loss {str(e).split('loss ')[1].split(',')[0]})"
            records = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
        norms = np.array([r["grad_norm"] for r in records if "grad_norm" in r])
        finite = norms[np.isfinite(norms)]
        results.append({"clip": clip or "off", "median gradient norm": f"{np.median(finite):.3g}",
                        "max gradient norm": f"{norms.max():.3g}",
                        "steps with norm > 10x median": int((norms > 10 * np.median(finite)).sum()),
                        "result": result})
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--skip-training", action="store_true", help="only the measurements at initialisation")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    report = {}

    nonlin = {"rnn sigmoid": profile("rnn", "sigmoid"), "rnn tanh": profile("rnn", "tanh"),
              "rnn relu": profile("rnn", "relu"), "irnn (relu, U = I)": profile("rnn", "relu", "identity"),
              "skip rnn (s = 8)": profile("skip", "tanh", skip=8), "gru": profile("gru"), "lstm": profile("lstm"),
              "lstm, forget bias 1": profile("lstm", forget_bias=1.0)}
    figures.gradient_norms(nonlin, OUT / "decay_by_cell", "||dL_T/dh_k|| / ||dL_T/dh_T|| at initialisation (H=64)")
    report["by cell"] = table(nonlin)

    radius = {f"tanh, rho(U) = {r}": profile("rnn", "tanh", rho=r) for r in (0.5, 0.9, 1.0, 1.1, 1.5, 3.0)}
    radius |= {"tanh, orthogonal U": profile("rnn", "tanh", "orthogonal")}
    figures.gradient_norms(radius, OUT / "decay_by_radius", "tanh RNN: the spectral radius of U")
    report["by spectral radius"] = table(radius)

    long = {"rnn tanh": profile("rnn", "tanh", T=500, seeds=2), "gru": profile("gru", T=500, seeds=2),
            "lstm": profile("lstm", T=500, seeds=2), "irnn": profile("rnn", "relu", "identity", T=500, seeds=2)}
    sweep = Path(__file__).resolve().parents[1] / "runs" / "adding"        # bptt task adding ... --out runs/adding
    for cell, kind in (("gru", "gru"), ("lstm", "lstm"), ("rnn-tanh", "rnn"), ("skip-rnn", "skip")):
        run = sweep / f"{cell}-T200"
        if run.exists():
            trained, _ = opening.Run(run).load_params("best")
            long[f"{cell} trained on adding T=200"] = profile(kind, T=500, seeds=2, params=trained,
                                                              skip=8 if kind == "skip" else None)
    figures.gradient_norms(long, OUT / "decay_500", "Over 500 steps, at initialisation")
    report["over 500 steps"] = table(long)

    if not args.skip_training:
        report["clipping"] = clipping_experiment()
    for name, rows in report.items():
        print(f"\n{name}")
        keys = list(rows[0])
        print(" | ".join(keys))
        for r in rows:
            print(" | ".join(str(r[k]) for k in keys))
    (OUT / "gradient_flow.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
