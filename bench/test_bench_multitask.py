"""MultiTaskRegressor against scikit-learn's MLPRegressor (pytest-benchmark).

Run with::

    python -m pytest bench/test_bench_multitask.py --benchmark-only [--bench-size full]

The ``multitask: epoch, batch <size>`` groups time one training epoch of the same
network (100 → Dense(100, relu) → 10 outputs, Adam, float32) in both
libraries on 100,000 × 100 with 10 targets (``--bench-size full``; the
default ``quick`` uses 20,000 samples): a ``partial_fit`` call each, after a
first one that builds the model (and compiles fastgd's kernels). Every
benchmark then checks the held-out R² of the model it trained, so a fast
wrong model cannot win. For the ratio measured in one run with interleaved
repetitions, use the table: ``python -m fastgd.benchmarks.multitask``.
"""

import numpy as np
import pytest

from bench._speedups import label
from fastgd.benchmarks.multitask import (
    FULL_SIZE,
    QUICK_SIZE,
    fastgd_model,
    make_problem,
    sklearn_model,
)

# Held-out R² each library must reach after its first epoch plus the timed
# ones (measured, 100,000 samples, batch 200: about 0.8 for both).
MIN_R2 = {"quick": 0.3, "full": 0.6}


@pytest.fixture(scope="module")
def problem(bench_size):
    n, d, t = FULL_SIZE if bench_size == "full" else QUICK_SIZE
    return make_problem(n, d, t)


def _epoch(model, X, Y):
    model.partial_fit(X, Y)


@pytest.mark.parametrize("batch_size", [200, 32])
@pytest.mark.parametrize("library", ["fastgd", "sklearn"])
def test_multitask_epoch(benchmark, problem, bench_size, library, batch_size):
    X, Y, X_test, Y_test = problem
    benchmark.group = f"multitask: epoch, batch {batch_size}"
    label(benchmark, library, n_samples=len(X), batch_size=batch_size)
    model = (fastgd_model if library == "fastgd" else sklearn_model)(batch_size)
    model.partial_fit(X, Y)  # build (and compile) outside the timing
    benchmark.pedantic(_epoch, args=(model, X, Y), rounds=3, iterations=1)
    r2 = model.score(X_test, Y_test)
    assert r2 > MIN_R2[bench_size], f"{library}: held-out R² {r2:.3f}"
    assert model.predict(X_test[:5]).shape == (5, Y.shape[1])
    assert np.all(np.isfinite(model.predict(X_test)))
