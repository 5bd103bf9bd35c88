"""Several linear models trained side by side, epoch by epoch (one-vs-rest classifiers).

A one-vs-rest classifier over K classes is K independent binary problems. They
are trained in lockstep: every epoch of the classifier trains one epoch of
each problem still running, the problems spread over the available cores (the
kernels release the GIL), and then, on the calling thread, records each
problem's loss, applies its own stopping rule and reports the classifier's
epoch to the callbacks. Each problem has its own data, state, row-order
generator and stopping rule, so the models are bit for bit those of training
the problems one after another, whatever the number of threads.
"""

import math
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fastgd._engine.linear import DIVERGENCE_HINT, make_trainer
from fastgd._engine.threads import thread_budget
from fastgd._engine.training import (
    FINAL_GROWTH,
    TrainingHistory,
    check_divergence,
    run_epochs,
)


class Problem:
    """One binary problem of a one-vs-rest model.

    Parameters
    ----------
    data : LinearData
        The samples with this problem's targets (±1) and weights.
    state : LinearState
        Its model, updated in place.
    rng : numpy.random.RandomState
        Seeds its row orders.
    validation : HeldOut or None
        Its held-out data (``y`` = ±1), scored every epoch.
    """

    def __init__(self, data, state, rng, validation=None):
        self.data, self.state, self.rng = data, state, rng
        self.validation = validation


class _LockstepHistory(TrainingHistory):
    """The combined history the shared epoch loop sees: done once every problem is."""

    def __init__(self, tol, problems):
        super().__init__(tol, n_iter_no_change=1, early_stopping=False)
        self.problems = problems

    def record(self, loss, score=None):
        self.loss_curve.append(float(loss))
        return True

    @property
    def plateaued(self):
        return all(problem.done for problem in self.problems)


def _one_numba_thread():
    """Thread-pool initializer: Numba's parallel kernels use one thread in this thread."""
    numba = sys.modules.get("numba")
    if numba is not None:
        numba.set_num_threads(1)


def padded_mean(curves):
    """Per-epoch mean of curves of different lengths, each padded with its last value."""
    length = max(len(curve) for curve in curves)
    padded = [list(curve) + [curve[-1]] * (length - len(curve)) for curve in curves if curve]
    return [float(np.mean(values)) for values in zip(*padded, strict=True)]


def train_one_vs_rest(
    problems,
    config,
    *,
    max_iter,
    rows=None,
    shuffle=True,
    tol=None,
    n_iter_no_change=5,
    early_stopping=False,
    n_threads=None,
    verbose=0,
    estimator_name="GDClassifier",
    callbacks=(),
    callback_target=None,
    before_callbacks=None,
):
    """Train every problem for up to ``max_iter`` epochs, side by side.

    Parameters
    ----------
    problems : list of Problem
    config : LinearConfig
        Shared by every problem.
    max_iter, rows, shuffle, tol, n_iter_no_change, early_stopping :
        As for :func:`fastgd._engine.linear.train_linear`, for each problem.
    n_threads : int, optional
        Problems trained at once (default: the thread budget,
        :func:`fastgd._engine.threads.thread_budget`).
    verbose, estimator_name, callbacks, callback_target, before_callbacks :
        As for :func:`fastgd._engine.training.run_epochs`; the callbacks see
        one report per epoch of the whole model, whose loss is the mean of
        the problems' latest losses.

    Returns
    -------
    histories : list of TrainingHistory
        Each problem's history (its ``loss_curve`` is as long as it trained).
    n_epochs : int
        Epochs of the longest-running problem.
    """
    n_threads = min(len(problems), n_threads or thread_budget())
    trainers = []
    for problem in problems:
        problem.trainer = make_trainer(
            problem.data,
            problem.state,
            config,
            rng=problem.rng,
            rows=rows,
            shuffle=shuffle,
            # Problems in parallel already fill the cores: one thread each.
            max_threads=1 if n_threads > 1 else None,
        )
        problem.history = problem.trainer.new_history(
            tol, n_iter_no_change, early_stopping, validating=problem.validation is not None
        )
        problem.initial_loss = problem.trainer.initial_loss()
        problem.done = False
        trainers.append(problem.trainer)
    combined = _LockstepHistory(tol, problems)

    with ThreadPoolExecutor(
        max_workers=n_threads, thread_name_prefix="fastgd-ovr", initializer=_one_numba_thread
    ) as pool:

        def train_epoch(epoch):
            running = [problem for problem in problems if not problem.done]
            if n_threads > 1:
                losses = list(pool.map(lambda problem: problem.trainer.train_epoch(), running))
            else:
                losses = [problem.trainer.train_epoch() for problem in running]
            for problem, loss in zip(running, losses, strict=True):
                _record(problem, loss, epoch + 1)
            return float(np.mean([problem.history.loss_curve[-1] for problem in problems]))

        n_epochs = run_epochs(
            train_epoch,
            combined,
            max_iter,
            verbose=verbose,
            divergence_hint=DIVERGENCE_HINT,
            estimator_name=estimator_name,
            callbacks=callbacks,
            callback_target=callback_target,
            before_callbacks=before_callbacks,
            judge_growth=config.loss_can_blow_up,
        )
    if not config.loss_can_blow_up:
        return [problem.history for problem in problems], n_epochs
    for problem in problems:
        curve = problem.history.loss_curve
        check_divergence(curve[-1], curve[0], len(curve), DIVERGENCE_HINT, FINAL_GROWTH)
        if problem.initial_loss is not None:
            check_divergence(curve[-1], problem.initial_loss, len(curve), DIVERGENCE_HINT)
    return [problem.history for problem in problems], n_epochs


def _record(problem, loss, epoch):
    """Record one epoch of ``problem``; mark it done when its stopping rule says so."""
    history = problem.history
    judge_growth = problem.trainer.config.loss_can_blow_up and history.loss_curve
    reference = history.loss_curve[0] if judge_growth else math.inf
    check_divergence(loss, reference, epoch, DIVERGENCE_HINT)
    score = held_out_loss = None
    if problem.validation is not None:
        model = problem.state.model_to_predict(problem.trainer.config)
        score, held_out_loss = problem.validation.score(*model), problem.validation.loss(*model)
    history.record(loss, score)
    if held_out_loss is not None:
        history.validation_losses.append(float(held_out_loss))
    if history.plateaued:
        if problem.trainer.on_plateau():
            history.epochs_without_improvement = 0
        else:
            problem.done = True
