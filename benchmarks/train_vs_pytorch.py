"""Train the same character LSTM with bptt and with PyTorch, side by side, and compare.

Same data (Tiny Shakespeare, last 10% validation), same initial weights (bptt's, loaded into
PyTorch), same windows in the same order, same optimiser and clipping; only the arithmetic
engine differs. Prints both validation losses after the same number of steps and their ratio.

    python benchmarks/train_vs_pytorch.py                  # 2-layer LSTM 256, batch 32, window 64, Adam 2e-3, clip 5
    python benchmarks/train_vs_pytorch.py --steps 300      # shorter

PyTorch is optional: without it, only bptt's number is printed.
"""

import argparse
import math
import tempfile
import time

from bptt.bench import runners
from bptt.training import building, data, tasks, train
from bptt.training.config import TrainConfig


def pytorch_run(cfg, task, steps):
    """PyTorch's training from bptt's initial weights: bench's PyTorch runner (nn modules, Adam,
    clip_grad_norm_) over the windows bptt train takes, the state carried between windows and
    reset at each epoch. Returns the validation loss (evaluated by bptt on PyTorch's weights) and
    the seconds taken."""
    import torch

    torch.manual_seed(cfg.seed)
    net = building.build_network(cfg, task.input_size, task.output_size)   # the same initial weights as bptt's
    runner = runners.Torch(cfg, task, net)
    stream = data.batchify(task.train, cfg.batch)
    windows_per_epoch = len(range(0, len(stream) - 1, cfg.window))
    state, start = None, time.perf_counter()
    for step in range(steps):
        i = (step % windows_per_epoch) * cfg.window
        if i == 0:
            state = None
        y = stream[i + 1:i + 1 + cfg.window]
        state = runner.step({"x": stream[i:i + len(y)], "y": y}, state)
    elapsed = time.perf_counter() - start
    return runner.valid_loss(task, net), elapsed


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    args = p.parse_args()
    cfg = TrainConfig(cell="lstm", hidden=args.hidden, layers=args.layers, embedding=64, batch=32, window=64,
                      optimizer="adam", lr=2e-3, clip=5.0, steps=args.steps, eval_every=args.steps, seed=0)
    task = tasks.LanguageModel(cfg)
    print(f"char LSTM {cfg.layers}x{cfg.hidden}, embedding {cfg.embedding}, batch {cfg.batch}, window {cfg.window}, "
          f"Adam {cfg.lr:g}, clip {cfg.clip:g}, {cfg.steps} steps, {cfg.dtype}; "
          f"validation: last 10% of Tiny Shakespeare ({task.valid.size} characters)")
    with tempfile.TemporaryDirectory() as run:
        start = time.perf_counter()
        ours = train.train(cfg, run)
        ours_time = time.perf_counter() - start
    print(f"bptt     validation loss {ours.valid_loss:.4f} nats ({ours.valid_loss / math.log(2):.3f} bits/char), "
          f"{ours_time:.0f} s")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch  not installed: no comparison")
        return
    theirs, theirs_time = pytorch_run(cfg, task, cfg.steps)
    print(f"PyTorch  validation loss {theirs:.4f} nats ({theirs / math.log(2):.3f} bits/char), {theirs_time:.0f} s")
    print(f"bptt / PyTorch: {ours.valid_loss / theirs:.4f}  ({100 * (ours.valid_loss / theirs - 1):+.2f}%)")


if __name__ == "__main__":
    main()
