"""Other frameworks' versions of the same network: the oracles of the tests and the peers of the
benchmarks. torch_reference.py builds nn.Embedding + nn.RNN/GRU/LSTM + nn.Linear (and the skip
RNN) from bptt's parameters; jax_reference.py is the network as a JAX function. PyTorch and JAX
are optional: torch_reference imports torch, so only code that has checked torch is installed
imports it; jax_reference imports jax when its function is called.

Imports: model/ and below (parameter names, Arch); used by lab/, bench/ and the tests.
"""
