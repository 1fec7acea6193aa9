"""Opening a run: a new one, one resumed from its checkpoint, on one process or on the ranks of an
MPI job; and a trained run read back (its config, task and network) by bptt eval, sample, export,
diagnose and bptt.load. What a run directory holds, and what is refused, is bptt.training.rundir's.

    settle(run, fields, resume)     -> Settled: the config the run trains with, resolved once
    open_run(run, cfg, resume, ...) -> Opened: the run locked, its task, network, optimiser state,
                                       carried state, progress and step budget
    open_on_ranks(ranks, ...)       -> the same on every rank; rank 0 alone reads and writes

A new run is checked (directory, data, memory) before anything is written, and one that fails
before its first step leaves nothing behind (abandon). A resumed run takes its saved config (only
config.RESUMABLE fields may change), verifies that its data files are the ones it started with, and
reloads everything, so it continues with the same arithmetic as if it had never stopped.

Pretrained vectors (--embedding-init) are read when a new run starts, into E; their file's size and
SHA-256 are recorded with the data's (run.json, "embedding_init") for the user to see which vectors
were used, but a resume neither reads nor verifies the file: E comes from the checkpoint.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..files import FileError
from ..model import engine
from . import building, data, forward_mode, optim, pretrained, problems, rundir, schedules, tasks
from .config import RESUMABLE, TrainConfig
from .ranks import rows_of


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
    signs: dict | None = None        # --gradient uoro: its signs' generator's bit_generator.state (forward_mode)
    sources: dict | None = None      # the data files' fingerprints, as in run.json (rundir.Directory.write_marker)


class Run(rundir.Directory):
    """A run: its directory (bptt.training.rundir) with what is built from it, the config, the task,
    the checkpoint's progress and the network."""

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
        return self.load_resumable()[:4]

    def load_resumable(self):
        """load's four and the carried influence of --gradient rtrl | uoro, as named arrays ({}: none)."""
        params, opt_state, parts, meta, influence = super().load_with_influence()
        try:
            progress = Progress(**meta)
        except TypeError:
            raise FileError(f"{self.file('checkpoint.safetensors')}: its metadata is not a bptt training state "
                            f"(keys {sorted(meta)})") from None
        return params, opt_state, engine.public_state(parts) if parts else None, progress, influence

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
        """The run's network with the weights of best.safetensors (or the last checkpoint: with
        NT-ASGD, its average once averaging has begun, as validation read them), and their metadata.
        Needs only the run directory, not the training data. It computes in float32 whatever
        --precision the run trained in (its weights are float32): bptt eval, sample and export of a bf16
        run work on any CPU."""
        cfg = self.config()
        best = which == "best" and self.file("best.safetensors").exists()
        if best:
            params, meta = self.load_params(which)
        else:
            params, opt_state, _, meta = super().load()
            params = optim.averaged(params, opt_state)
        net = building.build_network(cfg.replace(precision="float32"), *self.sizes(cfg))   # --precision is how
        net.params = self.matching(net, params, "best.safetensors" if best else "checkpoint.safetensors")  # it trained
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


# --- the config a run trains with -----------------------------------------------------------------

class Settled(NamedTuple):
    """The config a run trains with, resolved before the run is opened (settle)."""

    cfg: TrainConfig            # a new run's, data paths absolute; or the saved config with the changes
    changes: dict               # {name: (saved, new)}: the config.RESUMABLE fields a resume changes


def settle(run, fields, resume):
    """The config of a new run from fields ({name: value}: the options given), or of the run in
    `run` resumed: its saved config with the fields that differ (None: no change). Only checks and
    reads, once: the command line settles the options first, to check them before training starts,
    and opens the run with what this returns."""
    if not resume:
        return Settled(TrainConfig(**absolute(TrainConfig(**sized_by_vectors(fields)).to_json())), {})
    run.check_resumable()
    saved = run.config()
    return Settled(saved, {}) if fields is None else Settled(*resumed(saved, absolute(fields)))


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


def absolute(given):
    """given (a dict of config fields) with its data paths made absolute, so that the run can be
    resumed from any directory."""
    return given | {name: str(Path(given[name]).absolute()) for name in ("data", "valid", "embedding_init")
                    if given.get(name)}


