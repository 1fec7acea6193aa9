"""Text in, token ids out: reading corpora, vocabularies, batching into streams, labeled examples.

Formats
-------
Corpus (language models)   a UTF-8 text file; "\\r\\n" is read as "\\n".
    level "char"   every character is a token, newlines included.
    level "word"   PTB convention (pytorch/examples word_language_model): each line is
                   line.split() + ["<eos>"]; words seen only outside the training text map to "<unk>".

Labeled examples (sequence classification, many-to-one)
    .tsv / .txt    one example per line:  text<TAB>label   (exactly one tab)
    .csv           one example per record: text,label      (csv quoting, so "a, b",pos works)
    No header row; blank lines are skipped; the label is stripped of surrounding spaces.

Vocabulary JSON   {"level": "char" | "word", "tokens": [sorted, unique tokens]}; a token's id is its
                  position. Word vocabularies always hold "<eos>" and "<unk>". For the adaptive
                  softmax, the most frequent first and "counts": [each token's count] beside them.
Label set JSON    {"labels": [sorted, unique labels]}; a label's id is its position.

Shapes: N tokens in a corpus, B parallel streams (batch), T time steps in a window. Everything that
goes to the network is time-major: (T, B) int64 ids.
"""

import csv
import io
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from numbers import Real
from pathlib import Path

import numpy as np

from ..checks import describe, one_of, positive_int

LEVELS = ("char", "word")
EOS, UNK = "<eos>", "<unk>"
DELIMITERS = {".tsv": "\t", ".txt": "\t", ".csv": ","}
SHOWN = 20  # unknown characters or labels listed in an error message
BOM = "\ufeff"


