"""Long-range problems: synthetic sequences whose answer depends on inputs far back in time.

Each generator takes the sequence length T, a batch size B and a np.random.Generator, and returns
(x, y) in the network's layout, plus the facts the trainer needs (PROBLEMS below).

    adding       Hochreiter & Schmidhuber 1997; Le et al. 2015. x_t = (u_t, m_t): u_t uniform in
                 [0, 1], m_t = 1 at two steps (one in each half), 0 elsewhere. Target at the end:
                 the sum of the two marked u. Predicting 1 always gives MSE 1/6 = 0.167.
    copy         Arjovsky et al. 2016. Ten symbols from {1..8}, T blanks (0) with the delimiter (9)
                 at the last of them, ten more blanks; the target is blank everywhere except the
                 last ten steps, which must repeat the ten symbols. Length T + 20. Predicting blank
                 and then uniform guesses gives cross-entropy 10 log 8 / (T + 20).
    order        temporal order, Hochreiter & Schmidhuber 1997 (Pascanu et al. 2013): distractors
                 from {a, b, c, d}, one of {X, Y} at a step in [10%, 20%) of T and another in
                 [50%, 60%); the class is the pair (XX, XY, YX, YY). Chance: ln 4, accuracy 25%.
    sentiment    the seeds' one-hot toy example stretched over T: the first word, "cat" (1) or
                 "mat" (0), decides the label; T - 1 filler words from {"mat", "rat"} follow.
                 Chance: ln 2, accuracy 50%.
"""

from typing import NamedTuple

import numpy as np

from .. import checks


class Problem(NamedTuple):
    generate: object      # (T, B, rng) -> (x, y)
    input_size: int       # features (floats) or vocabulary (ids)
    output_size: int
    target: str           # "last" or "every"
    loss: str             # "mse" or "cross_entropy"
    baseline: object      # T -> the loss of the trivial answer
    solved: object        # metrics -> bool
    description: str
    min_length: int = 1   # the shortest T the generator is defined for
    real_inputs: bool = False   # x holds floats (T, B, input_size), not token ids: no embedding


def check_length(name, T, option="length"):
    """A ValueError naming the option unless T is a length the problem is defined for."""
    p = get(name)
    if T < p.min_length:
        raise ValueError(f"{option}: the {name} problem needs T >= {p.min_length} (two marked steps apart), got {T}")
    return T


def adding(T, B, rng):
    u = rng.random((T, B))
    m = np.zeros((T, B))
    half = T // 2
    first = rng.integers(0, half, B)
    second = rng.integers(half, T, B)
    m[first, np.arange(B)] = 1
    m[second, np.arange(B)] = 1
    x = np.stack([u, m], axis=-1)                                   # (T, B, 2)
    y = (u * m).sum(axis=0)[:, None]                                # (B, 1)
    return x, y


def copy(T, B, rng):
    symbols = rng.integers(1, 9, (10, B))
    x = np.zeros((T + 20, B), dtype=np.int64)
    x[:10] = symbols
    x[T + 9] = 9                                                    # the delimiter: "now repeat"
    y = np.zeros((T + 20, B), dtype=np.int64)
    y[T + 10:] = symbols
    return x, y


def order(T, B, rng):
    """Symbols: a, b, c, d = 0..3 (distractors), X = 4, Y = 5. Classes: XX, XY, YX, YY = 0..3."""
    x = rng.integers(0, 4, (T, B))
    t1 = rng.integers(int(0.1 * T), max(int(0.2 * T), int(0.1 * T) + 1), B)
    t2 = rng.integers(int(0.5 * T), max(int(0.6 * T), int(0.5 * T) + 1), B)
    first, second = rng.integers(0, 2, B), rng.integers(0, 2, B)
    x[t1, np.arange(B)] = 4 + first
    x[t2, np.arange(B)] = 4 + second
    return x, 2 * first + second


def sentiment(T, B, rng):
    """Words: cat = 0, mat = 1, rat = 2."""
    label = rng.integers(0, 2, B)
    x = rng.integers(1, 3, (T, B))
    x[0] = np.where(label == 1, 0, 1)
    return x, label


PROBLEMS = {
    "adding": Problem(adding, 2, 1, "last", "mse", lambda T: 1 / 6,
                      lambda m: m["loss"] < 0.01, "test MSE below 0.01 (the baseline is 0.167)", 2, True),
    "copy": Problem(copy, 10, 9, "every", "cross_entropy", lambda T: 10 * np.log(8) / (T + 20),
                    lambda m: m["accuracy"] > 0.99, "over 99% of the ten recalled symbols right"),
    "order": Problem(order, 6, 4, "last", "cross_entropy", lambda T: np.log(4),
                     lambda m: m["accuracy"] > 0.99, "test accuracy over 99% (chance 25%)", 2),
    "sentiment": Problem(sentiment, 3, 2, "last", "cross_entropy", lambda T: np.log(2),
                         lambda m: m["accuracy"] > 0.99, "test accuracy over 99% (chance 50%)"),
}


def get(name):
    checks.one_of("problem", name, tuple(PROBLEMS))
    return PROBLEMS[name]
