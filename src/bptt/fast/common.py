"""What the compiled time loops of every cell share, inlined into them.

    previous_rows   (0)  the previous state with the rows reset at this step zeroed
    live_rows            how many leading rows of a block a step computes: up to its last running one
    incoming        dL/dh_t = dL/dh_t from above + dh_next, clipped (clip_dh), recorded (dh_trace)
    own_table       the block's own gradient of the input table (window.loop_table)
    add_to_table    dP[ids_t[b]] += da_t[b]: the gradient of the table row the forward read
    step_rows       da_t of a window's da, or of one step's rows rewritten at every step (window.loop_rows)
"""

from numba import njit

from .nonlinear import ZERO

INLINE = {"inline": "always", "error_model": "numpy"}


@njit(**INLINE)
def previous_rows(prev, reset_t, work):
    """prev (n, H) as the step sees it: prev itself when no row of reset_t (n,) is set, else work
    (n, H) filled with prev and zeros on the reset rows."""
    if not reset_t.any():
        return prev
    for r in range(prev.shape[0]):
        if reset_t[r]:
            work[r] = ZERO
        else:
            work[r] = prev[r]
    return work


@njit(**INLINE)
def live_rows(mask_t):
    """The rows of a block (mask_t (n,): which have not ended) that a step must compute: all up to
    the last running one. The rows after it have ended; their state is held, and the step's GEMM
    skips them. Rows sorted by length, longest first (rows.by_length), make every ended row one
    of these: a row that has ended costs nothing, as in a packed sequence."""
    n = mask_t.size
    while n > 0 and not mask_t[n - 1]:
        n -= 1
    return n


@njit(**INLINE)
def incoming(dh, d_in, d_next, clip, trace, t, row):
    """dh (H,) = d_in + d_next, clipped to [-clip, clip] when clip > 0, and copied to trace[t, row]
    when trace (T, B, H) has rows (an empty trace records nothing)."""
    for j in range(dh.size):
        dh[j] = d_in[j] + d_next[j]
    if clip > 0:
        for j in range(dh.size):
            dh[j] = min(max(dh[j], -clip), clip)
    if trace.shape[0] > 0:
        trace[t, row] = dh


@njit(**INLINE)
def own_table(dPs, starts, b0):
    """dPs[i] (V, G) for the block of rows that starts at row b0 (starts (n,): the blocks' first rows);
    with no starts, dPs[0]: an empty (0, G), the table's gradient summed after the loop."""
    for i in range(starts.size):
        if starts[i] == b0:
            return dPs[i]
    return dPs[0]


@njit(**INLINE)
def add_to_table(dP, ids, t, row, da):
    """dP[ids[t, row]] += da: a step's dL/d(W x_t) summed onto the row of the input table that the forward
    read, while da (G,) is in cache; nothing when dP has no rows."""
    if dP.shape[0] > 0:
        target = dP[ids[t, row]]
        for j in range(da.size):
            target[j] += da[j]


@njit(**INLINE)
def step_rows(das, t):
    """das[t] (B, G) of the gradients a backward loop writes: das (T, B, G) holds every step, or (1, B, G)
    one step's rows, rewritten at every step, when nothing after the loop reads them (window.loop_rows)."""
    return das[t] if das.shape[0] > 1 else das[0]