def opened(path, expected="a text file"):
    """The file at path opened for reading bytes, or a ValueError naming it: not found, a directory
    (expected: what it should have been), unreadable, or a name holding a NUL."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, expected {expected}") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read the file ({e.strerror})") from None
    except ValueError:                                              # a NUL in the name
        raise ValueError(f"{str(path)!r}: not a file name (it holds a NUL character)") from None


def _read(path):
    """The decoded text of a file without its byte-order mark, with ValueErrors that name the file
    (and line, for bad bytes)."""
    with opened(path) as f:
        try:
            data = f.read()
        except OSError as e:
            raise ValueError(f"{path}: cannot read the file ({e.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{path}: line {line}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); "
                         "save the file as UTF-8") from None
    text = text.removeprefix(BOM)                 # a byte-order mark is no token (Windows editors write one)
    if not text:
        raise ValueError(f"{path}: the file is empty")
    return text.replace("\r\n", "\n")


def read_text(path):
    """The contents of the UTF-8 file at path, with "\\r\\n" normalised to "\\n"."""
    return _read(path)


def tokenize(text, level):
    """text -> list of tokens: its characters ("char"), or words with "<eos>" ending each line ("word")."""
    one_of("level", level, LEVELS)
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    if level == "char":
        return list(text)
    lines = text.split("\n")
    if lines[-1] == "":  # a final newline ends the last line; it does not start another
        lines.pop()
    return [token for line in lines for token in line.split() + [EOS]]


class Detokenizer:
    """Text of tokens as they come: characters as they are; words separated by spaces, "<eos>" a line
    end. `after` is the text already shown (the prime), so the first word is set apart from it."""

    def __init__(self, level, after=""):
        self.level = level
        self.line_start = not after or after.endswith("\n")

    def next(self, token):
        if self.level == "char":
            return token
        if token == "<eos>":
            self.line_start = True
            return "\n"
        text = token if self.line_start else " " + token
        self.line_start = False
        return text


def listing(items):
    """Up to SHOWN items as a readable list, and how many more."""
    shown = ", ".join(map(repr, items[:SHOWN]))
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _ids(name, ids, n):
    """ids: 1-D ints in [0, n) -> int64 array (N,)."""
    a = np.asarray(ids)
    if a.size == 0 and a.ndim == 1:
        return a.astype(np.int64)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected a 1-D array of int ids, got {describe(a)}")
    if a.min() < 0 or a.max() >= n:
        raise ValueError(f"{name}: expected ids in [0, {n}), got min {a.min()} and max {a.max()}")
    return a.astype(np.int64, copy=False)


def _sorted_unique(what, items, ordered=True):
    """items: strings, at least one, each once; ordered: in sorted order too (a label set)."""
    if not items:
        raise ValueError(f"{what}: expected at least one entry, got none")
    if not all(isinstance(s, str) for s in items):
        bad = next(s for s in items if not isinstance(s, str))
        raise ValueError(f"{what}: expected strings, got {bad!r} ({type(bad).__name__})")
    if not ordered:
        seen = {}
        for i, s in enumerate(items):
            if s in seen:
                raise ValueError(f"{what}: expected unique entries; {s!r} appears twice (entries {seen[s]} and {i})")
            seen[s] = i
        return
    for i, (a, b) in enumerate(zip(items, items[1:])):
        if not a < b:
            problem = "appears twice" if a == b else f"comes before {b!r}"
            raise ValueError(f"{what}: expected sorted, unique entries; {a!r} {problem} (entries {i} and {i + 1})")


class Numbered:
    """What a vocabulary and a label set share: a tuple of distinct names (each subclass says which
    of its fields: `names`), each numbered by its place: size, len() and index (name -> id)."""

    @property
    def size(self):
        return len(self.names)

    def __len__(self):
        return self.size

    @cached_property
    def index(self):
        """name -> id."""
        return {name: i for i, name in enumerate(self.names)}


@dataclass(frozen=True)
class Vocab(Numbered):
    """The training tokens in sorted order (or the most frequent first, for the adaptive softmax:
    build_vocab); a token's id is its position in `tokens`."""

    tokens: tuple[str, ...]
    level: str
    counts: tuple[int, ...] | None = None     # by frequency: each token's count in the training text

    @property
    def names(self):
        return self.tokens

    def __post_init__(self):
        object.__setattr__(self, "tokens", tuple(self.tokens))
        one_of("level", self.level, LEVELS)
        _sorted_unique("vocab", self.tokens, ordered=self.counts is None)
        if self.counts is not None:
            object.__setattr__(self, "counts", tuple(self.counts))
            _by_frequency(self.tokens, self.counts)
        if self.level == "char":
            bad = [t for t in self.tokens if len(t) != 1]
            if bad:
                raise ValueError(f"vocab: expected single characters for level='char', got {listing(bad)}")
        else:
            missing = [t for t in (EOS, UNK) if t not in self.tokens]
            if missing:
                raise ValueError(f"vocab: a word vocabulary must hold '<eos>' and '<unk>'; missing {listing(missing)}")
            bad = [t for t in self.tokens if t.split() != [t]]
            if bad:
                raise ValueError(f"vocab: expected words without whitespace for level='word', got {listing(bad)}")

    def encode(self, tokens):
        """tokens (list of str, or a str at char level) -> ids (N,) int64. Unknown words become "<unk>";
        unknown characters are an error, since a char vocabulary has no <unk>."""
        index = self.index
        if self.level == "word":
            unk = index[UNK]
            return np.array([index.get(t, unk) for t in tokens], dtype=np.int64)
        unknown = sorted(set(tokens) - index.keys())
        if unknown:
            raise ValueError(f"text: characters not in the training vocabulary of {self.size}: {listing(unknown)}; "
                             "build the vocabulary from text that contains them")
        return np.array([index[t] for t in tokens], dtype=np.int64)

    def decode(self, ids):
        """ids (N,) ints in [0, size) -> list of N tokens."""
        return [self.tokens[i] for i in _ids("ids", ids, self.size)]

    def to_json(self):
        counts = {} if self.counts is None else {"counts": list(self.counts)}
        return {"level": self.level, "tokens": list(self.tokens)} | counts

    @classmethod
    def from_json(cls, d):
        """The inverse of to_json; ValueError if d is not a vocabulary that to_json could have written."""
        if not isinstance(d, dict) or set(d) - {"counts"} != {"level", "tokens"}:
            got = f"keys {sorted(d)}" if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"vocab: expected a dict with keys 'level' and 'tokens', got {got}")
        if not isinstance(d["tokens"], list):
            raise ValueError(f"vocab: expected 'tokens' to be a list of strings, got {type(d['tokens']).__name__}")
        if d["level"] not in LEVELS:
            raise ValueError(f"vocab: expected 'level' to be one of 'char', 'word'; got {d['level']!r}")
        return cls(tuple(d["tokens"]), d["level"], None if d.get("counts") is None else tuple(d["counts"]))


