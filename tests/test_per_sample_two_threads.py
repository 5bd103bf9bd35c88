"""The per-sample epoch shared by two threads gives bit for bit the one-thread result."""

import functools
import threading

import numpy as np
import pytest
from conftest import make_linear_problem
from per_sample_runs import CASES, CLASSIFICATION_CASES, case_id, run_kernel, settings_of, visited

from fastgd import GDRegressor
from fastgd._engine import linear_epochs, threads
from fastgd._kernels.linear import _sgd_fast, sgd_numba
from fastgd._kernels.linear.arguments import LinearModel, Scratch
from fastgd._kernels.runtime import codes, tuning
from fastgd._kernels.runtime.codes import LOSS_SUM, SCALE

BACKENDS = {"cython": _sgd_fast, "numba": sgd_numba}


def assert_same_runs(a, b):
    coef_a, intercept_a, avg_a, losses_a = a
    coef_b, intercept_b, avg_b, losses_b = b
    np.testing.assert_array_equal(coef_a, coef_b)
    np.testing.assert_array_equal(avg_a, avg_b)
    assert intercept_a == intercept_b
    assert losses_a == losses_b


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES + CLASSIFICATION_CASES[:2], ids=case_id)
@pytest.mark.parametrize("density", [1.0, 0.3])
@pytest.mark.parametrize("rows_per_block", [1, 7, 64])
def test_two_threads_give_the_one_thread_model_bit_for_bit(backend, case, density, rows_per_block):
    kernels = BACKENDS[backend]
    X, y = make_linear_problem(n=150, d=9, density=density, seed=2)
    if case.get("loss", 0) >= codes.HINGE:
        y = np.where(y > np.median(y), 1.0, -1.0)
    sw = np.random.RandomState(3).uniform(0.5, 2.0, size=150)
    orders = [np.random.RandomState(e).permutation(150) for e in range(3)]
    shared = functools.partial(linear_epochs.shared_per_sample_epoch, kernels, rows_per_block)
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
    shared = functools.partial(linear_epochs.shared_per_sample_epoch, kernels, 16)
    case = dict(l2=0.01, schedule=codes.INVSCALING, eta0=0.02, average_start=100)
    one_thread = run_kernel(kernels.sgd_epoch, X, y, unit, orders, **case)
    two_threads = run_kernel(shared, X, y, unit, orders, **case)
    assert two_threads[0].dtype == dtype
    assert_same_runs(one_thread, two_threads)


def epoch_of(X, y, order):
    """Structures for one plain-SGD epoch from zero weights: (rows, model, scratch, settings)."""
    d = X.shape[1]
    model = LinearModel.zeros(d, np.float64)
    model.counters[SCALE], model.counters[LOSS_SUM] = 1.0, 0.0
    settings = settings_of(l2=1e-3, schedule=codes.INVSCALING, eta0=0.02)
    return visited(X, y, np.empty(0), order), model, Scratch.for_per_sample(d, np.float64), settings


def reference_and_fresh_epoch(kernels, X, y, order):
    """One epoch of ``kernels.sgd_epoch`` on one thread, and fresh structures for another run.

    Returns the reference model, then the fresh (rows, model, scratch, settings).
    """
    reference = epoch_of(X, y, order)
    kernels.sgd_epoch(*reference)
    return reference[1], epoch_of(X, y, order)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stalled_thread", [False, True])
