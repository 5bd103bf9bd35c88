"""The per-sample epoch shared by two threads gives bit for bit the one-thread result."""

import functools
import threading

import numpy as np
import pytest
from conftest import make_linear_problem
from per_sample_runs import CASES, new_counters, run_kernel

from fastgd import GDRegressor
from fastgd._engine import linear_epochs as shared_sgd_epoch
from fastgd._engine import threads
from fastgd._kernels.linear import _sgd_fast, sgd_numba
from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.codes import LOSS_SUM, SCALE

BACKENDS = {"cython": _sgd_fast, "numba": sgd_numba}
CASE_IDS = [",".join(f"{k}={v}" for k, v in case.items()) or "plain" for case in CASES]


def test_both_backends_lay_the_flags_out_alike():
    for name in ("BLOCKS_CLAIMED", "BLOCKS_STARTED", "BLOCKS_DONE"):
        assert getattr(_sgd_fast, name) == getattr(sgd_numba, name)
        assert getattr(sgd_numba, name) < shared_sgd_epoch.FLAG_SLOTS


def assert_same_runs(a, b):
    coef_a, intercept_a, avg_a, losses_a = a
    coef_b, intercept_b, avg_b, losses_b = b
    np.testing.assert_array_equal(coef_a, coef_b)
    np.testing.assert_array_equal(avg_a, avg_b)
    assert intercept_a == intercept_b
    assert losses_a == losses_b


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("density", [1.0, 0.3])
@pytest.mark.parametrize("rows_per_block", [1, 7, 64])
def test_two_threads_give_the_one_thread_model_bit_for_bit(backend, case, density, rows_per_block):
    kernels = BACKENDS[backend]
    X, y = make_linear_problem(n=150, d=9, density=density, seed=2)
    sw = np.random.RandomState(3).uniform(0.5, 2.0, size=150)
    orders = [np.random.RandomState(e).permutation(150) for e in range(3)]
    shared = functools.partial(shared_sgd_epoch.shared_epoch, kernels, rows_per_block)
    one_thread = run_kernel(kernels.sgd_epoch, X, y, sw, orders, **case)
    two_threads = run_kernel(shared, X, y, sw, orders, **case)
    assert_same_runs(one_thread, two_threads)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_threads_keep_float32_and_unit_weights_bit_for_bit(backend, dtype):
    kernels = BACKENDS[backend]
    X, y = make_linear_problem(n=300, d=20, dtype=dtype, seed=4)
    orders = [np.random.RandomState(e).permutation(300) for e in range(2)]
    unit = np.empty(0, dtype)  # every weight is 1
    shared = functools.partial(shared_sgd_epoch.shared_epoch, kernels, 16)
    case = dict(l2=0.01, schedule=codes.INVSCALING, eta0=0.02, average_start=100)
    one_thread = run_kernel(kernels.sgd_epoch, X, y, unit, orders, **case)
    two_threads = run_kernel(shared, X, y, unit, orders, **case)
    assert two_threads[0].dtype == dtype
    assert_same_runs(one_thread, two_threads)


def kernel_args(X, y, order):
    """Arguments of a per-sample kernel for one plain-SGD epoch from zero weights."""
    d = X.shape[1]
    empty = np.empty(0)
    empty_index = np.empty(0, np.int32)
    coef = np.zeros(d)
    counters = new_counters()
    counters[SCALE], counters[LOSS_SUM] = 1.0, 0.0
    buffers = (np.zeros(d), np.zeros(d), np.zeros(d + 1), np.zeros(d + 1), np.zeros(d))
    settings = (codes.SQUARED_ERROR, 0.1, 1e-3, 0.0, codes.INVSCALING, 0.02, 0.25, 0.0, 1e-4)
    optimizer = (codes.SGD, 0.9, 0.9, 0.999, 1e-8, True, 0.0)
    data = (X, empty, empty_index, empty_index, False, y[order], empty, order)
    return (*data, coef, *buffers, counters, *settings, *optimizer), coef, counters


def reference_and_fresh_args(kernels, X, y, order):
    """One epoch of ``kernels.sgd_epoch`` on one thread, and fresh arguments for another run.

    Returns the reference ``coef`` and ``counters``, then the fresh
    arguments with their ``coef`` and ``counters``.
    """
    reference_args, reference_coef, reference_counters = kernel_args(X, y, order)
    kernels.sgd_epoch(*reference_args)
    return (reference_coef, reference_counters, *kernel_args(X, y, order))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stalled_thread", [False, True])
