"""Gradient checks: every analytic gradient against central finite differences (float64) and,
when torch is installed, against PyTorch autograd on the same weights.

The error reported for an array g is norm-relative:  |g - g_ref| / max(|g|, |g_ref|)  (2-norms),
so a whole parameter passes or fails at once, however small its individual entries are. Against
finite differences the denominator is floored at the smallest norm they can resolve (resolution):
a gradient that vanishes below it is held to an absolute error instead.
"""

import dataclasses
import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..model import engine, regularisers
from ..model.network import Network
from ..model.torch_names import torch_name
from ..reference import form

CELL_NAMES = ("rnn-tanh", "rnn-relu", "rnn-sigmoid", "gru", "lstm", "skip-tanh")   # checked, of reference.FORMS
INPUT_KINDS = ("onehot", "embedding", "float")
REGULARISERS = regularisers.Options._fields     # AWD-LSTM's options of loss_and_grads, each a Case field


@dataclass(frozen=True)
class Case:
    """One configuration to check. Sizes are small so that finite differences stay fast."""

    cell: str = "lstm"              # one of CELL_NAMES
    num_layers: int = 1
    inputs: str = "onehot"          # one of INPUT_KINDS
    target: str = "every"           # "every" or "last"
    loss: str = "cross_entropy"     # "cross_entropy" or "mse"
    with_state: bool = False        # pass a random initial state (else None: zeros)
    with_lengths: bool = False      # variable lengths, padding in the batch
    with_reset: bool = False        # rows restart from a zero state at random steps
    with_loss_mask: bool = False    # only some positions carry a target (as in TBPTT(k1, k2))
    dropout: float = 0.0            # non-recurrent dropout, the same masks in every evaluation
    weight_drop: float = 0.0        # AWD-LSTM's regularisers (model/regularisers.py), the same masks in every
    dropout_input: float = 0.0      # evaluation: DropConnect on U; locked dropout on layer 0's input, between
    dropout_hidden: float = 0.0     # layers and on the readout's input; whole rows of E; AR (alpha) and TAR (beta)
    dropout_output: float = 0.0
    dropout_embedding: float = 0.0
    alpha: float = 0.0
    beta: float = 0.0
    tied: bool = False              # readout tied to the embedding (inputs="embedding"; E = H, K = V)
    skip: int | None = None         # skip RNN: how far back S reaches (None: 2)
    bidirectional: bool = False     # every layer also runs backwards in time
    learn_init: bool = False        # the initial state is a parameter (used when no state is given)
    proj: int | None = None         # LSTM with projections: proj_size
    cutoffs: tuple | None = None    # the adaptive softmax's cutoffs instead of the full readout (div_value 2)
    T: int = 5
    B: int = 3
    V: int = 5                      # vocabulary (ids) or features (floats)
    E: int = 3
    H: int = 4
    K: int = 3
    seed: int = 0
    engine: str = "numpy"           # "numpy": the reference cells; "fast": the compiled ones

    @property
    def ran_on(self):
        """The engine the case's cells run on: the one asked for, or the NumPy reference where that
        engine has no form of the cell (the skip RNN has no compiled one)."""
        if self.engine == "numpy":
            return "numpy"
        return self.engine if form(self.cell)[0] in engine.ENGINE_CELLS[self.engine] else "numpy"

    @property
    def regularise(self):
        """The AWD-LSTM options the case sets (above 0), as loss_and_grads takes them."""
        return {name: getattr(self, name) for name in REGULARISERS if getattr(self, name) > 0}

    def training(self, seed=None):
        """loss_and_grads' keyword arguments for the case's dropout and regularisers, with an int seed
        (seed + 2000 by default) so that every evaluation draws the same masks; {} when none is set."""
        given = ({"dropout": self.dropout} if self.dropout else {}) | self.regularise
        return given | {"rng": self.seed + 2000 if seed is None else seed} if given else {}

    def label(self):
        """The case in words; the engine that ran it (ran_on) unless the reference was asked for."""
        parts = [self.cell, f"L{self.num_layers}", self.inputs, self.target, self.loss]
        parts += ["state"] * self.with_state + ["lengths"] * self.with_lengths
        parts += ["reset"] * self.with_reset + ["loss_mask"] * self.with_loss_mask + ["tied"] * self.tied
        parts += [f"dropout{self.dropout:g}"] * (self.dropout > 0) + ["bidirectional"] * self.bidirectional
        parts += [f"{name}{value:g}" for name, value in self.regularise.items()]
        parts += ["learn_init"] * self.learn_init + [f"proj{self.proj}"] * (self.proj is not None)
        parts += [f"adaptive{'-'.join(map(str, self.cutoffs))}"] if self.cutoffs else []
        parts += [self.ran_on] * (self.engine != "numpy")
        return " ".join(parts)


