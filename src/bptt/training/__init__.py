"""Training: everything between a text file and a trained run directory.

config.py (TrainConfig: every option, with its help and choices, the one source the CLI is built
from), data.py (reading, vocabularies, batches, windows), tasks.py and problems.py (language
model, classification, the synthetic long-range problems), tbptt.py (TBPTT(k1, k2) windows),
optim.py, schedules.py and clipping.py (the update), train.py (the loop: open a run, one update
step, validation, the stop policy), ranks.py (the same loop data-parallel on the ranks of an MPI
job), rundir.py (the run directory's files, written atomically and checksummed by bptt.files),
generate.py (sampling from a trained model).

Imports: model/ and below; nothing from interop/, lab/, bench/ or cli/.
"""
