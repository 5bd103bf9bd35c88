"""Per-sample SGD epoch for linear regression (Numba twin of ``_sgd_fast``).

Same algorithm, same arguments and the same order of floating-point
operations as :func:`fastgd._kernels.linear._sgd_fast.sgd_epoch` (whose module
docstring describes the algorithm), except inside the dot products, which
each compiler vectorises its own way: the two backends give the same
coefficients to rounding. This is the ``backend="numba"`` path of GDRegressor.
"""

import math

from fastgd._engine.linear_epochs import COUNTERS_ARG, ORDER_ARG
from fastgd._kernels.common.optimizers import coordinate_step
from fastgd._kernels.linear.regression_losses import loss_derivative, loss_value
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
    INTERCEPT,
    L1_TOTAL,
    LOSS_SUM,
    N_AVERAGED,
    N_UPDATES,
    SCALE,
    T,
)
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, LEAF_KERNEL_OPTIONS, numba
from fastgd._kernels.runtime.prefetch import prefetch_dense_row, prefetch_sparse_row
from fastgd._kernels.runtime.tuning import (
    CACHE_LINE_BYTES,
    MIN_SCALE,
    ROWS_AHEAD,
    STEAL_AFTER_TICKS,
)

SGD = codes.SGD
OPTIMAL = codes.OPTIMAL
INVSCALING = codes.INVSCALING

# Slots of the ``flags`` array of an epoch shared by threads (as in the
# Cython kernel), each on a cache line of its own: blocks taken by a thread,
# blocks whose steps have begun, blocks done.
BLOCKS_CLAIMED, BLOCKS_STARTED, BLOCKS_DONE = 0, 8, 16


@numba.njit(inline="always", **KERNEL_OPTIONS)
def learning_rate(schedule, eta0, power_t, optimal_t0, alpha, t):
    """Learning rate of step ``t`` (1-based) under the schedule with that code."""
    if schedule == OPTIMAL:
        return 1.0 / (alpha * (optimal_t0 + t - 1.0))
    if schedule == INVSCALING:
        # As in the Cython twin: square roots for the common exponents.
        if power_t == 0.25:
            return eta0 / math.sqrt(math.sqrt(t))
        if power_t == 0.5:
            return eta0 / math.sqrt(t)
        return eta0 / t**power_t
    return eta0  # constant, or the adaptive schedule's current rate


