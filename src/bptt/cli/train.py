"""bptt train: its options are TrainConfig's fields (help, choices and default from each field)."""

import dataclasses
import sys
from pathlib import Path

from . import display
from .display import plural
from .options import NONNEGATIVE_INT, add_config_options, config_error, flag, parser_for


def add_train(sub):
    from ..training.config import RESUMABLE

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
    p.add_argument("--recipe", choices=("awd-lstm", "awd-lstm-paper"), default=None,
                   help="fill in the options of a named recipe (those given on the command line win): awd-lstm, "
                        "AWD-LSTM's word-level recipe scaled to a 2-core CPU (3 x 256); awd-lstm-paper, at the "
                        "paper's sizes (docs/training.md)")
    p.add_argument("--sample", type=NONNEGATIVE_INT, default=0, metavar="N",
                   help="print N sampled tokens at the end (default: 0)")
    add_config_options(p)


def run_dir(args):
    out, positional = getattr(args, "out", None), args.run
    if out is not None and positional is not None and Path(out) != Path(positional):
        raise ValueError(f"--out: {out} and RUN_DIR {positional} disagree; give the run directory once")
    if "" in (out, positional):
        raise ValueError(f"{'--out' if out == '' else 'RUN_DIR'}: empty; give the run directory, e.g. bptt train "
                         f"runs/mine")
    chosen = out or positional
    if chosen is None:
        raise ValueError("RUN_DIR: missing; give the run directory, e.g. bptt train runs/mine")
    return chosen


def given_options(args):
    """The config fields given on the command line (not None), as TrainConfig values."""
    from ..reference import form
    from ..training.config import TrainConfig

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name) is not None}
    if "separator" in given:                                  # --separator '\n\n' means two line breaks
        given["separator"] = given["separator"].replace("\\n", "\n").replace("\\t", "\t")
    if "cell" in given:                                       # --cell rnn-relu: the cell and its nonlinearity
        base, nonlinearity = form(given["cell"])
        if nonlinearity is not None:
            if given.get("nonlinearity", nonlinearity) != nonlinearity:
                raise ValueError(f"--nonlinearity: {given['nonlinearity']} disagrees with --cell {given['cell']}")
            given["cell"], given["nonlinearity"] = base, nonlinearity
    return given


def run_train(args):
    """bptt train; under mpiexec -n N (N > 1) every rank runs this (bptt.training.ranks): rank 0
    checks the options and prints, the others follow it quietly. An error only one rank meets is
    printed with its rank and ends the job (MPI_Abort): the others would wait for it forever."""
    from ..training.ranks import Stopped, world

    ranks = world()
    if ranks.size == 1:
        return train_on(args, ranks)
    try:
        return train_on(args, ranks)
    except Stopped:
        return 0                                              # rank 0 says why
    except BaseException as e:
        if ranks.agreed(e):
            raise
        from .errors import report

        ranks.abort(report(e, f"rank {ranks.rank}: "))


def settled_config(args):
    """(RUN_DIR, the options given, the Settled config: training.opening.settle's, once): a resumed
    run's is its saved config with the given changes."""
    from ..training import opening

    out = run_dir(args)
    given, used = with_recipe(args, given_options(args))
    try:
        settled = opening.settle(opening.Run(out), given, args.resume)
    except (ValueError, TypeError) as e:
        raise config_error(e) from None
    if used:                                                  # the options settled: say what the recipe gave
        print(f"recipe {args.recipe}: " + " ".join(f"{flag(k)}" if v is True else f"{flag(k)} {v:g}"
                                                    if isinstance(v, float) else f"{flag(k)} {v}"
                                                    for k, v in used.items()), file=sys.stderr)
    if args.sample and settled.cfg.task != "lm":
        raise ValueError(f"--sample: applies to a language model (--task lm) only; got --task {settled.cfg.task}")
    return out, given, settled


def with_recipe(args, given):
    """(the options given, completed by --recipe's; the recipe's values used): a recipe is a language
    model's, for a new run."""
    if args.recipe is None:
        return given, {}
    if args.resume:
        raise ValueError("--recipe: a resumed run keeps its saved options; leave --recipe out with --resume")
    if given.get("task", "lm") != "lm":
        raise ValueError(f"--recipe: {args.recipe} is a recipe for a word-level language model (--task lm); got "
                         f"--task {given['task']}")
    from ..training import recipes

    return recipes.apply(args.recipe, given)


def train_on(args, ranks):
    from ..training import opening, train

    out, given, settled = ranks.on_root(lambda: settled_config(args))
    if ranks.root:
        display.compiling_notice(settled.cfg)
    screen = display.TrainDisplay() if ranks.root else None
    try:
        outcome = train.train(settled, out, resume=args.resume, on_event=screen,
                              given={k: given.get(k) for k in ("data", "valid")}, ranks=ranks)
    except (ValueError, TypeError) as e:
        raise config_error(e) from None
    finally:
        if screen is not None:
            screen.close()
    if not ranks.root:
        return 0
    p = outcome.progress
    if outcome.status == "interrupted":
        print(f"stopped at step {p.step}; saved. Continue with: bptt train {out} --resume")
        return 130
    cfg = settled.cfg                                         # what config.json holds now
    epochs = screen.epochs(p)
    steps = plural(p.step, "step") + (f" ({epochs})" if epochs else "")
    print(f"\n{steps}, {display.compact(p.tokens)} tokens in {p.elapsed:.0f} s; "
          f"clipped on {p.clipped / max(p.step, 1):.0%} of steps; best validation {p.best_valid:.4f} at step "
          f"{p.best_step}")
    print(display.results(outcome.valid, outcome.baselines, cfg))
    if args.sample:
        print()
        from .sample import print_sample

        print_sample(opening.Run(out), prime=None, tokens=args.sample, temperature=0.8, seed=cfg.seed)
    return 0
