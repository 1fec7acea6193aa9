"""What the benchmark trains: the named configurations (a character language model on Tiny
Shakespeare, on BASE's settings) or the user's own (a text and its level and vocabulary, a
labelled file for classification, dropout, the optimiser), the FLOP count of a step, and the
batches it trains on."""

import numpy as np

from ..reference import CELLS as REFERENCE_CELLS
from ..training.config import TrainConfig

BASE = {"layers": 1}      # the named configurations: one layer unless they say otherwise; bptt train's defaults
                          # for the rest (embedding 64, batch 32, window 64, Adam 2e-3, clip 5, float32)


CONFIGS = {
    "rnn-h256": {"cell": "rnn", "hidden": 256},
    "gru-h256": {"cell": "gru", "hidden": 256},
    "lstm-h128": {"cell": "lstm", "hidden": 128},
    "lstm-h256": {"cell": "lstm", "hidden": 256},
    "lstm-h256-l2": {"cell": "lstm", "hidden": 256, "layers": 2},
    "lstm-h512-b64": {"cell": "lstm", "hidden": 512, "batch": 64},
}


BENCH_CELLS = ("rnn", "gru", "lstm")
BENCH_TASKS = ("lm", "classify")
BENCH_OPTIMIZERS = ("adam", "sgd")       # the ones every framework's runner implements


def config(name_or_cfg, **changes):
    """A TrainConfig: a name of CONFIGS (on BASE), or a TrainConfig as it is; changes replace fields."""
    if isinstance(name_or_cfg, TrainConfig):
        cfg = name_or_cfg
    elif name_or_cfg in CONFIGS:
        cfg = TrainConfig(**(BASE | CONFIGS[name_or_cfg]))
    else:
        raise ValueError(f"config: expected one of {', '.join(CONFIGS)} or a TrainConfig, got {name_or_cfg!r}")
    cfg = cfg.replace(**changes) if changes else cfg
    if cfg.cell not in BENCH_CELLS or cfg.task not in BENCH_TASKS or cfg.tie:
        raise ValueError(f"config: the benchmark runs an untied language model or classifier with a cell in "
                         f"{', '.join(BENCH_CELLS)}; got task={cfg.task!r}, cell={cfg.cell!r}, tie={cfg.tie}")
    if cfg.optimizer not in BENCH_OPTIMIZERS:
        raise ValueError(f"optimizer: the benchmark runs {' or '.join(BENCH_OPTIMIZERS)} (every framework's "
                         f"runner implements them); got {cfg.optimizer!r}")
    return cfg


def label(cfg):
    """The name of a configuration, as CONFIGS names them: lstm-h256, lstm-h256-l2, lstm-h512-b64, ...;
    a word-level model or a classifier says so (lstm-h200-l2-word, gru-h128-classify), dropout and
    SGD too (-d0.2, -sgd)."""
    for name in CONFIGS:
        if config(name) == cfg:
            return name
        if config(name, precision=cfg.precision) == cfg:
            return f"{name}-{cfg.precision}"
    extra = [f"{k}{v}" for k, v, default in (("l", cfg.layers, 1), ("b", cfg.batch, 32), ("t", cfg.window, 64),
                                              ("e", cfg.embedding, 64)) if v != default]
    extra += [cfg.level] * (cfg.level != "char") + [cfg.task] * (cfg.task != "lm")
    extra += [f"d{cfg.dropout:g}"] * (cfg.dropout > 0) + [cfg.optimizer] * (cfg.optimizer != "adam")
    extra += [cfg.precision] * (cfg.precision != "float32")
    extra += ["bidirectional"] * cfg.bidirectional + [f"adaptive{cfg.adaptive_softmax}"] * bool(cfg.adaptive_softmax)
    return "-".join([cfg.cell, f"h{cfg.hidden}", *extra])


def flops_per_step(cfg, V, K=None, tokens=None, readouts=None):
    """FLOPs of one training step (forward + backward = 3 x forward; a multiply-add counts as 2):

        per layer and token   2 G H (D + H)      G = 1 (rnn), 3 (gru), 4 (lstm); D = input size of
                                                 the layer (the embedding E, or V one-hot, for the
                                                 first; H above it)
        readout               2 H K              per token with a target (K = V for a language model);
                                                 the adaptive softmax: its head 2 H (c_1 + n) and every
                                                 tail 2 h_i (H + s_i), an upper bound (a tail runs on
                                                 the tokens of its cluster alone)
        step                  3 (tokens x the layers' sum + readouts x the readout)
    A bidirectional network counts each layer twice, the layers above the first reading 2 H.

    A language model's step has tokens = readouts = B T; a classifier's has the real tokens of its
    sequences (padding costs nothing, as in a packed sequence) and one readout per sequence.
    Elementwise work (gates, softmax, the optimiser) and the embedding lookup are not counted. For
    example lstm-h256 (E 64, V 65, B 32, T 64): 3 * 2048 * (2*4*256*320 + 2*256*65) = 4,231,004,160.
    """
    G = REFERENCE_CELLS[cfg.cell].GATES
    K = V if K is None else K
    tokens = cfg.batch * cfg.window if tokens is None else tokens
    readouts = tokens if readouts is None else readouts
    D = 2 if cfg.bidirectional else 1
    layers = D * sum(2 * G * cfg.hidden * ((cfg.embedding or V) if k == 0 else D * cfg.hidden)
                     + 2 * G * cfg.hidden ** 2 for k in range(cfg.layers))
    width = D * cfg.hidden
    readout = 2 * width * K
    if cfg.cutoffs:
        bounds = (*cfg.cutoffs, K)
        tails = [(int(width // cfg.div_value ** i), bounds[i] - bounds[i - 1]) for i in range(1, len(bounds))]
        readout = 2 * width * (cfg.cutoffs[0] + len(cfg.cutoffs)) + sum(2 * h * (width + s) for h, s in tails)
    return 3 * (tokens * layers + readouts * readout)


def batches(task, cfg, n, seed=0):
    """n training batches of task, each (keyword arguments of engine.loss_and_grads, tokens, FLOPs):
    a language model's windows at random places of its stream (random_windows), a classifier's
    padded batches in the order of its epochs (each a shuffle of the examples)."""
    V, K = task.input_size, task.output_size
    if cfg.task == "lm":
        return [({"x": x, "y": y}, x.size, flops_per_step(cfg, V, K)) for x, y in random_windows(task, cfg, n, seed)]
    out = []
    for i in range(n):
        kwargs, tokens = task.batch(i % task.steps_per_epoch, i // task.steps_per_epoch)
        out.append((kwargs, tokens, flops_per_step(cfg, V, K, tokens, len(kwargs["y"]))))
    return out


def random_windows(task, cfg, n, seed=0):
    """n training windows (x, y), each (T, B) ids, at random places of the training stream."""
    room = len(task.stream) - cfg.window - 1
    if room < 1:
        raise ValueError(f"window: expected fewer than {len(task.stream) - 1} steps (the training text holds "
                         f"{len(task.stream)} per stream at batch {cfg.batch}), got {cfg.window}")
    starts = np.random.default_rng(seed).integers(0, room, n)
    return [(task.stream[s:s + cfg.window], task.stream[s + 1:s + cfg.window + 1]) for s in starts]
