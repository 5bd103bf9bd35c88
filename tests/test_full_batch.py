"""Full-batch GD with the default learning_rate="auto": the accelerated proximal gradient solver.

The solver takes its step from the problem (1/L), so with default parameters
it reaches Ridge's and ElasticNet's coefficients, exact zeros included. Its
two ways of computing the objective (a d × d quadratic for the squared
error, a pass over X otherwise) are checked against each other and against
scikit-learn and SciPy.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from naive_linear import loss_derivative, loss_value, objective
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, LogisticRegression, Ridge

import fastgd._engine.full_batch as full_batch
from fastgd import GDClassifier, GDRegressor
from fastgd._engine.linear import LinearData
from fastgd._kernels.runtime import codes

# The solver's iterations, well within max_iter=1000 on these problems.
FEW_HUNDRED = 500


@pytest.fixture
def pass_over_x(monkeypatch):
    """Make the solver take a pass over X per iteration, and power iterations for L."""
    monkeypatch.setattr(full_batch, "GRAM_MAX_FEATURES", 0)


def test_default_full_batch_reaches_ridges_coefficients(diabetes):
    X, y = diabetes
    model = GDRegressor(batch_size="full").fit(X, y)
    ridge = Ridge(alpha=model.alpha * X.shape[0]).fit(X, y)
    np.testing.assert_allclose(model.coef_, ridge.coef_, rtol=0, atol=1e-6)
    assert model.intercept_[0] == pytest.approx(ridge.intercept_, abs=1e-6)
    assert model.n_iter_ < FEW_HUNDRED


@pytest.mark.parametrize("alpha, l1_ratio", [(1.0, 0.9), (5.0, 0.5), (0.3, 1.0)])
def test_default_full_batch_reaches_elastic_nets_coefficients_and_zeros(diabetes, alpha, l1_ratio):
    X, y = diabetes
    penalty = "l1" if l1_ratio == 1.0 else "elasticnet"
    model = GDRegressor(batch_size="full", penalty=penalty, alpha=alpha, l1_ratio=l1_ratio)
    model.fit(X, y)
    enet = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, tol=1e-14, max_iter=100_000).fit(X, y)
    assert (enet.coef_ == 0).sum() >= 1, "the test needs a sparse optimum"
    np.testing.assert_allclose(model.coef_, enet.coef_, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(model.coef_ == 0, enet.coef_ == 0)
    assert model.n_iter_ < FEW_HUNDRED


def test_full_batch_reaches_weighted_ridge(diabetes):
    X, y = diabetes
    sw = np.random.RandomState(0).uniform(0.2, 3.0, size=X.shape[0])
    model = GDRegressor(batch_size="full", alpha=0.01).fit(X, y, sample_weight=sw)
    ridge = Ridge(alpha=0.01 * sw.sum()).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(model.coef_, ridge.coef_, rtol=0, atol=1e-6)
    assert model.intercept_[0] == pytest.approx(ridge.intercept_, abs=1e-6)


def test_weight_two_is_the_sample_twice(diabetes):
    X, y = diabetes
    sw = np.ones(X.shape[0])
    sw[:50] = 2.0
    weighted = GDRegressor(batch_size="full", penalty="elasticnet", alpha=0.5)
    weighted.fit(X, y, sample_weight=sw)
    repeated = GDRegressor(batch_size="full", penalty="elasticnet", alpha=0.5)
    repeated.fit(np.vstack([X, X[:50]]), np.concatenate([y, y[:50]]))
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=0, atol=1e-8)


def test_features_far_from_zero_do_not_slow_the_solver(diabetes):
    """The solver works in centred coordinates: shifting X changes only the intercept."""
    X, y = diabetes
    centred = GDRegressor(batch_size="full").fit(X, y)
    shifted = GDRegressor(batch_size="full").fit(X + 100.0, y)
    np.testing.assert_allclose(shifted.coef_, centred.coef_, rtol=0, atol=1e-6)
    assert shifted.n_iter_ < FEW_HUNDRED


def test_without_intercept_reaches_ridge_through_the_origin(diabetes):
    X, y = diabetes
    model = GDRegressor(batch_size="full", fit_intercept=False, alpha=0.01).fit(X, y)
    ridge = Ridge(alpha=0.01 * X.shape[0], fit_intercept=False).fit(X, y)
    np.testing.assert_allclose(model.coef_, ridge.coef_, rtol=0, atol=1e-6)
    assert model.intercept_[0] == 0.0


def test_a_pass_per_iteration_reaches_the_same_optimum(diabetes, pass_over_x):
    """The pass-over-X objective and the power-iteration step give the quadratic's answer."""
    X, y = diabetes
    model = GDRegressor(batch_size="full", penalty="elasticnet", alpha=1.0, l1_ratio=0.9)
    model.fit(X + 3.0, y)
    enet = ElasticNet(alpha=1.0, l1_ratio=0.9, tol=1e-14, max_iter=100_000).fit(X + 3.0, y)
    np.testing.assert_allclose(model.coef_, enet.coef_, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(model.coef_ == 0, enet.coef_ == 0)


@pytest.mark.parametrize(
    "gram, loss", [(True, "squared_error"), (False, "squared_error"), (False, "huber")]
)
def test_sparse_input_gives_the_dense_model(diabetes, gram, loss, monkeypatch):
    """Dense: the quadratic or the fused gradient kernel; CSR: the quadratic or sparse products."""
    if not gram:
        monkeypatch.setattr(full_batch, "GRAM_MAX_FEATURES", 0)
    X, y = diabetes
    X = np.where(np.abs(X) < 0.5, 0.0, X)
    params = dict(batch_size="full", penalty="elasticnet", alpha=0.5, loss=loss, epsilon=30.0)
    dense = GDRegressor(**params).fit(X, y)
    sparse = GDRegressor(**params).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=0, atol=1e-7)
    assert sparse.intercept_[0] == pytest.approx(dense.intercept_[0], abs=1e-7)


