"""Callbacks on every estimator: fastgd's ``callbacks=`` and scikit-learn's ``set_callbacks``.

fastgd's callbacks work with any supported scikit-learn; scikit-learn's
callback API (``sklearn.callback``) from 1.9 on, so those tests are skipped
before. Both must survive the clones of ``cross_val_score`` and
``GridSearchCV``, and progress bars must close when a fit ends, however it
ends.
"""

import io
import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.datasets import load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.preprocessing import StandardScaler

from fastgd import FusionClassifier, GDClassifier, GDRegressor, MultiTaskRegressor
from fastgd._sklearn_compat import HAS_SKLEARN_CALLBACKS
from fastgd.callbacks import HistoryLogger, ProgressBar
from fastgd.exceptions import DivergenceError
from fastgd.layers import Dense

needs_sklearn_callbacks = pytest.mark.skipif(
    not HAS_SKLEARN_CALLBACKS, reason="scikit-learn's callback API needs scikit-learn >= 1.9"
)


@pytest.fixture(scope="module")
def regression():
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X)[:200], y[:200]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300] / 16.0, y[:300]


def _gd_regressor(**params):
    return GDRegressor(random_state=0, **params)


def _gd_classifier(**params):
    return GDClassifier(random_state=0, **params)


def _fusion_classifier(**params):
    branches = [("pixels", [Dense(8, activation="relu")], slice(0, 64))]
    return FusionClassifier(branches=branches, batch_size=64, random_state=0, **params)


def _multitask_regressor(**params):
    return MultiTaskRegressor(hidden_layer_sizes=(4,), batch_size=64, random_state=0, **params)


ESTIMATORS = {
    "GDRegressor": _gd_regressor,
    "GDClassifier": _gd_classifier,
    "FusionClassifier": _fusion_classifier,
    "MultiTaskRegressor": _multitask_regressor,
}


@pytest.fixture
def problem(request, regression, digits):
    """(make estimator, X, y) of the estimator named by the test's parameter."""
    name = request.param
    X, y = digits if name in ("GDClassifier", "FusionClassifier") else regression
    if name == "MultiTaskRegressor":
        y = np.column_stack([y, X[:, 0] - X[:, 1]])
    return ESTIMATORS[name], X, y


every_estimator = pytest.mark.parametrize("problem", list(ESTIMATORS), indirect=True)


# ------------------------------------------------------- fastgd's callbacks
@every_estimator
def test_tol_none_trains_max_iter_epochs(problem):
    make, X, y = problem
    with_rule = make(max_iter=40, tol=1e3).fit(X, y)  # a huge tol: stops early
    assert with_rule.n_iter_ < 40
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model = make(max_iter=40, tol=None).fit(X, y)
    assert model.n_iter_ == 40
    assert not [w for w in record if issubclass(w.category, ConvergenceWarning)]


@every_estimator
def test_progress_bar_closes_when_the_fit_ends(problem):
    make, X, y = problem
    stream = io.StringIO()
    bar = ProgressBar(file=stream, mininterval=0)
    model = make(max_iter=7, tol=None, callbacks=[bar]).fit(X, y)
    assert bar._bar is None
    # A closed tqdm bar ends its line; an open one (the bug) does not.
    assert stream.getvalue().endswith("\n") and stream.getvalue().count("\n") == 1
    assert f"{model.n_iter_}/7" in stream.getvalue()
    model.partial_fit(X, y)  # one more epoch: a bar of its own, closed too
    assert bar._bar is None
    assert stream.getvalue().count("\n") == 2 and "1/1" in stream.getvalue()
    pickle.loads(pickle.dumps(model))  # a model with a progress bar still pickles


def test_progress_bar_closes_when_the_fit_fails(regression):
    X, y = regression
    bar = ProgressBar(file=io.StringIO(), mininterval=0)
    diverging = GDRegressor(eta0=1e3, learning_rate="constant", callbacks=[bar])
    with pytest.raises(DivergenceError):
        diverging.fit(X, y)
    assert bar._bar is None


def test_on_fit_end_is_called_once_per_fit(regression):
    X, y = regression
    ends = []

    class Recorder:
        def __call__(self, estimator, report):
            return False

        def on_fit_end(self, estimator):
            ends.append(estimator.n_iter_ if hasattr(estimator, "n_iter_") else None)

    model = GDRegressor(max_iter=3, tol=None, callbacks=[Recorder()]).fit(X, y)
    assert len(ends) == 1
    model.partial_fit(X, y)
    assert len(ends) == 2


