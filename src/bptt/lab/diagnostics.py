"""Gradient flow: measurements that show why BPTT gradients vanish or explode.

With s_k the state of a layer after k steps (h_k, or (h_k, c_k) for the LSTM; s_0 the initial
state) and J_t = ds_{t+1}/ds_t the Jacobian of one step, computed exactly from the cell equations
(reference/*.step_jacobian):

    ds_T/ds_k = J_{T-1} J_{T-2} ... J_k                      (the product BPTT multiplies by)
    dL/dh_k   = dL/dh_k (direct) + (ds_{k+1}/ds_k)^T dL/ds_{k+1}     (the δ recursion)

For an Elman RNN J_t = diag(f'(a_t)) U: if every factor has norm below 1 the product shrinks
geometrically with T - k (vanishing), above 1 it can grow geometrically (exploding).

    gradient_norms        ||dL/dh^l_k|| for every layer l and step k: how much of the loss reaches k
    jacobian_singular_values   singular values of dh_T/dh_k for every k, per layer
    spectrum              eigenvalues (spectral radius) and singular values of each recurrent U
    truncation_bias       cosine and relative error between the TBPTT(k) and the full-BPTT gradient

All take parameters and an architecture (net.params, net.arch) and arrays, like engine.
"""

import numpy as np

from ..model import engine
from ..training import tbptt


def _layer_caches(params, arch, x, state=None, lengths=None, reset=None):
    """The layers' caches, and the order of their rows in the caller's (None: the same; with
    lengths the engine may run them in another order, engine.prepare)."""
    batch = engine.prepare(params, arch, x, state, lengths, reset)
    _, _, caches = engine.forward_layers(params, arch, batch, [None] * (arch.num_layers + 1))
    return caches, None if batch.order is None else np.argsort(batch.order)


def products(params, arch, x, state=None, lengths=None, reset=None, layer=0):
    """Yields (k, ds_T/ds_k) for k = T-1, ..., 0, one (B, S, S) float64 array at a time. A
    bidirectional network: the layer's forward direction (the reverse one runs the other way)."""
    caches, callers = _layer_caches(params, arch, x, state, lengths, reset)
    p, cache = engine.layer(params, layer), caches[layer * arch.directions]
    P = None
    for k in reversed(range(len(x))):
        J = arch.module.step_jacobian(p, cache, k).astype(np.float64)
        P = J if P is None else P @ J                                  # J_{T-1} ... J_{k+1} J_k
        yield k, P if callers is None else P[callers]


def jacobian_products(params, arch, x, state=None, lengths=None, reset=None, layer=0):
    """ds_T/ds_k for k = 0..T (k = T: the identity), of one layer: (T+1, B, S, S), float64.
    Memory grows as T B S^2: for large models use jacobian_singular_values, which keeps one."""
    S = sum(arch.state_sizes)
    out = np.empty((len(x) + 1, len(x[0]), S, S))
    out[-1] = np.eye(S)
    for k, P in products(params, arch, x, state, lengths, reset, layer):
        out[k] = P
    return out


def jacobian_singular_values(params, arch, x, state=None, lengths=None, reset=None):
    """Singular values of dh_T/dh_k (the h block of ds_T/ds_k), for every layer and k = 0..T.
    Returns a list (one per layer) of (T+1, B, H) arrays, each row in descending order."""
    H, T = arch.out_size, len(x)
    out = []
    for layer in range(arch.num_layers):
        sv = np.ones((T + 1, len(x[0]), H))                            # k = T: the identity
        for k, P in products(params, arch, x, state, lengths, reset, layer):
            sv[k] = np.linalg.svd(P[:, :H, :H], compute_uv=False)
        out.append(sv)
    return out


def gradient_norms(params, arch, x, y, state=None, target="last", loss="cross_entropy", lengths=None):
    """||dL/dh^l_k|| (2-norm over the batch and the units) for every layer l and step k = 0..T,
    k = 0 being the initial state. With target="last", L is the loss at the end alone, and the
    profile shows how much of it reaches each earlier step. Returns (L, T+1), float64. (A
    bidirectional layer: both directions' dL/dh_k together.)"""
    r = engine.loss_and_grads(params, arch, x, y, state, target, loss, lengths, trace=True)
    dh0 = r.dstate0[0] if isinstance(r.dstate0, tuple) else r.dstate0           # (L D, B, H)
    norms = np.empty((arch.num_layers, len(x) + 1))
    D = arch.directions
    for layer, dh in enumerate(r.dhs):
        norms[layer, 0] = np.linalg.norm(dh0[layer * D:(layer + 1) * D])
        norms[layer, 1:] = np.linalg.norm(dh.reshape(len(x), -1).astype(np.float64), axis=1)
    return norms


def spectrum(params, arch):
    """For each layer and each gate block U_g (H, H) of U: its eigenvalues' largest modulus (the
    spectral radius) and its singular values. Returns {"l0.U": [{"gate", "spectral_radius",
    "singular_values"}, ...], ...}."""
    gates = arch.module.GATE_NAMES
    H = arch.hidden_size
    if arch.proj_size:
        raise ValueError(f"proj_size: the gate blocks of U are {H} x {arch.proj_size}, not square; their eigenvalues "
                         f"are undefined (the step's Jacobian is, see jacobian_singular_values)")
    out = {}
    for name in (name for layer in range(arch.num_layers) for name in arch.layer_names(layer)):
        U = params[f"{name}.U"].astype(np.float64)
        out[f"{name}.U"] = [{"gate": g,
                                "spectral_radius": float(np.abs(np.linalg.eigvals(U[j * H:(j + 1) * H])).max()),
                                "singular_values": np.linalg.svd(U[j * H:(j + 1) * H], compute_uv=False)}
                               for j, g in enumerate(gates)]
    return out


def cosine(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na and nb else float("nan")


def truncation_bias(params, arch, stream, ks, k1=None):
    """How far the truncated gradient is from the true one. For each k in ks: the TBPTT(k1, k)
    gradient of the mean loss over the stream (N, B), with the parameters fixed, against full BPTT
    (one window over everything). k1 defaults to 1: every loss term is backpropagated exactly
    k steps (or to the start). Returns [{"k", "cosine", "relative_error"}, ...]."""
    flat = lambda g: np.concatenate([g[name].ravel() for name in sorted(g)]).astype(np.float64)  # noqa: E731
    full = flat(engine.loss_and_grads(params, arch, stream[:-1], stream[1:]).grads)
    rows = []
    for k in ks:
        step = k1 or 1
        g = flat(tbptt.accumulated_gradients(params, arch, stream, step, max(k, step))[1])
        rows.append({"k": int(k), "cosine": cosine(g, full),
                     "relative_error": float(np.linalg.norm(g - full) / np.linalg.norm(full))})
    return rows
