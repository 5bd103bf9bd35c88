"""2-D convolution forward and backward passes (Numba).

Layout is NCHW: inputs ``X`` of shape (B, C, H, W), weights ``W`` of shape
(F, C, KH, KW), bias ``b`` of shape (F,), outputs of shape (B, F, OH, OW).
The layer computes (cross-correlation, as in every deep-learning library)::

    out[n, f, i, j] = act(b[f] + Σ_{c, p, q} W[f, c, p, q] ·
                          Xpad[n, c, i·s + p, j·s + q])

where ``Xpad`` is X with ``pad_top`` zero rows above, ``pad_left`` zero
columns on the left, and as many zero rows / columns below and on the right
as the output size (OH, OW), taken from the output buffer, needs. Padding
can therefore be asymmetric: Keras-style "same" padding with stride 1 is
``pad_top = (KH − 1) // 2`` and the remaining ``KH − 1 − pad_top`` rows at
the bottom (see :func:`conv2d_padding`, which also gives TensorFlow's rule
for stride > 1).

Algorithm: per sample, im2col (unfold the receptive fields into a matrix
``cols`` of shape (C·KH·KW, OH·OW)), then one BLAS GEMM
``W.reshape(F, C·KH·KW) @ cols``, then the fused bias + activation. The
batch is split over threads with ``prange``; each sample has its own slice
of a preallocated workspace, so nothing is allocated in the loop.

Backward, per sample n (again in parallel):

* dZ[n] = dA[n] · act'(A[n])                      (in place in dA)
* dW_n  = dZ[n] @ cols[n]ᵀ,  db_n = Σ_{i,j} dZ[n] (per-sample partials)
* dcols = Wᵀ @ dZ[n], folded back by col2im into dX[n]

then dW = Σ_n dW_n and db = Σ_n db_n are summed serially in sample order,
so results do not depend on the number of threads.
"""

import numpy as np

from fastgd._kernels.network.activations import (
    activation_backward_range,
    bias_activation_forward_range,
)
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba, parallel_and_serial
from fastgd._kernels.runtime.tuning import CONV_GEMM_MAX_MNK, PARALLEL_MIN_WORK


