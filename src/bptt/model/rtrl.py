"""RTRL and UORO: the gradient carried forward in time, as the window runs, instead of backwards after it.

BPTT (engine.loss_and_grads) keeps every step of the window and walks back through them. Real-time
recurrent learning (Williams & Zipser 1989) carries instead how the state depends on the parameters,
the influence matrix M_t = ds_t/dθ, and adds each step's loss gradient through it as it goes: the
same gradient, exactly, in memory that does not grow with T, at O(S^2 P) time per step. UORO (Tallec &
Ollivier 2017, "Unbiased Online Recurrent Optimization") carries a rank-one estimate s̃_t θ̃_t^T of M_t
whose expectation is M_t, at about the cost of the forward pass and one Jacobian-vector and one
vector-Jacobian product.

Per row, for layer k at step t: s_t its state (h_t, or (h_t, c_t) for the LSTM: S entries), x_t its
input (a one-hot row for ids, E[x_t] with an embedding, features, or h^{k-1}_t above layer 0),
ax_t = W x_t + b, ah_t = U h_{t-1} + b_U. The cell gives its partials (reference.*.step_partials):

    A_t = ds_t/dax_t (S, G)     C_t = ds_t/dah_t (S, G)     K_t = ds_t/ds_{t-1}, ax_t and ah_t held (S, S)

and from them the step's Jacobians:

    (J1) J_t = ds_t/ds_{t-1} = K_t + C_t U                   U acting on the h part of s_{t-1}      (S, S)
    (J2) X_t = ds_t/dx_t     = A_t W                                                                  (S, D)
    (J3) ds_t/dθ with s_{t-1} and x_t held:   dW = A_t ⊗ x_t    dU = C_t ⊗ h_{t-1}    db = A_t    db_U = C_t

θ's columns (Layout): E, then for k = 0..L-1 layer k's W, U, b, b_U and its initial state s^k_0 (for
dL/ds_0); layer k's state depends on the first P_k of them (E and layers 0..k), P = P_{L-1} in all.

RTRL, the influence matrix M^k_t = ds^k_t/dθ (B, S, P_k):

    (R0) M^k_0 = the identity on s^k_0's columns, 0 elsewhere
    (R1) M^k_t = J_t M^k_{t-1} + X_t N^k_t + (J3)        N^k_t = dx^k_t/dθ: the h rows of M^{k-1}_t above
         layer 0; on layer 0 the identity on E's row x_t with an embedding, 0 for one-hot ids or features
    (R2) dθ += δ_t M^top_t[h]       δ_t = dL/dh^top_t = dz_t V (the readout's (1b)), at steps with a target
    (R3) dV += dz_t^T h^top_t       dc += Σ_b dz_t            the readout's own gradient, no influence needed

UORO, each row on its own, with ν_t uniform random signs over every layer's state:

    (U1) u_t = J s̃_{t-1} through the whole step:  u^k = J^k_t s̃^k_{t-1} + X^k_t u^{k-1}[h]        (JVP)
    (U2) g_t = ν_t^T ds_t/dθ, top to bottom:  λ^k = ν^k + X^{k+1 T}_t λ^{k+1} (on h^k), (J3)^T λ^k on
         layer k's columns, X^{0 T}_t λ^0 on E's row x_t                                            (VJP)
    (U3) ρ0 = sqrt((|θ̃_{t-1}| + ε) / (|u_t| + ε))      ρ1 = sqrt((|g_t| + ε) / (|ν_t| + ε))
    (U4) s̃_t = ρ0 u_t + ρ1 ν_t                          θ̃_t = θ̃_{t-1} / ρ0 + g_t / ρ1       (s̃_0 = θ̃_0 = 0)
    (U5) dθ += (δ_t · s̃^top_t[h]) θ̃_t                   and (R3)

Unbiased: ρ0 cancels in s̃_t θ̃_t^T; ν_t is independent of the past, E[ν_t ν_t^T] = I, and a flip of every
sign leaves ρ1 unchanged, so E[ρ1 ν_t] = E[ν_t / ρ1] = 0 and E[s̃_t θ̃_t^T | past] = J_t s̃_{t-1} θ̃_{t-1}^T
+ ds_t/dθ: (R1) in expectation, and (U5) is linear in it. ρ0 and ρ1 balance the norms of the two
factors, the paper's variance-minimising choice. UORO gives no dL/ds_0 (its θ̃ never reaches s_0's columns).

Shapes: B rows, S a layer's state size (H, or 2H for the LSTM), G = gates x H, D a layer's input size,
P_k layer k's columns; M^k (B, S, P_k); s̃^k, ν^k (B, S); θ̃, g (B, P); ids (B,) the step's token ids.
Cost per step and layer: RTRL O(B S^2 P) time and O(B S P) memory; UORO O(B (S G + S D + P)).
Both run the reference cells one step at a time, in NumPy, in the parameters' dtype.

Online (lab/online.py): run_carried starts a window from the carried value another window ended with
(RTRL's M^k, UORO's (s̃, θ̃)) instead of (R0), and returns the one it ends with, so that the influence
runs on across windows from the stream's start: θ's columns keep their Layout (it depends on arch
alone), s_0's columns are then the stream's first state's, and with the parameters held the windows'
gradients are those of full BPTT over the stream. After a parameter update the carried influence is
the one computed under the old parameters, no longer ds_t/dθ at the new θ: the standard online
approximation (Williams & Zipser 1989; Tallec & Ollivier 2017), whose error shrinks with the step size.
"""

