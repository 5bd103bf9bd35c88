"""Callbacks: code of yours that runs after every training epoch.

Every fastgd estimator takes ``callbacks=[...]``. A callback is any callable
``callback(estimator, report)``; ``report`` is an
:class:`~fastgd._engine.training.EpochReport` with the epoch number, the
training loss, the validation score (with early stopping), the learning
rate and the epoch's wall time. Returning True stops training after that
epoch. A callback object may also have an ``on_fit_end(estimator)`` method,
called once when training ends, however it ends.

Cloning an estimator (as ``cross_val_score`` and ``GridSearchCV`` do) keeps
its callback objects rather than copies of them, so a callback hears the
epochs of every clone fitted in this process. Clones sent to other
processes (``n_jobs``, a Dask cluster) get copies.

Two callbacks ship with fastgd: :class:`HistoryLogger`, which keeps every
report, and :class:`ProgressBar`, a tqdm progress bar.

With scikit-learn 1.9 or later, fastgd's estimators also take
scikit-learn's own callbacks (``sklearn.callback``, experimental), which see
each fit as a task with one subtask per epoch:
``GDRegressor().set_callbacks(ProgressBar(), ScoringMonitor(scoring="r2"))``
with ``from sklearn.callback import ProgressBar, ScoringMonitor``. Set on a
meta-estimator (``GridSearchCV``, ``Pipeline``), they reach the fastgd
estimators inside it, from worker processes too.

Examples
--------
>>> from fastgd import GDRegressor
>>> from fastgd.callbacks import HistoryLogger
>>> def stop_below(threshold):
...     return lambda estimator, report: report.loss < threshold
>>> log = HistoryLogger()
>>> model = GDRegressor(callbacks=[log, stop_below(1e3)])
"""

from fastgd._engine.training import EpochReport

__all__ = ["EpochReport", "HistoryLogger", "ProgressBar"]


class HistoryLogger:
    """Keep the report of every epoch, across fits.

    Attributes
    ----------
    history : list of dict
        One dict per epoch: ``epoch``, ``max_iter``, ``loss``,
        ``validation_score``, ``learning_rate``, ``seconds`` and the
        ``estimator`` class name.
    """

    def __init__(self):
        self.history = []

    def __call__(self, estimator, report):
        self.history.append({"estimator": type(estimator).__name__, **vars(report)})
        return False

    def column(self, name):
        """The values of one field over all logged epochs, e.g. ``column("loss")``."""
        return [entry[name] for entry in self.history]


class ProgressBar:
    """A tqdm progress bar over the epochs of each fit, closed when the fit ends.

    Parameters
    ----------
    **tqdm_kwargs
        Passed to :class:`tqdm.tqdm` (for example ``leave=False``).
    """

    def __init__(self, **tqdm_kwargs):
        self.tqdm_kwargs = tqdm_kwargs
        self._bar = None

    def __call__(self, estimator, report):
        from tqdm import tqdm

        if self._bar is None or report.epoch == 1:
            self.close()
            self._bar = tqdm(
                total=report.max_iter, desc=type(estimator).__name__, **self.tqdm_kwargs
            )
        self._bar.update(1)
        postfix = {"loss": f"{report.loss:.4g}"}
        if report.validation_score is not None:
            postfix["val"] = f"{report.validation_score:.4g}"
        self._bar.set_postfix(postfix, refresh=False)
        return False

    def on_fit_end(self, estimator):
        """Close the bar: training has ended."""
        self.close()

    def close(self):
        """Close the current bar (done when training ends)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __getstate__(self):
        # A live terminal bar cannot be pickled; the copy starts without one.
        return {"tqdm_kwargs": self.tqdm_kwargs, "_bar": None}
