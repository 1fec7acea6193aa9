"""Export: Network.to_onnx (ONNX's own RNN/GRU/LSTM operators) run in ONNX Runtime gives
Network.forward's logits and final state to 1e-5 in float32, for every cell, 1 and 3 layers,
one-hot, embedding and feature inputs, several T and B from one exported file; `bptt export`
writes it and PyTorch safetensors that load into nn.Embedding + nn.LSTM/GRU/RNN + nn.Linear and give
the same logits; refusals are named."""

import numpy as np
import pytest

import bptt
from bptt.cli import main

ort = pytest.importorskip("onnxruntime")
SHAPES = [(1, 1), (7, 3), (20, 5)]
CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("rnn", "sigmoid"), ("gru", "tanh"), ("lstm", "tanh")]


def onnx_outputs(session, x, state, lstm):
    parts = state if lstm else (state,)
    feed = {"x": x, "h0": parts[0]} | ({"c0": parts[1]} if lstm else {})
    return session.run(None, feed)


@pytest.mark.parametrize("cell, nonlinearity", CELLS)
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("inputs", ["onehot", "embedding", "features"])
def test_onnx_runtime_equals_forward(tmp_path, cell, nonlinearity, layers, inputs):
    V, H, K = 11, 8, 9
    net = bptt.Network(cell, V, H, K, layers, 5 if inputs == "embedding" else None, nonlinearity=nonlinearity,
                       dtype=np.float32, seed=layers)
    path = tmp_path / "model.onnx"
    net.to_onnx(path, inputs="features" if inputs == "features" else "ids")
    session = ort.InferenceSession(str(path))
    lstm = cell == "lstm"
    for T, B in SHAPES:                                        # one file, any length and batch
        rng = np.random.default_rng(T * 10 + B)
        x = rng.standard_normal((T, B, V)).astype(np.float32) if inputs == "features" else rng.integers(0, V, (T, B))
        parts = tuple((0.5 * rng.standard_normal((layers, B, H))).astype(np.float32) for _ in range(1 + lstm))
        state = parts if lstm else parts[0]
        z, final = net.forward(x, state)
        out = onnx_outputs(session, x if inputs == "features" else x.astype(np.int64), state, lstm)
        assert out[0].shape == z.shape and np.max(np.abs(out[0] - z)) < 1e-5
        for got, want in zip(out[1:], final if lstm else (final,), strict=True):
            assert got.shape == want.shape and np.max(np.abs(got - want)) < 1e-5
        assert all(np.abs(part).max() > 1e-3 for part in (final if lstm else (final,)))   # the states carry something


