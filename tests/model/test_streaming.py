"""Streaming inference (bptt.model.streaming, bptt.fast.stepping): a step gives what a forward over the
same tokens gives, to round-off in float64 (token by token, or in short windows, every cell, one and
two layers, every kind of input, one row, a few rows and enough rows for two threads, both engines);
its bad inputs are named; and packed weights never outlive the parameters they were packed from."""

import gc

import numpy as np
import pytest

import bptt
from bptt.fast import stepping
from bptt.model import engine, streaming

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("rnn", "sigmoid"), ("gru", "tanh"), ("lstm", "tanh")]
V, H, K, D, EMB = 11, 7, 5, 4, 3
INPUTS = ["one-hot", "embedding", "embedding-unfolded", "floats"]


def make(cell, nonlinearity="tanh", inputs="embedding", layers=2, dtype=np.float64, engine_=None, **kw):
    size = D if inputs == "floats" else V
    emb = EMB if inputs.startswith("embedding") else None
    return bptt.Network(cell, size, H, K, num_layers=layers, embedding_dim=emb, nonlinearity=nonlinearity,
                        dtype=dtype, seed=3, engine=engine_, **kw)


def tokens(inputs, T, B, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, B, D)) if inputs == "floats" else rng.integers(0, V, (T, B))


def parts(state):
    return state if isinstance(state, tuple) else (state,)


