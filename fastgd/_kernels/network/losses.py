"""Output losses of the neural estimators and their gradients (Numba).

* :func:`softmax_cross_entropy` — multinomial log-loss on raw scores with
  sample weights (``FusionClassifier``).
* :func:`softmax`, :func:`log_softmax` — ``predict_proba`` /
  ``predict_log_proba``.
* :func:`masked_regression_loss` — multi-task regression where some targets
  are missing (``MultiTaskRegressor``).

Softmax is computed stably by subtracting the row maximum first:
softmax(s)_k = exp(s_k − m) / Σ_j exp(s_j − m) with m = max_j s_j, and the
log-loss of the true class as log Σ_j exp(s_j − m) − (s_y − m), which never
takes the log of a rounded-to-zero probability.

Scalar losses are accumulated in float64 and returned as float64 whatever
the array dtype; the reductions run serially in sample order, so they are
deterministic.
"""

import numpy as np

from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba, parallel_and_serial
from fastgd._kernels.runtime.tuning import PARALLEL_MIN_WORK

SQUARED_ERROR = codes.SQUARED_ERROR
HUBER = codes.HUBER


@numba.njit(inline="always", **KERNEL_OPTIONS)
def _softmax_row(s, p):
    """p = softmax(s) for one row; return log Σ exp(s − max) and the max."""
    K = s.shape[0]
    m = s[0]
    for k in range(1, K):
        if s[k] > m:
            m = s[k]
    total = 0.0
    for k in range(K):
        e = np.exp(s[k] - m)
        p[k] = e
        total += e
    inv = 1.0 / total
    for k in range(K):
        p[k] = p[k] * inv
    return np.log(total), m


@numba.njit(**KERNEL_OPTIONS)
def softmax_cross_entropy(scores, y_index, sample_weight, proba, dscores):
    """Weighted multinomial log-loss, softmax probabilities and score gradient.

    Parameters
    ----------
    scores : ndarray of shape (n_samples, n_classes), float32 or float64
        Raw class scores (logits).
    y_index : integer ndarray of shape (n_samples,)
        Index of the true class of each sample, in ``[0, n_classes)``.
    sample_weight : ndarray of shape (n_samples,) or None
        Non-negative sample weights; None means all ones.
    proba : ndarray of shape (n_samples, n_classes), same dtype as scores
        Filled with the softmax probabilities.
    dscores : ndarray of shape (n_samples, n_classes), same dtype as scores
        Filled with the gradient of the returned loss with respect to the
        scores: ``w_i (proba_i − onehot(y_i)) / Σ w``. May be ``scores``
        itself (scores are read before they are overwritten, row by row).

    Returns
    -------
    loss : float
        ``Σ_i w_i · (−log proba[i, y_i]) / Σ_i w_i`` (float64). If the
        weights sum to 0 the loss and the gradient are 0.
    """
    B, K = scores.shape
    if y_index.shape[0] != B or proba.shape != scores.shape:
        raise ValueError("softmax_cross_entropy: shapes disagree")
    if dscores.shape != scores.shape:
        raise ValueError("softmax_cross_entropy: dscores has the wrong shape")
    w_sum = 0.0
    if sample_weight is not None:
        if sample_weight.shape[0] != B:
            raise ValueError("softmax_cross_entropy: sample_weight has the wrong size")
        for i in range(B):
            w_sum += sample_weight[i]
    else:
        w_sum = float(B)
    inv_w = 1.0 / w_sum if w_sum > 0.0 else 0.0
    loss = 0.0
    for i in range(B):
        y = y_index[i]
        if y < 0 or y >= K:
            raise ValueError("softmax_cross_entropy: class index out of range")
        w = 1.0
        if sample_weight is not None:
            w = float(sample_weight[i])
        s_y = float(scores[i, y])
        lse, m = _softmax_row(scores[i], proba[i])
        # −log p_y = log Σ exp(s − m) − (s_y − m)
        if w != 0.0:
            loss += w * (lse - (s_y - m))
        g = w * inv_w
        for k in range(K):
            dscores[i, k] = g * proba[i, k]
        dscores[i, y] = g * (proba[i, y] - 1.0)
    return loss * inv_w


def _softmax_body(scores, out):
    """Body of :func:`softmax`, compiled parallel and serial."""
    if out.shape != scores.shape:
        raise ValueError("softmax: out has the wrong shape")
    for i in numba.prange(scores.shape[0]):
        _softmax_row(scores[i], out[i])


_softmax_parallel, _softmax_serial = parallel_and_serial(_softmax_body)


