"""Files written atomically (a crash mid-write never leaves a broken file), and arrays in
safetensors with a checksum: a run's checkpoints, a saved Network, reports. Below every layer
but checks, so that the model layer can save a Network as training saves a run (imports:
numpy and safetensors only).

Every write goes to a temporary file in the same directory, is flushed and fsynced, then renamed
over the target (os.replace is atomic on POSIX), and the directory entry is fsynced. A reader
sees the old file or the new one, never half of one.

Arrays go to safetensors (the weights, the optimiser state, the carried hidden state); the small
things that make a resume exact (step, position, RNG state, schedule) go in the same file's
metadata as JSON, so one rename commits all of them together. The metadata also holds the
SHA-256 of the tensors (names, dtypes, shapes and bytes), checked on every load: a flipped bit is
an error, never a silently different model.

A write that fails (a full disk, a read-only directory) raises FileError naming the file; the
previous version of the file is untouched and the temporary is removed.
"""

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save

META_KEY = "bptt"
CHECKSUM_KEY = "bptt.sha256"
TEMPORARY = ".{name}.*.tmp"                 # the glob of write_bytes_atomic's temporaries of file `name`


class FileError(ValueError):
    """A file of a run could not be written or read; the message names it and says what is kept."""


def os_error(path, e, kept=True):
    """FileError for an OSError e while writing path."""
    reason = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        reason += " (the disk is full or the file too large)"
    tail = "; its previous version is kept" if kept and Path(path).exists() else ""
    return FileError(f"{path}: cannot write ({reason}){tail}")


def write_bytes_atomic(path, data, replace=True):
    """data into the file path, all or nothing. replace=False: only as a new file; a file that
    appeared at path meanwhile is kept and the write refused (os.link, which never overwrites)."""
    path = Path(path)
    try:
        _write_atomic(path, data, replace)
    except FileExistsError:
        raise FileError(f"{path}: exists (it appeared while bptt wrote); bptt does not overwrite a file") from None
    except OSError as e:
        raise os_error(path, e) from None


def _write_atomic(path, data, replace=True):
    prefix, suffix = TEMPORARY.format(name=path.name).split("*")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)                            # mkstemp makes it 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)                                  # FileExistsError if path exists
            os.unlink(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check_new(path, overwrite=False, name="path", asked=" unless asked (overwrite=True)"):
    """path as a Path, where a file may be written: in an existing directory, and not over an
    existing file unless overwrite (a user's files are never overwritten unasked). name: the
    argument, for the errors; asked: how to ask for overwriting, if one may."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"{name}: expected a file in an existing directory, got {path} ({path.parent} does not exist)")
    if path.is_dir():
        raise ValueError(f"{name}: {path} is a directory; expected a file name")
    if path.exists() and not overwrite:
        raise ValueError(f"{name}: {path} exists; bptt does not overwrite a file{asked}")
    return path


def write_json_atomic(path, obj):
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path, what):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileError(f"{path}: no {what} here; is this a run directory made by 'bptt train'?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FileError(f"{path}: not a valid {what} file ({e})") from None
    except OSError as e:
        raise FileError(f"{path}: cannot read the {what} ({e.strerror})") from None


def checksum(arrays):
    """SHA-256 (hex) of the arrays' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.data)
    return h.hexdigest()


def save_arrays(path, arrays, meta, replace=True):
    """arrays: {name: np.ndarray}; meta: anything JSON can hold. replace: as write_bytes_atomic."""
    tensors = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    metadata = {META_KEY: json.dumps(meta, sort_keys=True), CHECKSUM_KEY: checksum(tensors)}
    write_bytes_atomic(path, save(tensors, metadata=metadata), replace)


def load_arrays(path, what="checkpoint", missing="is this a run directory made by 'bptt train'?"):
    """Returns (arrays, meta) from a file written by save_arrays, after checking its checksum.
    what: what the file should be, for the errors; missing: the hint when there is no file."""
    if not Path(path).is_file():
        raise FileError(f"{path}: no {what} here; {missing}")
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
            meta = json.loads(metadata[META_KEY])
            arrays = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise FileError(f"{path}: not a readable bptt {what} ({type(e).__name__}: {e})") from None
    expected = metadata.get(CHECKSUM_KEY)                   # absent in files written before checksums
    if expected is not None and checksum(arrays) != expected:
        raise FileError(f"{path}: corrupted: its tensors do not match the checksum written with them "
                        f"(a changed byte on disk); restore the file from a copy")
    if not isinstance(meta, dict):
        raise FileError(f"{path}: not a bptt {what} (its metadata is {type(meta).__name__}, expected an object)")
    return arrays, meta
