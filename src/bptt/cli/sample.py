"""bptt sample: text generated from a trained language model, printed as it is drawn; with
--interactive, a text that goes on: each line read from stdin continues it, the state kept."""

import argparse
import sys

from .options import NONNEGATIVE, NONNEGATIVE_INT, POSITIVE, POSITIVE_INT, PROBABILITY, Renamed, add_run_dir, parser_for


def print_sample(run, prime, tokens, seed=0, prompts=None, **decoding):
    """Print the prime and then each generated token as it is drawn (a progress bar on stderr for
    long samples on a terminal); decoding: the fields of generate.Decoding. prompts (--interactive:
    sys.stdin): lines to go on with (converse), the prime, if one is given, the first turn."""
    import numpy as np

    from ..training import generate
    from . import display

    cfg = run.config()
    if cfg.task != "lm":
        raise ValueError(f"sample: {run.path} holds a classifier (task {cfg.task!r}); sampling needs a language model")
    net, _ = run.network("best")
    try:
        session = generate.Session(net.params, net.arch, generate.Decoding(**decoding), np.random.default_rng(seed),
                                   run.vocab())
    except ValueError as e:                                     # only generate.line_end's
        raise ValueError(f"--stop-at-line-end:{str(e).partition(':')[2]}") from None
    display.compiling_notice(cfg)
    ended = True                                                # the text printed ends with a line end
    if prime is not None or prompts is None:
        try:
            shown, pieces = session.pieces(prime or "", tokens)
        except ValueError as e:
            raise ValueError(f"--{e}") from None                   # "prime: ..." -> "--prime: ..."
        ended = write(shown, pieces, tokens)
    if prompts is None:
        sys.stdout.write("\n")
    elif not converse(session, prompts, tokens, ended):
        sys.stdout.write("\n")                                  # the shell's prompt on a line of its own


def write(shown, pieces, tokens):
    """Print shown and then each piece as it comes; whether the last one ends with a line end."""
    from . import display

    sys.stdout.write(shown)
    last = shown
    with display.progress(tokens, "sample", "token") as bar:
        for last in pieces:
            sys.stdout.write(last)
            sys.stdout.flush()
            bar.update(1)
    return last.endswith("\n")


def converse(session, prompts, tokens, ended):
    """Each line of prompts, its line end included, fed after the text so far and continued, until
    they end (Ctrl-D); whether the text printed then ends with a line end. The prompt is printed
    too unless prompts is a terminal (which shows it already), so that a pipe's output holds the
    whole text. A line the vocabulary cannot read is an error: on a terminal one "error:" line
    and the next line is read; from a pipe it ends the command (exit 2)."""
    from .errors import one_line

    typed = prompts.isatty()
    for number, line in enumerate(iter(prompts.readline, ""), 1):
        try:
            shown, pieces = session.pieces(line, tokens)
        except ValueError as e:
            message = f"stdin line {number}: {str(e).partition(': ')[2]}"     # "prompt: ..." -> "stdin line 3: ..."
            if not typed:
                raise ValueError(message) from None
            print(f"error: {one_line(message)}", file=sys.stderr)
            continue
        ended = write("" if typed else shown, pieces, tokens)
    return ended


def add_sample(sub):
    p = parser_for(sub, "sample", "generate text from a trained model",
                   "Generate text from the best checkpoint of a run: prime the state with --prime, then sample each "
                   "next token from softmax(z / temperature), optionally restricted to the top-k tokens or the top-p "
                   "probability mass; or take the most likely token (--greedy), or search for the most likely "
                   "continuation (--beam). Tokens are printed as they are drawn (--beam: when the search ends). "
                   "With --interactive, each line read from stdin continues the same text, nothing computed twice.")
    add_run_dir(p)
    p.add_argument("--prime", default=None, help="text to start from (default: a line break, or <eos> at word level)")
    p.add_argument("--tokens", type=POSITIVE_INT, default=500, metavar="N",
                   help="tokens to generate, the most with --stop-at-line-end; with --interactive, after each prompt "
                        "(default: 500)")
    p.add_argument("--length", action=Renamed, help=argparse.SUPPRESS, new="--tokens")   # its former name
    p.add_argument("--temperature", type=POSITIVE, default=1.0, help="divide the logits by this (default: 1)")
    p.add_argument("--top-k", type=POSITIVE_INT, default=None, help="sample among the k most likely tokens only")
    p.add_argument("--top-p", type=PROBABILITY, default=None,
                   help="sample among the most likely tokens that hold this probability mass (nucleus sampling)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--beam", type=POSITIVE_INT, default=None, metavar="K",
                   help="beam search: keep the K most likely continuations (summed log-probability) at each step and "
                        "print the best; deterministic, --beam 1 is --greedy; not with --greedy, --temperature, "
                        "--top-k, --top-p or --seed")
    p.add_argument("--length-penalty", type=NONNEGATIVE, default=None, metavar="ALPHA",
                   help="with --beam and --stop-at-line-end: rank the finished continuations by log p / "
                        "((5 + n) / 6)^ALPHA, n their tokens (GNMT's length normalisation); 0.6 to 1 counters beam "
                        "search's preference for short lines (default: ranked by log p alone)")
    p.add_argument("--stop-at-line-end", action="store_true",
                   help="end the text at the first line end drawn (<eos> at word level), --tokens being the most; "
                        "with --beam, a continuation that draws one is finished")
    p.add_argument("--interactive", action="store_true",
                   help="then read prompts from stdin, one a line: each is fed after the text so far (the state "
                        "kept, never recomputed) and continued; a terminal shows what you type, from a pipe the "
                        "prompts are printed too; Ctrl-D ends")
    p.add_argument("--seed", type=NONNEGATIVE_INT, default=None,
                   help="random seed of the sampling; not with --greedy or --beam, which draw nothing (default: 0)")


def run_sample(args):
    from ..training import generate, opening
    from .options import flag

    decoding = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, greedy=args.greedy,
                    beam=args.beam, length_penalty=args.length_penalty, stop_at_line_end=args.stop_at_line_end)
    generate.Decoding(**decoding).checked(flag)               # before the run is read: what was asked comes first
    if args.seed is not None and (args.greedy or args.beam):
        raise ValueError(f"--seed: {'--beam' if args.beam else '--greedy'} draws nothing at random; leave --seed out")
    print_sample(opening.Run(args.run), args.prime, args.tokens, args.seed or 0,
                 sys.stdin if args.interactive else None, **decoding)
    return 0
