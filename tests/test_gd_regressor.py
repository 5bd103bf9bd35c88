"""Behaviour of GDRegressor on real and synthetic data."""

import pickle
import re
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_linear_problem
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, Ridge, SGDRegressor
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastgd import GDRegressor
from fastgd.exceptions import DivergenceError

OPTIMIZER_STEPS = {
    "sgd": 0.01,
    "momentum": 0.002,
    "nesterov": 0.002,
    "adagrad": 0.5,
    "rmsprop": 0.02,
    "adam": 0.05,
}


# ----------------------------------------------------------------- accuracy


def test_matches_sgdregressor_on_diabetes(diabetes):
    X, y = diabetes
    ours = GDRegressor(random_state=0).fit(X, y)
    theirs = SGDRegressor(random_state=0).fit(X, y)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), abs=1e-3)
    assert ours.intercept_.shape == theirs.intercept_.shape == (1,)
    assert ours.coef_.shape == theirs.coef_.shape


def test_full_batch_l2_converges_to_ridge(diabetes):
    X, y = diabetes
    alpha = 0.01
    model = GDRegressor(
        batch_size="full", learning_rate="constant", eta0=0.2, alpha=alpha, max_iter=20000, tol=None
    ).fit(X, y)
    ridge = Ridge(alpha=alpha * X.shape[0]).fit(X, y)
    np.testing.assert_allclose(model.coef_, ridge.coef_, rtol=1e-6, atol=1e-6)
    assert model.intercept_[0] == pytest.approx(ridge.intercept_, rel=1e-8)
    # Full-batch GD with a step below 1/L decreases the objective every epoch.
    assert np.all(np.diff(model.loss_curve_) <= 1e-9)


def test_full_batch_with_sample_weight_converges_to_weighted_ridge(diabetes):
    X, y = diabetes
    sw = np.random.RandomState(0).uniform(0.2, 3.0, size=X.shape[0])
    alpha = 0.01
    model = GDRegressor(
        batch_size="full", learning_rate="constant", eta0=0.2, alpha=alpha, max_iter=20000, tol=None
    ).fit(X, y, sample_weight=sw)
    ridge = Ridge(alpha=alpha * sw.sum()).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(model.coef_, ridge.coef_, rtol=1e-6, atol=1e-6)


def test_full_batch_elastic_net_reaches_exact_optimum_with_exact_zeros(diabetes):
    X, y = diabetes
    model = GDRegressor(
        batch_size="full",
        penalty="elasticnet",
        alpha=4.0,
        l1_ratio=0.9,
        learning_rate="constant",
        eta0=0.2,
        max_iter=20000,
        tol=None,
    ).fit(X, y)
    enet = ElasticNet(alpha=4.0, l1_ratio=0.9, tol=1e-12, max_iter=100000).fit(X, y)
    np.testing.assert_allclose(model.coef_, enet.coef_, atol=1e-6)
    assert (enet.coef_ == 0).sum() >= 2, "the test needs a sparse optimum"
    np.testing.assert_array_equal(model.coef_ == 0, enet.coef_ == 0)


@pytest.mark.parametrize("optimizer", list(OPTIMIZER_STEPS))
@pytest.mark.parametrize("batch_size", [1, 32, "full"])
def test_every_optimizer_learns_diabetes(diabetes, optimizer, batch_size):
    X, y = diabetes
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    eta0 = OPTIMIZER_STEPS[optimizer] * (1 if batch_size == 1 else 10)
    # Plain stochastic steps need a decaying rate to settle; the adaptive
    # optimizers decay their own steps, and full batches have no noise.
    plain = optimizer in ("sgd", "momentum", "nesterov")
    schedule = "invscaling" if batch_size != "full" and plain else "constant"
    model = GDRegressor(
        optimizer=optimizer,
        batch_size=batch_size,
        learning_rate=schedule,
        eta0=eta0,
        max_iter=3000 if batch_size == "full" else 300,
        tol=None,
        random_state=0,
    ).fit(X_train, y_train)
    # Within 0.03 of the least-squares fit's held-out R² (0.359 on this split).
    least_squares = Ridge(alpha=1e-6).fit(X_train, y_train).score(X_test, y_test)
    assert model.score(X_test, y_test) > least_squares - 0.03
    assert np.isfinite(model.loss_curve_).all()


