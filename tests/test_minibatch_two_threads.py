"""The two-thread mini-batch epoch and the atomics it is built on."""

import threading

import numba
import numpy as np
import pytest
from conftest import make_linear_problem
from per_sample_runs import settings_of

from fastgd import GDRegressor
from fastgd._engine import linear_epochs
from fastgd._kernels.linear import batch_numba, minibatch_two_threads
from fastgd._kernels.linear.arguments import BatchRows, Features, LinearModel, Scratch
from fastgd._kernels.runtime import atomics, codes, tuning

# ------------------------------------------------------------------ atomics


@numba.njit
def _single_thread_atomics(flags):
    before = atomics.fetch_add(flags, 0, 5)
    swapped_wrong = atomics.compare_exchange(flags, 0, 4, 100)
    swapped_right = atomics.compare_exchange(flags, 0, 5, 7)
    atomics.store_release(flags, 1, 42)
    return before, swapped_wrong, swapped_right, atomics.load_acquire(flags, 0)


def test_atomics_do_what_they_say():
    flags = np.zeros(2, dtype=np.int64)
    before, swapped_wrong, swapped_right, now = _single_thread_atomics(flags)
    assert (before, swapped_wrong, swapped_right, now) == (0, False, True, 7)
    assert flags.tolist() == [7, 42]


@numba.njit(nogil=True)
def _count_up(flags, n, claimed):
    """Add 1 to flags[0] n times by fetch_add, and claim slots by compare-and-swap."""
    for _ in range(n):
        atomics.fetch_add(flags, 0, 1)
    mine = 0
    while True:
        slot = atomics.load_acquire(flags, 1)
        if slot >= claimed.shape[0]:
            return mine
        if atomics.compare_exchange(flags, 1, slot, slot + 1):
            claimed[slot] += 1
            mine += 1


