"""The kernels of a mini-batch epoch shared by two threads.

A mini-batch epoch over shuffled rows is bound by memory latency: every row
is a fresh trip to main memory, and one core keeps too few loads in flight
to use the memory bandwidth; two cores read shuffled rows about twice as
fast. Yet the
batches are sequential, each needing the parameters the previous one
produced, and a parallel region per batch costs milliseconds whenever
another process holds a core.

So two threads share the epoch without any per-batch parallel region. Each
batch's rows are cut into the same fixed chunks as in
:func:`fastgd._kernels.linear.batch_numba.batch_epoch`. Thread 0 (the leader, the
caller's thread) owns the even chunks of every batch and thread 1 (a helper)
the odd ones, so each knows which rows it reads next and prefetches them.
A thread claims a chunk by a compare-and-swap before computing its partial
gradient, and once done with its own chunks claims any the other has not
started: if the helper is slow to start or descheduled, the leader does its
share, so a busy machine costs speed, never a hang. When every chunk of a
batch is done the leader sums the partials in chunk order, takes the
optimizer step and publishes the new parameters, which opens the next batch.
The arithmetic, and so the result, is bit for bit that of the one-thread
epoch, whichever thread computed which chunk.

Synchronisation lives in a small int64 array (:func:`new_flags`):

* ``DONE_CHUNKS``: how many chunks have their partial gradient written;
* ``BATCHES_STEPPED``: how many batches have been applied to the parameters;
* ``STOP``: set when the leader gives up, so the helper returns;
* from ``CLAIMS`` on, one entry per chunk of a batch, each on a cache line of
  its own (side by side, every claim would move the line between the cores):
  chunk c of batch b is claimed by moving its entry from b to b + 1.

The engine (:mod:`fastgd._engine.linear_epochs`) decides when an epoch is
shared and starts the helper thread; this module holds what each thread runs.
Like the one-thread epoch, the kernels are compiled per kind of rows and of
step (see :mod:`fastgd._kernels.linear.batch_numba`); :func:`work_on_batch`,
:func:`lead_epoch` and :func:`help_epoch` run the variant of their arguments.
"""

from typing import NamedTuple

import numpy as np

from fastgd._kernels.linear.arguments import BatchRows, LinearSettings
from fastgd._kernels.linear.batch_numba import (
    CHUNK_GRADIENT,
    ROW_KINDS,
    STEP_KINDS,
    TAKE_STEP,
    n_chunks_for,
    reduce_chunks,
    row_kind,
    step_kind,
)
from fastgd._kernels.runtime.atomics import (
    compare_exchange,
    fetch_add,
    load_acquire,
    store_release,
    wait_step,
    wait_until_at_least,
)
from fastgd._kernels.runtime.numba_setup import compiled_twin
from fastgd._kernels.runtime.tuning import CACHE_LINE_BYTES, CHUNK_ROWS

INT64_PER_CACHE_LINE = CACHE_LINE_BYTES // 8
# Each counter on a cache line of its own; the claims follow.
DONE_CHUNKS, BATCHES_STEPPED, STOP, CLAIMS = (k * INT64_PER_CACHE_LINE for k in range(4))
N_THREADS = 2


class SharedEpoch(NamedTuple):
    """What both threads of a shared mini-batch epoch read and write.

    Attributes
    ----------
    rows : BatchRows
    params : ndarray of shape (n_features + 1,)
        The parameters the chunks' gradients are taken at (the leader updates
        them between batches).
    settings : LinearSettings
    partials, chunk_losses : ndarray
        The chunks' partial gradients and losses (``Scratch`` buffers).
    flags : ndarray of int64
        The synchronisation array, from :func:`new_flags`.
    """

    rows: BatchRows
    params: np.ndarray
    settings: LinearSettings
    partials: np.ndarray
    chunk_losses: np.ndarray
    flags: np.ndarray


def new_flags(batch_size):
    """A fresh synchronisation array for one epoch with batches of ``batch_size`` rows."""
    return np.zeros(CLAIMS + INT64_PER_CACHE_LINE * n_chunks_for(batch_size), dtype=np.int64)


def shared_epoch(rows, model, scratch, settings):
    """The :class:`SharedEpoch` of one epoch of ``batch_epoch``'s arguments (fresh flags)."""
    return SharedEpoch(
        rows,
        model.params,
        settings,
        scratch.partials,
        scratch.chunk_losses,
        new_flags(rows.batch_size),
    )


