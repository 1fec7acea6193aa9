"""The LSTM with a projection (p["R"], nn.LSTM's proj_size) at the cell level, float64: every gradient
(W, U, b, b_U, R, float inputs, h0, c0) against central differences, with lengths and resets; the
same and the outputs against torch.nn.LSTM(proj_size=P) with the same arrays; clip_dh and dh_trace
against an autograd loop that clamps dL/dh_t in a hook; step_jacobian against differences of one
step; and init_params with and without proj_size."""

import numpy as np
import pytest
import torch

from bptt.lab.gradcheck import central_differences, rel_err, resolution, step_size
from bptt.reference import lstm
from bptt.reference.common import init_uniform

T, B, D, H, P = 6, 4, 3, 5, 3
EPS = step_size("lstm")
FD_TOL = 1e-9          # norm-relative; measured 1e-11 at most (the project asks 1e-7 of every cell)
TORCH_TOL = 1e-10      # gradients against autograd; outputs and final states: 1e-12
LENGTHS = np.array([T, 1, T - 2, 3])        # full, one step, ...: rows held for different spans


def problem(seed=0, lengths=False, reset=False, ids=False):
    """(p, xs, state0, mask, reset, dhs, dstate_T): the cell's inputs and the weights of the loss
    L = sum_t dhs_t . h_t + dstate_T . (h_T, c_T), whose gradient backward returns."""
    rng = np.random.default_rng(seed)
    p = lstm.init_params(rng, D, H, np.float64, proj_size=P)
    xs = rng.integers(0, D, (T, B)) if ids else rng.standard_normal((T, B, D))
    state0 = (0.5 * rng.standard_normal((B, P)), 0.5 * rng.standard_normal((B, H)))
    mask = (np.arange(T)[:, None] < LENGTHS)[:, :, None] if lengths else None
    resets = rng.random((T, B, 1)) < 0.3 if reset else None
    dhs = rng.standard_normal((T, B, P))
    if mask is not None:
        dhs *= mask                        # as the engine's loss: no gradient from padding
    dstate = (rng.standard_normal((B, P)), rng.standard_normal((B, H)))
    return p, xs, state0, mask, resets, dhs, dstate


def loss(p, xs, state0, mask, reset, dhs, dstate):
    hs, (h_T, c_T), _ = lstm.forward(p, xs, state0, mask, reset)
    return float((dhs * hs).sum() + (dstate[0] * h_T).sum() + (dstate[1] * c_T).sum())


@pytest.mark.parametrize("lengths, reset, ids", [(False, False, False), (True, False, False), (False, True, False),
                                                 (True, True, False), (True, True, True)],
                         ids=["plain", "lengths", "reset", "lengths-reset", "ids-lengths-reset"])
def test_gradients_equal_central_differences(lengths, reset, ids):
    p, xs, state0, mask, resets, dhs, dstate = problem(1, lengths, reset, ids)
    _, _, cache = lstm.forward(p, xs, state0, mask, resets)
    dxs, dstate0, grads = lstm.backward(p, dhs, dstate, cache)
    assert grads.keys() == p.keys() == {"W", "U", "b", "b_U", "R"}

    def f():
        return loss(p, xs, state0, mask, resets, dhs, dstate)

    arrays = dict(p) | {"h0": state0[0], "c0": state0[1]} | ({} if ids else {"xs": xs})
    analytic = grads | {"h0": dstate0[0], "c0": dstate0[1]} | ({} if ids else {"xs": dxs})
    errors = {name: rel_err(analytic[name], central_differences(f, a, EPS), resolution(EPS))
              for name, a in arrays.items()}
    assert max(errors.values()) < FD_TOL, errors
    assert np.linalg.norm(grads["R"]) > 1 and (dxs is None) == ids


def torch_lstm(p):
    """nn.LSTM(D, H, proj_size=P) in float64 holding p's arrays, copied as they are."""
    model = torch.nn.LSTM(D, H, proj_size=P, dtype=torch.float64)
    with torch.no_grad():
        for name, key in (("weight_ih_l0", "W"), ("weight_hh_l0", "U"), ("bias_ih_l0", "b"), ("bias_hh_l0", "b_U"),
                          ("weight_hr_l0", "R")):
            getattr(model, name).copy_(torch.from_numpy(p[key]))
    return model


