"""Gradient-flow measurements: exact Jacobians against finite differences, gradient norms against
PyTorch autograd (retain_grad on every hidden state), the truncation bias."""

import numpy as np
import pytest
import torch

import bptt
from bptt.lab import diagnostics, gradcheck
from bptt.model import engine

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("rnn", "sigmoid"), ("gru", "tanh"), ("lstm", "tanh"), ("skip", "tanh"),
         ("skip", "relu")]


def setup(cell, nonlinearity, T=6, B=3, H=4, L=2, seed=0):
    net = bptt.Network(cell, 5, H, 3, num_layers=L, nonlinearity=nonlinearity, seed=seed,
                       skip=3 if cell == "skip" else None)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((T, B, 5))
    parts = tuple(0.5 * rng.standard_normal((L, B, H)) for _ in net.arch.state_names)
    return net, x, engine.public_state(parts), rng


def layer_states(net, x, state, lengths=None, reset=None, layer=0):
    """s_k (k = 0..T) of one layer, flattened (B, S), by running the forward pass."""
    batch = engine.prepare(net.params, net.arch, x, state, lengths, reset)
    xs = batch.x                                             # the rows in the order the engine runs them
    for k in range(layer):                                   # the input sequence of `layer`
        xs, _, _ = net.arch.module.forward(engine.layer(net.params, k), xs, tuple(s[k] for s in batch.state),
                                           batch.mask, batch.reset, **net.arch.options)
    return xs, tuple(s[layer] for s in batch.state), batch


def run_from(net, layer, xs, s_k, batch, k):
    """The layer's final state after running steps k..len(xs)-1 from state s_k (flattened (B, S))."""
    H = net.arch.hidden_size
    parts = tuple(s_k[:, i * H:(i + 1) * H] for i in range(len(net.arch.state_names)))
    T = len(xs)
    mask = None if batch.mask is None else batch.mask[k:T]
    reset = None if batch.reset is None else batch.reset[k:T]
    _, final, _ = net.arch.module.forward(engine.layer(net.params, layer), xs[k:], parts, mask, reset,
                                          **net.arch.options)
    return np.concatenate(final, axis=1)


def fd_jacobian(f, s, eps=1e-6):
    """df/ds for f: (B, S) -> (B, S), row by row: (B, S, S), central differences."""
    B, S = s.shape
    J = np.zeros((B, S, S))
    for j in range(S):
        e = np.zeros_like(s)
        e[:, j] = eps
        J[:, :, j] = (f(s + e) - f(s - e)) / (2 * eps)
    return J


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
@pytest.mark.parametrize("variant", ["plain", "lengths", "reset"])
@pytest.mark.parametrize("layer", [0, 1])
def test_jacobian_products_equal_finite_differences(cell, nonlinearity, variant, layer):
    net, x, state, rng = setup(cell, nonlinearity)
    lengths = np.array([6, 3, 1]) if variant == "lengths" else None
    reset = (rng.random((6, 3)) < 0.2) if variant == "reset" else None
    P = diagnostics.jacobian_products(net.params, net.arch, x, state, lengths, reset, layer)
    xs, s0, batch = layer_states(net, x, state, lengths, reset, layer)
    s = [np.concatenate(s0, axis=1)]                           # s_k, the layer's state after k steps
    for k in range(6):
        s.append(run_from(net, layer, xs[:k + 1], s[0], batch, 0))
    # A skip RNN's state after a reset holds history of the old sequence, which the full run masks but a
    # run restarted from that state would read: from a reset on, only the product from k = 0 is comparable.
    first_reset = int(np.argmax(reset.any(axis=1))) if reset is not None and reset.any() else 6
    checked = 0
    for k in range(7):
        if cell == "skip" and first_reset < k < 6:
            continue
        checked += 1
        if k == 6:
            assert np.array_equal(P[6], np.broadcast_to(np.eye(P.shape[-1]), P[6].shape))
            continue
        fd = fd_jacobian(lambda s_k, k=k: run_from(net, layer, xs, s_k, batch, k), s[k])
        assert np.allclose(P[k], fd, rtol=1e-7, atol=1e-9), (k, np.abs(P[k] - fd).max())
    assert checked >= 2
    H = net.arch.hidden_size
    sv = diagnostics.jacobian_singular_values(net.params, net.arch, x, state, lengths, reset)[layer]
    fd0 = fd_jacobian(lambda s_k: run_from(net, layer, xs, s_k, batch, 0), s[0])[:, :H, :H]
    assert np.allclose(sv[0], np.linalg.svd(fd0, compute_uv=False), rtol=1e-7, atol=1e-9)


