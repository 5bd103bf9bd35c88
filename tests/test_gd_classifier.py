"""GDClassifier: scikit-learn's contract, SGDClassifier's behaviour, and what fastgd adds."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastgd import GDClassifier
from fastgd.exceptions import DivergenceError

SAME_STEPS = dict(shuffle=False, max_iter=5, tol=None, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def quiet_fit(model, X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y, **kwargs)


def _expected_failures(estimator):
    failures = {}
    if estimator.batch_size != "full":
        stochastic = "SGD is stochastic: weighting is not the same as repeating"
        failures["check_sample_weight_equivalence_on_dense_data"] = stochastic
        failures["check_sample_weight_equivalence_on_sparse_data"] = stochastic
    if estimator.learning_rate == "pa2":
        # Class weights of 1000 make the passive-aggressive steps overflow;
        # SGDClassifier fails the same way, fastgd raises DivergenceError.
        failures["check_class_weight_classifiers"] = "passive-aggressive steps overflow"
    return failures


@parametrize_with_checks(
    [
        GDClassifier(random_state=0),
        GDClassifier(loss="log_loss", backend="numba", average=True, random_state=0),
        GDClassifier(
            loss="modified_huber",
            batch_size=16,
            optimizer="adam",
            learning_rate="constant",
            eta0=0.01,
            random_state=0,
        ),
        GDClassifier(
            loss="log_loss",
            penalty="elasticnet",
            batch_size=32,
            optimizer="adam",
            learning_rate="constant",
            eta0=0.01,
            random_state=0,
        ),
        GDClassifier(loss="hinge", learning_rate="pa2", eta0=0.1, penalty=None, random_state=0),
        GDClassifier(
            loss="log_loss",
            multi_class="multinomial",
            learning_rate="constant",
            eta0=0.01,
            random_state=0,
        ),
    ],
    expected_failed_checks=_expected_failures,
)
def test_scikit_learn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    "params",
    [
        dict(),
        dict(loss="log_loss", alpha=0.001),
        dict(loss="modified_huber", penalty="elasticnet", l1_ratio=0.4, alpha=0.001),
        dict(loss="squared_hinge", learning_rate="invscaling", eta0=0.01),
        dict(loss="perceptron", penalty=None, learning_rate="constant", eta0=1.0),
        dict(loss="hinge", learning_rate="pa1", eta0=0.1, penalty=None),
        dict(loss="log_loss", class_weight={0: 2.0, 1: 0.5, 2: 1.5}, average=20),
        dict(loss="hinge", class_weight="balanced", penalty="l1", alpha=0.001),
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "defaults",
)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_takes_sgdclassifiers_steps(params, n_classes):
    """Without shuffling both libraries visit the rows in order and take the same steps."""
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    if n_classes == 2:
        X, y = X[y > 0], y[y > 0] - 1
        if isinstance(params.get("class_weight"), dict):
            params = {**params, "class_weight": {0: 2.0, 1: 0.5}}
    ours = quiet_fit(GDClassifier(**SAME_STEPS, **params), X, y)
    theirs = quiet_fit(SGDClassifier(**SAME_STEPS, **params), X, y)
    assert ours.coef_.shape == theirs.coef_.shape
    # Equal to rounding (the libraries order a few additions differently).
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-6, atol=1e-8)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    if params.get("loss") in ("log_loss", "modified_huber"):
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("loss", ["hinge", "log_loss", "modified_huber"])
def test_digits_accuracy_matches_sgdclassifier(digits, loss):
    X_train, X_test, y_train, y_test = digits
    ours = quiet_fit(GDClassifier(loss=loss, random_state=0), X_train, y_train)
    theirs = quiet_fit(SGDClassifier(loss=loss, random_state=0), X_train, y_train)
    assert ours.score(X_test, y_test) > 0.93
    assert ours.score(X_test, y_test) == pytest.approx(theirs.score(X_test, y_test), abs=0.02)


@pytest.mark.parametrize(
    "params",
    [
        dict(batch_size=32, optimizer="adam", learning_rate="constant", eta0=0.01),
        dict(batch_size=32, optimizer="momentum", learning_rate="constant", eta0=0.01),
        dict(backend="numba", optimizer="rmsprop", learning_rate="constant", eta0=0.001),
    ],
)
def test_fastgds_own_modes_learn_digits(digits, params):
    X_train, X_test, y_train, y_test = digits
    model = quiet_fit(GDClassifier(loss="log_loss", random_state=0, **params), X_train, y_train)
    assert model.score(X_test, y_test) > 0.93


@pytest.mark.parametrize("backend", ["cython", "numba"])
@pytest.mark.parametrize("batch_size", [1, 64])
def test_classes_in_parallel_equal_classes_one_after_another(digits, backend, batch_size):
    X_train, _, y_train, _ = digits
    params = dict(loss="log_loss", backend=backend, batch_size=batch_size, max_iter=4, tol=None)
    one = GDClassifier(n_jobs=1, random_state=3, **params).fit(X_train, y_train)
    every = GDClassifier(n_jobs=None, random_state=3, **params).fit(X_train, y_train)
    np.testing.assert_array_equal(one.coef_, every.coef_)
    np.testing.assert_array_equal(one.intercept_, every.intercept_)
    assert one.loss_curve_ == every.loss_curve_


def test_same_random_state_gives_a_bit_identical_model(digits):
    X_train, _, y_train, _ = digits
    a = quiet_fit(GDClassifier(random_state=5, max_iter=10), X_train, y_train)
    b = quiet_fit(GDClassifier(random_state=5, max_iter=10), X_train, y_train)
    np.testing.assert_array_equal(a.coef_, b.coef_)


def test_sparse_and_float32_input(digits):
    X_train, X_test, y_train, y_test = digits
    # A constant step: the optimal schedule's first steps are so large that
    # rounding differences (dot products summed in another order) grow.
    params = dict(loss="log_loss", learning_rate="constant", max_iter=6, tol=None, random_state=0)
    dense = GDClassifier(**params).fit(X_train, y_train)
    sparse = GDClassifier(**params).fit(sp.csr_matrix(X_train), y_train)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-10, atol=1e-12)
    single = GDClassifier(**params).fit(X_train.astype(np.float32), y_train)
    assert single.coef_.dtype == np.float32
    assert single.decision_function(X_test.astype(np.float32)).dtype == np.float32
    assert single.score(X_test, y_test) > 0.9


def test_probabilities(cancer, digits):
    X, y = cancer
    binary = GDClassifier(loss="log_loss", random_state=0).fit(X, y)
    proba = binary.predict_proba(X)
    assert proba.shape == (len(y), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-binary.decision_function(X))))
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(binary.predict_log_proba(X), np.log(proba))
    X_train, X_test, y_train, _ = digits
    multi = GDClassifier(loss="modified_huber", random_state=0).fit(X_train, y_train)
    proba = multi.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    one_vs_rest = (np.clip(multi.decision_function(X_test), -1, 1) + 1) / 2
    totals = one_vs_rest.sum(axis=1)
    some = totals > 0
    np.testing.assert_allclose(proba[some], one_vs_rest[some] / totals[some, None])
    np.testing.assert_allclose(proba[~some], 0.1)  # every class's score <= -1: uniform
    hinge = GDClassifier(random_state=0).fit(X, y)
    assert not hasattr(hinge, "predict_proba")
    with pytest.raises(AttributeError, match="predict_proba") as raised:
        hinge.predict_proba(X)
    assert "not available for loss='hinge'" in str(raised.value.__cause__)


def test_partial_fit_epochs_equal_fit_epochs(digits):
    X_train, _, y_train, _ = digits
    params = dict(loss="log_loss", random_state=0)
    fitted = GDClassifier(max_iter=3, tol=None, **params).fit(X_train, y_train)
    stepped = GDClassifier(**params)
    for _ in range(3):
        stepped.partial_fit(X_train, y_train, classes=np.unique(y_train))
    np.testing.assert_array_equal(stepped.coef_, fitted.coef_)
    assert stepped.n_iter_ == 3 and len(stepped.loss_curve_) == 3


def test_partial_fit_errors(digits):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        GDClassifier().partial_fit(X_train, y_train)
    with pytest.raises(ValueError, match="class_weight 'balanced' is not supported"):
        GDClassifier(class_weight="balanced").partial_fit(X_train, y_train, classes=range(10))
    with pytest.raises(ValueError, match="early_stopping should be False with partial_fit"):
        GDClassifier(early_stopping=True).partial_fit(X_train, y_train, classes=range(10))
    model = GDClassifier().partial_fit(X_train[y_train < 5], y_train[y_train < 5], classes=range(5))
    with pytest.raises(ValueError, match="not the same as on the first call"):
        model.partial_fit(X_train, y_train)


def test_other_bad_input_is_named(cancer):
    X, y = cancer
    with pytest.raises(ValueError, match="greater than one"):
        GDClassifier().fit(X, np.zeros(len(y)))
    with pytest.raises(ValueError, match="not classes"):
        GDClassifier(class_weight={7: 2.0}).fit(X, y)
    with pytest.raises(ValueError, match="coef_init has 2 rows"):
        GDClassifier().fit(X, y, coef_init=np.zeros((2, X.shape[1])))
    with pytest.raises(DivergenceError, match="diverged"):
        GDClassifier(loss="squared_hinge", learning_rate="constant", eta0=100.0).fit(X * 100, y)


def test_early_stopping_holds_out_sgdclassifiers_rows(digits):
    X_train, _, y_train, _ = digits
    sample_weight = np.ones(len(y_train))
    model = GDClassifier(early_stopping=True, random_state=4)
    train_rows, val_rows = model._validation_split(y_train, sample_weight)
    reference = SGDClassifier(early_stopping=True, random_state=4)
    mask = reference._make_validation_split(y_train, sample_mask=sample_weight > 0)
    np.testing.assert_array_equal(val_rows, np.flatnonzero(mask))
    fitted = model.fit(X_train, y_train)
    assert len(fitted.validation_scores_) == fitted.n_iter_
    assert fitted.best_score_ == max(fitted.validation_scores_)


def test_early_stopping_on_a_user_validation_set(digits):
    X_train, X_test, y_train, y_test = digits
    model = GDClassifier(loss="log_loss", early_stopping=True, random_state=0)
    model.fit(X_train, y_train, eval_set=(X_test, y_test))
    assert 0.9 < model.best_score_ <= 1.0
    assert len(model.validation_loss_curve_) == model.n_iter_


@pytest.mark.parametrize("multi_class", ["ovr", "multinomial"])
def test_an_eval_set_without_early_stopping_records_curves(digits, multi_class):
    X_train, X_test, y_train, y_test = digits
    params = dict(loss="log_loss", multi_class=multi_class, max_iter=6, tol=None, random_state=0)
    watched = GDClassifier(**params).fit(X_train, y_train, eval_set=(X_test, y_test))
    plain = GDClassifier(**params).fit(X_train, y_train)
    np.testing.assert_array_equal(watched.coef_, plain.coef_)  # watching changes nothing
    assert watched.n_iter_ == 6 and not hasattr(plain, "validation_scores_")
    assert len(watched.validation_scores_) == len(watched.validation_loss_curve_) == 6
    scores = watched.decision_function(X_test)
    if multi_class == "ovr":
        # One-vs-rest: the mean of the binary problems' held-out accuracies.
        binary = [np.mean((scores[:, k] > 0) == (y_test == k)) for k in range(10)]
        assert watched.validation_scores_[-1] == pytest.approx(np.mean(binary), rel=1e-12)
    else:
        from scipy.special import log_softmax

        assert watched.validation_scores_[-1] == watched.score(X_test, y_test)
        cross_entropy = -log_softmax(scores, axis=1)[np.arange(len(y_test)), y_test]
        assert watched.validation_loss_curve_[-1] == pytest.approx(cross_entropy.mean(), rel=1e-9)


def test_sparsify_and_densify_keep_predictions(digits):
    X_train, X_test, y_train, _ = digits
    model = GDClassifier(penalty="l1", alpha=0.01, random_state=0).fit(X_train, y_train)
    dense_prediction = model.predict(X_test)
    model.sparsify()
    assert sp.issparse(model.coef_)
    np.testing.assert_array_equal(model.predict(X_test), dense_prediction)
    model.densify()
    assert isinstance(model.coef_, np.ndarray)
    np.testing.assert_array_equal(model.predict(X_test), dense_prediction)


def test_warm_start_continues_and_pickles(digits):
    X_train, X_test, y_train, y_test = digits
    model = GDClassifier(loss="log_loss", warm_start=True, max_iter=2, tol=None, random_state=0)
    first = model.fit(X_train, y_train).coef_.copy()
    model.fit(X_train, y_train)
    assert not np.array_equal(first, model.coef_)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(X_test), model.predict(X_test))


def test_callbacks_see_one_report_per_epoch(digits):
    X_train, _, y_train, _ = digits
    seen = []

    def callback(estimator, report):
        seen.append((report.epoch, estimator.coef_.shape))
        return report.epoch == 3

    model = GDClassifier(callbacks=[callback], random_state=0).fit(X_train, y_train)
    assert seen == [(k, (10, 64)) for k in (1, 2, 3)]
    assert model.n_iter_ == 3


# ------------------------------------------------------------- multinomial


@pytest.mark.parametrize(
    "params",
    [
        dict(learning_rate="constant", eta0=0.01),
        dict(batch_size=32, optimizer="adam", learning_rate="constant", eta0=0.01),
        dict(batch_size="full", learning_rate="constant", eta0=0.5, max_iter=300),
    ],
)
def test_multinomial_reaches_logistic_regression(digits, params):
    from sklearn.linear_model import LogisticRegression

    X_train, X_test, y_train, y_test = digits
    model = GDClassifier(loss="log_loss", multi_class="multinomial", random_state=0, **params)
    quiet_fit(model, X_train, y_train)
    reference = LogisticRegression(max_iter=2000).fit(X_train, y_train)
    assert model.coef_.shape == (10, 64) and model.intercept_.shape == (10,)
    assert model.score(X_test, y_test) > reference.score(X_test, y_test) - 0.02
    proba = model.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    scores = model.decision_function(X_test)
    np.testing.assert_allclose(proba, np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True))
    np.testing.assert_array_equal(model.predict(X_test), model.classes_[scores.argmax(axis=1)])


def test_multinomial_sparse_float32_and_reproducible(digits):
    X_train, _, y_train, _ = digits
    params = dict(
        loss="log_loss",
        multi_class="multinomial",
        learning_rate="constant",
        eta0=0.01,
        max_iter=4,
        tol=None,
        random_state=2,
    )
    dense = GDClassifier(**params).fit(X_train, y_train)
    again = GDClassifier(**params).fit(X_train, y_train)
    np.testing.assert_array_equal(dense.coef_, again.coef_)
    sparse = GDClassifier(**params).fit(sp.csr_matrix(X_train), y_train)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-10, atol=1e-12)
    single = GDClassifier(**params).fit(X_train.astype(np.float32), y_train)
    assert single.coef_.dtype == np.float32
    np.testing.assert_allclose(single.coef_, dense.coef_, rtol=1e-3, atol=1e-4)


def test_multinomial_partial_fit_equals_fit(digits):
    X_train, _, y_train, _ = digits
    params = dict(loss="log_loss", multi_class="multinomial", random_state=0)
    fitted = GDClassifier(max_iter=2, tol=None, **params).fit(X_train, y_train)
    stepped = GDClassifier(**params)
    for _ in range(2):
        stepped.partial_fit(X_train, y_train, classes=np.arange(10))
    np.testing.assert_array_equal(stepped.coef_, fitted.coef_)


def test_multinomial_needs_the_log_loss_and_numba(digits):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match="loss='log_loss' or multi_class='ovr'"):
        GDClassifier(multi_class="multinomial").fit(X_train, y_train)
    with pytest.raises(ValueError, match="runs on the Numba kernels"):
        GDClassifier(loss="log_loss", multi_class="multinomial", backend="cython").fit(
            X_train, y_train
        )
    # Two classes: binary logistic regression, whichever strategy is asked for.
    two = y_train < 2
    a = GDClassifier(loss="log_loss", multi_class="multinomial", random_state=0)
    b = GDClassifier(loss="log_loss", random_state=0)
    np.testing.assert_array_equal(
        a.fit(X_train[two], y_train[two]).coef_, b.fit(X_train[two], y_train[two]).coef_
    )
