"""A Network as an ONNX model, with ONNX's own recurrent operators, for ONNX Runtime and the other
runtimes people deploy with (the `onnx` package builds it; optional: pip install "bptt[onnx]").

    inputs   x      (T, B) int64 token ids, or (T, B, D) float features; T and B dynamic
             h0     (L D, B, H) the initial state (zeros to start);  c0 (L D, B, H) for the LSTM
    outputs  logits (T, B, K);  h_n (L D, B, H);  c_n (L D, B, H) for the LSTM

    x -> Gather(E, x) (embedding) | OneHot(x, V) (one-hot ids) | x (features)
      -> per layer k: RNN / GRU / LSTM with W, R, B from l{k}.W, l{k}.U, (l{k}.b, l{k}.b_U) and the
         layer's slice of h0 (c0); its Y (T, D, B, H) made (T, B, D H), the next layer's input
         (bidirectional: direction="bidirectional", both directions' weights stacked, D = 2; the
         reverse direction runs over the whole window, as bptt's does without lengths)
      -> logits = Y V^T + c (MatMul, Add);  h_n, c_n = the layers' Y_h, Y_c concatenated

The gate orders differ: bptt (PyTorch) stacks i, f, g, o for the LSTM and r, z, n for the GRU;
ONNX wants i, o, f, c and z, r, h, so W, R and both biases are re-stacked block by block. bptt's
GRU is PyTorch's (the reset gate after the recurrent product, b_Un inside it): ONNX's
linear_before_reset=1. The skip RNN has no ONNX operator and is refused; so is an LSTM with
projections (ONNX's LSTM has no projection). A learned initial state is part of the graph: h0 (c0)
is init.h (init.c) expanded over x's batch, and the graph has no h0 (c0) input.

The graph is float32 by default, whatever the network's dtype (bptt's default is float64): ONNX
Runtime runs RNN, GRU, LSTM and a float OneHot in float32 only, so a float64 graph is valid ONNX
(the operators' type constraints allow double) that it cannot run: OneHot and RNN are not
implemented for double (the session is refused), GRU and LSTM fail at the first run ("does not
support double yet"). dtype=np.float64 gives that graph anyway, for runtimes that run double
(onnx.reference.ReferenceEvaluator does).
"""

import numpy as np

from .. import checks, files
from . import engine

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
    from onnx import helper

    dtype = checks.float_dtype(dtype)
    arch = net.arch
    p = {name: a.astype(dtype, copy=False) for name, a in net.checked_params().items()}
    checks.one_of("inputs", inputs, ("ids", "features"))
    if inputs == "features" and arch.embedding_dim:
        raise ValueError("inputs: 'features' applies to a network without an embedding (it reads token ids)")
    if arch.cell not in OPERATOR:
        raise ValueError(f"cell: ONNX has no operator for the {arch.cell!r} cell; export rnn, gru or lstm")
    if arch.cutoffs:
        raise ValueError("cutoffs: the adaptive softmax has no ONNX export yet; export a network with the full "
                         "readout")
    if arch.proj_size:
        raise ValueError(f"proj_size: ONNX's LSTM operator has no projection (h_t = R (o_t * tanh(c_t))); a network "
                         f"with proj_size={arch.proj_size} cannot be exported with it")
    H, L = arch.hidden_size, arch.num_layers * arch.directions
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    g = Parts()
    x = input_nodes(g, arch, p, inputs, elem)
    states = ["h0", "c0"] if arch.cell == "lstm" else ["h0"]
    if arch.learn_init_state:                     # h0 (c0) from the learned state, no inputs of their own
        learned_state(g, p, states)
    g.const("axis0", np.array([0]))
    g.const("axis1", np.array([1]))
    layer_in, finals = "inputs", []
    for k in range(arch.num_layers):
        layer_in, final = layer_nodes(g, arch, p, k, layer_in, states)
        finals.append(final)
    g.node("MatMul", [layer_in, g.const("V_T", np.ascontiguousarray(engine.readout_weights(p).T))], ["z"])
    g.node("Add", ["z", g.const("c", p["c"])], ["logits"])
    outputs = [helper.make_tensor_value_info("logits", elem, ["T", "B", arch.output_size])]
    for i, out in enumerate(["h_n", "c_n"][:len(states)]):
        g.node("Concat", [final[i] for final in finals], [out], axis=0)
        outputs.append(helper.make_tensor_value_info(out, elem, [L, "B", H]))
    graph_inputs = [x] + [helper.make_tensor_value_info(s, elem, [L, "B", H]) for s in states
                          if not arch.learn_init_state]
    model = helper.make_model(helper.make_graph(g.nodes, "bptt", graph_inputs, outputs, g.inits),
                              opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bptt")
    onnx.checker.check_model(model)
    return model


def learned_state(g, p, states):
    """h0 (and c0), (L D, B, H): the learned initial state init.h (init.c), (L D, H), expanded over
    the batch B of x (its axis 1)."""
    g.node("Shape", ["x"], ["x_shape"])
    g.node("Gather", ["x_shape", g.const("axis1_index", np.array([1]))], ["batch"])
    for s in states:
        init = p[f"init.{s[0]}"]                                  # h0 -> init.h, c0 -> init.c
        rows, size = g.const(f"{s}_rows", np.array([init.shape[0]])), g.const(f"{s}_size", np.array([init.shape[1]]))
        g.node("Concat", [rows, "batch", size], [f"{s}_shape"], axis=0)
        g.node("Expand", [g.const(f"init_{s[0]}", init[:, None, :]), f"{s}_shape"], [s])


class Parts:
    """The nodes and initializers of a graph being built."""

    def __init__(self):
        self.nodes, self.inits = [], []

    def const(self, name, value):
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op, inputs, outputs, **attrs):
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, outputs, **attrs))


