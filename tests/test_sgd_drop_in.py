"""GDRegressor and GDClassifier behave as SGDRegressor and SGDClassifier where they share a mode.

Per-sample plain SGD without shuffling visits the rows in the same order in
both libraries and takes the same steps, so the weights agree to rounding;
the validation split, the parameter checks and their messages are the same.
"""

import inspect
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDRegressor

from fastgd import GDRegressor

SAME_STEPS = dict(shuffle=False, max_iter=3, tol=None, random_state=0)


def fit_both(fastgd_cls, sklearn_cls, X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = fastgd_cls(**SAME_STEPS, **params).fit(X, y)
        theirs = sklearn_cls(**SAME_STEPS, **params).fit(X, y)
    return ours, theirs


@pytest.mark.parametrize(
    "params",
    [
        dict(),
        dict(loss="huber", penalty="elasticnet", l1_ratio=0.3, alpha=0.01),
        dict(learning_rate="constant", eta0=0.005, penalty="l1", alpha=0.01),
        dict(loss="huber", learning_rate="optimal", alpha=0.01),
        dict(loss="epsilon_insensitive", learning_rate="pa1", eta0=0.1, penalty=None),
        dict(loss="epsilon_insensitive", learning_rate="pa2", eta0=0.1, penalty="l2"),
        dict(average=10),
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "defaults",
)
@pytest.mark.parametrize("sparse", [False, True])
def test_regressor_takes_sgdregressors_steps(diabetes, params, sparse):
    X, y = diabetes
    y = (y - y.mean()) / y.std()
    ours, theirs = fit_both(GDRegressor, SGDRegressor, X, y, **params)
    if sparse:
        # scikit-learn decays the intercept's steps on sparse data (by 0.01);
        # fastgd gives sparse and dense input the same model (documented).
        ours = GDRegressor(**SAME_STEPS, **params).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-8, atol=1e-8)
    assert ours.t_ == theirs.t_


def test_fit_takes_sgdregressors_positional_parameters(diabetes):
    fit_parameters = list(inspect.signature(GDRegressor.fit).parameters)
    assert fit_parameters[:6] == ["self", "X", "y", "coef_init", "intercept_init", "sample_weight"]
    X, y = diabetes
    coef_init = np.full(X.shape[1], 3.0)
    started = GDRegressor(max_iter=1, tol=None, eta0=1e-9).fit(X, y, coef_init, 5.0)
    np.testing.assert_allclose(started.coef_, coef_init, rtol=1e-4)
    assert started.intercept_[0] == pytest.approx(5.0, rel=1e-4)


def test_l1_ratio_none_is_accepted_unless_the_penalty_is_elastic_net(diabetes):
    X, y = diabetes
    with_none = GDRegressor(l1_ratio=None, random_state=0, max_iter=5, tol=None).fit(X, y)
    default = GDRegressor(random_state=0, max_iter=5, tol=None).fit(X, y)
    np.testing.assert_array_equal(with_none.coef_, default.coef_)
    for estimator in (GDRegressor, SGDRegressor):
        with pytest.raises(ValueError, match="l1_ratio must be set when penalty is 'elasticnet'"):
            estimator(penalty="elasticnet", l1_ratio=None).fit(X, y)


def test_partial_fit_refuses_early_stopping_as_sgdregressor_does(diabetes):
    X, y = diabetes
    for estimator in (GDRegressor, SGDRegressor):
        with pytest.raises(ValueError, match="early_stopping should be False with partial_fit"):
            estimator(early_stopping=True).partial_fit(X, y)


def test_negative_power_t_gives_sgdregressors_future_warning(diabetes):
    X, y = diabetes
    for estimator in (GDRegressor, SGDRegressor):
        with pytest.warns(FutureWarning, match="Negative values for `power_t` are deprecated"):
            estimator(power_t=-0.1, max_iter=2, tol=None, eta0=1e-4).fit(X, y)


@pytest.mark.parametrize("random_state", [0, 7])
def test_early_stopping_holds_out_sgdregressors_rows(diabetes, random_state):
    X, y = diabetes
    sample_weight = np.ones(len(y))
    model = GDRegressor(early_stopping=True, random_state=random_state)
    train_rows, val_rows = model._validation_split(y, sample_weight)
    reference = SGDRegressor(early_stopping=True, random_state=random_state)
    validation_mask = reference._make_validation_split(y, sample_mask=sample_weight > 0)
    np.testing.assert_array_equal(val_rows, np.flatnonzero(validation_mask))
    np.testing.assert_array_equal(train_rows, np.flatnonzero(~validation_mask))


def test_without_shuffling_the_training_rows_are_visited_in_their_order(diabetes):
    """Early stopping holds rows out, and the rest are trained on in their original order."""
    X, y = diabetes
    params = dict(shuffle=False, max_iter=1, tol=None, random_state=3)
    split = GDRegressor(early_stopping=True, n_iter_no_change=5, **params).fit(X, y)
    train_rows, _ = GDRegressor(early_stopping=True, random_state=3)._validation_split(
        y, np.ones(len(y))
    )
    alone = GDRegressor(**params).fit(X[train_rows], y[train_rows])
    np.testing.assert_array_equal(split.coef_, alone.coef_)


def test_passive_aggressive_steps_need_their_loss_and_per_sample_sgd(diabetes):
    X, y = diabetes
    with pytest.raises(ValueError, match="'pa1' only works with loss 'epsilon_insensitive'"):
        GDRegressor(learning_rate="pa1").fit(X, y)
    with pytest.raises(ValueError, match="batch_size=1 and optimizer='sgd'"):
        GDRegressor(learning_rate="pa2", loss="epsilon_insensitive", batch_size=8).fit(X, y)


def test_a_fit_that_blows_up_in_its_first_epoch_raises(diabetes):
    """SGDRegressor returns weights of 1e10 here (it clips the loss derivative); the
    first epoch's loss is compared with the starting model's, and fastgd says so."""
    from fastgd.exceptions import DivergenceError

    X, y = diabetes
    with pytest.raises(DivergenceError, match="diverged"):
        GDRegressor(learning_rate="optimal", alpha=0.01, **SAME_STEPS).fit(X, y)


def test_an_eval_set_without_early_stopping_records_curves(diabetes):
    from sklearn.metrics import r2_score

    X, y = diabetes
    X_train, X_val, y_train, y_val = X[:300], X[300:], y[:300], y[300:]
    params = dict(max_iter=8, tol=None, random_state=0)
    watched = GDRegressor(**params).fit(X_train, y_train, eval_set=(X_val, y_val))
    plain = GDRegressor(**params).fit(X_train, y_train)
    np.testing.assert_array_equal(watched.coef_, plain.coef_)
    assert len(watched.validation_scores_) == len(watched.validation_loss_curve_) == 8
    assert watched.validation_scores_[-1] == pytest.approx(
        r2_score(y_val, watched.predict(X_val)), rel=1e-12
    )
    squared = 0.5 * np.mean((watched.predict(X_val) - y_val) ** 2)
    assert watched.validation_loss_curve_[-1] == pytest.approx(squared, rel=1e-12)
    assert watched.best_score_ == max(watched.validation_scores_)
    refit = watched.fit(X_train, y_train)
    assert not hasattr(refit, "validation_scores_")
