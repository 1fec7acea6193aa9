"""Pretrained word vectors (bptt.training.pretrained, --embedding-init) and a frozen embedding
(--freeze-embedding): the file's vectors land exactly in the rows of the words found, the others
keep the seed's draw scaled to the vectors; every malformed file is one error naming it and the
line; a frozen E stays bit for bit what it was through training, weight decay and a resume, which
needs no file."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from bptt import files
from bptt.training import building, opening, pretrained, tasks, train
from bptt.training.config import TrainConfig

WORDS = "the cat sat on the mat\nThe rat sat on the cat\na mat is not a cat\n" * 12
GLOVE = {"the": [0.1, -0.2, 0.3], "cat": [1.5, 2.25, -3.0], "dog": [9.0, 9.0, 9.0], "sat": [-1.0, 0.05, 2e-3],
         "mat": [0.0, 0.0, 1.0], "is": [0.7, 0.8, 0.9]}
# the vocabulary of WORDS (its first 90%) and the tokens GLOVE has for it ("The" by its lowercase)
VOCAB = ("<eos>", "<unk>", "The", "a", "cat", "is", "mat", "not", "on", "rat", "sat", "the")
FOUND = {"The": "the", "cat": "cat", "is": "is", "mat": "mat", "sat": "sat", "the": "the"}


def write_vectors(path, vectors, header=False, extra=""):
    lines = [f"{word} {' '.join(map(repr, v))}" for word, v in vectors.items()]
    head = f"{len(vectors)} {len(next(iter(vectors.values())))}\n" if header else ""
    path.write_text(head + "\n".join(lines) + "\n" + extra)
    return str(path)


@pytest.fixture
def vectors(tmp_path):
    return write_vectors(tmp_path / "vec.txt", GLOVE)


@pytest.fixture
def words(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text(WORDS)
    return str(path)


def small(words, vectors, **kw):
    base = dict(data=words, level="word", embedding_init=vectors, embedding=3, hidden=6, layers=1, batch=3, window=5,
                steps=4, eval_every=2, eval_batch=2, log_every=1, dtype="float64")
    return TrainConfig(**(base | kw))


# --- reading ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("header", [False, True])
def test_found_words_take_exactly_the_files_vectors(vectors, tmp_path, dtype, header):
    path = write_vectors(tmp_path / "w2v.txt", GLOVE, header=True) if header else vectors
    v = pretrained.read(path, VOCAB, 3, dtype)
    assert v.rows.shape == (len(VOCAB), 3) and v.rows.dtype == dtype
    assert v.count == 6 and v.lowercased == 1 and v.words == len(GLOVE)
    for i, token in enumerate(VOCAB):
        assert v.found[i] == (token in FOUND)
        expected = np.array(GLOVE[FOUND[token]], np.float64).astype(dtype) if token in FOUND else np.zeros(3, dtype)
        assert np.array_equal(v.rows[i], expected), token
    assert pretrained.dimension(path) == 3


def test_a_word_as_it_is_comes_before_its_lowercase_and_the_first_line_of_a_word_counts(tmp_path):
    path = tmp_path / "vec.txt"
    path.write_text("apple 1 1\nthe 2 2\nThe 3 3\nthe 4 4\nApple 5 5\n. . . 6 6\n")
    v = pretrained.read(str(path), ["APPLE", "Apple", "The", "the", "..."])
    assert v.rows.tolist() == [[1, 1], [5, 5], [3, 3], [2, 2], [0, 0]]
    assert v.found.tolist() == [True, True, True, True, False] and v.lowercased == 1
    assert v.words == 6                                      # ". . ." is a word with spaces, as in GloVe 840B


def test_the_rows_not_found_keep_the_seeds_draw_at_the_vectors_scale(vectors):
    v = pretrained.read(vectors, VOCAB, 3, np.float32)
    E = np.random.default_rng(0).standard_normal((len(VOCAB), 3)).astype(np.float32)
    drawn = E.copy()
    sigma = pretrained.place(E, v)
    assert sigma == pytest.approx(np.std([GLOVE[w] for w in FOUND.values()]))
    assert np.array_equal(E[v.found], v.rows[v.found])
    assert np.array_equal(E[~v.found], drawn[~v.found] * np.float32(sigma))


# what each malformed file is refused with: the file and the line
MALFORMED = [
    ("the 1 2 3\ncat 1 2 3\nsat 1 2\n", r"line 3: 2 values, expected 3 as in the lines before"),
    ("the 1 2 3\ncat 1 2 3 4\n", r"line 2: 4 values, expected 3 as in the lines before"),
    ("the 1 2 3\n\ncat 1 x 3\n", r"line 3: 'x' is not a number \(value 2 of the vector of 'cat'\)"),
    ("the 1 2 3\ncat 1 nan 3\n", r"line 2: value 2 of the vector of 'cat' is 'nan', not a finite number"),
    ("the 1 2 inf\n", r"line 1: value 3 of the vector of 'the' is 'inf', not a finite number"),
    ("", r"the file is empty; expected word vectors in GloVe's .* or word2vec's text format"),
    ("\n \n", r"the file is empty"),
    ("hello\nthe 1 2\n", r"line 1: a word without values"),
    ("the,1,2,3\n", r"line 1: a word without values"),
    ("5 3\nthe 1 2 3\ncat 1 2 3\n", r"the word2vec header \(line 1\) announces 5 vectors, the file holds 2; is it cut"),
    ("0 3\n", r"line 1: the word2vec header announces 0 vectors of 3 values; the file holds no vectors"),
    ("zebra 1 2 3\nyak 1 2 3\n", r"none of the vocabulary's 12 tokens is among its 2 words"),
]


@pytest.mark.parametrize("content, message", MALFORMED)
def test_a_malformed_file_is_one_error_naming_it_and_the_line(tmp_path, content, message):
    path = tmp_path / "vec.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match="^" + str(path).replace(".", r"\.") + ": " + message):
        pretrained.read(str(path), VOCAB)


def test_a_binary_word2vec_file_is_refused_with_the_conversion(tmp_path):
    path = tmp_path / "vectors.bin"
    rows = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    path.write_bytes(b"2 3\nthe " + rows[0].tobytes() + b"\ncat " + rows[1].tobytes() + b"\n")
    with pytest.raises(ValueError, match=rf"^{path}: line 2: binary data, not text; bptt reads text files: convert "
                                         r"a binary word2vec file \(\.bin\) with gensim, KeyedVectors\."
                                         r"load_word2vec_format\(IN, binary=True\)\.save_word2vec_format\(OUT, "
                                         r"binary=False\)$"):
        pretrained.read(str(path), VOCAB)


def test_a_missing_file_a_directory_and_another_size_are_named(tmp_path, vectors):
    with pytest.raises(ValueError, match=rf"^{tmp_path}/nothing\.txt: file not found$"):
        pretrained.read(str(tmp_path / "nothing.txt"), VOCAB)
    with pytest.raises(ValueError, match=r"^'a\\x00b': not a file name \(it holds a NUL character\)$"):
        pretrained.read("a\x00b", VOCAB)
    with pytest.raises(ValueError, match=rf"^{tmp_path}: is a directory, expected a file of word vectors$"):
        pretrained.dimension(str(tmp_path))
    with pytest.raises(ValueError, match=rf"^{vectors}: its vectors have 3 values \(line 1\), but the embedding has 4: "
                                         r"give --embedding 3, or leave --embedding out to take the file's size$"):
        pretrained.read(vectors, VOCAB, 4)


def test_the_header_line():
    note = {"file": "glove.6B.100d.txt", "found": 8123, "tokens": 10000, "level": "word", "lowercased": 312,
            "sigma": 0.40987, "frozen": False}
    assert pretrained.header(note) == ("embedding: 8,123 of 10,000 words from glove.6B.100d.txt (81.2%, 312 of them "
                                       "lowercased), the rest random with the vectors' standard deviation 0.41")
    assert pretrained.header(note | {"found": 10000, "lowercased": 0, "frozen": True, "level": "char"}) == \
        "embedding: 10,000 of 10,000 characters from glove.6B.100d.txt (100.0%), frozen (not trained)"
    assert pretrained.header({"file": None, "frozen": True}) == \
        "embedding: random N(0, 1) as initialised, frozen (not trained)"


# --- a run ------------------------------------------------------------------------------------------

def initial_E(cfg):
    """E as a new run of cfg starts: the seed's draw, then the vectors."""
    task = tasks.make(cfg)
    net = building.build_network(cfg, task.input_size, task.output_size)
    building.pretrained_embedding(cfg, task.vocab, net.params)
    return net.params["E"]


