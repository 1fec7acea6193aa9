"""The gradient lab's subcommands: bptt gradcheck (every analytic gradient against finite
differences and PyTorch), bptt task (cells on a long-range problem over a sweep of lengths),
bptt diagnose (the gradient-flow report of a trained run) and bptt compare-gradients (TBPTT(k), RTRL
and UORO against full BPTT on one stream)."""

import math
import sys
import time

from ..version import __version__
from .display import plural
from .options import NONNEGATIVE, NONNEGATIVE_INT, POSITIVE, POSITIVE_INT, add_run_dir, parser_for


def add_gradcheck(sub):
    from ..lab import gradcheck
    from ..model.engine import ENGINES

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
    from ..lab import gradcheck
    from .display import progress

    use_torch = not args.no_torch and gradcheck.torch_available()
    sizes = dict(T=args.seq_len, B=args.batch, H=args.hidden, seed=args.seed, engine=args.engine)
    if args.all:
        cases = list(gradcheck.all_cases(**sizes))
    else:
        cases = [gradcheck.Case(cell, args.layers, args.inputs, args.target, args.loss, not args.no_state,
                                not args.no_lengths, **sizes) for cell in dict.fromkeys(args.cell)]
    gradcheck.check_cost(max(cases, key=gradcheck.fd_cost))
    torch_text = "skipped" if args.no_torch else "autograd" if use_torch else "not compared (torch not installed)"
    print(f"bptt {__version__} gradcheck: {engines_text(args.engine, cases)}, float64, {plural(len(cases), 'case')}, "
          f"PyTorch {torch_text}", flush=True)
    start, failed = time.perf_counter(), 0
    for case in cases:
        slow = gradcheck.fd_cost(case) > gradcheck.FD_BUDGET / 100               # a few seconds or more
        with progress(gradcheck.fd_entries(case), case.label(), "entry", least=0 if slow else math.inf) as bar:
            rows = gradcheck.compare(case, use_torch, tick=bar.update)
        ok = all(row[-1] for row in rows)
        failed += not ok
        if args.all:
            worst_fd = max(r[2] for r in rows if r[2] is not None)
            worst_t = max((r[3] for r in rows if r[3] is not None), default=None)
            t = "-" if worst_t is None else f"{worst_t:.1e}"
            print(f"{case.label():<52} fd {worst_fd:.1e}  torch {t:>7}   {'ok' if ok else 'FAIL'}", flush=True)
        else:
            print(f"\n{case.label()}\n{gradcheck.format_rows(rows)}", flush=True)
    print(f"\n{len(cases) - failed} passed, {failed} failed in {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


def engines_text(asked, cases):
    """The engine in gradcheck's header, and which cases ran on the NumPy reference instead."""
    instead = sorted({case.cell for case in cases if case.ran_on != asked})
    if not instead:
        return f"{asked} engine"
    return f"{asked} engine ({', '.join(instead)} on the numpy reference: no {asked} form)"


def add_task(sub):
    from ..lab import sweep
    from ..reference import FORMS
    from ..training import problems

    p = parser_for(sub, "task", "train cells on a long-range problem over a sweep of lengths",
                   "Train each cell on a synthetic long-range problem for each sequence length T, with the same step "
                   "budget, and report which solve it. Problems: "
                   + "; ".join(f"{k}: solved when {v.description}" for k, v in problems.PROBLEMS.items())
                   + ". Cells (each with its paper's initialisation): " + ", ".join(sweep.VARIANTS)
                   + "; irnn is rnn-relu with identity recurrent weights, lstm has forget-gate bias 1, skip-tanh "
                     "reaches 8 steps back. Ctrl-C or SIGTERM stops every run at its next step, saved; --resume "
                     "finishes the sweep.")
    p.add_argument("problem", choices=tuple(problems.PROBLEMS), help="the long-range problem")
    p.add_argument("--lengths", type=POSITIVE_INT, nargs="+", default=[50, 100, 200], metavar="T",
                   help="sequence lengths T to train at (default: 50 100 200)")
    choices = tuple(dict.fromkeys((*sweep.VARIANTS, *FORMS, *sweep.ALIASES)))
    p.add_argument("--cells", nargs="+", default=list(sweep.VARIANTS), choices=choices, metavar="CELL",
                   help=f"cells to train: {', '.join(sweep.VARIANTS)} (default: all), each with its paper's "
                        f"initialisation, or any cell of bptt train ({', '.join(FORMS)}) with PyTorch's; "
                        f"{sweep.ALIASES_TEXT}")
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
                   help="a new or empty directory; one run directory per (cell, T) goes here, and sweep.json (the "
                        "sweep and its finished runs)")
    p.add_argument("--resume", action="store_true",
                   help="finish the sweep in DIR, stopped by Ctrl-C, SIGTERM or a crash: its finished runs are kept, "
                        "the others continue from their checkpoints (as bptt train --resume); give the sweep's options "
                        "again")
    p.add_argument("--report", action="store_true", help="write DIR/report.html with the figures")
    p.add_argument("--jobs", type=POSITIVE_INT, default=None,
                   help="runs trained at the same time, in processes (default: 1; --executor processes)")
    p.add_argument("--executor", choices=("processes", "mpi"), default="processes",
                   help="processes: on this machine, --jobs at a time; mpi: on the ranks of an MPI job, started as "
                        "mpiexec -n N python -m mpi4py.futures -m bptt task ... --executor mpi (default: processes)")


