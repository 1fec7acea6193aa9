"""Training a language model with truncated BPTT: the loop, validation, checkpoints, resume.

A run directory holds everything needed to evaluate, sample or continue:

    RUN/config.json             the TrainConfig
    RUN/vocab.json              the vocabulary (sorted, built from the training text only)
    RUN/checkpoint.safetensors  latest: weights, optimiser state, carried hidden state; its metadata
                                holds the step, the position in the stream, the RNG and schedule state
    RUN/best.safetensors        the weights with the best validation loss so far
    RUN/metrics.jsonl           one JSON object per logged step and per validation

Every file is written atomically. A resumed run reloads all of it and continues with the same
arithmetic, so its parameters equal an uninterrupted run's bit for bit.
"""

import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import checkpoint, checkpointing, clipping, data, engine, heap, init, optim, problems, schedules, tasks
from .config import TrainConfig

FILES = ("config.json", "vocab.json", "checkpoint.safetensors", "best.safetensors", "metrics.jsonl")


class Diverged(RuntimeError):
    pass


def build_network(cfg, input_size, output_size):
    from .network import Network

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


def group(arrays, prefix):
    """The arrays saved under "prefix/name", keyed by name."""
    return {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def prefixed(prefix, arrays):
    return {f"{prefix}/{k}": v for k, v in arrays.items()}


class Run:
    """The files of one run directory."""

    def __init__(self, path):
        self.path = Path(path)

    def file(self, name):
        return self.path / name

    def exists(self):
        return self.file("checkpoint.safetensors").exists()

    def save(self, params, opt_state, carried, progress):
        parts = () if carried is None else carried if isinstance(carried, tuple) else (carried,)
        arrays = prefixed("param", params) | prefixed("optim", opt_state) | prefixed("state", dict(enumerate(parts)))
        checkpoint.save_arrays(self.file("checkpoint.safetensors"), arrays, progress.__dict__)

    def save_best(self, params, meta):
        checkpoint.save_arrays(self.file("best.safetensors"), prefixed("param", params), meta)

    def load(self):
        arrays, meta = checkpoint.load_arrays(self.file("checkpoint.safetensors"))
        state = group(arrays, "state")
        parts = tuple(state[str(i)] for i in range(len(state)))
        carried = engine.public_state(parts) if parts else None
        return group(arrays, "param"), group(arrays, "optim"), carried, Progress(**meta)

    def load_params(self, which="best"):
        """The weights of best.safetensors (or checkpoint.safetensors), and their metadata."""
        best = which == "best" and self.file("best.safetensors").exists()
        arrays, meta = checkpoint.load_arrays(self.file("best.safetensors" if best else "checkpoint.safetensors"))
        return group(arrays, "param"), meta

    def config(self):
        return TrainConfig.from_json(checkpoint.read_json(self.file("config.json"), "config"))

    def vocab(self):
        return data.Vocab.from_json(checkpoint.read_json(self.file("vocab.json"), "vocabulary"))

    def labels(self):
        if not self.file("labels.json").exists():
            return None
        return data.LabelSet.from_json(checkpoint.read_json(self.file("labels.json"), "label set"))

    def task(self, cfg=None):
        """The task of this run, with its saved vocabulary (and labels)."""
        cfg = cfg or self.config()
        vocab = self.vocab() if self.file("vocab.json").exists() else None
        return tasks.make(cfg, vocab, self.labels())

    def sizes(self, cfg):
        """(input_size, output_size) of the run's network, from its saved files alone."""
        if cfg.task in problems.PROBLEMS:
            return problems.get(cfg.task).input_size, problems.get(cfg.task).output_size
        vocab = self.vocab()
        return vocab.size, (self.labels().size if cfg.task == "classify" else vocab.size)

    def network(self, which="best"):
        """The run's network with the weights of best.safetensors (or the last checkpoint), and their
        metadata. Needs only the run directory, not the training data."""
        cfg = self.config()
        params, meta = self.load_params(which)
        net = build_network(cfg, *self.sizes(cfg))
        net.params = {name: params[name] for name in net.params}
        return net, meta

    def log(self, record):
        with open(self.file("metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_log(self, step):
        """Drop records written after the checkpoint at step (a resumed run writes them again)."""
        path = self.file("metrics.jsonl")
        if path.exists():
            keep = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
            checkpoint.write_bytes_atomic(path, "".join(line + "\n" for line in keep).encode())


def total_steps(cfg, windows_per_epoch):
    """The step budget: --steps, or --epochs worth of windows (the smaller), or one epoch; None
    (unbounded) when only --max-time is given."""
    budgets = [cfg.steps] if cfg.steps is not None else []
    if cfg.epochs is not None:
        budgets.append(math.ceil(cfg.epochs * windows_per_epoch))
    if budgets:
        return min(budgets)
    if cfg.max_time is not None:
        if cfg.schedule == "cosine":
            raise ValueError("schedule: 'cosine' needs a known length; give --steps or --epochs with --max-time")
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


class SigintFlag:
    """Ctrl-C sets a flag; the loop stops at the next step boundary, after saving."""

    def __init__(self):
        self.raised = False

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGINT, self.handle)
        except ValueError:            # not the main thread: leave Ctrl-C alone
            self.previous = None
        return self

    def handle(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


class Outcome(NamedTuple):
    status: str                 # "done", "interrupted", "time"
    progress: Progress
    valid: dict | None          # validation metrics of the final parameters (None: interrupted between validations)
    best_valid: float
    baselines: dict             # the trivial models' validation losses (uniform, unigram or prior, ...)

    @property
    def valid_loss(self):
        return None if self.valid is None else self.valid["loss"]


def train(cfg, out, resume=False, on_step=None, on_event=None):
    """Train per cfg into run directory out. on_step(progress) -> True stops the run (as Ctrl-C
    does: saved, resumable); on_event(kind, record) receives "log", "eval", "start" records for
    display. Raises Diverged on a non-finite loss or gradient, keeping the last good checkpoint."""
    run = Run(out)
    emit = on_event or (lambda kind, record: None)
    heap.reuse_freed_memory()                     # a step's arrays come back from the heap, not the kernel
    if resume:
        if not run.exists():
            raise ValueError(f"--resume: {run.path} has no checkpoint to resume from")
        cfg = run.config().replace(steps=cfg.steps, epochs=cfg.epochs, max_time=cfg.max_time)
        task = run.task(cfg)
    else:
        if run.exists():
            raise ValueError(f"--out: {run.path} already holds a run; pass --resume to continue it "
                             f"or choose another directory")
        task = tasks.make(cfg)
    net = build_network(cfg, task.input_size, task.output_size)
    opt = make_optimizer(cfg)
    total = total_steps(cfg, task.steps_per_epoch)

    if resume:
        params, opt_state, carried, progress = run.load()
        net.params = {name: params[name] for name in net.params}      # the same order: the same sums
    else:
        run.path.mkdir(parents=True, exist_ok=True)
        checkpoint.write_json_atomic(run.file("config.json"), cfg.to_json())
        if hasattr(task, "vocab"):
            checkpoint.write_json_atomic(run.file("vocab.json"), task.vocab.to_json())
        if cfg.task == "classify":
            checkpoint.write_json_atomic(run.file("labels.json"), task.labels.to_json())
        opt_state, carried = opt.init(net.params), None
        progress = Progress(schedule=schedules.Plateau(cfg.lr).init() if cfg.schedule == "plateau" else None)
        run.save(net.params, opt_state, carried, progress)
    run.truncate_log(progress.step)
    rng = np.random.default_rng(cfg.seed + 2)
    if progress.rng is not None:
        rng.bit_generator.state = progress.rng
    baselines = task.baselines()
    emit("start", {"step": progress.step, "total": total, "params": sum(p.size for p in net.params.values()),
                   **task.describe(), **baselines})

    saved_at = progress.step

    def save():
        nonlocal saved_at
        progress.rng = rng.bit_generator.state
        run.save(net.params, opt_state, carried, progress)
        saved_at = progress.step

    def validate(scheduled=True):
        """Validation loss; keeps best.safetensors. Only scheduled validations (every eval_every
        steps) move the plateau schedule, so stopping early never changes the arithmetic."""
        record = {"step": progress.step, "split": "valid", **task.evaluate(net.params, net.arch)}
        loss = record["loss"]
        if loss < progress.best_valid:
            progress.best_valid, progress.best_step = loss, progress.step
            run.save_best(net.params, {"step": progress.step, "valid_loss": loss})
        if cfg.schedule == "plateau" and scheduled:
            progress.schedule = schedules.Plateau(cfg.lr).update(progress.schedule, loss)
        record["best"] = progress.best_valid
        run.log(record)
        emit("eval", record)
        return record

    status, last_valid = "done", None
    started = time.perf_counter() - progress.elapsed
    with SigintFlag() as sigint, np.errstate(over="ignore", invalid="ignore"):   # divergence is checked below
        while total is None or progress.step < total:
            batch, tokens = task.batch(progress.window, progress.epoch)
            tick = time.perf_counter()
            flow = cfg.flow_every > 0 and (progress.step + 1) % cfg.flow_every == 0
            if cfg.recompute_every and not flow:                 # (a flow record needs the full pass's traces)
                r = checkpointing.loss_and_grads(net.params, net.arch, state=carried, **batch,
                                                 every=cfg.recompute_every, clip_dh=cfg.clip_dh)
            else:
                r = engine.loss_and_grads(net.params, net.arch, state=carried, **batch, dropout=cfg.dropout, rng=rng,
                                          clip_dh=cfg.clip_dh, trace=flow)
            if flow:                                              # before clipping changes the gradients
                run.log({"step": progress.step + 1, "flow": [np.linalg.norm(dh.reshape(len(dh), -1), axis=1).tolist()
                                                             for dh in r.dhs],
                         "grad_norms": {k: float(np.linalg.norm(g)) for k, g in r.grads.items()}})
            norm, clipped = clip(cfg, r.grads)
            if not (math.isfinite(r.loss) and math.isfinite(norm)):
                raise Diverged(f"training diverged at step {progress.step + 1}: loss {r.loss}, gradient norm "
                               f"{norm}. The last good checkpoint (step {saved_at}) is kept in "
                               f"{run.file('checkpoint.safetensors')}; try a lower --lr or --clip.")
            if task.carries_state:
                carried = task.next_state(net.params, net.arch, progress.window, carried, r.state)
            following = progress.window + 1
            if following == task.steps_per_epoch:
                following = 0
                progress.epoch += 1
            lr = learning_rate(cfg, progress, total)
            opt.step(net.params, r.grads, opt_state, lr)
            progress.step += 1
            progress.window = following
            progress.tokens += tokens
            progress.clipped += clipped
            progress.elapsed = time.perf_counter() - started
            if progress.step % cfg.log_every == 0 or progress.step == total:
                record = {"step": progress.step, "epoch": progress.epoch, "loss": r.loss, "lr": lr,
                          "grad_norm": norm, "clipped": clipped, "clipped_fraction": progress.clipped / progress.step,
                          "tokens_per_s": tokens / (time.perf_counter() - tick), "elapsed": progress.elapsed}
                run.log(record)
                emit("log", record)
            if progress.step % cfg.eval_every == 0 or progress.step == total:
                last_valid = validate()
                save()
            stop_time = cfg.max_time is not None and progress.elapsed >= cfg.max_time
            asked = on_step is not None and on_step(progress)
            if sigint.raised or asked or stop_time:
                status = "time" if stop_time and not sigint.raised else "interrupted"
                if saved_at != progress.step:
                    if status == "time":
                        last_valid = validate(scheduled=False)
                    save()
                break
    if last_valid is not None and last_valid["step"] != progress.step:
        last_valid = None                                     # stale: of earlier parameters
    if last_valid is None and status != "interrupted":
        last_valid = {"step": progress.step, **task.evaluate(net.params, net.arch)}
    return Outcome(status, progress, last_valid, progress.best_valid, baselines)
