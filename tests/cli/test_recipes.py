"""bptt train --recipe: a named set of options, the command line's own winning; config.json holds the
values as if they had been typed; the paper-sized recipe builds the network it describes."""

import json

import numpy as np

from bptt.cli import main
from bptt.training import building, recipes
from bptt.training.config import TrainConfig


def test_awd_lstm_fills_what_is_not_given(tmp_path, capsys):
    text = tmp_path / "words.txt"
    text.write_text("the cat sat on the mat and the dog sat on the log\n" * 40)
    run = tmp_path / "run"
    assert main(["train", str(run), "--recipe", "awd-lstm", "--data", str(text), "--hidden", "16", "--embedding", "16",
                 "--window", "8", "--steps", "3", "--eval-every", "3"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("recipe awd-lstm: --level word --cell lstm --optimizer nt-asgd --lr 30 --clip 0.25 ")
    assert "--hidden" not in err.splitlines()[0] and "--window" not in err.splitlines()[0]
    cfg = json.loads((run / "config.json").read_text())
    expected = recipes.RECIPES["awd-lstm"] | {"hidden": 16, "embedding": 16, "window": 8}
    assert {k: cfg[k] for k in expected} == expected
    assert main(["train", str(run), "--resume", "--recipe", "awd-lstm"]) == 2
    assert "--recipe: a resumed run keeps its saved options" in capsys.readouterr().err


def test_the_paper_recipe_builds_its_network():
    cfg = TrainConfig(**recipes.RECIPES["awd-lstm-paper"])
    shape = building.arch(cfg, 10000, 10000)
    assert (shape.hidden_size, shape.proj_size, shape.embedding_dim, shape.num_layers) == (1150, 400, 400, 3)
    assert shape.tie_weights and shape.param_shapes()["l0.U"] == (4600, 400)
    need, n = building.memory_needed(cfg, 10000, 10000)
    assert n == 16_457_600 and need > 0                         # the paper's PTB model: 24M
    assert np.isfinite(need)


def test_with_the_adaptive_softmax_the_recipe_leaves_the_embedding_untied(tmp_path, capsys):
    """That readout has no matrix to share with the embedding: the recipe's tie is not used, and
    everything else is."""
    options, used = recipes.apply("awd-lstm", {"adaptive_softmax": "20,40"})
    assert "tie" not in used and "tie" not in options
    assert used == {k: v for k, v in recipes.RECIPES["awd-lstm"].items() if k != "tie"}
    assert recipes.apply("awd-lstm", {})[0]["tie"] is True
    text = tmp_path / "words.txt"
    words = " ".join(f"w{i % 97}" for i in range(3000))
    text.write_text("\n".join(words[i:i + 60] for i in range(0, len(words), 60)))
    run = tmp_path / "run"
    assert main(["train", str(run), "--recipe", "awd-lstm", "--data", str(text), "--hidden", "16", "--embedding", "16",
                 "--adaptive-softmax", "20,40", "--window", "8", "--steps", "2", "--eval-every", "2"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["tie"] is False and cfg["adaptive_softmax"] == "20,40" and cfg["weight_drop"] == 0.5
