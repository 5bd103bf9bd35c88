# The network trainer's per-batch arithmetic, ahead of time (_train_steps.h):
# the optimizer update of the flat parameter buffer, the softmax
# cross-entropy and the masked multi-task regression loss, and the softmax /
# log-softmax of predict_proba. Included by _network_fast.pxi.

from libc.math cimport pow
from libc.stdint cimport int64_t

cdef extern from "_train_steps.h" nogil:
    void fg_optimizer_step_f(float* p, const float* g, float* s1, float* s2, Py_ssize_t n,
                             int optimizer, float lr, float mu, float b1, float c1, float b2,
                             float c2, float eps, float step, float inv_bias_2)
    void fg_optimizer_step_d(double* p, const double* g, double* s1, double* s2, Py_ssize_t n,
                             int optimizer, double lr, double mu, double b1, double c1,
                             double b2, double c2, double eps, double step, double inv_bias_2)
    void fg_softmax_row_f(const float* s, float* p, Py_ssize_t K, double* lse, double* mx)
    void fg_softmax_row_d(const double* s, double* p, Py_ssize_t K, double* lse, double* mx)
    void fg_log_softmax_row_f(const float* s, float* o, Py_ssize_t K)
    void fg_log_softmax_row_d(const double* s, double* o, Py_ssize_t K)
    int fg_softmax_xent_f(const float* scores, const long long* y, const float* w,
                          Py_ssize_t B, Py_ssize_t K, float* proba, float* dscores,
                          double* loss)
    int fg_softmax_xent_d(const double* scores, const long long* y, const double* w,
                          Py_ssize_t B, Py_ssize_t K, double* proba, double* dscores,
                          double* loss)
    double fg_masked_loss_f(const float* pred, const float* y, const float* mask,
                            const float* lambdas, Py_ssize_t B, Py_ssize_t T, int huber,
                            double delta, float* dpred, double* task_losses)
    double fg_masked_loss_d(const double* pred, const double* y, const double* mask,
                            const double* lambdas, Py_ssize_t B, Py_ssize_t T, int huber,
                            double delta, double* dpred, double* task_losses)
    int FG_ADAM
    int FG_RMSPROP


def optimizer_codes():
    """``(RMSPROP, ADAM)`` as _train_steps.h numbers them (tested against codes.py)."""
    return FG_RMSPROP, FG_ADAM


cdef double _power(double base, long exponent) noexcept nogil:
    """base ** exponent (exponent >= 0) by squaring, as Numba computes a float to an
    integer power (so that the bias corrections round as in its kernels)."""
    cdef double result = 1.0
    if exponent > 0x10000:
        return pow(base, <double>exponent)
    while exponent != 0:
        if exponent & 1:
            result *= base
        exponent >>= 1
        base *= base
    return result


def optimizer_step(floating[::1] params, const floating[::1] grads, floating[::1] state_1,
                   floating[::1] state_2, double lr, long step_count, int optimizer,
                   double momentum, double beta_1, double beta_2, double eps):
    """One optimizer update of a flat parameter buffer, in place (no L1 step).

    The rules and arguments of
    :func:`fastgd._kernels.common.optimizers.optimizer_step` (its update
    without L1), with the same results bit for bit; ahead-of-time code, so
    that a network fit needs no Numba.
    """
    cdef Py_ssize_t n = params.shape[0]
    if grads.shape[0] != n or state_1.shape[0] != n or state_2.shape[0] != n:
        raise ValueError("optimizer_step: params, grads and the two states differ in size")
    if optimizer < 0 or optimizer > FG_ADAM:
        raise ValueError(f"optimizer_step: unknown optimizer code {optimizer}")
    if n == 0:
        return
    if step_count < 1:
        raise ValueError("optimizer_step: step_count counts from 1")
    cdef double bias_1 = 1.0 - _power(beta_1, step_count)
    cdef double bias_2 = 1.0 - _power(beta_2, step_count)
    # The constants in the buffers' type, as the Numba rule rounds them.
    cdef double lr_step = lr / bias_1 if optimizer == FG_ADAM else 0.0
    cdef double inv_bias_2 = 1.0 / bias_2 if optimizer == FG_ADAM else 0.0
    with nogil:
        if floating is float:
            fg_optimizer_step_f(&params[0], &grads[0], &state_1[0], &state_2[0], n, optimizer,
                                <float>lr, <float>momentum, <float>beta_1, <float>(1.0 - beta_1),
                                <float>beta_2, <float>(1.0 - beta_2), <float>eps,
                                <float>lr_step, <float>inv_bias_2)
        else:
            fg_optimizer_step_d(&params[0], &grads[0], &state_1[0], &state_2[0], n, optimizer,
                                lr, momentum, beta_1, 1.0 - beta_1, beta_2, 1.0 - beta_2, eps,
                                lr_step, inv_bias_2)


