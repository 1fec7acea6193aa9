"""The training loop and one step of truncated BPTT, in the order of docs/architecture.md:

    train(cfg, out)   open the run (bptt.training.opening), loop, release the run
    loop(t)           step until the budget is spent or a stop is asked for; every log_every steps
                      a record, every eval_every steps (and on stopping) validation and a checkpoint
    step(t, stop)     1 the window, 2-5 loss and gradients of this rank's rows (the engine) and
                      their sum over the ranks (bptt.training.ranks), 6 clipping, 7 the carried
                      state (from the window's parameters), 8 the optimiser; the record of 9, the
                      run files (books: metrics.jsonl, validation, checkpoints)

t is a Training, the one object a step reads and moves on. A resumed run reloads everything and
continues with the same arithmetic, so its parameters equal an uninterrupted run's bit for bit.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..files import FileError
from ..model import engine, regularisers
from . import clipping, forward_mode, optim, schedules
from .building import make_optimizer, trainable
from .config import TrainConfig
from .opening import Progress, Run, abandon, open_on_ranks, open_run
from .ranks import Ranks, rows_of_batch, share_of_targets, summed
from .stopping import Stop, StopSignals, after_step


class Diverged(RuntimeError):
    """A non-finite loss or gradient norm; the last good checkpoint is kept."""


@dataclass
class Training:
    """A run in training: everything loop and step read and move on. net.params and opt_state are
    updated in place; carried, progress and saved_at move on with each step and checkpoint."""

    run: Run
    cfg: TrainConfig
    task: object                 # bptt.training.tasks: batches, evaluation, the carried state's rule
    net: object                  # bptt.Network
    opt: object                  # the optimiser (building.make_optimizer)
    opt_state: dict
    carried: object              # this rank's rows of the state carried into the next window (None: zeros)
    progress: Progress
    total: int | None            # the step budget (opening.total_steps; None: --max-time alone)
    rng: np.random.Generator     # the dropout masks'
    ranks: Ranks
    on_step: Callable | None     # on_step(progress) -> True stops the run
    emit: Callable               # emit(kind, record): on_event on rank 0, nothing on the others
    notes: dict                  # for the start record: the data paths as given, a resume's changes
    saved_at: int = 0            # the step of the last checkpoint
    influence: object = None     # --gradient rtrl | uoro: the influence carried with `carried` (None: (R0))
    how: object = None           # --gradient rtrl | uoro: its rtrl.Algorithm (None: BPTT)
    signs: np.random.Generator | None = None     # --gradient uoro: its random signs' (forward_mode)


class Outcome(NamedTuple):
    status: str                 # "done", "interrupted", "time"
    progress: Progress
    valid: dict | None          # validation metrics of the final parameters (None: interrupted between validations)
    best_valid: float
    baselines: dict             # the trivial models' validation losses (uniform, unigram or prior, ...)

    @property
    def valid_loss(self):
        return None if self.valid is None else self.valid["loss"]


def train(cfg, out, resume=False, on_step=None, on_event=None, given=None, ranks=None):
    """Train per cfg into run directory out (bptt.training.rundir says what is written and refused).

    resume=True continues the run in out: cfg is None (the saved config) or the saved config with a
    new budget, lr or clip. cfg may also be what opening.settle made of the options (the command
    line settles them first; they are not resolved again). on_step(progress) -> True stops the run
    (as Ctrl-C does: saved, resumable); on_event(kind, record) receives "start", "log" and "eval"
    records for display. given: the data paths as the user typed them, for display. Raises
    Diverged on a non-finite loss or gradient, keeping the last good checkpoint.

    ranks: the ranks of a data-parallel run (bptt.training.ranks.world(); None: this process alone).
    Rank 0 opens and writes the run and calls on_event; the other ranks take rank 0's config (their
    cfg is not read). A stop that on_step or a signal asks for after step k takes effect after step
    k + 1, when every rank has heard of it."""
    ranks = ranks or Ranks()
    run = Run(out)
    emit = on_event if on_event is not None and ranks.root else (lambda kind, record: None)
    o = open_run(run, cfg, resume, given) if ranks.size == 1 else open_on_ranks(ranks, run, cfg, resume, given)
    try:
        engine.backend(o.net.arch.engine)      # built before the first step (the fast one sets up the heap)
        rng = np.random.default_rng(o.cfg.seed + 2)
        if o.progress.rng is not None:
            rng.bit_generator.state = o.progress.rng
        how, signs = None, None
        if o.cfg.gradient != "bptt":
            forward_mode.check(o.cfg, o.net.arch, ranks.size)
            how, signs = forward_mode.algorithm(o.cfg, o.net.arch, o.progress.signs)
        opened = {name: value for name, value in o._asdict().items() if name != "created"}
        return loop(Training(run=run, opt=make_optimizer(o.cfg), rng=rng, ranks=ranks, on_step=on_step, emit=emit,
                             saved_at=o.progress.step, how=how, signs=signs, **opened))
    except Diverged:
        raise
    except BaseException:
        if ranks.root and not resume and o.progress.step == 0:   # a new run that never stepped: leave nothing
            abandon(run, o.created)
        raise
    finally:
        run.release()


def loop(t):
    """Steps until the budget is spent or a stop is asked for (Stop); validates and saves every
    eval_every steps and, when it stops early, once more. Returns the Outcome."""
    baselines = t.task.baselines()
    t.emit("start", {"step": t.progress.step, "total": t.total, "params": sum(p.size for p in t.net.params.values()),
                     "config": t.cfg, "ranks": t.ranks.size, **t.notes, **t.task.describe(), **baselines})
    status, last_valid, stop = "done", None, Stop()
    started = time.perf_counter() - t.progress.elapsed
    with StopSignals() as signals, np.errstate(over="ignore", invalid="ignore"):   # divergence is checked in step
        try:
            while t.total is None or t.progress.step < t.total:
                record, heard = step(t, stop)
                t.progress.elapsed = time.perf_counter() - started
                record["elapsed"] = t.progress.elapsed
                last_valid = books(t, record) or last_valid
                stop = after_step(signals, t.on_step, t.progress, t.cfg.max_time if t.ranks.root else None)
                why = (stop if t.ranks.size == 1 else heard).status()   # with ranks: the step before's, heard by all
                if why is not None:
                    status = why
                    last_valid = books_at_stop(t, status) or last_valid
                    break
        except FileError as e:
            raise FileError(f"{e}. Training stopped at step {t.progress.step}; the checkpoint of step {t.saved_at} "
                            f"is intact: free some space, then continue with --resume") from None
    if last_valid is not None and last_valid["step"] != t.progress.step:
        last_valid = None                                     # stale: of earlier parameters
    if last_valid is None and status != "interrupted":
        last_valid = {"step": t.progress.step, **t.task.evaluate(evaluated(t), t.net.arch, t.ranks)}
    return Outcome(status, t.progress, last_valid, t.progress.best_valid, baselines)


def step(t, stop):
    """One update, with this rank's reasons to stop sent to the others on the way. Returns the
    step's metrics record and the reasons to stop summed over the ranks."""
    p, cfg = t.progress, t.cfg
    batch, tokens = t.task.batch(p.window, p.epoch)                               # 1. data -> window
    tick = time.perf_counter()
    flow = cfg.flow_every > 0 and (p.step + 1) % cfg.flow_every == 0
    r, rows, share = gradients(t, batch, flow)                                    # 2-5. engine
    loss, grads, flows, heard = summed(t.ranks, trainable(cfg, t.net.params), r, share, stop,
                                       (cfg.layers, batch["x"].shape[0]) if flow else None)
    grads = trainable(cfg, grads)                         # a frozen E's gradient is not used
    if flow:                                              # before clipping changes the gradients
        log(t, {"step": p.step + 1, "flow": flows,
                "grad_norms": {k: float(np.linalg.norm(g)) for k, g in grads.items()}})
    nonzero = nonzero_rows(t, batch, grads)
    norm, clipped = clipping.clip(grads, cfg.clip, cfg.clip_mode, nonzero)        # 6. clipping
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise t.ranks.everywhere(Diverged(divergence_advice(t, loss, norm)))
    if t.task.carries_state:                                                      # 7. carried state
        t.carried = t.task.next_state(t.net.params, t.net.arch, p.window, t.carried, r.state, rows, p.epoch)
    lr = schedules.learning_rate(cfg.schedule, cfg.lr, p.step, t.total, cfg.warmup, p.schedule)   # 8. optimiser
    extra = {}
    if cfg.variable_window:                           # AWD-LSTM: this step's lr scaled by its drawn length
        extra["window_length"] = t.task.window_length(p.window, p.epoch)
        lr = schedules.window_scaled(lr, extra["window_length"], cfg.window)
    following = p.window + 1
    if following == t.task.epoch_steps(p.epoch):
        following = 0
        p.epoch += 1
    t.opt.step(trainable(cfg, t.net.params), grads, t.opt_state, lr, rows=nonzero)
    p.step += 1
    p.window = following
    p.tokens += tokens
    p.clipped += clipped
    record = {"step": p.step, "epoch": p.epoch, "loss": loss, "lr": lr, "grad_norm": norm, "clipped": clipped,
              "clipped_fraction": p.clipped / p.step, "tokens_per_s": tokens / (time.perf_counter() - tick), **extra}
    return record, Stop(*heard)


