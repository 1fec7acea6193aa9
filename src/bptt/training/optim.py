"""Optimisers computed as torch.optim computes them (for-loop path), with explicit state.

An optimiser is a frozen dataclass holding only hyperparameters. Its state is a flat dict of
arrays, so it can be saved as is (safetensors, np.savez) and a run resumed bit for bit:

    opt = optim.make("adam", betas=(0.9, 0.999))
    state = opt.init(params)            # {"step": (1,) int64, "exp_avg/V": like V, ...}
    for t in range(steps):
        grads = ...                     # same keys, shapes and dtypes as params
        opt.step(params, grads, state, lr)   # params and state change in place

State keys are "<slot>/<parameter name>" plus "step", the number of steps taken (t after the
step). The learning rate is an argument of step, not a hyperparameter: the schedule owns it.

rows ({name: sorted row indices}, optional, clipping's): the caller's word that grads[name] is zero
outside those rows; SGD without momentum or weight decay and NT-ASGD without weight decay then
update those rows alone (the others would not move). The other optimisers move every row (their
moments decay) and do not read it.

Notation of the docstrings: ∇ is the gradient handed in (read, never modified), λ weight decay,
g_t the gradient the update uses, p_t the parameter after step t = 1, 2, ... Every array keeps
the parameter's dtype: hyperparameters and lr are held as Python floats, so float32 stays float32.
Each parameter's update allocates at most a couple of scratch arrays of its size.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
from numba import njit, prange

from .. import checks
from ..checks import NONNEGATIVE, nonnegative, real
from ..fast import arrays, rows

UNIT = "a float in [0, 1)"


def unit(x):
    return 0.0 <= x < 1.0


def _hyper(opt, name, expected=NONNEGATIVE, ok=nonnegative):
    """Validate a field of a frozen dataclass and store it back as a Python float."""
    object.__setattr__(opt, name, real(name, getattr(opt, name), expected, ok))


def _betas(opt):
    betas = opt.betas
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise TypeError(f"betas: expected a pair (β1, β2) of floats in [0, 1), got {betas!r}")
    beta1 = real("betas", betas[0], "β1 in [0, 1)", unit)
    beta2 = real("betas", betas[1], "β2 in [0, 1)", unit)
    object.__setattr__(opt, "betas", (beta1, beta2))


def _init(params, fills):
    """{"step": [0]} and, for each slot and parameter, "slot/name" filled with fills[slot]."""
    checks.float_arrays("params", params)
    state = {"step": np.zeros(1, np.int64)}
    for slot, value in fills.items():
        state |= {f"{slot}/{k}": np.full_like(p, value) for k, p in params.items()}
    return state


def _begin(params, grads, state, lr, slots):
    """Check one step's arguments against each other and count the step. Returns (lr, t)."""
    lr = real("lr", lr, NONNEGATIVE, nonnegative)
    checks.float_arrays("params", params)
    for name, d in (("grads", grads), ("state", state)):
        if not isinstance(d, Mapping):
            raise TypeError(f"{name}: expected a dict of arrays, got {type(d).__name__}")
    if grads.keys() != params.keys():
        raise ValueError(f"grads: expected the keys of params; missing {sorted(params.keys() - grads.keys())}, "
                         f"unexpected {sorted(grads.keys() - params.keys())}")
    keys = {"step"} | {f"{slot}/{k}" for slot in slots for k in params}
    if state.keys() != keys:
        raise ValueError(f"state: expected the keys made by init(params) of this optimiser; missing "
                         f"{sorted(keys - state.keys())}, unexpected {sorted(state.keys() - keys)}")
    for k, p in params.items():
        arrays = {f"grads[{k!r}]": grads[k]} | {f"state[{f'{s}/{k}'!r}]": state[f"{s}/{k}"] for s in slots}
        for name, a in arrays.items():
            if not isinstance(a, np.ndarray) or a.dtype != p.dtype or a.shape != p.shape:
                raise ValueError(f"{name}: expected a {p.dtype} array of shape {p.shape} like params[{k!r}], "
                                 f"got {checks.describe(a)}")
    step = state["step"]
    if not isinstance(step, np.ndarray) or step.shape != (1,) or step.dtype.kind not in "iuf":
        raise ValueError(f"state['step']: expected an array of shape (1,) counting steps, got {checks.describe(step)}")
    step += 1
    return lr, int(step[0])


