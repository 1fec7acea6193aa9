"""What the command line shows while training and after: a progress bar, validation lines, the
final comparison with the baselines (uniform and unigram, or class prior)."""

import math
import sys


def compact(n):
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e4 else str(n)


def plural(n, word, words=None):
    return f"{n:,} {word if n == 1 else words or word + 's'}"


def compiling_notice(cfg, stream=None):
    """Say once, before it starts, that the first use of the fast engine compiles it (a minute or
    two of silence otherwise: numba caches the code, so later runs start at once)."""
    from ..fast import stale_modules

    if cfg.engine != "numpy" and stale_modules((cfg.cell,)):
        print("compiling the fast engine for this CPU (once, a minute or two; later runs load it)",
              file=stream or sys.stderr, flush=True)


class TrainDisplay:
    """Receives train.train's events. A tqdm bar (step, loss, tokens/s, gradient norm, ETA) on a
    terminal; plain lines every few logs elsewhere (CI logs, pipes). The header describes the run
    as it really runs: the config of the start record (the saved one when resuming)."""

    def __init__(self, stream=None):
        stream = stream or sys.stderr
        self.cfg, self.stream, self.bar, self.logs, self.per_epoch = None, stream, None, 0, None
        self.interactive = stream.isatty()

    def __call__(self, kind, record):
        getattr(self, kind)(record)

    def write(self, line):
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def epochs(self, progress):
        """How many passes over the training data progress has made, e.g. "0.38 epochs" (None for a
        long-range problem, whose batches are drawn afresh: its data never repeats)."""
        if self.cfg is not None and self.cfg.task not in ("lm", "classify"):
            return None
        if not self.per_epoch:
            return plural(progress.epoch, "epoch")
        done = progress.epoch + progress.window / self.per_epoch
        return "1 epoch" if done == 1 else f"{done:.2f} epochs".replace(".00 ", " ")

    def start(self, r):
        c = self.cfg = r["config"]
        self.per_epoch = r.get("batches_per_epoch")
        given = r.get("given") or {}
        source = given.get("data") or c.data or "Tiny Shakespeare (shipped with bptt)"
        cell = f"{c.cell}-{c.nonlinearity}" if c.cell in ("rnn", "skip") else c.cell
        cell = "bidirectional " * c.bidirectional + cell
        size = f"{c.layers}x{c.hidden}" + (f" projected to {c.proj_size}" if c.proj_size else "")
        params = f"{compact(r['params'])} parameters" + ", the initial state learned" * c.learn_init_state
        if c.task == "lm":
            self.write(f"training {cell} {size} ({params}) on {source}, "
                       f"{c.level} level: {compact(r['train_tokens'])} train / {compact(r['valid_tokens'])} valid "
                       f"tokens, vocabulary {r['vocab']:,}")
            k1, k2 = r["tbptt"]
            self.write(f"TBPTT({k1}, {k2}), batch {c.batch}, {plural(r['batches_per_epoch'], 'window')} per "
                       f"epoch, {c.optimizer} lr {c.lr:g}, clip {c.clip:g} ({c.clip_mode}), {c.dtype}")
            if (k1, k2) != (c.window, c.k2):
                self.write(f"each of the {c.batch} streams holds {r['stream_steps']:,} steps, fewer than --window "
                           f"{c.window}" + (f" / --backprop {c.k2}" if c.backprop else "") +
                           ": the windows span whole streams (full BPTT over each)")
            self.write(f"loss at initialisation should be about ln {r['vocab']} = {r['uniform']:.3f} nats; "
                       f"unigram baseline {r['unigram']:.3f}")
        elif c.task == "classify":
            self.write(f"training a {cell} {size} classifier ({params}) on "
                       f"{source}: {r['train_examples']:,} train / {r['valid_examples']:,} valid examples, "
                       f"{r['labels']} labels, vocabulary {r['vocab']:,}; full BPTT over each sequence")
            if r.get("header"):
                self.write(f"line 1 of {source} read as a header ({' / '.join(r['header'])}) and skipped")
            self.write(f"loss at initialisation should be about ln {r['labels']} = {r['uniform']:.3f} nats; "
                       f"class prior {r['prior']:.3f}, majority accuracy {r['majority_accuracy']:.1%}")
        else:
            self.write(f"training {cell} {size} ({params}) on the "
                       f"{c.task} problem, T = {c.length}, batch {c.batch}; trivial answer {r['trivial']:.4f}")
        if r.get("embedding"):
            from ..training.pretrained import header

            self.write(header(r["embedding"]))
        if r.get("ranks", 1) > 1:
            self.write(f"data-parallel on {r['ranks']} MPI ranks, {c.batch // r['ranks']} rows of each batch per rank")
        for name in r.get("rebuilt") or ():
            self.write(f"{name} was missing: rebuilt from the training data (verified unchanged) and saved")
        if r["step"]:
            self.write(f"resuming at step {r['step']}" + (f" of {r['total']}" if r["total"] else ""))
        for name, (old, new) in (r.get("changes") or {}).items():
            self.write(f"changed on resume: {name} {old} -> {new}")
        from tqdm import tqdm

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
        self.write(f"step {r['step']:>6}  valid {metrics_line(r)}  (best {r['best']:.4f})")

    def close(self):
        if self.bar is not None:
            self.bar.close()


def metrics_line(r):
    """loss, perplexity, bits/char or accuracy, in one format wherever they are shown."""
    parts = [f"loss {r['loss']:.4f}"]
    if "perplexity" in r:
        parts.append(f"perplexity {r['perplexity']:.2f}")
    if "bits_per_char" in r:
        parts.append(f"{r['bits_per_char']:.3f} bits/char")
    if "accuracy" in r:
        parts.append(f"accuracy {r['accuracy']:.1%}")
    return "  ".join(parts)


def results(metrics, baselines, cfg):
    """The final validation metrics against the baselines, as a small table."""
    if cfg.task == "classify":
        return (f"validation ({plural(metrics['examples'], 'example')}):\n"
                f"{'':10}{'loss (nats)':>12}{'accuracy':>10}\n"
                f"{'model':10}{metrics['loss']:>12.4f}{metrics['accuracy']:>10.1%}\n"
                f"{'prior':10}{baselines['prior']:>12.4f}{baselines['majority_accuracy']:>10.1%}\n"
                f"{'uniform':10}{baselines['uniform']:>12.4f}")
    char = cfg.level == "char"
    if cfg.task != "lm":
        shown = "  ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        return f"test set: {shown}; trivial answer {baselines['trivial']:.4f}; " + \
            ("solved" if metrics.get("solved") else "not solved")
    lines = [f"validation ({plural(metrics['tokens'], 'token')} scored):",
             f"{'':10}{'loss (nats)':>12}{'perplexity':>12}" + (f"{'bits/char':>11}" if char else "")]
    rows = (("model", metrics["loss"]), ("unigram", baselines["unigram"]), ("uniform", baselines["uniform"]))
    for name, value in rows:
        line = f"{name:10}{value:>12.4f}{math.exp(value):>12.2f}"
        lines.append(line + (f"{value / math.log(2):>11.3f}" if char else ""))
    return "\n".join(lines)


def progress(total, desc, unit, stream=None, least=2000):
    """A tqdm bar on stderr for long jobs on a terminal; a bar that shows nothing elsewhere."""
    from tqdm import tqdm

    stream = stream or sys.stderr
    return tqdm(total=total, desc=desc, unit=unit, file=stream, leave=False,
                disable=total < least or not stream.isatty())
