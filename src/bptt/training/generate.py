"""Generation by sampling: feed a priming sequence, then repeatedly draw the next token from
p = softmax(z / temperature), optionally cut to the k most likely (top-k) or to the smallest set
whose probability reaches p (top-p, nucleus sampling, Holtzman et al. 2020), and feed it back.
Greedy decoding takes the argmax instead. Randomness comes only from the Generator passed in, so
a seed reproduces a sample exactly."""

import math

import numpy as np

from .. import checks
from ..model import engine
from . import data


def prime_ids(vocab, prime, level):
    """(ids, prime) a sample starts from: the prime read as training reads text (characters; words
    with <eos> at each line end), its last line left open unless it ends with a line end; with no
    prime (at word level, only spaces), a line start: <eos>, or "\n" (the vocabulary's first token
    if it has none), and the prime "" (nothing to continue on the page)."""
    words = level == "word"
    if not (prime.strip() if words else prime):
        return vocab.encode([data.EOS] if words else ["\n" if "\n" in vocab.index else vocab.tokens[0]]), ""
    tokens = data.tokenize(prime, level)
    if words and not prime.endswith("\n"):
        tokens = tokens[:-1]                                # the prime's last line goes on
    try:
        return vocab.encode(tokens), prime                  # only a character vocabulary refuses a token
    except ValueError:
        unknown = sorted(set(tokens) - vocab.index.keys())
        raise ValueError(f"prime: characters not in the training vocabulary: {data.listing(unknown)}") from None


def distribution(z, temperature=1.0, top_k=None, top_p=None):
    """The sampling distribution (K,) for logits z (K,)."""
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature: expected a positive number, got {temperature}")
    z = np.asarray(z, np.float64)
    with np.errstate(over="ignore"):                          # a tiny temperature: -inf, i.e. probability 0
        p = np.exp((z - z.max()) / temperature)
    if top_k is not None:
        checks.positive_int("top_k", top_k)
        if top_k < len(p):
            p[np.argsort(p)[:-top_k]] = 0                   # all but the k largest
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p: expected a probability in (0, 1], got {top_p}")
        order = np.argsort(-p, kind="stable")
        cumulative = np.cumsum(p[order]) / p.sum()
        keep = np.searchsorted(cumulative, top_p) + 1       # smallest prefix reaching top_p
        p[order[keep:]] = 0
    return p / p.sum()


def sample(params, arch, prime_ids, length, rng, temperature=1.0, top_k=None, top_p=None, greedy=False):
    """length token ids generated after prime_ids (a non-empty 1-D int sequence)."""
    return np.fromiter(stream(params, arch, prime_ids, length, rng, temperature, top_k, top_p, greedy),
                       dtype=np.int64, count=length)


def stream(params, arch, prime_ids, length, rng, temperature=1.0, top_k=None, top_p=None, greedy=False):
    """The ids of sample(), yielded one at a time as they are drawn (for printing as they come).
    Every argument is checked before the first id is drawn. The weights are packed once for the
    whole sample (engine.evaluating): params must not change until the stream is done."""
    prime = np.asarray(prime_ids, dtype=np.int64)
    if prime.ndim != 1 or prime.size == 0:
        raise ValueError(f"prime: expected at least one token, got {checks.describe(prime)}")
    checks.positive_int("length", length)
    if not greedy:
        distribution(np.zeros(1), temperature, top_k, top_p)      # the options' errors come now
    return _stream(params, arch, prime, length, rng, temperature, top_k, top_p, greedy)


def _stream(params, arch, prime, length, rng, temperature, top_k, top_p, greedy):
    weights = engine.evaluating(params, arch)               # packed once for the whole sample, entered per call
    with weights:
        z, state = engine.logits(params, arch, prime[:, None])   # (T, 1, K)
    for _ in range(length):
        if greedy:
            token = int(np.argmax(z[-1, 0]))
        else:
            p = distribution(z[-1, 0], temperature, top_k, top_p)
            token = min(int(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right")), len(p) - 1)
        yield token
        with weights:
            z, state = engine.logits(params, arch, np.array([[token]]), state)
