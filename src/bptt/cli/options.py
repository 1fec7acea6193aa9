"""The parts every subcommand's parser is made of: argparse with one-line usage errors, number
types that say what they expect, and an option's former name that points to its new one."""

import argparse
import dataclasses
import math
import typing


def flag(name):
    return "--" + name.replace("_", "-")


def number(kind, what, ok):
    """An argparse type: kind(text) that satisfies ok, else a usage error saying what is expected."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (kind is float and not math.isfinite(value)) or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what
    return parse


POSITIVE_INT = number(int, "a positive int", lambda v: v > 0)
NONNEGATIVE_INT = number(int, "an int >= 0", lambda v: v >= 0)
POSITIVE = number(float, "a positive number", lambda v: v > 0)
NONNEGATIVE = number(float, "a number >= 0", lambda v: v >= 0)
PROBABILITY = number(float, "a probability in (0, 1]", lambda v: 0 < v <= 1)


class UsageError(ValueError):
    pass


class Renamed(argparse.Action):
    """An option's former name: a usage error that gives the new one (--length is a sequence length T
    in every subcommand; sample's number of tokens is --tokens)."""

    def __init__(self, option_strings, dest, new, **kw):
        super().__init__(option_strings, dest, **kw)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        raise UsageError(f"{option_string}: renamed {self.new} here ({option_string} means a sequence length T "
                         f"in bptt); give {self.new} {values}")


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error raised (and printed by main as one line) instead of exiting."""

    def error(self, message):
        if message.startswith("argument "):                     # "argument --hidden: ..." -> "--hidden: ..."
            message = message[len("argument "):]
        raise UsageError(f"{message} (see {self.prog} --help)")


def parser_for(sub, name, help, description):
    return sub.add_parser(name, help=help, description=description)


def add_run_dir(p):
    """The positional RUN_DIR of the subcommands that read a trained run."""
    p.add_argument("run", metavar="RUN_DIR", help="a run directory written by bptt train")


def default_text(f):
    """" (default: X)" for a field whose default is a value; None and flags say it in their help."""
    shown = f.metadata["shown"]
    if shown is None:
        if f.default is None or isinstance(f.default, bool):
            return ""
        shown = f"{f.default:g}" if isinstance(f.default, float) else f.default
    return f" (default: {shown})" if shown != "" else ""


def add_config_options(p, names=None, choices=None):
    """One option per TrainConfig field (or per field of names): its help, choices and default come
    from the field, so every subcommand that takes an option of a run describes it in the same words
    (bptt train, bptt bench). choices: {field: narrower choices} (a subcommand that runs fewer)."""
    from ..reference import FORMS
    from ..training.config import TrainConfig

    narrower = {"cell": FORMS} | (choices or {})
    for f in dataclasses.fields(TrainConfig):
        if names is not None and f.name not in names:
            continue
        help = f.metadata["help"] + default_text(f)
        if f.type == "bool" or isinstance(f.default, bool):
            p.add_argument(flag(f.name), action="store_true", default=None, help=help)
            continue
        kind = next(t for t in typing.get_args(f.type) or (f.type,) if t is not type(None))
        kind = {"int": int, "float": float, "str": str}.get(kind, kind)
        allowed = narrower.get(f.name, f.metadata["choices"])
        p.add_argument(flag(f.name), type=kind, choices=allowed, default=None, help=help,
                       metavar=None if allowed else f.name.upper())


def config_error(e):
    """A ValueError or TypeError about a config field, with the field shown as its option."""
    from ..training.config import TrainConfig

    text = str(e)
    name = text.split(":", 1)[0]
    if name in {f.name for f in dataclasses.fields(TrainConfig)}:
        return type(e)(flag(name) + text[len(name):])
    return e