def _by_frequency(tokens, counts):
    """A vocabulary numbered most frequent first (the adaptive softmax's): counts (ints, one per token)
    non-increasing, equal counts in sorted order; else a ValueError naming the entries out of order."""
    if len(counts) != len(tokens) or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
                                             for c in counts):
        raise ValueError(f"vocab: expected 'counts' to be {len(tokens)} ints >= 0, one per token")
    for i in range(len(tokens) - 1):
        if (-counts[i], tokens[i]) > (-counts[i + 1], tokens[i + 1]):
            raise ValueError(f"vocab: expected the most frequent first (ties sorted); {tokens[i]!r} ({counts[i]}) "
                             f"comes before {tokens[i + 1]!r} ({counts[i + 1]}) (entries {i} and {i + 1})")


def build_vocab(tokens, level, max_size=None, by_frequency=False):
    """The vocabulary of the training tokens, sorted (by_frequency: the most frequent first, ties
    alphabetically, as the adaptive softmax's shortlist and clusters need them).

    Word level: "<eos>" and "<unk>" are always in it; with max_size, only the max_size - 2 most frequent
    other words are kept (ties broken alphabetically), so size <= max_size. Char level keeps every character.
    """
    one_of("level", level, LEVELS)
    counts = Counter(tokens)
    if not counts:
        raise ValueError("tokens: expected at least one token, got none")
    if level == "char":
        if max_size is not None:
            raise ValueError(f"max_size: applies to level='word' only; got {max_size!r} with level='char'")
        if by_frequency:
            tokens = sorted(counts, key=lambda c: (-counts[c], c))
            return Vocab(tuple(tokens), level, tuple(counts[c] for c in tokens))
        return Vocab(tuple(sorted(counts)), level)
    words = sorted(set(counts) - {EOS, UNK}, key=lambda w: (-counts[w], w))
    if max_size is not None:
        words = words[:positive_int("max_size", max_size, minimum=2) - 2]
    kept = [*words, EOS, UNK]
    if by_frequency:                       # <unk> counts the words left out as well as its own occurrences
        count = counts | {UNK: counts[UNK] + sum(counts[w] for w in set(counts) - set(kept))}
        kept = sorted(kept, key=lambda w: (-count[w], w))
        return Vocab(tuple(kept), level, tuple(count[w] for w in kept))
    return Vocab(tuple(sorted(kept)), level)


def unigram_logprobs(ids, vocab_size):
    """log p(token) (V,) from counts in ids with add-one smoothing: log((count + 1) / (N + V))."""
    V = positive_int("vocab_size", vocab_size)
    counts = np.bincount(_ids("ids", ids, V), minlength=V) + 1.0  # (V,)
    return np.log(counts) - np.log(counts.sum())


def split_text(text, valid_fraction=0.1, level="char"):
    """(train_text, valid_text): the last valid_fraction of text is held out for validation.

    "char" cuts at a character; "word" moves the cut forward to the next line start, so no line is split.
    """
    one_of("level", level, LEVELS)
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    if isinstance(valid_fraction, bool) or not isinstance(valid_fraction, Real) or not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction: expected a number in (0, 1), got {valid_fraction!r}")
    cut = len(text) - round(len(text) * valid_fraction)
    if level == "word" and 0 < cut < len(text) and text[cut - 1] != "\n":
        newline = text.find("\n", cut)
        cut = len(text) if newline < 0 else newline + 1
    train, valid = text[:cut], text[cut:]
    for name, part in (("training", train), ("validation", valid)):
        if not (part if level == "char" else part.split()):
            unit = "characters" if level == "char" else "words"
            lines = text.count("\n") + (not text.endswith("\n"))
            size = f"{len(text)} characters" + (f", {lines} line(s)" if level == "word" else "")
            raise ValueError(f"text: too small to split with valid_fraction={valid_fraction} ({size}): the {name} "
                             f"part would hold no {unit}; use more text or a separate validation file")
    return train, valid