import functools
from typing import NamedTuple

import numpy as np

from .. import checks
from ..reference import CELLS, losses
from . import regularisers

ALGORITHMS = ("bptt", "rtrl", "uoro")
SUPPORTED_CELLS = ("rnn", "gru", "lstm")
EPSILON = 1e-7           # (U3)'s ε: ρ0 = 1 at the first step (s̃_0 = θ̃_0 = 0), and ρ1 > 0 even where g_t = 0

UNSUPPORTED_ARCH = {     # Arch fields the forward-mode algorithms refuse: what each is
    "bidirectional": "bidirectional layers (the reverse direction needs the whole window first)",
    "proj_size": "LSTM projections",
    "learn_init_state": "a learned initial state",
    "cutoffs": "the adaptive softmax",
}
UNSUPPORTED_OPTIONS = {  # options of engine.loss_and_grads they refuse (at their defaults they are absent)
    "lengths": "variable lengths", "reset": "resets inside the window", "loss_mask": "a loss mask",
    "dropout": "dropout", "rng": "dropout masks (UORO's signs come from seed)", "dropout_rows": "dropout rows",
    "clip_dh": "clipping dL/dh_t (a quantity of BPTT's backward pass)",
    "trace": "traces of dL/dh_t (a quantity of BPTT's backward pass)",
    "recompute_every": "recomputation (BPTT's memory saving; RTRL keeps no steps)",
}


class Layout(NamedTuple):
    """θ's columns: name -> slice for E, l{k}.W, l{k}.U, l{k}.b, l{k}.b_U and s0.{k} (layer k's initial
    state, all its parts); ends[k] = P_k, the columns layer k's state depends on; E's shape (or None)."""

    columns: dict
    ends: tuple
    E_shape: tuple | None


class Step(NamedTuple):
    """Layer k at step t, B rows: what (J1)-(J3) and the algorithms read."""

    x: np.ndarray            # x_t (B, D): a one-hot row for ids
    h_prev: np.ndarray       # h_{t-1} (B, H)
    A: np.ndarray            # ds_t/dax_t (B, S, G)
    C: np.ndarray            # ds_t/dah_t (B, S, G)
    J: np.ndarray            # (J1) ds_t/ds_{t-1} (B, S, S)
    X: np.ndarray | None     # (J2) ds_t/dx_t (B, S, D); None on layer 0 without an embedding (x_t is no function of θ)


