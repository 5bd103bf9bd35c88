"""A first Dense layer over sparse (CSR) input, and the CSR batch helpers (Numba).

Forward, for a batch in CSR form (``indptr``, ``indices``, ``data``) and a
weight matrix stored as ``scale · V`` (``scale`` is the lazy L2 shrink factor
of plain SGD, 1 otherwise)::

    out[i] = act(b + scale · Σ_k data[k] · V[indices[k]])   (k over row i's non-zeros)

Backward, with dZ = dA · act'(z)::

    db = Σ_i dZ[i]        G[slot(c)] = Σ_{i,k: indices[k] = c} data[k] · dZ[i]

G holds only the rows of W the batch touched (the *row-sparse* gradient,
one row per distinct column index, in order of first appearance); the
input gradient is never needed (the layer reads data). Every loop here is
O(non-zeros of the batch × units): nothing runs over the vocabulary.

The batch helpers gather rows of a CSR matrix into preallocated buffers
(int64 indices, so the layer kernels compile once per float dtype) and
scatter rows into a dense buffer for branches that need dense input.
"""

from fastgd._kernels.network.activations import activation_backward, activation_forward
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba


@numba.njit(**KERNEL_OPTIONS)
def csr_gather_rows(indptr, indices, data, rows, out_indptr, out_indices, out_data):
    """Copy rows ``rows`` of a CSR matrix into batch buffers, in that order.

    Parameters
    ----------
    indptr, indices, data : ndarray
        The CSR matrix (int32 or int64 index arrays).
    rows : ndarray of int64
        Rows to gather.
    out_indptr : ndarray of int64, shape (>= len(rows) + 1,)
    out_indices : ndarray of int64
    out_data : ndarray, dtype of ``data``
        Batch buffers.

    Returns
    -------
    nnz : int
        Number of non-zeros of the batch. If it exceeds the capacity of
        ``out_indices`` nothing but the count is computed: grow the buffers
        and call again.
    """
    nnz = 0
    for r in range(rows.shape[0]):
        row = rows[r]
        nnz += indptr[row + 1] - indptr[row]
    if nnz > out_indices.shape[0] or nnz > out_data.shape[0]:
        return nnz
    k = 0
    out_indptr[0] = 0
    for r in range(rows.shape[0]):
        row = rows[r]
        for p in range(indptr[row], indptr[row + 1]):
            out_indices[k] = indices[p]
            out_data[k] = data[p]
            k += 1
        out_indptr[r + 1] = k
    return nnz


@numba.njit(**KERNEL_OPTIONS)
def csr_rows_to_dense(indptr, indices, data, rows, column_map, out):
    """Scatter rows ``rows`` of a CSR matrix into the dense buffer ``out``.

    ``out[r, column_map[c]] = value`` for every stored ``(rows[r], c)``;
    every other entry of ``out[:len(rows)]`` is zero. ``column_map`` lets the
    caller reorder columns on the way (a channels-last image's transpose).
    """
    zero = out.dtype.type(0.0)
    for r in range(rows.shape[0]):
        for j in range(out.shape[1]):
            out[r, j] = zero
        row = rows[r]
        for p in range(indptr[row], indptr[row + 1]):
            out[r, column_map[indices[p]]] += data[p]


@numba.njit(inline="always", **KERNEL_OPTIONS)
def claim_slot(row, slot_of, rows, n_touched):
    """Slot of weight row ``row`` among the touched rows, given one on its first visit.

    Returns ``(slot, n_touched)``, ``n_touched`` counting the new row if any.
    """
    s = slot_of[row]
    if s < 0:
        s = n_touched
        slot_of[row] = s
        rows[s] = row
        n_touched += 1
    return s, n_touched


@numba.njit(inline="always", **KERNEL_OPTIONS)
def release_slots(slot_of, rows, n_touched):
    """Reset ``slot_of`` to -1 for the touched rows (the scratch's state between calls)."""
    for s in range(n_touched):
        slot_of[rows[s]] = -1


