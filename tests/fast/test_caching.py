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


HELPER = "from numba import njit\n\n\n@njit\ndef g(x):\n    return x + {}\n"
CALLER = "from numba import njit\nfrom helper import g\n\n\n@njit(cache=True)\ndef f(x):\n    return g(x)\n"
WHOLE = """
import json, sys
from pathlib import Path
from bptt.fast import caching
if sys.argv[1] == "whole":
    caching.register(caching.locators(Path.cwd(), Path.cwd()))
import probe_module
before = caching.compiled(probe_module)
value = probe_module.f(1)
print(json.dumps([before, value, sum(probe_module.f.stats.cache_hits.values())]))
"""


def run_whole(folder, mode):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), *sys.path])}
    out = subprocess.run([sys.executable, "-c", WHOLE, mode], env=env, cwd=folder, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_a_kernel_is_compiled_again_when_a_function_it_calls_from_another_file_changes(tmp_path):
    """The hazard, then the cure: numba alone keys f's cache by f's file, so after g's file changes it
    loads f with the old g inside (2 where g now gives 3); keyed by the whole folder, f is compiled
    again."""
    for mode, after in (("numba", 2), ("whole", 3)):
        folder = tmp_path / mode
        folder.mkdir()
        (folder / "helper.py").write_text(HELPER.format(1))
        (folder / "probe_module.py").write_text(CALLER)
        assert run_whole(folder, mode) == [False, 2, 0]
        assert run_whole(folder, mode) == [True, 2, 1]
        (folder / "helper.py").write_text(HELPER.format(2))
        assert run_whole(folder, mode) == ([True, 2, 1] if mode == "numba" else [False, 3, 0])
        assert after == run_whole(folder, mode)[1]


def test_every_cached_function_of_bptt_is_keyed_by_the_whole_engine():
    import bptt.fast
    from bptt.fast import caching
    from bptt.training import optim

    for module in (*bptt.fast.CACHED, *bptt.fast.CELL_NAMES, *bptt.fast.ON_REQUEST):
        for function in caching.cached_functions(f"bptt.fast.{module}"):
            assert type(function._cache._impl.locator).__name__.startswith("Whole"), (module, function)
    assert type(optim._adam_update._cache._impl.locator).__name__.startswith("Whole")
    stamp = caching.source_stamp(optim.__file__, caching.ENGINE)
    assert optim._adam_update._cache._cache_file._source_stamp == stamp