def _work_on_batch_body(thread, batch, shared):
    """Body of :func:`work_on_batch`, compiled per kind of rows."""
    rows, flags = shared.rows, shared.flags
    batch_size = rows.batch_size
    start = batch * batch_size
    stop = min(start + batch_size, rows.order.shape[0])
    n_chunks = n_chunks_for(stop - start)
    n_computed = 0
    for owner in (thread, 1 - thread):
        for c in range(owner, n_chunks, N_THREADS):
            if not compare_exchange(flags, CLAIMS + INT64_PER_CACHE_LINE * c, batch, batch + 1):
                continue  # the other thread has it
            chunk_start = start + c * CHUNK_ROWS
            chunk_stop = min(chunk_start + CHUNK_ROWS, stop)
            # Prefetch into this thread's next chunk: two on, or its first
            # chunk of the next batch.
            next_start = chunk_start + N_THREADS * CHUNK_ROWS
            if next_start >= stop:
                next_start = stop + thread * CHUNK_ROWS
            shared.chunk_losses[c] = chunk_gradient(
                rows,
                chunk_start,
                chunk_stop,
                next_start,
                shared.params,
                shared.settings,
                shared.partials[c],
            )
            fetch_add(flags, DONE_CHUNKS, 1)  # release: the partial is visible
            n_computed += 1
    return n_computed


def _lead_epoch_body(shared, model, scratch):
    """Body of :func:`lead_epoch`, compiled per kind of rows and of step."""
    rows, settings, flags = shared.rows, shared.settings, shared.flags
    n_rows = rows.order.shape[0]
    loss_sum = 0.0
    chunks_done = 0
    for start in range(0, n_rows, rows.batch_size):
        stop = min(start + rows.batch_size, n_rows)
        batch = start // rows.batch_size
        work_on_batch(0, batch, shared)
        chunks_done += n_chunks_for(stop - start)
        wait_until_at_least(flags, DONE_CHUNKS, chunks_done)
        loss_sum += reduce_chunks(rows, start, stop, model.params, settings, scratch)
        take_step(model, scratch.grad, settings)
        store_release(flags, BATCHES_STEPPED, batch + 1)  # release: new params visible
    return loss_sum


def _help_epoch_body(shared):
    """Body of :func:`help_epoch`, compiled per kind of rows."""
    flags = shared.flags
    n_batches = -(-shared.rows.order.shape[0] // shared.rows.batch_size)
    batch = 0
    n_waits = 0
    n_computed = 0
    while batch < n_batches:
        stepped = load_acquire(flags, BATCHES_STEPPED)
        if stepped < batch:
            if load_acquire(flags, STOP) != 0:
                break
            n_waits = wait_step(n_waits)
            continue
        n_waits = 0
        batch = stepped
        if batch < n_batches:
            n_computed += work_on_batch(1, batch, shared)
        batch += 1
    return n_computed


# The kernels the bodies call, rebound in each compiled variant below.
chunk_gradient = take_step = None


# kind of rows -> compiled _work_on_batch_body, _help_epoch_body
WORK_ON_BATCH = {
    rows: compiled_twin(_work_on_batch_body, f"_{rows}", chunk_gradient=CHUNK_GRADIENT[rows])
    for rows in ROW_KINDS
}
HELP_EPOCH = {
    rows: compiled_twin(_help_epoch_body, f"_{rows}", work_on_batch=WORK_ON_BATCH[rows])
    for rows in ROW_KINDS
}
# (kind of rows, kind of step) -> compiled _lead_epoch_body
LEAD_EPOCH = {
    (rows, step): compiled_twin(
        _lead_epoch_body,
        f"_{rows}_{step}",
        work_on_batch=WORK_ON_BATCH[rows],
        take_step=TAKE_STEP[step],
    )
    for rows in ROW_KINDS
    for step in STEP_KINDS
}


def work_on_batch(thread, batch, shared):
    """Compute ``thread``'s chunks of ``batch``, then those the other thread has not claimed.

    Returns how many chunks this call computed.
    """
    return WORK_ON_BATCH[row_kind(shared.rows)](thread, batch, shared)


def lead_epoch(shared, model, scratch):
    """The leading thread's part of the epoch: its chunks, and every step.

    ``model`` and ``scratch`` are those of ``batch_epoch`` (``shared`` holds
    views of their ``params``, ``partials`` and ``chunk_losses``). Returns
    the epoch's Σ sᵢ·ℓᵢ, bit for bit as ``batch_epoch``.
    """
    kinds = (row_kind(shared.rows), step_kind(shared.settings))
    return LEAD_EPOCH[kinds](shared, model, scratch)


def help_epoch(shared):
    """The helping thread's part: its chunks of each batch once the batch is open.

    A batch opens when the leader has published the parameters it needs
    (``BATCHES_STEPPED``); batches the leader finished alone are skipped.
    Returns how many chunks the helper computed.
    """
    return HELP_EPOCH[row_kind(shared.rows)](shared)
