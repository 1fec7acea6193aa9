"""Names of the parameters in PyTorch, for this module:

    class Model(nn.Module):
        embedding = nn.Embedding(V, E)                       # only with embedding_dim = E
        rnn = nn.RNN / nn.GRU / nn.LSTM(D, H, num_layers=L)  # D = E, or V for one-hot inputs
        head = nn.Linear(H, K)

The layouts are PyTorch's (W is weight_ih_l{k} as it is, gates in PyTorch's order), so moving a
model either way copies arrays and never transposes.
"""

import numpy as np

from .checks import array, describe

PER_LAYER = {"W": "weight_ih", "U": "weight_hh", "b": "bias_ih", "b_U": "bias_hh"}


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
    return {torch_name(name): a for name, a in arrays.items()}


def from_torch(sd, shapes, dtype):
    """sd: {torch name: array-like}; shapes: {our name: shape}. Returns {our name: array of dtype}."""
    if not isinstance(sd, dict):
        raise TypeError(f"state_dict: expected a dict of arrays named as PyTorch names them, got {type(sd).__name__}")
    names = {torch_name(name): name for name in shapes}
    missing = sorted(set(names) - set(sd))
    extra = sorted(set(sd) - set(names))
    if missing or extra:
        raise ValueError(f"state_dict: keys do not match this network; missing {missing}, unexpected {extra} "
                         f"(expected exactly {sorted(names)})")
    out = {}
    for key, name in names.items():
        value = sd[key]
        if hasattr(value, "detach"):                         # a torch tensor
            value = value.detach().cpu().numpy()
        a = array(f"state_dict[{key!r}]", value)
        if a.shape != shapes[name]:
            raise ValueError(f"state_dict[{key!r}]: expected shape {shapes[name]}, got {describe(a)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"state_dict[{key!r}]: expected finite values, got NaN or inf")
        out[name] = a.astype(dtype)
    return out
