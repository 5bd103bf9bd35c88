"""Tests of MultiTaskRegressor: scikit-learn contract, masking, task weights,
target scaling, acceptance against one RidgeCV per task, errors."""

import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_linnerud
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastgd import MultiTaskRegressor
from fastgd.exceptions import DivergenceError
from fastgd.layers import Conv2D, Dense, Dropout, Flatten, Reshape

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

_EXPECTED_FAILURES = {
    # Stochastic mini-batch training: a weight of 2 is not the same as a
    # repeated sample (the batches differ), as for scikit-learn's MLP.
    "check_sample_weight_equivalence_on_dense_data": "mini-batch SGD is stochastic",
    "check_sample_weight_equivalence_on_sparse_data": "mini-batch SGD is stochastic",
}
_FLOAT32_FAILURES = {
    **_EXPECTED_FAILURES,
    # Predictions come out in the compute dtype (float32 here); the check wants float64.
    "check_regressor_multioutput": "float32 model, float32 predictions",
}


def _with_branches():
    return MultiTaskRegressor(
        branches=[
            ("first", [Dense(8, activation="relu")], [0]),
            ("all", [Dense(4, activation="tanh")], slice(None)),
        ],
        hidden_layer_sizes=(8,),
        task_layer_sizes=(4,),
        max_iter=50,
        random_state=0,
        dtype=np.float64,
        allow_overlap=True,  # "all" reads column 0 too
    )


def _careful():
    """A branch transformer, overlapping branches and tol=None."""
    return MultiTaskRegressor(
        branches=[
            ("scaled", [Dense(6, activation="tanh")], slice(None), MaxAbsScaler()),
            ("first", [], [0]),
        ],
        hidden_layer_sizes=(8,),
        allow_overlap=True,
        tol=None,
        learning_rate_init=0.01,
        max_iter=60,
        random_state=0,
        dtype=np.float64,
    )


@parametrize_with_checks(
    [MultiTaskRegressor(max_iter=50, random_state=0), _with_branches(), _careful()],
    expected_failed_checks=lambda est: (
        _FLOAT32_FAILURES if est.dtype == np.float32 else _EXPECTED_FAILURES
    ),
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_tags_declare_single_and_multi_output():
    tags = MultiTaskRegressor().__sklearn_tags__()
    assert tags.target_tags.multi_output
    # A 1-D y (one task) is accepted too, so single-output stays True.
    assert tags.target_tags.single_output
    assert tags.estimator_type == "regressor"


# --------------------------------------------------------------------- data
def _low_rank_problem(seed, n_train=100, n_test=1000, n_features=60, n_tasks=20, rank=3):
    """20 tasks whose coefficients share a rank-3 subspace, unit noise."""
    rng = np.random.RandomState(seed)
    B = rng.standard_normal((n_features, rank)) / np.sqrt(n_features)
    C = 2.0 * rng.standard_normal((rank, n_tasks))
    X = rng.standard_normal((n_train + n_test, n_features))
    Y = X @ B @ C + rng.standard_normal((n_train + n_test, n_tasks))
    return X[:n_train], Y[:n_train], X[n_train:], Y[n_train:]


def _ridge_per_task_r2(X_train, Y_train, X_test, Y_test):
    scores = []
    for t in range(Y_train.shape[1]):
        labelled = ~np.isnan(Y_train[:, t])
        ridge = RidgeCV(alphas=np.logspace(-3, 3, 13))
        ridge.fit(X_train[labelled], Y_train[labelled, t])
        scores.append(r2_score(Y_test[:, t], ridge.predict(X_test)))
    return float(np.mean(scores))


def _small_problem(n=120, n_tasks=3, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, 6))
    Y = X @ rng.standard_normal((6, n_tasks)) + 0.1 * rng.standard_normal((n, n_tasks))
    return X, Y


# -------------------------------------------------------------- acceptance
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("missing", [0.0, 0.5])
def test_low_rank_tasks_beat_one_ridge_per_task(seed, missing):
    X_train, Y_train, X_test, Y_test = _low_rank_problem(seed)
    if missing:
        Y_train = Y_train.copy()
        Y_train[np.random.RandomState(seed + 10).rand(*Y_train.shape) < missing] = np.nan
    # A linear rank-3 trunk: reduced-rank multi-task regression.
    model = MultiTaskRegressor(
        hidden_layer_sizes=(3,),
        activation="identity",
        alpha=1e-3,
        learning_rate_init=1e-2,
        batch_size=16,
        max_iter=300,
        random_state=0,
    ).fit(X_train, Y_train)
    ours = model.score(X_test, Y_test)
    ridge = _ridge_per_task_r2(X_train, Y_train, X_test, Y_test)
    # Measured: full labels 0.82-0.85 vs 0.68-0.75, half 0.75-0.80 vs 0.40-0.46.
    assert ours > ridge + (0.05 if not missing else 0.2), (ours, ridge)


