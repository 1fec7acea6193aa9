"""lab/compare.py: TBPTT(k), RTRL and UORO against full BPTT on one stream, in float64."""

import numpy as np
import pytest

from bptt.lab import compare
from bptt.model import engine
from bptt.training import problems


def network(cell="rnn", H=4, V=5, layers=1, embedding=None, seed=0, **kw):
    arch = engine.Arch(cell, V, H, V, num_layers=layers, embedding_dim=embedding, engine="numpy", **kw)
    return engine.init_params(arch, np.random.default_rng(seed), np.float64), arch


def ids(T, B, V=5, seed=1):
    stream = np.random.default_rng(seed).integers(0, V, (T + 1, B))
    return stream[:-1], stream[1:]


def rows(result):
    return {r["algorithm"]: r for r in result["rows"]}


def long_range(T=16, B=4):
    """An IRNN (ReLU, U = I: what it held is kept) on the adding problem, the target at the last step."""
    arch = engine.Arch("rnn", 2, 8, 1, nonlinearity="relu", engine="numpy")
    params = engine.init_params(arch, np.random.default_rng(0), np.float64)
    params["l0.U"] = np.eye(8)
    x, y = problems.adding(T, B, np.random.default_rng(2))
    return params, arch, x, y


@pytest.mark.parametrize("cell, layers", [("rnn", 1), ("gru", 2), ("lstm", 2)])
def test_tbptt_with_k_equal_to_T_is_full_bptt_exactly(cell, layers):
    params, arch = network(cell, layers=layers)
    x, y = ids(7, 3)
    full = compare.full_bptt(params, arch, x, y, "every", "cross_entropy")
    whole = compare.truncated(params, arch, x, y, "every", "cross_entropy", 7)
    assert all(np.array_equal(whole[name], full[name]) for name in full)
    short = compare.truncated(params, arch, x, y, "every", "cross_entropy", 2)
    assert compare.relative_error(compare.flat(short, sorted(full)), compare.flat(full, sorted(full))) > 1e-3


def test_windows_are_weighted_by_their_share_of_the_positions():
    """With U = 0 no step depends on the one before, so nothing is lost by truncation: the windows of
    4 and 3 steps must sum to BPTT's gradient (weights 1/2 each, or unweighted, would not)."""
    params, arch = network("rnn")
    params["l0.U"][:] = 0
    x, y = ids(7, 3)
    full = compare.full_bptt(params, arch, x, y, "every", "cross_entropy")
    cut = compare.truncated(params, arch, x, y, "every", "cross_entropy", 4)
    names = sorted(full)
    assert compare.relative_error(compare.flat(cut, names), compare.flat(full, names)) < 1e-14


def test_tbptt_1_loses_what_a_long_dependency_needs():
    params, arch, x, y = long_range()
    result = rows(compare.compare(params, arch, x, y, "last", "mse", ks=[1, 4, 16], seeds=0, repeats=1))
    assert result["TBPTT(16)"]["cosine"] == pytest.approx(1, abs=1e-12)
    assert result["TBPTT(1)"]["cosine"] < result["TBPTT(4)"]["cosine"] < result["TBPTT(16)"]["cosine"]
    assert result["TBPTT(1)"]["cosine"] < 0.9
    for algorithm in ("TBPTT(1)", "TBPTT(4)"):                         # the readout needs no gradient through time
        per = result[algorithm]["per_parameter"]
        assert per["V"]["relative_error"] < 1e-14 and per["c"]["relative_error"] < 1e-14
        assert per["l0.W"]["relative_error"] > 0.1


@pytest.mark.parametrize("cell, embedding", [("rnn", None), ("gru", 3), ("lstm", None)])
def test_rtrl_is_bptt_to_round_off(cell, embedding):
    params, arch = network(cell, layers=2, embedding=embedding)
    x, y = ids(6, 2)
    rtrl = rows(compare.compare(params, arch, x, y, ks=[6], seeds=0, repeats=1))["RTRL"]
    assert rtrl["relative_error"] < 1e-10 and rtrl["cosine"] == pytest.approx(1, abs=1e-12)
    assert all(p["relative_error"] < 1e-10 for p in rtrl["per_parameter"].values())
    assert set(rtrl["per_parameter"]) == set(params)
    carried = engine.loss_and_grads(params, arch, x, y, algorithm="rtrl").grads           # the row is RTRL's own
    full = compare.full_bptt(params, arch, x, y, "every", "cross_entropy")
    assert rtrl["relative_error"] == compare.agreement(carried, full)["relative_error"] > 0


