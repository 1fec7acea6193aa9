"""What the command line shows while training and after: a progress bar, validation lines, the
final comparison with the uniform and unigram baselines, and decoded samples."""

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
        self.write(f"training {c.cell} {c.layers}x{c.hidden} ({compact(r['params'])} parameters) on {source}, "
                   f"{c.level} level: {compact(r['train_tokens'])} train / {compact(r['valid_tokens'])} valid tokens, "
                   f"vocabulary {r['vocab']}")
        self.write(f"TBPTT({c.window}, {c.k2}), batch {c.batch}, {r['windows_per_epoch']} windows per epoch, "
                   f"{c.optimizer} lr {c.lr:g}, clip {c.clip:g} ({c.clip_mode}), {c.dtype}")
        self.write(f"loss at initialisation should be about ln {r['vocab']} = {r['uniform']:.3f} nats; "
                   f"unigram baseline {r['unigram']:.3f}")
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
        bits = f"  {r['bits_per_char']:.3f} bits/char" if "bits_per_char" in r else ""
        self.write(f"step {r['step']:>6}  valid loss {r['loss']:.4f}  perplexity {r['perplexity']:.2f}{bits}"
                   f"  (best {r['best']:.4f})")

    def close(self):
        if self.bar is not None:
            self.bar.close()


def comparison(loss, uniform, unigram, level):
    """A table of the model against the baselines: loss in nats, perplexity, bits per character."""
    rows = [("model", loss), ("unigram", unigram), ("uniform", uniform)]
    head = f"{'':10}{'loss (nats)':>12}{'perplexity':>12}" + (f"{'bits/char':>11}" if level == "char" else "")
    lines = [head]
    for name, value in rows:
        line = f"{name:10}{value:>12.4f}{math.exp(value):>12.2f}"
        if level == "char":
            line += f"{value / math.log(2):>11.3f}"
        lines.append(line)
    return "\n".join(lines)


def detokenize(tokens, level):
    if level == "char":
        return "".join(tokens)
    return " ".join(tokens).replace(" <eos> ", "\n").replace("<eos> ", "\n").replace(" <eos>", "\n").replace(
        "<eos>", "\n")