def sized_by_vectors(fields):
    """fields with the embedding's size that of the --embedding-init vectors when --embedding is not
    among them (one that is must equal it: building.pretrained_embedding checks)."""
    path = fields.get("embedding_init")
    if not path or not isinstance(path, str) or "embedding" in fields:
        return fields
    try:
        return fields | {"embedding": pretrained.dimension(str(Path(path).absolute()))}
    except ValueError as e:
        raise ValueError(f"embedding_init: {e}") from None


def total_steps(cfg, task):
    """The step budget: --steps, or --epochs worth of windows (the smaller), or one epoch; None
    (unbounded) when only --max-time is given. With --variable-window each epoch has its own number
    of windows (task.epoch_steps): --epochs E is the steps of the whole epochs before E and the
    fraction of the next rounded up, so a whole E ends exactly at an epoch's end."""
    budgets = [cfg.steps] if cfg.steps is not None else []
    if cfg.epochs is not None and cfg.variable_window:
        whole = math.floor(cfg.epochs)
        budgets.append(sum(task.epoch_steps(e) for e in range(whole)) +
                       math.ceil((cfg.epochs - whole) * task.epoch_steps(whole)))
    elif cfg.epochs is not None:
        budgets.append(math.ceil(cfg.epochs * task.steps_per_epoch))
    if budgets:
        return min(budgets)
    if cfg.max_time is not None:
        return None
    return task.steps_per_epoch


# --- the data a run trains on ---------------------------------------------------------------------

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
    """{"data" | "valid" | "embedding_init": fingerprint and given path} of the run's files (the
    vectors' recorded only: a resume does not read them, see check_sources)."""
    found = {name: source(cfg, name, given.get(name)) for name in ("data", "valid", "embedding_init")}
    return {name: s for name, s in found.items() if s is not None}


def check_sources(run, cfg, recorded):
    """Resume refuses a data file that changed since the run started. recorded: the fingerprints the
    checkpoint holds (None in a checkpoint written before it held them), else the marker's; the
    marker is written again from them if it is missing. A run with neither cannot be verified and
    is refused; the --embedding-init vectors are not checked (E is in the checkpoint). Returns
    {"data" | "valid": the path as the user gave it}."""
    marker = run.marker()
    if recorded is None and marker is None:
        raise FileError(f"--resume: {run.file(rundir.MARKER)} is missing and {run.file('checkpoint.safetensors')} "
                        f"does not record the training data either, so the data cannot be checked against the "
                        f"run's; restore {rundir.MARKER}, or start a new run")
    recorded = recorded if recorded is not None else marker["data"]
    for name, before in data_files(recorded).items():
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
    return {name: m.get("given") for name, m in data_files(recorded).items()}


def data_files(sources):
    """The fingerprints of the data files among sources: not the --embedding-init vectors', which
    only rank 0 reads, when a run starts."""
    return {name: s for name, s in sources.items() if name != "embedding_init"}


def check_copies(cfg, sources):
    """This rank's data files are rank 0's (sources: their fingerprints in the run's marker): each
    rank reads its own copy, and a different copy would train on different numbers without a word."""
    for name, theirs in data_files(sources).items():
        mine = source(cfg, name)
        if mine["sha256"] != theirs["sha256"]:
            raise FileError(f"--{name}: this machine's {mine['path'] or 'shipped text'} is not rank 0's "
                            f"({mine['bytes']:,} bytes, sha256 {mine['sha256'][:12]} here; {theirs['bytes']:,} "
                            f"bytes, sha256 {theirs['sha256'][:12]} on rank 0); give every machine the same file")


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


# --- opening --------------------------------------------------------------------------------------

class Opened(NamedTuple):
    """A run ready for its first step (open_run)."""

    created: bool               # its directory was made for it (a new run that fails leaves nothing)
    cfg: TrainConfig
    task: object
    net: object
    opt_state: dict
    carried: object             # the state carried into the next window (None: zeros)
    progress: Progress
    total: int | None           # the step budget (total_steps; None: --max-time alone)
    notes: dict                 # for display: the data paths as given, a resume's changes and rebuilt files,
                                # a new run's E (building.pretrained_embedding)
    influence: object = None    # --gradient rtrl | uoro: the influence carried into the next window (None: (R0))


