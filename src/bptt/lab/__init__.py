"""The gradient lab: where BPTT is checked and studied.

gradcheck.py (every analytic gradient against central finite differences and PyTorch autograd),
diagnostics.py (Jacobian products through time, gradient norms per step, the bias of truncation),
sweep.py (cells trained on a long-range problem over a sweep of lengths), diagnose.py (the
gradient-flow report of a trained run), figures.py (matplotlib figures), page.py (self-contained
HTML pages with the figures inside).

Imports: interop/, training/, model/ and below; used by cli/.
"""
