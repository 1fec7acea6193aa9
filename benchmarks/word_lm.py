"""A word-level LSTM language model with the defaults of PyTorch's word_language_model example,
on Tiny Shakespeare read as a PTB-format corpus (one sentence per line, <eos> at each line end,
the 10,000 most frequent training words, the rest <unk>).

    2 layers of 200 units, embedding 200, plain SGD with lr 20 divided by 4 whenever validation
    does not improve (checked once per epoch), gradient norm clipped at 0.25, windows of 35 steps,
    batch 20, dropout 0.2

    python benchmarks/word_lm.py                 # 3 epochs
    python benchmarks/word_lm.py --epochs 1

Prints the validation perplexity after each epoch next to the unigram and uniform perplexities.
"""

import argparse
import math
import tempfile
import time

from bptt.training import tasks, train
from bptt.training.config import TrainConfig


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=float, default=3)
    args = p.parse_args()
    base = TrainConfig(level="word", max_vocab=10000, cell="lstm", hidden=200, layers=2, embedding=200,
                       optimizer="sgd", lr=20.0, schedule="plateau", clip=0.25, window=35, batch=20, dropout=0.2,
                       eval_batch=10, epochs=args.epochs)
    task = tasks.LanguageModel(base)
    cfg = base.replace(eval_every=task.steps_per_epoch)
    baselines = task.baselines()
    print(f"word-level Tiny Shakespeare: {task.train.size} train / {task.valid.size} valid tokens, vocabulary "
          f"{task.vocab.size}; {task.steps_per_epoch} steps per epoch")
    print(f"uniform perplexity {math.exp(baselines['uniform']):.1f}, unigram perplexity "
          f"{math.exp(baselines['unigram']):.1f}")
    start = time.perf_counter()

    def show(kind, r):
        if kind == "eval":
            print(f"step {r['step']:>5}  valid loss {r['loss']:.4f}  perplexity {r['perplexity']:.1f}  "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)

    with tempfile.TemporaryDirectory() as run:
        out = train.train(cfg, run, on_event=show)
    print(f"final validation perplexity {math.exp(out.valid_loss):.1f} vs unigram {math.exp(baselines['unigram']):.1f} "
          f"({out.progress.step} steps, {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
