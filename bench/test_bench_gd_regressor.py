"""pytest-benchmark suite: GDRegressor against SGDRegressor on the same problem.

``pytest bench/test_bench_gd_regressor.py --benchmark-only`` (add
``--bench-size full`` for 1,000,000 x 100). Groups, each with fastgd and its
alternative (the speed-ups are in each fastgd benchmark's ``extra_info``):

* one-epoch fit, float64 and float32: SGDRegressor against GDRegressor with
  both per-sample backends (issue #2: faster than scikit-learn at the same R²);
* mini-batch (256) epoch against one ``X @ w`` pass, the machine's limit for
  a pass over X (issue #2's target: at most 3 passes, a speed-up ≥ 0.33);
* a fresh process that imports the library and fits 1,000 x 10 (issue #2:
  no slower than scikit-learn);
* a whole full-batch fit with the defaults (the solver's step from the
  problem) against ``Ridge(solver="auto")`` and ``ElasticNet`` on the same
  objective, every fit checked to 1e-6 of the optimum with its exact zeros
  (issue #13; the table with both BLAS settings is
  ``python -m fastgd.benchmarks.full_batch``).

Every benchmark checks that the model it timed is as good as scikit-learn's,
so a fast wrong kernel cannot win.
"""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.linear_model import SGDRegressor

from bench._speedups import label
from fastgd import GDRegressor
from fastgd.benchmarks.full_batch import ACCURACY, errors, fits, optima
from fastgd.benchmarks.gd_regressor import (
    COLD_START_FASTGD,
    COLD_START_SKLEARN,
    FULL_SIZE,
    QUICK_SIZE,
    fit_quietly,
    make_problem,
)

ONE_EPOCH = dict(max_iter=1, tol=None, random_state=0)
DTYPES = [np.float64, np.float32]


@pytest.fixture(scope="module")
def problem(bench_size):
    n_samples, n_features = FULL_SIZE if bench_size == "full" else QUICK_SIZE
    return make_problem(n_samples, n_features)


@pytest.fixture(scope="module")
def sklearn_r2(problem):
    X, y = problem
    return fit_quietly(SGDRegressor(**ONE_EPOCH), X, y).score(X, y)


def run(benchmark, model, X, y):
    """Time ``model.fit(X, y)`` (5 rounds, after a small warm-up fit); return its R²."""
    fit_quietly(model, X[:1000], y[:1000])  # compile / warm up outside the timing
    fitted = benchmark.pedantic(fit_quietly, args=(model, X, y), rounds=5, iterations=1)
    return fitted.score(X, y)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_sklearn_sgdregressor(benchmark, problem, sklearn_r2, dtype):
    X, y = (a.astype(dtype, copy=False) for a in problem)
    benchmark.group = f"GDRegressor: one-epoch fit, {np.dtype(dtype).name}"
    label(benchmark, "sklearn", shape=X.shape)
    assert run(benchmark, SGDRegressor(**ONE_EPOCH), X, y) == pytest.approx(sklearn_r2, abs=1e-3)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_gdregressor_per_sample(benchmark, problem, sklearn_r2, backend, dtype):
    X, y = (a.astype(dtype, copy=False) for a in problem)
    benchmark.group = f"GDRegressor: one-epoch fit, {np.dtype(dtype).name}"
    label(benchmark, f"fastgd-{backend}", shape=X.shape)
    r2 = run(benchmark, GDRegressor(backend=backend, **ONE_EPOCH), X, y)
    assert r2 == pytest.approx(sklearn_r2, abs=1e-3)


@pytest.mark.benchmark(group="GDRegressor: mini-batch (256) epoch vs one X @ w pass")
@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_gdregressor_minibatch(benchmark, problem, dtype):
    X, y = (a.astype(dtype, copy=False) for a in problem)
    label(benchmark, f"fastgd-{np.dtype(dtype).name}", shape=X.shape)
    model = GDRegressor(batch_size=256, learning_rate="constant", eta0=0.05, **ONE_EPOCH)
    assert run(benchmark, model, X, y) > 0.99


@pytest.mark.benchmark(group="GDRegressor: mini-batch (256) epoch vs one X @ w pass")
def test_one_matvec_pass(benchmark, problem):
    X, _ = problem
    label(benchmark, "numpy-X@w", shape=X.shape)
    w = np.ones(X.shape[1])
    result = benchmark(lambda: X @ w)
    np.testing.assert_allclose(result, X.sum(axis=1))


def _fresh_process(code):
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.benchmark(group="GDRegressor: fresh process, import + fit 1,000 x 10")
@pytest.mark.parametrize(
    "implementation, code",
    [
        ("sklearn", COLD_START_SKLEARN),
        ("fastgd-cython", COLD_START_FASTGD.format(extra="")),
        ("fastgd-numba", COLD_START_FASTGD.format(extra=", backend='numba'")),
    ],
    ids=["sklearn", "fastgd-cython", "fastgd-numba"],
)
def test_fresh_process_fit(benchmark, implementation, code):
    label(benchmark, implementation)
    # The warm-up run also fills Numba's on-disk cache for the numba backend.
    benchmark.pedantic(_fresh_process, args=(code,), rounds=3, iterations=1, warmup_rounds=1)


@pytest.fixture(scope="module")
def optimum(problem):
    return optima(*problem)


@pytest.mark.parametrize(
    "name",
    [
        "fastgd ridge",
        "sklearn Ridge(solver='auto')",
        "fastgd elastic net",
        "sklearn ElasticNet (default tol)",
        "sklearn ElasticNet (tol=1e-09)",
    ],
)
def test_full_batch_fit_to_the_optimum(benchmark, problem, optimum, name):
    X, y = problem
    model = fits(X.shape[0])[name]
    alternative = "Ridge" if "idge" in name else "ElasticNet"
    benchmark.group = f"GDRegressor: full-batch fit vs {alternative}"
    label(benchmark, name, shape=X.shape)
    benchmark.pedantic(model.fit, args=(X, y), rounds=3, iterations=1, warmup_rounds=1)
    check = errors({name: model}, optimum)[name]
    if "default tol" not in name:  # ElasticNet's default tol is timed as users run it
        assert check["max_coef_error"] < ACCURACY
    assert check["same_zeros"]
