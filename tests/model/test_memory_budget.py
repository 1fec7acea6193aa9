"""The memory-optimal policy (model/checkpointing.py): its table against the exhaustive recursion,
the forward step evaluations it runs, and its gradients against full BPTT in float64 to 1e-12."""

import functools

import numpy as np
import pytest

from bptt.lab import gradcheck
from bptt.model import checkpointing, engine


@functools.cache
def brute(t, m):
    """C(t, m) by trying every split (the recursion of the module docstring, nothing else)."""
    if m <= 0:
        return float("inf")
    if t <= m:
        return t
    return min(y + (t - y if t - y <= m else brute(t - y, m - 1)) + brute(y, m) for y in range(1, t))


def test_the_table_is_the_exhaustive_minimum():
    C, Y = checkpointing.tables(40, 9)
    for t in range(1, 41):
        for m in range(1, 10):
            assert C[t, m] == brute(t, m), (t, m)
            if t > m:
                y = int(Y[t, m])
                assert y + (t - y if t - y <= m else brute(t - y, m - 1)) + brute(y, m) == brute(t, m), (t, m)


def test_the_reference_table_is_the_exhaustive_minimum():
    C, Y = checkpointing.tables_reference(40, 9)
    for t in range(1, 41):
        for m in range(1, 10):
            assert C[t, m] == brute(t, m), (t, m)


def achieves(C, Y, T, m):
    """Whether every split in Y reaches its C: y + R(t - y, k) + C(y, k) = C(t, k) for t > k."""
    t, k = np.meshgrid(np.arange(1, T + 1), np.arange(1, m + 1), indexing="ij")
    inner = t > k
    y = Y[1:, 1:].astype(np.int64)[inner]
    s, t, k = (t - Y[1:, 1:].astype(np.int64))[inner], t[inner], k[inner]
    return bool(np.all(y + np.where(s <= k, s, C[s, k - 1]) + C[y, k] == C[t, k]))


@pytest.mark.parametrize("T,m", [(300, 40), (2000, 3), (2000, 17), (2000, 100), (700, 699), (1, 1), (2, 5)])
def test_the_pruned_table_equals_the_full_minimum(T, m):
    C, Y = checkpointing.tables(T, m)
    C_ref, Y_ref = checkpointing.tables_reference(T, m)
    assert np.array_equal(C, C_ref) and np.array_equal(Y, Y_ref)         # the same costs and the same (smallest) y
    assert achieves(C, Y, T, C.shape[1] - 1)


def test_the_pruned_table_at_random_sizes():
    rng = np.random.default_rng(7)
    for T, m in zip(rng.integers(2, 900, 6), rng.integers(1, 120, 6)):
        C, Y = checkpointing.tables(int(T), int(m))
        C_ref, Y_ref = checkpointing.tables_reference(int(T), int(m))
        assert np.array_equal(C, C_ref) and np.array_equal(Y, Y_ref), (T, m)


def test_the_kernel_uncompiled_fills_the_same_table():
    C, Y = checkpointing.tables(60, 8)
    C_py, Y_py = np.zeros_like(C), np.zeros_like(Y)
    C_py[:, 0] = C[:, 0]
    assert checkpointing._columns(C_py, Y_py, 60, 8, 5) == 0                # the plain Python, blocks of 5
    assert np.array_equal(C_py, C) and np.array_equal(Y_py, Y)


@pytest.mark.parametrize("T", [1, 2, 7, 30])
def test_closed_forms(T):
    assert checkpointing.cost(T, 1) == T * (T + 1) // 2
    assert checkpointing.cost(T, T) == T and checkpointing.cost(T, T + 5) == T
    assert checkpointing.plan(T, T) == (checkpointing.Op("leaf", 0, T),)


