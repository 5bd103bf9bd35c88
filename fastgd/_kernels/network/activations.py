"""Activation functions and their derivatives (Numba).

Activations are chosen by an integer code from :mod:`fastgd._kernels.runtime.codes`:

==========  ==========================  ======================================
code        forward  a = f(z)           derivative, written with the output a
==========  ==========================  ======================================
identity    z                           1
relu        max(z, 0)                   1 if a > 0 else 0
tanh        tanh(z)                     1 − a²
sigmoid     1 / (1 + exp(−z))           a (1 − a)
==========  ==========================  ======================================

Writing every derivative through the *output* lets a layer keep only its
output between the forward and the backward pass (no copy of z).

All kernels work in place, keep the dtype of their input (float32 stays
float32: constants are cast to the array's dtype) and are deterministic
(each element is computed on its own, so threads do not change results).
A NaN input stays NaN (relu does not hide it), so a diverging fit is
visible.

The ``*_range`` helpers are inlined building blocks for other kernels
(dense, conv2d); they work on ``[start, stop)`` of a 1-D contiguous view.
"""

import numpy as np

from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba, parallel_and_serial
from fastgd._kernels.runtime.tuning import ELEMENTWISE_CHUNK, PARALLEL_MIN_WORK

IDENTITY = codes.IDENTITY
RELU = codes.RELU
TANH = codes.TANH
SIGMOID = codes.SIGMOID


@numba.njit(inline="always", **KERNEL_OPTIONS)
def _sigmoid(z, one):
    """Numerically stable logistic function for one scalar.

    exp is only ever taken of a non-positive number, so it cannot overflow:
    σ(z) = 1 / (1 + e^{−z}) for z ≥ 0 and σ(z) = e^{z} / (1 + e^{z}) for z < 0.
    """
    if z >= 0:
        return one / (one + np.exp(-z))
    e = np.exp(z)
    return e / (one + e)


@numba.njit(inline="always", **KERNEL_OPTIONS)
def activation_forward_range(z, start, stop, code):
    """Apply activation ``code`` in place to ``z[start:stop]`` (1-D view)."""
    zero = z.dtype.type(0.0)
    one = z.dtype.type(1.0)
    if code == RELU:
        for i in range(start, stop):
            v = z[i]
            # ``v < 0`` is False for NaN, so NaN propagates.
            z[i] = zero if v < zero else v
    elif code == TANH:
        for i in range(start, stop):
            z[i] = np.tanh(z[i])
    elif code == SIGMOID:
        for i in range(start, stop):
            z[i] = _sigmoid(z[i], one)


@numba.njit(inline="always", **KERNEL_OPTIONS)
def activation_backward_range(a, da, start, stop, code):
    """``da[start:stop] *= f'(z)`` in place, f' written with the output ``a``."""
    zero = da.dtype.type(0.0)
    one = da.dtype.type(1.0)
    if code == RELU:
        for i in range(start, stop):
            da[i] = da[i] if a[i] > zero else zero
    elif code == TANH:
        for i in range(start, stop):
            ai = a[i]
            da[i] = da[i] * (one - ai * ai)
    elif code == SIGMOID:
        for i in range(start, stop):
            ai = a[i]
            da[i] = da[i] * (ai * (one - ai))


def _activation_forward_body(Z, code):
    """Body of :func:`activation_forward`, compiled parallel and serial."""
    z = Z.reshape(-1)
    n = z.shape[0]
    n_chunks = (n + ELEMENTWISE_CHUNK - 1) // ELEMENTWISE_CHUNK
    for c in numba.prange(n_chunks):
        start = c * ELEMENTWISE_CHUNK
        activation_forward_range(z, start, min(n, start + ELEMENTWISE_CHUNK), code)


_activation_forward_parallel, _activation_forward_serial = parallel_and_serial(
    _activation_forward_body
)


