"""Fully connected (dense) layer, forward and backward (Numba + BLAS).

Forward: ``out = act(X @ W + b)``. Backward, with dZ = dA · act'(z) written
through the layer output A (see :mod:`fastgd._kernels.network.activations`)::

    dW = Xᵀ dZ        db = Σ_i dZ[i]        dX = dZ Wᵀ

The three matrix products go to BLAS GEMM through Numba's ``np.dot`` (which
calls SciPy's BLAS); transposes are passed to BLAS as flags, never copied.
Bias, activation and its derivative are fused element-wise passes. The bias
gradient is summed serially in sample order (deterministic).
"""

import numpy as np

from fastgd._kernels.network.activations import activation_backward, bias_activation_forward
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba


@numba.njit(**KERNEL_OPTIONS)
def dense_forward(X, W, b, out, code):
    """Dense layer forward pass: ``out[:] = act(X @ W + b)``.

    Parameters
    ----------
    X : C-contiguous ndarray of shape (n_samples, n_in), float32 or float64
        Input.
    W : C-contiguous ndarray of shape (n_in, n_out), same dtype
        Weights.
    b : ndarray of shape (n_out,), same dtype
        Bias.
    out : C-contiguous ndarray of shape (n_samples, n_out), same dtype
        Output buffer (overwritten). Must not overlap X or W.
    code : int
        Activation code (``codes.ACTIVATION_CODES``).
    """
    if X.shape[1] != W.shape[0]:
        raise ValueError("dense_forward: X.shape[1] must equal W.shape[0]")
    if out.shape[0] != X.shape[0] or out.shape[1] != W.shape[1]:
        raise ValueError("dense_forward: out must have shape (n_samples, n_out)")
    if b.shape[0] != W.shape[1]:
        raise ValueError("dense_forward: b must have W.shape[1] entries")
    np.dot(X, W, out)
    bias_activation_forward(out, b, code)


@numba.njit(**KERNEL_OPTIONS)
def dense_backward(X, W, A, dA, code, dW, db, dX, compute_dx=True):
    """Dense layer backward pass.

    Parameters
    ----------
    X : C-contiguous ndarray of shape (n_samples, n_in)
        Input of the forward pass.
    W : C-contiguous ndarray of shape (n_in, n_out)
        Weights.
    A : C-contiguous ndarray of shape (n_samples, n_out)
        Output of the forward pass (after the activation).
    dA : C-contiguous ndarray of shape (n_samples, n_out)
        Gradient of the loss with respect to A. **Overwritten** with the
        gradient with respect to the pre-activation, dZ.
    code : int
        Activation code used in the forward pass.
    dW : C-contiguous ndarray of shape (n_in, n_out)
        Filled with ``Xᵀ dZ`` (overwritten, not accumulated).
    db : ndarray of shape (n_out,)
        Filled with ``Σ_i dZ[i]``.
    dX : C-contiguous ndarray of shape (n_samples, n_in), or None
        Filled with ``dZ Wᵀ``. Pass None (or ``compute_dx=False``) for the
        first layer, whose input gradient is not needed.
    compute_dx : bool, default=True
        If False, dX is not touched.

    Notes
    -----
    All arrays share one dtype (float32 or float64).
    """
    B, n_out = dA.shape
    if A.shape != dA.shape or X.shape[0] != B or W.shape[1] != n_out:
        raise ValueError("dense_backward: shapes of X, W, A, dA disagree")
    if dW.shape != W.shape or db.shape[0] != n_out:
        raise ValueError("dense_backward: dW / db do not match W")
    activation_backward(A, dA, code)
    np.dot(X.T, dA, dW)
    zero = db.dtype.type(0.0)
    for j in range(n_out):
        db[j] = zero
    for i in range(B):
        row = dA[i]
        for j in range(n_out):
            db[j] += row[j]
    # (Nested ifs: Numba prunes the ``is not None`` branch when dX is None.)
    if dX is not None:
        if compute_dx:
            if dX.shape != X.shape:
                raise ValueError("dense_backward: dX must have the shape of X")
            np.dot(dA, W.T, dX)
