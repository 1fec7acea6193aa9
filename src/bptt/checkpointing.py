"""BPTT in O(sqrt(T)) memory: gradient checkpointing through time, an option of the engine's one
BPTT path (engine.loss_and_grads(..., recompute_every=k); the algorithm is engine.recompute). This
name is kept for the code that called it before.
"""

from . import engine


def loss_and_grads(params, arch, x, y, state=None, target="every", loss="cross_entropy", lengths=None, *,
                   every, **options):
    """engine.loss_and_grads(..., recompute_every=every): caches kept for `every` steps at a time."""
    return engine.loss_and_grads(params, arch, x, y, state, target, loss, lengths, recompute_every=every, **options)