def all_cases(**sizes):
    """The full matrix: cell x layers x inputs x target x loss x initial state x lengths."""
    for values in itertools.product(CELL_NAMES, (1, 3), INPUT_KINDS, ("every", "last"),
                                    ("cross_entropy", "mse"), (False, True), (False, True)):
        yield Case(*values, **sizes)


def training_cases():
    """What training adds, per cell: resets inside a window, a loss mask, dropout, tied embeddings,
    and a vocabulary larger than the window's T B tokens (the fast engine then gathers embedding rows
    instead of projecting the (V, E) table: engine.folds_embedding)."""
    for cell in CELL_NAMES:
        yield Case(cell, 2, "onehot", with_reset=True, with_state=True, with_lengths=True)
        yield Case(cell, 2, "embedding", V=20, with_state=True, with_reset=True)
        yield Case(cell, 2, "float", with_loss_mask=True, with_state=True)
        yield Case(cell, 2, "embedding", dropout=0.3, with_lengths=True)
        yield Case(cell, 2, "float", "last", "mse", dropout=0.5)
        yield Case(cell, 2, "embedding", tied=True, E=4, H=4, K=5, with_reset=True)
    yield Case("skip-relu", 2, "float", skip=3, with_state=True, with_lengths=True, T=7)
    yield Case("skip-sigmoid", 1, "onehot", skip=4, with_reset=True, with_state=True, T=9)
    yield Case("skip-tanh", 2, "onehot", skip=3, with_reset=True, with_loss_mask=True, T=8)


def bidirectional_cases():
    """Every cell bidirectional, 1 and 2 layers, each input form, a target per step and many-to-one,
    with and without lengths (PyTorch's packed sequences), an initial state given in half of them."""
    for i, (cell, layers, inputs, target, lengths) in enumerate(itertools.product(
            CELL_NAMES, (1, 2), INPUT_KINDS, ("every", "last"), (False, True))):
        yield Case(cell, layers, inputs, target, "mse" if i % 5 == 4 else "cross_entropy", with_state=i % 2 == 1,
                   with_lengths=lengths, bidirectional=True)


def projection_cases():
    """The LSTM with projections (proj_size P = 3 < H = 4): one and two layers, each input form, a
    target per step and many-to-one, with and without lengths, one and two directions, an initial
    state given in half of them; and with a learned initial state."""
    for i, (layers, inputs, target, lengths, bidirectional) in enumerate(itertools.product(
            (1, 2), INPUT_KINDS, ("every", "last"), (False, True), (False, True))):
        yield Case("lstm", layers, inputs, target, "mse" if i % 5 == 4 else "cross_entropy", with_state=i % 2 == 1,
                   with_lengths=lengths, bidirectional=bidirectional, proj=3)
    yield Case("lstm", 2, "embedding", "last", with_lengths=True, learn_init=True, bidirectional=True, proj=2)


