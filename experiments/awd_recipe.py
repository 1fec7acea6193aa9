"""bptt train --recipe awd-lstm against word_language_model's defaults (PyTorch's examples), at the
same wall-clock budget on the same word-level corpus: validation perplexity over time, and a figure.

    python experiments/awd_recipe.py                          # 25 minutes each, the two side by side
    python experiments/awd_recipe.py --budget 120 --out /tmp/quick
    python experiments/awd_recipe.py --plot-only --out DIR    # the table and figure of earlier runs

The corpus is the shipped Tiny Shakespeare at word level, as bptt train --level word reads it (<eos>
at each line end, case and punctuation kept), its last tenth held out: 218,025 training and 24,626
validation tokens, a vocabulary of 23,843 words, full softmax in both. Both runs are bptt train:
the comparison is of the recipes, not of two engines. word_language_model's defaults are

    --model LSTM --emsize 200 --nhid 200 --nlayers 2 --dropout 0.2 --lr 20 --clip 0.25 --bptt 35
    --batch_size 20 (untied), plain SGD, the learning rate divided by 4 after an epoch whose
    validation loss is not the best so far

which are here --layers 2 --hidden 200 --embedding 200 --dropout 0.2 --lr 20 --clip 0.25 --window 35
--batch 20 --optimizer sgd --schedule plateau, validated once an epoch (every 311 steps: 218,025 tokens
/ 20 streams / 35). The recipe is --recipe awd-lstm (docs/training.md), validated once an epoch too
(every 155 steps: windows of 70 on average), as AWD-LSTM's main.py does, which NT-ASGD's trigger counts.

The two run at the same time, each pinned to a core of its own with one thread (NUMBA_NUM_THREADS=1),
for --budget seconds of training each (--max-time: validation included in the clock). Each one's best
validation perplexity is read from its metrics.jsonl; the figure plots validation perplexity against
elapsed seconds.
"""

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WLM = ["--level", "word", "--cell", "lstm", "--layers", "2", "--hidden", "200", "--embedding", "200",
       "--dropout", "0.2", "--lr", "20", "--clip", "0.25", "--window", "35", "--batch", "20", "--optimizer", "sgd",
       "--schedule", "plateau", "--eval-every", "311"]
AWD = ["--recipe", "awd-lstm", "--eval-every", "155"]
RUNS = {"word_language_model defaults": ("wlm", WLM), "bptt --recipe awd-lstm": ("awd", AWD)}


def launch(out, budget, seed):
    """Start both runs, each on a core of its own; wait for them."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0, 1]
    env = os.environ | {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    procs = []
    for i, (name, args) in enumerate(RUNS.values()):
        cmd = [sys.executable, "-m", "bptt", "train", str(out / name), *args, "--max-time", str(budget),
               "--seed", str(seed), "--log-every", "5"]
        core = {cores[i % len(cores)]}
        log = open(out / f"{name}.log", "w")
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      preexec_fn=lambda c=core: os.sched_setaffinity(0, c)))
    codes = [p.wait() for p in procs]
    if any(codes):
        sys.exit(f"a run failed (exit codes {codes}); see the .log files in {out}")


def curve(run_dir):
    """[(elapsed seconds, validation perplexity)] of a run, from its metrics.jsonl."""
    elapsed, points = 0.0, []            # the clock at the last logged step (every 5 steps) before a check
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        elapsed = r.get("elapsed", elapsed)
        if r.get("split") == "valid":
            points.append((elapsed, math.exp(r["loss"])))
    return points


def report(out):
    curves = {label: curve(out / name) for label, (name, _) in RUNS.items()}
    best = {label: min(p for _, p in pts) for label, pts in curves.items()}
    for label, pts in curves.items():
        print(f"{label:<30} best validation perplexity {best[label]:8.1f}  ({len(pts)} checks, "
              f"{pts[-1][0]:.0f} s)")
    base, ours = best["word_language_model defaults"], best["bptt --recipe awd-lstm"]
    print(f"the recipe's perplexity is {1 - ours / base:.1%} lower (target: at least 10%)")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4))
    end = max(pts[-1][0] for pts in curves.values())
    for label, pts in curves.items():
        line, = ax.plot([t / 60 for t, _ in pts], [p for _, p in pts], marker=".", label=label)
        if pts[-1][0] < end:                  # a shorter run: its best, drawn on to the longer one's end
            ax.plot([pts[-1][0] / 60, end / 60], [best[label]] * 2, ls="--", color=line.get_color())
    ax.set(xlabel="wall-clock minutes (one core each)", ylabel="validation perplexity",
           title="Tiny Shakespeare, word level (V = 23,843)", yscale="log")
    ax.legend()
    fig.tight_layout()
    path = ROOT / "docs/figures/awd_recipe.png"
    fig.savefig(path, dpi=120)
    print(f"figure: {path.relative_to(ROOT)}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=1500, help="seconds of training per run (default: 1500)")
    p.add_argument("--out", type=Path, default=Path("awd-recipe-runs"), help="a new folder for the two runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot-only", action="store_true", help="report the runs already in --out (a run resumed "
                   "with a longer --max-time, bptt train DIR/awd --resume --max-time S, is read as it now is)")
    args = p.parse_args(argv)
    if not args.plot_only:
        args.out.mkdir(parents=True, exist_ok=False)
        launch(args.out, args.budget, args.seed)
    report(args.out)


if __name__ == "__main__":
    main()
