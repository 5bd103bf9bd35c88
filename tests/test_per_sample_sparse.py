"""Per-sample kernels on CSR rows of several cache lines (the row look-ahead's case).

Every combination of sample dtype and index dtype, both backends: the shared
two-thread epoch gives the one-thread model bit for bit, the kernels match the
plain-NumPy twin, and the two backends (whose sparse dot products add their
terms in the same order) agree bit for bit.
"""

import functools

import naive_linear as naive
import numpy as np
import pytest
import scipy.sparse as sp
from per_sample_runs import case_id, run_kernel

from fastgd._engine import linear_epochs
from fastgd._kernels.linear import _sgd_fast, sgd_numba
from fastgd._kernels.runtime import codes, tuning

BACKENDS = {"cython": _sgd_fast, "numba": sgd_numba}
# The benchmark's settings (the optimal schedule, L2) and a few others.
SPARSE_CASES = [
    dict(loss=codes.HINGE, l2=1e-4, schedule=codes.OPTIMAL, optimal_t0=100.0, alpha=1e-4),
    dict(loss=codes.LOG_LOSS, l2=1e-3, schedule=codes.OPTIMAL, optimal_t0=50.0, alpha=1e-3),
    dict(loss=codes.MODIFIED_HUBER, l1=1e-3, average_start=50),
    dict(loss=codes.SQUARED_HINGE, schedule=codes.INVSCALING, eta0=0.05),
]


def wide_sparse_problem(dtype, index_dtype, n=400, d=600, per_row=40, seed=11):
    """CSR rows of about ``per_row`` values (several cache lines), labels ±1."""
    rng = np.random.RandomState(seed)
    rows = np.repeat(np.arange(n), per_row)
    columns = (d * rng.random_sample(n * per_row) ** 2).astype(int)
    X = sp.csr_matrix((rng.exponential(1.0, rows.size), (rows, columns)), shape=(n, d))
    X.sum_duplicates()
    X.data /= np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel()).repeat(np.diff(X.indptr))
    y = np.where(X @ rng.randn(d) > 0, 1.0, -1.0)
    X = X.astype(dtype)
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    return X, y.astype(dtype)


def problem_runs(kernel, dtype, index_dtype, case):
    X, y = wide_sparse_problem(dtype, index_dtype)
    sw = np.random.RandomState(2).uniform(0.5, 2.0, size=y.size).astype(dtype)
    orders = [np.random.RandomState(e).permutation(y.size) for e in range(2)]
    return X, y, sw, orders, run_kernel(kernel, X, y, sw, orders, **case)


def assert_same_runs(a, b):
    for part_a, part_b in zip(a[:3], b[:3], strict=True):
        np.testing.assert_array_equal(part_a, part_b)
    assert a[3] == b[3]


def test_the_rows_span_several_lines_and_more_steps_than_the_look_ahead():
    X, _ = wide_sparse_problem(np.float64, np.int32)
    assert np.diff(X.indptr).min() * X.data.itemsize > 3 * tuning.CACHE_LINE_BYTES
    assert X.shape[0] > 4 * tuning.ROWS_AHEAD > 4 * tuning.SPARSE_L1_ROWS_AHEAD


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("case", SPARSE_CASES, ids=case_id)
def test_two_threads_give_the_one_thread_model_bit_for_bit(backend, dtype, index_dtype, case):
    kernels = BACKENDS[backend]
    X, y, sw, orders, one_thread = problem_runs(kernels.sgd_epoch, dtype, index_dtype, case)
    for rows_per_block in (3, 50):
        shared = functools.partial(linear_epochs.shared_per_sample_epoch, kernels, rows_per_block)
        assert_same_runs(one_thread, run_kernel(shared, X, y, sw, orders, **case))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("case", SPARSE_CASES, ids=case_id)
def test_both_backends_agree_bit_for_bit_and_match_the_twin(dtype, index_dtype, case):
    X, y, sw, orders, cython = problem_runs(_sgd_fast.sgd_epoch, dtype, index_dtype, case)
    numba_run = problem_runs(sgd_numba.sgd_epoch, dtype, index_dtype, case)[-1]
    assert cython[0].dtype == dtype
    assert_same_runs(cython, numba_run)
    coef, intercept, avg, losses = cython
    ref_coef, ref_b, ref_avg, ref_losses = naive.sgd_epochs(
        X.toarray().astype(np.float64), y.astype(np.float64), sw.astype(np.float64), orders, **case
    )
    assert np.abs(coef).max() > 0
    rtol = 1e-9 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(coef, ref_coef, rtol=rtol, atol=rtol * np.abs(ref_coef).max())
    assert intercept == pytest.approx(ref_b, rel=rtol, abs=rtol)
    np.testing.assert_allclose(losses, ref_losses, rtol=rtol)
    if case.get("average_start"):
        np.testing.assert_allclose(avg, ref_avg, rtol=rtol, atol=rtol * np.abs(ref_avg).max())
