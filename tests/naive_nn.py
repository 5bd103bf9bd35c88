"""Plain-NumPy reference twins of the neural-network kernels (tests only).

Written for clarity, not speed: every function allocates and returns new
arrays, and follows the textbook formula as directly as possible. They keep
the input dtype so the float32 kernels can be compared with them.
"""

import numpy as np

IDENTITY, RELU, TANH, SIGMOID = 0, 1, 2, 3


# --------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------
def activation(z, code):
    z = np.asarray(z)
    if code == RELU:
        return np.maximum(z, 0).astype(z.dtype)
    if code == TANH:
        return np.tanh(z)
    if code == SIGMOID:
        # exp of a non-positive number only: 1/(1+e^-z) = e^z/(1+e^z).
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype)
    return z.copy()


def activation_grad_from_output(a, code):
    """f'(z) written with a = f(z)."""
    if code == RELU:
        return (a > 0).astype(a.dtype)
    if code == TANH:
        return (1 - a * a).astype(a.dtype)
    if code == SIGMOID:
        return (a * (1 - a)).astype(a.dtype)
    return np.ones_like(a)


# --------------------------------------------------------------------------
# dense
# --------------------------------------------------------------------------
def dense_forward(X, W, b, code):
    return activation(X @ W + b, code)


def dense_backward(X, W, A, dA, code):
    dZ = dA * activation_grad_from_output(A, code)
    return X.T @ dZ, dZ.sum(axis=0), dZ @ W.T


