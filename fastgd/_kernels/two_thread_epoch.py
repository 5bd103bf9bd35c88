"""One mini-batch epoch shared by two threads.

A mini-batch epoch over shuffled rows is bound by memory latency: every row
is a fresh trip to main memory, and one core keeps too few loads in flight
to use the memory bandwidth (measured on 1,000,000 × 100 float64 rows, one
core reads shuffled rows at about 4 GB/s, two cores at twice that). Yet the
batches are sequential, each needing the parameters the previous one
produced, and a parallel region per batch costs milliseconds whenever
another process holds a core.

So two threads share the epoch without any per-batch parallel region. Each
batch's rows are cut into the same fixed chunks as in
:func:`fastgd._kernels.batch_numba.batch_epoch`, numbered across the whole
epoch. Both threads claim chunks of the current batch one at a time (a
compare-and-swap on a shared counter) and compute their partial gradients;
the leading thread, once every chunk of the batch is done, sums the partials
in chunk order, takes the optimizer step and publishes the new parameters,
which releases the chunks of the next batch. The arithmetic, and so the
result, is bit for bit that of the one-thread epoch, whichever thread
computed which chunk.

Nothing waits on a thread that has not claimed work: if the helper is slow
to start or descheduled, the leader claims the chunks itself, so a busy
machine costs speed, never a hang.

Synchronisation lives in a small int64 array (:func:`new_flags`), one cache
line per counter:

* ``NEXT_CHUNK``: the next chunk to claim (epoch-wide numbering);
* ``DONE_CHUNKS``: how many chunks have their partial gradient written;
* ``BATCHES_STEPPED``: how many batches have been applied to the parameters.
"""

import os
import threading

import numpy as np

from fastgd._kernels._numba_setup import KERNEL_OPTIONS, numba
from fastgd._kernels.atomics import (
    compare_exchange,
    fetch_add,
    load_acquire,
    store_release,
    wait_step,
    wait_until_at_least,
)
from fastgd._kernels.batch_numba import (
    CHUNK_ROWS,
    chunk_gradient,
    n_chunks_for,
    reduce_chunks,
    take_step,
)

INT64_PER_CACHE_LINE = 8
NEXT_CHUNK, DONE_CHUNKS, BATCHES_STEPPED = (k * INT64_PER_CACHE_LINE for k in range(3))

# Below this many matrix entries an epoch takes a few milliseconds at most,
# and starting a thread is not worth it.
MIN_ENTRIES = 1 << 22


def new_flags():
    """A fresh synchronisation array for one epoch (all counters zero)."""
    return np.zeros(3 * INT64_PER_CACHE_LINE, dtype=np.int64)


def worth_two_threads(n_rows, n_features, batch_size):
    """Whether an epoch of this shape should be shared by two threads.

    It needs at least two chunks per batch, enough work, and two CPUs this
    process may run on and Numba may use (``NUMBA_NUM_THREADS`` or
    :func:`numba.set_num_threads` set to 1 turn it off).
    """
    try:
        n_cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without affinity
        n_cpus = os.cpu_count() or 1
    return (
        n_chunks_for(batch_size) >= 2
        and batch_size < n_rows
        and n_rows * n_features >= MIN_ENTRIES
        and min(n_cpus, numba.get_num_threads()) >= 2
    )


@numba.njit(**KERNEL_OPTIONS)
def _compute_chunk(
    chunk,
    X,
    X_data,
    X_indices,
    X_indptr,
    is_sparse,
    y,
    sample_weight,
    order,
    batch_size,
    params,
    loss,
    epsilon,
    partials,
    chunk_losses,
    flags,
):
    """Partial gradient of epoch-wide chunk number ``chunk``; then count it done."""
    chunks_per_batch = n_chunks_for(batch_size)
    batch, c = divmod(chunk, chunks_per_batch)
    start = batch * batch_size + c * CHUNK_ROWS
    batch_stop = min((batch + 1) * batch_size, order.shape[0])
    stop = min(start + CHUNK_ROWS, batch_stop)
    # The thread will most likely claim the chunk after next: prefetch that.
    chunk_losses[c] = chunk_gradient(
        X,
        X_data,
        X_indices,
        X_indptr,
        is_sparse,
        y,
        sample_weight,
        order,
        start,
        stop,
        start + 2 * CHUNK_ROWS,
        params,
        loss,
        epsilon,
        partials[c],
    )
    fetch_add(flags, DONE_CHUNKS, 1)  # release: the partial is visible


@numba.njit(**KERNEL_OPTIONS)
def _chunk_count(n_rows, batch_size):
    """Chunks in the epoch: full batches have n_chunks_for(batch_size) each."""
    n_full, rest = divmod(n_rows, batch_size)
    return n_full * n_chunks_for(batch_size) + (n_chunks_for(rest) if rest else 0)


