"""A seeded fuzz test of the command line: random argv for train (mostly), eval, sample, task,
export, diagnose and gradcheck, built from the options argparse actually has (so a new option is
fuzzed too), with values out of range and files that are empty, binary, not UTF-8, directories,
missing, tiny, or run directories with a corrupted file. Every case runs in-process through
main(argv) at a bounded cost (sizes and step budgets are capped) and must:

- return an int exit code: 0, 1 (a diverged run or a failed check), 2 (an error in what was asked)
  or 130 (interrupted); argparse's SystemExit only with 0 (--help) or 2 (usage);
- on exit code 2, print one line "error: ..." on stderr (or argparse's "usage: ...\\nbptt ...: error: ...")
  and leave nothing behind: no new file or directory;
- refuse (exit 2) nan or +-inf given to a numeric option;
- let no exception or warning escape, and print no traceback;
- leave every file it may not write unchanged: bptt writes only into the run directory of train
  (--out / RUN_DIR), the --out of task, and RUN_DIR/diagnose/ and the --out of diagnose, and even
  there it never changes a file it did not write (a resumed run's own files excepted).

Each chunk also launches three cases under MPI (chunk_cases, rotating over the subcommands): a real
`mpiexec -n 2 bptt ...` job, and in-process as rank 0 and as rank 1 of `mpiexec -n 2` (the
launcher's environment, PMI_SIZE and PMI_RANK; not train, which would start MPI in-process).
Only train is data-parallel: rank 1
of any other command prints nothing and writes nothing, rank 0 runs it with one note, and a real
job's output is the output of one process. A share of each chunk's cases must succeed (exit 0),
so that the fuzz cannot drift into testing only the refusals.

Each chunk runs all of its cases and then fails once, listing every distinct failure with the
shortest argv that shows it, the seed of that case and what happened. generate(seed, subcommands())
gives a case's argv again; prepare() makes its directory (the run directories it names are copies
of the small runs trained once per worker, corrupted as their names say).
"""

import argparse
import io
import json
import math
import os
import random
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
import traceback
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from bptt.cli import app as cli

CHUNKS = 10
CASES_PER_CHUNK = 30
CASE_TIMEOUT = 300                      # seconds; a case that takes longer is a failure (and is stopped): generous,
                                        # since a case may be the first in its process to compile a kernel
EXIT_CODES = (0, 1, 2, 130)

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nAy me!\n\n" * 10
WORDS = "the cat sat on the mat\nthe rat sat on the cat\na mat is not a cat\n" * 12
TSV = "".join(f"{'cat rat' if i % 2 else 'cat mat'} {'sat ' * (i % 3)}\t{i % 2}\n" for i in range(40))
PROBLEMS = ("adding", "copy", "order", "sentiment")

# The files every case directory starts with (paths relative to it; the case runs in it).
FILES = {
    "text.txt": TEXT.encode(),
    "words.txt": WORDS.encode(),
    "tiny.txt": b"abc",
    "empty.txt": b"",
    "garbage.bin": random.Random(0).randbytes(300),
    "bad-utf8.txt": b"good line\n\xff\xfe bad bytes\n" * 5,
    "nul.txt": b"ab\x00cd\n" * 20,
    "crlf.txt": TEXT.replace("\n", "\r\n").encode(),
    "unicode.txt": "h\u00e9llo w\u00f6rld \U0001f642 \u03c9\u0301\n".encode() * 20,
    "newlines.txt": b"\n" * 50,
    "unseen.txt": b"zzzz qqqq XYZ 123 {}\n" * 5,
    "train.tsv": TSV.encode(),
    "one-class.tsv": "".join(f"cat mat {'sat ' * (i % 3)}\t1\n" for i in range(30)).encode(),
    "header.tsv": ("text\tlabel\n" + TSV).encode(),
    "no-tab.tsv": b"cat mat 1\ncat rat 0\n" * 10,
    "train.csv": TSV.replace("\t", ",").encode(),
    "dir/inner.txt": TEXT.encode(),
    "userdir/notes.txt": b"my notes\n",
    "userdir/config.json": b'{"mine": true}\n',
    "userdir/metrics.jsonl": b'{"step": 1, "mine": true}\n',
}
DIRS = ("emptydir",)
LINKS = {"dangling": "nowhere"}
BAD_DATA = ["words.txt", "tiny.txt", "empty.txt", "garbage.bin", "bad-utf8.txt", "nul.txt", "crlf.txt", "unicode.txt",
            "newlines.txt", "unseen.txt", "text.txt", "train.tsv", "one-class.tsv", "header.tsv", "no-tab.tsv",
            "train.csv", "dir", "missing.txt", "dangling", "emptydir", "/dev/null", ""]

# The runs a case may use: trained once per worker, copied into the case (and maybe corrupted there).
RUN_KINDS = {
    "lm": ["--data", "text.txt", "--steps", "4", "--eval-every", "2", "--flow-every", "1", "--embedding", "4",
           "--window", "5"],
    "word": ["--data", "words.txt", "--level", "word", "--steps", "2", "--eval-every", "2", "--embedding", "4",
             "--window", "5"],
    "classify": ["--task", "classify", "--data", "train.tsv", "--level", "word", "--steps", "2", "--eval-every", "2",
                 "--embedding", "4"],
    "adding": ["--task", "adding", "--length", "6", "--test-size", "8", "--embedding", "0", "--steps", "2"],
}
RUN_SMALL = ["--hidden", "6", "--layers", "1", "--batch", "3", "--eval-batch", "2", "--log-every", "1",
             "--dtype", "float64"]
