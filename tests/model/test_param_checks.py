"""The parameters are checked on every entry to the engine: every key of arch.param_shapes() and no
other, each a float array of its shape, all of one dtype; the error names the parameter, what was
expected and how to fix it, instead of a wrong loss or a traceback from a kernel. Views (transposed,
strided) give the numbers contiguous arrays give. And the skip RNN, which has no compiled cell, runs
with an embedding on the fast engine as on the NumPy one."""

import numpy as np
import pytest

import bptt
from bptt.lab import diagnostics
from bptt.model import engine

CELLS = ["rnn", "gru", "lstm", "skip"]
ENGINES = ["fast", "numpy"]
T, B, V, H, K = 5, 3, 7, 4, 6



def on(cell, engine_name):
    """The engine argument: the skip RNN has no compiled cell, so "fast" is its default (None)."""
    return None if cell == "skip" and engine_name == "fast" else engine_name

def make(cell, engine_name="fast", dtype=np.float64, **kw):
    return bptt.Network(cell, V, H, K, dtype=dtype, seed=2, engine=on(cell, engine_name), **({"num_layers": 2} | kw))


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (T, B)), rng.integers(0, K, (T, B))


def entry_points(params, arch, x, y):
    """Every way into the engine with these parameters, each a thunk."""
    return {
        "logits": lambda: engine.logits(params, arch, x),
        "final_state": lambda: engine.final_state(params, arch, x),
        "loss_value": lambda: engine.loss_value(params, arch, x, y),
        "loss_and_grads": lambda: engine.loss_and_grads(params, arch, x, y),
        "recompute": lambda: engine.loss_and_grads(params, arch, x, y, recompute_every=2),
        "diagnostics": lambda: diagnostics.jacobian_products(params, arch, x),
    }


def raises_everywhere(net, error, message):
    """The error from the Network's methods and from every engine function."""
    x, y = data()
    with pytest.raises(error) as e:
        net.loss_and_grads(x, y)
    assert message in str(e.value), str(e.value)
    with pytest.raises(error) as e:
        net.forward(x)
    assert message in str(e.value), str(e.value)
    for name, call in entry_points(net.params, net.arch, x, y).items():
        with pytest.raises(error) as e:
            call()
        assert message in str(e.value), f"{name}: {e.value}"


# the cases reported: a float32 U or V in a float64 network (a wrong loss, NaN), one float64
# parameter in a float32 GRU (a wrong loss)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("dtype,other", [(np.float64, np.float32), (np.float32, np.float64)])
@pytest.mark.parametrize("name", ["l0.U", "V", "l1.b", "c"])
def test_a_parameter_of_another_dtype_is_refused(cell, engine_name, dtype, other, name):
    net = make(cell, engine_name, dtype)
    net.params[name] = net.params[name].astype(other)
    ref, got = np.dtype(dtype), np.dtype(other)
    raises_everywhere(net, ValueError,
                      f"params[{name!r}]: expected {ref} like the other parameters, got {got}; "
                      f"cast it with .astype(np.{ref}) (all parameters share one dtype)")


def test_every_parameter_of_another_dtype_is_named():
    net = make("lstm")
    for name in ("l0.U", "l1.W"):
        net.params[name] = net.params[name].astype(np.float32)
    net.params["V"] = net.params["V"].astype(np.float16)
    x, y = data()
    with pytest.raises(ValueError) as e:
        net.loss_and_grads(x, y)
    assert str(e.value) == ("params['l0.U']: expected float64 like the other parameters, got float32; "
                            "params['l1.W']: expected float64 like the other parameters, got float32; "
                            "params['V']: expected float64 like the other parameters, got float16; "
                            "cast them with .astype(np.float64) (all parameters share one dtype)")


