"""GDClassifier's learning_rate="auto" with the squared losses: no step overshoots.

scikit-learn's "optimal" schedule (Bottou's t₀) sizes its first step for a loss
with a bounded derivative; with squared_hinge, squared_error or
squared_epsilon_insensitive the weights of SGDClassifier grow by many orders of
magnitude (about 1e13 on scaled breast-cancer data), which fastgd reports as a
divergence. "auto" raises t₀ so that no step exceeds half the stable step of
any training row (:func:`fastgd._engine.linear_defaults.stable_optimal_t0`).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from fastgd import GDClassifier
from fastgd._engine.full_batch import LOSS_CURVATURE
from fastgd._engine.linear_defaults import stable_optimal_t0
from fastgd._kernels.runtime import codes
from fastgd.exceptions import DivergenceError

SQUARED_LOSSES = ["squared_hinge", "squared_error", "squared_epsilon_insensitive"]


def _split(loader, scale):
    X, y = loader(return_X_y=True)
    if scale:
        X = StandardScaler().fit_transform(X)
    return train_test_split(X.astype(np.float64), y, random_state=0)


@pytest.mark.parametrize("loader", [load_breast_cancer, load_digits])
@pytest.mark.parametrize(
    "params",
    [{}, {"batch_size": 32}, {"optimizer": "momentum"}, {"class_weight": "balanced"}],
    ids=["per-sample", "mini-batch", "momentum", "balanced"],
)
def test_squared_hinge_defaults_train_as_well_as_scikit_learn(loader, params):
    X_train, X_test, y_train, y_test = _split(loader, scale=True)
    reference = SGDClassifier(loss="squared_hinge", random_state=0).fit(X_train, y_train)
    model = GDClassifier(loss="squared_hinge", random_state=0, **params).fit(X_train, y_train)
    assert np.isfinite(model.coef_).all()
    # Coefficients of a sensible size (scikit-learn's reach ~1e13 here).
    assert np.abs(model.coef_).max() < 100
    assert model.score(X_test, y_test) >= reference.score(X_test, y_test) - 0.03


@pytest.mark.parametrize("loss", SQUARED_LOSSES)
def test_every_squared_loss_trains_on_unscaled_features(loss):
    X_train, X_test, y_train, y_test = _split(load_breast_cancer, scale=False)
    for X in (X_train, sp.csr_matrix(X_train)):
        model = GDClassifier(loss=loss, random_state=0).fit(X, y_train)
        assert model.score(X_test, y_test) > 0.85  # majority class: 0.63


def test_an_explicit_optimal_schedule_keeps_scikit_learns_first_step():
    # The deliberate difference that "auto" avoids: with scikit-learn's t₀
    # the squared hinge's weights run away, and fastgd says so.
    X_train, _, y_train, _ = _split(load_breast_cancer, scale=True)
    with pytest.raises(DivergenceError):
        GDClassifier(loss="squared_hinge", learning_rate="optimal", random_state=0).fit(
            X_train, y_train
        )


def test_the_raised_t0_bounds_every_rows_first_step():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((50, 4)) * [1.0, 10.0, 0.1, 3.0]
    weights = rng.uniform(0.5, 2.0, 50)
    alpha, momentum = 1e-4, 0.9
    t0 = stable_optimal_t0(codes.SQUARED_HINGE, alpha, momentum, X, weights, True)
    first_step = 1.0 / (alpha * t0)
    curvature = LOSS_CURVATURE[codes.SQUARED_HINGE]
    largest = (weights * ((X**2).sum(axis=1) + 1.0)).max()
    # Half the stable step 2 / (c·sᵢ‖[xᵢ, 1]‖²) of the worst row, shortened by 1 − momentum.
    np.testing.assert_allclose(first_step * curvature * largest, 1.0 - momentum)
    sparse_t0 = stable_optimal_t0(
        codes.SQUARED_HINGE, alpha, momentum, sp.csr_matrix(X), weights, True
    )
    np.testing.assert_allclose(sparse_t0, t0)
