"""A bidirectional classifier against a unidirectional one, the same in every other respect:
who speaks a speech of the play text, among the 8 speakers who speak most.

    python experiments/bidirectional_classifier.py                  # the table in docs/training.md
    python experiments/bidirectional_classifier.py --seeds 0 --epochs 1    # a quick look

The examples are the speeches of the shipped Tiny Shakespeare (a speaker's name line, then the
speech up to a blank line) of 5 to 60 words spoken by the 8 most frequent speakers, labelled
with the speaker, in an order shuffled once (seed 0: in the play's order the last tenth, the
validation set, would hold the speakers of the last plays alone). Each model: word level, the 10,000
most frequent words, embedding 64, one LSTM layer of 128 units (bidirectional: 128 each way),
dropout 0.3, Adam lr 2e-3, batch 32, for --epochs epochs, validated every half epoch; the table
gives the best validation accuracy and loss of each run, and the mean over the seeds.
"""

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np

from bptt.cli import main
from bptt.training import tasks

SPEAKERS, WORDS = 8, (5, 60)
MODEL = ["--task", "classify", "--level", "word", "--max-vocab", "10000", "--embedding", "64", "--hidden", "128",
         "--layers", "1", "--dropout", "0.3", "--batch", "32"]


def labelled(text):
    """text<TAB>speaker lines: the speeches of WORDS words by the SPEAKERS most frequent speakers."""
    speeches = []
    for block in text.split("\n\n"):
        name, _, speech = block.strip("\n").partition("\n")
        words = " ".join(speech.split())
        if name.endswith(":") and WORDS[0] <= len(words.split()) <= WORDS[1]:
            speeches.append((name[:-1], words))
    top = {who for who, _ in collections.Counter(who for who, _ in speeches).most_common(SPEAKERS)}
    lines = [f"{words}\t{who}\n" for who, words in speeches if who in top]
    order = np.random.default_rng(0).permutation(len(lines))     # the play's order puts each play's
    return "".join(lines[i] for i in order)                       # speakers together: shuffled once


def best(run):
    """(best validation accuracy, its loss) from the run's metrics.jsonl."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r.get("split") == "valid"]
    top = max(valid, key=lambda r: (r["accuracy"], -r["loss"]))
    return top["accuracy"], top["loss"]


def main_(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=6)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "speakers.tsv"
        data.write_text(labelled(tasks.shipped_text()), encoding="utf-8")
        examples = len(data.read_text().splitlines())
        every = str(max(1, round(0.9 * examples / 32 / 2)))
        rows = collections.defaultdict(list)
        for seed in args.seeds:
            for name, extra in (("unidirectional", []), ("bidirectional", ["--bidirectional"])):
                run = Path(folder) / f"{name}-{seed}"
                code = main(["train", str(run), "--data", str(data), *MODEL, "--epochs", str(args.epochs),
                             "--eval-every", every, "--seed", str(seed), *extra])
                if code:
                    return code
                rows[name].append(best(run))
    print(f"\n{examples:,} speeches, {SPEAKERS} speakers, {args.epochs:g} epochs, seeds {args.seeds}\n")
    print("| model | best validation accuracy (per seed) | mean | its loss (mean) |\n|---|---|---:|---:|")
    for name, results in rows.items():
        accs = ", ".join(f"{a:.1%}" for a, _ in results)
        mean_acc = sum(a for a, _ in results) / len(results)
        mean_loss = sum(v for _, v in results) / len(results)
        print(f"| {name} | {accs} | {mean_acc:.1%} | {mean_loss:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
