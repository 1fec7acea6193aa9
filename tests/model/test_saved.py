"""Network.save and Network.load: one safetensors file holds the weights, architecture and dtype;
the round trip gives the same numbers for every cell and input kind; a user's file is never
overwritten unasked; a foreign, corrupted or missing file is a clear error."""

import numpy as np
import pytest

import bptt
from bptt import files

KINDS = [dict(cell="lstm", embedding_dim=5), dict(cell="gru"), dict(cell="rnn", nonlinearity="relu"),
         dict(cell="skip", skip=3), dict(cell="lstm", embedding_dim=8, tie_weights=True)]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: "-".join(f"{v}" for v in k.values()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_gives_the_same_network(tmp_path, kind, dtype):
    net = bptt.Network(input_size=12, hidden_size=8, output_size=12, num_layers=2, dtype=dtype, seed=3, **kind)
    path = tmp_path / "model.safetensors"
    net.save(path)
    back = bptt.Network.load(path)
    assert back.arch == net.arch and back.dtype == net.dtype
    assert list(back.params) == list(net.params)
    assert all(np.array_equal(back.params[k], net.params[k]) and back.params[k].dtype == dtype for k in net.params)
    x = np.random.default_rng(0).integers(0, 12, (5, 3))
    assert np.array_equal(back.forward(x)[0], net.forward(x)[0])


def test_engine_can_be_chosen_at_load(tmp_path):
    net = bptt.Network("gru", 10, 6, 10, dtype=np.float64)
    net.save(tmp_path / "m.safetensors")
    ref = bptt.Network.load(tmp_path / "m.safetensors", engine="numpy")
    assert ref.arch.engine == "numpy" and net.arch.engine == "fast"
    x = np.random.default_rng(1).integers(0, 10, (4, 2))
    assert np.max(np.abs(ref.forward(x)[0] - net.forward(x)[0])) < 1e-12


def test_a_users_file_is_not_overwritten_unasked(tmp_path):
    net = bptt.Network("rnn", 6, 4, 6)
    path = tmp_path / "mine.safetensors"
    path.write_bytes(b"precious")
    with pytest.raises(ValueError, match=r"path: .*mine\.safetensors exists; bptt does not overwrite"):
        net.save(path)
    assert path.read_bytes() == b"precious"
    net.save(path, overwrite=True)
    assert bptt.Network.load(path).arch == net.arch
    with pytest.raises(ValueError, match="path: expected a file in an existing directory"):
        net.save(tmp_path / "no" / "such.safetensors")
    with pytest.raises(ValueError, match="is a directory"):
        net.save(tmp_path, overwrite=True)


def test_foreign_corrupted_and_missing_files_are_named(tmp_path):
    with pytest.raises(files.FileError, match=r"no saved network here; expected a file written by Network\.save"):
        bptt.Network.load(tmp_path / "absent.safetensors")
    other = tmp_path / "arrays.safetensors"
    files.save_arrays(other, {"a": np.ones(3)}, {"step": 1})                  # a run's checkpoint, say
    with pytest.raises(files.FileError, match=r"not a saved bptt network .*bptt\.load\(RUN_DIR\)"):
        bptt.Network.load(other)
    path = tmp_path / "m.safetensors"
    bptt.Network("lstm", 6, 4, 6, dtype=np.float64).save(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF                                                           # a flipped bit in a weight
    path.write_bytes(bytes(data))
    with pytest.raises(files.FileError, match="corrupted"):
        bptt.Network.load(path)
    (tmp_path / "text.safetensors").write_text("not safetensors")
    with pytest.raises(files.FileError, match="not a readable bptt saved network"):
        bptt.Network.load(tmp_path / "text.safetensors")
