"""One epoch of a linear model: which kernel runs it, on one thread or two.

Both kinds of epoch can be shared by two threads with the result bit for bit
that of one thread:

**Per-sample SGD** is sequential: each step needs the weights the step before
produced. On shuffled rows a step mostly waits for its row to arrive from
main memory, and one core keeps too few loads in flight to use the memory
bandwidth. So the epoch is cut into blocks of consecutive steps, small enough
for a block's rows to stay in a core's private cache
(:data:`~fastgd._kernels.runtime.tuning.WARM_BLOCK_BYTES`), and two threads
take turns: a thread claims the next block, loads its rows into its own cache
while the other thread runs the block before, waits for it, runs its block's
steps from cache and hands over (the weights and the scalars in
``counters`` pass to the other core with the block). The steps still run one
after the other, so the result is exactly that of the one-thread kernel,
whichever thread ran which block. Blocks are taken in order from an atomic
counter, so the epoch never depends on the helper thread starting; a block
that could run but that its thread has not started within about 0.1 ms (the
thread is descheduled on a busy machine) is run by the other thread. Both
backends implement a thread's part (``sgd_epoch_share``).

**Mini-batch GD** splits every batch's chunks between the two threads, the
caller's thread summing them in chunk order and taking the steps
(:mod:`fastgd._kernels.linear.minibatch_two_threads`).

This module decides when sharing pays and starts the helper thread; the
kernels themselves never start a thread.
"""

import numpy as np

from fastgd._engine.threads import run_with_helper, thread_budget
from fastgd._kernels.runtime.codes import AVG_INTERCEPT, INTERCEPT, LOSS_SUM, N_BLOCK_FLAGS, SCALE
from fastgd._kernels.runtime.tuning import (
    MAX_SHARED_WEIGHT_BYTES,
    MIN_BLOCK_ROWS,
    MIN_BLOCKS,
    MIN_VALUES_FOR_TWO_THREADS,
    WARM_BLOCK_BYTES,
)


