"""The arithmetic of data-parallel training without MPI (bptt.training.ranks: rows_of_batch,
share_of_targets): each rank's gradients of its rows, weighted by its share of the targets and
summed, are the whole batch's, with dropout masks cut from the whole batch's, in float64 to 1e-12.
tests/training/test_ranks_mpi.py runs the same under mpiexec."""

import numpy as np
import pytest

from bptt.model import engine
from bptt.model.network import Network
from bptt.training import ranks as ranks_
from bptt.training.ranks import Ranks, rows_of, rows_of_batch, share_of_targets

T, B, V = 7, 7, 11


class Rank:
    """A stand-in for the communicator of rank `rank` of `size` (rows, checks: no messages)."""

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size


def lm_batch(rng):
    loss_mask = np.ones((T, B), bool)
    loss_mask[:2] = False                                             # TBPTT(k1, k2 > k1): no loss at first
    return dict(x=rng.integers(0, V, (T, B)), y=rng.integers(0, V, (T, B)), loss_mask=loss_mask,
                reset=rng.random((T, B)) < 0.2)


def classify_batch(rng):
    lengths = rng.integers(1, T + 1, B)
    x = rng.integers(0, V, (T, B)) * (np.arange(T)[:, None] < lengths)
    return dict(x=x, y=rng.integers(0, 3, B), target="last", lengths=lengths)


