"""Generation: feed a priming sequence, then choose each next token and feed it back. Sampling
draws it from p = softmax(z / temperature), optionally cut to the k most likely (top-k) or to the
smallest set whose probability reaches p (top-p, nucleus sampling, Holtzman et al. 2020); greedy
decoding takes the argmax; beam search (beam_steps) keeps the K most likely continuations and
gives the best. Randomness comes only from the Generator passed in, so a seed reproduces a sample.

A Session carries the state from one prompt to the next: the text so far is run once, and each
prompt is fed after it. Every forward pass of generation is one call of next_logits.
"""

import math
from typing import NamedTuple

import numpy as np

from .. import checks
from ..model import engine
from ..reference.losses import log_softmax
from . import data


def prompt_tokens(prompt, level):
    """The tokens of a prompt read as training reads text (characters; words with <eos> at each line
    end), its last line left open unless it ends with a line end."""
    tokens = data.tokenize(prompt, level)
    if level == "word" and not prompt.endswith("\n"):
        tokens = tokens[:-1]                                # the prompt's last line goes on
    return tokens


def encode(vocab, tokens, name):
    try:
        return vocab.encode(tokens)                         # only a character vocabulary refuses a token
    except ValueError:
        unknown = sorted(set(tokens) - vocab.index.keys())
        raise ValueError(f"{name}: characters not in the training vocabulary: {data.listing(unknown)}") from None


def prime_ids(vocab, prime, level):
    """(ids, prime) a sample starts from: the prime's prompt_tokens; with no prime (at word level,
    only spaces), a line start: <eos>, or "\n" (the vocabulary's first token if it has none), and
    the prime "" (nothing to continue on the page)."""
    words = level == "word"
    if not (prime.strip() if words else prime):
        return vocab.encode([data.EOS] if words else ["\n" if "\n" in vocab.index else vocab.tokens[0]]), ""
    return encode(vocab, prompt_tokens(prime, level), "prime"), prime


def line_end(vocab):
    """The id of the line end that stop_at_line_end stops at: <eos> (words) or "\n" (characters)."""
    token = data.EOS if vocab is not None and vocab.level == "word" else "\n"
    if vocab is None or token not in vocab.index:
        raise ValueError("stop_at_line_end: " + ("needs a vocabulary to know the line end's id" if vocab is None
                                                 else "the training vocabulary has no line end ('\\n')"))
    return vocab.index[token]


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


def gnmt_penalty(n, alpha):
    """lp(n) = ((5 + n) / 6)^alpha, GNMT's length normalisation (Wu et al. 2016, eq. 14): a finished
    beam of n tokens is ranked by log p / lp(n); alpha 0 ranks by log p."""
    return ((5 + n) / 6) ** alpha


def named(names):
    """'A does not apply' / 'A and B do not apply' / 'A, B and C do not apply'."""
    said = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return said + (" does" if len(names) == 1 else " do") + " not apply"


