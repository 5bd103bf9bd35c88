"""Driving the linear kernels over epochs as the engine does (shared by tests)."""

import numpy as np

from fastgd._kernels.linear.arguments import (
    Features,
    LinearModel,
    LinearSettings,
    Scratch,
    VisitedRows,
)
from fastgd._kernels.runtime import codes

OPTIMIZERS = list(codes.OPTIMIZER_CODES.values())

# The kernels' settings when a test names none (the twins in naive_linear
# take the same names as keyword arguments).
DEFAULT_SETTINGS = dict(
    loss=codes.SQUARED_ERROR,
    epsilon=0.1,
    l2=0.0,
    l1=0.0,
    l1_proximal=False,
    schedule=codes.CONSTANT,
    eta0=0.01,
    power_t=0.25,
    optimal_t0=0.0,
    alpha=1e-4,
    optimizer=codes.SGD,
    momentum=0.9,
    beta_1=0.9,
    beta_2=0.999,
    optimizer_eps=1e-8,
    fit_intercept=True,
    average_start=0.0,
    n_classes=1,
)


def settings_of(**case):
    """LinearSettings of a test case (DEFAULT_SETTINGS updated by ``case``)."""
    return LinearSettings.make(**{**DEFAULT_SETTINGS, **case})


def visited(X, y, sw, order):
    """VisitedRows of one epoch in ``order`` (targets and weights gathered in that order)."""
    order = np.asarray(order, dtype=np.intp)
    return VisitedRows.of(Features.of(X), order, y[order], sw[order] if sw.shape[0] else sw)


def run_kernel(kernel, X, y, sw, orders, **case):
    """Drive a per-sample kernel ``kernel(rows, model, scratch, settings)`` over several epochs.

    ``sw`` may be empty (every weight 1). Returns ``(coef, intercept,
    averaged coef, per-epoch loss sums)``.
    """
    dtype = y.dtype
    d = X.shape[1]
    model = LinearModel.zeros(d, dtype)
    scratch = Scratch.for_per_sample(d, dtype)
    settings = settings_of(**case)
    losses = [kernel(visited(X, y, sw, order), model, scratch, settings) for order in orders]
    assert not scratch.grad.any(), "the scratch gradient must be left zero-filled"
    return model.params[:-1], model.counters[codes.INTERCEPT], model.avg_params[:-1], losses


CASES = [
    dict(),
    dict(loss=codes.HUBER, epsilon=0.2, l2=0.01),
    dict(loss=codes.EPSILON_INSENSITIVE, l1=0.01, schedule=codes.INVSCALING, eta0=0.05),
    dict(
        loss=codes.SQUARED_EPSILON_INSENSITIVE,
        l2=0.01,
        l1=0.005,
        schedule=codes.OPTIMAL,
        optimal_t0=50.0,
        alpha=0.05,
    ),
    dict(l2=0.3, eta0=0.1, average_start=5),
    dict(l1=0.02, fit_intercept=False),
    dict(loss=codes.EPSILON_INSENSITIVE, schedule=codes.PA1, eta0=0.5),
    dict(loss=codes.EPSILON_INSENSITIVE, schedule=codes.PA2, eta0=0.5, l2=0.01),
] + [dict(optimizer=o, l2=0.01, l1=0.002) for o in OPTIMIZERS[1:]]

# Classification cases: the targets are -1 or +1.
CLASSIFICATION_CASES = [
    dict(loss=codes.HINGE, l2=0.01),
    dict(loss=codes.LOG_LOSS, schedule=codes.OPTIMAL, optimal_t0=20.0, alpha=0.01, l2=0.01),
    dict(loss=codes.MODIFIED_HUBER, l1=0.01, average_start=10),
    dict(loss=codes.SQUARED_HINGE, schedule=codes.INVSCALING, eta0=0.05),
    dict(loss=codes.PERCEPTRON, eta0=1.0, fit_intercept=False),
    dict(loss=codes.HINGE, schedule=codes.PA1, eta0=0.2),
    dict(loss=codes.HINGE, schedule=codes.PA2, eta0=0.2),
    dict(loss=codes.LOG_LOSS, optimizer=codes.ADAM, eta0=0.05, l2=0.001),
]


def case_id(case):
    """A short test id for a case dict."""
    return ",".join(f"{k}={v}" for k, v in case.items()) or "plain"
