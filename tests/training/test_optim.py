"""bptt.training.optim against torch.optim in float64: 20 steps with a changing lr, parameters within 1e-12
relative after every step; float32 stays float32; the caller's gradients are never modified; a
copied state resumes bit for bit; every invalid argument is named in its error. Also schedules."""

import json
import math

import numpy as np
import pytest
import torch

from bptt.training import optim, schedules

SHAPES = {"l0.W": (4, 3), "l0.b": (4,), "V": (2, 4)}
STEPS = 20

TORCH = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop,
         "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
CASES = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("sgd", {"weight_decay": 0.1}),
    ("sgd", {"momentum": 0.5, "weight_decay": 0.1}),
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.05}),
    ("adagrad", {}),
    ("adagrad", {"eps": 1e-6, "initial_accumulator_value": 0.5, "weight_decay": 0.1}),
    ("rmsprop", {}),
    ("rmsprop", {"momentum": 0.9}),
    ("rmsprop", {"alpha": 0.9, "eps": 1e-6, "momentum": 0.5, "weight_decay": 0.1}),
    ("adam", {}),
    ("adam", {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("adam", {"betas": (0.3, 0.5)}),
    ("adamw", {}),
    ("adamw", {"betas": (0.8, 0.99), "weight_decay": 0.5}),
    ("adamw", {"weight_decay": 0.0}),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in hyper.items()) or 'defaults'}" for name, hyper in CASES]


def problem(dtype=np.float64, seed=0):
    """Random params, STEPS random gradient dicts and STEPS learning rates."""
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()} for _ in range(STEPS)]
    lrs = [float(lr) for lr in rng.uniform(0.01, 0.1, STEPS)]
    return params, grads, lrs


def close(ours, theirs, rtol):
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max())


@pytest.mark.parametrize(("name", "hyper"), CASES, ids=IDS)
def test_matches_torch_every_step(name, hyper):
    params, grads, lrs = problem()
    tensors = {k: torch.tensor(p, dtype=torch.float64, requires_grad=True) for k, p in params.items()}
    reference = TORCH[name](list(tensors.values()), lr=lrs[0], foreach=False, **hyper)
    opt = optim.make(name, **hyper)
    state = opt.init(params)
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True), start=1):
        for k, x in tensors.items():
            x.grad = torch.tensor(g[k])
        reference.param_groups[0]["lr"] = lr
        reference.step()
        before = {k: a.copy() for k, a in g.items()}
        opt.step(params, g, state, lr)
        assert state["step"][0] == t
        for k in params:
            close(params[k], tensors[k].detach().numpy(), 1e-12)
            np.testing.assert_array_equal(g[k], before[k], err_msg=f"step modified grads[{k!r}]")


@pytest.mark.parametrize(("name", "hyper"), CASES, ids=IDS)
def test_float32_stays_float32(name, hyper):
    params, grads, lrs = problem(np.float32)
    opt = optim.make(name, **hyper)
    state = opt.init(params)
    for g, lr in zip(grads, lrs, strict=True):
        opt.step(params, g, state, lr)
    assert all(p.dtype == np.float32 for p in params.values())
    assert all(a.dtype == np.float32 for key, a in state.items() if key != "step")
    reference, _, _ = problem(np.float64)
    state64 = opt.init(reference)
    for g, lr in zip(problem(np.float64)[1], lrs, strict=True):
        opt.step(reference, g, state64, lr)
    for k in params:
        close(params[k], reference[k], 1e-4)


@pytest.mark.parametrize(("name", "hyper"), CASES, ids=IDS)
def test_copied_state_resumes_exactly(name, hyper):
    params, grads, lrs = problem()
    opt = optim.make(name, **hyper)
    state = opt.init(params)
    assert all(isinstance(a, np.ndarray) and a.ndim >= 1 for a in state.values())
    for g, lr in zip(grads[:10], lrs[:10], strict=True):
        opt.step(params, g, state, lr)
    saved_params = {k: p.copy() for k, p in params.items()}
    saved_state = {k: a.copy() for k, a in state.items()}
    for g, lr in zip(grads[10:], lrs[10:], strict=True):
        opt.step(params, g, state, lr)
    resumed = optim.make(name, **hyper)
    for g, lr in zip(grads[10:], lrs[10:], strict=True):
        resumed.step(saved_params, g, saved_state, lr)
    for k in params:
        np.testing.assert_array_equal(saved_params[k], params[k])
    for k in state:
        np.testing.assert_array_equal(saved_state[k], state[k])


