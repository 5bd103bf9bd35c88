"""Multinomial logistic regression (softmax over K classes) by SGD or mini-batch GD (Numba).

One model scores every class: zₖ = wₖ·x + bₖ, p = softmax(z), and the loss
of a sample of class c is the cross-entropy ℓ = log Σₖ e^{zₖ} − z_c, whose
gradient with respect to zₖ is pₖ − [k = c]. The parameters live in one flat
buffer ``params = [w₀ (d values), …, w_{K−1}, b₀ … b_{K−1}]``, so the
optimizer rules, the L1 bookkeeping and averaging of
:mod:`fastgd._kernels.linear.batch_numba` serve it unchanged; targets are the
class indices (as floats) and ``settings.n_classes`` is K.

* :func:`sgd_epoch` is per-sample plain SGD, with the L2 shrinkage applied
  lazily to all K weight vectors through one scale (as the one-output
  kernels do), so a sparse sample costs O(K·nnz);
* :func:`batch_epoch` runs mini-batches (or the full batch, with proximal L1
  steps) with every optimizer; chunks of rows write partial gradients summed
  in chunk order, so the result does not depend on the number of threads.
  Its kernels are those of :mod:`fastgd._kernels.linear.batch_numba` around
  this module's :func:`chunk_gradient` (:data:`SOFTMAX`), compiled per kind
  of rows and of step as there.
"""

import math

import numpy as np

from fastgd._kernels.linear.batch_numba import (
    ROW_KINDS,
    SPARSE_ROWS,
    BatchKernels,
)
from fastgd._kernels.linear.sgd_numba import clip_towards_zero, learning_rate, prefetch_row
from fastgd._kernels.runtime.codes import L1_TOTAL, LOSS_SUM, N_AVERAGED, N_UPDATES, SCALE, T
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, compiled_per_kind, numba
from fastgd._kernels.runtime.tuning import BATCH_ROWS_AHEAD, MIN_SCALE, ROWS_AHEAD


@numba.njit(inline="always", **KERNEL_OPTIONS)
def class_scores(rows, i, params, n_classes, n_features, scale, scores):
    """zₖ = scale·(wₖ·xᵢ) + bₖ for every class k, into ``scores``."""
    offset = n_classes * n_features
    for k in range(n_classes):
        acc = 0.0
        base = k * n_features
        if rows.is_sparse:
            for q in range(rows.indptr[i], rows.indptr[i + 1]):
                acc += rows.data[q] * params[base + rows.indices[q]]
        else:
            for j in range(n_features):
                acc += rows.dense[i, j] * params[base + j]
        scores[k] = scale * acc + params[offset + k]


@numba.njit(inline="always", **KERNEL_OPTIONS)
def softmax_in_place(scores, label):
    """Turn ``scores`` into probabilities; return the cross-entropy of class ``label``."""
    largest = scores[0]
    for k in range(1, scores.shape[0]):
        largest = max(largest, scores[k])
    shifted_label_score = scores[label] - largest
    total = 0.0
    for k in range(scores.shape[0]):
        scores[k] = math.exp(scores[k] - largest)
        total += scores[k]
    loss = math.log(total) - shifted_label_score
    for k in range(scores.shape[0]):
        scores[k] /= total
    return loss


@numba.njit(**KERNEL_OPTIONS)
def sgd_steps(rows, model, scratch, settings, start, stop):
    """Per-sample plain SGD over steps ``start`` to ``stop`` (rows ``rows.order[start:stop]``).

    ``scratch.grad`` (at least K entries) holds each sample's probabilities.
    The scalars carried between steps are in ``model.counters``, as in the
    one-output kernels; the intercepts stay in ``model.params``.
    """
    n_classes = settings.n_classes
    params, avg, received = model.params, model.avg_params, model.l1_received
    counters = model.counters
    n_features = params.shape[0] // n_classes - 1
    n_weights = n_classes * n_features
    probabilities = scratch.grad[:n_classes]
    l2, l1 = settings.l2, settings.l1
    scale = counters[SCALE]
    t = counters[T]
    l1_total = counters[L1_TOTAL]
    n_averaged = counters[N_AVERAGED]
    n_updates = counters[N_UPDATES]
    loss_sum = counters[LOSS_SUM]
    unit_weights = rows.weight.shape[0] == 0
    n_steps = rows.order.shape[0]
    for step in range(start, stop):
        if step + ROWS_AHEAD < stop:
            prefetch_row(rows, rows.order[step + ROWS_AHEAD])
        i = rows.order[step]
        label = int(rows.y[step])
        s = 1.0 if unit_weights else rows.weight[step]
        class_scores(rows, i, params, n_classes, n_features, scale, probabilities)
        loss_sum += s * softmax_in_place(probabilities, label)
        eta = learning_rate(settings, t)
        n_updates += 1.0
        if l2 > 0.0:
            shrink = 1.0 - eta * l2
            if shrink <= 0.0:
                params[:n_weights] = 0
                scale = 1.0
            else:
                scale *= shrink
        if rows.is_sparse:
            first, last = rows.indptr[i], rows.indptr[i + 1]
        else:
            first, last = 0, n_features
        for k in range(n_classes):
            gradient = s * (probabilities[k] - (1.0 if k == label else 0.0))
            update = -eta * gradient / scale
            base = k * n_features
            for q in range(first, last):
                if rows.is_sparse:
                    params[base + rows.indices[q]] += update * rows.data[q]
                else:
                    params[base + q] += update * rows.dense[i, q]
            if settings.fit_intercept:
                params[n_weights + k] -= eta * gradient
        if l1 > 0.0:
            l1_total += eta * l1
            for k in range(n_classes):
                for q in range(first, last):
                    j = k * n_features + (rows.indices[q] if rows.is_sparse else q)
                    value = rows.data[q] if rows.is_sparse else rows.dense[i, q]
                    if value == 0:
                        continue
                    w, received[j] = clip_towards_zero(scale * params[j], l1_total, received[j])
                    params[j] = w / scale
        if settings.average_start > 0.0 and t >= settings.average_start:
            # Running mean of every weight and intercept: avg ← avg + (w − avg) / n.
            n_averaged += 1.0
            mu = 1.0 / n_averaged
            for j in range(n_weights):
                avg[j] += mu * (scale * params[j] - avg[j])
            for j in range(n_weights, params.shape[0]):
                avg[j] += mu * (params[j] - avg[j])
        if scale < MIN_SCALE:
            params[:n_weights] *= scale
            scale = 1.0
        t += 1.0
    if stop == n_steps and scale != 1.0:
        params[:n_weights] *= scale  # end of the epoch: fold the lazy scale in
        scale = 1.0
    counters[T] = t
    counters[L1_TOTAL] = l1_total
    counters[N_AVERAGED] = n_averaged
    counters[N_UPDATES] = n_updates
    counters[SCALE] = scale
    counters[LOSS_SUM] = loss_sum