def test_linnerud_end_to_end():
    X, Y = load_linnerud(return_X_y=True, as_frame=True)
    model = make_pipeline(
        StandardScaler(),
        MultiTaskRegressor(
            hidden_layer_sizes=(16,),
            batch_size=8,
            learning_rate_init=1e-2,
            max_iter=200,
            random_state=0,
        ),
    ).set_output(transform="pandas")
    model.fit(X, Y)
    pred = model.predict(X)
    reg = model[-1]
    assert pred.shape == (20, 3) and pred.dtype == np.float32  # the compute dtype
    assert list(reg.task_names_) == list(Y.columns)
    assert list(reg.feature_names_in_) == list(X.columns)
    np.testing.assert_allclose(
        reg.score_tasks(model[0].transform(X), Y),
        r2_score(Y, pred, multioutput="raw_values"),
        rtol=1e-6,  # float32 predictions: r2_score sums them in float32, score_tasks in float64
    )
    assert model.score(X, Y) == pytest.approx(r2_score(Y, pred))
    assert model.score(X, Y) > 0.3
    # Targets on their own scales (weights in the hundreds, pulse in tens).
    np.testing.assert_allclose(reg.target_mean_, Y.mean().to_numpy())
    huber = clone(model).set_params(
        multitaskregressor__loss="huber", multitaskregressor__task_layer_sizes=(4,)
    )
    assert np.isfinite(huber.fit(X, Y).score(X, Y))


# ---------------------------------------------------------------- masking
def test_masked_labels_get_exactly_zero_gradient():
    """Whatever sits at a masked position (NaN, inf, huge) changes nothing."""
    from fastgd._engine.network import Network
    from fastgd.multitask import _TaskLossTracker

    rng = np.random.RandomState(0)
    n, T = 16, 4
    net = Network(
        [("x", [], 5)],
        "concat",
        [Dense(6, activation="tanh")],
        T,
        None,
        np.float64,
        task_heads=[[Dense(3, activation="relu")] for _ in range(T)],
    )
    net.initialize(rng)
    X = rng.standard_normal((n, 5))
    y = rng.standard_normal((n, T))
    mask = (rng.rand(n, T) < 0.6).astype(np.float64)
    mask[:, 0] = 1.0
    loss = _TaskLossTracker(T, np.ones(T), 0)
    loss.make_buffers(n, np.float64)
    ws = net.make_workspace(n, True)

    def gradient(y_values):
        scores = net.forward([X], ws, n, True)
        dscores = ws.dscores[:n]
        total = loss(scores, (y_values, mask), dscores, n)
        net.backward(dscores, ws, n)
        return total, dscores.copy(), net.grads.copy()

    reference = gradient(np.where(mask > 0, y, 0.0))
    assert np.all(reference[1][mask == 0] == 0.0)
    for garbage in (np.nan, np.inf, 1e30):
        total, dscores, grads = gradient(np.where(mask > 0, y, garbage))
        assert total == reference[0]
        np.testing.assert_array_equal(dscores, reference[1])
        np.testing.assert_array_equal(grads, reference[2])


