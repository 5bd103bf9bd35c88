"""pytest-benchmark suite: the linear-model kernels against their natural alternatives.

``pytest bench/test_bench_linear_kernels.py --benchmark-only [--bench-size full]``
(quick: 100,000 x 100; full: 1,000,000 x 100, the size of issue #2). The
kernels are called directly, with the arguments :mod:`fastgd._engine.linear`
gives them, so these groups time the compiled loops alone:

* per-sample SGD epoch: the Cython and Numba kernels (squared error, L2,
  scikit-learn's default ``invscaling`` schedule, rows in a shuffled order)
  against one epoch of scikit-learn's ``SGDRegressor`` with the same settings
  (a ``max_iter=1`` fit under ``assume_finite``, so that its input check does
  not count; it shuffles inside its loop, where fastgd's engine draws the
  order before the kernel);
* batch gradient, full batch: :func:`~fastgd._kernels.linear.batch_numba.batch_gradient`
  over every row against the NumPy expression ``X.T @ (X @ w + b - y) / n``;
* batch gradient, mini-batch of 256 shuffled rows (each call the next batch
  of the epoch, so rows come from memory as in training) against NumPy's
  ``Xb = X[rows]; Xb.T @ (Xb @ w + b - yb) / 256``;
* the row order of an epoch: the compiled scatter shuffle
  (:func:`~fastgd._kernels.common.shuffle.shuffled_copy`) against NumPy's
  ``Generator.shuffle``.

Every benchmark checks its result (R² of the trained coefficients, the
gradient against NumPy's, a permutation), so a fast wrong kernel cannot win.
"""

import functools
import itertools
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDRegressor

from bench._speedups import label
from bench._timing import warm_then_benchmark
from fastgd._engine.linear_epochs import per_sample_epoch as per_sample_epoch_of
from fastgd._kernels.linear.arguments import (
    BatchRows,
    Features,
    LinearModel,
    LinearSettings,
    Scratch,
    VisitedRows,
)
from fastgd._kernels.runtime import codes
from fastgd.benchmarks.gd_regressor import FULL_SIZE, QUICK_SIZE, make_problem

DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["float64", "float32"]
MINI_BATCH = 256
# Settings shared by both libraries: SGDRegressor's defaults.
ALPHA = 1e-4
ETA0 = 0.01
POWER_T = 0.25


@pytest.fixture(scope="module")
def problem(bench_size):
    n_samples, n_features = FULL_SIZE if bench_size == "full" else QUICK_SIZE
    return make_problem(n_samples, n_features)


def cast(problem, dtype):
    """``(X, y)`` of ``problem`` in ``dtype`` (no copy for float64)."""
    return tuple(a.astype(dtype, copy=False) for a in problem)


def r2(X, y, coef, intercept):
    residual = y - (X @ coef + intercept)
    return 1.0 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum())


# ------------------------------------------------------ per-sample SGD epoch
def per_sample_kernel(backend):
    """The per-sample epoch of ``backend`` as GDRegressor runs it (on two threads if that pays)."""
    if backend == "numba":
        from fastgd._kernels.linear import sgd_numba as kernels
    else:
        from fastgd._kernels.linear import _sgd_fast as kernels
    return functools.partial(per_sample_epoch_of, kernels)


def linear_settings(l2):
    """The kernels' settings of plain SGD with invscaling on the squared error."""
    return LinearSettings.make(
        loss=codes.SQUARED_ERROR,
        epsilon=0.1,  # unused by the squared error
        l2=l2,
        l1=0.0,
        l1_proximal=False,
        schedule=codes.INVSCALING,
        eta0=ETA0,
        power_t=POWER_T,
        optimal_t0=0.0,  # unused by invscaling
        alpha=ALPHA,
        optimizer=codes.SGD,
        momentum=0.9,  # momentum, beta_1, beta_2, eps: unused by plain SGD
        beta_1=0.9,
        beta_2=0.999,
        optimizer_eps=1e-8,
        fit_intercept=True,
        average_start=0.0,  # no averaging
        n_classes=1,
    )


