"""Does bf16 train as well as float32? The same runs, same seed, same steps, in both precisions:
validation loss against steps, a table and a figure.

    python experiments/bf16_quality.py --out runs/bf16-quality            # about 10 minutes on 2 cores
    python experiments/bf16_quality.py --plot-only --out runs/bf16-quality

The two models:
    char   make demo's model: bptt train's defaults (a character LSTM 2 x 256, embedding 64, Adam 2e-3,
           clipping 5, windows of 64, batch 32) on Tiny Shakespeare, --steps 3000
    word   word_language_model's defaults without dropout: --level word --max-vocab 10000, LSTM 2 x 200,
           embedding 200, SGD lr 20, clipping 0.25, windows of 35, batch 20, --steps 3000

each validated every 250 steps, with --precision float32 and --precision bf16 (bptt train, --seed 0: the
same weights and windows). The runs go one after the other; a run directory that exists is read, not
run again. The figure is docs/figures/bf16_quality.png when --figure is not given.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "char": ["--steps", "3000"],
    "word": ["--level", "word", "--max-vocab", "10000", "--hidden", "200", "--embedding", "200", "--layers", "2",
             "--window", "35", "--batch", "20", "--optimizer", "sgd", "--lr", "20", "--clip", "0.25",
             "--steps", "3000"],
}
PRECISIONS = ("float32", "bf16")


def run(out, model, precision):
    folder = out / f"{model}-{precision}"
    if not folder.exists():
        subprocess.run([sys.executable, "-m", "bptt", "train", str(folder), *MODELS[model], "--precision", precision,
                        "--eval-every", "250", "--seed", "0"], check=True)
    return folder


def validation(folder):
    """[(step, validation loss)] of a run, from its metrics.jsonl."""
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if r.get("split") == "valid"]


def table(curves):
    """Markdown: per model, the last and the best validation loss of each precision and bf16's gap."""
    lines = ["| model | steps | float32 last | bf16 last | gap | float32 best | bf16 best | gap |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for model in MODELS:
        f, b = curves[model]["float32"], curves[model]["bf16"]
        fl, bl = f[-1][1], b[-1][1]
        fb, bb = min(v for _, v in f), min(v for _, v in b)
        lines.append(f"| {model} | {f[-1][0]} | {fl:.4f} | {bl:.4f} | {100 * (bl - fl) / fl:+.2f}% | {fb:.4f} | "
                     f"{bb:.4f} | {100 * (bb - fb) / fb:+.2f}% |")
    return "\n".join(lines)


def plot(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MODELS), figsize=(10, 3.8))
    for ax, model in zip(axes, MODELS):
        for precision, style in zip(PRECISIONS, ("-", "--")):
            steps, losses = zip(*curves[model][precision])
            ax.plot(steps, losses, style, marker="o", markersize=3, label=precision)
        ax.set_title(f"{model}: validation loss (nats)")
        ax.set_xlabel("step")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/bf16-quality"))
    p.add_argument("--plot-only", action="store_true", help="read the runs in --out; run nothing")
    p.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "bf16_quality.png")
    args = p.parse_args(argv)
    curves = {}
    for model in MODELS:
        curves[model] = {}
        for precision in PRECISIONS:
            folder = args.out / f"{model}-{precision}"
            if not args.plot_only:
                args.out.mkdir(parents=True, exist_ok=True)
                run(args.out, model, precision)
            curves[model][precision] = validation(folder)
    print(table(curves))
    plot(curves, args.figure)
    print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
