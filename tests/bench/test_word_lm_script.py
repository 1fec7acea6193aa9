"""benchmarks/word_lm.py: bptt and PyTorch side by side on the word-level language model, on a
budget of two training steps. Nothing here asserts on a time."""

import math

import pytest

from bptt.training import building, tasks

torch = pytest.importorskip("torch")


def table_rows(out):
    """{framework: [the row's cells]} of the printed table."""
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == ["1"]]
    return {cells[1]: cells for cells in rows}


def test_both_frameworks_train_the_same_model_without_dropout(script, capsys):
    word_lm = script("word_lm")
    assert word_lm.main(["--epochs", "0.005", "--dropout", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CPU: ") and "bptt's kernels: " in out.splitlines()[0]
    assert out.splitlines()[1].startswith("threads: bptt ") and "(torch 2." in out.splitlines()[1]
    rows = table_rows(out)
    assert sorted(rows) == ["PyTorch", "bptt"]
    scored = tasks.scored(24626, 10)                            # the validation text's tokens, 10 streams
    for cells in rows.values():
        assert cells[2] == "2"                                  # steps: ceil(0.005 * 312)
        assert int(cells[8].replace(",", "")) == scored
        assert all(float(c.replace(",", "")) > 0 for c in cells[3:8])
    ppl = {name: float(cells[9]) for name, cells in rows.items()}
    assert all(math.isfinite(p) and p > 1 for p in ppl.values())          # lr 20 overshoots at first: not < V
    # the same weights, windows and updates: only float32 rounding differs
    assert ppl["PyTorch"] == pytest.approx(ppl["bptt"], rel=1e-2)
    assert "PyTorch s / bptt s, all epochs: training " in out and "final validation perplexity: bptt " in out


def test_pytorch_validation_scores_the_tokens_bptt_scores(script):
    word_lm = script("word_lm")
    cfg = word_lm.config(epochs=1, dropout=0.2)
    task = tasks.LanguageModel(cfg)
    net = building.build_network(cfg, task.input_size, task.output_size)
    model = word_lm.torch_model(net, cfg.dropout)
    assert sorted(model.state_dict()) == sorted(net.torch_state_dict())
    ids = task.valid[:2003]                                     # 10 streams of 200: 3 tokens trimmed
    theirs, count = word_lm.torch_validate(model, ids, cfg)     # eval mode: no dropout
    ours, ours_count = tasks.lm_loss(net.params, net.arch, ids, cfg.eval_batch, cfg.window)
    assert count == ours_count == tasks.scored(2003, 10) == 1990
    assert theirs == pytest.approx(ours, abs=1e-5)
    torch.manual_seed(0)
    word_lm.torch_train_epoch(model, task.stream, cfg, cfg.lr, steps=1)   # with dropout
    after, _ = word_lm.torch_validate(model, ids, cfg)
    assert math.isfinite(after) and after < theirs