@every_estimator
def test_a_clone_reports_to_the_same_callback_objects(problem):
    make, X, y = problem
    log = HistoryLogger()
    model = make(max_iter=3, tol=None, callbacks=[log])
    copy = clone(model)
    assert copy.callbacks[0] is log
    assert copy.callbacks is not model.callbacks  # a new list, the same callbacks
    assert copy.get_params().keys() == model.get_params().keys()
    assert not hasattr(copy, "n_iter_")
    copy.fit(X, y)
    assert log.column("epoch") == [1, 2, 3]
    assert not hasattr(model, "n_iter_")  # the original is untouched
    assert clone(make()).callbacks is None


@every_estimator
def test_history_logger_hears_every_fit_of_cross_val_score_and_grid_search(problem):
    make, X, y = problem
    log = HistoryLogger()
    model = make(max_iter=4, tol=None, callbacks=[log])
    cross_val_score(model, X, y, cv=3)
    assert log.column("epoch") == [1, 2, 3, 4] * 3
    assert set(log.column("estimator")) == {type(model).__name__}

    log.history.clear()
    search = GridSearchCV(model, {"alpha": [1e-4, 1e-2]}, cv=2).fit(X, y)
    assert log.column("epoch").count(1) == 2 * 2 + 1  # every candidate and fold, then the refit
    assert len(log.history) == 4 * (2 * 2 + 1)
    assert search.best_estimator_.callbacks[0] is log


# ---------------------------------------------------- scikit-learn's callbacks
class RecordingCallback:
    """A scikit-learn callback that records every hook call (and can stop a fit)."""

    def __init__(self, stop_at_epoch=None):
        self.stop_at_epoch = stop_at_epoch
        self.calls = []

    def setup(self, estimator, context):
        self.calls.append(("setup", context.task_name))

    def on_fit_task_begin(self, estimator, context, *, X=None, y=None, metadata=None):
        self.calls.append(("begin", context.task_name))

    def on_fit_task_end(
        self, estimator, context, *, X=None, y=None, metadata=None, fitted_estimator=None
    ):
        self.calls.append(("end", context.task_name))
        self.last_fitted = fitted_estimator
        self.last_metadata = metadata
        if context.task_name == "epoch":
            self.last_epoch = context.task_id + 1
            return self.last_epoch == self.stop_at_epoch
        return False

    def teardown(self, estimator, context):
        self.calls.append(("teardown", context.task_name))


@needs_sklearn_callbacks
@every_estimator
def test_sklearn_callbacks_see_the_fit_and_every_epoch(problem):
    make, X, y = problem
    recorder = RecordingCallback()
    model = make(max_iter=4, tol=None).set_callbacks(recorder)
    model.fit(X, y, sample_weight=np.ones(X.shape[0]))
    epochs = [("begin", "epoch"), ("end", "epoch")] * 4
    assert recorder.calls == [
        ("setup", "fit"),
        ("begin", "fit"),
        *epochs,
        ("end", "fit"),
        ("teardown", "fit"),
    ]
    assert recorder.last_metadata["sample_weight"].shape == (X.shape[0],)
    assert recorder.last_fitted is not model
    np.testing.assert_array_equal(recorder.last_fitted.predict(X), model.predict(X))
    assert not hasattr(model, "_fastgd_fit_tasks")  # nothing of the fit left behind

    recorder.calls.clear()
    model.partial_fit(X, y)  # one epoch, a task of its own
    assert recorder.calls == [("setup", "fit"), ("begin", "fit"), *epochs[:2]] + [
        ("end", "fit"),
        ("teardown", "fit"),
    ]


@needs_sklearn_callbacks
@every_estimator
def test_a_sklearn_callback_can_stop_training(problem):
    make, X, y = problem
    model = make(max_iter=20, tol=None).set_callbacks(RecordingCallback(stop_at_epoch=3))
    assert model.fit(X, y).n_iter_ == 3


@needs_sklearn_callbacks
def test_sklearn_callbacks_are_torn_down_when_a_fit_fails(regression):
    X, y = regression
    recorder = RecordingCallback()
    diverging = GDRegressor(eta0=1e3, learning_rate="constant").set_callbacks(recorder)
    with pytest.raises(DivergenceError):
        diverging.fit(X, y)
    assert recorder.calls[-1] == ("teardown", "fit")
    assert not hasattr(diverging, "_fastgd_fit_tasks")


