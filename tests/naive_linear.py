"""Plain-NumPy twins of the linear kernels (tests only).

Written for clarity, not speed: no lazy scaling, no partial sums, one
obvious formula per line. The compiled kernels must agree with these.
"""

import math

import numpy as np

from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.tuning import MAX_LOSS_DERIVATIVE


def loss_value(loss, p, y, epsilon):
    if loss >= codes.HINGE:  # classification: y is -1 or +1
        z = p * y
        if loss == codes.HINGE:
            return np.maximum(0.0, 1.0 - z)
        if loss == codes.PERCEPTRON:
            return np.maximum(0.0, -z)
        if loss == codes.SQUARED_HINGE:
            return np.maximum(0.0, 1.0 - z) ** 2
        if loss == codes.LOG_LOSS:
            return np.logaddexp(0.0, -z)
        return np.where(z >= 1.0, 0.0, np.where(z >= -1.0, (1.0 - z) ** 2, -4.0 * z))
    r = p - y
    if loss == codes.SQUARED_ERROR:
        return 0.5 * r**2
    if loss == codes.HUBER:
        return np.where(np.abs(r) <= epsilon, 0.5 * r**2, epsilon * np.abs(r) - 0.5 * epsilon**2)
    z = np.maximum(np.abs(r) - epsilon, 0.0)
    return z if loss == codes.EPSILON_INSENSITIVE else z**2


def loss_derivative(loss, p, y, epsilon):
    """∂ℓ/∂p clipped to ±MAX_LOSS_DERIVATIVE, as the kernels (and scikit-learn) clip it."""
    limit = MAX_LOSS_DERIVATIVE
    return np.clip(unclipped_loss_derivative(loss, p, y, epsilon), -limit, limit)


def unclipped_loss_derivative(loss, p, y, epsilon):
    if loss >= codes.HINGE:
        z = p * y
        if loss == codes.HINGE:
            return np.where(z <= 1.0, -y, 0.0)
        if loss == codes.PERCEPTRON:
            return np.where(z <= 0.0, -y, 0.0)
        if loss == codes.SQUARED_HINGE:
            return -2.0 * y * np.maximum(0.0, 1.0 - z)
        if loss == codes.LOG_LOSS:
            return -y * 0.5 * (1.0 - np.tanh(0.5 * z))  # -y·σ(-z)
        return np.where(z >= 1.0, 0.0, np.where(z >= -1.0, -2.0 * (1.0 - z) * y, -4.0 * y))
    r = p - y
    if loss == codes.SQUARED_ERROR:
        return r
    if loss == codes.HUBER:
        return np.clip(r, -epsilon, epsilon)
    outside = np.abs(r) > epsilon
    if loss == codes.EPSILON_INSENSITIVE:
        return np.sign(r) * outside
    return 2.0 * (r - epsilon * np.sign(r)) * outside


def learning_rate(schedule, eta0, power_t, optimal_t0, alpha, t):
    if schedule == codes.OPTIMAL:
        return 1.0 / (alpha * (optimal_t0 + t - 1.0))
    if schedule == codes.INVSCALING:
        return eta0 / t**power_t
    return eta0


class NaiveOptimizer:
    """The update rules of fastgd._kernels.common.optimizers, vectorised over coordinates."""

    def __init__(self, optimizer, n, momentum=0.9, beta_1=0.9, beta_2=0.999, eps=1e-8):
        self.optimizer = optimizer
        self.m = np.zeros(n)
        self.v = np.zeros(n)
        self.momentum, self.beta_1, self.beta_2, self.eps = momentum, beta_1, beta_2, eps
        self.step = 0

    def update(self, w, g, lr):
        """Return (new w, effective step per coordinate)."""
        self.step += 1
        o = self.optimizer
        if o == codes.SGD:
            return w - lr * g, np.full_like(w, lr)
        if o in (codes.MOMENTUM, codes.NESTEROV):
            self.m = self.momentum * self.m - lr * g
            if o == codes.MOMENTUM:
                return w + self.m, np.full_like(w, lr)
            return w + self.momentum * self.m - lr * g, np.full_like(w, lr)
        if o == codes.ADAGRAD:
            self.v = self.v + g**2
        elif o == codes.RMSPROP:
            self.v = self.beta_2 * self.v + (1 - self.beta_2) * g**2
        else:
            self.m = self.beta_1 * self.m + (1 - self.beta_1) * g
            self.v = self.beta_2 * self.v + (1 - self.beta_2) * g**2
            m_hat = self.m / (1 - self.beta_1**self.step)
            v_hat = self.v / (1 - self.beta_2**self.step)
            step = lr / (np.sqrt(v_hat) + self.eps)
            return w - step * m_hat, step
        step = lr / (np.sqrt(self.v) + self.eps)
        return w - step * g, step


def clip_towards_zero(w, total, received):
    """Cumulative L1 penalty (vectorised)."""
    new_w = np.where(w > 0, np.maximum(0, w - (total + received)), w)
    new_w = np.where(w < 0, np.minimum(0, w + (total - received)), new_w)
    return new_w, received + (new_w - w)