def test_unlabelled_sample_does_not_change_the_fit():
    """A row whose labels are all missing contributes no gradient: with full
    batches, no shuffling and no L2 term (which scales with the batch size),
    adding it leaves the model as it was."""
    X, Y = _small_problem(n=60)
    settings = dict(
        hidden_layer_sizes=(8,),
        task_layer_sizes=(3,),
        batch_size=1000,
        shuffle=False,
        alpha=0.0,
        max_iter=20,
        random_state=0,
        dtype=np.float64,
    )
    base = MultiTaskRegressor(**settings).fit(X, Y)
    extra_X = np.vstack([X[:30], 100.0 * np.ones((1, X.shape[1])), X[30:]])
    extra_Y = np.vstack([Y[:30], np.full((1, Y.shape[1]), np.nan), Y[30:]])
    extra = MultiTaskRegressor(**settings).fit(extra_X, extra_Y)
    np.testing.assert_allclose(extra._network.params, base._network.params, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(extra.loss_curve_, base.loss_curve_, rtol=1e-10)


def test_missing_labels_are_ignored_not_imputed():
    X, Y = _small_problem(n=300, n_tasks=2)
    # Task 1 labelled only on 40 % of the samples; its scaling and its fit
    # use those, never zeros or means in place of the rest.
    Y_missing = Y.copy()
    Y_missing[np.random.RandomState(1).rand(300) < 0.6, 1] = np.nan
    labelled = ~np.isnan(Y_missing[:, 1])
    model = MultiTaskRegressor(hidden_layer_sizes=(16,), max_iter=200, random_state=0)
    model.fit(X, Y_missing)
    assert model.target_mean_[1] == pytest.approx(Y[labelled, 1].mean())
    assert model.target_scale_[1] == pytest.approx(Y[labelled, 1].std())
    assert model.score_tasks(X, Y).min() > 0.9
    # score ignores NaN in y_true.
    scores = model.score_tasks(X, Y_missing)
    assert scores[1] == pytest.approx(r2_score(Y[labelled, 1], model.predict(X)[labelled, 1]))
    assert model.score(X, Y_missing) == pytest.approx(scores.mean())


# ------------------------------------------------------------ task weights
def test_zero_task_weight_leaves_the_other_tasks_untouched():
    X, Y = _small_problem(n=100, n_tasks=3)
    noisy = Y.copy()
    noisy[:, 0] = 1e3 * np.random.RandomState(5).standard_normal(100)
    settings = dict(
        hidden_layer_sizes=(8,), task_weights=[0.0, 1.0, 1.0], max_iter=15, random_state=0
    )
    a = MultiTaskRegressor(**settings).fit(X, Y)
    b = MultiTaskRegressor(**settings).fit(X, noisy)
    # The trunk and the other heads are bit-identical; only task 0 differs.
    np.testing.assert_array_equal(a.predict(X)[:, 1:], b.predict(X)[:, 1:])
    np.testing.assert_array_equal(a._network.head_layers[0].W, b._network.head_layers[0].W)
    c = MultiTaskRegressor(**{**settings, "task_weights": None}).fit(X, noisy)
    assert not np.array_equal(a.predict(X)[:, 1:], c.predict(X)[:, 1:])
    np.testing.assert_array_equal(a.task_weights_, [0.0, 1.0, 1.0])


def test_task_weight_decides_which_task_a_narrow_trunk_serves():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((300, 4))
    # Two unrelated tasks and a rank-1 linear trunk: it can serve only one.
    Y = np.column_stack([X[:, 0], X[:, 1]])
    r2 = {}
    for weights in ([10.0, 1.0], [1.0, 10.0]):
        model = MultiTaskRegressor(
            hidden_layer_sizes=(1,),
            activation="identity",
            task_weights=weights,
            learning_rate_init=1e-2,
            max_iter=100,
            random_state=0,
        ).fit(X, Y)
        r2[tuple(weights)] = model.score_tasks(X, Y)
    assert r2[(10.0, 1.0)][0] > 0.9 > r2[(10.0, 1.0)][1]
    assert r2[(1.0, 10.0)][1] > 0.9 > r2[(1.0, 10.0)][0]


# ---------------------------------------------------------- target scaling
def test_tasks_on_very_different_scales_train_together():
    rng = np.random.RandomState(0)

    def data(n, noise):
        X = rng.standard_normal((n, 8))
        small = np.sin(X[:, 0]) + 0.5 * X[:, 1] + noise * 0.1 * rng.standard_normal(n)
        large = 1e4 * (X[:, 2] * X[:, 3] + 0.5 * X[:, 1]) + noise * 1e3 * rng.standard_normal(n)
        return X, np.column_stack([small, large])

    X, Y = data(400, 1.0)
    X_test, Y_test = data(400, 0.0)
    settings = dict(hidden_layer_sizes=(32,), max_iter=100, random_state=0)
    scaled = MultiTaskRegressor(**settings).fit(X, Y)
    unscaled = MultiTaskRegressor(scale_targets=False, **settings).fit(X, Y)
    scaled_r2 = scaled.score_tasks(X_test, Y_test)
    unscaled_r2 = unscaled.score_tasks(X_test, Y_test)
    # Measured: scaled [0.91, 0.91]; unscaled [0.83, 0.00].
    assert scaled_r2.min() > 0.85, scaled_r2
    assert unscaled_r2.min() < scaled_r2.min() - 0.3, unscaled_r2
    np.testing.assert_array_equal(unscaled.target_mean_, [0.0, 0.0])
    np.testing.assert_array_equal(unscaled.target_scale_, [1.0, 1.0])


def test_huber_resists_outliers():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((400, 5))
    Y = X @ rng.standard_normal((5, 2))
    Y_train = Y.copy()
    Y_train[rng.rand(400) < 0.1, 0] += 50.0  # 10 % gross outliers on task 0
    settings = dict(
        hidden_layer_sizes=(16,),
        activation="identity",
        max_iter=100,
        random_state=0,
        learning_rate_init=1e-2,
    )
    squared = MultiTaskRegressor(**settings).fit(X, Y_train)
    huber = MultiTaskRegressor(loss="huber", huber_delta=0.5, **settings).fit(X, Y_train)
    assert huber.score_tasks(X, Y)[0] > squared.score_tasks(X, Y)[0] + 0.05


# ------------------------------------------------------------ behaviour
def test_one_dimensional_y_is_one_task():
    X, Y = _small_problem(n_tasks=1)
    model = MultiTaskRegressor(hidden_layer_sizes=(8,), max_iter=50, random_state=0)
    model.fit(X, Y[:, 0])
    pred = model.predict(X)
    assert pred.shape == (120,)
    assert model.n_tasks_ == 1
    assert model.score(X, Y[:, 0]) == pytest.approx(r2_score(Y[:, 0], pred))
    column = clone(model).fit(X, Y)
    assert column.predict(X).shape == (120, 1)
    np.testing.assert_array_equal(column.predict(X)[:, 0], pred)


def test_identity_activation_gives_a_reduced_rank_linear_model():
    X, Y = _small_problem(n=200, n_tasks=5)
    model = MultiTaskRegressor(
        hidden_layer_sizes=(2,),
        activation="identity",
        max_iter=30,
        random_state=0,
        dtype=np.float64,
    ).fit(X, Y)
    Z = np.random.RandomState(1).standard_normal((50, 6))
    centred = model.predict(Z) - model.predict(np.zeros((1, 6)))
    singular = np.linalg.svd(centred, compute_uv=False)
    assert singular[2] < 1e-10 * singular[0]  # rank 2
    # Linear: the prediction of a sum of inputs is the sum of the effects.
    zero = model.predict(np.zeros((1, 6)))
    np.testing.assert_allclose(
        model.predict(Z[:1] + Z[1:2]) - zero, centred[:1] + centred[1:2], atol=1e-10
    )


def test_task_heads_and_loss_curves():
    X, Y = _small_problem(n=128, n_tasks=3)
    model = MultiTaskRegressor(
        hidden_layer_sizes=(8,),
        task_layer_sizes=(4, 3),
        alpha=0.0,
        batch_size=32,
        max_iter=12,
        tol=None,
        random_state=0,
        dtype=np.float64,
    ).fit(X, Y)
    assert model.n_iter_ == 12
    assert model.task_loss_curves_.shape == (3, 12)
    # No missing labels, full batches, λ = 1, no penalty: the objective of an
    # epoch is the sum of the tasks' losses.
    np.testing.assert_allclose(model.loss_curve_, model.task_loss_curves_.sum(axis=0), rtol=1e-10)
    assert np.all(model.task_loss_curves_[:, -1] < model.task_loss_curves_[:, 0])
    assert len(model._network.task_slot) == 3
    # 6·8+8, then per task (8·4+4)+(4·3+3)+(3+1).
    assert model.n_params_ == 56 + 3 * (36 + 15 + 4)


def test_multimodal_branches_feed_the_trunk():
    rng = np.random.RandomState(0)
    images = rng.rand(200, 1, 4, 4)
    meta = rng.standard_normal((200, 3))
    X = np.hstack([images.reshape(200, -1), meta])
    Y = np.column_stack([images.mean(axis=(1, 2, 3)) * 4, meta[:, 0] - meta[:, 1]])
    model = MultiTaskRegressor(
        branches=[
            (
                "image",
                [Reshape((1, 4, 4)), Conv2D(4, 3, activation="relu"), Flatten()],
                slice(0, 16),
            ),
            ("meta", [Dense(8, activation="tanh"), Dropout(0.1)], slice(16, 19)),
        ],
        hidden_layer_sizes=(16,),
        learning_rate_init=1e-2,
        max_iter=60,
        random_state=0,
    ).fit(X, Y)
    assert model.score(X, Y) > 0.7
    params = model.get_params()
    assert params["image__1__filters"] == 4
    model.set_params(image__1__filters=2)
    assert model.branches[0][1][1].filters == 2


def test_grid_search_over_the_trunk():
    X, Y = _small_problem(n=90)
    search = GridSearchCV(
        MultiTaskRegressor(max_iter=20, random_state=0),
        {"hidden_layer_sizes": [(4,), (8,)], "activation": ["relu", "identity"]},
        cv=3,
    ).fit(X, Y)
    assert search.best_estimator_.predict(X).shape == Y.shape


def test_pickle_round_trip_and_continue_training():
    X, Y = _small_problem()
    Y = Y.copy()
    Y[::3, 2] = np.nan
    model = MultiTaskRegressor(
        hidden_layer_sizes=(8,), task_layer_sizes=(4,), max_iter=5, random_state=0
    ).fit(X, Y)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    assert restored.score(X, Y) == model.score(X, Y)
    restored.partial_fit(X, Y)
    assert restored.n_iter_ == model.n_iter_ + 1
    assert restored.task_loss_curves_.shape == (3, model.n_iter_ + 1)


def test_partial_fit_keeps_scaling_and_allows_unlabelled_tasks_later():
    X, Y = _small_problem()
    model = MultiTaskRegressor(hidden_layer_sizes=(8,), random_state=0)
    model.partial_fit(X, Y)
    mean = model.target_mean_.copy()
    Y_later = Y + 0.1
    Y_later[:, 1] = np.nan  # no label for task 1 in this batch
    model.partial_fit(X, Y_later)
    np.testing.assert_array_equal(model.target_mean_, mean)
    assert model.n_iter_ == 2
    with pytest.raises(ValueError, match="y has 2 tasks but MultiTaskRegressor was fitted with 3"):
        model.partial_fit(X, Y[:, :2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reproducible_from_random_state(dtype):
    X, Y = _small_problem()
    Y = Y.copy()
    Y[::4, 0] = np.nan
    branches = [
        ("a", [Dense(6, activation="relu"), Dropout(0.3)], slice(0, 4)),
        ("b", [], slice(4, 6)),
    ]

    def fit(seed):
        return MultiTaskRegressor(
            branches=branches,
            hidden_layer_sizes=(8,),
            task_layer_sizes=(3,),
            max_iter=4,
            random_state=seed,
            dtype=dtype,
            early_stopping=True,
            validation_fraction=0.2,
        ).fit(X, Y)

    a, b, c = fit(0), fit(0), fit(1)
    np.testing.assert_array_equal(a._network.params, b._network.params)
    assert a.loss_curve_ == b.loss_curve_
    np.testing.assert_array_equal(a.task_loss_curves_, b.task_loss_curves_)
    assert a.validation_scores_ == b.validation_scores_
    assert not np.array_equal(a._network.params, c._network.params)
    assert a._network.params.dtype == dtype
    assert a.predict(X).dtype == dtype


def test_user_arrays_are_not_modified():
    X, Y = _small_problem()
    Y = Y.copy()
    Y[::5, 1] = np.nan
    X_copy, Y_copy = X.copy(), Y.copy()
    w = np.linspace(0.5, 2.0, len(X))
    w_copy = w.copy()
    model = MultiTaskRegressor(
        hidden_layer_sizes=(8,), max_iter=3, random_state=0, dtype=np.float64
    )
    model.fit(X, Y, sample_weight=w)
    model.predict(X)
    model.score(X, Y, sample_weight=w)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(Y, Y_copy)  # NaN stay NaN
    np.testing.assert_array_equal(w, w_copy)


def test_sample_weight_emphasises_samples():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((300, 3))
    # Two groups with opposite relations; the heavy group wins.
    group = np.arange(300) < 150
    Y = np.where(group, 1.0, -1.0)[:, None] * X[:, :1] * np.array([[1.0, 2.0]])
    w = np.where(group, 20.0, 1.0)
    model = MultiTaskRegressor(
        hidden_layer_sizes=(8,),
        activation="identity",
        max_iter=60,
        random_state=0,
        learning_rate_init=1e-2,
    ).fit(X, Y, sample_weight=w)
    assert model.score(X[group], Y[group]) > 0.5 > model.score(X[~group], Y[~group])


def test_early_stopping_restores_best_weights():
    X, Y = _small_problem(n=200)
    model = MultiTaskRegressor(
        hidden_layer_sizes=(16,),
        early_stopping=True,
        validation_fraction=0.25,
        n_iter_no_change=3,
        max_iter=60,
        learning_rate_init=0.05,
        random_state=0,
    ).fit(X, Y)
    assert len(model.validation_scores_) == model.n_iter_ == len(model.loss_curve_)
    assert model.best_score_ == max(model.validation_scores_)


def test_early_stopping_needs_labels_in_the_validation_split():
    X, Y = _small_problem(n=100)
    with pytest.raises(ValueError, match="at least 2 labels of some task"):
        MultiTaskRegressor(early_stopping=True, validation_fraction=0.01, max_iter=2).fit(X, Y)


def test_warm_start_continues():
    X, Y = _small_problem()
    model = MultiTaskRegressor(hidden_layer_sizes=(8,), max_iter=2, warm_start=True, random_state=0)
    model.fit(X, Y)
    first = model._network
    before = first.params.copy()
    model.fit(X, Y)
    assert model._network is first and not np.array_equal(first.params, before)
    model.set_params(hidden_layer_sizes=(5,))
    model.fit(X, Y)
    assert model._network is not first


# ----------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task_weights": [1.0, 1.0]}, r"task_weights must hold one weight per task \(3\)"),
        ({"task_weights": [1.0, -1.0, 1.0]}, r"task_weights must be finite and non-negative"),
        ({"task_weights": [0.0, 0.0, 0.0]}, r"task_weights are all 0"),
        ({"hidden_layer_sizes": (8, 0)}, r"hidden_layer_sizes must hold positive ints"),
        ({"task_layer_sizes": ("a",)}, r"task_layer_sizes must hold positive ints"),
        ({"activation": "softmax"}, r"'activation' parameter"),
        ({"loss": "absolute_error"}, r"'loss' parameter"),
        ({"huber_delta": 0.0}, r"'huber_delta' parameter"),
        ({"dtype": np.int32}, r"'dtype' parameter"),
        ({"branches": [("a", [Dense(2)], [0, 25])]}, r"Branch 'a': column index 25 is out"),
        ({"branches": [("alpha", [Dense(2)], [0])]}, r"clashes with a parameter"),
        (
            {"branches": [("img", [Reshape((3, 3))], slice(0, 6))]},
            r"Branch 'img', layer 0 \(Reshape\)",
        ),
    ],
)
def test_bad_parameters_raise_clear_errors(kwargs, match):
    X, Y = _small_problem()
    with pytest.raises(ValueError, match=match):
        MultiTaskRegressor(max_iter=1, **kwargs).fit(X, Y)


def test_bad_targets_raise_clear_errors():
    X, Y = _small_problem()
    model = MultiTaskRegressor(max_iter=1)
    Y_bad = Y.copy()
    Y_bad[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"Task 1 has no label: every value of column 1"):
        model.fit(X, Y_bad)
    frame = pd.DataFrame(Y_bad, columns=["height", "weight", "age"])
    with pytest.raises(ValueError, match=r"Task 1 \('weight'\) has no label"):
        model.fit(X, frame)
    Y_bad = Y.copy()
    Y_bad[3, 0] = np.inf
    with pytest.raises(ValueError, match="Input y contains infinity"):
        model.fit(X, Y_bad)
    with pytest.raises(ValueError, match="y must be 1-D .* or 2-D"):
        model.fit(X, Y[:, :, None])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        model.fit(X, Y[:-1])
    with pytest.raises(ValueError, match="y has no column"):
        model.fit(X, Y[:, :0])
    with pytest.raises(ValueError, match="requires y to be passed"):
        model.fit(X, None)
    Y_half = Y.copy()
    Y_half[60:, 0] = np.nan
    w = np.ones(len(X))
    w[:60] = 0.0
    with pytest.raises(ValueError, match="Task 0 has no labelled sample with a positive"):
        model.fit(X, Y_half, sample_weight=w)


def test_bad_inputs_x():
    X, Y = _small_problem()
    X_bad = X.copy()
    X_bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN or infinity"):
        MultiTaskRegressor(max_iter=1).fit(X_bad, Y)
    model = MultiTaskRegressor(max_iter=1, random_state=0).fit(X, Y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :4])
    with pytest.raises(ValueError, match="y has 2 tasks but the model has 3"):
        model.score(X, Y[:, :2])


