"""What keeps the code readable, checked: no function outside the compiled kernels (src/bptt/fast/)
is longer than 60 lines, so that each reads on one screen like the equations or steps it implements.
(make test runs ruff first, with the rules of pyproject.toml.)"""

import ast
from pathlib import Path

import bptt

SRC = Path(bptt.__file__).parent
LONGEST = 60


def long_functions(path, text=None):
    """(name, lines) of each function in the file (or text) longer than LONGEST lines."""
    tree = ast.parse(path.read_text() if text is None else text)
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= LONGEST]


def test_no_function_outside_the_kernels_is_longer_than_60_lines():
    found = {str(p.relative_to(SRC)): long_functions(p) for p in sorted(SRC.rglob("*.py")) if "fast" not in p.parts}
    assert not {path: f for path, f in found.items() if f}


def test_the_check_can_fail():
    body = "\n".join(f"    x{i} = {i}" for i in range(LONGEST))
    assert long_functions(SRC / "x.py", f"def f():\n{body}\n") == [("f", LONGEST + 1)]
    assert long_functions(SRC / "x.py", f"def f():\n{body[:body.rindex(chr(10))]}\n") == []