class Algorithm(NamedTuple):
    """How the gradient travels forward: start(layout, arch, B, dtype) -> carried (before step 1);
    step(carried, steps, layout, ids) -> carried (after step t); credit(carried, δ_t) -> (B, P), row b's
    dL_t/dθ for δ_t = dL/dh^top_t (B, H); gives_dstate0: whether s_0's columns hold dL/ds_0."""

    start: object
    step: object
    credit: object
    gives_dstate0: bool


def chosen(arch, algorithm, seed, options):
    """The Algorithm asked for, after refusing what it does not support (refuse): RTRL, or UORO with its
    signs from seed (an int: the same signs on every call; or a np.random.Generator). options: the other
    options of engine.loss_and_grads, each refused unless at its default. engine.forward_mode runs it."""
    checks.one_of("algorithm", algorithm, ALGORITHMS)
    rng = signs_generator(algorithm, seed)
    assert algorithm != "bptt", "rtrl.chosen: algorithm='bptt' is engine.loss_and_grads' own"
    refuse(arch, algorithm, dict(options))
    return RTRL if algorithm == "rtrl" else uoro(rng)


def signs_generator(algorithm, seed):
    """UORO's source of random signs: seed an int (the same signs on every call) or a np.random.Generator
    (drawn from); None for RTRL, which draws nothing and refuses a seed."""
    if algorithm != "uoro":
        if seed is not None:
            raise ValueError(f"seed: applies to algorithm='uoro' only (its random signs); got seed={seed!r} with "
                             f"algorithm={algorithm!r}; leave seed None")
        return None
    if seed is None:
        raise ValueError("seed: algorithm='uoro' draws random signs; give seed, an int (the same signs on every "
                         "call) or a np.random.Generator")
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(checks.positive_int("seed", seed, minimum=0))


def refuse(arch, algorithm, options):
    """A ValueError naming the first setting that RTRL and UORO do not support, never a wrong gradient."""
    how = f"algorithm={algorithm!r} does not support"
    if arch.cell not in SUPPORTED_CELLS:
        raise ValueError(f"cell: {how} cell={arch.cell!r}; it runs {', '.join(map(repr, SUPPORTED_CELLS))} "
                         f"(use algorithm='bptt')")
    for name, what in UNSUPPORTED_ARCH.items():
        if getattr(arch, name):
            raise ValueError(f"{name}: {how} {what}; got {name}={getattr(arch, name)!r} (use algorithm='bptt')")
    given = {name: options.pop(name, None) for name in UNSUPPORTED_OPTIONS}
    regularise = regularisers.options(**options)        # AWD-LSTM's, checked; an unknown name is a TypeError
    for name, what in UNSUPPORTED_OPTIONS.items():
        value = given[name]
        if value is not None and not (isinstance(value, bool | int | float | np.number) and value == 0):
            raise ValueError(f"{name}: {how} {what}; leave {name} at its default (or use algorithm='bptt')")
    for name in regularisers.Options._fields:
        if getattr(regularise, name) > 0:
            raise ValueError(f"{name}: {how} AWD-LSTM's regularisers; leave {name} at 0 (or use algorithm='bptt')")


def layout(arch):
    """θ's columns (Layout): E, then each layer's W, U, b, b_U and initial state, bottom to top."""
    shapes = arch.param_shapes()
    columns, ends, at = {}, [], 0
    names = ["E"] if "E" in shapes else []
    for k in range(arch.num_layers):
        names += [f"l{k}.{symbol}" for symbol in ("W", "U", "b", "b_U")] + [f"s0.{k}"]
    for name in names:
        size = sum(arch.state_sizes) if name.startswith("s0.") else int(np.prod(shapes[name]))
        columns[name], at = slice(at, at + size), at + size
        if name.startswith("s0."):
            ends.append(at)
    return Layout(columns, tuple(ends), shapes.get("E"))


