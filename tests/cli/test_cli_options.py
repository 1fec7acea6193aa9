"""Every option is validated before anything is written, named in its error, described once with
its true default, and means one thing across subcommands (issue 12, items 13 and 18-20)."""

import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import SMALL

from bptt.cli import display as report
from bptt.cli import main
from bptt.training import data, generate, opening

COMMANDS = ("gradcheck", "train", "eval", "sample", "task", "diagnose", "bench", "compare-gradients")


def last_error(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.splitlines()[-1]


# 13. every option validated before anything is written, the error naming it ------------------------

BAD_TRAIN = [
    (["--lr", "inf"], "--lr: expected a positive number, got inf"),
    (["--lr", "nan"], "--lr: expected a positive number, got nan"),
    (["--clip", "nan"], "--clip: expected a threshold >= 0"),
    (["--clip-dh", "0"], "--clip-dh: expected a positive number, got 0"),
    (["--clip-dh", "-1"], "--clip-dh: expected a positive number"),
    (["--clip-dh", "nan"], "--clip-dh: expected a positive number"),
    (["--forget-bias", "nan"], "--forget-bias: expected a number in [-1e4, 1e4]"),
    (["--forget-bias", "1e300"], "--forget-bias: expected a number in [-1e4, 1e4], got 1e+300"),
    (["--recompute-every", "3", "--alpha", "1"], "--recompute-every: recomputes the window in segments from its "
                                                  "start; --alpha and --beta (AR, TAR) read the whole window"),
    (["--radius", "nan"], "--radius: expected a positive number"),
    (["--radius", "inf"], "--radius: expected a positive number"),
    (["--radius", "-1"], "--radius: expected a positive number"),
    (["--radius", "0"], "--radius: expected a positive number"),
    (["--cell", "skip", "--skip", "0"], "--skip: expected an int >= 2, got 0"),
    (["--nesterov"], "--nesterov: applies to --optimizer sgd only"),
    (["--momentum", "0.9"], "--momentum: applies to --optimizer sgd or rmsprop only"),
    (["--warmup", "5"], "--warmup: applies to --schedule cosine only"),
    (["--forget-bias", "1", "--cell", "gru"], "--forget-bias: applies to --cell lstm only"),
    (["--max-vocab", "100"], "--max-vocab: applies to --level word only"),
    (["--skip", "3"], "--skip: applies to --cell skip only"),
    (["--clip", "0", "--clip-mode", "value"], "--clip-mode: applies to clipping (--clip > 0) only"),
    (["--sample", "-5"], "--sample: expected an int >= 0, got '-5'"),
    (["--dropout", "1"], "--dropout: expected a probability in [0, 1)"),
    (["--epochs", "inf"], "--epochs: expected a positive number, got inf"),
    (["--max-time=-inf"], "--max-time: expected a positive number"),
    (["--hidden", "0"], "--hidden: expected a positive int, got 0"),
    (["--weight-decay", "nan"], "--weight-decay: expected a number >= 0"),
    (["--valid-fraction", "1"], "--valid-fraction: expected a number in (0, 1)"),
    (["--length", "50"], "--length: applies to a long-range problem"),
    (["--nesterov", "--optimizer", "sgd"], "--nesterov: needs a momentum > 0"),
]


@pytest.mark.parametrize("args,message", BAD_TRAIN)
def test_item13_bad_train_options(tmp_path, text, capsys, args, message):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--data", text, *args]) == 2
    assert last_error(capsys).startswith(f"error: {message}")
    assert not run.exists()


@pytest.mark.parametrize("argv,message", [
    (["sample", "RUN", "--seed", "-1"], "--seed: expected an int >= 0, got '-1'"),
    (["sample", "RUN", "--temperature", "0"], "--temperature: expected a positive number, got '0'"),
    (["sample", "RUN", "--temperature", "inf"], "--temperature: expected a positive number"),
    (["sample", "RUN", "--top-p", "1.5"], "--top-p: expected a probability in (0, 1]"),
    (["sample", "RUN", "--top-k", "0"], "--top-k: expected a positive int"),
    (["sample", "RUN", "--tokens", "0"], "--tokens: expected a positive int"),
    (["sample", "RUN", "--greedy", "--top-k", "3"], "--greedy: takes the most likely token"),
    (["task", "adding", "--out", "OUT", "--lengths", "0"], "--lengths: expected a positive int"),
    (["task", "adding", "--out", "OUT", "--lr", "nan"], "--lr: expected a positive number"),
    (["task", "adding", "--out", "OUT", "--jobs", "0"], "--jobs: expected a positive int"),
    (["task", "adding", "--out", "OUT", "--cells", "transformer"], "--cells: invalid choice"),
    (["diagnose", "RUN", "--length", "0"], "--length: expected a positive int"),
    (["gradcheck", "--seq-len", "-2"], "--seq-len: expected a positive int"),
    (["bench", "--hidden", "0"], "--hidden: expected a positive int"),
    (["eval", "RUN"], "the following arguments are required: --data"),
])
def test_item13_bad_options_of_other_subcommands(tmp_path, text, capsys, argv, message):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--data", text, "--steps", "2", *SMALL]) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    argv = [str(run) if a == "RUN" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    assert last_error(capsys).startswith(f"error: {message}")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "out").exists()


# 18. --help shows each default once, and the true one ----------------------------------------------

def help_text(capsys, *argv):
    assert main([*argv, "--help"]) == 0
    return capsys.readouterr().out


def option_blocks(text):
    """{option: its help text} from an argparse help page."""
    blocks, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (-{1,2}[\w-]+)", line)
        if m:
            current = m.group(1)
            blocks[current] = line
        elif current and line.startswith("    "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


@pytest.mark.parametrize("command", list(COMMANDS))
def test_item18_every_default_once_and_every_option_explained(capsys, command):
    blocks = option_blocks(help_text(capsys, command))
    assert blocks
    for option, block in blocks.items():
        assert block.count("(default:") <= 1, block
        assert "(default: None)" not in block, block
        words = block.split(None, 1)[1] if len(block.split(None, 1)) > 1 else ""
        assert len(words.split()) >= 2 or option == "-h", f"{command} {option} has no help text: {block!r}"


def test_item18_the_defaults_shown_are_the_true_ones(capsys):
    from bptt.training.config import TrainConfig

    blocks = option_blocks(help_text(capsys, "train"))
    cfg = TrainConfig()
    assert "(default: 256)" in blocks["--hidden"] and cfg.hidden == 256
    assert "(default: 0.002)" in blocks["--lr"] and cfg.lr == 0.002
    assert "(default: lstm)" in blocks["--cell"] and "(default: 64)" in blocks["--window"]
    assert "(default: Tiny Shakespeare, shipped with bptt)" in blocks["--data"]
    assert "(default:" not in blocks["--out"] and "(default:" not in blocks["--resume"]
    sample = option_blocks(help_text(capsys, "sample"))
    assert "(default: 500)" in sample["--tokens"] and "(default: 1)" in sample["--temperature"]


# 19. one vocabulary across subcommands -------------------------------------------------------------

def test_item19_cell_names_are_one_vocabulary(tmp_path, text, capsys):
    from bptt.cli.app import build_parser
    from bptt.lab import gradcheck, sweep

    parser = build_parser()
    train_cells = set(parser._subparsers._group_actions[0].choices["train"]._option_string_actions["--cell"].choices)
    assert set(gradcheck.CELL_NAMES) <= train_cells
    assert {"rnn-tanh", "irnn", "rnn-sigmoid", "skip-tanh", "gru", "lstm"} == set(sweep.VARIANTS)
    assert {cell for cell, _ in sweep.VARIANTS.values()} <= train_cells
    assert sweep.variant("rnn-relu") == {"cell": "rnn", "nonlinearity": "relu"}     # what bptt train's rnn-relu is
    assert sweep.variant("irnn") == {"cell": "rnn", "nonlinearity": "relu", "recurrent_init": "identity"}
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--out", str(a), "--data", text, "--steps", "2", "--cell", "rnn-relu", *SMALL]) == 0
    assert main(["train", "--out", str(b), "--data", text, "--steps", "2", "--cell", "rnn", "--nonlinearity", "relu",
                 *SMALL]) == 0
    assert opening.Run(a).config() == opening.Run(b).config().replace(data=opening.Run(a).config().data)
    assert "training rnn-relu 1x10" in capsys.readouterr().err


def test_item19_the_run_directory_is_given_the_same_way(tmp_path, text, capsys):
    run = str(tmp_path / "run")
    assert main(["train", run, "--data", text, "--steps", "2", *SMALL]) == 0       # positional, as everywhere
    assert main(["eval", run, "--data", text]) == 0
    assert main(["sample", run, "--tokens", "5"]) == 0
    assert main(["train", "--out", run, "--resume", "--steps", "3"]) == 0           # --out still works
    assert main(["train", run, "--out", str(tmp_path / "other"), "--resume"]) == 2
    assert "disagree; give the run directory once" in last_error(capsys)


def test_item19_length_means_a_sequence_length(capsys):
    blocks = {c: option_blocks(help_text(capsys, c)) for c in ("train", "diagnose", "sample")}
    assert "sequence length T" in blocks["train"]["--length"]
    assert "T of the sequences" in blocks["diagnose"]["--length"]
    assert "--length" not in blocks["sample"] and "--tokens" in blocks["sample"]


# 20. a fast --help, streamed samples, words kept apart, counts that agree -------------------------

def test_item20_help_imports_no_heavy_module():
    code = ("import sys; from bptt.cli.app import build_parser; build_parser(); "
            "print(sorted(m for m in ('matplotlib', 'numba', 'tqdm', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_item20_samples_stream_and_match_sample(tmp_path, text, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--data", text, "--steps", "2", *SMALL]) == 0
    net, _ = opening.Run(run).network()
    drawn = generate.stream(net.params, net.arch, [1, 2], 30, np.random.default_rng(4))
    first = next(drawn)                                     # one token before the rest exist
    rest = list(drawn)
    assert [first, *rest] == generate.sample(net.params, net.arch, [1, 2], 30, np.random.default_rng(4)).tolist()


def test_item20_word_samples_keep_the_prime_apart(tmp_path, capsys):
    words = tmp_path / "words.txt"
    words.write_text("the cat sat on the mat\nthe rat ran away\n" * 30)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--data", str(words), "--level", "word", "--steps", "2", *SMALL]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--prime", "the cat", "--tokens", "3", "--greedy"]) == 0
    out = capsys.readouterr().out
    assert re.match(r"^the cat[ \n]", out), out
    d = data.Detokenizer("word", after="the cat")
    assert [d.next(t) for t in ("sat", "<eos>", "the")] == [" sat", "\n", "the"]