def test_state_keys():
    params, _, _ = problem()
    assert set(optim.SGD().init(params)) == {"step"}
    assert set(optim.SGD(momentum=0.9).init(params)) == {"step"} | {f"momentum/{k}" for k in SHAPES}
    assert set(optim.Adam().init(params)) == {"step"} | {f"{s}/{k}" for s in ("exp_avg", "exp_avg_sq") for k in SHAPES}
    assert set(optim.RMSprop().init(params)) == {"step"} | {f"square_avg/{k}" for k in SHAPES}
    np.testing.assert_array_equal(optim.Adagrad(initial_accumulator_value=0.5).init(params)["sum/V"], 0.5)


def test_defaults_are_torchs():
    assert optim.make("adamw") == optim.AdamW(betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    assert optim.make("adam") == optim.Adam(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    assert optim.make("rmsprop") == optim.RMSprop(alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0)
    assert optim.make("adagrad") == optim.Adagrad(eps=1e-10, initial_accumulator_value=0.0, weight_decay=0.0)
    assert optim.make("adam", betas=[0.5, 0.6]).betas == (0.5, 0.6)


@pytest.mark.parametrize(("call", "error", "argument"), [
    (lambda: optim.make("foo"), ValueError,
     "optimizer: expected one of 'sgd', 'adagrad', 'rmsprop', 'adam', 'adamw'; got 'foo'"),
    (lambda: optim.make("sgd", lr=0.1), TypeError, "lr:"),
    (lambda: optim.make("sgd", betas=(0.9, 0.99)), TypeError, "betas:"),
    (lambda: optim.SGD(nesterov=True), ValueError, "nesterov:"),
    (lambda: optim.SGD(nesterov="yes", momentum=0.9), TypeError, "nesterov:"),
    (lambda: optim.SGD(momentum=-0.1), ValueError, "momentum:"),
    (lambda: optim.SGD(momentum=True), TypeError, "momentum:"),
    (lambda: optim.SGD(weight_decay=-1.0), ValueError, "weight_decay:"),
    (lambda: optim.SGD(weight_decay=math.nan), ValueError, "weight_decay:"),
    (lambda: optim.Adagrad(eps=-1e-10), ValueError, "eps:"),
    (lambda: optim.Adagrad(initial_accumulator_value=-1.0), ValueError, "initial_accumulator_value:"),
    (lambda: optim.RMSprop(alpha=1.0), ValueError, "alpha:"),
    (lambda: optim.RMSprop(eps="1e-8"), TypeError, "eps:"),
    (lambda: optim.Adam(betas=(1.0, 0.999)), ValueError, "betas: expected β1 in [0, 1), got 1.0"),
    (lambda: optim.Adam(betas=(0.9, -0.1)), ValueError, "betas: expected β2 in [0, 1), got -0.1"),
    (lambda: optim.Adam(betas=0.9), TypeError, "betas:"),
    (lambda: optim.AdamW(eps=-1.0), ValueError, "eps:"),
    (lambda: optim.AdamW(weight_decay=math.inf), ValueError, "weight_decay:"),
])
def test_invalid_hyperparameters(call, error, argument):
    with pytest.raises(error) as e:
        call()
    assert str(e.value).startswith(argument)


def test_invalid_step_arguments():
    params, grads, _ = problem()
    opt = optim.Adam()
    state = opt.init(params)
    cases = [
        ((params, grads[0], state, -0.1), ValueError, "lr:"),
        ((params, grads[0], state, math.nan), ValueError, "lr:"),
        ((params, grads[0], state, "0.1"), TypeError, "lr:"),
        ((params, {"V": grads[0]["V"]}, state, 0.1), ValueError, "grads: expected the keys of params; missing"),
        ((params, grads[0] | {"V": grads[0]["V"].astype(np.float32)}, state, 0.1), ValueError, "grads['V']:"),
        ((params, grads[0] | {"V": grads[0]["V"].T}, state, 0.1), ValueError, "grads['V']:"),
        ((params, grads[0], optim.SGD(momentum=0.9).init(params), 0.1), ValueError, "state: expected the keys"),
        ((params, grads[0], state | {"exp_avg/V": np.zeros(3)}, 0.1), ValueError, "state['exp_avg/V']:"),
        ((params, grads[0], state | {"step": np.zeros(())}, 0.1), ValueError, "state['step']:"),
        ((params | {"V": [1.0]}, grads[0], state, 0.1), TypeError, "params['V']:"),
        ((params, list(grads[0].values()), state, 0.1), TypeError, "grads:"),
    ]
    for args, error, argument in cases:
        with pytest.raises(error) as e:
            opt.step(*args)
        assert str(e.value).startswith(argument), str(e.value)
    assert state["step"][0] == 0, "a rejected step must not count"
    with pytest.raises(TypeError, match=r"^params: "):
        opt.init([1.0])


# Schedules


def test_constant():
    assert schedules.constant(0.1) == 0.1
    assert type(schedules.constant(np.float32(0.5))) is float
    with pytest.raises(ValueError, match=r"^lr: "):
        schedules.constant(-1.0)


def test_plateau_divides_by_4_on_each_non_improvement():
    plateau = schedules.Plateau(20.0)
    state = plateau.init()
    lrs = []
    for val_loss in [5.0, 4.0, 4.5, 3.9, 3.95, 4.0, 3.0, math.nan, 3.0]:
        state = plateau.update(state, val_loss)
        lrs.append(state["lr"])
    assert lrs == [20.0, 20.0, 5.0, 5.0, 1.25, 0.3125, 0.3125, 0.078125, 0.01953125]
    assert state == {"lr": 0.01953125, "best": 3.0, "bad_epochs": 0}


def test_plateau_patience_min_lr_and_json_resume():
    plateau = schedules.Plateau(1.0, factor=0.5, patience=1, min_lr=0.3)
    state = plateau.init()
    assert json.loads(json.dumps(state, allow_nan=False)) == state
    history = []
    for val_loss in [2.0, 2.5, 2.5, 2.5, 1.0, 3.0, 3.0, 3.0, 3.0]:
        state = json.loads(json.dumps(plateau.update(state, val_loss), allow_nan=False))
        history.append((state["lr"], state["bad_epochs"]))
    assert history == [(1.0, 0), (1.0, 1), (0.5, 0), (0.5, 1), (0.5, 0), (0.5, 1), (0.3, 0), (0.3, 1), (0.3, 0)]
    before = dict(state)
    plateau.update(state, 0.0)
    assert state == before, "update returns a new dict"


def test_plateau_errors():
    for kwargs, error, argument in [
        ({"lr": -1.0}, ValueError, "lr:"),
        ({"lr": 1.0, "factor": 1.0}, ValueError, "factor:"),
        ({"lr": 1.0, "factor": 0.0}, ValueError, "factor:"),
        ({"lr": 1.0, "patience": -1}, ValueError, "patience:"),
        ({"lr": 1.0, "patience": 1.5}, TypeError, "patience:"),
        ({"lr": 1.0, "min_lr": 2.0}, ValueError, "min_lr:"),
    ]:
        with pytest.raises(error) as e:
            schedules.Plateau(**kwargs)
        assert str(e.value).startswith(argument), str(e.value)
    plateau = schedules.Plateau(1.0)
    with pytest.raises(ValueError, match=r"^state: "):
        plateau.update({"lr": 1.0}, 1.0)
    with pytest.raises(TypeError, match=r"^val_loss: "):
        plateau.update(plateau.init(), "1.0")


def test_cosine_with_warmup():
    lr = schedules.cosine_with_warmup
    assert lr(0, 110, 1.0, warmup_steps=10) == 0.1
    assert lr(4, 110, 1.0, warmup_steps=10) == 0.5
    assert lr(9, 110, 1.0, warmup_steps=10) == 1.0            # warm-up ends at base_lr
    assert lr(10, 110, 1.0, warmup_steps=10) == 1.0           # the cosine starts there
    assert lr(60, 110, 1.0, warmup_steps=10, min_lr=0.2) == pytest.approx(0.6, abs=1e-15)
    assert lr(35, 110, 1.0, warmup_steps=10) == pytest.approx((1 + math.cos(math.pi / 4)) / 2, abs=1e-15)
    assert lr(110, 110, 1.0, warmup_steps=10, min_lr=0.2) == 0.2
    assert lr(500, 110, 1.0, warmup_steps=10, min_lr=0.2) == 0.2
    assert lr(0, 100, 0.5) == 0.5                            # no warm-up
    assert lr(99, 100, 0.5) == pytest.approx(0.25 * (1 + math.cos(math.pi * 0.99)), abs=1e-15)
    values = [lr(t, 110, 1.0, warmup_steps=10) for t in range(111)]
    assert all(a <= b for a, b in zip(values[:10], values[1:10], strict=False))
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))


