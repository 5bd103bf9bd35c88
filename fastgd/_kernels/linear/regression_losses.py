"""Regression losses ℓ(p, y) and their derivatives ∂ℓ/∂p (Numba scalars).

============================  ===========================  ====================
loss                          ℓ(p, y), r = p − y           ∂ℓ/∂p
============================  ===========================  ====================
squared_error                 ½ r²                         r
huber                         ½ r² if |r| ≤ ε,             r, or ε·sign(r)
                              else ε|r| − ½ε²
epsilon_insensitive           max(0, |r| − ε)              sign(r) outside ε
squared_epsilon_insensitive   max(0, |r| − ε)²             2(|r| − ε)·sign(r)
============================  ===========================  ====================

These follow scikit-learn's ``SGDRegressor`` (``epsilon`` has the same
meaning). The Cython kernel ``_sgd_fast`` carries a twin of each function;
the tests check the two against each other and against NumPy.
"""

import numpy as np

from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba

SQUARED_ERROR = codes.SQUARED_ERROR
HUBER = codes.HUBER
EPSILON_INSENSITIVE = codes.EPSILON_INSENSITIVE


@numba.njit(inline="always", **KERNEL_OPTIONS)
def loss_value(loss, p, y, epsilon):
    """ℓ(p, y) for the loss with code ``loss``."""
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
    """∂ℓ/∂p for the loss with code ``loss``."""
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
