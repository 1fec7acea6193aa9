"""python -m bptt: the command line. Guarded, so that a worker that imports this module (as
mpi4py.futures' workers import the main module: mpiexec ... python -m mpi4py.futures -m bptt ...)
does not run it."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
