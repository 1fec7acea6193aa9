"""The tree shows the design: each layer of src/bptt imports only from the layers below it (reading
every import statement, the ones inside functions too).

    checks, files, version < reference < fast < model < training < interop < lab, bench < cli

lab and bench share a rank but do not import each other; bptt/__init__.py (the package's face) and
__main__.py are above the layers: no layer imports from the face (`from .. import __version__` is
an import of the face, and refused like any upward import).
"""

import ast
from pathlib import Path

import pytest

import bptt

SRC = Path(bptt.__file__).parent
RANK = {"checks": 0, "files": 0, "version": 0, "reference": 1, "fast": 2, "model": 3, "training": 4, "interop": 5,
        "lab": 6, "bench": 6,
        "cli": 7}


def layer(module):
    """The layer of a module name inside bptt ("bptt.model.engine" -> "model"), or None for bptt itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imports(path, text=None):
    """The bptt modules (and packages) that the file at path (or text, as if it were there) imports,
    by absolute name."""
    package = ".".join(path.relative_to(SRC.parent).parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "bptt":                     # from .. import checks (a module), or __version__ (the face)
                found |= {f"bptt.{a.name}" if a.name in RANK else "bptt" for a in node.names}
            elif target.startswith("bptt."):             # from . import bench: the module bptt.cli.bench
                found |= {f"{target}.{a.name}" if is_module(f"{target}.{a.name}") else target for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name == "bptt" or a.name.startswith("bptt.")}
    return found


def is_module(name):
    """Whether bptt.x.y names a module or package of src/bptt."""
    path = SRC.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


MODULES = sorted(p for p in SRC.rglob("*.py") if p.parent != SRC or p.stem in ("checks", "files", "version"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(SRC)) for p in MODULES])
def test_imports_point_down(path):
    here = path.stem if path.parent == SRC else path.relative_to(SRC).parts[0]
    assert here in RANK, f"{path}: in no layer; add it to one (and to docs/architecture.md)"
    for target in imports(path):
        assert target != "bptt", f"{path.relative_to(SRC)} imports from the package face bptt/__init__.py; import " \
                                 f"from the module that defines the name (bptt.version, bptt.model.network, ...)"
        there = layer(target)
        assert there in RANK, f"{path} imports {target}, which is in no layer"
        assert there == here or RANK[there] < RANK[here], \
            f"{path.relative_to(SRC)} ({here}) imports {target} ({there}): imports must point down the layers"


def test_the_check_sees_upward_imports():
    """The reading above can fail: imports inside a function, relative and absolute, are seen."""
    engine = SRC / "model" / "engine.py"
    late = engine.read_text() + "\n\ndef _late():\n    from ..training import train\n    import bptt.cli.app\n"
    assert {"bptt.training.train", "bptt.cli.app"} <= imports(engine, late)
    assert imports(SRC / "reference" / "rnn.py", "from .. import checks\nfrom . import activations\n") == \
        {"bptt.checks", "bptt.reference.activations"}
    assert imports(SRC / "training" / "rundir.py", "from .. import __version__, files\n") == {"bptt", "bptt.files"}
    assert imports(SRC / "lab" / "sweep.py", "import bptt\n") == {"bptt"}


def module_name(path):
    """bptt.training.train for src/bptt/training/train.py (a package's __init__.py: the package)."""
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def cycle(graph):
    """A list of modules that import each other in a circle (graph: {module: imported modules}), or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [node])):
            return found
    return None


@pytest.mark.parametrize("layer_name", sorted(RANK))
def test_no_import_cycle_inside_a_layer(layer_name):
    """Inside a layer the modules import one another in one direction only (every import statement,
    those inside functions too): the command line's app -> train -> app.report circle was one."""
    paths = [p for p in MODULES if (p.stem if p.parent == SRC else p.relative_to(SRC).parts[0]) == layer_name]
    names = {module_name(p) for p in paths}
    graph = {module_name(p): {t for t in imports(p) if t in names and t != module_name(p)} for p in paths}
    assert cycle(graph) is None, f"{layer_name}: {' -> '.join(cycle(graph))} import each other in a circle"


def test_the_cycle_check_can_fail():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