def _with_weight_decay(grad, p, wd):
    """g_t = ∇ + λ p_{t-1} in a new array; ∇ itself when λ = 0 (torch never modifies p.grad)."""
    if wd == 0.0:
        return grad
    g = np.multiply(p, wd)
    g += grad
    return g


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent with momentum μ, as torch.optim.SGD (dampening 0):

        g_t = ∇ + λ p_{t-1}
        b_t = μ b_{t-1} + g_t                 b_0 = 0, so b_1 = g_1 (slot "momentum", if μ > 0)
        d_t = g_t + μ b_t   if nesterov, else b_t (μ > 0), else g_t
        p_t = p_{t-1} - lr d_t
    """

    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self):
        _hyper(self, "momentum")
        _hyper(self, "weight_decay")
        if not isinstance(self.nesterov, bool | np.bool_):
            raise TypeError(f"nesterov: expected a bool, got {self.nesterov!r} ({type(self.nesterov).__name__})")
        object.__setattr__(self, "nesterov", bool(self.nesterov))
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov: expected momentum > 0 with nesterov=True, got momentum=0.0; "
                             "set momentum (e.g. 0.9) or nesterov=False")

    def _fills(self):
        return {"momentum": 0.0} if self.momentum > 0 else {}

    def init(self, params):
        return _init(params, self._fills())

    def step(self, params, grads, state, lr, rows=None):
        lr, _ = _begin(params, grads, state, lr, self._fills())
        mu = self.momentum
        rows = checks.nonzero_rows(rows, grads) if mu == 0.0 and self.weight_decay == 0.0 else {}
        for k, p in params.items():
            g = _with_weight_decay(grads[k], p, self.weight_decay)
            d = g
            if mu > 0:
                b = state[f"momentum/{k}"]
                b *= mu
                b += g                                       # b_t = μ b_{t-1} + g_t
                d = b
                if self.nesterov:
                    d = np.multiply(b, mu)
                    d += g                                   # d_t = g_t + μ b_t
            arrays.axpy(p, -lr, d, rows.get(k))              # p_t = p_{t-1} - lr d_t, in place


@dataclass(frozen=True)
class Adagrad:
    """Adagrad as torch.optim.Adagrad with lr_decay = 0:

        g_t = ∇ + λ p_{t-1}
        s_t = s_{t-1} + g_t²                  s_0 = initial_accumulator_value (slot "sum")
        p_t = p_{t-1} - lr g_t / (sqrt(s_t) + ε)
    """

    eps: float = 1e-10
    initial_accumulator_value: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self):
        for name in ("eps", "initial_accumulator_value", "weight_decay"):
            _hyper(self, name)

    def _fills(self):
        return {"sum": self.initial_accumulator_value}

    def init(self, params):
        return _init(params, self._fills())

    def step(self, params, grads, state, lr, rows=None):
        lr, _ = _begin(params, grads, state, lr, self._fills())
        for k, p in params.items():
            g = _with_weight_decay(grads[k], p, self.weight_decay)
            u = np.empty_like(p)
            s = state[f"sum/{k}"]
            np.multiply(g, g, out=u)
            s += u                                           # s_t = s_{t-1} + g_t²
            np.sqrt(s, out=u)
            u += self.eps                                    # sqrt(s_t) + ε
            np.divide(g, u, out=u)
            u *= lr
            p -= u                                           # p_t = p_{t-1} - lr g_t / (sqrt(s_t) + ε)


@dataclass(frozen=True)
class RMSprop:
    """RMSprop as torch.optim.RMSprop with centered=False:

        g_t = ∇ + λ p_{t-1}
        v_t = α v_{t-1} + (1-α) g_t²          v_0 = 0 (slot "square_avg")
        b_t = μ b_{t-1} + g_t / (sqrt(v_t) + ε)      b_0 = 0 (slot "momentum", if μ > 0)
        p_t = p_{t-1} - lr b_t                 if μ > 0, else
        p_t = p_{t-1} - lr g_t / (sqrt(v_t) + ε)
    """

    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self):
        _hyper(self, "alpha", UNIT, unit)
        for name in ("eps", "momentum", "weight_decay"):
            _hyper(self, name)

    def _fills(self):
        return {"square_avg": 0.0} | ({"momentum": 0.0} if self.momentum > 0 else {})

    def init(self, params):
        return _init(params, self._fills())

    def step(self, params, grads, state, lr, rows=None):
        lr, _ = _begin(params, grads, state, lr, self._fills())
        alpha, mu = self.alpha, self.momentum
        for k, p in params.items():
            g = _with_weight_decay(grads[k], p, self.weight_decay)
            u = np.empty_like(p)
            v = state[f"square_avg/{k}"]
            v *= alpha
            np.multiply(g, g, out=u)
            u *= 1 - alpha
            v += u                                           # v_t = α v_{t-1} + (1-α) g_t²
            np.sqrt(v, out=u)
            u += self.eps                                    # sqrt(v_t) + ε
            np.divide(g, u, out=u)                           # g_t / (sqrt(v_t) + ε)
            if mu > 0:
                b = state[f"momentum/{k}"]
                b *= mu
                b += u                                       # b_t
                np.multiply(b, lr, out=u)
            else:
                u *= lr
            p -= u                                           # p_t


def _adam_step(params, grads, state, lr, betas, eps, wd, decoupled):
    """One step of Adam (wd added to the gradient) or AdamW (decoupled: p shrinks first)."""
    lr, t = _begin(params, grads, state, lr, ("exp_avg", "exp_avg_sq"))
    beta1, beta2 = betas
    step_size = lr / (1 - beta1**t)                          # lr / (1 - β1^t)
    bias_correction2_sqrt = (1 - beta2**t) ** 0.5            # sqrt(1 - β2^t)
    for k, p in params.items():
        # the constants in p's dtype, as NumPy rounds a Python float meeting a float32 array
        c = p.dtype.type
        m, v = state[f"exp_avg/{k}"], state[f"exp_avg_sq/{k}"]
        for name, a in ((f"params[{k!r}]", p), (f"state['exp_avg/{k}']", m), (f"state['exp_avg_sq/{k}']", v)):
            if not a.flags.c_contiguous:
                raise ValueError(f"{name}: expected a C-contiguous array (updated in place), got a strided view")
        args = (p.reshape(-1), grads[k].reshape(-1), m.reshape(-1), v.reshape(-1), c(1 - beta1), c(beta2),
                c(1 - beta2), c(bias_correction2_sqrt), c(eps), c(step_size), c(wd), c(1 - lr * wd), decoupled)
        rows.run(_adam_chunks, args, arrays.chunk_ranges(p.size) or [(0, 0)], _adam_blocks)


@njit(nogil=True, cache=True, error_model="numpy")
def _adam_update(p, grad, m, v, one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps, step_size,
                 wd, shrink, decoupled):
    """Adam's update of one array in one pass, element by element in the order of torch.optim.Adam
    (single-tensor path), each operation rounded to the array's dtype: the same numbers as NumPy
    would give with one whole-array operation per line, without the temporaries."""
    for i in range(p.size):
        g = grad[i]
        if decoupled:
            p[i] = p[i] * shrink                             # p' = p_{t-1} (1 - lr λ)
        elif wd != 0:
            g = p[i] * wd + g                                # g_t = ∇ + λ p_{t-1}
        m[i] = m[i] + (g - m[i]) * one_minus_beta1           # m_t = m_{t-1} + (1-β1)(g_t - m_{t-1})
        v[i] = v[i] * beta2 + g * g * one_minus_beta2        # v_t = β2 v_{t-1} + (1-β2) g_t²
        denom = math.sqrt(v[i]) / bias_correction2_sqrt + eps     # sqrt(v_t) / sqrt(1 - β2^t) + ε
        p[i] = p[i] - m[i] / denom * step_size               # p_t


@njit(nogil=True, cache=True, error_model="numpy")
def _adam_chunks(p, grad, m, v, one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps, step_size,
                 wd, shrink, decoupled, c0, c1):
    """_adam_update of chunks c0:c1 (arrays.CHUNK values each) of the flat arrays: each value's update
    reads and writes that value alone, so the chunks run on the cores side by side (rows.run) with the
    same numbers as one pass (a word model's 4.65M values: 2.9 ms on one core, 1.9 on two)."""
    s = slice(c0 * arrays.CHUNK, c1 * arrays.CHUNK)
    _adam_update(p[s], grad[s], m[s], v[s], one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps,
                 step_size, wd, shrink, decoupled)


@njit(**rows.PARALLEL)
def _adam_blocks(args, blocks):
    for i in prange(blocks.shape[0]):
        _adam_chunks(*args, blocks[i, 0], blocks[i, 1])


@dataclass(frozen=True)
class Adam:
    """Adam as torch.optim.Adam (amsgrad=False), weight decay added to the gradient (L2):

        g_t = ∇ + λ p_{t-1}
        m_t = β1 m_{t-1} + (1-β1) g_t         (slot "exp_avg", computed as m + (1-β1)(g - m), torch's lerp)
        v_t = β2 v_{t-1} + (1-β2) g_t²        (slot "exp_avg_sq"); m_0 = v_0 = 0
        p_t = p_{t-1} - lr/(1-β1^t) · m_t / (sqrt(v_t)/sqrt(1-β2^t) + ε)
    """

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    decoupled = False                     # a class constant, not a field: AdamW sets it

    def __post_init__(self):
        _betas(self)
        _hyper(self, "eps")
        _hyper(self, "weight_decay")

    def init(self, params):
        return _init(params, {"exp_avg": 0.0, "exp_avg_sq": 0.0})

    def step(self, params, grads, state, lr, rows=None):
        _adam_step(params, grads, state, lr, self.betas, self.eps, self.weight_decay, self.decoupled)


@dataclass(frozen=True)
class AdamW(Adam):
    """AdamW as torch.optim.AdamW (amsgrad=False): weight decay decoupled from the gradient,

        p' = p_{t-1} (1 - lr λ)                applied first
        g_t = ∇
        m_t = β1 m_{t-1} + (1-β1) g_t         (slot "exp_avg", computed as m + (1-β1)(g - m), torch's lerp)
        v_t = β2 v_{t-1} + (1-β2) g_t²        (slot "exp_avg_sq"); m_0 = v_0 = 0
        p_t = p' - lr/(1-β1^t) · m_t / (sqrt(v_t)/sqrt(1-β2^t) + ε)
    """

    weight_decay: float = 1e-2
    decoupled = True


@dataclass(frozen=True)
class NTASGD:
    """Non-monotonically triggered ASGD (Merity, Keskar & Socher 2017, Algorithm 1): SGD, and from
    the step T at which a validation check finds no improvement, the running average of the
    iterates as well (the weights validation, best.safetensors and bptt.load read; training goes
    on from the iterate p):

        g_k = ∇ + λ p_{k-1}
        p_k = p_{k-1} - lr g_k                          every step, as SGD (no momentum)
        trigger at the check after step T whose loss v_c is worse than the best of the checks more
                than n before it (v_0 .. v_{c-1}: the earlier checks' losses, n = nonmono):
                c > n and v_c > min(v_0, ..., v_{c-n-1})
                (AWD-LSTM's main.py: len(best_val_loss) > nonmono and val_loss > min(best_val_loss[:-nonmono]))
        ax_T = p_T
        ax_k = ax_{k-1} + (p_k - ax_{k-1}) μ_k,   μ_k = 1 / (k - T + 1),  so ax_k = (p_T + ... + p_k) / (k - T + 1)

    torch.optim.ASGD(t0=0, lambd=0), which AWD-LSTM makes at the trigger, computes the same p_k and
    ax_k = ax_{k-1} + (p_k - ax_{k-1}) μ with its μ = 1 / max(1, j - 1) at its j-th step: its first
    two steps copy the iterate, so its average starts at p_{T+2}; ours includes p_T and p_{T+1}, as
    Algorithm 1's ax = (1 / (k - T + 1)) Σ_{i=T}^{k} w_i.

    State: "step"; "ax/<name>" (slot, zeros until T); "average_from" (1,) int64: T, or -1 before the
    trigger; "valid_losses" (c,) float64: the losses of the checks up to the trigger (validated).
    """

    weight_decay: float = 0.0
    nonmono: int = 5

    def __post_init__(self):
        _hyper(self, "weight_decay")
        object.__setattr__(self, "nonmono", checks.positive_int("nonmono", self.nonmono, minimum=1))

    def init(self, params):
        state = _init(params, {"ax": 0.0})
        return state | {"average_from": np.full(1, -1, np.int64), "valid_losses": np.zeros(0, np.float64)}

    def step(self, params, grads, state, lr, rows=None):
        T = _averaging(state)
        slots = {k: v for k, v in state.items() if k not in ("average_from", "valid_losses")}
        lr, k = _begin(params, grads, slots, lr, ("ax",))
        rows = checks.nonzero_rows(rows, grads) if self.weight_decay == 0.0 else {}
        for name, p in params.items():
            g = _with_weight_decay(grads[name], p, self.weight_decay)
            arrays.axpy(p, -lr, g, rows.get(name))                # p_k = p_{k-1} - lr g_k
            if T >= 0:
                ax = state[f"ax/{name}"]
                ax += (p - ax) * (1.0 / (k - T + 1))            # ax_k = ax_{k-1} + (p_k - ax_{k-1}) μ_k

    def validated(self, params, state, loss):
        """Record the loss of the check after step state["step"] (a float); when it triggers, the
        average starts from params (ax_T = p_T). Returns whether averaging started now."""
        if _averaging(state) >= 0:
            return False
        loss = real("loss", loss, "a float", lambda x: True)
        losses = [float(v) for v in state["valid_losses"]]
        start = len(losses) > self.nonmono and loss > min(losses[:-self.nonmono])
        state["valid_losses"] = np.append(state["valid_losses"], loss)
        if start:
            for name, p in params.items():
                np.copyto(state[f"ax/{name}"], p)                # ax_T = p_T
            state["average_from"][0] = state["step"][0]
        return start


def _averaging(state):
    """T of NT-ASGD's state (-1: not yet averaging), checked."""
    T = state.get("average_from") if isinstance(state, Mapping) else None
    if not isinstance(T, np.ndarray) or T.shape != (1,) or T.dtype.kind not in "iu":
        raise ValueError(f"state['average_from']: expected an int array of shape (1,) made by NTASGD.init, got "
                         f"{checks.describe(T)}")
    losses = state.get("valid_losses")
    if not isinstance(losses, np.ndarray) or losses.ndim != 1 or losses.dtype != np.float64:
        raise ValueError(f"state['valid_losses']: expected a float64 array of shape (checks,) made by NTASGD.init, "
                         f"got {checks.describe(losses)}")
    return int(T[0])


def averaged(params, state):
    """The weights to evaluate: params with each array NT-ASGD averages replaced by its average ax
    once averaging has begun (state["average_from"] >= 0); params itself for other optimisers'
    states (and a frozen E, which has no ax, stays)."""
    T = state.get("average_from")
    if T is None or T[0] < 0:
        return params
    return params | {k: state[f"ax/{k}"] for k in params if f"ax/{k}" in state}

def make(name, **hyper):
    """make("adam", betas=(0.9, 0.98)) -> Adam(betas=(0.9, 0.98)); defaults are torch.optim's."""
    classes = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}
    cls = classes[checks.one_of("optimizer", name, tuple(classes))]
    allowed = [f.name for f in fields(cls)]
    for key in hyper:
        if key == "lr":
            raise TypeError("lr: not a hyperparameter of the optimiser; pass it to step(params, grads, state, lr) "
                            "each step (the schedule owns it)")
        if key not in allowed:
            raise TypeError(f"{key}: not a hyperparameter of {name!r}; expected some of {', '.join(allowed)}")
    return cls(**hyper)
