"""bptt: recurrent networks trained by backpropagation through time, every gradient by hand.

The layers, bottom up; each imports only from the layers below it (docs/architecture.md):

    reference/  the specification: the NumPy cells, activations, inputs, losses
    fast/       the compiled engine: the same cells as numba time loops, the GEMM kernel, the heap
    model/      the network: Arch, the engine interface, the stack and readout, Network, init
    training/   config, data, tasks, TBPTT, optimisers, clipping, the loop, run files, sampling
    interop/    the PyTorch and JAX models the tests and benchmarks compare against
    lab/        gradient checks, gradient-flow diagnostics, long-range problems' sweeps, figures
    bench/      speed and memory against PyTorch and JAX
    cli/        the command line

checks.py, the validation of arguments, and files.py, atomic and checksummed files, sit below them all. The public names are loaded on first
use, so that the command line starts without importing NumPy and the engine before it needs them.
The modules' names from before the layers (bptt.engine, bptt.cells.lstm, bptt.heap, ...) still
import, as the same module objects (MOVED).
"""

import importlib
import importlib.machinery
import sys

__all__ = ["Network", "load"]
__version__ = "0.1.0"

MOVED = {"activations": "reference.activations", "inputs": "reference.inputs", "losses": "reference.losses",
         "cells": "reference", "cells.common": "reference.common", "cells.rnn": "reference.rnn",
         "cells.gru": "reference.gru", "cells.lstm": "reference.lstm", "cells.skip": "reference.skip",
         "heap": "fast.heap", "engine": "model.engine", "network": "model.network",
         "torch_names": "model.torch_names", "init": "model.init", "config": "training.config",
         "data": "training.data", "tasks": "training.tasks", "problems": "training.problems",
         "tbptt": "training.tbptt", "optim": "training.optim", "schedules": "training.schedules",
         "clipping": "training.clipping", "train": "training.train", "rundir": "training.rundir",
         "checkpoint": "files", "training.checkpoint": "files", "generate": "training.generate",
         "gradcheck": "lab.gradcheck",
         "diagnostics": "lab.diagnostics", "sweep": "lab.sweep", "figures": "lab.figures",
         "html_report": "lab.page", "report_diagnose": "lab.diagnose", "torch_reference": "interop.torch_reference",
         "report": "cli.display"}


def __getattr__(name):
    if name == "Network":
        from .model.network import Network

        return Network
    if name == "load":                       # bptt.load(RUN_DIR): a trained run (training/trained.py)
        from .training.trained import load

        return load
    if name in MOVED:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'bptt' has no attribute {name!r}")


class _Moved:
    """`import bptt.engine` gives bptt.model.engine itself (not a copy): the old name is an alias.
    A meta path finder and its loader by protocol, not by importlib.abc's base classes: importing
    those (importlib.resources, pathlib, ...) tripled this package's import time, and a Ctrl-C
    that lands in it, before the command line catches one (bptt.cli.main), printed a traceback."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, old = fullname.partition(".")
        if prefix != __name__ or old not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        module = importlib.import_module(f"{__name__}.{MOVED[spec.name.partition('.')[2]]}")
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state        # the import system gave it the alias's spec


if not any(isinstance(f, _Moved) for f in sys.meta_path):
    sys.meta_path.insert(0, _Moved())