@numba.njit(**KERNEL_OPTIONS)
def lead_epoch(
    X,
    X_data,
    X_indices,
    X_indptr,
    is_sparse,
    y,
    sample_weight,
    order,
    batch_size,
    params,
    avg_params,
    l1_received,
    state_1,
    state_2,
    grad,
    partials,
    chunk_losses,
    counters,
    loss,
    epsilon,
    l2,
    l1,
    l1_proximal,
    schedule,
    eta0,
    power_t,
    optimal_t0,
    alpha,
    optimizer,
    momentum,
    beta_1,
    beta_2,
    opt_eps,
    fit_intercept,
    average_start,
    flags,
):
    """The leading thread's part of the epoch: compute chunks and take every step.

    Arguments as for :func:`fastgd._kernels.batch_numba.batch_epoch`, plus
    ``flags`` from :func:`new_flags`. Returns the epoch's Σ sᵢ·ℓᵢ.
    """
    n_rows = order.shape[0]
    chunks_per_batch = n_chunks_for(batch_size)
    loss_sum = 0.0
    chunks_before = 0
    for start in range(0, n_rows, batch_size):
        stop = min(start + batch_size, n_rows)
        chunks_after = chunks_before + n_chunks_for(stop - start)
        while True:
            chunk = load_acquire(flags, NEXT_CHUNK)
            if chunk >= chunks_after:
                break
            if compare_exchange(flags, NEXT_CHUNK, chunk, chunk + 1):
                _compute_chunk(
                    chunk,
                    X,
                    X_data,
                    X_indices,
                    X_indptr,
                    is_sparse,
                    y,
                    sample_weight,
                    order,
                    batch_size,
                    params,
                    loss,
                    epsilon,
                    partials,
                    chunk_losses,
                    flags,
                )
        wait_until_at_least(flags, DONE_CHUNKS, chunks_after)
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
            schedule,
            eta0,
            power_t,
            optimal_t0,
            alpha,
            optimizer,
            momentum,
            beta_1,
            beta_2,
            opt_eps,
            average_start,
        )
        store_release(flags, BATCHES_STEPPED, start // batch_size + 1)
        chunks_before += chunks_per_batch
    return loss_sum


@numba.njit(**KERNEL_OPTIONS)
def help_epoch(
    X,
    X_data,
    X_indices,
    X_indptr,
    is_sparse,
    y,
    sample_weight,
    order,
    batch_size,
    params,
    loss,
    epsilon,
    partials,
    chunk_losses,
    flags,
):
    """The helping thread's part: claim and compute chunks until the epoch's are gone.

    A chunk is claimed only once the parameters its batch needs are
    published (``BATCHES_STEPPED``). Returns how many chunks it computed.
    """
    n_chunks = _chunk_count(order.shape[0], batch_size)
    chunks_per_batch = n_chunks_for(batch_size)
    n_waits = 0
    n_computed = 0
    while True:
        chunk = load_acquire(flags, NEXT_CHUNK)
        if chunk >= n_chunks:
            return n_computed
        ready = load_acquire(flags, BATCHES_STEPPED) >= chunk // chunks_per_batch
        if not (ready and compare_exchange(flags, NEXT_CHUNK, chunk, chunk + 1)):
            n_waits = wait_step(n_waits)
            continue
        n_waits = 0
        n_computed += 1
        _compute_chunk(
            chunk,
            X,
            X_data,
            X_indices,
            X_indptr,
            is_sparse,
            y,
            sample_weight,
            order,
            batch_size,
            params,
            loss,
            epsilon,
            partials,
            chunk_losses,
            flags,
        )


def two_thread_batch_epoch(*args):
    """Run :func:`fastgd._kernels.batch_numba.batch_epoch` on two threads.

    Takes the same arguments and returns the same value, bit for bit; the
    calling thread leads and a short-lived helper thread computes chunks.
    """
    flags = new_flags()
    # The helper needs the data, the parameters (read only) and the chunk buffers.
    (*x_arrays, y, sample_weight, order, batch_size, params) = args[:10]
    partials, chunk_losses, _, loss, epsilon = args[15:20]
    helper = threading.Thread(
        target=help_epoch,
        args=(*x_arrays, y, sample_weight, order, batch_size, params, loss, epsilon)
        + (partials, chunk_losses, flags),
        name="fastgd-epoch-helper",
        daemon=True,
    )
    helper.start()
    try:
        return lead_epoch(*args, flags)
    finally:
        # Should the leader fail before the end, send the helper home.
        flags[NEXT_CHUNK] = np.iinfo(np.int64).max
        helper.join()