def test_divergence_raises():
    X, Y = _small_problem()
    model = MultiTaskRegressor(
        hidden_layer_sizes=(16,),
        optimizer="sgd",
        learning_rate_init=1e8,
        alpha=0.0,
        scale_targets=False,
        max_iter=50,
        random_state=0,
    )
    with pytest.raises(DivergenceError):
        model.fit(X * 1e3, Y * 1e3)


def test_docstring_examples_run():
    import doctest

    import fastgd.multitask

    result = doctest.testmod(fastgd.multitask, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_thread_count_does_not_change_the_model():
    import numba
    from threadpoolctl import threadpool_limits

    X, Y = _small_problem(200)
    Y = Y.copy()
    Y[::3, 1] = np.nan
    before = numba.get_num_threads()
    params = []
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            model = MultiTaskRegressor(
                hidden_layer_sizes=(16,), task_layer_sizes=(4,), max_iter=3, random_state=0
            )
            # The ahead-of-time kernels follow OpenMP's limit.
            with threadpool_limits(limits=threads, user_api="openmp"):
                params.append(model.fit(X, Y)._network.params.copy())
    finally:
        numba.set_num_threads(before)
    for p in params[1:]:
        np.testing.assert_array_equal(p, params[0])


def test_verbose_prints_one_line_per_epoch(capsys):
    X, Y = _small_problem()
    MultiTaskRegressor(hidden_layer_sizes=(4,), max_iter=3, verbose=1, random_state=0).fit(X, Y)
    assert capsys.readouterr().out.count("-- Epoch") == 3


# ------------------------------------------- schedules, callbacks, verbose
def test_schedule_and_callback_parameters_have_fusion_classifiers_defaults():
    from fastgd import FusionClassifier

    params, fusion = MultiTaskRegressor().get_params(), FusionClassifier().get_params()
    for name in ("learning_rate", "power_t", "callbacks"):
        assert params[name] == fusion[name], name
    assert (params["learning_rate"], params["power_t"], params["callbacks"]) == (
        "constant",
        0.5,
        None,
    )


def test_callbacks_see_every_epoch_and_can_stop_training():
    from fastgd.callbacks import EpochReport, HistoryLogger

    X, Y = _small_problem()
    log = HistoryLogger()
    seen = []

    def stop_after_four(estimator, report):
        assert isinstance(report, EpochReport)
        seen.append(
            (
                estimator.n_iter_,
                len(estimator.loss_curve_),
                estimator.task_loss_curves_.shape,
                estimator.predict(X),
            )
        )
        return report.epoch >= 4

    model = MultiTaskRegressor(
        hidden_layer_sizes=(8,), callbacks=[log, stop_after_four], tol=None, random_state=0
    ).fit(X, Y)
    assert model.n_iter_ == 4
    assert log.column("epoch") == [1, 2, 3, 4]
    assert log.column("loss") == model.loss_curve_
    assert log.column("learning_rate") == [1e-3] * 4
    assert all(s > 0 for s in log.column("seconds"))
    assert [s[:3] for s in seen] == [(k, k, (3, k)) for k in (1, 2, 3, 4)]
    # the estimator seen by a callback predicts with the weights of that epoch
    np.testing.assert_array_equal(seen[-1][3], model.predict(X))
    assert not np.array_equal(seen[0][3], seen[-1][3])
    # a model with a (picklable) callback still pickles
    restored = pickle.loads(pickle.dumps(model.set_params(callbacks=[log])))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))


