"""Driving the per-sample kernels over epochs as the engine does (shared by tests)."""

import numpy as np
import scipy.sparse as sp

from fastgd._kernels.runtime import codes

OPTIMIZERS = list(codes.OPTIMIZER_CODES.values())


def new_counters():
    """The kernels' counters at the start of a fit: step t = 1, everything else 0."""
    counters = np.zeros(codes.N_COUNTERS)
    counters[codes.T] = 1.0
    return counters


def run_kernel(
    kernel,
    X,
    y,
    sw,
    orders,
    *,
    loss=0,
    epsilon=0.1,
    l2=0.0,
    l1=0.0,
    schedule=0,
    eta0=0.01,
    power_t=0.25,
    t0=0.0,
    alpha=1e-4,
    optimizer=0,
    fit_intercept=True,
    average_start=0,
):
    """Drive a per-sample kernel over several epochs, as the engine does."""
    dtype = y.dtype
    if sp.issparse(X):
        dense, data, indices, indptr = np.empty((0, 0), dtype), X.data, X.indices, X.indptr
    else:
        empty = np.empty(0, np.int32)
        dense, data, indices, indptr = X, np.empty(0, dtype), empty, empty
    d = X.shape[1]
    coef, avg = np.zeros(d, dtype), np.zeros(d, dtype)
    received = np.zeros(d)
    s1, s2, grad = np.zeros(d + 1, dtype), np.zeros(d + 1, dtype), np.zeros(d, dtype)
    counters = new_counters()
    losses = []
    for order in orders:
        order = np.asarray(order, dtype=np.intp)
        losses.append(
            kernel(
                dense,
                data,
                indices,
                indptr,
                sp.issparse(X),
                y[order],  # the kernels take targets and weights in visiting order
                sw[order] if sw.shape[0] else sw,  # empty: every weight is 1
                order,
                coef,
                avg,
                received,
                s1,
                s2,
                grad,
                counters,
                loss,
                epsilon,
                l2,
                l1,
                schedule,
                eta0,
                power_t,
                t0,
                alpha,
                optimizer,
                0.9,
                0.9,
                0.999,
                1e-8,
                fit_intercept,
                float(average_start),
            )
        )
    assert not grad.any(), "the scratch gradient must be left zero-filled"
    return coef, counters[0], avg, losses


CASES = [
    dict(),
    dict(loss=codes.HUBER, epsilon=0.2, l2=0.01),
    dict(loss=codes.EPSILON_INSENSITIVE, l1=0.01, schedule=codes.INVSCALING, eta0=0.05),
    dict(
        loss=codes.SQUARED_EPSILON_INSENSITIVE,
        l2=0.01,
        l1=0.005,
        schedule=codes.OPTIMAL,
        t0=50.0,
        alpha=0.05,
    ),
    dict(l2=0.3, eta0=0.1, average_start=5),
    dict(l1=0.02, fit_intercept=False),
] + [dict(optimizer=o, l2=0.01, l1=0.002) for o in OPTIMIZERS[1:]]
