"""What the command line shows while training and after: a progress bar, validation lines, the
final comparison with the baselines (uniform and unigram, or class prior), and decoded samples."""

import math
import sys

from tqdm import tqdm


def compact(n):
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e4 else str(n)


class TrainDisplay:
    """Receives train.train's events. A tqdm bar (step, loss, tokens/s, gradient norm, ETA) on a
    terminal; plain lines every few logs elsewhere (CI logs, pipes)."""

    def __init__(self, cfg, stream=None):
        stream = stream or sys.stderr
        self.cfg, self.stream, self.bar, self.logs = cfg, stream, None, 0
        self.interactive = stream.isatty()

    def __call__(self, kind, record):
        getattr(self, kind)(record)

    def write(self, line):
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def start(self, r):
        c = self.cfg
        source = c.data or "Tiny Shakespeare (shipped)"
        if c.task == "lm":
            self.write(f"training {c.cell} {c.layers}x{c.hidden} ({compact(r['params'])} parameters) on {source}, "
                       f"{c.level} level: {compact(r['train_tokens'])} train / {compact(r['valid_tokens'])} valid "
                       f"tokens, vocabulary {r['vocab']}")
            self.write(f"TBPTT({c.window}, {c.k2}), batch {c.batch}, {r['batches_per_epoch']} windows per epoch, "
                       f"{c.optimizer} lr {c.lr:g}, clip {c.clip:g} ({c.clip_mode}), {c.dtype}")
            self.write(f"loss at initialisation should be about ln {r['vocab']} = {r['uniform']:.3f} nats; "
                       f"unigram baseline {r['unigram']:.3f}")
        else:
            self.write(f"training a {c.cell} {c.layers}x{c.hidden} classifier ({compact(r['params'])} parameters) on "
                       f"{source}: {r['train_examples']} train / {r['valid_examples']} valid examples, "
                       f"{r['labels']} labels, vocabulary {r['vocab']}; full BPTT over each sequence")
            self.write(f"loss at initialisation should be about ln {r['labels']} = {r['uniform']:.3f} nats; "
                       f"class prior {r['prior']:.3f}, majority accuracy {r['majority_accuracy']:.1%}")
        if r["step"]:
            self.write(f"resuming at step {r['step']}")
        self.bar = tqdm(total=r["total"], initial=r["step"], desc="train", unit="step", file=self.stream,
                        disable=not self.interactive, dynamic_ncols=True)

    def log(self, r):
        if self.bar is not None and not self.bar.disable:
            self.bar.update(r["step"] - self.bar.n)
            self.bar.set_postfix_str(f"loss {r['loss']:.3f}  {r['tokens_per_s'] / 1e3:.1f}k tok/s  "
                                     f"|g| {r['grad_norm']:.2f}", refresh=False)
        else:
            self.logs += 1
            if self.logs % 10 == 1:
                self.write(f"step {r['step']:>6}  loss {r['loss']:.4f}  {r['tokens_per_s'] / 1e3:6.1f}k tok/s  "
                           f"|g| {r['grad_norm']:.3f}  lr {r['lr']:.2e}  clipped {r['clipped_fraction']:.0%}  "
                           f"{r['elapsed']:.0f}s")

    def eval(self, r):
        extra = f"  perplexity {r['perplexity']:.2f}" if "perplexity" in r else f"  accuracy {r['accuracy']:.1%}"
        extra += f"  {r['bits_per_char']:.3f} bits/char" if "bits_per_char" in r else ""
        self.write(f"step {r['step']:>6}  valid loss {r['loss']:.4f}{extra}  (best {r['best']:.4f})")

    def close(self):
        if self.bar is not None:
            self.bar.close()


def results(metrics, baselines, cfg):
    """The final validation metrics against the baselines, as a small table."""
    if cfg.task == "classify":
        return (f"validation ({metrics['examples']} examples):\n"
                f"{'':10}{'loss (nats)':>12}{'accuracy':>10}\n"
                f"{'model':10}{metrics['loss']:>12.4f}{metrics['accuracy']:>10.1%}\n"
                f"{'prior':10}{baselines['prior']:>12.4f}{baselines['majority_accuracy']:>10.1%}\n"
                f"{'uniform':10}{baselines['uniform']:>12.4f}")
    char = cfg.level == "char"
    lines = [f"validation ({metrics['tokens']} tokens):",
             f"{'':10}{'loss (nats)':>12}{'perplexity':>12}" + (f"{'bits/char':>11}" if char else "")]
    for name, value in (("model", metrics["loss"]), ("unigram", baselines["unigram"]), ("uniform", baselines["uniform"])):
        line = f"{name:10}{value:>12.4f}{math.exp(value):>12.2f}"
        lines.append(line + (f"{value / math.log(2):>11.3f}" if char else ""))
    return "\n".join(lines)


def detokenize(tokens, level):
    if level == "char":
        return "".join(tokens)
    lines, words = [], []
    for token in tokens:                                     # "<eos>" ends a line
        if token == "<eos>":
            lines.append(" ".join(words))
            words = []
        else:
            words.append(token)
    return "\n".join(lines + [" ".join(words)])
