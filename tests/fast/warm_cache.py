"""Compile the fast engine once, into numba's disk cache, before the test processes start.

    python tests/fast/warm_cache.py I N      # run share I of N of the kernel checks (I = 0..N-1)

Every pytest process (two under `make test`) would otherwise compile every kernel on first use, at
the same time, each on its own core: about a minute and a quarter of one core each, the same work
twice. conftest.py starts N of these instead, each compiling a different share of the kernels
(by running its share of the checks fast_width_check.py lists: the test suite's own cases, so
the signatures compiled are the ones the tests call), and lets pytest start its workers when
they are done; the workers then load the compiled code. Nothing is checked here: the tests do it.
"""

import sys

import fast_width_check
import numpy as np


def main(share, shares):
    from bptt.training import clipping, optim

    todo = fast_width_check.checks()[share::shares]
    for _, fn, kwargs in todo:
        try:
            fn(**kwargs)
        except Exception:                                 # noqa: BLE001  the tests report failures, not this
            pass
    if share == 0:                                        # the compiled parts of training
        for dtype in (np.float32, np.float64):
            params = {"W": np.ones((3, 2), dtype)}
            grads = {"W": np.ones((3, 2), dtype)}
            clipping.clip_global_norm(grads, 1.0)
            opt = optim.Adam()
            opt.step(params, grads, opt.init(params), 1e-3)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