CORRUPTIONS = ("flip", "truncate", "empty", "delete", "directory", "json-type", "json-field", "torn-line",
               "garbage-line")
OTHER_RUN_DIRS = ["missing-run", "text.txt", "emptydir", "userdir", ".", "dir", "dangling", ""]
GOOD_OUT = [*(["new-run"] * 8), "deep/a/b/run", "new run \u00e9", "emptydir"]
BAD_OUT = ["userdir", "text.txt", "text.txt/run", "", ".", "runs/lm", "dangling", "dir", "/dev/null"]

# Upper bounds that keep a case cheap: a valid value above them is lowered to them.
CAPS = {
    "train": dict(hidden=8, layers=2, embedding=8, batch=4, window=8, backprop=16, recompute_every=8, steps=3,
                  length=8, test_size=8, eval_batch=4, sample=20, skip=4, max_time=1.0),
    "task": dict(lengths=8, steps=3, hidden=8, batch=4, test_size=8, jobs=1),
    "gradcheck": dict(layers=2, seq_len=2, batch=2, hidden=2),
    "sample": dict(length=20, tokens=20),
    "diagnose": dict(length=8),
    "compare-gradients": dict(steps=8, batch=2, seeds=2, hidden=4, layers=2, k=8),
    "eval": dict(streams=64),
    "export": {},
}
DEFAULT_INT_CAP = 8
# Options where a huge value (1e12 and beyond) fails fast or costs nothing, so it is kept. (Not
# --layers, nor --skip: at 1e12 they ran for minutes.)
HUGE_OK = {
    "train": {"seed", "eval_every", "log_every", "flow_every", "warmup", "max_vocab", "hidden", "embedding", "batch",
              "eval_batch", "window", "backprop", "recompute_every", "length", "test_size"},
    "sample": {"seed", "top_k"},
    "task": {"seed"},
    "gradcheck": {"seed"},
    "diagnose": set(),
    "compare-gradients": {"seed"},
    "eval": {"streams"},
    "export": set(),
}
# Options always given with a small value unless the case chose them (the defaults are costly);
# train's depend on the task, since an option that does not apply to it is an error.
BASE = {
    "lm": {"hidden": "6", "layers": "1", "embedding": "4", "batch": "3", "window": "5", "eval_batch": "2"},
    "classify": {"hidden": "6", "layers": "1", "embedding": "4", "batch": "3", "eval_batch": "2"},
    "problem": {"hidden": "6", "layers": "1", "batch": "3", "length": "6", "test_size": "8", "eval_batch": "2"},
    "task": {"steps": "2", "hidden": "4", "batch": "3", "test_size": "8", "lengths": "5", "cells": "rnn-tanh"},
    "gradcheck": {"seq_len": "2", "batch": "1", "hidden": "2", "layers": "1"},
    "sample": {"length": "20", "tokens": "20"},
    "diagnose": {"length": "6"},
    "compare-gradients": {"steps": "6", "batch": "2", "seeds": "2", "hidden": "4"},
    "eval": {},
    "export": {},
}
OMITTABLE = {"layers", "embedding", "batch", "window", "eval_batch"}   # cheap enough at their defaults on tiny data
RESUME_OPTIONS = {"steps", "epochs", "max_time", "lr", "clip", "sample"}
NEVER = {"sample": {"interactive"},     # reads stdin: a real job's inherited terminal would wait for a line
         "train": {"resume", "out", "run"}, "gradcheck": {"all", "no_torch", "cell"}, "task": {"out", "jobs"},
         "diagnose": {"out"}, "export": {"out"}, "compare-gradients": {"out"}}
MPI_NOTE = re.compile(r"note: bptt [\w-]+ runs on MPI rank 0 alone \(only bptt train is data-parallel\); "
                      r"the other rank has nothing to do")
MPI_LAUNCHES = ("job", "rank 0", "rank 1")     # a chunk's cases launched under MPI (chunk_cases)
SUCCEEDING = 0.12               # the share of each chunk's cases that must exit 0 (measured: 17% to 37%)

BAD_INTS = ["0", "-1", "abc", "", "1.5", "nan", "inf", "-inf", "1e300", " ", "0x10", "1_0", "\u0663", "--"]
HUGE_INTS = ["1000000000000", "99999999999999999999999"]
BAD_FLOATS = ["0", "-1", "nan", "inf", "-inf", "NaN", "Infinity", "1e300", "-1e300", "1e-320", "", "abc", "1,5", "--"]
NON_FINITE = re.compile(r"[+-]?(nan|inf|infinity)", re.IGNORECASE)
GOOD_FLOATS = {   # a value that is a valid number of its option
    "lr": ["0.001", "0.01", "0.1", "1"], "dropout": ["0", "0.1", "0.5", "0.99"],
    "valid_fraction": ["0.1", "0.3", "0.5"],
    "momentum": ["0", "0.9", "1"], "clip": ["0", "1", "5"], "clip_dh": ["0", "0.1", "1"], "weight_decay": ["0", "1e-4"],
    "temperature": ["0.5", "1", "2"], "top_p": ["0.5", "0.9", "1"], "max_time": ["0.2", "1"],
    "epochs": ["0.001", "0.01", "0.5", "1", "2"], "radius": ["0.5", "1", "1.5"], "forget_bias": ["0", "1", "-1"],
}
GOOD_TEXTS = {"separator": ["\\n\\n", "\\n"], "prime": ["ROMEO", "But soft", "\n"]}
TEXTS = ["\\n\\n", "", "\n", "\\t", "x", "ROMEO", "\u00e9", "\U0001f642", "\x00", "-", " ", "a" * 50, "ROMEO:\nBut",
         "the cat", "zzz", "--x"]
