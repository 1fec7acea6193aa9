"""Figures of gradient flow (matplotlib, Agg backend: no screen needed). Each function draws one
figure and writes it as PNG and SVG next to each other; it returns the PNG's path.

    gradient_norms     ||dL/dh_k|| against the distance T - k, log scale, one line per curve
    singular_values    largest and smallest singular value of dh_T/dh_k against T - k
    flow_heatmap       ||dL/dh_k|| (rows: training steps, columns: k), log colour scale
    success            solved or not, for each cell and sequence length T
    truncation         cosine between the TBPTT(k) gradient and the full one, against k
    agreement          compare-gradients: cosine and relative error against BPTT's, against k, with UORO and RTRL
    cost_per_step      compare-gradients: time and peak memory per step of each algorithm
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save(fig, path):
    path = Path(path).with_suffix("")
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=110)
    fig.savefig(path.with_suffix(".svg"))
    plt.close(fig)
    return path.with_suffix(".png")


def positive(values):
    """Zeros cannot go on a log axis: show them at the smallest positive float64."""
    v = np.asarray(values, np.float64)
    return np.where(v > 0, v, np.finfo(np.float64).tiny)


def gradient_norms(curves, path, title="How much of the loss at step T reaches step k"):
    """curves: {label: norms (T+1,) for k = 0..T}."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, norms in curves.items():
        T = len(norms) - 1
        ax.semilogy(T - np.arange(T + 1), positive(norms), label=label)
    ax.set_xlabel("distance T - k (steps back in time)")
    ax.set_ylabel("||dL_T / dh_k||")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def singular_values(curves, path, title="Singular values of the Jacobian product dh_T/dh_k"):
    """curves: {label: singular values (T+1, B, H)}; plots the batch mean of the largest (solid)
    and smallest (dashed) against T - k."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (label, sv) in enumerate(curves.items()):
        T = len(sv) - 1
        d = T - np.arange(T + 1)
        color = f"C{i}"
        ax.semilogy(d, positive(sv[:, :, 0].mean(axis=1)), color=color, label=f"{label}: largest")
        ax.semilogy(d, positive(sv[:, :, -1].mean(axis=1)), color=color, linestyle="--", label=f"{label}: smallest")
    ax.set_xlabel("distance T - k")
    ax.set_ylabel("singular value (batch mean)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return save(fig, path)


def flow_heatmap(steps, norms, path, title="||dL/dh_k|| during training"):
    """steps (N,), norms (N, T+1): one row per recorded training step."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    data = np.log10(positive(norms))
    image = ax.imshow(data, aspect="auto", origin="lower", cmap="viridis",
                      extent=(-0.5, norms.shape[1] - 0.5, 0, len(steps)))
    ticks = np.linspace(0, len(steps) - 1, min(len(steps), 6)).astype(int)
    ax.set_yticks(ticks + 0.5, [str(steps[i]) for i in ticks])
    ax.set_xlabel("step k in the window")
    ax.set_ylabel("training step")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="log10 ||dL/dh_k||")
    return save(fig, path)


def success(results, path, title="Solved within the step budget"):
    """results: {cell: {T: solved (bool)}}; a grid of cells against T."""
    cells = list(results)
    lengths = sorted({T for r in results.values() for T in r})
    grid = np.array([[results[c].get(T, np.nan) for T in lengths] for c in cells], dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(lengths), 0.9 + 0.45 * len(cells)))
    ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for i in range(len(cells)):
        for j in range(len(lengths)):
            text = "" if np.isnan(grid[i, j]) else ("solved" if grid[i, j] else "failed")
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(lengths)), [f"T={T}" for T in lengths])
    ax.set_yticks(range(len(cells)), cells)
    ax.set_title(title)
    return save(fig, path)


def truncation(rows, path, title="Bias of truncated BPTT"):
    """rows: [{"k", "cosine", "relative_error"}, ...] (diagnostics.truncation_bias)."""
    k = [r["k"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(k, [r["cosine"] for r in rows], marker="o", label="cosine(TBPTT(k), full)")
    ax.plot(k, [r["relative_error"] for r in rows], marker="s", label="relative error")
    ax.set_xlabel("k: steps backpropagated")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return save(fig, path)


def agreement(rows, T, path, title="Each gradient against full BPTT"):
    """rows: lab.compare's. Cosine (left) and relative error (right, log scale, an exact 0 drawn at
    1e-17, below float64's round-off) against k for TBPTT(k); UORO's single runs as a band (mean ± std
    over its seeds) and the mean of its runs as a dashed line; RTRL as a point at k = T (it is exact)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    tbptt = [r for r in rows if r["algorithm"].startswith("TBPTT")]
    for ax, key in zip(axes, ("cosine", "relative_error"), strict=True):
        shown = (lambda v: v) if key == "cosine" else (lambda v: np.maximum(np.asarray(v, np.float64), 1e-17))
        ax.plot([r["k"] for r in tbptt], shown([r[key] for r in tbptt]), marker="o", label="TBPTT(k)")
        for r in rows:
            if "seeds" in r:
                s = r[f"seed_{key}"]
                low, high = shown([s["mean"] - s["std"], s["mean"] + s["std"]])
                ax.axhspan(low, high, color="C1", alpha=0.25, label=f"UORO, one run (mean ± std of {r['seeds']})")
                ax.axhline(shown(r[key]), color="C1", linestyle="--", label=f"UORO, mean of {r['seeds']} runs")
            elif r["algorithm"] == "RTRL":
                ax.plot([T], shown([r[key]]), marker="*", markersize=12, linestyle="", color="C2", label="RTRL")
        ax.set_xscale("log")
        ax.set_yscale("linear" if key == "cosine" else "log")
        ax.set_xlabel("k: steps backpropagated (TBPTT)")
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    return save(fig, path)


def cost_per_step(rows, path, title="Cost per step"):
    """rows: lab.compare's. Bars, log scale: wall-clock time per step (ms) and peak memory of the call
    (MiB, tracemalloc) for each algorithm (UORO: one run)."""
    names = [r["algorithm"].split(",")[0] + (" (one run)" if "seeds" in r else "") for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.8 + 0.35 * len(rows)))
    for ax, values, label in ((axes[0], [r["seconds_per_step"] * 1e3 for r in rows], "ms per step"),
                              (axes[1], [r["peak_bytes"] / 2**20 for r in rows], "peak MiB of the call")):
        ax.barh(range(len(rows)), positive(values), color=[f"C{i % 10}" for i in range(len(rows))])
        ax.set_yticks(range(len(rows)), names)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.suptitle(title)
    return save(fig, path)
