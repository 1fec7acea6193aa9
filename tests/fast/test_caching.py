"""bptt.fast.caching.compiled against numba's own loads: on a small module of cached functions, in fresh
processes, what compiled() says before the first call is whether numba then loads the code from its
cache (a hit) or compiles it (a miss), after a first compile, after the file is rewritten unchanged (a
checkout: a new date, the same bytes), after the bytes change, and for code compiled for another CPU."""

import json
import os
import subprocess
import sys

SOURCE = "from numba import njit\n\n\n@njit(cache=True)\ndef f(x):\n    return x + 1\n"
PROBE = """
import json, importlib
from bptt.fast.caching import compiled
module = importlib.import_module("probe_module")
before = compiled(module)
module.f(1)
print(json.dumps([before, sum(module.f.stats.cache_hits.values()), sum(module.f.stats.cache_misses.values())]))
"""


def probe(folder, **env):
    """In a fresh process: [compiled() before the call, numba's cache hits, its misses]."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), *sys.path]), **env}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=folder, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_compiled_says_what_numba_will_do(tmp_path):
    source = tmp_path / "probe_module.py"
    source.write_text(SOURCE)
    assert probe(tmp_path) == [False, 0, 1]                 # nothing cached: numba compiles
    assert probe(tmp_path) == [True, 1, 0]                  # then loads
    later = source.stat().st_mtime + 3600
    source.write_text(SOURCE)                               # a checkout: the same bytes, a newer date
    os.utime(source, (later, later))
    assert probe(tmp_path) == [True, 1, 0]                  # numba keys the cache by the bytes, not the date
    source.write_text(SOURCE + "# edited\n")
    assert probe(tmp_path) == [False, 0, 1]                 # new bytes: compiled again
    assert probe(tmp_path) == [True, 1, 0]


def test_code_compiled_for_another_cpu_is_not_compiled_for_this_one(tmp_path):
    (tmp_path / "probe_module.py").write_text(SOURCE)
    assert probe(tmp_path, NUMBA_CPU_NAME="generic") == [False, 0, 1]
    assert probe(tmp_path, NUMBA_CPU_NAME="generic") == [True, 1, 0]
    assert probe(tmp_path) == [False, 0, 1]                 # this CPU's target: another entry, compiled


def test_the_cache_numba_is_told_to_use_is_the_one_read(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "probe_module.py").write_text(SOURCE)
    elsewhere = str(tmp_path / "cache")
    assert probe(tmp_path / "src", NUMBA_CACHE_DIR=elsewhere) == [False, 0, 1]
    assert probe(tmp_path / "src", NUMBA_CACHE_DIR=elsewhere) == [True, 1, 0]
    assert not (tmp_path / "src" / "__pycache__").exists() or not any((tmp_path / "src" / "__pycache__").glob("*.nbi"))
    assert probe(tmp_path / "src") == [False, 0, 1]         # __pycache__ beside the source: empty