ALL_LOSSES = {**codes.REGRESSION_LOSS_CODES, **codes.CLASSIFICATION_LOSS_CODES}


@pytest.mark.parametrize("loss", list(ALL_LOSSES))
@pytest.mark.parametrize("weighted", [False, True])
def test_weighted_loss_derivatives_match_numpy(loss, weighted):
    from fastgd._kernels.linear.full_batch_numba import weighted_loss_derivatives

    rng = np.random.RandomState(0)
    code = ALL_LOSSES[loss]
    predictions = 3 * rng.randn(200)
    y = np.sign(rng.randn(200)) if code >= codes.HINGE else rng.randn(200)
    sw = rng.uniform(0.5, 2.0, 200) if weighted else np.empty(0)
    out = np.empty(200)
    total = weighted_loss_derivatives(code, predictions, y, sw, 0.3, out)
    weights = sw if weighted else np.ones(200)
    np.testing.assert_allclose(out, weights * loss_derivative(code, predictions, y, 0.3))
    assert total == pytest.approx(np.sum(weights * loss_value(code, predictions, y, 0.3)))


@pytest.mark.parametrize("gram", [True, False])
def test_float32_stays_float32_and_is_accurate(diabetes, gram, monkeypatch):
    if not gram:
        monkeypatch.setattr(full_batch, "GRAM_MAX_FEATURES", 0)
    X, y = diabetes
    X32 = X.astype(np.float32)
    m32 = GDRegressor(batch_size="full", alpha=0.01).fit(X32, y)
    assert m32.coef_.dtype == np.float32 and m32.intercept_.dtype == np.float32
    assert m32.predict(X32).dtype == np.float32
    # The same problem (X rounded to float32) solved in float64.
    m64 = GDRegressor(batch_size="full", alpha=0.01).fit(X32.astype(np.float64), y)
    # The quadratic's iterations are in float64; passes over X in float32,
    # whose rounding the conditioning of diabetes (≈ 500) amplifies.
    atol = 1e-5 if gram else 0.1
    np.testing.assert_allclose(m32.coef_, m64.coef_, rtol=0, atol=atol)
    assert m32.n_iter_ < (FEW_HUNDRED if gram else 1000)


