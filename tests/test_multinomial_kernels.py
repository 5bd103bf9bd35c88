"""The multinomial (softmax) kernels against their plain-NumPy twins."""

import naive_linear as naive
import numpy as np
import pytest
import scipy.sparse as sp
from per_sample_runs import settings_of, visited

from fastgd._kernels.linear import batch_numba, multinomial_numba
from fastgd._kernels.linear.arguments import BatchRows, Features, LinearModel, Scratch
from fastgd._kernels.runtime import codes

N_CLASSES = 4


def problem(n=60, d=6, density=1.0, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d)
    if density < 1.0:
        X[rng.rand(n, d) > density] = 0.0
    y = (X @ rng.randn(d, N_CLASSES)).argmax(axis=1).astype(np.float64)
    return (sp.csr_matrix(X) if density < 1.0 else X), y


def dense(X):
    return X.toarray() if sp.issparse(X) else X


@pytest.mark.parametrize("density", [1.0, 0.4])
@pytest.mark.parametrize(
    "case",
    [dict(), dict(l2=0.05), dict(l1=0.01, fit_intercept=False), dict(l2=0.01, average_start=20)],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain",
)
def test_per_sample_epochs_match_naive(density, case):
    X, y = problem(density=density)
    sw = np.random.RandomState(1).uniform(0.5, 2.0, len(y))
    orders = [np.random.RandomState(e).permutation(len(y)) for e in range(3)]
    d = X.shape[1]
    model = LinearModel.zeros(d, np.float64, N_CLASSES)
    scratch = Scratch.for_per_sample(N_CLASSES * (d + 1) - 1, np.float64)
    settings = settings_of(loss=codes.LOG_LOSS, eta0=0.05, n_classes=N_CLASSES, **case)
    losses = [
        multinomial_numba.sgd_epoch(visited(X, y, sw, order), model, scratch, settings)
        for order in orders
    ]
    W, b, avg, ref_losses = naive.multinomial_sgd_epochs(
        dense(X), y, sw, orders, N_CLASSES, eta0=0.05, **case
    )
    np.testing.assert_allclose(model.params[: N_CLASSES * d], W.ravel(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.params[N_CLASSES * d :], b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-10)
    if case.get("average_start"):
        np.testing.assert_allclose(model.avg_params, avg, rtol=1e-10, atol=1e-12)


def batch_of(X, y, sw, order):
    return BatchRows.of(Features.of(X), np.asarray(order, np.intp), y, sw, len(order))


def batch_scratch(n_rows, d):
    n_params = N_CLASSES * (d + 1)
    return Scratch.for_batches(
        n_params - 1, batch_numba.partials_shape(n_rows, n_params - 1), np.float64
    )


@pytest.mark.parametrize("density", [1.0, 0.3])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_batch_gradient_matches_naive_and_finite_differences(density, fit_intercept):
    X, y = problem(n=150, density=density, seed=3)
    d = X.shape[1]
    sw = np.random.RandomState(2).uniform(0.2, 3.0, len(y))
    order = np.random.RandomState(4).permutation(len(y))[:97]
    params = np.random.RandomState(5).randn(N_CLASSES * (d + 1)) * 0.3
    settings = settings_of(l2=0.05, n_classes=N_CLASSES, fit_intercept=fit_intercept)
    scratch = batch_scratch(len(order), d)
    rows = batch_of(X, y, sw, order)
    loss_sum = multinomial_numba.batch_gradient(rows, 0, len(order), params, settings, scratch)
    W, b = params[: N_CLASSES * d].reshape(N_CLASSES, d), params[N_CLASSES * d :]
    dW, db, ref_loss = naive.multinomial_gradient(dense(X), y, sw, order, W, b, 0.05, fit_intercept)
    np.testing.assert_allclose(scratch.grad, np.r_[dW.ravel(), db], rtol=1e-10, atol=1e-12)
    assert loss_sum == pytest.approx(ref_loss, rel=1e-12)

    def objective(p):
        Wp, bp = p[: N_CLASSES * d].reshape(N_CLASSES, d), p[N_CLASSES * d :]
        loss, _ = naive.softmax_cross_entropy(dense(X)[order] @ Wp.T + bp, y[order].astype(int))
        return np.sum(sw[order] * loss) / sw[order].sum() + 0.025 * np.sum(Wp**2)

    h = 1e-6
    for j in range(0, params.shape[0], 3):
        up, down = params.copy(), params.copy()
        up[j] += h
        down[j] -= h
        expected = (objective(up) - objective(down)) / (2 * h)
        if j >= N_CLASSES * d and not fit_intercept:
            expected = 0.0
        assert scratch.grad[j] == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_parallel_and_serial_batch_gradients_agree_bit_for_bit():
    X, y = problem(n=3000, d=40, seed=6)
    sw = np.ones(len(y))
    rows = batch_of(X, y, sw, np.arange(len(y)))
    params = np.random.RandomState(7).randn(N_CLASSES * 41) * 0.1
    settings = settings_of(l2=0.01, n_classes=N_CLASSES)
    results = []
    softmax = multinomial_numba.SOFTMAX
    kernels = (softmax.gradient_parallel["dense"], softmax.gradient_serial["dense"])
    for kernel in kernels:
        scratch = batch_scratch(len(y), 40)
        results.append((kernel(rows, 0, len(y), params, settings, scratch), scratch.grad.copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_full_batch_epochs_descend():
    X, y = problem(n=200, seed=8)
    d = X.shape[1]
    model = LinearModel.zeros(d, np.float64, N_CLASSES)
    scratch = batch_scratch(200, d)
    settings = settings_of(eta0=0.5, n_classes=N_CLASSES, l1=0.001, l1_proximal=True)
    rows = batch_of(X, y, np.ones(200), np.arange(200))
    losses = [multinomial_numba.batch_epoch(rows, model, scratch, settings) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    assert np.all(np.diff(losses) < 1e-9)


def test_the_serial_epoch_kernel_gives_the_any_size_one_bit_for_bit():
    # Batches of 1024 rows × 4·256 parameters reach the parallel gradient in
    # the any-size kernel; the serial one (small-batch fits) gives the same.
    d, batch_size = 255, 1024
    assert batch_numba.may_run_in_parallel(batch_size, N_CLASSES * (d + 1))
    X, y = problem(n=2 * batch_size + 50, d=d, seed=9)
    sw = np.random.RandomState(10).uniform(0.5, 2.0, len(y))
    order = np.random.RandomState(11).permutation(len(y)).astype(np.intp)
    settings = settings_of(eta0=0.1, n_classes=N_CLASSES, l2=0.01, optimizer=codes.ADAM)
    models = []
    kinds = ("dense", "general")  # Adam
    softmax = multinomial_numba.SOFTMAX
    for kernel in (softmax.epoch_any_size[kinds], softmax.epoch_serial[kinds]):
        rows = BatchRows.of(Features.of(X), order, y, sw, batch_size)
        model = LinearModel.zeros(d, np.float64, N_CLASSES)
        losses = [kernel(rows, model, batch_scratch(batch_size, d), settings) for _ in range(2)]
        models.append((losses, model))
    (losses_any, model_any), (losses_serial, model_serial) = models
    assert losses_any == losses_serial
    for a, b in zip(model_any, model_serial, strict=True):
        np.testing.assert_array_equal(a, b)
