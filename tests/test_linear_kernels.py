"""The linear kernels against their plain-NumPy twins (tests/naive_linear.py)."""

import naive_linear as naive
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_linear_problem
from per_sample_runs import CASES, new_counters, run_kernel

from fastgd._kernels.common.optimizers import optimizer_step
from fastgd._kernels.linear import _sgd_fast, batch_numba, regression_losses, sgd_numba
from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.tuning import PARALLEL_MIN_WORK

LOSSES = list(codes.LOSS_CODES.values())
OPTIMIZERS = list(codes.OPTIMIZER_CODES.values())
PER_SAMPLE_KERNELS = {"cython": _sgd_fast.sgd_epoch, "numba": sgd_numba.sgd_epoch}


def test_cython_codes_match_python_codes():
    assert _sgd_fast.SQUARED_ERROR == codes.SQUARED_ERROR
    assert _sgd_fast.HUBER == codes.HUBER
    assert _sgd_fast.EPSILON_INSENSITIVE == codes.EPSILON_INSENSITIVE
    assert _sgd_fast.SQUARED_EPSILON_INSENSITIVE == codes.SQUARED_EPSILON_INSENSITIVE
    for name, code in codes.OPTIMIZER_CODES.items():
        assert getattr(_sgd_fast, name.upper()) == code
    for name, code in codes.SCHEDULE_CODES.items():
        assert getattr(_sgd_fast, name.upper()) == code