def block_rows(features, n_rows):
    """Steps per block of a shared per-sample epoch: as many rows as fit in WARM_BLOCK_BYTES."""
    if features.is_sparse:
        stored = features.data.shape[0] / max(n_rows, 1)
        row_bytes = stored * (features.data.itemsize + features.indices.itemsize)
    else:
        row_bytes = features.dense.shape[1] * features.dense.itemsize
    return max(MIN_BLOCK_ROWS, int(WARM_BLOCK_BYTES // max(row_bytes, 1)))


def _stored_values_and_rows(features):
    if features.is_sparse:
        return features.data.shape[0], features.indptr.shape[0] - 1
    return features.dense.size, features.dense.shape[0]


def rows_per_shared_block(rows, model, max_threads=None):
    """Steps per block if the per-sample epoch over ``rows`` is worth sharing, else 0.

    Sharing needs weights small enough to pass between the cores with every
    block (:data:`~fastgd._kernels.runtime.tuning.MAX_SHARED_WEIGHT_BYTES`),
    two threads (:func:`fastgd._engine.threads.thread_budget`, capped by
    ``max_threads``),
    enough stored values for a thread's start to be negligible, and at least
    :data:`~fastgd._kernels.runtime.tuning.MIN_BLOCKS` blocks.
    """
    n_values, n_rows = _stored_values_and_rows(rows)
    per_block = block_rows(rows, n_rows)
    too_small = (
        n_values < MIN_VALUES_FOR_TWO_THREADS or rows.order.shape[0] < MIN_BLOCKS * per_block
    )
    too_wide = model.params.nbytes > MAX_SHARED_WEIGHT_BYTES
    if too_small or too_wide or _threads(max_threads) < 2:
        return 0
    return per_block


def _threads(max_threads):
    """The thread budget, capped by ``max_threads`` when given."""
    budget = thread_budget()
    return budget if max_threads is None else min(budget, max_threads)


def per_sample_epoch(kernels, rows, model, scratch, settings, max_threads=None):
    """Run one per-sample epoch; on two threads when that pays, with the same result.

    Parameters
    ----------
    kernels : module
        ``fastgd._kernels.linear._sgd_fast`` or ``fastgd._kernels.linear.sgd_numba``.
    rows : VisitedRows
    model : LinearModel
        Updated in place, its intercepts included (``params[-1]`` and
        ``avg_params[-1]``; the kernels carry them in ``counters`` meanwhile).
    scratch : Scratch
    settings : LinearSettings
    max_threads : int, optional
        Most threads the epoch may use (default: the process's budget).

    Returns
    -------
    loss_sum : float
        The epoch's Σ sᵢ·ℓᵢ.
    """
    counters = model.counters
    counters[INTERCEPT] = model.params[-1]
    counters[AVG_INTERCEPT] = model.avg_params[-1]
    rows_per_block = rows_per_shared_block(rows, model, max_threads)
    if rows_per_block == 0:
        loss_sum = kernels.sgd_epoch(rows, model, scratch, settings)
    else:
        loss_sum = shared_per_sample_epoch(kernels, rows_per_block, rows, model, scratch, settings)
    model.params[-1] = counters[INTERCEPT]
    model.avg_params[-1] = counters[AVG_INTERCEPT]
    return loss_sum


def shared_per_sample_epoch(kernels, rows_per_block, rows, model, scratch, settings):
    """Run one per-sample epoch on the calling thread and a helper thread.

    Same arguments as ``kernels.sgd_epoch`` after ``rows_per_block`` (the
    steps per block), same effect and return value, bit for bit.
    """
    counters = model.counters
    counters[SCALE] = 1.0
    counters[LOSS_SUM] = 0.0
    flags = np.zeros(N_BLOCK_FLAGS, dtype=np.int64)
    share = (flags, rows_per_block, rows, model, scratch, settings)
    run_with_helper(
        lead=lambda: kernels.sgd_epoch_share(*share),
        helper=lambda: kernels.sgd_epoch_share(*share),
        name="fastgd-sgd-helper",
    )
    return counters[LOSS_SUM]


def worth_two_threads(n_rows, n_features, batch_size, max_threads=None):
    """Whether a mini-batch epoch of this shape should be shared by two threads.

    It needs at least two chunks per batch, enough work, and two threads
    (:func:`fastgd._engine.threads.thread_budget`: ``NUMBA_NUM_THREADS`` or
    :func:`numba.set_num_threads` set to 1 turn it off).
    """
    from fastgd._kernels.linear.batch_numba import n_chunks_for

    return (
        n_chunks_for(batch_size) >= 2
        and batch_size < n_rows
        and n_rows * n_features >= MIN_VALUES_FOR_TWO_THREADS
        and _threads(max_threads) >= 2
    )


def batch_epoch(rows, model, scratch, settings, max_threads=None):
    """Run one mini-batch or full-batch epoch; on two threads when that pays, same result.

    Arguments and return value of :func:`fastgd._kernels.linear.batch_numba.batch_epoch`,
    and ``max_threads``, the most threads the epoch may use.
    """
    from fastgd._kernels.linear import batch_numba

    n_features = model.params.shape[0] - 1
    if worth_two_threads(rows.order.shape[0], n_features, rows.batch_size, max_threads):
        return two_thread_batch_epoch(rows, model, scratch, settings)
    return batch_numba.batch_epoch(rows, model, scratch, settings)


def two_thread_batch_epoch(rows, model, scratch, settings):
    """Run :func:`fastgd._kernels.linear.batch_numba.batch_epoch` on two threads.

    Same arguments and return value, bit for bit; the calling thread leads
    and a short-lived helper thread computes chunks.
    """
    from fastgd._kernels.linear import minibatch_two_threads as kernels

    shared = kernels.shared_epoch(rows, model, scratch, settings)

    def stop_helper():
        # Should the leader fail before the end, the helper returns.
        shared.flags[kernels.STOP] = 1

    return run_with_helper(
        lead=lambda: kernels.lead_epoch(shared, model, scratch),
        helper=lambda: kernels.help_epoch(shared),
        name="fastgd-epoch-helper",
        after_lead=stop_helper,
    )
