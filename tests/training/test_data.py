"""Corpora, vocabularies, batching and labeled examples: values checked by hand, every error path named."""

import json
import string

import numpy as np
import pytest

from bptt.training.data import (
    EOS,
    UNK,
    LabelSet,
    Vocab,
    batchify,
    build_labels,
    build_vocab,
    num_windows,
    pad_batch,
    read_labeled,
    read_text,
    split_text,
    tokenize,
    unigram_logprobs,
    windows,
)

# ---------------------------------------------------------------- reading text


def test_read_text_normalises_crlf_and_decodes_utf8(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes("héllo\r\nwörld\n".encode())
    assert read_text(path) == "héllo\nwörld\n"


def test_read_text_not_utf8_names_file_line_and_byte(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"first line\nsecond\n\xe9t\xff\n")  # 0xe9 alone is not UTF-8
    with pytest.raises(ValueError) as e:
        read_text(path)
    assert str(e.value).startswith(f"{path}: line 3: not valid UTF-8 (byte 0xe9 at offset 18)")


def test_read_text_missing_empty_and_directory(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.txt: file not found"):
        read_text(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.txt: the file is empty"):
        read_text(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="is a directory"):
        read_text(tmp_path)


# ---------------------------------------------------------------- tokens and vocabulary


def test_tokenize_char_and_word():
    assert tokenize("ab\nc", "char") == ["a", "b", "\n", "c"]
    # PTB: every line ends in <eos>; a final newline does not start an extra line; blank lines give a bare <eos>
    assert tokenize(" the cat \n\nsat\n", "word") == ["the", "cat", EOS, EOS, "sat", EOS]
    assert tokenize("no newline", "word") == ["no", "newline", EOS]
    assert tokenize("", "word") == []


def test_tokenize_bad_level():
    with pytest.raises(ValueError, match="level: expected one of 'char', 'word'; got 'byte'"):
        tokenize("x", "byte")


def test_vocab_is_sorted_and_independent_of_order():
    text = "the quick brown fox\njumps over the lazy dog\n"
    words = tokenize(text, "word")
    v = build_vocab(words, "word")
    assert v.tokens == tuple(sorted(set(words) | {UNK}))
    assert v == build_vocab(words[::-1], "word")
    c = build_vocab(tokenize(text, "char"), "char")
    assert c.tokens == tuple(sorted(set(text)))
    assert c.size == len(set(text)) and c.index[" "] == 1  # "\n" < " " < letters


def test_max_size_keeps_most_frequent_ties_alphabetical():
    words = "b b b a a c c d".split()
    v = build_vocab(words, "word", max_size=4)  # <eos>, <unk> and two words: b (3), then a/c tie (2) -> a
    assert v.tokens == (EOS, UNK, "a", "b")
    assert build_vocab(words, "word", max_size=2).tokens == (EOS, UNK)
    with pytest.raises(ValueError, match="max_size: applies to level='word' only"):
        build_vocab(list("abc"), "char", max_size=2)
    with pytest.raises(ValueError, match="max_size: expected an int >= 2, got 1"):
        build_vocab(words, "word", max_size=1)
    with pytest.raises(ValueError, match="tokens: expected at least one token"):
        build_vocab([], "word")


def test_encode_decode_round_trip_and_unk():
    train = tokenize("a cat sat\nthe cat\n", "word")
    v = build_vocab(train, "word")
    ids = v.encode(train)
    assert ids.dtype == np.int64 and ids.shape == (len(train),)
    assert v.decode(ids) == train
    assert [v.tokens[i] for i in ids] == train
    unseen = v.encode(tokenize("a dog sat", "word"))
    assert v.decode(unseen) == ["a", UNK, "sat", EOS]

    text = "hello world\n"
    c = build_vocab(tokenize(text, "char"), "char")
    assert "".join(c.decode(c.encode(text))) == text
    assert c.encode("").shape == (0,)


def test_unknown_characters_are_named():
    c = build_vocab(list("abc"), "char")
    with pytest.raises(ValueError) as e:
        c.encode("aüébü")
    assert str(e.value).startswith("text: characters not in the training vocabulary of 3: 'é', 'ü'")


def test_decode_out_of_range():
    c = build_vocab(list("abc"), "char")
    with pytest.raises(ValueError, match=r"ids: expected ids in \[0, 3\), got min 0 and max 3"):
        c.decode([0, 3])


def test_vocab_json_round_trip():
    for v in (build_vocab(tokenize("x y\nz\n", "word"), "word"), build_vocab(list("héllo\n"), "char")):
        d = json.loads(json.dumps(v.to_json()))
        assert d == {"level": v.level, "tokens": list(v.tokens)}
        w = Vocab.from_json(d)
        assert w == v and w.index == v.index


@pytest.mark.parametrize("d, message", [
    (["a", "b"], "vocab: expected a dict with keys 'level' and 'tokens', got list"),
    ({"tokens": ["a"]}, "vocab: expected a dict with keys 'level' and 'tokens', got keys ['tokens']"),
    ({"level": "char", "tokens": "ab"}, "vocab: expected 'tokens' to be a list of strings, got str"),
    ({"level": "byte", "tokens": ["a"]}, "vocab: expected 'level' to be one of 'char', 'word'; got 'byte'"),
    ({"level": "char", "tokens": []}, "vocab: expected at least one entry"),
    ({"level": "char", "tokens": ["b", "a"]}, "vocab: expected sorted, unique entries; 'b' comes before 'a'"),
    ({"level": "char", "tokens": ["a", "a"]}, "vocab: expected sorted, unique entries; 'a' appears twice"),
    ({"level": "char", "tokens": ["a", "b", "a"], "counts": [3, 2, 1]},
     "vocab: expected unique entries; 'a' appears twice (entries 0 and 2)"),
    ({"level": "char", "tokens": ["a", "b"], "counts": [1, 2]},
     "vocab: expected the most frequent first (ties sorted); 'a' (1) comes before 'b' (2) (entries 0 and 1)"),
    ({"level": "char", "tokens": ["b", "a"], "counts": [2, 2]}, "vocab: expected the most frequent first"),
    ({"level": "char", "tokens": ["a", "b"], "counts": [2]}, "vocab: expected 'counts' to be 2 ints"),
    ({"level": "char", "tokens": ["a", 1]}, "vocab: expected strings, got 1 (int)"),
    ({"level": "char", "tokens": ["ab"]}, "vocab: expected single characters for level='char', got 'ab'"),
    ({"level": "word", "tokens": ["<eos>", "cat"]}, "vocab: a word vocabulary must hold '<eos>' and '<unk>'; "
                                                    "missing '<unk>'"),
    ({"level": "word", "tokens": ["<eos>", "<unk>", "a b"]}, "vocab: expected words without whitespace"),
])
def test_vocab_from_json_rejects_malformed(d, message):
    with pytest.raises(ValueError) as e:
        Vocab.from_json(d)
    assert str(e.value).startswith(message)


def test_vocab_by_frequency():
    """The adaptive softmax's order: the most frequent first, ties alphabetically; <unk> counts the
    words left out; the order is kept through JSON."""
    words = "b a b c b a <eos> d e".split() + ["<eos>"] * 2
    v = build_vocab(words, "word", max_size=4, by_frequency=True)
    assert v.tokens == ("<eos>", "<unk>", "b", "a")        # <eos>, <unk> (c, d, e), b: 3 each; a 2
    assert v.counts == (3, 3, 3, 2) and Vocab.from_json(v.to_json()) == v
    assert build_vocab(list("abbccc"), "char", by_frequency=True).tokens == ("c", "b", "a")


def test_unigram_logprobs_add_one():
    lp = unigram_logprobs(np.array([0, 0, 0, 2]), 4)  # counts 3, 0, 1, 0 -> +1 -> 4, 1, 2, 1 over 8
    np.testing.assert_allclose(lp, np.log([4 / 8, 1 / 8, 2 / 8, 1 / 8]), rtol=1e-15)
    assert lp.shape == (4,) and lp.dtype == np.float64
    with pytest.raises(ValueError, match=r"ids: expected ids in \[0, 4\)"):
        unigram_logprobs([4], 4)


# ---------------------------------------------------------------- splitting


def test_split_text_char_keeps_last_fraction():
    text = string.ascii_lowercase * 4  # 104 characters
    train, valid = split_text(text, 0.25)
    assert train + valid == text and len(valid) == 26
    train, valid = split_text(text)
    assert train + valid == text and len(valid) == 10


def test_split_text_word_at_line_boundary():
    text = "".join(f"line {i:02d}\n" for i in range(10))  # 10 lines of 8 characters
    train, valid = split_text(text, 0.15, level="word")  # cut at 68, inside line 8 -> moved to its end, 72
    assert train + valid == text
    assert valid == "line 09\n" and train.endswith("line 08\n")
    train, valid = split_text(text, 0.2, level="word")  # cut at 64, already a line start
    assert valid == "line 08\nline 09\n"


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, True, "0.1", float("nan")])
def test_split_text_bad_fraction(fraction):
    with pytest.raises(ValueError, match=r"valid_fraction: expected a number in \(0, 1\), got"):
        split_text("abcdefghij", fraction)


def test_split_text_too_small():
    with pytest.raises(ValueError, match="text: too small to split.*the validation part would hold no characters"):
        split_text("abc", 0.1)
    with pytest.raises(ValueError, match=r"text: too small to split .*1 line\(s\)\): the validation part"):
        split_text("one long line of words without a newline", 0.5, level="word")


# ---------------------------------------------------------------- batching


def test_batchify_layout_by_hand():
    ids = np.arange(26)  # a..z
    expected = np.array([[0, 6, 12, 18],
                         [1, 7, 13, 19],
                         [2, 8, 14, 20],
                         [3, 9, 15, 21],
                         [4, 10, 16, 22],
                         [5, 11, 17, 23]])
    got = batchify(ids, 4)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.int64 and got.flags.c_contiguous


@pytest.mark.parametrize("N, B", [(2, 1), (50, 3), (101, 7), (64, 32)])
def test_batchify_matches_torch_formula(N, B):
    ids = np.random.default_rng(N).integers(0, 1000, size=N)
    n = N // B
    np.testing.assert_array_equal(batchify(ids, B), ids[:n * B].reshape(B, n).T)


def test_batchify_too_short():
    with pytest.raises(ValueError) as e:
        batchify(np.arange(10), 32)
    assert str(e.value) == ("ids: the token stream has 10 tokens, fewer than 2 per stream for batch_size 32 "
                            "(one step of input and its target); use a smaller --batch or more data")
    with pytest.raises(ValueError, match="has 5 tokens, fewer than 2 per stream for batch_size 3"):
        batchify(np.arange(5), 3)
    with pytest.raises(ValueError, match="batch_size: expected a positive int, got 0"):
        batchify(np.arange(5), 0)


@pytest.mark.parametrize("N, window", [(2, 1), (7, 3), (8, 3), (10, 35), (36, 35), (37, 35), (100, 1)])
def test_windows_cover_every_pair_once(N, window):
    B = 3
    stream = np.arange(N * B).reshape(N, B)
    pairs = []
    chunks = list(windows(stream, window))
    for x, y in chunks:
        assert x.shape == y.shape and 1 <= x.shape[0] <= window and x.shape[1] == B
        np.testing.assert_array_equal(y, x + B)  # y is x one step ahead in every stream
        pairs += [(int(a), int(b)) for a, b in zip(x.ravel(), y.ravel())]
    expected = [(int(stream[t, b]), int(stream[t + 1, b])) for t in range(N - 1) for b in range(B)]
    assert sorted(pairs) == sorted(expected) and len(pairs) == len(set(pairs))
    assert [x[0, 0] for x, _ in chunks] == list(range(0, (N - 1) * B, window * B))  # starts at 0, w, 2w, ...
    assert len(chunks) == num_windows(N, window)


def test_windows_errors():
    assert num_windows(1, 5) == 0 and num_windows(0, 5) == 0
    with pytest.raises(ValueError, match="window: expected a positive int, got 0"):
        windows(np.zeros((4, 2), dtype=np.int64), 0)
    with pytest.raises(ValueError, match=r"stream: expected time-major ids of shape \(N, B\)"):
        windows(np.arange(4), 2)


# ---------------------------------------------------------------- labeled examples

TOY = [("cat mat rat", "1"), ("cat mat rat rat rat mat", "1"), ("mat mat cat", "0")]


def test_toy_classification_round_trip(tmp_path):
    path = tmp_path / "toy.tsv"
    path.write_text("".join(f"{text}\t{label}\n" for text, label in TOY) + "\n", encoding="utf-8")
    texts, labels = read_labeled(path, "word")
    assert list(zip(texts, labels)) == TOY

    seqs = [tokenize(t, "word") for t in texts]
    vocab = build_vocab([tok for s in seqs for tok in s], "word")
    assert vocab.tokens == (EOS, UNK, "cat", "mat", "rat")
    label_set = build_labels(labels)
    assert label_set.labels == ("0", "1")
    y = label_set.encode(labels)
    np.testing.assert_array_equal(y, [1, 1, 0])

    x, lengths = pad_batch([vocab.encode(s) for s in seqs])
    np.testing.assert_array_equal(lengths, [4, 7, 4])
    assert x.shape == (7, 3) and x.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], [2, 3, 4, 0, 0, 0, 0])  # cat mat rat <eos>, then padding
    decoded = [" ".join(vocab.decode(x[:n, b])[:-1]) for b, n in enumerate(lengths)]
    assert list(zip(decoded, label_set.decode(y))) == TOY

    restored = LabelSet.from_json(json.loads(json.dumps(label_set.to_json())))
    assert restored == label_set and restored.to_json() == {"labels": ["0", "1"]}