def nonzero_rows(t, batch, grads):
    """embedding_rows of this step, for clipping and the optimiser to pass over those rows alone; None
    with several processes (the ranks' summed dE is nonzero on the union of their tokens) and with
    --gradient rtrl | uoro (the carried influence gives credit to the tokens of earlier windows too)."""
    return None if t.ranks.size > 1 or t.how is not None else embedding_rows(t.net.arch, batch["x"], grads)


def embedding_rows(arch, x, grads):
    """{"E": the distinct tokens of x} when the embedding's gradient is zero outside those rows (token
    inputs, an E of its own, not tied to the readout), else None."""
    if "E" not in grads or arch.tie_weights or x.dtype.kind not in "iu":
        return None
    return {"E": np.unique(x)}


def gradients(t, batch, flow):
    """(engine Result, rows, share of the targets) of this rank's rows of the batch; the Result is
    None when a rank has no rows (a classifier's last batch), its dropout generator moved as on the
    others. flow: keep dL/dh of every step (trace) for the flow record."""
    B = batch["x"].shape[1]
    if t.how is not None:                                   # --gradient rtrl | uoro: one process (forward_mode.check)
        return forward_gradients(t, batch), t.ranks.rows(B), 1.0
    rows, alone = t.ranks.rows(B), t.ranks.size == 1
    mine = batch if alone else rows_of_batch(batch, rows)
    r = None
    if rows.stop > rows.start:
        r = engine.loss_and_grads(t.net.params, t.net.arch, state=t.carried, **mine, dropout=t.cfg.dropout,
                                  rng=t.rng, dropout_rows=None if alone else (rows.start, rows.stop, B),
                                  clip_dh=t.cfg.clip_dh, trace=flow, recompute_every=t.cfg.recompute_every,
                                  memory_budget=t.cfg.memory_budget,
                                  **t.cfg.awd())
    elif t.cfg.dropout > 0 or t.cfg.awd():                  # no rows here: the generator moves as on the others
        engine.training_masks(t.net.arch, engine.Batch(batch["x"][:, :0], (), None, None), t.net.dtype,
                              t.cfg.dropout, t.rng, (0, 0, B), regularisers.options(**t.cfg.awd()))
    return r, rows, 1.0 if alone else share_of_targets(batch, mine)


