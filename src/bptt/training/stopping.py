"""When a run stops before its budget: SIGINT (Ctrl-C) or SIGTERM, the caller's on_step, or
--max-time. Each is a reason to stop after the step in progress, once it is saved; a second signal
stops at once (the last checkpoint is intact). On the ranks of an MPI job the reasons travel in the
step's one Allreduce (ranks.summed), so that every rank stops after the same step: a stop asked
for after step k takes effect after step k + 1, when every rank has heard of it.
"""

import signal
from typing import NamedTuple


class Stop(NamedTuple):
    """Reasons to stop, as numbers (> 0: yes) so that they can be summed over the ranks."""

    signalled: float = 0         # SIGINT or SIGTERM
    asked: float = 0             # on_step returned True
    out_of_time: float = 0       # --max-time, by rank 0's clock

    def status(self):
        """None (go on), or the run's status when it stops for these reasons: "time" (--max-time,
        and no signal) or "interrupted"."""
        if self.signalled > 0:
            return "interrupted"
        if self.out_of_time > 0:
            return "time"
        return "interrupted" if self.asked > 0 else None


def after_step(signals, on_step, progress, max_time):
    """This process's reasons to stop after the step that made progress. on_step: the caller's
    (None: none), asked first (a signal it raises counts now); max_time: the limit in seconds that
    this process's clock keeps (None: none)."""
    asked = on_step is not None and bool(on_step(progress))
    return Stop(signals.raised is not None, asked, max_time is not None and progress.elapsed >= max_time)


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM set a flag (raised: the signal's name); the loop stops at the next
    step boundary, after saving. A second signal stops at once (KeyboardInterrupt)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.raised = None
        self.previous = {}

    def __enter__(self):
        for s in self.SIGNALS:
            try:
                self.previous[s] = signal.signal(s, self.handle)
            except ValueError:            # not the main thread: leave the signals alone
                break
        return self

    def handle(self, signum, frame):
        if self.raised is not None:
            raise KeyboardInterrupt
        self.raised = signal.Signals(signum).name

    def __exit__(self, *exc):
        for s, previous in self.previous.items():
            signal.signal(s, previous)
