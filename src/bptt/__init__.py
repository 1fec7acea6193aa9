"""bptt: recurrent networks trained by backpropagation through time, every gradient by hand."""

from .network import Network

__all__ = ["Network"]
__version__ = "0.1.0"