def forward_gradients(t, batch):
    """--gradient rtrl | uoro: the window's engine Result by forward_mode.window from the carried state and
    influence; the influence starts afresh, (R0), with the state (t.carried None), and moves on in t."""
    influence = None if t.carried is None else t.influence
    assert batch["reset"] is None and batch["loss_mask"] is None, "refused by TrainConfig.check_gradient"
    r, t.influence = forward_mode.window(t.net.params, t.net.arch, batch["x"], batch["y"], t.carried, t.how, influence)
    return r


def divergence_advice(t, loss, norm):
    cfg = t.cfg
    clip_hint = f"--clip {cfg.clip / 4:g}" if cfg.clip else "--clip 1"
    return (f"training diverged at step {t.progress.step + 1}: loss {loss}, gradient norm {norm}. The last good "
            f"checkpoint (step {t.saved_at}) is kept in {t.run.file('checkpoint.safetensors')}; continue from it "
            f"with a lower learning rate or stronger clipping: bptt train {t.run.path} --resume --lr "
            f"{cfg.lr / 10:g} (or {clip_hint})")


# --- 9. the run files ------------------------------------------------------------------------------

def books(t, record):
    """After a step: its record every log_every steps; validation and a checkpoint every eval_every
    steps and after the last. Returns the validation record, if there was one."""
    if t.progress.step % t.cfg.log_every == 0 or t.progress.step == t.total:
        log(t, record)
        t.emit("log", record)
    if t.progress.step % t.cfg.eval_every == 0 or t.progress.step == t.total:
        valid = validated(t)
        t.emit("eval", valid)
        save(t)
        return valid
    return None


