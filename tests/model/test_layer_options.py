"""The layer options beyond the gradient matrices (tests/model/test_gradients.py,
tests/interop/test_torch_parity.py): per-step states against PyTorch's outputs, layer by layer; a
bidirectional many-to-one readout as PyTorch users write it; a learned initial state in
save/load and torch_state_dict; the refusals."""

import dataclasses

import numpy as np
import pytest
import torch

import bptt
from bptt.interop import torch_reference
from bptt.lab import diagnostics, gradcheck
from bptt.model import engine


def torch_outputs(arch, sd, x, lengths):
    """PyTorch's top-layer outputs (T, B, D H) and final states, float64, from the same weights."""
    model = torch_reference.build(arch, sd, np.float64)
    with torch.no_grad():
        n = None if lengths is None else torch.as_tensor(lengths)
        hs, final = model(torch.as_tensor(x), None, n)
    return hs.numpy(), final


def lower(arch, sd, layers):
    """The first `layers` layers of arch and their PyTorch state dict (same weights, its own readout)."""
    keep = {k: v for k, v in sd.items() if not k.startswith("rnn.") or int(k.split("_l")[-1][0]) < layers}
    return dataclasses.replace(arch, num_layers=layers), keep


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5, 1]])
def test_states_of_every_layer_equal_pytorch_outputs(cell, bidirectional, lengths):
    net = bptt.Network(cell, 7, 5, 3, num_layers=3, embedding_dim=4, bidirectional=bidirectional, seed=1)
    sd = torch_reference.random_state_dict(net.arch, np.float64, seed=2)
    net.load_torch_state_dict(sd)
    x = np.random.default_rng(0).integers(0, 7, (6, 4))
    z, final, states = net.forward(x, lengths=lengths, return_states=True)
    D, H = net.arch.directions, 5
    assert states["h"].shape == (3 * D, 6, 4, H)
    assert set(states) == ({"h", "c"} if cell == "lstm" else {"h"})
    real = np.ones((6, 4), bool) if lengths is None else np.arange(6)[:, None] < np.array(lengths)[None]
    for layers in (1, 2, 3):
        arch, part = lower(net.arch, sd, layers)
        hs, t_final = torch_outputs(arch, part, x, lengths)
        ours = np.concatenate([states["h"][(layers - 1) * D + d] for d in range(D)], axis=-1)   # [h_fwd; h_bwd]
        assert np.abs(ours[real] - hs[real]).max() < 1e-12, layers
    h_n = final[0] if cell == "lstm" else final
    last = (np.array(lengths) - 1) if lengths else np.full(4, 5)
    for i in range(3 * D):                    # the final state is what each direction holds where it ends
        ends = last if i % D == 0 else np.zeros(4, int)
        assert np.array_equal(states["h"][i][ends, np.arange(4)], h_n[i])
        if cell == "lstm":
            assert np.array_equal(states["c"][i][ends, np.arange(4)], final[1][i])
    assert np.array_equal(z, net.forward(x, lengths=lengths)[0])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_bidirectional_classifier_reads_pytorch_h_n(cell):
    """The many-to-one readout of a bidirectional network is head(cat(h_n[-2], h_n[-1])), as a PyTorch
    user of pack_padded_sequence writes it: engine.last_logits and the loss agree."""
    net = bptt.Network(cell, 9, 6, 4, num_layers=2, embedding_dim=3, bidirectional=True, seed=3)
    x = np.random.default_rng(1).integers(0, 9, (7, 5))
    lengths = [7, 3, 1, 6, 2]
    _, final = torch_outputs(net.arch, net.torch_state_dict(), x, lengths)
    h_n = (final[0] if cell == "lstm" else final).numpy()
    z = np.concatenate([h_n[-2], h_n[-1]], axis=1) @ net.params["V"].T + net.params["c"]
    assert np.abs(engine.last_logits(net.params, net.arch, x, lengths=lengths) - z).max() < 1e-12
    y = np.array([0, 1, 2, 3, 0])
    loss = net.loss_and_grads(x, y, target="last", lengths=lengths)[0]
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    assert abs(loss + logp[np.arange(5), y].mean()) < 1e-12


def test_reverse_direction_sees_the_future():
    """At step 0 the bidirectional output depends on the last input; the forward direction's does not."""
    net = bptt.Network("gru", 5, 4, 3, bidirectional=True, seed=0)
    x = np.zeros((6, 1), int)
    _, _, a = net.forward(x, return_states=True)
    x[-1] = 3
    _, _, b = net.forward(x, return_states=True)
    assert np.array_equal(a["h"][0, 0], b["h"][0, 0])           # h_fwd at step 0: the past only
    assert not np.allclose(a["h"][1, 0], b["h"][1, 0])           # h_bwd at step 0 has read step 5


