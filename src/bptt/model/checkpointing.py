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

The table: C(., m) is not convex in t (the leaf rule makes R(s, m) jump at s = m + 1), so no
convexity trick applies; the minimum over y is searched in full but in blocks, each skipped when a
lower bound (from C rising with t, checked as the table fills) proves it cannot hold the minimum:
O(T m) memory (int64 costs, uint16 splits), about 4 s for T = 10,000 and m = 500 (tables_reference,
the plain O(T^2 m / 2) NumPy pass kept as the tests' oracle: a minute at m = 50). The plan is kept for
the last few (T, m) asked for (training asks for the same window every step), the tables freed.
tests/model/test_memory_budget.py checks them against tables_reference and the exhaustive recursion.

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


MARGIN = 1.1        # a slot's share of the backward's short-lived temporaries (the allocator's: SLACK)


def fixed_bytes(arch, dtype):
    """What the step needs beyond its slots, whatever the policy: the parameters' gradients (twice: a
    segment's and their running sum), the weights packed for the fast engine's products (each weight
    matrix in the forward's layout and the backward's: twice the parameters, counted whole), and twice
    the parameters again for the rest (the readout's and the segments' working arrays: measured, at
    T = 1000 and m = 20, about 3 MB above the slots and the four copies, LSTM H256)."""
    params = sum(int(np.prod(shape)) for shape in arch.param_shapes().values())
    return 6 * params * np.dtype(dtype).itemsize


TABLE_BYTES = 12    # an entry of the policy's tables (C int64, Y uint16, rounded up): T + 1 of them a slot


def slot_cost(arch, batch_size, dtype, T):
    """What a slot takes of a budget: slot_bytes counted MARGIN times, and its column of the tables."""
    return int(slot_bytes(arch, batch_size, dtype) * MARGIN) + TABLE_BYTES * (T + 1)


SLACK = 10          # 1/SLACK of the budget is left to the allocator: freed arrays it keeps (glibc's arenas, one per
                    # thread) make a step's measured peak vary by about 6% from run to run (T = 1000, LSTM H256)


def least_budget(need):
    """The least budget whose part past the allocator's 1/SLACK is at least need bytes."""
    size = -(-need * SLACK // (SLACK - 1))
    while size - 1 - (size - 1) // SLACK >= need:
        size -= 1
    while size - size // SLACK < need:
        size += 1
    return size


def slots_for(arch, batch_size, dtype, budget, T=1):
    """m: how many slots (slot_cost) the budget (parse_budget's forms) less its 1/SLACK holds once
    fixed_bytes are set aside; a ValueError with the minimum if none."""
    size, per_slot = parse_budget(budget), slot_cost(arch, batch_size, dtype, T)
    fixed, usable = fixed_bytes(arch, dtype), size - size // SLACK
    if usable < fixed + per_slot:
        minimum = least_budget(fixed + per_slot)
        raise ValueError(f"memory_budget: {budget!r} ({size} bytes) holds no step; the minimum is {minimum} "
                         f"bytes (one step's caches plus the state before it, for batch {batch_size} of "
                         f"{np.dtype(dtype).name}, the gradients, the policy's tables and the allocator's "
                         f"1/{SLACK}); give at least that")
    return (usable - fixed) // per_slot


def tables(T, m):
    """(C, Y): C[t, k] the minimal forward step evaluations for t <= T steps with k <= m slots, Y[t, k]
    the optimal y where t > k (0 where t <= k: a leaf), the smallest y of the minimum as in
    tables_reference, whose values these are (tests/model/test_memory_budget.py). Column by column in
    the compiled _columns, which skips the y that bounds prove cannot reach the minimum (its docstring):
    T = 10,000 with m = 500 in about 4 s on one busy core (tables_reference: minutes)."""
    m = min(m, max(T - 1, 1))
    C = np.zeros((T + 1, m + 1), np.int64, order="F")     # columns contiguous: _columns walks them
    C[:, 0] = 2**62                                       # no slot: no leaf (R(s, 1) for s > 1)
    Y = np.zeros((T + 1, m + 1), np.uint16 if T < 2**16 else np.uint32, order="F")
    broken = _compiled()(C, Y, T, m, BLOCK)
    assert broken == 0, f"C(t, k) did not rise with t at t, k = {divmod(broken, m + 1)}: _columns' bounds fail"
    return C, Y


BLOCK = 64          # y per bound in _columns (16: 5.3 s, 32: 4.1 s, 64: 3.8 s, 128: 3.9 s at T = 10,000, m = 500)


@functools.cache
def _compiled():
    """_columns compiled, on first use (numba is imported here, not with the module: the command line
    imports this module and keeps numba for the commands that compute)."""
    from numba import njit
    return njit(nogil=True, cache=True)(_columns)


def _columns(C, Y, T, m, block):
    """Fill C[:, 1..m] and Y column by column (C[., k] reads C[., k] and C[., k - 1]); 0, or t (m + 1) + k
    of the first C(t, k) <= C(t - 1, k). The search over y keeps the exact minimum and its smallest y
    (as tables_reference) given what is checked as it goes: C(., k) rises by at least 1 per step
    (C(k + 1, k - 1) >= k + 1 by the recursion, so R(s, k) does too). Then for y in a block a..b,
        y + C(y, k) >= a + C(a, k) + 2 (y - a)  and  R(t - y, k) >= R(t - b, k) + (b - y), so
        y + R(t - y, k) + C(y, k) >= a + R(t - b, k) + C(a, k) + (b - a)   (the block is skipped if above
    the best, or equal to it with a after the best y; k = 1: without the b - a, C(., 0) is flat), and for
    every y >= a it is >= y + (t - y) + C(a, k) = t + C(a, k)            (the search stops if above).
    The first candidates are the split of t - 1 and the one after it. The minimum is flat over long
    runs of y (the cost of y + C(y, k) rises as R(t - y, k) falls), which limits what blocks save."""
    for k in range(1, m + 1):
        for t in range(1, T + 1):
            if t <= k:
                C[t, k] = t
                continue
            best, best_y = 2**63 - 1, 0
            y0 = max(min(int(Y[t - 1, k]), t - 1), 1)
            for y in range(y0, min(y0 + 2, t)):                  # the split of t - 1 and the one after it
                cost_y = y + (t - y if t - y <= k else C[t - y, k - 1]) + C[y, k]       # y + R(t - y) + C(y)
                if cost_y < best:
                    best, best_y = cost_y, y
            for a in range(1, t, block):
                if t + C[a, k] > best:
                    break
                b = min(a + block - 1, t - 1)
                bound = a + (t - b if t - b <= k else C[t - b, k - 1]) + C[a, k] + (b - a if k > 1 else 0)
                if bound > best or (bound == best and a > best_y):
                    continue
                for y in range(a, b + 1):
                    cost_y = y + (t - y if t - y <= k else C[t - y, k - 1]) + C[y, k]
                    if cost_y < best or (cost_y == best and y < best_y):
                        best, best_y = cost_y, y
            C[t, k], Y[t, k] = best, best_y
            if best < C[t - 1, k] + 1:
                return t * (m + 1) + k
    return 0


def tables_reference(T, m):
    """tables in NumPy, the oracle of its tests: one pass over t, the minimum over every y for all
    columns k = 1..m at once, O(T^2 m / 2) operations (about a minute at T = 10,000, m = 50 or 100)."""
    m = min(m, max(T - 1, 1))
    C = np.zeros((T + 1, m + 1), np.int64)
    C[:, 0] = 2**62
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