def test_one_thread_alone_runs_the_whole_shared_epoch(backend, stalled_thread):
    """The epoch never waits for the helper: a thread on its own runs every block.

    Even block 0 when a thread took it and then stalls (as when descheduled):
    it is taken over.
    """
    kernels = BACKENDS[backend]
    X, y = make_linear_problem(n=200, d=6, seed=6)
    order = np.random.RandomState(0).permutation(200).astype(np.intp)
    reference_coef, reference_counters, args, coef, counters = reference_and_fresh_args(
        kernels, X, y, order
    )
    flags = np.zeros(shared_sgd_epoch.FLAG_SLOTS, dtype=np.int64)
    if stalled_thread:
        flags[_sgd_fast.BLOCKS_CLAIMED] = 1  # block 0 belongs to a thread that never runs
    n_blocks, _ = kernels.sgd_epoch_share(flags, 9, *args)
    assert n_blocks == -(-200 // 9)  # every block, block 0 included
    np.testing.assert_array_equal(coef, reference_coef)
    np.testing.assert_array_equal(counters, reference_counters)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_threads_split_the_blocks_between_them(backend):
    kernels = BACKENDS[backend]
    X, y = make_linear_problem(n=20_000, d=50, seed=7)
    order = np.random.RandomState(1).permutation(20_000).astype(np.intp)
    reference_coef, _, args, coef, _ = reference_and_fresh_args(kernels, X, y, order)
    flags = np.zeros(shared_sgd_epoch.FLAG_SLOTS, dtype=np.int64)
    counts = []
    helper = threading.Thread(
        target=lambda: counts.append(kernels.sgd_epoch_share(flags, 50, *args)[0])
    )
    helper.start()
    counts.append(kernels.sgd_epoch_share(flags, 50, *args)[0])
    helper.join()
    assert sum(counts) == 20_000 // 50  # every block run exactly once
    np.testing.assert_array_equal(coef, reference_coef)


def test_sharing_needs_a_large_epoch_and_two_threads(monkeypatch):
    big, y_big = np.zeros((100_000, 100)), np.zeros(100_000)
    small, y_small = np.zeros((1_000, 100)), np.zeros(1_000)
    order_big = np.arange(100_000, dtype=np.intp)
    order_small = np.arange(1_000, dtype=np.intp)
    monkeypatch.setattr(shared_sgd_epoch, "thread_budget", lambda: 2)
    rows = shared_sgd_epoch.rows_per_shared_block(*kernel_args(big, y_big, order_big)[0])
    # A block's rows fit the cache budget.
    assert rows * 100 * 8 <= shared_sgd_epoch.WARM_BLOCK_BYTES < (rows + 1) * 100 * 8
    assert shared_sgd_epoch.rows_per_shared_block(*kernel_args(small, y_small, order_small)[0]) == 0
    monkeypatch.setattr(shared_sgd_epoch, "thread_budget", lambda: 1)
    assert shared_sgd_epoch.rows_per_shared_block(*kernel_args(big, y_big, order_big)[0]) == 0


def test_thread_budget_follows_numba_and_its_environment_variable(monkeypatch):
    import numba

    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.setattr(numba, "get_num_threads", lambda: 1)
    assert threads.thread_budget() == 1
    # Without Numba loaded (the Cython backend), its variable is read instead.
    monkeypatch.delitem(threads.sys.modules, "numba")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    assert threads.thread_budget() == 1
    monkeypatch.setenv("NUMBA_NUM_THREADS", "8")
    assert threads.thread_budget() == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_gd_regressor_is_the_same_on_one_and_two_threads(backend, monkeypatch):
    """End to end: an epoch large enough to be shared gives the one-thread model."""
    X, y = make_linear_problem(n=50_000, d=90, seed=9)
    settings = dict(backend=backend, max_iter=2, tol=None, random_state=0)
    monkeypatch.setattr(shared_sgd_epoch, "thread_budget", lambda: 1)
    alone = GDRegressor(**settings).fit(X, y)
    monkeypatch.setattr(shared_sgd_epoch, "thread_budget", lambda: 2)
    calls = []
    original = shared_sgd_epoch.shared_epoch
    monkeypatch.setattr(
        shared_sgd_epoch, "shared_epoch", lambda *a: calls.append(1) or original(*a)
    )
    shared = GDRegressor(**settings).fit(X, y)
    assert len(calls) == 2  # both epochs were shared
    np.testing.assert_array_equal(shared.coef_, alone.coef_)
    assert shared.intercept_ == alone.intercept_
    assert shared.loss_curve_ == alone.loss_curve_
