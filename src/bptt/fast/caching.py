"""Whether numba's disk cache holds a module's compiled code for this CPU, asked the way numba asks.

numba (0.68) keeps, for each `cache=True` function, an index file keyed by the source file's
contents (a SHA-256 of its bytes, not its date) and, for each compiled signature, by the target
(triple, CPU name, CPU features) and the function's bytecode. A module is compiled for this process
when one of its cached functions has an index that numba would load (same source bytes) holding an
entry for this target and this bytecode. Comparing file dates instead says "stale" after a checkout
or a copy that rewrites an unchanged file, and "fresh" for code compiled on another CPU.

The index is found and read by numba's own cache objects (the dispatcher's `_cache`), so the
locations numba uses are the ones checked: `__pycache__` beside the source, NUMBA_CACHE_DIR, or the
user-wide cache for an installation that is not writable. These are numba internals: numba is pinned
(pyproject.toml), and tests/fast/test_caching.py checks them against numba's own loads.
"""

import importlib

from numba.core.caching import FunctionCache
from numba.core.registry import CPUDispatcher


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
