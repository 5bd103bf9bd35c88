"""2-D max and average pooling, forward and backward (Numba).

Layout NCHW. Pooling is *valid* (no padding): a window of ``pool_h × pool_w``
moves by ``stride`` in both directions, so the output has
``OH = (H − pool_h) // stride + 1`` rows (likewise OW); input rows / columns
that no window reaches get a zero gradient.

Every (sample, channel) plane is independent, so the kernels run the
B·C planes in parallel; each plane's gradient is written by one thread in a
fixed order, so results do not depend on the number of threads. Windows may
overlap (``stride < pool``): the backward passes then *add* the
contributions of every window an input pixel belongs to.
"""

from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba, parallel_and_serial
from fastgd._kernels.runtime.tuning import PARALLEL_MIN_WORK


def pool2d_output_shape(H, W, pool_h, pool_w, stride):
    """Output height and width of valid pooling.

    Parameters
    ----------
    H, W : int
        Input height and width.
    pool_h, pool_w : int
        Window height and width.
    stride : int
        Step between windows.

    Returns
    -------
    (OH, OW) : tuple of int
    """
    if stride < 1 or pool_h < 1 or pool_w < 1:
        raise ValueError("pool size and stride must be >= 1")
    if pool_h > H or pool_w > W:
        raise ValueError(f"pool window {pool_h}x{pool_w} larger than the input {H}x{W}")
    return (H - pool_h) // stride + 1, (W - pool_w) // stride + 1


@numba.njit(**KERNEL_OPTIONS)
def _check(X, pool_h, pool_w, stride, out):
    B, C, H, W = X.shape
    if out.shape[0] != B or out.shape[1] != C:
        raise ValueError("pooling: out must have shape (B, C, OH, OW)")
    if stride < 1 or pool_h < 1 or pool_w < 1:
        raise ValueError("pooling: pool size and stride must be >= 1")
    OH, OW = out.shape[2], out.shape[3]
    if (OH - 1) * stride + pool_h > H or (OW - 1) * stride + pool_w > W:
        raise ValueError("pooling: output size too large for the input")


@numba.njit(inline="always", **KERNEL_OPTIONS)
def _take(v, m):
    """True if v replaces the running maximum m: strict ">" keeps the first
    maximum; the first NaN wins over any number, so NaN propagates."""
    return (v > m) | ((v != v) & (m == m))


def _maxpool2d_forward_body(X, pool_h, pool_w, stride, out, argmax):
    """Body of :func:`maxpool2d_forward`, compiled parallel and serial."""
    _check(X, pool_h, pool_w, stride, out)
    B, C, H, W = X.shape
    OH, OW = out.shape[2], out.shape[3]
    if argmax.shape != out.shape:
        raise ValueError("maxpool2d_forward: argmax must have out's shape")
    # 2x2 windows with stride 2 (the usual case) are unrolled: each window
    # is a fixed chain of selects with no loop-carried dependency between
    # windows, so the compiler vectorises the loop over an output row.
    two_by_two = pool_h == 2 and pool_w == 2 and stride == 2
    for nc in numba.prange(B * C):
        n = nc // C
        c = nc - n * C
        x = X[n, c]
        o = out[n, c]
        am = argmax[n, c]
        if two_by_two:
            for i in range(OH):
                r0 = x[2 * i]
                r1 = x[2 * i + 1]
                oi = o[i]
                ai = am[i]
                b0 = 2 * i * W
                b1 = b0 + W
                for j in range(OW):
                    v00 = r0[2 * j]
                    v01 = r0[2 * j + 1]
                    v10 = r1[2 * j]
                    v11 = r1[2 * j + 1]
                    m = v00
                    m = v01 if _take(v01, m) else m
                    m = v10 if _take(v10, m) else m
                    m = v11 if _take(v11, m) else m
                    # Position: the first pixel in row-major order equal to
                    # the maximum (or the first NaN), by a reverse scan.
                    k = b1 + 2 * j + 1
                    k = b1 + 2 * j if (v10 == m) | (v10 != v10) else k
                    k = b0 + 2 * j + 1 if (v01 == m) | (v01 != v01) else k
                    k = b0 + 2 * j if (v00 == m) | (v00 != v00) else k
                    oi[j] = m
                    ai[j] = k
            continue
        for i in range(OH):
            h0 = i * stride
            for j in range(OW):
                w0 = j * stride
                # Scan the window in row-major order with branch-free
                # selects; k counts the pixels visited.
                best = x[h0, w0]
                k_best = 0
                k = 0
                for p in range(pool_h):
                    row = x[h0 + p]
                    for q in range(pool_w):
                        v = row[w0 + q]
                        take = _take(v, best)
                        best = v if take else best
                        k_best = k if take else k_best
                        k += 1
                o[i, j] = best
                p_best = k_best // pool_w
                am[i, j] = (h0 + p_best) * W + w0 + (k_best - p_best * pool_w)


