"""Data-parallel training on the ranks of an MPI job: mpiexec -n N bptt train ...

Each of the N ranks owns a contiguous group of the batch's B rows (rank r: rows rB/N .. (r+1)B/N;
a language model's streams, with the state they carry from window to window), and every rank holds
the same parameters, optimiser state and dropout generator. One step:

    rank r   loss_r, g_r = BPTT on its rows, each a mean over its n_r targets    (rows_of_batch)
             w_r = n_r / n                 n = Σ_r n_r: every rank reads the whole batch,
                                           so knows it                            (share_of_targets)
             buffer = [w_r g_r, w_r loss_r, stop]     stop: the rank's reasons to stop   (summed)
    all      Allreduce(buffer, SUM)        one message per step
             g = Σ_r w_r g_r               the gradient of the mean over all n targets

so clipping and the optimiser see the numbers one process with the whole batch would see, and the
parameters agree with its parameters to round-off (tests/training/test_ranks_mpi.py: 1e-10 in float64).
Dropout masks are drawn for the whole batch on every rank, which keeps the ranks' generators equal,
and each rank keeps its rows' (engine.dropout_masks).

Rank 0 alone reads and writes the run directory: it opens the run (opening.open_on_ranks) and sends
the others what they need (config, vocabulary, parameters, optimiser state, carried state,
progress); every rank reads the training data itself. A checkpoint gathers the carried state of
all B streams, so a run resumes on any number of ranks that divides B. Validation is shared like
training (each rank scores its share of the validation streams, the sums are added); rank 0 keeps
the best weights and the plateau schedule and sends them to the others, so the schedule moves on
every rank alike.

Errors. A failure that every rank meets at the same point (rank 0 could not open the run, another
rank could not read the data, a full disk at a checkpoint, a diverged loss) is raised on rank 0 as
itself and as Stopped on the others, which end quietly: one message, from rank 0. Any other
exception is that rank's alone, and the others would wait for it forever: the command line prints
it and aborts the job (abort()). A rank that dies (killed) ends the job too: mpiexec stops the others
and says which process ended and how. Checkpoints are written atomically, so the last one is intact.

Ranks() (no communicator) is one process: size 1, every collective the identity.
"""

import math
import os


class Stopped(Exception):
    """Raised on ranks other than 0 when the job stops for a reason rank 0 reports."""


def launched_size():
    """The number of processes the MPI launcher started (1 when not run by one), from the
    environment each launcher sets: MPICH's and Intel's Hydra and Slurm (PMI_SIZE), Open MPI
    (OMPI_COMM_WORLD_SIZE)."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def launched_rank():
    """This process's rank among the launched_size() ones (0 when not run by a launcher)."""
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def world():
    """The ranks of this job: Ranks(MPI.COMM_WORLD) when started by mpiexec with N > 1 processes,
    else Ranks() (no MPI is loaded). The ranks on one machine share its cores (share_cores)."""
    size = launched_size()
    if size == 1:
        return Ranks()
    try:
        from mpi4py import MPI
    except ImportError:
        raise ValueError(f"mpiexec started {size} processes, but mpi4py is not installed: pip install "
                         f"'bptt[mpi]' (or run without mpiexec)") from None
    share_cores(MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED))
    return Ranks(MPI.COMM_WORLD)


def share_cores(local):
    """Give each of the ranks on this machine (local: their communicator) its own equal share of the
    cores, when the launcher left them all the same set (mpiexec without binding): the engine runs
    one thread per core it may use (bptt.fast.rows), so N ranks on N cores run one thread each
    instead of N each. A launcher's own binding is left as it is."""
    if not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    sets = local.allgather(cores)
    n, i = local.Get_size(), local.Get_rank()
    if n == 1 or any(s != cores for s in sets):
        return
    share = max(1, len(cores) // n)
    mine = cores[i * share % len(cores):][:share]
    os.sched_setaffinity(0, mine)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(len(mine)))
    os.environ.setdefault("OMP_NUM_THREADS", str(len(mine)))


def rows_of(state, rows):
    """The rows (a slice) of a carried state: an (L, B, H) array or a tuple of them; None stays None."""
    if state is None:
        return None
    return tuple(s[:, rows] for s in state) if isinstance(state, tuple) else state[:, rows]


# the step's arithmetic (numpy and the engine are imported where they are used: world() shares the
# cores out before numpy's BLAS starts)

def rows_of_batch(batch, rows):
    """The keyword arguments of engine.loss_and_grads for the rows (a slice) of a batch: its arrays
    have the rows on axis 1 (T, B, ...), but lengths (B,) and many-to-one targets (B, ...) on axis 0."""
    on_axis_0 = {"lengths"} | ({"y"} if batch.get("target") == "last" else set())

    def cut(name, a):
        if a is None or isinstance(a, str):                   # target, loss
            return a
        return a[rows] if name in on_axis_0 else a[:, rows]

    return {name: cut(name, a) for name, a in batch.items()}


def share_of_targets(batch, mine):
    """w_r = n_r / n: this rank's targets over the whole batch's, the weight of its mean loss and
    gradients."""
    from ..model import engine

    def count(b):
        T, B = b["x"].shape[:2]
        return engine.targets_counted(T, B, b.get("target", "every"), b.get("lengths"), b.get("loss_mask"))
    return count(mine) / count(batch)