TOP_LEVEL = [[], ["--version"], ["--help"], ["-h"], ["nonsense"], ["train"], ["eval"], ["sample"], ["task"],
             ["train", "--help"], ["eval", "--help"], ["--bogus"], ["train", "--out"], ["--", "train"]]


class CaseTimeout(BaseException):
    pass


# --- the command line, as argparse sees it -------------------------------------------------------

def top_parser():
    """The parser main() uses: bptt.cli.build_parser() when there is one, else the parser main()
    builds, caught as it parses."""
    if hasattr(cli, "build_parser"):
        return cli.build_parser()
    caught = []

    class Caught(Exception):
        pass

    original = argparse.ArgumentParser.parse_known_args

    def catch(self, *args, **kwargs):
        caught.append(self)
        raise Caught

    argparse.ArgumentParser.parse_known_args = catch
    try:
        cli.main(["--version"])
    except Caught:
        pass
    finally:
        argparse.ArgumentParser.parse_known_args = original
    return caught[0]


def subcommands():
    """{name: [Option]} for every subcommand."""
    parser = top_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: [Option(a) for a in p._actions
                   if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]
            for name, p in subs.choices.items()}


def accepts(kind, text):
    try:
        kind(text)
    except Exception:  # noqa: BLE001 (argparse types raise ValueError, TypeError or ArgumentTypeError)
        return False
    return True


class Option:
    def __init__(self, action):
        self.dest, self.nargs, self.required = action.dest, action.nargs, action.required
        longs = [s for s in action.option_strings if s.startswith("--")]
        self.flag = max(longs or action.option_strings, key=len) if action.option_strings else None
        self.choices = tuple(action.choices) if action.choices else ()
        self.metavar = action.metavar
        t = action.type
        if action.nargs == 0:
            self.kind = "flag"
        elif self.choices:
            self.kind = "choice"
        elif t is None or t is str:
            self.kind = "text"
        elif t is int or (not accepts(t, "0.5") and accepts(t, "7")):
            self.kind = "int"
        elif t is float or accepts(t, "0.5"):
            self.kind = "float"
        else:
            self.kind = "text"
        self.many = action.nargs in ("+", "*") or isinstance(action.nargs, int) and action.nargs > 1

    def __repr__(self):
        return f"Option({self.flag or self.dest}, {self.kind})"


# --- generating a case -----------------------------------------------------------------------------

class Case:
    """argv (paths relative to the case directory) and what the case may write."""

    def __init__(self, command, argv, runs=(), resume=False):
        self.command, self.argv, self.runs, self.resume = command, argv, list(runs), resume
        self.options, self.fault = [], None                       # set by generate()
        self.mpi = None                                           # "rank 0", "rank 1" (in-process) or "job"

    def shown(self):
        launch = {None: [], "job": ["mpiexec", "-n", "2"]}.get(self.mpi, [f"[{self.mpi} of mpiexec -n 2]"])
        return shlex.join([*launch, "bptt", *self.argv])


class Draw:
    """The random choices of one case. Most cases hold one fault at most (a bad option value, a bad
    data file, a bad place: run directory or output path; or a malformed command line), so that each
    failure shows on its own; some hold several at once."""

    FAULTS = (("none", 25), ("value", 35), ("file", 13), ("place", 12), ("argv", 5), ("many", 10))

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.fault = self.rng.choices([f for f, _ in self.FAULTS], [w for _, w in self.FAULTS])[0]

    def bad(self, kind):
        """Whether the choice of this kind ("file", "place") is to be a bad one."""
        return self.fault == kind or self.fault == "many" and self.rng.random() < 0.3

    def __getattr__(self, name):                                  # rng.choice, rng.random, ...
        return getattr(self.rng, name)


def run_files(kind):
    files = ["config.json", "checkpoint.safetensors", "best.safetensors", "metrics.jsonl", "vocab.json"]
    if kind == "classify":
        files.append("labels.json")
    if kind == "adding":
        files.remove("vocab.json")
    return files


def run_dir_name(draw, kinds=tuple(RUN_KINDS)):
    """RUN_DIR: a good run; or (a bad place) a corrupted copy of one, or something that is no run."""
    kind = draw.choice(kinds)
    if not draw.bad("place"):
        return f"runs/{kind}"
    if draw.random() < 0.25:
        return draw.choice(OTHER_RUN_DIRS)
    return f"runs/{kind}-{draw.choice(run_files(kind))}-{draw.choice(CORRUPTIONS)}"


def data_file(draw, good):
    return draw.choice(BAD_DATA) if draw.bad("file") else good


def good_value(draw, command, opt):
    dest = opt.dest
    count = draw.choice([1, 1, 2]) if opt.many else 1
    if opt.kind == "choice":
        return draw.sample(opt.choices, k=min(len(opt.choices), count))
    if opt.kind == "int":
        cap = CAPS[command].get(dest, DEFAULT_INT_CAP)
        return [str(draw.randint(1, int(cap))) for _ in range(count)]
    if opt.kind == "float":
        return [draw.choice(GOOD_FLOATS.get(dest, ["0.5", "1", "0.1", "2"])) for _ in range(count)]
    return [draw.choice(GOOD_TEXTS.get(dest, TEXTS)) for _ in range(count)]


