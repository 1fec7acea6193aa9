"""Memory-optimal BPTT: the policy of Gruslys, Munos, Danihelka, Lanctot & Graves 2016 (BPTT-HSM,
"Memory-Efficient Backpropagation Through Time") for a memory of m slots.

A slot is one step of the window in memory: the caches of one step of every layer (what the cells'
backward reads), the arrays the backward pass makes per step (the gates' gradients da_t, the
gradient of the layer's input), the readout's per-step share, and one state of the network
(slot_bytes gives its size in bytes for an Arch, a batch size and a dtype). A stored state (the
state before a segment, kept to run that segment again) takes a slot, as does each step whose caches
are kept. The window's initial state is the caller's and takes none.

With t steps to backpropagate from a state held elsewhere and m free slots (C counts the forward
step evaluations, each step of each layer once):

    C(t, m) = t                                            t <= m: forward with caches, backward (BPTT)
    C(t, m) = min over 1 <= y < t of  y + R(t - y, m) + C(y, m)           t > m
    R(s, m) = s if s <= m, else C(s, m - 1)

that is: run y steps forward (keeping no caches, in chunks of at most m steps), then solve the
t - y steps after them (R): if they fit in the m slots, at once from the state just computed (a
leaf, as the paper's C(1, m) = 1); else keep the state at y in a slot and solve them with m - 1;
then solve the first y steps with all m slots, the gradient arriving at step y from the part after
it. C(t, 1) = t (t + 1) / 2 (every step from the start again, the paper's boundary condition), and
m >= t costs t: plain BPTT, nothing recomputed. (The paper's own slots hold hidden states only, so
its C(t, m >= t) is 2t - 1; here a leaf keeps its caches, and the leaves of up to m steps cost t.)

The table: C(., m) is not convex in t (the leaf rule makes R(s, m) jump at s = m + 1), so the
minimum over y is taken in full: one pass over t, each C(t, k) for all columns k = 1..m at once
(NumPy), O(T^2 m / 2) integer operations, O(T m) memory (int64 costs, uint16 splits): about a
second for T = 1,000 and m = 250; T = 10,000 with m = 300 is 1.5e10 operations, minutes. The plan
is kept for the last few (T, m) asked for (training asks for the same window every step), the
tables freed. tests/model/test_memory_budget.py checks them against the exhaustive recursion.

plan(T, m) is the policy as the list of operations an executor runs (engine.loss_and_grads with
memory_budget or memory_slots):

    Op("advance", a, b, chunk)   from the kept state at a, forward to b in chunks of at most
                                 `chunk` steps, no caches kept; keep the state at b
    Op("leaf", a, b)             from the kept state at a, forward with caches through a..b, the loss
                                 of those steps and backward, the gradient arriving at b carried
    Op("drop", a)                the state at a is no longer needed
"""

import functools
import re
from typing import NamedTuple

import numpy as np

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
EXTRA_VECTORS = {"lstm": 2, "gru": 1}    # per step beyond h_t and the gates: c_t, tanh(c_t); the GRU's U_n h + b_n


class Op(NamedTuple):
    kind: str            # "advance", "leaf" or "drop"
    a: int               # the step the state is at (before step a)
    b: int = 0           # the step it runs to
    chunk: int = 0       # advance: at most this many steps per forward call (their transient caches)