@needs_sklearn_callbacks
def test_scoring_monitor_scores_the_model_of_every_epoch(regression):
    from sklearn.callback import ScoringMonitor

    X, y = regression
    coefs = []

    def keep_model(estimator, report):
        coefs.append((estimator.coef_.copy(), estimator.intercept_[0]))

    monitor = ScoringMonitor(scoring="r2")
    model = GDRegressor(max_iter=5, tol=None, callbacks=[keep_model], random_state=0)
    model.set_callbacks(monitor).fit(X, y)
    rows = monitor.get_logs().data
    epoch_scores = [row["r2"] for row in rows if row["task_name"] == "epoch"]
    expected = [r2_score(y, X @ coef + intercept) for coef, intercept in coefs]
    np.testing.assert_allclose(epoch_scores, expected, rtol=1e-12)
    (fit_row,) = [row for row in rows if row["task_name"] == "fit"]
    assert fit_row["r2"] == pytest.approx(model.score(X, y), rel=1e-12)


@needs_sklearn_callbacks
@every_estimator
def test_scoring_monitor_scores_every_estimator(problem):
    from sklearn.callback import ScoringMonitor
    from sklearn.metrics import get_scorer

    make, X, y = problem
    model = make(max_iter=3, tol=None)
    scoring = "accuracy" if is_classifier(model) else "r2"
    monitor = ScoringMonitor(scoring=scoring)
    model.set_callbacks(monitor).fit(X, y)
    rows = monitor.get_logs().data
    epoch_scores = [row[scoring] for row in rows if row["task_name"] == "epoch"]
    assert len(epoch_scores) == model.n_iter_ == 3
    assert np.all(np.isfinite(epoch_scores))
    (fit_row,) = [row for row in rows if row["task_name"] == "fit"]
    assert fit_row[scoring] == pytest.approx(get_scorer(scoring)(model, X, y), rel=1e-9)


@needs_sklearn_callbacks
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_scoring_monitor_survives_the_clones_of_cross_val_score(regression, n_jobs):
    from sklearn.callback import ScoringMonitor

    X, y = regression
    monitor = ScoringMonitor(scoring="r2")
    model = GDRegressor(max_iter=3, tol=None, random_state=0).set_callbacks(monitor)
    scores = cross_val_score(model, X, y, cv=3, n_jobs=n_jobs)
    runs = monitor.get_logs(select="all")
    assert len(runs) == 3  # one per fold, from the worker processes too
    final = sorted(row["r2"] for run in runs for row in run.data if row["task_name"] == "fit")
    assert all(len([r for r in run.data if r["task_name"] == "epoch"]) == 3 for run in runs)
    assert np.all(np.isfinite(final)) and len(final) == len(scores)


@needs_sklearn_callbacks
def test_sklearn_progress_bar_set_on_a_grid_search_shows_and_closes(regression, capsys):
    pytest.importorskip("rich")
    from sklearn.callback import ProgressBar as SklearnProgressBar
    from sklearn.callback import _progressbar

    X, y = regression
    search = GridSearchCV(GDRegressor(max_iter=3, tol=None), {"alpha": [1e-4, 1e-2]}, cv=2)
    search.set_callbacks(SklearnProgressBar(max_propagation_depth=None)).fit(X, y)
    out = capsys.readouterr().out
    assert "GDRegressor - fit" in out
    assert "100%" in out
    assert not _progressbar._run_monitors  # every bar's monitor closed with its fit


@needs_sklearn_callbacks
@every_estimator
def test_sklearn_progress_bar_on_an_estimator_closes_when_the_fit_ends(problem, capsys):
    pytest.importorskip("rich")
    from sklearn.callback import ProgressBar as SklearnProgressBar
    from sklearn.callback import _progressbar

    make, X, y = problem
    make(max_iter=5, tol=None).set_callbacks(SklearnProgressBar()).fit(X, y)
    out = capsys.readouterr().out
    assert "- fit" in out and "100%" in out
    assert not _progressbar._run_monitors


def test_without_sklearn_callbacks_a_fit_opens_no_task(regression, monkeypatch):
    from fastgd._engine import training

    def fail(*args, **kwargs):
        raise AssertionError("a fit without scikit-learn callbacks opened a task")

    monkeypatch.setattr(training.FitTasks, "__init__", fail)
    X, y = regression
    model = GDRegressor(max_iter=2, tol=None, callbacks=[HistoryLogger()]).fit(X, y)
    assert model.n_iter_ == 2
    assert not hasattr(model, "_callback_fit_ctx")