_maxpool2d_forward_parallel, _maxpool2d_forward_serial = parallel_and_serial(
    _maxpool2d_forward_body
)


@numba.njit(**KERNEL_OPTIONS)
def maxpool2d_forward(X, pool_h, pool_w, stride, out, argmax):
    """Max pooling; remembers where each maximum came from.

    Parameters
    ----------
    X : C-contiguous ndarray of shape (B, C, H, W), float32 or float64
        Input.
    pool_h, pool_w : int
        Window size.
    stride : int
        Step between windows.
    out : ndarray of shape (B, C, OH, OW), same dtype as X
        Filled with the window maxima (its shape sets OH and OW).
    argmax : integer ndarray of shape (B, C, OH, OW)
        Filled with the flat index ``h * W + w`` of each maximum inside its
        input plane; :func:`maxpool2d_backward` needs it. On ties the first
        maximum in row-major order wins. A NaN in a window is propagated
        (the output is NaN and its index is recorded).
    """
    if X.size >= PARALLEL_MIN_WORK:
        return _maxpool2d_forward_parallel(X, pool_h, pool_w, stride, out, argmax)
    return _maxpool2d_forward_serial(X, pool_h, pool_w, stride, out, argmax)


def _maxpool2d_backward_body(dOut, argmax, dX):
    """Body of :func:`maxpool2d_backward`, compiled parallel and serial."""
    B, C, H, W = dX.shape
    OH, OW = dOut.shape[2], dOut.shape[3]
    if dOut.shape[0] != B or dOut.shape[1] != C or argmax.shape != dOut.shape:
        raise ValueError("maxpool2d_backward: shapes of dOut, argmax, dX disagree")
    zero = dX.dtype.type(0.0)
    for nc in numba.prange(B * C):
        n = nc // C
        c = nc - n * C
        dx = dX[n, c].reshape(H * W)
        for k in range(H * W):
            dx[k] = zero
        g = dOut[n, c]
        am = argmax[n, c]
        for i in range(OH):
            for j in range(OW):
                dx[am[i, j]] += g[i, j]


_maxpool2d_backward_parallel, _maxpool2d_backward_serial = parallel_and_serial(
    _maxpool2d_backward_body
)


@numba.njit(**KERNEL_OPTIONS)
def maxpool2d_backward(dOut, argmax, dX):
    """Gradient of max pooling: route each output gradient to its maximum.

    Parameters
    ----------
    dOut : ndarray of shape (B, C, OH, OW)
        Gradient with respect to the pooled output.
    argmax : integer ndarray of shape (B, C, OH, OW)
        As filled by :func:`maxpool2d_forward`.
    dX : C-contiguous ndarray of shape (B, C, H, W), same dtype as dOut
        Zeroed, then receives (adds, for overlapping windows) the gradients.
    """
    if dX.size >= PARALLEL_MIN_WORK:
        return _maxpool2d_backward_parallel(dOut, argmax, dX)
    return _maxpool2d_backward_serial(dOut, argmax, dX)


