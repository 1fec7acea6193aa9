"""The bptt command line: main(argv) parses, calls the library, prints, and returns an exit code."""

import argparse
import dataclasses
import json
import sys
import time
import typing

import numpy as np

from . import __version__, checks, gradcheck, report
from .config import TrainConfig
from .engine import ENGINES

TRAIN_HELP = {
    "task": "lm: a language model on a text; classify: one label per line of a .tsv/.csv (text<TAB>label); "
            "or a long-range problem (adding, copy, order, sentiment; see bptt task)",
    "length": "long-range problems: the sequence length T",
    "test_size": "long-range problems: sequences in the fixed test set",
    "data": "training text, UTF-8 (default: Tiny Shakespeare, shipped with bptt)",
    "valid": "validation text (default: the last --valid-fraction of --data)",
    "valid_fraction": "fraction of --data held out for validation when --valid is not given",
    "level": "tokens: characters, or words (PTB convention: <eos> at each line end, <unk>)",
    "max_vocab": "word level: keep only the most frequent words (the rest become <unk>)",
    "separator": "text that separates documents (e.g. a blank line); each stream's state restarts at every "
                 "document start, inside a window, without breaking the batch",
    "cell": "recurrent cell",
    "nonlinearity": "rnn and skip: f in h_t = f(W x_t + U h_{t-1} + b)",
    "skip": "skip RNN: s in h_t = f(W x_t + U h_{t-1} + S h_{t-s} + b)",
    "hidden": "hidden units per layer (H)",
    "layers": "stacked layers (L)",
    "embedding": "embedding size (0: one-hot inputs)",
    "tie": "tie the readout to the embedding (needs --embedding equal to --hidden)",
    "dropout": "non-recurrent dropout on the embedding, between layers and before the readout",
    "init": "input-weight initialisation",
    "recurrent_init": "recurrent-weight initialisation (identity: IRNN, Le et al. 2015)",
    "forget_bias": "lstm: initial forget-gate bias (e.g. 1)",
    "radius": "rescale each recurrent matrix (gate block) to this spectral radius at initialisation",
    "dtype": "floating point type of parameters and activations",
    "engine": "fast: the time loops compiled with numba (float32: rational tanh); numpy: the reference cells",
    "batch": "parallel streams (B)",
    "window": "k1 of TBPTT(k1, k2): steps between updates",
    "backprop": "k2 of TBPTT(k1, k2): steps backpropagated (default: --window)",
    "recompute_every": "keep the caches of this many steps at a time and recompute the others during the "
                       "backward pass: BPTT in O(sqrt(T)) memory for about a third more time (sqrt(window) is best)",
    "optimizer": "optimiser",
    "lr": "learning rate",
    "momentum": "momentum (sgd, rmsprop)",
    "nesterov": "Nesterov momentum (sgd)",
    "weight_decay": "weight decay (L2 for sgd/adagrad/rmsprop/adam, decoupled for adamw)",
    "schedule": "learning-rate schedule: constant, plateau (/4 when validation stops improving), cosine",
    "warmup": "cosine: linear warm-up steps",
    "clip": "gradient clipping threshold (0: off)",
    "clip_mode": "norm: global norm (Pascanu et al. 2013); param: each array's norm; value: each entry",
    "clip_dh": "clip dL/dh_t to [-x, x] at every step inside the recurrence (Mikolov's cutoff)",
    "steps": "number of updates",
    "epochs": "number of passes over the training text (fractions allowed)",
    "max_time": "stop after this many seconds (checkpointed, resumable)",
    "seed": "random seed (initialisation, dropout)",
    "eval_every": "steps between validations and checkpoints",
    "flow_every": "record ||dL/dh_k|| for every step of the window and per-parameter gradient norms every N "
                  "steps in metrics.jsonl (0: never); bptt diagnose draws them",
    "eval_batch": "streams used for validation",
    "log_every": "steps between metric records",
}


