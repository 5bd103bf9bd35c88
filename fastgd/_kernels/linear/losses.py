"""Losses ℓ(p, y) of the linear models and their derivatives ∂ℓ/∂p (Numba scalars).

Regression (y real, r = p − y):

============================  ===========================  ====================
loss                          ℓ(p, y)                      ∂ℓ/∂p
============================  ===========================  ====================
squared_error                 ½ r²                         r
huber                         ½ r² if |r| ≤ ε,             r, or ε·sign(r)
                              else ε|r| − ½ε²
epsilon_insensitive           max(0, |r| − ε)              sign(r) outside ε
squared_epsilon_insensitive   max(0, |r| − ε)²             2(|r| − ε)·sign(r)
============================  ===========================  ====================

Classification (y = ±1, margin z = p·y):

============================  ===========================  ====================
loss                          ℓ(p, y)                      ∂ℓ/∂p
============================  ===========================  ====================
hinge                         max(0, 1 − z)                −y if z ≤ 1
perceptron                    max(0, −z)                   −y if z ≤ 0
squared_hinge                 max(0, 1 − z)²               −2y(1 − z) if z < 1
log_loss                      log(1 + e^(−z))              −y / (1 + e^z)
modified_huber                (1 − z)² if −1 ≤ z < 1,      −2y(1 − z), or −4y,
                              −4z if z < −1, else 0        or 0
============================  ===========================  ====================

These follow scikit-learn's ``SGDRegressor`` and ``SGDClassifier`` (``epsilon``
has the same meaning; the log loss is scikit-learn's half-binomial loss
written for labels ±1). The Cython kernel ``_sgd_fast`` carries a twin of each
function; the tests check both against NumPy.
"""

import math

import numpy as np

from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba
from fastgd._kernels.runtime.tuning import MAX_LOSS_DERIVATIVE

SQUARED_ERROR = codes.SQUARED_ERROR
HUBER = codes.HUBER
EPSILON_INSENSITIVE = codes.EPSILON_INSENSITIVE
SQUARED_EPSILON_INSENSITIVE = codes.SQUARED_EPSILON_INSENSITIVE
HINGE = codes.HINGE
LOG_LOSS = codes.LOG_LOSS
MODIFIED_HUBER = codes.MODIFIED_HUBER
SQUARED_HINGE = codes.SQUARED_HINGE
PERCEPTRON = codes.PERCEPTRON


@numba.njit(inline="always", **KERNEL_OPTIONS)
def _log1p_exp(x):
    """log(1 + eˣ) without overflow."""
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@numba.njit(inline="always", **KERNEL_OPTIONS)
def loss_value(loss, p, y, epsilon):
    """ℓ(p, y) for the loss with code ``loss``."""
    if loss >= HINGE:
        z = p * y
        if loss == HINGE:
            return 0.0 if z >= 1.0 else 1.0 - z
        if loss == PERCEPTRON:
            return 0.0 if z >= 0.0 else -z
        if loss == SQUARED_HINGE:
            margin = 1.0 - z
            return 0.0 if margin <= 0.0 else margin * margin
        if loss == LOG_LOSS:
            return _log1p_exp(-z)
        # MODIFIED_HUBER
        if z >= 1.0:
            return 0.0
        if z >= -1.0:
            return (1.0 - z) * (1.0 - z)
        return -4.0 * z
    r = p - y
    if loss == SQUARED_ERROR:
        return 0.5 * r * r
    if loss == HUBER:
        if np.abs(r) <= epsilon:
            return 0.5 * r * r
        return epsilon * np.abs(r) - 0.5 * epsilon * epsilon
    z = np.abs(r) - epsilon
    if z <= 0.0:
        return 0.0
    if loss == EPSILON_INSENSITIVE:
        return z
    return z * z


@numba.njit(inline="always", **KERNEL_OPTIONS)
def loss_derivative(loss, p, y, epsilon):
    """∂ℓ/∂p for the loss with code ``loss``, clipped to ±:data:`MAX_LOSS_DERIVATIVE`.

    NaN passes (a diverged fit is reported, not hidden).
    """
    d = unclipped_loss_derivative(loss, p, y, epsilon)
    if d > MAX_LOSS_DERIVATIVE:
        return MAX_LOSS_DERIVATIVE
    if d < -MAX_LOSS_DERIVATIVE:
        return -MAX_LOSS_DERIVATIVE
    return d


@numba.njit(inline="always", **KERNEL_OPTIONS)
def unclipped_loss_derivative(loss, p, y, epsilon):
    """∂ℓ/∂p for the loss with code ``loss``."""
    if loss >= HINGE:
        z = p * y
        if loss == HINGE:
            return 0.0 if z > 1.0 else -y
        if loss == PERCEPTRON:
            return 0.0 if z > 0.0 else -y
        if loss == SQUARED_HINGE:
            margin = 1.0 - z
            return 0.0 if margin <= 0.0 else -2.0 * y * margin
        if loss == LOG_LOSS:
            # −y·σ(−z), written so that no exponential overflows.
            if z > 0.0:
                e = math.exp(-z)
                return -y * e / (1.0 + e)
            return -y / (math.exp(z) + 1.0)
        # MODIFIED_HUBER
        if z >= 1.0:
            return 0.0
        if z >= -1.0:
            return -2.0 * (1.0 - z) * y
        return -4.0 * y
    r = p - y
    if loss == SQUARED_ERROR:
        return r
    if loss == HUBER:
        if np.abs(r) <= epsilon:
            return r
        return epsilon if r > 0.0 else -epsilon
    if loss == EPSILON_INSENSITIVE:
        if r > epsilon:
            return 1.0
        if r < -epsilon:
            return -1.0
        return 0.0
    if r > epsilon:
        return 2.0 * (r - epsilon)
    if r < -epsilon:
        return 2.0 * (r + epsilon)
    return 0.0


@numba.njit(**KERNEL_OPTIONS)
def loss_sum(loss, predictions, y, sample_weight, epsilon):
    """Σ sᵢ·ℓ(pᵢ, yᵢ) (an empty ``sample_weight`` means every weight is 1)."""
    total = 0.0
    unit_weights = sample_weight.shape[0] == 0
    for i in range(y.shape[0]):
        s = 1.0 if unit_weights else sample_weight[i]
        total += s * loss_value(loss, predictions[i], y[i], epsilon)
    return total
