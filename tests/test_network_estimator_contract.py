"""FusionClassifier and MultiTaskRegressor as careful as GDRegressor.

Divergence, dtypes, decision_function, class_weight, learned weights,
eval_set and validation curves, strict branch columns, tol=None.
"""

import warnings

import numpy as np
import pytest
from conftest import make_fusion_problem
from sklearn.datasets import load_diabetes, load_digits, load_linnerud
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss, r2_score
from sklearn.utils.class_weight import compute_class_weight

from fastgd import FusionClassifier, MultiTaskRegressor
from fastgd.exceptions import DivergenceError
from fastgd.layers import ConcatPrevious, Conv2D, Dense, Dropout, Flatten, Reshape


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:600] / 16).astype(np.float32), y[:600]


@pytest.fixture(scope="module")
def linnerud():
    X, Y = load_linnerud(return_X_y=True)
    return (X - X.mean(axis=0)) / X.std(axis=0), Y


def _quiet(fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit()


# ---------------------------------------------------------------- divergence
@pytest.mark.parametrize(
    "optimizer, learning_rate",
    [
        ("adam", 1e3),  # blows up within the first epoch (loss ~1e12 before)
        ("adam", 1.0),  # blows up, then stalls at chance level
        ("sgd", 10.0),  # likewise with plain SGD
    ],
)
def test_a_diverging_fusion_fit_raises(digits, optimizer, learning_rate):
    X, y = digits
    clf = FusionClassifier(
        optimizer=optimizer, learning_rate_init=learning_rate, max_iter=15, random_state=0
    )
    with pytest.raises(DivergenceError, match="diverged"):
        _quiet(lambda: clf.fit(X, y))


@pytest.mark.parametrize("optimizer, learning_rate", [("adam", 0.01), ("sgd", 1.0)])
def test_a_large_but_sound_step_does_not_raise(digits, optimizer, learning_rate):
    X, y = digits
    clf = FusionClassifier(
        optimizer=optimizer, learning_rate_init=learning_rate, max_iter=15, random_state=0
    )
    assert _quiet(lambda: clf.fit(X, y)).score(X, y) > 0.9


def test_a_diverging_multitask_fit_raises(linnerud):
    X, Y = linnerud
    reg = MultiTaskRegressor(learning_rate_init=1e3, max_iter=20, random_state=0)
    with pytest.raises(DivergenceError, match="diverged"):
        _quiet(lambda: reg.fit(X, Y))


def test_a_blow_up_the_fit_recovers_from_is_not_a_divergence():
    # Adam at 0.3 on the diabetes data: the first epoch's loss is ~16 times the
    # initial model's, then the fit recovers to a good model.
    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    reg = MultiTaskRegressor(learning_rate_init=0.3, max_iter=30, random_state=0)
    _quiet(lambda: reg.fit(X, y))
    assert max(reg.loss_curve_) > 5 * reg.loss_curve_[-1]
    assert reg.score(X, y) > 0.6


def test_a_heavy_penalty_is_not_taken_for_a_divergence(digits):
    # The initial objective includes the (large) penalty: a fit that shrinks
    # the weights towards a constant model has not diverged.
    X, y = digits
    clf = FusionClassifier(alpha=30.0, max_iter=5, random_state=0)
    assert _quiet(lambda: clf.fit(X, y)).loss_curve_[-1] < clf.loss_curve_[0]


# --------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_follow_the_compute_dtype(dtype, digits, linnerud):
    X, y = digits
    clf = _quiet(lambda: FusionClassifier(max_iter=2, random_state=0, dtype=dtype).fit(X, y))
    for method in (clf.predict_proba, clf.predict_log_proba, clf.decision_function):
        assert method(X[:5]).dtype == dtype
    X, Y = linnerud
    reg = _quiet(lambda: MultiTaskRegressor(max_iter=2, random_state=0, dtype=dtype).fit(X, Y))
    assert reg.predict(X).dtype == dtype


# --------------------------------------------------------- decision_function
def test_decision_function_is_the_class_scores(digits):
    X, y = digits
    clf = _quiet(lambda: FusionClassifier(max_iter=5, random_state=0, dtype=np.float64).fit(X, y))
    scores = clf.decision_function(X)
    assert scores.shape == (X.shape[0], 10)
    np.testing.assert_array_equal(clf.classes_[scores.argmax(axis=1)], clf.predict(X))
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    np.testing.assert_allclose(shifted / shifted.sum(axis=1, keepdims=True), clf.predict_proba(X))

    binary = np.where(y == 3, "three", "other")
    clf = _quiet(lambda: FusionClassifier(max_iter=5, random_state=0).fit(X, binary))
    decision = clf.decision_function(X)
    assert decision.shape == (X.shape[0],)
    np.testing.assert_array_equal(
        np.where(decision > 0, clf.classes_[1], clf.classes_[0]), clf.predict(X)
    )
    log_proba = clf.predict_log_proba(X)
    np.testing.assert_allclose(decision, log_proba[:, 1] - log_proba[:, 0], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- class_weight
def _fit_params(clf):
    return clf._network.params.copy()


def test_class_weight_multiplies_the_sample_weights(digits):
    X, y = digits
    rng = np.random.RandomState(0)
    sample_weight = rng.uniform(0.5, 2.0, size=y.shape[0])
    weights = {0: 3.0, 5: 0.5}
    per_class = np.array([weights.get(c, 1.0) for c in range(10)])

    def fit(**kwargs):
        return _quiet(
            lambda: FusionClassifier(
                max_iter=3, random_state=0, dtype=np.float64, **kwargs.pop("params", {})
            ).fit(X, y, **kwargs)
        )

    by_dict = fit(params={"class_weight": weights}, sample_weight=sample_weight)
    by_hand = fit(sample_weight=sample_weight * per_class[y])
    np.testing.assert_allclose(_fit_params(by_dict), _fit_params(by_hand), rtol=1e-12)
    plain = fit(sample_weight=sample_weight)
    assert not np.allclose(_fit_params(plain), _fit_params(by_dict))

    balanced = fit(params={"class_weight": "balanced"})
    expected = compute_class_weight("balanced", classes=np.arange(10), y=y)
    np.testing.assert_allclose(
        _fit_params(balanced), _fit_params(fit(sample_weight=expected[y])), rtol=1e-12
    )


def test_balanced_class_weight_helps_a_rare_class(digits):
    X, y = digits
    # One class in ten is "rare": kept at 10 % of its samples.
    keep = (y != 0) | (np.arange(y.shape[0]) % 10 == 0)
    X_train, y_train = X[keep], (y[keep] == 0).astype(int)
    y_all = (y == 0).astype(int)

    def recall(**params):
        clf = FusionClassifier(max_iter=10, random_state=0, **params)
        predicted = _quiet(lambda: clf.fit(X_train, y_train)).predict(X)
        return (predicted[y_all == 1] == 1).mean()

    assert recall(class_weight="balanced") >= recall()


def test_class_weight_errors(digits):
    X, y = digits
    with pytest.raises(ValueError, match="class_weight names labels that are not classes"):
        FusionClassifier(class_weight={42: 2.0}, max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="not supported for partial_fit"):
        FusionClassifier(class_weight="balanced").partial_fit(X, y, classes=np.arange(10))
    with pytest.raises(ValueError, match="class_weight"):
        FusionClassifier(class_weight="often", max_iter=1).fit(X, y)


# ------------------------------------------------------------ learned weights
def _relu(z):
    return np.maximum(z, 0.0)


def test_coefs_and_intercepts_reproduce_the_predictions():
    X, y = make_fusion_problem()
    X = X.astype(np.float64)
    clf = FusionClassifier(
        branches=[
            ("image", [Dense(6, activation="relu"), Dropout(0.1)], slice(0, 16)),
            ("meta", [Dense(3, activation="tanh")], slice(16, 20)),
        ],
        fusion="hybrid",
        head=(Dense(5, activation="relu"),),
        max_iter=3,
        random_state=0,
        dtype=np.float64,
    )
    _quiet(lambda: clf.fit(X, y))
    assert clf.layer_names_ == [
        "image__0",
        "meta__0",
        "head__0",
        "output",
        "image__output",
        "meta__output",
    ]
    W, b = clf.coefs_, clf.intercepts_
    assert [w.shape for w in W] == [(16, 6), (4, 3), (9, 5), (5, 2), (6, 2), (3, 2)]
    assert [v.shape for v in b] == [(6,), (3,), (5,), (2,), (2,), (2,)]
    image = _relu(X[:, :16] @ W[0] + b[0])
    meta = np.tanh(X[:, 16:] @ W[1] + b[1])
    early = _relu(np.hstack([image, meta]) @ W[2] + b[2]) @ W[3] + b[3]
    alpha = clf.fusion_weights_
    late = alpha[0] * (image @ W[4] + b[4]) + alpha[1] * (meta @ W[5] + b[5])
    np.testing.assert_allclose(early + late, clf._network_scores(X), rtol=1e-10, atol=1e-12)
    # Copies: changing them leaves the model alone.
    W[0][:] = 0.0
    assert np.any(clf.coefs_[0] != 0.0)


def test_layer_names_count_the_branch_list_positions():
    X, y = make_fusion_problem()
    clf = FusionClassifier(
        branches=[
            ("image", [Reshape((1, 4, 4)), Conv2D(2, 3), Flatten()], slice(0, 16)),
            ("meta", [ConcatPrevious(), Dense(3)], slice(16, 20)),
        ],
        fusion="serial",
        max_iter=1,
        random_state=0,
    )
    _quiet(lambda: clf.fit(X, y))
    assert clf.layer_names_ == ["image__1", "meta__1", "output"]
    assert clf.coefs_[0].shape == (2, 1, 3, 3)
    assert clf.coefs_[1].shape == (4 + 8, 3)


def test_multitask_coefs_reproduce_the_predictions(linnerud):
    X, Y = linnerud
    reg = MultiTaskRegressor(
        hidden_layer_sizes=(6,),
        task_layer_sizes=(2,),
        max_iter=5,
        random_state=0,
        dtype=np.float64,
    )
    _quiet(lambda: reg.fit(X, Y))
    assert reg.layer_names_ == ["trunk__0"] + [
        name for t in range(3) for name in (f"task_{t}__0", f"task_{t}__output")
    ]
    W, b = reg.coefs_, reg.intercepts_
    trunk = _relu(X @ W[0] + b[0])
    columns = [
        _relu(trunk @ W[1 + 2 * t] + b[1 + 2 * t]) @ W[2 + 2 * t] + b[2 + 2 * t] for t in range(3)
    ]
    pred = np.hstack(columns) * reg.target_scale_ + reg.target_mean_
    np.testing.assert_allclose(pred, reg.predict(X), rtol=1e-10)


def test_learned_weights_need_a_fit():
    with pytest.raises(AttributeError):
        FusionClassifier().coefs_  # noqa: B018


# ------------------------------------------------------ eval_set and curves
def _split(X, y, n_val=150):
    return X[n_val:], y[n_val:], X[:n_val], y[:n_val]


def test_eval_set_records_the_curves_without_stopping(digits):
    X_train, y_train, X_val, y_val = _split(*digits)
    params = dict(max_iter=8, random_state=0, dtype=np.float64, n_iter_no_change=2, tol=1e-2)
    plain = _quiet(lambda: FusionClassifier(**params).fit(X_train, y_train))
    watched = _quiet(
        lambda: FusionClassifier(**params).fit(X_train, y_train, eval_set=(X_val, y_val))
    )
    # The same training, scored on the side.
    assert watched.loss_curve_ == plain.loss_curve_
    np.testing.assert_array_equal(watched._network.params, plain._network.params)
    assert len(watched.validation_scores_) == len(watched.validation_loss_curve_) == watched.n_iter_
    assert watched.validation_scores_[-1] == pytest.approx(watched.score(X_val, y_val))
    assert watched.validation_loss_curve_[-1] == pytest.approx(
        log_loss(y_val, watched.predict_proba(X_val), labels=watched.classes_), rel=1e-9
    )
    assert watched.validation_loss_curve_[-1] < watched.validation_loss_curve_[0]
    assert watched.best_score_ == max(watched.validation_scores_)
    for name in ("validation_scores_", "validation_loss_curve_", "best_score_"):
        assert not hasattr(plain, name)
    # A refit without held-out data leaves no stale curves.
    _quiet(lambda: watched.fit(X_train, y_train))
    assert not hasattr(watched, "validation_scores_")


def test_eval_set_with_early_stopping_stops_on_it_and_keeps_the_best(digits):
    X_train, y_train, X_val, y_val = _split(*digits)
    clf = FusionClassifier(
        early_stopping=True, n_iter_no_change=2, max_iter=30, random_state=0, dtype=np.float64
    )
    _quiet(lambda: clf.fit(X_train, y_train, eval_set=(X_val, y_val)))
    # All training rows trained (no split), the best epoch's weights kept.
    assert clf.t_ == clf.n_iter_ * X_train.shape[0]
    assert clf.score(X_val, y_val) == pytest.approx(clf.best_score_)
    assert clf.best_score_ == max(clf.validation_scores_)


def test_the_early_stopping_split_records_a_loss_curve_too(digits):
    clf = FusionClassifier(early_stopping=True, max_iter=5, random_state=0)
    _quiet(lambda: clf.fit(*digits))
    assert len(clf.validation_loss_curve_) == len(clf.validation_scores_) == clf.n_iter_
    assert clf.validation_loss_curve_[-1] < clf.validation_loss_curve_[0]


def test_eval_set_errors(digits):
    X, y = digits
    clf = FusionClassifier(max_iter=1)
    with pytest.raises(ValueError, match="eval_set must be a pair"):
        clf.fit(X, y, eval_set=X)
    with pytest.raises(ValueError, match="not in the training classes"):
        clf.fit(X[y < 9], y[y < 9], eval_set=(X, y))
    with pytest.raises(ValueError, match="features"):
        clf.fit(X, y, eval_set=(X[:, :5], y))


def test_multitask_eval_set_curves(linnerud):
    X, Y = linnerud
    Y = Y.copy()
    Y[::3, 1] = np.nan
    X_train, Y_train, X_val, Y_val = X[5:], Y[5:], X[:5], Y[:5]
    params = dict(hidden_layer_sizes=(8,), max_iter=6, random_state=0, dtype=np.float64)
    plain = _quiet(lambda: MultiTaskRegressor(**params).fit(X_train, Y_train))
    watched = _quiet(
        lambda: MultiTaskRegressor(**params).fit(X_train, Y_train, eval_set=(X_val, Y_val))
    )
    assert watched.loss_curve_ == plain.loss_curve_
    assert len(watched.validation_scores_) == len(watched.validation_loss_curve_) == 6
    assert watched.validation_scores_[-1] == pytest.approx(watched.score(X_val, Y_val))
    # The held-out objective: Σ_t mean over t's labels of ½ r², standardised.
    residual = (watched.predict(X_val) - Y_val) / watched.target_scale_
    expected = sum(np.nanmean(0.5 * residual[:, t] ** 2) for t in range(3))
    assert watched.validation_loss_curve_[-1] == pytest.approx(expected, rel=1e-9)
    assert not hasattr(plain, "validation_loss_curve_")


def test_multitask_early_stopping_on_an_eval_set(linnerud):
    X, Y = linnerud
    reg = MultiTaskRegressor(early_stopping=True, n_iter_no_change=3, max_iter=40, random_state=0)
    _quiet(lambda: reg.fit(X[5:], Y[5:], eval_set=(X[:5], Y[:5])))
    assert reg.best_score_ == max(reg.validation_scores_)
    assert reg.score(X[:5], Y[:5]) == pytest.approx(reg.best_score_, abs=1e-5)
    assert r2_score(Y[:5], reg.predict(X[:5])) == pytest.approx(reg.best_score_, abs=1e-5)


# ------------------------------------------------------------- branch columns
_BAD_COLUMNS = [
    (
        [("a", [Dense(2)], slice(10, 40))],
        r"Branch 'a': slice\(10, 40, None\) reaches past the last column of X, which has 20",
    ),
    ([("a", [Dense(2)], slice(-4, None))], r"Branch 'a': .* has a negative start"),
    ([("a", [Dense(2)], [3, -1])], r"Branch 'a': column index -1 is negative"),
    ([("a", [Dense(2)], [3, 3])], r"Branch 'a': column 3 appears more than once"),
    (
        [("a", [Dense(2)], slice(0, 12)), ("b", [Dense(2)], [11, 12])],
        r"Branches 'a' and 'b' both read column 11 .*allow_overlap=True",
    ),
    (
        [("a", [Dense(2)], np.arange(20) < 5), ("b", [Dense(2)], slice(4, 6))],
        r"Branches 'a' and 'b' both read column 4",
    ),
]


@pytest.mark.parametrize("estimator", [FusionClassifier, MultiTaskRegressor])
@pytest.mark.parametrize("branches, match", _BAD_COLUMNS)
def test_branch_columns_are_checked_alike_for_every_form(estimator, branches, match):
    X, y = make_fusion_problem()
    with pytest.raises(ValueError, match=match):
        estimator(branches=branches, max_iter=1).fit(X, y)


def test_column_errors_name_the_columns_of_a_dataframe():
    pd = pytest.importorskip("pandas")
    X, y = make_fusion_problem()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(20)])
    overlapping = [("a", [Dense(2)], ["f1", "f2"]), ("b", [Dense(2)], ["f2"])]
    with pytest.raises(ValueError, match=r"Branches 'a' and 'b' both read column 2 \('f2'\)"):
        FusionClassifier(branches=overlapping, max_iter=1).fit(frame, y)
    with pytest.raises(ValueError, match=r"column 1 \('f1'\) appears more than once"):
        FusionClassifier(branches=[("a", [Dense(2)], ["f1", "f1"])], max_iter=1).fit(frame, y)


