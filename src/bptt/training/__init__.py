"""Training: everything between a text file and a trained run directory.

config.py (TrainConfig: every option, with its help and choices, the one source the CLI is built
from), data.py (reading, vocabularies, batches, windows), tasks.py and problems.py (language
model, classification, the synthetic long-range problems), tbptt.py (TBPTT(k1, k2) windows),
optim.py, schedules.py and clipping.py (the update), building.py (the network, optimiser and
memory check a config describes), opening.py (Run: a run read back, or opened to train, new or
resumed, its config settled once), train.py (the loop and one update step, with validation and
checkpoints), stopping.py (signals, on_step, --max-time), ranks.py (the same loop data-parallel on
the ranks of an MPI job, and the step's arithmetic), rundir.py (the run directory's files, written
atomically and checksummed by bptt.files), generate.py (sampling from a trained model), trained.py
(bptt.load).

Imports: model/ and below; nothing from interop/, lab/, bench/ or cli/.
"""
