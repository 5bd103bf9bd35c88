"""Optimizer update kernels over flat parameter buffers (Numba).

Every trainable model in fastgd keeps its parameters in one flat 1-D buffer
and its gradient in a buffer of the same shape, so a single kernel updates
any model. The optimizer's state lives in two more buffers of that shape:

============  ==========================  ===========================
optimizer     ``state_1``                 ``state_2``
============  ==========================  ===========================
sgd           unused                      unused
momentum      velocity v                  unused
nesterov      velocity v                  unused
adagrad       unused                      sum of squared gradients G
rmsprop       unused                      running mean of g², S
adam          first moment m              second moment v
============  ==========================  ===========================

Update rules (``lr`` is the learning rate of this step, ``g`` the gradient):

* sgd:       w ← w − lr·g
* momentum:  v ← μ·v − lr·g;  w ← w + v
* nesterov:  v ← μ·v − lr·g;  w ← w + μ·v − lr·g  (Sutskever et al., 2013)
* adagrad:   G ← G + g²;  w ← w − lr·g / (√G + ε)
* rmsprop:   S ← β₂·S + (1 − β₂)·g²;  w ← w − lr·g / (√S + ε)
* adam:      m ← β₁·m + (1 − β₁)·g;  v ← β₂·v + (1 − β₂)·g²;
             w ← w − lr·m̂ / (√v̂ + ε), with the bias corrections
             m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ)  (Kingma & Ba, 2015)

Each rule also reports its *effective step* for the coordinate (lr for the
first three, lr / (√· + ε) for the adaptive ones); the proximal L1 step
(soft-thresholding by ``l1 × effective step``) uses it.
"""

import numpy as np

from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba

SGD = codes.SGD
MOMENTUM = codes.MOMENTUM
NESTEROV = codes.NESTEROV
ADAGRAD = codes.ADAGRAD
RMSPROP = codes.RMSPROP
ADAM = codes.ADAM


@numba.njit(inline="always", **KERNEL_OPTIONS)
def coordinate_step(optimizer, w, g, s1, s2, lr, momentum, beta_1, beta_2, eps, bias_1, bias_2):
    """Update one coordinate; return ``(w, s1, s2, effective_step)``.

    ``bias_1`` and ``bias_2`` are Adam's bias corrections ``1 − β₁ᵗ`` and
    ``1 − β₂ᵗ`` (computed once per step by the caller).
    """
    if optimizer == SGD:
        return w - lr * g, s1, s2, lr
    if optimizer == MOMENTUM:
        s1 = momentum * s1 - lr * g
        return w + s1, s1, s2, lr
    if optimizer == NESTEROV:
        s1 = momentum * s1 - lr * g
        return w + momentum * s1 - lr * g, s1, s2, lr
    if optimizer == ADAGRAD:
        s2 = s2 + g * g
        step = lr / (np.sqrt(s2) + eps)
        return w - step * g, s1, s2, step
    if optimizer == RMSPROP:
        s2 = beta_2 * s2 + (1.0 - beta_2) * g * g
        step = lr / (np.sqrt(s2) + eps)
        return w - step * g, s1, s2, step
    # ADAM
    s1 = beta_1 * s1 + (1.0 - beta_1) * g
    s2 = beta_2 * s2 + (1.0 - beta_2) * g * g
    step = lr / (np.sqrt(s2 / bias_2) + eps)
    return w - step * (s1 / bias_1), s1, s2, step


@numba.njit(inline="always", **KERNEL_OPTIONS)
def soft_threshold(w, threshold):
    """Proximal operator of ``threshold·|w|``: shrink w towards 0 by threshold."""
    if w > threshold:
        return w - threshold
    if w < -threshold:
        return w + threshold
    return 0.0 * w


