"""The fast engine: the cells' time loops compiled with numba, the NumPy cells as their specification.

A layer above reference/ (it imports the reference cells' layouts and nothing above): model/
chooses it through model.engine.backend("fast"). heap.py sets glibc's allocator up for the
engine's large, short-lived arrays.

Each cell module here has the interface of its counterpart in bptt.reference (init_params, forward,
backward, step_jacobian and the declarations) and the same cache layout, so the two engines are
interchangeable inside bptt.model.engine (Arch(engine="fast" | "numpy")) and are tested against each
other to round-off in float64. What changes is how a window runs:

  - the whole forward (and backward) time loop is one compiled call, no Python per step; its
    recurrent GEMMs use U packed once per window and a register-blocked AVX-512 kernel
    (packed.py), and the window-sized products around the loop use the same kernel on the same
    threads (matmul.py);
  - the gate arithmetic of a step is fused into passes over each row, vectorised by LLVM; in
    float32 a rational tanh (nonlinear.py) replaces libm's, which does not vectorise;
  - the rows of the batch, independent recurrences, run as blocks on separate threads with
    single-threaded GEMMs (rows.py): one thread per core, no barrier per step.

Compiled code is cached on disk (numba's cache=True, in __pycache__ beside these files): the first
use in a fresh install compiles for about a minute or two (stale_modules() says whether that is still
to come); later processes load it. The cache of every function of bptt is keyed by its file and by
all of this folder's (caching.py, imported by rows.py, which every kernel's module imports): a kernel
holds the code of what it calls from other files, and numba alone would load it after those changed.
"""

from pathlib import Path

CELL_NAMES = ("rnn", "gru", "lstm")                  # the cells compiled here (CELLS, on first use)
CACHED = ("packed", "bf16", "matmul", "window", "readout")   # the modules whose kernels every cell calls, and
                                                     # each cell's own: numba caches their code on disk
ON_REQUEST = ("stepping", "arrays")                  # cached too, compiled on their first use only: streaming
                                                     # inference (model.streaming), and clipping's and the
                                                     # optimisers' whole-array passes (seconds, once)


def stale_modules(cells=("rnn", "gru", "lstm")):
    """The modules of CACHED and of `cells` whose compiled code for this CPU numba's disk cache lacks,
    or holds for other source bytes (caching.py): the compiling that the first use will do; none for
    a cell this engine does not have (the skip RNN). Imports the modules (a fraction of a second),
    compiles nothing."""
    here = Path(__file__).resolve().parent
    if not all((here / f"{cell}.py").exists() for cell in cells):
        return []
    from .caching import compiled

    return [name for name in (*CACHED, *cells) if not compiled(f"{__name__}.{name}")]


def __getattr__(name):
    """CELLS (cell name -> compiled module) on first use: importing bptt.fast.heap, or anything else
    here, does not load the cells."""
    if name == "CELLS":
        import importlib

        return {name: importlib.import_module(f"{__name__}.{name}") for name in CELL_NAMES}
    raise AttributeError(f"module 'bptt.fast' has no attribute {name!r}")
