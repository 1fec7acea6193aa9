"""The dtype of an exported ONNX graph: float32 by default whatever the network's dtype, because ONNX
Runtime runs RNN, GRU, LSTM and a float OneHot in float32 only; a float64 Network (bptt's default)
exported as it is gives a graph ONNX Runtime cannot run. Default export of a float64 network runs
in ONNX Runtime and gives forward's logits and final state to float32's precision, for every cell
and input kind; dtype=np.float64 on request is a double graph, run here by ONNX's own reference
evaluator to 1e-12; `bptt export --dtype` chooses, and its "written" line names the dtype. Also:
a network built from NumPy integer sizes exports and runs (tests/model/test_sizes.py saves it)."""

import numpy as np
import pytest

import bptt
from bptt.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
V, H, K, L, E = 11, 6, 9, 2, 5
SHAPES = [(1, 1), (7, 3)]
FLOAT, DOUBLE = onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE


def float_types(path):
    """The element types of a saved graph's float inputs, outputs and initializers."""
    model = onnx.load(str(path))
    values = list(model.graph.input) + list(model.graph.output)
    types = {v.type.tensor_type.elem_type for v in values} | {t.data_type for t in model.graph.initializer}
    return types - {onnx.TensorProto.INT64}


def problem(rng, inputs, T, B, lstm, dtype):
    x = rng.standard_normal((T, B, V)).astype(dtype) if inputs == "features" else rng.integers(0, V, (T, B))
    parts = tuple((0.5 * rng.standard_normal((L, B, H))).astype(dtype) for _ in range(1 + lstm))
    return x, parts


def feed(x, parts):
    return {"x": x, "h0": parts[0]} | ({"c0": parts[1]} if len(parts) == 2 else {})


def close(got, want, tol):
    """|got - want| <= tol relative to the larger of 1 and want's largest magnitude."""
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= tol * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("inputs", ["onehot", "embedding", "features"])
def test_float64_network_exports_float32_by_default_and_runs_in_onnx_runtime(tmp_path, cell, inputs):
    net = bptt.Network(cell, V, H, K, L, E if inputs == "embedding" else None, seed=4)
    assert net.dtype == np.float64                                       # bptt's default
    path = tmp_path / "model.onnx"
    net.to_onnx(path, inputs="features" if inputs == "features" else "ids")
    session = ort.InferenceSession(str(path))
    lstm = cell == "lstm"
    for T, B in SHAPES:
        x, parts = problem(np.random.default_rng(T + B), inputs, T, B, lstm, np.float32)
        out = session.run(None, feed(x, parts))
        z, final = net.forward(x.astype(np.float64) if inputs == "features" else x,
                               tuple(p.astype(np.float64) for p in parts) if lstm else parts[0].astype(np.float64))
        assert out[0].dtype == np.float32
        close(out[0], z, 1e-5)
        for got, want in zip(out[1:], final if lstm else (final,), strict=True):
            close(got, want, 1e-5)
        assert np.abs(out[1]).max() > 1e-3                               # the state carries something
    assert float_types(path) == {FLOAT}


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("embedding_dim", [None, E])
def test_float64_on_request_is_a_double_graph_that_onnx_reference_runs(tmp_path, cell, embedding_dim):
    from onnx.reference import ReferenceEvaluator

    net = bptt.Network(cell, V, H, K, L, embedding_dim, seed=5)
    path = tmp_path / "model64.onnx"
    net.to_onnx(path, dtype=np.float64)
    assert float_types(path) == {DOUBLE}
    x, parts = problem(np.random.default_rng(0), "ids", 6, 3, cell == "lstm", np.float64)
    out = ReferenceEvaluator(onnx.load(str(path))).run(None, feed(x, parts))
    z, final = net.forward(x, parts if cell == "lstm" else parts[0])
    close(out[0], z, 1e-12)
    close(out[1], final[0] if cell == "lstm" else final, 1e-12)


def test_a_float32_network_can_be_written_as_double_and_other_dtypes_are_refused(tmp_path):
    net = bptt.Network("gru", V, H, K, dtype=np.float32)
    net.to_onnx(tmp_path / "up.onnx", dtype="float64")
    assert float_types(tmp_path / "up.onnx") == {DOUBLE}
    for bad, given in ((np.float16, "float16"), ("int64", "int64"), ("double precision", "'double precision'")):
        with pytest.raises(TypeError, match=rf"^dtype: expected np.float32 or np.float64, got {given}$"):
            net.to_onnx(tmp_path / "bad.onnx", dtype=bad)
        assert not (tmp_path / "bad.onnx").exists()


SIZES = ["input_size", "hidden_size", "output_size", "num_layers"]
SIZE_CASES = [(n, None) for n in SIZES] + [(n, E) for n in SIZES + ["embedding_dim"]]


@pytest.mark.parametrize("name, embedding_dim", SIZE_CASES,
                         ids=[f"{n}-{'embedding' if e else 'onehot'}" for n, e in SIZE_CASES])
def test_numpy_integer_sizes_export_and_run_in_onnx_runtime(tmp_path, name, embedding_dim):
    kw = dict(cell="lstm", input_size=V, hidden_size=H, output_size=K, num_layers=L, embedding_dim=embedding_dim)
    net = bptt.Network(**kw | {name: np.int64(kw[name])}, seed=np.int64(6))
    net.to_onnx(tmp_path / "m.onnx")
    x, parts = problem(np.random.default_rng(1), "ids", 4, 2, True, np.float32)
    out = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, feed(x, parts))
    close(out[0], net.forward(x, tuple(p.astype(np.float64) for p in parts))[0], 1e-5)


def test_export_command_chooses_and_names_the_dtype(tmp_path, capsys):
    from safetensors.numpy import load_file

    run = tmp_path / "run"
    assert main(["train", str(run), "--steps", "4", "--hidden", "8", "--embedding", "4", "--eval-every", "2",
                 "--dtype", "float64"]) == 0
    capsys.readouterr()
    net = bptt.load(run).network
    assert net.dtype == np.float64
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert "(onnx, float32, the best checkpoint, step " in capsys.readouterr().out
    assert float_types(tmp_path / "m.onnx") == {FLOAT}
    x = np.random.default_rng(2).integers(0, net.arch.input_size, (9, 2))
    zeros = np.zeros((net.arch.num_layers, 2, 8), np.float32)
    out = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x, "h0": zeros, "c0": zeros})
    close(out[0], net.forward(x)[0], 1e-5)
    assert main(["export", str(run), "--format", "onnx", "--dtype", "float64", "--out", str(tmp_path / "d.onnx")]) == 0
    assert "(onnx, float64, the best checkpoint" in capsys.readouterr().out
    assert float_types(tmp_path / "d.onnx") == {DOUBLE}
    for asked, dtype in ((None, np.float64), ("float32", np.float32)):             # torch: the run's own by default
        out_file = tmp_path / f"m-{asked}.safetensors"
        assert main(["export", str(run), "--format", "torch", "--out", str(out_file)]
                    + (["--dtype", asked] if asked else [])) == 0
        assert f"(torch, {np.dtype(dtype).name}, the best checkpoint" in capsys.readouterr().out
        tensors = load_file(str(out_file))
        assert {a.dtype for a in tensors.values()} == {np.dtype(dtype)}
        assert np.array_equal(tensors["head.bias"], net.params["c"].astype(dtype))
    assert main(["export", str(run), "--format", "onnx", "--dtype", "float16", "--out", str(tmp_path / "h.onnx")]) == 2
    assert "error: --dtype: invalid choice: 'float16'" in capsys.readouterr().err
    assert not (tmp_path / "h.onnx").exists()