@numba.njit(**LEAF_KERNEL_OPTIONS)
def dense_dot(X, i, w):
    """Row i of X dotted with w.

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
    """CSR row (data[start:end], indices[start:end]) dotted with w."""
    acc = data.dtype.type(0)
    for k in range(start, end):
        acc += data[k] * w[indices[k]]
    return acc


@numba.njit(inline="always", **KERNEL_OPTIONS)
def prefetch_row(X, X_data, X_indices, X_indptr, is_sparse, i):
    """Start loading row i (dense or CSR) into cache."""
    if is_sparse:
        prefetch_sparse_row(X_data, X_indices, X_indptr, i)
    else:
        prefetch_dense_row(X, i)


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
def sgd_steps(
    X,
    X_data,
    X_indices,
    X_indptr,
    is_sparse,
    y_ordered,
    weight_ordered,
    order,
    coef,
    avg_coef,
    l1_received,
    state_1,
    state_2,
    grad_buffer,
    counters,
    loss,
    epsilon,
    l2,
    l1,
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
    start,
    stop,
):
    """Run steps ``start`` to ``stop`` of the epoch (rows ``order[start:stop]``).

    Twin of the Cython kernel's ``run_steps``: everything carried from one
    step to the next lives in ``counters`` (including the lazy scale and the
    loss sum), so running the steps in several calls, on any thread, gives
    bit for bit the result of one call. The call that reaches the end of
    ``order`` folds the scale into ``coef``.
    """
    n_features = coef.shape[0]
    w = coef
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
        if step_index + ROWS_AHEAD < stop:
            prefetch_row(X, X_data, X_indices, X_indptr, is_sparse, order[step_index + ROWS_AHEAD])
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
        loss_sum += s * loss_value(loss, p, y_ordered[step_index], epsilon)
        dloss = s * loss_derivative(loss, p, y_ordered[step_index], epsilon)
        eta = learning_rate(schedule, eta0, power_t, optimal_t0, alpha, t)
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
            update = -eta * dloss / scale
            if update != 0.0:
                if is_sparse:
                    for k in range(row_start, row_end):
                        w[X_indices[k]] += update * X_data[k]
                else:
                    for j in range(n_features):
                        w[j] += update * X[i, j]
            if fit_intercept:
                intercept -= eta * dloss
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
            bias_1 = 1.0 - beta_1**n_updates
            bias_2 = 1.0 - beta_2**n_updates
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
                    momentum,
                    beta_1,
                    beta_2,
                    opt_eps,
                    bias_1,
                    bias_2,
                )
                grad_buffer[j] = 0
                if l1 > 0.0:
                    wj, l1_received[j] = clip_towards_zero(wj, l1_total, l1_received[j])
                w[j] = wj
            if fit_intercept:
                b = n_features
                intercept, state_1[b], state_2[b], _ = coordinate_step(
                    optimizer,
                    intercept,
                    dloss,
                    state_1[b],
                    state_2[b],
                    eta,
                    momentum,
                    beta_1,
                    beta_2,
                    opt_eps,
                    bias_1,
                    bias_2,
                )

        if average_start > 0.0 and t >= average_start:
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


@numba.njit(**KERNEL_OPTIONS)
def sgd_epoch(*args):
    """Run one epoch of per-sample SGD in place; return Σ sᵢ·ℓ(pᵢ, yᵢ).

    Arguments as for :func:`fastgd._kernels.linear._sgd_fast.sgd_epoch` (those of
    :func:`sgd_steps` without ``start`` and ``stop``).
    """
    counters = args[COUNTERS_ARG]
    counters[SCALE] = 1.0
    counters[LOSS_SUM] = 0.0
    sgd_steps(*args, 0, args[ORDER_ARG].shape[0])
    return counters[LOSS_SUM]


@numba.njit(**KERNEL_OPTIONS)
def warm_block(X, X_data, X_indices, X_indptr, is_sparse, order, start, stop):
    """Load rows ``order[start:stop]`` into this core's cache; return a sum of them.

    One load per cache line (prefetches alone can be dropped when the memory
    system is busy); the caller keeps the sum so that the loads stay.
    """
    sink = 0.0
    values_per_line = max(1, CACHE_LINE_BYTES // X.itemsize)
    indices_per_line = max(1, CACHE_LINE_BYTES // X_indices.itemsize)
    for k in range(start, stop):
        if k + ROWS_AHEAD < stop:
            prefetch_row(X, X_data, X_indices, X_indptr, is_sparse, order[k + ROWS_AHEAD])
        i = order[k]
        if is_sparse:
            for offset in range(X_indptr[i], X_indptr[i + 1], values_per_line):
                sink += X_data[offset]
            for offset in range(X_indptr[i], X_indptr[i + 1], indices_per_line):
                sink += X_indices[offset]
        else:
            for offset in range(0, X.shape[1], values_per_line):
                sink += X[i, offset]
    return sink


@numba.njit(**KERNEL_OPTIONS)
def sgd_epoch_share(flags, block_rows, *args):
    """One thread's part of a per-sample epoch shared by threads.

    Twin of :func:`fastgd._kernels.linear._sgd_fast.sgd_epoch_share` (whose
    docstring describes the protocol); returns the same pair.
    """
    X, X_data, X_indices, X_indptr, is_sparse = args[:5]
    order = args[ORDER_ARG]
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
        sink += warm_block(X, X_data, X_indices, X_indptr, is_sparse, order, start, stop)
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
                sgd_steps(*args, start, min(start + block_rows, n_steps))
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
