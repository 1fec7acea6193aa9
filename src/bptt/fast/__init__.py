"""The fast engine: the cells' time loops compiled with numba, the NumPy cells as their specification.

Each module here has the interface of its counterpart in bptt.cells (init_params, forward,
backward, step_jacobian, GATES, STATE) and the same cache layout, so the two engines are
interchangeable inside bptt.engine (Arch(engine="fast" | "numpy")) and are tested against each
other to round-off in float64. What changes is how a window runs:

  - the whole forward (and backward) time loop is one compiled call, with OpenBLAS's GEMM called
    from inside it (blas.py): no Python per step;
  - the gate arithmetic of a step is fused into passes over each row, vectorised by LLVM; in
    float32 a rational tanh (nonlinear.py) replaces libm's, which does not vectorise;
  - the rows of the batch, independent recurrences, run as blocks on separate threads with
    single-threaded GEMMs (rows.py): two cores, one thread pool, no barrier per step;
  - the recurrent weights are copied once per window to the layout BLAS reads fastest (U^T).

Compiled code is cached on disk (numba's cache=True, in __pycache__ beside these files): the first
use in a fresh install compiles for a few seconds; later processes load it.
"""

from . import gru, lstm, rnn

CELLS = {"rnn": rnn, "gru": gru, "lstm": lstm}