@pytest.mark.parametrize("lengths", [False, True])
def test_equals_torch_lstm_with_proj_size(lengths):
    """Outputs (at the real steps), h_n, c_n and every gradient; with lengths through
    pack_padded_sequence, whose h_n, c_n are each row's state at its last step (the cell's (4))."""
    p, xs, state0, mask, _, dhs, dstate = problem(2, lengths)
    hs, (h_T, c_T), cache = lstm.forward(p, xs, state0, mask)
    dxs, (dh0, dc0), grads = lstm.backward(p, dhs, dstate, cache)

    model = torch_lstm(p)
    x, h0, c0 = (torch.tensor(a, requires_grad=True) for a in (xs, state0[0][None], state0[1][None]))
    seq = torch.nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(LENGTHS), enforce_sorted=False) if lengths else x
    out, (t_h, t_c) = model(seq, (h0, c0))
    if lengths:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    L = (out * torch.from_numpy(dhs)).sum() + (t_h[0] * torch.from_numpy(dstate[0])).sum() \
        + (t_c[0] * torch.from_numpy(dstate[1])).sum()
    L.backward()

    real = np.ones((T, B, 1)) if mask is None else mask
    assert rel_err(hs * real, out.detach().numpy()) < 1e-12
    assert rel_err(h_T, t_h[0].detach().numpy()) < 1e-12 and rel_err(c_T, t_c[0].detach().numpy()) < 1e-12
    t_grads = {"W": model.weight_ih_l0, "U": model.weight_hh_l0, "b": model.bias_ih_l0, "b_U": model.bias_hh_l0,
               "R": model.weight_hr_l0}
    errors = {k: rel_err(grads[k], t.grad.numpy()) for k, t in t_grads.items()}
    errors |= {"xs": rel_err(dxs, x.grad.numpy()), "h0": rel_err(dh0, h0.grad[0].numpy()),
               "c0": rel_err(dc0, c0.grad[0].numpy())}
    assert max(errors.values()) < TORCH_TOL, errors


def autograd_loop(p, xs, state0, mask, reset, dhs, dstate, clip_dh):
    """The cell's equations (0)-(4) as a torch loop, dL/dh_t clamped to [-clip_dh, clip_dh] (when given)
    by a hook on h_t once every use of it has contributed, and recorded: (grads, dxs, dh0, dc0, trace)."""
    W, U, b, b_U, R, x, h0, c0 = (torch.tensor(a, requires_grad=True) for a in
                                  (p["W"], p["U"], p["b"], p["b_U"], p["R"], xs, *state0))
    trace = np.zeros((T, B, P))

    def hook(g, t):
        g = g if clip_dh is None else g.clamp(-clip_dh, clip_dh)
        trace[t] = g.numpy()
        return g

    h, c, hs = h0, c0, []
    for t in range(T):
        if reset is not None:
            h, c = (torch.where(torch.from_numpy(reset[t]), 0.0, s) for s in (h, c))               # (0)
        i, f, g, o = (x[t] @ W.T + b + h @ U.T + b_U).split(H, dim=1)
        c_t = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)                              # (1), (2)
        h_t = (torch.sigmoid(o) * torch.tanh(c_t)) @ R.T                                           # (3), (3')
        if mask is not None:
            h_t, c_t = (torch.where(torch.from_numpy(mask[t]), new, old) for new, old in ((h_t, h), (c_t, c)))  # (4)
        h_t.register_hook(lambda g, t=t: hook(g, t))
        hs.append(h_t)
        h, c = h_t, c_t
    L = (torch.stack(hs) * torch.from_numpy(dhs)).sum() + (h * torch.from_numpy(dstate[0])).sum() \
        + (c * torch.from_numpy(dstate[1])).sum()
    L.backward()
    grads = {"W": W.grad, "U": U.grad, "b": b.grad, "b_U": b_U.grad, "R": R.grad}
    return {k: v.numpy() for k, v in grads.items()}, x.grad.numpy(), h0.grad.numpy(), c0.grad.numpy(), trace


