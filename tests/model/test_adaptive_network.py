"""The adaptive softmax as a network's readout (Network(..., cutoffs=...)) beyond the gradient
matrices: PyTorch's names and module, the exact distribution in forward / score / streaming, the
recomputation, save and load, the refusals."""

import numpy as np
import pytest
import torch

import bptt
from bptt.interop import torch_reference
from bptt.model import engine


def network(**kw):
    return bptt.Network("lstm", 30, 8, 30, num_layers=2, embedding_dim=6, cutoffs=[5, 12], div_value=2.0, seed=1,
                        **kw)


def test_names_load_into_pytorch_adaptive_log_softmax():
    net = network(head_bias=True)
    model = torch_reference.build(net.arch, net.torch_state_dict(), np.float64)
    assert isinstance(model.head, torch.nn.AdaptiveLogSoftmaxWithLoss)
    assert set(model.state_dict()) == set(net.torch_state_dict())
    x = np.random.default_rng(0).integers(0, 30, (7, 3))
    logp, _ = net.forward(x)
    with torch.no_grad():
        hs, _ = model(torch.as_tensor(x), None)
        t_logp = model.head.log_prob(hs.reshape(-1, 8)).numpy().reshape(7, 3, 30)
    assert np.abs(logp - t_logp).max() < 1e-12
    assert np.abs(np.exp(logp).sum(axis=-1) - 1).max() < 1e-12          # an exact distribution
    other = network(head_bias=True)
    other.load_torch_state_dict({k: v.numpy() for k, v in model.state_dict().items()})
    assert all(np.array_equal(other.params[k], net.params[k]) for k in net.params)


def test_score_equals_the_distribution_of_forward():
    net = network()
    x = np.random.default_rng(1).integers(0, 30, (9, 4))
    logp, _ = net.forward(x[:-1])
    s = net.score(x[:-1], x[1:])
    picked = np.take_along_axis(logp, x[1:, :, None], axis=-1)[..., 0]
    assert abs(s.total + picked.sum()) < 1e-10 and s.count == 32
    assert s.correct == int((logp.argmax(-1) == x[1:]).sum())


def test_recomputation_and_streaming_equal_the_plain_pass():
    net = network()
    x = np.random.default_rng(2).integers(0, 30, (10, 3))
    a = engine.loss_and_grads(net.params, net.arch, x[:-1], x[1:])
    b = engine.loss_and_grads(net.params, net.arch, x[:-1], x[1:], recompute_every=3)
    assert abs(a.loss - b.loss) < 1e-12
    assert all(np.abs(a.grads[k] - b.grads[k]).max() < 1e-12 for k in a.grads)
    logp, _ = net.forward(x)
    with net.stepper() as s:                               # the adaptive readout steps on the reference
        state = None
        for t in range(10):
            z_t, state = s.step(x[t], state)
            assert np.abs(z_t - logp[t]).max() < 1e-12


def test_save_and_load(tmp_path):
    net = network()
    net.save(tmp_path / "a.safetensors")
    back = bptt.Network.load(tmp_path / "a.safetensors")
    assert back.arch.cutoffs == (5, 12) and back.arch.div_value == 2.0
    assert all(np.array_equal(back.params[k], net.params[k]) for k in net.params)


def test_refusals():
    with pytest.raises(ValueError, match="loss: the adaptive softmax"):
        network().loss_and_grads(np.zeros((3, 2), int), np.zeros((3, 2, 30)), loss="mse")
    with pytest.raises(ValueError, match="tie_weights: the readout is the adaptive softmax"):
        bptt.Network("lstm", 30, 8, 30, embedding_dim=8, tie_weights=True, cutoffs=[5])
    with pytest.raises(ValueError, match="cutoffs: "):
        bptt.Network("lstm", 30, 8, 30, cutoffs=[5, 40])
    with pytest.raises(ValueError, match="div_value, head_bias: apply to the adaptive softmax only"):
        bptt.Network("lstm", 30, 8, 30, div_value=2.0)
    with pytest.raises(ValueError, match="cutoffs: the adaptive softmax has no ONNX export yet"):
        network().to_onnx("unused.onnx")
