"""Many-to-one classification with variable lengths, bptt against PyTorch's packed sequences:
`bptt bench --task classify` on a labelled file made from the shipped Tiny Shakespeare.

    python benchmarks/classify.py                          # the issue's shape, printed as a table
    python benchmarks/classify.py --steps 20 --repeats 3 --markdown classify.md

The examples are the speeches of the play text (a speaker's name line, then the speech, up to a
blank line) of 5 to 60 words, each labelled with its speaker when the speaker is one of the 20
who speak most, else OTHER: 5,384 texts, 21 labels, a vocabulary of the 10,000 most frequent
words. The model is the seeds' many-to-one example at a realistic size: embedding 128, an LSTM of
256, batch 32, the readout on each text's last state; Adam lr 2e-3, clipping at 5, float32.

bptt runs Network.loss_and_grads(target="last", lengths=...); PyTorch runs nn.Embedding,
pack_padded_sequence, nn.LSTM and nn.Linear on h_n (bench.runners.Torch), from the same weights,
on the same batches. Tokens/s count the real tokens, padding excluded. Every other option is
bptt bench's (`bptt bench --help`).
"""

import collections
import sys
import tempfile
from pathlib import Path

from bptt.cli import main
from bptt.training import tasks

SHAPE = ["--task", "classify", "--level", "word", "--max-vocab", "10000", "--embedding", "128", "--hidden", "256",
         "--batch", "32", "--frameworks", "bptt", "torch"]
SPEAKERS = 20
WORDS = (5, 60)


def speeches(text):
    """(speaker, speech as one line) for every speech of the play text."""
    for block in text.split("\n\n"):
        name, _, speech = block.strip("\n").partition("\n")
        if name.endswith(":") and speech:
            yield name[:-1], " ".join(speech.split())


def labelled(text):
    """Lines text<TAB>label: the speeches of WORDS words, the speaker or OTHER."""
    chosen = [(who, words) for who, words in speeches(text) if WORDS[0] <= len(words.split()) <= WORDS[1]]
    top = {who for who, _ in collections.Counter(who for who, _ in chosen).most_common(SPEAKERS)}
    return "".join(f"{words}\t{who if who in top else 'OTHER'}\n" for who, words in chosen)


def argv(args, data):
    return ["bench", *SHAPE, "--data", str(data), *args]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "speakers.tsv"
        data.write_text(labelled(tasks.shipped_text()), encoding="utf-8")
        sys.exit(main(argv(sys.argv[1:], data)))