@pytest.mark.parametrize("engine_name", ["numpy", "fast"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("make_batch, K", [(lm_batch, V), (classify_batch, 3)])
@pytest.mark.parametrize("size", [2, 3])
def test_weighted_rank_gradients_sum_to_the_whole_batch(engine_name, cell, make_batch, K, size):
    rng = np.random.default_rng(0)
    net = Network(cell, V, 9, K, num_layers=2, embedding_dim=5, dtype=np.float64, seed=1, engine=engine_name)
    batch = make_batch(rng)
    state = None
    if make_batch is lm_batch:
        state = engine.logits(net.params, net.arch, rng.integers(0, V, (3, B)))[1]     # a carried state
    whole = engine.loss_and_grads(net.params, net.arch, state=state, **batch, dropout=0.3, rng=np.random.default_rng(5))
    loss, grads, finals = 0.0, {k: np.zeros_like(g) for k, g in whole.grads.items()}, []
    for rank in range(size):
        rows = Ranks(Rank(rank, size)).rows(B)
        mine = rows_of_batch(batch, rows)
        share = share_of_targets(batch, mine)
        r = engine.loss_and_grads(net.params, net.arch, state=rows_of(state, rows), **mine, dropout=0.3,
                                  rng=np.random.default_rng(5), dropout_rows=(rows.start, rows.stop, B))
        loss += share * r.loss
        for k in grads:
            grads[k] += share * r.grads[k]
        finals.append(r.state)
    assert loss == pytest.approx(whole.loss, rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], whole.grads[k], rtol=1e-12, atol=1e-14, err_msg=k)
    if make_batch is lm_batch:
        def as_tuple(s):
            return s if isinstance(s, tuple) else (s,)

        for part, joined in zip(as_tuple(whole.state), zip(*map(as_tuple, finals))):
            np.testing.assert_allclose(np.concatenate(joined, axis=1), part, rtol=1e-12, atol=1e-14)


def test_without_the_whole_batchs_masks_the_ranks_differ():
    """The check above can fail: masks drawn for the rank's rows alone are not the whole batch's."""
    rng = np.random.default_rng(0)
    net = Network("gru", V, 9, V, embedding_dim=5, dtype=np.float64, seed=1)
    batch = lm_batch(rng)
    whole = engine.loss_and_grads(net.params, net.arch, **batch, dropout=0.3, rng=np.random.default_rng(5))
    rows = Ranks(Rank(1, 2)).rows(B)
    mine = rows_of_batch(batch, rows)
    alone = engine.loss_and_grads(net.params, net.arch, **mine, dropout=0.3, rng=np.random.default_rng(5))
    cut = engine.loss_and_grads(net.params, net.arch, **mine, dropout=0.3, rng=np.random.default_rng(5),
                                dropout_rows=(rows.start, rows.stop, B))
    assert alone.loss != cut.loss
    z, _ = engine.logits(net.params, net.arch, batch["x"])
    assert np.isfinite(z).all() and whole.loss > 0


def test_targets_counted_is_the_mean_losss_denominator():
    rng = np.random.default_rng(1)
    lengths = np.array([3, 7, 1, 5])
    loss_mask = rng.random((7, 4)) < 0.6
    mask = (np.arange(7)[:, None] < lengths)[:, :, None]
    w = engine.position_weights(7, 4, mask, loss_mask)
    assert engine.targets_counted(7, 4, "every", lengths, loss_mask) == round(1 / w[w > 0][0])
    assert engine.targets_counted(7, 4, "every") == 28
    assert engine.targets_counted(7, 4, "every", lengths) == 16
    assert engine.targets_counted(7, 4, "last", lengths, None) == 4


@pytest.mark.parametrize("size, B", [(2, 8), (3, 7), (4, 2), (3, 1)])
def test_rows_are_contiguous_and_cover_the_batch(size, B):
    parts = [Ranks(Rank(r, size)).rows(B) for r in range(size)]
    assert parts[0].start == 0 and parts[-1].stop == B
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
    widths = [p.stop - p.start for p in parts]
    assert max(widths) - min(widths) <= 1


def test_a_batch_the_ranks_cannot_share_is_refused():
    Ranks(Rank(0, 4)).check_batch(8)
    with pytest.raises(ValueError, match=r"^--batch: 6 rows cannot be shared equally by 4 ranks \(mpiexec -n 4\); "
                                         r"give a --batch divisible by 4, or a number of ranks that divides 6$"):
        Ranks(Rank(1, 4)).check_batch(6)


def test_one_process_is_ranks_of_size_one():
    one = Ranks()
    assert (one.rank, one.size, one.root) == (0, 1, True)
    assert one.rows(5) == slice(0, 5)
    buffer = np.arange(3.0)
    assert one.sum(buffer) is buffer and one.send("x") == "x" and one.on_root(lambda: 7) == 7
    state = (np.zeros((1, 5, 2)), np.ones((1, 5, 2)))
    assert one.gather_rows(state) is state
    one.agree(None)
    error = ValueError("--data: gone")
    with pytest.raises(ValueError, match="--data: gone"):
        one.agree(error)


def test_an_error_every_rank_met_is_rank_0s_and_stopped_elsewhere():
    root, other = Ranks(Rank(0, 2)), Ranks(Rank(1, 2))
    error = ValueError("disk full")
    assert root.everywhere(error) is error and root.agreed(error)
    try:
        raise FileNotFoundError("x") from error
    except FileNotFoundError as wrapped:
        assert root.agreed(wrapped)
    assert not root.agreed(ValueError("disk full"))
    assert isinstance(other.everywhere(error), ranks_.Stopped)


@pytest.mark.parametrize("env, size", [({}, 1), ({"PMI_SIZE": "4"}, 4), ({"OMPI_COMM_WORLD_SIZE": "3"}, 3),
                                       ({"PMI_SIZE": ""}, 1)])
def test_the_launchers_size_comes_from_its_environment(monkeypatch, env, size):
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert ranks_.launched_size() == size
    if size == 1:
        assert ranks_.world().size == 1


@pytest.mark.parametrize("rows", [(0, 2, 7), (3, 9, 7), (2, 1, 7), [0, 7, 7], (0.0, 7, 7)])
def test_dropout_rows_asked_wrongly(rows):
    net = Network("rnn", V, 4, V, embedding_dim=3, dtype=np.float64)
    x = np.zeros((T, B), int)
    with pytest.raises(ValueError, match=r"^dropout_rows: expected \(start, stop, of\), ints with 0 <= start <= "
                                         r"stop <= of and stop - start = 7 \(the batch's rows\), got "):
        engine.loss_and_grads(net.params, net.arch, x, x, dropout=0.1, rng=0, dropout_rows=rows)


def test_a_rank_whose_copy_of_the_data_differs_is_refused(tmp_path):
    from bptt.files import FileError
    from bptt.training.config import TrainConfig
    from bptt.training.opening import check_copies, data_sources

    path = tmp_path / "text.txt"
    path.write_text("to be or not to be\n" * 20)
    cfg = TrainConfig(data=str(path), batch=2)
    sources = data_sources(cfg, {})
    check_copies(cfg, sources)                                   # the same file: nothing to say
    path.write_text("to be or not to be?\n" * 20)
    with pytest.raises(FileError, match=rf"^--data: this machine's {path} is not rank 0's \(400 bytes, sha256 "
                                        r"[0-9a-f]{12} here; 380 bytes, sha256 [0-9a-f]{12} on rank 0\); give every "
                                        r"machine the same file$"):
        check_copies(cfg, sources)


class Scripted(Rank):
    """Rank 1 of 2 whose messages from rank 0 are scripted, and whose Abort is recorded."""

    def __init__(self, received):
        super().__init__(1, 2)
        self.received, self.aborted = list(received), []

    def bcast(self, value, root=0):
        return self.received.pop(0)

    def Abort(self, code):
        self.aborted.append(code)


def test_an_error_of_one_rank_alone_is_printed_with_its_rank_and_aborts_the_job(monkeypatch, capsys, tmp_path):
    from bptt.cli import app
    from bptt.training import train
    from bptt.training.config import TrainConfig

    comm = Scripted([("ok", (str(tmp_path / "run"), {}, TrainConfig()))])
    monkeypatch.setattr(ranks_, "world", lambda: Ranks(comm))

    def fails(*args, **kwargs):
        raise RuntimeError("rank 1's own failure")

    monkeypatch.setattr(train, "train", fails)
    app.main(["train", str(tmp_path / "run")])
    assert comm.aborted == [3]
    assert capsys.readouterr().err == ("error: rank 1: internal error (RuntimeError: rank 1's own failure); this is a "
                                       "bug in bptt: please report it with the command line\n")


def test_an_error_rank_0_reports_ends_the_other_ranks_quietly(monkeypatch, capsys, tmp_path):
    from bptt.cli import app

    comm = Scripted([("failed", None)])                      # rank 0 could not settle the options
    monkeypatch.setattr(ranks_, "world", lambda: Ranks(comm))
    assert app.main(["train", str(tmp_path / "run"), "--hidden", "0"]) == 0
    assert comm.aborted == [] and capsys.readouterr().err == ""
