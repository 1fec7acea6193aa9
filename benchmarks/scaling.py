"""How data-parallel training scales, measured on this machine and on paper for N machines: the
compute of one training step of each benchmark model, the time of one allreduce of its gradients
between 2 MPI ranks here, the tokens/s of `bptt train` on 1 rank x 2 threads against 2 ranks x 1
thread (mpiexec -n 2), and a ring allreduce over N machines on a stated network.

    python benchmarks/scaling.py                       # measures, prints the tables (Markdown)
    python benchmarks/scaling.py --bandwidths 10 25 --latency-us 20

Weak scaling: every machine keeps the model's batch B and trains on its own streams, so N machines
take N B streams per step. Per step, with P parameters of 4 bytes (float32) and N machines:

    ring allreduce     t_ar(N) = 2 (N-1)/N * 4P / bandwidth + 2 (N-1) * latency
    no overlap         t(N)    = t_compute + t_ar(N)
    overlap            t(N)    = t_forward + max(t_backward, t_ar(N))   the gradients of the upper
                                 layers and the readout travel while the lower layers' backward runs
    speed-up           S(N)    = N t(1) / t(N),  t(1) = t_compute

t_forward is taken as a third of t_compute (the backward pass has twice the forward's FLOPs). The
measured 2-rank allreduce on this machine (shared memory) is printed beside the model's own 2-rank
figure at each bandwidth, for scale; it is not the network's. Needs mpi4py and mpiexec
(pip install "bptt[mpi]"): the allreduce is timed in `mpiexec -n 2` started from here.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NS = (2, 4, 8, 16, 32, 64)
WORD_LM = "word-lm"      # benchmarks/word_lm.py's model: LSTM 2 x 200, embedding 200, vocabulary 10,000, B 20, T 35


def config(name):
    """The TrainConfig of a named benchmark configuration, or of WORD_LM."""
    from bptt.bench import workload
    from bptt.training.config import TrainConfig

    if name == WORD_LM:
        return workload.config(TrainConfig(**(workload.BASE | dict(
            level="word", max_vocab=10000, hidden=200, layers=2, embedding=200, batch=20, window=35,
            optimizer="sgd", lr=20.0, clip=0.25))))
    return workload.config(name)


def ring_allreduce(P, N, gbit_per_s, latency_s, bytes_per=4):
    """Seconds of a ring allreduce of P values over N machines (0 for one machine)."""
    if N == 1:
        return 0.0
    return 2 * (N - 1) / N * bytes_per * P / (gbit_per_s * 1e9 / 8) + 2 * (N - 1) * latency_s


def speedup(compute_s, P, N, gbit_per_s, latency_s, overlap):
    """N t(1) / t(N) of weak scaling (module docstring)."""
    t_ar = ring_allreduce(P, N, gbit_per_s, latency_s)
    forward, backward = compute_s / 3, 2 * compute_s / 3
    t_N = forward + max(backward, t_ar) if overlap else compute_s + t_ar
    return N * compute_s / t_N


def measured_step(name, steps=8):
    """(parameters, median seconds of a training step: loss and gradients, clipping, the optimiser)
    of a named configuration, on its data (Tiny Shakespeare's characters, or words for WORD_LM)."""
    from bptt.bench import workload
    from bptt.model import engine
    from bptt.training import building, clipping, tasks

    cfg = config(name)
    task = tasks.make(cfg)
    net = building.build_network(cfg, task.input_size, task.output_size)
    opt = building.make_optimizer(cfg)
    state = opt.init(net.params)
    times = []
    for batch, _, _ in workload.batches(task, cfg, steps + 2):
        start = time.perf_counter()
        r = engine.loss_and_grads(net.params, net.arch, **batch)
        clipping.clip_global_norm(r.grads, cfg.clip)
        opt.step(net.params, r.grads, state, cfg.lr)
        times.append(time.perf_counter() - start)
    return sum(a.size for a in net.params.values()), statistics.median(times[2:])


def allreduce_worker(sizes, repeats):
    """Under mpiexec: the median seconds of an MPI Allreduce (sum) of a float32 buffer of each size;
    rank 0 prints them as JSON."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    out = {}
    for P in sizes:
        send, recv = np.ones(P, np.float32), np.empty(P, np.float32)
        comm.Allreduce(send, recv)
        times = []
        for _ in range(repeats):
            comm.Barrier()
            start = time.perf_counter()
            comm.Allreduce(send, recv)
            times.append(time.perf_counter() - start)
        out[P] = statistics.median(times)
    if comm.rank == 0:
        print(json.dumps(out))


def measured_allreduce(sizes, repeats=20):
    mpiexec = Path(sys.executable).parent / "mpiexec"
    done = subprocess.run([str(mpiexec), "-n", "2", sys.executable, __file__, "--allreduce-worker",
                           "--sizes", *map(str, sizes), "--repeats", str(repeats)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"mpiexec -n 2 failed: {done.stderr.strip()[-500:]}")
    return {int(k): v for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def train_flags(cfg):
    """The bptt train options that give cfg (the fields that differ from TrainConfig's defaults)."""
    import dataclasses

    from bptt.training.config import TrainConfig

    flags = []
    for f in dataclasses.fields(TrainConfig):
        value = getattr(cfg, f.name)
        if value != f.default and value is not None:
            flag = "--" + f.name.replace("_", "-")
            flags += [flag] if value is True else [flag, str(value)]
    return flags


def measured_ranks(name, steps, ranks):
    """Tokens/s of `bptt train` on one configuration, on 1 process (its threads on every core) or on
    `ranks` MPI ranks (each on its share of the cores, bptt.training.ranks.share_cores): the median
    of the steps after the fifth, from metrics.jsonl (rank 0's clock: a step ends after the allreduce)."""
    import tempfile

    cfg = config(name)
    head = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks)] if ranks > 1 else []
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        done = subprocess.run(head + [str(Path(sys.executable).parent / "bptt"), "train", str(run),
                                      *train_flags(cfg), "--steps", str(steps), "--log-every", "1",
                                      "--eval-every", str(10 * steps)], capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise SystemExit(f"bptt train on {ranks} rank(s) failed: {done.stderr.strip()[-800:]}")
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["tokens_per_s"] for r in records if "tokens_per_s" in r and r["step"] > 5)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=["rnn-h256", "gru-h256", "lstm-h128", "lstm-h256",
                                                    "lstm-h256-l2", "lstm-h512-b64", WORD_LM])
    p.add_argument("--bandwidths", nargs="+", type=float, default=[10.0, 25.0], metavar="GBIT_S")
    p.add_argument("--latency-us", type=float, default=20.0, help="per message hop (default: 20 µs, TCP)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--train-steps", type=int, default=40, help="steps of each bptt train run (1 rank x 2 threads "
                                                                  "against 2 ranks x 1 thread)")
    p.add_argument("--allreduce-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--sizes", nargs="+", type=int, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=20, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.allreduce_worker:
        allreduce_worker(args.sizes, args.repeats)
        return 0
    from bptt.bench.tables import machine_line

    print(machine_line())
    measured = {name: measured_step(name, args.steps) for name in args.configs}
    P = {name: m[0] for name, m in measured.items()}
    compute = {name: m[1] for name, m in measured.items()}
    ar = measured_allreduce(sorted(set(P.values())))
    print("\nMeasured here: one training step (float32) and one allreduce of its gradients between 2 MPI ranks\n")
    print("| config | parameters | gradient MB | step (ms) | allreduce, 2 ranks here (ms) |")
    print("|---|---:|---:|---:|---:|")
    for name in args.configs:
        print(f"| {name} | {P[name]:,} | {4 * P[name] / 1e6:.2f} | {1000 * compute[name]:.1f} | "
              f"{1000 * ar[P[name]]:.3f} |")
    print("\nMeasured here: bptt train on 1 rank x 2 threads and on 2 ranks x 1 thread (mpiexec -n 2), the same "
          "batch B (B/2 rows a rank)\n")
    print("| config | 1 rank x 2 threads (tok/s) | 2 ranks x 1 thread (tok/s) | 2 ranks / 1 rank |")
    print("|---|---:|---:|---:|")
    for name in args.configs:
        one, two = measured_ranks(name, args.train_steps, 1), measured_ranks(name, args.train_steps, 2)
        print(f"| {name} | {one:,.0f} | {two:,.0f} | {two / one:.2f} |", flush=True)
    latency = args.latency_us * 1e-6
    for bw in args.bandwidths:
        for overlap in (False, True):
            print(f"\nProjected speed-up S(N) at {bw:g} Gb/s, latency {args.latency_us:g} µs, "
                  f"{'with' if overlap else 'without'} overlap\n")
            print("| config | " + " | ".join(f"N={n}" for n in NS) + " |")
            print("|---|" + "---:|" * len(NS))
            for name in args.configs:
                cells = [f"{speedup(compute[name], P[name], n, bw, latency, overlap):.1f}" for n in NS]
                print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