@pytest.mark.parametrize("loss", ["huber", "epsilon_insensitive", "squared_epsilon_insensitive"])
def test_robust_losses_learn_diabetes(diabetes, loss):
    X, y = diabetes
    epsilon = 1.0 if loss != "huber" else 50.0
    model = GDRegressor(
        loss=loss,
        epsilon=epsilon,
        eta0=0.05 if loss == "epsilon_insensitive" else 0.01,
        learning_rate="constant",
        max_iter=200,
        random_state=0,
    ).fit(X, y)
    assert model.score(X, y) > 0.3


def test_huber_resists_outliers():
    rng = np.random.RandomState(0)
    X = rng.randn(400, 3)
    y = X @ np.array([1.0, -2.0, 0.5])
    y[:20] += 200.0  # gross outliers
    kwargs = dict(learning_rate="constant", eta0=0.01, max_iter=200, tol=None, random_state=0)
    huber = GDRegressor(loss="huber", epsilon=1.0, **kwargs).fit(X, y)
    squared = GDRegressor(**kwargs).fit(X, y)
    truth = np.array([1.0, -2.0, 0.5])
    assert np.abs(huber.coef_ - truth).max() < 0.1
    assert np.abs(squared.coef_ - truth).max() > np.abs(huber.coef_ - truth).max()


# --------------------------------------------------- backends, dtypes, sparse


@pytest.mark.parametrize(
    "params",
    [
        dict(),
        dict(penalty="elasticnet", l1_ratio=0.5, alpha=0.01),
        # A small rate: Adam's scale-free steps would amplify the backends'
        # different roundings of near-zero gradients (flat Huber directions).
        dict(optimizer="adam", loss="huber", epsilon=5.0, learning_rate="invscaling"),
        dict(average=10, loss="huber", epsilon=5.0, learning_rate="optimal", alpha=0.1),
    ],
)
def test_backends_give_the_same_model(diabetes, params):
    X, y = diabetes
    cython = GDRegressor(backend="cython", random_state=1, **params).fit(X, y)
    numba = GDRegressor(backend="numba", random_state=1, **params).fit(X, y)
    np.testing.assert_allclose(cython.coef_, numba.coef_, rtol=1e-6, atol=1e-9)
    assert cython.intercept_[0] == pytest.approx(numba.intercept_[0], rel=1e-6)
    assert cython.n_iter_ == numba.n_iter_


@pytest.mark.parametrize(
    "params",
    [
        dict(penalty="elasticnet", alpha=0.01, l1_ratio=0.5),
        dict(optimizer="rmsprop", penalty="l1", alpha=0.01, learning_rate="invscaling"),
        dict(batch_size=16, penalty="elasticnet", alpha=0.01),
        dict(batch_size="full", learning_rate="constant", eta0=0.1, penalty="l1", alpha=0.05),
    ],
)
@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_sparse_and_dense_input_give_the_same_model(params, backend):
    X, y = make_linear_problem(n=300, d=20, density=0.3, seed=2)
    kwargs = dict(max_iter=30, tol=None, random_state=0, backend=backend, **params)
    sparse = GDRegressor(**kwargs).fit(X, y)
    dense = GDRegressor(**kwargs).fit(X.toarray(), y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sparse.predict(X), dense.predict(X.toarray()), rtol=1e-10)


