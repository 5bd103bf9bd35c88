"""The compiled row shuffle: a uniformly random permutation, a function of its seed."""

import itertools

import numpy as np
import pytest
from scipy import stats

from fastgd._kernels.common.shuffle import shuffled_copy
from fastgd._kernels.runtime.tuning import MIN_SCATTER_SIZE, PARALLEL_SHUFFLE_MIN_SIZE

SIZES = [1, 2, 9, MIN_SCATTER_SIZE, MIN_SCATTER_SIZE * 3 + 7]


def shuffled(source, seed):
    out = np.empty_like(source)
    shuffled_copy(source, out, seed)
    return out


@pytest.mark.parametrize("n", SIZES)
def test_a_permutation_of_the_source_which_is_left_alone(n):
    source = np.arange(n, dtype=np.intp)[::-1].copy()
    kept = source.copy()
    out = shuffled(source, 3)
    np.testing.assert_array_equal(np.sort(out), np.arange(n))
    np.testing.assert_array_equal(source, kept)


@pytest.mark.parametrize("n", SIZES[2:])
def test_the_seed_decides(n):
    source = np.arange(n, dtype=np.intp)
    np.testing.assert_array_equal(shuffled(source, 11), shuffled(source, 11))
    assert not np.array_equal(shuffled(source, 11), shuffled(source, 12))
    assert not np.array_equal(shuffled(source, 11), source)


def test_every_order_of_four_is_equally_likely():
    source = np.arange(4, dtype=np.intp)
    seen = {order: 0 for order in itertools.permutations(range(4))}
    for seed in range(12_000):
        seen[tuple(shuffled(source, seed))] += 1
    assert stats.chisquare(list(seen.values())).pvalue > 1e-3


def test_large_shuffles_are_uniform():
    """Scatter path: where an element lands, and whether two keep their order, are fair."""
    n = MIN_SCATTER_SIZE
    source = np.arange(n, dtype=np.intp)
    n_bins = 16
    landing = np.zeros((3, n_bins))
    first_before_last = 0
    n_draws = 1500
    for seed in range(n_draws):
        position = np.argsort(shuffled(source, seed))
        for row, element in enumerate((0, n // 2, n - 1)):
            landing[row, position[element] * n_bins // n] += 1
        first_before_last += position[0] < position[n - 1]
    for row in landing:
        assert stats.chisquare(row).pvalue > 1e-3
    assert stats.binomtest(first_before_last, n_draws).pvalue > 1e-3


def test_neighbours_are_as_often_ascending_as_descending():
    """In a random permutation about half the neighbours ascend (order within buckets too)."""
    n = PARALLEL_SHUFFLE_MIN_SIZE * 2
    out = shuffled(np.arange(n, dtype=np.intp), 5)
    ascents = np.count_nonzero(np.diff(out) > 0)
    # The number of ascents has mean (n - 1) / 2 and variance (n + 1) / 12.
    assert abs(ascents - (n - 1) / 2) < 5 * np.sqrt((n + 1) / 12)


@pytest.mark.parametrize("n", [MIN_SCATTER_SIZE + 5, PARALLEL_SHUFFLE_MIN_SIZE + 3])
def test_the_same_on_any_number_of_threads(n):
    """Parallel and serial scatter passes, and one thread or all, give one permutation."""
    import numba

    from fastgd._kernels.common import shuffle

    source = np.arange(n, dtype=np.intp)
    results = []
    for body in (shuffle._scatter_shuffle_parallel, shuffle._scatter_shuffle_serial):
        out = np.empty_like(source)
        scratch = (
            np.empty(n, np.uint8),
            np.empty((shuffle.SHUFFLE_PARTS, shuffle.SHUFFLE_BUCKETS), np.int64),
            np.empty(shuffle.SHUFFLE_BUCKETS + 1, np.int64),
        )
        body(source, out, 21, *scratch)
        results.append(out)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        results.append(shuffled(source, 21))
    finally:
        numba.set_num_threads(previous)
    results.append(shuffled(source, 21))
    for out in results[1:]:
        np.testing.assert_array_equal(out, results[0])