def input_nodes(g, arch, p, inputs, elem):
    """x -> "inputs", the first layer's input: Gather(E, x) (embedding), OneHot(x, V) (one-hot ids)
    or x itself (features). Returns the graph input x."""
    from onnx import TensorProto, helper

    if inputs == "features":
        g.node("Identity", ["x"], ["inputs"])
        return helper.make_tensor_value_info("x", elem, ["T", "B", arch.input_size])
    if arch.embedding_dim:
        g.node("Gather", [g.const("E", p["E"]), "x"], ["inputs"])
    else:
        values = np.array([0, 1], p["c"].dtype)
        g.node("OneHot", ["x", g.const("V_depth", np.array(arch.input_size, np.int64)),
                          g.const("onehot_values", values)], ["inputs"])
    return helper.make_tensor_value_info("x", TensorProto.INT64, ["T", "B"])


def layer_nodes(g, arch, p, k, layer_in, states):
    """Layer k: ONNX's RNN / GRU / LSTM on layer_in from its slice of h0 (and c0), with W, R and B
    re-stacked in ONNX's gate order, one slice per direction. Returns (its output (T, B, D H), its
    final h (and c) (D, B, H))."""
    H, D = arch.hidden_size, arch.directions

    def stacked(symbol):                            # (D, ...): each direction's, in ONNX's gate order
        return np.stack([reorder(p[f"{name}.{symbol}"], arch.cell, H) for name in arch.layer_names(k)])

    weights = [g.const(f"W{k}", stacked("W")), g.const(f"R{k}", stacked("U")),
               g.const(f"B{k}", np.concatenate([stacked("b"), stacked("b_U")], axis=1))]
    starts, ends = g.const(f"k{k}", np.array([k * D])), g.const(f"k{k}_end", np.array([(k + 1) * D]))
    for s in states:
        g.node("Slice", [s, starts, ends, "axis0"], [f"{s}_l{k}"])
    finals = [f"Y_h{k}"] + ([f"Y_c{k}"] if arch.cell == "lstm" else [])
    attrs = {"hidden_size": H} | ({"direction": "bidirectional"} if D == 2 else {})
    if arch.cell == "gru":
        attrs["linear_before_reset"] = 1
    if arch.cell == "rnn":
        attrs["activations"] = [ACTIVATION[arch.nonlinearity]] * D          # one per direction
    g.node(OPERATOR[arch.cell], [layer_in, *weights, "", *[f"{s}_l{k}" for s in states]], [f"Y{k}", *finals], **attrs)
    if D == 1:
        g.node("Squeeze", [f"Y{k}", "axis1"], [f"layer{k}"])
        return f"layer{k}", finals
    g.node("Transpose", [f"Y{k}"], [f"Y{k}_T"], perm=[0, 2, 1, 3])            # (T, B, D, H)
    g.node("Reshape", [f"Y{k}_T", g.const(f"TBDH{k}", np.array([0, 0, -1]))], [f"layer{k}"])   # [h_fwd; h_bwd]
    return f"layer{k}", finals


def write(net, path, inputs="ids", overwrite=False, dtype=np.float32):
    """net as an ONNX file at path (graph(), float32 unless dtype says otherwise), written atomically:
    a new file in an existing directory unless overwrite=True."""
    path = files.check_new(path, overwrite)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ValueError("onnx: not installed; pip install 'bptt[onnx]' (the onnx package) to export") from None
    files.write_bytes_atomic(path, graph(net, inputs, dtype).SerializeToString(), replace=overwrite)
