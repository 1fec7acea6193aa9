"""A word-level LSTM language model trained by bptt and by PyTorch side by side, with the defaults
of PyTorch's word_language_model example, on Tiny Shakespeare read as a PTB-format corpus (one
sentence per line, <eos> at each line end, the 10,000 most frequent training words, the rest <unk>).

    2 layers of 200 units, embedding 200, plain SGD with lr 20 divided by 4 whenever validation
    does not improve (checked once per epoch), gradient norm clipped at 0.25, windows of 35 steps,
    batch 20, dropout 0.2 (--dropout), validation batch 10

    python benchmarks/word_lm.py                              # 3 epochs, both frameworks, all cores
    python benchmarks/word_lm.py --epochs 1 --dropout 0
    python benchmarks/word_lm.py --frameworks bptt --threads 1

What each framework runs:

    bptt     the product's own loop, train.train: SGD, clipping, the plateau schedule, validation
             once per epoch (eval_every = steps per epoch), a checkpoint after each validation
    PyTorch  word_language_model's main.py loop: nn.Embedding -> nn.Dropout -> nn.LSTM (dropout
             between layers) -> nn.Dropout -> nn.Linear; per window, detach the state, zero the
             grads, forward, cross-entropy, backward, clip_grad_norm_(0.25), p -= lr grad; after
             each epoch, validate (eval mode, no_grad, state carried across windows) and move lr by
             bptt's own schedules.Plateau (lr / 4 when validation does not beat the best so far)

Both start from the same weights (bptt's initialisation, loaded into the torch modules by name),
read the same training windows (data.batchify with batch 20, windows of 35) in the same order and
carry the state between windows, resetting it at each epoch. Dropout masks are each framework's
own random draws, so with dropout the two runs follow different paths to similar perplexities;
with --dropout 0 they compute the same thing up to float32 rounding.

Validation scores the same tokens in both. bptt's task.evaluate reads the validation ids as
tasks.eval_streams(N, 10) streams (data.batchify), windows of 35 (data.windows), the state carried
across windows, and averages the cross-entropy over tasks.scored(N, 10) targets (each stream's first
token has no prediction; the remainder of N / streams is trimmed). torch_validate builds its
tensors from those very arrays, sums the cross-entropy over every target of every window and
divides by the count, which it checks equals tasks.scored; the "valid tokens" column shows both.

Timing. Both frameworks are warmed up first (one step and a short validation on a throwaway copy:
numba's compiled kernels loaded, PyTorch's first-call set-up), then timed with
time.perf_counter. PyTorch's train and validation seconds are measured around its two loops.
bptt's are read from the events train.train emits, with log_every = eval_every = steps per epoch:
the loop emits "log" after an epoch's last step and "eval" right after the validation that
follows, so

    valid s = time of "eval" - time of the "log" just before it      (the validation, and keeping
                                                                      best.safetensors)
    train s = time of that "log" - time of the previous "eval"       (or of the "start" event)

bptt's train seconds therefore include writing the checkpoint after the previous validation (and
appending one metrics line per epoch), as its loop does; nothing else is added to either column.
A fractional --epochs ends with a partial epoch, validated at its last step, as bptt train does.
Prints a row per epoch and framework, then PyTorch's times over bptt's and the final perplexities.
"""

import argparse
import math
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from itertools import islice

import numpy as np

from bptt.bench.tables import machine_line
from bptt.model import engine
from bptt.training import building, clipping, data, opening, schedules, tasks, train
from bptt.training.config import TrainConfig

FRAMEWORKS = ("bptt", "torch")
LABELS = {"bptt": "bptt", "torch": "PyTorch"}
COLUMNS = [("epoch", "epoch", ">5", "{}"), ("framework", "framework", "<9", "{}"), ("steps", "steps", ">5", "{}"),
           ("train_s", "train s", ">8", "{:.1f}"), ("valid_s", "valid s", ">8", "{:.1f}"),
           ("epoch_s", "epoch s", ">8", "{:.1f}"), ("train_tokens_per_s", "train tok/s", ">11", "{:,.0f}"),
           ("valid_tokens_per_s", "valid tok/s", ">11", "{:,.0f}"), ("valid_tokens", "valid tokens", ">12", "{:,}"),
           ("perplexity", "valid ppl", ">9", "{:.1f}")]


