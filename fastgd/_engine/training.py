"""The epoch loop and stopping rule shared by every fastgd estimator.

An estimator supplies two callables, one that trains for one epoch and
returns the epoch's training objective, and (with early stopping) one that
scores the current model on held-out data; :func:`run_epochs` calls them,
records the history, prints progress and decides when to stop, with
scikit-learn's rule:

* without early stopping, an epoch *improves* when its training loss is lower
  than the best loss so far by more than ``tol``;
* with early stopping, when its validation score is higher than the best
  score so far by more than ``tol``;
* after ``n_iter_no_change`` epochs in a row without improvement the loop
  stops, unless ``on_plateau`` says to go on (the "adaptive" learning-rate
  schedule divides the step by 5 there, and stops once it is tiny);
* user callbacks (see :mod:`fastgd.callbacks`) receive an
  :class:`EpochReport` after every epoch and may stop training; a callback
  with an ``on_fit_end(estimator)`` method hears when training ends, however
  it ends;
* scikit-learn's callbacks (``estimator.set_callbacks(...)``, scikit-learn
  1.9 and later) see the fit as a task with one subtask per epoch, through
  the :class:`FitTasks` the estimator opens for the fit (see
  :mod:`fastgd._callback_support`).
"""

import math
import time
import warnings
from dataclasses import dataclass

from sklearn.exceptions import ConvergenceWarning

from fastgd.exceptions import DivergenceError


class TrainingHistory:
    """Per-epoch record of a fit and the state of the stopping rule.

    Parameters
    ----------
    tol : float or None
        Minimum improvement; ``None`` disables the stopping rule.
    n_iter_no_change : int
        Number of epochs without improvement tolerated before stopping.
    early_stopping : bool
        Judge improvement by the validation score instead of the training loss.
    validating : bool, optional
        Score a validation set every epoch (default: ``early_stopping``); with
        ``early_stopping`` False the scores are recorded and the training
        loss still judges improvement.
    converged : callable ``() -> bool``, optional
        A solver's own convergence test: without early stopping, training
        stops as soon as it returns True after an epoch (instead of the loss
        rule; ``tol=None`` still disables stopping).

    Attributes
    ----------
    loss_curve : list of float
        Training objective per epoch.
    validation_scores, validation_losses : list of float
        Validation score and loss per epoch (when validating; the losses where
        the estimator computes them).
    best_loss, best_score : float
        Best training loss and best validation score seen.
    best_epoch : int
        Index of the epoch that was best by the criterion in use, or -1.
    """

    def __init__(self, tol, n_iter_no_change, early_stopping, validating=None, converged=None):
        self.tol = -math.inf if tol is None else tol
        self.converged = converged
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validating = early_stopping if validating is None else bool(validating)
        self.loss_curve = []
        self.validation_scores = []
        self.validation_losses = []
        self.best_loss = math.inf
        self.best_score = -math.inf
        self.best_epoch = -1
        self.epochs_without_improvement = 0

    def record(self, loss, score=None):
        """Record one epoch; return True if it improved on the best so far."""
        self.loss_curve.append(float(loss))
        if self.validating:
            self.validation_scores.append(float(score))
        if self.early_stopping:
            improved = score > self.best_score + self.tol
            if score > self.best_score:
                self.best_epoch = len(self.loss_curve) - 1
        elif self.converged is not None:
            improved = not (self.tol > -math.inf and self.converged())
            if loss < self.best_loss:
                self.best_epoch = len(self.loss_curve) - 1
        else:
            improved = loss < self.best_loss - self.tol
            if loss < self.best_loss:
                self.best_epoch = len(self.loss_curve) - 1
        if score is not None:
            self.best_score = max(self.best_score, float(score))
        self.best_loss = min(self.best_loss, float(loss))
        self.epochs_without_improvement = 0 if improved else self.epochs_without_improvement + 1
        return improved

    @property
    def plateaued(self):
        """True once ``n_iter_no_change`` epochs in a row did not improve."""
        if self.converged is not None and not self.early_stopping:
            return self.epochs_without_improvement > 0
        return self.epochs_without_improvement >= self.n_iter_no_change


# Gradient descent with too large a step grows the loss geometrically. A fit
# is declared diverged when an epoch's loss exceeds DIVERGENCE_GROWTH times the
# first epoch's, or when training ends above FINAL_GROWTH times it (a loss that
# grew and then stalled). Noise near a perfect fit never comes close: the
# first epoch's loss is the largest a working fit sees.
DIVERGENCE_GROWTH = 1e3
FINAL_GROWTH = 10.0