@pytest.mark.parametrize("cell, nonlinearity", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
def test_bidirectional_onnx_equals_forward(tmp_path, cell, nonlinearity, layers):
    """direction="bidirectional", both directions' weights stacked; h_n (2 L, B, H) in PyTorch's order."""
    V, H, K = 11, 8, 9
    net = bptt.Network(cell, V, H, K, layers, 5, nonlinearity=nonlinearity, dtype=np.float32, seed=layers,
                       bidirectional=True)
    path = tmp_path / "model.onnx"
    net.to_onnx(path)
    session = ort.InferenceSession(str(path))
    lstm = cell == "lstm"
    for T, B in SHAPES:
        rng = np.random.default_rng(T * 10 + B)
        x = rng.integers(0, V, (T, B))
        parts = tuple((0.5 * rng.standard_normal((2 * layers, B, H))).astype(np.float32) for _ in range(1 + lstm))
        state = parts if lstm else parts[0]
        z, final = net.forward(x, state)
        out = onnx_outputs(session, x.astype(np.int64), state, lstm)
        assert out[0].shape == z.shape and np.max(np.abs(out[0] - z)) < 1e-5
        for got, want in zip(out[1:], final if lstm else (final,), strict=True):
            assert got.shape == want.shape and np.max(np.abs(got - want)) < 1e-5


def test_projection_refused(tmp_path):
    with pytest.raises(ValueError, match="proj_size: ONNX's LSTM operator has no projection"):
        bptt.Network("lstm", 5, 4, 5, proj_size=2).to_onnx(tmp_path / "p.onnx")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_learned_initial_state_is_in_the_graph(tmp_path, cell):
    """h0 (c0) is init.h (init.c) expanded over x's batch: the graph takes x alone."""
    net = bptt.Network(cell, 11, 8, 9, 2, 5, dtype=np.float32, bidirectional=True, learn_init_state=True, seed=4)
    rng = np.random.default_rng(0)
    for name in [n for n in net.params if n.startswith("init.")]:
        net.params[name][...] = rng.standard_normal(net.params[name].shape)
    net.to_onnx(tmp_path / "i.onnx")
    session = ort.InferenceSession(str(tmp_path / "i.onnx"))
    assert [i.name for i in session.get_inputs()] == ["x"]
    for T, B in SHAPES:
        x = rng.integers(0, 11, (T, B))
        z, final = net.forward(x)
        out = session.run(None, {"x": x.astype(np.int64)})
        assert np.max(np.abs(out[0] - z)) < 1e-5
        for got, want in zip(out[1:], final if cell == "lstm" else (final,), strict=True):
            assert np.max(np.abs(got - want)) < 1e-5


def test_tied_embeddings_and_refusals(tmp_path):
    net = bptt.Network("lstm", 10, 6, 10, embedding_dim=6, tie_weights=True, dtype=np.float32)
    net.to_onnx(tmp_path / "tied.onnx")
    x = np.random.default_rng(0).integers(0, 10, (4, 2))
    zeros = np.zeros((1, 2, 6), np.float32)
    out = ort.InferenceSession(str(tmp_path / "tied.onnx")).run(None, {"x": x, "h0": zeros, "c0": zeros})
    assert np.max(np.abs(out[0] - net.forward(x)[0])) < 1e-5
    with pytest.raises(ValueError, match="path: .*tied.onnx exists; bptt does not overwrite"):
        net.to_onnx(tmp_path / "tied.onnx")
    with pytest.raises(ValueError, match="inputs: 'features' applies to a network without an embedding"):
        net.to_onnx(tmp_path / "f.onnx", inputs="features")
    with pytest.raises(ValueError, match="cell: ONNX has no operator for the 'skip' cell"):
        bptt.Network("skip", 5, 4, 5).to_onnx(tmp_path / "skip.onnx")


def test_export_command_writes_onnx_and_pytorch_files(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from bptt.interop import torch_reference

    run = tmp_path / "run"
    assert main(["train", str(run), "--steps", "10", "--hidden", "12", "--layers", "2", "--embedding", "6",
                 "--eval-every", "5"]) == 0
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert main(["export", str(run), "--format", "torch", "--out", str(tmp_path / "m.safetensors"),
                 "--checkpoint", "last"]) == 0
    assert "written: " in capsys.readouterr().out
    trained = bptt.load(run)
    net = trained.network
    x = trained.vocab.encode(list("ROMEO:\nIs it so?"))[:, None]
    z, (h, c) = net.forward(x)
    zeros = np.zeros((2, 1, 12), np.float32)
    out = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x, "h0": zeros, "c0": zeros})
    assert len(out) == 3 and np.max(np.abs(out[0] - z)) < 1e-5
    assert np.max(np.abs(out[1] - h)) < 1e-5 and np.max(np.abs(out[2] - c)) < 1e-5      # h_n and c_n
    assert np.abs(c).max() > 1e-3                                              # c_n carries something
    model = torch_reference.Model(bptt.load(run, checkpoint="last").network.arch)
    model.load_state_dict(load_file(str(tmp_path / "m.safetensors")))           # the modules' own names
    last = bptt.load(run, checkpoint="last").network
    with torch.no_grad():
        hs, _ = model(torch.as_tensor(x), None)
        logits = model.head(hs).numpy()
    assert np.max(np.abs(logits - last.forward(x)[0])) < 1e-5
    before = (tmp_path / "m.safetensors").read_bytes()
    assert main(["export", str(run), "--format", "torch", "--out", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "error: --out: " in err and "exists; bptt does not overwrite a file (give a new file)" in err
    assert (tmp_path / "m.safetensors").read_bytes() == before