# --------------------------------------------------------------------------
# conv2d (NCHW, weights (F, C, KH, KW))
# --------------------------------------------------------------------------
def conv2d_padding(padding, KH, KW, stride=1, H=None, W=None):
    """(pad_top, pad_bottom, pad_left, pad_right) of a padding mode.

    "valid": none; "same" (TensorFlow's rule): ``ceil(H / stride)`` output
    rows, the total padding ``max((OH - 1)·stride + KH - H, 0)`` split with
    the odd row at the bottom (likewise for columns; H and W are needed
    when stride > 1); an int or a pair: that many rows / columns each side.
    """
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        if stride > 1 and (H is None or W is None):
            raise ValueError("'same' padding with stride > 1 needs H and W")
        ph = KH - 1 if stride == 1 else max((-(-H // stride) - 1) * stride + KH - H, 0)
        pw = KW - 1 if stride == 1 else max((-(-W // stride) - 1) * stride + KW - W, 0)
        return ph // 2, ph - ph // 2, pw // 2, pw - pw // 2
    if isinstance(padding, str):
        raise ValueError(f"unknown padding {padding!r}")
    ph, pw = (padding, padding) if np.isscalar(padding) else padding
    return ph, ph, pw, pw


def conv2d_output_shape(H, W, KH, KW, stride, pad_h, pad_w):
    """(OH, OW) of a convolution with ``pad_h`` / ``pad_w`` rows / columns of padding in all."""
    OH, OW = (H + pad_h - KH) // stride + 1, (W + pad_w - KW) // stride + 1
    if OH < 1 or OW < 1:
        raise ValueError("the kernel does not fit in the padded input")
    return OH, OW


def _padded(X, KH, KW, stride, pad_top, pad_left, OH, OW):
    """X zero-padded so that every window of the (OH, OW) output fits."""
    B, C, H, W = X.shape
    pad_bottom = max(0, (OH - 1) * stride + KH - H - pad_top)
    pad_right = max(0, (OW - 1) * stride + KW - W - pad_left)
    return np.pad(X, ((0, 0), (0, 0), (pad_top, pad_bottom), (pad_left, pad_right)))


def conv2d_forward(X, W, b, stride, pad_top, pad_left, OH, OW, code):
    F, C, KH, KW = W.shape
    Xp = _padded(X, KH, KW, stride, pad_top, pad_left, OH, OW)
    B = X.shape[0]
    out = np.zeros((B, F, OH, OW), dtype=X.dtype)
    for p in range(KH):
        for q in range(KW):
            patch = Xp[:, :, p : p + stride * OH : stride, q : q + stride * OW : stride]
            patch = patch[:, :, :OH, :OW]
            out += np.einsum("bchw,fc->bfhw", patch, W[:, :, p, q])
    out += b[None, :, None, None]
    return activation(out, code)


def conv2d_backward(X, W, A, dA, code, stride, pad_top, pad_left):
    F, C, KH, KW = W.shape
    B, _, OH, OW = A.shape
    H, Wd = X.shape[2], X.shape[3]
    dZ = dA * activation_grad_from_output(A, code)
    Xp = _padded(X, KH, KW, stride, pad_top, pad_left, OH, OW)
    dXp = np.zeros_like(Xp)
    dW = np.zeros_like(W)
    for p in range(KH):
        for q in range(KW):
            hs = slice(p, p + stride * (OH - 1) + 1, stride)
            ws = slice(q, q + stride * (OW - 1) + 1, stride)
            dW[:, :, p, q] = np.einsum("bfhw,bchw->fc", dZ, Xp[:, :, hs, ws])
            dXp[:, :, hs, ws] += np.einsum("bfhw,fc->bchw", dZ, W[:, :, p, q])
    db = dZ.sum(axis=(0, 2, 3))
    dX = dXp[:, :, pad_top : pad_top + H, pad_left : pad_left + Wd]
    return dW, db, dX


# --------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------
def maxpool2d_forward(X, ph, pw, stride):
    B, C, H, W = X.shape
    OH, OW = (H - ph) // stride + 1, (W - pw) // stride + 1
    out = np.empty((B, C, OH, OW), X.dtype)
    arg = np.empty((B, C, OH, OW), np.int64)
    for i in range(OH):
        for j in range(OW):
            win = X[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw]
            flat = win.reshape(B, C, ph * pw)
            k = flat.argmax(axis=2)  # first maximum in row-major order
            out[:, :, i, j] = np.take_along_axis(flat, k[..., None], 2)[..., 0]
            arg[:, :, i, j] = (i * stride + k // pw) * W + j * stride + k % pw
    return out, arg


def maxpool2d_backward(dOut, arg, H, W):
    B, C = dOut.shape[:2]
    dX = np.zeros((B, C, H * W), dOut.dtype)
    for n in range(B):
        for c in range(C):
            np.add.at(dX[n, c], arg[n, c].ravel(), dOut[n, c].ravel())
    return dX.reshape(B, C, H, W)


def avgpool2d_forward(X, ph, pw, stride):
    B, C, H, W = X.shape
    OH, OW = (H - ph) // stride + 1, (W - pw) // stride + 1
    out = np.empty((B, C, OH, OW), X.dtype)
    for i in range(OH):
        for j in range(OW):
            win = X[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw]
            out[:, :, i, j] = win.mean(axis=(2, 3))
    return out


def avgpool2d_backward(dOut, ph, pw, stride, H, W):
    B, C, OH, OW = dOut.shape
    dX = np.zeros((B, C, H, W), dOut.dtype)
    for i in range(OH):
        for j in range(OW):
            g = dOut[:, :, i, j][:, :, None, None] / (ph * pw)
            dX[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw] += g
    return dX


# --------------------------------------------------------------------------
# dropout
# --------------------------------------------------------------------------
def dropout(X, mask, rate):
    if rate >= 1:
        return np.zeros_like(X)
    return (X * (mask >= rate) / (1 - rate)).astype(X.dtype)


# --------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------
def softmax(S):
    S = np.asarray(S, dtype=np.float64)
    e = np.exp(S - S.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(S):
    S = np.asarray(S, dtype=np.float64)
    m = S.max(axis=1, keepdims=True)
    return S - m - np.log(np.exp(S - m).sum(axis=1, keepdims=True))


def softmax_cross_entropy(S, y, w=None):
    B, K = S.shape
    w = np.ones(B) if w is None else np.asarray(w, dtype=np.float64)
    logp = log_softmax(S)
    loss = -(w * logp[np.arange(B), y]).sum() / w.sum()
    onehot = np.zeros((B, K))
    onehot[np.arange(B), y] = 1
    grad = w[:, None] * (np.exp(logp) - onehot) / w.sum()
    return loss, np.exp(logp), grad


def masked_regression_loss(pred, y, mask, lam, loss_code, delta):
    pred = np.asarray(pred, np.float64)
    present = mask != 0
    y = np.where(present, y, 0.0)  # drop the NaNs of missing targets
    r = np.where(present, pred - y, 0.0)
    if loss_code == 1:
        small = np.abs(r) <= delta
        ell = np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
        dell = np.where(small, r, delta * np.sign(r))
    else:
        ell = 0.5 * r**2
        dell = r
    denom = np.maximum(1.0, mask.sum(axis=0))
    task = (mask * ell).sum(axis=0) / denom
    total = float((lam * task).sum())
    grad = lam * mask * dell / denom
    return total, task, grad


# --------------------------------------------------------------------------
# sparse first Dense layer (X as a scipy CSR matrix)
# --------------------------------------------------------------------------
def sparse_dense_forward(X, W, scale, b, code):
    """act(b + scale · X @ W) with X densified (the twin may allocate)."""
    return activation(scale * (X.toarray() @ W) + b, code)


def sparse_dense_backward(X, A, dA, code):
    """Dense dW and db of the sparse layer (dW rows of untouched columns are 0)."""
    dZ = dA * activation_grad_from_output(A, code)
    return X.toarray().T @ dZ, dZ.sum(axis=0)


# --------------------------------------------------------------------------
# embedding (codes as an int array, padding_idx None or an int)
# --------------------------------------------------------------------------
def embedding_forward(codes, W, pooling, padding_idx=None):
    n, L = codes.shape
    d = W.shape[1]
    keep = np.ones(codes.shape, bool) if padding_idx is None else codes != padding_idx
    E = np.where(keep[:, :, None], W[codes], 0.0)  # (n, L, d)
    if pooling is None:
        return E.reshape(n, L * d)
    counts = keep.sum(axis=1)
    if pooling == "sum":
        return E.sum(axis=1)
    if pooling == "mean":
        return E.sum(axis=1) / np.maximum(counts, 1)[:, None]
    out = np.where(keep[:, :, None], W[codes], -np.inf).max(axis=1)
    return np.where(counts[:, None] > 0, out, 0.0)


def embedding_backward(codes, W, dout, pooling, padding_idx=None):
    """Dense gradient of the table, by differentiating the twin sample by sample."""
    n, L = codes.shape
    dW = np.zeros_like(W, dtype=np.float64)
    for i in range(n):
        keep = [c for c in range(L) if padding_idx is None or codes[i, c] != padding_idx]
        if pooling is None:
            for c in keep:
                dW[codes[i, c]] += dout[i, c * W.shape[1] : (c + 1) * W.shape[1]]
        elif pooling in ("sum", "mean"):
            f = 1.0 if pooling == "sum" or not keep else 1.0 / len(keep)
            for c in keep:
                dW[codes[i, c]] += f * dout[i]
        elif keep:
            for j in range(W.shape[1]):
                values = [W[codes[i, c], j] for c in keep]
                c = keep[int(np.argmax(values))]
                dW[codes[i, c], j] += dout[i, j]
    return dW
