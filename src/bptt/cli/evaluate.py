"""bptt eval: loss, perplexity and bits/char (or accuracy) of a trained run on a file."""

import json

from .display import metrics_line, plural
from .options import add_run_dir, parser_for


def add_eval(sub):
    p = parser_for(sub, "eval", "loss, perplexity and bits/char of a trained model on a file",
                   "Evaluate the best checkpoint of a run on a file: for a language model, cross-entropy in nats per "
                   "token, perplexity e^loss and bits per character (char level) on a text; for a classifier, loss "
                   "and accuracy on a .tsv/.csv.")
    add_run_dir(p)
    p.add_argument("--data", required=True, metavar="FILE", help="UTF-8 text (or labelled file) to evaluate on")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best: the weights with the best validation loss; last: the latest checkpoint (default: best)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run_eval(args):
    from ..training import data, tasks, train

    run = train.Run(args.run)
    cfg = run.config()
    if cfg.task not in ("lm", "classify"):
        raise ValueError(f"eval: {run.path} was trained on the {cfg.task!r} problem; its test results are in "
                         f"its metrics.jsonl")
    net, meta = run.network(args.checkpoint)
    vocab = run.vocab()
    if cfg.task == "lm":
        text = data.read_text(args.data)
        tokens, starts = tasks.documents(text, cfg.level, cfg.separator)
        ids = tasks.encode_text(vocab, tokens, text, f"--data {args.data}")
        if ids.size < 2:
            raise ValueError(f"--data: {args.data} has {plural(ids.size, 'token')}; at least 2 are needed")
        result = tasks.lm_evaluate(net.params, net.arch, ids, cfg, starts)
    else:
        texts, names = data.read_labeled(args.data, cfg.level)
        seqs = [vocab.encode(tasks.text_tokens(t, cfg.level)) for t in texts]
        result = tasks.classify_metrics(net.params, net.arch, seqs, run.labels().encode(names), cfg.eval_batch)
    result = {"file": args.data, "checkpoint_step": meta["step"], **result}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.data} (checkpoint of step {meta['step']}): {metrics_line(result)}")
    return 0
