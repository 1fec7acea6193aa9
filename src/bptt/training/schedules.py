"""Learning-rate schedules: pure functions of the step, or of an explicit state.

    lr = constant(lr)                                                   the same lr every step
    lr = cosine_with_warmup(step, total_steps, base_lr, warmup_steps, min_lr)
    plateau = Plateau(lr)                                               per epoch, on validation:
    state = plateau.init();  state = plateau.update(state, val_loss);  lr = state["lr"]

Every lr is a Python float, so the optimisers keep the parameters' dtype. Plateau's state is a
small dict of JSON values, saved with a checkpoint and handed back to resume.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .. import checks
from ..checks import NONNEGATIVE, nonnegative, real


def constant(lr):
    """The constant schedule: lr at every step (checked, as a Python float)."""
    return real("lr", lr, NONNEGATIVE, nonnegative)


def cosine_with_warmup(step, total_steps, base_lr, warmup_steps=0, min_lr=0.0):
    """lr at `step` (counted from 0) of a run of total_steps steps:

        lr = base_lr (step + 1) / warmup_steps                          step < warmup_steps
        lr = min_lr + (base_lr - min_lr) (1 + cos(π s)) / 2             warmup_steps <= step < total_steps
             with s = (step - warmup_steps) / (total_steps - warmup_steps)
        lr = min_lr                                                     step >= total_steps

    The warm-up rises linearly from base_lr / warmup_steps at step 0 (not 0, which would waste the
    step) to base_lr at step warmup_steps - 1; the cosine starts at base_lr at step warmup_steps and
    reaches min_lr at step total_steps, one past the last step of the run.
    """
    step = checks.positive_int("step", step, minimum=0)
    total_steps = checks.positive_int("total_steps", total_steps)
    warmup_steps = checks.positive_int("warmup_steps", warmup_steps, minimum=0)
    if warmup_steps > total_steps:
        raise ValueError(f"warmup_steps: expected at most total_steps = {total_steps}, got {warmup_steps}")
    base_lr = real("base_lr", base_lr, NONNEGATIVE, nonnegative)
    min_lr = real("min_lr", min_lr, f"a float in [0, base_lr] = [0, {base_lr}]", lambda x: 0.0 <= x <= base_lr)
    if step < warmup_steps:
        return base_lr * ((step + 1) / warmup_steps)
    if step >= total_steps:
        return min_lr
    s = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * s)) / 2


@dataclass(frozen=True)
class Plateau:
    """Multiply lr by `factor` (divide by 4) when the validation loss stops improving, as PyTorch's
    word_language_model does after every epoch (there, patience 0: each non-improvement divides by 4):

        improved   = val_loss < best               the first finite loss improves; nan or inf never does
        best       = val_loss                      if improved
        bad_epochs = 0 if improved else bad_epochs + 1
        lr         = max(lr factor, min_lr)        if bad_epochs > patience, and then bad_epochs = 0

    State: {"lr": float, "best": float or None (no loss seen yet), "bad_epochs": int}.
    """

    lr: float
    factor: float = 0.25
    patience: int = 0
    min_lr: float = 0.0

    def __post_init__(self):
        lr = real("lr", self.lr, NONNEGATIVE, nonnegative)
        factor = real("factor", self.factor, "a float in (0, 1)", lambda x: 0.0 < x < 1.0)
        patience = checks.positive_int("patience", self.patience, minimum=0)
        min_lr = real("min_lr", self.min_lr, f"a float in [0, lr] = [0, {lr}]", lambda x: 0.0 <= x <= lr)
        for name, value in (("lr", lr), ("factor", factor), ("patience", patience), ("min_lr", min_lr)):
            object.__setattr__(self, name, value)

    def init(self):
        return {"lr": self.lr, "best": None, "bad_epochs": 0}

    def update(self, state, val_loss):
        """The state after an epoch whose validation loss is val_loss (a new dict; state is not changed)."""
        if not isinstance(state, Mapping) or set(state) != {"lr", "best", "bad_epochs"}:
            raise ValueError(f"state: expected the dict {{'lr', 'best', 'bad_epochs'}} made by init() or update(), "
                             f"got {state!r}")
        val_loss = real("val_loss", val_loss, "a float", lambda x: True)
        lr, best, bad_epochs = state["lr"], state["best"], state["bad_epochs"]
        if math.isfinite(val_loss) and (best is None or val_loss < best):
            return {"lr": lr, "best": val_loss, "bad_epochs": 0}
        bad_epochs += 1
        if bad_epochs > self.patience:
            lr, bad_epochs = max(lr * self.factor, self.min_lr), 0
        return {"lr": lr, "best": best, "bad_epochs": bad_epochs}


def learning_rate(schedule, lr, step, total, warmup=0, plateau=None):
    """The learning rate of the update after `step` under a run's schedule: "constant" (lr),
    "cosine" (cosine_with_warmup over `total` steps) or "plateau" (the Plateau state's lr)."""
    if schedule == "cosine":
        return cosine_with_warmup(step, total, lr, warmup)
    if schedule == "plateau":
        return plateau["lr"]
    return lr


def window_scaled(lr, length, k1):
    """The lr of one step of AWD-LSTM's variable-length BPTT (its main.py: `lr2 * seq_len / args.bptt`),
    lr * length / k1, for that step only: a window's loss is a mean over its steps, so a longer window
    weighs in proportion. length is the drawn one, even where the stream's end cuts the window (as
    main.py)."""
    return lr * length / k1