@pytest.mark.parametrize("T,m", [(1, 1), (9, 1), (17, 2), (33, 3), (40, 6), (40, 39), (25, 4)])
def test_the_plan_runs_the_optimal_number_of_steps(T, m):
    ops = checkpointing.plan(T, m)
    assert checkpointing.evaluations(ops) == checkpointing.cost(T, m) == brute(T, m)
    leaves = [op for op in ops if op.kind == "leaf"]
    assert sorted((op.a, op.b) for op in leaves) == [(op.a, op.b) for op in reversed(leaves)]   # last to first
    covered = [s for op in leaves for s in range(op.a, op.b)]
    assert sorted(covered) == list(range(T))                                      # every step once, backwards
    kept, most = {0}, 0
    for op in ops:                                                                # never more than m slots
        if op.kind == "advance":
            assert op.a in kept and op.chunk <= m - (len(kept) - 1)
            kept.add(op.b)
        elif op.kind == "leaf":
            assert op.a in kept and op.b - op.a <= m - (len(kept) - 2 if op.a != 0 else len(kept) - 1)
        else:
            kept.remove(op.a)
        most = max(most, len(kept) - 1)
    assert most <= m and kept == {0}


def cases():
    out = []
    for engine_name in ("numpy", "fast"):
        for cell in ("rnn-tanh", "gru", "lstm"):
            for layers, inputs, target, loss, lengths in [(1, "onehot", "every", "cross_entropy", True),
                                                          (2, "float", "last", "mse", False),
                                                          (2, "embedding", "every", "mse", True)]:
                out.append(gradcheck.Case(cell, layers, inputs, target, loss, True, lengths, T=23, engine=engine_name))
        out.append(gradcheck.Case("lstm", 2, "embedding", with_reset=True, with_loss_mask=True, with_state=True,
                                  T=37, engine=engine_name))
    out.append(gradcheck.Case("skip-tanh", 1, "float", skip=3, with_reset=True, with_lengths=True, T=17))
    return out


CASES = cases()


def check_equal(policy, full):
    assert policy.loss == pytest.approx(full.loss, rel=1e-13)
    for name in full.grads:
        assert gradcheck.rel_err(policy.grads[name], full.grads[name]) < 1e-12, name
    for a, b in zip(gradcheck.state_parts(policy.state), gradcheck.state_parts(full.state), strict=True):
        assert gradcheck.rel_err(a, b) < 1e-12
    for a, b in zip(gradcheck.state_parts(policy.dstate0), gradcheck.state_parts(full.dstate0), strict=True):
        assert gradcheck.rel_err(a, b) < 1e-12
    if full.dx is not None:
        assert gradcheck.rel_err(policy.dx, full.dx) < 1e-12
    for a, b in zip(policy.dhs or (), full.dhs or (), strict=True):
        assert gradcheck.rel_err(a, b) < 1e-12


@pytest.mark.parametrize("case", CASES, ids=[f"{c.engine}-{c.label()}".replace(" ", "-") for c in CASES])
@pytest.mark.parametrize("slots", [1, 2, 3, 5, 40])
def test_the_policy_equals_full_bptt(case, slots, monkeypatch):
    net = gradcheck.network(case)
    kw = gradcheck.problem(case)
    full = engine.loss_and_grads(net.params, net.arch, **kw)
    steps = []
    forward = engine.forward_layers
    monkeypatch.setattr(engine, "forward_layers", lambda p, a, batch, *r, **k: (steps.append(batch.x.shape[0]),
                                                                               forward(p, a, batch, *r, **k))[1])
    policy = engine.loss_and_grads(net.params, net.arch, **kw, memory_slots=slots)
    check_equal(policy, full)
    assert sum(steps) == checkpointing.cost(case.T, slots)        # the forward step evaluations, counted
    assert max(steps) <= slots


DROPOUT_CASES = [c for c in CASES if c.cell in ("gru", "lstm") and c.num_layers == 2 and not c.with_reset]


@pytest.mark.parametrize("case", DROPOUT_CASES,
                         ids=lambda c: f"{c.engine}-{c.label()}".replace(" ", "-"))
def test_the_policy_with_dropout_and_traces(case):
    net = gradcheck.network(case)
    kw = gradcheck.problem(case) | dict(dropout=0.3, rng=7, trace=True)
    full = engine.loss_and_grads(net.params, net.arch, **kw)
    assert full.loss != pytest.approx(engine.loss_and_grads(net.params, net.arch, **gradcheck.problem(case)).loss,
                                      rel=1e-6)                 # dropout did change the loss
    for slots in (1, 4):
        check_equal(engine.loss_and_grads(net.params, net.arch, **kw, memory_slots=slots), full)


