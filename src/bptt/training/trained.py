"""A trained run from Python: bptt.load(RUN_DIR) gives its Network, vocabulary, labels and config,
with the two things one does with a language model, scoring a text and sampling a continuation.

    run = bptt.load("runs/shakespeare")              # the best checkpoint; checkpoint="last": the latest
    run.score("ROMEO:\\nIs the day so young?\\n")     # {"loss": nats/token, "perplexity", "bits_per_char",
                                                     #  "tokens", "streams"}
    run.sample("ROMEO:", 200, seed=1, temperature=0.8)
    run.sample("ROMEO:", 200, beam=4)                # the most likely continuation beam search finds
    chat = run.session(seed=1, stop_at_line_end=True)
    chat.sample("ROMEO:\\n", 100)                     # a text that goes on: the state is kept between
    chat.sample("JULIET:\\n", 100)                    # prompts, the text so far never run again;
    chat.text                                        # all of it, prompts and continuations
    run.network.forward(run.vocab.encode(list("ROMEO"))[:, None])     # anything Network does
"""

from typing import NamedTuple

import numpy as np

from .. import checks
from . import generate, opening, tasks


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

    def sample(self, prime, length, seed=0, temperature=1.0, top_k=None, top_p=None, greedy=False, beam=None,
               length_penalty=None, stop_at_line_end=False):
        """At most length tokens after prime (a text), as the text that continues it (as bptt sample
        prints it): characters as they are; words set apart by spaces, <eos> a line end, a prime's
        last line continued unless it ends with one. The same seed gives the same text. The
        options are generate.Decoding's: sampled from softmax(z / temperature), cut to top_k or
        top_p; greedy, the most likely token; beam=K, beam search (K continuations kept at each
        step; beam=1 is greedy), finished ones ranked by log p / ((5 + n) / 6)^length_penalty;
        stop_at_line_end, the text ends with the first line end drawn (fewer tokens then)."""
        self.language_model("sample")
        return self.session(seed, temperature, top_k, top_p, greedy, beam, length_penalty,
                            stop_at_line_end).sample(prime, length)

    def session(self, seed=0, temperature=1.0, top_k=None, top_p=None, greedy=False, beam=None,
                length_penalty=None, stop_at_line_end=False):
        """A generate.Session: session.sample(prompt, length) continues the text so far (the state
        kept, nothing run twice) after prompt, with sample()'s options; session.text is all of it.
        The first prompt is read as sample() reads its prime; a later one is its tokens alone.
        Prompt A then prompt B gives what one sample() of A + A's continuation + B gives, the seed's
        random numbers taken up where A's continuation left them."""
        self.language_model("session")
        rng = np.random.default_rng(checks.positive_int("seed", seed, minimum=0))
        decoding = generate.Decoding(temperature, top_k, top_p, greedy, beam, length_penalty, stop_at_line_end)
        net = self.network
        return generate.Session(net.params, net.arch, decoding, rng, self.vocab)

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