def test_the_network_holds_its_dtype_and_the_engine_goes_by_most_parameters():
    net = make("rnn", "fast", num_layers=1)                 # W, U, b, b_U, V, c
    x, y = data()
    for name in ("l0.W", "l0.U", "l0.b", "l0.b_U", "V"):
        net.params[name] = net.params[name].astype(np.float32)
    with pytest.raises(ValueError, match=r"^params\['c'\]: expected float32 like the other parameters, got float64"):
        engine.loss_and_grads(net.params, net.arch, x, y)   # most parameters are float32: c is the odd one
    with pytest.raises(ValueError) as e:
        net.loss_and_grads(x, y)                            # the network is float64: the five are
    assert str(e.value).startswith("params['l0.W']: expected float64 like the other parameters, got float32; "
                                   "params['l0.U']:")
    assert "params['V']: expected float64" in str(e.value) and "params['c']" not in str(e.value)
    net.params["c"] = net.params["c"].astype(np.float32)    # all float32: the network still expects its own
    with pytest.raises(ValueError, match=r"params\['c'\]: expected float64 \(the network's dtype\), got float32"):
        net.forward(x)
    assert engine.loss_and_grads(net.params, net.arch, x, y).grads["c"].dtype == np.float32


@pytest.mark.parametrize("c_dtype", [np.float32, np.float64])
def test_a_tie_goes_to_the_dtype_of_c(c_dtype):
    net = make("rnn", "fast", num_layers=1)                 # six parameters: three of each dtype
    other = np.float64 if c_dtype == np.float32 else np.float32
    params = {k: a.astype(c_dtype if k in ("l0.b_U", "V", "c") else other) for k, a in net.params.items()}
    x, y = data()
    with pytest.raises(ValueError) as e:
        engine.loss_and_grads(params, net.arch, x, y)
    ref, got = np.dtype(c_dtype), np.dtype(other)
    assert str(e.value) == "; ".join(f"params[{k!r}]: expected {ref} like the other parameters, got {got}"
                                     for k in ("l0.W", "l0.U", "l0.b")) + \
        f"; cast them with .astype(np.{ref}) (all parameters share one dtype)"


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("name", ["c", "l1.U", "V"])
def test_a_missing_parameter_is_named(cell, engine_name, name):
    net = make(cell, engine_name)
    del net.params[name]
    expected = ", ".join(net.arch.param_shapes())
    raises_everywhere(net, ValueError, f"params: missing {name!r} (expected keys: {expected})")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("engine_name", ENGINES)
def test_an_unexpected_parameter_is_named(cell, engine_name):
    net = make(cell, engine_name)
    net.params["l2.W"] = net.params["l1.W"]
    net.params["E"] = np.zeros((V, 3))
    expected = ", ".join(net.arch.param_shapes())
    raises_everywhere(net, ValueError, f"params: unexpected 'l2.W', 'E' (expected keys: {expected})")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("name,change", [("l0.W", (0, 1)), ("l1.U", (1, 0)), ("l0.b_U", (1,)), ("c", (-1,)),
                                         ("E", (0, 1)), ("V", (0, 1))])
def test_a_misshaped_parameter_is_named(cell, engine_name, name, change):
    net = make(cell, engine_name, embedding_dim=3)
    shape = net.params[name].shape
    wrong = tuple(n + d for n, d in zip(shape, change, strict=True))
    net.params[name] = np.zeros(wrong)
    raises_everywhere(net, ValueError, f"params[{name!r}]: expected shape {shape}, got {wrong}")
    net.params[name] = np.zeros(shape + (1,))
    raises_everywhere(net, ValueError, f"params[{name!r}]: expected shape {shape}, got {shape + (1,)}")


@pytest.mark.parametrize("engine_name", ENGINES)
def test_a_parameter_that_is_not_a_float_array(engine_name):
    net = make("gru", engine_name)
    U = net.params["l0.U"]
    net.params["l0.U"] = U.tolist()
    raises_everywhere(net, TypeError, f"params['l0.U']: expected a NumPy array of shape {U.shape}, got list")
    net.params["l0.U"] = U.astype(np.int64)
    raises_everywhere(net, ValueError, "params['l0.U']: expected float64 like the other parameters, got int64")
    params = {k: a.astype(np.int32) for k, a in net.params.items()}
    x, y = data()
    with pytest.raises(TypeError, match=r"params: expected float32 or float64 arrays, got int32; "
                                        r"cast them with .astype\(np.float64\)"):
        engine.loss_and_grads(params, net.arch, x, y)
    with pytest.raises(TypeError, match="params: expected a dict of arrays keyed l0.W, l0.U"):
        engine.logits(list(net.params.values()), net.arch, x)