def test_a_new_run_starts_from_the_vectors_and_its_header_says_how_many(tmp_path, words, vectors):
    cfg = small(words, vectors)
    events = []
    train.train(cfg.replace(steps=1), tmp_path / "run", on_event=lambda kind, r: events.append((kind, r)))
    start = next(r for kind, r in events if kind == "start")
    assert pretrained.header(start["embedding"]) == (
        "embedding: 6 of 12 words from vec.txt (50.0%, 1 of them lowercased), the rest random with the vectors' "
        f"standard deviation {np.std([GLOVE[w] for w in FOUND.values()]):.3g}")
    vocab = opening.Run(tmp_path / "run").vocab()
    assert vocab.tokens == VOCAB
    E = initial_E(cfg)
    drawn = building.build_network(cfg, len(VOCAB), len(VOCAB)).params["E"]
    sigma = start["embedding"]["sigma"]
    for i, token in enumerate(VOCAB):
        if token in FOUND:
            assert E[i].tolist() == GLOVE[FOUND[token]], token
        else:
            assert np.array_equal(E[i], drawn[i] * sigma), token


def test_the_run_records_the_vectors_file_and_resumes_without_it(tmp_path, words, vectors):
    cfg = small(words, vectors)
    train.train(cfg, tmp_path / "run")
    marker = json.loads((tmp_path / "run" / "run.json").read_text())["data"]["embedding_init"]
    raw = Path(vectors).read_bytes()
    assert marker["bytes"] == len(raw) and marker["path"] == vectors
    assert marker["sha256"] == hashlib.sha256(raw).hexdigest()
    assert opening.Run(tmp_path / "run").config().embedding_init == vectors
    os.remove(vectors)
    assert train.train(cfg.replace(steps=6), tmp_path / "run", resume=True).progress.step == 6