@pytest.mark.parametrize("loss, epsilon", [("huber", 20.0), ("squared_epsilon_insensitive", 10.0)])
def test_smooth_losses_reach_the_minimum(diabetes, loss, epsilon):
    """Compared with SciPy's L-BFGS on the same objective (the tests' NumPy twin)."""
    X, y = diabetes
    alpha = 0.01
    model = GDRegressor(batch_size="full", loss=loss, epsilon=epsilon, alpha=alpha, tol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    code, sw = codes.REGRESSION_LOSS_CODES[loss], np.ones(X.shape[0])

    def f(params):
        return objective(X, y, sw, params[:-1], params[-1], code, epsilon, alpha, 0.0)

    reference = minimize(f, np.zeros(X.shape[1] + 1), method="L-BFGS-B", tol=1e-14)
    ours = np.concatenate([model.coef_, model.intercept_])
    assert f(ours) <= reference.fun + 1e-8
    np.testing.assert_allclose(ours, reference.x, rtol=0, atol=1e-3)


def test_loss_curve_is_the_objective_where_each_gradient_was_taken(diabetes):
    X, y = diabetes
    model = GDRegressor(batch_size="full", penalty="elasticnet", alpha=0.5, max_iter=400)
    model.fit(X, y)
    sw = np.ones(X.shape[0])
    l1, l2 = 0.5 * 0.15, 0.5 * 0.85
    final = objective(X, y, sw, model.coef_, model.intercept_[0], codes.SQUARED_ERROR, 0.0, l2, l1)
    assert model.loss_curve_[-1] == pytest.approx(final, rel=1e-10)
    assert model.loss_curve_[0] == pytest.approx(0.5 * np.mean(y**2), rel=1e-12)
    assert len(model.loss_curve_) == model.n_iter_
    assert model.t_ == model.n_iter_ + 1


def test_tol_none_runs_every_iteration(diabetes):
    X, y = diabetes
    model = GDRegressor(batch_size="full", tol=None, max_iter=30).fit(X, y)
    assert model.n_iter_ == 30
    converged = GDRegressor(batch_size="full").fit(X, y)
    assert converged.n_iter_ < 1000


def test_the_step_is_the_inverse_of_the_curvature(diabetes, pass_over_x):
    """Power iterations estimate λ_max from above, within their margin."""
    X, y = diabetes
    data = LinearData(X, y, np.ones(X.shape[0]))
    moments = full_batch.FeatureMoments(data, np.arange(X.shape[0]), center=True)
    exact = np.linalg.eigvalsh(np.cov(X.T, bias=True))[-1]
    estimate = moments.largest_eigenvalue()
    assert exact <= estimate <= full_batch.POWER_ITERATION_MARGIN * exact * (1 + 1e-6)


def test_partial_fit_takes_proximal_gradient_steps(diabetes):
    X, y = diabetes
    model = GDRegressor(batch_size="full")
    losses = [model.partial_fit(X, y).loss_curve_[-1] for _ in range(20)]
    assert np.all(np.diff(losses) < 0)  # a step of 1/L decreases the objective


def test_early_stopping_scores_every_iteration(diabetes):
    X, y = diabetes
    model = GDRegressor(batch_size="full", early_stopping=True, random_state=0).fit(X, y)
    assert len(model.validation_scores_) == model.n_iter_
    assert model.best_score_ > 0.3


def test_nan_in_x_is_reported_as_bad_input(diabetes):
    X, y = diabetes
    X = X.copy()
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        GDRegressor(batch_size="full").fit(X, y)


def test_loss_with_kinks_takes_plain_steps_from_the_curvature(diabetes):
    X, y = diabetes
    model = GDRegressor(batch_size="full", loss="epsilon_insensitive", epsilon=1.0).fit(X, y)
    assert model.score(X, y) > 0.5


def test_classifier_log_loss_reaches_logistic_regression(diabetes):
    X, y = diabetes
    labels = (y > np.median(y)).astype(int)
    C = 0.1
    model = GDClassifier(
        loss="log_loss", batch_size="full", alpha=1.0 / (C * X.shape[0]), tol=1e-12
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, labels)
    reference = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, labels)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=0, atol=1e-5)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, rtol=0, atol=1e-5)
