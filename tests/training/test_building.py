"""What a TrainConfig builds (bptt.training.building) and when the trainer builds its engine."""

import pytest

from bptt.model import engine
from bptt.training import building, tasks, train
from bptt.training.config import TrainConfig


@pytest.mark.parametrize("kw", [dict(cell="rnn"), dict(cell="gru", layers=3, embedding=0),
                                dict(cell="lstm", layers=2, embedding=8, tie=True),
                                dict(cell="skip", layers=2, skip=3, engine="numpy")])
def test_the_memory_estimate_counts_the_parameters_the_network_has(kw):
    cfg = TrainConfig(**({"hidden": 8, "embedding": 5, "dtype": "float64"} | kw))
    net = building.build_network(cfg, 11, 11)
    need, n = building.memory_needed(cfg, 11, 11)
    assert n == sum(p.size for p in net.params.values())
    assert need > n * 8 * 4                                   # params, grads, Adam's two slots, and the caches


def test_the_engine_is_built_before_the_first_step(tmp_path, text, monkeypatch):
    """The fast engine sets up the heap when it is built (bptt.fast.heap); the trainer builds it
    before its first step, although a Network alone does not."""
    events = []
    real_backend, real_batch = engine.backend, tasks.LanguageModel.batch
    monkeypatch.setattr(engine, "backend", lambda name: events.append(("backend", name)) or real_backend(name))
    monkeypatch.setattr(tasks.LanguageModel, "batch",
                        lambda self, *a, **k: events.append(("batch",)) or real_batch(self, *a, **k))
    train.train(TrainConfig(data=text, hidden=6, embedding=3, batch=2, window=5, steps=1), tmp_path / "run")
    assert events[0] == ("backend", "fast") and ("batch",) in events
