"""bptt: recurrent networks trained by backpropagation through time, every gradient by hand.

The public names are loaded on first use, so that the command line (bptt.cli) starts without
importing NumPy and the engine before it needs them.
"""

__all__ = ["Network"]
__version__ = "0.1.0"


def __getattr__(name):
    if name == "Network":
        from .network import Network

        return Network
    raise AttributeError(f"module 'bptt' has no attribute {name!r}")
