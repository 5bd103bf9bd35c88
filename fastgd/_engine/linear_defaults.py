"""What ``learning_rate="auto"`` (the default) means for each optimizer and batch mode.

scikit-learn's SGD has plain per-sample steps only, so for those fastgd keeps
its defaults exactly; for the modes scikit-learn does not have, fastgd picks
a schedule that converges without tuning:

* plain SGD, per-sample or mini-batch: the estimator's scikit-learn schedule
  ("invscaling" for GDRegressor, "optimal" for GDClassifier) with ``eta0``;
  for a squared loss (squared_hinge, squared_error,
  squared_epsilon_insensitive), "optimal" with its first step bounded by the
  data (:func:`stable_optimal_t0`);
* momentum and Nesterov, per-sample or mini-batch: the same schedule with
  the rate ``eta0·(1 − momentum)``, so that the effective step
  ``rate / (1 − momentum)`` is plain SGD's ("optimal" has no ``eta0`` and
  is kept as it is);
* AdaGrad, RMSprop and Adam, every batch mode: their steps are bounded by the
  rate in every coordinate, so the rate is a distance in parameter space:
  the "adaptive" schedule from :data:`ADAPTIVE_OPTIMIZER_ETA0` (large), divided
  by 5 whenever the loss stops improving, until it is tiny;
* full batch with plain SGD, momentum or Nesterov: the accelerated proximal
  gradient method with the step 1/L of the problem
  (:mod:`fastgd._engine.full_batch`) for a smooth loss; for a loss with kinks
  plain gradient steps with the "adaptive" schedule from Polyak's step, for a
  softmax model from 1/L.

``eta0`` is used by the per-sample and mini-batch SGD, momentum and
Nesterov defaults only; set ``learning_rate`` explicitly to choose the rate
of the other modes.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from fastgd._engine.full_batch import LOSS_CURVATURE

# Starting rate of the "adaptive" schedule for the adaptive optimizers. The
# first step of Adam and AdaGrad moves every coordinate by this much; RMSprop
# (no bias correction) moves it 1/√(1 − β₂) ≈ 32 times further; AdaGrad's
# steps then shrink as 1/√t by themselves, so it starts further.
ADAPTIVE_OPTIMIZER_ETA0 = {"adagrad": 10.0, "rmsprop": 1.0, "adam": 1.0}


@dataclass(frozen=True)
class Schedule:
    """A resolved learning-rate schedule.

    Attributes
    ----------
    name : str
        A schedule of :data:`fastgd._kernels.runtime.codes.SCHEDULE_CODES`.
    eta0 : float
        Its base rate.
    solver : {"epochs", "accelerated"}
        "accelerated": the full-batch solver of :mod:`fastgd._engine.full_batch`
        (which takes its step from the data, not from ``name`` and ``eta0``).
    """

    name: str
    eta0: float
    solver: str = "epochs"


def resolve_schedule(learning_rate, eta0, *, optimizer, full_batch, momentum, sgd_schedule):
    """The :class:`Schedule` of the estimator's ``learning_rate`` and ``eta0``.

    Parameters
    ----------
    learning_rate : str
        The estimator's parameter; anything but "auto" is used as given.
    eta0, momentum : float
        The estimator's parameters.
    optimizer : str
        The estimator's optimizer.
    full_batch : bool
        ``batch_size="full"``.
    sgd_schedule : str
        The scikit-learn default schedule of the estimator's plain SGD.
    """
    if learning_rate != "auto":
        return Schedule(learning_rate, eta0)
    if optimizer in ADAPTIVE_OPTIMIZER_ETA0:
        return Schedule("adaptive", ADAPTIVE_OPTIMIZER_ETA0[optimizer])
    if full_batch:
        return Schedule("constant", 1.0, solver="accelerated")
    if optimizer in ("momentum", "nesterov") and sgd_schedule != "optimal":
        return Schedule(sgd_schedule, eta0 * (1.0 - momentum))
    return Schedule(sgd_schedule, eta0)


def stable_optimal_t0(loss, alpha, momentum, X, sample_weight, fit_intercept):
    """The smallest t₀ for which the "optimal" schedule's steps are stable for a squared loss.

    The "optimal" schedule η = 1 / (α (t₀ + t − 1)) takes Bottou's t₀ (as
    scikit-learn does), which sizes the first step for a loss whose
    derivative is bounded. A squared loss's derivative grows with the error,
    and a step on sample i (weight sᵢ) overshoots its target when
    η·sᵢ·c·‖[xᵢ, 1]‖² > 2 (c bounds ℓ''); from there the steps grow
    geometrically. With this t₀ no step is above half that limit for any row
    of X: η₁ ≤ (1 − momentum) / (c·max sᵢ ‖[xᵢ, 1]‖²), the factor 1 − momentum
    because momentum lengthens the steps by 1 / (1 − momentum).

    Parameters
    ----------
    loss : int
        A loss code of :data:`~fastgd._engine.full_batch.LOSS_CURVATURE`.
    alpha : float
        The schedule's α (> 0).
    momentum : float
        0 for plain SGD, else the momentum in [0, 1).
    X : ndarray or CSR matrix
        The training rows.
    sample_weight : ndarray
        Their weights (class weights included).
    fit_intercept : bool
        Whether the rows carry the intercept's constant 1.
    """
    if sp.issparse(X):
        squared = np.asarray(X.multiply(X).sum(axis=1)).ravel()
    else:
        squared = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    weighted = sample_weight * (squared + float(fit_intercept))
    largest = float(np.max(weighted, initial=0.0))
    return LOSS_CURVATURE[loss] * largest / (alpha * (1.0 - momentum))
