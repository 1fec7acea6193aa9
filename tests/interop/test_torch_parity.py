"""bptt against PyTorch autograd, the same weights loaded through load_torch_state_dict:
float64 loss within 1e-10, every gradient within 1e-8 relative, final state equal to h_n (and c_n);
float32 within 1e-4; consecutive windows with the state carried match detach-based truncated BPTT."""

import numpy as np
import pytest
import torch

import bptt
from bptt.interop import torch_reference
from bptt.lab import gradcheck

# the matrix, and the layer options where PyTorch has the layer: bidirectional (packed with lengths,
# padded without) for every cell (nn.RNN, nn.GRU, nn.LSTM; the sigmoid and skip RNNs as autograd loops),
# and a learned initial state (an nn.Parameter expanded over the batch)
CASES = (list(gradcheck.all_cases()) + list(gradcheck.bidirectional_cases()) + list(gradcheck.initial_state_cases())
         + list(gradcheck.projection_cases())
         + [c for c in gradcheck.adaptive_cases() if not (c.with_reset or c.with_loss_mask)])


@pytest.mark.parametrize("case", CASES, ids=[c.label().replace(" ", "-") for c in CASES])
def test_float64(case):
    errors = gradcheck.against_torch(case)
    assert errors.pop("loss") < 1e-10
    assert errors.pop("state") < 1e-12
    assert "x" in errors or case.inputs != "float"
    bad = {name: e for name, e in errors.items() if not e < 1e-8}
    assert not bad, f"{case.label()}: {bad}"


FLOAT32_CASES = [gradcheck.Case(cell, 2, inputs, "every", "cross_entropy", True, lengths)
                 for cell in gradcheck.CELL_NAMES for inputs in gradcheck.INPUT_KINDS for lengths in (False, True)]


@pytest.mark.parametrize("case", FLOAT32_CASES, ids=[c.label().replace(" ", "-") for c in FLOAT32_CASES])
def test_float32(case):
    errors = gradcheck.against_torch(case, np.float32)
    bad = {name: e for name, e in errors.items() if not e < 1e-4}
    assert not bad, f"{case.label()}: {bad}"


@pytest.mark.parametrize("cell", gradcheck.CELL_NAMES)
def test_consecutive_windows_match_detached_truncation(cell):
    """Window 2 starts from window 1's final state, with no gradient flowing back into window 1."""
    case = gradcheck.Case(cell, num_layers=2, inputs="embedding", T=6, B=3)
    net = gradcheck.network(case)
    sd = torch_reference.random_state_dict(net.arch, np.float64, seed=7)
    net.load_torch_state_dict(sd)
    model = torch_reference.build(net.arch, sd, np.float64)
    rng = np.random.default_rng(3)
    stream = rng.integers(0, case.V, (2 * case.T + 1, case.B))
    state, t_state = None, None
    for w in range(2):
        x, y = stream[w * case.T:(w + 1) * case.T], stream[w * case.T + 1:(w + 1) * case.T + 1] % case.K
        loss, grads, state = net.loss_and_grads(x, y, state)
        t_loss, t_grads, t_state, _, _ = torch_reference.loss_and_grads(model, x, y, t_state)
        assert abs(loss - t_loss) < 1e-10
        ours = net.torch_state_dict(grads)
        for name in t_grads:
            assert gradcheck.rel_err(ours[name], t_grads[name]) < 1e-8, (w, name)
        for a, b in zip(gradcheck.state_parts(state), gradcheck.state_parts(t_state), strict=True):
            assert gradcheck.rel_err(a, b) < 1e-12


def test_torch_module_outputs_match_forward():
    net = bptt.Network("lstm", input_size=7, hidden_size=5, output_size=4, num_layers=2, embedding_dim=3)
    model = torch_reference.build(net.arch, net.torch_state_dict(), np.float64)
    x = np.random.default_rng(0).integers(0, 7, (4, 2))
    logits, (h, c) = net.forward(x)
    with torch.no_grad():
        hs, (t_h, t_c) = model(torch.as_tensor(x), None)
        t_logits = model.head(hs).numpy()
    assert gradcheck.rel_err(logits, t_logits) < 1e-13
    assert gradcheck.rel_err(h, t_h.numpy()) < 1e-13 and gradcheck.rel_err(c, t_c.numpy()) < 1e-13