@numba.njit(**KERNEL_OPTIONS)
def optimizer_step(
    params,
    grads,
    state_1,
    state_2,
    lr,
    step_count,
    optimizer,
    momentum,
    beta_1,
    beta_2,
    eps,
    l1=0.0,
    n_l1=0,
):
    """Apply one optimizer update to a flat parameter buffer, in place.

    Parameters
    ----------
    params, grads, state_1, state_2 : ndarray of shape (n_params,)
        Parameters, their gradient and the optimizer state (see module doc).
    lr : float
        Learning rate of this step.
    step_count : int
        1-based number of this update (Adam's bias correction uses it).
    optimizer : int
        Optimizer code from :mod:`fastgd._kernels.runtime.codes`.
    momentum, beta_1, beta_2, eps : float
        Optimizer constants.
    l1 : float, default=0.0
        If positive, take a proximal L1 step after the update: the first
        ``n_l1`` coordinates are soft-thresholded by ``l1 × effective step``.
    n_l1 : int, default=0
        Number of leading coordinates the L1 penalty applies to.
    """
    bias_1 = 1.0 - beta_1**step_count
    bias_2 = 1.0 - beta_2**step_count
    if l1 > 0.0 and n_l1 > 0:
        _general_step(
            params,
            grads,
            state_1,
            state_2,
            lr,
            optimizer,
            momentum,
            beta_1,
            beta_2,
            eps,
            bias_1,
            bias_2,
            l1,
            n_l1,
        )
    else:
        _fast_step(
            params,
            grads,
            state_1,
            state_2,
            lr,
            optimizer,
            momentum,
            beta_1,
            beta_2,
            eps,
            bias_1,
            bias_2,
        )


@numba.njit(**KERNEL_OPTIONS)
def _general_step(
    params,
    grads,
    state_1,
    state_2,
    lr,
    optimizer,
    momentum,
    beta_1,
    beta_2,
    eps,
    bias_1,
    bias_2,
    l1,
    n_l1,
):
    """Per-coordinate update with the proximal L1 step (float64 arithmetic)."""
    for j in range(params.shape[0]):
        w, s1, s2, eff = coordinate_step(
            optimizer,
            params[j],
            grads[j],
            state_1[j],
            state_2[j],
            lr,
            momentum,
            beta_1,
            beta_2,
            eps,
            bias_1,
            bias_2,
        )
        if l1 > 0.0 and j < n_l1:
            w = soft_threshold(w, l1 * eff)
        params[j] = w
        state_1[j] = s1
        state_2[j] = s2


@numba.njit(**KERNEL_OPTIONS)
def _fast_step(
    params,
    grads,
    state_1,
    state_2,
    lr,
    optimizer,
    momentum,
    beta_1,
    beta_2,
    eps,
    bias_1,
    bias_2,
):
    """Update without L1: the rule is chosen once, one loop per rule.

    The loops have no branches and work in the buffers' dtype (float32
    arithmetic for float32 buffers), so the compiler vectorises them. The
    formulas are those of :func:`coordinate_step`, with Adam's bias
    corrections folded into two per-step constants:
    ``w ← w − (lr/(1−β₁ᵗ))·m / (√(v·1/(1−β₂ᵗ)) + ε)``.
    """
    n = params.shape[0]
    dt = params.dtype.type
    lr_ = dt(lr)
    if optimizer == SGD:
        for j in range(n):
            params[j] -= lr_ * grads[j]
    elif optimizer == MOMENTUM or optimizer == NESTEROV:
        mu = dt(momentum)
        if optimizer == MOMENTUM:
            for j in range(n):
                v = mu * state_1[j] - lr_ * grads[j]
                state_1[j] = v
                params[j] += v
        else:
            for j in range(n):
                g = grads[j]
                v = mu * state_1[j] - lr_ * g
                state_1[j] = v
                params[j] = params[j] + mu * v - lr_ * g
    elif optimizer == ADAGRAD:
        eps_ = dt(eps)
        for j in range(n):
            g = grads[j]
            s = state_2[j] + g * g
            state_2[j] = s
            params[j] -= lr_ / (np.sqrt(s) + eps_) * g
    elif optimizer == RMSPROP:
        eps_ = dt(eps)
        b2 = dt(beta_2)
        c2 = dt(1.0 - beta_2)
        for j in range(n):
            g = grads[j]
            s = b2 * state_2[j] + c2 * g * g
            state_2[j] = s
            params[j] -= lr_ / (np.sqrt(s) + eps_) * g
    else:  # ADAM
        eps_ = dt(eps)
        b1 = dt(beta_1)
        c1 = dt(1.0 - beta_1)
        b2 = dt(beta_2)
        c2 = dt(1.0 - beta_2)
        step = dt(lr / bias_1)
        inv_bias_2 = dt(1.0 / bias_2)
        for j in range(n):
            g = grads[j]
            m = b1 * state_1[j] + c1 * g
            v = b2 * state_2[j] + c2 * g * g
            state_1[j] = m
            state_2[j] = v
            params[j] -= step * m / (np.sqrt(v * inv_bias_2) + eps_)
