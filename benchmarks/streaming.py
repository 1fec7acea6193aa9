"""Streaming inference: Stepper.step, one token of B independent streams per call, against
Network.forward over a long window (T 256) of the same batch, in the same run; beside them the way a
token was fed before there was a step (engine.logits on a window of one, inside engine.evaluating),
Network.step (which packs the weights for its one call) and PyTorch stepping nn.Embedding + nn.LSTM
(nn.GRU, nn.RNN) + nn.Linear one token at a time (inference_mode, 2 threads).

    python benchmarks/streaming.py                       # LSTM 1 x 256, embedding 64, vocabulary 65, float32
    python benchmarks/streaming.py --cell gru --layers 2 --batch 1 32
    python benchmarks/streaming.py --all                 # LSTM 1 and 2 layers, GRU, RNN

Each figure is the best of --repeats rounds (the methods taking turns, so that a busy machine slows
them alike), each round --calls calls (the forward and Network.step fewer) after an untimed warm-up.
tokens/s counts the B tokens of a call; "x forward" is a method's tokens/s over the forward's. The
logits of the steps are checked against the forward's over the same tokens (max |difference|).
"""

import argparse
import time

import numpy as np

from bptt.bench.tables import machine_line
from bptt.model import engine
from bptt.model.network import Network

T_FORWARD = 256


def torch_stepper(net, B):
    """A function that runs PyTorch's modules one token of the B rows at a time, the state carried."""
    import torch

    a, sd = net.arch, {k: torch.tensor(np.array(v)) for k, v in net.torch_state_dict().items()}
    cell = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[a.cell]
    embedding = torch.nn.Embedding(a.input_size, a.embedding_dim)
    rnn, head = cell(a.embedding_dim, a.hidden_size, a.num_layers), torch.nn.Linear(a.hidden_size, a.output_size)
    for prefix, module in (("embedding.", embedding), ("rnn.", rnn), ("head.", head)):
        module.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
    state = [None]

    def step(x_t):
        with torch.inference_mode():
            hs, state[0] = rnn(embedding(torch.as_tensor(x_t)[None]), state[0])
            return head(hs[0])
    return step


SLOWER = {"forward": T_FORWARD, "Network.step": 50}       # methods run calls / this many times a round


def timings(methods, calls, repeats):
    """{name: best seconds per call}: every method warmed up, then --repeats rounds of each in turn."""
    for fn in methods.values():
        fn()
    best = dict.fromkeys(methods, float("inf"))
    for _ in range(repeats):
        for name, fn in methods.items():
            n = max(1, calls // SLOWER.get(name, 1))
            start = time.perf_counter()
            for _ in range(n):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / n)
    return best


def methods_for(net, B, use_torch):
    """The methods timed at batch B: each a function of no arguments that feeds the next token(s)."""
    p, a = net.params, net.arch
    x = np.random.default_rng(0).integers(0, a.input_size, (T_FORWARD, B))
    stepper = net.stepper()
    frozen = engine.evaluating(p, a)
    carried = {"step": None, "logits": None, "one-off": None, "i": 0}

    def following(name, fn):
        def run():
            i = carried["i"] = (carried["i"] + 1) % T_FORWARD
            carried[name] = fn(x[i], carried[name])[1]
        return run

    def logits_t1(x_t, state):
        with frozen:
            return engine.logits(p, a, x_t[None], state)

    methods = {"forward": lambda: net.forward(x), "Stepper.step": following("step", stepper.step),
               "engine.logits T=1": following("logits", logits_t1)}
    if B == 1:
        methods["Network.step"] = following("one-off", net.step)
    if use_torch:
        step = torch_stepper(net, B)
        methods["PyTorch"] = lambda: step(x[carried["i"]])
    return methods, stepper, x


def agreement(net, stepper, x):
    """max |z_step - z_forward| over 64 tokens fed one at a time."""
    z, _ = net.forward(x[:64])
    state, worst = None, 0.0
    for t in range(64):
        z_t, state = stepper.step(x[t], state)
        worst = max(worst, float(np.abs(z_t - z[t]).max()))
    return worst


def measure(cell, layers, batches, args):
    net = Network(cell, 65, args.hidden, 65, num_layers=layers, embedding_dim=64, dtype=np.float32)
    print(f"\n{cell} {layers} x {args.hidden}, embedding 64, vocabulary 65, float32")
    print(f"{'B':>4} {'method':20}{'us/call':>10}{'tokens/s':>12}{'x forward':>11}")
    for B in batches:
        methods, stepper, x = methods_for(net, B, args.torch)
        with stepper:
            best = timings(methods, args.calls, args.repeats)
            diff = agreement(net, stepper, x)
        rate = {name: B * (T_FORWARD if name == "forward" else 1) / s for name, s in best.items()}
        for name, seconds in best.items():
            per_call = seconds * 1e6 / (T_FORWARD if name == "forward" else 1)
            print(f"{B:>4} {name:20}{per_call:>10.1f}{rate[name]:>12,.0f}{rate[name] / rate['forward']:>11.2f}")
        print(f"{B:>4} {'(max |z_step - z_forward| = ' + format(diff, '.1e') + ')'}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cell", default="lstm", choices=("rnn", "gru", "lstm"), help="the cell (default: lstm)")
    p.add_argument("--layers", type=int, default=1, help="layers (default: 1)")
    p.add_argument("--hidden", type=int, default=256, help="hidden units (default: 256)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32], help="streams per call (default: 1 8 32)")
    p.add_argument("--calls", type=int, default=2000, help="calls per round (the forward: calls / 256)")
    p.add_argument("--repeats", type=int, default=5, help="rounds of each method, the best kept (default: 5)")
    p.add_argument("--all", action="store_true", help="LSTM 1 and 2 layers, GRU and RNN 1 layer")
    p.add_argument("--no-torch", dest="torch", action="store_false", help="skip PyTorch")
    args = p.parse_args(argv)
    if args.torch:
        import torch

        torch.set_num_threads(2)
    print(machine_line())
    print(f"forward: Network.forward over T = {T_FORWARD}; Stepper.step, engine.logits and PyTorch: one token a "
          f"call; best of {args.repeats} rounds")
    configs = [("lstm", 1), ("lstm", 2), ("gru", 1), ("rnn", 1)] if args.all else [(args.cell, args.layers)]
    for cell, layers in configs:
        measure(cell, layers, args.batch, args)


if __name__ == "__main__":
    main()