def test_item20_counts_and_plurals_agree(tmp_path, text, capsys):
    assert report.plural(1, "window") == "1 window" and report.plural(2, "window") == "2 windows"
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--data", text, "--steps", "4", *SMALL]) == 0
    out, err = capsys.readouterr()
    valid = int(re.search(r"/ (\d+) valid tokens", err).group(1))
    assert f"validation ({valid} tokens scored)" in out
    assert re.search(r"^4 steps \(0\.\d\d epochs\)", out.strip(), re.M), out
    assert "1 windows" not in err


def test_item20_accuracy_is_shown_alike_in_train_and_eval(tmp_path, capsys):
    data = tmp_path / "train.tsv"
    data.write_text("".join(f"{'cat rat' if i % 2 else 'cat mat'}\t{i % 2}\n" for i in range(40)))
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--task", "classify", "--data", str(data), "--level", "word",
                 "--steps", "2", "--hidden", "4", "--embedding", "3", "--batch", "4", "--eval-every", "1"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"valid loss \d\.\d{4}  accuracy \d+\.\d%", err), err
    assert main(["eval", str(run), "--data", str(data)]) == 0
    assert re.search(r"loss \d\.\d{4}  accuracy \d+\.\d%", capsys.readouterr().out)


def test_bench_and_train_describe_the_options_of_a_run_alike():
    """bptt bench's options of a run (issue 22: they were typed again, with their own defaults) are
    built from TrainConfig's fields as bptt train's are: the same help, default and type; bench's
    choices are the subset its runners implement."""
    from bptt.cli import bench as bench_cli
    from bptt.cli.app import build_parser

    subs = build_parser()._subparsers._group_actions[0].choices
    train = {a.dest: a for a in subs["train"]._actions}
    bench = {a.dest: a for a in subs["bench"]._actions}
    fields = (*bench_cli.SHAPE, *bench_cli.WORKLOAD)
    assert {"cell", "hidden", "layers", "embedding", "batch", "window", "data", "level", "lr", "clip"} <= set(fields)
    for name in fields:
        t, b = train[name], bench[name]
        assert (b.help, b.default, b.type, b.option_strings) == (t.help, t.default, t.type, t.option_strings), name
        assert set(b.choices or ()) <= set(t.choices or ()), name
    assert "(default: 2)" in bench["layers"].help                 # bptt train's default model, measured by default