def adaptive_cases():
    """The adaptive softmax as the readout (K = 10 classes: a shortlist of 3 and clusters [3, 6), [6, 10),
    tails of H // 2 and H // 4 units): every cell, each input form, a target per step and many-to-one,
    with and without lengths; bidirectional and projected; three clusters with resets and a loss mask."""
    for i, (cell, inputs, target, lengths) in enumerate(itertools.product(
            CELL_NAMES, INPUT_KINDS, ("every", "last"), (False, True))):
        yield Case(cell, 1 + i % 2, inputs, target, with_state=i % 3 == 0, with_lengths=lengths, K=10, cutoffs=(3, 6))
    yield Case("lstm", 2, "embedding", "last", with_lengths=True, bidirectional=True, proj=3, K=10, cutoffs=(4,))
    yield Case("gru", 2, "embedding", with_reset=True, with_loss_mask=True, K=10, H=8, cutoffs=(2, 5, 8), T=7)


AWD_ALL = dict(weight_drop=0.3, dropout_input=0.25, dropout_hidden=0.3, dropout_output=0.4, dropout_embedding=0.3,
               alpha=2.0, beta=1.0)


def awd_cases():
    """AWD-LSTM's regularisers (model/regularisers.py), masks fixed by an int seed: for the LSTM, the
    GRU and the tanh RNN, 2 layers, each alone (with lengths, resets, a given state in some) and all
    together with tied embeddings; with per-step dropout beside the weight drop; bidirectional,
    projected and skip networks with weight drop and AR/TAR."""
    for cell in ("lstm", "gru", "rnn-tanh"):
        yield Case(cell, 2, "embedding", weight_drop=0.4, with_lengths=True)
        yield Case(cell, 2, "float", dropout_input=0.3, dropout_hidden=0.4, dropout_output=0.5, with_state=True)
        yield Case(cell, 2, "embedding", dropout_embedding=0.4, with_reset=True)
        yield Case(cell, 2, "embedding", alpha=2.0, with_lengths=True)
        yield Case(cell, 2, "onehot", beta=1.0, with_reset=True, with_state=True)
        yield Case(cell, 2, "embedding", "last", alpha=2.0, beta=1.0, dropout_output=0.4, with_lengths=True)
        yield Case(cell, 2, "embedding", dropout=0.3, weight_drop=0.3, dropout_embedding=0.3, V=20)
        yield Case(cell, 2, "embedding", tied=True, E=4, H=4, K=5, with_lengths=True, with_state=True, **AWD_ALL)
    yield Case("lstm", 2, "embedding", "last", with_lengths=True, bidirectional=True, weight_drop=0.3,
               dropout_output=0.3, alpha=1.0, beta=1.0)
    yield Case("lstm", 2, "float", "last", "mse", proj=3, weight_drop=0.3, dropout_hidden=0.3, beta=1.0)
    yield Case("skip-tanh", 2, "embedding", skip=3, weight_drop=0.3, alpha=1.0, beta=1.0, T=7)


def initial_state_cases():
    """A learned initial state, for every cell, one and two directions, many-to-one with lengths and
    a target per step; and dropout with it."""
    for cell, bidirectional, target in itertools.product(CELL_NAMES, (False, True), ("every", "last")):
        yield Case(cell, 2, "embedding", target, with_lengths=True, learn_init=True, bidirectional=bidirectional)
    yield Case("lstm", 2, "float", "last", "mse", dropout=0.3, learn_init=True, bidirectional=True)


def shape(case):
    """The keyword arguments of the case's Network (and Arch) besides dtype and seed."""
    cell, nonlinearity = form(case.cell)
    return dict(cell=cell, input_size=case.V, hidden_size=case.H, output_size=case.K, num_layers=case.num_layers,
                embedding_dim=case.E if case.inputs == "embedding" else None, nonlinearity=nonlinearity or "tanh",
                tie_weights=case.tied, skip=case.skip, engine=case.ran_on, bidirectional=case.bidirectional,
                proj_size=case.proj, learn_init_state=case.learn_init, cutoffs=case.cutoffs,
                div_value=2.0 if case.cutoffs else 4.0)


def architecture(case):
    return engine.Arch(**shape(case))


def network(case, dtype=np.float64):
    return Network(**shape(case), dtype=dtype, seed=case.seed)