def bad_value(draw, command, opt):
    if opt.kind == "choice":
        return [draw.choice(["", "abc", str(opt.choices[0]).upper(), f"{opt.choices[0]} "])]
    if opt.kind == "int":
        if opt.dest in HUGE_OK[command] and draw.random() < 0.25:
            return [draw.choice(HUGE_INTS)]
        return [draw.choice(BAD_INTS)]
    if opt.kind == "float":
        return [draw.choice(BAD_FLOATS)]
    return [draw.choice(TEXTS)]


def chosen_options(draw, command, options, skip=()):
    """A few options of the subcommand with values: {dest: (flag, [values])}; with a "value" fault,
    exactly one of them has a bad value."""
    pool = [o for o in options if o.flag and o.dest not in NEVER.get(command, set()) and o.dest not in skip
            and o.dest not in ("data", "valid")]
    picked = draw.sample(pool, k=min(len(pool), draw.choice([0, 1, 1, 2, 2, 2, 3, 3, 4, 5, 7])))
    valued = [o for o in pool if o.kind != "flag"]
    if draw.fault == "value" and valued and not any(o.kind != "flag" for o in picked):
        picked.append(draw.choice(valued))
    faulty = draw.choice([o for o in picked if o.kind != "flag"]) if draw.fault == "value" and valued else None
    chosen = {}
    for opt in picked:
        if opt.kind == "flag":
            chosen[opt.dest] = (opt.flag, [])
        elif opt is faulty or draw.fault == "many" and draw.random() < 0.3:
            chosen[opt.dest] = (opt.flag, bad_value(draw, command, opt))
        else:
            chosen[opt.dest] = (opt.flag, good_value(draw, command, opt))
    return chosen


def capped(command, dest, text, opt_kind):
    """A valid value above the cap lowered to it; anything else as it is."""
    cap = CAPS[command].get(dest, DEFAULT_INT_CAP if opt_kind == "int" else None)
    if cap is None:
        return text
    try:
        number = float(text) if opt_kind == "float" else int(text)
    except ValueError:
        return text
    if not math.isfinite(number) or number <= cap:
        return text
    if opt_kind == "int" and dest in HUGE_OK[command] and number >= 10 ** 12:
        return text
    return str(cap)


def assemble(command, options, chosen, draw, positionals=(), base=None):
    """argv from the chosen options, the small base values of the others, capped. A value that
    starts with "-" goes as --flag=value (else argparse would read it as an option)."""
    kinds = {o.dest: o for o in options}
    given = dict(chosen)
    for dest, text in BASE[command if base is None else base].items() if base != "none" else ():
        if dest in kinds and dest not in given and not (dest in OMITTABLE and draw.random() < 0.4):
            given[dest] = (kinds[dest].flag, [text])
    argv = [command, *positionals]
    for dest, (flag, values) in given.items():
        kind = kinds[dest].kind if dest in kinds else "text"
        values = [capped(command, dest, v, kind) for v in values]
        if len(values) == 1 and values[0].startswith("-") and values[0] != "--" and flag.startswith("--"):
            argv.append(f"{flag}={values[0]}")
        else:
            argv += [flag, *values]
    return argv