@pytest.mark.parametrize("estimator", [FusionClassifier, MultiTaskRegressor])
def test_allow_overlap_lets_branches_share_columns(estimator):
    X, y = make_fusion_problem()
    branches = [("wide", [], slice(None)), ("deep", [Dense(4, activation="relu")], [0, 16])]
    model = _quiet(lambda: estimator(branches=branches, allow_overlap=True, max_iter=2).fit(X, y))
    assert model.predict(X).shape[0] == X.shape[0]


def test_negative_fusion_weights_are_refused():
    X, y = make_fusion_problem()
    clf = FusionClassifier(
        branches=[("a", [Dense(2)], slice(0, 16)), ("b", [Dense(2)], slice(16, 20))],
        fusion="late",
        fusion_weights=[1.0, -0.5],
        max_iter=1,
    )
    with pytest.raises(ValueError, match="fusion_weights must be non-negative"):
        clf.fit(X, y)


# --------------------------------------------------------------------- tol=None
@pytest.mark.parametrize("estimator", [FusionClassifier, MultiTaskRegressor])
def test_tol_none_trains_every_epoch(estimator):
    X, y = make_fusion_problem(n=40)
    model = estimator(tol=None, n_iter_no_change=1, max_iter=7, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model.fit(X, y)
    assert model.n_iter_ == 7
    # The same fit with a tolerance no epoch can meet stops after the second.
    stopped = estimator(tol=1e3, n_iter_no_change=1, max_iter=7, random_state=0).fit(X, y)
    assert stopped.n_iter_ == 2