def test_atomics_lose_no_update_between_threads():
    """Two threads hammering the same counters: no increment lost, no slot claimed twice."""
    flags = np.zeros(2, dtype=np.int64)
    claimed = np.zeros(200_000, dtype=np.int64)
    counts = []
    threads = [
        threading.Thread(target=lambda: counts.append(_count_up(flags, 300_000, claimed)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert flags[0] == 600_000
    assert np.all(claimed == 1)
    assert sum(counts) == claimed.shape[0]


# --------------------------------------------------------- the epoch itself


def epoch_of(X, y, sw, order, batch_size, *, optimizer=codes.ADAM, l1=0.0, average=0.0):
    """Structures of ``batch_epoch`` with a fresh model: (rows, model, scratch, settings)."""
    d = X.shape[1]
    rows = BatchRows.of(Features.of(X), order, y, sw, batch_size)
    model = LinearModel.zeros(d, X.dtype)
    model.params[:] = 0.01
    scratch = Scratch.for_batches(d, batch_numba.partials_shape(batch_size, d), X.dtype)
    settings = settings_of(
        loss=codes.HUBER,
        epsilon=0.5,
        l2=1e-3,
        l1=l1,
        schedule=codes.INVSCALING,
        eta0=0.05,
        optimizer=optimizer,
        average_start=average,
    )
    return rows, model, scratch, settings


def assert_same_state(epoch_a, epoch_b):
    for a, b in zip(epoch_a[1], epoch_b[1], strict=True):  # every array of the models
        np.testing.assert_array_equal(a, b)


def problem(n, d, *, density=1.0, dtype=np.float64, seed=0):
    X, y = make_linear_problem(n=n, d=d, density=density, seed=seed, dtype=dtype)
    sw = np.random.RandomState(seed + 1).uniform(0.5, 2.0, n).astype(dtype)
    order = np.random.RandomState(seed + 2).permutation(n).astype(np.intp)
    return X, y.astype(dtype), sw, order


CASES = {
    "dense-adam": dict(),
    "dense-l1-averaged-sgd": dict(optimizer=codes.SGD, l1=1e-3, average=3.0),
    "dense-momentum-float32": dict(optimizer=codes.MOMENTUM, dtype=np.float32),
    "sparse-rmsprop": dict(optimizer=codes.RMSPROP, density=0.2),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("batch_size", [128, 200, 333])
def test_two_threads_give_the_one_thread_epoch_bit_for_bit(case, batch_size):
    """Three epochs on two threads equal three on one (batches that do not divide n)."""
    options = dict(CASES[case])
    X, y, sw, order = problem(
        3001, 17, density=options.pop("density", 1.0), dtype=options.pop("dtype", np.float64)
    )
    one = epoch_of(X, y, sw, order, batch_size, **options)
    two = epoch_of(X, y, sw, order, batch_size, **options)
    for _ in range(3):
        loss_one = batch_numba.batch_epoch(*one)
        loss_two = linear_epochs.two_thread_batch_epoch(*two)
        assert loss_one == loss_two
    assert_same_state(one, two)


def test_chunks_the_helper_computed_are_used_by_the_leader():
    """The helper's part of the protocol, run by hand before the leader: the leader
    takes the chunks it finds done and gives the one-thread result."""
    X, y, sw, order = problem(20_000, 30)
    reference = epoch_of(X, y, sw, order, 256)
    reference_loss = batch_numba.batch_epoch(*reference)
    epoch = epoch_of(X, y, sw, order, 256)
    shared = minibatch_two_threads.shared_epoch(*epoch)
    # Batch 0 is open before any step: the helper claims its chunks, then the
    # leader's that are still free (all four).
    assert minibatch_two_threads.work_on_batch(1, 0, shared) == 4
    assert minibatch_two_threads.lead_epoch(shared, epoch[1], epoch[2]) == reference_loss
    assert_same_state(reference, epoch)
    assert shared.flags[minibatch_two_threads.DONE_CHUNKS] == -(-20_000 // 64)  # each once


def test_the_leader_alone_finishes_the_epoch():
    """With no helper at all the leader claims every chunk: nothing waits on a missing thread."""
    X, y, sw, order = problem(5000, 8, seed=3)
    alone, reference = epoch_of(X, y, sw, order, 256), epoch_of(X, y, sw, order, 256)
    shared = minibatch_two_threads.shared_epoch(*alone)
    loss = minibatch_two_threads.lead_epoch(shared, alone[1], alone[2])
    assert loss == batch_numba.batch_epoch(*reference)
    assert_same_state(reference, alone)
    # 19 batches of 256 rows (4 chunks each), then one of 136 rows (3 chunks).
    assert shared.flags[minibatch_two_threads.DONE_CHUNKS] == 19 * 4 + 3


def test_when_two_threads_are_used():
    worth = linear_epochs.worth_two_threads
    big = tuning.MIN_VALUES_FOR_TWO_THREADS
    assert worth(big, 1, 256) == (numba.get_num_threads() >= 2)
    assert not worth(big, 1, 64)  # one chunk per batch: nothing to share
    assert not worth(big // 2, 1, 256)  # too little work to pay for a thread
    assert not worth(1000, big, 1000)  # full batch: one parallel region instead
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert not worth(big, 1, 256)
    finally:
        numba.set_num_threads(previous)


def test_gd_regressor_results_do_not_depend_on_the_second_thread():
    """A fit big enough for the two-thread path equals the same fit restricted to one thread."""
    X, y = make_linear_problem(n=50_000, d=90, seed=5)
    assert linear_epochs.worth_two_threads(*X.shape, 256) == (numba.get_num_threads() >= 2)
    params = dict(batch_size=256, optimizer="adam", max_iter=3, tol=None, random_state=0)
    two = GDRegressor(**params).fit(X, y)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = GDRegressor(**params).fit(X, y)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(two.coef_, one.coef_)
    assert two.intercept_ == one.intercept_
    assert two.score(X, y) > 0.9


@pytest.mark.parametrize("epoch", ["one thread", "two threads"])
def test_an_empty_weight_array_means_unit_weights(epoch):
    """The engine passes no weights when all are 1: same model, bit for bit."""
    run = {
        "one thread": batch_numba.batch_epoch,
        "two threads": linear_epochs.two_thread_batch_epoch,
    }[epoch]
    X, y, _, order = problem(3001, 17, seed=6)
    explicit = epoch_of(X, y, np.ones(3001), order, 200)
    implicit = epoch_of(X, y, np.empty(0), order, 200)
    for _ in range(2):
        assert run(*explicit) == run(*implicit)
    assert_same_state(explicit, implicit)


def test_the_serial_epoch_kernel_gives_the_any_size_one_bit_for_bit():
    """The epoch compiled without the parallel gradient equals the one with it.

    Batches of 2048 rows × 512 parameters reach the parallel gradient in the
    any-size kernel (the last, shorter batch does not); the serial kernel,
    which small-batch fits run so as not to compile the parallel code, gives
    the same epochs.
    """
    n_params = 512
    batch_size = -(-tuning.PARALLEL_MIN_WORK // n_params)
    assert batch_numba.may_run_in_parallel(batch_size, n_params)
    X, y, sw, order = problem(2 * batch_size + 100, n_params - 1, seed=3)
    any_size = epoch_of(X, y, sw, order, batch_size)
    serial = epoch_of(X, y, sw, order, batch_size)
    kinds = (batch_numba.row_kind(any_size[0]), batch_numba.step_kind(any_size[3]))
    kernels = batch_numba.ONE_OUTPUT
    for _ in range(2):
        loss_any = kernels.epoch_any_size[kinds](*any_size)
        assert kernels.epoch_serial[kinds](*serial) == loss_any
    assert_same_state(any_size, serial)