def valid_number(values, kind):
    try:
        number = float(values[0]) if kind == "float" else int(values[0])
    except (ValueError, IndexError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def copied(path):
    return [path[len("runs/"):]] if path.startswith("runs/") else []


def train_case(draw, options):
    kinds = {o.dest: o for o in options}
    resume = draw.random() < 0.25
    if resume and draw.random() < 0.7:                        # mostly what a resume may change
        chosen = chosen_options(draw, "train", [o for o in options if o.dest in RESUME_OPTIONS])
    else:
        chosen = chosen_options(draw, "train", options)
        if "task" not in chosen and "task" in kinds and draw.random() < 0.45:     # each task, not just the default
            chosen["task"] = ("--task", [draw.choice(["lm", "classify", "classify", *PROBLEMS])])
    task = chosen.get("task", (None, ["lm"]))[1][0]
    if resume:
        out = run_dir_name(draw)
        if draw.random() < 0.15:
            chosen["data"] = ("--data", [data_file(draw, "text.txt")])
        costly = True                                          # an epoch of a problem run is 1000 steps
    else:
        out = draw.choice(BAD_OUT) if draw.bad("place") else draw.choice(GOOD_OUT)
        if task not in PROBLEMS:
            chosen["data"] = ("--data", [data_file(draw, "train.tsv" if task == "classify" else "text.txt")])
        if "valid" in kinds and draw.random() < 0.1:
            chosen["valid"] = ("--valid", [data_file(draw, chosen.get("data", (None, ["text.txt"]))[1][0])])
        costly = task in PROBLEMS
    # the step budget: at most a few steps, or a small fraction of an epoch, or a fraction of a second
    if "steps" not in chosen:
        epochs = valid_number(chosen.get("epochs", (None, []))[1], "float")
        max_time = valid_number(chosen.get("max_time", (None, []))[1], "float")
        if epochs is not None:
            chosen["epochs"] = ("--epochs", [str(min(epochs, 0.003 if costly else 0.05))])
        elif max_time is None and (costly or draw.random() < 0.85):
            chosen["steps"] = ("--steps", [str(draw.randint(1, 3))])
        if "steps" not in chosen and max_time is None:
            chosen["max_time"] = ("--max-time", ["0.3"])
    if "run" in kinds and draw.random() < 0.15:               # RUN_DIR given as a positional
        r = draw.random()
        positionals, outs = ([out], []) if r < 0.5 else ([out], ["--out", out]) if r < 0.75 else \
            (["other-run"], ["--out", out])
    else:
        positionals, outs = [], ["--out", out]
    base = "none" if resume else "problem" if task in PROBLEMS else "classify" if task == "classify" else "lm"
    argv = assemble("train", options, chosen, draw, positionals, base=base) + outs
    if resume:
        argv.append("--resume")
    return Case("train", argv, copied(out), resume)


def eval_case(draw, options):
    run = run_dir_name(draw)
    chosen = chosen_options(draw, "eval", options)
    good = "train.tsv" if "classify" in run else "words.txt" if "word" in run else "text.txt"
    chosen["data"] = ("--data", [data_file(draw, good)])
    return Case("eval", assemble("eval", options, chosen, draw, [run]), copied(run))


def sample_case(draw, options):
    run = run_dir_name(draw, kinds=("lm", "lm", "lm", "word", "classify", "adding"))
    chosen = chosen_options(draw, "sample", options)
    return Case("sample", assemble("sample", options, chosen, draw, [run]), copied(run))


def diagnose_case(draw, options):
    run = run_dir_name(draw)
    chosen = chosen_options(draw, "diagnose", options)
    argv = assemble("diagnose", options, chosen, draw, [run])
    if draw.random() < 0.3:
        argv += ["--out", draw.choice(["text.txt", "dir", "missing-dir/", "emptydir/r.html", ""]) if draw.bad("place")
                 else draw.choice(["report.html", "sub/new/report.html"])]
    return Case("diagnose", argv, copied(run))


def compare_case(draw, options):
    """bptt compare-gradients on a run (any kind: a classifier's is refused in one line) or a fresh network,
    sometimes writing its page."""
    run = [run_dir_name(draw)] if draw.random() < 0.6 else []
    chosen = chosen_options(draw, "compare-gradients", options)
    argv = assemble("compare-gradients", options, chosen, draw, run)
    if draw.random() < 0.3:
        argv += ["--out", draw.choice(["text.txt", "dir", "missing-dir/r.html", "emptydir", ""]) if draw.bad("place")
                 else draw.choice(["report.html", "emptydir/report.html"])]
    return Case("compare-gradients", argv, copied(run[0]) if run else ())


def task_case(draw, options):
    chosen = chosen_options(draw, "task", options)
    if draw.random() < 0.1:                                   # processes: only values that fail at once
        chosen["jobs"] = ("--jobs", [draw.choice(["0", "-1", "abc", "1"])])
    if "report" in chosen and draw.random() < 0.7:            # matplotlib: costly
        del chosen["report"]
    problem = draw.choice(PROBLEMS) if draw.random() < 0.95 else draw.choice(["", "nonsense"])
    out = draw.choice(["emptydir", "userdir", "text.txt", "text.txt/x", "runs/lm", "", "dangling"]) \
        if draw.bad("place") else "sweep"
    argv = assemble("task", options, chosen, draw, [problem]) + ["--out", out]
    return Case("task", argv, copied(out))


def export_case(draw, options):
    run = run_dir_name(draw, kinds=("lm", "lm", "word", "classify", "adding"))
    chosen = chosen_options(draw, "export", options)
    if "format" not in chosen and draw.random() < 0.9:
        chosen["format"] = ("--format", [draw.choice(["onnx", "torch"])])
    fmt = chosen.get("format", (None, ["onnx"]))[1][0]
    good = "model.onnx" if fmt == "onnx" else "model.safetensors"
    out = draw.choice(["text.txt", "dir", "missing-dir/m.onnx", "", "emptydir", "/dev/null", "runs"]) \
        if draw.bad("place") else draw.choice([good, f"emptydir/{good}", "new model.bin"])
    return Case("export", assemble("export", options, chosen, draw, [run]) + ["--out", out], copied(run))


def gradcheck_case(draw, options):
    kinds = {o.dest: o for o in options}
    chosen = chosen_options(draw, "gradcheck", options)
    cells = kinds["cell"].choices if "cell" in kinds else ("gru",)
    argv = assemble("gradcheck", options, chosen, draw)
    cell = draw.choice(["", "transformer"]) if draw.fault == "many" and draw.random() < 0.2 else draw.choice(cells)
    return Case("gradcheck", argv + ["--no-torch", "--cell", cell])


def malformed(draw, case, subs):
    """A malformed command line: an unknown option, an option without its value, abbreviations."""
    r = draw.random()
    if r < 0.35:
        case.argv.insert(draw.randint(1, len(case.argv)), draw.choice(["--bogus", "-x", "--", "-"]))
    elif r < 0.7:
        flags = [o.flag for o in subs[case.command] if o.flag and o.kind != "flag"]
        case.argv.append(draw.choice(flags))
    else:
        case.argv = [a[:5] if a.startswith("--") and len(a) > 6 else a for a in case.argv]
    return case


GENERATORS = [("train", train_case, 50), ("eval", eval_case, 11), ("sample", sample_case, 10),
              ("gradcheck", gradcheck_case, 7), ("task", task_case, 8), ("export", export_case, 8),
              ("diagnose", diagnose_case, 5), ("compare-gradients", compare_case, 4)]


def generate(seed, subs, command=None, mpi=None):
    """Case `seed`: of a command drawn by GENERATORS' weights (or the one given), launched as one
    process or as mpi ("job", "rank 0", "rank 1")."""
    draw = Draw(seed)
    if command is None and draw.random() < 0.03:
        return Case("top", list(draw.choice(TOP_LEVEL)))
    names = [(name, make) for name, make, _ in GENERATORS if name in subs and command in (None, name)]
    weights = [w for name, _, w in GENERATORS if name in subs and command in (None, name)]
    name, make = draw.choices(names, weights)[0]
    case = make(draw, subs[name])
    if draw.fault == "argv" or draw.fault == "many" and draw.random() < 0.2:
        case = malformed(draw, case, subs)
    case.options, case.fault, case.mpi = subs[name], draw.fault, mpi
    return case


def chunk_cases(chunk, subs):
    """(seed, case) of a chunk: CASES_PER_CHUNK drawn cases, and one case per MPI_LAUNCHES launched
    under MPI, their commands rotating from chunk to chunk so that over the chunks every subcommand
    is run as a real mpiexec job, and (train aside, which would start MPI in-process) as rank 0 and
    as rank 1 in-process."""
    cases = [(chunk * 1000 + i, generate(chunk * 1000 + i, subs)) for i in range(CASES_PER_CHUNK)]
    commands = [name for name, _, _ in GENERATORS if name in subs]
    for k, launch in enumerate(MPI_LAUNCHES):
        command = commands[(len(MPI_LAUNCHES) * chunk + k) % len(commands)]
        seed = 100000 + chunk * 1000 + k
        cases.append((seed, generate(seed, subs, command, "job" if command == "train" else launch)))
    return cases


# --- the files of a case ---------------------------------------------------------------------------

def write_files(root):
    for name, content in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for name in DIRS:
        (root / name).mkdir()
    for name, target in LINKS.items():
        os.symlink(target, root / name)


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory):
    """{kind: path} of small finished runs, trained once per worker, and {kind: why} of those that
    could not be trained (the cases meant for them then find no run)."""
    root = tmp_path_factory.mktemp("fuzz-runs")
    write_files(root)
    paths, broken = {}, {}
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for kind, args in RUN_KINDS.items():
            argv = ["train", *args, *RUN_SMALL, "--out", f"runs/{kind}"]
            try:
                with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                    warnings.simplefilter("ignore")
                    code = cli.main(argv)
            except Exception as e:  # noqa: BLE001 (reported by the first chunk)
                code = f"{type(e).__name__}: {e}"
            if code == 0:
                paths[kind] = root / "runs" / kind
            else:
                broken[kind] = (shlex.join(["bptt", *argv]), code)
                shutil.rmtree(root / "runs" / kind, ignore_errors=True)
    finally:
        os.chdir(cwd)
    return root, paths, broken