def views(params, kind):
    """The same values in arrays that are not C-contiguous: transposed, or every other element."""
    out = {}
    for k, a in params.items():
        if kind == "transposed":
            out[k] = np.ascontiguousarray(a.T).T
        else:
            big = np.zeros(tuple(2 * n for n in a.shape), a.dtype)
            out[k] = big[tuple(slice(None, None, 2) for _ in a.shape)]
            out[k][...] = a
    return out


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("kind", ["transposed", "strided"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_views_give_the_numbers_contiguous_arrays_give(cell, engine_name, kind, dtype):
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for kw in ({}, {"embedding_dim": 3}, {"embedding_dim": H, "tie_weights": True}):
        net = bptt.Network(cell, V, H, V if kw.get("tie_weights") else K, num_layers=2, dtype=dtype, seed=2,
                           engine=on(cell, engine_name), **kw)
        x, y = data()
        y = y % net.arch.output_size
        ref = engine.loss_and_grads(net.params, net.arch, x, y, dropout=0.3, rng=1)
        params = views(net.params, kind)
        given = dict(params)
        assert not any(a.flags.c_contiguous for a in params.values() if a.ndim == 2)
        r = engine.loss_and_grads(params, net.arch, x, y, dropout=0.3, rng=1)
        assert abs(r.loss - ref.loss) < tol
        for k in ref.grads:
            assert np.allclose(r.grads[k], ref.grads[k], rtol=tol, atol=tol), k
        z = engine.logits(params, net.arch, x)[0]
        assert np.allclose(z, engine.logits(net.params, net.arch, x)[0], rtol=tol, atol=tol)
        assert all(params[k] is given[k] for k in given) and params.keys() == given.keys()   # not replaced


# the case reported: Network("skip", 20, 8, 20, embedding_dim=5, engine="fast") failed with
# AttributeError: 'Embedded' object has no attribute 'dtype'
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("tied", [False, True])
def test_an_embedding_on_either_engine(cell, dropout, tied):
    kw = dict(embedding_dim=8, tie_weights=True) if tied else {}
    fast, ref = (bptt.Network(cell, 20, 8, 20, **({"embedding_dim": 5} | kw), engine=on(cell, e), seed=4,
                              num_layers=2)
                 for e in ENGINES)
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, 20, (6, 3)), rng.integers(0, 20, (6, 3))
    a = engine.loss_and_grads(fast.params, fast.arch, x, y, dropout=dropout, rng=7)
    b = engine.loss_and_grads(ref.params, ref.arch, x, y, dropout=dropout, rng=7)
    assert abs(a.loss - b.loss) < 1e-12
    assert a.grads.keys() == b.grads.keys()
    for k in a.grads:
        assert np.max(np.abs(a.grads[k] - b.grads[k])) < 1e-12, k
    z_fast, z_ref = engine.logits(fast.params, fast.arch, x)[0], engine.logits(ref.params, ref.arch, x)[0]
    assert np.max(np.abs(z_fast - z_ref)) < 1e-12
    # only a compiled cell folds, and only when the (V, D) table is the cheaper: V = 20 <= T B
    assert engine.folds_embedding(fast.arch, [None] * 3, np.zeros((7, 3))) == (cell != "skip")
    assert not engine.folds_embedding(fast.arch, [None] * 3, x)             # 18 rows: gathered
    net = bptt.Network(cell, 20, 8, 20, embedding_dim=5)                      # as reported (default engine)
    numpy_net = bptt.Network(cell, 20, 8, 20, embedding_dim=5, engine="numpy")
    loss, grads, _ = net.loss_and_grads(x, y, dropout=dropout, rng=np.random.default_rng(7))
    loss_ref, grads_ref, _ = numpy_net.loss_and_grads(x, y, dropout=dropout, rng=np.random.default_rng(7))
    assert abs(loss - loss_ref) < 1e-12
    assert all(np.max(np.abs(grads[k] - grads_ref[k])) < 1e-12 for k in grads_ref)


def test_the_skip_rnn_on_the_fast_engine_is_refused_by_name():
    with pytest.raises(ValueError, match="engine: 'fast' has no compiled skip cell; use engine='numpy'"):
        bptt.Network("skip", 20, 8, 20, engine="fast")
    assert bptt.Network("skip", 20, 8, 20).arch.engine == "numpy"
    assert bptt.Network("lstm", 20, 8, 20).arch.engine == "fast"