@numba.njit(**KERNEL_OPTIONS)
def activation_forward(Z, code):
    """Apply an activation in place.

    Parameters
    ----------
    Z : C-contiguous ndarray of any shape, float32 or float64
        Pre-activations; overwritten with the activations.
    code : int
        Activation code (``codes.ACTIVATION_CODES``).
    """
    if Z.size >= PARALLEL_MIN_WORK:
        return _activation_forward_parallel(Z, code)
    return _activation_forward_serial(Z, code)


def _activation_backward_body(A, dA, code):
    """Body of :func:`activation_backward`, compiled parallel and serial."""
    a = A.reshape(-1)
    da = dA.reshape(-1)
    n = da.shape[0]
    if a.shape[0] != n:
        raise ValueError("activation_backward: A and dA differ in size")
    n_chunks = (n + ELEMENTWISE_CHUNK - 1) // ELEMENTWISE_CHUNK
    for c in numba.prange(n_chunks):
        start = c * ELEMENTWISE_CHUNK
        activation_backward_range(a, da, start, min(n, start + ELEMENTWISE_CHUNK), code)


_activation_backward_parallel, _activation_backward_serial = parallel_and_serial(
    _activation_backward_body
)


@numba.njit(**KERNEL_OPTIONS)
def activation_backward(A, dA, code):
    """Multiply an upstream gradient by the activation derivative, in place.

    Parameters
    ----------
    A : C-contiguous ndarray, float32 or float64
        Output of the activation (what :func:`activation_forward` left).
    dA : C-contiguous ndarray of the same shape and dtype as ``A``
        Gradient of the loss with respect to ``A``; overwritten with the
        gradient with respect to the pre-activation z (``dA · f'(z)``).
    code : int
        Activation code.
    """
    if dA.size >= PARALLEL_MIN_WORK:
        return _activation_backward_parallel(A, dA, code)
    return _activation_backward_serial(A, dA, code)


@numba.njit(inline="always", **KERNEL_OPTIONS)
def bias_activation_rows(Z, b, row_start, row_stop, code):
    """``Z[i] = f(Z[i] + b)`` for rows ``row_start ≤ i < row_stop`` of 2-D Z."""
    zero = Z.dtype.type(0.0)
    one = Z.dtype.type(1.0)
    n_out = Z.shape[1]
    for i in range(row_start, row_stop):
        row = Z[i]
        if code == RELU:
            for j in range(n_out):
                v = row[j] + b[j]
                row[j] = zero if v < zero else v
        elif code == TANH:
            for j in range(n_out):
                row[j] = np.tanh(row[j] + b[j])
        elif code == SIGMOID:
            for j in range(n_out):
                row[j] = _sigmoid(row[j] + b[j], one)
        else:
            for j in range(n_out):
                row[j] = row[j] + b[j]


def _bias_activation_forward_body(Z, b, code):
    """Body of :func:`bias_activation_forward`, compiled parallel and serial."""
    n_rows = Z.shape[0]
    if b.shape[0] != Z.shape[1]:
        raise ValueError("bias_activation_forward: b does not match Z.shape[1]")
    # Rows per work item: about ELEMENTWISE_CHUNK elements each.
    rows = max(1, ELEMENTWISE_CHUNK // max(1, Z.shape[1]))
    n_chunks = (n_rows + rows - 1) // rows
    for c in numba.prange(n_chunks):
        bias_activation_rows(Z, b, c * rows, min(n_rows, (c + 1) * rows), code)


_bias_activation_forward_parallel, _bias_activation_forward_serial = parallel_and_serial(
    _bias_activation_forward_body
)


@numba.njit(**KERNEL_OPTIONS)
def bias_activation_forward(Z, b, code):
    """Add a bias to every row, then apply an activation, in place (fused).

    Parameters
    ----------
    Z : C-contiguous ndarray of shape (n_samples, n_out), float32 or float64
        Pre-activations without bias; overwritten with ``f(Z + b)``.
    b : ndarray of shape (n_out,), same dtype as ``Z``
        Bias.
    code : int
        Activation code.
    """
    if Z.size >= PARALLEL_MIN_WORK:
        return _bias_activation_forward_parallel(Z, b, code)
    return _bias_activation_forward_serial(Z, b, code)
