"""--resume trains only on the data and vocabulary the run started with, whatever file of the run
directory is missing or edited (issue 21, items 2 and 8). Each test fails on the code before it."""

import json

import pytest
from conftest import SMALL, TEXT

from bptt import files
from bptt.cli import main
from bptt.training import opening, rundir


def error(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("error: "), err
    return last


@pytest.fixture
def run(tmp_path, text, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--data", text, "--steps", "4", *SMALL]) == 0
    capsys.readouterr()
    return out


def resume(run, steps=6):
    return main(["train", str(run), "--resume", "--steps", str(steps)])


# item 2: the marker deleted ------------------------------------------------------------------------

def test_item2_without_run_json_a_changed_data_file_is_still_refused(run, text, capsys):
    (run / rundir.MARKER).unlink()
    with open(text, "a") as f:
        f.write("a line that was not there\n")
    assert resume(run) == 2
    assert "changed since the run started" in error(capsys)
    assert not (run / rundir.MARKER).exists()                     # nothing rewritten from the new file
    assert opening.Run(run).load()[3].step == 4


def test_item2_without_run_json_unchanged_data_resumes_and_the_marker_is_restored(run, capsys):
    before = json.loads((run / rundir.MARKER).read_text())
    (run / rundir.MARKER).unlink()
    assert resume(run) == 0
    assert json.loads((run / rundir.MARKER).read_text()) == before
    assert opening.Run(run).load()[3].step == 6


def test_item2_the_checkpoint_records_the_data_as_the_marker_does(run):
    progress = opening.Run(run).load()[3]
    assert progress.sources == json.loads((run / rundir.MARKER).read_text())["data"]
    assert progress.sources["data"]["sha256"] == rundir.fingerprint(progress.sources["data"]["path"])["sha256"]


def test_item2_a_run_with_neither_record_is_refused(run, capsys):
    """A checkpoint written before it recorded the data, and no marker: nothing to verify against."""
    r = opening.Run(run)
    arrays, meta = files.load_arrays(r.file("checkpoint.safetensors"))
    meta.pop("sources")
    files.save_arrays(r.file("checkpoint.safetensors"), arrays, meta)
    (run / rundir.MARKER).unlink()
    assert resume(run) == 2
    message = error(capsys)
    assert "run.json is missing" in message and "cannot be checked" in message
    assert not (run / rundir.MARKER).exists()


def test_item2_an_old_checkpoint_with_its_marker_resumes_and_then_records_the_data(run, capsys):
    r = opening.Run(run)
    arrays, meta = files.load_arrays(r.file("checkpoint.safetensors"))
    meta.pop("sources")
    files.save_arrays(r.file("checkpoint.safetensors"), arrays, meta)
    assert resume(run) == 0
    assert r.load()[3].sources == json.loads((run / rundir.MARKER).read_text())["data"]


# item 8: vocab.json edited, unsorted, missing ------------------------------------------------------

def test_item8_an_edited_vocabulary_is_named_on_resume(run, capsys):
    vocab = json.loads((run / "vocab.json").read_text())
    vocab["tokens"] = vocab["tokens"][:-1]                        # still sorted and valid, but not the data's
    (run / "vocab.json").write_text(json.dumps(vocab))
    assert resume(run) == 2
    message = error(capsys)
    assert f"{run / 'vocab.json'}: not the vocabulary of the run's training data" in message
    assert "--data" not in message


def test_item8_an_unsorted_vocabulary_names_the_file_and_entries(run, text, capsys):
    vocab = json.loads((run / "vocab.json").read_text())
    vocab["tokens"][3], vocab["tokens"][4] = vocab["tokens"][4], vocab["tokens"][3]
    (run / "vocab.json").write_text(json.dumps(vocab))
    for argv in (["eval", str(run), "--data", text], ["sample", str(run), "--tokens", "5"],
                 ["train", str(run), "--resume", "--steps", "6"]):
        assert main(argv) == 2
        message = error(capsys)
        assert str(run / "vocab.json") in message and "(entries 3 and 4)" in message, message


def test_item8_a_missing_vocabulary_says_resume_rebuilds_it(run, text, capsys):
    (run / "vocab.json").unlink()
    assert main(["eval", str(run), "--data", text]) == 2
    message = error(capsys)
    assert "missing" in message and "--resume" in message and "is this a run directory" not in message
    assert resume(run) == 0
    assert main(["eval", str(run), "--data", text]) == 0


def test_item8_an_unseen_label_in_eval_names_the_file_and_line(tmp_path, capsys):
    data = tmp_path / "train.tsv"
    data.write_text("".join(f"{'cat rat' if i % 2 else 'cat mat'}\t{i % 2}\n" for i in range(20)))
    out = tmp_path / "clf"
    assert main(["train", "--out", str(out), "--task", "classify", "--data", str(data), "--level", "word",
                 "--steps", "2", "--hidden", "4", "--layers", "1", "--embedding", "3", "--batch", "4"]) == 0
    capsys.readouterr()
    test = tmp_path / "test.tsv"
    test.write_text("cat mat\t0\n\ncat rat\t1\nrat mat\tmaybe\n")
    assert main(["eval", str(out), "--data", str(test)]) == 2
    message = error(capsys)
    assert f"{test}: line 4: label 'maybe' is not one the model was trained on ('0', '1')" in message


def test_item8_sample_seed_names_the_argument(run):
    import bptt

    with pytest.raises(ValueError, match=r"^seed: expected an int >= 0, got -1"):
        bptt.load(run).sample("RO", 5, seed=-1)


def test_item10_a_byte_order_mark_is_no_token(tmp_path, capsys):
    """A BOM at the start of a text or a TSV is stripped: no vocabulary entry, no part of a word,
    and bptt eval reads the file it trained on."""
    text = tmp_path / "bom.txt"
    text.write_bytes("\ufeff".encode() + TEXT.encode())
    out = tmp_path / "r"
    assert main(["train", "--out", str(out), "--data", str(text), "--steps", "2", *SMALL]) == 0
    assert "\ufeff" not in json.loads((out / "vocab.json").read_text())["tokens"]
    assert main(["eval", str(out), "--data", str(text), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["tokens"] == len(TEXT) - 1
    tsv = tmp_path / "bom.tsv"
    tsv.write_bytes("\ufeff".encode() + "".join(f"w{i % 3} x\t{i % 2}\n" for i in range(20)).encode())
    out = tmp_path / "c"
    assert main(["train", "--out", str(out), "--task", "classify", "--data", str(tsv), "--level", "word",
                 "--steps", "2", "--hidden", "4", "--layers", "1", "--embedding", "3", "--batch", "4"]) == 0
    assert json.loads((out / "vocab.json").read_text())["tokens"] == ["<eos>", "<unk>", "w0", "w1", "w2", "x"]
    assert main(["eval", str(out), "--data", str(tsv)]) == 0