def parse_budget(value, name="memory_budget"):
    """A size in bytes: an int, or a string such as "500MB", "2GB", "1.5GiB", "123456" (kB, MB, GB, TB
    are powers of 1000; KiB, MiB, GiB, TiB of 1024). A ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer | str):
        raise ValueError(f"{name}: expected a size in bytes, such as 500MB, 2GB or 123456, got {value!r}")
    if isinstance(value, str):
        found = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", value)
        if not found or found.group(2).lower() not in UNITS:
            raise ValueError(f"{name}: expected a size in bytes, such as 500MB, 2GB or 123456, got {value!r}")
        value = int(float(found.group(1)) * UNITS[found.group(2).lower()])
    if value <= 0:
        raise ValueError(f"{name}: expected a positive size in bytes, such as 500MB, 2GB or 123456, got {value!r}")
    return int(value)


def slot_bytes(arch, batch_size, dtype):
    """The bytes of one slot (the module docstring): for each layer and direction, per row,
    h_t (P) and the gates (G H) of the cache, the gates' gradients (G H) and dL/dh_t (P) of the
    backward, the cell's extra vectors (c_t and tanh(c_t) for the LSTM, U_n h + b_n for the GRU, the
    projection's m_t) and the layer's input and its gradient (2 D_k); the readout's dL/dh_t (D H) and
    its logits and their gradient (2 K); one state of every layer (L D, sum of the state sizes)."""
    G, H, P = arch.spec.GATES * arch.hidden_size, arch.hidden_size, arch.out_size
    extra = (EXTRA_VECTORS.get(arch.cell, 1) + (1 if arch.proj_size else 0)) * H
    per_layer = [2 * G + 2 * P + extra + 2 * arch.layer_input_size(k) for k in range(arch.num_layers)]
    state = arch.num_layers * arch.directions * sum(arch.state_sizes)
    vectors = arch.directions * sum(per_layer) + arch.width + 2 * arch.output_size + state
    return vectors * batch_size * np.dtype(dtype).itemsize


MARGIN = 1.1        # a slot's share of the allocator's slack and the backward's short-lived temporaries


def fixed_bytes(arch, T, dtype):
    """What the step needs beyond its slots, whatever the policy: the parameters' gradients (twice: a
    segment's and their running sum) and the policy's tables (C and Y, T x m entries each, m < T)."""
    params = sum(int(np.prod(shape)) for shape in arch.param_shapes().values())
    return 2 * params * np.dtype(dtype).itemsize + 12 * T * T // 8


def slots_for(arch, batch_size, dtype, budget, T=1):
    """m: how many slots a budget (parse_budget's forms) holds once fixed_bytes(T) are set aside, each
    slot counted MARGIN times; a ValueError with the minimum if none."""
    size, per_slot = parse_budget(budget), int(slot_bytes(arch, batch_size, dtype) * MARGIN)
    fixed = fixed_bytes(arch, T, dtype)
    if size < fixed + per_slot:
        raise ValueError(f"memory_budget: {budget!r} ({size} bytes) holds no step; the minimum is {fixed + per_slot} "
                         f"bytes (one step's caches plus the state before it, for batch {batch_size} of "
                         f"{np.dtype(dtype).name}, and the gradients and the policy's tables); give at least that")
    return (size - fixed) // per_slot


def tables(T, m):
    """(C, Y): C[t, k] the minimal forward step evaluations for t <= T steps with k <= m slots, Y[t, k]
    the optimal y where t > k (0 where t <= k: a leaf). One pass over t, the minimum over every y
    for all columns k = 1..m at once."""
    m = min(m, max(T - 1, 1))
    C = np.zeros((T + 1, m + 1), np.int64)
    C[:, 0] = 2**62                                       # no slot: no leaf (R(s, 1) for s > 1)
    Y = np.zeros((T + 1, m + 1), np.uint16 if T < 2**16 else np.uint32)
    k = np.arange(1, m + 1)
    C[1, 1:] = 1
    for t in range(2, T + 1):
        y = np.arange(1, t)[:, None]                      # (t - 1, 1)
        s = t - y
        total = y + C[1:t, 1:] + np.where(s <= k, s, C[s[:, 0], :m])       # y + C(y, k) + R(t - y, k)
        best = total.argmin(axis=0)
        leaf = t <= k
        C[t, 1:] = np.where(leaf, t, total[best, k - 1])
        Y[t, 1:] = np.where(leaf, 0, 1 + best)
    return C, Y


def cost(T, m):
    """C(T, m): the forward step evaluations of the optimal policy (T when m >= T)."""
    return T if m >= T else int(tables(T, m)[0][T, m])


@functools.lru_cache(maxsize=16)
def plan(T, m):
    """The optimal policy for T steps and m slots as a tuple of Op, in the order they run (module
    docstring); a single leaf (plain BPTT) when m >= T. Kept for the last few (T, m) asked for."""
    if m < 1:
        raise ValueError(f"memory_slots: expected a positive int, got {m}")
    if m >= T:
        return (Op("leaf", 0, T),)
    Y = tables(T, m)[1]
    ops, todo = [], [("solve", 0, T, m)]
    while todo:
        kind, a, t, k = todo.pop()
        if kind == "drop":
            ops.append(Op("drop", a))
        elif t <= k:
            ops.append(Op("leaf", a, a + t))
        else:
            y = int(Y[t, k])
            ops.append(Op("advance", a, a + y, k))
            if t - y <= k:                      # the steps after y fit: a leaf from the state just computed
                ops += [Op("leaf", a + y, a + t), Op("drop", a + y)]
                todo.append(("solve", a, y, k))
            else:                               # keep the state at y in a slot, solve after it with one fewer
                todo += [("solve", a, y, k), ("drop", a + y, 0, 0), ("solve", a + y, t - y, k - 1)]
    return tuple(ops)


def evaluations(ops):
    """The forward step evaluations a plan runs: C(T, m) for plan(T, m)."""
    return sum(op.b - op.a for op in ops if op.kind != "drop")