def sgd_epochs(
    X,
    y,
    sw,
    orders,
    *,
    loss=0,
    epsilon=0.1,
    l2=0.0,
    l1=0.0,
    schedule=0,
    eta0=0.01,
    power_t=0.25,
    optimal_t0=0.0,
    alpha=1e-4,
    optimizer=0,
    fit_intercept=True,
    average_start=0,
):
    """Per-sample SGD over the given epoch orders; returns (coef, intercept, avg, losses)."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    w, b = np.zeros(d), 0.0
    opt = NaiveOptimizer(optimizer, d + 1)
    avg, avg_b, n_avg = np.zeros(d), 0.0, 0
    total, received = 0.0, np.zeros(d)
    t = 1.0
    losses = []
    for order in orders:
        loss_sum = 0.0
        for i in order:
            x = X[i]
            p = x @ w + b
            sample_loss = loss_value(loss, p, y[i], epsilon)
            loss_sum += sw[i] * sample_loss
            dl = sw[i] * loss_derivative(loss, p, y[i], epsilon)
            eta = learning_rate(schedule, eta0, power_t, optimal_t0, alpha, t)
            step = eta
            if schedule == codes.PA1:
                if x @ x == 0:
                    continue
                step = min(eta0, sample_loss / (x @ x))
            elif schedule == codes.PA2:
                step = sample_loss / (x @ x + 0.5 / eta0)
            if optimizer == codes.SGD:
                w = w * max(0.0, 1.0 - eta * l2)
                w = w - step * dl * x
                if fit_intercept:
                    b -= step * dl
                touched = x != 0
                opt.step += 1
            else:
                new, _ = opt.update(np.r_[w, b], np.r_[dl * x + l2 * w, dl], eta)
                w = new[:d]
                b = new[d] if fit_intercept else b
                touched = np.ones(d, dtype=bool)
            if l1 > 0:
                total += eta * l1
                clipped, got = clip_towards_zero(w, total, received)
                w = np.where(touched, clipped, w)
                received = np.where(touched, got, received)
            if average_start > 0 and t >= average_start:
                n_avg += 1
                avg += (w - avg) / n_avg
                avg_b += (b - avg_b) / n_avg
            t += 1
        losses.append(loss_sum)
    return w, b, avg, losses


def batch_gradient(X, y, sw, rows, w, b, loss, epsilon, l2, fit_intercept=True):
    """Weighted-mean gradient of the penalised objective over ``rows``.

    Returns (grad_w, grad_b, loss_sum).
    """
    X = np.asarray(X, dtype=np.float64)[rows]
    p = X @ w + b
    dl = sw[rows] * loss_derivative(loss, p, y[rows], epsilon)
    weight_sum = sw[rows].sum()
    grad_w = X.T @ dl / weight_sum + l2 * w
    grad_b = dl.sum() / weight_sum if fit_intercept else 0.0
    return grad_w, grad_b, float(np.sum(sw[rows] * loss_value(loss, p, y[rows], epsilon)))


def objective(X, y, sw, w, b, loss, epsilon, l2, l1):
    """Σ sᵢ ℓᵢ / Σ sᵢ + l1‖w‖₁ + l2/2 ‖w‖²."""
    p = np.asarray(X, dtype=np.float64) @ w + b
    return float(
        np.average(loss_value(loss, p, y, epsilon), weights=sw)
        + l1 * np.abs(w).sum()
        + 0.5 * l2 * w @ w
    )


def soft_threshold(w, threshold):
    return np.sign(w) * np.maximum(np.abs(w) - threshold, 0.0)


def is_close(a, b, rtol):
    return math.isclose(a, b, rel_tol=rtol, abs_tol=rtol)


def softmax_cross_entropy(scores, labels):
    """Per-row cross-entropy and softmax probabilities of ``scores`` (n, K)."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probabilities[np.arange(len(labels)), labels], np.exp(log_probabilities)


def multinomial_sgd_epochs(
    X, y, sw, orders, n_classes, *, eta0=0.05, l2=0.0, l1=0.0, fit_intercept=True, average_start=0
):
    """Per-sample plain SGD of a softmax model (constant rate); returns (W, b, avg, losses)."""
    X = np.asarray(X, dtype=np.float64)
    d = X.shape[1]
    W, b = np.zeros((n_classes, d)), np.zeros(n_classes)
    avg, n_avg = np.zeros(n_classes * (d + 1)), 0
    total, received = 0.0, np.zeros((n_classes, d))
    t = 1
    losses = []
    for order in orders:
        loss_sum = 0.0
        for i in order:
            x, label = X[i], int(y[i])
            loss, p = softmax_cross_entropy((W @ x + b)[None], [label])
            loss_sum += sw[i] * loss[0]
            g = sw[i] * (p[0] - np.eye(n_classes)[label])
            W = W * max(0.0, 1.0 - eta0 * l2) - eta0 * np.outer(g, x)
            if fit_intercept:
                b = b - eta0 * g
            if l1 > 0:
                total += eta0 * l1
                clipped, got = clip_towards_zero(W, total, received)
                touched = np.broadcast_to(x != 0, W.shape)
                W = np.where(touched, clipped, W)
                received = np.where(touched, got, received)
            if average_start > 0 and t >= average_start:
                n_avg += 1
                avg += (np.r_[W.ravel(), b] - avg) / n_avg
            t += 1
        losses.append(loss_sum)
    return W, b, avg, losses


def multinomial_gradient(X, y, sw, rows, W, b, l2, fit_intercept=True):
    """Weighted-mean gradient of the penalised cross-entropy; returns (dW, db, loss_sum)."""
    X = np.asarray(X, dtype=np.float64)[rows]
    loss, p = softmax_cross_entropy(X @ W.T + b, y[rows].astype(int))
    g = sw[rows, None] * (p - np.eye(W.shape[0])[y[rows].astype(int)])
    dW = g.T @ X / sw[rows].sum() + l2 * W
    db = g.sum(axis=0) / sw[rows].sum() if fit_intercept else np.zeros_like(b)
    return dW, db, float(np.sum(sw[rows] * loss))
