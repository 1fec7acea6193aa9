"""A Network as an ONNX model, with ONNX's own recurrent operators, for ONNX Runtime and the other
runtimes people deploy with (the `onnx` package builds it; optional: pip install "bptt[onnx]").

    inputs   x      (T, B) int64 token ids, or (T, B, D) float features; T and B dynamic
             h0     (L, B, H) the initial state (zeros to start);  c0 (L, B, H) for the LSTM
    outputs  logits (T, B, K);  h_n (L, B, H);  c_n (L, B, H) for the LSTM

    x -> Gather(E, x) (embedding) | OneHot(x, V) (one-hot ids) | x (features)
      -> per layer k: RNN / GRU / LSTM with W, R, B from l{k}.W, l{k}.U, (l{k}.b, l{k}.b_U) and the
         layer's slice of h0 (c0); its Y (T, 1, B, H) squeezed to the next layer's input
      -> logits = Y V^T + c (MatMul, Add);  h_n, c_n = the layers' Y_h, Y_c concatenated

The gate orders differ: bptt (PyTorch) stacks i, f, g, o for the LSTM and r, z, n for the GRU;
ONNX wants i, o, f, c and z, r, h, so W, R and both biases are re-stacked block by block. bptt's
GRU is PyTorch's (the reset gate after the recurrent product, b_Un inside it): ONNX's
linear_before_reset=1. The skip RNN has no ONNX operator and is refused.

The graph is float32 by default, whatever the network's dtype (bptt's default is float64): ONNX
Runtime runs RNN, GRU, LSTM and a float OneHot in float32 only, so a float64 graph is valid ONNX
(the operators' type constraints allow double) that it cannot run: OneHot and RNN are not
implemented for double (the session is refused), GRU and LSTM fail at the first run ("does not
support double yet"). dtype=np.float64 gives that graph anyway, for runtimes that run double
(onnx.reference.ReferenceEvaluator does).
"""

import numpy as np

from .. import checks, files

OPSET = 17
ONNX_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}     # bptt's gate blocks, in ONNX's order
OPERATOR = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
ACTIVATION = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}


def reorder(a, cell, H):
    """a (G H, ...) with bptt's gate blocks -> ONNX's order of them."""
    return np.concatenate([a[g * H:(g + 1) * H] for g in ONNX_ORDER[cell]])


def graph(net, inputs="ids", dtype=np.float32):
    """The onnx.ModelProto of net (every weight an initializer). inputs: "ids" (token ids, looked up in
    the embedding or one-hot) or "features" (float vectors of input_size, for a network without an
    embedding). dtype: the float type of the weights, the float inputs and the outputs, float32 (the
    default: what ONNX Runtime's recurrent operators run) or float64 (valid ONNX, which ONNX Runtime
    cannot run), whatever net.dtype is."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dtype = checks.float_dtype(dtype)
    arch = net.arch
    p = {name: a.astype(dtype, copy=False) for name, a in net.checked_params().items()}
    checks.one_of("inputs", inputs, ("ids", "features"))
    if inputs == "features" and arch.embedding_dim:
        raise ValueError("inputs: 'features' applies to a network without an embedding (it reads token ids)")
    if arch.cell not in OPERATOR:
        raise ValueError(f"cell: ONNX has no operator for the {arch.cell!r} cell; export rnn, gru or lstm")
    H, L = arch.hidden_size, arch.num_layers
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    inits, nodes = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    if inputs == "features":
        x = helper.make_tensor_value_info("x", elem, ["T", "B", arch.input_size])
        nodes.append(helper.make_node("Identity", ["x"], ["inputs"]))
    elif arch.embedding_dim:
        x = helper.make_tensor_value_info("x", TensorProto.INT64, ["T", "B"])
        nodes.append(helper.make_node("Gather", [const("E", p["E"]), "x"], ["inputs"]))
    else:
        x = helper.make_tensor_value_info("x", TensorProto.INT64, ["T", "B"])
        nodes.append(helper.make_node("OneHot", ["x", const("V_depth", np.array(arch.input_size, np.int64)),
                                                 const("onehot_values", np.array([0, 1], dtype))], ["inputs"]))
    state_names = ["h0", "c0"] if arch.cell == "lstm" else ["h0"]
    graph_inputs = [x] + [helper.make_tensor_value_info(s, elem, [L, "B", H]) for s in state_names]
    layer_in, finals = "inputs", {s: [] for s in state_names}
    for k in range(L):
        W, U, b, b_U = (p[f"l{k}.{n}"] for n in ("W", "U", "b", "b_U"))
        weights = [const(f"W{k}", reorder(W, arch.cell, H)[None]), const(f"R{k}", reorder(U, arch.cell, H)[None]),
                   const(f"B{k}", np.concatenate([reorder(b, arch.cell, H), reorder(b_U, arch.cell, H)])[None])]
        starts, ends, axes = const(f"k{k}", np.array([k])), const(f"k{k}_end", np.array([k + 1])), "axis0"
        state_in = []
        for s in state_names:
            nodes.append(helper.make_node("Slice", [s, starts, ends, axes], [f"{s}_l{k}"]))
            state_in.append(f"{s}_l{k}")
        outputs = [f"Y{k}", f"Y_h{k}"] + ([f"Y_c{k}"] if arch.cell == "lstm" else [])
        attrs = {"hidden_size": H}
        if arch.cell == "gru":
            attrs["linear_before_reset"] = 1
        if arch.cell == "rnn":
            attrs["activations"] = [ACTIVATION[arch.nonlinearity]]
        nodes.append(helper.make_node(OPERATOR[arch.cell], [layer_in, *weights, "", *state_in], outputs, **attrs))
        nodes.append(helper.make_node("Squeeze", [f"Y{k}", "axis1"], [f"layer{k}"]))
        layer_in = f"layer{k}"
        finals["h0"].append(f"Y_h{k}")
        if arch.cell == "lstm":
            finals["c0"].append(f"Y_c{k}")
    const("axis0", np.array([0]))
    const("axis1", np.array([1]))
    readout = p["V"] if "V" in p else p["E"]
    nodes.append(helper.make_node("MatMul", [layer_in, const("V_T", np.ascontiguousarray(readout.T))], ["z"]))
    nodes.append(helper.make_node("Add", ["z", const("c", p["c"])], ["logits"]))
    outputs = [helper.make_tensor_value_info("logits", elem, ["T", "B", arch.output_size])]
    for s, out in (("h0", "h_n"), ("c0", "c_n")):
        if s in finals:
            nodes.append(helper.make_node("Concat", finals[s], [out], axis=0))
            outputs.append(helper.make_tensor_value_info(out, elem, [L, "B", H]))
    model = helper.make_model(helper.make_graph(nodes, "bptt", graph_inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bptt")
    onnx.checker.check_model(model)
    return model


def write(net, path, inputs="ids", overwrite=False, dtype=np.float32):
    """net as an ONNX file at path (graph(), float32 unless dtype says otherwise), written atomically:
    a new file in an existing directory unless overwrite=True."""
    path = files.check_new(path, overwrite)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ValueError("onnx: not installed; pip install 'bptt[onnx]' (the onnx package) to export") from None
    files.write_bytes_atomic(path, graph(net, inputs, dtype).SerializeToString(), replace=overwrite)
