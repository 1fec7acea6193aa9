"""What a training run learns from: the data, how it is cut into batches, how it is scored.

    LanguageModel    next-token prediction on a text, targets at every step, TBPTT windows over
                     B streams with the hidden state carried from window to window
    Classification   one label per text (many-to-one, the seeds' sentiment example), padded
                     batches with lengths, full BPTT over each whole sequence, reshuffled each epoch
    Synthetic        a long-range problem (adding, copy, order, sentiment) of length T, fresh
                     batches every step, a fixed test set, a "solved" criterion

Each gives the training loop the same few things: batch(index, epoch) -> the keyword arguments of
engine.loss_and_grads, evaluate(params, arch, ranks=None) -> metrics with a "loss" (with ranks,
bptt.training.ranks, every rank calls it and scores a share), and baselines().
"""

import math
from importlib import resources

import numpy as np

from .. import checks
from ..model import engine
from ..reference.losses import log_softmax
from . import data, problems, tbptt
from .ranks import Ranks, rows_of


def shipped_text():
    return resources.files("bptt").joinpath("corpora/tinyshakespeare.txt").read_text(encoding="utf-8")


def lm_metrics(loss, level):
    m = {"loss": loss, "perplexity": math.exp(min(loss, 700))}
    if level == "char":
        m["bits_per_char"] = loss / math.log(2)
    return m


def encode_text(vocab, tokens, text, source):
    """vocab.encode(tokens), with an error that names the source and the line of the first token
    the vocabulary lacks (a character vocabulary has no <unk>)."""
    try:
        return vocab.encode(tokens)
    except ValueError:                                        # only a character vocabulary refuses a token
        unknown = sorted(set(tokens) - vocab.index.keys())
        first = min(text.find(ch) for ch in unknown)
        line = text.count("\n", 0, first) + 1
        raise ValueError(f"{source}: line {line}: {data.listing(unknown)} not in the training vocabulary of "
                         f"{vocab.size} characters; train on text that contains them") from None


