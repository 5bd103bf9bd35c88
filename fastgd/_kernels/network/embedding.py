"""Embedding lookup with optional pooling, forward and backward (Numba).

The input is a batch of integer codes stored as floats (the network's
compute dtype), ``codes[i, c]`` for sample i and column (or sequence
position) c. A code equal to ``padding_idx`` (``-1``: none) is padding: it
contributes nothing and receives no gradient. With ``V`` the stored table
and ``scale`` its lazy L2 shrink factor (1 when unused), ``E = scale · V``:

* ``NO_POOLING``: ``out[i, c·d:(c+1)·d] = E[codes[i, c]]`` (zeros for padding);
* ``SUM``:  ``out[i] = Σ_c E[codes[i, c]]`` over non-padding codes;
* ``MEAN``: that sum divided by the number of non-padding codes;
* ``MAX``:  the element-wise maximum over non-padding codes (its arg-max
  position is kept for the backward pass).

A sample with no non-padding code gets a zero vector (as PyTorch's
``EmbeddingBag``). The backward pass writes the gradient of the touched rows
only (the row-sparse gradient ``G``, one row per distinct code, ordered by
first appearance), like :mod:`fastgd._kernels.network.sparse_dense`.
"""

from fastgd._kernels.network.sparse_dense import claim_slot, release_slots
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba

NO_POOLING = 0
SUM = 1
MEAN = 2
MAX = 3

#: ``pooling`` parameter of :class:`fastgd.layers.Embedding` → kernel code.
POOLING_CODES = {None: NO_POOLING, "sum": SUM, "mean": MEAN, "max": MAX}

__all__ = [
    "POOLING_CODES",
    "embedding_touched_rows",
    "embedding_forward",
    "embedding_backward",
]


@numba.njit(**KERNEL_OPTIONS)
def embedding_touched_rows(codes, padding_idx, slot_of, rows, slots):
    """Distinct non-padding codes of a batch and each entry's slot among them.

    Parameters
    ----------
    codes : C-contiguous ndarray of shape (n_samples, n_columns), float
        Integer codes (validated by the caller).
    padding_idx : int
        Padding code, -1 for none.
    slot_of : ndarray of int64, shape (input_dim,)
        Scratch, all -1 on entry and on return.
    rows : ndarray of int64, shape (>= number of distinct codes,)
        Filled with the distinct codes in order of first appearance.
    slots : C-contiguous ndarray of int64, shape (n_samples, n_columns)
        Slot of each entry in ``rows``; -1 for padding.

    Returns
    -------
    n_touched : int
    """
    n, L = codes.shape
    n_touched = 0
    for i in range(n):
        for c in range(L):
            code = int(codes[i, c])
            if code == padding_idx:
                slots[i, c] = -1
                continue
            slots[i, c], n_touched = claim_slot(code, slot_of, rows, n_touched)
    release_slots(slot_of, rows, n_touched)
    return n_touched


@numba.njit(**KERNEL_OPTIONS)
def embedding_forward(codes, W, scale, pooling, padding_idx, out, argmax):
    """Look up (and pool) the embeddings of a batch of codes.

    Parameters
    ----------
    codes : C-contiguous ndarray of shape (n_samples, n_columns), float
        Integer codes in ``[0, input_dim)``.
    W : C-contiguous ndarray of shape (input_dim, dim)
        Stored table (the embeddings are ``scale · W``).
    scale : float
        Lazy L2 shrink factor (1.0 when unused).
    pooling : int
        ``NO_POOLING``, ``SUM``, ``MEAN`` or ``MAX``.
    padding_idx : int
        Padding code, -1 for none.
    out : C-contiguous ndarray
        ``(n_samples, n_columns · dim)`` without pooling, else
        ``(n_samples, dim)``; overwritten.
    argmax : C-contiguous ndarray of int64, shape (n_samples, dim)
        With ``MAX``: filled with the position of each maximum (-1 for a
        sample with only padding). Not read otherwise.
    """
    n, L = codes.shape
    d = W.shape[1]
    dt = out.dtype.type
    zero = dt(0.0)
    s = dt(scale)
    for i in range(n):
        o = out[i]
        if pooling == NO_POOLING:
            for c in range(L):
                code = int(codes[i, c])
                base = c * d
                if code == padding_idx:
                    for j in range(d):
                        o[base + j] = zero
                else:
                    w = W[code]
                    for j in range(d):
                        o[base + j] = s * w[j]
            continue
        for j in range(d):
            o[j] = zero
        count = 0
        for c in range(L):
            code = int(codes[i, c])
            if code == padding_idx:
                continue
            w = W[code]
            if pooling == MAX:
                for j in range(d):
                    v = s * w[j]
                    if count == 0 or v > o[j]:
                        o[j] = v
                        argmax[i, j] = c
            else:
                for j in range(d):
                    o[j] += w[j]
            count += 1
        if pooling == MAX:
            if count == 0:
                for j in range(d):
                    argmax[i, j] = -1
        elif count > 0:
            factor = s / dt(count) if pooling == MEAN else s
            for j in range(d):
                o[j] *= factor


@numba.njit(**KERNEL_OPTIONS)
def embedding_backward(slots, dout, pooling, argmax, G, n_touched):
    """Row-sparse gradient of the (unscaled) embeddings of :func:`embedding_forward`.

    Parameters
    ----------
    slots : C-contiguous ndarray of int64, shape (n_samples, n_columns)
        From :func:`embedding_touched_rows` (-1 for padding).
    dout : C-contiguous ndarray
        Gradient w.r.t. the forward output (same shape).
    pooling : int
    argmax : C-contiguous ndarray of int64, shape (n_samples, dim)
        The forward pass's arg-max positions (``MAX`` only).
    G : C-contiguous ndarray of shape (>= n_touched, dim)
        ``G[s]`` is filled with the gradient of touched row ``s``.
    n_touched : int
    """
    n, L = slots.shape
    d = G.shape[1]
    dt = G.dtype.type
    zero = dt(0.0)
    for s in range(n_touched):
        for j in range(d):
            G[s, j] = zero
    for i in range(n):
        g_out = dout[i]
        if pooling == NO_POOLING:
            for c in range(L):
                s = slots[i, c]
                if s >= 0:
                    g = G[s]
                    base = c * d
                    for j in range(d):
                        g[j] += g_out[base + j]
            continue
        if pooling == MAX:
            for j in range(d):
                c = argmax[i, j]
                if c >= 0:
                    G[slots[i, c], j] += g_out[j]
            continue
        count = 0
        for c in range(L):
            if slots[i, c] >= 0:
                count += 1
        if count == 0:
            continue
        factor = dt(1.0) / dt(count) if pooling == MEAN else dt(1.0)
        for c in range(L):
            s = slots[i, c]
            if s >= 0:
                g = G[s]
                for j in range(d):
                    g[j] += factor * g_out[j]
