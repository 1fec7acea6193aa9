"""Validation of everything a user hands to the public API.

Each function takes the raw argument, raises ValueError/TypeError naming the argument, what was
expected and what was given, and returns the array the engine will use.
"""

import math
import numbers
from collections.abc import Mapping

import numpy as np

TARGETS = ("every", "last")
DTYPES = (np.float32, np.float64)
FLOATS = tuple(np.dtype(d) for d in DTYPES)


def describe(a):
    a = np.asarray(a)
    return f"{a.dtype} array of shape {a.shape}"


def positive_int(name, value, minimum=1):
    """value as a plain int: any integer, NumPy's included (np.int64(5) -> 5, so what is stored from
    it is JSON in a saved network's metadata and an int in an ONNX shape); a float, even 5.0, a bool
    or anything else is a TypeError naming the argument, a value below minimum a ValueError."""
    what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected {what}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name}: expected {what}, got {value}")
    return int(value)


def flag(name, value):
    """value as a plain bool: True, False or NumPy's bool (np.bool_ is not JSON); an int or anything
    else is a TypeError naming the argument."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name}: expected True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


NONNEGATIVE = "a finite float >= 0"


def nonnegative(x):
    return 0.0 <= x < math.inf


def real(name, value, expected, ok):
    """value as a Python float (NumPy then keeps the arrays' dtype) for which ok(value) holds, or an
    error naming `name` and what was expected."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {expected}, got {value!r} ({type(value).__name__})")
    x = float(value)
    if not ok(x):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return x


