"""Every knob of a training run, in one block of commented defaults, saved as config.json."""

import dataclasses
from dataclasses import dataclass

from . import checks
from .engine import ENGINES


@dataclass(frozen=True)
class TrainConfig:
    # data
    task: str = "lm"                   # "lm" (language model), "classify" (text<TAB>label, many-to-one), or a
                                       # long-range problem: "adding", "copy", "order", "sentiment"
    length: int = 100                  # problems: the sequence length T
    test_size: int = 1000              # problems: sequences in the fixed test set
    data: str | None = None            # training text (UTF-8); None: Tiny Shakespeare, shipped in the package
    valid: str | None = None           # validation text; None: the last valid_fraction of data
    valid_fraction: float = 0.1
    level: str = "char"                # "char" or "word" (PTB convention: <eos> at line ends, <unk>)
    max_vocab: int | None = None       # word level: keep the most frequent words
    separator: str | None = None       # documents are separated by this text (e.g. "\n\n"): each stream
                                       # restarts from a zero state at every document start
    # model
    cell: str = "lstm"                 # "rnn", "gru", "lstm" or "skip" (an RNN with a connection s steps back)
    nonlinearity: str = "tanh"         # rnn and skip: "tanh", "relu", "sigmoid"
    skip: int | None = None            # skip RNN: s, how far back its second connection reaches (default 2)
    hidden: int = 256
    layers: int = 2
    embedding: int = 64                # 0: one-hot inputs
    tie: bool = False                  # readout tied to the embedding (needs embedding == hidden)
    dropout: float = 0.0               # non-recurrent (Zaremba et al. 2014)
    init: str = "default"              # input weights: "default" (PyTorch) or "xavier"
    recurrent_init: str = "default"    # "default", "xavier", "orthogonal", "identity" (IRNN)
    forget_bias: float | None = None   # lstm: total forget-gate bias
    radius: float | None = None        # rescale each recurrent matrix to this spectral radius
    dtype: str = "float32"             # "float32" or "float64"
    engine: str = "fast"               # "fast" (compiled time loops, bptt.fast) or "numpy" (the reference)
    # truncated BPTT
    batch: int = 32                    # B parallel streams
    window: int = 64                   # k1: steps between updates
    backprop: int | None = None        # k2 >= k1: steps backpropagated (None: k1)
    recompute_every: int | None = None # keep caches for this many steps at a time and recompute the rest in
                                       # the backward pass: O(sqrt(T)) memory (None: keep all)
    # optimisation
    optimizer: str = "adam"            # "sgd", "adagrad", "rmsprop", "adam", "adamw"
    lr: float = 2e-3
    momentum: float = 0.0              # sgd, rmsprop
    nesterov: bool = False             # sgd
    weight_decay: float = 0.0
    schedule: str = "constant"         # "constant", "plateau" (/4 when validation stalls), "cosine"
    warmup: int = 0                    # cosine: linear warm-up steps
    clip: float = 5.0                  # gradient clipping threshold; 0: off
    clip_mode: str = "norm"            # "norm" (global, Pascanu et al. 2013), "param" (per array), "value"
    clip_dh: float | None = None       # clip dL/dh_t inside the recurrence at every step (Mikolov)
    # length of the run (the first reached ends it; none given: one epoch)
    steps: int | None = None
    epochs: float | None = None
    max_time: float | None = None      # seconds
    # bookkeeping
    seed: int = 0
    eval_every: int = 200              # steps between validations (and checkpoints)
    flow_every: int = 0                # steps between gradient-flow records in metrics.jsonl (0: never)
    eval_batch: int = 16
    log_every: int = 10

    def __post_init__(self):
        checks.one_of("task", self.task, ("lm", "classify", "adding", "copy", "order", "sentiment"))
        checks.positive_int("length", self.length)
        checks.positive_int("test_size", self.test_size)
        checks.one_of("level", self.level, ("char", "word"))
        if self.task == "classify" and (self.data is None or self.tie):
            raise ValueError("task: 'classify' needs --data (a .tsv or .csv of text<TAB>label) and no --tie")
        checks.one_of("dtype", self.dtype, ("float32", "float64"))
        checks.one_of("engine", self.engine, ENGINES)
        checks.one_of("schedule", self.schedule, ("constant", "plateau", "cosine"))
        checks.one_of("clip_mode", self.clip_mode, ("norm", "param", "value"))
        for name in ("hidden", "layers", "batch", "window", "eval_every", "eval_batch", "log_every"):
            checks.positive_int(name, getattr(self, name))
        for name in ("embedding", "seed", "warmup", "flow_every"):
            checks.positive_int(name, getattr(self, name), minimum=0)
        if self.backprop is not None and checks.positive_int("backprop", self.backprop) < self.window:
            raise ValueError(f"backprop: expected k2 >= window (k1) = {self.window}, got {self.backprop}")
        if self.steps is not None:
            checks.positive_int("steps", self.steps)
        for name in ("epochs", "max_time", "lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name}: expected a positive number, got {value}")
        if not 0 < self.valid_fraction < 1:
            raise ValueError(f"valid_fraction: expected a number in (0, 1), got {self.valid_fraction}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {self.dropout}")
        if self.recompute_every is not None:
            checks.positive_int("recompute_every", self.recompute_every)
            if self.dropout:
                raise ValueError("recompute_every: not available with --dropout (the masks would have to be "
                                 "drawn again identically); use one or the other")
        if self.clip < 0:
            raise ValueError(f"clip: expected a threshold >= 0 (0: off), got {self.clip}")
        if self.tie and self.embedding != self.hidden:
            raise ValueError(f"tie: needs embedding == hidden (the readout reuses the embedding), "
                             f"got embedding={self.embedding} and hidden={self.hidden}")

    @property
    def k2(self):
        return self.backprop or self.window

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d):
        if not isinstance(d, dict):
            raise ValueError(f"config: expected a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"config: unknown keys {unknown}")
        return cls(**d)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)
