"""Online learning (lab/online.py), in float64 and deterministic. With lr = 0 the parameters are held, so
each algorithm's chunk gradients have an exact meaning: RTRL's, weighted by the chunks' shares k_c / T,
sum to full BPTT's gradient over the whole stream (the influence carried across chunks, never reset);
TBPTT's are the chunks' own BPTT gradients with the state carried; UORO's are RTRL's in expectation (a
z-test over seeds with a stated false-alarm rate, which rejects the wrong target). With lr > 0 the first
update is SGD's with the first chunk's gradient. Bad arguments are errors naming the argument."""

import numpy as np
import pytest

import bptt
from bptt.lab import online
from bptt.model import engine
from bptt.training import optim

T, B, N, H = 12, 2, 4, 3
TOLERANCE = 1e-10


def stream(seed=0, T=T):
    rng = np.random.default_rng(seed)
    return rng.integers(0, N, (T, B)), rng.integers(0, N, (T, B))


def network(cell="rnn", layers=1, engine_name="numpy"):
    return bptt.Network(cell, N, H, N, num_layers=layers, engine=engine_name, seed=3)


def weighted_sum(net, xs, ys, gradient, k, seed=None):
    """Σ_c (k_c / T) g_c over the stream at lr = 0, and each chunk's (loss, grads) in order."""
    total, chunks = {name: np.zeros_like(p) for name, p in net.params.items()}, []

    def collect(chunk):
        chunks.append((chunk.loss, {name: g.copy() for name, g in chunk.grads.items()}))
        for name, g in chunk.grads.items():
            total[name] += (chunk.stop - chunk.start) / len(xs) * g

    online.train_online(net, xs, ys, gradient, k, optim.SGD(), 0.0, seed=seed, on_chunk=collect)
    return total, chunks


