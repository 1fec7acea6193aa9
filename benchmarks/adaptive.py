"""The adaptive softmax at a word vocabulary of 25,000+: one training epoch of a word-level LSTM
language model by bptt with its full softmax, bptt with the adaptive softmax (bptt.fast.adaptive),
and PyTorch's nn.LSTM + nn.AdaptiveLogSoftmaxWithLoss, on the same windows from the same weights.

    python benchmarks/adaptive.py                          # both corpora, 1 epoch, H = 256, 2 layers
    python benchmarks/adaptive.py --corpus synthetic --hidden 650 --steps 40
    python benchmarks/adaptive.py --corpus shakespeare --ulp-runs 4   # the perplexity spread of rounding

Corpora (no text with 25,000+ distinct words ships with bptt, and none is installed):

    shakespeare  ../shared/data/tinyshakespeare.txt (or bptt/corpora's copy) read as bptt train
                 --level word reads it (whitespace words, case and punctuation kept, <eos> per line),
                 the last 2% held out: its training vocabulary is 25,303 words (at the usual 10% it
                 would be 23,843). Real text.
    synthetic    SYNTHETIC: 200,000 training and 20,000 validation tokens drawn i.i.d. from a Zipf
                 law (p(k) ~ 1 / (k + 1)) over 33,278 words, WikiText-2's vocabulary size; no
                 structure beyond unigram frequencies, so its perplexity only checks that the three
                 runs agree.

The vocabulary is numbered most frequent first (the adaptive softmax needs it), cutoffs [2000, 10000],
div_value 4. Each run: float32, batch 32, windows of 35 with the state carried, plain SGD (lr 20),
gradient norm clipped at 0.25 (bptt: clipping.clip and optim.SGD over the rows of E the window's
tokens touch, train.embedding_rows, as bptt train steps; PyTorch:
clip_grad_norm_ and word_language_model's p.data.add_(p.grad, alpha=-lr)), no dropout, one epoch
(or --steps windows), then validation perplexity (10 streams). bptt adaptive and PyTorch start from
the same weights (bptt's, loaded into the torch modules by name) and so compute the same thing up to float32 rounding;
bptt full softmax is the same LSTM with a full V, c readout. PyTorch runs on as many threads as
bptt (torch.set_num_threads). Each run is warmed up (two steps on a throwaway copy) before timing.
A shared 2-core machine's speed drifts by 10% from one minute to the next, so bptt adaptive and
PyTorch adaptive are timed --repeats times each, alternating, every repeat from the same weights
(the same numbers each time), and the table shows each one's median; the full softmax runs once.
"""

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np

import bptt
from bptt.bench.tables import machine_line
from bptt.model import engine
from bptt.training import clipping, data, optim, tasks, train

ROOT = Path(__file__).resolve().parent.parent
CORPUS = [ROOT.parent / "shared/data/tinyshakespeare.txt", ROOT / "src/bptt/corpora/tinyshakespeare.txt"]
CUTOFFS, LR, CLIP, B, T, EVAL_B = [2000, 10000], 20.0, 0.25, 32, 35, 10


def shakespeare():
    """(train ids, valid ids, V) of Tiny Shakespeare at word level, the last 2% held out."""
    text = data.read_text(next(p for p in CORPUS if p.exists()))
    train, valid = data.split_text(text, 0.02, "word")
    vocab = data.build_vocab(data.tokenize(train, "word"), "word", by_frequency=True)
    encode = lambda part: np.asarray(vocab.encode(data.tokenize(part, "word")), np.int64)    # noqa: E731
    return encode(train), encode(valid), vocab.size


def synthetic(V=33278, n_train=200_000, n_valid=20_000, seed=0):
    """SYNTHETIC (train ids, valid ids, V): i.i.d. Zipf tokens, p(k) ~ 1 / (k + 1), k = 0 most frequent."""
    p = 1.0 / np.arange(1, V + 1)
    ids = np.random.default_rng(seed).choice(V, n_train + n_valid, p=p / p.sum())
    return ids[:n_train], ids[n_train:], V


SGD = optim.SGD()


def bptt_step(net, x, y, state, opt_state):
    """One step as bptt train makes it: loss and gradients, clipping, the optimiser."""
    r = engine.loss_and_grads(net.params, net.arch, x, y, state=state)
    nonzero = train.embedding_rows(net.arch, x, r.grads)      # dE is zero outside the window's tokens
    clipping.clip(r.grads, CLIP, rows=nonzero)
    SGD.step(net.params, r.grads, opt_state, LR, rows=nonzero)
    return r.state


def bptt_run(V, H, layers, adaptive, stream, valid, steps, dtype=np.float32):
    """(train seconds, valid perplexity, the network's initial torch state dict)."""
    kw = dict(num_layers=layers, embedding_dim=H, dtype=dtype, seed=0, engine="fast")
    if adaptive:
        kw["cutoffs"] = CUTOFFS
    net = bptt.Network("lstm", V, H, V, **kw)
    start_sd = {k: v.copy() for k, v in net.torch_state_dict().items()}
    wins = list(data.windows(stream, T))[:steps]
    warm = bptt.Network("lstm", V, H, V, **kw)
    opt = SGD.init(warm.params)
    for x, y in wins[:2]:
        bptt_step(warm, x, y, None, opt)
    t0, state, opt = time.perf_counter(), None, SGD.init(net.params)
    for x, y in wins:
        state = bptt_step(net, x, y, state, opt)
    seconds = time.perf_counter() - t0
    loss, _ = tasks.lm_loss(net.params, net.arch, valid, EVAL_B, T)
    return seconds, math.exp(loss), start_sd, len(wins)