def softmax_cross_entropy(const floating[:, ::1] scores, const int64_t[::1] y_index,
                          sample_weight, floating[:, ::1] proba, floating[:, ::1] dscores):
    """Weighted multinomial log-loss, softmax probabilities and score gradient.

    Parameters
    ----------
    scores : ndarray of shape (n_samples, n_classes), float32 or float64
        Raw class scores (logits).
    y_index : int64 ndarray of shape (n_samples,)
        Index of the true class of each sample, in ``[0, n_classes)``.
    sample_weight : ndarray of shape (n_samples,) or None
        Non-negative sample weights (scores' dtype); None means all ones.
    proba : ndarray like scores
        Filled with the softmax probabilities.
    dscores : ndarray like scores
        Filled with the gradient of the returned loss with respect to the
        scores: ``w_i (proba_i − onehot(y_i)) / Σ w``. May be ``scores``
        itself (each row is read before it is overwritten).

    Returns
    -------
    loss : float
        ``Σ_i w_i · (−log proba[i, y_i]) / Σ_i w_i`` (float64); 0, with a
        zero gradient, if the weights sum to 0.

    Raises
    ------
    ValueError
        If the shapes disagree or a class index is out of range.
    """
    cdef Py_ssize_t B = scores.shape[0]
    cdef Py_ssize_t K = scores.shape[1]
    if y_index.shape[0] != B or not _same_shape(proba.shape, scores.shape, 2):
        raise ValueError("softmax_cross_entropy: shapes disagree")
    if not _same_shape(dscores.shape, scores.shape, 2):
        raise ValueError("softmax_cross_entropy: dscores has the wrong shape")
    cdef const floating[::1] weights
    cdef const floating* w = NULL
    if sample_weight is not None:
        weights = sample_weight
        if weights.shape[0] != B:
            raise ValueError("softmax_cross_entropy: sample_weight has the wrong size")
        if B > 0:
            w = &weights[0]
    cdef double loss = 0.0
    cdef int status = 0
    if B == 0:
        return 0.0
    if K == 0:
        raise ValueError("softmax_cross_entropy: no classes")
    with nogil:
        if floating is float:
            status = fg_softmax_xent_f(&scores[0, 0], <const long long*>&y_index[0], w, B, K,
                                       &proba[0, 0], &dscores[0, 0], &loss)
        else:
            status = fg_softmax_xent_d(&scores[0, 0], <const long long*>&y_index[0], w, B, K,
                                       &proba[0, 0], &dscores[0, 0], &loss)
    if status != 0:
        raise ValueError("softmax_cross_entropy: class index out of range")
    return loss