def rel_err(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


CASES = [(cell, layers, k) for cell in ("rnn", "gru", "lstm") for layers in (1, 2) for k in (1, 3)]


@pytest.mark.parametrize("cell, layers, k", CASES)
def test_rtrl_chunks_sum_to_full_bptt_over_the_stream(cell, layers, k):
    net, (xs, ys) = network(cell, layers), stream()
    full = engine.loss_and_grads(net.params, net.arch, xs, ys)
    total, chunks = weighted_sum(net, xs, ys, "rtrl", k)
    assert len(chunks) == T // k
    assert sum(loss for loss, _ in chunks) * k / T == pytest.approx(full.loss, rel=TOLERANCE)
    for name in full.grads:
        assert rel_err(total[name], full.grads[name]) < TOLERANCE, name
    if k == 3:          # the check can fail: an influence restarted at each chunk gives TBPTT's sum instead
        restarted, _ = weighted_sum(net, xs, ys, "tbptt", k)
        assert max(rel_err(restarted[name], full.grads[name]) for name in full.grads) > 1e-3


@pytest.mark.parametrize("cell, engine_name", [("rnn", "numpy"), ("lstm", "numpy"), ("gru", "fast")])
def test_tbptt_chunks_are_bptt_over_each_chunk_with_the_state_carried(cell, engine_name):
    net, (xs, ys), k = network(cell, 2, engine_name), stream(1), 5          # chunks of 5, 5 and 2 steps
    _, chunks = weighted_sum(net, xs, ys, "tbptt", k)
    state = None
    for c, start in enumerate(range(0, T, k)):
        r = engine.loss_and_grads(net.params, net.arch, xs[start:start + k], ys[start:start + k], state)
        state = r.state
        assert chunks[c][0] == r.loss
        for name, g in r.grads.items():
            np.testing.assert_array_equal(chunks[c][1][name], g)
    assert len(chunks) == 3


def test_uoro_is_deterministic_for_a_seed():
    net, (xs, ys) = network("gru", 2), stream()
    a, b, c = (weighted_sum(net, xs, ys, "uoro", 2, seed=s)[0] for s in (7, 7, 8))
    assert all(np.array_equal(a[name], b[name]) for name in a)
    assert any(not np.array_equal(a[name], c[name]) for name in a)


DRAWS = 1000             # UORO runs, seeds 0..DRAWS-1
FALSE_ALARM = 1e-6       # the chance that the z-test fails although UORO is unbiased (Bonferroni over coordinates)


def z_scores(draws, target):
    """Each coordinate's (mean of draws - target) / its standard error, where the draws vary."""
    mean, err = draws.mean(axis=0), draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    varies = err > 0
    return (mean[varies] - target[varies]) / err[varies]


def test_uoro_chunk_sums_average_to_rtrl():
    """lr = 0, chunks of 3: the mean of UORO's weighted sums over DRAWS seeds agrees with RTRL's (= BPTT's)
    coordinate by coordinate (|z| below the normal quantile of FALSE_ALARM / (2 P)); the readout's parts
    are exact in every draw. The same test rejects TBPTT(3)'s sum as the target: it has power."""
    from statistics import NormalDist

    net, (xs, ys) = network("rnn", 1), stream(2)
    exact, _ = weighted_sum(net, xs, ys, "rtrl", 3)
    names = [name for name in exact if name not in ("V", "c")]
    flat = lambda g: np.concatenate([g[name].ravel() for name in names])        # noqa: E731
    sums = [weighted_sum(net, xs, ys, "uoro", 3, seed=s)[0] for s in range(DRAWS)]
    for name in ("V", "c"):
        assert all(rel_err(s[name], exact[name]) < TOLERANCE for s in sums)
    draws = np.array([flat(s) for s in sums])
    limit = NormalDist().inv_cdf(1 - FALSE_ALARM / (2 * draws.shape[1]))
    assert np.abs(z_scores(draws, flat(exact))).max() < limit
    truncated, _ = weighted_sum(net, xs, ys, "tbptt", 3)
    assert np.abs(z_scores(draws, flat(truncated))).max() > limit


def test_one_rtrl_update_is_sgd_with_the_first_chunks_gradient():
    net, (xs, ys), k, lr = network("lstm", 2), stream(3), 3, 0.5
    before = {name: p.copy() for name, p in net.params.items()}
    first = engine.loss_and_grads(net.params, net.arch, xs[:k], ys[:k], algorithm="rtrl").grads
    seen = []
    out = online.train_online(net, xs, ys, "rtrl", k, optim.SGD(), lr,
                              on_chunk=lambda c: seen.append({n: p.copy() for n, p in c.params.items()}))
    for name, p in before.items():
        np.testing.assert_allclose(seen[0][name], p - lr * first[name], rtol=0, atol=1e-15)
        np.testing.assert_array_equal(net.params[name], p)                 # the model's own are not changed
    held = online.train_online(net, xs, ys, "rtrl", k, optim.SGD(), 0.0)
    assert out.losses[0] == held.losses[0] and out.losses[1] != held.losses[1]
    assert list(out.steps) == [3, 6, 9, 12] and len(out.losses) == 4


def test_on_chunk_can_stop_the_stream():
    net, (xs, ys) = network(), stream()
    out = online.train_online(net, xs, ys, "uoro", 2, "adam", 1e-2, clip=1.0, seed=0, on_chunk=lambda c: c.index == 1)
    assert list(out.steps) == [2, 4]


@pytest.mark.parametrize("kw, error, words", [
    (dict(gradient="bptt"), ValueError, ["gradient", "'tbptt', 'rtrl', 'uoro'", "'bptt'"]),
    (dict(k=0), ValueError, ["k", "positive int", "0"]),
    (dict(k=1.5), TypeError, ["k", "positive int", "1.5"]),
    (dict(seed=3), ValueError, ["seed", "gradient='uoro' only", "seed=3", "'rtrl'"]),
    (dict(gradient="tbptt", seed=0), ValueError, ["seed", "gradient='uoro' only", "'tbptt'"]),
    (dict(gradient="uoro"), ValueError, ["seed", "give seed", "int"]),
    (dict(gradient="uoro", seed=-1), ValueError, ["seed", "int >= 0", "-1"]),
    (dict(gradient="uoro", seed="x"), TypeError, ["seed", "int >= 0", "'x'"]),
    (dict(lr=-1.0), ValueError, ["lr", "float >= 0", "-1.0"]),
    (dict(clip=0), ValueError, ["clip", "float > 0", "0"]),
    (dict(optimizer="adamm"), ValueError, ["optimizer", "'adam'", "'adamm'"]),
    (dict(optimizer=3), TypeError, ["optimizer", "init and step", "3"]),
])
def test_bad_arguments_name_the_argument(kw, error, words):
    net, (xs, ys) = network(), stream()
    given = dict(gradient="rtrl", k=2, optimizer=optim.SGD(), lr=0.1) | kw
    with pytest.raises(error) as info:
        online.train_online(net, xs, ys, **given)
    message = str(info.value)
    assert message.startswith(words[0] + ":") and all(w in message for w in words), message


def test_bad_model_and_streams_are_named():
    net, (xs, ys) = network(), stream()
    with pytest.raises(TypeError, match="^model: expected a bptt.Network or a pair"):
        online.train_online(net.params, xs, ys, "rtrl", 2, "sgd", 0.1)
    with pytest.raises(ValueError, match="^xs, ys: expected streams of the same length"):
        online.train_online((net.params, net.arch), xs, ys[:5], "rtrl", 2, "sgd", 0.1)
    with pytest.raises(ValueError, match="^cell: algorithm='rtrl' does not support cell='skip'"):
        online.train_online(bptt.Network("skip", N, H, N), xs, ys, "rtrl", 2, "sgd", 0.1)