def config(epochs, dropout, precision="float32"):
    """PyTorch word_language_model's defaults, on Tiny Shakespeare's words."""
    return TrainConfig(level="word", max_vocab=10000, cell="lstm", hidden=200, layers=2, embedding=200,
                       optimizer="sgd", lr=20.0, schedule="plateau", clip=0.25, window=35, batch=20, dropout=dropout,
                       eval_batch=10, epochs=epochs, precision=precision)


def parse(argv):
    cores = len(usable_cores())
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=float, default=3, help="passes over the training data (fractions allowed)")
    p.add_argument("--dropout", type=float, default=0.2, help="dropout probability (0: none)")
    p.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    p.add_argument("--threads", type=int, default=cores, help=f"cores to run on (default: all {cores})")
    p.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                   help="bf16: bptt --precision bf16 against PyTorch under torch.autocast('cpu', torch.bfloat16), "
                        "training and validation")
    args = p.parse_args(argv)
    if not 1 <= args.threads <= cores:
        p.error(f"--threads: expected 1 to {cores} (the cores this process may use), got {args.threads}")
    return args


def usable_cores():
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


@contextmanager
def on_cores(n):
    """Run on the first n usable cores. bptt has no thread count of its own: its kernels run one
    thread per core of the process's affinity mask, so the mask is narrowed (and restored after)."""
    before = usable_cores()
    if n < len(before):
        os.sched_setaffinity(0, before[:n])
    try:
        yield
    finally:
        if n < len(before):
            os.sched_setaffinity(0, before)


def epoch_budgets(total, steps_per_epoch):
    """Steps in each epoch of a run of `total` steps: whole epochs, then what remains."""
    whole, rest = divmod(total, steps_per_epoch)
    return [steps_per_epoch] * whole + ([rest] if rest else [])


def window_tokens(task):
    """Targets of each training window of an epoch, T B (the last window may be shorter)."""
    return [(w.stop - w.loss_from) * task.cfg.batch for w in task.windows]


def row(framework, epoch, steps, train_s, valid_s, train_tokens, valid_loss, valid_tokens):
    """One line of the table: an epoch's (or the final part epoch's) times, speeds and perplexity."""
    return {"epoch": epoch, "framework": LABELS[framework], "steps": steps, "train_s": train_s, "valid_s": valid_s,
            "epoch_s": train_s + valid_s, "train_tokens_per_s": train_tokens / train_s,
            "valid_tokens_per_s": valid_tokens / valid_s, "valid_tokens": valid_tokens,
            "perplexity": math.exp(min(valid_loss, 700))}


def format_row(values, columns=COLUMNS):
    return " ".join(f"{fmt.format(values[key]):{align}}" for key, _, align, fmt in columns)


def show(r):
    print(format_row(r), flush=True)


# --- bptt -------------------------------------------------------------------------------------------


def warm_up_bptt(cfg, task):
    """One training step and a short validation on a throwaway network, so that numba's compiled
    kernels are loaded (or compiled, on a fresh install) before anything is timed. Returns seconds."""
    start = time.perf_counter()
    net = building.build_network(cfg, task.input_size, task.output_size)
    batch, _ = task.batch(0, 0)
    r = engine.loss_and_grads(net.params, net.arch, **batch, dropout=cfg.dropout, rng=np.random.default_rng(0))
    clipping.clip(r.grads, cfg.clip, cfg.clip_mode)
    opt = building.make_optimizer(cfg)
    opt.step(net.params, r.grads, opt.init(net.params), cfg.lr)
    tasks.lm_loss(net.params, net.arch, task.valid[:4 * cfg.window * cfg.eval_batch], cfg.eval_batch, cfg.window)
    return time.perf_counter() - start


