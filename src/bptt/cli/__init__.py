"""The command line: `bptt gradcheck | train | eval | sample | task | diagnose | bench`.

The top layer: it may import every layer below and nothing imports it. Each subcommand is a
module with add_NAME(subparsers) and run_NAME(args) (lab.py holds the gradient lab's three);
app.py parses, dispatches and turns every error into one line and an exit code; options.py holds
the parser's parts, display.py what a terminal shows (progress, metrics, detokenised samples).
Heavy modules (numba, matplotlib, tqdm) are imported by the subcommand that uses them, so
`bptt --help` answers at once.

main() is the console script `bptt` and `python -m bptt`. It loads the command line catching a
Ctrl-C that arrives while it loads (app.main catches the ones after), so no traceback reaches
the user.
"""

import sys


def main(argv=None):
    try:
        from .app import main as run
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return run(argv)
