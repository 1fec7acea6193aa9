"""Training speed and memory of bptt against PyTorch and JAX on a character language model, side by side.

    python benchmarks/speed.py                     # the configurations of the performance issue
    python benchmarks/speed.py --configs lstm-h256 --steps 20 --repeats 3 --markdown speed.md
    python benchmarks/speed.py --lengths 16 64 256 1024      # ms per step as the window T grows (lstm-h256)

Tiny Shakespeare, embedding 64, vocabulary 65, Adam lr 2e-3, global-norm clipping at 5, window 64,
batch 32 unless stated, float32. Every framework starts from the same weights (bptt's) and trains on
the same windows; for each configuration they are timed in alternation, `repeats` times, each time
`steps` training steps after `warmup` untimed ones, and the validation loss of each after the same
steps is reported (it must agree: the same computation). Tokens/s is B T / seconds per step. Each
framework runs in a worker process of its own, and peak RSS is that worker's. Compile times (numba's
cache load or compilation, JAX's tracing + XLA) are reported apart and not in the timings.

The FLOP count (bptt.bench.flops_per_step) and the runners live in bptt.bench; `bptt bench` runs
the same on a configuration of your own. MFU: achieved FLOP/s over the float32 GEMM peak of this
machine, measured here on 1024^3 NumPy matmuls.
"""

import argparse
import functools
import pathlib
import sys

from bptt import bench


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=None, choices=list(bench.CONFIGS),
                   help="default: all of them; with --lengths, lstm-h256")
    p.add_argument("--frameworks", nargs="+", default=list(bench.FRAMEWORKS), choices=bench.FRAMEWORKS)
    p.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default 20; 5 with --lengths)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=None, help="default 3; 1 with --lengths")
    p.add_argument("--lengths", type=int, nargs="+", metavar="T", default=None,
                   help="step cost vs window T: ms per step and peak RSS for each T and framework")
    p.add_argument("--no-rss", action="store_true", help="leave out the peak-memory column")
    p.add_argument("--markdown", type=pathlib.Path, metavar="PATH", help="also write the results as Markdown here")
    args = p.parse_args()
    out = functools.partial(print, flush=True)
    try:
        rows, columns, title = measure(args, out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.markdown:
        args.markdown.write_text(bench.markdown(rows, columns, title=title))
        print(f"written: {args.markdown}")
    return 0 if rows else 1


def measure(args, out):
    def given(value, default):
        return default if value is None else value

    if args.lengths:
        rows = []
        for name in args.configs or ["lstm-h256"]:
            rows += bench.step_cost(name, args.lengths, given(args.steps, 5), args.warmup, given(args.repeats, 1),
                                    args.frameworks, out, rss=not args.no_rss)
        columns, title = bench.LENGTH_COLUMNS, "bptt step cost vs window T"
    else:
        rows = bench.run(args.configs or list(bench.CONFIGS), given(args.steps, 20), args.warmup,
                         given(args.repeats, 3), args.frameworks, out, rss=not args.no_rss)
        columns, title = bench.COLUMNS, "bptt training speed"
    return rows, columns, title


if __name__ == "__main__":
    sys.exit(main())
