"""A Network in one file: its parameters in safetensors under bptt's names (E, l0.W, ..., V, c),
its architecture and dtype in the file's metadata, the tensors' SHA-256 beside them, written
atomically (bptt.files). Network.save and Network.load use these two functions.

    metadata "bptt": {"format": "bptt network", "version": 1, "dtype": "float32",
                      "arch": {"cell": "lstm", "input_size": 65, "hidden_size": 256, ...}}
"""

import dataclasses

from .. import files

FORMAT, VERSION = "bptt network", 1


def write(path, arch, dtype, params, overwrite=False):
    """params of a network of arch and dtype into the file path: a new file in an existing directory,
    or (overwrite=True) one replaced atomically."""
    path = files.check_new(path, overwrite)
    shape = {k: v for k, v in dataclasses.asdict(arch).items() if k != "precision"}   # how it computes: load() says
    meta = {"format": FORMAT, "version": VERSION, "dtype": dtype.name, "arch": shape}
    files.save_arrays(path, params, meta, replace=overwrite)


def read(path):
    """(arch fields, dtype name, params) of a file written by write(), its checksum checked."""
    params, meta = files.load_arrays(path, "saved network", "expected a file written by Network.save (a run "
                                                            "directory loads with bptt.load)")
    if meta.get("format") != FORMAT:
        raise files.FileError(f"{path}: not a saved bptt network (its metadata says {meta.get('format', 'nothing')!r}"
                              f"); a run's checkpoint loads with bptt.load(RUN_DIR)")
    if meta.get("version") != VERSION:
        raise files.FileError(f"{path}: a saved network of version {meta.get('version')!r}; this bptt reads "
                              f"version {VERSION}")
    return meta["arch"], meta["dtype"], params
