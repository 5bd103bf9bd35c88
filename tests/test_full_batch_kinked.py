"""Full-batch training of the losses with kinks: subgradient steps with a line search.

Hinge, perceptron and epsilon-insensitive losses have no curvature bound, so
``batch_size="full"`` takes proximal subgradient steps whose size a
backtracking line search sets (:class:`fastgd._engine.full_batch.SubgradientDescent`).
The steps are replayed by a NumPy twin, the objective must never rise, and the
fits must reach what long runs and scikit-learn reach on real data.
"""

import warnings

import numpy as np
import pytest
from naive_linear import loss_derivative, objective, soft_threshold
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.preprocessing import StandardScaler

from fastgd import GDClassifier, GDRegressor
from fastgd._engine.full_batch import BACKTRACK_GROWTH, BACKTRACK_SHRINK
from fastgd._kernels.runtime import codes


@pytest.fixture(scope="module")
def cancer():
    """Breast-cancer data, standardised features, labels 0 / 1."""
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def line_search_twin(X, y, loss, epsilon, l2, l1, n_iterations):
    """The solver's iterations in NumPy: centred coordinates, Polyak's first step.

    Returns the model's ``(w, b)`` after ``n_iterations`` trials.
    """
    n, d = X.shape
    sw = np.ones(n)
    means = X.mean(axis=0)

    def value_and_subgradient(w, b_centred):
        b = b_centred - w @ means
        dl = loss_derivative(loss, X @ w + b, y, epsilon)
        g_b = dl.mean()
        g_w = X.T @ dl / n + l2 * w - means * g_b  # chain rule of b = b' - w.x_mean
        return objective(X, y, sw, w, b, loss, epsilon, l2, l1), g_w, g_b

    w, b_centred = np.zeros(d), 0.0
    value, g_w, g_b = value_and_subgradient(w, b_centred)
    step = value / (g_w @ g_w + g_b * g_b)
    for _ in range(n_iterations):
        trial_w = soft_threshold(w - step * g_w, l1 * step)
        trial_b = b_centred - step * g_b
        trial_value, trial_g_w, trial_g_b = value_and_subgradient(trial_w, trial_b)
        if trial_value < value:
            w, b_centred, value, g_w, g_b = trial_w, trial_b, trial_value, trial_g_w, trial_g_b
            step *= BACKTRACK_GROWTH
        else:
            step *= BACKTRACK_SHRINK
    return w, b_centred - w @ means


@pytest.mark.parametrize("penalty, alpha", [("l2", 1e-3), ("l1", 1e-2)])
def test_epsilon_insensitive_steps_match_the_numpy_twin(diabetes, penalty, alpha):
    X, y = diabetes
    y = (y - y.mean()) / y.std()
    model = GDRegressor(
        batch_size="full",
        loss="epsilon_insensitive",
        epsilon=0.1,
        penalty=penalty,
        alpha=alpha,
        max_iter=40,
        tol=None,
    )
    model.fit(X, y)
    l1 = alpha if penalty == "l1" else 0.0
    w, b = line_search_twin(X, y, codes.EPSILON_INSENSITIVE, 0.1, alpha - l1, l1, n_iterations=40)
    np.testing.assert_allclose(model.coef_, w, rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.intercept_[0], b, rtol=0, atol=1e-10)


def test_hinge_steps_match_the_numpy_twin(cancer):
    X, labels = cancer
    model = GDClassifier(batch_size="full", loss="hinge", alpha=1e-4, max_iter=30, tol=None)
    model.fit(X, labels)
    y = np.where(labels == model.classes_[1], 1.0, -1.0)
    w, b = line_search_twin(X, y, codes.HINGE, 0.0, 1e-4, 0.0, n_iterations=30)
    np.testing.assert_allclose(model.coef_[0], w, rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.intercept_[0], b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("loss", ["hinge", "epsilon_insensitive"])
@pytest.mark.parametrize("penalty", ["l2", "elasticnet"])
def test_the_objective_never_rises(cancer, loss, penalty):
    X, y = cancer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = GDClassifier(
            batch_size="full", loss=loss, penalty=penalty, alpha=1e-3, max_iter=60, tol=None
        ).fit(X, y)
    curve = np.asarray(model.loss_curve_)
    assert curve.shape == (60,)
    assert np.all(np.diff(curve) <= 0)
    assert curve[-1] < curve[0]


def test_default_epsilon_insensitive_fit_is_as_good_as_scikit_learns(diabetes):
    # The adaptive schedule of plain steps this solver replaced ended at
    # R² < 0 here with tol=None (its rate only fell on a plateau).
    X, y = diabetes
    y = (y - y.mean()) / y.std()
    reference = SGDRegressor(loss="epsilon_insensitive", random_state=0).fit(X, y)
    for tol in (1e-3, None):
        model = GDRegressor(
            batch_size="full", loss="epsilon_insensitive", tol=tol, max_iter=300
        ).fit(X, y)
        assert model.score(X, y) >= reference.score(X, y) - 0.01


def test_hinge_reaches_the_optimum_of_a_long_run(cancer):
    X, y = cancer
    long_run = GDClassifier(batch_size="full", loss="hinge", max_iter=3000, tol=None).fit(X, y)
    model = GDClassifier(batch_size="full", loss="hinge").fit(X, y)
    best = long_run.loss_curve_[-1]
    assert model.n_iter_ < 1000
    assert model.loss_curve_[-1] <= best * 1.02
    reference = SGDClassifier(random_state=0).fit(X, y)
    assert model.score(X, y) >= reference.score(X, y) - 0.01


def test_l1_gives_exact_zeros(cancer):
    X, y = cancer
    model = GDClassifier(batch_size="full", loss="hinge", penalty="l1", alpha=0.02).fit(X, y)
    assert np.sum(model.coef_ == 0) >= 5
    assert model.score(X, y) > 0.9


def test_partial_fit_goes_on_with_the_last_step(cancer):
    X, y = cancer
    batched = GDClassifier(batch_size="full", loss="hinge", max_iter=10, tol=None).fit(X, y)
    model = GDClassifier(batch_size="full", loss="hinge")
    for _ in range(10):
        model.partial_fit(X, y, classes=[0, 1])
    # Each call starts from the model and the step the last call left, so
    # ten calls take the ten steps of one fit of ten iterations.
    np.testing.assert_allclose(model.coef_, batched.coef_, rtol=0, atol=1e-12)


@pytest.mark.parametrize("load", [load_breast_cancer, load_digits])
def test_perceptron_takes_batch_perceptron_steps(load):
    # Its objective is lowest at zero weights: a line search (or a Polyak
    # step, before) would leave the model there, at chance level.
    X, y = load(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model = GDClassifier(batch_size="full", loss="perceptron").fit(X, y)
    reference = SGDClassifier(loss="perceptron", random_state=0).fit(X, y)
    assert model.score(X, y) >= reference.score(X, y) - 0.02
    # Constant steps of 1 from zero weights: the first step is minus the
    # subgradient at zero, whatever the data.
    first = GDClassifier(batch_size="full", loss="perceptron", penalty=None, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        first.fit(X[:, :5], y == y[0])
    signs = np.where(y == y[0], 1.0, -1.0)
    means = X[:, :5].mean(axis=0)
    g_b = -signs.mean()
    g_w = X[:, :5].T @ -signs / len(y) - means * g_b
    np.testing.assert_allclose(first.coef_[0], -g_w, rtol=0, atol=1e-12)