def torch_run(arch, state_dict, stream, valid, steps, threads, dtype=np.float32):
    """PyTorch's nn.LSTM + AdaptiveLogSoftmaxWithLoss from state_dict: (train seconds, valid perplexity)."""
    import torch

    from bptt.interop import torch_reference

    torch.set_num_threads(threads)
    wins = [(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))
            for x, y in list(data.windows(stream, T))[:steps]]

    def train(model, windows):
        state = None
        for x, y in windows:
            state = None if state is None else tuple(s.detach() for s in state)
            model.zero_grad()
            hs, state = model(x, state)
            model.head(hs.reshape(-1, hs.shape[-1]), y.reshape(-1)).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            for q in model.parameters():
                q.data.add_(q.grad, alpha=-LR)          # word_language_model's update

    train(torch_reference.build(arch, state_dict, dtype), wins[:2])
    model = torch_reference.build(arch, state_dict, dtype)
    t0 = time.perf_counter()
    train(model, wins)
    seconds = time.perf_counter() - t0
    return seconds, math.exp(torch_valid(model, valid))


def torch_valid(model, ids):
    """Mean -log p over the validation targets, read as tasks.lm_loss reads them."""
    import torch

    stream = data.batchify(ids, tasks.eval_streams(len(ids), EVAL_B))
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for x, y in data.windows(stream, T):
            hs, state = model(torch.from_numpy(np.ascontiguousarray(x)), state)
            total -= model.head(hs.reshape(-1, hs.shape[-1]), torch.from_numpy(np.ascontiguousarray(y)).reshape(-1)
                                ).output.sum().item()
            count += y.size
    return total / count


def run_corpus(name, args, threads):
    train, valid, V = shakespeare() if name == "shakespeare" else synthetic()
    stream = data.batchify(train, B)
    label = "Tiny Shakespeare, real text" if name == "shakespeare" else "SYNTHETIC Zipf stream"
    print(f"\n{label}: V = {V:,} words, {len(train):,} training tokens, {len(valid):,} validation; "
          f"H = {args.hidden}, {args.layers} layers, B = {B}, T = {T}, cutoffs {CUTOFFS}")
    rows = {}
    full_s, full_ppl, _, steps = bptt_run(V, args.hidden, args.layers, False, stream, valid, args.steps)
    rows["bptt full softmax"] = (full_s, full_ppl)
    arch = bptt.Network("lstm", V, args.hidden, V, num_layers=args.layers, embedding_dim=args.hidden,
                        cutoffs=CUTOFFS, dtype=np.float32).arch
    ours, theirs = [], []
    dtype = np.dtype(args.dtype).type
    for _ in range(args.repeats):
        ada_s, ada_ppl, sd, _ = bptt_run(V, args.hidden, args.layers, True, stream, valid, args.steps, dtype)
        ours.append(ada_s)
        torch_s, torch_ppl = torch_run(arch, sd, stream, valid, args.steps, threads, dtype)
        theirs.append(torch_s)
    rows["bptt adaptive"] = (float(np.median(ours)), ada_ppl)
    rows["PyTorch adaptive"] = (float(np.median(theirs)), torch_ppl)
    if args.repeats > 1:
        print("seconds of each repeat: bptt adaptive " + " ".join(f"{s:.2f}" for s in ours)
              + ", PyTorch adaptive " + " ".join(f"{s:.2f}" for s in theirs))
    tokens = steps * B * T
    print(f"{'run':<18} {'train s':>8} {'tok/s':>9} {'valid ppl':>10}   ({steps} steps, {tokens:,} tokens)")
    for k, (s, ppl) in rows.items():
        print(f"{k:<18} {s:8.1f} {tokens / s:9,.0f} {ppl:10.1f}")
    (ada_s, ada_ppl), (torch_s, torch_ppl) = rows["bptt adaptive"], rows["PyTorch adaptive"]
    print(f"bptt adaptive vs PyTorch adaptive: {torch_s / ada_s:.2f}x faster (target >= 1.5x), "
          f"perplexity {ada_ppl / torch_ppl - 1:+.3%} (target within 2%)")
    print(f"bptt adaptive vs bptt full softmax: {full_s / ada_s:.2f}x faster (target >= 3x)")
    if args.ulp_runs:
        spread = [torch_run(arch, nudged(sd, seed), stream, valid, args.steps, threads, dtype)[1]
                  for seed in range(args.ulp_runs)]
        print(f"PyTorch adaptive from the same weights with one of weight_hh_l0 moved by 1 ulp, {args.ulp_runs} "
              f"draws: perplexity {min(spread):.1f} to {max(spread):.1f} ({min(spread) / torch_ppl - 1:+.2%} to "
              f"{max(spread) / torch_ppl - 1:+.2%} of its own)")


def nudged(state_dict, seed):
    """state_dict with one entry of rnn.weight_hh_l0, drawn by seed, moved to the next float towards 1."""
    out = {k: v.copy() for k, v in state_dict.items()}
    U = out["rnn.weight_hh_l0"].reshape(-1)
    i = np.random.default_rng(seed).integers(U.size)
    U[i] = np.nextafter(U[i], U.dtype.type(1))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", nargs="+", choices=["shakespeare", "synthetic"], default=["shakespeare", "synthetic"])
    p.add_argument("--hidden", type=int, default=256, help="hidden = embedding size")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="windows to train on (default: one epoch)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="of the adaptive runs (float64: the two agree to round-off over a whole epoch)")
    p.add_argument("--ulp-runs", type=int, default=0,
                   help="also N PyTorch epochs from the same weights but one moved by 1 ulp: the perplexity "
                        "spread that rounding alone makes at lr 20")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs of each adaptive run, alternating (median)")
    args = p.parse_args(argv)
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(machine_line())
    for name in args.corpus:
        run_corpus(name, args, threads)


if __name__ == "__main__":
    main()
