"""Training with truncated BPTT: set-up (a new run or a resumed one), one update step, the stop
policy, and the run directory's files (bptt.rundir: what is written when, and what is refused).

A resumed run reloads everything and continues with the same arithmetic, so its parameters equal
an uninterrupted run's bit for bit. Only the budget (steps, epochs, max_time), the learning rate
and the clipping threshold may change on resume (config.RESUMABLE); the change is recorded in
config.json and metrics.jsonl.
"""

import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..fast import heap
from ..files import FileError
from ..model import engine, init
from ..reference import CELLS
from . import clipping, data, optim, problems, rundir, schedules, tasks
from .config import RESUMABLE, TrainConfig
from .ranks import Ranks, rows_of

FILES = rundir.FILES


class Diverged(RuntimeError):
    pass


def build_network(cfg, input_size, output_size):
    from ..model.network import Network

    net = Network(cfg.cell, input_size, cfg.hidden, output_size, num_layers=cfg.layers,
                  embedding_dim=cfg.embedding or None, nonlinearity=cfg.nonlinearity,
                  dtype=np.dtype(cfg.dtype), seed=cfg.seed, tie_weights=cfg.tie, skip=cfg.skip,
                  engine=cfg.engine)
    init.apply(net.params, net.arch, np.random.default_rng([cfg.seed, 1]), cfg.init, cfg.recurrent_init,
               cfg.forget_bias, radius=cfg.radius)
    return net


