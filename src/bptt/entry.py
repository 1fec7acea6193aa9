"""The console script `bptt` and `python -m bptt`: load the command line, catching a Ctrl-C that
arrives while it loads (main() catches the ones after), so no traceback reaches the user."""

import sys


def main():
    try:
        from .cli import main as cli
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return cli()
