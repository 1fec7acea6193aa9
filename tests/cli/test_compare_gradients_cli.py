"""bptt compare-gradients: the table, --json, the self-contained HTML page, and one-line errors."""

import base64
import io
import json
import re
from html.parser import HTMLParser

import pytest
from conftest import SMALL
from PIL import Image

from bptt.cli import main

TINY = ["--hidden", "4", "--steps", "8", "--batch", "2", "--seeds", "3"]


def error(capsys):
    out, err = capsys.readouterr()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err.strip()


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [(tag, k, v) for k, v in attrs if k in ("src", "href", "data", "srcset", "action")]


def images_of_self_contained(path):
    """The number of images of the page at path, after checking (as tests/training/test_problems.py
    does for diagnose's report) that it holds no script, link or external reference: every image is
    a whole PNG inline as a data: URI."""
    text = path.read_text()
    parser = Links()
    parser.feed(text)
    assert not {"script", "link", "iframe", "object"} & set(parser.tags)
    for tag, attr, value in parser.refs:
        assert tag == "img" and attr == "src" and value.startswith("data:image/png;base64,"), (tag, attr, value[:40])
        image = Image.open(io.BytesIO(base64.b64decode(value.split(",", 1)[1], validate=True)))
        image.verify()
        assert image.format == "PNG" and image.size[0] > 100
    assert not re.search(r"(https?:|file:|//[a-z])", re.sub(r'src="data:[^"]*"', "", text))
    return len(parser.refs)


