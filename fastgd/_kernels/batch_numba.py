"""Mini-batch and full-batch gradient descent for linear regression (Numba).

One call of :func:`batch_epoch` runs one epoch: the rows, in the order given
by ``order``, are cut into consecutive batches of ``batch_size`` rows; for
each batch the kernel computes the mean gradient

    g = (Σᵢ sᵢ ∂ℓ(pᵢ, yᵢ)/∂p · [xᵢ, 1]) / Σᵢ sᵢ + l2 · [w, 0]

and hands it to the shared optimizer rule (:mod:`fastgd._kernels.optimizers`).
The parameters live in one flat buffer ``params = [w₀ … w_{d−1}, b]``.

Rows of a batch are split into fixed chunks of ``CHUNK_ROWS`` rows; each
chunk writes its own partial gradient, and the partials are summed in chunk
order. Large batches run their chunks in parallel (small ones on one thread,
see :data:`~fastgd._kernels._numba_setup.PARALLEL_MIN_WORK`); the result
does not depend on the number of threads.

L1: with ``l1_proximal`` (full batch) every step ends with a proximal
soft-threshold (ISTA), so the iterates reach the exact elastic-net optimum
with exact zeros; otherwise (mini-batch) the cumulative penalty of
Tsuruoka et al. (2009) clips every weight after each step.
"""

from fastgd._kernels._numba_setup import (
    KERNEL_OPTIONS,
    PARALLEL_MIN_WORK,
    numba,
    parallel_and_serial,
)
from fastgd._kernels.optimizers import optimizer_step
from fastgd._kernels.prefetch import ROWS_AHEAD
from fastgd._kernels.regression_losses import loss_derivative, loss_value
from fastgd._kernels.sgd_numba import (
    L1_TOTAL,
    N_AVERAGED,
    N_UPDATES,
    T,
    clip_towards_zero,
    dense_dot,
    learning_rate,
    prefetch_row,
    sparse_dot,
)

CHUNK_ROWS = 64


