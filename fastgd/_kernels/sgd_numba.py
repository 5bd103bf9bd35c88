"""Per-sample SGD epoch for linear regression (Numba twin of ``_sgd_fast``).

Same algorithm, same arguments and same order of floating-point operations as
:func:`fastgd._kernels._sgd_fast.sgd_epoch` (whose module docstring describes
the algorithm), so the two backends give the same coefficients. This is the
``backend="numba"`` path of GDRegressor.
"""

from fastgd._kernels import codes
from fastgd._kernels._numba_setup import KERNEL_OPTIONS, numba
from fastgd._kernels.optimizers import coordinate_step
from fastgd._kernels.prefetch import ROWS_AHEAD, prefetch_dense_row, prefetch_sparse_row
from fastgd._kernels.regression_losses import loss_derivative, loss_value

SGD = codes.SGD
OPTIMAL = codes.OPTIMAL
INVSCALING = codes.INVSCALING

# Slots of the ``counters`` array (same layout as the Cython kernel).
INTERCEPT, AVG_INTERCEPT, T, L1_TOTAL, N_AVERAGED, N_UPDATES = range(6)

# Below this, the lazy L2 scale is folded into the weights to keep precision.
MIN_SCALE = 1e-9


@numba.njit(inline="always", **KERNEL_OPTIONS)
def learning_rate(schedule, eta0, power_t, optimal_t0, alpha, t):
    """Learning rate of step ``t`` (1-based) under the schedule with that code."""
    if schedule == OPTIMAL:
        return 1.0 / (alpha * (optimal_t0 + t - 1.0))
    if schedule == INVSCALING:
        return eta0 / t**power_t
    return eta0  # constant, or the adaptive schedule's current rate


@numba.njit(inline="always", **KERNEL_OPTIONS)
def dense_dot(X, i, w):
    """Row i of X dotted with w, with four partial sums (as the Cython twin)."""
    n_features = w.shape[0]
    a0 = X.dtype.type(0)
    a1 = a0
    a2 = a0
    a3 = a0
    j = 0
    while j + 4 <= n_features:
        a0 += X[i, j] * w[j]
        a1 += X[i, j + 1] * w[j + 1]
        a2 += X[i, j + 2] * w[j + 2]
        a3 += X[i, j + 3] * w[j + 3]
        j += 4
    while j < n_features:
        a0 += X[i, j] * w[j]
        j += 1
    return (a0 + a1) + (a2 + a3)


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
def sgd_epoch(
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
):
    """Run one epoch of per-sample SGD in place; return Σ sᵢ·ℓ(pᵢ, yᵢ).

    Arguments as for :func:`fastgd._kernels._sgd_fast.sgd_epoch`.
    """
    n_features = coef.shape[0]
    w = coef
    scale = 1.0
    intercept = counters[INTERCEPT]
    avg_intercept = counters[AVG_INTERCEPT]
    t = counters[T]
    l1_total = counters[L1_TOTAL]
    n_averaged = counters[N_AVERAGED]
    n_updates = counters[N_UPDATES]
    loss_sum = 0.0
    lazy = optimizer == SGD
    unit_weights = weight_ordered.shape[0] == 0  # every weight is 1: nothing to read
    one = weight_ordered.dtype.type(1.0)

    n_steps = order.shape[0]
    for step_index in range(n_steps):
        if step_index + ROWS_AHEAD < n_steps:
            prefetch_row(X, X_data, X_indices, X_indptr, is_sparse, order[step_index + ROWS_AHEAD])
        i = order[step_index]
        if is_sparse:
            start = X_indptr[i]
            end = X_indptr[i + 1]
            p = scale * sparse_dot(X_data, X_indices, start, end, w) + intercept
        else:
            start = 0
            end = n_features
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
                    for k in range(start, end):
                        w[X_indices[k]] += update * X_data[k]
                else:
                    for j in range(n_features):
                        w[j] += update * X[i, j]
            if fit_intercept:
                intercept -= eta * dloss
            if l1 > 0.0:
                l1_total += eta * l1
                for k in range(start, end):
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
                for k in range(start, end):
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

    if scale != 1.0:
        for j in range(n_features):
            w[j] *= scale

    counters[INTERCEPT] = intercept
    counters[AVG_INTERCEPT] = avg_intercept
    counters[T] = t
    counters[L1_TOTAL] = l1_total
    counters[N_AVERAGED] = n_averaged
    counters[N_UPDATES] = n_updates
    return loss_sum
