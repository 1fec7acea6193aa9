"""Names of the parameters in PyTorch, for this module:

    class Model(nn.Module):
        embedding = nn.Embedding(V, E)                       # only with embedding_dim = E
        rnn = nn.RNN / nn.GRU / nn.LSTM(D, H, num_layers=L)  # D = E, or V for one-hot inputs
        head = nn.Linear(H, K)

The layouts are PyTorch's (W is weight_ih_l{k} as it is, gates in PyTorch's order), so moving a
model either way copies arrays and never transposes. With tied embeddings the readout has no V of
its own: head.weight is E, in both directions (PyTorch's tied state_dict holds it under both names).
"""

import numpy as np

from ..checks import array, describe

PER_LAYER = {"W": "weight_ih", "U": "weight_hh", "b": "bias_ih", "b_U": "bias_hh", "S": "weight_skip"}


def torch_name(name):
    if name == "E":
        return "embedding.weight"
    if name == "V":
        return "head.weight"
    if name == "c":
        return "head.bias"
    layer, symbol = name.split(".")
    return f"rnn.{PER_LAYER[symbol]}_l{layer[1:]}"


def to_torch(arrays):
    sd = {torch_name(name): a for name, a in arrays.items()}
    if "V" not in arrays and "E" in arrays:
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
    tied = "V" not in shapes
    expected = set(names) | ({"head.weight"} if tied else set())
    missing, extra = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or extra:
        raise ValueError(f"state_dict: keys do not match this network; missing {missing}, unexpected {extra} "
                         f"(expected exactly {sorted(expected)})")
    out = {name: as_array(key, sd[key], shapes[name], dtype) for key, name in names.items()}
    if tied and not np.array_equal(as_array("head.weight", sd["head.weight"], shapes["E"], dtype), out["E"]):
        raise ValueError("state_dict['head.weight']: expected the same values as 'embedding.weight' "
                         "(the network has tied embeddings), got different ones")
    return out