def n_chunks_for(batch_size):
    """Rows of a batch are processed in this many chunks (for buffer sizing)."""
    return max(1, -(-batch_size // CHUNK_ROWS))


@numba.njit(**KERNEL_OPTIONS)
def _chunk_gradient(
    X,
    X_data,
    X_indices,
    X_indptr,
    is_sparse,
    y_ordered,
    weight_ordered,
    rows,
    start,
    stop,
    params,
    loss,
    epsilon,
    partial,
):
    """Σ over ``rows[start:stop]`` of sᵢ·dℓᵢ·[xᵢ, 1] into ``partial``; return Σ sᵢ·ℓᵢ.

    ``y_ordered[k]`` and ``weight_ordered[k]`` belong to row ``rows[k]``.
    """
    n_features = params.shape[0] - 1
    w = params[:n_features]
    intercept = params[n_features]
    partial[:] = 0
    loss_sum = 0.0
    for k in range(start, stop):
        if k + ROWS_AHEAD < rows.shape[0]:
            prefetch_row(X, X_data, X_indices, X_indptr, is_sparse, rows[k + ROWS_AHEAD])
        i = rows[k]
        if is_sparse:
            p = sparse_dot(X_data, X_indices, X_indptr[i], X_indptr[i + 1], w) + intercept
        else:
            p = dense_dot(X, i, w) + intercept
        loss_sum += weight_ordered[k] * loss_value(loss, p, y_ordered[k], epsilon)
        dloss = weight_ordered[k] * loss_derivative(loss, p, y_ordered[k], epsilon)
        if dloss == 0.0:
            continue
        if is_sparse:
            for q in range(X_indptr[i], X_indptr[i + 1]):
                partial[X_indices[q]] += dloss * X_data[q]
        else:
            for j in range(n_features):
                partial[j] += dloss * X[i, j]
        partial[n_features] += dloss
    return loss_sum


def _batch_gradient_body(
    X,
    X_data,
    X_indices,
    X_indptr,
    is_sparse,
    y_ordered,
    weight_ordered,
    rows,
    params,
    loss,
    epsilon,
    l2,
    fit_intercept,
    partials,
    chunk_losses,
    grad,
):
    """Body of :func:`batch_gradient`, compiled parallel and serial."""
    n_rows = rows.shape[0]
    n_params = params.shape[0]
    n_chunks = -(-n_rows // CHUNK_ROWS)
    for c in numba.prange(n_chunks):
        start = c * CHUNK_ROWS
        chunk_losses[c] = _chunk_gradient(
            X,
            X_data,
            X_indices,
            X_indptr,
            is_sparse,
            y_ordered,
            weight_ordered,
            rows,
            start,
            min(start + CHUNK_ROWS, n_rows),
            params,
            loss,
            epsilon,
            partials[c],
        )
    # Weighted mean: divide by Σ sᵢ over the batch (so that a sample of weight
    # 2 counts as that sample twice, exactly, in full-batch GD).
    weight_sum = 0.0
    for k in range(n_rows):
        weight_sum += weight_ordered[k]
    inv_weight = 1.0 / weight_sum if weight_sum > 0.0 else 0.0
    # Fixed-order reduction over chunks (thread count does not matter).
    for j in range(n_params):
        acc = 0.0
        for c in range(n_chunks):
            acc += partials[c, j]
        grad[j] = acc * inv_weight
    for j in range(n_params - 1):
        grad[j] += l2 * params[j]
    if not fit_intercept:
        grad[n_params - 1] = 0.0
    loss_sum = 0.0
    for c in range(n_chunks):
        loss_sum += chunk_losses[c]
    return loss_sum


_batch_gradient_parallel, _batch_gradient_serial = parallel_and_serial(_batch_gradient_body)


@numba.njit(**KERNEL_OPTIONS)
def batch_gradient(
    X,
    X_data,
    X_indices,
    X_indptr,
    is_sparse,
    y_ordered,
    weight_ordered,
    rows,
    params,
    loss,
    epsilon,
    l2,
    fit_intercept,
    partials,
    chunk_losses,
    grad,
):
    """Weighted-mean gradient of the penalised objective over ``rows``, into ``grad``.

    Parameters
    ----------
    y_ordered, weight_ordered : ndarray of shape (len(rows),)
        Target and sample weight of each row of ``rows``, in that order.
    partials : ndarray of shape (n_chunks, d + 1)
        Scratch space for the per-chunk sums (``n_chunks_for(len(rows))`` rows
        at least).
    chunk_losses : ndarray of shape (n_chunks,), float64
        Scratch space.
    grad : ndarray of shape (d + 1,)
        Output: the gradient with respect to ``params``.

    Returns
    -------
    loss_sum : float
        Σ sᵢ·ℓ(pᵢ, yᵢ) over the rows, at the parameters before any update.
    """
    if rows.shape[0] * params.shape[0] >= PARALLEL_MIN_WORK:
        return _batch_gradient_parallel(
            X,
            X_data,
            X_indices,
            X_indptr,
            is_sparse,
            y_ordered,
            weight_ordered,
            rows,
            params,
            loss,
            epsilon,
            l2,
            fit_intercept,
            partials,
            chunk_losses,
            grad,
        )
    return _batch_gradient_serial(
        X,
        X_data,
        X_indices,
        X_indptr,
        is_sparse,
        y_ordered,
        weight_ordered,
        rows,
        params,
        loss,
        epsilon,
        l2,
        fit_intercept,
        partials,
        chunk_losses,
        grad,
    )


@numba.njit(**KERNEL_OPTIONS)
def batch_epoch(
    X,
    X_data,
    X_indices,
    X_indptr,
    is_sparse,
    y_ordered,
    weight_ordered,
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
):
    """Run one epoch of mini-batch (or full-batch) GD in place.

    ``counters`` has the layout of the per-sample kernels; its intercept slots
    are unused (the intercept is the last entry of ``params``). Other
    arguments as for :func:`fastgd._kernels._sgd_fast.sgd_epoch`.

    Returns
    -------
    loss_sum : float
        Σ sᵢ·ℓ(pᵢ, yᵢ) over the epoch, each batch at its pre-update parameters.
    """
    n_rows = order.shape[0]
    n_features = params.shape[0] - 1
    t = counters[T]
    n_updates = counters[N_UPDATES]
    l1_total = counters[L1_TOTAL]
    n_averaged = counters[N_AVERAGED]
    loss_sum = 0.0
    for start in range(0, n_rows, batch_size):
        stop = min(start + batch_size, n_rows)
        rows = order[start:stop]
        loss_sum += batch_gradient(
            X,
            X_data,
            X_indices,
            X_indptr,
            is_sparse,
            y_ordered[start:stop],
            weight_ordered[start:stop],
            rows,
            params,
            loss,
            epsilon,
            l2,
            fit_intercept,
            partials,
            chunk_losses,
            grad,
        )
        eta = learning_rate(schedule, eta0, power_t, optimal_t0, alpha, t)
        n_updates += 1.0
        optimizer_step(
            params,
            grad,
            state_1,
            state_2,
            eta,
            n_updates,
            optimizer,
            momentum,
            beta_1,
            beta_2,
            opt_eps,
            l1 if l1_proximal else 0.0,
            n_features,
        )
        if l1 > 0.0 and not l1_proximal:
            l1_total += eta * l1
            for j in range(n_features):
                params[j], l1_received[j] = clip_towards_zero(params[j], l1_total, l1_received[j])
        if average_start > 0.0 and t >= average_start:
            n_averaged += 1.0
            mu = 1.0 / n_averaged
            for j in range(n_features + 1):
                avg_params[j] += mu * (params[j] - avg_params[j])
        t += 1.0
    counters[T] = t
    counters[N_UPDATES] = n_updates
    counters[L1_TOTAL] = l1_total
    counters[N_AVERAGED] = n_averaged
    return loss_sum