def rows_of_E(a, lay):
    """E's columns of a (..., P) as a view (..., V, D): its row v is ds/dE[v] (or (U2)'s share of it)."""
    view = a[..., lay.columns["E"]].reshape(a.shape[:-1] + lay.E_shape)     # splits the last axis: a view
    assert np.may_share_memory(view, a), "rows_of_E: writes into it must reach a"
    return view


def first_input(params, arch, x_t):
    """Layer 0's x_t at one step: (B, D) for (J2), (J3) (a one-hot row for ids), and as the cell reads a
    one-step window ((1, B) ids or (1, B, D))."""
    if x_t.ndim == 2:                                                       # features
        return x_t, x_t[None]
    if arch.embedding_dim:
        rows = params["E"][x_t]                                             # E[x_t] (B, D)
        return rows, rows[None]
    one_hot = np.zeros((len(x_t), arch.input_size), params["c"].dtype)
    one_hot[np.arange(len(x_t)), x_t] = 1
    return one_hot, x_t[None]


def step_layers(layers, arch, inputs, states):
    """Step t of every layer, bottom to top, the reference cell run on a one-step window: the new
    states (one tuple of parts per layer) and each layer's Step. inputs: first_input's pair."""
    cell = CELLS[arch.cell]
    (x, window), new, steps = inputs, [], []
    for k, p in enumerate(layers):
        h_prev = states[k][0]
        _, state_t, cache = cell.forward(p, window, states[k], **arch.options)
        A, C, K = cell.step_partials(p, cache, 0)
        J = K.copy()
        J[:, :, :h_prev.shape[1]] += C @ p["U"]                             # (J1) K_t + C_t U
        X = A @ p["W"] if k > 0 or arch.embedding_dim else None             # (J2) A_t W
        steps.append(Step(x, h_prev, A, C, J, X))
        new.append(state_t)
        x = state_t[0]                                                      # h^k_t: layer k+1's input
        window = x[None]
    return new, steps


def run(params, layers, V, arch, x, state, y, target, loss, how):
    """The window forward once: at each step every layer's step, the algorithm's step and, where a
    target is, the readout, the loss and the gradient's share ((R2) or (U5), and (R3)).

    params: E and c are read (V, the readout's weights, given: E with tied weights); layers: each
    layer's {"W", "U", "b", "b_U"}; x (T, B) ids or (T, B, D) features, state: the initial state's
    parts (L, B, size) and y as engine.prepare_loss gives them. Returns (the loss, the layers' and E's
    gradients, the readout's {"V", "c"}, the final state's parts (L, B, size), dL/ds_0's parts or None)."""
    return run_carried(params, layers, V, arch, x, state, y, target, loss, how)[:5]


def run_carried(params, layers, V, arch, x, state, y, target, loss, how, carried=None):
    """run from carried, what how.step carried to the end of the window before (None: how.start, (R0)),
    state that window's final state: run's five results and the carried value after the last step.
    dL/ds_0 is then the stream's first state's (s_0's columns were set at its start)."""
    T, B = x.shape[:2]
    lay = layout(arch)
    states = [tuple(s[k] for s in state) for k in range(arch.num_layers)]
    carried = how.start(lay, arch, B, V.dtype) if carried is None else carried
    c = params["c"]
    w = np.full(B, 1 / (T * B if target == "every" else B), V.dtype)       # each position's weight in the mean
    ys = y.reshape((T if target == "every" else 1, B) + y.shape[1:])
    value, g, dV, dc = 0.0, np.zeros((B, lay.ends[-1]), V.dtype), np.zeros_like(V), np.zeros_like(c)
    for t in range(T):
        ids = x[t] if x.ndim == 2 else None
        states, steps = step_layers(layers, arch, first_input(params, arch, x[t]), states)
        carried = how.step(carried, steps, lay, ids)
        if target == "every" or t == T - 1:
            h = states[-1][0]                                               # h^top_t (B, H)
            v, dz = losses.apply(loss, h @ V.T + c, ys[t if target == "every" else 0], w)   # (1), the loss
            value += v
            dV += dz.T @ h                                                  # (R3)
            dc += dz.sum(axis=0)                                            # (R3)
            g += how.credit(carried, dz @ V)                                # (R2), (U5): δ_t = dz_t V
    final = tuple(np.stack(part) for part in zip(*states))
    return (value, gradients(arch, lay, g), {"V": dV, "c": dc}, final, initial_state_gradient(arch, lay, g, how),
            carried)


