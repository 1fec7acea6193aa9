"""bptt train --embedding-init FILE and --freeze-embedding, in-process: the embedding's size taken
from the file, each refusal one line naming the option, the file and the line with nothing left
behind, word and character language models and a classifier trained from the vectors, and a
resume that needs no file and continues as an uninterrupted run."""

import json
import re

import numpy as np
import pytest

from bptt import files
from bptt.cli import main
from bptt.training import opening

WORDS = "the cat sat on the mat\nThe rat sat on the cat\na mat is not a cat\n" * 12
VECTORS = "the 0.1 -0.2 0.3\ncat 1.5 2.25 -3\nsat -1 0.05 0.002\nmat 0 0 1\ndog 9 9 9\n"
SMALL = ["--hidden", "6", "--layers", "1", "--batch", "3", "--window", "5", "--eval-every", "2", "--eval-batch", "2",
         "--log-every", "1"]


def error(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.splitlines()[-1]


@pytest.fixture
def where(tmp_path, monkeypatch):
    """The case's directory, the current one, with words.txt and vec.txt."""
    (tmp_path / "words.txt").write_text(WORDS)
    (tmp_path / "vec.txt").write_text(VECTORS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def checkpoint(run, name="checkpoint.safetensors"):
    return files.load_arrays(run / name)[0]


def test_the_embedding_takes_the_files_size_and_the_run_records_the_file(where, capsys):
    assert main(["train", "run", "--data", "words.txt", "--level", "word", "--embedding-init", "vec.txt",
                 "--freeze-embedding", "--steps", "2", *SMALL]) == 0
    cfg = opening.Run(where / "run").config()
    assert cfg.embedding == 3 and cfg.embedding_init == str(where / "vec.txt") and cfg.freeze_embedding
    vocab = opening.Run(where / "run").vocab()
    E = checkpoint(where / "run")["param/E"]
    assert E.dtype == np.float32
    rows = {line.split()[0]: np.array(line.split()[1:], np.float64).astype(np.float32) for line in VECTORS.splitlines()}
    for token in ("the", "The", "cat", "sat", "mat"):
        assert np.array_equal(E[vocab.index[token]], rows[token.lower()]), token
    marker = json.loads((where / "run" / "run.json").read_text())["data"]["embedding_init"]
    assert marker["bytes"] == len(VECTORS) and len(marker["sha256"]) == 64


@pytest.mark.parametrize("args, message", [
    (["--embedding", "5"], r"--embedding-init: {vec}: its vectors have 3 values \(line 1\), but the embedding has 5: "
                           r"give --embedding 3, or leave --embedding out to take the file's size"),
    (["--embedding-init", "missing.txt"], r"--embedding-init: {where}/missing\.txt: file not found"),
    (["--embedding-init", "bad.txt"], r"--embedding-init: {where}/bad\.txt: line 2: 'x' is not a number \(value 2 of "
                                      r"the vector of 'cat'\)"),
    (["--embedding-init", "short.txt"], r"--embedding-init: {where}/short\.txt: line 3: 2 values, expected 3 as in the "
                                        r"lines before; every vector must have the same size"),
    (["--embedding-init", "empty.txt"], r"--embedding-init: {where}/empty\.txt: the file is empty"),
    (["--embedding-init", "vectors.bin"], r"--embedding-init: {where}/vectors\.bin: line 2: binary data, not text; "
                                          r"bptt reads text files: convert a binary word2vec file"),
    (["--embedding", "0"], r"--embedding-init: needs an embedding E; --embedding 0 means one-hot inputs, which have "
                           r"none: give --embedding > 0 or leave it out \(the vectors' size\)"),
    (["--freeze-embedding", "--tie", "--hidden", "3"], r"--freeze-embedding: with --tie, E is also the readout, which "
                                                       r"would never be trained; drop --tie or --freeze-embedding"),
])
def test_each_refusal_is_one_line_and_leaves_nothing_behind(where, capsys, args, message):
    (where / "bad.txt").write_text("the 1 2 3\ncat 1 x 3\n")
    (where / "short.txt").write_text("the 1 2 3\ncat 1 2 3\nsat 1 2\n")
    (where / "empty.txt").write_text("")
    (where / "vectors.bin").write_bytes(b"2 3\nthe " + np.ones(3, np.float32).tobytes() + b"\ncat \x00\x00\x80?\n")
    argv = ["train", "run", "--data", "words.txt", "--level", "word", "--embedding-init", "vec.txt", "--steps", "1",
            *SMALL, *args]
    assert main(argv) == 2
    line = error(capsys)
    assert re.match("error: " + message.format(vec=re.escape(str(where / "vec.txt")), where=re.escape(str(where))),
                    line), line
    assert not (where / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--freeze-embedding", "--embedding", "0"], "error: --freeze-embedding: needs an embedding E; --embedding 0 means "
                                                 "one-hot inputs, which have none: give --embedding > 0"),
    (["--task", "adding", "--length", "6", "--embedding", "0", "--embedding-init", "vec.txt"],
     "error: --embedding-init: applies to a vocabulary's tokens (--task lm or classify) only; got "),
])
def test_the_options_that_do_not_apply(where, capsys, args, message):
    assert main(["train", "run", "--steps", "1", *SMALL, *args]) == 2
    assert error(capsys).startswith(message)
    assert not (where / "run").exists()


