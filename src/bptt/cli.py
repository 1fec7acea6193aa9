"""The bptt command line: main(argv) parses, calls the library, prints, and returns an exit code."""

import argparse
import sys
import time

from . import __version__, gradcheck


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
                        "loss x with and without state and lengths (240 cases, a one-line summary each)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--seq-len", type=int, default=5, help="T (default 5)")
    p.add_argument("--batch", type=int, default=3, help="B (default 3)")
    p.add_argument("--hidden", type=int, default=4, help="H (default 4)")
    p.add_argument("--seed", type=int, default=0)


def run_gradcheck(args):
    for name in ("layers", "seq_len", "batch", "hidden"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive int, got {getattr(args, name)}")
    use_torch = not args.no_torch and gradcheck.torch_available()
    sizes = dict(T=args.seq_len, B=args.batch, H=args.hidden, seed=args.seed)
    if args.all:
        cases = list(gradcheck.all_cases(**sizes))
    else:
        cases = [gradcheck.Case(cell, args.layers, args.inputs, args.target, args.loss, not args.no_state,
                                not args.no_lengths, **sizes) for cell in args.cell]
    print(f"bptt {__version__} gradcheck: float64, {len(cases)} case(s), "
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bptt", description="Recurrent networks trained by backpropagation "
                                     "through time, every gradient derived by hand and checked.")
    parser.add_argument("--version", action="version", version=f"bptt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_gradcheck(sub)
    args = parser.parse_args(argv)
    try:
        return run_gradcheck(args)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