def sgd_epoch(rows, model, scratch, settings):
    """One epoch of per-sample plain SGD on ``rows`` (VisitedRows); return Σ sᵢ·ℓᵢ.

    Arguments are the structures of :mod:`fastgd._kernels.linear.arguments`,
    with class indices as targets.
    """
    model.counters[SCALE] = 1.0
    model.counters[LOSS_SUM] = 0.0
    sgd_steps(rows, model, scratch, settings, 0, rows.order.shape[0])
    return model.counters[LOSS_SUM]


def chunk_gradient(rows, start, stop, prefetch_from, params, settings, partial):
    """Σ over rows ``order[start:stop]`` of sᵢ·(p − e_c)⊗[xᵢ, 1] into ``partial``.

    Returns the rows' Σ sᵢ·ℓᵢ. Rows are prefetched ahead in ``order``, past
    ``stop`` from position ``prefetch_from`` on (a hint only). Compiled per
    kind of rows: :data:`CHUNK_GRADIENT`.
    """
    n_classes = settings.n_classes
    n_features = params.shape[0] // n_classes - 1
    n_weights = n_classes * n_features
    partial[: params.shape[0]] = 0
    probabilities = np.empty(n_classes)
    order, sample_weight = rows.order, rows.sample_weight
    unit_weights = sample_weight.shape[0] == 0
    loss_sum = 0.0
    for k in range(start, stop):
        ahead = k + BATCH_ROWS_AHEAD
        if ahead >= stop:
            ahead += prefetch_from - stop
        if ahead < order.shape[0]:
            prefetch_row(rows, order[ahead])
        i = order[k]
        label = int(rows.y[i])
        s = 1.0 if unit_weights else sample_weight[i]
        class_scores(rows, i, params, n_classes, n_features, 1.0, probabilities)
        loss_sum += s * softmax_in_place(probabilities, label)
        for c in range(n_classes):
            gradient = s * (probabilities[c] - (1.0 if c == label else 0.0))
            base = c * n_features
            if SPARSE_ROWS:
                for q in range(rows.indptr[i], rows.indptr[i + 1]):
                    partial[base + rows.indices[q]] += gradient * rows.data[q]
            else:
                for j in range(n_features):
                    partial[base + j] += gradient * rows.dense[i, j]
            partial[n_weights + c] += gradient
    return loss_sum


# kind of rows -> compiled chunk_gradient
CHUNK_GRADIENT = compiled_per_kind(chunk_gradient, ROW_KINDS)
SOFTMAX = BatchKernels("_softmax", CHUNK_GRADIENT)


def batch_gradient(rows, start, stop, params, settings, scratch):
    """Weighted-mean gradient of the penalised cross-entropy over ``rows.order[start:stop]``.

    Returns the batch's Σ sᵢ·ℓᵢ at ``params``; the gradient is in ``scratch.grad``.
    """
    kernel = SOFTMAX.gradient_kernel(rows, stop - start, params.shape[0])
    return kernel(rows, start, stop, params, settings, scratch)


def batch_epoch(rows, model, scratch, settings):
    """One epoch of mini-batch (or full-batch) GD on ``rows`` (BatchRows); return Σ sᵢ·ℓᵢ.

    Epochs whose batches are too small for a parallel region run a kernel
    that never reaches the parallel code (which then is never compiled).
    """
    return SOFTMAX.epoch_kernel(rows, model, settings)(rows, model, scratch, settings)