def test_a_classifier_trains_and_evaluates_from_the_vectors(where, capsys):
    (where / "train.tsv").write_text("".join(f"{'the cat' if i % 2 else 'a mat'} sat\t{'yes' if i % 2 else 'no'}\n"
                                             for i in range(30)))
    args = ["train", "clf", "--task", "classify", "--data", "train.tsv", "--level", "word", "--embedding-init",
            "vec.txt", "--freeze-embedding", "--steps", "6", "--hidden", "6", "--layers", "1", "--batch", "4",
            "--eval-every", "3", "--eval-batch", "2"]
    assert main(args) == 0
    assert "accuracy" in capsys.readouterr().out
    vocab = opening.Run(where / "clf").vocab()
    best = checkpoint(where / "clf", "best.safetensors")["param/E"]
    assert best[vocab.index["cat"]].tolist() == np.float32([1.5, 2.25, -3]).tolist()
    assert main(["eval", "clf", "--data", "train.tsv", "--json"]) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["accuracy"] <= 1


def test_a_character_model_looks_up_its_characters(where):
    (where / "chars.txt").write_text("t 1 0\nh 0 1\nT 5 5\n, 2 2\n")
    assert main(["train", "run", "--data", "words.txt", "--embedding-init", "chars.txt", "--freeze-embedding",
                 "--steps", "1", *SMALL]) == 0
    vocab = opening.Run(where / "run").vocab()
    E = checkpoint(where / "run")["param/E"]
    assert E.shape == (vocab.size, 2)
    assert E[vocab.index["t"]].tolist() == [1, 0] and E[vocab.index["T"]].tolist() == [5, 5]


def test_a_resume_needs_no_file_and_equals_an_uninterrupted_run(where, capsys):
    common = ["--data", "words.txt", "--level", "word", "--embedding-init", "vec.txt", "--dtype", "float64", *SMALL]
    assert main(["train", "whole", "--steps", "6", *common]) == 0
    assert main(["train", "split", "--steps", "3", *common]) == 0
    (where / "vec.txt").unlink()
    assert main(["train", "split", "--resume", "--steps", "6"]) == 0
    assert "resuming at step 3" in capsys.readouterr().err
    a, b = checkpoint(where / "whole"), checkpoint(where / "split")
    assert a.keys() == b.keys() and "param/E" in a
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    assert main(["sample", "split", "--tokens", "5"]) == 0            # and the trained run needs no file either


def test_the_help_describes_both_options(capsys):
    assert main(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--embedding-init EMBEDDING_INIT a file of pretrained word vectors" in out
    assert "--freeze-embedding keep the embedding E as initialised" in out


def test_the_header_says_how_many_words_were_found(where, capsys):
    assert main(["train", "run", "--data", "words.txt", "--level", "word", "--embedding-init", "vec.txt",
                 "--steps", "1", *SMALL]) == 0
    assert ("embedding: 5 of 12 words from vec.txt (41.7%, 1 of them lowercased), the rest random with the vectors' "
            "standard deviation ") in capsys.readouterr().err
    assert main(["train", "frozen", "--data", "words.txt", "--freeze-embedding", "--embedding", "3", "--steps", "1",
                 *SMALL]) == 0
    assert "embedding: random N(0, 1) as initialised, frozen (not trained)" in capsys.readouterr().err
