"""Training speed and memory of bptt against PyTorch and JAX on a character language model.

Every framework starts from the same weights (bptt's) and trains on the same windows of Tiny
Shakespeare (embedding 64, vocabulary 65, Adam lr 2e-3, global-norm clipping at 5, window 64,
batch 32 unless a configuration says otherwise, float32), each window from a zero state. For each
configuration the frameworks are timed in alternation, `repeats` times, each time `steps` training
steps after `warmup` untimed ones, so that drift of the machine hits all alike; the validation
loss of each after the same steps is reported (it must agree: the same computation).

Each framework runs in a worker process of its own (one per configuration), which imports only
that framework; the parent alternates them. Peak resident memory is each worker's own, read after
its timed steps.
PyTorch and JAX are optional: one that is not installed is skipped with a message.

    from bptt import bench
    rows = bench.run(["lstm-h256"], steps=20, warmup=3, repeats=3, frameworks=("bptt", "torch", "jax"))
    rows = bench.step_cost("lstm-h256", [16, 64, 256, 1024])        # ms per step as the window T grows

The layer above training and interop (imports run one way: cli -> bench -> interop, training ->
model -> fast -> reference). Its parts: workload.py (the named configurations, the FLOP count, the
windows), runners.py (one training step of each framework, from the same weights), harness.py
(worker processes, timing in alternation, peak memory, the machine), tables.py (run and
step_cost: the rows and their text and Markdown tables).
"""

from .workload import BASE, CONFIGS, config, flops_per_step, label

LAZY = {"run": "tables", "step_cost": "tables", "markdown": "tables", "COLUMNS": "tables",
        "LENGTH_COLUMNS": "tables", "gemm_peak": "harness", "machine": "harness", "FRAMEWORKS": "runners",
        "LABELS": "runners"}
__all__ = ["BASE", "CONFIGS", "config", "flops_per_step", "label", *LAZY]


def __getattr__(name):
    """The measuring parts on first use: they load the engine (numba), so that `bptt bench --help`
    reads the configurations' names without them."""
    if name in LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{LAZY[name]}"), name)
    raise AttributeError(f"module 'bptt.bench' has no attribute {name!r}")
