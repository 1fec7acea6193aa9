"""NT-ASGD (Merity, Keskar & Socher 2017, Algorithm 1): the average against one computed by hand from
the recorded iterates, the trigger against AWD-LSTM's condition, the iterates and the average against
torch.optim.ASGD in float64; the options that do not apply refused; the averaged weights validated,
kept in best.safetensors and given by bptt.load; a run killed with SIGKILL and resumed equal to an
uninterrupted one bit for bit."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import bptt
from bptt.cli import main
from bptt.files import load_arrays
from bptt.training import optim
from bptt.training.config import TrainConfig
from bptt.training.opening import Run
from bptt.training.ranks import Ranks
from bptt.training.train import train

SHAPES = {"l0.W": (4, 3), "l0.b": (4,), "V": (2, 4)}


def problem(steps, seed=0):
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s) for k, s in SHAPES.items()} for _ in range(steps)]
    return params, grads


def awd_lstm_trigger(best_val_loss, val_loss, nonmono):
    """AWD-LSTM main.py's condition, verbatim (best_val_loss: the earlier checks' losses)."""
    return len(best_val_loss) > nonmono and val_loss > min(best_val_loss[:-nonmono])


def test_average_is_the_mean_of_the_iterates_from_the_trigger():
    params, grads = problem(10)
    sgd_params = {k: p.copy() for k, p in params.items()}
    opt, sgd = optim.NTASGD(weight_decay=0.1, nonmono=1), optim.SGD(weight_decay=0.1)
    state, sgd_state = opt.init(params), sgd.init(sgd_params)
    losses = {2: 1.0, 3: 0.5, 4: 2.0}                # at step 4: 2 checks before it > n = 1, 2.0 > min([1.0])
    iterates = {}
    for k, g in enumerate(grads, start=1):
        opt.step(params, g, state, 0.05)
        sgd.step(sgd_params, g, sgd_state, 0.05)
        iterates[k] = {name: p.copy() for name, p in params.items()}
        if k in losses:
            assert opt.validated(params, state, losses[k]) == (k == 4)
        for name in SHAPES:
            np.testing.assert_array_equal(params[name], sgd_params[name])        # the iterate is SGD's
            if k < 4:
                assert not state[f"ax/{name}"].any()
                assert optim.averaged(params, state)[name] is params[name]
            else:
                by_hand = sum(iterates[i][name] for i in range(4, k + 1)) / (k - 4 + 1)
                np.testing.assert_allclose(state[f"ax/{name}"], by_hand, rtol=1e-12, atol=1e-14)
                assert optim.averaged(params, state)[name] is state[f"ax/{name}"]
    assert state["average_from"][0] == 4 and state["step"][0] == 10
    assert state["valid_losses"].tolist() == [1.0, 0.5, 2.0]
    assert not opt.validated(params, state, 99.0) and state["valid_losses"].tolist() == [1.0, 0.5, 2.0]


@pytest.mark.parametrize("nonmono", [1, 2, 5])
def test_trigger_fires_where_algorithm_1_says(nonmono):
    rng = random.Random(nonmono)
    params, _ = problem(0)
    fired = 0
    for _ in range(200):
        losses = [rng.choice([1.0, 2.0, 3.0, 4.0, float("nan")]) for _ in range(12)]
        expected = next((c for c in range(len(losses)) if awd_lstm_trigger(losses[:c], losses[c], nonmono)), None)
        opt = optim.NTASGD(nonmono=nonmono)
        state = opt.init(params)
        got = [c for c, loss in enumerate(losses) if opt.validated(params, state, loss)]
        assert got == ([] if expected is None else [expected]), losses
        fired += expected is not None
    assert 20 < fired < 200, "the cases must include both outcomes"
    opt = optim.NTASGD(nonmono=2)
    state = opt.init(params)
    assert [opt.validated(params, state, v) for v in (3.0, 2.0, 1.0, 1.5, 2.5)] == [False] * 4 + [True]


def test_matches_torch_asgd_whose_average_starts_two_steps_later():
    """torch.optim.ASGD(t0=0, lambd=0) made at step 0: the same iterates; its μ = 1 / max(1, j - 1)
    copies p_1 and p_2, so its ax_k is the mean of p_2 .. p_k: ours with the trigger at T = 2."""
    params, grads = problem(20, seed=1)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)            # else ASGD holds eta and mu in float32
    try:
        tensors = {k: torch.tensor(p, requires_grad=True) for k, p in params.items()}
        reference = torch.optim.ASGD(list(tensors.values()), lr=0.05, lambd=0.0, alpha=0.75, t0=0,
                                     weight_decay=0.1, foreach=False)
        opt = optim.NTASGD(weight_decay=0.1, nonmono=1)
        state = opt.init(params)
        opt.validated(params, state, 1.0)             # checks at steps 0, 1 and 2: 2.0 > min([1.0]) fires at T = 2
        for k, g in enumerate(grads, start=1):
            for name, x in tensors.items():
                x.grad = torch.tensor(g[name])
            reference.step()
            opt.step(params, g, state, 0.05)
            if k in (1, 2):
                assert opt.validated(params, state, {1: 0.5, 2: 2.0}[k]) == (k == 2)
            for name, x in tensors.items():
                np.testing.assert_allclose(params[name], x.detach().numpy(), rtol=1e-12, atol=1e-12)
                if k >= 2:
                    ax = reference.state[x]["ax"].numpy()
                    np.testing.assert_allclose(state[f"ax/{name}"], ax, rtol=1e-12, atol=1e-12)
    finally:
        torch.set_default_dtype(default)
    assert state["average_from"][0] == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--optimizer", "nt-asgd", "--momentum", "0.9"], "--momentum: applies to --optimizer sgd or rmsprop only"),
    (["--optimizer", "nt-asgd", "--nesterov"], "--nesterov: applies to --optimizer sgd only"),
    (["--nonmono", "5"], "--nonmono: applies to --optimizer nt-asgd only"),
    (["--optimizer", "sgd", "--nonmono", "3"], "--nonmono: applies to --optimizer nt-asgd only"),
    (["--optimizer", "nt-asgd", "--nonmono", "0"], "--nonmono: expected a positive int, got 0"),
])
def test_options_that_do_not_apply_are_errors(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert not run.exists()


def test_invalid_arguments():
    with pytest.raises(ValueError, match=r"^nonmono: "):
        optim.NTASGD(nonmono=0)
    with pytest.raises(TypeError, match=r"^nonmono: "):
        optim.NTASGD(nonmono=2.0)
    with pytest.raises(ValueError, match=r"^weight_decay: "):
        optim.NTASGD(weight_decay=-1.0)
    params, grads = problem(1)
    opt = optim.NTASGD()
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"^state\['average_from'\]: "):
        opt.step(params, grads[0], {k: v for k, v in state.items() if k != "average_from"}, 0.1)
    with pytest.raises(TypeError, match=r"^loss: "):
        opt.validated(params, state, "1.0")
    assert state["step"][0] == 0


# --- in a run ------------------------------------------------------------------------------------

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nAy me!\n\n" * 10
SMALL = ["--hidden", "8", "--layers", "1", "--embedding", "4", "--batch", "3", "--window", "6",
         "--eval-every", "2", "--eval-batch", "2", "--log-every", "1", "--dtype", "float64",
         "--optimizer", "nt-asgd", "--nonmono", "1", "--lr", "1"]     # averaging from step 26
STEPS = 80
TIMING = {"tokens_per_s", "elapsed"}


def records(run):
    with open(os.path.join(run, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


def test_validation_best_and_load_read_the_average(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    run = tmp_path / "run"
    cfg = TrainConfig(hidden=8, layers=1, embedding=4, batch=3, window=6, eval_every=2, eval_batch=2, log_every=1,
                      dtype="float64", optimizer="nt-asgd", nonmono=1, lr=1.0, data=str(text), steps=40)
    outcome = train(cfg, run)
    assert {"step": 26, "averaging_from": 26} in records(run)
    arrays, meta = load_arrays(run / "checkpoint.safetensors")
    assert arrays["optim/average_from"][0] == 26 and meta["step"] == 40
    raw = {k[len("param/"):]: a for k, a in arrays.items() if k.startswith("param/")}
    ax = {k: arrays[f"optim/ax/{k}"] for k in raw}
    assert all(not np.array_equal(raw[k], ax[k]) for k in raw)
    r = Run(run)
    task = r.task()
    arch = r.network("last")[0].arch
    loss_ax, loss_raw = (task.evaluate(p, arch, Ranks())["loss"] for p in (ax, raw))
    assert outcome.valid_loss == loss_ax != loss_raw
    assert [rec["loss"] for rec in records(run) if rec.get("split") == "valid"][-1] == loss_ax
    best, best_meta = load_arrays(run / "best.safetensors")
    assert best_meta == {"step": 40, "valid_loss": loss_ax}
    for which in ("best", "last"):
        loaded = bptt.load(run, which)
        assert loaded.step == 40
        for k in raw:
            np.testing.assert_array_equal(loaded.network.params[k], ax[k])
            np.testing.assert_array_equal(best[f"param/{k}"], ax[k])


def launch(argv, cwd):
    with open(cwd / "stderr.txt", "w") as err:
        return subprocess.Popen([sys.executable, "-m", "bptt", *argv], stdout=subprocess.DEVNULL, stderr=err, cwd=cwd)


def last_step(run):
    try:
        with open(os.path.join(run, "metrics.jsonl")) as f:
            lines = f.read().splitlines()
        return json.loads(lines[-1])["step"] if lines else 0
    except (FileNotFoundError, json.JSONDecodeError):     # not yet, or a line half written
        return 0


def test_sigkill_before_and_after_the_trigger_then_resume_equals_an_uninterrupted_run(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    ref, run = str(tmp_path / "reference"), str(tmp_path / "killed")
    options = ["--data", str(text), "--steps", str(STEPS), *SMALL]
    assert launch(["train", "--out", ref, *options], tmp_path).wait(timeout=120) == 0
    argv = ["train", "--out", run, *options]
    for kill_after in (12, 34):                      # the history of losses, then the average, restored
        proc = launch(argv, tmp_path)
        while proc.poll() is None and last_step(run) < kill_after:
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=120) == -signal.SIGKILL, "the run ended before its kill: make STEPS larger"
        killed_at = load_arrays(os.path.join(run, "checkpoint.safetensors"))[1]["step"]
        assert kill_after - 2 <= killed_at < STEPS
        argv = ["train", "--out", run, "--resume"]
    proc = launch(argv, tmp_path)
    assert proc.wait(timeout=120) == 0, (tmp_path / "stderr.txt").read_text()
    for name in ("checkpoint.safetensors", "best.safetensors"):
        expected, expected_meta = load_arrays(os.path.join(ref, name))
        got, got_meta = load_arrays(os.path.join(run, name))
        assert sorted(got) == sorted(expected), name
        for key in expected:
            assert got[key].dtype == expected[key].dtype and np.array_equal(got[key], expected[key]), (name, key)
        assert {k: v for k, v in got_meta.items() if k not in TIMING} == \
               {k: v for k, v in expected_meta.items() if k not in TIMING}, name
    arrays = load_arrays(os.path.join(ref, "checkpoint.safetensors"))[0]
    assert arrays["optim/average_from"][0] == 26 and len(arrays["optim/valid_losses"]) == 13
    assert records(run) == records(ref)
