"""bptt eval: loss, perplexity and bits/char (or accuracy) of a trained run on a file."""

import json

from .display import compiling_notice, metrics_line
from .options import POSITIVE_INT, add_run_dir, parser_for


def add_eval(sub):
    p = parser_for(sub, "eval", "loss, perplexity and bits/char of a trained model on a file",
                   "Evaluate the best checkpoint of a run on a file: for a language model, cross-entropy in nats per "
                   "token, perplexity e^loss and bits per character (char level) on a text; for a classifier, loss "
                   "and accuracy on a .tsv/.csv.")
    add_run_dir(p)
    p.add_argument("--data", required=True, metavar="FILE", help="UTF-8 text (or labelled file) to evaluate on")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best: the weights with the best validation loss; last: the latest checkpoint (default: best)")
    p.add_argument("--streams", type=POSITIVE_INT, default=1, metavar="N",
                   help="a language model: 1 reads the text as one stream with the state carried through it, as "
                        "test sets are scored in the literature; N > 1 cuts it into N parallel streams for speed, "
                        "each starting from a zero state (its first tokens have less context, so the loss is a "
                        "little higher); every token after the first is scored either way (default: 1)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run_eval(args):
    from ..training import data, opening, tasks

    run = opening.Run(args.run)
    cfg = run.config()
    if cfg.task not in ("lm", "classify"):
        raise ValueError(f"eval: {run.path} was trained on the {cfg.task!r} problem; its test results are in "
                         f"its metrics.jsonl")
    net, meta = run.network(args.checkpoint)
    vocab = run.vocab()
    compiling_notice(cfg)
    if cfg.task == "lm":
        text = data.read_text(args.data)
        result = tasks.score_text(net.params, net.arch, text, cfg, vocab, f"--data {args.data}", args.streams)
    else:
        if args.streams != 1:
            raise ValueError(f"--streams: applies to a language model; {run.path} is a classifier, whose examples "
                             f"are scored one by one (got --streams {args.streams})")
        labels = run.labels()
        texts, names = data.read_labeled(args.data, cfg.level, known=labels)
        try:
            seqs = [vocab.encode(tasks.text_tokens(t, cfg.level)) for t in texts]
        except ValueError as e:                               # a character the vocabulary lacks
            raise ValueError(f"--data {args.data}: {e}") from None
        result = tasks.classify_metrics(net.params, net.arch, seqs, labels.encode(names), cfg.eval_batch)
    result = {"file": args.data, "checkpoint_step": meta["step"], **result}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.data} (checkpoint of step {meta['step']}): {metrics_line(result)}{read_as(result)}")
    return 0


def read_as(result):
    """How a language model's text was read, for the result line ("" for a classifier)."""
    if "streams" not in result:
        return ""
    how = ("as one stream, the state carried through the text" if result["streams"] == 1 else
           f"in {result['streams']} parallel streams, each from a zero state")
    return f"; {result['tokens']:,} tokens scored {how}"
