"""bptt bench: training speed and memory against PyTorch and JAX, on a configuration of the user's
or on the named ones of docs/benchmarks.md (--configs), or the cost of a step as T grows (--lengths)."""

import functools
from pathlib import Path

from .options import NONNEGATIVE_INT, POSITIVE_INT, flag, parser_for
from .train import config_error

SHAPE = {"cell": "lstm", "hidden": 256, "layers": 1, "batch": 32, "window": 64, "embedding": 64}   # the defaults


def add_bench(sub):
    from ..bench import CONFIGS

    p = parser_for(sub, "bench", "training speed and memory against PyTorch and JAX on your configuration",
                   "Train a character language model on Tiny Shakespeare (Adam lr 2e-3, global-norm clipping at 5, "
                   "float32) with bptt, PyTorch and JAX from the same weights, timed in alternation, and print "
                   "tokens/s, ms/step, GFLOP/s, MFU, the validation loss of each after the same steps and its peak "
                   "resident memory (each framework runs in a worker process of its own). PyTorch and JAX are "
                   "optional: one not installed is skipped.")
    p.add_argument("--configs", nargs="+", metavar="NAME", choices=(*CONFIGS, "all"),
                   help=f"named configurations instead of --cell ... --embedding: {', '.join(CONFIGS)}, or all")
    p.add_argument("--cell", choices=("rnn", "gru", "lstm"), help="recurrent cell (default: lstm)")
    p.add_argument("--hidden", type=POSITIVE_INT, help="hidden units per layer, H (default: 256)")
    p.add_argument("--layers", type=POSITIVE_INT, help="stacked layers, L (default: 1)")
    p.add_argument("--batch", type=POSITIVE_INT, help="parallel streams, B (default: 32)")
    p.add_argument("--window", type=POSITIVE_INT, help="steps per window, T (default: 64)")
    p.add_argument("--embedding", type=NONNEGATIVE_INT, help="embedding size, 0: one-hot (default: 64)")
    p.add_argument("--lengths", type=POSITIVE_INT, nargs="+", metavar="T",
                   help="instead of the speed table: ms per step and peak memory as the window T grows")
    p.add_argument("--steps", type=POSITIVE_INT, help="timed steps per repeat (default: 20; 5 with --lengths)")
    p.add_argument("--warmup", type=NONNEGATIVE_INT, default=3, help="untimed steps first (default: 3)")
    p.add_argument("--repeats", type=POSITIVE_INT,
                   help="timed repeats, frameworks in alternation (default: 3; 1 with --lengths)")
    p.add_argument("--frameworks", nargs="+", choices=("bptt", "torch", "jax"), default=["bptt", "torch", "jax"],
                   help="what to compare (default: all three; torch and jax are skipped when not installed)")
    p.add_argument("--no-rss", action="store_true", help="leave out the peak-memory column")
    p.add_argument("--markdown", metavar="FILE", help="also write the results, with the machine, to this new file")


def configurations(args):
    """The TrainConfigs to measure: the named ones, or the one the shape options describe."""
    from .. import bench
    from ..training.config import TrainConfig

    given = [name for name in SHAPE if getattr(args, name) is not None]
    if args.configs:
        if given:
            raise ValueError(f"{flag(given[0])}: describes your own configuration; --configs measures named ones "
                             f"(give one or the other)")
        names = list(bench.CONFIGS) if "all" in args.configs else list(dict.fromkeys(args.configs))
        return [bench.config(name) for name in names]
    shape = {name: getattr(args, name) if name in given else default for name, default in SHAPE.items()}
    return [bench.config(TrainConfig(**(bench.BASE | shape)))]


def run_bench(args):
    from .. import bench

    out = Path(args.markdown) if args.markdown else None
    if out is not None and (out.exists() or not out.parent.is_dir()):
        raise ValueError(f"--markdown: expected a new file in an existing directory, got {out}"
                         + (" (it exists; bptt does not overwrite it)" if out.exists() else ""))
    show = functools.partial(print, flush=True)
    try:
        cfgs = configurations(args)
        if args.lengths:
            rows, columns, title = [], bench.LENGTH_COLUMNS, "bptt step cost vs window T"
            for cfg in cfgs:
                rows += bench.step_cost(cfg, args.lengths, args.steps or 5, args.warmup, args.repeats or 1,
                                        args.frameworks, out=show, rss=not args.no_rss)
        else:
            columns, title = bench.COLUMNS, "bptt training speed"
            rows = bench.run(cfgs, args.steps or 20, args.warmup, args.repeats or 3, args.frameworks, out=show,
                             rss=not args.no_rss)
    except (ValueError, TypeError) as e:
        raise config_error(e) from None
    if not rows:
        raise ValueError(f"--frameworks: none of {', '.join(args.frameworks)} is installed")
    if out is not None:
        with open(out, "x", encoding="utf-8") as f:                 # "x": never over a file that appeared meanwhile
            f.write(bench.markdown(rows, columns, title=title))
        print(f"written: {out}")
    return 0
