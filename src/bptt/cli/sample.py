"""bptt sample: text generated from a trained language model, printed as it is drawn."""

import argparse
import sys

from .options import NONNEGATIVE_INT, POSITIVE, POSITIVE_INT, PROBABILITY, Renamed, add_run_dir, parser_for


def print_sample(run, prime, tokens, temperature=1.0, top_k=None, top_p=None, seed=0, greedy=False):
    """Print the prime and then each generated token as it is drawn (a progress bar on stderr for
    long samples on a terminal)."""
    import numpy as np

    from ..training import data, generate
    from . import display

    cfg = run.config()
    if cfg.task != "lm":
        raise ValueError(f"sample: {run.path} holds a classifier (task {cfg.task!r}); sampling needs a language model")
    net, _ = run.network("best")
    vocab = run.vocab()
    display.compiling_notice(cfg)
    try:
        ids, prime = generate.prime_ids(vocab, prime or "", cfg.level)
    except ValueError as e:
        raise ValueError(f"--{e}") from None                   # "prime: ..." -> "--prime: ..."
    drawn = generate.stream(net.params, net.arch, ids, tokens, np.random.default_rng(seed), temperature, top_k,
                            top_p, greedy)
    text = data.Detokenizer(cfg.level, after=prime)
    sys.stdout.write(prime)
    with display.progress(tokens, "sample", "token") as bar:
        for token in drawn:
            sys.stdout.write(text.next(vocab.tokens[token]))
            sys.stdout.flush()
            bar.update(1)
    sys.stdout.write("\n")


def add_sample(sub):
    p = parser_for(sub, "sample", "generate text from a trained model",
                   "Generate text from the best checkpoint of a run: prime the state with --prime, then sample each "
                   "next token from softmax(z / temperature), optionally restricted to the top-k tokens or the top-p "
                   "probability mass. Tokens are printed as they are drawn.")
    add_run_dir(p)
    p.add_argument("--prime", default=None, help="text to start from (default: a line break, or <eos> at word level)")
    p.add_argument("--tokens", type=POSITIVE_INT, default=500, metavar="N", help="tokens to generate (default: 500)")
    p.add_argument("--length", action=Renamed, help=argparse.SUPPRESS, new="--tokens")   # its former name
    p.add_argument("--temperature", type=POSITIVE, default=1.0, help="divide the logits by this (default: 1)")
    p.add_argument("--top-k", type=POSITIVE_INT, default=None, help="sample among the k most likely tokens only")
    p.add_argument("--top-p", type=PROBABILITY, default=None,
                   help="sample among the most likely tokens that hold this probability mass (nucleus sampling)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--seed", type=NONNEGATIVE_INT, default=0, help="random seed (default: 0)")


def run_sample(args):
    from ..training import opening

    if args.greedy and (args.temperature != 1.0 or args.top_k or args.top_p):
        raise ValueError("--greedy: takes the most likely token; --temperature, --top-k and --top-p do not apply")
    print_sample(opening.Run(args.run), args.prime, args.tokens, args.temperature, args.top_k, args.top_p,
                 args.seed, args.greedy)
    return 0
