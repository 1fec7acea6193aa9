"""TBPTT(k1, k2): full BPTT when k2 covers the stream, PyTorch's detach-based truncation when
k1 = k2, and the carried state always equal to the state of one forward pass over the stream."""

import numpy as np
import pytest

from bptt.interop import torch_reference
from bptt.lab import gradcheck
from bptt.model import engine
from bptt.training import tbptt


def stream_and_net(cell, N=23, B=3, seed=0):
    case = gradcheck.Case(cell, num_layers=2, inputs="embedding", V=6, K=6)
    net = gradcheck.network(case)
    return np.random.default_rng(seed).integers(0, 6, (N, B)), net


def test_windows():
    assert tbptt.windows(11, 4, 4) == [(0, 0, 4), (4, 4, 8), (8, 8, 10)]
    assert tbptt.windows(11, 3, 7) == [(0, 0, 3), (0, 3, 6), (2, 6, 9), (5, 9, 10)]
    with pytest.raises(ValueError, match="k2: expected k2 >= k1 = 4"):
        tbptt.windows(11, 4, 3)


@pytest.mark.parametrize("cell", gradcheck.CELL_NAMES)
@pytest.mark.parametrize("k1", [1, 4, 7])
def test_k2_covering_the_stream_is_full_bptt(cell, k1):
    stream, net = stream_and_net(cell)
    full = engine.loss_and_grads(net.params, net.arch, stream[:-1], stream[1:])
    loss, grads = tbptt.accumulated_gradients(net.params, net.arch, stream, k1, k2=len(stream) + k1)
    assert loss == pytest.approx(full.loss, rel=1e-13)
    for name in grads:
        assert gradcheck.rel_err(grads[name], full.grads[name]) < 1e-12, name


@pytest.mark.parametrize("cell", gradcheck.CELL_NAMES)
def test_k1_equal_k2_is_pytorch_detach_truncation(cell):
    stream, net = stream_and_net(cell)
    sd = torch_reference.random_state_dict(net.arch, np.float64, seed=1)
    net.load_torch_state_dict(sd)
    model = torch_reference.build(net.arch, sd, np.float64)
    k = 5
    loss, grads = tbptt.accumulated_gradients(net.params, net.arch, stream, k, k)
    t_loss, t_grads, state, total = 0.0, {}, None, len(stream) - 1
    for w in tbptt.windows(len(stream), k, k):
        x, y = stream[w.start:w.stop], stream[w.start + 1:w.stop + 1]
        value, g, state, _, _ = torch_reference.loss_and_grads(model, x, y, state)   # state: values, detached
        share = (w.stop - w.start) / total
        t_loss += share * value
        for name, v in g.items():
            t_grads[name] = t_grads.get(name, 0) + share * v
    assert loss == pytest.approx(t_loss, rel=1e-13)
    ours = net.torch_state_dict(grads)
    for name in t_grads:
        assert gradcheck.rel_err(ours[name], t_grads[name]) < 1e-12, name


@pytest.mark.parametrize("k1,k2", [(1, 1), (3, 3), (3, 5), (2, 7), (4, 100)])
def test_carried_state_is_the_forward_state(k1, k2):
    stream, net = stream_and_net("lstm", N=17)
    ws = tbptt.windows(len(stream), k1, k2)
    state = None
    for i, w in enumerate(ws):
        x, y, loss_mask, reset = tbptt.window_batch(stream, w)
        r = engine.loss_and_grads(net.params, net.arch, x, y, state, loss_mask=loss_mask)
        if i + 1 < len(ws):
            state = tbptt.next_start_state(net.params, net.arch, stream, w, ws[i + 1], state, r.state)
            if ws[i + 1].start > 0:
                expected = engine.final_state(net.params, net.arch, stream[:ws[i + 1].start])
                for a, b in zip(state, expected, strict=True):
                    assert np.allclose(a, b, rtol=0, atol=1e-14)


def test_document_starts_reset_rows_inside_windows():
    stream, net = stream_and_net("gru", N=13, B=2)
    starts = np.zeros(stream.shape, bool)
    starts[6, 1] = True                                      # row 1: a new document at step 6
    loss, grads = tbptt.accumulated_gradients(net.params, net.arch, stream, 4, 4, starts=starts)
    full = engine.loss_and_grads(net.params, net.arch, stream[:-1], stream[1:], reset=starts[:-1])
    assert loss == pytest.approx(full.loss, rel=1e-13)
    assert gradcheck.rel_err(grads["l0.U"], tbptt.accumulated_gradients(
        net.params, net.arch, stream, 4, 4)[1]["l0.U"]) > 1e-6          # the reset matters
    # row 1 after the reset sees exactly what a fresh run from zeros sees
    z, _ = engine.logits(net.params, net.arch, stream[:-1], reset=starts[:-1])
    z_fresh, _ = net.forward(stream[6:-1, 1:2])
    assert np.allclose(z[6:, 1], z_fresh[:, 0], rtol=0, atol=1e-14)