def gradients(arch, lay, g):
    """E's and the layers' gradients from the rows' dL/dθ g (B, P): summed over the rows."""
    shapes = arch.param_shapes()
    return {name: g[:, cols].sum(axis=0).reshape(shapes[name]) for name, cols in lay.columns.items()
            if not name.startswith("s0.")}


def initial_state_gradient(arch, lay, g, how):
    """Each row's dL/ds_0 from s_0's columns of g (B, P), as parts (L, B, size); None from UORO."""
    if not how.gives_dstate0:
        return None
    cuts = np.cumsum(arch.state_sizes)[:-1]
    per_layer = [np.split(g[:, lay.columns[f"s0.{k}"]], cuts, axis=1) for k in range(arch.num_layers)]
    return tuple(np.stack(part) for part in zip(*per_layer))


def immediate(out, st, columns, k):
    """(J3) added to layer k's columns of out (B, S, P_k): ds_t/dθ with s_{t-1} and x_t held."""
    B, S = st.A.shape[:2]
    out[:, :, columns[f"l{k}.W"]] += (st.A[..., None] * st.x[:, None, None, :]).reshape(B, S, -1)       # A ⊗ x_t
    out[:, :, columns[f"l{k}.U"]] += (st.C[..., None] * st.h_prev[:, None, None, :]).reshape(B, S, -1)  # C ⊗ h_{t-1}
    out[:, :, columns[f"l{k}.b"]] += st.A
    out[:, :, columns[f"l{k}.b_U"]] += st.C


def influence_start(lay, arch, B, dtype):
    """(R0) M^k_0 (B, S, P_k) for every layer."""
    S = sum(arch.state_sizes)
    M = [np.zeros((B, S, P_k), dtype) for P_k in lay.ends]
    for k, M_k in enumerate(M):
        M_k[:, :, lay.columns[f"s0.{k}"]] = np.eye(S, dtype=dtype)
    return M


def influence_step(M, steps, lay, ids):
    """(R1) for every layer, bottom to top: M^k_t from M^k_{t-1} and the layer below's M^{k-1}_t."""
    new = []
    for k, st in enumerate(steps):
        M_k = st.J @ M[k]                                                   # (R1) J_t M^k_{t-1}   (B, S, P_k)
        if k > 0:
            below = new[k - 1][:, :st.X.shape[2]]                           # N^k_t: h rows of M^{k-1}_t
            M_k[:, :, :below.shape[2]] += st.X @ below                      # (R1) X_t N^k_t
        elif st.X is not None:                                              # x_t = E[ids]: N on E's row ids
            rows_of_E(M_k, lay)[np.arange(len(ids)), :, ids] += st.X        # (R1) X_t N^0_t
        immediate(M_k, st, lay.columns, k)                                  # (R1) + (J3)
        new.append(M_k)
    return new


def influence_credit(M, delta):
    """(R2) δ_t M^top_t[h] for every row: (B, P)."""
    return (delta[:, None, :] @ M[-1][:, :delta.shape[1]])[:, 0]


RTRL = Algorithm(influence_start, influence_step, influence_credit, True)


def estimate_start(lay, arch, B, dtype):
    """s̃_0 = 0 (B, S) for every layer, θ̃_0 = 0 (B, P)."""
    S = sum(arch.state_sizes)
    return [np.zeros((B, S), dtype) for _ in lay.ends], np.zeros((B, lay.ends[-1]), dtype)