@pytest.mark.parametrize("clip_dh", [None, 0.05])
def test_clip_dh_and_trace_equal_autograd_with_a_clamping_hook(clip_dh):
    p, xs, state0, mask, resets, dhs, dstate = problem(3, lengths=True, reset=True)
    _, _, cache = lstm.forward(p, xs, state0, mask, resets)
    trace = np.zeros((T, B, P))
    dxs, (dh0, dc0), grads = lstm.backward(p, dhs, dstate, cache, clip_dh, trace)
    t_grads, t_dxs, t_dh0, t_dc0, t_trace = autograd_loop(p, xs, state0, mask, resets, dhs, dstate, clip_dh)
    errors = {k: rel_err(grads[k], t_grads[k]) for k in grads}
    errors |= {"xs": rel_err(dxs, t_dxs), "h0": rel_err(dh0, t_dh0), "c0": rel_err(dc0, t_dc0),
               "trace": rel_err(trace, t_trace)}
    assert max(errors.values()) < TORCH_TOL, errors
    if clip_dh is not None:
        assert np.abs(trace).max() == clip_dh                # it binds
        _, _, unclipped = lstm.backward(p, dhs, dstate, cache)
        assert rel_err(grads["R"], unclipped["R"]) > 1e-2


@pytest.mark.parametrize("lengths, reset", [(False, False), (True, True)])
def test_step_jacobian_equals_differences_of_one_step(lengths, reset):
    """J[b] = d(h_t, c_t)[b] / d(h_{t-1}, c_{t-1})[b], (P + H) square: column j by fourth-order central
    differences of one forward step from the state the window's step t saw, on every row at once."""
    p, xs, state0, mask, resets, _, _ = problem(4, lengths, reset)
    _, _, cache = lstm.forward(p, xs, state0, mask, resets)
    hs, cs = cache[2], cache[3]
    for t in range(T):
        J = lstm.step_jacobian(p, cache, t)
        assert J.shape == (B, P + H, P + H)
        s = np.concatenate([state0[0], state0[1]] if t == 0 else [hs[t - 1], cs[t - 1]], axis=1)

        def step(s, t=t):
            one = (slice(t, t + 1),)
            _, (h, c), _ = lstm.forward(p, xs[one], (s[:, :P], s[:, P:]), None if mask is None else mask[one],
                                        None if resets is None else resets[one])
            return np.concatenate([h, c], axis=1)

        numeric = np.zeros_like(J)
        for j in range(P + H):
            e = np.zeros_like(s)
            e[:, j] = EPS
            numeric[:, :, j] = (8 * (step(s + e) - step(s - e)) - (step(s + 2 * e) - step(s - 2 * e))) / (12 * EPS)
        assert rel_err(J, numeric) < 1e-8, t
    if lengths:
        assert np.array_equal(lstm.step_jacobian(p, cache, T - 1)[1], np.eye(P + H))    # row 1 ended at step 1


def test_init_params_with_and_without_a_projection():
    """Without proj_size the same numbers as before (init_uniform); with it U (4H, P) and R (P, H), all
    within PyTorch's bound 1/sqrt(H); proj_size outside 1..H-1 refused, as by nn.LSTM."""
    plain = lstm.init_params(np.random.default_rng(5), D, H, np.float32)
    before = init_uniform(np.random.default_rng(5), D, H, lstm.GATES, np.float32)
    assert plain.keys() == before.keys() and all(np.array_equal(plain[k], before[k]) for k in plain)
    p = lstm.init_params(np.random.default_rng(5), D, H, np.float32, proj_size=P)
    assert {k: v.shape for k, v in p.items()} == {"W": (4 * H, D), "U": (4 * H, P), "b": (4 * H,), "b_U": (4 * H,),
                                                  lstm.PROJECTION: (P, H)}
    assert all(v.dtype == np.float32 and np.abs(v).max() < 1 / np.sqrt(H) for v in p.values())
    R = lstm.init_projection(np.random.default_rng(6), 200, 50, np.float64)
    assert R.shape == (50, 200) and 0.9 / np.sqrt(200) < np.abs(R).max() < 1 / np.sqrt(200)
    for bad in (0, H, H + 1, 2.0, True):
        with pytest.raises(ValueError, match="proj_size: expected an int in 1..4"):
            lstm.init_params(np.random.default_rng(0), D, H, np.float64, proj_size=bad)


def test_plain_cache_has_no_m_and_a_misfit_r_is_named():
    p, xs, state0, *_ = problem(0)
    plain = lstm.init_params(np.random.default_rng(0), D, H, np.float64)
    _, _, cache = lstm.forward(plain, xs, (np.zeros((B, H)), np.zeros((B, H))))
    assert len(cache) == 9 and cache[-1] is None
    assert lstm.forward(p, xs, state0)[2][-1].shape == (T, B, H)
    with pytest.raises(ValueError, match=r"R: expected shape \(P, H\) = \(3, 5\)"):
        lstm.forward(p | {"R": p["R"].T}, xs, state0)
