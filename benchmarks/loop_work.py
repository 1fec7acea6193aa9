"""What the backward loops' own work saves: a training step of `bptt bench`'s runner, in one process,
alternating rounds with and without it (so the machine's drift falls on both sides alike):

  table    the input table's gradient summed in the loop (window.loop_table), against a scatter of
           all of da after it (window.LOOP_TABLE_BYTES = 0)
  panels   bf16 only: da's bf16 panels written in the loop (window.loop_panels), against packing all
           of da after it
  rows     one step's da rewritten at every step where nothing after the loop reads da (window.loop_rows:
           token inputs in bf16, the GRU's dL/d(W x_t + b) always), against writing all T steps of it

    python benchmarks/loop_work.py --config lstm-h256 --precision bf16 --what table
"""

import argparse
import time

import numpy as np

from bptt.bench import workload
from bptt.bench.runners import make_runner
from bptt.fast import bf16, gru, lstm, rnn, window
from bptt.training import tasks


def switch(what, on):
    """Turn the loop's work on or off (module attributes the cells read at each call)."""
    if what == "table":
        window.LOOP_TABLE_BYTES = (1 << 20) if on else 0
        return
    if what == "rows":
        for cell in (rnn, gru, lstm):
            cell.loop_rows = window.loop_rows if on else (lambda T, B, G, dtype, kept: window.loop_rows(T, B, G, dtype,
                                                                                                        True))
        return
    for cell in (rnn, gru, lstm):
        cell.loop_panels = window.loop_panels if on else (lambda T, B, G, mask, precision: bf16.empty_panels(0, G))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="lstm-h256", choices=list(workload.CONFIGS))
    parser.add_argument("--precision", default="bf16", choices=["float32", "bf16"])
    parser.add_argument("--what", default="table", choices=["table", "panels", "rows"])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    if args.what == "panels" and args.precision != "bf16":
        parser.error("--what panels: the panels are bf16's; give --precision bf16")
    cfg = workload.config(args.config, precision=args.precision)
    task = tasks.make(cfg)
    runner = make_runner("bptt", cfg, task)
    data = workload.batches(task, cfg, args.steps + 5)
    for batch, _, _ in data[:5]:
        runner.step(batch)
    times = {True: [], False: []}
    for r in range(args.rounds):
        for on in ((True, False) if r % 2 == 0 else (False, True)):
            switch(args.what, on)
            start = time.perf_counter()
            for batch, _, _ in data[5:]:
                runner.step(batch)
            times[on].append((time.perf_counter() - start) / args.steps * 1e3)
    switch(args.what, True)
    on, off = np.median(times[True]), np.median(times[False])
    said = {"rows": ("one step's da", "all of da")}.get(args.what, (f"{args.what} in the loop", "after it"))
    print(f"{args.config} {args.precision}, {said[0]}: {on:.2f} ms a step, {said[1]}: {off:.2f} ms "
          f"({off / on:.3f}x; medians of {args.rounds} rounds of {args.steps} steps)")


if __name__ == "__main__":
    main()
