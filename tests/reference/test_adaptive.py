"""The adaptive softmax (reference/adaptive.py) against PyTorch's nn.AdaptiveLogSoftmaxWithLoss with
the same weights, and against central finite differences, in float64."""

import numpy as np
import pytest
import torch

from bptt.lab.gradcheck import central_differences, rel_err, resolution
from bptt.reference import adaptive

# (H, K, cutoffs, div_value, head_bias, targets): "all" covers every cluster, "skip" leaves cluster 2
# (and the shortlist) without a target, "short" leaves every cluster unused.
CASES = [
    (8, 10, [4], 4.0, False, "all"),
    (8, 10, [4], 4.0, True, "all"),
    (16, 20, [3, 7, 12], 2.0, True, "all"),
    (64, 20, [3, 7, 12], 4.0, False, "all"),       # h_i = 16, 4, 1
    (16, 20, [3, 7, 12], 2.0, False, "skip"),
    (12, 9, [2, 8], 2.5, True, "short"),
    (12, 9, [2, 8], 2.0, False, "all"),             # cluster 2 has a single class
]
IDS = [f"H{c[0]}-K{c[1]}-cut{'.'.join(map(str, c[2]))}-div{c[3]:g}-bias{int(c[4])}-{c[5]}" for c in CASES]
N = 13


def targets(rng, K, cutoffs, which):
    bounds = [0, *cutoffs, K]
    if which == "all":                              # each cluster (and the shortlist) at least once
        y = np.concatenate([rng.integers(lo, hi, 2) for lo, hi in zip(bounds, bounds[1:])])
    elif which == "skip":                           # no target in the shortlist nor in cluster 2
        y = np.concatenate([rng.integers(bounds[1], bounds[2], 2), rng.integers(bounds[3], K, 2)])
    else:                                           # the shortlist only
        y = rng.integers(0, cutoffs[0], 2)
    return rng.permutation(np.concatenate([y, rng.integers(0, K, N - len(y))]) if which == "all" else
                           np.resize(y, N))


def setup(case, seed=0):
    H, K, cutoffs, div_value, head_bias, which = case
    rng = np.random.default_rng(seed)
    p = adaptive.init_params(rng, H, K, cutoffs, div_value, head_bias, np.float64)
    p = {k: a * 3 for k, a in p.items()}            # sharper distributions than at initialisation
    h = rng.standard_normal((N, H))
    y = targets(rng, K, cutoffs, which)
    return p, h, y


def torch_module(case, p):
    H, K, cutoffs, div_value, head_bias, _ = case
    m = torch.nn.AdaptiveLogSoftmaxWithLoss(H, K, cutoffs, div_value=div_value, head_bias=head_bias,
                                            dtype=torch.float64)
    m.load_state_dict({k: torch.from_numpy(a.copy()) for k, a in adaptive.to_torch(p).items()})
    return m


def torch_grads(m):
    """The module's gradients under our names; None (a cluster PyTorch did not compute) as zeros."""
    return adaptive.from_torch({k: np.zeros(tuple(t.shape)) if t.grad is None else t.grad.numpy()
                                for k, t in m.named_parameters()})


