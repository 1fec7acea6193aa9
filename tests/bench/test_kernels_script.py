"""benchmarks/kernels.py: the kernels' table on a tiny shape. Nothing here asserts on a time: the rates
are only checked to be rates, and the products each side times to be the same product."""


import numpy as np
import pytest

from bptt.fast import bf16

torch = pytest.importorskip("torch")


def test_a_row_has_a_rate_for_each_side_and_precision(script):
    kernels = script("kernels")
    [(shape, what, rates)] = kernels.rows_of_table([(6, 16, 32, "tiny")])
    assert shape == "6 x 16 x 32" and what == "tiny"
    assert len(rates) == (4 if bf16.path() else 2)
    assert all(np.isfinite(r) and r > 0 for r in rates)


def test_both_sides_time_the_same_product(script):
    """What bptt_rate times (bf16.product into C) is A B: float32 within the bound of K float32 roundings of
    the float64 product, and bf16 bit for bit the oracle's (bf16.reference), as torch.mm computes A B."""
    kernels = script("kernels")
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((16, 40)).astype(np.float32), rng.standard_normal((40, 70)).astype(np.float32)
    C = np.empty((16, 70), np.float32)
    kernels._repeat(A, bf16.panels(B, False, "float32"), C, 1)
    exact = A.astype(np.float64) @ B.astype(np.float64)
    bound = 40 * np.finfo(np.float32).eps * (np.abs(A).astype(np.float64) @ np.abs(B).astype(np.float64))
    assert np.all(np.abs(C - exact) <= bound)
    assert np.all(np.abs(torch.mm(torch.from_numpy(A), torch.from_numpy(B)).numpy() - exact) <= bound)
    if bf16.path():
        kernels._repeat(A, bf16.panels(B, False, "bf16"), C, 1)
        assert np.array_equal(C, bf16.reference(A, B))


def test_markdown_refuses_an_existing_file(script, tmp_path, capsys):
    kernels = script("kernels")
    existing = tmp_path / "k.md"
    existing.write_text("mine")
    with pytest.raises(SystemExit) as stop:
        kernels.main(["--markdown", str(existing)])
    assert stop.value.code == 2 and "--markdown:" in capsys.readouterr().err and existing.read_text() == "mine"