def bptt_run(cfg, task):
    """Train with train.train, the product's loop, after a warm-up. Returns (a row per validation,
    printed as it comes; the warm-up's seconds)."""
    warm_up_s = warm_up_bptt(cfg, task)
    per_epoch = task.steps_per_epoch
    cfg = cfg.replace(eval_every=per_epoch, log_every=per_epoch)
    tokens = window_tokens(task)
    rows, clock = [], {"step": 0}

    def on_event(kind, record):
        now = time.perf_counter()
        if kind == "start":
            clock["mark"] = now
        elif kind == "log":
            clock["trained"], clock["trained_step"] = now, record["step"]
        elif kind == "eval":
            assert clock["trained_step"] == record["step"], "a validation without the step record before it"
            first, last = clock["step"], record["step"]
            rows.append(row("bptt", math.ceil(last / per_epoch), last - first, clock["trained"] - clock["mark"],
                            now - clock["trained"], sum(tokens[s % per_epoch] for s in range(first, last)),
                            record["loss"], record["tokens"]))
            show(rows[-1])
            clock["mark"], clock["step"] = now, last

    with tempfile.TemporaryDirectory() as run:
        train.train(cfg, run, on_event=on_event)
    return rows, warm_up_s


# --- PyTorch ----------------------------------------------------------------------------------------


def torch_model(net, dropout):
    """word_language_model's RNNModel (LSTM, untied, returning logits) with net's weights, named as
    net.torch_state_dict() names them (embedding.weight, rnn.weight_ih_l0, ..., head.weight, head.bias)."""
    import torch
    from torch import nn

    class WordLSTM(nn.Module):
        def __init__(self, V, E, H, L, K):
            super().__init__()
            self.embedding = nn.Embedding(V, E)
            self.drop = nn.Dropout(dropout)
            self.rnn = nn.LSTM(E, H, L, dropout=dropout)
            self.head = nn.Linear(H, K)

        def forward(self, x, state):                                 # x (T, B) ids
            hs, state = self.rnn(self.drop(self.embedding(x)), state)  # (T, B, H)
            return self.head(self.drop(hs)), state                     # (T, B, K)

    a = net.arch
    model = WordLSTM(a.input_size, a.embedding_dim, a.hidden_size, a.num_layers, a.output_size)
    model.load_state_dict({name: torch.from_numpy(w) for name, w in net.torch_state_dict().items()})   # strict
    return model


def torch_train_epoch(model, stream, cfg, lr, steps):
    """The first `steps` windows of an epoch over stream (N, B), as main.py's train(): the state
    starts at zeros and is detached between windows (truncated BPTT), plain SGD after clipping."""
    import torch
    from torch.nn.functional import cross_entropy

    model.train()
    state = None
    for x, y in islice(data.windows(stream, cfg.window), steps):
        state = None if state is None else tuple(s.detach() for s in state)
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            z, state = model(torch.from_numpy(x), state)              # (T, B, K)
            loss = cross_entropy(z.reshape(-1, z.shape[-1]), torch.from_numpy(y).reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)


def torch_validate(model, ids, cfg):
    """Mean cross-entropy of the model on ids, read exactly as bptt's validation reads them
    (tasks.lm_loss): eval_streams streams, windows of cfg.window, the state carried, no dropout.
    Returns (loss, tokens scored)."""
    import torch
    from torch.nn.functional import cross_entropy

    model.eval()
    stream = data.batchify(ids, tasks.eval_streams(len(ids), cfg.eval_batch))    # (N / B, B)
    total, count, state = 0.0, 0, None
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        for x, y in data.windows(stream, cfg.window):
            z, state = model(torch.from_numpy(x), state)
            total += cross_entropy(z.reshape(-1, z.shape[-1]), torch.from_numpy(y).reshape(-1), reduction="sum").item()
            count += y.size
    assert count == tasks.scored(len(ids), cfg.eval_batch), f"scored {count} tokens, bptt scores " \
        f"{tasks.scored(len(ids), cfg.eval_batch)}"
    return total / count, count


def warm_up_torch(model, stream, valid, cfg):
    """A forward and backward pass (no update) and a short validation, before anything is timed.
    Returns seconds."""
    start = time.perf_counter()
    torch_train_epoch(model, stream, cfg, 0.0, 1)
    model.zero_grad()
    torch_validate(model, valid[:4 * cfg.window * cfg.eval_batch], cfg)
    return time.perf_counter() - start


