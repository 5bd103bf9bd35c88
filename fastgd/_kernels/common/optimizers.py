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

:func:`row_sparse_step` applies the same rules to the rows of a weight
matrix a batch touched (a first layer over sparse input, an embedding
table): its cost is O(touched rows), not O(vocabulary). For plain SGD that
is exactly the dense update; for the others it is the *lazy* variant (as
TensorFlow's LazyAdam and PyTorch's SparseAdam).
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


@numba.njit(inline="always", **KERNEL_OPTIONS)
def plain_sgd_step(params, grads, lr):
    """``params -= lr · grads`` in the buffers' dtype: :func:`optimizer_step`'s plain SGD rule.

    The batch kernels' plain-SGD variants call it alone, so that they
    compile no other rule (see :mod:`fastgd._kernels.linear.batch_numba`).
    """
    lr_ = params.dtype.type(lr)
    for j in range(params.shape[0]):
        params[j] -= lr_ * grads[j]


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
        plain_sgd_step(params, grads, lr)
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


@numba.njit(inline="always", **KERNEL_OPTIONS)
def _row_sq_norm(w):
    """Σ w² of one row, in float64."""
    total = 0.0
    for j in range(w.shape[0]):
        total += float(w[j]) * float(w[j])
    return total


@numba.njit(**KERNEL_OPTIONS)
def row_sparse_step(
    W,
    G,
    rows,
    n_rows,
    state_1,
    state_2,
    lr,
    step_count,
    optimizer,
    momentum,
    beta_1,
    beta_2,
    eps,
    l2,
    track_norm=True,
):
    """Lazy optimizer update of the rows of a weight matrix a batch touched.

    Only rows ``rows[:n_rows]`` of ``W`` and of its optimizer state change;
    each follows the rule of :func:`optimizer_step` with the gradient
    ``G[r] + l2 · W[rows[r]]`` (the L2 term of the touched rows only). The
    other rows, whose gradient is zero, are left as they are: for plain SGD
    without L2 that *is* the dense update; for the other rules it is the
    lazy variant (TensorFlow's ``LazyAdam``, PyTorch's ``SparseAdam``):
    momentum does not carry a row forward and moments do not decay in the
    steps that do not touch it. Adam's bias correction uses the global step
    count, as in those implementations.

    Parameters
    ----------
    W : C-contiguous ndarray of shape (n_in, n_out)
        Weights, updated in place.
    G : C-contiguous ndarray of shape (>= n_rows, n_out)
        Gradient of each touched row (``G[r]`` belongs to ``rows[r]``).
    rows : ndarray of int64
        Touched rows (distinct).
    n_rows : int
    state_1, state_2 : C-contiguous ndarray of shape (n_in, n_out)
        Optimizer state (see the module doc).
    lr : float
        Learning rate of this step.
    step_count : int
        1-based number of this update.
    optimizer : int
        Optimizer code.
    momentum, beta_1, beta_2, eps : float
        Optimizer constants.
    l2 : float
        Coefficient of the L2 gradient term (``alpha / batch size``).
    track_norm : bool, default=True
        Compute the change of ``Σ W²`` (the return value); 0.0 is returned
        without it.

    Returns
    -------
    delta_sq : float
        Change of the sum of squares of ``W`` (so callers can keep ``‖W‖²``
        up to date in O(touched rows)).
    """
    delta_sq = 0.0
    if track_norm:
        for r in range(n_rows):
            delta_sq -= _row_sq_norm(W[rows[r]])
    dt = W.dtype.type
    lr_ = dt(lr)
    lam = dt(l2)
    n_out = W.shape[1]
    # One loop per rule (the rule is chosen once), in the buffers' dtype, so
    # the loop over a row's units vectorises.
    if optimizer == SGD:
        for r in range(n_rows):
            w, g = W[rows[r]], G[r]
            for j in range(n_out):
                w[j] -= lr_ * (g[j] + lam * w[j])
    elif optimizer == MOMENTUM or optimizer == NESTEROV:
        mu = dt(momentum)
        nesterov = optimizer == NESTEROV
        for r in range(n_rows):
            row = rows[r]
            w, g_row, m_row = W[row], G[r], state_1[row]
            for j in range(n_out):
                g = g_row[j] + lam * w[j]
                v = mu * m_row[j] - lr_ * g
                m_row[j] = v
                w[j] = w[j] + mu * v - lr_ * g if nesterov else w[j] + v
    elif optimizer == ADAGRAD or optimizer == RMSPROP:
        eps_ = dt(eps)
        decay = dt(beta_2) if optimizer == RMSPROP else dt(1.0)
        fresh = dt(1.0 - beta_2) if optimizer == RMSPROP else dt(1.0)
        for r in range(n_rows):
            row = rows[r]
            w, g_row, s_row = W[row], G[r], state_2[row]
            for j in range(n_out):
                g = g_row[j] + lam * w[j]
                s = decay * s_row[j] + fresh * g * g
                s_row[j] = s
                w[j] -= lr_ / (np.sqrt(s) + eps_) * g
    else:  # ADAM
        eps_ = dt(eps)
        b1 = dt(beta_1)
        c1 = dt(1.0 - beta_1)
        b2 = dt(beta_2)
        c2 = dt(1.0 - beta_2)
        step = dt(lr / (1.0 - beta_1**step_count))
        inv_bias_2 = dt(1.0 / (1.0 - beta_2**step_count))
        for r in range(n_rows):
            row = rows[r]
            w, g_row, m_row, v_row = W[row], G[r], state_1[row], state_2[row]
            for j in range(n_out):
                g = g_row[j] + lam * w[j]
                m = b1 * m_row[j] + c1 * g
                v = b2 * v_row[j] + c2 * g * g
                m_row[j] = m
                v_row[j] = v
                w[j] -= step * m / (np.sqrt(v * inv_bias_2) + eps_)
    if track_norm:
        for r in range(n_rows):
            delta_sq += _row_sq_norm(W[rows[r]])
    return delta_sq
