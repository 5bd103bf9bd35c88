"""One mini-batch epoch shared by two threads.

A mini-batch epoch over shuffled rows is bound by memory latency: every row
is a fresh trip to main memory, and one core keeps too few loads in flight
to use the memory bandwidth (measured on 1,000,000 × 100 float64 rows, one
core reads shuffled rows at about 6 GB/s, two cores at twice that). Yet the
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
  its own: chunk c of batch b is claimed by moving its entry from b to b + 1.
  (With the entries side by side, every claim moved the line between the
  cores; spread out, an epoch measured 5-6 % faster, paired runs.)
"""

import threading

import numpy as np

from fastgd._engine.threads import thread_budget
from fastgd._kernels.linear.batch_numba import (
    CHUNK_ROWS,
    chunk_gradient,
    n_chunks_for,
    reduce_chunks,
    take_step,
)
from fastgd._kernels.runtime.atomics import (
    compare_exchange,
    fetch_add,
    load_acquire,
    store_release,
    wait_step,
    wait_until_at_least,
)
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba
from fastgd._kernels.runtime.tuning import MIN_VALUES_FOR_TWO_THREADS

INT64_PER_CACHE_LINE = 8
# Each counter on a cache line of its own; the claims follow.
DONE_CHUNKS, BATCHES_STEPPED, STOP, CLAIMS = (k * INT64_PER_CACHE_LINE for k in range(4))
N_THREADS = 2


def new_flags(batch_size):
    """A fresh synchronisation array for one epoch with batches of ``batch_size`` rows."""
    return np.zeros(CLAIMS + INT64_PER_CACHE_LINE * n_chunks_for(batch_size), dtype=np.int64)


def worth_two_threads(n_rows, n_features, batch_size):
    """Whether an epoch of this shape should be shared by two threads.

    It needs at least two chunks per batch, enough work, and two threads
    (:func:`fastgd._engine.threads.thread_budget`: ``NUMBA_NUM_THREADS`` or
    :func:`numba.set_num_threads` set to 1 turn it off).
    """
    return (
        n_chunks_for(batch_size) >= 2
        and batch_size < n_rows
        and n_rows * n_features >= MIN_VALUES_FOR_TWO_THREADS
        and thread_budget() >= N_THREADS
    )


@numba.njit(**KERNEL_OPTIONS)
def work_on_batch(thread, batch, shared):
    """Compute ``thread``'s chunks of ``batch``, then those the other thread has not claimed.

    ``shared`` is the tuple both threads work on (see :func:`shared_arrays`).
    Returns how many chunks this call computed.
    """
    (X, X_data, X_indices, X_indptr, is_sparse, y, sample_weight, order) = shared[:8]
    (batch_size, params, loss, epsilon, partials, chunk_losses, flags) = shared[8:]
    start = batch * batch_size
    stop = min(start + batch_size, order.shape[0])
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
            chunk_losses[c] = chunk_gradient(
                X,
                X_data,
                X_indices,
                X_indptr,
                is_sparse,
                y,
                sample_weight,
                order,
                chunk_start,
                chunk_stop,
                next_start,
                params,
                loss,
                epsilon,
                partials[c],
            )
            fetch_add(flags, DONE_CHUNKS, 1)  # release: the partial is visible
            n_computed += 1
    return n_computed


@numba.njit(**KERNEL_OPTIONS)
def lead_epoch(shared, state_and_settings):
    """The leading thread's part of the epoch: its chunks, and every step.

    Parameters
    ----------
    shared : tuple
        What both threads read, from :func:`shared_arrays`.
    state_and_settings : tuple
        The arguments of :func:`fastgd._kernels.linear.batch_numba.batch_epoch`
        from ``avg_params`` to ``average_start`` except ``partials`` and
        ``chunk_losses`` (which are in ``shared``), in that order.

    Returns
    -------
    loss_sum : float
        The epoch's Σ sᵢ·ℓᵢ.
    """
    sample_weight, order, batch_size, params = shared[6:10]
    partials, chunk_losses, flags = shared[12:]
    (avg_params, l1_received, state_1, state_2, grad, counters) = state_and_settings[:6]
    (loss, epsilon, l2, l1, l1_proximal) = state_and_settings[6:11]
    schedule_args = state_and_settings[11:16]
    optimizer_args = state_and_settings[16:21]
    fit_intercept, average_start = state_and_settings[21:]
    n_rows = order.shape[0]
    loss_sum = 0.0
    chunks_done = 0
    for start in range(0, n_rows, batch_size):
        stop = min(start + batch_size, n_rows)
        batch = start // batch_size
        work_on_batch(0, batch, shared)
        chunks_done += n_chunks_for(stop - start)
        wait_until_at_least(flags, DONE_CHUNKS, chunks_done)
        loss_sum += reduce_chunks(
            sample_weight,
            order,
            start,
            stop,
            params,
            l2,
            fit_intercept,
            partials,
            chunk_losses,
            grad,
        )
        take_step(
            params,
            grad,
            avg_params,
            l1_received,
            state_1,
            state_2,
            counters,
            l1,
            l1_proximal,
            *schedule_args,
            *optimizer_args,
            average_start,
        )
        store_release(flags, BATCHES_STEPPED, batch + 1)  # release: new params visible
    return loss_sum


@numba.njit(**KERNEL_OPTIONS)
def help_epoch(shared):
    """The helping thread's part: its chunks of each batch once the batch is open.

    A batch opens when the leader has published the parameters it needs
    (``BATCHES_STEPPED``); batches the leader finished alone are skipped.
    Returns how many chunks the helper computed.
    """
    order, batch_size = shared[7:9]
    flags = shared[-1]
    n_batches = -(-order.shape[0] // batch_size)
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


def shared_arrays(*args):
    """Split :func:`~fastgd._kernels.linear.batch_numba.batch_epoch`'s arguments for the two threads.

    Returns
    -------
    shared : tuple
        What both threads use: the data (X as four arrays and a flag, y,
        sample_weight, order), batch_size, params, loss, epsilon, the chunk
        buffers (partials, chunk_losses) and a fresh :func:`new_flags` array.
    state_and_settings : tuple
        The rest, for :func:`lead_epoch`.
    """
    data, (batch_size, params, avg_params, l1_received, state_1, state_2) = args[:8], args[8:14]
    grad, partials, chunk_losses, counters, loss, epsilon = args[14:20]
    settings = args[20:]
    shared = (*data, batch_size, params, loss, epsilon, partials, chunk_losses)
    shared += (new_flags(batch_size),)
    state = (avg_params, l1_received, state_1, state_2, grad, counters, loss, epsilon)
    return shared, state + settings


def two_thread_batch_epoch(*args):
    """Run :func:`fastgd._kernels.linear.batch_numba.batch_epoch` on two threads.

    Takes the same arguments and returns the same value, bit for bit; the
    calling thread leads and a short-lived helper thread computes chunks.
    """
    shared, state_and_settings = shared_arrays(*args)
    helper = threading.Thread(
        target=help_epoch, args=(shared,), name="fastgd-epoch-helper", daemon=True
    )
    helper.start()
    try:
        return lead_epoch(shared, state_and_settings)
    finally:
        shared[-1][STOP] = 1  # should the leader fail before the end, the helper returns
        helper.join()
