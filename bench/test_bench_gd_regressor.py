"""pytest-benchmark suite: GDRegressor against SGDRegressor on the same problem.

``pytest bench/test_bench_gd_regressor.py --benchmark-only`` (add
``--bench-size full`` for 1,000,000 x 100). Every benchmark checks that the
model it timed is as good as scikit-learn's, so a fast wrong kernel cannot win.
"""

import numpy as np
import pytest
from sklearn.linear_model import SGDRegressor

from bench.gd_regressor import FULL_SIZE, QUICK_SIZE, fit_quietly, make_problem
from fastgd import GDRegressor

ONE_EPOCH = dict(max_iter=1, tol=None, random_state=0)


@pytest.fixture(scope="module")
def problem(bench_size):
    n_samples, n_features = FULL_SIZE if bench_size == "full" else QUICK_SIZE
    return make_problem(n_samples, n_features)


@pytest.fixture(scope="module")
def sklearn_r2(problem):
    X, y = problem
    return fit_quietly(SGDRegressor(**ONE_EPOCH), X, y).score(X, y)


def run(benchmark, model, X, y):
    fit_quietly(model, X[:1000], y[:1000])  # compile / warm up outside the timing
    fitted = benchmark.pedantic(fit_quietly, args=(model, X, y), rounds=5, iterations=1)
    return fitted.score(X, y)


@pytest.mark.benchmark(group="per-sample SGD epoch")
def test_sklearn_sgdregressor(benchmark, problem):
    X, y = problem
    assert run(benchmark, SGDRegressor(**ONE_EPOCH), X, y) > 0.9


@pytest.mark.benchmark(group="per-sample SGD epoch")
@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_gdregressor_per_sample(benchmark, problem, sklearn_r2, backend):
    X, y = problem
    r2 = run(benchmark, GDRegressor(backend=backend, **ONE_EPOCH), X, y)
    assert r2 == pytest.approx(sklearn_r2, abs=1e-3)


@pytest.mark.benchmark(group="per-sample SGD epoch")
def test_gdregressor_per_sample_float32(benchmark, problem, sklearn_r2):
    X, y = problem
    r2 = run(benchmark, GDRegressor(**ONE_EPOCH), X.astype(np.float32), y.astype(np.float32))
    assert r2 == pytest.approx(sklearn_r2, abs=1e-3)


@pytest.mark.benchmark(group="mini-batch epoch")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gdregressor_minibatch(benchmark, problem, dtype):
    X, y = problem
    model = GDRegressor(batch_size=256, learning_rate="constant", eta0=0.05, **ONE_EPOCH)
    assert run(benchmark, model, X.astype(dtype), y.astype(dtype)) > 0.99


@pytest.mark.benchmark(group="mini-batch epoch")
def test_one_matvec_pass(benchmark, problem):
    X, _ = problem
    w = np.ones(X.shape[1])
    result = benchmark(lambda: X @ w)
    np.testing.assert_allclose(result, X.sum(axis=1))