def make_optimizer(cfg):
    hyper = {"weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        hyper |= {"momentum": cfg.momentum, "nesterov": cfg.nesterov}
    elif cfg.optimizer == "rmsprop":
        hyper |= {"momentum": cfg.momentum}
    elif cfg.optimizer == "adamw" and cfg.weight_decay == 0:
        hyper = {}                                            # AdamW's own default decay
    return optim.make(cfg.optimizer, **hyper)


OPTIMIZER_SLOTS = {"sgd": 1, "adagrad": 1, "rmsprop": 2, "adam": 2, "adamw": 2}


def memory_needed(cfg, input_size, output_size):
    """A lower bound of the bytes a training step holds: parameters, gradients and optimiser slots,
    and the caches of one window (gates and states of every layer, the readout's logits)."""
    cell = CELLS[cfg.cell]
    G = cell.GATES
    H, E, L = cfg.hidden, cfg.embedding, cfg.layers
    D0 = E or input_size
    n = (input_size * E + G * H * (D0 + H + 2) + (L - 1) * G * H * (2 * H + 2) + len(cell.EXTRA) * L * H * H
         + (0 if cfg.tie else output_size * H) + output_size)
    T = cfg.window if cfg.task == "lm" else cfg.length if cfg.task in problems.PROBLEMS else 1
    rows = T * cfg.batch
    per_row = L * (G + 3) * H + 2 * output_size + D0
    itemsize = np.dtype(cfg.dtype).itemsize
    return (n * (2 + OPTIMIZER_SLOTS[cfg.optimizer]) + rows * per_row) * itemsize, n


def available_memory():
    """Bytes of memory available (MemAvailable), or the physical memory where /proc is absent."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(cfg, input_size, output_size):
    need, n = memory_needed(cfg, input_size, output_size)
    have = available_memory()
    if need > have:
        raise ValueError(f"--hidden {cfg.hidden}, --layers {cfg.layers}, --embedding {cfg.embedding}, --batch "
                         f"{cfg.batch}: the run needs at least {need / 2**30:,.1f} GiB ({n:,} parameters, their "
                         f"gradients and optimiser state, and one window's caches), more than the "
                         f"{have / 2**30:.1f} GiB of memory available; choose a smaller model or batch")


@dataclass
class Progress:
    """Where a run is: everything besides arrays that a checkpoint must restore."""

    step: int = 0
    epoch: int = 0
    window: int = 0                  # index of the next batch (TBPTT window) in the epoch
    tokens: int = 0
    clipped: int = 0                 # steps on which clipping changed the gradient
    best_valid: float = math.inf
    best_step: int = 0
    elapsed: float = 0.0
    schedule: dict | None = None     # Plateau state
    rng: dict | None = None          # the dropout RNG's bit_generator.state
    sources: dict | None = None      # the data files' fingerprints, as in run.json (rundir.Run.write_marker)


class Run(rundir.Run):
    """A run directory (bptt.rundir) with what is built from it: the config, task and network."""

    def config(self):
        self.check_directory("RUN_DIR")
        if not self.path.exists():
            raise FileError(f"RUN_DIR: {self.path} does not exist")
        try:
            return TrainConfig.from_json(self.config_json())
        except FileError:
            raise
        except (ValueError, TypeError) as e:
            raise FileError(f"{self.file('config.json')}: {e}") from None

    def task(self, cfg=None):
        """The task of this run, with its saved vocabulary (and labels)."""
        cfg = cfg or self.config()
        vocab = self.vocab() if self.file("vocab.json").exists() else None
        return tasks.make(cfg, vocab, self.labels())

    def load(self):
        """(params, optimiser state, carried state or None, Progress) of the checkpoint."""
        params, opt_state, parts, meta = super().load()
        try:
            progress = Progress(**meta)
        except TypeError:
            raise FileError(f"{self.file('checkpoint.safetensors')}: its metadata is not a bptt training state "
                            f"(keys {sorted(meta)})") from None
        return params, opt_state, engine.public_state(parts) if parts else None, progress

    def sizes(self, cfg):
        """(input_size, output_size) of the run's network, from its saved files alone."""
        if cfg.task in problems.PROBLEMS:
            return problems.get(cfg.task).input_size, problems.get(cfg.task).output_size
        vocab = self.vocab()
        if cfg.task != "classify":
            return vocab.size, vocab.size
        labels = self.labels()
        if labels is None:
            raise FileError(f"{self.file('labels.json')}: missing; the classifier's labels are unknown")
        return vocab.size, labels.size

    def network(self, which="best"):
        """The run's network with the weights of best.safetensors (or the last checkpoint), and their
        metadata. Needs only the run directory, not the training data."""
        cfg = self.config()
        params, meta = self.load_params(which)
        net = build_network(cfg, *self.sizes(cfg))
        net.params = self.matching(net, params, "best.safetensors" if which == "best" and
                                   self.file("best.safetensors").exists() else "checkpoint.safetensors")
        return net, meta

    def matching(self, net, params, filename):
        """The saved params, checked against the network config.json (and vocab.json) describe."""
        expected = {name: a.shape for name, a in net.params.items()}
        problems_ = [f"{name} missing" for name in expected if name not in params]
        problems_ += [f"{name} not expected" for name in params if name not in expected]
        problems_ += [f"{name} is {tuple(params[name].shape)} there, {expected[name]} by config.json"
                      for name in expected if name in params and params[name].shape != expected[name]]
        problems_ += [f"{name} is {params[name].dtype} there, {net.dtype} by config.json"
                      for name in expected if name in params and params[name].dtype != net.dtype][:1]
        if problems_:
            raise FileError(f"{self.file('config.json')} (with vocab.json) does not match {self.file(filename)}: "
                            f"{'; '.join(problems_[:4])}{' ...' if len(problems_) > 4 else ''}; was one of them "
                            f"edited or copied from another run?")
        return {name: params[name] for name in expected}      # the network's order: the same sums


def total_steps(cfg, windows_per_epoch):
    """The step budget: --steps, or --epochs worth of windows (the smaller), or one epoch; None
    (unbounded) when only --max-time is given."""
    budgets = [cfg.steps] if cfg.steps is not None else []
    if cfg.epochs is not None:
        budgets.append(math.ceil(cfg.epochs * windows_per_epoch))
    if budgets:
        return min(budgets)
    if cfg.max_time is not None:
        return None
    return windows_per_epoch


def learning_rate(cfg, progress, total):
    if cfg.schedule == "cosine":
        return schedules.cosine_with_warmup(progress.step, total, cfg.lr, cfg.warmup)
    if cfg.schedule == "plateau":
        return progress.schedule["lr"]
    return cfg.lr


def clip(cfg, grads):
    """Clip in place as configured; returns (pre-clip global norm, whether anything changed)."""
    norm = clipping.global_norm(grads)
    if cfg.clip == 0 or not math.isfinite(norm):
        return norm, False
    if cfg.clip_mode == "norm":
        clipping.clip_global_norm(grads, cfg.clip)
        return norm, norm > cfg.clip
    if cfg.clip_mode == "param":
        norms = clipping.clip_per_parameter(grads, cfg.clip)
        return norm, any(n > cfg.clip for n in norms.values())
    return norm, clipping.clip_value(grads, cfg.clip) > 0


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM set a flag; the loop stops at the next step boundary, after
    saving. A second signal stops at once (KeyboardInterrupt): the last checkpoint is intact."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.raised = None
        self.previous = {}

    def __enter__(self):
        for s in self.SIGNALS:
            try:
                self.previous[s] = signal.signal(s, self.handle)
            except ValueError:            # not the main thread: leave the signals alone
                break
        return self

    def handle(self, signum, frame):
        if self.raised is not None:
            raise KeyboardInterrupt
        self.raised = signal.Signals(signum).name

    def __exit__(self, *exc):
        for s, previous in self.previous.items():
            signal.signal(s, previous)


class Outcome(NamedTuple):
    status: str                 # "done", "interrupted", "time"
    progress: Progress
    valid: dict | None          # validation metrics of the final parameters (None: interrupted between validations)
    best_valid: float
    baselines: dict             # the trivial models' validation losses (uniform, unigram or prior, ...)

    @property
    def valid_loss(self):
        return None if self.valid is None else self.valid["loss"]


def absolute(given):
    """given (a dict of config fields) with its data paths made absolute, so that the run can be
    resumed from any directory."""
    return given | {name: str(Path(given[name]).absolute()) for name in ("data", "valid") if given.get(name)}


def source(cfg, name, given=None):
    """The fingerprint of data file `name` ("data" or "valid") and the path as the user gave it (None:
    the run has no such file)."""
    path = getattr(cfg, name)
    if path is not None:
        return {"given": given or path, **rundir.fingerprint(path)}
    if name == "data" and cfg.task == "lm":
        return {"given": rundir.SHIPPED, **rundir.shipped_fingerprint(tasks.shipped_text())}
    return None


def data_sources(cfg, given):
    """{"data" | "valid": fingerprint and given path} of the run's files."""
    found = {name: source(cfg, name, given.get(name)) for name in ("data", "valid")}
    return {name: s for name, s in found.items() if s is not None}


def check_sources(run, cfg, recorded):
    """Resume refuses a data file that changed since the run started. recorded: the fingerprints the
    checkpoint holds (None in a checkpoint written before it held them), else the marker's; the
    marker is written again from them if it is missing. A run with neither cannot be verified and
    is refused. Returns {"data" | "valid": the path as the user gave it}."""
    marker = run.marker()
    if recorded is None and marker is None:
        raise FileError(f"--resume: {run.file(rundir.MARKER)} is missing and {run.file('checkpoint.safetensors')} "
                        f"does not record the training data either, so the data cannot be checked against the "
                        f"run's; restore {rundir.MARKER}, or start a new run")
    recorded = recorded if recorded is not None else marker["data"]
    for name, before in recorded.items():
        try:
            after = source(cfg, name)
        except FileError:                                     # gone, or unreadable
            after = None
        if after is None or after["sha256"] != before.get("sha256"):
            what = before.get("path") or before.get("given")
            got = "is gone" if after is None else (f"is now {after['bytes']:,} bytes, sha256 {after['sha256'][:12]}")
            raise FileError(f"--{name}: {what} changed since the run started (it was {before.get('bytes', 0):,} "
                            f"bytes, sha256 {str(before.get('sha256'))[:12]}; it {got}); restore it, or start a "
                            f"new run")
    if marker is None:
        run.write_marker(recorded)
    return {name: m.get("given") for name, m in recorded.items()}


def resumed(saved, given):
    """The saved config with the given fields ({name: value}); only config.RESUMABLE ones may differ
    from the saved values. Returns (config, {name: (old, new)})."""
    fixed = [name for name, value in given.items() if name not in RESUMABLE and value != getattr(saved, name)]
    if fixed:
        name = fixed[0]
        was = getattr(saved, name)
        was = "no value, the default," if was is None else repr(was)
        raise ValueError(f"{name}: cannot change when resuming (the run has {was} got "
                         f"{given[name]!r}); only {', '.join(RESUMABLE)} may change: start a new run in another "
                         f"directory to change it")
    changes = {name: (getattr(saved, name), given[name]) for name in RESUMABLE
               if name in given and given[name] != getattr(saved, name)}
    return saved.replace(**{name: new for name, (_, new) in changes.items()}), changes


def resumed_config(run, cfg):
    """The saved config, with the budget, lr or clip of cfg (None: unchanged)."""
    saved = run.config()
    return (saved, {}) if cfg is None else resumed(saved, absolute(cfg.to_json()))


def resume_task(run, cfg):
    """The task, its vocabulary (and labels) built again from the training data, which check_sources
    verified unchanged: a saved vocab.json (labels.json) must equal it, a missing one is saved
    again. Returns (task, the files rebuilt)."""
    task = tasks.make(cfg)
    rebuilt = []
    for name, what, built in (("vocab.json", "vocabulary", getattr(task, "vocab", None)),
                              ("labels.json", "label set", getattr(task, "labels", None))):
        if built is None:
            continue
        if not run.file(name).exists():
            run.write_json(name, built.to_json())
            rebuilt.append(name)
        elif (run.vocab() if name == "vocab.json" else run.labels()) != built:
            raise FileError(f"{run.file(name)}: not the {what} of the run's training data (which is unchanged); "
                            f"was it edited? Restore it, or delete it and --resume writes it again")
    return task, rebuilt


def open_new(run, cfg, given):
    """Check everything, then create the run: (created, task, net, optimiser state, progress)."""
    run.check_fresh()
    task = tasks.make(cfg)
    check_memory(cfg, task.input_size, task.output_size)
    net = build_network(cfg, task.input_size, task.output_size)
    created = not run.path.exists()
    run.create()
    run.lock()
    try:
        run.check_fresh()                                       # again, under the lock: another process may
        run.check_writable()                                    # have made a run here since; its files stay
    except BaseException:
        run.release()
        if created and {p.name for p in run.path.iterdir()} <= {rundir.LOCK}:
            run.file(rundir.LOCK).unlink(missing_ok=True)
            run.path.rmdir()
        raise
    try:
        run.remove_temporaries()
        sources = data_sources(cfg, given)
        run.write_marker(sources)
        run.write_json("config.json", cfg.to_json())
        if hasattr(task, "vocab"):
            run.write_json("vocab.json", task.vocab.to_json())
        if cfg.task == "classify":
            run.write_json("labels.json", task.labels.to_json())
        progress = Progress(schedule=schedules.Plateau(cfg.lr).init() if cfg.schedule == "plateau" else None,
                            sources=sources)
        opt_state = make_optimizer(cfg).init(net.params)
        run.save(net.params, opt_state, None, progress.__dict__)
    except BaseException:
        abandon(run, created)
        raise
    return created, task, net, opt_state, progress


def abandon(run, created):
    """A new run that failed before its first step leaves nothing behind."""
    run.remove_own_files()
    run.release()
    run.file(rundir.LOCK).unlink(missing_ok=True)
    if created:
        try:
            run.path.rmdir()
        except OSError:
            pass


def open_resumed(run, cfg):
    run.check_resumable()
    run.lock()
    run.check_writable()
    run.remove_temporaries()
    cfg, changes = resumed_config(run, cfg)
    params, opt_state, carried, progress = run.load()
    given = check_sources(run, cfg, progress.sources)
    progress.sources = progress.sources or run.marker()["data"]
    task, rebuilt = resume_task(run, cfg)
    net = build_network(cfg, task.input_size, task.output_size)
    net.params = run.matching(net, params, "checkpoint.safetensors")
    if "lr" in changes and progress.schedule is not None:
        progress.schedule = progress.schedule | {"lr": cfg.lr}      # the plateau schedule restarts from it
    total = total_steps(cfg, task.steps_per_epoch)
    out_of_time = cfg.max_time is not None and progress.elapsed >= cfg.max_time
    if (total is not None and progress.step >= total) or out_of_time:
        budget = ", ".join(f"{n} {getattr(cfg, n)}" for n in ("steps", "epochs", "max_time") if getattr(cfg, n)) or \
            f"one epoch ({task.steps_per_epoch} steps)"
        raise ValueError(f"--resume: the run already reached its budget ({budget}) at step {progress.step}; "
                         f"give a larger --steps, --epochs or --max-time to continue it")
    if changes:
        run.write_json("config.json", cfg.to_json())
    return cfg, task, net, opt_state, carried, progress, {"changes": changes, "rebuilt": rebuilt, "given": given}


class Opened(NamedTuple):
    """A run ready for its first step (open_run)."""

    created: bool               # its directory was made for it (a new run that fails leaves nothing)
    cfg: TrainConfig
    task: object
    net: object
    opt_state: dict
    carried: object             # the state carried into the next window (None: zeros)
    progress: Progress
    notes: dict                 # for display: the data paths as given, a resume's changes and rebuilt files


def open_run(run, cfg, resume, given):
    """A new run, or the run in `run` resumed: Opened."""
    if resume:
        try:
            cfg, task, net, opt_state, carried, progress, notes = open_resumed(run, cfg)
            run.truncate_log(progress.step)
            if notes["changes"]:
                run.log({"step": progress.step, "changed": {k: list(v) for k, v in notes["changes"].items()}})
        except BaseException:
            run.release()
            raise
        return Opened(False, cfg, task, net, opt_state, carried, progress, notes)
    cfg = TrainConfig(**absolute(cfg.to_json()))
    created, task, net, opt_state, progress = open_new(run, cfg, given or {})
    return Opened(created, cfg, task, net, opt_state, None, progress,
                  {"given": {k: v for k, v in (given or {}).items() if v}})


def open_on_ranks(ranks, run, cfg, resume, given):
    """open_run on rank 0, which sends the others the config, vocabulary, labels, arrays and progress;
    every rank builds the task from its own copy of the data and takes its rows of the carried state
    (bptt.training.ranks). A rank that cannot ends the job before the first step, the run as it was."""
    here = None

    def on_root():
        nonlocal here
        here = o = open_run(run, cfg, resume, given)
        return {"cfg": o.cfg, "vocab": o.task.vocab.to_json() if hasattr(o.task, "vocab") else None,
                "labels": o.task.labels.to_json() if hasattr(o.task, "labels") else None, "params": o.net.params,
                "opt_state": o.opt_state, "carried": o.carried, "progress": o.progress,
                "sources": run.marker()["data"]}

    sent = ranks.on_root(on_root)
    error = None
    try:
        ranks.check_batch(sent["cfg"].batch)
        if not ranks.root:
            cfg = sent["cfg"]                                 # rank 0's (a resumed run's saved config)
            check_copies(cfg, sent["sources"])
            vocab = None if sent["vocab"] is None else data.Vocab.from_json(sent["vocab"])
            labels = None if sent["labels"] is None else data.LabelSet.from_json(sent["labels"])
            task = tasks.make(cfg, vocab, labels)
            net = build_network(cfg, task.input_size, task.output_size)
            net.params = sent["params"]
            here = Opened(False, cfg, task, net, sent["opt_state"], sent["carried"], sent["progress"], {})
    except Exception as e:                                     # noqa: BLE001 (rank 0 reports it)
        error = e
    try:
        ranks.agree(error)
    except BaseException:
        if ranks.root:
            if not resume and here.progress.step == 0:
                abandon(run, here.created)
            run.release()
        raise
    return here._replace(carried=rows_of(here.carried, ranks.rows(here.cfg.batch)))


def check_copies(cfg, sources):
    """This rank's data files are rank 0's (sources: their fingerprints in the run's marker): each
    rank reads its own copy, and a different copy would train on different numbers without a word."""
    for name, theirs in sources.items():
        mine = source(cfg, name)
        if mine["sha256"] != theirs["sha256"]:
            raise FileError(f"--{name}: this machine's {mine['path'] or 'shipped text'} is not rank 0's ({mine['bytes']:,} "
                            f"bytes, sha256 {mine['sha256'][:12]} here; {theirs['bytes']:,} bytes, sha256 "
                            f"{theirs['sha256'][:12]} on rank 0); give every machine the same file")


def train(cfg, out, resume=False, on_step=None, on_event=None, given=None, ranks=None):
    """Train per cfg into run directory out (bptt.rundir says what is written and refused).

    resume=True continues the run in out: cfg is None (the saved config) or the saved config with a
    new budget, lr or clip. on_step(progress) -> True stops the run (as Ctrl-C does: saved,
    resumable); on_event(kind, record) receives "start", "log" and "eval" records for display.
    given: the data paths as the user typed them, for display. Raises Diverged on a non-finite
    loss or gradient, keeping the last good checkpoint.

    ranks: the ranks of a data-parallel run (bptt.training.ranks.world(); None: this process alone).
    Rank 0 opens and writes the run and calls on_event; the other ranks take rank 0's config (their
    cfg is not read). A stop that on_step or a signal asks for after step k takes effect after step
    k + 1, when every rank has heard of it."""
    ranks = ranks or Ranks()
    run = Run(out)
    emit = on_event if on_event is not None and ranks.root else (lambda kind, record: None)
    heap.reuse_freed_memory()                     # a step's arrays come back from the heap, not the kernel
    o = open_run(run, cfg, resume, given) if ranks.size == 1 else open_on_ranks(ranks, run, cfg, resume, given)
    try:
        return loop(run, o.cfg, o.task, o.net, o.opt_state, o.carried, o.progress, on_step, emit, o.notes, ranks)
    except Diverged:
        raise
    except BaseException:
        if ranks.root and not resume and o.progress.step == 0:   # a new run that never stepped: leave nothing
            abandon(run, o.created)
        raise
    finally:
        run.release()


def loop(run, cfg, task, net, opt_state, carried, progress, on_step, emit, notes, ranks):
    opt = make_optimizer(cfg)
    total = total_steps(cfg, task.steps_per_epoch)
    rng = np.random.default_rng(cfg.seed + 2)
    if progress.rng is not None:
        rng.bit_generator.state = progress.rng
    baselines = task.baselines()
    emit("start", {"step": progress.step, "total": total, "params": sum(p.size for p in net.params.values()),
                   "config": cfg, "ranks": ranks.size, **notes, **task.describe(), **baselines})
    saved_at = progress.step
    log = run.log if ranks.root else (lambda record: None)

    def save():
        nonlocal saved_at
        progress.rng = rng.bit_generator.state
        state = ranks.gather_rows(carried)                     # all B streams' state, on rank 0
        ranks.on_root(lambda: run.save(net.params, opt_state, state, progress.__dict__))
        saved_at = progress.step

    status, last_valid = "done", None
    started = time.perf_counter() - progress.elapsed
    flags = np.zeros(3)               # this rank's reasons to stop: a signal, on_step, --max-time (rank 0's clock)
    with StopSignals() as stop, np.errstate(over="ignore", invalid="ignore"):   # divergence is checked below
        try:
            while total is None or progress.step < total:
                carried, record, heard = step(cfg, task, net, opt, opt_state, carried, progress, rng, total,
                                              saved_at, ranks, flags, log, run)
                progress.elapsed = time.perf_counter() - started
                record["elapsed"] = progress.elapsed
                if progress.step % cfg.log_every == 0 or progress.step == total:
                    log(record)
                    emit("log", record)
                if progress.step % cfg.eval_every == 0 or progress.step == total:
                    last_valid = validated(ranks, run, cfg, task, net, progress)
                    emit("eval", last_valid)
                    save()
                asked = on_step is not None and on_step(progress)
                flags[:] = (stop.raised is not None, asked,
                            ranks.root and cfg.max_time is not None and progress.elapsed >= cfg.max_time)
                signalled, asked, out_of_time = (flags if ranks.size == 1 else heard) > 0   # with ranks: of the step before
                if signalled or asked or out_of_time:
                    status = "time" if out_of_time and not signalled else "interrupted"
                    if saved_at != progress.step:
                        if status == "time":
                            last_valid = validated(ranks, run, cfg, task, net, progress, scheduled=False)
                            emit("eval", last_valid)
                        save()
                    break
        except FileError as e:
            raise FileError(f"{e}. Training stopped at step {progress.step}; the checkpoint of step {saved_at} is "
                            f"intact: free some space, then continue with --resume") from None
    if last_valid is not None and last_valid["step"] != progress.step:
        last_valid = None                                     # stale: of earlier parameters
    if last_valid is None and status != "interrupted":
        last_valid = {"step": progress.step, **task.evaluate(net.params, net.arch, ranks)}
    return Outcome(status, progress, last_valid, progress.best_valid, baselines)


def step(cfg, task, net, opt, opt_state, carried, progress, rng, total, saved_at, ranks, flags, log, run):
    """One update: loss and gradients of the next window (with ranks: of this rank's rows, then
    summed over the ranks with `flags`), clipping, the optimiser. Returns the state carried into
    the next window, the step's metrics record and the flags summed over the ranks."""
    batch, tokens = task.batch(progress.window, progress.epoch)
    tick = time.perf_counter()
    flow = cfg.flow_every > 0 and (progress.step + 1) % cfg.flow_every == 0
    B = batch["x"].shape[1]
    rows = ranks.rows(B)
    mine = batch if ranks.size == 1 else rows_of_batch(batch, rows)
    r = None
    if rows.stop > rows.start:                            # a classifier's last batch may leave a rank no rows
        r = engine.loss_and_grads(net.params, net.arch, state=carried, **mine, dropout=cfg.dropout, rng=rng,
                                  dropout_rows=None if ranks.size == 1 else (rows.start, rows.stop, B),
                                  clip_dh=cfg.clip_dh, trace=flow, recompute_every=cfg.recompute_every)
    elif cfg.dropout > 0:
        engine.dropout_masks(net.arch, engine.Batch(batch["x"][:, :0], (), None, None), cfg.dropout, rng,
                             net.dtype, (0, 0, B))        # the generator moves as on the other ranks
    share = 1.0 if ranks.size == 1 else share_of_targets(batch, mine)
    loss, grads, flows, heard = combined(ranks, net.params, r, share, flow, flags, batch["x"].shape[0], cfg.layers)
    if flow:                                              # before clipping changes the gradients
        log({"step": progress.step + 1, "flow": flows,
             "grad_norms": {k: float(np.linalg.norm(g)) for k, g in grads.items()}})
    norm, clipped = clip(cfg, grads)
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise ranks.everywhere(Diverged(divergence_advice(run, cfg, progress, loss, norm, saved_at)))
    if task.carries_state:
        carried = task.next_state(net.params, net.arch, progress.window, carried, r.state, rows)
    following = progress.window + 1
    if following == task.steps_per_epoch:
        following = 0
        progress.epoch += 1
    lr = learning_rate(cfg, progress, total)
    opt.step(net.params, grads, opt_state, lr)
    progress.step += 1
    progress.window = following
    progress.tokens += tokens
    progress.clipped += clipped
    record = {"step": progress.step, "epoch": progress.epoch, "loss": loss, "lr": lr, "grad_norm": norm,
              "clipped": clipped, "clipped_fraction": progress.clipped / progress.step,
              "tokens_per_s": tokens / (time.perf_counter() - tick)}
    return carried, record, heard


def rows_of_batch(batch, rows):
    """The keyword arguments of engine.loss_and_grads for the rows (a slice) of a batch: its arrays
    have the rows on axis 1 (T, B, ...), but lengths (B,) and many-to-one targets (B, ...) on axis 0."""
    on_axis_0 = {"lengths"} | ({"y"} if batch.get("target") == "last" else set())

    def cut(name, a):
        if a is None or isinstance(a, str):                   # target, loss
            return a
        return a[rows] if name in on_axis_0 else a[:, rows]

    return {name: cut(name, a) for name, a in batch.items()}


def share_of_targets(batch, mine):
    """This rank's targets over the whole batch's: the weight of its mean loss and gradients."""
    def count(b):
        T, B = b["x"].shape[:2]
        return engine.targets_counted(T, B, b.get("target", "every"), b.get("lengths"), b.get("loss_mask"))
    return count(mine) / count(batch)


def combined(ranks, params, r, share, flow, flags, T, L):
    """(loss, grads, flow, flags) of the whole batch from each rank's Result r (None: no rows) and
    share of the targets: one Allreduce of [share g_r..., share loss_r, flags, share² Σ dh²...].
    flow: per layer, the norm of dL/dh_t over the batch at each step t (a list of T floats)."""
    if ranks.size == 1:
        return r.loss, r.grads, np.sqrt(flow_squares(r, 1.0, T)).reshape(L, T).tolist() if flow else None, flags
    sizes = [p.size for p in params.values()]
    n = sum(sizes)
    buffer = np.empty(n + 1 + len(flags) + (L * T if flow else 0), next(iter(params.values())).dtype)
    if r is None:
        buffer[:] = 0.0
    else:
        offset = 0
        for name, size in zip(params, sizes):
            np.multiply(r.grads[name].reshape(-1), share, out=buffer[offset:offset + size])
            offset += size
        buffer[n] = share * r.loss
        if flow:
            buffer[n + 1 + len(flags):] = flow_squares(r, share, T)
    buffer[n + 1:n + 1 + len(flags)] = flags
    ranks.sum(buffer)
    grads, offset = {}, 0
    for (name, p), size in zip(params.items(), sizes):
        grads[name] = buffer[offset:offset + size].reshape(p.shape)
        offset += size
    flows = np.sqrt(buffer[n + 1 + len(flags):].astype(np.float64)).reshape(L, T).tolist() if flow else None
    return float(buffer[n]), grads, flows, buffer[n + 1:n + 1 + len(flags)].copy()


def flow_squares(r, share, T):
    """||share dL/dh^l_t||² over the rows, for every layer l and step t (L T,): the rows' part of the
    flow record (r.dhs, traced), whose sum over the ranks is the whole batch's."""
    return np.concatenate([share ** 2 * (dh.reshape(T, -1).astype(np.float64) ** 2).sum(axis=1) for dh in r.dhs])


def divergence_advice(run, cfg, progress, loss, norm, saved_at):
    clip_hint = f"--clip {cfg.clip / 4:g}" if cfg.clip else "--clip 1"
    return (f"training diverged at step {progress.step + 1}: loss {loss}, gradient norm {norm}. The last good "
            f"checkpoint (step {saved_at}) is kept in {run.file('checkpoint.safetensors')}; continue from it with "
            f"a lower learning rate or stronger clipping: bptt train {run.path} --resume --lr {cfg.lr / 10:g} "
            f"(or {clip_hint})")


def validated(ranks, run, cfg, task, net, progress, scheduled=True):
    """Validation: every rank scores its share of the validation data (task.evaluate), then rank 0
    keeps the books (validate); its record, best loss and schedule are sent to every rank."""
    metrics = task.evaluate(net.params, net.arch, ranks)

    def on_root():
        record = validate(run, cfg, net, progress, metrics, scheduled)
        return record, progress.best_valid, progress.best_step, progress.schedule

    record, progress.best_valid, progress.best_step, progress.schedule = ranks.on_root(on_root)
    return record


def validate(run, cfg, net, progress, metrics, scheduled=True):
    """Records the validation metrics; keeps best.safetensors. Only scheduled validations (every
    eval_every steps) move the plateau schedule, so stopping early never changes the arithmetic."""
    record = {"step": progress.step, "split": "valid", **metrics}
    loss = record["loss"]
    if loss < progress.best_valid:
        progress.best_valid, progress.best_step = loss, progress.step
        run.save_best(net.params, {"step": progress.step, "valid_loss": loss})
    if cfg.schedule == "plateau" and scheduled:
        progress.schedule = schedules.Plateau(cfg.lr).update(progress.schedule, loss)
    record["best"] = progress.best_valid
    run.log(record)
    return record

