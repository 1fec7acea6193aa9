"""How the command line ends on an error: one line on stderr and an exit code (the codes are
app.py's: 1 a diverged run, 2 an error in what was asked, 130 interrupted, 141 a closed pipe, 3 a
bug). No traceback reaches the user."""

import os
import sys


def report(e, where=""):
    """Print what went wrong in one line on stderr (where: a prefix, e.g. "rank 1: "); the exit code."""
    if isinstance(e, KeyboardInterrupt):
        print(f"\n{where}interrupted", file=sys.stderr)
        return 130
    if isinstance(e, BrokenPipeError):                            # bptt sample ... | head: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())    # no error when Python flushes at exit
        return 141
    if isinstance(e, SystemExit):                                 # --help, --version
        return e.code if isinstance(e.code, int) else 0
    if isinstance(e, (ValueError, TypeError)):
        print(f"error: {where}{one_line(e)}", file=sys.stderr)
        return 2
    if isinstance(e, MemoryError):
        print(f"error: {where}out of memory; choose a smaller model, batch or window", file=sys.stderr)
        return 2
    if isinstance(e, OSError):
        filename = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{filename}{e.strerror or e}", file=sys.stderr)
        return 2
    if isinstance(e, RuntimeError):
        from ..training.train import Diverged

        if isinstance(e, Diverged):
            print(f"error: {where}{e}", file=sys.stderr)
            return 1
    if not isinstance(e, Exception):                              # GeneratorExit and the like: not ours
        raise e
    return internal_error(e, where)


def one_line(e):
    return " ".join(str(e).split("\n"))


def internal_error(e, where=""):
    print(f"error: {where}internal error ({type(e).__name__}: {one_line(e)}); this is a bug in bptt: please report it "
          f"with the command line", file=sys.stderr)
    return 3
