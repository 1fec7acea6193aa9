"""bptt eval's speed on a long text: the default (one stream, the state carried through the whole
text, every token after the first scored), --streams 32, and PyTorch scoring the text the same way
as its users would (nn.Embedding + nn.LSTM + nn.Linear under torch.no_grad, batch 1, the state
carried across windows), side by side on the same weights.

    python benchmarks/eval_text.py                      # 1M characters of Tiny Shakespeare, bptt train's model
    python benchmarks/eval_text.py --chars 200000 --hidden 128 --layers 1

The model is bptt train's default (float32), untrained: the speed does not depend on the weights.
Each figure is the best of --repeats timings after one untimed warm-up on a short text. The losses
of bptt's default and PyTorch's must agree (float32 round-off): it is the same computation.
"""

import argparse
import time

import numpy as np

from bptt.bench.tables import machine_line
from bptt.training import building, data, tasks
from bptt.training.config import TrainConfig


def torch_score(net, ids, window=2048):
    """Mean cross-entropy of every token after the first, batch 1, state carried: PyTorch."""
    import torch

    from bptt.interop import torch_reference

    model = torch_reference.build(net.arch, net.torch_state_dict(), np.dtype(np.float32))
    x = torch.as_tensor(ids)
    total, state = 0.0, None
    with torch.no_grad():
        for start in range(0, len(ids) - 1, window):
            stop = min(start + window, len(ids) - 1)
            hs, state = model(x[start:stop, None], state)
            logp = torch.log_softmax(model.head(hs[:, 0]), dim=-1)
            total -= float(logp.gather(1, x[start + 1:stop + 1, None]).sum())
    return total / (len(ids) - 1)


def best(fn, repeats):
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chars", type=int, default=1_000_000, help="characters of the text (default: 1000000)")
    p.add_argument("--hidden", type=int, default=None, help="hidden units (default: bptt train's)")
    p.add_argument("--layers", type=int, default=None, help="layers (default: bptt train's)")
    p.add_argument("--repeats", type=int, default=2, help="timings of each, the best kept (default: 2)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    shape = {k: v for k, v in (("hidden", args.hidden), ("layers", args.layers)) if v is not None}
    cfg = TrainConfig(dtype="float32", **shape)
    text = (tasks.shipped_text() * (args.chars // len(tasks.shipped_text()) + 1))[:args.chars]
    vocab = data.build_vocab(list(text), "char")
    ids = vocab.encode(list(text))
    net = building.build_network(cfg, vocab.size, vocab.size)
    print(machine_line())
    print(f"{cfg.cell} {cfg.layers}x{cfg.hidden}, embedding {cfg.embedding}, vocabulary {vocab.size}, "
          f"{len(ids):,} tokens, float32")
    tasks.text_score(net.params, net.arch, ids[:5000])                       # warm-up
    rows = []
    for streams in (1, 32):
        seconds, (loss, count) = best(lambda s=streams: tasks.text_score(net.params, net.arch, ids, s, cfg.window),
                                      args.repeats)
        rows.append((f"bptt eval --streams {streams}" + (" (default)" if streams == 1 else ""), seconds, loss, count))
    if not args.no_torch:
        torch_score(net, ids[:5000])
        seconds, loss = best(lambda: torch_score(net, ids), args.repeats)
        rows.append(("PyTorch, batch 1, state carried", seconds, loss, len(ids) - 1))
    print(f"{'':34}{'seconds':>9}{'tokens/s':>12}{'loss':>10}{'tokens':>12}")
    for name, seconds, loss, count in rows:
        print(f"{name:34}{seconds:>9.1f}{count / seconds:>12,.0f}{loss:>10.5f}{count:>12,}")
    if not args.no_torch:
        assert abs(rows[0][2] - rows[-1][2]) < 1e-4 * rows[-1][2], "bptt's default and PyTorch's losses differ"


if __name__ == "__main__":
    main()
