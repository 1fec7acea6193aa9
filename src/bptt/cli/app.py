"""The bptt command line: main(argv) parses, calls the library, prints, and returns an exit code.

Exit codes: 0 done, 1 a failed check or a diverged run, 2 an error in what was asked (one line on
stderr: "error: ..."), 130 interrupted (Ctrl-C, SIGTERM; a training run saves first). No
traceback reaches the user: an unexpected exception is reported in one line as a bug (exit 3).

Heavy modules (the engine's compiler, matplotlib, tqdm) are imported by the subcommand that uses
them, so `bptt --help` answers at once.
"""

import contextlib
import os
import sys

from ..version import __version__
from . import bench, evaluate, export, lab, sample, train
from .errors import report
from .options import Parser

COMMANDS = {"gradcheck": (lab.add_gradcheck, lab.run_gradcheck), "train": (train.add_train, train.run_train),
            "eval": (evaluate.add_eval, evaluate.run_eval), "sample": (sample.add_sample, sample.run_sample),
            "task": (lab.add_task, lab.run_task), "diagnose": (lab.add_diagnose, lab.run_diagnose),
            "bench": (bench.add_bench, bench.run_bench), "export": (export.add_export, export.run_export),
            "compare-gradients": (lab.add_compare_gradients, lab.run_compare_gradients)}


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
        args = parse(argv)
        if not on_this_rank(args):
            return 0
        import_held("numba")
        return COMMANDS[args.command][1](args)
    except BaseException as e:  # noqa: BLE001 (the last line of defence: never a traceback)
        return report(e)


def import_held(name):
    """Import the module name with Ctrl-C held until the import ends. numba turns a SIGINT that lands
    inside the C part of its import into an ImportError, after printing a traceback; held, the signal
    arrives as the import ends, a KeyboardInterrupt like any other (exit 130, "interrupted"). Every
    command may run the fast engine, so each imports numba first (a fraction of a second)."""
    import importlib
    import signal

    if not hasattr(signal, "pthread_sigmask"):                    # Windows: no signal masks
        importlib.import_module(name)
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        importlib.import_module(name)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def parse(argv):
    """The parsed command line. Under mpiexec every rank parses it, and only rank 0 shows what
    parsing prints (--help, a usage error): the others' output is dropped, their exit code kept."""
    from ..training.ranks import launched_rank

    if launched_rank() == 0 or under_futures():
        return build_parser().parse_args(argv)
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        try:
            return build_parser().parse_args(argv)
        except BaseException as e:  # noqa: BLE001 (rank 0 reports it)
            code = report(e)
    raise SystemExit(code)


def under_futures():
    """Whether this is rank 0 of `mpiexec -n N python -m mpi4py.futures -m bptt ...`: the other ranks
    are mpi4py.futures' pool of workers (its SharedPool is set before the program runs)."""
    core = sys.modules.get("mpi4py.futures._core")
    return getattr(core, "SharedPool", None) is not None


def on_this_rank(args):
    """Whether this process runs the command. Under mpiexec -n N (N > 1), only bptt train is
    data-parallel (every rank trains); any other command runs on rank 0 alone, which says so, and
    the other ranks end at once. Under mpi4py.futures (bptt task --executor mpi) only rank 0 reaches
    main at all; train is refused there, since its other ranks serve futures instead of training."""
    from ..training.ranks import launched_rank, launched_size

    size = launched_size()
    if size == 1:
        return True
    if under_futures():
        if args.command == "train":
            raise ValueError("train: under mpi4py.futures the other ranks serve futures; start data-parallel "
                             "training as mpiexec -n N bptt train ...")
        return True
    if args.command == "train":
        return True
    if args.command == "task" and args.executor == "mpi":
        if launched_rank() == 0:
            raise ValueError("--executor: 'mpi' starts as mpiexec -n N python -m mpi4py.futures -m bptt task ... "
                             "--executor mpi (rank 0 leads, the others train)")
        return False
    if launched_rank() != 0:
        return False
    others = "the other rank has" if size == 2 else f"the other {size - 1} ranks have"
    print(f"note: bptt {args.command} runs on MPI rank 0 alone (only bptt train is data-parallel); {others} "
          f"nothing to do", file=sys.stderr)
    return True


if __name__ == "__main__":
    sys.exit(main())