def check_divergence(loss, reference_loss, epoch, hint, growth=DIVERGENCE_GROWTH):
    """Raise :class:`DivergenceError` if ``loss`` is not finite or has blown up.

    Parameters
    ----------
    loss : float
        Training loss of the epoch.
    reference_loss : float
        Training loss of the first epoch (``inf`` before there is one).
    epoch : int
        1-based epoch number, for the message.
    hint : str
        Advice appended to the message.
    growth : float
        Largest tolerated ratio ``loss / reference_loss``.
    """
    if not math.isfinite(loss):
        raise DivergenceError(
            f"The fit diverged at epoch {epoch}: the training loss became {loss}. {hint}"
        )
    if math.isfinite(reference_loss) and loss > growth * reference_loss:
        raise DivergenceError(
            f"The fit diverged at epoch {epoch}: the training loss grew from "
            f"{reference_loss:.4g} to {loss:.4g}. {hint}"
        )


@dataclass(frozen=True)
class EpochReport:
    """What callbacks receive after every epoch.

    Attributes
    ----------
    epoch : int
        1-based number of the epoch just finished.
    max_iter : int
        Maximum number of epochs of this fit.
    loss : float
        Training objective of the epoch.
    validation_score : float or None
        Validation score after the epoch (early stopping only).
    learning_rate : float or None
        Learning rate at the end of the epoch, where the estimator has one.
    seconds : float
        Wall time of the epoch.
    """

    epoch: int
    max_iter: int
    loss: float
    validation_score: float | None
    learning_rate: float | None
    seconds: float


def _run_callbacks(callbacks, target, report):
    """Call every callback; return True if any asks training to stop."""
    stop = False
    for callback in callbacks:
        if callback(target, report):
            stop = True
    return stop


def _end_callbacks(callbacks, target):
    """Tell the callbacks that have an ``on_fit_end`` method that training ended."""
    for callback in callbacks:
        on_fit_end = getattr(callback, "on_fit_end", None)
        if on_fit_end is not None:
            on_fit_end(target)


FIT_TASKS_ATTRIBUTE = "_fastgd_fit_tasks"


class FitTasks:
    """The tasks one fit shows scikit-learn's callbacks: the fit, and each epoch.

    The estimator opens it around a fit when it has scikit-learn callbacks
    (see :func:`fastgd._callback_support.reports_to_callbacks`) and keeps it
    in its attribute :data:`FIT_TASKS_ATTRIBUTE` for the duration of the fit;
    :func:`run_epochs` finds it there. The hooks receive the training data as
    the estimator was given it.

    Parameters
    ----------
    X, y : array-like
        The training data of the fit.
    metadata : dict or None
        ``{"sample_weight": ...}`` when the fit has sample weights.
    """

    def __init__(self, X, y, metadata):
        self.data = {"X": X, "y": y, "metadata": metadata}
        self.context = None

    def begin(self, estimator, max_iter):
        """Start the fit task (at the first epoch loop of the fit)."""
        if self.context is None:
            self.context = estimator._init_callback_context(max_subtasks=max_iter)
            self.context.call_on_fit_task_begin(estimator=estimator, **self.data)

    def begin_epoch(self, estimator):
        """Start the task of one epoch; return its context."""
        context = self.context.subcontext(task_name="epoch")
        context.call_on_fit_task_begin(estimator=estimator, **self.data)
        return context

    def end_epoch(self, estimator, context, reconstruction):
        """End the task of one epoch; True if a callback asks training to stop.

        ``reconstruction`` is None, or a callable that returns the fitted
        attributes a copy of the estimator needs to predict as of this epoch
        (called only when a callback asks for such a copy).
        """
        return context.call_on_fit_task_end(
            estimator=estimator, reconstruction_attributes=reconstruction, **self.data
        )

    def end(self, estimator):
        """End the fit task (after the fit has set every fitted attribute)."""
        if self.context is not None:
            self.context.call_on_fit_task_end(
                estimator=estimator, reconstruction_attributes={}, **self.data
            )


