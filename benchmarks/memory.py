"""Time and memory of one BPTT step as the window T grows: full BPTT, BPTT with recomputation
(caches for k = sqrt(T) steps at a time), and PyTorch's nn.LSTM alongside; with --budgets, the
memory-optimal policy (model/checkpointing.py) for budgets that are fractions of full BPTT's
measured memory, and whether it stayed within each.

    python benchmarks/memory.py                      # T = 1000, 3000, 10000; LSTM H256, batch 32, float32
    python benchmarks/memory.py --lengths 100 1000
    python benchmarks/memory.py --lengths 1000 --budgets 0.05 0.1 0.25 --no-torch

Each measurement runs in a fresh process: "memory" is that process's peak resident memory during
one forward and backward pass over T steps, above what it held just before (the model, the data).
One step each, after a warm-up step on a short window (with the policy's code, for a budget).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

V, E, H, B = 65, 64, 256, 32


def one(mode, T):
    """One forward and backward pass over T steps in this process: its seconds and the peak memory
    above what the process held before it (the model, the data, a warm-up step)."""
    import bptt
    from bptt.bench import harness
    from bptt.model import engine

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    net = bptt.Network("lstm", V, H, V, embedding_dim=E, dtype=np.float32)
    if mode == "pytorch":
        import torch

        from bptt.interop import torch_reference

        model = torch_reference.build(net.arch, net.torch_state_dict(), np.dtype(np.float32))   # the same weights
        xt, yt = torch.as_tensor(x), torch.as_tensor(y)

        def step(n):
            hs, _ = model(xt[:n], None)
            torch.nn.functional.cross_entropy(model.head(hs).reshape(-1, V), yt[:n].reshape(-1)).backward()
    else:
        def step(n):
            every = max(1, round(math.sqrt(n))) if mode == "recompute" else None
            policy = {}
            if mode.startswith("budget="):      # the warm-up loads the policy's compiled code with 2 slots
                policy = {"memory_budget": int(mode.split("=")[1])} if n == T else {"memory_slots": 2}
            engine.loss_and_grads(net.params, net.arch, x[:n], y[:n], recompute_every=every, **policy)
    step(16)
    harness.reset_peak()
    before, start = harness.resident_mb(), time.perf_counter()
    step(T)
    return {"mode": mode, "T": T, "seconds": time.perf_counter() - start,
            "memory_mb": harness.own_peak_rss_mb() - before}


def has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def measured(mode, T):
    """[the row of one measurement in a fresh process], printed; [] if it failed."""
    out = subprocess.run([sys.executable, __file__, "--one", mode, str(T)], capture_output=True, text=True,
                         env=os.environ | {"PYTHONWARNINGS": "ignore"})
    if out.returncode != 0:
        print(f"{T:>7} {mode:<22} failed: {out.stderr.strip().splitlines()[-1]}")
        return []
    r = json.loads(out.stdout)
    print(f"{T:>7} {mode:<22} {r['seconds']:>9.2f} {r['memory_mb']:>9.1f}", flush=True)
    return [r]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[1000, 3000, 10000])
    p.add_argument("--budgets", type=float, nargs="*", default=[],
                   help="fractions of full BPTT's measured memory to give the memory-optimal policy")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--one", nargs=2, metavar=("MODE", "T"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return
    modes = ["full", "recompute"] + ([] if args.no_torch or not has_torch() else ["pytorch"])
    print(f"LSTM H{H}, embedding {E}, vocabulary {V}, batch {B}, float32; one forward + backward over T steps")
    print(f"{'T':>7} {'mode':<22} {'seconds':>9} {'peak MB':>9}")
    rows = []
    for T in args.lengths:
        for mode in modes:
            rows += measured(mode, T)
        full = next((r for r in rows if r["T"] == T and r["mode"] == "full"), None)
        for fraction in args.budgets if full else []:
            budget = int(fraction * full["memory_mb"] * 2**20)
            for r in measured(f"budget={budget}", T):
                within = r["memory_mb"] * 2**20 <= budget
                print(f"{'':>7} {fraction:.0%} of full: time x{r['seconds'] / full['seconds']:.2f}, memory "
                      f"{r['memory_mb'] / full['memory_mb']:.3f} of full; within its budget: {within}")
                rows.append(r)
    by = {(r["T"], r["mode"]): r for r in rows}
    for T in args.lengths:
        if (T, "full") in by and (T, "recompute") in by:
            f, c = by[T, "full"], by[T, "recompute"]
            print(f"T = {T}: recompute / full: memory {c['memory_mb'] / f['memory_mb']:.3f}, "
                  f"time {c['seconds'] / f['seconds']:.2f}")


if __name__ == "__main__":
    main()
