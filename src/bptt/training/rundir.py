"""The run directory: what bptt writes, when, and what it refuses to touch.

    RUN/run.json                the marker: this directory is a bptt run; the size and SHA-256 of
                                each data file it was trained on (resume refuses a changed file)
    RUN/config.json             the TrainConfig (data paths absolute)
    RUN/vocab.json              the vocabulary (sorted, built from the training text only)
    RUN/labels.json             classification: the label set
    RUN/checkpoint.safetensors  latest: weights, optimiser state, carried hidden state; its metadata
                                holds the step, the position in the stream, the RNG and schedule
                                state, and the tensors' checksum
    RUN/best.safetensors        the weights with the best validation loss so far
    RUN/metrics.jsonl           one JSON object per logged step and per validation
    RUN/.lock                   held (flock) by the one process training in RUN; the kernel
                                releases it when that process ends, however it ends

Guarantees:
- bptt starts a run only in a new or empty directory, and continues (--resume) only its own run,
  recognised by run.json; anything else is refused with a list of what is there.
- One process at a time trains in a run directory (the lock); a second is refused.
- Every file but metrics.jsonl is replaced atomically (bptt.files); an append to
  metrics.jsonl that fails is cut back, and a torn last line (a crash mid-append) is dropped on
  resume. Any other unreadable line is an error naming the file and line.
- Temporaries left by a killed writer (.NAME.*.tmp, for NAME one of the files above) are removed
  when the run is next opened; no other file is.
"""

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
from pathlib import Path

from .. import files
from ..files import FileError
from ..version import __version__
from . import data

MARKER = "run.json"
LOCK = ".lock"
FILES = ("config.json", "vocab.json", "labels.json", "checkpoint.safetensors", "best.safetensors", "metrics.jsonl")
CREATION = (MARKER, "config.json", "vocab.json", "labels.json")     # written before the first checkpoint
SHIPPED = "Tiny Shakespeare (shipped with bptt)"
PROBE = f".{MARKER}.probe.tmp"              # check_writable's test file, one of the run's temporaries


def fingerprint(path):
    """{"path": absolute path, "bytes": size, "sha256": hex} of a data file."""
    h, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    except OSError as e:
        raise FileError(f"{path}: cannot read the file ({e.strerror})") from None
    return {"path": str(Path(path).resolve()), "bytes": size, "sha256": h.hexdigest()}