def corrupt(path, file, how, rng):
    target = path / file
    if how == "delete":
        target.unlink(missing_ok=True)
    elif how == "directory":
        target.unlink(missing_ok=True)
        target.mkdir()
    elif how == "empty":
        target.write_bytes(b"")
    elif how == "truncate":
        data = target.read_bytes()
        target.write_bytes(data[:rng.randrange(max(len(data), 1))])
    elif how == "flip":
        data = bytearray(target.read_bytes())
        for _ in range(rng.randint(1, 8) if data else 0):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        target.write_bytes(bytes(data))
    elif how == "json-type":
        target.write_text(rng.choice(["[]", "null", "1", '"x"', "{}", "{", '{"step": "x"}']))
    elif how == "json-field":
        if file == "config.json":
            cfg = json.loads(target.read_text())
            key, bad = rng.choice([("hidden", 5), ("cell", "gru"), ("cell", "abc"), ("dtype", "float16"),
                                   ("task", "copy"), ("level", "word"), ("window", -1), ("data", "missing.txt"),
                                   ("hidden", "8"), ("steps", 1e300), ("lr", None), ("unknown", 1),
                                   ("embedding", 0), ("layers", 3)])
            cfg[key] = bad
            target.write_text(json.dumps(cfg))
        elif file in ("vocab.json", "labels.json"):
            d = json.loads(target.read_text())
            key = "tokens" if "tokens" in d else "labels" if "labels" in d else next(iter(d), "x")
            d[key] = rng.choice([d.get(key, [])[:-1], list(reversed(d.get(key, []))), [], "abc", [1, 2]])
            target.write_text(json.dumps(d))
        else:
            corrupt(path, file, "flip", rng)
    elif how == "torn-line":
        with open(target, "ab") as f:
            f.write(b'{"step": 99, "loss": 1.2')
    elif how == "garbage-line":
        lines = target.read_bytes().splitlines(keepends=True)
        lines.insert(rng.randrange(len(lines) + 1), b"not json\n")
        target.write_bytes(b"".join(lines))


def prepare(case_dir, case, trained, seed):
    write_files(case_dir)
    rng = random.Random(seed + 7)
    for name in case.runs:
        kind, *damage = name.split("-", 1)
        if kind not in trained:
            continue
        dest = case_dir / "runs" / name
        shutil.copytree(trained[kind], dest, symlinks=True)
        if damage:                                            # "lm-metrics.jsonl-torn-line"
            file, how = damage[0].split("-", 1)
            corrupt(dest, file, how, rng)


# --- what a case may write ------------------------------------------------------------------------

def snapshot(roots):
    """{path: what it is}: (bytes, mtime_ns) for a file, the target of a link, "dir" for a directory."""
    found = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                if stat.S_ISLNK(st.st_mode):
                    found[p] = ("link", os.readlink(p))
                elif stat.S_ISDIR(st.st_mode):
                    found[p] = ("dir",)
                else:
                    with open(p, "rb") as f:
                        found[p] = (f.read(), st.st_mtime_ns)
    return found


def option_values(argv, flag):
    """The values given to flag (the last wins), or None."""
    found = None
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            found = argv[i + 1]
        elif a.startswith(flag + "="):
            found = a[len(flag) + 1:]
    return found


