"""The bptt command line: main(argv) parses, calls the library, prints, and returns an exit code.

Exit codes: 0 done, 1 a failed check or a diverged run, 2 an error in what was asked (one line on
stderr: "error: ..."), 130 interrupted (Ctrl-C, SIGTERM; a training run saves first). No
traceback reaches the user: an unexpected exception is reported in one line as a bug (exit 3).

Heavy modules (the engine's compiler, matplotlib, tqdm) are imported by the subcommand that uses
them, so `bptt --help` answers at once.
"""

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import typing
from pathlib import Path

from . import __version__
from .report import plural

CELL_FORMS = ("rnn", "gru", "lstm", "skip", "rnn-tanh", "rnn-relu", "rnn-sigmoid", "skip-tanh", "skip-relu",
              "skip-sigmoid")


def flag(name):
    return "--" + name.replace("_", "-")


def number(kind, what, ok):
    """An argparse type: kind(text) that satisfies ok, else a usage error saying what is expected."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (kind is float and not math.isfinite(value)) or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what
    return parse


POSITIVE_INT = number(int, "a positive int", lambda v: v > 0)
NONNEGATIVE_INT = number(int, "an int >= 0", lambda v: v >= 0)
POSITIVE = number(float, "a positive number", lambda v: v > 0)
NONNEGATIVE = number(float, "a number >= 0", lambda v: v >= 0)
PROBABILITY = number(float, "a probability in (0, 1]", lambda v: 0 < v <= 1)


class HelpFormatter(argparse.HelpFormatter):
    """Help texts as written (each default is in the text once, from the config field)."""


class UsageError(ValueError):
    pass


class Renamed(argparse.Action):
    """An option's former name: a usage error that gives the new one (--length is a sequence length T
    in every subcommand; sample's number of tokens is --tokens)."""

    def __init__(self, option_strings, dest, new, **kw):
        super().__init__(option_strings, dest, **kw)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        raise UsageError(f"{option_string}: renamed {self.new} here ({option_string} means a sequence length T "
                         f"in bptt); give {self.new} {values}")


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error raised (and printed by main as one line) instead of exiting."""

    def error(self, message):
        if message.startswith("argument "):                     # "argument --hidden: ..." -> "--hidden: ..."
            message = message[len("argument "):]
        raise UsageError(f"{message} (see {self.prog} --help)")


def parser_for(sub, name, help, description):
    return sub.add_parser(name, help=help, description=description, formatter_class=HelpFormatter)


# --- gradcheck -------------------------------------------------------------------------------------

def add_gradcheck(sub):
    from . import gradcheck
    from .engine import ENGINES

    p = parser_for(
        sub, "gradcheck", "check every analytic gradient against finite differences and PyTorch",
        "Compare the BPTT gradients of every parameter, the float inputs and the initial state with "
        "fourth-order central finite differences in float64 and, when torch is installed, with PyTorch autograd "
        f"on the same weights. Errors are norm-relative per array; tolerances {gradcheck.FD_TOL:g} (finite "
        f"differences) and {gradcheck.TORCH_TOL:g} (PyTorch). Exits 1 if any check fails.")
    p.add_argument("--cell", nargs="+", choices=gradcheck.CELL_NAMES, default=list(gradcheck.CELL_NAMES),
                   help="cells to check (default: all)")
    p.add_argument("--layers", type=POSITIVE_INT, default=2, help="number of stacked layers (default: 2)")
    p.add_argument("--inputs", choices=gradcheck.INPUT_KINDS, default="onehot",
                   help="token ids as one-hot, token ids through an embedding, or float features (default: onehot)")
    p.add_argument("--target", choices=("every", "last"), default="every",
                   help="targets at every step (language model) or only the last (many-to-one) (default: every)")
    p.add_argument("--loss", choices=("cross_entropy", "mse"), default="cross_entropy",
                   help="loss at the targets (default: cross_entropy)")
    p.add_argument("--no-state", action="store_true", help="start from zeros (state=None)")
    p.add_argument("--no-lengths", action="store_true", help="all sequences full length")
    p.add_argument("--all", action="store_true",
                   help="the whole matrix: every cell x 1 and 3 layers x every input kind, target and loss x with "
                        f"and without state and lengths ({len(list(gradcheck.all_cases()))} cases, one line each)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--engine", choices=ENGINES, default="fast",
                   help="the compiled cells or the NumPy reference cells (default: fast)")
    p.add_argument("--seq-len", type=POSITIVE_INT, default=5, help="T (default: 5)")
    p.add_argument("--batch", type=POSITIVE_INT, default=3, help="B (default: 3)")
    p.add_argument("--hidden", type=POSITIVE_INT, default=4, help="H (default: 4)")
    p.add_argument("--seed", type=NONNEGATIVE_INT, default=0, help="random seed of the weights and data (default: 0)")


def run_gradcheck(args):
    from . import gradcheck

    use_torch = not args.no_torch and gradcheck.torch_available()
    sizes = dict(T=args.seq_len, B=args.batch, H=args.hidden, seed=args.seed, engine=args.engine)
    if args.all:
        cases = list(gradcheck.all_cases(**sizes))
    else:
        cases = [gradcheck.Case(cell, args.layers, args.inputs, args.target, args.loss, not args.no_state,
                                not args.no_lengths, **sizes) for cell in dict.fromkeys(args.cell)]
    torch_text = "skipped" if args.no_torch else "autograd" if use_torch else "not compared (torch not installed)"
    print(f"bptt {__version__} gradcheck: {args.engine} engine, float64, {plural(len(cases), 'case')}, "
          f"PyTorch {torch_text}")
    start, failed = time.perf_counter(), 0
    for case in cases:
        rows = gradcheck.compare(case, use_torch)
        ok = all(row[-1] for row in rows)
        failed += not ok
        if args.all:
            worst_fd = max(r[2] for r in rows if r[2] is not None)
            worst_t = max((r[3] for r in rows if r[3] is not None), default=None)
            t = "-" if worst_t is None else f"{worst_t:.1e}"
            print(f"{case.label():<52} fd {worst_fd:.1e}  torch {t:>7}   {'ok' if ok else 'FAIL'}")
        else:
            print(f"\n{case.label()}\n{gradcheck.format_rows(rows)}")
    print(f"\n{len(cases) - failed} passed, {failed} failed in {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


# --- train -----------------------------------------------------------------------------------------

def default_text(f):
    """" (default: X)" for a field whose default is a value; None and flags say it in their help."""
    shown = f.metadata["shown"]
    if shown is None:
        if f.default is None or isinstance(f.default, bool):
            return ""
        shown = f"{f.default:g}" if isinstance(f.default, float) else f.default
    return f" (default: {shown})" if shown != "" else ""


def add_config_options(p):
    """One option per TrainConfig field: its help, choices and default come from the field."""
    from .config import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        help = f.metadata["help"] + default_text(f)
        if f.type == "bool" or isinstance(f.default, bool):
            p.add_argument(flag(f.name), action="store_true", default=None, help=help)
            continue
        kind = next(t for t in typing.get_args(f.type) or (f.type,) if t is not type(None))
        kind = {"int": int, "float": float, "str": str}.get(kind, kind)
        choices = CELL_FORMS if f.name == "cell" else f.metadata["choices"]
        p.add_argument(flag(f.name), type=kind, choices=choices, default=None, help=help,
                       metavar=None if choices else f.name.upper())


def add_train(sub):
    from .config import RESUMABLE

    p = parser_for(sub, "train", "train a language model or classifier with truncated BPTT",
                   "Train a character- or word-level language model (TBPTT(k1, k2)), a text classifier or a "
                   "long-range problem. Writes RUN_DIR/{run.json, config.json, vocab.json, checkpoint.safetensors, "
                   "best.safetensors, metrics.jsonl} and only into a new or empty directory. Ctrl-C or SIGTERM "
                   "saves and stops; --resume continues exactly where it stopped.")
    p.add_argument("run", nargs="?", metavar="RUN_DIR", help="run directory (or give it as --out)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (the same as RUN_DIR)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUN_DIR with its saved config; " + ", ".join(map(flag, RESUMABLE))
                        + " may change (a budget counts all steps, before and after)")
    p.add_argument("--sample", type=NONNEGATIVE_INT, default=0, metavar="N",
                   help="print N sampled tokens at the end (default: 0)")
    add_config_options(p)


def run_dir(args):
    out, positional = getattr(args, "out", None), args.run
    if out is not None and positional is not None and Path(out) != Path(positional):
        raise ValueError(f"--out: {out} and RUN_DIR {positional} disagree; give the run directory once")
    chosen = out or positional
    if chosen is None:
        raise ValueError("RUN_DIR: missing; give the run directory, e.g. bptt train runs/mine")
    return chosen


def given_options(args):
    """The config fields given on the command line (not None), as TrainConfig values."""
    from .config import TrainConfig

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name) is not None}
    if "separator" in given:                                  # --separator '\n\n' means two line breaks
        given["separator"] = given["separator"].replace("\\n", "\n").replace("\\t", "\t")
    cell = given.get("cell", "")
    if "-" in cell:                                           # --cell rnn-relu: the cell and its nonlinearity
        base, nonlinearity = cell.split("-")
        if given.get("nonlinearity", nonlinearity) != nonlinearity:
            raise ValueError(f"--nonlinearity: {given['nonlinearity']} disagrees with --cell {cell}")
        given["cell"], given["nonlinearity"] = base, nonlinearity
    return given


def config_error(e):
    """A ValueError or TypeError about a config field, with the field shown as its option."""
    from .config import TrainConfig

    text = str(e)
    name = text.split(":", 1)[0]
    if name in {f.name for f in dataclasses.fields(TrainConfig)}:
        return type(e)(flag(name) + text[len(name):])
    return e


def run_train(args):
    from .config import TrainConfig

    from . import report, train

    out = run_dir(args)
    given = given_options(args)
    try:
        if args.resume:
            run = train.Run(out)
            run.check_resumable()
            cfg, _ = train.resumed(run.config(), train.absolute(given))
        else:
            cfg = TrainConfig(**given)
    except (ValueError, TypeError) as e:
        raise config_error(e) from None
    if args.sample and cfg.task != "lm":
        raise ValueError(f"--sample: applies to a language model (--task lm) only; got --task {cfg.task}")

    display = report.TrainDisplay()
    try:
        outcome = train.train(cfg, out, resume=args.resume, on_event=display,
                              given={k: given.get(k) for k in ("data", "valid")})
    except (ValueError, TypeError) as e:
        raise config_error(e) from None
    finally:
        display.close()
    run = train.Run(out)
    p = outcome.progress
    if outcome.status == "interrupted":
        print(f"stopped at step {p.step}; saved. Continue with: bptt train {out} --resume")
        return 130
    cfg = run.config()
    epochs = display.epochs(p)
    print(f"\n{plural(p.step, 'step')} ({epochs}), {p.tokens / 1e6:.2f}M tokens in {p.elapsed:.0f} s; "
          f"clipped on {p.clipped / max(p.step, 1):.0%} of steps; best validation {p.best_valid:.4f} at step "
          f"{p.best_step}")
    print(report.results(outcome.valid, outcome.baselines, cfg))
    if args.sample:
        print()
        print_sample(run, prime=None, tokens=args.sample, temperature=0.8, seed=cfg.seed)
    return 0


# --- sample ----------------------------------------------------------------------------------------

def encode_prime(vocab, prime, level):
    from . import data

    tokens = list(prime) if level == "char" else prime.split()
    try:
        return vocab.encode(tokens)                           # only a character vocabulary refuses a token
    except ValueError:
        unknown = sorted(set(tokens) - vocab.index.keys())
        raise ValueError(f"--prime: characters not in the training vocabulary: {data.listing(unknown)}") from None


def print_sample(run, prime, tokens, temperature=1.0, top_k=None, top_p=None, seed=0, greedy=False):
    """Print the prime and then each generated token as it is drawn (a progress bar on stderr for
    long samples on a terminal)."""
    import numpy as np

    from . import generate, report

    cfg = run.config()
    if cfg.task != "lm":
        raise ValueError(f"sample: {run.path} holds a classifier (task {cfg.task!r}); sampling needs a language model")
    net, _ = run.network("best")
    vocab = run.vocab()
    ids = encode_prime(vocab, prime, cfg.level) if prime else []
    if not len(ids):                                          # no prime (or only spaces at word level)
        prime = ""
        ids = vocab.encode(["<eos>"] if cfg.level == "word" else ["\n" if "\n" in vocab.index else vocab.tokens[0]])
    drawn = generate.stream(net.params, net.arch, ids, tokens, np.random.default_rng(seed), temperature, top_k,
                            top_p, greedy)
    text = report.Detokenizer(cfg.level, after=prime)
    sys.stdout.write(prime)
    with report.progress(tokens, "sample", "token") as bar:
        for token in drawn:
            sys.stdout.write(text.next(vocab.tokens[token]))
            sys.stdout.flush()
            bar.update(1)
    sys.stdout.write("\n")


def add_sample(sub):
    p = parser_for(sub, "sample", "generate text from a trained model",
                   "Generate text from the best checkpoint of a run: prime the state with --prime, then sample each "
                   "next token from softmax(z / temperature), optionally restricted to the top-k tokens or the top-p "
                   "probability mass. Tokens are printed as they are drawn.")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory written by bptt train")
    p.add_argument("--prime", default=None, help="text to start from (default: a line break, or <eos> at word level)")
    p.add_argument("--tokens", type=POSITIVE_INT, default=500, metavar="N", help="tokens to generate (default: 500)")
    p.add_argument("--length", action=Renamed, help=argparse.SUPPRESS, new="--tokens")   # its former name
    p.add_argument("--temperature", type=POSITIVE, default=1.0, help="divide the logits by this (default: 1)")
    p.add_argument("--top-k", type=POSITIVE_INT, default=None, help="sample among the k most likely tokens only")
    p.add_argument("--top-p", type=PROBABILITY, default=None,
                   help="sample among the most likely tokens that hold this probability mass (nucleus sampling)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--seed", type=NONNEGATIVE_INT, default=0, help="random seed (default: 0)")


def run_sample(args):
    from . import train

    if args.greedy and (args.temperature != 1.0 or args.top_k or args.top_p):
        raise ValueError("--greedy: takes the most likely token; --temperature, --top-k and --top-p do not apply")
    print_sample(train.Run(args.run), args.prime, args.tokens, args.temperature, args.top_k, args.top_p, args.seed,
                 args.greedy)
    return 0


# --- eval ------------------------------------------------------------------------------------------

def add_eval(sub):
    p = parser_for(sub, "eval", "loss, perplexity and bits/char of a trained model on a file",
                   "Evaluate the best checkpoint of a run on a file: for a language model, cross-entropy in nats per "
                   "token, perplexity e^loss and bits per character (char level) on a text; for a classifier, loss "
                   "and accuracy on a .tsv/.csv.")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory written by bptt train")
    p.add_argument("--data", required=True, metavar="FILE", help="UTF-8 text (or labelled file) to evaluate on")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best: the weights with the best validation loss; last: the latest checkpoint (default: best)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run_eval(args):
    from . import data, report, tasks, train

    run = train.Run(args.run)
    cfg = run.config()
    if cfg.task not in ("lm", "classify"):
        raise ValueError(f"eval: {run.path} was trained on the {cfg.task!r} problem; its test results are in "
                         f"its metrics.jsonl")
    net, meta = run.network(args.checkpoint)
    vocab = run.vocab()
    if cfg.task == "lm":
        text = data.read_text(args.data)
        tokens, starts = tasks.documents(text, cfg.level, cfg.separator)
        ids = tasks.encode_text(vocab, tokens, text, f"--data {args.data}")
        if ids.size < 2:
            raise ValueError(f"--data: {args.data} has {plural(ids.size, 'token')}; at least 2 are needed")
        result = tasks.lm_evaluate(net.params, net.arch, ids, cfg, starts)
    else:
        texts, names = data.read_labeled(args.data, cfg.level)
        seqs = [vocab.encode(tasks.text_tokens(t, cfg.level)) for t in texts]
        result = tasks.classify_metrics(net.params, net.arch, seqs, run.labels().encode(names), cfg.eval_batch)
    result = {"file": args.data, "checkpoint_step": meta["step"], **result}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.data} (checkpoint of step {meta['step']}): {report.metrics_line(result)}")
    return 0


# --- task ------------------------------------------------------------------------------------------

def add_task(sub):
    from . import problems, sweep

    p = parser_for(sub, "task", "train cells on a long-range problem over a sweep of lengths",
                   "Train each cell on a synthetic long-range problem for each sequence length T, with the same step "
                   "budget, and report which solve it. Problems: "
                   + "; ".join(f"{k}: solved when {v.description}" for k, v in problems.PROBLEMS.items())
                   + ". Cells (each with its paper's initialisation): " + ", ".join(sweep.VARIANTS)
                   + "; rnn-relu is the IRNN (identity recurrent weights), lstm has forget-gate bias 1, skip-tanh "
                     "reaches 8 steps back.")
    p.add_argument("problem", choices=tuple(problems.PROBLEMS), help="the long-range problem")
    p.add_argument("--lengths", type=POSITIVE_INT, nargs="+", default=[50, 100, 200], metavar="T",
                   help="sequence lengths T to train at (default: 50 100 200)")
    p.add_argument("--cells", nargs="+", default=list(sweep.VARIANTS), choices=(*sweep.VARIANTS, *sweep.ALIASES),
                   metavar="CELL", help=f"cells to train: {', '.join(sweep.VARIANTS)} (default: all)")
    p.add_argument("--steps", type=POSITIVE_INT, default=2000, help="step budget of each run (default: 2000)")
    p.add_argument("--hidden", type=POSITIVE_INT, default=64, help="hidden units (default: 64)")
    p.add_argument("--batch", type=POSITIVE_INT, default=32, help="sequences per step (default: 32)")
    p.add_argument("--optimizer", default="adam", choices=("sgd", "adagrad", "rmsprop", "adam", "adamw"),
                   help="optimiser (default: adam)")
    p.add_argument("--lr", type=POSITIVE, default=1e-2, help="learning rate (default: 0.01)")
    p.add_argument("--clip", type=NONNEGATIVE, default=1.0, help="global-norm clipping threshold, 0: off (default: 1)")
    p.add_argument("--seed", type=NONNEGATIVE_INT, default=0, help="random seed (default: 0)")
    p.add_argument("--test-size", type=POSITIVE_INT, default=500, help="sequences in each test set (default: 500)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="a new or empty directory; one run directory per (cell, T) goes here")
    p.add_argument("--report", action="store_true", help="write DIR/report.html with the figures")
    p.add_argument("--jobs", type=POSITIVE_INT, default=1,
                   help="runs trained at the same time, in processes (default: 1)")


def run_task(args):
    from . import sweep
    from .config import TrainConfig

    base = TrainConfig(hidden=args.hidden, layers=1, batch=args.batch, optimizer=args.optimizer, lr=args.lr,
                       clip=args.clip, seed=args.seed, steps=args.steps, eval_every=max(args.steps // 10, 1),
                       test_size=args.test_size, dtype="float32", task=args.problem)
    cells = list(dict.fromkeys(sweep.check(args.problem, args.lengths, args.cells)))
    print(f"{args.problem}: cells {', '.join(cells)}; T in {args.lengths}; {plural(args.steps, 'step')} each")
    print(f"{'cell':<12}{'T':>6}{'test loss':>12}{'accuracy':>10}{'steps':>7}{'seconds':>9}  result")

    def show(row):
        acc = f"{row['accuracy']:.3f}" if "accuracy" in row else "-"
        print(f"{row['cell']:<12}{row['T']:>6}{row['test_loss']:>12.5f}{acc:>10}{row['steps']:>7}{row['seconds']:>9.1f}  "
              f"{'solved' if row['solved'] else 'failed'}", flush=True)

    rows = sweep.run(base, args.problem, args.lengths, cells, args.out, on_run=show, jobs=args.jobs)
    if args.report:
        print(f"report: {sweep.report(args.out, args.problem, rows)}")
    return 0


# --- diagnose --------------------------------------------------------------------------------------

def add_diagnose(sub):
    p = parser_for(sub, "diagnose", "gradient-flow report of a trained run (HTML with figures)",
                   "Measure how gradients flow through time in a run's model: ||dL/dh_k|| for every step k, the "
                   "singular values of the Jacobian product dh_T/dh_k, the spectrum of each recurrent matrix, the "
                   "bias of truncated BPTT, and the gradient flow recorded during training (--flow-every). Writes a "
                   "self-contained HTML report; its figures also go to RUN_DIR/diagnose/.")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory written by bptt train")
    p.add_argument("--length", type=POSITIVE_INT, default=None, metavar="T",
                   help="T of the sequences measured (default: the run's window or problem length)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="report path, a new file (default: RUN_DIR/diagnose/report.html, replaced on each run)")


def run_diagnose(args):
    from . import report_diagnose, train

    path = report_diagnose.write(train.Run(args.run), args.length, args.out)
    print(f"report: {path}")
    return 0


# --- bench -----------------------------------------------------------------------------------------

def add_bench(sub):
    p = parser_for(sub, "bench", "training speed and memory against PyTorch and JAX on your configuration",
                   "Train a character language model on Tiny Shakespeare (Adam lr 2e-3, global-norm clipping at 5, "
                   "float32) with bptt, PyTorch and JAX from the same weights, timed in alternation, and print "
                   "tokens/s, ms/step, GFLOP/s, MFU, the validation loss of each after the same steps and its peak "
                   "resident memory (each framework runs in a worker process of its own). PyTorch and JAX are "
                   "optional: one not installed is skipped.")
    p.add_argument("--cell", choices=("rnn", "gru", "lstm"), default="lstm", help="recurrent cell (default: lstm)")
    p.add_argument("--hidden", type=POSITIVE_INT, default=256, help="hidden units per layer, H (default: 256)")
    p.add_argument("--layers", type=POSITIVE_INT, default=1, help="stacked layers, L (default: 1)")
    p.add_argument("--batch", type=POSITIVE_INT, default=32, help="parallel streams, B (default: 32)")
    p.add_argument("--window", type=POSITIVE_INT, default=64, help="steps per window, T (default: 64)")
    p.add_argument("--embedding", type=NONNEGATIVE_INT, default=64, help="embedding size, 0: one-hot (default: 64)")
    p.add_argument("--steps", type=POSITIVE_INT, default=20, help="timed steps per repeat (default: 20)")
    p.add_argument("--warmup", type=NONNEGATIVE_INT, default=3, help="untimed steps first (default: 3)")
    p.add_argument("--repeats", type=POSITIVE_INT, default=3,
                   help="timed repeats, frameworks in alternation (default: 3)")
    p.add_argument("--frameworks", nargs="+", choices=("bptt", "torch", "jax"), default=["bptt", "torch", "jax"],
                   help="what to compare (default: all three; torch and jax are skipped when not installed)")
    p.add_argument("--no-rss", action="store_true", help="leave out the peak-memory column")


def run_bench(args):
    from . import bench
    from .config import TrainConfig

    try:
        cfg = bench.config(TrainConfig(**(bench.BASE | {"cell": args.cell, "hidden": args.hidden,
                                                           "layers": args.layers, "batch": args.batch,
                                                           "window": args.window, "embedding": args.embedding})))
        rows = bench.run([cfg], args.steps, args.warmup, args.repeats, args.frameworks,
                         out=lambda line: print(line, flush=True), rss=not args.no_rss)
    except (ValueError, TypeError) as e:
        raise config_error(e) from None
    if not rows:
        raise ValueError(f"--frameworks: none of {', '.join(args.frameworks)} is installed")
    return 0


COMMANDS = {"gradcheck": (add_gradcheck, run_gradcheck), "train": (add_train, run_train),
            "eval": (add_eval, run_eval), "sample": (add_sample, run_sample), "task": (add_task, run_task),
            "diagnose": (add_diagnose, run_diagnose), "bench": (add_bench, run_bench)}


def build_parser():
    parser = Parser(prog="bptt", description="Recurrent networks trained by backpropagation "
                                     "through time, every gradient derived by hand and checked.")
    parser.add_argument("--version", action="version", version=f"bptt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command][1](args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                                       # bptt sample ... | head: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())    # no error when Python flushes at exit
        return 141
    except SystemExit as e:                                       # --help, --version
        return e.code if isinstance(e.code, int) else 0
    except (ValueError, TypeError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; choose a smaller model, batch or window", file=sys.stderr)
        return 2
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        from .train import Diverged

        if isinstance(e, Diverged):
            print(f"error: {e}", file=sys.stderr)
            return 1
        return internal_error(e)
    except Exception as e:  # noqa: BLE001 (the last line of defence: never a traceback)
        return internal_error(e)


def one_line(e):
    return " ".join(str(e).split("\n"))


def internal_error(e):
    print(f"error: internal error ({type(e).__name__}: {one_line(e)}); this is a bug in bptt: please report it "
          f"with the command line", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