def test_a_budget_in_bytes_becomes_slots():
    case = gradcheck.Case("lstm", 2, "embedding", T=30)
    net = gradcheck.network(case)
    kw = gradcheck.problem(case)
    slot = checkpointing.slot_cost(net.arch, case.B, np.float64, case.T)
    assert slot == int(checkpointing.slot_bytes(net.arch, case.B, np.float64) * checkpointing.MARGIN) + 12 * 31
    fixed = checkpointing.fixed_bytes(net.arch, np.float64)
    assert fixed == 6 * sum(p.nbytes for p in net.params.values())          # the gradients, the packed weights, ...
    seven = checkpointing.least_budget(fixed + 7 * slot)      # 1/SLACK of it left to the allocator
    assert checkpointing.slots_for(net.arch, case.B, np.float64, seven + 3, case.T) == 7
    assert checkpointing.slots_for(net.arch, case.B, np.float64, f"{seven / 1000}kB", case.T) == 7
    assert checkpointing.slots_for(net.arch, case.B, np.float64, seven - 1, case.T) == 6
    full = engine.loss_and_grads(net.params, net.arch, **kw)
    three = checkpointing.least_budget(fixed + 3 * slot)
    check_equal(engine.loss_and_grads(net.params, net.arch, **kw, memory_budget=three), full)
    check_equal(engine.loss_and_grads(net.params, net.arch, **kw, memory_budget="1GB"), full)   # the whole window


@pytest.mark.parametrize("text,size", [("500MB", 500 * 10**6), ("2GB", 2 * 10**9), ("123456", 123456),
                                       ("1.5GiB", 3 * 2**29), (" 64 kib ", 65536), (4096, 4096)])
def test_sizes(text, size):
    assert checkpointing.parse_budget(text) == size


@pytest.mark.parametrize("options,message", [
    (dict(memory_budget="lots"), r"^memory_budget: expected a size in bytes, such as 500MB, 2GB or 123456, got 'lots'"),
    (dict(memory_budget="5XB"), r"^memory_budget: expected a size in bytes"),
    (dict(memory_budget=0), r"^memory_budget: expected a positive size in bytes"),
    (dict(memory_budget=100), r"^memory_budget: 100 \(100 bytes\) holds no step; the minimum is \d+ bytes"),
    (dict(memory_slots=0), r"^memory_slots: expected a positive int, got 0"),
    (dict(memory_slots=2, memory_budget="1GB"), r"^memory_budget, memory_slots: .* give one of the two"),
    (dict(memory_slots=2, recompute_every=3), r"^recompute_every, memory_budget: .* give one of the two"),
    (dict(memory_slots=2, alpha=1.0), r"^memory_slots: AR and TAR \(alpha, beta\)"),
    (dict(memory_budget="1GB", algorithm="rtrl"), r"^memory_budget, memory_slots: BPTT's memory saving"),
])
def test_refused(options, message):
    case = gradcheck.Case("lstm", T=6)
    net = gradcheck.network(case)
    with pytest.raises(ValueError, match=message):
        engine.loss_and_grads(net.params, net.arch, **gradcheck.problem(case), **options)


def test_bidirectional_is_refused():
    case = gradcheck.Case("gru", bidirectional=True, T=6)
    net = gradcheck.network(case)
    with pytest.raises(ValueError, match="memory_slots: recomputes the window in segments from its start, which a "
                                         "bidirectional"):
        engine.loss_and_grads(net.params, net.arch, **gradcheck.problem(case), memory_slots=2)


def test_the_minimum_a_refusal_gives_is_the_least_budget_that_holds_a_step():
    case = gradcheck.Case("lstm", T=6)
    net = gradcheck.network(case)
    with pytest.raises(ValueError, match="the minimum is") as refused:
        checkpointing.slots_for(net.arch, case.B, np.float64, 100, case.T)
    minimum = int(str(refused.value).split("the minimum is ")[1].split()[0])
    assert checkpointing.slots_for(net.arch, case.B, np.float64, minimum, case.T) == 1
    with pytest.raises(ValueError, match="holds no step"):
        checkpointing.slots_for(net.arch, case.B, np.float64, minimum - 1, case.T)
