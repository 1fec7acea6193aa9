"""AWD-LSTM's regularisers (bptt.model.regularisers) beyond the finite differences of test_gradients.py:
the same computation in PyTorch autograd with the same masks (nn.LSTM / nn.GRU layers run by
torch.func.functional_call with weight_hh * M, as AWD's WeightDrop; F.embedding of the masked E, as
its embedded_dropout; its main.py's AR and TAR), the order the masks are drawn in, recomputation,
and the errors."""

import numpy as np
import pytest
import torch

import bptt
from bptt.lab import gradcheck
from bptt.model import engine, regularisers

AWD = gradcheck.AWD_ALL


def make(cell, tied=False, **kw):
    sizes = dict(input_size=7, hidden_size=5, output_size=7, num_layers=2, embedding_dim=5 if tied else 4) | kw
    return bptt.Network(cell, tie_weights=tied, seed=3, **sizes)


def window(T=6, B=4, V=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))


def masks_of(net, x, seed, dropout=0.0, rows=None, **options):
    batch = engine.prepare(net.params, net.arch, x, None, None)
    return engine.training_masks(net.arch, batch, np.float64, dropout, seed, rows, regularisers.options(**options))


def torch_loss(net, x, y, masks, alpha, beta):
    """AWD-LSTM's forward in PyTorch, float64, with the masks given: (loss, {name: tensor})."""
    p = {name: torch.tensor(a, requires_grad=True) for name, a in net.params.items()}
    arch, T = net.arch, torch.tensor
    E = p["E"] * T(masks.weights["E"]) if "E" in masks.weights else p["E"]                 # embedded_dropout
    xs = torch.nn.functional.embedding(T(x), E)
    Module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[arch.cell]
    for k in range(arch.num_layers):
        if masks.drops[k] is not None:
            xs = xs * T(masks.drops[k])                                                 # LockedDropout
        rnn = Module(arch.layer_input_size(k), arch.hidden_size).double()
        U = p[f"l{k}.U"] * T(masks.weights[f"l{k}.U"]) if f"l{k}.U" in masks.weights else p[f"l{k}.U"]   # WeightDrop
        weights = {"weight_ih_l0": p[f"l{k}.W"], "weight_hh_l0": U, "bias_ih_l0": p[f"l{k}.b"],
                   "bias_hh_l0": p[f"l{k}.b_U"]}
        xs = torch.func.functional_call(rnn, weights, (xs,))[0]
    dropped = xs * T(masks.drops[-1]) if masks.drops[-1] is not None else xs
    z = dropped @ p["V" if "V" in p else "E"].T + p["c"]                       # a tied readout reads E itself
    loss = torch.nn.functional.cross_entropy(z.reshape(-1, z.shape[-1]), T(y).reshape(-1))
    loss = loss + alpha * dropped.pow(2).mean() + beta * (xs[1:] - xs[:-1]).pow(2).mean()    # AR, TAR
    loss.backward()
    return loss.item(), {name: t.grad.numpy() for name, t in p.items()}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("options", [AWD, dict(weight_drop=0.5), dict(dropout_embedding=0.4, dropout_output=0.3),
                                     dict(alpha=3.0, beta=2.0)], ids=["all", "weight_drop", "dropouts", "ar_tar"])
def test_equal_to_torch_with_the_same_masks(cell, tied, options):
    net = make(cell, tied)
    x, y = window()
    r = engine.loss_and_grads(net.params, net.arch, x, y, rng=11, **options)
    masks = masks_of(net, x, 11, **options)
    t_loss, t_grads = torch_loss(net, x, y, masks, options.get("alpha", 0.0), options.get("beta", 0.0))
    assert abs(r.loss - t_loss) < 1e-10 * abs(t_loss)
    for name in net.params:
        assert gradcheck.rel_err(r.grads[name], t_grads[name]) < 1e-8, name
    if len(options) > 1 or "alpha" not in options:
        assert r.loss != engine.loss_and_grads(net.params, net.arch, x, y).loss    # the masks did something


def test_masks_drawn_in_the_documented_order():
    """One generator: per-step dropout, then E's rows, then each U (l0.U, l1.U), then the locked masks
    bottom to top; each kept entry 1/(1-p), a locked mask the same at every step."""
    net = make("lstm")
    x, _ = window()
    masks = masks_of(net, x, 5, dropout=0.0, **(AWD | {"dropout_hidden": 0.0}))
    g = np.random.default_rng(5)

    def inverted(shape, p):
        return (g.random(shape) >= p) / (1 - p)

    assert np.array_equal(masks.weights["E"], inverted((7, 1), AWD["dropout_embedding"]))
    for name in ("l0.U", "l1.U"):
        assert np.array_equal(masks.weights[name], inverted((20, 5), AWD["weight_drop"]))
    assert np.array_equal(masks.drops[0], inverted((1, 4, 4), AWD["dropout_input"]))
    assert masks.drops[1] is None                                    # dropout_hidden 0: none drawn
    assert np.array_equal(masks.drops[2], inverted((1, 4, 5), AWD["dropout_output"]))
    with_per_step = masks_of(net, x, 5, dropout=0.2, weight_drop=0.3)
    g = np.random.default_rng(5)
    per_step = [inverted((6, 4, n), 0.2) for n in (4, 5, 5)]
    assert all(np.array_equal(a, b) for a, b in zip(with_per_step.drops, per_step, strict=True))
    assert np.array_equal(with_per_step.weights["l0.U"], inverted((20, 5), 0.3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.2, 0.25, 0.5, 0.65, 0.999])