def allowed_writes(case, case_dir):
    """(roots where new files may appear, paths whose existing content may change)."""
    argv = case.argv
    resolve = lambda p: Path(os.path.abspath(case_dir / p))       # noqa: E731
    roots, mutable = [], []
    if case.command == "train":
        out = option_values(argv, "--out")
        positional = argv[1] if len(argv) > 1 and not argv[1].startswith("-") else None
        for p in (out, positional):
            if p is not None:
                roots.append(resolve(p))
                if case.resume and p.startswith("runs/"):
                    mutable.append(resolve(p))                    # a resumed run's own files
    elif case.command in ("task", "export", "compare-gradients"):           # compare-gradients: a new page, --out
        out = option_values(argv, "--out")
        if out is not None:
            roots.append(resolve(out))
    elif case.command == "diagnose":
        out = option_values(argv, "--out")
        if out is not None:
            roots.append(resolve(out).parent)                     # the report and its figures beside it
            mutable.append(resolve(out))
        if len(argv) > 1:
            roots.append(resolve(argv[1]) / "diagnose")
            mutable.append(resolve(argv[1]) / "diagnose")
    return roots, mutable


def inside(path, root):
    return path == root or root in path.parents


def changes(before, after, roots, mutable, case_dir):
    problems = []
    show = lambda p: os.path.relpath(p, case_dir)                  # noqa: E731
    for p, was in before.items():
        path = Path(p)
        if any(inside(path, m) for m in mutable):
            continue
        if p not in after:
            problems.append(("deleted a user file", show(p)))
        elif after[p] != was:
            problems.append(("modified a user file", show(p)))
    for p in after.keys() - before.keys():
        path = Path(p)
        if not any(inside(path, r) or inside(r, path) for r in roots):
            problems.append(("wrote outside the run directory", show(p)))
    return problems


# --- running a case ---------------------------------------------------------------------------------

def normalise(text):
    text = re.sub(r"(/[^\s:'\"]+)+", "PATH", text)
    text = re.sub(r"0x[0-9a-f]+", "N", text)
    return re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", text)[:150]


def non_finite(case):
    """The first numeric option given nan or +-inf in argv (it must be refused), or None."""
    numeric = {o.flag for o in case.options if o.kind in ("int", "float")}
    for i, a in enumerate(case.argv):
        flag, _, text = a.partition("=") if a.startswith("--") and "=" in a else (a, "", None)
        if text is None and i + 1 < len(case.argv):
            text = case.argv[i + 1]
        if flag in numeric and text is not None and NON_FINITE.fullmatch(text.strip()):
            return f"{flag} {text}"
    return None


def stops(signum, frame):
    raise CaseTimeout