def test_learned_initial_state_saves_loads_and_names():
    net = bptt.Network("lstm", 6, 4, 3, num_layers=2, bidirectional=True, learn_init_state=True, seed=0)
    assert net.params["init.h"].shape == (4, 4) and net.params["init.c"].shape == (4, 4)
    assert not net.params["init.h"].any()                      # it starts at zero
    sd = net.torch_state_dict()
    assert {"init_h", "init_c"} <= set(sd)
    rng = np.random.default_rng(0)
    net.params["init.h"][...] = rng.standard_normal((4, 4))
    x = rng.integers(0, 6, (5, 2))
    z_learned, _ = net.forward(x)
    zeros = tuple(np.zeros((4, 2, 4)) for _ in range(2))
    assert not np.allclose(z_learned, net.forward(x, zeros)[0])      # used when no state is given
    h0 = np.repeat(net.params["init.h"][:, None], 2, axis=1)
    assert np.array_equal(z_learned, net.forward(x, (h0, np.zeros((4, 2, 4))))[0])


def test_learned_initial_state_round_trips(tmp_path):
    net = bptt.Network("gru", 6, 4, 3, learn_init_state=True, seed=0)
    net.params["init.h"][...] = 0.25
    net.save(tmp_path / "net.safetensors")
    loaded = bptt.Network.load(tmp_path / "net.safetensors")
    assert loaded.arch.learn_init_state and np.array_equal(loaded.params["init.h"], net.params["init.h"])
    other = bptt.Network("gru", 6, 4, 3, learn_init_state=True, seed=5)
    other.load_torch_state_dict(net.torch_state_dict())
    assert np.array_equal(other.params["init.h"], net.params["init.h"])


def test_given_state_gets_no_gradient_into_the_learned_one():
    net = bptt.Network("rnn", 6, 4, 3, learn_init_state=True, seed=0)
    x, y = np.zeros((3, 2), int), np.zeros((3, 2), int)
    _, grads, _ = net.loss_and_grads(x, y, np.ones((1, 2, 4)) * 0.1)
    assert not grads["init.h"].any()
    _, grads, _ = net.loss_and_grads(x, y)
    assert grads["init.h"].any()


def test_refusals_name_the_options():
    with pytest.raises(ValueError, match="reset: a bidirectional network reads each whole sequence"):
        bptt.Network("gru", 5, 4, 3, bidirectional=True).loss_and_grads(
            np.zeros((3, 2), int), np.zeros((3, 2), int), reset=np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match="reset: rows would restart from zeros, not from the learned"):
        bptt.Network("gru", 5, 4, 3, learn_init_state=True).loss_and_grads(
            np.zeros((3, 2), int), np.zeros((3, 2), int), reset=np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match="recompute_every: .*bidirectional"):
        net = bptt.Network("gru", 5, 4, 3, bidirectional=True)
        engine.loss_and_grads(net.params, net.arch, np.zeros((3, 2), int), np.zeros((3, 2), int), recompute_every=2)
    with pytest.raises(ValueError, match="proj_size: applies to cell='lstm' only"):
        bptt.Network("gru", 5, 4, 3, proj_size=2)
    with pytest.raises(ValueError, match="proj_size: expected a size below hidden_size=4"):
        bptt.Network("lstm", 5, 4, 3, proj_size=4)
    with pytest.raises(TypeError, match="bidirectional: expected True or False, got 1"):
        bptt.Network("lstm", 5, 4, 3, bidirectional=1)
    with pytest.raises(ValueError, match=r"state: expected an array of shape \(L, B, H\) = \(4, 2, 4\)"):
        net = bptt.Network("rnn", 5, 4, 3, num_layers=2, bidirectional=True)
        net.forward(np.zeros((3, 2), int), np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match=r"tie_weights: needs embedding_dim == the readout's input size 8 "
                                         r"\(2 directions x hidden_size\)"):
        bptt.Network("lstm", 5, 4, 5, embedding_dim=4, tie_weights=True, bidirectional=True)


def test_diagnostics_of_a_bidirectional_network():
    """The Jacobian products follow each layer's forward direction; the gradient norms count both."""
    case = gradcheck.Case("lstm", 2, "embedding", "last", bidirectional=True, T=6)
    net = gradcheck.network(case)
    p = gradcheck.problem(case)
    norms = diagnostics.gradient_norms(net.params, net.arch, p["x"], p["y"])
    assert norms.shape == (2, 7) and np.all(norms > 0)
    sv = diagnostics.jacobian_singular_values(net.params, net.arch, p["x"])
    assert len(sv) == 2 and sv[0].shape == (7, case.B, case.H)
    assert set(diagnostics.spectrum(net.params, net.arch)) == {"l0.U", "l0_reverse.U", "l1.U", "l1_reverse.U"}
