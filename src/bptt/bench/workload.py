"""What the benchmark trains: the named configurations (a character language model on Tiny
Shakespeare, on BASE's settings), the FLOP count of one step, and the windows it trains on."""

import numpy as np

from ..reference import CELLS as REFERENCE_CELLS
from ..training.config import TrainConfig

BASE = {"embedding": 64, "batch": 32, "window": 64, "layers": 1, "optimizer": "adam", "lr": 2e-3, "clip": 5.0,
        "dtype": "float32"}


CONFIGS = {
    "rnn-h256": {"cell": "rnn", "hidden": 256},
    "gru-h256": {"cell": "gru", "hidden": 256},
    "lstm-h128": {"cell": "lstm", "hidden": 128},
    "lstm-h256": {"cell": "lstm", "hidden": 256},
    "lstm-h256-l2": {"cell": "lstm", "hidden": 256, "layers": 2},
    "lstm-h512-b64": {"cell": "lstm", "hidden": 512, "batch": 64},
}


BENCH_CELLS = ("rnn", "gru", "lstm")


def config(name_or_cfg, **changes):
    """A TrainConfig: a name of CONFIGS (on BASE), or a TrainConfig as it is; changes replace fields."""
    if isinstance(name_or_cfg, TrainConfig):
        cfg = name_or_cfg
    elif name_or_cfg in CONFIGS:
        cfg = TrainConfig(**(BASE | CONFIGS[name_or_cfg]))
    else:
        raise ValueError(f"config: expected one of {', '.join(CONFIGS)} or a TrainConfig, got {name_or_cfg!r}")
    cfg = cfg.replace(**changes) if changes else cfg
    if cfg.cell not in BENCH_CELLS or cfg.task != "lm" or cfg.tie:
        raise ValueError(f"config: the benchmark runs an untied language model with a cell in "
                         f"{', '.join(BENCH_CELLS)}; got task={cfg.task!r}, cell={cfg.cell!r}, tie={cfg.tie}")
    return cfg


def label(cfg):
    """The name of a configuration, as CONFIGS names them: lstm-h256, lstm-h256-l2, lstm-h512-b64, ..."""
    for name in CONFIGS:
        if config(name) == cfg:
            return name
    extra = [f"{k}{v}" for k, v, default in (("l", cfg.layers, 1), ("b", cfg.batch, 32), ("t", cfg.window, 64),
                                              ("e", cfg.embedding, 64)) if v != default]
    return "-".join([cfg.cell, f"h{cfg.hidden}", *extra])


def flops_per_step(cfg, V):
    """FLOPs of one training step (forward + backward = 3 x forward; a multiply-add counts as 2):

        per layer and token   2 G H (D + H)      G = 1 (rnn), 3 (gru), 4 (lstm); D = input size of
                                                 the layer (the embedding E, or V one-hot, for the
                                                 first; H above it)
        readout per token     2 H V
        step                  3 B T (sum over layers + readout)

    Elementwise work (gates, softmax, Adam) and the embedding lookup are not counted. For example
    lstm-h256 (E 64, V 65, B 32, T 64): 3 * 2048 * (2*4*256*320 + 2*256*65) = 4,231,004,160.
    """
    G = REFERENCE_CELLS[cfg.cell].GATES
    per_token = sum(2 * G * cfg.hidden * ((cfg.embedding or V) if k == 0 else cfg.hidden) + 2 * G * cfg.hidden ** 2
                    for k in range(cfg.layers)) + 2 * cfg.hidden * V
    return 3 * per_token * cfg.batch * cfg.window


def random_windows(task, cfg, n, seed=0):
    """n training windows (x, y), each (T, B) ids, at random places of the training stream."""
    room = len(task.stream) - cfg.window - 1
    if room < 1:
        raise ValueError(f"window: expected fewer than {len(task.stream) - 1} steps (the training text holds "
                         f"{len(task.stream)} per stream at batch {cfg.batch}), got {cfg.window}")
    starts = np.random.default_rng(seed).integers(0, room, n)
    return [(task.stream[s:s + cfg.window], task.stream[s + 1:s + cfg.window + 1]) for s in starts]