def test_uoro_mean_over_seeds_is_closer_than_one_seed():
    params, arch = network("lstm", H=3)
    x, y = ids(8, 2)
    result = compare.compare(params, arch, x, y, ks=[8], seeds=20, rtrl=False, seed=5, repeats=1)
    uoro = rows(result)["UORO, mean of 20"]
    each = uoro["seed_relative_error"]
    assert len(each["values"]) == 20 and uoro["seeds"] == 20
    assert uoro["relative_error"] < each["mean"] / 2
    assert uoro["cosine"] > uoro["seed_cosine"]["mean"]
    assert each["std"] == pytest.approx(np.std(each["values"]))
    first = np.random.default_rng(np.random.SeedSequence(5).spawn(20)[0])      # run 0, again, by the engine
    g = engine.loss_and_grads(params, arch, x, y, algorithm="uoro", seed=first).grads
    full = compare.full_bptt(params, arch, x, y, "every", "cross_entropy")
    assert compare.agreement(g, full)["relative_error"] == pytest.approx(each["values"][0], rel=1e-12)


def test_costs_are_counted():
    params, arch = network("gru", H=6)
    x, y = ids(10, 3)
    result = compare.compare(params, arch, x, y, ks=[1, 10], seeds=2, repeats=2)
    by = rows(result)
    assert result["T"] == 10 and result["B"] == 3 and result["parameters"] == sum(p.size for p in params.values())
    assert by["RTRL"]["peak_bytes"] >= compare.rtrl_cost(arch, 3, 10)[0]      # it holds the influence matrices
    assert by["BPTT"]["peak_bytes"] > 0 and by["BPTT"]["bytes_per_step"] == by["BPTT"]["peak_bytes"] / 10
    assert all(r["seconds_per_step"] > 0 for r in result["rows"])
    assert compare.peak_bytes(lambda: np.ones(10**6)) >= 8 * 10**6
    assert compare.peak_bytes(lambda: None) < 10**5


def test_rtrl_too_big_is_refused_unless_skipped(monkeypatch):
    params, arch = network("lstm", H=4)
    x, y = ids(5, 2)
    size, flops = compare.rtrl_cost(arch, 2, 5)
    S, P = 8, compare.layout(arch).ends[-1]
    assert (size, flops) == (8 * 2 * S * P, 5 * 2 * S * S * P)
    monkeypatch.setattr(compare, "MAX_RTRL_BYTES", size - 1)
    with pytest.raises(ValueError, match=r"^rtrl: RTRL on this network .* \(rtrl=False\)"):
        compare.compare(params, arch, x, y, seeds=0, repeats=1)
    result = compare.compare(params, arch, x, y, seeds=0, rtrl=False, repeats=1)
    assert [r["algorithm"] for r in result["rows"]] == ["BPTT", "TBPTT(1)", "TBPTT(2)", "TBPTT(5)"]


@pytest.mark.parametrize("kw, message", [
    (dict(cell="skip"), "cell: RTRL and UORO run rnn, gru, lstm; got cell='skip'"),
    (dict(cell="lstm", bidirectional=True), "bidirectional: RTRL and UORO do not support bidirectional layers"),
    (dict(cell="lstm", proj_size=2), "proj_size: RTRL and UORO do not support LSTM projections"),
    (dict(cell="rnn", cutoffs=(2,)), "cutoffs: RTRL and UORO do not support the adaptive softmax"),
])
def test_unsupported_networks_are_refused(kw, message):
    cell = kw.pop("cell")
    params, arch = network(cell, **kw)
    x, y = ids(4, 2)
    with pytest.raises(ValueError, match=f"^{message}"):
        compare.compare(params, arch, x, y)


def test_bad_arguments_are_named():
    params, arch = network()
    x, y = ids(4, 2)
    for kw, message in [(dict(ks=[5]), "ks: expected one or more k from 1 to T = 4"), (dict(ks=[]), "ks:"),
                        (dict(seeds=-1), "seeds:"), (dict(target="all"), "target:"), (dict(repeats=0), "repeats:")]:
        with pytest.raises(ValueError, match=f"^{message}"):
            compare.compare(params, arch, x, y, **kw)
    assert compare.truncations(60) == [1, 2, 5, 10, 20, 50, 60] and compare.truncations(5) == [1, 2, 5]