def open_run(run, cfg, resume, given):
    """A new run, or the run in `run` resumed: Opened. cfg: the TrainConfig (resume: None for the
    saved config, or the saved config with a new budget, lr or clip), or what settle made of the
    options. given: a new run's data paths as the user typed them."""
    settled = cfg if isinstance(cfg, Settled) else settle(run, None if cfg is None else cfg.to_json(), resume)
    if resume:
        try:
            o = open_resumed(run, *settled)
            run.truncate_log(o.progress.step)
            if o.notes["changes"]:
                run.log({"step": o.progress.step, "changed": {k: list(v) for k, v in o.notes["changes"].items()}})
        except BaseException:
            run.release()
            raise
        return o
    return open_new(run, settled.cfg, given or {})


def open_new(run, cfg, given):
    """Check everything, then create the run: Opened."""
    run.check_fresh()
    task = tasks.make(cfg)
    building.check_memory(cfg, task.input_size, task.output_size)
    net = building.build_network(cfg, task.input_size, task.output_size)
    embedding = building.pretrained_embedding(cfg, getattr(task, "vocab", None), net.params)
    created = create(run)
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
        opt_state = building.make_optimizer(cfg).init(building.trainable(cfg, net.params))
        run.save(net.params, opt_state, None, progress.__dict__)
    except BaseException:
        abandon(run, created)
        raise
    notes = {"given": {k: v for k, v in given.items() if v}} | ({"embedding": embedding} if embedding else {})
    return Opened(created, cfg, task, net, opt_state, None, progress, total_steps(cfg, task), notes)


def create(run):
    """Make the run's directory and take its lock, checking again under the lock that it is fresh and
    writable (another process may have made a run there since; its files stay). Returns whether
    the directory was made for this run."""
    created = not run.path.exists()
    run.create()
    run.lock()
    try:
        run.check_fresh()
        run.check_writable()
    except BaseException:
        run.release()
        if created and {p.name for p in run.path.iterdir()} <= {rundir.LOCK}:
            run.file(rundir.LOCK).unlink(missing_ok=True)
            run.path.rmdir()
        raise
    return created


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


def open_resumed(run, cfg, changes):
    """The run in `run` (checked by settle) locked and reloaded to continue with cfg: Opened. A run
    that already reached its budget is refused before anything is changed."""
    run.lock()
    run.check_writable()
    run.remove_temporaries()
    params, opt_state, carried, progress, influence = run.load_resumable()
    given = check_sources(run, cfg, progress.sources)
    progress.sources = progress.sources or run.marker()["data"]
    task, rebuilt = resume_task(run, cfg)
    net = building.build_network(cfg, task.input_size, task.output_size)
    net.params = run.matching(net, params, "checkpoint.safetensors")
    if "lr" in changes and progress.schedule is not None:
        progress.schedule = progress.schedule | {"lr": cfg.lr}      # the plateau schedule restarts from it
    total = total_steps(cfg, task)
    out_of_time = cfg.max_time is not None and progress.elapsed >= cfg.max_time
    if (total is not None and progress.step >= total) or out_of_time:
        budget = ", ".join(f"{n} {getattr(cfg, n)}" for n in ("steps", "epochs", "max_time") if getattr(cfg, n)) or \
            f"one epoch ({task.steps_per_epoch} steps)"
        raise ValueError(f"--resume: the run already reached its budget ({budget}) at step {progress.step}; "
                         f"give a larger --steps, --epochs or --max-time to continue it")
    if changes:
        run.write_json("config.json", cfg.to_json())
    return Opened(False, cfg, task, net, opt_state, carried, progress, total,
                  {"changes": changes, "rebuilt": rebuilt, "given": given},
                  forward_mode.from_arrays(cfg.gradient, influence))


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
            here = opened_from(sent)
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


def opened_from(sent):
    """The run rank 0 opened, on another rank: rank 0's config (a resumed run's saved one), this
    rank's copy of the data checked against rank 0's, the task built from it, rank 0's arrays."""
    cfg = sent["cfg"]
    check_copies(cfg, sent["sources"])
    vocab = None if sent["vocab"] is None else data.Vocab.from_json(sent["vocab"])
    labels = None if sent["labels"] is None else data.LabelSet.from_json(sent["labels"])
    task = tasks.make(cfg, vocab, labels)
    net = building.build_network(cfg, task.input_size, task.output_size)
    net.params = sent["params"]
    return Opened(False, cfg, task, net, sent["opt_state"], sent["carried"], sent["progress"],
                  total_steps(cfg, task), {})