def run_epochs(
    train_epoch,
    history,
    max_iter,
    *,
    validation_score=None,
    validation_loss=None,
    on_plateau=None,
    on_improvement=None,
    verbose=0,
    divergence_hint="Try a smaller learning rate.",
    estimator_name="estimator",
    callbacks=(),
    callback_target=None,
    before_callbacks=None,
    learning_rate=None,
    initial_loss=None,
    judge_growth=True,
):
    """Train epoch after epoch until the stopping rule or ``max_iter`` ends it.

    Parameters
    ----------
    train_epoch : callable ``(epoch) -> float``
        Trains one epoch (0-based index) and returns its training objective.
    history : TrainingHistory
        Receives the record of every epoch; holds the stopping rule.
    max_iter : int
        Maximum number of epochs.
    validation_score : callable ``() -> float``, optional
        Score of the current model on held-out data (required when
        ``history.validating``).
    validation_loss : callable ``() -> float``, optional
        Loss of the current model on the same held-out data, recorded with
        the score.
    on_plateau : callable ``() -> bool``, optional
        Called when the rule would stop; returning True resets the count of
        epochs without improvement and training goes on.
    on_improvement : callable ``(epoch) -> None``, optional
        Called after every improving epoch (for example to keep the best
        weights).
    verbose : int
        Print one line per epoch when positive.
    divergence_hint : str
        Advice appended to the divergence error.
    estimator_name : str
        Name used in warnings.
    callbacks : sequence of callables ``(target, EpochReport) -> bool``
        Run after every epoch; a callback returning True stops training.
        Those with an ``on_fit_end(target)`` method have it called when the
        loop ends, however it ends.
    callback_target : object
        First argument of the callbacks (the estimator being fitted). Its
        :class:`FitTasks`, if it holds one, reports every epoch to
        scikit-learn's callbacks.
    before_callbacks : callable ``() -> None``, optional
        Run before the callbacks of each epoch (for example to publish the
        current coefficients on the estimator): after it, the estimator can
        predict as of that epoch.
    learning_rate : callable ``() -> float``, optional
        Current learning rate, for the reports.
    initial_loss : float, optional
        Training objective of the model before this call's first epoch. A fit
        that ends ``DIVERGENCE_GROWTH`` times worse than where it started has
        diverged, even when it blew up within its first epoch.
    judge_growth : bool
        Whether a growing loss means divergence. False for losses whose
        derivative is bounded (hinge, log loss, ...): their steps cannot blow
        up, and their loss may grow for a while under a large step; only a
        non-finite loss is divergence then.

    Returns
    -------
    n_epochs : int
        Number of epochs run.
    """
    tasks = getattr(callback_target, FIT_TASKS_ATTRIBUTE, None)
    if tasks is not None:
        tasks.begin(callback_target, max_iter)
    try:
        n_epochs = 0
        converged = False
        # Divergence is judged against this call's first epoch: a history carried
        # over from earlier partial_fit calls may have seen other data.
        first_of_call = len(history.loss_curve)
        for epoch in range(max_iter):
            epoch_task = None if tasks is None else tasks.begin_epoch(callback_target)
            started = time.perf_counter()
            loss = train_epoch(epoch)
            n_epochs = epoch + 1
            curve = history.loss_curve
            first_loss = math.inf
            if judge_growth and len(curve) > first_of_call:
                first_loss = curve[first_of_call]
            check_divergence(loss, first_loss, n_epochs, divergence_hint)
            score = validation_score() if history.validating else None
            improved = history.record(loss, score)
            if history.validating and validation_loss is not None:
                history.validation_losses.append(float(validation_loss()))
            report = EpochReport(
                epoch=n_epochs,
                max_iter=max_iter,
                loss=float(loss),
                validation_score=None if score is None else float(score),
                learning_rate=None if learning_rate is None else float(learning_rate()),
                seconds=time.perf_counter() - started,
            )
            if verbose:
                print(_progress_line(report), flush=True)
            if improved and on_improvement is not None:
                on_improvement(epoch)
            if callbacks and before_callbacks is not None:
                before_callbacks()
            stop = _run_callbacks(callbacks, callback_target, report)
            if epoch_task is not None:
                reconstruction = _published_attributes(before_callbacks)
                stop |= tasks.end_epoch(callback_target, epoch_task, reconstruction)
            if stop:
                if verbose:
                    print(f"Stopped by a callback after {n_epochs} epochs", flush=True)
                break
            if history.plateaued:
                if on_plateau is not None and on_plateau():
                    history.epochs_without_improvement = 0
                    continue
                converged = True
                break
        else:
            _warn_if_not_converged(history, max_iter, estimator_name)
        curve = history.loss_curve
        if judge_growth and len(curve) > first_of_call:
            check_divergence(
                curve[-1], curve[first_of_call], n_epochs, divergence_hint, FINAL_GROWTH
            )
            if initial_loss is not None:
                check_divergence(curve[-1], initial_loss, n_epochs, divergence_hint)
        if verbose and converged:
            print(f"Convergence after {n_epochs} epochs", flush=True)
    finally:
        _end_callbacks(callbacks, callback_target)
    return n_epochs


def _published_attributes(before_callbacks):
    """For :meth:`FitTasks.end_epoch`: publish the model, then nothing more to set."""
    if before_callbacks is None:
        return None

    def publish():
        before_callbacks()
        return {}

    return publish


def _progress_line(report):
    """One verbose line: epoch, loss, validation score, learning rate, time."""
    line = f"-- Epoch {report.epoch}: loss {report.loss:.6g}"
    if report.validation_score is not None:
        line += f", validation score {report.validation_score:.6g}"
    if report.learning_rate is not None:
        line += f", learning rate {report.learning_rate:.4g}"
    return f"{line}, {report.seconds:.3f} s"


def _warn_if_not_converged(history, max_iter, estimator_name):
    if history.tol > -math.inf and max_iter > 0:
        warnings.warn(
            f"Maximum number of epochs ({max_iter}) reached and {estimator_name} "
            "has not converged; consider increasing max_iter.",
            ConvergenceWarning,
            stacklevel=4,
        )
