"""Pretrained word vectors (--embedding-init): a GloVe or word2vec text file read into rows of the
embedding E (V, D).

    GloVe           word v1 v2 ... vD            one vector per line, values separated by spaces
    word2vec text   COUNT DIM                    a first line of two integers, then lines as GloVe's

    read(path, tokens, dimension, dtype) -> Vectors: rows (V, D), found (V,), lowercased, words
    place(E, vectors) -> σ                  E's rows found take the file's vectors; the others (drawn
                                            N(0, 1) by the initialisation) are scaled by σ
    dimension(path) -> D                    the size of the file's vectors (line 1 or its header)

Lookup: a vocabulary token is looked up as it is and, if the file lacks it, lowercased (GloVe's 6B
and 42B vectors are lowercase; "The" takes the vector of "the" unless the file has "The" itself).
Where a word occurs twice, its first line counts. A word is all that precedes the last D values of
its line, so the few GloVe 840B tokens that hold spaces (". . .") are read as they are; they match
no vocabulary word, which never holds a space.

The rows not found keep the seed's N(0, 1) draw scaled by σ, the standard deviation of the entries
of the vectors found (Kim 2014): random words then have the pretrained ones' scale, where N(0, 1)
rows would be about 2.5 times longer than GloVe's (σ about 0.4) and dominate the first layer.

Every line is checked: D values, each a finite number, D the same on every line (from line 1, or
from word2vec's header, whose COUNT must also be the number of vectors: a truncated download is
refused). An error names the file and the line. A binary word2vec file (.bin) is refused with the
command that converts it.
"""

import contextlib
from itertools import chain
from typing import NamedTuple

import numpy as np

from . import data

BOM = b"\xef\xbb\xbf"
FORMATS = "GloVe's (word v1 v2 ... vD per line) or word2vec's text format (the same after a line COUNT DIM)"
CONVERT = ("bptt reads text files: convert a binary word2vec file (.bin) with gensim, KeyedVectors."
           "load_word2vec_format(IN, binary=True).save_word2vec_format(OUT, binary=False)")


class Vectors(NamedTuple):
    """The file's vectors of a vocabulary's tokens (read)."""

    rows: np.ndarray            # (V, D): the vector of each token found, zeros for the others
    found: np.ndarray           # (V,) bool
    lowercased: int             # tokens found by their lowercase only
    words: int                  # vectors in the file

    @property
    def count(self):
        """Tokens found."""
        return int(self.found.sum())


def read(path, tokens, dimension=None, dtype=np.float64):
    """The vectors of tokens (the vocabulary, in id order) in the file at path: Vectors. dimension:
    the embedding's size D, which the file's must equal (None: the file's). ValueError naming the
    file (and line) for a file that is missing, empty, binary or not of vectors of one size."""
    tokens = list(tokens)
    if not all(isinstance(t, str) for t in tokens):
        raise TypeError(f"tokens: expected strings, got {next(t for t in tokens if not isinstance(t, str))!r}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype: expected a floating point type, got {dtype}")
    exact = {t.encode(): i for i, t in enumerate(tokens)}
    lowered = {}
    for i, t in enumerate(tokens):
        if t.lower() != t:
            lowered.setdefault(t.lower().encode(), []).append(i)
    with contextlib.closing(_records(path)) as records:
        D, count, first = _layout(path, records)
        if dimension is not None and dimension != D:
            raise ValueError(f"{path}: its vectors have {D} values (line {first[0] if first else 1}), but the "
                             f"embedding has {dimension}: give --embedding {D}, or leave --embedding out to take the "
                             f"file's size")
        rows = np.zeros((len(tokens), D))
        how = np.zeros(len(tokens), np.int8)                       # 0: not found, 1: lowercased, 2: as it is
        words = 0
        for number, parts in chain([first] if first else [], records):
            word, values = _vector(path, number, parts, D)
            words += 1
            i = exact.get(word)
            if i is not None and how[i] < 2:
                rows[i], how[i] = values, 2
            for i in lowered.get(word, ()):
                if how[i] == 0:
                    rows[i], how[i] = values, 1
    _check_counts(path, count, words, how, tokens)
    return Vectors(rows.astype(dtype), how > 0, int((how == 1).sum()), words)


def dimension(path):
    """D, the size of the vectors in the file at path: word2vec's header, or line 1's values."""
    with contextlib.closing(_records(path)) as records:
        return _layout(path, records)[0]


