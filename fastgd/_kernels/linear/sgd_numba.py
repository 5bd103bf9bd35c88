"""Per-sample SGD epoch of a linear model (Numba twin of ``_sgd_fast``).

Same algorithm, same arguments (the structures of
:mod:`fastgd._kernels.linear.arguments`) and the same order of floating-point
operations as the Cython kernels in ``_sgd_fast.pyx.tp`` (whose module
docstring describes the algorithm), except inside the dot products, which
each compiler vectorises its own way: the two backends give the same
coefficients to rounding. This is the ``backend="numba"`` path.
"""

import math

from fastgd._kernels.common.optimizers import coordinate_step
from fastgd._kernels.linear.losses import loss_derivative, loss_value
from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.atomics import (
    compare_exchange,
    cycle_counter,
    fetch_add,
    load_acquire,
    spin_pause,
    store_release,
    yield_processor,
)
from fastgd._kernels.runtime.codes import (
    AVG_INTERCEPT,
    BLOCKS_CLAIMED,
    BLOCKS_DONE,
    BLOCKS_STARTED,
    INTERCEPT,
    L1_TOTAL,
    LOSS_SUM,
    N_AVERAGED,
    N_UPDATES,
    SCALE,
    T,
)
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, LEAF_KERNEL_OPTIONS, numba
from fastgd._kernels.runtime.prefetch import (
    prefetch_dense_row,
    prefetch_element,
    prefetch_sparse_row,
)
from fastgd._kernels.runtime.tuning import (
    CACHE_LINE_BYTES,
    MIN_SCALE,
    ROWS_AHEAD,
    STEAL_AFTER_TICKS,
)

SGD = codes.SGD
OPTIMAL = codes.OPTIMAL
INVSCALING = codes.INVSCALING
PA1 = codes.PA1
PA2 = codes.PA2


@numba.njit(inline="always", **KERNEL_OPTIONS)
def learning_rate(settings, t):
    """Learning rate of step ``t`` (1-based) under ``settings.schedule``.

    The passive-aggressive schedules take their step from each sample
    (:func:`passive_aggressive_step`); their penalty uses ``eta0``, as
    scikit-learn's does.
    """
    schedule = settings.schedule
    if schedule == OPTIMAL:
        return 1.0 / (settings.alpha * (settings.optimal_t0 + t - 1.0))
    if schedule == INVSCALING:
        # As in the Cython twin: square roots for the common exponents.
        power_t = settings.power_t
        if power_t == 0.25:
            return settings.eta0 / math.sqrt(math.sqrt(t))
        if power_t == 0.5:
            return settings.eta0 / math.sqrt(t)
        return settings.eta0 / t**power_t
    return settings.eta0  # constant, adaptive (its current rate), PA1, PA2


@numba.njit(inline="always", **KERNEL_OPTIONS)
def passive_aggressive_step(schedule, aggressiveness, loss, squared_norm):
    """Step size of PA1 (min(C, ℓ/‖x‖²)) or PA2 (ℓ / (‖x‖² + 1/(2C)))."""
    if schedule == PA1:
        return min(aggressiveness, loss / squared_norm)
    return loss / (squared_norm + 0.5 / aggressiveness)


@numba.njit(**LEAF_KERNEL_OPTIONS)
def dense_dot(X, i, w):
    """Row i of the dense X dotted with w.

    Compiled with reassociation (a leaf kernel), so that LLVM vectorises it
    with several partial sums: the dot product is on every step's critical
    path. The order of the additions is LLVM's, so the backends agree to
    rounding, not bit for bit.
    """
    acc = X.dtype.type(0)
    for j in range(w.shape[0]):
        acc += X[i, j] * w[j]
    return acc


@numba.njit(inline="always", **KERNEL_OPTIONS)
def sparse_dot(data, indices, start, end, w):
    """CSR row (data[start:end], indices[start:end]) dotted with w.

    Four partial sums (position mod 4), added as (s0 + s1) + (s2 + s3), so
    that the additions' latency chains overlap; the Cython twin sums in the
    same order.
    """
    s0 = s1 = s2 = s3 = data.dtype.type(0)
    k = start
    while k + 4 <= end:
        s0 += data[k] * w[indices[k]]
        s1 += data[k + 1] * w[indices[k + 1]]
        s2 += data[k + 2] * w[indices[k + 2]]
        s3 += data[k + 3] * w[indices[k + 3]]
        k += 4
    while k < end:
        s0 += data[k] * w[indices[k]]
        k += 1
    return (s0 + s1) + (s2 + s3)