def tangent(s_tilde, steps):
    """(U1) u_t = J s̃_{t-1} through the whole step, bottom to top: one (B, S) per layer."""
    u = []
    for k, st in enumerate(steps):
        u_k = (st.J @ s_tilde[k][:, :, None])[:, :, 0]                     # J^k_t s̃^k_{t-1}
        if k > 0:
            u_k += (st.X @ u[k - 1][:, :st.X.shape[2], None])[:, :, 0]      # X^k_t u^{k-1}[h]
        u.append(u_k)
    return u


def cotangent(nu, steps, lay, ids):
    """(U2) g_t = ν_t^T ds_t/dθ for every row (B, P), top to bottom: λ^k = ν^k plus what layer k+1's
    input h^k_t receives, (J3)^T λ^k on layer k's columns."""
    B = nu.shape[1]
    g = np.zeros((B, lay.ends[-1]), nu.dtype)
    lam_x = None                                                            # X^{k+1 T} λ^{k+1}: to h^k_t
    for k in reversed(range(len(steps))):
        st, lam = steps[k], nu[k].copy()
        if lam_x is not None:
            lam[:, :lam_x.shape[1]] += lam_x
        a_x, a_h = (lam[:, None, :] @ st.A)[:, 0], (lam[:, None, :] @ st.C)[:, 0]     # λ^T A_t, λ^T C_t (B, G)
        g[:, lay.columns[f"l{k}.W"]] = (a_x[:, :, None] * st.x[:, None, :]).reshape(B, -1)        # (J3)^T λ
        g[:, lay.columns[f"l{k}.U"]] = (a_h[:, :, None] * st.h_prev[:, None, :]).reshape(B, -1)
        g[:, lay.columns[f"l{k}.b"]] = a_x
        g[:, lay.columns[f"l{k}.b_U"]] = a_h
        lam_x = None if st.X is None else (lam[:, None, :] @ st.X)[:, 0]   # X^T λ (B, D)
    if lam_x is not None:                                                   # x_t = E[ids]
        rows_of_E(g, lay)[np.arange(B), ids] += lam_x
    return g


def estimate_step(carried, steps, lay, ids, rng):
    """(U1)-(U4): s̃_t, θ̃_t from s̃_{t-1}, θ̃_{t-1} and fresh signs ν_t."""
    s_tilde, theta_tilde = carried
    B, S = s_tilde[0].shape
    nu = (2 * rng.integers(0, 2, (len(steps), B, S)) - 1).astype(theta_tilde.dtype)   # ν_t (L, B, S)
    u = tangent(s_tilde, steps)                                                       # (U1)
    g = cotangent(nu, steps, lay, ids)                                                # (U2)
    norm_u, norm_nu = np.sqrt(sum((u_k * u_k).sum(axis=1) for u_k in u)), np.sqrt(nu.shape[0] * S)
    rho0 = np.sqrt((np.linalg.norm(theta_tilde, axis=1) + EPSILON) / (norm_u + EPSILON))[:, None]     # (U3)
    rho1 = np.sqrt((np.linalg.norm(g, axis=1) + EPSILON) / (norm_nu + EPSILON))[:, None]              # (U3)
    s_tilde = [rho0 * u_k + rho1 * nu_k for u_k, nu_k in zip(u, nu, strict=True)]        # (U4)
    return s_tilde, theta_tilde / rho0 + g / rho1


def estimate_credit(carried, delta):
    """(U5) (δ_t · s̃^top_t[h]) θ̃_t for every row: (B, P)."""
    s_tilde, theta_tilde = carried
    return (delta * s_tilde[-1][:, :delta.shape[1]]).sum(axis=1)[:, None] * theta_tilde


def uoro(rng):
    """UORO (U1)-(U5), its signs drawn from rng."""
    return Algorithm(estimate_start, functools.partial(estimate_step, rng=rng), estimate_credit, False)
