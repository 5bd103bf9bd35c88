"""Callbacks on fastgd's estimators: fastgd's own ``callbacks=`` and scikit-learn's.

Every estimator takes two kinds of callbacks:

* fastgd's ``callbacks=[...]`` parameter (any scikit-learn version): callables
  ``callback(estimator, report)`` run after every epoch (see
  :mod:`fastgd.callbacks`);
* scikit-learn's callback API (``sklearn.callback``, scikit-learn 1.9 and
  later): ``estimator.set_callbacks(ProgressBar(), ScoringMonitor(...))``. A fit
  is one task with one subtask per epoch; callbacks set on a meta-estimator
  (``GridSearchCV``, ``Pipeline``) reach the fastgd estimators inside it.

:class:`CallbackSupport` is the estimators' base class for both, and
:func:`reports_to_callbacks` decorates their ``fit`` and ``partial_fit``.
"""

import functools
import inspect

from fastgd._engine.training import FIT_TASKS_ATTRIBUTE, FitTasks
from fastgd._sklearn_compat import HAS_SKLEARN_CALLBACKS, CallbackSupportMixin, with_callbacks

__all__ = ["CallbackSupport", "reports_to_callbacks"]


class CallbackSupport(*((CallbackSupportMixin,) if HAS_SKLEARN_CALLBACKS else ())):
    """Base class of fastgd's estimators for callbacks.

    With scikit-learn 1.9 or later it is scikit-learn's
    ``CallbackSupportMixin`` (``set_callbacks``). With any version, cloning an
    estimator keeps its ``callbacks`` parameter's callback objects themselves
    rather than deep copies of them, so that a :class:`~fastgd.callbacks.HistoryLogger`
    given to an estimator that ``cross_val_score`` or ``GridSearchCV`` clones
    records the clones' epochs (scikit-learn shares the callbacks of
    ``set_callbacks`` with clones in the same way).
    """

    def __sklearn_clone__(self):
        callbacks = getattr(self, "callbacks", None)
        if not callbacks:
            return super().__sklearn_clone__()
        # Clone a shallow copy that has no callbacks, then hand the clone the
        # same callback objects in a new list (or tuple).
        without_callbacks = object.__new__(type(self))
        without_callbacks.__dict__.update(self.__dict__)
        without_callbacks.callbacks = None
        clone = without_callbacks.__sklearn_clone__()
        clone.callbacks = type(callbacks)(callbacks)
        return clone


def _has_sklearn_callbacks(estimator):
    """Whether a fit of ``estimator`` has scikit-learn callbacks to report to."""
    return HAS_SKLEARN_CALLBACKS and (
        bool(getattr(estimator, "_skl_callbacks", None))
        or hasattr(estimator, "_parent_callback_ctx")  # inside a meta-estimator's task
    )


def reports_to_callbacks(fit_method):
    """Decorate a ``fit`` or ``partial_fit`` to report to scikit-learn's callbacks.

    When the estimator has scikit-learn callbacks (its own, or a
    meta-estimator's), the decorated method runs as one fit task: the engine's
    epoch loop opens it at the first epoch and reports each epoch as a
    subtask; the task ends once the method has set every fitted attribute,
    and the callbacks are torn down (progress bars closed) however the fit
    ends. Without such callbacks, or before scikit-learn 1.9, the method runs
    as it is.

    Parameters
    ----------
    fit_method : callable ``(self, X, y=None, ..., sample_weight=None, ...)``

    Returns
    -------
    decorated : callable
    """
    signature = inspect.signature(fit_method)

    @functools.wraps(fit_method)
    def fit_reporting_to_callbacks(self, *args, **kwargs):
        if not _has_sklearn_callbacks(self):
            return fit_method(self, *args, **kwargs)
        arguments = signature.bind(self, *args, **kwargs).arguments
        sample_weight = arguments.get("sample_weight")
        tasks = FitTasks(
            arguments["X"],
            arguments.get("y"),
            None if sample_weight is None else {"sample_weight": sample_weight},
        )

        @with_callbacks  # tears the callbacks down, however the fit ends
        def fit_as_a_task(estimator):
            setattr(estimator, FIT_TASKS_ATTRIBUTE, tasks)
            try:
                fitted = fit_method(estimator, *args, **kwargs)
                tasks.end(estimator)
                return fitted
            finally:
                delattr(estimator, FIT_TASKS_ATTRIBUTE)

        return fit_as_a_task(self)

    return fit_reporting_to_callbacks
