import importlib.util
from pathlib import Path

import pytest


@pytest.fixture
def script():
    """script(name): benchmarks/<name>.py loaded as a module."""
    def load(name):
        path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
