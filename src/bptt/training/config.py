"""Every knob of a training run, in one block of commented defaults, saved as config.json.

Each field carries its own help text, choices and the condition under which it applies
(`option(...)`); the command line is built from them (bptt.cli), so an option is described once.
A value set away from its default where it does not apply is an error, never silently ignored.
"""

import dataclasses
import math
from dataclasses import dataclass, field

from .. import checks
from ..model.checkpointing import parse_budget
from ..model.engine import ENGINES
from ..reference import CELLS as REFERENCE_CELLS
from . import problems

PROBLEMS = tuple(problems.PROBLEMS)
TASKS = ("lm", "classify", *PROBLEMS)
CELLS = tuple(REFERENCE_CELLS)
NONLINEARITIES = ("tanh", "relu", "sigmoid")
OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam", "adamw", "nt-asgd")
GRADIENTS = ("bptt", "rtrl", "uoro")
# What --gradient rtrl | uoro cannot run, away from its default: what each is (model/rtrl.py refuses the
# same in the engine; the trainer cannot carry the influence through a reset or a k2 > k1 overlap either)
FORWARD_MODE_REFUSES = {
    "dropout": "dropout", "weight_drop": "AWD-LSTM's regularisers", "dropout_input": "AWD-LSTM's regularisers",
    "dropout_hidden": "AWD-LSTM's regularisers", "dropout_output": "AWD-LSTM's regularisers",
    "dropout_embedding": "AWD-LSTM's regularisers", "alpha": "AWD-LSTM's regularisers (AR)",
    "beta": "AWD-LSTM's regularisers (TAR)", "recompute_every": "recomputation (BPTT's memory saving)",
    "memory_budget": "recomputation (BPTT's memory saving)", "flow_every": "dL/dh_t records (BPTT's backward pass)",
    "bidirectional": "bidirectional layers", "adaptive_softmax": "the adaptive softmax",
    "tie": "a readout tied to the embedding", "proj_size": "LSTM projections",
    "learn_init_state": "a learned initial state", "clip_dh": "clipping dL/dh_t (BPTT's backward pass)",
    "variable_window": "variable-length windows", "separator": "state resets at document starts",
    "backprop": "TBPTT(k1, k2) with k2 > k1 (overlapping windows)",
}

# What may change when a run is resumed: its budget, and the learning rate and clipping threshold
# (to continue a diverged run more gently). Everything else is fixed by the checkpoint.
BUDGET = ("steps", "epochs", "max_time")
RESUMABLE = (*BUDGET, "lr", "clip")


def option(default, help, choices=None, shown=None, applies=None, where=None):
    """A config field with its command-line description.

    shown: the default as the help text shows it (None: the default itself; "" shows none).
    applies = (field, test) and where (text): a value other than the default is an error unless
    test(the value of field) holds, e.g. --momentum with --optimizer adam.
    """
    return field(default=default, metadata=dict(help=help, choices=choices, shown=shown, applies=applies,
                                                where=where))


LM = ("task", lambda task: task == "lm")
PROBLEM = ("task", lambda task: task in PROBLEMS)
WHOLE = ("task", lambda task: task != "lm")      # each example a whole sequence, its state started afresh