def problem(case, dtype=np.float64):
    """Random inputs for case: dict(x, y, state, target, loss, lengths) for loss_and_grads."""
    rng = np.random.default_rng(case.seed + 1000)
    T, B, L, K = case.T, case.B, case.num_layers, case.K
    if case.inputs == "float":
        x = rng.standard_normal((T, B, case.V)).astype(dtype)
    else:
        x = rng.integers(0, case.V, (T, B))
    lead = (T, B) if case.target == "every" else (B,)
    if case.loss == "cross_entropy":
        y = rng.integers(0, K, lead)
    else:
        y = rng.standard_normal(lead + (K,)).astype(dtype)
    state = None
    if case.with_state:
        arch = architecture(case)
        parts = [0.5 * rng.standard_normal((L * arch.directions, B, size)).astype(dtype) for size in arch.state_sizes]
        state = tuple(parts) if len(parts) > 1 else parts[0]
    lengths = None
    if case.with_lengths:
        lengths = np.resize(np.array([T, 1] + list(range(T - 1, 1, -1))), B)    # full, 1, T-1, ...
    kw = dict(x=x, y=y, state=state, target=case.target, loss=case.loss, lengths=lengths)
    if case.with_reset:
        kw["reset"] = rng.random((T, B)) < 0.3
    if case.with_loss_mask:
        kw["loss_mask"] = rng.random((T, B)) < 0.5
        kw["loss_mask"][-1] = True
    return kw


def rel_err(a, b, floor=0.0):
    """|a - b| / max(|a|, |b|, floor): norm-relative, or absolute (scaled by floor) for arrays
    smaller than floor."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b), floor)
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)


def resolution(eps):
    """The smallest gradient norm float64 finite differences with step eps can measure to 1e-7.
    Their round-off is about 1e-16 |L| / eps per entry, so a gradient below 1e-7 / eps (1e-4 at
    eps = 1e-3; such as dL/dh_0 through many sigmoid steps) is compared absolutely: the error
    reported is |g - g_fd| / (1e-7 / eps), which must still be below 1e-7."""
    return 1e-7 / eps


def central_differences(f, a, eps, tick=None):
    """df/da for every entry of a, perturbing a in place and restoring it. The fourth-order central
    stencil (8 (f(a+e) - f(a-e)) - (f(a+2e) - f(a-2e))) / 12e: error O(e^4) + O(round-off / e).
    tick(): called after each entry (a progress bar)."""
    g = np.zeros(a.shape)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        f_at = []
        for step in (-2, -1, 1, 2):
            flat[i] = old + step * eps
            f_at.append(f())
        flat[i] = old
        gflat[i] = (8 * (f_at[2] - f_at[1]) - (f_at[3] - f_at[0])) / (12 * eps)   # differences first: exact
        if tick is not None:
            tick()
    return g


def state_labels(arch):
    """Names of the initial state parts in reports: h0 (and c0), or h0, h-1, ... for the skip RNN."""
    if arch.cell == "lstm":
        return ("h0", "c0")
    return ("h0",) + tuple(f"h-{j}" for j in range(1, len(arch.state_names)))


def state_parts(state):
    return () if state is None else (state if isinstance(state, tuple) else (state,))


def step_size(cell):
    """The finite-difference step for a cell. With the fourth-order stencil, 1e-3 balances truncation
    (O(e^4)) against round-off (~1e-16 / e) for tanh, GRU and LSTM. Sigmoid's gradients through three
    layers are small (its slope is at most 1/4), so round-off dominates and a longer step is better;
    ReLU has a kink at 0 that a long step could cross, so its step is short."""
    return {"rnn-relu": 1e-5, "skip-relu": 1e-5, "rnn-sigmoid": 1e-2, "skip-sigmoid": 1e-2}.get(cell, 1e-3)


def against_finite_differences(case, eps=None, tick=None):
    """{name: rel err} for every parameter, 'x' (float inputs) and each initial state part. tick():
    called after each entry's differences (fd_entries(case) in all)."""
    eps = step_size(case.cell) if eps is None else eps
    net = network(case)
    kw = problem(case)
    arch = net.arch
    if kw["state"] is None and not case.learn_init:     # zeros passed explicitly, to differentiate them
        zeros = tuple(np.zeros((case.num_layers * arch.directions, case.B, size)) for size in arch.state_sizes)
        kw["state"] = zeros if len(zeros) > 1 else zeros[0]
    dropout = case.training()
    r = engine.loss_and_grads(net.params, net.arch, **kw, **dropout)

    def f():
        return engine.loss_value(net.params, net.arch, **kw, **dropout)

    plain = not (dropout or case.tied or case.bidirectional or case.learn_init or case.proj or case.cutoffs)
    above = layers_above(net, kw, f) if plain else {}
    floor = resolution(eps)
    errors = {}
    for name, a in net.params.items():
        k = param_layer(name, net.arch.num_layers)
        errors[name] = rel_err(r.grads[name], central_differences(above.get(k, f), a, eps, tick), floor)
    if case.inputs == "float":
        errors["x"] = rel_err(r.dx, central_differences(f, kw["x"], eps, tick), floor)
    for part, a, da in zip(state_labels(net.arch), state_parts(kw["state"]), state_parts(r.dstate0)):
        fd = np.stack([central_differences(above.get(k, f), a[k], eps, tick) for k in range(len(a))])
        errors[part] = rel_err(da, fd, floor)
    return errors