@pytest.mark.parametrize("loss", LOSSES)
def test_losses_match_numpy_and_finite_differences(loss):
    rng = np.random.RandomState(loss)
    eps = 0.3
    for p, y in zip(rng.randn(200) * 2, rng.randn(200) * 2, strict=True):
        expected = float(naive.loss_value(loss, p, y, eps))
        assert _sgd_fast.py_loss_value(loss, p, y, eps) == pytest.approx(expected, abs=1e-14)
        assert regression_losses.loss_value(loss, p, y, eps) == pytest.approx(expected, abs=1e-14)
        d_expected = float(naive.loss_derivative(loss, p, y, eps))
        assert _sgd_fast.py_loss_derivative(loss, p, y, eps) == pytest.approx(d_expected)
        assert regression_losses.loss_derivative(loss, p, y, eps) == pytest.approx(d_expected)
        # Central differences, away from the kinks at |p − y| = eps and p = y.
        r = abs(p - y)
        if min(abs(r - eps), r) > 1e-3:
            h = 1e-6
            fd = (naive.loss_value(loss, p + h, y, eps) - naive.loss_value(loss, p - h, y, eps)) / (
                2 * h
            )
            assert d_expected == pytest.approx(fd, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("backend", PER_SAMPLE_KERNELS)
@pytest.mark.parametrize("density", [1.0, 0.4])
@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain"
)
def test_per_sample_kernel_matches_naive(backend, density, case):
    X, y = make_linear_problem(n=40, d=7, density=density, seed=3)
    sw = np.random.RandomState(1).uniform(0.5, 2.0, size=40)
    rng = np.random.RandomState(0)
    orders = [rng.permutation(40) for _ in range(3)]
    coef, b, avg, losses = run_kernel(PER_SAMPLE_KERNELS[backend], X, y, sw, orders, **case)
    X_dense = X.toarray() if sp.issparse(X) else X
    ref_coef, ref_b, ref_avg, ref_losses = naive.sgd_epochs(X_dense, y, sw, orders, **case)
    np.testing.assert_allclose(coef, ref_coef, rtol=1e-10, atol=1e-12)
    assert b == pytest.approx(ref_b, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-10)
    if case.get("average_start"):
        np.testing.assert_allclose(avg, ref_avg, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_per_sample_backends_agree(dtype):
    # They add a dot product's terms in different orders (16 fixed lanes in
    # Cython, LLVM's vectorised order in Numba), so they agree to rounding:
    # a few float32 ulps after four epochs, even where the weights blow up.
    X, y = make_linear_problem(n=200, d=13, dtype=dtype, seed=5)
    sw = np.ones(200, dtype)
    orders = [np.random.RandomState(e).permutation(200) for e in range(4)]
    for case in CASES:
        a = run_kernel(_sgd_fast.sgd_epoch, X, y, sw, orders, **case)
        b = run_kernel(sgd_numba.sgd_epoch, X, y, sw, orders, **case)
        assert a[0].dtype == dtype
        tolerance = 1e-5 if dtype == np.float32 else 1e-12
        scale = np.abs(b[0]).max()
        np.testing.assert_allclose(a[0], b[0], rtol=tolerance, atol=tolerance * scale)


@pytest.mark.parametrize("backend", PER_SAMPLE_KERNELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_empty_weight_array_means_unit_weights(backend, dtype):
    X, y = make_linear_problem(n=120, d=9, dtype=dtype, seed=8)
    orders = [np.random.RandomState(e).permutation(120) for e in range(3)]
    kernel = PER_SAMPLE_KERNELS[backend]
    for case in CASES:
        explicit = run_kernel(kernel, X, y, np.ones(120, dtype), orders, **case)
        implicit = run_kernel(kernel, X, y, np.empty(0, dtype), orders, **case)
        for a, b in zip(explicit, implicit, strict=True):
            np.testing.assert_array_equal(a, b)


def test_lazy_scale_is_folded_when_it_becomes_tiny():
    # l2·eta close to 1 drives the lazy scale below 1e-9 within a few steps.
    X, y = make_linear_problem(n=30, d=4)
    sw = np.ones(30)
    orders = [np.arange(30)]
    for kernel in PER_SAMPLE_KERNELS.values():
        coef, b, _, _ = run_kernel(kernel, X, y, sw, orders, l2=9.9, eta0=0.1)
        ref_coef, ref_b, _, _ = naive.sgd_epochs(X, y, sw, orders, l2=9.9, eta0=0.1)
        np.testing.assert_allclose(coef, ref_coef, rtol=1e-9, atol=1e-12)


def batch_buffers(n_rows, d, dtype):
    shape = batch_numba.partials_shape(n_rows, d)
    return np.zeros(shape, dtype), np.zeros(shape[0]), np.zeros(d + 1, dtype)


def csr_parts(X):
    if sp.issparse(X):
        return np.empty((0, 0), X.dtype), X.data, X.indices, X.indptr, True
    e = np.empty(0, np.int32)
    return X, np.empty(0, X.dtype), e, e, False


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("density", [1.0, 0.3])
@pytest.mark.parametrize("n_rows", [1, 37, 200])
def test_batch_gradient_matches_naive(loss, density, n_rows):
    X, y = make_linear_problem(n=200, d=9, density=density, seed=loss)
    sw = np.random.RandomState(2).uniform(0.2, 3.0, 200)
    rows = np.random.RandomState(4).permutation(200)[:n_rows].astype(np.intp)
    params = np.random.RandomState(5).randn(10)
    partials, chunk_losses, grad = batch_buffers(n_rows, 9, np.float64)
    loss_sum = batch_numba.batch_gradient(
        *csr_parts(X),
        y,
        sw,
        rows,
        0,
        len(rows),
        params,
        loss,
        0.3,
        0.05,
        True,
        partials,
        chunk_losses,
        grad,
    )
    X_dense = X.toarray() if sp.issparse(X) else X
    gw, gb, ref_loss = naive.batch_gradient(
        X_dense, y, sw, rows, params[:9], params[9], loss, 0.3, 0.05
    )
    np.testing.assert_allclose(grad[:9], gw, rtol=1e-10, atol=1e-12)
    assert grad[9] == pytest.approx(gb, rel=1e-10, abs=1e-12)
    assert loss_sum == pytest.approx(ref_loss, rel=1e-12)


@pytest.mark.parametrize("loss", [codes.SQUARED_ERROR, codes.HUBER])
def test_batch_gradient_finite_differences(loss):
    """The kernel's gradient is the derivative of the penalised objective."""
    X, y = make_linear_problem(n=150, d=5, seed=7)
    sw = np.random.RandomState(8).uniform(0.5, 2.0, 150)
    rows = np.arange(150, dtype=np.intp)
    params = np.random.RandomState(9).randn(6) * 0.3
    partials, chunk_losses, grad = batch_buffers(150, 5, np.float64)
    batch_numba.batch_gradient(
        *csr_parts(X),
        y,
        sw,
        rows,
        0,
        len(rows),
        params,
        loss,
        0.5,
        0.1,
        True,
        partials,
        chunk_losses,
        grad,
    )
    h = 1e-6
    for j in range(6):
        up, down = params.copy(), params.copy()
        up[j] += h
        down[j] -= h
        fd = (
            naive.objective(X, y, sw, up[:5], up[5], loss, 0.5, 0.1, 0.0)
            - naive.objective(X, y, sw, down[:5], down[5], loss, 0.5, 0.1, 0.0)
        ) / (2 * h)
        assert grad[j] == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_batch_gradient_ignores_intercept_when_not_fitted():
    X, y = make_linear_problem(n=50, d=3)
    partials, chunk_losses, grad = batch_buffers(50, 3, np.float64)
    batch_numba.batch_gradient(
        *csr_parts(X),
        y,
        np.ones(50),
        np.arange(50, dtype=np.intp),
        0,
        50,
        np.zeros(4),
        0,
        0.1,
        0.0,
        False,
        partials,
        chunk_losses,
        grad,
    )
    assert grad[3] == 0.0
    assert np.abs(grad[:3]).sum() > 0


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_optimizer_step_matches_naive(optimizer):
    rng = np.random.RandomState(optimizer)
    params = rng.randn(8)
    s1, s2 = np.zeros(8), np.zeros(8)
    ref = naive.NaiveOptimizer(optimizer, 8, momentum=0.8, beta_1=0.85, beta_2=0.99, eps=1e-7)
    expected = params.copy()
    for step in range(1, 6):
        g = rng.randn(8)
        optimizer_step(params, g, s1, s2, 0.05, step, optimizer, 0.8, 0.85, 0.99, 1e-7, 0.01, 6)
        expected, eff = ref.update(expected, g, 0.05)
        expected[:6] = naive.soft_threshold(expected[:6], 0.01 * eff[:6])
        np.testing.assert_allclose(params, expected, rtol=1e-12, atol=1e-14)


def test_full_batch_epoch_is_proximal_gradient_descent():
    """One full-batch step with L1 equals w ← soft_threshold(w − η∇f, η·l1)."""
    X, y = make_linear_problem(n=80, d=6, seed=11)
    sw = np.ones(80)
    d = 6
    params = np.zeros(d + 1)
    partials, chunk_losses, grad = batch_buffers(80, d, np.float64)
    counters = new_counters()
    expected_w, expected_b = np.zeros(d), 0.0
    for _ in range(5):
        batch_numba.batch_epoch(
            *csr_parts(X),
            y,
            sw,
            np.arange(80, dtype=np.intp),
            80,
            params,
            np.zeros(d + 1),
            np.zeros(d),
            np.zeros(d + 1),
            np.zeros(d + 1),
            grad,
            partials,
            chunk_losses,
            counters,
            0,
            0.1,
            0.02,
            0.05,
            True,
            codes.CONSTANT,
            0.2,
            0.25,
            0.0,
            1e-4,
            codes.SGD,
            0.9,
            0.9,
            0.999,
            1e-8,
            True,
            0.0,
        )
        gw, gb, _ = naive.batch_gradient(
            X, y, sw, np.arange(80), expected_w, expected_b, 0, 0.1, 0.02
        )
        expected_w = naive.soft_threshold(expected_w - 0.2 * gw, 0.2 * 0.05)
        expected_b -= 0.2 * gb
    np.testing.assert_allclose(params[:d], expected_w, rtol=1e-10, atol=1e-13)
    assert params[d] == pytest.approx(expected_b, rel=1e-10)
    assert counters[2] == 6.0


def test_batch_gradient_does_not_depend_on_the_number_of_threads():
    import numba

    n = 26000
    X, y = make_linear_problem(n=n, d=40, seed=12)
    sw = np.random.RandomState(13).uniform(0.5, 2.0, n)
    rows = np.random.RandomState(14).permutation(n).astype(np.intp)
    params = np.random.RandomState(15).randn(41)
    assert n * 41 >= PARALLEL_MIN_WORK, "the test needs the parallel path"
    results = []
    for n_threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(n_threads)
        try:
            partials, chunk_losses, grad = batch_buffers(n, 40, np.float64)
            loss = batch_numba.batch_gradient(
                *csr_parts(X),
                y,
                sw,
                rows,
                0,
                len(rows),
                params,
                0,
                0.1,
                0.01,
                True,
                partials,
                chunk_losses,
                grad,
            )
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        results.append((grad.copy(), loss))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]