def place(E, vectors):
    """E (V, D), drawn N(0, 1), in place: the rows found take the file's vectors, the others are
    scaled by σ, the standard deviation of the entries of the vectors found. Returns σ."""
    if E.shape != vectors.rows.shape:
        raise ValueError(f"E: expected shape {vectors.rows.shape} like the vectors read, got {E.shape}")
    sigma = float(vectors.rows[vectors.found].astype(np.float64).std())
    E[~vectors.found] *= E.dtype.type(sigma)
    E[vectors.found] = vectors.rows[vectors.found]
    return sigma


def header(note):
    """The line bptt train's header shows about E (note: building.pretrained_embedding's), e.g.
    "embedding: 8,123 of 10,000 words from glove.6B.100d.txt (81.2%), the rest random with the
    vectors' standard deviation 0.41"."""
    frozen = ", frozen (not trained)" if note["frozen"] else ""
    if note.get("file") is None:
        return f"embedding: random N(0, 1) as initialised{frozen}"
    unit = "words" if note["level"] == "word" else "characters"
    lowered = f", {note['lowercased']:,} of them lowercased" if note["lowercased"] else ""
    rest = note["tokens"] - note["found"]
    rest = f", the rest random with the vectors' standard deviation {note['sigma']:.3g}" if rest else ""
    return (f"embedding: {note['found']:,} of {note['tokens']:,} {unit} from {note['file']} "
            f"({note['found'] / note['tokens']:.1%}{lowered}){rest}{frozen}")


# --- reading ----------------------------------------------------------------------------------

def _records(path):
    """(line number, fields as bytes) of each line that is not blank."""
    with data.opened(path, "a file of word vectors") as f:
        for number, line in enumerate(f, 1):
            parts = (line.removeprefix(BOM) if number == 1 else line).split()
            if parts:
                yield number, parts


def _layout(path, records):
    """(D, COUNT or None, the first vector's (line, fields) or None) from the first line: word2vec's
    header COUNT DIM, or GloVe's first vector (whose values are checked)."""
    first = next(records, None)
    if first is None:
        raise ValueError(f"{path}: the file is empty; expected word vectors in {FORMATS}")
    number, parts = first
    if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
        count, D = int(parts[0]), int(parts[1])
        if count == 0 or D == 0:
            raise ValueError(f"{path}: line {number}: the word2vec header announces {count} vectors of {D} values; "
                             f"the file holds no vectors")
        return D, count, None
    if len(parts) < 2:
        raise _line_error(path, number, parts, f"a word without values; expected word vectors in {FORMATS}")
    _vector(path, number, parts, len(parts) - 1)
    return len(parts) - 1, None, first


def _vector(path, number, parts, D):
    """(word, values (D,) float64) of a line's fields."""
    n = len(parts)
    if n == D + 1:
        word = parts[0]
    elif n > D + 1 and not all(_is_number(p) for p in parts[1:n - D]):
        word = b" ".join(parts[:n - D])                    # a token with spaces, as GloVe 840B's ". . ."
    else:
        raise _line_error(path, number, parts, f"{n - 1} values, expected {D} as in the lines before; every vector "
                                               f"must have the same size")
    try:
        values = np.array(parts[n - D:], dtype=np.float64)
    except ValueError:
        j = next(j for j, p in enumerate(parts[n - D:]) if not _is_number(p))
        raise _line_error(path, number, parts, f"{_shown(parts[n - D + j])} is not a number (value {j + 1} of the "
                                               f"vector of {_shown(word)})") from None
    if not np.isfinite(values).all():
        j = int(np.flatnonzero(~np.isfinite(values))[0])
        raise _line_error(path, number, parts, f"value {j + 1} of the vector of {_shown(word)} is "
                                               f"{_shown(parts[n - D + j])}, not a finite number")
    return word, values


def _is_number(field):
    try:
        float(field)
    except ValueError:
        return False
    return True


def _shown(field):
    return repr(field.decode("utf-8", "replace")[:40])


def _line_error(path, number, parts, problem):
    """The ValueError of a line: binary data (a word2vec .bin file) if it is not text, else problem."""
    raw = b" ".join(parts)
    try:
        binary = b"\x00" in raw or not raw.decode("utf-8").isprintable()
    except UnicodeDecodeError:
        binary = True
    if binary:
        return ValueError(f"{path}: line {number}: binary data, not text; {CONVERT}")
    return ValueError(f"{path}: line {number}: {problem}")


def _check_counts(path, count, words, how, tokens):
    """The file held vectors (as many as a word2vec header announced) and some of the tokens'."""
    if count is not None and words != count:
        raise ValueError(f"{path}: the word2vec header (line 1) announces {count:,} vectors, the file holds {words:,}; "
                         f"is it cut short?")
    if not how.any():
        raise ValueError(f"{path}: none of the vocabulary's {len(tokens):,} tokens is among its {words:,} words (each "
                         f"looked up as it is and lowercased); are they vectors of another language or tokenisation?")