def launched(case):
    """cli.main(argv) as this process, or as rank 0 or 1 of mpiexec -n 2 (the launcher's environment)."""
    if case.mpi not in ("rank 0", "rank 1"):
        return cli.main(list(case.argv))
    saved = {name: os.environ.get(name) for name in ("PMI_SIZE", "PMI_RANK")}
    os.environ.update(PMI_SIZE="2", PMI_RANK=case.mpi[-1])
    try:
        return cli.main(list(case.argv))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_job(case, case_dir):
    """The case as a real `mpiexec -n 2 bptt ...` job: (exit code, stdout, stderr, failures)."""
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_"))}
    try:
        done = subprocess.run([str(bin_dir / "mpiexec"), "-n", "2", str(bin_dir / "bptt"), *case.argv], cwd=case_dir,
                              env=env, capture_output=True, text=True, timeout=CASE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "", "", [(f"the mpiexec job took more than {CASE_TIMEOUT} s", "")]
    failures = []
    lines = done.stderr.strip().splitlines()
    if done.returncode == 2 and sum(line.startswith("error: ") for line in lines) != 1:
        failures.append(("mpiexec job: exit 2 without exactly one 'error: ' line", done.stderr[-800:]))
    if case.command != "train" and done.returncode == 0:
        if len(MPI_NOTE.findall(done.stderr)) != 1:
            failures.append(("mpiexec job: not one note that rank 0 alone runs it", done.stderr[-800:]))
        shown = [line for line in done.stdout.splitlines() if line.strip()]
        if case.command != "sample" and len(shown) != len(set(shown)):
            failures.append(("mpiexec job: a line printed twice (both ranks ran it?)", done.stdout[-800:]))
    return done.returncode, done.stdout, MPI_NOTE.sub("", done.stderr), failures


def run_case(case, case_dir, fixture_root, capsys):
    """The failures of one case: [(signature, detail)]."""
    roots, mutable = allowed_writes(case, case_dir)
    if case.mpi == "rank 1":
        roots, mutable = [], []                                   # rank 1 of any command but train: nothing
    before = snapshot([case_dir, fixture_root])
    capsys.readouterr()
    failures, code, caught = [], None, []
    as_job = case.mpi == "job" and not any("\x00" in arg for arg in case.argv)   # exec cannot pass a NUL: such a
    previous = signal.signal(signal.SIGALRM, stops)                              # case runs in this process
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT)
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if as_job:
                code, job_out, job_err, job_failures = run_job(case, case_dir)
                failures += job_failures
            else:
                code = launched(case)
    except KeyboardInterrupt:
        raise
    except CaseTimeout:
        failures.append((f"took more than {CASE_TIMEOUT} s", ""))
    except SystemExit as e:
        if e.code in (0, 2):
            code = e.code
        else:
            failures.append((f"SystemExit({e.code!r})", ""))
    except BaseException as e:  # noqa: BLE001 (whatever escapes main is the finding)
        tb = traceback.format_exception(e)
        where = next((line.strip() for line in reversed(tb) if line.strip().startswith("File ")), "")
        failures.append((f"{type(e).__name__} escaped main: {normalise(str(e))}",
                         f"{where}\n{''.join(tb[-3:])}"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - started
    out, err = capsys.readouterr()
    if as_job:
        out, err = job_out, job_err
    elif case.mpi == "rank 1":
        if out or err:
            failures.append(("rank 1 of mpiexec printed something (only train runs on every rank)",
                             (out + err)[-500:]))
        if code not in (0, 2):
            failures.append((f"rank 1 of mpiexec: exit code {code!r}", ""))
        code = None                                               # no message of its own to check
    elif case.mpi == "rank 0":
        if len(MPI_NOTE.findall(err)) > 1:
            failures.append(("rank 0 of mpiexec noted more than once that it runs alone", err[-500:]))
        err = MPI_NOTE.sub("", err).lstrip("\n")
    for w in caught:
        failures.append((f"{w.category.__name__} reached the user: {normalise(str(w.message))}",
                         f"{w.filename}:{w.lineno}"))
    if code is not None:
        if type(code) is not int or code not in EXIT_CODES:
            last = err.strip().splitlines()[-1] if err.strip() else ""
            failures.append((f"exit code {code!r}: {normalise(last)}", err[-500:]))
        if code == 2:
            lines = err.strip().splitlines()
            one_line = len(lines) == 1 and lines[0].startswith("error: ")
            usage = (bool(lines) and lines[0].startswith("usage: ") and re.match(r"bptt.*: error: ", lines[-1])
                     and not any("error" in line for line in lines[:-1]))
            if not (one_line or usage):
                first = next((line for line in lines if "error" in line), lines[-1] if lines else "")
                failures.append((f"exit 2 without one 'error: ' line on stderr ({len(lines)} lines): "
                                 f"{normalise(first)}", err[-800:]))
    if code is not None and code != 2 and non_finite(case):
        failures.append((f"a non-finite number was accepted (exit {code}): {non_finite(case)}", ""))
    if "Traceback" in out + err:
        failures.append(("a traceback was printed", (out + err)[-800:]))
    after = snapshot([case_dir, fixture_root])
    for what, path in changes(before, after, roots, mutable, case_dir):
        failures.append((f"{what}: {os.path.basename(path.rstrip('/')) or path}", path))
    if code == 2:
        left = sorted(os.path.relpath(p, case_dir) for p in after.keys() - before.keys())
        if left:
            failures.append((f"exit 2 left new files behind: {', '.join(os.path.basename(p) for p in left)}",
                             ", ".join(left)))
    return failures, seconds, code


@pytest.fixture(scope="session")
def subs():
    return subcommands()


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_cli_fuzz(chunk, tmp_path, trained_runs, subs, capsys, monkeypatch):
    fixture_root, trained, broken = trained_runs
    found = {}                                                    # signature -> [(argv, case id, detail)]
    if chunk == 0:
        for kind, (argv, code) in broken.items():
            found[f"the {kind} run used by the fuzz cases could not be trained: {normalise(str(code))}"] = \
                [(argv, None, str(code))]
    slow, codes = [], {}
    for i, (seed, case) in enumerate(chunk_cases(chunk, subs)):
        case_dir = tmp_path / f"case{i}"
        case_dir.mkdir()
        prepare(case_dir, case, trained, seed)
        monkeypatch.chdir(case_dir)
        failures, seconds, code = run_case(case, case_dir, fixture_root, capsys)
        codes[code] = codes.get(code, 0) + 1
        if seconds > 10:
            slow.append(f"{seconds:.1f} s: {case.shown()}")
        for signature, detail in failures:
            found.setdefault(signature, []).append((case.shown(), seed, detail))
    print(f"chunk {chunk}: exit codes {codes}")
    if codes.get(0, 0) < SUCCEEDING * sum(codes.values()):
        found[f"only {codes.get(0, 0)} of {sum(codes.values())} cases succeeded (exit 0): the fuzz tests little but "
              f"refusals"] = [("", None, str(codes))]
    if slow:
        print("slow cases:\n" + "\n".join(slow))
    if found:
        lines = []
        for signature, hits in sorted(found.items()):
            shortest, seed, detail = min(hits, key=lambda h: len(h[0]))
            lines.append(f"- {signature}\n    {len(hits)} case(s); shortest (seed {seed}): {shortest}"
                         + (f"\n    {detail.strip()[:600]}".replace("\n", "\n    ") if detail.strip() else ""))
        pytest.fail(f"{len(found)} distinct failure(s) in chunk {chunk}:\n" + "\n".join(lines), pytrace=False)


def test_the_fuzz_launches_every_subcommand_under_mpi(subs):
    """The generated cases hold, for every subcommand, real mpiexec jobs and (train aside) in-process
    cases as rank 0 and as rank 1: a change to the generator cannot drop one unnoticed."""
    launches = {(case.command, case.mpi) for chunk in range(CHUNKS) for _, case in chunk_cases(chunk, subs)}
    for command in subs:
        wanted = ["job"] if command == "train" else ["job", "rank 0", "rank 1"]
        if command == "bench":
            continue                                              # not fuzzed: its runs take minutes
        missing = [m for m in wanted if (command, m) not in launches]
        assert not missing, f"{command}: no case launched as {missing}"
