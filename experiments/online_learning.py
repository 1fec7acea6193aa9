"""Online learning at equal compute: TBPTT(k), UORO and RTRL on a delayed-echo stream (bptt.lab.online).

The stream: B independent rows, x_t uniform over n symbols, the target y_t = x_{t-lag} (the first lag
steps' targets are drawn at random: nothing predicts them), cross-entropy; chance is ln n, and a network
that stores the last lag symbols reaches 0. The hidden state is never reset. TBPTT(k) with k <= lag
cannot credit x_{t-lag} to y_t (its gradient stops k - 1 steps back); UORO and RTRL carry the influence
from the stream's start. Each run gets the same wall-clock budget on one core (on_chunk stops it), so the
curves compare what each learns per second; the seconds per step each reached are recorded.

    python experiments/online_learning.py --out runs/online            # runs, writes online_learning.json/.png
    python experiments/online_learning.py --out runs/online --plot-only
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

import bptt
from bptt.lab import online
from bptt.training import optim

BINS = 150          # points per curve: the chunks' losses averaged over bins of equal steps


def delayed_echo(T, B, n, lag, rng):
    """xs (T, B) uniform over n symbols, ys (T, B) = xs shifted by lag (random for the first lag steps)."""
    xs = rng.integers(0, n, (T + lag, B), dtype=np.int8)
    return xs[lag:], xs[:T]


def runs(args):
    """The configurations compared: (label, gradient, k, seed)."""
    out = [(f"TBPTT(k={k})", "tbptt", k, None) for k in args.tbptt]
    out += [(f"UORO(k={args.uoro_k}, seed {s}{uoro_lr(args)})", "uoro", args.uoro_k, s) for s in range(args.uoro_seeds)]
    return out + [(f"RTRL(k={args.rtrl_k})", "rtrl", args.rtrl_k, None)]


def uoro_lr(args):
    """', lr=...' in UORO's label where it has its own learning rate, else ''."""
    return "" if args.uoro_lr is None else f", lr={args.uoro_lr:g}"


def learning_rate(args, gradient):
    """--lr, or --uoro-lr for UORO when given."""
    return args.uoro_lr if gradient == "uoro" and args.uoro_lr is not None else args.lr


def one_run(args, gradient, k, seed, budget):
    """Train a fresh network on a fresh stream (the same for every run) for `budget` seconds: the
    chunks' (end step, seconds, loss) and the seconds per step."""
    net = bptt.Network(args.cell, args.n, args.hidden, args.n, engine=args.engine, seed=0)
    rate = probe(args, net, gradient, k, seed)
    T = int(budget / rate * 2) + 10 * k
    xs, ys = delayed_echo(T, args.batch, args.n, args.lag, np.random.default_rng(1))
    rows, t0 = [], time.perf_counter()

    def record(chunk):
        rows.append((chunk.stop, time.perf_counter() - t0, chunk.loss))
        return rows[-1][1] >= budget

    online.train_online(net, xs, ys, gradient, k, optim.make("adam"), learning_rate(args, gradient), clip=args.clip,
                        seed=seed, on_chunk=record)
    steps, seconds, losses = map(np.array, zip(*rows, strict=True))
    return steps, seconds, losses, seconds[-1] / steps[-1]


def probe(args, net, gradient, k, seed, seconds=2.0):
    """Seconds per step of a short run, to size the stream."""
    xs, ys = delayed_echo(20000 * k, args.batch, args.n, args.lag, np.random.default_rng(2))
    t0, seen = time.perf_counter(), []

    def record(chunk):
        seen.append(chunk.stop)
        return time.perf_counter() - t0 >= seconds

    online.train_online(net, xs, ys, gradient, k, "adam", learning_rate(args, gradient), clip=args.clip, seed=seed,
                        on_chunk=record)
    return (time.perf_counter() - t0) / seen[-1]