@numba.njit(inline="always", **KERNEL_OPTIONS)
def row_squared_norm(rows, i):
    """‖xᵢ‖² of row i (dense or CSR), in float64."""
    acc = 0.0
    if rows.is_sparse:
        for k in range(rows.indptr[i], rows.indptr[i + 1]):
            acc += rows.data[k] * rows.data[k]
    else:
        for j in range(rows.dense.shape[1]):
            acc += rows.dense[i, j] * rows.dense[i, j]
    return acc


@numba.njit(inline="always", **KERNEL_OPTIONS)
def prefetch_row(rows, i):
    """Start loading row i (dense or CSR) into cache."""
    if rows.is_sparse:
        prefetch_sparse_row(rows.data, rows.indices, rows.indptr, i)
    else:
        prefetch_dense_row(rows.dense, i)


@numba.njit(inline="always", **KERNEL_OPTIONS)
def prefetch_ahead(rows, step, stop):
    """Start loading the row of step ``step + ROWS_AHEAD`` into cache.

    A sparse row is found through ``indptr``, itself a random read, so the
    ``indptr`` entry of step ``step + 2·ROWS_AHEAD`` is asked for too.
    """
    if step + ROWS_AHEAD < stop:
        if rows.is_sparse and step + 2 * ROWS_AHEAD < stop:
            prefetch_element(rows.indptr, rows.order[step + 2 * ROWS_AHEAD])
        prefetch_row(rows, rows.order[step + ROWS_AHEAD])


@numba.njit(inline="always", **KERNEL_OPTIONS)
def clip_towards_zero(w, total, received):
    """Cumulative L1 penalty for one weight: shrink by (total − received), never past 0.

    Returns the new weight and the new amount received.
    """
    new_w = w
    if w > 0.0:
        new_w = max(0.0, w - (total + received))
    elif w < 0.0:
        new_w = min(0.0, w + (total - received))
    return new_w, received + (new_w - w)