def test_the_table_and_a_self_contained_page(tmp_path, capsys):
    page = tmp_path / "compare.html"
    assert main(["compare-gradients", *TINY, "--k", "1", "3", "8", "--out", str(page)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "fresh character-level lstm 1x4 (seed 0)" in lines[0]
    assert lines[1].split() == ["algorithm", "cosine", "relative", "error", "ms/step", "peak", "MiB", "KiB/step"]
    names = [line[:17].strip() for line in lines[2:-1]]
    assert names == ["BPTT", "TBPTT(1)", "TBPTT(3)", "TBPTT(8)", "RTRL", "UORO, mean of 3", "UORO, one run"]
    assert lines[5].split()[1:3] == ["1.000000", "0"]                   # TBPTT(T) is BPTT
    assert float(lines[6].split()[2]) < 1e-10                           # RTRL
    assert lines[-1] == f"report: {page}"
    assert images_of_self_contained(page) == 2
    html = page.read_text()
    assert "<td>TBPTT(3)</td>" in html and "<th>parameter</th>" in html and "UORO, one run" in html


def test_json_gives_the_numbers(capsys):
    assert main(["compare-gradients", *TINY, "--cell", "gru", "--layers", "2", "--json", "--seed", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["T"] == 8 and result["B"] == 2 and "gru 2x4 (seed 3)" in result["source"]
    rows = {r["algorithm"]: r for r in result["rows"]}
    assert list(rows) == ["BPTT", "TBPTT(1)", "TBPTT(2)", "TBPTT(5)", "TBPTT(8)", "RTRL", "UORO, mean of 3"]
    assert rows["TBPTT(8)"]["relative_error"] == 0 and rows["RTRL"]["relative_error"] < 1e-10
    assert rows["TBPTT(1)"]["cosine"] < 1 and len(rows["UORO, mean of 3"]["seed_cosine"]["values"]) == 3
    assert set(rows["RTRL"]["per_parameter"]) == {"V", "c", "l0.W", "l0.U", "l0.b", "l0.b_U", "l1.W", "l1.U", "l1.b",
                                                  "l1.b_U"}


def test_no_rtrl_and_no_uoro(capsys):
    assert main(["compare-gradients", *TINY[:-2], "--seeds", "0", "--no-rtrl", "--json"]) == 0
    assert [r["algorithm"] for r in json.loads(capsys.readouterr().out)["rows"]] == [
        "BPTT", "TBPTT(1)", "TBPTT(2)", "TBPTT(5)", "TBPTT(8)"]


def test_a_trained_run(tmp_path, text, capsys):
    run = tmp_path / "run"
    assert main(["train", str(run), "--data", text, "--steps", "2", *SMALL]) == 0
    capsys.readouterr()
    assert main(["compare-gradients", str(run), "--steps", "6", "--batch", "2", "--seeds", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["T"] == 6 and f"run {run} (lstm 1x10" in result["source"]
    assert "E" in result["rows"][0]["per_parameter"]                    # the run's embedding
    assert {r["algorithm"]: r for r in result["rows"]}["RTRL"]["relative_error"] < 1e-10
    assert main(["compare-gradients", str(run), "--steps", "1000"]) == 2
    assert re.fullmatch(r"error: --steps: the validation data holds \d+ steps in each of 4 streams; give at most "
                        r"\d+ steps, or fewer rows", error(capsys))
    skip = tmp_path / "skip"
    assert main(["train", str(skip), "--data", text, "--steps", "1", *SMALL, "--cell", "skip"]) == 0
    capsys.readouterr()
    assert main(["compare-gradients", str(skip), "--steps", "4"]) == 2
    assert error(capsys) == "error: RUN_DIR: the run's network: cell: RTRL and UORO run rnn, gru, lstm; got cell='skip'"


@pytest.mark.parametrize("argv, message", [
    (["--steps", "8", "--k", "9"], "error: --k: expected one or more k from 1 to T = 8"),
    (["--k", "0"], "error: --k: expected a positive int, got '0'"),
    (["--seeds", "-1"], "error: --seeds: expected an int >= 0, got '-1'"),
    (["--batch", "1.5"], "error: --batch: expected a positive int, got '1.5'"),
    (["--cell", "skip"], "error: --cell: invalid choice: 'skip'"),
    (["--hidden", "600", "--seeds", "0"], "error: --no-rtrl: RTRL on this network carries influence matrices of "),
    (["RUN", "--cell", "gru"], "error: --cell: applies to the fresh network, without RUN_DIR"),
    (["RUN", "--hidden", "8"], "error: --hidden: applies to the fresh network, without RUN_DIR"),
    (["--out", "PAGE"], "error: --out: "),
    (["--out", "MISSING/page.html"], "error: --out: expected a file in an existing directory"),
])
def test_errors_are_one_line_naming_the_flag(tmp_path, capsys, argv, message):
    page = tmp_path / "page.html"
    page.write_text("mine")
    argv = [{"RUN": str(tmp_path / "run"), "PAGE": str(page), "MISSING/page.html": str(tmp_path / "no" / "p.html")}
            .get(a, a) for a in argv]
    assert main(["compare-gradients", *argv]) == 2
    assert error(capsys).startswith(message)
    assert page.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]


def test_diagnose_adds_the_comparison(tmp_path, text, capsys):
    run = tmp_path / "run"
    assert main(["train", str(run), "--data", text, "--steps", "2", *SMALL]) == 0
    page = tmp_path / "report.html"
    assert main(["diagnose", str(run), "--out", str(page), "--compare-gradients"]) == 0
    assert images_of_self_contained(page) == 5              # norms, singular values, truncation, and the two here
    html = page.read_text()
    assert "<h2>Each gradient against full BPTT</h2>" in html and "<td>RTRL</td>" in html
    assert "<td>UORO, one run</td>" in html
    assert f"On run {run} (lstm 1x10" in html
    skip = tmp_path / "skip"
    assert main(["train", str(skip), "--data", text, "--steps", "1", *SMALL, "--cell", "skip"]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(skip), "--compare-gradients"]) == 2
    assert error(capsys) == "error: --compare-gradients: cell: RTRL and UORO run rnn, gru, lstm; got cell='skip'"
    assert not (skip / "diagnose").exists()                  # refused before anything is written
    assert main(["diagnose", str(skip)]) == 0                # without it, as before