def per_sample_epoch(kernel, X, y, seed=0):
    """One epoch of ``kernel`` as :func:`fastgd._engine.linear.run_one_epoch` calls it.

    Returns the function to time (it keeps training the same model) and the
    model it updates.
    """
    n_samples, n_features = X.shape
    order = np.random.default_rng(seed).permutation(n_samples).astype(np.intp)
    unit_weights = np.empty(0, dtype=X.dtype)
    rows = VisitedRows.of(Features.of(X), order, np.ascontiguousarray(y[order]), unit_weights)
    model = LinearModel.zeros(n_features, X.dtype)
    scratch = Scratch.for_per_sample(n_features, X.dtype)
    settings = linear_settings(l2=ALPHA)

    def epoch():
        return kernel(rows, model, scratch, settings)

    return epoch, model


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_fastgd_per_sample_epoch(benchmark, problem, backend, dtype):
    X, y = cast(problem, dtype)
    benchmark.group = f"kernel: per-sample SGD epoch, {np.dtype(dtype).name}"
    label(benchmark, f"fastgd-{backend}", shape=X.shape)
    epoch, model = per_sample_epoch(per_sample_kernel(backend), X, y)
    warm_then_benchmark(benchmark, epoch)
    assert r2(X, y, model.params[:-1], model.params[-1]) > 0.99


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sklearn_per_sample_epoch(benchmark, problem, dtype):
    X, y = cast(problem, dtype)
    benchmark.group = f"kernel: per-sample SGD epoch, {np.dtype(dtype).name}"
    label(benchmark, "sklearn", shape=X.shape)
    model = SGDRegressor(alpha=ALPHA, eta0=ETA0, power_t=POWER_T, max_iter=1, tol=None)

    def epoch():
        with warnings.catch_warnings(), sklearn.config_context(assume_finite=True):
            warnings.simplefilter("ignore", ConvergenceWarning)
            return model.fit(X, y)

    warm_then_benchmark(benchmark, epoch)
    assert model.coef_.dtype == dtype
    assert model.score(X, y) > 0.99


# ----------------------------------------------------------- batch gradient
def batch_gradient_call(X, y, order):
    """:func:`~fastgd._kernels.linear.batch_numba.batch_gradient` as the batch epoch calls it.

    Returns ``gradient(start, stop)``, which fills and returns the gradient
    of the mean squared error at fixed parameters over rows
    ``order[start:stop]``, and the parameters ``[w, b]``.
    """
    from fastgd._kernels.linear.batch_numba import batch_gradient, partials_shape

    n_samples, n_features = X.shape
    dtype = X.dtype
    unit_weights = np.empty(0, dtype=dtype)
    params = np.random.default_rng(1).standard_normal(n_features + 1).astype(dtype)
    largest_batch = n_samples if order.shape[0] == n_samples else MINI_BATCH
    rows = BatchRows.of(Features.of(X), order, y, unit_weights, largest_batch)
    scratch = Scratch.for_batches(n_features, partials_shape(largest_batch, n_features), dtype)
    settings = linear_settings(l2=0.0)

    def gradient(start, stop):
        batch_gradient(rows, start, stop, params, settings, scratch)
        return scratch.grad

    return gradient, params


def numpy_gradient(X, y, params):
    """``[Xᵀ r, Σ r] / n`` with ``r = X w + b − y``: the mean squared error's gradient."""
    residual = X @ params[:-1] + params[-1] - y
    return np.append(X.T @ residual, residual.sum()) / X.shape[0]


def next_batch(n_samples):
    """A function returning the (start, stop) of the next mini-batch of an epoch, cyclically."""
    starts = itertools.cycle(range(0, n_samples - MINI_BATCH + 1, MINI_BATCH))

    def batch():
        start = next(starts)
        return start, start + MINI_BATCH

    return batch