@numba.njit(**KERNEL_OPTIONS)
def sgd_steps(rows, model, scratch, settings, start, stop):
    """Run steps ``start`` to ``stop`` of the epoch (rows ``rows.order[start:stop]``).

    Twin of the Cython kernels' ``run_steps``: everything carried from one
    step to the next lives in ``model.counters`` (including the intercept,
    the lazy scale and the loss sum), so running the steps in several calls,
    on any thread, gives bit for bit the result of one call. The call that
    reaches the end of the epoch folds the scale into the weights.
    """
    X, X_data, X_indices, X_indptr = (
        rows.dense,
        rows.data,
        rows.indices,
        rows.indptr,
    )
    is_sparse = rows.is_sparse
    order, y_ordered, weight_ordered = rows.order, rows.y, rows.weight
    counters = model.counters
    n_features = model.params.shape[0] - 1
    w = model.params[:n_features]
    avg_coef = model.avg_params[:n_features]
    l1_received, state_1, state_2 = model.l1_received, model.state_1, model.state_2
    grad_buffer = scratch.grad
    loss, epsilon = settings.loss, settings.epsilon
    l2, l1 = settings.l2, settings.l1
    schedule, optimizer = settings.schedule, settings.optimizer
    passive_aggressive = schedule == PA1 or schedule == PA2

    scale = counters[SCALE]
    intercept = counters[INTERCEPT]
    avg_intercept = counters[AVG_INTERCEPT]
    t = counters[T]
    l1_total = counters[L1_TOTAL]
    n_averaged = counters[N_AVERAGED]
    n_updates = counters[N_UPDATES]
    loss_sum = counters[LOSS_SUM]
    lazy = optimizer == SGD
    unit_weights = weight_ordered.shape[0] == 0  # every weight is 1: nothing to read
    one = weight_ordered.dtype.type(1.0)

    n_steps = order.shape[0]
    for step_index in range(start, stop):
        prefetch_ahead(rows, step_index, stop)
        i = order[step_index]
        if is_sparse:
            row_start = X_indptr[i]
            row_end = X_indptr[i + 1]
            p = scale * sparse_dot(X_data, X_indices, row_start, row_end, w) + intercept
        else:
            row_start = 0
            row_end = n_features
            p = scale * dense_dot(X, i, w) + intercept
        s = one if unit_weights else weight_ordered[step_index]
        y = y_ordered[step_index]
        sample_loss = loss_value(loss, p, y, epsilon)
        loss_sum += s * sample_loss
        dloss = s * loss_derivative(loss, p, y, epsilon)
        eta = learning_rate(settings, t)
        step = eta
        if passive_aggressive:
            squared_norm = row_squared_norm(rows, i)
            if schedule == PA1 and squared_norm == 0.0:
                continue  # no direction to move in: the step is skipped, as in scikit-learn
            step = passive_aggressive_step(schedule, settings.eta0, sample_loss, squared_norm)
        n_updates += 1.0

        if lazy:
            if l2 > 0.0:
                shrink = 1.0 - eta * l2
                if shrink <= 0.0:
                    # The step wipes the weights out entirely.
                    w[:] = 0
                    scale = 1.0
                else:
                    scale *= shrink
            update = -step * dloss / scale
            if update != 0.0:
                if is_sparse:
                    for k in range(row_start, row_end):
                        w[X_indices[k]] += update * X_data[k]
                else:
                    for j in range(n_features):
                        w[j] += update * X[i, j]
            if settings.fit_intercept:
                intercept -= step * dloss
            if l1 > 0.0:
                l1_total += eta * l1
                for k in range(row_start, row_end):
                    if is_sparse:
                        j = X_indices[k]
                        x_j = X_data[k]
                    else:
                        j = k
                        x_j = X[i, k]
                    if x_j == 0:
                        continue
                    wj, l1_received[j] = clip_towards_zero(scale * w[j], l1_total, l1_received[j])
                    w[j] = wj / scale
        else:
            bias_1 = 1.0 - settings.beta_1**n_updates
            bias_2 = 1.0 - settings.beta_2**n_updates
            if is_sparse:
                for k in range(row_start, row_end):
                    grad_buffer[X_indices[k]] += dloss * X_data[k]
            else:
                for j in range(n_features):
                    grad_buffer[j] = dloss * X[i, j]
            if l1 > 0.0:
                l1_total += eta * l1
            for j in range(n_features):
                wj, state_1[j], state_2[j], _ = coordinate_step(
                    optimizer,
                    w[j],
                    grad_buffer[j] + l2 * w[j],
                    state_1[j],
                    state_2[j],
                    eta,
                    settings.momentum,
                    settings.beta_1,
                    settings.beta_2,
                    settings.optimizer_eps,
                    bias_1,
                    bias_2,
                )
                grad_buffer[j] = 0
                if l1 > 0.0:
                    wj, l1_received[j] = clip_towards_zero(wj, l1_total, l1_received[j])
                w[j] = wj
            if settings.fit_intercept:
                b = n_features
                intercept, state_1[b], state_2[b], _ = coordinate_step(
                    optimizer,
                    intercept,
                    dloss,
                    state_1[b],
                    state_2[b],
                    eta,
                    settings.momentum,
                    settings.beta_1,
                    settings.beta_2,
                    settings.optimizer_eps,
                    bias_1,
                    bias_2,
                )

        if settings.average_start > 0.0 and t >= settings.average_start:
            # Running mean of the weights: avg ← avg + (w − avg) / n.
            n_averaged += 1.0
            mu = 1.0 / n_averaged
            for j in range(n_features):
                avg_coef[j] += mu * (scale * w[j] - avg_coef[j])
            avg_intercept += mu * (intercept - avg_intercept)

        if scale < MIN_SCALE:
            for j in range(n_features):
                w[j] *= scale
            scale = 1.0
        t += 1.0

    if stop == n_steps and scale != 1.0:
        # End of the epoch: fold the lazy scale into the weights.
        for j in range(n_features):
            w[j] *= scale
        scale = 1.0

    counters[INTERCEPT] = intercept
    counters[AVG_INTERCEPT] = avg_intercept
    counters[T] = t
    counters[L1_TOTAL] = l1_total
    counters[N_AVERAGED] = n_averaged
    counters[N_UPDATES] = n_updates
    counters[SCALE] = scale
    counters[LOSS_SUM] = loss_sum