def shipped_fingerprint(text):
    raw = text.encode()
    return {"path": None, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def is_temporary(name):
    """Whether name is a temporary of an atomic write of one of the run's files (bptt.files)."""
    return any(fnmatch.fnmatchcase(name, files.TEMPORARY.format(name=own)) for own in (*FILES, MARKER))


def check_writable(folder):
    """Probe folder with a temporary file: permissions, a read-only file system or a full disk show
    up here, before any work is done."""
    probe = Path(folder) / PROBE
    try:
        with open(probe, "wb") as f:
            f.write(b"bptt")
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as e:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise FileError(f"{folder}: cannot write in this directory ({e.strerror})") from None


class Busy(FileError):
    """Another process holds the run's lock."""

    def __init__(self, path, fd):
        owner = os.pread(fd, 64, 0).decode(errors="replace").strip()
        super().__init__(f"{path}: another bptt process is training in this run directory"
                         f"{' (pid ' + owner + ')' if owner else ''}; wait for it to end or use another directory")


class Directory:
    """The files of one run directory (bptt.training.opening.Run adds what is built from them)."""

    def __init__(self, path):
        self.path = Path(path)
        self._lock_fd = None

    def file(self, name):
        return self.path / name

    def exists(self):
        return self.file("checkpoint.safetensors").exists()

    def is_run(self):
        """Whether the directory is a bptt run: it has the marker, or (runs written before the marker
        existed) a config.json next to a checkpoint."""
        if self.file(MARKER).is_file():
            return True
        return self.file("config.json").is_file() and self.exists()

    # --- opening a directory -------------------------------------------------------------------

    def check_directory(self, option="--out"):
        """A ValueError unless the path is a directory (or absent)."""
        if self.path.exists() and not self.path.is_dir():
            raise FileError(f"{option}: {self.path} is a file, expected a run directory")

    def check_fresh(self, option="--out"):
        """Refuse to start a run anywhere but in a new or empty directory; nothing is written."""
        self.check_directory(option)
        if not self.path.exists():
            return
        present = {p.name for p in self.path.iterdir() if p.name != LOCK and not is_temporary(p.name)}
        if not present:
            return
        self.check_not_busy()
        if MARKER in present and present <= set(CREATION):
            return                  # a new run killed while it was being created: nothing but its own set-up
        if self.is_run():
            if self.exists():
                raise FileError(f"{option}: {self.path} already holds a run; pass --resume to continue it "
                                f"or choose another directory")
            raise FileError(f"{option}: {self.path} holds a bptt run whose checkpoint.safetensors is missing "
                            f"(it has {data.listing(sorted(present))}); nothing was changed: choose another directory")
        raise FileError(f"{option}: {self.path} is not empty and not a bptt run (it holds "
                        f"{data.listing(sorted(present))}); bptt starts a run only in a new or empty directory: "
                        f"choose another one")

    def check_resumable(self, option="--resume"):
        self.check_directory("RUN_DIR")
        if not self.path.is_dir():
            raise FileError(f"{option}: {self.path} does not exist; there is no run to resume")
        if not self.is_run():
            what = data.listing(sorted(p.name for p in self.path.iterdir())) or "nothing"
            raise FileError(f"{option}: {self.path} is not a bptt run directory (it holds {what})")
        if not self.exists():
            raise FileError(f"{option}: {self.path} has no checkpoint to resume from "
                            f"(checkpoint.safetensors is missing)")

    def check_writable(self):
        check_writable(self.path)

    def create(self):
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FileError(f"--out: cannot create {self.path} ({e.strerror})") from None

    def lock(self):
        """Hold the run's lock until release() or the end of the process. Raises Busy if another
        process holds it."""
        try:
            fd = os.open(self.file(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise FileError(f"{self.path}: cannot write in this directory ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            busy = Busy(self.path, fd)
            os.close(fd)
            raise busy from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        return self

    def check_not_busy(self):
        """Busy if another process holds the lock (without taking it or writing anything)."""
        if self._lock_fd is not None:
            return                                            # this process holds it
        try:
            fd = os.open(self.file(LOCK), os.O_RDONLY)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(self.path, fd) from None
        finally:
            os.close(fd)

    def release(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def remove_temporaries(self):
        """Temporaries of atomic writes left by a process that was killed while writing."""
        for p in self.path.iterdir():
            if is_temporary(p.name) and p.is_file():
                p.unlink(missing_ok=True)

    def remove_own_files(self):
        """Undo a run that failed before its first step: only the files bptt writes."""
        for name in (*FILES, MARKER):
            self.file(name).unlink(missing_ok=True)
        self.remove_temporaries()

    # --- the marker and the data it was trained on ---------------------------------------------

    def write_marker(self, sources):
        """sources: {"data" | "valid" | "embedding_init": {"given": str, "path", "bytes", "sha256"}}: the
        data files (verified on --resume) and the pretrained vectors (recorded, not verified)."""
        files.write_json_atomic(self.file(MARKER), {"format": "bptt run", "version": 1,
                                                         "written_by": f"bptt {__version__}", "data": sources})

    def marker(self):
        if not self.file(MARKER).is_file():
            return None
        m = files.read_json(self.file(MARKER), "run marker")
        if not isinstance(m, dict) or m.get("format") != "bptt run" or not isinstance(m.get("data"), dict):
            raise FileError(f"{self.file(MARKER)}: not a bptt run marker")
        return m

    # --- arrays --------------------------------------------------------------------------------

    def save(self, params, opt_state, carried, progress, influence=None):
        """The checkpoint, in one atomic write; influence: --gradient rtrl | uoro's carried influence as
        named arrays (training.forward_mode.to_arrays; None or {}: none)."""
        parts = () if carried is None else carried if isinstance(carried, tuple) else (carried,)
        arrays = prefixed("param", params) | prefixed("optim", opt_state) | prefixed("state", dict(enumerate(parts)))
        files.save_arrays(self.file("checkpoint.safetensors"), arrays | prefixed("influence", influence or {}),
                          progress)

    def save_best(self, params, meta):
        files.save_arrays(self.file("best.safetensors"), prefixed("param", params), meta)

    def load(self):
        """(params, optimiser state, carried state parts or (), progress dict) of the checkpoint."""
        return self.load_with_influence()[:4]

    def load_with_influence(self):
        """load's four, and the carried influence's named arrays ({}: none, as in older checkpoints)."""
        arrays, meta = files.load_arrays(self.file("checkpoint.safetensors"))
        state = group(arrays, "state")
        parts = tuple(state[str(i)] for i in range(len(state)))
        return group(arrays, "param"), group(arrays, "optim"), parts, meta, group(arrays, "influence")

    def load_params(self, which="best"):
        """The weights of best.safetensors (or checkpoint.safetensors), and their metadata."""
        best = which == "best" and self.file("best.safetensors").exists()
        arrays, meta = files.load_arrays(self.file("best.safetensors" if best else "checkpoint.safetensors"))
        return group(arrays, "param"), meta

    # --- json files ----------------------------------------------------------------------------

    def write_json(self, name, obj):
        files.write_json_atomic(self.file(name), obj)

    def config_json(self):
        return files.read_json(self.file("config.json"), "config")

    def vocab(self):
        return self.numbered("vocab.json", "vocabulary", data.Vocab)

    def labels(self):
        if not self.file("labels.json").exists():
            return None
        return self.numbered("labels.json", "label set", data.LabelSet)

    def numbered(self, name, what, kind):
        """The Vocab or LabelSet (kind) saved in the run's file `name`, with errors that name it."""
        path = self.file(name)
        if not path.exists() and self.is_run():
            raise FileError(f"{path}: missing, so the run's {what} is unknown; bptt train {self.path} --resume "
                            f"writes it again from the training data")
        try:
            return kind.from_json(files.read_json(path, what))
        except FileError:
            raise
        except ValueError as e:
            raise FileError(f"{path}: {e}; was the file edited? Restore it, or delete it and bptt train "
                            f"{self.path} --resume writes it again") from None

    # --- metrics.jsonl -------------------------------------------------------------------------

    def log(self, record):
        """Append one line; a failed write is cut back so the file never ends in half a record."""
        path = self.file("metrics.jsonl")
        line = (json.dumps(record) + "\n").encode()
        try:
            with open(path, "ab") as f:
                start = f.tell()
                try:
                    f.write(line)
                    f.flush()
                except OSError:
                    f.truncate(start)
                    raise
        except OSError as e:
            raise files.os_error(path, e, kept=False) from None

    def records(self):
        """The records of metrics.jsonl; a torn last line (no line end: a crash mid-append) is
        dropped, blank lines are skipped, any other bad line is an error naming it."""
        path = self.file("metrics.jsonl")
        if not path.exists():
            return []
        try:
            text = path.read_text(encoding="utf-8", errors="strict")
        except (OSError, UnicodeDecodeError) as e:
            raise FileError(f"{path}: cannot read ({e})") from None
        lines = text.split("\n")
        records = []
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            torn = n == len(lines)                                # the last piece has no line end
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                if torn:
                    break
                raise FileError(f"{path}: line {n}: not a JSON record ({e.msg}); remove or repair the line") from None
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                if torn:
                    break
                raise FileError(f"{path}: line {n}: expected a JSON object with an integer \"step\"")
            records.append(record)
        return records

    def truncate_log(self, step):
        """Keep the records up to the checkpoint at step (a resumed run writes the later ones again)."""
        path = self.file("metrics.jsonl")
        if path.exists():
            keep = [r for r in self.records() if r["step"] <= step]
            files.write_bytes_atomic(path, "".join(json.dumps(r) + "\n" for r in keep).encode())


def group(arrays, prefix):
    """The arrays saved under "prefix/name", keyed by name."""
    return {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def prefixed(prefix, arrays):
    return {f"{prefix}/{k}": v for k, v in arrays.items()}
