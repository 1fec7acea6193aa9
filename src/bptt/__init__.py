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

checks.py, the validation of arguments, files.py, atomic and checksummed files, and version.py sit
below them all. The public names are loaded on first use, so that the command line starts without importing
NumPy and the engine before it needs them.
"""

from .version import __version__

__all__ = ["Network", "load", "__version__"]


def __getattr__(name):
    if name == "Network":
        from .model.network import Network

        return Network
    if name == "load":                       # bptt.load(RUN_DIR): a trained run (training/trained.py)
        from .training.trained import load

        return load
    raise AttributeError(f"module 'bptt' has no attribute {name!r}")