def test_kept_has_the_bits_of_the_quotient(p, dtype):
    """regularisers.kept: the bits of ((u >= p) / (1 - p)).astype(dtype), u at and around p included."""
    u = np.concatenate([np.random.default_rng(3).random(10_000), [p, np.nextafter(p, 0), np.nextafter(p, 1), 0.0]])
    expected = ((u >= p) / (1 - p)).astype(dtype)
    got = regularisers.kept(u, p, dtype)
    assert got.dtype == dtype and np.array_equal(got.view(np.uint8), expected.view(np.uint8))
    assert 0 < np.count_nonzero(got) < got.size or p == 0


def test_locked_masks_of_some_rows_are_those_of_the_whole_batch():
    net = make("gru")
    x, _ = window(B=6)
    whole = masks_of(net, x, 2, **AWD)
    part = masks_of(net, x[:, 2:5], 2, rows=(2, 5, 6), **AWD)
    for a, b in zip(part.drops, whole.drops, strict=True):
        assert np.array_equal(a, b[:, 2:5])
    assert all(np.array_equal(part.weights[k], whole.weights[k]) for k in whole.weights)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_recompute_every_equals_full_bptt(cell):
    net = make(cell, tied=True)
    x, y = window(T=9)
    options = AWD | {"alpha": 0.0, "beta": 0.0}
    kw = dict(lengths=[9, 4, 7, 1], reset=np.random.default_rng(4).random((9, 4)) < 0.2, rng=8, **options)
    full = engine.loss_and_grads(net.params, net.arch, x, y, **kw)
    for every in (1, 2, 4):
        seg = engine.loss_and_grads(net.params, net.arch, x, y, recompute_every=every, **kw)
        assert abs(seg.loss - full.loss) < 1e-12 * full.loss
        for name in net.params:
            assert gradcheck.rel_err(seg.grads[name], full.grads[name]) < 1e-12, name


def test_zero_rates_change_nothing():
    net = make("lstm", tied=True)
    x, y = window()
    plain = engine.loss_and_grads(net.params, net.arch, x, y)
    zero = engine.loss_and_grads(net.params, net.arch, x, y, **dict.fromkeys(regularisers.Options._fields, 0.0))
    assert zero.loss == plain.loss and all(np.array_equal(zero.grads[k], plain.grads[k]) for k in plain.grads)
    value = engine.loss_value(net.params, net.arch, x, y, weight_drop=0.3, rng=1)     # the fast engine's fused loss
    assert abs(net.loss_and_grads(x, y, weight_drop=0.3, rng=1)[0] - value) < 1e-14 * value     # equal to round-off


@pytest.mark.parametrize("options,error,message", [
    (dict(weight_drop=1.0, rng=0), ValueError, r"^weight_drop: expected a probability in \[0, 1\), got 1.0"),
    (dict(dropout_input=-0.1, rng=0), ValueError, r"^dropout_input: expected a probability in \[0, 1\)"),
    (dict(dropout_hidden=float("nan"), rng=0), ValueError, r"^dropout_hidden: expected a probability"),
    (dict(dropout_output=2, rng=0), ValueError, r"^dropout_output: expected a probability"),
    (dict(dropout_embedding=1.5, rng=0), ValueError, r"^dropout_embedding: expected a probability"),
    (dict(alpha=-1.0), ValueError, r"^alpha: expected a finite float >= 0, got -1.0"),
    (dict(beta=float("inf")), ValueError, r"^beta: expected a finite float >= 0"),
    (dict(alpha="2"), TypeError, r"^alpha: expected a finite float >= 0, got '2' \(str\)"),
    (dict(weight_drop=0.3), TypeError, r"^rng: expected a np.random.Generator \(or an int seed\) when weight_drop > 0"),
    (dict(dropout_output=0.3, rng=None), TypeError, r"^rng: .* when dropout_output > 0, got NoneType"),
    (dict(dropout=0.2, dropout_hidden=0.3, rng=0), ValueError, r"^dropout: per-step dropout \(0.2\) and locked"),
    (dict(weigth_drop=0.3, rng=0), TypeError, r"^weigth_drop: not an option of loss_and_grads; the regularisers "
                                              r"are weight_drop, dropout_input"),
    (dict(alpha=1.0, recompute_every=2), ValueError, r"^recompute_every: AR and TAR \(alpha, beta\)"),
])
def test_bad_options_named(options, error, message):
    net = make("lstm")
    x, y = window()
    with pytest.raises(error, match=message):
        engine.loss_and_grads(net.params, net.arch, x, y, **options)


def test_options_that_need_an_input_layer():
    one_hot = make("gru", embedding_dim=None)
    x, y = window()
    with pytest.raises(ValueError, match=r"^dropout_embedding: drops rows of the embedding E, and this network has "):
        one_hot.loss_and_grads(x, y, dropout_embedding=0.1, rng=0)
    with pytest.raises(ValueError, match=r"^dropout_input: applies to an embedding or float features"):
        one_hot.loss_and_grads(x, y, dropout_input=0.1, rng=0)
    one_hot.loss_and_grads(x, y, dropout_hidden=0.1, dropout_output=0.1, weight_drop=0.1, rng=0)


def test_a_rank_without_rows_moves_the_generator_as_the_others():
    """Data-parallel training: a rank left without rows draws the masks of (0, 0, B) to stay in step."""
    net = make("lstm")
    x, _ = window()
    opts = regularisers.options(**AWD)
    ours, other = np.random.default_rng(0), np.random.default_rng(0)
    engine.training_masks(net.arch, engine.prepare(net.params, net.arch, x, None, None), np.float64, 0.0, ours,
                          None, opts)
    empty = engine.training_masks(net.arch, engine.Batch(x[:, :0], (), None, None), np.float64, 0.0, other, (0, 0, 4),
                                  opts)
    assert empty.drops[0].shape == (1, 0, 4) and ours.random() == other.random()
