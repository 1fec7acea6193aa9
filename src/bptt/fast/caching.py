"""numba's disk cache for bptt: keyed by the engine's whole source, and asked whether it holds a module.

numba keys a function's cached code by its own file only, but a kernel's machine code also holds
every compiled function it calls from other files (lstm.py's loops hold packed.gemm, common.incoming,
nonlinear.tanh). After an update that changed only those (a `git pull`, a new version over an old
__pycache__), numba would load the old code, silently. So every cached function of bptt is keyed by
its own file and by every file of bptt/fast (locators(), registered when this module is imported:
rows.py imports it, and every module that defines a kernel imports rows.py first): any change to the
engine compiles it again, once.

numba (0.68) keeps, for each `cache=True` function, an index file stamped with its source (numba's
stamp: a SHA-256 of the file's bytes, not its date; bptt's: of the file's and the engine's) and keyed,
for each compiled signature, by the target (triple, CPU name, CPU features) and the function's
bytecode. A module is compiled for this process when one of its cached functions has an index that
numba would load (the same stamp) holding an entry for this target and this bytecode (compiled()).
Comparing file dates instead says "stale" after a checkout or a copy that rewrites an unchanged file,
and "fresh" for code compiled on another CPU.

The index is found and read by numba's own cache objects (the dispatcher's `_cache`), so the
locations numba uses are the ones checked: `__pycache__` beside the source, NUMBA_CACHE_DIR, or the
user-wide cache for an installation that is not writable. These are numba internals: numba is pinned
(pyproject.toml), and tests/fast/test_caching.py checks them against numba's own loads.
"""

import functools
import hashlib
import importlib
from pathlib import Path

from numba.core.caching import (
    CacheImpl,
    FunctionCache,
    InTreeCacheLocator,
    UserProvidedCacheLocator,
    UserWideCacheLocator,
)
from numba.core.registry import CPUDispatcher

ENGINE = Path(__file__).resolve().parent          # bptt/fast: its files enter every stamp
PACKAGE = ENGINE.parent                            # bptt: the files whose cached functions are stamped so


def locators(root=PACKAGE, shared=ENGINE):
    """numba's three file-backed locators (NUMBA_CACHE_DIR, __pycache__, the user-wide cache: tried in
    numba's order), for the files under root only, with the stamp source_stamp(file, shared)."""
    def stamped(base):
        class Locator(base):
            @classmethod
            def from_function(cls, py_func, py_file):
                inside = Path(py_file).resolve().is_relative_to(root)
                return super().from_function(py_func, py_file) if inside else None

            def get_source_stamp(self):
                return source_stamp(self._py_file, shared)

        Locator.__name__ = Locator.__qualname__ = f"Whole{base.__name__}"
        return Locator

    return [stamped(base) for base in (UserProvidedCacheLocator, InTreeCacheLocator, UserWideCacheLocator)]


def register(classes):
    """Put classes (locators()) before numba's own locators, once: they find the cache of every function
    defined after this."""
    if classes[0] not in CacheImpl._locator_classes:
        CacheImpl._locator_classes[:0] = classes


def source_stamp(path, shared):
    """A SHA-256 of path's bytes and of every .py file of the folder shared (its name and bytes, by name)."""
    files = sorted(Path(shared).glob("*.py"))
    return _stamp(_version(path), tuple(_version(f) for f in files))


def _version(path):
    st = Path(path).stat()
    return str(path), st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=256)
def _stamp(own, shared):
    """(the files' dates and sizes are in the key: a file that changes is read again)"""
    digest = hashlib.sha256(Path(own[0]).read_bytes())
    for name, *_ in shared:
        digest.update(Path(name).name.encode() + b"\0" + Path(name).read_bytes())
    return digest.digest()


register(locators())


def compiled(module):
    """Whether one of `module`'s own cached functions has machine code for this CPU in numba's
    cache: the compile that its first use does is then a load."""
    return any(_has_entry(f) for f in cached_functions(module))


def cached_functions(module):
    """The `cache=True` dispatchers defined in module (a module object or its dotted name)."""
    if isinstance(module, str):
        module = importlib.import_module(module)
    return [f for f in vars(module).values()
            if isinstance(f, CPUDispatcher) and isinstance(f._cache, FunctionCache)
            and f.__module__ == module.__name__]


def _has_entry(function):
    cache = function._cache
    overloads = cache._cache_file._load_index()         # {} when absent or for other source bytes
    _, target, code = cache._index_key(None, function.targetctx.codegen())
    return any(key[1:] == (target, code) for key in overloads)
