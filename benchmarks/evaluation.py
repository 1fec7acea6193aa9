"""Validation against training speed of the same model: tokens/s of a forward-only validation
(engine.score, the weights packed once per evaluation) over the tokens/s of training steps
(Network.loss_and_grads with clipping and the optimiser), on Tiny Shakespeare or --data.

    python benchmarks/evaluation.py                              # the default bptt train model
    python benchmarks/evaluation.py --eval-batch 16
    python benchmarks/evaluation.py --level word --max-vocab 10000 --hidden 200 --layers 2 \\
        --embedding 200 --batch 20 --window 35 --eval-batch 10

A validation is one forward pass over every validation token, so its FLOPs are a third of a
training step's per token: at equal efficiency it runs 3x the training tokens/s. Each figure is the
best of --repeats timings, after one untimed call (numba's cache loaded, the heap warm).
"""

import argparse
import time

from bptt.bench.tables import machine_line
from bptt.model import engine
from bptt.training import building, clipping, tasks
from bptt.training.config import TrainConfig

SHAPE = ("level", "max_vocab", "hidden", "layers", "embedding", "batch", "window", "eval_batch", "data")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in SHAPE:
        kind = str if name in ("level", "data") else int
        p.add_argument("--" + name.replace("_", "-"), type=kind, help=f"TrainConfig's {name} (default: its default)")
    p.add_argument("--steps", type=int, default=20, help="training steps per timing (default: 20)")
    p.add_argument("--repeats", type=int, default=3, help="timings of each, the best kept (default: 3)")
    args = p.parse_args(argv)
    cfg = TrainConfig(**{k: getattr(args, k) for k in SHAPE if getattr(args, k) is not None})
    task = tasks.LanguageModel(cfg)
    net = building.build_network(cfg, task.input_size, task.output_size)
    opt = building.make_optimizer(cfg)
    state = opt.init(net.params)

    def training():
        carried, total = None, 0
        for i in range(args.steps):
            batch, tokens = task.batch(i % task.steps_per_epoch, 0)
            r = engine.loss_and_grads(net.params, net.arch, state=carried, **batch)
            clipping.clip(r.grads, cfg.clip, cfg.clip_mode)
            opt.step(net.params, r.grads, state, cfg.lr)
            carried = task.next_state(net.params, net.arch, i % task.steps_per_epoch, carried, r.state)
            total += tokens
        return total

    def validation():
        return task.evaluate(net.params, net.arch)["tokens"]

    print(machine_line())
    rates = {}
    for name, work in (("training", training), ("validation", validation)):
        work()
        best = 0.0
        for _ in range(args.repeats):
            start = time.perf_counter()
            tokens = work()
            best = max(best, tokens / (time.perf_counter() - start))
        rates[name] = best
        print(f"{name:<10} {best:>10,.0f} tokens/s", flush=True)
    print(f"{cfg.level} level, {cfg.cell} {cfg.layers} x {cfg.hidden}, batch {cfg.batch}, window {cfg.window}, "
          f"validation streams {cfg.eval_batch}: validation / training = {rates['validation'] / rates['training']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
