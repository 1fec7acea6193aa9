"""Names of the parameters in PyTorch, for this module:

    class Model(nn.Module):
        embedding = nn.Embedding(V, E)                       # only with embedding_dim = E
        rnn = nn.RNN / nn.GRU / nn.LSTM(D, H, num_layers=L)  # D = E, or V for one-hot inputs;
                                                             # bidirectional=, proj_size= as the network's
        head = nn.Linear(D H, K)                             # D = 2 when bidirectional; with cutoffs
                                                             # nn.AdaptiveLogSoftmaxWithLoss(D H, K, cutoffs,
                                                             # div_value, head_bias): head.head.weight,
                                                             # head.tail.{i-1}.0.weight (P_i), .1.weight (V_i)
        init_h = nn.Parameter(L D, H)                        # with learn_init_state (init_c too for the LSTM)

The layouts are PyTorch's (W is weight_ih_l{k} as it is, gates in PyTorch's order), so moving a
model either way copies arrays and never transposes. With tied embeddings the readout has no V of
its own: head.weight is E, in both directions (PyTorch's tied state_dict holds it under both names).
Both directions take exactly this network's keys; any other dict is one ValueError naming the
unexpected and the missing keys, and saying so when they are the other direction's names.
"""

from collections.abc import Mapping

import numpy as np

from ..checks import array, describe

PER_LAYER = {"W": "weight_ih", "U": "weight_hh", "b": "bias_ih", "b_U": "bias_hh", "S": "weight_skip",
             "R": "weight_hr"}


def torch_name(name):
    """PyTorch's name of a parameter: l{k}_reverse.W is rnn.weight_ih_l{k}_reverse (bidirectional), l{k}.R
    rnn.weight_hr_l{k} (proj_size). A learned initial state, init.h (init.c), has no name in PyTorch's
    modules: it is init_h (init_c), an nn.Parameter (L D, H) of the model, expanded over the batch."""
    if name == "E":
        return "embedding.weight"
    if name == "V":
        return "head.weight"
    if name == "c":
        return "head.bias"
    layer, symbol = name.split(".")
    if layer == "head":                                       # the adaptive softmax: head = AdaptiveLogSoftmaxWithLoss
        return {"V": "head.head.weight", "c": "head.head.bias"}[symbol]
    if layer.startswith("tail"):
        return f"head.tail.{int(layer[4:]) - 1}.{ {'P': 0, 'V': 1}[symbol]}.weight"
    if layer == "init":
        return f"init_{symbol}"
    return f"rnn.{PER_LAYER[symbol]}_l{layer[1:]}"


def listed(keys):
    return ", ".join(map(repr, keys))


def mismatched_keys(arg, given, expected, what, other_naming):
    """The ValueError for a dict arg whose keys are not exactly expected: one sentence naming what the
    keys should be, the unexpected ones and the missing ones. other_naming: {key in the other naming:
    a note saying so}, for the first unexpected key found in it (bptt's names where PyTorch's are
    wanted, or the reverse)."""
    unexpected, missing = [k for k in given if k not in expected], [k for k in expected if k not in given]
    got = " and ".join(f"{listed(keys)} {'is' if len(keys) == 1 else 'are'} {word}"
                       for word, keys in (("unexpected", unexpected), ("missing", missing)) if keys)
    notes = [other_naming[k] for k in unexpected if k in other_naming][:1]
    return ValueError(f"{arg}: expected {what} ({listed(expected)}); {got}{''.join(f' ({n})' for n in notes)}")


def to_torch(arrays, shapes):
    """arrays: {our name: array}, keyed exactly like the parameters (shapes: {our name: shape}), such
    as the parameters themselves or their gradients. Returns them under PyTorch's names."""
    what = "a dict keyed like net.params, bptt's names"
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays: expected {what} ({listed(shapes)}), got {type(arrays).__name__}")
    if arrays.keys() != shapes.keys():
        theirs = {torch_name(name): f"{torch_name(name)!r} is PyTorch's name for {name!r}: these are in "
                                    f"PyTorch's names already" for name in shapes}
        raise mismatched_keys("arrays", arrays, list(shapes), what, theirs)
    sd = {torch_name(name): a for name, a in arrays.items()}
    if "V" not in arrays and "c" in arrays and "E" in arrays:
        sd["head.weight"] = arrays["E"]                      # tied
    return sd


def as_array(key, value, shape, dtype):
    if hasattr(value, "detach"):                             # a torch tensor
        value = value.detach().cpu().numpy()
    a = array(f"state_dict[{key!r}]", value)
    if a.shape != shape:
        raise ValueError(f"state_dict[{key!r}]: expected shape {shape}, got {describe(a)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"state_dict[{key!r}]: expected finite values, got NaN or inf")
    return a.astype(dtype)


def from_torch(sd, shapes, dtype):
    """sd: {torch name: array-like}; shapes: {our name: shape}. Returns {our name: array of dtype}."""
    if not isinstance(sd, dict):
        raise TypeError(f"state_dict: expected a dict of arrays named as PyTorch names them, got {type(sd).__name__}")
    names = {torch_name(name): name for name in shapes}
    tied = "V" not in shapes and "c" in shapes              # no V of its own (not an adaptive softmax): tied
    expected = list(names) + (["head.weight"] if tied else [])
    if sd.keys() != set(expected):
        ours = {name: f"{name!r} is bptt's name for {torch_name(name)!r}: bptt-named arrays go in net.params"
                for name in shapes}
        raise mismatched_keys("state_dict", sd, expected, "PyTorch's names of this network's parameters", ours)
    out = {name: as_array(key, sd[key], shapes[name], dtype) for key, name in names.items()}
    if tied and not np.array_equal(as_array("head.weight", sd["head.weight"], shapes["E"], dtype), out["E"]):
        raise ValueError("state_dict['head.weight']: expected the same values as 'embedding.weight' "
                         "(the network has tied embeddings), got different ones")
    return out