def test_callbacks_receive_validation_scores_and_partial_fit_epochs():
    from fastgd.callbacks import HistoryLogger

    X, Y = _small_problem(n=200)
    log = HistoryLogger()
    model = MultiTaskRegressor(
        hidden_layer_sizes=(8,), early_stopping=True, max_iter=6, callbacks=[log], random_state=0
    ).fit(X, Y)
    assert log.column("validation_score") == model.validation_scores_
    assert model.validation_scores_[-1] > model.validation_scores_[0]
    log.history.clear()
    inc = MultiTaskRegressor(hidden_layer_sizes=(8,), callbacks=[log], random_state=0)
    inc.partial_fit(X, Y)
    inc.partial_fit(X, Y)
    assert log.column("epoch") == [1, 1] and log.column("loss") == inc.loss_curve_


def test_a_callback_that_is_not_callable_is_named():
    X, Y = _small_problem()
    with pytest.raises(ValueError, match="callbacks must be callables; got 'log'"):
        MultiTaskRegressor(callbacks=["log"]).fit(X, Y)


def test_verbose_line_shows_loss_validation_score_rate_and_time(capsys):
    X, Y = _small_problem(n=200)
    model = MultiTaskRegressor(
        hidden_layer_sizes=(4,),
        early_stopping=True,
        learning_rate="invscaling",
        max_iter=2,
        tol=None,
        verbose=1,
        random_state=0,
    ).fit(X, Y)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("-- Epoch")]
    assert len(lines) == 2
    n_updates = int(np.ceil(180 / 32))  # 200 samples less the 20 held out
    for epoch, line in enumerate(lines, start=1):
        loss, score = model.loss_curve_[epoch - 1], model.validation_scores_[epoch - 1]
        rate = 1e-3 / (epoch * n_updates) ** 0.5
        assert re.fullmatch(
            rf"-- Epoch {epoch}: loss {loss:.6g}, validation score {score:.6g}, "
            rf"learning rate {rate:.4g}, \d+\.\d{{3}} s",
            line,
        ), line


