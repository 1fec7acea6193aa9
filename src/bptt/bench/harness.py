"""How the benchmark measures: each framework in a worker process of its own, timed in
alternation with the others, its peak resident memory, the GEMM peak of the machine (the MFU
denominator) and what the machine is."""

import datetime
import importlib.metadata
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import time

import numpy as np

from ..training import building, tasks
from ..training.config import TrainConfig
from .runners import LABELS, make_runner
from .workload import batches


def gemm_peak(n=1024, repeats=5):
    """The float32 GEMM rate of this machine in FLOP/s: the best of `repeats` n^3 NumPy matmuls."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / min(times)


def own_peak_rss_mb():
    """Peak resident size of this process's own memory in MB: VmHWM of /proc/self/status where there is
    one, else ru_maxrss. On Linux ru_maxrss survives execve: a process started from a larger one (as
    subprocess starts it, by vfork or fork and exec) reports at least the parent's size at that moment,
    while VmHWM belongs to the new address space alone."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss          # kilobytes; bytes on macOS
        return rss / 2 ** 20 if sys.platform == "darwin" else rss / 1024


def resident_mb():
    """This process's resident memory now, in MB (VmRSS; Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def reset_peak():
    """Reset the peak resident size (VmHWM) to the current one: writing 5 to clear_refs (Linux), so
    that own_peak_rss_mb() afterwards measures one piece of work."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _worker(conn, framework, cfg_json, n_windows):
    """One framework in its own process: build its runner on bptt's weights, then obey the parent:
    ("steps", i, j) trains on batches i..j-1 and answers (seconds taken, tokens, FLOPs); ("rss",)
    answers the peak resident MB so far; ("valid",) answers the validation loss; ("stop",) ends."""
    try:
        cfg = TrainConfig.from_json(json.loads(cfg_json))
        task = tasks.make(cfg)
        runner = make_runner(framework, cfg, task)
        data = batches(task, cfg, n_windows)
        conn.send(("ready", getattr(runner, "compile_seconds", None), task.input_size, task.output_size))
        while True:
            cmd = conn.recv()
            if cmd[0] == "steps":
                chosen = data[cmd[1]:cmd[2]]
                start = time.perf_counter()
                for batch, _, _ in chosen:
                    runner.step(batch)
                conn.send((time.perf_counter() - start, sum(b[1] for b in chosen), sum(b[2] for b in chosen)))
            elif cmd[0] == "rss":
                conn.send(own_peak_rss_mb())
            elif cmd[0] == "valid":
                conn.send(runner.valid_loss(task, building.build_network(cfg, task.input_size, task.output_size)))
            else:
                break
    except Exception as e:                                   # reported by the parent, with the framework named
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def _ask(framework, conn, *cmd):
    conn.send(cmd)
    answer = conn.recv()
    if isinstance(answer, tuple) and answer[0] == "error":
        raise RuntimeError(f"{LABELS[framework]} worker: {answer[1]}")
    return answer


def check_workload(cfg):
    """Build cfg's task, its network's shape and one batch here: bad settings (a missing file, a window
    longer than the text, --precision bf16 on a CPU without AVX512-BF16) fail in the caller, named, not
    in a worker."""
    task = tasks.make(cfg)
    building.arch(cfg, task.input_size, task.output_size)
    batches(task, cfg, 1)


SETTLE_S = 0.3        # idle time before each timed chunk: the previous worker's threads stop spinning


def measure(cfg, frameworks, steps, warmup, repeats, validate=True, rss=True):
    """Time the frameworks (already checked to be available) on cfg in alternation. Returns one dict per
    framework: framework, V and K (the task's input and output sizes), rates (tokens/s of each repeat),
    flop_rates (FLOP/s of each), ms_per_step (median), compile_s, and with validate valid_loss, with
    rss peak_rss_mb.

    Each framework runs in a process of its own, started once per configuration; the parent tells each
    in turn to train its next `steps` batches, so the alternation is the same as in one process. One
    process each because the frameworks' thread pools (OpenBLAS's, PyTorch's OpenMP, XLA's) spin
    while waiting for work and slow each other down when they share a process: an idle worker blocks
    on its pipe instead. An idle worker's threads still spin for a while after its last step (OpenMP
    waits actively before sleeping), so each timed chunk starts after SETTLE_S seconds of quiet.
    Peak RSS is each worker's own (VmHWM), read after the timed steps."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    n = warmup + steps * repeats
    check_workload(cfg)
    workers = {}
    try:
        for f in frameworks:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, f, json.dumps(cfg.to_json()), n), daemon=True)
            proc.start()
            child.close()
            workers[f] = (proc, parent)
        ready = {f: conn.recv() for f, (_, conn) in workers.items()}
        for f, answer in ready.items():
            if answer[0] == "error":
                raise RuntimeError(f"{LABELS[f]} worker: {answer[1]}")
        chunks = {f: [] for f in frameworks}
        for f, (_, conn) in workers.items():
            _ask(f, conn, "steps", 0, warmup)
        for rep in range(repeats):
            a = warmup + rep * steps
            for f, (_, conn) in workers.items():                      # alternate: drift hits all alike
                time.sleep(SETTLE_S)
                chunks[f].append(_ask(f, conn, "steps", a, a + steps))
        results = []
        for f, (_, conn) in workers.items():
            res = {"framework": f, "V": ready[f][2], "K": ready[f][3],
                   "rates": [tokens / seconds for seconds, tokens, _ in chunks[f]],
                   "flop_rates": [flops / seconds for seconds, _, flops in chunks[f]],
                   "ms_per_step": 1000 * statistics.median([seconds / steps for seconds, _, _ in chunks[f]]),
                   "compile_s": ready[f][1]}
            if rss:
                res["peak_rss_mb"] = _ask(f, conn, "rss")
            if validate:
                res["valid_loss"] = _ask(f, conn, "valid")
            results.append(res)
        return results
    finally:
        for proc, conn in workers.values():
            try:
                conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


def version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def vector_width():
    """The vector width the fast engine's GEMM kernel was built for on this CPU, and why."""
    from ..fast import packed

    return (f"{8 * packed.VECTOR_BYTES}-bit (this CPU has "
            f"{'AVX-512' if packed.VECTOR_BYTES == 64 else 'no AVX-512: AVX2 or narrower'})")


def bf16_path():
    """The instruction path of --precision bf16 here: AVX512-BF16's vdpbf16ps, the emulation (tests), or none."""
    from ..fast import bf16

    return {"avx512-bf16": "AVX512-BF16 (vdpbf16ps, 512-bit)", "emulated": "emulated (BPTT_BF16_EMULATE=1: tests only)",
            None: "none (this CPU has no AVX512-BF16)"}[bf16.path()]


def machine():
    """What the numbers were measured on: CPU model, cores, Python and library versions, command, date."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {"cpu": cpu, "vector width": vector_width(), "bf16 path": bf16_path(),
            "cores": f"{cores}" + (f" ({usable} usable)" if usable != cores else ""),
            "python": platform.python_version(), "numpy": version("numpy"), "numba": version("numba"),
            "torch": version("torch"), "jax": version("jax"), "jaxlib": version("jaxlib"),
            "command": shlex.join([os.path.basename(sys.executable), *sys.argv]),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