def sgd_epoch(rows, model, scratch, settings):
    """Run one epoch of per-sample SGD in place; return Σ sᵢ·ℓ(pᵢ, yᵢ).

    Arguments as for the Cython ``sgd_epoch``: the structures of
    :mod:`fastgd._kernels.linear.arguments`. The intercept is read from and
    left in ``model.counters`` (slot INTERCEPT, and AVG_INTERCEPT for the
    averaged one).

    A Python function that calls the compiled :func:`sgd_steps` once: a
    compiled wrapper would let LLVM inline and re-optimise the steps, and the
    log loss's exponentials then rounded differently from the steps run by
    :func:`sgd_epoch_share` (the one-thread and two-thread epochs must agree
    bit for bit).
    """
    counters = model.counters
    counters[SCALE] = 1.0
    counters[LOSS_SUM] = 0.0
    sgd_steps(rows, model, scratch, settings, 0, rows.order.shape[0])
    return counters[LOSS_SUM]


@numba.njit(**KERNEL_OPTIONS)
def warm_block(rows, start, stop):
    """Load rows ``order[start:stop]`` into this core's cache; return a sum of them.

    One load per cache line (prefetches alone can be dropped when the memory
    system is busy); the caller keeps the sum so that the loads stay.
    """
    sink = 0.0
    order = rows.order
    X, X_data, X_indices, X_indptr = (
        rows.dense,
        rows.data,
        rows.indices,
        rows.indptr,
    )
    values_per_line = max(1, CACHE_LINE_BYTES // X.itemsize)
    indices_per_line = max(1, CACHE_LINE_BYTES // X_indices.itemsize)
    for k in range(start, stop):
        prefetch_ahead(rows, k, stop)
        i = order[k]
        if rows.is_sparse:
            for offset in range(X_indptr[i], X_indptr[i + 1], values_per_line):
                sink += X_data[offset]
            for offset in range(X_indptr[i], X_indptr[i + 1], indices_per_line):
                sink += X_indices[offset]
        else:
            for offset in range(0, X.shape[1], values_per_line):
                sink += X[i, offset]
    return sink


@numba.njit(**KERNEL_OPTIONS)
def sgd_epoch_share(flags, block_rows, rows, model, scratch, settings):
    """One thread's part of a per-sample epoch shared by threads.

    Twin of the Cython ``sgd_epoch_share`` (whose docstring describes the
    protocol); returns the same pair ``(blocks run, sink)``.
    """
    order = rows.order
    n_steps = order.shape[0]
    n_blocks = -(-n_steps // block_rows)
    n_run = 0
    sink = 0.0
    while True:
        mine = fetch_add(flags, BLOCKS_CLAIMED, 1)
        if mine >= n_blocks:
            break
        start = mine * block_rows
        stop = min(start + block_rows, n_steps)
        sink += warm_block(rows, start, stop)
        waiting_since = cycle_counter()
        patient = True
        while True:
            runnable = load_acquire(flags, BLOCKS_DONE)
            if runnable > mine:
                break  # the other thread ran this block
            if (runnable == mine or not patient) and compare_exchange(
                flags, BLOCKS_STARTED, runnable, runnable + 1
            ):
                start = runnable * block_rows
                sgd_steps(rows, model, scratch, settings, start, min(start + block_rows, n_steps))
                store_release(flags, BLOCKS_DONE, runnable + 1)
                n_run += 1
                waiting_since = cycle_counter()
                patient = True
            elif patient:
                spin_pause()
                patient = cycle_counter() - waiting_since < STEAL_AFTER_TICKS
            else:
                yield_processor()
    return n_run, sink