def assert_close(grads, reference, tol):
    assert grads.keys() == reference.keys()
    errors = {k: rel_err(grads[k], reference[k]) for k in grads}
    assert max(errors.values()) < tol, errors


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layout_is_pytorchs(case):
    """param_shapes, init_params and to_torch give exactly the module's state_dict keys and shapes;
    every entry within PyTorch's nn.Linear bound 1/sqrt(fan_in), and spread over it."""
    H, K, cutoffs, div_value, head_bias, _ = case
    m = torch.nn.AdaptiveLogSoftmaxWithLoss(H, K, cutoffs, div_value=div_value, head_bias=head_bias)
    theirs = {k: tuple(t.shape) for k, t in m.state_dict().items()}
    p = adaptive.init_params(np.random.default_rng(0), H, K, cutoffs, div_value, head_bias, np.float32)
    assert {k: a.shape for k, a in adaptive.to_torch(p).items()} == theirs
    assert list(adaptive.param_shapes(H, K, cutoffs, div_value, head_bias)) == list(p)
    assert all(a.dtype == np.float32 for a in p.values())
    for name, a in p.items():
        bound = 1 / np.sqrt(H if name.startswith("head") else a.shape[1])
        assert np.abs(a).max() <= bound and (a.size < 20 or np.abs(a).max() > 0.8 * bound), name
    back = adaptive.from_torch(m.state_dict())
    assert list(back) == list(p) and all(back[k].shape == p[k].shape for k in p)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loss_and_gradients_equal_pytorch_mean(case):
    """w = 1/N is the module's mean loss: the loss to 1e-10, every gradient and dh to 1e-8."""
    p, h, y = setup(case)
    loss, grads, dh = adaptive.loss_and_grads(p, h, y, np.full(N, 1 / N))
    m = torch_module(case, p)
    h_t = torch.tensor(h, requires_grad=True)
    out = m(h_t, torch.from_numpy(y))
    out.loss.backward()
    assert abs(loss - out.loss.item()) < 1e-10
    assert_close(grads, torch_grads(m), 1e-8)
    assert rel_err(dh, h_t.grad.numpy()) < 1e-8


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_weighted_loss_and_gradients_equal_pytorch(case):
    """Any weights w: -sum_n w_n log p(y_n) over the module's per-row log p(y_n) (output), and its gradients."""
    p, h, y = setup(case, seed=1)
    w = np.random.default_rng(2).uniform(0, 1, N)
    w[3] = 0.0                                          # padding
    loss, grads, dh = adaptive.loss_and_grads(p, h, y, w)
    m = torch_module(case, p)
    h_t = torch.tensor(h, requires_grad=True)
    ref = -(torch.from_numpy(w) * m(h_t, torch.from_numpy(y)).output).sum()
    ref.backward()
    assert abs(loss - ref.item()) < 1e-10
    assert_close(grads, torch_grads(m), 1e-8)
    assert rel_err(dh, h_t.grad.numpy()) < 1e-8
    assert np.all(dh[3] == 0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_equal_central_differences(case):
    """Every parameter and dh against fourth-order central differences, norm-relative below 1e-7."""
    p, h, y = setup(case, seed=3)
    w = np.random.default_rng(4).uniform(0.5, 1.5, N) / N
    _, grads, dh = adaptive.loss_and_grads(p, h, y, w)
    eps = 1e-3

    def f():
        return adaptive.loss_and_grads(p, h, y, w)[0]

    errors = {k: rel_err(grads[k], central_differences(f, p[k], eps), resolution(eps)) for k in p}
    errors["h"] = rel_err(dh, central_differences(f, h, eps), resolution(eps))
    assert max(errors.values()) < 1e-7, errors
    assert all(np.linalg.norm(grads[k]) > 0 for k in p if k in used(case, y))   # the check had something to see


def used(case, y):
    """The parameters that receive a gradient: the head's, and the tails of clusters some target is
    in, but for a cluster of a single class (its softmax is 1 whatever its logit)."""
    _, K, cutoffs, _, _, _ = case
    bounds = [*cutoffs, K]
    tails = {f"tail{i}.{s}" for i in range(1, len(cutoffs) + 1) for s in "PV"
             if np.any((y >= bounds[i - 1]) & (y < bounds[i])) and bounds[i] - bounds[i - 1] > 1}
    return {"head.V", "head.c"} | tails


def test_unused_clusters_get_zero_gradients_and_are_not_computed():
    p, h, y = setup(CASES[4])                           # no target in cluster 2
    p["tail2.P"][:] = np.nan                            # a computed cluster 2 would spread NaN into dh
    loss, grads, dh = adaptive.loss_and_grads(p, h, y, np.full(N, 1 / N))
    assert np.isfinite(loss) and np.all(np.isfinite(dh))
    assert np.all(grads["tail2.P"] == 0) and np.all(grads["tail2.V"] == 0)
    assert np.all(grads["tail1.P"] != 0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_log_probs_equal_pytorch_and_sum_to_one(case):
    p, h, _ = setup(case, seed=5)
    logp = adaptive.log_probs(p, h)
    m = torch_module(case, p)
    with torch.no_grad():
        theirs = m.log_prob(torch.from_numpy(h)).numpy()
    assert logp.shape == (N, case[1]) and logp.dtype == np.float64
    assert np.abs(logp - theirs).max() < 1e-12
    np.testing.assert_allclose(np.exp(logp).sum(axis=1), 1.0, rtol=0, atol=1e-13)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_log_likelihood_is_log_probs_gathered_and_argmax_is_pytorchs_predict(case):
    """Rows whose head prefers a cluster token and rows that do not: the scale of the head makes both."""
    p, h, y = setup(case, seed=6)
    h = h * np.linspace(0.1, 3, N)[:, None]
    logp, best = adaptive.log_likelihood(p, h, y)
    full = adaptive.log_probs(p, h)
    assert logp.dtype == np.float64 and best.shape == (N,)
    assert np.abs(logp - full[np.arange(N), y]).max() < 1e-12
    np.testing.assert_array_equal(best, full.argmax(axis=1))
    with torch.no_grad():
        np.testing.assert_array_equal(best, torch_module(case, p).predict(torch.from_numpy(h)).numpy())
    head_prefers_cluster = adaptive.head(p, h).argmax(axis=1) >= case[2][0]
    assert head_prefers_cluster.any() or case[5] == "short"


def test_log_likelihood_of_float32_parameters_is_computed_in_float64():
    p, h, y = setup(CASES[2])
    p32, h32 = {k: a.astype(np.float32) for k, a in p.items()}, h.astype(np.float32)
    logp, best = adaptive.log_likelihood(p32, h32, y)
    full = adaptive.log_probs({k: a.astype(np.float64) for k, a in p32.items()}, h32.astype(np.float64))
    assert logp.dtype == np.float64 and np.abs(logp - full[np.arange(N), y]).max() < 1e-12
    np.testing.assert_array_equal(best, full.argmax(axis=1))
    assert adaptive.log_probs(p32, h32).dtype == np.float32


def test_the_names_map_both_ways():
    p, _, _ = setup(CASES[2])
    state = adaptive.to_torch(p)
    assert list(state) == ["head.weight", "head.bias", "tail.0.0.weight", "tail.0.1.weight", "tail.1.0.weight",
                           "tail.1.1.weight", "tail.2.0.weight", "tail.2.1.weight"]
    assert state["tail.1.1.weight"] is p["tail2.V"]
    back = adaptive.from_torch(state)
    assert all(np.array_equal(back[k], p[k]) and back[k] is not p[k] for k in p)
    lay = adaptive.layout(p)
    assert lay == adaptive.Layout(16, 20, (3, 7, 12), (8, 4, 2), True)


@pytest.mark.parametrize("args, error, words", [
    ((8, 10, [4, 4], 4.0, False), ValueError, "not strictly increasing"),
    ((8, 10, [6, 4], 4.0, False), ValueError, "not strictly increasing"),
    ((8, 10, [0, 4], 4.0, False), ValueError, "each cutoff must be in [1, 9]"),
    ((8, 10, [4, 10], 4.0, False), ValueError, "each cutoff must be in [1, 9]"),
    ((8, 10, [], 4.0, False), ValueError, "give at least one cutoff"),
    ((8, 10, [4.0], 4.0, False), TypeError, "4.0 is not an int"),
    ((8, 10, [True], 4.0, False), TypeError, "True is not an int"),
    ((8, 10, 4, 4.0, False), TypeError, "cutoffs: expected (a list of ints"),
    ((8, 10, [4], 0.0, False), ValueError, "div_value: expected a finite float > 0"),
    ((8, 10, [4], -2, False), ValueError, "div_value: expected a finite float > 0"),
    ((8, 10, [4], "4", False), TypeError, "div_value: expected a finite float > 0"),
    ((8, 10, [2, 4, 6], 4.0, False), ValueError, "cluster 2's projection would have H // div_value**2 = 8 // 4**2 = 0"),
    ((8, 10, [4], 4.0, 1), TypeError, "head_bias: expected True or False"),
    ((0, 10, [4], 4.0, False), ValueError, "H: expected a positive int"),
    ((8, 1, [4], 4.0, False), ValueError, "K: expected an int >= 2"),
])
def test_bad_layouts_are_refused_saying_what_to_change(args, error, words):
    with pytest.raises(error) as e:
        adaptive.param_shapes(*args)
    assert words in str(e.value)
    with pytest.raises(error):
        adaptive.init_params(np.random.default_rng(0), *args)


def test_bad_parameters_rows_and_state_dicts_are_refused():
    p, h, y = setup(CASES[2])
    w = np.full(N, 1 / N)
    cases = [
        (({k: a for k, a in p.items() if k != "tail2.V"}, h, y, w), ValueError, "params: missing 'tail2.V'"),
        ((p | {"tail4.X": p["tail1.P"]}, h, y, w), ValueError, "params: unexpected 'tail4.X'"),
        ((p | {"tail2.P": p["tail2.P"][:, :-1]}, h, y, w), ValueError, "params['tail2.P']: expected shape (4, 16)"),
        ((p | {"tail2.V": p["tail2.V"].astype(np.float32)}, h, y, w), ValueError, "cast it with .astype(np.float64)"),
        ((p | {"head.c": p["head.c"][:, None]}, h, y, w), TypeError, "params['head.c']: expected a 1-D NumPy array"),
        ((p, h[:, :-1], y, w), ValueError, "h: expected floats of shape (N, H) = (N, 16)"),
        ((p, h, y[:-1], w), ValueError, "y: expected int class ids of shape (N,) = (13,)"),
        ((p, h, y.astype(float), w), ValueError, "y: expected int class ids"),
        ((p, h, y + 20, w), ValueError, "y: expected class ids in [0, 20) (K)"),
        ((p, h, y, w[:-1]), ValueError, "w: expected float weights of shape (N,) = (13,)"),
        (([p], h, y, w), TypeError, "params: expected a dict of arrays"),
    ]
    for args, error, words in cases:
        with pytest.raises(error) as e:
            adaptive.loss_and_grads(*args)
        assert words in str(e.value), (words, str(e.value))
    state = adaptive.to_torch(p)
    with pytest.raises(ValueError, match=r"state_dict: missing 'tail\.1\.0\.weight'"):
        adaptive.from_torch({k: a for k, a in state.items() if k != "tail.1.0.weight"})
    with pytest.raises(ValueError, match=r"state_dict: unexpected 'tail\.0\.0\.bias'"):
        adaptive.from_torch(state | {"tail.0.0.bias": np.zeros(8)})
    with pytest.raises(ValueError, match=r"params\['tail1\.V'\]: expected shape \(4, 8\)"):
        adaptive.from_torch(state | {"tail.0.1.weight": np.zeros((4, 3))})


def test_ties_go_to_the_lowest_class_as_argmax_of_log_probs():
    """Cluster tokens with equal head logits and tails that cannot tell their classes apart: classes 2-5
    have the same log p exactly; the argmax is 2, as np.argmax of log_probs and PyTorch's predict."""
    p = adaptive.init_params(np.random.default_rng(0), 4, 6, [2, 4], 2.0, True)
    p["head.V"][:], p["head.c"][:] = 0.0, [0.0, 0.0, 1.0, 1.0]
    p["tail1.V"][:], p["tail2.V"][:] = 0.0, 0.0
    h, y = np.random.default_rng(1).standard_normal((3, 4)), np.array([0, 3, 5])
    full = adaptive.log_probs(p, h)
    assert np.all(full[:, 2:] == full[:, 2:3])
    logp, best = adaptive.log_likelihood(p, h, y)
    np.testing.assert_array_equal(best, [2, 2, 2])
    with torch.no_grad():
        np.testing.assert_array_equal(torch_module((4, 6, [2, 4], 2.0, True, ""), p).predict(torch.from_numpy(h)), 2)
    np.testing.assert_allclose(logp, -np.log(2 * np.e + 2) + [0, 1 - np.log(2), 1 - np.log(2)], rtol=0, atol=1e-15)


def test_float32_parameters_keep_their_dtype_and_agree_with_float64():
    p, h, y = setup(CASES[2])
    w = np.full(N, 1 / N)
    p32 = {k: a.astype(np.float32) for k, a in p.items()}
    loss32, grads32, dh32 = adaptive.loss_and_grads(p32, h.astype(np.float32), y, w.astype(np.float32))
    loss, grads, dh = adaptive.loss_and_grads(p, h, y, w)
    assert all(g.dtype == np.float32 for g in grads32.values()) and dh32.dtype == np.float32
    assert abs(loss32 - loss) < 1e-5 * abs(loss)
    assert max(rel_err(grads32[k], grads[k]) for k in p) < 1e-5 and rel_err(dh32, dh) < 1e-5
