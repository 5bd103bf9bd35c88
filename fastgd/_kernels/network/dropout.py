"""Inverted dropout, forward and backward (Numba).

The engine draws ``mask`` (uniforms in [0, 1), one per activation) from its
``RandomState`` and passes it in, so a fit is reproducible from
``random_state`` and the kernels themselves are deterministic. A unit is
kept when ``mask >= rate`` (probability ``1 − rate``) and kept units are
scaled by ``1 / (1 − rate)`` so that the expected output equals the input
(inverted dropout: nothing to rescale at prediction time). With
``rate >= 1`` every unit is dropped and the output is zero.
"""

from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba, parallel_and_serial
from fastgd._kernels.runtime.tuning import ELEMENTWISE_CHUNK, PARALLEL_MIN_WORK


def _masked_scale_body(src, mask, rate, dst):
    """Body of :func:`_masked_scale`, compiled parallel and serial."""
    s = src.reshape(-1)
    m = mask.reshape(-1)
    d = dst.reshape(-1)
    n = s.shape[0]
    if m.shape[0] != n or d.shape[0] != n:
        raise ValueError("dropout: X, mask and out must have the same size")
    zero = d.dtype.type(0.0)
    if rate >= 1.0:
        scale = zero
    else:
        scale = d.dtype.type(1.0 / (1.0 - rate))
    n_chunks = (n + ELEMENTWISE_CHUNK - 1) // ELEMENTWISE_CHUNK
    for c in numba.prange(n_chunks):
        for i in range(c * ELEMENTWISE_CHUNK, min(n, (c + 1) * ELEMENTWISE_CHUNK)):
            d[i] = s[i] * scale if m[i] >= rate else zero


_masked_scale_parallel, _masked_scale_serial = parallel_and_serial(_masked_scale_body)


@numba.njit(**KERNEL_OPTIONS)
def _masked_scale(src, mask, rate, dst):
    if dst.size >= PARALLEL_MIN_WORK:
        return _masked_scale_parallel(src, mask, rate, dst)
    return _masked_scale_serial(src, mask, rate, dst)


@numba.njit(**KERNEL_OPTIONS)
def dropout_forward(X, mask, rate, out):
    """Inverted dropout: ``out = X · [mask ≥ rate] / (1 − rate)``.

    Parameters
    ----------
    X : C-contiguous ndarray, float32 or float64
        Input activations.
    mask : C-contiguous ndarray of the same shape (any float dtype)
        Uniform draws in [0, 1).
    rate : float
        Fraction of units to drop, in [0, 1]; 0 copies X to out.
    out : C-contiguous ndarray of the same shape and dtype as X
        Output buffer (may be X itself).
    """
    _masked_scale(X, mask, rate, out)


@numba.njit(**KERNEL_OPTIONS)
def dropout_backward(dOut, mask, rate, dX):
    """Gradient of inverted dropout: ``dX = dOut · [mask ≥ rate] / (1 − rate)``.

    Parameters
    ----------
    dOut : C-contiguous ndarray, float32 or float64
        Gradient with respect to the dropout output.
    mask : C-contiguous ndarray of the same shape
        The mask used in the forward pass.
    rate : float
        The rate used in the forward pass.
    dX : C-contiguous ndarray of the same shape and dtype as dOut
        Filled with the gradient with respect to the input (may be dOut).
    """
    _masked_scale(dOut, mask, rate, dX)
