"""Long-range problems: generators, baselines, the sweep, figures and self-contained HTML reports."""

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from bptt.cli import main
from bptt.lab import sweep
from bptt.training import opening, problems, train
from bptt.training.config import TrainConfig


def test_adding_problem():
    x, y = problems.adding(20, 500, np.random.default_rng(0))
    assert x.shape == (20, 500, 2) and y.shape == (500, 1)
    assert np.all(x[:, :, 1].sum(axis=0) == 2)
    assert np.all(x[:10, :, 1].sum(axis=0) == 1)                       # one marker in each half
    assert np.allclose(y[:, 0], (x[:, :, 0] * x[:, :, 1]).sum(axis=0))
    assert np.mean((y - 1) ** 2) == pytest.approx(1 / 6, abs=0.02)      # the baseline of answering 1


def test_copy_problem_and_its_baseline():
    T = 30
    x, y = problems.copy(T, 4, np.random.default_rng(0))
    assert x.shape == y.shape == (T + 20, 4)
    assert np.array_equal(y[-10:], x[:10]) and np.all(x[T + 9] == 9) and np.all(y[:-10] == 0)
    # blank, then a uniform guess over the 8 symbols: exactly the documented baseline
    p = np.zeros((T + 20, 4, 9))
    p[:-10, :, 0] = 1
    p[-10:, :, 1:] = 1 / 8
    ce = -np.log(np.take_along_axis(p, y[..., None], axis=-1)).mean()
    assert ce == pytest.approx(problems.PROBLEMS["copy"].baseline(T))


def test_order_and_sentiment():
    x, y = problems.order(50, 200, np.random.default_rng(1))
    relevant = x >= 4
    assert np.all(relevant.sum(axis=0) == 2) and set(np.unique(y)) == {0, 1, 2, 3}
    first = x[relevant.argmax(axis=0), np.arange(200)]
    assert np.all(first - 4 == y // 2)
    x, y = problems.sentiment(15, 100, np.random.default_rng(2))
    assert np.array_equal(x[0] == 0, y == 1) and np.all(x[1:] >= 1)


def test_a_problem_trains_and_resumes(tmp_path):
    cfg = TrainConfig(task="sentiment", length=6, cell="gru", hidden=8, layers=1, embedding=0, batch=16,
                      steps=60, eval_every=20, lr=5e-2, test_size=100, dtype="float64")
    out = train.train(cfg, tmp_path / "run")
    assert out.valid["solved"] and out.valid["accuracy"] > 0.99
    train.train(cfg, tmp_path / "split", on_step=lambda p: p.step == 30)
    train.train(cfg, tmp_path / "split", resume=True)
    a = opening.Run(tmp_path / "run").load()[0]
    b = opening.Run(tmp_path / "split").load()[0]
    assert all(np.array_equal(a[k], b[k]) for k in a)


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [(tag, k, v) for k, v in attrs if k in ("src", "href", "data", "srcset", "action")]


def check_self_contained(path):
    text = path.read_text()
    parser = Links()
    parser.feed(text)
    assert not {"script", "link", "iframe", "object"} & set(parser.tags)
    assert parser.refs, "no image at all"
    for tag, attr, value in parser.refs:
        assert tag == "img" and attr == "src" and value.startswith("data:image/png;base64,"), (tag, attr, value[:40])
        png = base64.b64decode(value.split(",", 1)[1], validate=True)
        image = Image.open(io.BytesIO(png))
        image.verify()                                               # decodes, and is a whole PNG
        assert image.format == "PNG" and image.size[0] > 100
    assert not re.search(r"(https?:|file:|//[a-z])", re.sub(r'src="data:[^"]*"', "", text))
    return len(parser.refs)


def test_task_sweep_with_report(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["task", "sentiment", "--lengths", "4", "8", "--cells", "rnn-tanh", "gru", "--steps", "10",
            "--hidden", "6", "--batch", "8", "--test-size", "50", "--out", str(out), "--report"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("solved") + printed.count("failed") >= 4 and "report:" in printed
    results = (out / "results.json").read_text()
    assert '"cell": "gru"' in results and '"T": 8' in results
    assert check_self_contained(out / "report.html") == 3
    assert (out / "success.svg").exists() and (out / "gradient_norms.png").exists()


def test_diagnose_report(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("to be or not to be, that is the question\n" * 40)
    run = tmp_path / "run"
    assert main(["train", "--data", str(text), "--out", str(run), "--hidden", "8", "--layers", "2", "--embedding",
                 "4", "--batch", "4", "--window", "10", "--steps", "12", "--eval-every", "6", "--flow-every", "3"]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(run)]) == 0
    assert "report:" in capsys.readouterr().out
    assert check_self_contained(run / "diagnose" / "report.html") == 4     # norms, singular values, truncation,
                                                                            # heat map
    records = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"flow"' in line]
    assert len(records) == 4                                                 # steps 3, 6, 9, 12


def test_sweep_errors(tmp_path):
    with pytest.raises(ValueError, match="cells: unknown"):
        sweep.run(TrainConfig(), "adding", [5], ["transformer"], tmp_path)
    with pytest.raises(ValueError, match="problem: expected one of"):
        problems.get("parity")
