"""bptt.files: checkpoints and JSON written atomically, checksummed, and read back with errors that
name the file."""

import json
import os

import numpy as np
import pytest

from bptt import files


def test_round_trip(tmp_path):
    arrays = {"param/l0.W": np.arange(6, dtype=np.float32).reshape(2, 3), "optim/step": np.array([3.0])}
    meta = {"step": 3, "rng": {"state": {"state": 2**100 + 7, "inc": 5}}}
    files.save_arrays(tmp_path / "c.safetensors", arrays, meta)
    loaded, meta2 = files.load_arrays(tmp_path / "c.safetensors")
    assert meta2 == meta
    assert loaded.keys() == arrays.keys()
    assert all(np.array_equal(loaded[k], arrays[k]) and loaded[k].dtype == arrays[k].dtype for k in arrays)


def test_a_crash_mid_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    files.save_arrays(path, {"a": np.ones(3)}, {"step": 1})
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("simulated power cut before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(files.FileError, match="c.safetensors: cannot write .simulated.*previous version is kept"):
        files.save_arrays(path, {"a": np.zeros(1000)}, {"step": 2})
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]               # no temporary file left behind
    assert files.load_arrays(path)[1] == {"step": 1}


def test_a_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "c.safetensors"
    files.save_arrays(path, {"a": np.ones(100)}, {"step": 1})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="c.safetensors: not a readable bptt checkpoint"):
        files.load_arrays(path)
    with pytest.raises(ValueError, match="no checkpoint here"):
        files.load_arrays(tmp_path / "missing.safetensors")


def test_json(tmp_path):
    files.write_json_atomic(tmp_path / "config.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "config.json").read_text()) == {"a": [1, 2], "b": 1}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json: not a valid config file"):
        files.read_json(tmp_path / "bad.json", "config")


def test_a_new_file_is_never_written_over_one_that_appeared(tmp_path):
    """replace=False (Network.save, bptt export): a file that appears at the path between the check
    and the write is kept, the write refused by name, no temporary left behind."""
    from bptt import files

    path = tmp_path / "model.safetensors"
    files.write_bytes_atomic(path, b"new", replace=False)
    assert path.read_bytes() == b"new"
    with pytest.raises(files.FileError, match=r"model\.safetensors: exists .*does not overwrite"):
        files.write_bytes_atomic(path, b"other", replace=False)
    assert path.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    files.write_bytes_atomic(path, b"replaced")                  # the default: an atomic replace
    assert path.read_bytes() == b"replaced"
