"""bptt bench: training speed and memory against PyTorch and JAX, on a configuration of the user's
or on the named ones of docs/benchmarks.md (--configs), or the cost of a step as T grows (--lengths);
on Tiny Shakespeare's characters, or on the user's workload: a text at word level with its
vocabulary, a labelled file to classify, dropout, SGD."""

import functools
from pathlib import Path

from .options import NONNEGATIVE_INT, POSITIVE_INT, add_config_options, config_error, flag, parser_for

SHAPE = ("cell", "hidden", "layers", "batch", "window", "embedding", "bidirectional")   # TrainConfig's fields,
WORKLOAD = ("data", "valid", "valid_fraction", "level", "max_vocab", "task", "dropout", "optimizer", "lr",
            "clip", "adaptive_softmax", "div_value", "precision")                         # bptt train has


def add_bench(sub):
    from ..bench.workload import BENCH_CELLS, BENCH_OPTIMIZERS, BENCH_TASKS, CONFIGS

    p = parser_for(sub, "bench", "training speed and memory against PyTorch and JAX on your configuration",
                   "Train the model bptt train would train with the same options (by default its character LSTM "
                   "2 x 256 on Tiny Shakespeare, Adam lr 2e-3, global-norm clipping at 5, float32), or your own "
                   "workload (--data FILE, --level word, --max-vocab N, --task classify, "
                   "--dropout, --optimizer), with bptt, PyTorch and JAX from the same weights, timed in "
                   "alternation, and print tokens/s, ms/step, GFLOP/s, MFU, the validation loss of each after the "
                   "same steps and its peak resident memory (each framework runs in a worker process of its own). "
                   "PyTorch and JAX are optional: one not installed is skipped; JAX has no dropout and no "
                   "classification, and is skipped for them, with a message.")
    p.add_argument("--configs", nargs="+", metavar="NAME", choices=(*CONFIGS, "all"),
                   help=f"named configurations instead of --cell ... --embedding: {', '.join(CONFIGS)}, or all")
    add_config_options(p, (*SHAPE, *WORKLOAD), {"cell": BENCH_CELLS, "task": BENCH_TASKS,
                                                 "optimizer": BENCH_OPTIMIZERS})
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
    """The TrainConfigs to measure: the named ones, or the one the shape options describe; either on
    the workload options given (--data, --level, ...)."""
    from .. import bench
    from ..training.config import TrainConfig

    given = [name for name in SHAPE if getattr(args, name) is not None]
    workload = {name: getattr(args, name) for name in WORKLOAD if getattr(args, name) is not None}
    if args.lengths and workload.get("task", "lm") != "lm":
        raise ValueError(f"--lengths: measures a language model's step as its window grows; got --task "
                         f"{workload['task']}")
    if args.configs:
        if given:
            raise ValueError(f"{flag(given[0])}: describes your own configuration; --configs measures named ones "
                             f"(give one or the other)")
        names = list(bench.CONFIGS) if "all" in args.configs else list(dict.fromkeys(args.configs))
        return [bench.config(name, **workload) for name in names]
    shape = {name: getattr(args, name) for name in given}
    return [bench.config(TrainConfig(**(shape | workload)))]     # bptt train's defaults for the rest


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