def binned(steps, seconds, losses):
    """The curve on BINS bins of equal steps: each bin's end step, end second and mean loss (weighted by
    the chunks' lengths)."""
    lengths = np.diff(np.concatenate([[0], steps]))
    edges = np.linspace(0, steps[-1], BINS + 1)
    which = np.clip(np.searchsorted(edges, steps, side="left") - 1, 0, BINS - 1)
    out = {"steps": [], "seconds": [], "loss": []}
    for b in range(BINS):
        pick = which == b
        if pick.any():
            out["steps"].append(int(steps[pick][-1]))
            out["seconds"].append(float(seconds[pick][-1]))
            out["loss"].append(float(np.average(losses[pick], weights=lengths[pick])))
    return out


def final_loss(steps, losses, share=0.1):
    """The mean loss over the last `share` of the steps seen."""
    lengths = np.diff(np.concatenate([[0], steps]))
    pick = steps > steps[-1] * (1 - share)
    return float(np.average(losses[pick], weights=lengths[pick]))


def experiment(args):
    """Every run at the same budget: {"setting", "runs": [{label, gradient, k, seed, seconds_per_step,
    steps, final_loss, curve}]}."""
    results = []
    for label, gradient, k, seed in runs(args):
        steps, seconds, losses, rate = one_run(args, gradient, k, seed, args.budget)
        results.append(dict(label=label, gradient=gradient, k=k, seed=seed, seconds_per_step=rate,
                            steps=int(steps[-1]), seconds=float(seconds[-1]), final_loss=final_loss(steps, losses),
                            curve=binned(steps, seconds, losses)))
        print(f"{label:24s} {rate * 1e6:9.1f} us/step {int(steps[-1]):9d} steps  final loss "
              f"{results[-1]['final_loss']:.4f}", flush=True)
    setting = {name: value for name, value in vars(args).items() if name not in ("out", "plot_only")}
    return {"setting": setting | {"chance": math.log(args.n)}, "runs": results}


def uoro_title(setting):
    """' (UORO: lr=...)' for the title where UORO had its own learning rate, else ''."""
    return "" if setting.get("uoro_lr") is None else f" (UORO: lr={setting['uoro_lr']:g})"


def plot(data, path):
    """Loss against seconds (left) and against steps (right), chance as a dashed line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for run in data["runs"]:
        style = dict(label=run["label"], lw=1.2, ls="--" if run["gradient"] == "tbptt" else "-")
        axes[0].plot(run["curve"]["seconds"], run["curve"]["loss"], **style)
        axes[1].plot(run["curve"]["steps"], run["curve"]["loss"], **style)
    s = data["setting"]
    for ax, xlabel in zip(axes, ("wall-clock seconds (one core)", "stream steps"), strict=True):
        ax.axhline(s["chance"], color="grey", lw=0.8, ls=":", label=f"chance ln {s['n']}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("cross-entropy (nats), binned mean")
    axes[1].set_xscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Delayed echo, n={s['n']}, lag={s['lag']}: {s['cell']} H={s['hidden']}, B={s['batch']}, "
                 f"Adam lr={s['lr']}{uoro_title(s)}, {s['budget']:g} s each")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for online_learning.json and online_learning.png")
    p.add_argument("--plot-only", action="store_true", help="redraw the figure from the JSON in --out")
    p.add_argument("--budget", type=float, default=60.0, help="wall-clock seconds per run")
    p.add_argument("--cell", default="lstm", choices=("rnn", "gru", "lstm"))
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--n", type=int, default=4, help="symbols")
    p.add_argument("--lag", type=int, default=6)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate, every run")
    p.add_argument("--clip", type=float, default=1.0, help="global-norm clipping of each chunk's gradient")
    p.add_argument("--engine", default="numpy", choices=("numpy", "fast"), help="TBPTT's engine (RTRL, UORO: numpy)")
    p.add_argument("--tbptt", type=int, nargs="*", default=[2, 4, 16], help="TBPTT's k values")
    p.add_argument("--uoro-k", type=int, default=1)
    p.add_argument("--uoro-seeds", type=int, default=2)
    p.add_argument("--uoro-lr", type=float, default=None, help="UORO's own learning rate (default: --lr)")
    p.add_argument("--rtrl-k", type=int, default=1)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.plot_only:
        (out / "online_learning.json").write_text(json.dumps(experiment(args), indent=1))
    plot(json.loads((out / "online_learning.json").read_text()), out / "online_learning.png")


if __name__ == "__main__":
    main()