def check_gradient(grad, X, y, params):
    rtol = 1e-3 if X.dtype == np.float32 else 1e-9
    expected = numpy_gradient(X.astype(np.float64), y.astype(np.float64), params)
    np.testing.assert_allclose(grad, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_fastgd_full_batch_gradient(benchmark, problem, dtype):
    X, y = cast(problem, dtype)
    benchmark.group = f"kernel: full-batch gradient, {np.dtype(dtype).name}"
    label(benchmark, "fastgd", shape=X.shape)
    gradient, params = batch_gradient_call(X, y, np.arange(len(y), dtype=np.intp))
    grad = warm_then_benchmark(benchmark, lambda: gradient(0, len(y)))
    check_gradient(grad, X, y, params)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_numpy_full_batch_gradient(benchmark, problem, dtype):
    X, y = cast(problem, dtype)
    benchmark.group = f"kernel: full-batch gradient, {np.dtype(dtype).name}"
    label(benchmark, "numpy", shape=X.shape)
    params = np.random.default_rng(1).standard_normal(X.shape[1] + 1).astype(dtype)
    grad = warm_then_benchmark(benchmark, lambda: numpy_gradient(X, y, params))
    check_gradient(grad, X, y, params)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_fastgd_mini_batch_gradient(benchmark, problem, dtype):
    X, y = cast(problem, dtype)
    benchmark.group = f"kernel: mini-batch ({MINI_BATCH}) gradient, {np.dtype(dtype).name}"
    label(benchmark, "fastgd", shape=X.shape, batch_size=MINI_BATCH)
    order = np.random.default_rng(0).permutation(len(y)).astype(np.intp)
    gradient, params = batch_gradient_call(X, y, order)
    batch = next_batch(len(y))
    warm_then_benchmark(benchmark, lambda: gradient(*batch()))
    rows = order[:MINI_BATCH]
    check_gradient(gradient(0, MINI_BATCH), X[rows], y[rows], params)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_numpy_mini_batch_gradient(benchmark, problem, dtype):
    X, y = cast(problem, dtype)
    benchmark.group = f"kernel: mini-batch ({MINI_BATCH}) gradient, {np.dtype(dtype).name}"
    label(benchmark, "numpy", shape=X.shape, batch_size=MINI_BATCH)
    order = np.random.default_rng(0).permutation(len(y))
    params = np.random.default_rng(1).standard_normal(X.shape[1] + 1).astype(dtype)
    batch = next_batch(len(y))

    def gradient():
        rows = order[slice(*batch())]
        return numpy_gradient(X[rows], y[rows], params)

    warm_then_benchmark(benchmark, gradient)


# ------------------------------------------------------------- row order
@pytest.mark.benchmark(group="kernel: shuffled row order of an epoch")
def test_fastgd_shuffle(benchmark, problem):
    from fastgd._kernels.common.shuffle import shuffled_copy

    rows = np.arange(len(problem[1]), dtype=np.intp)
    out = np.empty_like(rows)
    label(benchmark, "fastgd", n_rows=len(rows))
    seeds = itertools.count()
    warm_then_benchmark(benchmark, lambda: shuffled_copy(rows, out, next(seeds)))
    np.testing.assert_array_equal(np.sort(out), rows)
    assert not np.array_equal(out, rows)


@pytest.mark.benchmark(group="kernel: shuffled row order of an epoch")
def test_numpy_shuffle(benchmark, problem):
    rows = np.arange(len(problem[1]), dtype=np.intp)
    out = np.empty_like(rows)
    label(benchmark, "numpy", n_rows=len(rows))
    generator = np.random.default_rng(0)

    def shuffle():
        out[:] = rows
        generator.shuffle(out)

    warm_then_benchmark(benchmark, shuffle)
    np.testing.assert_array_equal(np.sort(out), rows)