def test_read_labeled_csv_quoting_and_line_numbers(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('"good, really good",pos\r\n\r\n"bad\nvery bad",neg\nfine,\n', encoding="utf-8")
    with pytest.raises(ValueError) as e:
        read_labeled(path, "word")
    assert str(e.value) == f"{path}: line 5: the label is empty"  # the record spanning lines 3-4 counted right
    path.write_text('"good, really good",pos\n\n"bad\nvery bad",neg\n', encoding="utf-8")
    assert read_labeled(path, "word") == (["good, really good", "bad\nvery bad"], ["pos", "neg"])
    path.write_text("a,b,pos\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"reviews\.csv: line 1: expected text,label, found 3 fields"):
        read_labeled(path, "word")


@pytest.mark.parametrize("content, message", [
    (b"a\t1\nb\t0\nno label here\n", "line 3: expected text<TAB>label, found no tab"),
    (b"a\t1\nb\tc\t0\n", "line 2: expected text<TAB>label, found 2 tabs"),
    (b"a\t1\n \t0\n", "line 2: the text is empty"),
    (b"a\t1\n\nb\t \n", "line 3: the label is empty"),
    (b"a\t1\nb\xff\t0\n", "line 2: not valid UTF-8 (byte 0xff at offset 5)"),
    (b"", "the file is empty"),
    (b"\n  \n\n", "no examples (only blank lines); expected text<TAB>label lines"),
])
def test_read_labeled_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "examples.tsv"
    path.write_bytes(content)
    with pytest.raises(ValueError) as e:
        read_labeled(path, "word")
    assert str(e.value).startswith(f"{path}: {message}")


def test_read_labeled_char_level_keeps_spaces_and_bad_extension(tmp_path):
    path = tmp_path / "examples.txt"
    path.write_bytes(b" \tspace\n")
    assert read_labeled(path, "char") == ([" "], ["space"])
    with pytest.raises(ValueError, match=r"examples\.json: expected a \.tsv, \.txt"):
        read_labeled(tmp_path / "examples.json", "char")


def test_label_set_errors():
    s = build_labels(["neg", "pos", "neg"])
    assert s.labels == ("neg", "pos") and s.size == 2
    with pytest.raises(ValueError, match=r"labels: not in the training label set of 2 \('neg', 'pos'\): 'meh'"):
        s.encode(["pos", "meh"])
    with pytest.raises(ValueError, match="label set: expected sorted, unique entries; 'pos' comes before 'neg'"):
        LabelSet.from_json({"labels": ["pos", "neg"]})
    with pytest.raises(ValueError, match=r"label set: expected a dict \{'labels': \[str, ...\]\}, got keys"):
        LabelSet.from_json({"tokens": ["a"]})


def test_pad_batch():
    x, lengths = pad_batch([np.array([5, 6]), np.array([7]), np.array([1, 2, 3])], pad_id=9)
    np.testing.assert_array_equal(x, [[5, 7, 1], [6, 9, 2], [9, 9, 3]])
    np.testing.assert_array_equal(lengths, [2, 1, 3])
    assert lengths.dtype == np.int64
    with pytest.raises(ValueError, match="seqs: sequence 1 is empty; every example needs at least one token"):
        pad_batch([np.array([1]), np.array([], dtype=np.int64)])
    with pytest.raises(ValueError, match="seqs: expected a non-empty list"):
        pad_batch([])