def assert_close(a, b, tol=1e-12):
    for x, y in zip(parts(a), parts(b), strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype
        assert np.max(np.abs(x - y), initial=0) <= tol * max(1.0, np.max(np.abs(y))), np.max(np.abs(x - y))


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("B", [1, 5, 33])                 # 33: two blocks of rows, on two threads where there are two
@pytest.mark.parametrize("engine_", ["fast", "numpy"])
def test_token_by_token_equals_one_forward(cell, nonlinearity, inputs, layers, B, engine_, monkeypatch):
    if inputs == "embedding-unfolded":                      # the embedding row gathered and projected at each step
        monkeypatch.setattr(stepping, "TABLE_BYTES", 0)
    monkeypatch.setattr(stepping, "MIN_FLOP", 0)            # blocks of rows however small the network
    net = make(cell, nonlinearity, inputs, layers, engine_=engine_)
    T = 6
    x = tokens(inputs, T, B)
    state0 = net.forward(tokens(inputs, 3, B, seed=1))[1]    # a state of the right layout, not zeros
    z, final = net.forward(x, state0)
    with net.stepper() as s:
        state, zs = state0, []
        for t in range(T):
            z_t, state = s.step(x[t], state)
            assert z_t.shape == (B, K)
            zs.append(z_t)
    assert_close(np.stack(zs), z)
    assert_close(state, final)
    for a, b in zip(parts(state0), parts(net.forward(tokens(inputs, 3, B, seed=1))[1]), strict=True):
        assert np.array_equal(a, b)                         # the caller's state is not updated in place


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
@pytest.mark.parametrize("inputs", ["embedding", "floats"])
def test_short_windows_equal_one_forward_and_none_is_zeros(cell, nonlinearity, inputs):
    net = make(cell, nonlinearity, inputs)
    x = tokens(inputs, 9, 4)
    z, final = net.forward(x)
    zeros = tuple(np.zeros((2, 4, H)) for _ in parts(final))
    with net.stepper() as s:
        z1, state = s.step(x[:3])                           # state None: zeros
        z1_zeros, _ = s.step(x[:3], zeros if cell == "lstm" else zeros[0])
        z2, state = s.step(x[3:6], state)
        z3, state = s.step(x[6:], state)
    assert z1.shape == (3, 4, K)
    assert np.array_equal(z1, z1_zeros)
    assert_close(np.concatenate([z1, z2, z3]), z)
    assert_close(state, final)


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
@pytest.mark.parametrize("B", [1, 33])
def test_float32_agrees_with_the_forward(cell, nonlinearity, B, monkeypatch):
    monkeypatch.setattr(stepping, "MIN_FLOP", 0)
    net = make(cell, nonlinearity, "embedding", dtype=np.float32)
    x = tokens("embedding", 12, B)
    z, final = net.forward(x)
    with net.stepper() as s:
        state, zs = None, []
        for t in range(12):
            z_t, state = s.step(x[t], state)
            zs.append(z_t)
    assert_close(np.stack(zs), z, tol=1e-5)
    assert_close(state, final, tol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_tied_embeddings_and_both_engines_agree(cell):
    nets = [bptt.Network(cell, V, H, V, num_layers=2, embedding_dim=H, tie_weights=True, seed=4, engine=e)
            for e in ("fast", "numpy")]
    x = tokens("embedding", 5, 3)
    results = []
    for net in nets:
        with net.stepper() as s:
            z_a, state = s.step(x[:2])
            z_b, state = s.step(x[2:], state)
        z, final = net.forward(x)
        assert_close(np.concatenate([z_a, z_b]), z)
        assert_close(state, final)
        results.append((z_b, state))
    assert_close(results[0][0], results[1][0])
    assert_close(results[0][1], results[1][1])


def test_the_skip_rnn_steps_on_the_reference():
    net = bptt.Network("skip", V, H, K, num_layers=2, embedding_dim=EMB, skip=3, seed=5)
    x = tokens("embedding", 7, 2)
    z, final = net.forward(x)
    state, zs = None, []
    with net.stepper() as s:
        for t in range(7):
            z_t, state = s.step(x[t], state)
            zs.append(z_t)
    assert_close(np.stack(zs), z)
    assert_close(state, final)


@pytest.mark.parametrize("engine_", ["fast", "numpy"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_learned_initial_state_is_where_none_starts(engine_, cell):
    net = make(cell, engine_=engine_, learn_init_state=True)
    rng = np.random.default_rng(6)
    net.params = {k: a + (rng.standard_normal(a.shape) if k.startswith("init.") else 0) for k, a in net.params.items()}
    x = tokens("embedding", 4, 3)
    z, final = net.forward(x)
    with net.stepper() as s:
        z_a, state = s.step(x[0])
        z_b, state = s.step(x[1:], state)
    assert_close(np.concatenate([z_a[None], z_b]), z)
    assert_close(state, final)
    zeros = engine.public_state(tuple(np.zeros_like(p) for p in parts(final)))
    assert not np.allclose(z_a, net.forward(x[:1], zeros)[0][0])          # None is not zeros here


@pytest.mark.parametrize("inputs", ["one-hot", "embedding", "floats"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("B", [1, 33])
def test_an_lstm_with_projections_agrees_with_the_reference(inputs, layers, B, monkeypatch):
    monkeypatch.setattr(stepping, "MIN_FLOP", 0)
    nets = [make("lstm", inputs=inputs, layers=layers, engine_=e, proj_size=4) for e in ("fast", "numpy")]
    x = tokens(inputs, 5, B)
    z, final = nets[1].forward(x)                           # the reference cells
    for net in nets:
        with net.stepper() as s:
            z_a, state = s.step(x[:2])
            z_b, state = s.step(x[2], state)
            z_c, state = s.step(x[3:], state)
        assert state[0].shape == (layers, B, 4) and state[1].shape == (layers, B, H)
        assert_close(np.concatenate([z_a, z_b[None], z_c]), z)
        assert_close(state, final)


def test_a_bidirectional_network_has_no_steps():
    net = make("gru", bidirectional=True)
    with pytest.raises(ValueError, match=r"bidirectional: a bidirectional network .* cannot take a stream"):
        net.stepper()
    assert all(a.flags.writeable for a in net.params.values())


def test_network_step_and_engine_step_pack_for_one_call():
    net = make("lstm")
    x = tokens("embedding", 4, 3)
    z, final = net.forward(x)
    z_net, state = net.step(x)
    z_engine, state_engine = streaming.step(net.params, net.arch, x)
    assert_close(z_net, z)
    assert_close(z_engine, z)
    assert_close(state, final)
    assert_close(state_engine, final)
    assert all(a.flags.writeable for a in net.params.values())      # released after the call


# ---- bad inputs ------------------------------------------------------------------------------------

BAD_X = [
    (np.zeros((2, 3, 4), np.int64), ValueError, r"x: expected int token ids of shape \(B,\) for one step or \(T, B\)"),
    (np.array(3), ValueError, r"got int64 array of shape \(\)"),
    (np.array([0, 11]), ValueError, r"x: expected token ids in \[0, 11\), got min 0 and max 11"),
    (np.array([-1, 2]), ValueError, r"x: expected token ids in \[0, 11\)"),
    (np.zeros((2, 4)), ValueError, r"x: expected int token ids.*got float64 array of shape \(2, 4\)"),
    (np.zeros((2, 0), np.int64), ValueError, r"x: expected at least one step and one row"),
    ("abc", TypeError, r"x: expected a numeric array"),
]


@pytest.mark.parametrize("engine_", ["fast", "numpy"])
@pytest.mark.parametrize("x,error,message", BAD_X, ids=[m[:30] for _, _, m in BAD_X])
def test_bad_inputs_are_named(engine_, x, error, message):
    with make("lstm", engine_=engine_).stepper() as s:
        with pytest.raises(error, match=message):
            s.step(x)


@pytest.mark.parametrize("engine_", ["fast", "numpy"])
def test_bad_float_inputs_are_named(engine_):
    with make("gru", inputs="floats", engine_=engine_).stepper() as s:
        with pytest.raises(ValueError, match=r"x: expected .*or floats of shape \(B, 4\) or \(T, B, 4\).*"
                                             r"got float64 array of shape \(3, 5\) \(input_size is 4\)"):
            s.step(np.zeros((3, 5)))
        bad = np.zeros((2, 4))
        bad[1, 2] = np.nan
        with pytest.raises(ValueError, match=r"x: expected finite values, got nan at index \(0, 1, 2\)"):
            s.step(bad)
        z, state = s.step(np.zeros((2, 4), np.float32))      # cast to the network's dtype
        assert z.dtype == np.float64 and state.dtype == np.float64


@pytest.mark.parametrize("engine_", ["fast", "numpy"])
def test_bad_states_are_named(engine_):
    gru, lstm = make("gru", engine_=engine_), make("lstm", engine_=engine_)
    x = np.array([1, 2, 3])
    with gru.stepper() as s:
        with pytest.raises(ValueError, match=r"state: expected an array of shape \(L, B, H\) = \(2, 3, 7\); "
                                             r"got float64 array of shape \(2, 4, 7\)"):
            s.step(x, np.zeros((2, 4, H)))
        with pytest.raises(TypeError, match=r"state: expected an array .* got a tuple of 2"):
            s.step(x, (np.zeros((2, 3, H)), np.zeros((2, 3, H))))
        bad = np.zeros((2, 3, H))
        bad[1, 0, 4] = np.inf
        with pytest.raises(ValueError, match=r"state: expected finite values, got inf at index \(1, 0, 4\)"):
            s.step(x, bad)
    with lstm.stepper() as s:
        with pytest.raises(TypeError, match=r"state: expected a tuple \(h, c\) of arrays"):
            s.step(x, np.zeros((2, 3, H)))
        h, c = np.zeros((2, 3, H)), np.zeros((2, 3, H))
        c[0, 2, 0] = np.nan
        with pytest.raises(ValueError, match=r"state c: expected finite values, got nan at index \(0, 2, 0\)"):
            s.step(x, (h, c))
        z, (h1, c1) = s.step(x, (h.astype(np.float32), np.zeros((2, 3, H), np.float32)))
        assert h1.dtype == np.float64 and z.shape == (3, K)


def test_bad_parameters_and_options_are_named():
    net = make("lstm")
    with pytest.raises(TypeError, match=r"threads: expected a positive int"):
        net.stepper(threads=1.5)
    params = dict(net.params)
    params["l0.U"] = params["l0.U"][:, :3]
    with pytest.raises(ValueError, match=r"params\['l0.U'\]: expected shape \(28, 7\), got \(28, 3\)"):
        streaming.Stepper(params, net.arch)
    s = net.stepper()
    s.close()
    with pytest.raises(ValueError, match=r"stepper: closed"):
        s.step(np.array([1]))


# ---- stale weights -----------------------------------------------------------------------------------

def test_parameters_cannot_change_in_place_while_packed():
    net = make("lstm")
    U = net.params["l1.U"]
    with net.stepper() as s:
        z, state = s.step(np.array([1, 2]))
        with pytest.raises(ValueError, match="read-only"):
            U *= 2                                          # an optimiser's in-place update
        with pytest.raises(ValueError, match="read-only"):
            net.params["c"][0] = 5
    assert all(a.flags.writeable for a in net.params.values())          # writeable again after close
    U *= 2
    assert_close(net.step(np.array([1, 2]))[0], net.forward(np.array([[1, 2]]))[0][0])


@pytest.mark.parametrize("engine_", ["fast", "numpy"])
def test_replaced_parameters_are_packed_again(engine_):
    net = make("gru", engine_=engine_)
    x = tokens("embedding", 3, 4)
    with net.stepper() as s:
        before, _ = s.step(x)
        net.params["V"] = net.params["V"] * 2               # one array replaced
        after, _ = s.step(x)
        assert_close(after, net.forward(x)[0])
        assert not np.allclose(after, before)
        net.params = {k: a * 0.5 for k, a in net.params.items()}    # the whole dict (load_torch_state_dict does)
        assert_close(s.step(x)[0], net.forward(x)[0])
        old = net.params["l0.W"]
        old.flags.writeable = True                           # released by hand, then changed in place
        old += 1
        assert_close(s.step(x)[0], net.forward(x)[0])


def test_a_stepper_over_a_dict_follows_its_entries():
    net = make("rnn")
    params = dict(net.params)
    x = tokens("embedding", 2, 3)
    with streaming.Stepper(params, net.arch) as s:
        s.step(x)
        params["l1.b_U"] = params["l1.b_U"] + 1
        assert_close(s.step(x)[0], engine.logits(params, net.arch, x)[0])
    assert all(a.flags.writeable for a in params.values())


def test_an_unclosed_stepper_releases_the_parameters_when_collected():
    net = make("lstm")
    s = net.stepper()
    s.step(np.array([0]))
    assert not any(a.flags.writeable for a in net.params.values())
    del s
    gc.collect()
    assert all(a.flags.writeable for a in net.params.values())


def test_read_only_parameters_stay_read_only():
    net = make("lstm")
    net.params["c"].flags.writeable = False
    with net.stepper() as s:
        s.step(np.array([0]))
    assert not net.params["c"].flags.writeable
    assert net.params["V"].flags.writeable