@pytest.mark.parametrize("batch_size", [1, 32, "full"])
@pytest.mark.parametrize("sparse", [False, True])
def test_float32_stays_float32(diabetes, batch_size, sparse):
    X, y = diabetes
    X32 = X.astype(np.float32)
    kwargs = dict(
        batch_size=batch_size,
        random_state=0,
        max_iter=50,
        tol=None,
        learning_rate="constant",
        eta0=0.01 if batch_size == 1 else 0.1,
    )
    X_in = sp.csr_matrix(X32) if sparse else X32
    m32 = GDRegressor(**kwargs).fit(X_in, y)
    m64 = GDRegressor(**kwargs).fit(X, y)
    assert m32.coef_.dtype == np.float32
    assert m32.intercept_.dtype == np.float32
    assert m32.predict(X_in).dtype == np.float32
    np.testing.assert_allclose(m32.coef_, m64.coef_, rtol=1e-3, atol=1e-2)


def test_c_contiguous_input_is_not_copied():
    n_samples, n_features = 20000, 100
    rng = np.random.RandomState(0)
    X = rng.randn(n_samples, n_features)
    y = X[:, 0] + 0.1 * rng.randn(n_samples)
    for batch_size in (1, 256):
        # Warm up first: imports and Numba compilation allocate memory too.
        GDRegressor(max_iter=1, tol=None, batch_size=batch_size).fit(X[:300], y[:300])
        tracemalloc.start()
        GDRegressor(max_iter=2, tol=None, batch_size=batch_size, random_state=0).fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # O(n + d) working memory: a few vectors of n numbers, no copy of X.
        assert peak < 8 * n_samples * 8, f"peak {peak} bytes for X of {X.nbytes} bytes"


# ------------------------------------------------- partial_fit, warm start, ES


def test_partial_fit_epochs_equal_fit_epochs(diabetes):
    X, y = diabetes
    fitted = GDRegressor(max_iter=5, tol=None, random_state=3).fit(X, y)
    incremental = GDRegressor(random_state=3)
    for _ in range(5):
        incremental.partial_fit(X, y)
    np.testing.assert_array_equal(fitted.coef_, incremental.coef_)
    assert incremental.n_iter_ == 5
    assert incremental.t_ == fitted.t_ == 5 * X.shape[0] + 1


def test_partial_fit_rejects_a_different_number_of_features(diabetes):
    X, y = diabetes
    model = GDRegressor().partial_fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(X[:, :5], y)


def test_warm_start_continues_from_previous_coefficients(diabetes):
    X, y = diabetes
    first = GDRegressor(max_iter=3, tol=None, warm_start=True, random_state=0).fit(X, y)
    coef, intercept = first.coef_.copy(), first.intercept_.copy()
    first_curve = list(first.loss_curve_)
    first.fit(X, y)
    from_init = GDRegressor(max_iter=3, tol=None, random_state=0).fit(
        X, y, coef_init=coef, intercept_init=intercept
    )
    np.testing.assert_array_equal(first.coef_, from_init.coef_)
    assert first.loss_curve_[0] < first_curve[0]


def test_early_stopping_on_a_random_split(diabetes):
    X, y = diabetes
    model = GDRegressor(
        early_stopping=True,
        n_iter_no_change=3,
        max_iter=1000,
        random_state=0,
        learning_rate="constant",
        eta0=0.01,
    ).fit(X, y)
    assert model.n_iter_ < 1000
    assert len(model.validation_scores_) == model.n_iter_
    assert model.best_score_ == max(model.validation_scores_)
    assert model.best_score_ > 0.3


def test_early_stopping_on_a_user_validation_set(diabetes):
    X, y = diabetes
    X_train, X_val, y_train, y_val = train_test_split(X, y, random_state=0)
    model = GDRegressor(
        early_stopping=True, n_iter_no_change=3, random_state=0, learning_rate="constant", eta0=0.01
    )
    model.fit(X_train, y_train, eval_set=(X_val, y_val))
    # The last recorded score is the R² of the final model on the given set.
    assert model.validation_scores_[-1] == pytest.approx(r2_score(y_val, model.predict(X_val)))
    # All training rows were used for training (no split): t_ counts them all.
    assert model.t_ == model.n_iter_ * X_train.shape[0] + 1


def test_stopping_rule_and_convergence_warning(diabetes):
    X, y = diabetes
    model = GDRegressor(tol=1e-3, n_iter_no_change=5, random_state=0).fit(X, y)
    assert model.n_iter_ < 1000
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        GDRegressor(max_iter=2, random_state=0).fit(X, y)