def softmax(const floating[:, ::1] scores, floating[:, ::1] out, int n_threads=1):
    """Row-wise softmax (stable), ``out`` may be ``scores``; rows split over ``n_threads``.

    Each row is computed alone: the result does not depend on the threads.
    """
    if not _same_shape(out.shape, scores.shape, 2):
        raise ValueError("softmax: out has the wrong shape")
    cdef Py_ssize_t i
    cdef Py_ssize_t K = scores.shape[1]
    if scores.shape[0] == 0 or K == 0:
        return
    for i in prange(scores.shape[0], nogil=True, num_threads=n_threads, schedule="static"):
        if floating is float:
            fg_softmax_row_f(&scores[i, 0], &out[i, 0], K, NULL, NULL)
        else:
            fg_softmax_row_d(&scores[i, 0], &out[i, 0], K, NULL, NULL)


def log_softmax(const floating[:, ::1] scores, floating[:, ::1] out, int n_threads=1):
    """Row-wise ``s_k − max(s) − log Σ_j exp(s_j − max(s))``, ``out`` may be ``scores``."""
    if not _same_shape(out.shape, scores.shape, 2):
        raise ValueError("log_softmax: out has the wrong shape")
    cdef Py_ssize_t i
    cdef Py_ssize_t K = scores.shape[1]
    if scores.shape[0] == 0 or K == 0:
        return
    for i in prange(scores.shape[0], nogil=True, num_threads=n_threads, schedule="static"):
        if floating is float:
            fg_log_softmax_row_f(&scores[i, 0], &out[i, 0], K)
        else:
            fg_log_softmax_row_d(&scores[i, 0], &out[i, 0], K)


def masked_regression_loss(const floating[:, ::1] pred, const floating[:, ::1] y,
                           const floating[:, ::1] mask, const floating[::1] task_weights,
                           int huber, double huber_delta, floating[:, ::1] dpred,
                           double[::1] task_losses):
    """Multi-task regression loss with missing targets.

    For task t, with residual r = pred − y and per-element loss ℓ::

        L_t = Σ_i mask[i, t] · ℓ(r[i, t]) / max(1, Σ_i mask[i, t])
        total = Σ_t λ_t · L_t

    ℓ is the squared error ½ r² (``huber`` false) or Huber:
    ½ r² if |r| ≤ δ else δ (|r| − ½ δ).

    Parameters
    ----------
    pred, y, mask : ndarray of shape (n_samples, n_tasks)
        Predictions, targets and the mask: 1 where a target exists, 0 where
        it is missing (y is never read there, so it may be NaN; other
        non-negative values act as per-element weights).
    task_weights : ndarray of shape (n_tasks,)
        λ_t, in pred's dtype.
    huber : bool
        Huber loss instead of the squared error.
    huber_delta : float
        δ of the Huber loss.
    dpred : ndarray like pred
        Filled with ∂total/∂pred; exactly 0 where ``mask`` is 0.
    task_losses : float64 ndarray of shape (n_tasks,)
        Filled with L_t.

    Returns
    -------
    total : float
        Σ_t λ_t L_t (float64).
    """
    cdef Py_ssize_t B = pred.shape[0]
    cdef Py_ssize_t T = pred.shape[1]
    cdef Py_ssize_t k
    if not (_same_shape(y.shape, pred.shape, 2) and _same_shape(mask.shape, pred.shape, 2)
            and _same_shape(dpred.shape, pred.shape, 2)):
        raise ValueError("masked_regression_loss: pred, y, mask, dpred shapes differ")
    if task_weights.shape[0] != T or task_losses.shape[0] != T:
        raise ValueError("masked_regression_loss: task_weights / task_losses size")
    if B == 0 or T == 0:
        for k in range(T):
            task_losses[k] = 0.0
        return 0.0
    cdef double total
    with nogil:
        if floating is float:
            total = fg_masked_loss_f(&pred[0, 0], &y[0, 0], &mask[0, 0], &task_weights[0], B,
                                     T, huber, huber_delta, &dpred[0, 0], &task_losses[0])
        else:
            total = fg_masked_loss_d(&pred[0, 0], &y[0, 0], &mask[0, 0], &task_weights[0], B,
                                     T, huber, huber_delta, &dpred[0, 0], &task_losses[0])
    return total