@pytest.mark.parametrize(("kwargs", "error", "argument"), [
    ({"step": -1}, ValueError, "step:"),
    ({"step": 1.0}, TypeError, "step:"),
    ({"total_steps": 0}, ValueError, "total_steps:"),
    ({"warmup_steps": 101}, ValueError, "warmup_steps:"),
    ({"warmup_steps": -1}, ValueError, "warmup_steps:"),
    ({"base_lr": -0.1}, ValueError, "base_lr:"),
    ({"min_lr": 2.0}, ValueError, "min_lr:"),
    ({"min_lr": -1.0}, ValueError, "min_lr:"),
])
def test_cosine_errors(kwargs, error, argument):
    args = {"step": 0, "total_steps": 100, "base_lr": 1.0} | kwargs
    with pytest.raises(error) as e:
        schedules.cosine_with_warmup(**args)
    assert str(e.value).startswith(argument), str(e.value)


@pytest.mark.parametrize(("name", "hyper"), CASES + [("ntasgd", {}), ("ntasgd", {"weight_decay": 0.1})],
                         ids=IDS + ["ntasgd-defaults", "ntasgd-weight_decay=0.1"])
def test_the_nonzero_rows_of_a_gradient_give_the_same_steps(name, hyper):
    """rows={"E": rows outside which dE is zero}, as bptt train passes for a word-level embedding: the
    same parameters and state bit for bit, whether the optimiser updates those rows alone (SGD without
    momentum or weight decay, NT-ASGD without weight decay) or moves every row and does not read it."""
    rng = np.random.default_rng(1)
    opt = optim.NTASGD(**hyper) if name == "ntasgd" else optim.make(name, **hyper)
    params = {"E": rng.standard_normal((60, 3)), "b": rng.standard_normal(4)}
    ours, theirs = ({k: p.copy() for k, p in params.items()} for _ in range(2))
    ours_state, theirs_state = opt.init(ours), opt.init(theirs)
    for step in range(6):
        nonzero = np.unique(rng.integers(0, 60, 8))
        grads = {"E": np.zeros((60, 3)), "b": rng.standard_normal(4)}
        grads["E"][nonzero] = rng.standard_normal((nonzero.size, 3))
        if name == "ntasgd" and step == 2:
            for p, s in ((ours, ours_state), (theirs, theirs_state)):
                s["average_from"][0] = s["step"][0]
                s["ax/E"][...], s["ax/b"][...] = p["E"], p["b"]
        opt.step(ours, {k: g.copy() for k, g in grads.items()}, ours_state, 0.1, rows={"E": nonzero})
        opt.step(theirs, grads, theirs_state, 0.1)
        for k in params:
            np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)
        for k in theirs_state:
            np.testing.assert_array_equal(ours_state[k], theirs_state[k], err_msg=k)