def test_adaptive_schedule_divides_the_step_on_plateaus(diabetes):
    X, y = diabetes
    model = GDRegressor(learning_rate="adaptive", eta0=0.05, random_state=0).fit(X, y)
    assert model._state.eta < 0.05
    assert model.score(X, y) > 0.45


def test_average_uses_the_averaged_weights(diabetes):
    X, y = diabetes
    # Averaging from the second epoch on (after X.shape[0] steps).
    model = GDRegressor(average=X.shape[0], max_iter=10, tol=None, random_state=0).fit(X, y)
    np.testing.assert_array_equal(model.coef_, model._state.avg_params[:-1])
    assert not np.array_equal(model.coef_, model._state.coef)
    assert model.score(X, y) > 0.45


def test_sample_weight_zero_is_like_dropping_the_sample(diabetes):
    X, y = diabetes
    sw = np.ones(X.shape[0])
    sw[::3] = 0.0
    kwargs = dict(batch_size="full", learning_rate="constant", eta0=0.2, max_iter=300, tol=None)
    weighted = GDRegressor(**kwargs).fit(X, y, sample_weight=sw)
    dropped = GDRegressor(**kwargs).fit(X[sw > 0], y[sw > 0])
    np.testing.assert_allclose(weighted.coef_, dropped.coef_, rtol=1e-10)


def test_integer_sample_weight_is_like_repeating_the_sample(diabetes):
    X, y = diabetes
    sw = np.random.RandomState(0).randint(1, 4, size=X.shape[0])
    kwargs = dict(batch_size="full", learning_rate="constant", eta0=0.2, max_iter=300, tol=None)
    weighted = GDRegressor(**kwargs).fit(X, y, sample_weight=sw)
    repeated = GDRegressor(**kwargs).fit(np.repeat(X, sw, axis=0), np.repeat(y, sw))
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-9)


# ----------------------------------------------------- bad input and faults


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), y), "NaN"),
        (
            lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.inf, X), y),
            "infinity",
        ),
        (lambda X, y: (X, np.r_[np.nan, y[1:]]), "NaN"),
        (lambda X, y: (X, y[:-1]), "inconsistent numbers of samples"),
        (lambda X, y: (X[:, :, None], y), "dim 3"),
    ],
)
def test_bad_training_data_is_rejected(diabetes, make_bad, message):
    X, y = make_bad(*diabetes)
    with pytest.raises(ValueError, match=message):
        GDRegressor().fit(X, y)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(loss="absolute"), "loss"),
        (dict(optimizer="lbfgs"), "optimizer"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size="half"), "batch_size"),
        (dict(learning_rate="cyclic"), "learning_rate"),
        (dict(backend="cuda"), "backend"),
        (dict(eta0=-1.0), "eta0"),
        (dict(learning_rate="optimal", alpha=0.0), "alpha must be > 0"),
    ],
)
def test_bad_parameters_are_named(diabetes, params, message):
    with pytest.raises(ValueError, match=message):
        GDRegressor(**params).fit(*diabetes)


def test_other_bad_calls_are_named(diabetes):
    X, y = diabetes
    model = GDRegressor(max_iter=5, tol=None).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :4])
    with pytest.raises(ValueError, match="coef_init"):
        GDRegressor().fit(X, y, coef_init=np.zeros(3))
    with pytest.raises(ValueError, match="eval_set"):
        GDRegressor(early_stopping=True).fit(X, y, eval_set=X)
    with pytest.raises(ValueError, match="sample_weight"):
        GDRegressor().fit(X, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="Negative values.*sample_weight"):
        GDRegressor().fit(X, y, sample_weight=-np.ones(X.shape[0]))


@pytest.mark.parametrize("batch_size", [1, 32, "full"])
@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_divergence_raises_a_clear_error(diabetes, batch_size, backend):
    X, y = diabetes
    model = GDRegressor(
        learning_rate="constant", eta0=50.0, batch_size=batch_size, backend=backend, random_state=0
    )
    with pytest.raises(DivergenceError, match="diverged.*eta0"):
        model.fit(X, y)
    assert not hasattr(model, "coef_")


