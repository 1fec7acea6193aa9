"""Online training by RTRL or UORO (--gradient rtrl | uoro): each window's loss and gradient computed
forward in time (model/rtrl.py), from the influence the window before ended with.

The trainer carries the influence beside the state (Training.influence): RTRL's M^k_t = ds^k_t/dθ (one
(B, S, P_k) array per layer), or UORO's rank-one estimate (s̃^k_t per layer, θ̃_t). It starts at (R0)
whenever the carried state starts from zeros (the stream's start, each epoch's), and otherwise runs on
across windows and updates:

    window c:   (L_c, g_c, s_end, I_end) = run_carried(θ_c, x_c, y_c, s_start, I_start)
                I_start = (R0) if the carried state is reset, else the I_end of window c - 1
    θ_{c+1} = optimizer.step(θ_c, clip(g_c), lr)

so credit reaches back past the window to the epoch's start, under the parameters of the windows it
came through (the standard online approximation). UORO's signs come from their own generator,
np.random.default_rng([seed, SIGNS]). A checkpoint holds the influence's arrays (to_arrays, under
"influence/") and the generator's state (Progress.signs), so a resumed run equals an uninterrupted one
bit for bit.
"""

import numpy as np

from ..model import engine, rtrl
from .building import available_memory

SIGNS = 7           # UORO's generator: default_rng([seed, SIGNS]), apart from the others ([seed, 1..6], seed + 2)


def algorithm(cfg, arch, signs_state=None):
    """(rtrl.Algorithm, UORO's generator or None) of cfg.gradient (not "bptt"); signs_state: the generator's
    bit_generator.state from a checkpoint (None: fresh from cfg.seed)."""
    signs = None
    if cfg.gradient == "uoro":
        signs = np.random.default_rng([cfg.seed, SIGNS])
        if signs_state is not None:
            signs.bit_generator.state = signs_state
    return rtrl.chosen(arch, cfg.gradient, signs, {}), signs


def check(cfg, arch, ranks):
    """What the config alone cannot refuse: several MPI ranks (each would carry an influence of its own
    rows, which the summed gradient does not reach) and an influence larger than the memory available."""
    if ranks > 1:
        raise ValueError(f"gradient: {cfg.gradient!r} runs in one process; got {ranks} MPI ranks (run it "
                         f"without mpiexec, or use --gradient bptt)")
    lay, S, B = rtrl.layout(arch), sum(arch.state_sizes), cfg.batch
    entries = B * S * sum(lay.ends) if cfg.gradient == "rtrl" else B * (len(lay.ends) * S + lay.ends[-1])
    need, have = 2 * entries * np.dtype(cfg.dtype).itemsize, available_memory()     # the old and the new
    if need > have:
        raise ValueError(f"gradient: {cfg.gradient!r} carries {entries:,} numbers of influence "
                         f"({need / 2**30:,.1f} GiB with the step's copy), more than the {have / 2**30:.1f} GiB of "
                         f"memory available; choose a smaller --hidden, --layers, --embedding or --batch (or "
                         f"--gradient uoro)")


def window(params, arch, x, y, state, how, influence, loss="cross_entropy"):
    """(engine.Result, the influence after it) of one window x (T, B), y of a stream, targets at every
    step, from the carried state and influence (None: (R0)); the Result has no dx and no dstate0. The
    trainer's windows and lab.online's chunks both run here."""
    prepared, y, _ = engine.prepare_loss(params, arch, x, y, state, "every", loss, None, None, None)
    layers = [engine.layer(params, k) for k in range(arch.num_layers)]
    value, grads, readout_grads, final, _, influence = rtrl.run_carried(
        params, layers, engine.readout_weights(params), arch, prepared.x, prepared.state, y, "every", loss, how,
        influence)
    result = engine.Result(value, engine.with_readout(params, grads, readout_grads), engine.public_state(final),
                           None, None)
    return result, influence


def to_arrays(gradient, influence):
    """The influence as named arrays for a checkpoint: RTRL's M.k, UORO's s.k and theta ({} for None)."""
    if influence is None:
        return {}
    if gradient == "rtrl":
        return {f"M.{k}": M_k for k, M_k in enumerate(influence)}
    s_tilde, theta_tilde = influence
    return {f"s.{k}": s_k for k, s_k in enumerate(s_tilde)} | {"theta": theta_tilde}


def from_arrays(gradient, arrays):
    """to_arrays' inverse: the influence, or None (none saved: the state was reset, or a bptt run)."""
    if not arrays or gradient == "bptt":
        return None
    name = "M" if gradient == "rtrl" else "s"
    per_layer = [arrays[f"{name}.{k}"] for k in range(sum(key.startswith(name + ".") for key in arrays))]
    return per_layer if gradient == "rtrl" else (per_layer, arrays["theta"])