def books_at_stop(t, status):
    """Before an early stop: a checkpoint unless the step was just saved; out of time, a validation
    too (outside the schedule). Returns the validation record, if there was one."""
    if t.saved_at == t.progress.step:
        return None
    valid = None
    if status == "time":
        valid = validated(t, scheduled=False)
        t.emit("eval", valid)
    save(t)
    return valid


def log(t, record):
    """One record in metrics.jsonl (rank 0 writes)."""
    if t.ranks.root:
        t.run.log(record)


def save(t):
    """checkpoint.safetensors: the parameters, optimiser state, the carried state of all B streams
    (gathered on rank 0, which writes) and the progress with the dropout generator's state; with
    --gradient rtrl | uoro the carried influence too (and UORO's generator's state), in the same write."""
    t.progress.rng = t.rng.bit_generator.state
    t.progress.signs = None if t.signs is None else t.signs.bit_generator.state
    state = t.ranks.gather_rows(t.carried)
    influence = forward_mode.to_arrays(t.cfg.gradient, None if t.carried is None else t.influence)
    t.ranks.on_root(lambda: t.run.save(t.net.params, t.opt_state, state, t.progress.__dict__, influence))
    t.saved_at = t.progress.step


def validated(t, scheduled=True):
    """Validation: every rank scores its share of the validation data (task.evaluate), then rank 0
    records it and keeps best.safetensors; its record, best loss and schedule are sent to every
    rank. Only scheduled validations (every eval_every steps) move the plateau schedule, so that
    stopping early never changes the arithmetic; the same holds for NT-ASGD's trigger (averaging).
    The weights validated and kept are NT-ASGD's average once it has begun (evaluated)."""
    weights = evaluated(t)
    metrics = t.task.evaluate(weights, t.net.arch, t.ranks)
    p = t.progress

    def on_root():
        record = {"step": p.step, "split": "valid", **metrics}
        if record["loss"] < p.best_valid:
            p.best_valid, p.best_step = record["loss"], p.step
            t.run.save_best(weights, {"step": p.step, "valid_loss": record["loss"]})
        if t.cfg.schedule == "plateau" and scheduled:
            p.schedule = schedules.Plateau(t.cfg.lr).update(p.schedule, record["loss"])
        record["best"] = p.best_valid
        t.run.log(record)
        return record, p.best_valid, p.best_step, p.schedule

    record, p.best_valid, p.best_step, p.schedule = t.ranks.on_root(on_root)
    if scheduled:
        averaging(t, record["loss"])
    return record


def averaging(t, loss):
    """NT-ASGD's trigger, on every rank, fed a scheduled validation's loss: when it fires, averaging
    starts from this step's weights, and metrics.jsonl says so ({"step": T, "averaging_from": T})."""
    if isinstance(t.opt, optim.NTASGD) and t.opt.validated(trainable(t.cfg, t.net.params), t.opt_state, loss):
        log(t, {"step": t.progress.step, "averaging_from": t.progress.step})


def evaluated(t):
    """The weights that validation reads and best.safetensors keeps: NT-ASGD's average ax once it has
    begun (training goes on from the iterate), else the parameters."""
    return t.net.params | optim.averaged(trainable(t.cfg, t.net.params), t.opt_state)