@pytest.mark.parametrize("kw", [dict(optimizer="adam", weight_decay=0.1),
                                dict(optimizer="adamw", weight_decay=0.5, dropout=0.2),
                                dict(optimizer="sgd", momentum=0.9, weight_decay=0.1, clip=0.01),
                                dict(embedding_init=None, embedding=4, optimizer="rmsprop", weight_decay=0.1),
                                dict(task="classify", level="word", embedding_init=None)])
def test_a_frozen_E_stays_bit_for_bit_through_training_and_resume(tmp_path, words, vectors, kw):
    if kw.get("task") == "classify":
        tsv = tmp_path / "train.tsv"
        tsv.write_text("".join(f"{'the cat' if i % 2 else 'a mat'} sat\t{i % 2}\n" for i in range(30)))
        kw = kw | {"data": str(tsv), "embedding_init": vectors, "window": 64}      # window: lm only
    cfg = small(words, vectors, freeze_embedding=True, steps=8, **kw)
    E = initial_E(cfg) if cfg.embedding_init else building.build_network(cfg, *sizes(cfg)).params["E"]
    whole = train.train(cfg, tmp_path / "whole")
    a, _ = files.load_arrays(tmp_path / "whole" / "checkpoint.safetensors")
    assert np.array_equal(a["param/E"], E)
    first = building.build_network(cfg, *sizes(cfg)).params
    assert all(not np.array_equal(a[f"param/{k}"], p) for k, p in first.items() if k != "E")   # the rest trained
    assert not any(k.endswith("/E") for k in a if k.startswith("optim/"))                    # no optimiser state
    assert whole.progress.step == 8

    train.train(cfg, tmp_path / "split", on_step=lambda p: p.step == 4)
    if cfg.embedding_init:
        os.rename(vectors, vectors + ".away")                 # a resume does not read the file
    train.train(cfg, tmp_path / "split", resume=True)
    b, _ = files.load_arrays(tmp_path / "split" / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name        # bit for bit, E and everything else


def sizes(cfg):
    task = tasks.make(cfg)
    return task.input_size, task.output_size


def test_a_frozen_E_takes_no_part_in_clipping(tmp_path, words, vectors):
    """A frozen E has no gradient, as a torch parameter with requires_grad=False: clipping's norm
    is the other parameters'."""
    cfg = small(words, vectors, freeze_embedding=True, steps=1, flow_every=1)
    train.train(cfg, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    flow = next(r for r in records if "grad_norms" in r)
    step = next(r for r in records if "grad_norm" in r)
    assert "E" not in flow["grad_norms"]
    assert step["grad_norm"] == pytest.approx(np.sqrt(sum(n ** 2 for n in flow["grad_norms"].values())), rel=1e-12)


def test_a_rank_needs_no_copy_of_the_vectors(tmp_path, words, vectors):
    """Only rank 0 reads the vectors: the others take E with its parameters (opening.opened_from)."""
    cfg = small(words, vectors)
    sources = opening.data_sources(cfg, {})
    assert set(sources) == {"data", "embedding_init"}
    os.remove(vectors)
    opening.check_copies(cfg, sources)


@pytest.mark.parametrize("kw, message", [
    (dict(freeze_embedding=True, tie=True, embedding=6), r"^freeze_embedding: with --tie, E is also the readout"),
    (dict(freeze_embedding=True, embedding=0, embedding_init=None), r"^freeze_embedding: needs an embedding E; "
                                                                    r"--embedding 0 means one-hot inputs"),
    (dict(embedding=0), r"^embedding_init: needs an embedding E; --embedding 0 means one-hot inputs, which have none: "
                        r"give --embedding > 0 or leave it out \(the vectors' size\)$"),
    (dict(task="adding", data=None, level="char", embedding=0),
     r"^embedding_init: applies to a vocabulary's tokens \(--task lm or classify\) only"),
    (dict(embedding_init=""), r"^embedding_init: expected a non-empty string, got ''$"),
])
def test_the_options_that_cannot_go_together(words, vectors, kw, message):
    with pytest.raises(ValueError, match=message):
        small(words, vectors, **kw)


def test_an_explicit_embedding_of_another_size_is_refused_before_anything_is_written(tmp_path, words, vectors):
    with pytest.raises(ValueError, match=rf"^embedding_init: {vectors}: its vectors have 3 values \(line 1\), but the "
                                         r"embedding has 5: give --embedding 3"):
        train.train(small(words, vectors, embedding=5), tmp_path / "run")
    assert not (tmp_path / "run").exists()
