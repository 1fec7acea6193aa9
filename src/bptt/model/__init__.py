"""The network: what the cells become when stacked, read out and scored.

engine.py holds Arch (the shape of a network), the engine interface (backend(name): the cells,
the product, the fused readout and whether embedded inputs are folded, for "fast" or "numpy"),
the stack of layers, the readout, the loss and BPTT over a window (loss_and_grads, with
recomputation as its recompute_every option). network.py is Network, the object users hold;
init.py the initialisers; torch_names.py the mapping to PyTorch's parameter names.

Imports: fast/ and reference/ below it (the compiled engine only through backend("fast"), on first
use), never training/ or anything above.
"""