class Decoding(NamedTuple):
    """How each next token is chosen: drawn from distribution(z, temperature, top_k, top_p); the most
    likely one (greedy); or by beam search over `beam` continuations (beam_search), finished ones
    ranked by log p / gnmt_penalty(n, length_penalty). stop_at_line_end: a continuation ends with
    the first line end it draws (<eos> at word level), the length asked for being the most."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    beam: int | None = None
    length_penalty: float | None = None
    stop_at_line_end: bool = False

    def checked(self, name=lambda field: field):
        """self, each value and each combination checked: an option that would change nothing is an
        error. name(field): what the caller calls a field in messages (the command line: its flag)."""
        distribution(np.zeros(1), self.temperature, self.top_k, self.top_p)      # their values' errors
        checks.flag(name("greedy"), self.greedy)
        checks.flag(name("stop_at_line_end"), self.stop_at_line_end)
        sampling = [name(f) for f, off in (("temperature", 1.0), ("top_k", None), ("top_p", None))
                    if getattr(self, f) != off]
        if self.beam is not None:
            checks.positive_int(name("beam"), self.beam)
            given = [name("greedy")] * self.greedy + sampling
            if given:
                raise ValueError(f"{name('beam')}: searches for the most likely continuation, drawing nothing; "
                                 f"{named(given)}")
        if self.greedy and sampling:
            raise ValueError(f"{name('greedy')}: takes the most likely token; {named(sampling)}")
        if self.length_penalty is not None:
            checks.real(name("length_penalty"), self.length_penalty, checks.NONNEGATIVE, checks.nonnegative)
            if self.beam is None or not self.stop_at_line_end:
                raise ValueError(f"{name('length_penalty')}: ranks beam search's continuations of different "
                                 f"lengths, which need {name('beam')} and {name('stop_at_line_end')}")
        return self

    def next_token(self, z, rng):
        """The token drawn (or, greedy, taken) after logits z (K,)."""
        if self.greedy:
            return int(np.argmax(z))
        p = distribution(z, self.temperature, self.top_k, self.top_p)
        return min(int(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right")), len(p) - 1)


def next_logits(params, arch, ids, state, weights):
    """The logits z (B, K) after ids (T, B) fed from state (None: the initial state), and the state
    after them: B rows side by side (the K beams of beam search), T steps at once for a prompt, 1 for
    a token drawn. weights: engine.evaluating(params, arch), entered for the call. Every forward
    pass of generation is this call."""
    with weights:
        z, state = engine.logits(params, arch, ids, state)          # (T, B, K)
    return z[-1], state


def rows(state, index):
    """The rows index (ints or a mask) of a state: an array (L, B, H) or a tuple of them."""
    if isinstance(state, tuple):
        return tuple(part[:, index] for part in state)
    return state[:, index]


class Hypothesis(NamedTuple):
    """A continuation found by beam search."""

    tokens: np.ndarray       # (n,) its ids
    score: float             # log p(tokens), summed over them (nats)
    state: object            # the state (one row) after all its tokens but the last, which is not yet fed


class Beams(NamedTuple):
    """Beam search after a step: the live continuations, best first, and the finished ones."""

    tokens: np.ndarray       # (k, t) ids
    scores: np.ndarray       # (k,) log p of each, summed (float64)
    state: object            # k rows: each continuation's state after all its tokens but the last
    finished: tuple          # Hypotheses ended by the stop token, in the order found


def beam_steps(params, arch, weights, z, state, length, beam, stop=None):
    """Beam search from logits z (1, K) and the state (one row) they came from, yielding Beams after
    each of at most `length` steps. A step extends every live continuation by every token, scores
    each candidate by its summed log-probability and keeps the `beam` best (equal scores: the one
    from the better-ranked continuation first, then the smaller token id; a stable sort). Those that
    end with the stop token leave as finished; the others go on, fed as one batch of rows. The
    search ends after `length` steps, when none goes on, or when `beam` have finished."""
    tokens, scores, finished = np.zeros((1, 0), np.int64), np.zeros(1), []
    for t in range(length):
        if t:
            z, state = next_logits(params, arch, tokens[None, :, -1], state, weights)     # (k, K)
        total = (scores[:, None] + log_softmax(z.astype(np.float64))).ravel()         # (k K,)
        best = np.argsort(-total, kind="stable")[:beam]
        parent, token = np.divmod(best, z.shape[1])
        tokens = np.concatenate([tokens[parent], token[:, None]], axis=1)
        scores, state = total[best], rows(state, parent)
        done = token == stop if stop is not None else np.zeros(len(token), bool)
        finished += [Hypothesis(tokens[i], float(scores[i]), rows(state, [i])) for i in np.flatnonzero(done)]
        tokens, scores, state = tokens[~done], scores[~done], rows(state, ~done)
        yield Beams(tokens, scores, state, tuple(finished))
        if not len(scores) or len(finished) >= beam:
            return


def beam_search(params, arch, weights, z, state, length, beam, length_penalty=None, stop=None):
    """The best Hypothesis of beam_steps: among the finished ones and, if the search ran all
    `length` steps, the live ones, the highest log p / gnmt_penalty(n, length_penalty) (equal:
    finished before live, each in the order found). Without a stop token every continuation has
    `length` tokens and the best is the most likely one kept."""
    *_, beams = beam_steps(params, arch, weights, z, state, length, beam, stop)
    candidates = list(beams.finished)
    if beams.tokens.shape[1] == length:
        candidates += [Hypothesis(beams.tokens[i], float(beams.scores[i]), rows(beams.state, [i]))
                       for i in range(len(beams.scores))]
    return max(candidates, key=lambda h: h.score / gnmt_penalty(len(h.tokens), length_penalty or 0))


class Session:
    """A text that goes on: each call feeds its prompt after everything before it and continues
    from there, the state carried from call to call (nothing is run twice). The last token drawn
    is fed with the next prompt. Sampling draws from rng one number per token, so prompt A, then
    prompt B, gives what one sample of B's length from A + A's continuation + B gives with rng
    where A's sample left it. The weights are packed once for the session (engine.evaluating):
    params must not change while it is used, and one stream is consumed before the next starts.

    decoding: a Decoding (None: sampling at temperature 1); rng: a np.random.Generator (unused by
    greedy decoding and beam search); vocab: data.Vocab, for prompts given as text and for
    stop_at_line_end."""

    def __init__(self, params, arch, decoding=None, rng=None, vocab=None):
        decoding = (decoding or Decoding()).checked()
        if arch.bidirectional:
            raise ValueError("bidirectional: a bidirectional network reads each whole sequence backwards too, so it "
                             "cannot continue a text token by token")
        self.params, self.arch, self.decoding, self.rng, self.vocab = params, arch, decoding, rng, vocab
        if rng is None and not (decoding.greedy or decoding.beam):
            raise TypeError("rng: sampling needs a np.random.Generator, got None")
        self.stop = line_end(vocab) if decoding.stop_at_line_end else None
        self.weights = engine.evaluating(params, arch)
        self.state, self.pending = None, np.zeros(0, np.int64)      # pending: drawn, not yet fed
        self.text, self.shown = "", None            # the text so far (prompts and continuations); its Detokenizer

    def stream(self, prompt_ids, length):
        """The ids of at most `length` tokens (fewer when one is the stop token) that continue all so
        far and then prompt_ids (1-D ints, which may be empty after the first call), yielded as they
        are drawn (beam search: when the search ends). Checked before the first is drawn."""
        prompt = np.asarray(prompt_ids, dtype=np.int64)
        if prompt.ndim != 1 or prompt.size + self.pending.size == 0:
            raise ValueError(f"prime: expected at least one token, got {checks.describe(prompt)}")
        fed = np.concatenate([self.pending, prompt])
        checks.positive_int("length", length)
        return self._searched(fed, length) if self.decoding.beam else self._drawn(fed, length)

    def _drawn(self, fed, length):
        z, self.state = next_logits(self.params, self.arch, fed[:, None], self.state, self.weights)
        self.pending = fed[:0]
        for t in range(length):
            token = self.decoding.next_token(z[0], self.rng)
            self.pending = np.array([token])
            yield token
            if token == self.stop or t + 1 == length:
                return
            z, self.state = next_logits(self.params, self.arch, self.pending[:, None], self.state, self.weights)
            self.pending = fed[:0]

    def _searched(self, fed, length):
        z, state = next_logits(self.params, self.arch, fed[:, None], self.state, self.weights)
        best = beam_search(self.params, self.arch, self.weights, z, state, length, self.decoding.beam,
                           self.decoding.length_penalty, self.stop)
        self.state, self.pending = best.state, best.tokens[-1:]
        yield from best.tokens.tolist()

    def pieces(self, prompt, length):
        """(the prompt as the model reads it, the continuation's text a piece per token as it is
        drawn): the first prompt as prime_ids reads a prime (a line start if empty), a later one its
        prompt_tokens alone (none for ""). Words are set apart by spaces, <eos> a line end."""
        if self.vocab is None:
            raise TypeError("vocab: a prompt given as text needs the training vocabulary")
        level, first = self.vocab.level, self.state is None and not self.pending.size
        ids, shown = prime_ids(self.vocab, prompt, level) if first else \
            (encode(self.vocab, prompt_tokens(prompt, level), "prompt"), None)
        drawn = self.stream(ids, length)                        # checked before anything changes
        if first:
            self.shown = data.Detokenizer(level, after=shown)
        else:
            self.shown = self.shown or data.Detokenizer(level)        # after ids given to stream()
            shown = "".join(self.shown.next(token) for token in self.vocab.decode(ids))
        self.text += shown
        return shown, self._shown(drawn)

    def _shown(self, drawn):
        for token in drawn:
            piece = self.shown.next(self.vocab.tokens[token])
            self.text += piece
            yield piece

    def sample(self, prompt, length):
        """The text of at most `length` tokens that continue all so far and then prompt (a str)."""
        return "".join(self.pieces(prompt, length)[1])


def sample(params, arch, prime_ids, length, rng, temperature=1.0, top_k=None, top_p=None, greedy=False, beam=None):
    """length token ids generated after prime_ids (a non-empty 1-D int sequence)."""
    return np.fromiter(stream(params, arch, prime_ids, length, rng, temperature, top_k, top_p, greedy, beam),
                       dtype=np.int64, count=length)


def stream(params, arch, prime_ids, length, rng, temperature=1.0, top_k=None, top_p=None, greedy=False, beam=None):
    """The ids of sample(), yielded one at a time as they are drawn (for printing as they come).
    Every argument is checked before the first id is drawn. The weights are packed once for the
    whole sample (engine.evaluating): params must not change until the stream is done."""
    decoding = Decoding(temperature, top_k, top_p, greedy, beam)
    return Session(params, arch, decoding, rng).stream(prime_ids, length)
