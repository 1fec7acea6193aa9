"""Compile the fast engine once, into numba's disk cache, before the test processes start.

    python tests/fast/warm_cache.py GROUP [GROUP ...]      # groups: base, lstm, gru, rnn, readout

Every pytest process (two under `make test`) would otherwise compile every kernel it calls on first
use, at the same time as the other, each on its own core: about three minutes of one core each on
a 2-core AMD EPYC (Zen 4), the same work twice. conftest.py runs these instead, before pytest-xdist
starts its workers: first `base` (the GEMM kernels every cell calls), then the cells and the fused
readout spread over the cores, each process loading what an earlier one compiled. A group runs its
share of the checks fast_width_check.py lists (the test suite's own cases: the signatures compiled
are the ones the tests call), here at this CPU's width and with blocks of rows on threads.
Nothing is checked here: the tests do that, and report failures.
"""

import sys

import fast_width_check
import numpy as np

GROUPS = ("base", "lstm", "gru", "rnn", "readout")


def group(name, kwargs):
    """Which group a check belongs to: base (test_packed), readout (test_fast_readout), or its cell."""
    if name.startswith("test_packed") or (name.startswith("test_bf16") and "cell" not in kwargs):
        return "base"
    if name.startswith(("test_fast_readout", "test_fast_adaptive")):
        return "readout"
    cell = kwargs.get("cell") or kwargs["case"].cell
    return cell.split("-")[0]


def main(groups):
    from bptt.training import clipping, optim

    unknown = set(groups) - set(GROUPS)
    if unknown:
        print(f"groups: expected some of {', '.join(GROUPS)}, got {sorted(unknown)}")
        return 2
    for name, fn, kwargs in fast_width_check.checks():
        if group(name, kwargs) in groups:
            try:
                fn(**kwargs)
            except Exception:                             # noqa: BLE001  the tests report failures, not this
                pass
    if "readout" in groups:                               # and the compiled parts of training
        for dtype in (np.float32, np.float64):
            params, grads = {"W": np.ones((3, 2), dtype)}, {"W": np.ones((3, 2), dtype)}
            clipping.clip_global_norm(grads, 1.0)
            opt = optim.Adam()
            opt.step(params, grads, opt.init(params), 1e-3)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