@numba.njit(inline="always", **KERNEL_OPTIONS)
def _rows_per_call(n_rows, other_dims):
    """Rows of the output per GEMM call so that M·N·K ≤ CONV_GEMM_MAX_MNK."""
    return min(n_rows, max(1, CONV_GEMM_MAX_MNK // max(1, other_dims)))


def conv2d_output_shape(H, W, KH, KW, stride, pad_h, pad_w):
    """Output height and width of a convolution (or of valid pooling).

    Parameters
    ----------
    H, W : int
        Input height and width.
    KH, KW : int
        Kernel height and width.
    stride : int
        Stride (same in both directions).
    pad_h, pad_w : int
        **Total** padding: rows added top + bottom, columns added
        left + right (for symmetric padding of ``p`` on each side pass
        ``2 * p``). Use :func:`conv2d_padding` to get them for "same" /
        "valid".

    Returns
    -------
    (OH, OW) : tuple of int
        ``OH = (H + pad_h − KH) // stride + 1`` and likewise for OW.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    OH = (H + pad_h - KH) // stride + 1
    OW = (W + pad_w - KW) // stride + 1
    if OH < 1 or OW < 1:
        raise ValueError(
            f"kernel {KH}x{KW} with padding ({pad_h}, {pad_w}) does not fit "
            f"in an input of size {H}x{W}"
        )
    return OH, OW


def conv2d_padding(padding, KH, KW, stride=1, H=None, W=None):
    """Padding of each side for a padding mode.

    Parameters
    ----------
    padding : {"valid", "same"} or int or tuple of 2 ints
        "valid": no padding. "same" (TensorFlow / Keras rule): the output
        has ``ceil(H / stride)`` rows, the total padding is
        ``max((OH − 1)·stride + KH − H, 0)`` (``KH − 1`` with stride 1),
        half of it (rounded down) on the top and the rest on the bottom;
        likewise for columns. An int ``p`` or a pair ``(ph, pw)``:
        symmetric padding of that many rows / columns on each side.
    KH, KW : int
        Kernel height and width.
    stride : int, default=1
        Stride; with "same" and ``stride > 1`` the input size is needed.
    H, W : int, optional
        Input height and width (only used by "same" with ``stride > 1``).

    Returns
    -------
    (pad_top, pad_bottom, pad_left, pad_right) : tuple of int
        Pass ``pad_top`` and ``pad_left`` to the kernels, and
        ``pad_top + pad_bottom`` / ``pad_left + pad_right`` to
        :func:`conv2d_output_shape`.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if stride == 1:
                ph, pw = KH - 1, KW - 1
            else:
                if H is None or W is None:
                    raise ValueError("'same' padding with stride > 1 needs H and W")
                ph = max((-(-H // stride) - 1) * stride + KH - H, 0)
                pw = max((-(-W // stride) - 1) * stride + KW - W, 0)
            return ph // 2, ph - ph // 2, pw // 2, pw - pw // 2
        raise ValueError(f"unknown padding {padding!r}; use 'valid' or 'same'")
    if isinstance(padding, (tuple, list)):
        ph, pw = (int(p) for p in padding)
    else:
        ph = pw = int(padding)
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return ph, ph, pw, pw


def conv2d_workspace_shape(batch_size, C, F, KH, KW, OH, OW):
    """Shape of the ``workspace`` buffer of :func:`conv2d_backward`.

    The buffer has one row per sample holding that sample's im2col matrix
    (C·KH·KW × OH·OW values, reused for the input gradient), its weight
    gradient partial (F·C·KH·KW values) and its bias gradient partial
    (F values). Allocate it once per fit with the layer's dtype, e.g.
    ``np.empty(conv2d_workspace_shape(...), dtype=X.dtype)``; a buffer with
    more rows (a larger batch) may be passed for a smaller batch.
    :func:`conv2d_forward` accepts the same buffer (optional).

    Parameters
    ----------
    batch_size : int
        Largest batch the buffer serves.
    C, F : int
        Input channels and filters.
    KH, KW : int
        Kernel height and width.
    OH, OW : int
        Output height and width.

    Returns
    -------
    shape : tuple of 2 ints
        ``(batch_size, C·KH·KW·OH·OW + F·C·KH·KW + F)``.
    """
    ckk = C * KH * KW
    return (batch_size, ckk * OH * OW + F * ckk + F)


@numba.njit(inline="always", **KERNEL_OPTIONS)
def _im2col(x, KH, KW, stride, pad_top, pad_left, OH, OW, cols):
    """Unfold one sample x (C, H, W) into cols (C·KH·KW, OH·OW); zeros for padding."""
    C, H, W = x.shape
    zero = cols.dtype.type(0.0)
    for c in range(C):
        for p in range(KH):
            for q in range(KW):
                row = cols[(c * KH + p) * KW + q]
                # Output columns j whose input column j·s + q − pad_left is
                # inside [0, W): j in [j_lo, j_hi).
                j_lo = max(0, (pad_left - q + stride - 1) // stride)
                j_hi = min(OW, (W - 1 + pad_left - q) // stride + 1)
                if j_hi < j_lo:
                    j_hi = j_lo
                for i in range(OH):
                    base = i * OW
                    ih = i * stride + p - pad_top
                    if ih < 0 or ih >= H:
                        for j in range(OW):
                            row[base + j] = zero
                        continue
                    xrow = x[c, ih]
                    for j in range(j_lo):
                        row[base + j] = zero
                    off = q - pad_left
                    if stride == 1:
                        for j in range(j_lo, j_hi):
                            row[base + j] = xrow[j + off]
                    else:
                        for j in range(j_lo, j_hi):
                            row[base + j] = xrow[j * stride + off]
                    for j in range(j_hi, OW):
                        row[base + j] = zero


@numba.njit(inline="always", **KERNEL_OPTIONS)
def _col2im(cols, KH, KW, stride, pad_top, pad_left, OH, OW, dx):
    """Fold cols (C·KH·KW, OH·OW) back into dx (C, H, W): dx is zeroed, then
    every entry is added to the input pixel it was copied from."""
    C, H, W = dx.shape
    dx[:] = 0.0
    for c in range(C):
        for p in range(KH):
            for q in range(KW):
                row = cols[(c * KH + p) * KW + q]
                j_lo = max(0, (pad_left - q + stride - 1) // stride)
                j_hi = min(OW, (W - 1 + pad_left - q) // stride + 1)
                off = q - pad_left
                for i in range(OH):
                    ih = i * stride + p - pad_top
                    if ih < 0 or ih >= H:
                        continue
                    xrow = dx[c, ih]
                    base = i * OW
                    if stride == 1:
                        for j in range(j_lo, j_hi):
                            xrow[j + off] += row[base + j]
                    else:
                        for j in range(j_lo, j_hi):
                            xrow[j * stride + off] += row[base + j]


@numba.njit(**KERNEL_OPTIONS)
def _check_shapes(X, W, b, out, stride, pad_top, pad_left):
    B, C, H, Wd = X.shape
    F, C2, KH, KW = W.shape
    if C2 != C:
        raise ValueError("conv2d: W.shape[1] must equal the input channels")
    if b.shape[0] != F:
        raise ValueError("conv2d: b must have W.shape[0] entries")
    if out.shape[0] != B or out.shape[1] != F:
        raise ValueError("conv2d: out must have shape (B, F, OH, OW)")
    if stride < 1 or pad_top < 0 or pad_left < 0:
        raise ValueError("conv2d: stride must be >= 1 and padding >= 0")
    OH, OW = out.shape[2], out.shape[3]
    # The last window must start inside the (top/left padded) input.
    if (OH - 1) * stride - pad_top >= H or (OW - 1) * stride - pad_left >= Wd:
        raise ValueError("conv2d: output size too large for input and padding")
    if pad_top >= KH + H or pad_left >= KW + Wd:
        raise ValueError("conv2d: padding larger than kernel + input")


def _conv2d_forward_body(X, W, b, stride, pad_top, pad_left, out, code, workspace=None):
    """Body of :func:`conv2d_forward`, compiled parallel and serial."""
    _check_shapes(X, W, b, out, stride, pad_top, pad_left)
    B, C, H, Wd = X.shape
    F, _, KH, KW = W.shape
    OH, OW = out.shape[2], out.shape[3]
    ckk = C * KH * KW
    ohw = OH * OW
    W2 = W.reshape(F, ckk)
    direct = KH == 1 and KW == 1 and stride == 1 and pad_top == 0 and pad_left == 0
    direct = direct and OH == H and OW == Wd and X.flags.c_contiguous
    if workspace is not None:
        if workspace.shape[0] < B or workspace.shape[1] < ckk * ohw:
            raise ValueError("conv2d_forward: workspace too small")
    fb = _rows_per_call(F, ckk * ohw)
    for n in numba.prange(B):
        o2 = out[n].reshape(F, ohw)
        if direct:
            # 1x1 convolution without padding: X[n] already is the im2col matrix.
            cols = X[n].reshape(C, ohw)
        else:
            if workspace is None:
                buf = np.empty(ckk * ohw, dtype=X.dtype)
            else:
                buf = workspace[n, : ckk * ohw]
            cols = buf.reshape(ckk, ohw)
            _im2col(X[n], KH, KW, stride, pad_top, pad_left, OH, OW, cols)
        for f0 in range(0, F, fb):
            f1 = min(F, f0 + fb)
            np.dot(W2[f0:f1], cols, o2[f0:f1])
            for f in range(f0, f1):
                bias_activation_forward_range(o2[f], 0, ohw, b[f], code)


_conv2d_forward_parallel, _conv2d_forward_serial = parallel_and_serial(_conv2d_forward_body)


@numba.njit(**KERNEL_OPTIONS)
def conv2d_forward(X, W, b, stride, pad_top, pad_left, out, code, workspace=None):
    """Convolution, bias and activation: ``out = act(conv(X, W) + b)``.

    Parameters
    ----------
    X : C-contiguous ndarray of shape (B, C, H, W), float32 or float64
        Input batch.
    W : C-contiguous ndarray of shape (F, C, KH, KW), same dtype
        Filters.
    b : ndarray of shape (F,), same dtype
        Bias.
    stride : int
        Stride in both directions.
    pad_top, pad_left : int
        Zero rows above / zero columns left of the input; the bottom / right
        padding is whatever the output size needs (see module docstring).
    out : C-contiguous ndarray of shape (B, F, OH, OW), same dtype
        Output buffer; its shape sets OH and OW. Overwritten.
    code : int
        Activation code (``codes.ACTIVATION_CODES``).
    workspace : ndarray of shape ``conv2d_workspace_shape(...)``, optional
        Scratch buffer (same dtype) for the im2col matrices. If None, one
        buffer per sample is allocated by this call.
    """
    if X.shape[0] * W.size * out.shape[2] * out.shape[3] >= PARALLEL_MIN_WORK:
        return _conv2d_forward_parallel(X, W, b, stride, pad_top, pad_left, out, code, workspace)
    return _conv2d_forward_serial(X, W, b, stride, pad_top, pad_left, out, code, workspace)


def _conv2d_backward_body(
    X,
    W,
    A,
    dA,
    code,
    stride,
    pad_top,
    pad_left,
    dW,
    db,
    dX,
    workspace,
    compute_dx=True,
):
    """Body of :func:`conv2d_backward`, compiled parallel and serial."""
    B, C, H, Wd = X.shape
    F, _, KH, KW = W.shape
    OH, OW = A.shape[2], A.shape[3]
    ckk = C * KH * KW
    ohw = OH * OW
    if A.shape[0] != B or A.shape[1] != F or dA.shape != A.shape:
        raise ValueError("conv2d_backward: A and dA must have shape (B, F, OH, OW)")
    if dW.shape != W.shape or db.shape[0] != F:
        raise ValueError("conv2d_backward: dW / db do not match W")
    if workspace.shape[0] < B or workspace.shape[1] < ckk * ohw + F * ckk + F:
        raise ValueError("conv2d_backward: workspace too small")
    if dX is not None:
        if compute_dx and dX.shape != X.shape:
            raise ValueError("conv2d_backward: dX must have the shape of X")
    W2 = W.reshape(F, ckk)
    direct = KH == 1 and KW == 1 and stride == 1 and pad_top == 0 and pad_left == 0
    direct = direct and OH == H and OW == Wd and X.flags.c_contiguous
    # Wᵀ as a C-contiguous (C·KH·KW, F) matrix, so that row blocks of it are
    # contiguous (one small copy per call).
    W2T = np.ascontiguousarray(W2.T)
    fb = _rows_per_call(F, ckk * ohw)
    kb = _rows_per_call(ckk, F * ohw)
    for n in numba.prange(B):
        ws = workspace[n]
        dw_n = ws[ckk * ohw : ckk * ohw + F * ckk].reshape(F, ckk)
        db_n = ws[ckk * ohw + F * ckk : ckk * ohw + F * ckk + F]
        dz = dA[n].reshape(F, ohw)
        a = A[n].reshape(F, ohw)
        for f in range(F):
            # dZ = dA · act'(z), and the bias gradient partial Σ_pixels dZ.
            activation_backward_range(a[f], dz[f], 0, ohw, code)
            s = 0.0
            row = dz[f]
            for j in range(ohw):
                s += row[j]
            db_n[f] = s
        if direct:
            cols = X[n].reshape(C, ohw)
        else:
            cols = ws[: ckk * ohw].reshape(ckk, ohw)
            _im2col(X[n], KH, KW, stride, pad_top, pad_left, OH, OW, cols)
        # dW_n = dZ colsᵀ
        for f0 in range(0, F, fb):
            f1 = min(F, f0 + fb)
            np.dot(dz[f0:f1], cols.T, dw_n[f0:f1])
        # (Nested ifs: Numba prunes the ``is not None`` branch when dX is None.)
        if dX is not None:
            if compute_dx:
                # dcols = Wᵀ dZ, folded back onto the input by col2im. In the
                # direct (1x1) case dcols is dX[n] itself; otherwise the
                # workspace's im2col block is free again and holds it.
                if direct:
                    dcols = dX[n].reshape(C, ohw)
                else:
                    dcols = ws[: ckk * ohw].reshape(ckk, ohw)
                for k0 in range(0, ckk, kb):
                    k1 = min(ckk, k0 + kb)
                    np.dot(W2T[k0:k1], dz, dcols[k0:k1])
                if not direct:
                    _col2im(dcols, KH, KW, stride, pad_top, pad_left, OH, OW, dX[n])
    # Fixed-order reduction of the per-sample partials.
    dw = dW.reshape(F * ckk)
    start = ckk * ohw
    for k in range(F * ckk):
        dw[k] = workspace[0, start + k]
    for f in range(F):
        db[f] = workspace[0, start + F * ckk + f]
    for n in range(1, B):
        ws = workspace[n]
        for k in range(F * ckk):
            dw[k] += ws[start + k]
        for f in range(F):
            db[f] += ws[start + F * ckk + f]


_conv2d_backward_parallel, _conv2d_backward_serial = parallel_and_serial(_conv2d_backward_body)


@numba.njit(**KERNEL_OPTIONS)
def conv2d_backward(
    X,
    W,
    A,
    dA,
    code,
    stride,
    pad_top,
    pad_left,
    dW,
    db,
    dX,
    workspace,
    compute_dx=True,
):
    """Gradients of a convolution layer.

    Parameters
    ----------
    X : C-contiguous ndarray of shape (B, C, H, W)
        Input of the forward pass.
    W : C-contiguous ndarray of shape (F, C, KH, KW)
        Filters.
    A : C-contiguous ndarray of shape (B, F, OH, OW)
        Output of the forward pass (after the activation).
    dA : C-contiguous ndarray of shape (B, F, OH, OW)
        Gradient of the loss with respect to A. **Overwritten** with the
        gradient with respect to the pre-activation.
    code : int
        Activation code used in the forward pass.
    stride, pad_top, pad_left : int
        As in :func:`conv2d_forward`.
    dW : ndarray of shape (F, C, KH, KW), C-contiguous
        Filled with the weight gradient (overwritten, not accumulated).
    db : ndarray of shape (F,)
        Filled with the bias gradient.
    dX : ndarray of shape (B, C, H, W), C-contiguous, or None
        Filled with the input gradient. Pass None (or ``compute_dx=False``)
        for the first layer, whose input gradient is not needed.
    workspace : ndarray of shape ``conv2d_workspace_shape(B, C, F, KH, KW, OH, OW)``
        Scratch buffer, same dtype as X (a buffer with more rows is fine).
    compute_dx : bool, default=True
        If False, dX is not touched (it may be None).

    Notes
    -----
    All arrays share one dtype (float32 or float64). Deterministic: per-sample
    gradient partials are summed serially in sample order.
    """
    if X.shape[0] * W.size * A.shape[2] * A.shape[3] >= PARALLEL_MIN_WORK:
        return _conv2d_backward_parallel(
            X, W, A, dA, code, stride, pad_top, pad_left, dW, db, dX, workspace, compute_dx
        )
    return _conv2d_backward_serial(
        X, W, A, dA, code, stride, pad_top, pad_left, dW, db, dX, workspace, compute_dx
    )