def param_layer(name, num_layers):
    """The lowest layer a parameter acts in: k for l{k}.*, the top layer for the readout's V and c,
    0 for the embedding E."""
    if name.startswith("l"):
        return int(name[1:name.index(".")].removesuffix("_reverse"))
    return num_layers - 1 if name in ("V", "c") else 0


def layers_above(net, kw, f):
    """{k: the loss as a function of layers k.. and the readout} for k = 1..L-1: the layers below k
    run once, as their outputs do not change when a parameter or initial state above them is
    perturbed. Each is the same computation on the same values as the whole network's, so it gives
    the same loss to the last bit; one that does not (checked here) is left out, and f is used."""
    arch, params = net.arch, net.params
    batch, _, _ = engine.prepare_loss(params, arch, kw["x"], kw["y"], kw["state"], kw["target"], kw["loss"],
                                      kw["lengths"], kw.get("reset"), kw.get("loss_mask"))
    inputs = []
    engine.forward_layers(params, arch, batch, [None] * (arch.num_layers + 1), inputs)
    whole, parts, losses_above = f(), state_parts(kw["state"]), {}
    for k in range(1, arch.num_layers):
        upper = dataclasses.replace(arch, input_size=arch.hidden_size, num_layers=arch.num_layers - k,
                                    embedding_dim=None, tie_weights=False)
        upper_params = {"V": params["V"], "c": params["c"]}      # the same arrays: a perturbation is seen
        for name, a in params.items():
            j = param_layer(name, arch.num_layers)
            if name.startswith("l") and j >= k:
                upper_params[f"l{j - k}{name[name.index('.'):]}"] = a
        state = tuple(a[k:] for a in parts)                    # views: a perturbation of a[k] is seen
        upper_kw = kw | {"x": engine.restore(batch, inputs[k]),             # in the caller's order of rows
                         "state": state if len(state) > 1 else state[0]}

        def f_k(upper_params=upper_params, upper=upper, upper_kw=upper_kw):
            return engine.loss_value(upper_params, upper, **upper_kw)

        if f_k() == whole:
            losses_above[k] = f_k
    return losses_above


def against_torch(case, dtype=np.float64):
    """Load PyTorch's initialisation of the same model into bptt and compare everything.

    Returns {name: rel err} over PyTorch's parameter names plus 'loss', 'state', and where they
    apply 'x', 'h0', 'c0'. Raises ImportError when torch is not installed.
    """
    from ..interop import torch_reference

    net = network(case, dtype)
    sd = torch_reference.random_state_dict(net.arch, dtype, case.seed)
    net.load_torch_state_dict(sd)
    model = torch_reference.build(net.arch, sd, dtype)
    kw = problem(case, dtype)
    r = engine.loss_and_grads(net.params, net.arch, **kw)
    t_loss, t_grads, t_state, t_dx, t_dstate0 = torch_reference.loss_and_grads(model, **kw)

    ours = net.torch_state_dict(r.grads)
    errors = {name: rel_err(ours[name], t_grads[name]) for name in t_grads}
    errors["loss"] = abs(r.loss - t_loss) / max(abs(t_loss), 1e-300)
    errors["state"] = max(rel_err(a, b) for a, b in zip(state_parts(r.state), state_parts(t_state)))
    if t_dx is not None:
        errors["x"] = rel_err(r.dx, t_dx)
    for part, a, b in zip(state_labels(net.arch), state_parts(r.dstate0), state_parts(t_dstate0)):
        errors[part] = rel_err(a, b)
    return errors