@pytest.mark.parametrize(("opt", "reads_rows"), [
    (optim.SGD(), True), (optim.NTASGD(), True), (optim.SGD(momentum=0.9), False),
    (optim.SGD(weight_decay=0.1), False), (optim.NTASGD(weight_decay=0.1), False), (optim.Adam(), False),
])
def test_rows_are_read_by_the_updates_that_move_those_rows_alone(opt, reads_rows):
    """A row left out of rows is not updated by SGD (no momentum, no weight decay) or NT-ASGD (no weight
    decay), which pass over the rows given alone; every other update moves it."""
    params = {"E": np.ones((4, 2))}
    opt.step(params, {"E": np.ones((4, 2))}, opt.init(params), 0.5, rows={"E": np.array([0, 2])})
    assert params["E"][0, 0] != 1.0 and (params["E"][1, 0] != 1.0) == (not reads_rows)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_on_every_core_is_one_pass(name, dtype):
    """A parameter of several arrays.CHUNKs (an odd size) is updated chunk by chunk on the cores: the bits
    of one pass of _adam_update over the whole array, at every step."""
    from bptt.fast import arrays

    rng = np.random.default_rng(1)
    params = {"E": rng.standard_normal((3 * arrays.CHUNK + 1235, 1)).astype(dtype)}
    one = {k: p.copy() for k, p in params.items()}
    opt = optim.make(name, betas=(0.8, 0.99), weight_decay=0.1)
    state, m, v = opt.init(params), np.zeros_like(one["E"]), np.zeros_like(one["E"])
    c = np.dtype(dtype).type
    for t in range(1, 4):
        g = {"E": rng.standard_normal(params["E"].shape).astype(dtype)}
        lr = 0.01 * t
        opt.step(params, g, state, lr)
        step_size, bc2 = lr / (1 - 0.8**t), (1 - 0.99**t) ** 0.5
        optim._adam_update(one["E"].reshape(-1), g["E"].reshape(-1), m.reshape(-1), v.reshape(-1), c(1 - 0.8), c(0.99),
                           c(1 - 0.99), c(bc2), c(1e-8), c(step_size), c(0.1), c(1 - lr * 0.1), name == "adamw")
        assert np.array_equal(params["E"], one["E"]) and np.array_equal(state["exp_avg/E"], m)
        assert np.array_equal(state["exp_avg_sq/E"], v)