def batchify(ids, batch_size):
    """ids (N,) -> (N // B, B): B parallel streams, time-major, as pytorch/examples word_language_model.

    The corpus is trimmed to a multiple of B and cut into B contiguous chunks; chunk b is column b.
    With the alphabet as the corpus and B = 4 ("y" and "z" are trimmed):

        a b c d e f g h i j k l m n o p q r s t u v w x y z
                                  |
                                  v
        +---------+
        | a g m s |   row t is the t-th token of every stream;
        | b h n t |   column b is one stream, read top to bottom.
        | c i o u |   Streams are independent: the network never
        | d j p v |   learns that "g" follows "f".
        | e k q w |
        | f l r x |
        +---------+
    """
    B = positive_int("batch_size", batch_size)
    ids = np.asarray(ids)
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iub"):
        raise ValueError(f"ids: expected a 1-D array of int token ids (or a bool mask), got {describe(ids)}")
    n = len(ids) // B
    if n < 2:
        raise ValueError(f"ids: the token stream has {len(ids)} tokens, fewer than 2 per stream for batch_size {B} "
                         "(one step of input and its target); use a smaller --batch or more data")
    return np.ascontiguousarray(ids[:n * B].reshape(B, n).T, dtype=np.int64)  # (n, B)


def num_windows(N, window):
    """How many windows windows() yields over a stream of N steps: ceil((N - 1) / window)."""
    w = positive_int("window", window)
    return -(-max(N - 1, 0) // w)


def windows(stream, window):
    """Consecutive (x, y) windows over a time-major stream (N, B); y is x shifted one step ahead.

    With N = 8 and window = 3, one column shown:

        stream   a b c d e f g h
        x        a b c|d e f|g        windows start at 0, w, 2w, ... while a target remains;
        y        b c d|e f g|h        the last may be shorter.

    Every (input, target) pair (stream[t], stream[t + 1]) is in exactly one window, so carrying the
    hidden state from one window to the next continues each stream where it stopped.
    Yields x (T, B) and y (T, B) with T <= window; both are views of stream.
    """
    w = positive_int("window", window)
    stream = np.asarray(stream)
    if stream.ndim != 2:
        raise ValueError(f"stream: expected time-major ids of shape (N, B), got {describe(stream)}")
    return _windows(stream, w)


def _windows(stream, w):
    N = stream.shape[0]
    for i in range(0, N - 1, w):
        end = min(i + w, N - 1)
        yield stream[i:end], stream[i + 1:end + 1]  # (T, B), (T, B)


@dataclass(frozen=True)
class LabelSet(Numbered):
    """The training labels in sorted order; a label's id is its position in `labels`."""

    labels: tuple[str, ...]

    @property
    def names(self):
        return self.labels

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(self.labels))
        _sorted_unique("label set", self.labels)
        if any(not s.strip() for s in self.labels):
            raise ValueError("label set: expected non-empty labels, got an empty one")

    def encode(self, labels):
        """labels (list of str) -> ids (N,) int64; a label not seen in training is an error."""
        unknown = sorted(set(labels) - self.index.keys())
        if unknown:
            raise ValueError(f"labels: not in the training label set of {self.size} ({listing(list(self.labels))}): "
                             f"{listing(unknown)}")
        return np.array([self.index[s] for s in labels], dtype=np.int64)

    def decode(self, ids):
        """ids (N,) ints in [0, size) -> list of N labels."""
        return [self.labels[i] for i in _ids("ids", ids, self.size)]

    def to_json(self):
        return {"labels": list(self.labels)}

    @classmethod
    def from_json(cls, d):
        """The inverse of to_json; ValueError if d is not a label set that to_json could have written."""
        if not isinstance(d, dict) or set(d) != {"labels"} or not isinstance(d["labels"], list):
            got = f"keys {sorted(d)}" if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"label set: expected a dict {{'labels': [str, ...]}}, got {got}")
        return cls(tuple(d["labels"]))


def build_labels(labels):
    """The label set of the training labels, sorted."""
    return LabelSet(tuple(sorted(set(labels))))