@dataclass(frozen=True)
class TrainConfig:
    # data
    task: str = option("lm", "lm: a language model on a text; classify: one label per line of a .tsv/.csv "
                       "(text<TAB>label); or a long-range problem (see bptt task)", TASKS)
    length: int = option(100, "the sequence length T of a long-range problem", applies=PROBLEM,
                         where="a long-range problem (--task adding, copy, order or sentiment)")
    test_size: int = option(1000, "sequences in the fixed test set of a long-range problem", applies=PROBLEM,
                            where="a long-range problem")
    data: str | None = option(None, "training text, UTF-8 (default: Tiny Shakespeare, shipped with bptt); "
                              "for --task classify a .tsv/.csv of text<TAB>label")
    valid: str | None = option(None, "validation file (default: the last --valid-fraction of --data)")
    valid_fraction: float = option(0.1, "fraction of --data held out for validation",
                                   applies=("valid", lambda v: not v),
                                   where="a run without --valid (the share of --data it holds out for validation)")
    level: str = option("char", "tokens: characters, or words (PTB convention: <eos> at each line end, <unk>)",
                        ("char", "word"))
    max_vocab: int | None = option(None, "word level: keep only the most frequent words (the rest become <unk>)",
                                   applies=("level", lambda v: v == "word"), where="--level word")
    separator: str | None = option(None, "text that separates documents (e.g. '\\n\\n'); each stream's state "
                                   "restarts at every document start", applies=LM, where="--task lm")
    # model
    cell: str = option("lstm", "recurrent cell (rnn-tanh, rnn-relu, rnn-sigmoid and skip-tanh also name the "
                       "nonlinearity)", CELLS)
    nonlinearity: str = option("tanh", "f in h_t = f(W x_t + U h_{t-1} + b)", NONLINEARITIES,
                               applies=("cell", lambda v: v in ("rnn", "skip")), where="--cell rnn or skip")
    skip: int | None = option(None, "s in h_t = f(W x_t + U h_{t-1} + S h_{t-s} + b) (default: 2)",
                              applies=("cell", lambda v: v == "skip"), where="--cell skip")
    hidden: int = option(256, "hidden units per layer (H)")
    layers: int = option(2, "stacked layers (L)")
    embedding: int = option(64, "embedding size (0: one-hot inputs)")
    tie: bool = option(False, "tie the readout to the embedding (needs --embedding equal to --hidden)",
                       applies=("task", lambda v: v != "classify"), where="a model whose outputs are its inputs "
                       "(not --task classify)")
    embedding_init: str | None = option(None, "a file of pretrained word vectors to initialise the embedding from: "
                                        "GloVe's or word2vec's text format (word v1 ... vD per line); tokens it "
                                        "lacks stay random, scaled to its vectors; --embedding, if given, must be "
                                        "their size D, and is D if left out",
                                        applies=("task", lambda v: v in ("lm", "classify")),
                                        where="a vocabulary's tokens (--task lm or classify)")
    freeze_embedding: bool = option(False, "keep the embedding E as initialised (by --embedding-init or at random): "
                                    "no update, no weight decay (not with --tie)")
    proj_size: int | None = option(None, "LSTM with projections: h_t = R (o_t * tanh(c_t)) of this size, below "
                                   "--hidden (PyTorch's proj_size)", applies=("cell", lambda v: v == "lstm"),
                                   where="--cell lstm")
    adaptive_softmax: str | None = option(None, "the adaptive softmax (Grave et al. 2017) instead of the full "
                                          "readout: its cutoffs, e.g. 2000,10000 (the vocabulary is in frequency "
                                          "order, so the shortlist holds the most frequent words)", applies=LM,
                                          where="--task lm")
    div_value: float = option(4.0, "the adaptive softmax: cluster i's tail projects to hidden // div_value^i units",
                              applies=("adaptive_softmax", lambda v: v is not None), where="--adaptive-softmax")
    bidirectional: bool = option(False, "each layer also reads every sequence backwards; the next layer and the "
                                 "readout read [h_fwd; h_bwd] (Schuster & Paliwal 1997)", applies=WHOLE,
                                 where="whole sequences (--task classify or a long-range problem; a language model "
                                 "would read the future it predicts)")
    learn_init_state: bool = option(False, "learn the initial state h_0 (and c_0) of every layer, as parameters",
                                    applies=WHOLE, where="whole sequences (--task classify or a long-range problem; "
                                    "a language model carries its state from window to window)")
    dropout: float = option(0.0, "non-recurrent dropout on the embedding, between layers and before the readout")
    # AWD-LSTM's regularisers (Merity et al. 2017; its main.py's values in brackets)
    weight_drop: float = option(0.0, "DropConnect on every recurrent matrix U, one mask a window [0.5]")
    dropout_input: float = option(0.0, "locked dropout on the embedding's output: one mask per stream and window "
                                  "[0.65]")
    dropout_hidden: float = option(0.0, "locked dropout between layers [0.3]")
    dropout_output: float = option(0.0, "locked dropout before the readout [0.4]")
    dropout_embedding: float = option(0.0, "drop whole words of the embedding for a window [0.1]")
    alpha: float = option(0.0, "AR: alpha * mean of the squared (dropped) output of the last layer, added to the "
                          "loss [2]")
    beta: float = option(0.0, "TAR: beta * mean of its squared change from step to step, added to the loss [1]")
    init: str = option("default", "input-weight initialisation", ("default", "xavier"))
    recurrent_init: str = option("default", "recurrent-weight initialisation (identity: IRNN, Le et al. 2015)",
                                 ("default", "xavier", "orthogonal", "identity"))
    forget_bias: float | None = option(None, "initial forget-gate bias, e.g. 1 (default: PyTorch's)",
                                       applies=("cell", lambda v: v == "lstm"), where="--cell lstm")
    radius: float | None = option(None, "rescale each recurrent matrix (gate block) to this spectral radius at "
                                  "initialisation")
    dtype: str = option("float32", "floating point type of parameters and activations", ("float32", "float64"))
    precision: str = option("float32", "of the products: bf16 rounds their operands to bfloat16 and sums in float32 "
                            "(weights, optimiser, states and loss stay float32; a CPU with AVX512-BF16)",
                            ("float32", "bf16"))
    engine: str | None = option(None, "fast: the time loops compiled with numba; numpy: the reference cells "
                                "(default: fast, and numpy for the skip RNN, which has no compiled version)", ENGINES)
    # truncated BPTT
    batch: int = option(32, "parallel streams (B)")
    window: int = option(64, "k1 of TBPTT(k1, k2): steps between updates", applies=LM, where="--task lm")
    backprop: int | None = option(None, "k2 of TBPTT(k1, k2): steps backpropagated (default: --window)",
                                  applies=LM, where="--task lm")
    variable_window: bool = option(False, "AWD-LSTM's variable-length windows (Merity et al. 2017, 4.1): each "
                                   "step's length is drawn, int(N(k, 5)) and at least 5 with k = --window (k/2 one "
                                   "time in 20), the windows tile the streams and that step's lr is scaled by "
                                   "length / --window", applies=LM, where="--task lm")
    gradient: str = option("bptt", "how each window's gradient is computed: bptt (backwards over the window), or "
                           "forward in time with the influence ds_t/dtheta carried across windows, never reset while "
                           "the state is carried: rtrl (exact, O(B S^2 P) per step) or uoro (its unbiased rank-one "
                           "estimate); an update every --window steps (docs/training.md)", GRADIENTS, applies=LM,
                           where="--task lm")
    recompute_every: int | None = option(None, "keep the caches of this many steps at a time and recompute the "
                                         "others in the backward pass: O(sqrt(T)) memory for about a third more "
                                         "time")
    memory_budget: str | None = option(None, "the memory for a window's steps, e.g. 500MB, 2GB or 123456 (bytes): "
                                       "the recomputation policy that costs least within it (Gruslys et al. 2016; "
                                       "docs/memory.md); plain BPTT if the window fits")
    # optimisation
    optimizer: str = option("adam", "optimiser (nt-asgd: SGD that averages its weights from the first "
                            "validation that does not improve, see --nonmono; Merity et al. 2017)", OPTIMIZERS)
    lr: float = option(2e-3, "learning rate")
    momentum: float = option(0.0, "momentum", applies=("optimizer", lambda v: v in ("sgd", "rmsprop")),
                             where="--optimizer sgd or rmsprop")
    nesterov: bool = option(False, "Nesterov momentum", applies=("optimizer", lambda v: v == "sgd"),
                            where="--optimizer sgd")
    nonmono: int | None = option(None, "NT-ASGD's n: start averaging the weights at the first validation worse "
                                 "than the best of those more than n validations before it (default: 5, as "
                                 "AWD-LSTM)", applies=("optimizer", lambda v: v == "nt-asgd"),
                                 where="--optimizer nt-asgd")
    weight_decay: float = option(0.0, "weight decay (L2 for sgd/adagrad/rmsprop/adam/nt-asgd, decoupled for adamw)")
    schedule: str = option("constant", "learning-rate schedule: constant, plateau (/4 when validation stops "
                           "improving), cosine", ("constant", "plateau", "cosine"))
    warmup: int = option(0, "linear warm-up steps", applies=("schedule", lambda v: v == "cosine"),
                         where="--schedule cosine")
    clip: float = option(5.0, "gradient clipping threshold (0: off)")
    clip_mode: str = option("norm", "norm: global norm (Pascanu et al. 2013); param: each array's norm; value: "
                            "each entry", ("norm", "param", "value"), applies=("clip", lambda v: v > 0),
                            where="clipping (--clip > 0)")
    clip_dh: float | None = option(None, "clip dL/dh_t to [-x, x] at every step inside the recurrence "
                                   "(Mikolov's cutoff)")
    # length of the run (the first reached ends it; none given: one epoch)
    steps: int | None = option(None, "number of updates (total, counting those before a --resume)")
    epochs: float | None = option(None, "passes over the training data (fractions allowed)")
    max_time: float | None = option(None, "stop after this many seconds of training in all (checkpointed, "
                                    "resumable)")
    # bookkeeping
    seed: int = option(0, "random seed (initialisation, dropout, order of examples)")
    eval_every: int = option(200, "steps between validations and checkpoints")
    flow_every: int = option(0, "record ||dL/dh_k|| for every step of the window and per-parameter gradient "
                             "norms every N steps in metrics.jsonl (0: never); bptt diagnose draws them")
    eval_batch: int = option(32, "streams (or examples) per validation batch")
    log_every: int = option(10, "steps between metric records")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if f.metadata["choices"] is not None and not (f.default is None and getattr(self, f.name) is None):
                checks.one_of(f.name, getattr(self, f.name), f.metadata["choices"])
        for name in ("length", "test_size", "hidden", "layers", "batch", "window", "eval_every", "eval_batch",
                     "log_every"):
            checks.positive_int(name, getattr(self, name), minimum=1)
        for name in ("embedding", "seed", "warmup", "flow_every"):
            checks.positive_int(name, getattr(self, name), minimum=0)
        for name, low in (("proj_size", 1), ("max_vocab", 2), ("skip", 2), ("backprop", 1), ("recompute_every", 1),
                          ("steps", 1), ("nonmono", 1)):
            if getattr(self, name) is not None:
                checks.positive_int(name, getattr(self, name), minimum=low)
        for name in ("lr", "epochs", "max_time", "radius", "clip_dh"):
            if getattr(self, name) is not None:
                finite(name, getattr(self, name), "a positive number", lambda v: v > 0)
        finite("valid_fraction", self.valid_fraction, "a number in (0, 1)", lambda v: 0 < v < 1)
        finite("dropout", self.dropout, "a probability in [0, 1)", lambda v: 0 <= v < 1)
        self.check_regularisers()
        finite("momentum", self.momentum, "a number in [0, 1)", lambda v: 0 <= v < 1)
        finite("weight_decay", self.weight_decay, "a number >= 0", lambda v: v >= 0)
        finite("clip", self.clip, "a threshold >= 0 (0: off)", lambda v: v >= 0)
        self.check_initialisers()
        for name in ("data", "valid", "separator", "embedding_init"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name}: expected a non-empty string, got {value!r}")
        for name in ("tie", "nesterov", "freeze_embedding", "bidirectional", "learn_init_state", "variable_window"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        for f in dataclasses.fields(self):
            if f.metadata["applies"] is None or getattr(self, f.name) == f.default:
                continue
            deciding, test = f.metadata["applies"]
            if not test(getattr(self, deciding)):
                raise ValueError(f"{f.name}: applies to {f.metadata['where']} only; got {getattr(self, f.name)!r} "
                                 f"with {deciding}={getattr(self, deciding)!r}")
        self.check_gradient()
        self.check_precision()
        if self.task in PROBLEMS:
            problems.check_length(self.task, self.length)
        if self.task == "classify" and self.data is None:
            raise ValueError("task: 'classify' needs --data (a .tsv or .csv of text<TAB>label)")
        self.check_windows()
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: needs a momentum > 0 (give --momentum, e.g. 0.9)")
        check_embedding_options(self)
        if self.tie and self.embedding != (self.proj_size or self.hidden):
            size = f"proj_size={self.proj_size}" if self.proj_size else f"hidden={self.hidden}"
            raise ValueError(f"tie: needs embedding == {'proj_size' if self.proj_size else 'hidden'} (the readout "
                             f"reuses the embedding), got embedding={self.embedding} and {size}")
        self.check_projection()
        if self.adaptive_softmax is not None:
            self.cutoffs                                           # noqa: B018  parsed now: its errors come first
            if self.tie:
                raise ValueError("tie: the readout is the adaptive softmax (--adaptive-softmax), which has no "
                                 "matrix to share with the embedding; leave --tie out")
            finite("div_value", self.div_value, "a number > 1", lambda v: v > 1)
        if self.max_time is not None and self.steps is None and self.epochs is None and self.schedule == "cosine":
            raise ValueError("schedule: 'cosine' needs a known length; give --steps or --epochs with --max-time")

    def check_regularisers(self):
        """AWD-LSTM's options: rates in [0, 1), alpha and beta >= 0; the locked rates replace --dropout
        (the same inputs); the embedding's need an embedding."""
        for name in ("weight_drop", "dropout_input", "dropout_hidden", "dropout_output", "dropout_embedding"):
            finite(name, getattr(self, name), "a probability in [0, 1)", lambda v: 0 <= v < 1)
        for name in ("alpha", "beta"):
            finite(name, getattr(self, name), "a number >= 0", lambda v: v >= 0)
        locked = [n for n in ("dropout_input", "dropout_hidden", "dropout_output") if getattr(self, n) > 0]
        if locked and self.dropout > 0:
            raise ValueError(f"dropout: per-step dropout and locked dropout (--{locked[0].replace('_', '-')}) apply to "
                             f"the same inputs; give one of the two")
        if self.recompute_every is not None and (self.alpha > 0 or self.beta > 0 or self.bidirectional):
            given = "--bidirectional reads" if self.bidirectional else "--alpha and --beta (AR, TAR) read"
            raise ValueError(f"recompute_every: recomputes the window in segments from its start; {given} the "
                             f"whole window at once; leave --recompute-every out")
        self.check_memory_budget()
        if self.embedding == 0 and (self.dropout_input > 0 or self.dropout_embedding > 0):
            name = "dropout_input" if self.dropout_input > 0 else "dropout_embedding"
            raise ValueError(f"{name}: applies to an embedding; one-hot inputs (--embedding 0) have none")

    def check_memory_budget(self):
        """--memory-budget: a size in bytes; one recomputation policy at a time, and none that AR, TAR or a
        bidirectional network (which read the whole window at once) would break."""
        if self.memory_budget is None:
            return
        parse_budget(self.memory_budget)
        if self.recompute_every is not None:
            raise ValueError("memory_budget: --recompute-every also chooses what to recompute (fixed segments); "
                             "give one of the two")
        if self.alpha > 0 or self.beta > 0 or self.bidirectional:
            given = "--bidirectional reads" if self.bidirectional else "--alpha and --beta (AR, TAR) read"
            raise ValueError(f"memory_budget: recomputes the window in segments from its start; {given} the "
                             f"whole window at once; leave --memory-budget out")

    def check_gradient(self):
        """--gradient rtrl | uoro: a ValueError naming the first setting it cannot run (FORWARD_MODE_REFUSES, a
        cell other than rnn, gru or lstm); --task lm is checked by applies, several MPI ranks by the trainer."""
        if self.gradient == "bptt":
            return
        how = f"{self.gradient!r} computes the gradient forward in time and does not support"
        if self.cell not in ("rnn", "gru", "lstm"):
            raise ValueError(f"gradient: {how} --cell {self.cell}; it runs rnn, gru and lstm (or use --gradient bptt)")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name, what in FORWARD_MODE_REFUSES.items():
            value = getattr(self, name)
            if value != defaults[name] and not (name == "backprop" and value == self.window):
                given = "--" + name.replace("_", "-") + ("" if value is True else f" {value!r}")
                raise ValueError(f"gradient: {how} {what}; got {given}: leave it out (or use --gradient bptt)")

    def check_precision(self):
        """--precision bf16: float32 parameters, the fast engine's cells with the full readout, BPTT's gradient;
        the CPU is checked where the network is built (engine.Arch)."""
        if self.precision == "float32":
            return
        for name, value, wanted in (("dtype", self.dtype, ("float32",)), ("engine", self.engine, (None, "fast")),
                                    ("adaptive_softmax", self.adaptive_softmax, (None,)),
                                    ("gradient", self.gradient, ("bptt",))):
            if value not in wanted:
                raise ValueError(f"precision: 'bf16' runs float32 master weights on the fast engine's kernels, with "
                                 f"the full readout and BPTT's gradient; got --{name.replace('_', '-')} {value}")
        if self.cell not in ("rnn", "gru", "lstm"):
            raise ValueError(f"precision: 'bf16' runs the cells rnn, gru and lstm (the fast engine's); got --cell "
                             f"{self.cell}")

    def awd(self):
        """The regularisers' keyword arguments of engine.loss_and_grads (those set)."""
        names = ("weight_drop", "dropout_input", "dropout_hidden", "dropout_output", "dropout_embedding", "alpha",
                 "beta")
        return {name: getattr(self, name) for name in names if getattr(self, name) > 0}

    def check_windows(self):
        """TBPTT(k1, k2) needs k2 >= k1; --variable-window's windows are backpropagated whole (k2 = k1,
        as AWD-LSTM: a k2 - k1 overlap of a drawn length has no meaning there), so --backprop is refused."""
        if self.backprop is not None and self.backprop < self.window:
            raise ValueError(f"backprop: expected k2 >= window (k1) = {self.window}, got {self.backprop}")
        if self.variable_window and self.backprop not in (None, self.window):
            raise ValueError(f"backprop: --variable-window draws each window's length and backpropagates that "
                             f"window whole (k2 = k1, as AWD-LSTM); leave --backprop {self.backprop} out")

    def check_initialisers(self):
        """--forget-bias and --radius in a range where they mean something: sigmoid(±40) is 0 or 1
        already, and a larger value only overflows the weights' float32."""
        if self.forget_bias is not None:
            finite("forget_bias", self.forget_bias, "a number in [-1e4, 1e4]", lambda v: abs(v) <= 1e4)
        if self.radius is not None:
            finite("radius", self.radius, "a positive number up to 1e4", lambda v: v <= 1e4)

    def check_projection(self):
        """--proj-size: below --hidden (PyTorch's rule); U's gate blocks are then H x P, not square, so
        the initialisers that need square blocks do not apply."""
        if self.proj_size is None:
            return
        if self.proj_size >= self.hidden:
            raise ValueError(f"proj_size: expected a size below --hidden {self.hidden}, got {self.proj_size}")
        if self.recurrent_init in ("orthogonal", "identity") or self.radius is not None:
            name = "radius" if self.radius is not None else "recurrent_init"
            raise ValueError(f"{name}: needs square gate blocks of U; with --proj-size {self.proj_size} each is "
                             f"{self.hidden} x {self.proj_size} (use --recurrent-init default or xavier)")

    @property
    def cutoffs(self):
        """--adaptive-softmax as a tuple of ints (None: the full readout); the vocabulary's size is
        checked when the network is built."""
        if self.adaptive_softmax is None:
            return None
        try:
            cutoffs = tuple(int(c) for c in self.adaptive_softmax.split(","))
        except (AttributeError, ValueError):
            cutoffs = ()
        if not cutoffs or any(c <= 0 for c in cutoffs) or list(cutoffs) != sorted(set(cutoffs)):
            raise ValueError(f"adaptive_softmax: expected increasing positive ints separated by commas, e.g. "
                             f"2000,10000; got {self.adaptive_softmax!r}")
        return cutoffs

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


def finite(name, value, what, ok):
    """A real option's check (checks.real) that also refuses nan and +-inf."""
    checks.real(name, value, what, lambda v: math.isfinite(v) and ok(v))


def check_embedding_options(cfg):
    """--embedding-init and --freeze-embedding need an embedding E; a frozen E cannot be the readout too."""
    for name in ("embedding_init", "freeze_embedding"):
        if getattr(cfg, name) not in (None, False) and not cfg.embedding:
            raise ValueError(f"{name}: needs an embedding E; --embedding 0 means one-hot inputs, which have none: give "
                             f"--embedding > 0" + (" or leave it out (the vectors' size)" if name == "embedding_init"
                                                   else ""))
    if cfg.freeze_embedding and cfg.tie:
        raise ValueError("freeze_embedding: with --tie, E is also the readout, which would never be trained; "
                         "drop --tie or --freeze-embedding")
