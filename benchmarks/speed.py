"""Training speed and memory of bptt against PyTorch and JAX on a character language model, side by side:
`bptt bench` on the named configurations of docs/benchmarks.md.

    python benchmarks/speed.py                     # every named configuration (bptt bench --configs all)
    python benchmarks/speed.py --configs lstm-h256 --steps 20 --repeats 3 --markdown speed.md
    python benchmarks/speed.py --lengths 16 64 256 1024      # ms per step as the window T grows (lstm-h256)

Every option is bptt bench's (`bptt bench --help`); this script only changes the default
configurations: all of them, or lstm-h256 with --lengths. The measurement (worker processes timed
in alternation, same weights and windows, validation losses, peak RSS, FLOPs and MFU) is bptt.bench's.
"""

import sys

from bptt.cli import main


def argv(args):
    if "--configs" in args or any(a in args for a in ("--cell", "--hidden", "--layers", "--batch", "--window",
                                                      "--embedding")):
        return ["bench", *args]
    return ["bench", "--configs", "lstm-h256" if "--lengths" in args else "all", *args]


if __name__ == "__main__":
    sys.exit(main(argv(sys.argv[1:])))