def test_user_arrays_are_not_modified(diabetes):
    X, y = diabetes
    for X_in in (X.copy(), X.astype(np.float32), sp.csr_matrix(X)):
        before = X_in.copy()
        y_in, sw = y.copy(), np.ones_like(y)
        init = np.ones(X.shape[1])
        GDRegressor(max_iter=3, tol=None, penalty="elasticnet").fit(
            X_in, y_in, sample_weight=sw, coef_init=init
        )
        after = X_in
        if sp.issparse(X_in):
            before, after = before.toarray(), X_in.toarray()
        np.testing.assert_array_equal(after, before)
        np.testing.assert_array_equal(y_in, y)
        np.testing.assert_array_equal(sw, 1.0)
        np.testing.assert_array_equal(init, 1.0)


# ------------------------------------------- reproducibility and ecosystem


@pytest.mark.parametrize(
    "params",
    [
        dict(),
        dict(batch_size=64, optimizer="adam"),
        dict(batch_size="full", learning_rate="constant", eta0=0.1),
    ],
)
def test_same_random_state_gives_a_bit_identical_model(diabetes, params):
    X, y = diabetes
    a = GDRegressor(random_state=7, max_iter=20, tol=None, **params).fit(X, y)
    b = GDRegressor(random_state=7, max_iter=20, tol=None, **params).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    if params.get("batch_size") != "full":
        c = GDRegressor(random_state=8, max_iter=20, tol=None, **params).fit(X, y)
        assert not np.array_equal(a.coef_, c.coef_)


def test_fits_in_threads_equal_serial_fits():
    X, y = make_linear_problem(n=40000, d=30, seed=4)
    configs = [
        dict(backend="cython"),
        dict(backend="numba"),
        dict(batch_size=256, optimizer="adam"),
        # 40,000 x 31 values: large enough for the parallel path
        dict(batch_size="full", learning_rate="constant", eta0=0.1),
    ] * 2

    def fit(params):
        return GDRegressor(random_state=0, max_iter=5, tol=None, **params).fit(X, y).coef_

    serial = [fit(p) for p in configs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(fit, configs))
    for a, b in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(a, b)


def test_pickle_round_trip(diabetes):
    X, y = diabetes
    model = GDRegressor(random_state=0, optimizer="adam").fit(X, y)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(X), model.predict(X))
    clone.partial_fit(X, y)  # the optimizer state travels too
    assert len(pickle.dumps(model)) < 20000


def test_grid_search_in_a_pipeline_with_two_jobs(diabetes):
    X, y = diabetes
    pipe = make_pipeline(StandardScaler(), GDRegressor(random_state=0))
    grid = {"gdregressor__alpha": [1e-4, 1.0], "gdregressor__batch_size": [1, 32]}
    parallel = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X, y)
    serial = GridSearchCV(pipe, grid, cv=3, n_jobs=1).fit(X, y)
    np.testing.assert_allclose(
        parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"], rtol=1e-12
    )
    assert parallel.best_score_ > 0.4


def test_dataframe_input_records_feature_names(diabetes):
    pd = pytest.importorskip("pandas")
    X, y = diabetes
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    model = GDRegressor(max_iter=5, tol=None).fit(frame, y)
    np.testing.assert_array_equal(model.feature_names_in_, frame.columns)
    np.testing.assert_allclose(model.predict(frame), model.predict(X))


# ------------------------------------------------------- callbacks, verbose