def torch_hidden_grads(net, x, y, state):
    """dL/dh^l_t from PyTorch autograd: a loop over torch cells with retain_grad on every h."""
    arch, L = net.arch, net.arch.num_layers
    sd = {k: torch.tensor(v, requires_grad=True) for k, v in net.torch_state_dict().items()}
    parts = state if isinstance(state, tuple) else (state,)
    s = [[torch.tensor(p[layer]) for p in parts] for layer in range(L)]
    hist = [[torch.tensor(p[layer]) for p in reversed(parts)] for layer in range(L)]      # skip: oldest first
    inputs, hs = torch.tensor(x), [[] for _ in range(L)]
    for t in range(len(x)):
        inp = inputs[t]
        for layer in range(L):
            W, U = sd[f"rnn.weight_ih_l{layer}"], sd[f"rnn.weight_hh_l{layer}"]
            b, b_U = sd[f"rnn.bias_ih_l{layer}"], sd[f"rnn.bias_hh_l{layer}"]
            h = s[layer][0]
            if arch.cell in ("rnn", "skip"):
                f = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}[arch.nonlinearity]
                a = inp @ W.T + b + h @ U.T + b_U
                if arch.cell == "skip":
                    a = a + hist[layer][-arch.skip] @ sd[f"rnn.weight_skip_l{layer}"].T
                new = [f(a)]
                hist[layer].append(new[0])
            elif arch.cell == "gru":
                ax, ah = inp @ W.T + b, h @ U.T + b_U
                H = h.shape[1]
                r = torch.sigmoid(ax[:, :H] + ah[:, :H])
                z = torch.sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
                n = torch.tanh(ax[:, 2 * H:] + r * ah[:, 2 * H:])
                new = [(1 - z) * n + z * h]
            else:
                a = inp @ W.T + b + h @ U.T + b_U
                i, f, g, o = a.chunk(4, dim=1)
                c = torch.sigmoid(f) * s[layer][1] + torch.sigmoid(i) * torch.tanh(g)
                new = [torch.sigmoid(o) * torch.tanh(c), c]
            new[0].retain_grad()
            hs[layer].append(new[0])
            s[layer] = new
            inp = new[0]
    z = inp @ sd["head.weight"].T + sd["head.bias"]
    torch.nn.functional.cross_entropy(z, torch.tensor(y)).backward()
    return [np.stack([h.grad.numpy() for h in hs[layer]]) for layer in range(L)]


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
def test_gradient_norms_equal_pytorch_retain_grad(cell, nonlinearity):
    net, x, state, rng = setup(cell, nonlinearity, T=8)
    y = rng.integers(0, 3, 3)
    norms = diagnostics.gradient_norms(net.params, net.arch, x, y, state)
    expected = torch_hidden_grads(net, x, y, state)
    for layer in range(2):
        want = np.linalg.norm(expected[layer].reshape(8, -1), axis=1)
        assert np.allclose(norms[layer, 1:], want, rtol=1e-12, atol=0), layer
    r = engine.loss_and_grads(net.params, net.arch, x, y, state, target="last")
    d0 = r.dstate0[0] if isinstance(r.dstate0, tuple) else r.dstate0
    assert np.allclose(norms[:, 0], np.linalg.norm(d0.reshape(2, -1), axis=1))


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
def test_truncation_bias_reaches_cosine_one_when_k_covers_the_window(cell, nonlinearity):
    case = gradcheck.Case(cell + ("-" + nonlinearity if cell == "rnn" else ""), num_layers=2, V=6, K=6)
    net = gradcheck.network(case)
    stream = np.random.default_rng(0).integers(0, 6, (12, 3))
    rows = diagnostics.truncation_bias(net.params, net.arch, stream, ks=[1, 2, 4, 8, 11, 12])
    assert [r["k"] for r in rows] == [1, 2, 4, 8, 11, 12]
    assert abs(rows[-1]["cosine"] - 1) < 1e-12 and rows[-1]["relative_error"] < 1e-12
    assert abs(rows[-2]["cosine"] - 1) < 1e-12                          # k = N - 1 already covers it
    assert rows[0]["relative_error"] > 1e-6                             # truncation does bias the gradient
    errors = [r["relative_error"] for r in rows]
    assert errors[0] >= errors[2] >= errors[-1]


def test_spectrum():
    net = bptt.Network("lstm", 5, 4, 3, num_layers=2)
    s = diagnostics.spectrum(net.params, net.arch)
    assert list(s) == ["l0.U", "l1.U"] and [g["gate"] for g in s["l0.U"]] == ["i", "f", "g", "o"]
    U_f = net.params["l1.U"][4:8]
    assert s["l1.U"][1]["spectral_radius"] == pytest.approx(np.abs(np.linalg.eigvals(U_f)).max())
    assert np.allclose(s["l1.U"][1]["singular_values"], np.linalg.svd(U_f, compute_uv=False))


def test_identity_rnn_keeps_the_jacobian_near_the_identity_and_sigmoid_vanishes():
    """The seeds' claims in miniature: sigmoid's slope (at most 1/4) shrinks dh_T/dh_k
    geometrically; an identity-initialised ReLU RNN starts with products near the identity."""
    x = np.random.default_rng(0).standard_normal((30, 2, 5))
    sig = bptt.Network("rnn", 5, 16, 3, nonlinearity="sigmoid", seed=0)
    sv = diagnostics.jacobian_singular_values(sig.params, sig.arch, x)[0]
    assert sv[0].max() < 1e-10 < sv[29].max()
    from bptt.model import init
    irnn = bptt.Network("rnn", 5, 16, 3, nonlinearity="relu", seed=0)
    init.apply(irnn.params, irnn.arch, np.random.default_rng(0), recurrent="identity")
    sv = diagnostics.jacobian_singular_values(irnn.params, irnn.arch, np.abs(x))[0]
    assert np.allclose(sv[:, :, 0], 1.0)                    # the largest never shrinks: units that are on copy
    tanh = bptt.Network("rnn", 5, 16, 3, seed=0)
    assert diagnostics.jacobian_singular_values(tanh.params, tanh.arch, x)[0][0].max() < 1e-3
