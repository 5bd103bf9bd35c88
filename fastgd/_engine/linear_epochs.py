"""A per-sample SGD epoch shared by two threads, bit for bit as on one.

Per-sample SGD is sequential: each step needs the weights the step before
produced. On shuffled rows a step mostly waits for its row to arrive from
main memory, and one core keeps too few loads in flight to use the memory
bandwidth: on 1,000,000 × 100 float64 rows, merely reading the rows in a
shuffled order takes one core about 105 ms, and the steps' own arithmetic on
rows already in cache about as long again; on one thread the two add up.

So the epoch is cut into blocks of consecutive steps, small enough for a
block's rows to stay in a core's private cache (:data:`WARM_BLOCK_BYTES`),
and two threads take turns. A thread claims the next block, loads that
block's rows into its own cache while the other thread runs the block before,
waits for it, runs its block's steps from cache, and hands over: the weights
and the scalars in ``counters`` pass to the other core with the block. Loading
runs on both cores at once, and the steps themselves still run one after the
other, so the result is exactly that of the one-thread kernel, whichever
thread ran which block. (Measured on 1,000,000 × 100 float64: an epoch went
from about 185 ms to 95-120 ms.)

Blocks are taken in order from an atomic counter, so the epoch never depends
on the helper thread starting: if it starts late, the calling thread takes
the blocks it would have taken. And a block that could run but that its
thread has not started within about 0.1 ms (the thread was descheduled on a
busy machine) is run by the other thread instead. Without this, two
processes hogging both cores made a 2-epoch fit take 15-22 s instead of
0.6-0.9 s on one thread; with it, 0.4-1.1 s.

Both backends implement the thread's part (``sgd_epoch_share``); this module
decides when to use it and starts the helper thread.
"""

import threading

import numpy as np

from fastgd._engine.threads import thread_budget
from fastgd._kernels.runtime.codes import LOSS_SUM, SCALE
from fastgd._kernels.runtime.tuning import (
    MIN_BLOCK_ROWS,
    MIN_BLOCKS,
    MIN_VALUES_FOR_TWO_THREADS,
    WARM_BLOCK_BYTES,
)

FLAG_SLOTS = 24  # three counters, each on a cache line of its own

# Positions in the per-sample kernels' argument list (after ``flags`` and
# ``block_rows`` for ``sgd_epoch_share``).
X_ARG, X_DATA_ARG, X_INDICES_ARG, X_INDPTR_ARG, IS_SPARSE_ARG = range(5)
ORDER_ARG, COUNTERS_ARG = 7, 14


def block_rows(X, X_data, X_indices, is_sparse, n_rows):
    """Steps per block: as many rows as fit in :data:`WARM_BLOCK_BYTES`."""
    if is_sparse:
        stored = X_data.shape[0] / max(n_rows, 1)
        row_bytes = stored * (X_data.itemsize + X_indices.itemsize)
    else:
        row_bytes = X.shape[1] * X.itemsize
    return max(MIN_BLOCK_ROWS, int(WARM_BLOCK_BYTES // max(row_bytes, 1)))


def rows_per_shared_block(*args):
    """Steps per block if an epoch with the kernels' arguments ``args`` is worth sharing, else 0.

    Sharing needs two threads (:func:`fastgd._engine.threads.thread_budget`),
    enough stored values for a thread's start to be negligible, and at least
    :data:`MIN_BLOCKS` blocks.
    """
    X, X_data, X_indices = args[X_ARG], args[X_DATA_ARG], args[X_INDICES_ARG]
    is_sparse, order = args[IS_SPARSE_ARG], args[ORDER_ARG]
    n_values = X_data.shape[0] if is_sparse else X.size
    n_rows = args[X_INDPTR_ARG].shape[0] - 1 if is_sparse else X.shape[0]
    rows = block_rows(X, X_data, X_indices, is_sparse, n_rows)
    too_small = n_values < MIN_VALUES_FOR_TWO_THREADS or order.shape[0] < MIN_BLOCKS * rows
    if too_small or thread_budget() < 2:
        return 0
    return rows


def per_sample_epoch(kernels, *args):
    """Run one per-sample epoch; on two threads when that pays, with the same result.

    Parameters
    ----------
    kernels : module
        ``fastgd._kernels.linear._sgd_fast`` or ``fastgd._kernels.linear.sgd_numba``.
    *args
        The arguments of ``kernels.sgd_epoch``.

    Returns
    -------
    loss_sum : float
        The epoch's Σ sᵢ·ℓᵢ, as ``kernels.sgd_epoch`` returns it.
    """
    rows = rows_per_shared_block(*args)
    if rows == 0:
        return kernels.sgd_epoch(*args)
    return shared_epoch(kernels, rows, *args)


def shared_epoch(kernels, rows_per_block, *args):
    """Run one per-sample epoch on the calling thread and a helper thread.

    Same arguments as :func:`per_sample_epoch` after ``rows_per_block`` (the
    steps per block), same return value, bit for bit.
    """
    counters = args[COUNTERS_ARG]
    counters[SCALE] = 1.0
    counters[LOSS_SUM] = 0.0
    flags = np.zeros(FLAG_SLOTS, dtype=np.int64)
    helper = threading.Thread(
        target=kernels.sgd_epoch_share,
        args=(flags, rows_per_block, *args),
        name="fastgd-sgd-helper",
        daemon=True,
    )
    helper.start()
    try:
        kernels.sgd_epoch_share(flags, rows_per_block, *args)
    finally:
        helper.join()
    return counters[LOSS_SUM]