def test_callbacks_see_every_epoch_and_can_stop_training(diabetes):
    from fastgd.callbacks import HistoryLogger

    X, y = diabetes
    log = HistoryLogger()
    seen_coefs = []

    def stop_after_four(estimator, report):
        seen_coefs.append(estimator.coef_.copy())
        return report.epoch >= 4

    model = GDRegressor(callbacks=[log, stop_after_four], tol=None, random_state=0).fit(X, y)
    assert model.n_iter_ == 4
    assert log.column("epoch") == [1, 2, 3, 4]
    assert log.column("loss") == model.loss_curve_
    # invscaling: the reported rate is eta0 / t**power_t at the end of each epoch
    expected_rates = [0.01 / (1 + k * X.shape[0]) ** 0.25 for k in (1, 2, 3, 4)]
    np.testing.assert_allclose(log.column("learning_rate"), expected_rates)
    # the estimator seen by the callback holds the model of that epoch
    np.testing.assert_array_equal(seen_coefs[-1], model.coef_)
    assert not np.array_equal(seen_coefs[0], seen_coefs[-1])


def test_callbacks_receive_validation_scores(diabetes):
    from fastgd.callbacks import HistoryLogger

    X, y = diabetes
    log = HistoryLogger()
    model = GDRegressor(early_stopping=True, callbacks=[log], random_state=0).fit(X, y)
    assert log.column("validation_score") == model.validation_scores_


def test_verbose_prints_one_line_per_epoch(diabetes, capsys):
    X, y = diabetes
    model = GDRegressor(verbose=1, max_iter=3, tol=None, random_state=0).fit(X, y)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("-- Epoch")]
    assert len(lines) == model.n_iter_ == 3
    assert "loss" in lines[0] and "learning rate" in lines[0]


def test_a_callback_that_is_not_callable_is_named(diabetes):
    with pytest.raises(ValueError, match="callbacks must be callables"):
        GDRegressor(callbacks=["log"]).fit(*diabetes)


def test_progress_bar_counts_epochs(diabetes):
    pytest.importorskip("tqdm")
    import io

    from fastgd.callbacks import ProgressBar

    X, y = diabetes
    stream = io.StringIO()
    bar = ProgressBar(file=stream, mininterval=0)
    model = GDRegressor(callbacks=[bar], max_iter=7, tol=None, random_state=0).fit(X, y)
    assert model.n_iter_ == 7
    assert bar._bar is None  # closed when the fit ended
    assert "7/7" in stream.getvalue()
    pickle.loads(pickle.dumps(model))  # a model with a progress bar still pickles


@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_any_sparse_format_and_index_width_gives_the_same_model(backend):
    X, y = make_linear_problem(n=200, d=30, density=0.2, seed=6)
    wide = X.copy()
    wide.indices, wide.indptr = wide.indices.astype(np.int64), wide.indptr.astype(np.int64)
    kwargs = dict(backend=backend, max_iter=5, tol=None, random_state=0)
    reference = GDRegressor(**kwargs).fit(X, y).coef_
    for variant in (wide, X.tocoo(), X.tocsc()):
        np.testing.assert_array_equal(GDRegressor(**kwargs).fit(variant, y).coef_, reference)


def test_divergence_is_judged_within_one_call():
    """A later fit call on data with larger losses is not mistaken for divergence."""
    from fastgd._engine.training import TrainingHistory, run_epochs

    history = TrainingHistory(tol=None, n_iter_no_change=5, early_stopping=False)
    run_epochs(lambda epoch: 1.0, history, 2)  # e.g. an earlier partial_fit chunk
    run_epochs(lambda epoch: 50.0, history, 2)  # a later chunk: larger, but steady
    assert history.loss_curve == [1.0, 1.0, 50.0, 50.0]
    with pytest.raises(DivergenceError, match="grew from 50 to 5e"):
        losses = iter([50.0, 5e4])
        run_epochs(lambda epoch: next(losses), history, 2)


def test_cython_backend_without_the_extension_names_the_imported_folder(monkeypatch):
    import os

    import fastgd
    import fastgd._linear_base as linear_base

    monkeypatch.setattr(linear_base, "cython_available", lambda: False)
    X, y = np.ones((4, 2)), np.arange(4.0)
    with pytest.raises(ValueError, match=re.escape(os.path.dirname(fastgd.__file__))):
        GDRegressor(backend="cython").fit(X, y)
    assert GDRegressor(backend="auto", max_iter=2, tol=None).fit(X, y)._backend() == "numba"