def add_gradcheck(sub):
    p = sub.add_parser(
        "gradcheck", help="check every analytic gradient against finite differences and PyTorch",
        description="Compare the BPTT gradients of every parameter, the float inputs and the initial "
                    "state with fourth-order central finite differences in float64 and, when torch is "
                    "installed, with PyTorch autograd on the same weights. Errors are norm-relative per "
                    f"array; tolerances {gradcheck.FD_TOL:g} (finite differences) and "
                    f"{gradcheck.TORCH_TOL:g} (PyTorch). Exits 1 if any check fails.")
    p.add_argument("--cell", nargs="+", choices=gradcheck.CELL_NAMES, default=list(gradcheck.CELL_NAMES))
    p.add_argument("--layers", type=int, default=2, help="number of stacked layers (default 2)")
    p.add_argument("--inputs", choices=gradcheck.INPUT_KINDS, default="onehot",
                   help="token ids as one-hot, token ids through an embedding, or float features")
    p.add_argument("--target", choices=("every", "last"), default="every",
                   help="targets at every step (language model) or only the last (many-to-one)")
    p.add_argument("--loss", choices=("cross_entropy", "mse"), default="cross_entropy")
    p.add_argument("--no-state", action="store_true", help="start from zeros (state=None)")
    p.add_argument("--no-lengths", action="store_true", help="all sequences full length")
    p.add_argument("--all", action="store_true",
                   help="the whole matrix: every cell x 1 and 3 layers x every input kind, target and "
                        f"loss x with and without state and lengths ({len(list(gradcheck.all_cases()))} cases, "
                        "a one-line summary each)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--engine", choices=ENGINES, default="fast",
                   help="the compiled cells (default) or the NumPy reference cells")
    p.add_argument("--seq-len", type=int, default=5, help="T (default 5)")
    p.add_argument("--batch", type=int, default=3, help="B (default 3)")
    p.add_argument("--hidden", type=int, default=4, help="H (default 4)")
    p.add_argument("--seed", type=int, default=0)


def run_gradcheck(args):
    for name in ("layers", "seq_len", "batch", "hidden"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive int, got {getattr(args, name)}")
    use_torch = not args.no_torch and gradcheck.torch_available()
    sizes = dict(T=args.seq_len, B=args.batch, H=args.hidden, seed=args.seed, engine=args.engine)
    if args.all:
        cases = list(gradcheck.all_cases(**sizes))
    else:
        cases = [gradcheck.Case(cell, args.layers, args.inputs, args.target, args.loss, not args.no_state,
                                not args.no_lengths, **sizes) for cell in args.cell]
    print(f"bptt {__version__} gradcheck: {args.engine} engine, float64, {len(cases)} case(s), "
          f"PyTorch {'autograd' if use_torch else 'not compared (torch not installed)' if not args.no_torch else 'skipped'}")
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


def add_train(sub):
    p = sub.add_parser("train", help="train a language model with truncated BPTT",
                       description="Train a character- or word-level language model with TBPTT(k1, k2). "
                                   "Writes RUN_DIR/{config.json, vocab.json, checkpoint.safetensors, "
                                   "best.safetensors, metrics.jsonl}; Ctrl-C saves and stops, --resume "
                                   "continues exactly where it stopped.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (its saved config is used; --steps, --epochs and "
                        "--max-time may extend it)")
    p.add_argument("--sample", type=int, default=0, metavar="N", help="print N sampled tokens at the end")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool" or isinstance(f.default, bool):
            p.add_argument(flag, action="store_true", default=None, help=TRAIN_HELP[f.name])
            continue
        kind = next(t for t in typing.get_args(f.type) or (f.type,) if t is not type(None))
        choices = {"task": ("lm", "classify", "adding", "copy", "order", "sentiment"), "level": ("char", "word"), "cell": ("rnn", "gru", "lstm", "skip"),
                   "nonlinearity": ("tanh", "relu", "sigmoid"), "init": ("default", "xavier"),
                   "recurrent_init": ("default", "xavier", "orthogonal", "identity"),
                   "dtype": ("float32", "float64"), "engine": ENGINES, "schedule": ("constant", "plateau", "cosine"),
                   "clip_mode": ("norm", "param", "value"),
                   "optimizer": ("sgd", "adagrad", "rmsprop", "adam", "adamw")}.get(f.name)
        p.add_argument(flag, type=kind, choices=choices, default=None,
                       help=TRAIN_HELP[f.name] + f" (default: {f.default})")


def config_from(args):
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    if given["separator"] is not None:                        # --separator '\n\n' means two line breaks
        given["separator"] = given["separator"].replace("\\n", "\n").replace("\\t", "\t")
    return TrainConfig(**{k: v for k, v in given.items() if v is not None})


def run_train(args):
    from . import train

    cfg = config_from(args)
    display = report.TrainDisplay(cfg)
    try:
        outcome = train.train(cfg, args.out, resume=args.resume, on_event=display)
    finally:
        display.close()
    run = train.Run(args.out)
    p = outcome.progress
    if outcome.status == "interrupted":
        print(f"stopped at step {p.step}; saved. Continue with: bptt train --out {args.out} --resume")
        return 130
    cfg = run.config()
    print(f"\n{p.step} steps, {p.epoch} epochs, {p.tokens / 1e6:.2f}M tokens in {p.elapsed:.0f} s; "
          f"clipped on {p.clipped / max(p.step, 1):.0%} of steps; best validation {p.best_valid:.4f} at step "
          f"{p.best_step}")
    print(report.results(outcome.valid, outcome.baselines, cfg))
    if args.sample and cfg.task == "lm":
        print()
        print(sample_text(run, prime=None, length=args.sample, temperature=0.8, seed=cfg.seed))
    return 0


def sample_text(run, prime, length, temperature=1.0, top_k=None, top_p=None, seed=0, greedy=False):
    from . import generate

    cfg = run.config()
    if cfg.task != "lm":
        raise ValueError(f"sample: {run.path} holds a classifier (task {cfg.task!r}); sampling needs a language model")
    net, _ = run.network("best")
    vocab = run.vocab()
    if not prime:
        tokens = ["<eos>"] if cfg.level == "word" else ["\n" if "\n" in vocab.index else vocab.tokens[0]]
    else:
        tokens = list(prime) if cfg.level == "char" else prime.split()
    ids = generate.sample(net.params, net.arch, vocab.encode(tokens), length, np.random.default_rng(seed),
                          temperature, top_k, top_p, greedy)
    return (prime or "") + report.detokenize(vocab.decode(ids), cfg.level)


def add_eval(sub):
    p = sub.add_parser("eval", help="loss, perplexity and bits/char of a trained model on a file",
                       description="Evaluate the best checkpoint of a run on a file: for a language model, "
                                   "cross-entropy in nats per token, perplexity e^loss and bits per character "
                                   "(char level) on a text; for a classifier, loss and accuracy on a .tsv/.csv.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--data", required=True, metavar="FILE", help="UTF-8 text (or labelled file) to evaluate on")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run_eval(args):
    from . import data, tasks, train

    run = train.Run(args.run)
    cfg = run.config()
    if cfg.task not in ("lm", "classify"):
        raise ValueError(f"eval: {run.path} was trained on the {cfg.task!r} problem; its test results are in "
                         f"its metrics.jsonl")
    net, meta = run.network(args.checkpoint)
    vocab = run.vocab()
    if cfg.task == "lm":
        tokens, starts = tasks.documents(data.read_text(args.data), cfg.level, cfg.separator)
        ids = vocab.encode(tokens)
        if ids.size < 2:
            raise ValueError(f"--data: {args.data} has {ids.size} token(s); at least 2 are needed")
        result = tasks.lm_evaluate(net.params, net.arch, ids, cfg, starts)
    else:
        texts, names = data.read_labeled(args.data, cfg.level)
        seqs = [vocab.encode(tasks.text_tokens(t, cfg.level)) for t in texts]
        result = tasks.classify_metrics(net.params, net.arch, seqs, run.labels().encode(names), cfg.eval_batch)
    result = {"file": args.data, "checkpoint_step": meta["step"], **result}
    if args.json:
        print(json.dumps(result))
    else:
        shown = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in result.items() if isinstance(v, float))
        print(f"{args.data} (step {meta['step']}): {shown}")
    return 0