def summed(ranks, params, r, share, stop, flow):
    """(loss, grads, flows, stop) of the whole batch, from this rank's engine Result r (None: no
    rows) and share w_r of the targets: one Allreduce of [w_r g_r..., w_r loss_r, stop, w_r² Σ dh²...].
    stop: this rank's reasons to stop (numbers, > 0: yes), returned summed over the ranks. flow:
    (L, T) for a gradient-flow record, else None; flows: per layer, the norm of dL/dh_t over the
    whole batch at each step t (L lists of T floats)."""
    import numpy as np

    if ranks.size == 1:
        return r.loss, r.grads, None if flow is None else flow_norms(flow_squares(r, 1.0), flow), stop
    ends = np.cumsum([p.size for p in params.values()])      # where each parameter's part ends
    n, k = int(ends[-1]), len(stop)
    size, dtype = n + 1 + k + (0 if flow is None else math.prod(flow)), next(iter(params.values())).dtype
    buffer = np.zeros(size, dtype) if r is None else np.empty(size, dtype)     # a rank with rows writes every entry
    if r is not None:
        for (name, p), end in zip(params.items(), ends):
            np.multiply(r.grads[name].reshape(-1), share, out=buffer[end - p.size:end])
        buffer[n] = share * r.loss
        if flow is not None:
            buffer[n + 1 + k:] = flow_squares(r, share)
    buffer[n + 1:n + 1 + k] = stop
    ranks.sum(buffer)
    grads = {name: buffer[end - p.size:end].reshape(p.shape) for (name, p), end in zip(params.items(), ends)}
    flows = None if flow is None else flow_norms(buffer[n + 1 + k:], flow)
    return float(buffer[n]), grads, flows, tuple(buffer[n + 1:n + 1 + k].tolist())


def flow_squares(r, share):
    """||w_r dL/dh^l_t||² over the rows, for every layer l and step t (L T,): the rows' part of the
    flow record (r.dhs, traced), whose sum over the ranks is the whole batch's."""
    import numpy as np

    return np.concatenate([share ** 2 * (dh.reshape(len(dh), -1).astype(np.float64) ** 2).sum(axis=1)
                           for dh in r.dhs])


def flow_norms(squares, flow):
    """The flow record from the summed squares: (L, T) norms, as lists of floats."""
    import numpy as np

    return np.sqrt(squares.astype(np.float64)).reshape(flow).tolist()


class Ranks:
    """The N ranks of a data-parallel run, from this rank's side (module docstring)."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self._raised = None                   # the exception rank 0 raised with every rank's agreement

    @property
    def root(self):
        return self.rank == 0

    def check_batch(self, B):
        if B % self.size:
            raise ValueError(f"--batch: {B} rows cannot be shared equally by {self.size} ranks (mpiexec -n "
                             f"{self.size}); give a --batch divisible by {self.size}, or a number of ranks that "
                             f"divides {B}")

    def rows(self, B):
        """This rank's rows of a batch of B: a contiguous slice, sizes differing by at most one."""
        return slice(self.rank * B // self.size, (self.rank + 1) * B // self.size)

    # collectives: every rank calls each one at the same point

    def sum(self, buffer):
        """buffer summed over the ranks, in place (the step's one Allreduce)."""
        if self.size > 1:
            from mpi4py import MPI

            self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        return buffer

    def send(self, value):
        """Rank 0's value, on every rank."""
        return value if self.size == 1 else self.comm.bcast(value, root=0)

    def gather_rows(self, state):
        """The carried state of every rank's rows, joined in order of rank on rank 0 (None elsewhere)."""
        if self.size == 1:
            return state
        import numpy as np  # here, not at the top: world() shares the cores out before numpy's BLAS starts

        parts = self.comm.gather(state, root=0)
        if not self.root or parts[0] is None:
            return None
        if isinstance(parts[0], tuple):
            return tuple(np.concatenate([p[k] for p in parts], axis=1) for k in range(len(parts[0])))
        return np.concatenate(parts, axis=1)

    def on_root(self, fn):
        """fn() run on rank 0, its result sent to every rank. If it raises, rank 0 raises the
        exception and the other ranks Stopped."""
        if self.size == 1:
            return fn()
        outcome, error = None, None
        if self.root:
            try:
                outcome = ("ok", fn())
            except BaseException as e:             # noqa: BLE001 (the other ranks must hear of it)
                outcome, error = ("failed", None), e
        outcome = self.send(outcome)
        if outcome[0] == "failed":
            raise self.everywhere(error)
        return outcome[1]

    def agree(self, error):
        """Every rank's error (an exception or None) at this point: if any rank has one, rank 0
        raises it (naming the rank) and the others Stopped."""
        if self.size == 1:
            if error is not None:
                raise error
            return
        errors = self.comm.allgather(None if error is None else (type(error), str(error)))
        failed = [(rank, e) for rank, e in enumerate(errors) if e is not None]
        if not failed:
            return
        rank, (kind, message) = failed[0]
        if self.root and rank == 0:
            raise self.everywhere(error)
        asked = issubclass(kind, (ValueError, OSError, TypeError))        # a file or setting: exit 2, else a bug
        raise self.everywhere((ValueError if asked else RuntimeError)(f"rank {rank}: {message}"))

    def everywhere(self, error):
        """The exception to raise for a failure every rank met: error on rank 0, Stopped elsewhere."""
        if not self.root:
            return Stopped()
        self._raised = error
        return error

    def agreed(self, error):
        """Whether error (or one it was raised from or during) is a failure every rank met."""
        while error is not None:
            if error is self._raised:
                return True
            error = error.__cause__ or error.__context__
        return False

    def abort(self, code):
        """End every rank of the job (this one met an error the others cannot know of)."""
        self.comm.Abort(code)