def _avgpool2d_forward_body(X, pool_h, pool_w, stride, out):
    """Body of :func:`avgpool2d_forward`, compiled parallel and serial."""
    _check(X, pool_h, pool_w, stride, out)
    B, C, H, W = X.shape
    OH, OW = out.shape[2], out.shape[3]
    scale = X.dtype.type(1.0 / (pool_h * pool_w))
    zero = X.dtype.type(0.0)
    for nc in numba.prange(B * C):
        n = nc // C
        c = nc - n * C
        x = X[n, c]
        o = out[n, c]
        for i in range(OH):
            h0 = i * stride
            acc = o[i]
            for j in range(OW):
                acc[j] = zero
            # Sum the window's pixels in row-major order, all windows of the
            # output row at once.
            for p in range(pool_h):
                row = x[h0 + p]
                for q in range(pool_w):
                    for j in range(OW):
                        acc[j] += row[j * stride + q]
            for j in range(OW):
                acc[j] = acc[j] * scale


_avgpool2d_forward_parallel, _avgpool2d_forward_serial = parallel_and_serial(
    _avgpool2d_forward_body
)


@numba.njit(**KERNEL_OPTIONS)
def avgpool2d_forward(X, pool_h, pool_w, stride, out):
    """Average pooling.

    Parameters
    ----------
    X : C-contiguous ndarray of shape (B, C, H, W), float32 or float64
        Input.
    pool_h, pool_w : int
        Window size.
    stride : int
        Step between windows.
    out : ndarray of shape (B, C, OH, OW), same dtype as X
        Filled with the window means (its shape sets OH and OW).
    """
    if X.size >= PARALLEL_MIN_WORK:
        return _avgpool2d_forward_parallel(X, pool_h, pool_w, stride, out)
    return _avgpool2d_forward_serial(X, pool_h, pool_w, stride, out)


def _avgpool2d_backward_body(dOut, pool_h, pool_w, stride, dX):
    """Body of :func:`avgpool2d_backward`, compiled parallel and serial."""
    B, C, H, W = dX.shape
    OH, OW = dOut.shape[2], dOut.shape[3]
    if dOut.shape[0] != B or dOut.shape[1] != C:
        raise ValueError("avgpool2d_backward: dOut and dX disagree")
    if (OH - 1) * stride + pool_h > H or (OW - 1) * stride + pool_w > W:
        raise ValueError("avgpool2d_backward: dOut too large for dX")
    scale = dX.dtype.type(1.0 / (pool_h * pool_w))
    zero = dX.dtype.type(0.0)
    for nc in numba.prange(B * C):
        n = nc // C
        c = nc - n * C
        dx = dX[n, c]
        g = dOut[n, c]
        for h in range(H):
            for w in range(W):
                dx[h, w] = zero
        for i in range(OH):
            h0 = i * stride
            for j in range(OW):
                w0 = j * stride
                v = g[i, j] * scale
                for p in range(pool_h):
                    row = dx[h0 + p]
                    for q in range(pool_w):
                        row[w0 + q] += v


_avgpool2d_backward_parallel, _avgpool2d_backward_serial = parallel_and_serial(
    _avgpool2d_backward_body
)


@numba.njit(**KERNEL_OPTIONS)
def avgpool2d_backward(dOut, pool_h, pool_w, stride, dX):
    """Gradient of average pooling: spread each output gradient evenly.

    Parameters
    ----------
    dOut : ndarray of shape (B, C, OH, OW)
        Gradient with respect to the pooled output.
    pool_h, pool_w : int
        Window size.
    stride : int
        Step between windows.
    dX : C-contiguous ndarray of shape (B, C, H, W), same dtype as dOut
        Zeroed, then receives ``dOut / (pool_h · pool_w)`` at every pixel of
        each window (added up where windows overlap).
    """
    if dX.size >= PARALLEL_MIN_WORK:
        return _avgpool2d_backward_parallel(dOut, pool_h, pool_w, stride, dX)
    return _avgpool2d_backward_serial(dOut, pool_h, pool_w, stride, dX)