def test_invscaling_reports_and_uses_the_decayed_rate():
    from fastgd.callbacks import HistoryLogger

    X, Y = _small_problem()
    log = HistoryLogger()
    kwargs = dict(
        hidden_layer_sizes=(8,),
        optimizer="sgd",
        learning_rate_init=0.05,
        batch_size=40,
        max_iter=3,
        tol=None,
        random_state=0,
    )
    model = MultiTaskRegressor(learning_rate="invscaling", power_t=0.3, callbacks=[log], **kwargs)
    model.fit(X, Y)
    # 120 samples in batches of 40: 3 updates per epoch
    np.testing.assert_allclose(log.column("learning_rate"), [0.05 / t**0.3 for t in (3, 6, 9)])
    constant = MultiTaskRegressor(**kwargs).fit(X, Y)
    assert not np.allclose(model.predict(X), constant.predict(X))
    # one full-batch update: the first rate is learning_rate_init (1^power_t = 1)
    first = dict(kwargs, max_iter=1, batch_size=120)
    np.testing.assert_array_equal(
        MultiTaskRegressor(**first).fit(X, Y).predict(X),
        MultiTaskRegressor(learning_rate="invscaling", **first).fit(X, Y).predict(X),
    )


def test_invscaling_counts_updates_across_partial_fit_calls():
    from fastgd.callbacks import HistoryLogger

    X, Y = _small_problem()
    log = HistoryLogger()
    model = MultiTaskRegressor(
        hidden_layer_sizes=(8,),
        learning_rate="invscaling",
        power_t=0.5,
        batch_size=40,
        callbacks=[log],
        random_state=0,
    )
    for _ in range(3):
        model.partial_fit(X, Y)
    np.testing.assert_allclose(log.column("learning_rate"), [1e-3 / t**0.5 for t in (3, 6, 9)])