def add_sample(sub):
    p = sub.add_parser("sample", help="generate text from a trained model",
                       description="Generate text from the best checkpoint of a run: prime the state with "
                                   "--prime, then sample each next token from softmax(z / temperature), "
                                   "optionally restricted to the top-k tokens or the top-p probability mass.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--prime", default=None, help="text to start from (default: a line break)")
    p.add_argument("--length", type=int, default=500, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--seed", type=int, default=0)


def run_sample(args):
    from . import train

    print(sample_text(train.Run(args.run), args.prime, args.length, args.temperature, args.top_k, args.top_p,
                      args.seed, args.greedy))
    return 0


def add_task(sub):
    from . import problems, sweep

    p = sub.add_parser("task", help="train cells on a long-range problem over a sweep of lengths",
                       description="Train each cell on a synthetic long-range problem for each sequence length "
                                   "T, with the same step budget, and report which solve it. Problems: "
                                   + "; ".join(f"{k}: solved when {v.description}" for k, v in problems.PROBLEMS.items())
                                   + ". Cells: " + ", ".join(sweep.VARIANTS) + ".",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("problem", choices=tuple(problems.PROBLEMS))
    p.add_argument("--lengths", type=int, nargs="+", default=[50, 100, 200], metavar="T")
    p.add_argument("--cells", nargs="+", default=list(sweep.VARIANTS), choices=tuple(sweep.VARIANTS))
    p.add_argument("--steps", type=int, default=2000, help="step budget of each run")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--optimizer", default="adam", choices=("sgd", "adagrad", "rmsprop", "adam", "adamw"))
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-size", type=int, default=500)
    p.add_argument("--out", required=True, metavar="DIR", help="one run directory per (cell, T) goes here")
    p.add_argument("--report", action="store_true", help="write DIR/report.html with the figures")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at the same time (processes)")


def run_task(args):
    from . import sweep

    base = TrainConfig(hidden=args.hidden, layers=1, batch=args.batch, optimizer=args.optimizer, lr=args.lr,
                       clip=args.clip, seed=args.seed, steps=args.steps, eval_every=max(args.steps // 10, 1),
                       test_size=args.test_size, dtype="float32")
    print(f"{args.problem}: cells {', '.join(args.cells)}; T in {args.lengths}; {args.steps} steps each")
    print(f"{'cell':<12}{'T':>6}{'test loss':>12}{'accuracy':>10}{'steps':>7}{'seconds':>9}  result")

    def show(row):
        acc = f"{row['accuracy']:.3f}" if "accuracy" in row else "-"
        print(f"{row['cell']:<12}{row['T']:>6}{row['test_loss']:>12.5f}{acc:>10}{row['steps']:>7}{row['seconds']:>9.1f}  "
              f"{'solved' if row['solved'] else 'failed'}", flush=True)

    rows = sweep.run(base, args.problem, args.lengths, args.cells, args.out, on_run=show,
                     jobs=checks.positive_int("--jobs", args.jobs))
    if args.report:
        print(f"report: {sweep.report(args.out, args.problem, rows)}")
    return 0


def add_diagnose(sub):
    p = sub.add_parser("diagnose", help="gradient-flow report of a trained run (HTML with figures)",
                       description="Measure how gradients flow through time in a run's model: ||dL/dh_k|| for "
                                   "every step k, the singular values of the Jacobian product dh_T/dh_k, the "
                                   "spectrum of each recurrent matrix, the bias of truncated BPTT, and the "
                                   "gradient flow recorded during training (--flow-every). Writes a "
                                   "self-contained HTML report.")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--length", type=int, default=None, help="T of the sequences measured (default: the run's window "
                                                             "or problem length)")
    p.add_argument("--out", default=None, help="report path (default RUN_DIR/diagnose/report.html)")


def run_diagnose(args):
    from . import report_diagnose, train

    path = report_diagnose.write(train.Run(args.run), args.length, args.out)
    print(f"report: {path}")
    return 0


def add_bench(sub):
    p = sub.add_parser("bench", help="training speed and memory against PyTorch and JAX on your configuration",
                       description="Train a character language model on Tiny Shakespeare (Adam lr 2e-3, "
                                   "global-norm clipping at 5, float32) with bptt, PyTorch and JAX from the same "
                                   "weights, timed in alternation, and print tokens/s, ms/step, GFLOP/s, MFU, "
                                   "the validation loss of each after the same steps and its peak resident "
                                   "memory (each framework runs in a worker process of its own). PyTorch and JAX "
                                   "are optional: one not installed is skipped.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cell", choices=("rnn", "gru", "lstm"), default="lstm", help="recurrent cell")
    p.add_argument("--hidden", type=int, default=256, help="hidden units per layer (H)")
    p.add_argument("--layers", type=int, default=1, help="stacked layers (L)")
    p.add_argument("--batch", type=int, default=32, help="parallel streams (B)")
    p.add_argument("--window", type=int, default=64, help="steps per window (T)")
    p.add_argument("--embedding", type=int, default=64, help="embedding size (0: one-hot inputs)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats, frameworks in alternation")
    p.add_argument("--frameworks", nargs="+", choices=("bptt", "torch", "jax"), default=["bptt", "torch", "jax"],
                   help="what to compare (torch and jax are optional: one not installed is skipped)")
    p.add_argument("--no-rss", action="store_true", help="leave out the peak-memory column")


def run_bench(args):
    from . import bench

    for name in ("hidden", "layers", "batch", "window", "steps", "repeats"):
        checks.positive_int(f"--{name}", getattr(args, name))
    for name in ("embedding", "warmup"):
        checks.positive_int(f"--{name}", getattr(args, name), minimum=0)
    cfg = bench.config(TrainConfig(**(bench.BASE | {"cell": args.cell, "hidden": args.hidden,
                                                       "layers": args.layers, "batch": args.batch,
                                                       "window": args.window, "embedding": args.embedding})))
    rows = bench.run([cfg], args.steps, args.warmup, args.repeats, args.frameworks,
                     out=lambda line: print(line, flush=True), rss=not args.no_rss)
    if not rows:
        raise ValueError(f"--frameworks: none of {', '.join(args.frameworks)} is installed")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bptt", description="Recurrent networks trained by backpropagation "
                                     "through time, every gradient derived by hand and checked.")
    parser.add_argument("--version", action="version", version=f"bptt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_gradcheck(sub)
    add_train(sub)
    add_eval(sub)
    add_sample(sub)
    add_task(sub)
    add_diagnose(sub)
    add_bench(sub)
    args = parser.parse_args(argv)
    from .train import Diverged

    commands = {"gradcheck": run_gradcheck, "train": run_train, "eval": run_eval, "sample": run_sample,
                "task": run_task, "diagnose": run_diagnose, "bench": run_bench}
    try:
        return commands[args.command](args)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
