"""Files of a run, written atomically: a crash mid-write never leaves a broken file.

Every write goes to a temporary file in the same directory, is flushed and fsynced, then renamed
over the target (os.replace is atomic on POSIX), and the directory entry is fsynced. A reader
sees the old file or the new one, never half of one.

Arrays go to safetensors (the weights, the optimiser state, the carried hidden state); the small
things that make a resume exact (step, position, RNG state, schedule) go in the same file's
metadata as JSON, so one rename commits all of them together.
"""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save

META_KEY = "bptt"


def write_bytes_atomic(path, data):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)                            # mkstemp makes it 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json_atomic(path, obj):
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path, what):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no {what} here; is this a run directory made by 'bptt train'?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid {what} file ({e})") from None


def save_arrays(path, arrays, meta):
    """arrays: {name: np.ndarray}; meta: anything JSON can hold."""
    tensors = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    write_bytes_atomic(path, save(tensors, metadata={META_KEY: json.dumps(meta, sort_keys=True)}))


def load_arrays(path):
    """Returns (arrays, meta) from a file written by save_arrays."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: no checkpoint here; is this a run directory made by 'bptt train'?")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = json.loads(f.metadata()[META_KEY])
            arrays = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise ValueError(f"{path}: not a readable bptt checkpoint ({type(e).__name__}: {e})") from None
    return arrays, meta
