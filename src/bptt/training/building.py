"""What a TrainConfig builds: the network (initialised as configured, E from pretrained vectors
for a new run with --embedding-init), its optimiser and what it trains (not a frozen E), and the
memory a training step of them needs, checked before a run starts (a model too large for the
machine is refused with its size, not killed by the kernel an hour later).
"""

import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from ..model import engine, init
from . import optim, pretrained, problems

OPTIMIZER_SLOTS = {"sgd": 1, "adagrad": 1, "rmsprop": 2, "adam": 2, "adamw": 2, "nt-asgd": 1}   # arrays per parameter


def arch(cfg, input_size, output_size):
    """The Arch (the network's shape) that cfg describes for these input and output sizes."""
    if cfg.cutoffs and cfg.cutoffs[-1] >= output_size:
        raise ValueError(f"--adaptive-softmax: the cutoffs must be below the vocabulary's size, {output_size:,}; "
                         f"got {cfg.adaptive_softmax}")
    return engine.Arch(cfg.cell, input_size, cfg.hidden, output_size, cfg.layers, cfg.embedding or None,
                       cfg.nonlinearity, cfg.tie, cfg.skip, cfg.engine, bidirectional=cfg.bidirectional,
                       proj_size=cfg.proj_size, learn_init_state=cfg.learn_init_state, cutoffs=cfg.cutoffs,
                       div_value=cfg.div_value if cfg.cutoffs else 4.0, precision=cfg.precision)


def build_network(cfg, input_size, output_size):
    """The Network of cfg, its weights drawn from the seed as --init, --recurrent-init, --forget-bias
    and --radius say (the same weights for the same config, on any number of ranks)."""
    from ..model.network import Network

    shape = dataclasses.asdict(arch(cfg, input_size, output_size))      # Network's arguments are Arch's fields
    net = Network(**shape, dtype=np.dtype(cfg.dtype), seed=cfg.seed)
    init.apply(net.params, net.arch, np.random.default_rng([cfg.seed, 1]), cfg.init, cfg.recurrent_init,
               cfg.forget_bias, radius=cfg.radius)
    return net


def pretrained_embedding(cfg, vocab, params):
    """E (params["E"], as build_network drew it) of a new run, in place, from the --embedding-init
    file (bptt.training.pretrained: the vocabulary's tokens found take their vectors, the others are
    scaled to them). Read once, when the run starts: a resumed run takes E from its checkpoint.
    Returns the note the header shows (pretrained.header; None: neither option given)."""
    if cfg.embedding_init is None:
        return {"file": None, "frozen": True} if cfg.freeze_embedding else None
    try:
        vectors = pretrained.read(cfg.embedding_init, vocab.tokens, cfg.embedding, params["E"].dtype)
    except (ValueError, TypeError) as e:
        raise type(e)(f"embedding_init: {e}") from None
    sigma = pretrained.place(params["E"], vectors)
    return {"file": Path(cfg.embedding_init).name, "found": vectors.count, "tokens": vocab.size,
            "level": vocab.level, "lowercased": vectors.lowercased, "sigma": sigma, "frozen": cfg.freeze_embedding}


def trainable(cfg, arrays):
    """arrays (the parameters, or their gradients) that the optimiser updates: all but a frozen E
    (--freeze-embedding), which thus has no optimiser state, no weight decay and no part in
    clipping's norm, as a torch parameter with requires_grad=False."""
    return {k: a for k, a in arrays.items() if k != "E"} if cfg.freeze_embedding else arrays


NONMONO = 5                 # NT-ASGD's n without --nonmono: AWD-LSTM's


def make_optimizer(cfg):
    """The optimiser of cfg with the hyperparameters that apply to it (optim.make)."""
    hyper = {"weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        hyper |= {"momentum": cfg.momentum, "nesterov": cfg.nesterov}
    elif cfg.optimizer == "rmsprop":
        hyper |= {"momentum": cfg.momentum}
    elif cfg.optimizer == "adamw" and cfg.weight_decay == 0:
        hyper = {}                                            # AdamW's own default decay
    elif cfg.optimizer == "nt-asgd":
        return optim.NTASGD(weight_decay=cfg.weight_decay, nonmono=cfg.nonmono or NONMONO)
    return optim.make(cfg.optimizer, **hyper)


def memory_needed(cfg, input_size, output_size):
    """(bytes, parameters): a lower bound of the bytes a training step holds, the parameters (counted
    from Arch.param_shapes), their gradients and optimiser slots, and the caches of one window
    (gates and states of every layer, the readout's logits and their gradient, the inputs)."""
    shape = arch(cfg, input_size, output_size)
    n = sum(math.prod(s) for s in shape.param_shapes().values())
    H, L, G = cfg.hidden, cfg.layers, shape.spec.GATES
    T = cfg.window if cfg.task == "lm" else cfg.length if cfg.task in problems.PROBLEMS else 1
    rows = T * cfg.batch
    per_row = L * shape.directions * (G + 3) * H + 2 * output_size + shape.layer_input_size(0)
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
    """A ValueError, before anything is allocated, when a step needs more memory than is available."""
    need, n = memory_needed(cfg, input_size, output_size)
    have = available_memory()
    if need > have:
        raise ValueError(f"--hidden {cfg.hidden}, --layers {cfg.layers}, --embedding {cfg.embedding}, --batch "
                         f"{cfg.batch}: the run needs at least {need / 2**30:,.1f} GiB ({n:,} parameters, their "
                         f"gradients and optimiser state, and one window's caches), more than the "
                         f"{have / 2**30:.1f} GiB of memory available; choose a smaller model or batch")