def torch_run(cfg, task):
    """Train PyTorch from bptt's initial weights with word_language_model's loop and bptt's plateau
    schedule, after a warm-up. Returns (a row per epoch, printed as it comes; the warm-up's seconds)."""
    import torch

    net = building.build_network(cfg, task.input_size, task.output_size)     # the weights train.train starts from
    model = torch_model(net, cfg.dropout)
    stream = data.batchify(task.train, cfg.batch)                        # (N / B, B), as bptt's task.stream
    assert data.num_windows(len(stream), cfg.window) == task.steps_per_epoch, "bptt and PyTorch windows differ"
    warm_up_s = warm_up_torch(model, stream, task.valid, cfg)
    torch.manual_seed(cfg.seed)
    plateau = schedules.Plateau(cfg.lr)
    schedule, tokens, rows = plateau.init(), window_tokens(task), []
    total = opening.total_steps(cfg, task)
    for epoch, steps in enumerate(epoch_budgets(total, task.steps_per_epoch), 1):
        start = time.perf_counter()
        torch_train_epoch(model, stream, cfg, schedule["lr"], steps)
        trained = time.perf_counter()
        loss, count = torch_validate(model, task.valid, cfg)
        validated = time.perf_counter()
        schedule = plateau.update(schedule, loss)
        rows.append(row("torch", epoch, steps, trained - start, validated - trained, sum(tokens[:steps]), loss, count))
        show(rows[-1])
    return rows, warm_up_s


# --- the comparison ---------------------------------------------------------------------------------


def summary(rows):
    """PyTorch's seconds over bptt's (all epochs), and the final perplexities."""
    ours = [r for r in rows if r["framework"] == "bptt"]
    theirs = [r for r in rows if r["framework"] == "PyTorch"]
    if not (ours and theirs):
        return []
    ratio = {key: sum(r[key] for r in theirs) / sum(r[key] for r in ours) for key in ("train_s", "valid_s", "epoch_s")}
    a, b = ours[-1]["perplexity"], theirs[-1]["perplexity"]
    return [(f"PyTorch s / bptt s, all epochs: training {ratio['train_s']:.2f}, validation {ratio['valid_s']:.2f}, "
             f"epoch {ratio['epoch_s']:.2f}"),
            f"final validation perplexity: bptt {a:.1f}, PyTorch {b:.1f} (PyTorch {100 * (b / a - 1):+.1f}% of bptt)"]


RUNS = {"bptt": bptt_run, "torch": torch_run}


def threads_line(frameworks, n):
    """Sets PyTorch's thread count to n; says what each framework runs on."""
    parts = [f"bptt {n} (one per core)"] if "bptt" in frameworks else []
    if "torch" in frameworks:
        import torch

        torch.set_num_threads(n)
        parts.append(f"PyTorch {torch.get_num_threads()} (torch {torch.__version__})")
    return "threads: " + ", ".join(parts)


def main(argv=None):
    args = parse(argv)
    try:
        cfg = config(args.epochs, args.dropout, args.precision)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    frameworks = [f for f in FRAMEWORKS if f in args.frameworks]
    with on_cores(args.threads):
        print(machine_line())
        print(threads_line(frameworks, args.threads))
        task = tasks.LanguageModel(cfg)
        baselines = task.baselines()
        print(f"word-level Tiny Shakespeare: {task.train.size:,} train / {task.valid.size:,} valid tokens, "
              f"vocabulary {task.vocab.size:,}; {task.steps_per_epoch} steps per epoch, "
              f"{opening.total_steps(cfg, task)} in all; dropout {cfg.dropout:g}")
        print(f"uniform perplexity {math.exp(baselines['uniform']):,.1f}, unigram perplexity "
              f"{math.exp(baselines['unigram']):.1f}")
        print(" ".join(f"{title:{align}}" for _, title, align, _ in COLUMNS))
        rows, warm_up_s = [], {}
        for f in frameworks:
            framework_rows, warm_up_s[f] = RUNS[f](cfg, task)
            rows += framework_rows
        print("warm-up before timing (not in the table): " +
              ", ".join(f"{LABELS[f]} {s:.1f} s" for f, s in warm_up_s.items()))
        for line in summary(rows):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