def _rows(path, text, delimiter):
    """(first line number, fields) of each record; csv quoting for commas, a plain split for tabs."""
    if delimiter == "\t":
        for n, line in enumerate(text.split("\n"), start=1):
            yield n, line.split("\t")
        return
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for fields in reader:
            yield start, fields
            start = reader.line_num + 1
    except csv.Error as e:
        raise ValueError(f"{path}: line {start}: {e}") from None


HEADER_LABELS = {"label", "labels", "class", "category", "target", "sentiment", "y", "tag"}
HEADER_TEXTS = {"text", "texts", "sentence", "review", "document", "content", "input", "x", "tweet"}


def read_labeled(path, level, with_header=False, known=None):
    """texts, labels: the examples of a .tsv/.txt (text<TAB>label) or .csv (text,label) file.

    A first line that reads as a header (a label found on no other line, and a column name such as
    "text" or "label") is skipped; with_header=True also returns it (or None) as a third value.
    known: a LabelSet (a trained classifier's); a label outside it is an error naming its line."""
    texts, labels, header = _read_labeled(path, level, known)
    return (texts, labels, header) if with_header else (texts, labels)


def _read_labeled(path, level, known=None):
    one_of("level", level, LEVELS)
    suffix = Path(path).suffix.lower()
    if suffix not in DELIMITERS:
        raise ValueError(f"{path}: expected a .tsv, .txt (text<TAB>label) or .csv (text,label) file, "
                         f"got {'extension ' + repr(suffix) if suffix else 'no extension'}")
    delimiter = DELIMITERS[suffix]
    form = "text<TAB>label" if delimiter == "\t" else "text,label"
    text = _read(path)
    texts, labels, lines = [], [], []
    for n, fields in _rows(path, text, delimiter):
        if not any(f.strip() for f in fields):
            continue  # blank line
        if len(fields) != 2:
            if delimiter == "\t":
                found = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
            else:
                found = f"{len(fields)} field{'s' * (len(fields) != 1)}; quote text that contains commas"
            raise ValueError(f"{path}: line {n}: expected {form}, found {found}")
        example, label = fields[0], fields[1].strip()
        if not (example if level == "char" else example.split()):
            raise ValueError(f"{path}: line {n}: the text is empty")
        if not label:
            raise ValueError(f"{path}: line {n}: the label is empty")
        texts.append(example)
        labels.append(label)
        lines.append(n)
    header = None
    if texts and labels.count(labels[0]) == 1 and (labels[0].lower() in HEADER_LABELS or
                                                   texts[0].strip().lower() in HEADER_TEXTS):
        header = (texts[0].strip(), labels[0])
        texts, labels, lines = texts[1:], labels[1:], lines[1:]
    if not texts:
        raise ValueError(f"{path}: no examples (only blank lines{' and a header' if header else ''}); "
                         f"expected {form} lines")
    unseen = [] if known is None else [(n, label) for n, label in zip(lines, labels) if label not in known.index]
    if unseen:
        n, label = unseen[0]
        raise ValueError(f"{path}: line {n}: label {label!r} is not one the model was trained on "
                         f"({listing(list(known.labels))})")
    return texts, labels, header


def pad_batch(seqs, pad_id=0):
    """Time-major padding of B id sequences: x (T, B) int64 with T the longest length, lengths (B,) int64.

    x[t, b] = seqs[b][t] for t < lengths[b], pad_id after; pass lengths to the network so padding is ignored.
    """
    if not isinstance(seqs, list | tuple) or not seqs:
        raise ValueError(f"seqs: expected a non-empty list of 1-D id arrays, got {type(seqs).__name__} of length "
                         f"{len(seqs) if hasattr(seqs, '__len__') else '?'}")
    arrays = [np.asarray(s) for s in seqs]
    for b, a in enumerate(arrays):
        if a.ndim == 1 and a.size == 0:
            raise ValueError(f"seqs: sequence {b} is empty; every example needs at least one token")
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise ValueError(f"seqs: expected 1-D int id arrays, got {describe(a)} at position {b}")
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)  # (B,)
    x = np.full((lengths.max(), len(arrays)), pad_id, dtype=np.int64)  # (T, B)
    for b, a in enumerate(arrays):
        x[:len(a), b] = a
    return x, lengths