def test_adaptive_divides_the_rate_on_plateaus():
    from fastgd.callbacks import HistoryLogger

    X, Y = _small_problem()
    log = HistoryLogger()
    # tol=1e9: nothing after the first epoch counts as an improvement, so
    # every n_iter_no_change=2 epochs is a plateau: /5 until below 1e-6.
    kwargs = dict(hidden_layer_sizes=(8,), tol=1e9, n_iter_no_change=2, max_iter=100)
    model = MultiTaskRegressor(
        learning_rate="adaptive", callbacks=[log], random_state=0, **kwargs
    ).fit(X, Y)
    assert model.n_iter_ == 13
    expected = [1e-3] * 3 + [1e-3 / 5**k for k in range(1, 6) for _ in range(2)]
    np.testing.assert_allclose(log.column("learning_rate"), expected)
    assert MultiTaskRegressor(random_state=0, **kwargs).fit(X, Y).n_iter_ == 3


def test_bad_schedule_parameters_are_rejected():
    X, Y = _small_problem()
    with pytest.raises(ValueError, match="'learning_rate' parameter"):
        MultiTaskRegressor(learning_rate="optimal").fit(X, Y)
    with pytest.raises(ValueError, match="'power_t' parameter"):
        MultiTaskRegressor(power_t="half").fit(X, Y)