def eval_streams(n_tokens, batch):
    """The streams validation reads a text of n_tokens as: `batch`, or fewer for a short text (each
    stream needs an input and its target)."""
    return max(1, min(batch, n_tokens // 2))


def scored(n_tokens, batch):
    """How many tokens validation scores in a text of n_tokens (data.batchify's streams, as
    word_language_model reads its validation text): each stream's first token has no prediction
    and the remainder of n_tokens / streams is trimmed."""
    streams = eval_streams(n_tokens, batch)
    return (n_tokens // streams - 1) * streams


EVAL_ROWS = 2048     # positions per forward pass of an evaluation, at least: the readout's products stay large


def lm_loss(params, arch, ids, batch, window, starts=None, ranks=None):
    """Validation: mean cross-entropy (nats per token) of the model on ids, read as `batch` streams
    (data.batchify, the remainder trimmed) with the state carried across windows (and reset at
    document starts), as in training. Returns (loss, tokens scored). ranks
    (bptt.training.ranks, every rank calling): each rank scores its share of the streams and the
    sums are added up."""
    batch = eval_streams(len(ids), batch)
    stream = data.batchify(ids, batch)
    starts = None if starts is None else data.batchify(starts, batch).astype(bool)
    return streams_loss(params, arch, stream, starts, window, ranks)


def streams_loss(params, arch, stream, starts, window, ranks=None, tail=None):
    """Mean cross-entropy over the columns of stream (N, S), each read top to bottom (x =
    stream[:-1], y = stream[1:]) with the state carried across windows of at least `window` steps
    (longer when few columns would make the forward passes small: EVAL_ROWS; the windows' length
    changes no number but round-off). starts (N, S) bool: reset the state where a document starts.
    tail: (stream (2, r), starts (2, r) or None), one more step of the first r columns, from their
    final state (one process only). Returns (loss, tokens scored)."""
    ranks = ranks or Ranks()
    window = max(window, -(-EVAL_ROWS // stream.shape[1]))
    rows = ranks.rows(stream.shape[1])
    stream = stream[:, rows]
    starts = None if starts is None else starts[:, rows]
    total, count, state = 0.0, 0, None
    if stream.shape[1]:                                      # fewer streams than ranks leave a rank none
        with engine.evaluating(params, arch):                # the weights packed once, not per window
            for i, (x, y) in enumerate(data.windows(stream, window)):
                reset = None if starts is None else starts[i * window:i * window + len(x)]
                s = engine.score(params, arch, x, y, state, reset=reset)
                total, count, state = total + s.total, count + s.count, s.state
            if tail is not None and tail[0].shape[1]:
                x, y, reset = tail[0][:1], tail[0][1:], None if tail[1] is None else tail[1][:1]
                s = engine.score(params, arch, x, y, rows_of(state, slice(0, x.shape[1])), reset=reset)
                total, count = total + s.total, count + s.count
    total, count = ranks.sum(np.array([total, count], np.float64))
    return float(total / count), int(count)


def lm_evaluate(params, arch, ids, cfg, starts=None, ranks=None):
    """Loss, perplexity (and bits/char) of a language model on ids, read as in validation."""
    loss, count = lm_loss(params, arch, ids, cfg.eval_batch, cfg.window, starts, ranks)
    return lm_metrics(loss, cfg.level) | {"tokens": count}


def text_columns(n_tokens, streams):
    """Where each of `streams` columns reads a text of n_tokens so that every token after the first
    is predicted exactly once: column j reads tokens o_j .. o_j + m (its targets o_j + 1 .. o_j + m),
    the first r columns one more, with m, r = divmod(n_tokens - 1, streams). Consecutive columns
    share one token, the last input of one being the first of the next:

        text     a b c d e f g h i j k          n = 11, 10 targets in 3 columns: m = 3, r = 1
        column 0 a b c d|e                      targets b c d, then e from the tail
        column 1         e f g h                targets f g h
        column 2               h i j k          targets i j k

    Returns (index (m + 1, S), tail index (2, r)) into the text."""
    m, r = divmod(n_tokens - 1, streams)
    o = np.arange(streams) * m + np.minimum(np.arange(streams), r)             # (S,) each column's first token
    return o[None, :] + np.arange(m + 1)[:, None], o[None, :r] + m + np.arange(2)[:, None]


def text_score(params, arch, ids, streams=1, window=EVAL_ROWS, starts=None):
    """Mean cross-entropy of a language model on a text's ids, every token after the first
    predicted: as one stream with the state carried through the whole text (streams=1, as test
    sets are scored in the literature: AWD-LSTM evaluates with batch 1), or cut into `streams`
    parallel columns (text_columns) for speed, each starting from a zero state, which leaves the
    first tokens of each column less context. starts (N,) bool: reset the state at document
    starts. Returns (loss, tokens scored = len(ids) - 1)."""
    n = len(ids)
    if n < 2:
        raise ValueError(f"ids: {n} token(s); a score needs at least 2 (one predicts the next)")
    streams = min(checks.positive_int("streams", streams), n - 1)
    index, tail = text_columns(n, streams)
    at = (lambda i: None) if starts is None else (lambda i: np.asarray(starts, bool)[i])
    return streams_loss(params, arch, ids[index], at(index), window, tail=(ids[tail], at(tail)))


def score_text(params, arch, text, cfg, vocab, source, streams=1):
    """A language model's metrics on a text (bptt eval and bptt.load(...).score): the text read as
    in training (cfg.level, documents split at cfg.separator) and scored by text_score. source
    names the text in errors (e.g. "--data FILE"). Returns lm_metrics with the tokens scored and
    the streams read."""
    tokens, starts = documents(text, cfg.level, cfg.separator)
    ids = encode_text(vocab, tokens, text, source)
    if ids.size < 2:
        raise ValueError(f"{source}: {ids.size} token(s); a score needs at least 2 (one predicts the next)")
    loss, count = text_score(params, arch, ids, streams, cfg.window, starts)
    return lm_metrics(loss, cfg.level) | {"tokens": count, "streams": min(streams, count)}


def text_tokens(text, level):
    """The tokens of one labelled text: its characters, or its words (no <eos>: one example, one line)."""
    return list(text) if level == "char" else text.split()


def classify_metrics(params, arch, seqs, y, batch, ranks=None):
    """Mean cross-entropy and accuracy over id sequences seqs with labels y, `batch` at a time
    (ranks, every rank calling: each scores every N-th batch and the sums are added up)."""
    ranks = ranks or Ranks()
    total, correct = 0.0, 0
    with engine.evaluating(params, arch):
        for i in range(0, len(seqs), batch)[ranks.rank::ranks.size]:
            x, lengths = data.pad_batch(seqs[i:i + batch])
            s = engine.score(params, arch, x, y[i:i + batch], target="last", lengths=lengths)
            total, correct = total + s.total, correct + s.correct
    total, correct = ranks.sum(np.array([total, correct], np.float64))
    return {"loss": float(total / len(seqs)), "accuracy": float(correct / len(seqs)), "examples": len(seqs)}


def documents(text, level, separator):
    """Tokens of text and a mask (N,) of the tokens that start a document (None: no separator)."""
    if separator is None:
        return data.tokenize(text, level), None
    tokens, starts = [], []
    for doc in text.split(separator):
        doc_tokens = data.tokenize(doc, level) if doc else []
        tokens += doc_tokens
        starts += [True] + [False] * (len(doc_tokens) - 1) if doc_tokens else []
    return tokens, np.array(starts, dtype=bool)


def draw_length(rng, k1):
    """One window length of AWD-LSTM's variable-length BPTT (Merity et al. 2017, 4.1), its main.py's
    two lines with k1 = args.bptt (--window):

        bptt    = k1 if u < 0.95 else k1 / 2        u ~ U[0, 1)      one window in 20 about halved
        seq_len = max(5, int(n))                    n ~ N(bptt, 5²)  int() truncates toward zero

    rng: np.random.Generator, u drawn before n (as main.py draws them)."""
    bptt = k1 if rng.random() < 0.95 else k1 / 2.0
    return max(5, int(rng.normal(bptt, 5)))


def variable_windows(N, k1, rng):
    """Windows of drawn lengths (draw_length) tiling a stream of N steps (inputs 0..N-2): each starts
    where the previous stopped, the last is cut at the stream's end (main.py's get_batch), so every
    (input, target) pair is in exactly one. main.py's loop also stops one step early (`i < N - 1 - 1`),
    dropping a last window of one step; here that step is trained on. Returns (windows, the drawn
    lengths: the last may exceed its window's)."""
    ws, drawn, p = [], [], 0
    while p < N - 1:
        length = draw_length(rng, k1)
        ws.append(tbptt.Window(p, p, min(p + length, N - 1)))
        drawn.append(length)
        p += length
    return ws, drawn


class LanguageModel:
    carries_state = True

    def __init__(self, cfg, vocab=None):
        text = data.read_text(cfg.data) if cfg.data else shipped_text()
        if cfg.valid:
            train_text, valid_text = text, data.read_text(cfg.valid)
        else:
            train_text, valid_text = data.split_text(text, cfg.valid_fraction, cfg.level)
        train_tokens, train_starts = documents(train_text, cfg.level, cfg.separator)
        valid_tokens, self.valid_starts = documents(valid_text, cfg.level, cfg.separator)
        self.cfg = cfg
        if not train_tokens:
            raise ValueError(f"--data: {cfg.data or 'the text'} has no tokens to train on")
        self.vocab = vocab or data.build_vocab(train_tokens, cfg.level, cfg.max_vocab,
                                               by_frequency=cfg.adaptive_softmax is not None)
        self.train = encode_text(self.vocab, train_tokens, train_text, f"--data {cfg.data}")   # (N,)
        valid_source = f"--valid {cfg.valid}" if cfg.valid else f"--data {cfg.data} (its validation part)"
        self.valid = encode_text(self.vocab, valid_tokens, valid_text, valid_source)
        if self.valid.size < 2:
            raise ValueError(f"{valid_source}: {self.valid.size} token(s); validation needs at least 2 (one input "
                             f"and its target)")
        if self.train.size < 2 * cfg.batch:
            raise ValueError(f"--batch: {cfg.batch} streams need at least {2 * cfg.batch} training tokens (2 per "
                             f"stream), and --data {cfg.data or ''} has {self.train.size}; use a smaller --batch or "
                             f"more data")
        self.stream = data.batchify(self.train, cfg.batch)                # (N / B, B)
        self.starts = None if train_starts is None else data.batchify(train_starts, cfg.batch).astype(bool)
        self.windows = tbptt.windows(len(self.stream), cfg.window, cfg.k2)
        self.drawn = (None, self.windows, None)             # (epoch, its windows, their drawn lengths)
        self.input_size = self.output_size = self.vocab.size
        self.steps_per_epoch = self.epoch_steps(0)            # --variable-window: the first epoch's

    def epoch_windows(self, epoch):
        """(windows, drawn lengths or None) of an epoch. --variable-window: drawn (variable_windows)
        from a generator seeded by (--seed, 6, epoch), so every rank draws the same, and a resumed run
        draws them again from its checkpoint's epoch; the window index there is the position in the
        stream. Else the fixed TBPTT(k1, k2) windows, the same every epoch."""
        if not self.cfg.variable_window:
            return self.windows, None
        if self.drawn[0] != epoch:
            rng = np.random.default_rng([self.cfg.seed, 6, epoch])
            self.drawn = (epoch, *variable_windows(len(self.stream), self.cfg.window, rng))
        return self.drawn[1:]

    def epoch_steps(self, epoch):
        return len(self.epoch_windows(epoch)[0])

    def window_length(self, index, epoch):
        """--variable-window: the length drawn for window `index` of `epoch` (its lr is scaled by it)."""
        return self.epoch_windows(epoch)[1][index]

    def batch(self, index, epoch):
        w = self.epoch_windows(epoch)[0][index]
        x, y, loss_mask, reset = tbptt.window_batch(self.stream, w, self.starts)
        return dict(x=x, y=y, loss_mask=loss_mask, reset=reset), (w.stop - w.loss_from) * self.cfg.batch

    def next_state(self, params, arch, index, state, state_T, rows=slice(None), epoch=0):
        """The state carried into window index + 1 of `epoch` (None: the epoch ends, start from
        zeros), of the streams `rows` (a rank's, in data-parallel training; all by default)."""
        windows = self.epoch_windows(epoch)[0]
        if index + 1 == len(windows):
            return None
        starts = None if self.starts is None else self.starts[:, rows]
        return tbptt.next_start_state(params, arch, self.stream[:, rows], windows[index], windows[index + 1], state,
                                      state_T, starts)

    def evaluate(self, params, arch, ranks=None):
        return lm_evaluate(params, arch, self.valid, self.cfg, self.valid_starts, ranks)

    def baselines(self):
        """Cross-entropy of the uniform and the unigram (train frequencies) models on the validation text."""
        unigram = data.unigram_logprobs(self.train, self.vocab.size)
        return {"uniform": math.log(self.vocab.size),                  # abs: -0.0 with a one-token vocabulary
                "unigram": abs(float(unigram[self.valid].mean()))}

    def describe(self):
        steps = len(self.stream) - 1                     # each stream's inputs: no window reaches further
        return {"train_tokens": self.train.size, "valid_tokens": scored(self.valid.size, self.cfg.eval_batch),
                "vocab": self.vocab.size, "batches_per_epoch": self.steps_per_epoch, "stream_steps": steps,
                "tbptt": (min(self.cfg.window, steps), min(self.cfg.k2, steps))}


class Classification:
    carries_state = False

    def __init__(self, cfg, vocab=None, labels=None):
        texts, names, self.header = data.read_labeled(cfg.data, cfg.level, with_header=True)
        if cfg.valid:
            valid_texts, valid_names = data.read_labeled(cfg.valid, cfg.level)
        else:
            cut = len(texts) - max(1, round(cfg.valid_fraction * len(texts)))
            if cut < 1:
                raise ValueError(f"--data: {cfg.data} has {len(texts)} example(s), too few to hold out a "
                                 f"validation part; give --valid")
            texts, valid_texts, names, valid_names = texts[:cut], texts[cut:], names[:cut], names[cut:]
        tokens = [text_tokens(t, cfg.level) for t in texts]
        self.cfg = cfg
        self.vocab = vocab or data.build_vocab([tok for seq in tokens for tok in seq], cfg.level, cfg.max_vocab)
        self.labels = labels or data.build_labels(names)
        if self.labels.size < 2:
            raise ValueError(f"--data: {cfg.data} has a single label ({self.labels.labels[0]!r}) in its training "
                             f"part; a classifier needs examples of at least two")
        unseen = sorted(set(valid_names) - set(self.labels.labels))
        if unseen:
            raise ValueError(f"--valid: {cfg.valid or cfg.data} has labels that training never sees: "
                             f"{data.listing(unseen)}")
        self.train = [self.vocab.encode(seq) for seq in tokens]
        self.train_y = self.labels.encode(names)
        self.valid = [self.vocab.encode(text_tokens(t, cfg.level)) for t in valid_texts]
        self.valid_y = self.labels.encode(valid_names)
        self.input_size, self.output_size = self.vocab.size, self.labels.size
        self.steps_per_epoch = math.ceil(len(self.train) / cfg.batch)

    def epoch_steps(self, epoch):
        return self.steps_per_epoch

    def order(self, epoch):
        return np.random.default_rng([self.cfg.seed, 3, epoch]).permutation(len(self.train))

    def batch(self, index, epoch):
        chosen = self.order(epoch)[index * self.cfg.batch:(index + 1) * self.cfg.batch]
        x, lengths = data.pad_batch([self.train[i] for i in chosen])
        return dict(x=x, y=self.train_y[chosen], target="last", lengths=lengths), int(lengths.sum())

    def evaluate(self, params, arch, ranks=None):
        return classify_metrics(params, arch, self.valid, self.valid_y, self.cfg.eval_batch, ranks)

    def baselines(self):
        """The uniform guess, and the class prior of the training labels (its accuracy: the majority class)."""
        prior = np.log((np.bincount(self.train_y, minlength=self.labels.size) + 1.0) /
                       (len(self.train_y) + self.labels.size))
        return {"uniform": math.log(self.labels.size), "prior": float(-prior[self.valid_y].mean()),
                "majority_accuracy": float(np.mean(self.valid_y == prior.argmax()))}

    def describe(self):
        return {"train_examples": len(self.train), "valid_examples": len(self.valid), "vocab": self.vocab.size,
                "labels": self.labels.size, "batches_per_epoch": self.steps_per_epoch, "header": self.header}


class Synthetic:
    """A long-range problem (problems.py): every batch freshly generated from a seed that depends
    only on (seed, epoch, index), so a resumed run sees the same batches; a fixed test set."""

    carries_state = False
    steps_per_epoch = 1000            # nominal: the data never repeats

    def __init__(self, cfg):
        self.cfg, self.problem = cfg, problems.get(cfg.task)
        if self.problem.real_inputs and cfg.embedding:
            raise ValueError(f"--embedding: the {cfg.task} problem's inputs are real numbers, which an embedding "
                             f"cannot look up; give --embedding 0")
        self.input_size, self.output_size = self.problem.input_size, self.problem.output_size
        self.test = self.problem.generate(cfg.length, cfg.test_size, np.random.default_rng([cfg.seed, 5]))

    def epoch_steps(self, epoch):
        return self.steps_per_epoch

    def batch(self, index, epoch):
        rng = np.random.default_rng([self.cfg.seed, 4, epoch, index])
        x, y = self.problem.generate(self.cfg.length, self.cfg.batch, rng)
        return dict(x=x, y=y, target=self.problem.target, loss=self.problem.loss), x.shape[0] * x.shape[1]

    def evaluate(self, params, arch, ranks=None):
        """The test set's metrics; with ranks every rank computes them whole (it is small)."""
        x, y = self.test
        p = self.problem
        if p.target == "last":                        # what the readout reads at the end (engine.last_step)
            z = engine.last_logits(params, arch, x).astype(np.float64)[None]
        else:
            z = engine.logits(params, arch, x)[0].astype(np.float64)
        if p.loss == "mse":
            m = {"loss": float(((z[-1] - y) ** 2).mean())}
        elif p.target == "last":
            logp = log_softmax(z[-1])
            m = {"loss": float(-logp[np.arange(len(y)), y].mean()), "accuracy": float((logp.argmax(1) == y).mean())}
        else:
            logp = log_softmax(z)
            m = {"loss": float(-np.take_along_axis(logp, y[..., None], axis=-1).mean()),
                 "accuracy": float((logp[-10:].argmax(-1) == y[-10:]).mean())}      # the recalled symbols
        return m | {"solved": bool(p.solved(m)), "examples": len(x[0])}

    def baselines(self):
        return {"trivial": float(self.problem.baseline(self.cfg.length))}

    def describe(self):
        return {"problem": self.cfg.task, "length": self.cfg.length, "description": self.problem.description,
                "batches_per_epoch": self.steps_per_epoch}


def make(cfg, vocab=None, labels=None):
    if cfg.task == "classify":
        return Classification(cfg, vocab, labels)
    if cfg.task in problems.PROBLEMS:
        return Synthetic(cfg)
    return LanguageModel(cfg, vocab)