def run_task(args):
    from ..lab import sweep
    from ..training.config import TrainConfig

    base = TrainConfig(hidden=args.hidden, layers=1, batch=args.batch, optimizer=args.optimizer, lr=args.lr,
                       clip=args.clip, seed=args.seed, steps=args.steps, eval_every=max(args.steps // 10, 1),
                       test_size=args.test_size, dtype="float32", task=args.problem)
    cells = list(dict.fromkeys(sweep.check(args.problem, args.lengths, args.cells)))
    if args.executor == "mpi" and args.jobs is not None:
        raise ValueError("--jobs: applies to --executor processes; under MPI the ranks are the workers (mpiexec -n N)")

    def header():
        print(f"{args.problem}: cells {', '.join(cells)}; T in {args.lengths}; {plural(args.steps, 'step')} each")
        print(f"{'cell':<12}{'T':>6}{'test loss':>12}{'accuracy':>10}{'steps':>7}{'seconds':>9}  result", flush=True)

    def show(row):
        acc = f"{row['accuracy']:.3f}" if "accuracy" in row else "-"
        print(f"{row['cell']:<12}{row['T']:>6}{row['test_loss']:>12.5f}{acc:>10}{row['steps']:>7}"
              f"{row['seconds']:>9.1f}  "
              f"{'solved' if row['solved'] else 'failed'}", flush=True)

    try:
        rows = sweep.run(base, args.problem, args.lengths, cells, args.out, on_run=show, jobs=args.jobs or 1,
                         executor=args.executor, resume=args.resume, on_start=header)
    except sweep.Interrupted as e:
        print(f"interrupted: {e.finished} of {e.total} runs finished, the others saved; finish the sweep with the "
              f"same command and --resume", file=sys.stderr, flush=True)
        return 130
    if args.report:
        from ..lab import sweep_report

        print(f"report: {sweep_report.report(args.out, args.problem, rows)}")
    return 0


def add_diagnose(sub):
    p = parser_for(sub, "diagnose", "gradient-flow report of a trained run (HTML with figures)",
                   "Measure how gradients flow through time in a run's model: ||dL/dh_k|| for every step k, the "
                   "singular values of the Jacobian product dh_T/dh_k, the spectrum of each recurrent matrix, the "
                   "bias of truncated BPTT, and the gradient flow recorded during training (--flow-every). Writes a "
                   "self-contained HTML report; its figures also go to RUN_DIR/diagnose/.")
    add_run_dir(p)
    p.add_argument("--length", type=POSITIVE_INT, default=None, metavar="T",
                   help="T of the sequences measured (default: the run's window or problem length)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="report path, a new file (default: RUN_DIR/diagnose/report.html, replaced on each run)")
    p.add_argument("--compare-gradients", action="store_true",
                   help="add bptt compare-gradients' sections: TBPTT(k), RTRL and UORO against full BPTT on a "
                        "stream of the run's validation data (RTRL left out where it would be too big)")


def run_diagnose(args):
    from ..lab import diagnose
    from ..training import opening

    path = diagnose.write(opening.Run(args.run), args.length, args.out, args.compare_gradients)
    print(f"report: {path}")
    return 0


FRESH = {"cell": "lstm", "hidden": 32, "layers": 1}      # compare-gradients' fresh network when no RUN_DIR is given
LIBRARY_NAMES = {"ks": "--k", "seeds": "--seeds", "steps": "--steps", "rtrl": "--no-rtrl", "rtrl=False": "--no-rtrl"}


def add_compare_gradients(sub):
    from ..lab import compare
    from ..model.rtrl import SUPPORTED_CELLS
    from ..reference import FORMS

    p = parser_for(sub, "compare-gradients", "each algorithm's gradient against full BPTT (TBPTT(k), RTRL, UORO)",
                   "For a network and one stream, compare the gradient of the stream's mean loss computed by "
                   "truncated BPTT (windows of k steps), RTRL (exact, carried forward) and UORO (an unbiased "
                   "estimate; several runs) with full BPTT over the whole stream: cosine, relative error, time and "
                   "peak memory per step, in float64 on the NumPy reference cells. Prints a table; --out writes a "
                   "self-contained HTML page with the figures.")
    p.add_argument("run", metavar="RUN_DIR", nargs="?", default=None,
                   help="a run directory written by bptt train: its best weights on a stream of its validation data "
                        "(default: a fresh character-level network on the first characters of Tiny Shakespeare)")
    p.add_argument("--out", default=None, metavar="FILE", help="write the report to FILE, a new HTML file")
    p.add_argument("--json", action="store_true", help="print the numbers as one JSON object instead of the table")
    p.add_argument("--steps", type=POSITIVE_INT, default=None, metavar="T",
                   help="T, the stream's steps (default: 50, fewer if a run's validation streams are shorter; a "
                        "long-range problem's length)")
    p.add_argument("--batch", type=POSITIVE_INT, default=4, metavar="B", help="B, the stream's rows (default: 4)")
    p.add_argument("--k", type=POSITIVE_INT, nargs="+", default=None,
                   help=f"the window lengths of TBPTT(k), each at most T (default: "
                        f"{' '.join(map(str, compare.DEFAULT_KS))} below T, and T)")
    p.add_argument("--seeds", type=NONNEGATIVE_INT, default=compare.DEFAULT_SEEDS,
                   help=f"UORO runs, each with its own random signs; 0: no UORO (default: {compare.DEFAULT_SEEDS})")
    p.add_argument("--no-rtrl", action="store_true",
                   help="skip RTRL (O(B S^2 P) time per step: refused above "
                        f"{compare.MAX_RTRL_BYTES / 2**30:.0f} GiB of influence matrices or "
                        f"{compare.MAX_RTRL_FLOPS:.0e} multiply-adds)")
    p.add_argument("--cell", choices=[f for f in FORMS if f.split("-")[0] in SUPPORTED_CELLS], default=None,
                   help=f"the fresh network's cell, without RUN_DIR (default: {FRESH['cell']})")
    p.add_argument("--hidden", type=POSITIVE_INT, default=None,
                   help=f"the fresh network's hidden units, without RUN_DIR (default: {FRESH['hidden']})")
    p.add_argument("--layers", type=POSITIVE_INT, default=None,
                   help=f"the fresh network's layers, without RUN_DIR (default: {FRESH['layers']})")
    p.add_argument("--seed", type=NONNEGATIVE_INT, default=0,
                   help="random seed of the fresh network's weights, a problem's sequences and UORO's signs "
                        "(default: 0)")


def run_compare_gradients(args):
    import json

    from ..lab import compare

    out = None if args.out is None else check_report_path(args.out)
    stream = compare_stream(args)
    try:
        result = compare.compare(stream.params, stream.arch, stream.x, stream.y, stream.target, stream.loss,
                                 args.k, args.seeds, not args.no_rtrl, args.seed)
    except ValueError as e:
        raise type(e)(as_flags(str(e))) from None
    if args.json:
        print(json.dumps({"source": stream.source} | result))
    else:
        print(f"bptt {__version__} compare-gradients: {stream.source}; float64, NumPy reference cells")
        print(text_table(compare.table(result)))
    if out is not None:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as folder:
            compare.report(result, out, Path(folder), f"{stream.source}; float64, NumPy reference cells.")
        print(f"report: {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def check_report_path(out):
    from ..files import check_new

    return check_new(out, name="--out", asked=": give a new path")


def compare_stream(args):
    """The network and stream of compare-gradients: the run's, or a fresh one."""
    from ..lab import compare

    given = [name for name in FRESH if getattr(args, name) is not None]
    if args.run is None:
        sizes = {name: FRESH[name] if getattr(args, name) is None else getattr(args, name) for name in FRESH}
        return compare.fresh(**sizes, steps=args.steps or 50, batch=args.batch, seed=args.seed)
    if given:
        raise ValueError(f"--{given[0]}: applies to the fresh network, without RUN_DIR; the run's network is "
                         f"the one it trained")
    from ..training import opening

    try:
        stream = compare.of_run(opening.Run(args.run), args.steps, args.batch, args.seed)
        compare.check_network(stream.arch)
    except ValueError as e:
        text = as_flags(str(e))
        raise type(e)(text if text.startswith(("--", "RUN_DIR")) else f"RUN_DIR: the run's network: {text}") from None
    return stream


def as_flags(text):
    """A library message about one of compare's arguments, with the argument shown as its option."""
    name, sep, rest = text.partition(":")
    for word, option in LIBRARY_NAMES.items():
        rest = rest.replace(f"({word})", f"({option})")
    return f"{LIBRARY_NAMES.get(name, name)}{sep}{rest}"


def text_table(rows):
    """rows of text {column: value} as aligned columns, the first left-aligned."""
    columns = list(rows[0])
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in columns]
    lines = [columns] + [[r[c] for c in columns] for r in rows]
    return "\n".join("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths)))
                     for line in lines)
