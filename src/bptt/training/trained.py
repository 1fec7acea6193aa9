"""A trained run from Python: bptt.load(RUN_DIR) gives its Network, vocabulary, labels and config,
with the two things one does with a language model, scoring a text and sampling a continuation.

    run = bptt.load("runs/shakespeare")              # the best checkpoint; checkpoint="last": the latest
    run.score("ROMEO:\\nIs the day so young?\\n")     # {"loss": nats/token, "perplexity", "bits_per_char",
                                                     #  "tokens", "streams"}
    run.sample("ROMEO:", 200, seed=1, temperature=0.8)
    run.network.forward(run.vocab.encode(list("ROMEO"))[:, None])     # anything Network does
"""

from typing import NamedTuple

import numpy as np

from .. import checks
from . import data, generate, opening, tasks


class Trained(NamedTuple):
    network: object          # bptt.Network with the checkpoint's weights
    vocab: object            # data.Vocab: encode(tokens) -> ids, decode(ids) -> tokens (None: a synthetic problem)
    labels: object           # data.LabelSet of a classifier (encode, decode), else None
    config: object           # the run's TrainConfig
    step: int                # the training step of the weights

    def score(self, text, streams=1):
        """The language model's cross-entropy on text, every token after the first predicted from
        the ones before it, as bptt eval reports it (tasks.score_text): {"loss": nats per token,
        "perplexity": e^loss, "bits_per_char" (character level), "tokens": how many were predicted,
        "streams"}. streams=1 carries the state through the whole text; more cut it into parallel
        streams for speed, each starting from zeros (every token is still scored)."""
        self.language_model("score")
        net = self.network
        return tasks.score_text(net.params, net.arch, text, self.config, self.vocab, "text", streams)

    def sample(self, prime, length, seed=0, temperature=1.0, top_k=None, top_p=None):
        """length tokens drawn after prime (a text), as the text that continues it (as bptt sample
        prints it): characters as they are; words set apart by spaces, <eos> a line end, a prime's
        last line continued unless it ends with one. The same seed gives the same text."""
        self.language_model("sample")
        ids, prime = generate.prime_ids(self.vocab, prime, self.config.level)
        net = self.network
        rng = np.random.default_rng(checks.positive_int("seed", seed, minimum=0))
        drawn = generate.sample(net.params, net.arch, ids, length, rng, temperature, top_k,
                                top_p)
        text = data.Detokenizer(self.config.level, after=prime)
        return "".join(text.next(token) for token in self.vocab.decode(drawn))

    def language_model(self, what):
        if self.config.task != "lm":
            raise ValueError(f"{what}: the run holds a {self.config.task!r} model; {what} needs a language model")


def load(run_dir, checkpoint="best"):
    """The run in run_dir: its network with the weights of best.safetensors ("best") or of the last
    checkpoint ("last"), its vocabulary and labels, its config and the weights' step. Needs only
    the run directory."""
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint: expected 'best' or 'last', got {checkpoint!r}")
    run = opening.Run(run_dir)
    cfg = run.config()
    net, meta = run.network(checkpoint)
    vocab = run.vocab() if run.file("vocab.json").exists() else None
    return Trained(net, vocab, run.labels(), cfg, int(meta.get("step", 0)))