@numba.njit(**KERNEL_OPTIONS)
def softmax(scores, out):
    """Row-wise softmax (stable).

    Parameters
    ----------
    scores : ndarray of shape (n_samples, n_classes), float32 or float64
        Raw class scores.
    out : ndarray of the same shape and dtype
        Filled with the probabilities (may be ``scores``).
    """
    if scores.size >= PARALLEL_MIN_WORK:
        return _softmax_parallel(scores, out)
    return _softmax_serial(scores, out)


def _log_softmax_body(scores, out):
    """Body of :func:`log_softmax`, compiled parallel and serial."""
    if out.shape != scores.shape:
        raise ValueError("log_softmax: out has the wrong shape")
    K = scores.shape[1]
    for i in numba.prange(scores.shape[0]):
        s = scores[i]
        o = out[i]
        m = s[0]
        for k in range(1, K):
            if s[k] > m:
                m = s[k]
        total = 0.0
        for k in range(K):
            total += np.exp(s[k] - m)
        shift = m + np.log(total)
        for k in range(K):
            o[k] = s[k] - shift


_log_softmax_parallel, _log_softmax_serial = parallel_and_serial(_log_softmax_body)


@numba.njit(**KERNEL_OPTIONS)
def log_softmax(scores, out):
    """Row-wise log-softmax: ``s_k − max(s) − log Σ_j exp(s_j − max(s))``.

    Parameters
    ----------
    scores : ndarray of shape (n_samples, n_classes), float32 or float64
        Raw class scores.
    out : ndarray of the same shape and dtype
        Filled with the log-probabilities (may be ``scores``).
    """
    if scores.size >= PARALLEL_MIN_WORK:
        return _log_softmax_parallel(scores, out)
    return _log_softmax_serial(scores, out)


@numba.njit(**KERNEL_OPTIONS)
def masked_regression_loss(pred, y, mask, task_weights, loss_code, huber_delta, dpred, task_losses):
    """Multi-task regression loss with missing targets.

    For task t, with residual r = pred − y and per-element loss ℓ::

        L_t = Σ_i mask[i, t] · ℓ(r[i, t]) / max(1, Σ_i mask[i, t])
        total = Σ_t λ_t · L_t

    ℓ is the squared error ½ r² (``loss_code`` 0) or Huber (1):
    ½ r² if |r| ≤ δ else δ (|r| − ½ δ).

    Parameters
    ----------
    pred : ndarray of shape (n_samples, n_tasks), float32 or float64
        Predictions.
    y : ndarray of shape (n_samples, n_tasks)
        Targets. Where ``mask`` is 0 the value is never read into any
        arithmetic, so it may be NaN.
    mask : ndarray of shape (n_samples, n_tasks)
        1.0 where a target exists, 0.0 where it is missing (other
        non-negative values act as per-element weights).
    task_weights : ndarray of shape (n_tasks,)
        λ_t.
    loss_code : int
        ``codes.SQUARED_ERROR`` (0) or ``codes.HUBER`` (1).
    huber_delta : float
        δ of the Huber loss.
    dpred : ndarray of shape (n_samples, n_tasks), same dtype as pred
        Filled with ∂total/∂pred; exactly 0 where ``mask`` is 0.
    task_losses : ndarray of shape (n_tasks,)
        Filled with L_t.

    Returns
    -------
    total : float
        Σ_t λ_t L_t (float64).
    """
    B, T = pred.shape
    if y.shape != pred.shape or mask.shape != pred.shape or dpred.shape != pred.shape:
        raise ValueError("masked_regression_loss: pred, y, mask, dpred shapes differ")
    if task_weights.shape[0] != T or task_losses.shape[0] != T:
        raise ValueError("masked_regression_loss: task_weights / task_losses size")
    if loss_code != SQUARED_ERROR and loss_code != HUBER:
        raise ValueError("masked_regression_loss: unknown loss code")
    delta = float(huber_delta)
    total = 0.0
    for t in range(T):
        count = 0.0
        for i in range(B):
            count += mask[i, t]
        inv = 1.0 / max(1.0, count)
        lam = float(task_weights[t])
        loss_t = 0.0
        for i in range(B):
            m = float(mask[i, t])
            if m == 0.0:
                dpred[i, t] = 0.0
                continue
            r = float(pred[i, t]) - float(y[i, t])
            if loss_code == HUBER and abs(r) > delta:
                loss_t += m * delta * (abs(r) - 0.5 * delta)
                g = delta if r > 0.0 else -delta
            else:
                loss_t += m * 0.5 * r * r
                g = r
            dpred[i, t] = lam * m * g * inv
        loss_t *= inv
        task_losses[t] = loss_t
        total += lam * loss_t
    return total