# ------------------------------------------------------------------ pickles
@pytest.mark.parametrize(
    "params",
    [
        {},
        {
            "optimizer": "momentum",
            "learning_rate": "invscaling",
            "learning_rate_init": 0.05,
            "task_layer_sizes": (3,),
            "dtype": np.float64,
        },
        {
            "learning_rate": "adaptive",
            "branches": [("a", [Dense(6, activation="tanh"), Dropout(0.3)], slice(None))],
        },
    ],
    ids=["adam", "momentum-invscaling", "adaptive-dropout"],
)
def test_partial_fit_after_a_pickle_round_trip_continues_exactly(params):
    X, Y = _small_problem(n=150)
    Y = Y.copy()
    Y[::4, 2] = np.nan
    model = MultiTaskRegressor(hidden_layer_sizes=(8,), batch_size=16, random_state=0, **params)
    kept, moved, restarted = clone(model), clone(model), clone(model)
    for start in range(0, 150, 50):
        rows = slice(start, start + 50)
        for estimator in (kept, moved, restarted):
            estimator.partial_fit(X[rows], Y[rows])
        moved = pickle.loads(pickle.dumps(moved))
        # Control: what unpickling did before the trainer was kept.
        restarted = pickle.loads(pickle.dumps(restarted))
        restarted.__dict__.pop("_trainer", None)
    assert moved._trainer.step_count == kept._trainer.step_count == 3 * 4
    np.testing.assert_array_equal(moved._network.params, kept._network.params)
    np.testing.assert_array_equal(moved._trainer.state_1, kept._trainer.state_1)
    np.testing.assert_array_equal(moved.predict(X), kept.predict(X))
    assert moved.loss_curve_ == kept.loss_curve_
    np.testing.assert_array_equal(moved.task_loss_curves_, kept.task_loss_curves_)
    assert not np.array_equal(restarted._network.params, kept._network.params)


def test_pickle_size_does_not_grow_with_n_samples():
    sizes = {}
    for n in (100, 5000):
        X, Y = _small_problem(n=n)
        fitted = MultiTaskRegressor(hidden_layer_sizes=(8,), max_iter=3, tol=None, random_state=0)
        streamed = MultiTaskRegressor(hidden_layer_sizes=(8,), batch_size=n, random_state=0)
        sizes[n] = (
            len(pickle.dumps(fitted.fit(X, Y))),
            # batch_size=n: a pickled workspace would grow with n
            len(pickle.dumps(streamed.partial_fit(X, Y))),
        )
    for small, large in zip(sizes[100], sizes[5000], strict=True):
        assert abs(large - small) < 256, sizes
    assert max(sizes[5000]) < 32 * 1024, sizes  # X alone is 240 kB


def test_the_layout_of_y_does_not_change_the_model():
    # A DataFrame's values (what dask-ml hands over from a dask DataFrame)
    # are often Fortran-ordered; the target statistics must not depend on it.
    X, Y = _small_problem()
    model = MultiTaskRegressor(hidden_layer_sizes=(8,), max_iter=3, tol=None, random_state=0)
    c_order = clone(model).fit(X, np.ascontiguousarray(Y))
    f_order = clone(model).fit(X, np.asfortranarray(Y))
    frame = clone(model).fit(X, pd.DataFrame(np.asfortranarray(Y)))
    for other in (f_order, frame):
        np.testing.assert_array_equal(other.target_mean_, c_order.target_mean_)
        np.testing.assert_array_equal(other.target_scale_, c_order.target_scale_)
        np.testing.assert_array_equal(other._network.params, c_order._network.params)


def test_a_dask_block_key_as_y_is_explained():
    # dask-ml's Incremental hands over 2-D Dask-array blocks of y by key.
    X, Y = _small_problem()
    with pytest.raises(ValueError, match=r"the key of a block of a Dask array.*dask DataFrame"):
        MultiTaskRegressor().partial_fit(X[:2], ("array-0123abcd", 0))


def test_task_head_weights_are_reported_per_task_and_are_the_model():
    # Task heads are computed stacked; coefs_ / intercepts_ still give each
    # task's own layers, and a NumPy forward pass from them is the model.
    rng = np.random.RandomState(0)
    X = rng.standard_normal((80, 5))
    Y = np.column_stack([X[:, 0] ** 2, X[:, 1] - X[:, 2], np.abs(X[:, 3])])
    Y[rng.rand(*Y.shape) < 0.2] = np.nan
    model = MultiTaskRegressor(
        hidden_layer_sizes=(6,),
        task_layer_sizes=(4, 2),
        activation="tanh",
        max_iter=5,
        tol=None,
        random_state=0,
        dtype=np.float64,
    ).fit(X, Y)
    assert model.layer_names_ == ["trunk__0"] + [
        f"task_{t}__{part}" for t in range(3) for part in ("0", "1", "output")
    ]
    assert [W.shape for W in model.coefs_] == [(5, 6)] + [(6, 4), (4, 2), (2, 1)] * 3
    coefs, intercepts = model.coefs_, model.intercepts_
    trunk = np.tanh(X @ coefs[0] + intercepts[0])
    scores = []
    for t in range(3):
        H = trunk
        for i in range(1, 3):
            H = np.tanh(H @ coefs[3 * t + i] + intercepts[3 * t + i])
        scores.append(H @ coefs[3 * t + 3] + intercepts[3 * t + 3])
    expected = np.hstack(scores) * model.target_scale_ + model.target_mean_
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-10, atol=1e-12)
    # Copies: changing them does not change the model.
    coefs[1][:] = 0.0
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-10, atol=1e-12)


def test_stacked_task_heads_predict_each_row_whatever_the_rest_of_the_call():
    # The heads' batched products must not make a row's prediction depend on
    # the other rows of the call (float32, scikit-learn's check).
    from sklearn.utils.estimator_checks import check_methods_subset_invariance

    model = MultiTaskRegressor(task_layer_sizes=(4,), dtype=np.float32, random_state=0)
    check_methods_subset_invariance("MultiTaskRegressor", model)