def test_one_thread_alone_runs_the_whole_shared_epoch(backend, stalled_thread):
    """The epoch never waits for the helper: a thread on its own runs every block.

    Even block 0 when a thread took it and then stalls (as when descheduled):
    it is taken over.
    """
    kernels = BACKENDS[backend]
    X, y = make_linear_problem(n=200, d=6, seed=6)
    order = np.random.RandomState(0).permutation(200)
    reference, epoch = reference_and_fresh_epoch(kernels, X, y, order)
    flags = np.zeros(codes.N_BLOCK_FLAGS, dtype=np.int64)
    if stalled_thread:
        flags[codes.BLOCKS_CLAIMED] = 1  # block 0 belongs to a thread that never runs
    n_blocks, _ = kernels.sgd_epoch_share(flags, 9, *epoch)
    assert n_blocks == -(-200 // 9)  # every block, block 0 included
    model = epoch[1]
    np.testing.assert_array_equal(model.params, reference.params)
    np.testing.assert_array_equal(model.counters, reference.counters)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_threads_split_the_blocks_between_them(backend):
    kernels = BACKENDS[backend]
    X, y = make_linear_problem(n=20_000, d=50, seed=7)
    order = np.random.RandomState(1).permutation(20_000)
    reference, epoch = reference_and_fresh_epoch(kernels, X, y, order)
    flags = np.zeros(codes.N_BLOCK_FLAGS, dtype=np.int64)
    counts = []
    helper = threading.Thread(
        target=lambda: counts.append(kernels.sgd_epoch_share(flags, 50, *epoch)[0])
    )
    helper.start()
    counts.append(kernels.sgd_epoch_share(flags, 50, *epoch)[0])
    helper.join()
    assert sum(counts) == 20_000 // 50  # every block run exactly once
    np.testing.assert_array_equal(epoch[1].params, reference.params)


def test_sharing_needs_a_large_epoch_and_two_threads(monkeypatch):
    big, y_big = np.zeros((100_000, 100)), np.zeros(100_000)
    small, y_small = np.zeros((1_000, 100)), np.zeros(1_000)
    rows_big = visited(big, y_big, np.empty(0), np.arange(100_000))
    rows_small = visited(small, y_small, np.empty(0), np.arange(1_000))
    model = LinearModel.zeros(100, np.float64)
    monkeypatch.setattr(linear_epochs, "thread_budget", lambda: 2)
    per_block = linear_epochs.rows_per_shared_block(rows_big, model)
    # A block's rows fit the cache budget.
    assert per_block * 100 * 8 <= tuning.WARM_BLOCK_BYTES < (per_block + 1) * 100 * 8
    assert linear_epochs.rows_per_shared_block(rows_small, model) == 0
    wide = LinearModel.zeros(tuning.MAX_SHARED_WEIGHT_BYTES // 8, np.float64)
    assert linear_epochs.rows_per_shared_block(rows_big, wide) == 0
    monkeypatch.setattr(linear_epochs, "thread_budget", lambda: 1)
    assert linear_epochs.rows_per_shared_block(rows_big, model) == 0


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


def test_the_helper_thread_is_joined_even_when_the_leader_fails():
    stopped = threading.Event()

    def lead():
        raise RuntimeError("leader failed")

    with pytest.raises(RuntimeError, match="leader failed"):
        threads.run_with_helper(lead, stopped.wait, "test-helper", after_lead=stopped.set)
    assert stopped.is_set()
    assert not any(t.name == "test-helper" for t in threading.enumerate())


@pytest.mark.parametrize("backend", BACKENDS)
def test_gd_regressor_is_the_same_on_one_and_two_threads(backend, monkeypatch):
    """End to end: an epoch large enough to be shared gives the one-thread model."""
    X, y = make_linear_problem(n=50_000, d=90, seed=9)
    settings = dict(backend=backend, max_iter=2, tol=None, random_state=0)
    monkeypatch.setattr(linear_epochs, "thread_budget", lambda: 1)
    alone = GDRegressor(**settings).fit(X, y)
    monkeypatch.setattr(linear_epochs, "thread_budget", lambda: 2)
    calls = []
    original = linear_epochs.shared_per_sample_epoch
    monkeypatch.setattr(
        linear_epochs, "shared_per_sample_epoch", lambda *a: calls.append(1) or original(*a)
    )
    shared = GDRegressor(**settings).fit(X, y)
    assert len(calls) == 2  # both epochs were shared
    np.testing.assert_array_equal(shared.coef_, alone.coef_)
    assert shared.intercept_ == alone.intercept_
    assert shared.loss_curve_ == alone.loss_curve_
