"""With default parameters, every optimizer and batch mode converges (learning_rate="auto").

The accepted standard: the training R² within 0.01 of Ridge's (the optimum of
the same objective, alpha matched) on scaled diabetes data and on a larger
synthetic problem, with nothing set but ``batch_size`` and ``optimizer``.
"""

import numpy as np
import pytest
from sklearn.linear_model import Ridge, SGDRegressor

from fastgd import GDRegressor

OPTIMIZERS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]
BATCH_SIZES = [1, 32, "full"]


def ridge_r2(X, y, alpha):
    """Training R² of the objective's exact optimum."""
    return Ridge(alpha=alpha * X.shape[0]).fit(X, y).score(X, y)


@pytest.fixture(scope="module")
def synthetic():
    """100,000 × 100 standard normal features, y linear plus noise (R² ≈ 0.99)."""
    rng = np.random.RandomState(0)
    X = rng.standard_normal((100_000, 100))
    y = X @ rng.standard_normal(100) + 3.0 + rng.standard_normal(100_000)
    return X, y


PROBLEMS = [
    pytest.param("diabetes", id="diabetes"),
    pytest.param("synthetic", id="100000x100", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_defaults_reach_ridge(request, problem, optimizer, batch_size):
    X, y = request.getfixturevalue(problem)
    model = GDRegressor(optimizer=optimizer, batch_size=batch_size, random_state=0).fit(X, y)
    assert model.score(X, y) > ridge_r2(X, y, model.alpha) - 0.01


def test_plain_sgd_keeps_sgdregressors_defaults(diabetes):
    """ "auto" gives plain per-sample SGD SGDRegressor's schedule: the same steps."""
    X, y = diabetes
    y = (y - y.mean()) / y.std()
    params = dict(shuffle=False, max_iter=3, tol=None, random_state=0)
    ours = GDRegressor(**params).fit(X, y)
    theirs = SGDRegressor(**params).fit(X, y)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-8, atol=1e-8)
    explicit = GDRegressor(learning_rate="invscaling", **params).fit(X, y)
    np.testing.assert_array_equal(ours.coef_, explicit.coef_)


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov"])
def test_momentum_defaults_take_plain_sgds_effective_step(diabetes, optimizer):
    X, y = diabetes
    params = dict(optimizer=optimizer, max_iter=3, tol=None, random_state=0)
    auto = GDRegressor(**params).fit(X, y)
    explicit = GDRegressor(learning_rate="invscaling", eta0=0.01 * (1 - 0.9), **params)
    np.testing.assert_array_equal(auto.coef_, explicit.fit(X, y).coef_)