@numba.njit(**KERNEL_OPTIONS)
def mark_touched_rows(indices, nnz, slot_of, rows, slots):
    """Distinct column indices of a batch, and each non-zero's slot among them.

    Parameters
    ----------
    indices : ndarray of int64
        Column index of each non-zero (first ``nnz`` entries used).
    nnz : int
    slot_of : ndarray of int64, shape (n_columns,)
        Scratch, all -1 on entry and on return.
    rows : ndarray of int64
        Filled with the distinct indices, in order of first appearance.
    slots : ndarray of int64
        ``slots[k]`` is the position of ``indices[k]`` in ``rows``.

    Returns
    -------
    n_touched : int
    """
    n_touched = 0
    for k in range(nnz):
        slots[k], n_touched = claim_slot(indices[k], slot_of, rows, n_touched)
    release_slots(slot_of, rows, n_touched)
    return n_touched


@numba.njit(**KERNEL_OPTIONS)
def sparse_dense_forward(indptr, indices, data, W, scale, b, out, code):
    """``out[:] = act(b + scale · X @ W)`` for a CSR batch X.

    Parameters
    ----------
    indptr : ndarray of int64, shape (n_samples + 1,)
    indices : ndarray of int64
    data : ndarray, float32 or float64
        The batch in CSR form.
    W : C-contiguous ndarray of shape (n_in, n_out), dtype of ``data``
        Stored weights (the weights are ``scale · W``).
    scale : float
        Lazy L2 shrink factor of the weights (1.0 when unused).
    b : ndarray of shape (n_out,)
        Bias.
    out : C-contiguous ndarray of shape (n_samples, n_out)
        Output buffer (overwritten).
    code : int
        Activation code (``codes.ACTIVATION_CODES``).
    """
    n, n_out = out.shape
    if W.shape[1] != n_out or b.shape[0] != n_out:
        raise ValueError("sparse_dense_forward: W, b and out disagree on n_out")
    dt = out.dtype.type
    s = dt(scale)
    for i in range(n):
        row = out[i]
        for j in range(n_out):
            row[j] = b[j]
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p] * s
            w = W[indices[p]]
            for j in range(n_out):
                row[j] += v * w[j]
    activation_forward(out, code)


@numba.njit(**KERNEL_OPTIONS)
def sparse_dense_backward(indptr, slots, data, A, dA, code, G, n_touched, db):
    """Row-sparse weight gradient and bias gradient of :func:`sparse_dense_forward`.

    Parameters
    ----------
    indptr : ndarray of int64, shape (n_samples + 1,)
    slots : ndarray of int64
        Slot of each non-zero's column (:func:`mark_touched_rows`).
    data : ndarray
        The batch's values.
    A : C-contiguous ndarray of shape (n_samples, n_out)
        Output of the forward pass.
    dA : C-contiguous ndarray of shape (n_samples, n_out)
        Gradient w.r.t. A; **overwritten** with the gradient w.r.t. the
        pre-activation.
    code : int
        Activation code.
    G : C-contiguous ndarray of shape (>= n_touched, n_out)
        ``G[s]`` is filled with the gradient of the touched row ``s`` of the
        (unscaled) weights; rows past ``n_touched`` are not touched.
    n_touched : int
    db : ndarray of shape (n_out,)
        Filled with ``Σ_i dZ[i]`` (in sample order).
    """
    n, n_out = dA.shape
    if A.shape != dA.shape or G.shape[1] != n_out or db.shape[0] != n_out:
        raise ValueError("sparse_dense_backward: shapes of A, dA, G, db disagree")
    activation_backward(A, dA, code)
    zero = G.dtype.type(0.0)
    for s in range(n_touched):
        for j in range(n_out):
            G[s, j] = zero
    for j in range(n_out):
        db[j] = zero
    for i in range(n):
        d = dA[i]
        for j in range(n_out):
            db[j] += d[j]
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p]
            g = G[slots[p]]
            for j in range(n_out):
                g[j] += v * d[j]


__all__ = [
    "csr_gather_rows",
    "csr_rows_to_dense",
    "mark_touched_rows",
    "sparse_dense_forward",
    "sparse_dense_backward",
]