def fd_entries(case):
    """How many numbers the finite differences perturb, each 4 times: every parameter, the float
    inputs and each part of the initial state (from the network's shapes: nothing is allocated)."""
    arch = architecture(case)
    params = sum(math.prod(shape) for shape in arch.param_shapes().values())
    x = case.T * case.B * case.V if case.inputs == "float" else 0
    return params + x + case.num_layers * arch.directions * case.B * sum(arch.state_sizes)


def fd_cost(case):
    """The finite differences' work in cell steps (one layer, one time step): 4 runs of the network
    per entry, each L layers by T steps. A step of B rows and G H^2 multiply-adds counts as
    1 + B G H^2 / 8192: below that Python's overhead per step dominates, above it the arithmetic
    (measured on the NumPy reference: 30 to 60 us per cell step on a 2-core Zen 4; the fast engine
    about 10 times less)."""
    G = architecture(case).spec.GATES
    return 4 * fd_entries(case) * case.T * case.num_layers * (1 + case.B * G * case.H ** 2 / 8192)


FD_BUDGET = 1e7      # cell steps of one case: about 5 minutes on the NumPy reference, 30 s on the fast engine


def check_cost(case):
    """A ValueError naming the sizes unless case's finite differences fit FD_BUDGET: a long
    sequence or a wide layer would otherwise run for hours before printing a line."""
    cost = fd_cost(case)
    if cost > FD_BUDGET:
        raise ValueError(f"--seq-len {case.T}, --batch {case.B}, --hidden {case.H}, --layers {case.num_layers}: "
                         f"finite differences would run {case.cell}'s network 4 x {fd_entries(case):,} times over "
                         f"{case.T:,} steps, about {cost:.1e} cell steps, more than the {FD_BUDGET:.0e} that finish "
                         f"in minutes; lower --seq-len, --hidden, --batch or --layers (the gradients are checked as "
                         f"well at small sizes)")


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True



FD_TOL = 1e-7        # norm-relative, analytic vs finite differences
TORCH_TOL = 1e-8     # norm-relative, analytic vs autograd; the loss: relative 1e-10


def compare(case, use_torch, tick=None):
    """Rows (name, shape, fd error, torch error, ok) for one case; None where a check does not apply.
    tick(): called after each entry's finite differences."""
    net = network(case)
    fd = against_finite_differences(case, tick=tick)
    th = against_torch(case) if use_torch else {}
    rows = []
    for name in list(net.params) + [k for k in ("x",) + state_labels(net.arch) if k in fd]:
        shape = net.params[name].shape if name in net.params else None
        t = th.get(torch_name(name) if name in net.params else name)
        ok = fd[name] < FD_TOL and (t is None or t < TORCH_TOL)
        rows.append((name, shape, fd[name], t, ok))
    for name, tol in (("loss", 1e-10), ("state", 1e-12)):
        if name in th:
            rows.append((name, None, None, th[name], th[name] < tol))
    return rows


def format_rows(rows):
    def num(v):
        return "-" if v is None else f"{v:.1e}"

    lines = [f"  {'':10}{'shape':<10}{'vs finite diff':>16}{'vs torch':>12}"]
    for name, shape, fd, t, ok in rows:
        dims = "" if shape is None else "x".join(map(str, shape))
        lines.append(f"  {name:<10}{dims:<10}{num(fd):>16}{num(t):>12}   {'ok' if ok else 'FAIL'}")
    return "\n".join(lines)
