"""Training speed of bptt against PyTorch on a character language model, side by side in one run.

    python benchmarks/speed.py                     # the configurations of the performance issue
    python benchmarks/speed.py --configs lstm-h256 --steps 20 --repeats 3

Tiny Shakespeare, embedding 64, vocabulary 65, Adam, global-norm clipping at 5, window 64, batch
32 unless stated, float32. Both frameworks start from the same weights (bptt's) and train on the
same windows; for each configuration the two are timed in alternation, `repeats` times, each time
`steps` training steps after `warmup` untimed ones, and the validation loss of both after the
same steps is reported (it must agree: the same computation). Tokens/s is B T / seconds per step.

FLOPs of one training step (forward + backward = 3 x forward, multiply-adds counted as 2):
    per layer and token   2 G H (D + H)      G = 1 (rnn), 3 (gru), 4 (lstm); D = input size
    readout per token     2 H V
    step                  3 B T (sum over layers + readout)
MFU: achieved FLOP/s over the float32 GEMM peak of this machine, measured here on 1024^3 matmuls.
"""

import argparse
import statistics
import time

import numpy as np

from bptt import clipping, engine, optim, tasks, train
from bptt.config import TrainConfig

CONFIGS = {
    "rnn-h256": dict(cell="rnn", hidden=256),
    "gru-h256": dict(cell="gru", hidden=256),
    "lstm-h128": dict(cell="lstm", hidden=128),
    "lstm-h256": dict(cell="lstm", hidden=256),
    "lstm-h256-l2": dict(cell="lstm", hidden=256, layers=2),
    "lstm-h512-b64": dict(cell="lstm", hidden=512, batch=64),
}


def flops_per_step(cfg, V):
    G = {"rnn": 1, "gru": 3, "lstm": 4}[cfg.cell]
    per_token = sum(2 * G * cfg.hidden * ((cfg.embedding if k == 0 else cfg.hidden) + cfg.hidden)
                    for k in range(cfg.layers)) + 2 * cfg.hidden * V
    return 3 * per_token * cfg.batch * cfg.window


def gemm_peak():
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    a @ a
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * 1024 ** 3 / min(times)


class Ours:
    name = "bptt"

    def __init__(self, cfg, task):
        self.net = train.build_network(cfg, task.input_size, task.output_size)
        self.opt, self.cfg = optim.Adam(), cfg
        self.state = self.opt.init(self.net.params)

    def step(self, x, y):
        r = engine.loss_and_grads(self.net.params, self.net.arch, x, y)
        clipping.clip_global_norm(r.grads, self.cfg.clip)
        self.opt.step(self.net.params, r.grads, self.state, self.cfg.lr)

    def valid_loss(self, task):
        return task.evaluate(self.net.params, self.net.arch)["loss"]


class Torch:
    name = "PyTorch"

    def __init__(self, cfg, task, weights):
        import torch

        from bptt import torch_reference

        self.torch, self.cfg = torch, cfg
        self.model = torch_reference.build(weights.arch, weights.torch_state_dict(), np.float32)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.V = task.output_size

    def step(self, x, y):
        t = self.torch
        hs, _ = self.model(t.as_tensor(x), None)
        loss = t.nn.functional.cross_entropy(self.model.head(hs).reshape(-1, self.V), t.as_tensor(y).reshape(-1))
        self.opt.zero_grad()
        loss.backward()
        t.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.opt.step()

    def valid_loss(self, task, weights):
        weights.load_torch_state_dict({k: v.detach().numpy() for k, v in self.model.state_dict().items()})
        return task.evaluate(weights.params, weights.arch)["loss"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    peak = gemm_peak()
    print(f"float32 GEMM peak of this machine (NumPy, 1024^3): {peak / 1e9:.0f} GFLOP/s")
    print(f"{'config':<15}{'framework':<9}{'tokens/s':>10}{'spread':>16}{'ms/step':>9}{'GFLOP/s':>9}{'MFU':>6}"
          f"{'valid loss':>11}{'vs fastest':>11}")
    for name in args.configs:
        cfg = TrainConfig(**(dict(embedding=64, batch=32, window=64, layers=1, optimizer="adam", lr=2e-3, clip=5.0)
                             | CONFIGS[name]))
        task = tasks.LanguageModel(cfg)
        ours = Ours(cfg, task)
        runners = [ours]
        try:
            runners.append(Torch(cfg, task, train.build_network(cfg, task.input_size, task.output_size)))
        except ImportError:
            print(f"{name}: PyTorch not installed, bptt alone")
        rng = np.random.default_rng(0)
        starts = rng.integers(0, len(task.stream) - cfg.window - 1, args.warmup + args.steps * args.repeats)
        windows = [(task.stream[s:s + cfg.window], task.stream[s + 1:s + cfg.window + 1]) for s in starts]
        times = {r.name: [] for r in runners}
        for r in runners:
            for x, y in windows[:args.warmup]:
                r.step(x, y)
        for rep in range(args.repeats):
            batch = windows[args.warmup + rep * args.steps:args.warmup + (rep + 1) * args.steps]
            for r in runners:                                        # alternate: drift hits both alike
                start = time.perf_counter()
                for x, y in batch:
                    r.step(x, y)
                times[r.name].append((time.perf_counter() - start) / len(batch))
        tokens = cfg.batch * cfg.window
        rates = {k: [tokens / t for t in v] for k, v in times.items()}
        best = max(statistics.median(v) for v in rates.values())
        losses = {"bptt": ours.valid_loss(task)}
        if len(runners) > 1:
            losses["PyTorch"] = runners[1].valid_loss(task, train.build_network(cfg, task.input_size, task.output_size))
        for r in runners:
            med = statistics.median(rates[r.name])
            flops = flops_per_step(cfg, task.output_size) * med / tokens
            print(f"{name:<15}{r.name:<9}{med:>10.0f}{f'{min(rates[r.name]):.0f}-{max(rates[r.name]):.0f}':>16}"
                  f"{1000 * tokens / med:>9.1f}{flops / 1e9:>9.1f}{flops / peak:>6.0%}{losses[r.name]:>11.4f}"
                  f"{med / best:>11.2f}", flush=True)
        if len(losses) == 2:
            print(f"{'':15}validation losses differ by {abs(losses['bptt'] - losses['PyTorch']):.1e}")


if __name__ == "__main__":
    main()