def one_of(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def float_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected np.float32 or np.float64, got {dtype!r}") from None
    if dt not in FLOATS:
        raise TypeError(f"dtype: expected np.float32 or np.float64, got {dt}")
    return dt


def array(name, value):
    try:
        a = np.asarray(value)
    except Exception as e:  # ragged lists and other things NumPy cannot make an array of
        raise TypeError(f"{name}: expected an array, got {type(value).__name__} ({e})") from None
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a numeric array, got {describe(a)}")
    return a


def finite(name, a):
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{name}: expected finite values, got {a[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
    return a


def params(p, shapes, dtype=None):
    """p: the parameters, a dict with exactly the keys of shapes (arch.param_shapes()), each a NumPy
    array of its shape, all of one float dtype: dtype (the network's) when given, else the dtype
    most of them have (a tie goes to p["c"]'s). Returns that dtype. Views are fine (the engine
    reads strided arrays); the values are not checked here, it runs on every step."""
    keys = ", ".join(shapes)
    if not isinstance(p, dict):
        raise TypeError(f"params: expected a dict of arrays keyed {keys}; got {type(p).__name__}")
    if p.keys() != shapes.keys():
        missing = [repr(k) for k in shapes if k not in p]
        if missing:
            raise ValueError(f"params: missing {', '.join(missing)} (expected keys: {keys})")
        unexpected = [repr(k) for k in p if k not in shapes]
        raise ValueError(f"params: unexpected {', '.join(unexpected)} (expected keys: {keys})")
    counts = {}
    for name, shape in shapes.items():
        a = p[name]
        if not isinstance(a, np.ndarray):
            raise TypeError(f"params[{name!r}]: expected a NumPy array of shape {shape}, got {type(a).__name__}")
        if a.shape != shape:
            raise ValueError(f"params[{name!r}]: expected shape {shape}, got {a.shape}")
        counts[a.dtype] = counts.get(a.dtype, 0) + 1
    if dtype is not None:
        dtype = np.dtype(dtype)                                # np.float64, "float64" or np.dtype alike
    else:
        floats = [d for d in counts if d in FLOATS]
        if not floats:
            raise TypeError(f"params: expected float32 or float64 arrays, got {', '.join(map(str, counts))}; "
                            f"cast them with .astype(np.float64)")
        last = p[list(shapes)[-1]].dtype                       # ties go to the last parameter's (the readout's)
        dtype = max(floats, key=lambda d: (counts[d], d == last))
    if len(counts) > 1 or dtype not in counts:
        like = "like the other parameters" if dtype in counts else "(the network's dtype)"
        bad = [f"params[{name!r}]: expected {dtype} {like}, got {p[name].dtype}" for name in shapes
               if p[name].dtype != dtype]
        raise ValueError(f"{'; '.join(bad)}; cast {'it' if len(bad) == 1 else 'them'} with .astype(np.{dtype}) "
                         f"(all parameters share one dtype)")
    return dtype


def lengths_mask(lengths, T, B):
    """lengths (B,) ints in [1, T] -> mask (T, B, 1) bool, True where t < lengths[b]; None -> None."""
    if lengths is None:
        return None
    n = array("lengths", lengths)
    if n.dtype.kind not in "iu" or n.shape != (B,):
        raise ValueError(f"lengths: expected ints of shape (B,) = ({B},), got {describe(n)}")
    if n.min() < 1 or n.max() > T:
        raise ValueError(f"lengths: expected every length in [1, T] = [1, {T}], got min {n.min()} and max {n.max()}")
    return (np.arange(T)[:, None] < n[None, :])[:, :, None]


def bool_mask(name, m, T, B):
    a = array(name, m)
    if a.dtype != bool or a.shape != (T, B):
        raise ValueError(f"{name}: expected a bool array of shape (T, B) = ({T}, {B}), got {describe(a)}")
    return a


def inputs(x, vocab_or_features, embedded, dtype):
    """x: (T, B) int ids in [0, V), or (T, B, D) floats when not embedded. Returns (x, T, B)."""
    a = array("x", x)
    V = vocab_or_features
    expected = (f"int token ids of shape (T, B) in [0, {V})" if embedded else
                f"int token ids of shape (T, B) in [0, {V}) or floats of shape (T, B, {V})")
    if a.dtype.kind in "iu" and a.ndim == 2:
        pass
    elif a.dtype.kind == "f" and a.ndim == 3 and not embedded:
        if a.shape[2] != V:
            raise ValueError(f"x: expected {expected}; got {describe(a)} (input_size is {V})")
        a = a.astype(dtype, copy=False)
    else:
        raise ValueError(f"x: expected {expected}; got {describe(a)}")
    T, B = a.shape[:2]
    if T == 0 or B == 0:
        raise ValueError(f"x: expected at least one time step and one sequence, got {describe(a)} (T = {T}, B = {B})")
    return a, T, B


def valid_inputs(a, V, mask):
    """Range and finiteness checks on the positions that count (padding is set to 0 in a copy)."""
    if mask is not None:
        keep = mask if a.ndim == 3 else mask[:, :, 0]
        a = np.where(keep, a, 0).astype(a.dtype, copy=False)
    if a.ndim == 2:
        if a.min() < 0 or a.max() >= V:
            raise ValueError(f"x: expected token ids in [0, {V}), got min {a.min()} and max {a.max()}")
    else:
        finite("x", a)
    return a


def targets(y, target, loss, T, B, K, dtype, mask):
    """y for the loss: returns (N,) ids or (N, K) floats, N = T*B (every) or B (last)."""
    a = array("y", y)
    lead = (T, B) if target == "every" else (B,)
    if loss == "cross_entropy":
        if a.dtype.kind not in "iu" or a.shape != lead:
            raise ValueError(f"y: expected int class ids of shape {lead} for loss='cross_entropy', "
                             f"target={target!r}; got {describe(a)}")
    else:
        if a.dtype.kind != "f" or a.shape != lead + (K,):
            raise ValueError(f"y: expected floats of shape {lead + (K,)} for loss='mse', target={target!r}; "
                             f"got {describe(a)}")
        a = a.astype(dtype, copy=False)
    if mask is not None and target == "every":
        keep = mask if a.ndim == 3 else mask[:, :, 0]
        a = np.where(keep, a, 0).astype(a.dtype, copy=False)
    if loss == "cross_entropy":
        if a.min() < 0 or a.max() >= K:
            raise ValueError(f"y: expected class ids in [0, {K}) (output_size), got min {a.min()} and max {a.max()}")
        return a.reshape(-1)
    finite("y", a)
    return a.reshape(-1, K)


def state(s, parts, L, B, H, dtype):
    """s: None, an (L, B, H) array (one part) or a tuple of them (h, c). Returns the tuple. H: the
    size of every part, or a tuple of each part's (an LSTM with projections: h (L, B, P), c (L, B, H));
    L counts the layers' directions (2 L for a bidirectional network)."""
    sizes = H if isinstance(H, tuple) else (H,) * len(parts)
    shapes = [(L, B, size) for size in sizes]
    if len(set(sizes)) == 1:
        expected = (f"an array of shape (L, B, H) = {shapes[0]}" if len(parts) == 1 else
                    f"a tuple ({', '.join(parts)}) of arrays of shape (L, B, H) = {shapes[0]}")
    else:
        expected = f"a tuple ({', '.join(parts)}) of arrays of shapes {', '.join(map(str, shapes))}"
    if s is None:
        return tuple(np.zeros(shape, dtype) for shape in shapes)
    if len(parts) == 1:
        if isinstance(s, tuple | list):
            raise TypeError(f"state: expected {expected}, got a {type(s).__name__} of {len(s)}")
        s = (s,)
    elif not isinstance(s, tuple | list) or len(s) != len(parts):
        raise TypeError(f"state: expected {expected}, got {type(s).__name__}")
    out = []
    for name, part, shape in zip(parts, s, shapes, strict=True):
        label = f"state {name}" if len(parts) > 1 else "state"
        a = array(label, part)
        if a.dtype.kind != "f" or a.shape != shape:
            raise ValueError(f"state: expected {expected}; got {describe(a)} for {name}")
        out.append(finite(label, a.astype(dtype, copy=False)))
    return tuple(out)


def float_arrays(name, arrays):
    """A dict of float32 or float64 arrays (parameters, gradients), as it is; else a TypeError naming
    the entry."""
    if not isinstance(arrays, Mapping):
        raise TypeError(f"{name}: expected a dict of float arrays, got {type(arrays).__name__}")
    for k, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}[{k!r}]: expected a float32 or float64 array, got {describe(a)}")
    return arrays


def nonzero_rows(rows, grads):
    """rows checked against grads: {} for None, else {name: sorted unique int64 indices of grads[name]'s
    first axis}."""
    if rows is None:
        return {}
    if not isinstance(rows, dict):
        raise TypeError(f"rows: expected None or a dict {{name: row indices}}, got {type(rows).__name__}")
    checked = {}
    for k, r in rows.items():
        if k not in grads:
            raise ValueError(f"rows: {k!r} is not one of the gradients ({sorted(grads)})")
        r, n = np.asarray(r), grads[k].shape[0] if grads[k].ndim else 0
        if r.ndim != 1 or r.dtype.kind not in "iu" or (r.size and (r[0] < 0 or r[-1] >= n or np.any(r[1:] <= r[:-1]))):
            raise ValueError(f"rows[{k!r}]: expected sorted distinct ints in [0, {n}), got {describe(r)}")
        checked[k] = r.astype(np.int64, copy=False)
    return checked
