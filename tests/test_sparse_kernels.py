"""Kernels of a first Dense layer over sparse input, and the lazy row updates."""

import naive_nn as naive
import numpy as np
import pytest
import scipy.sparse as sp
from network_gradients import central_difference

from fastgd._kernels.common.optimizers import optimizer_step, row_sparse_step
from fastgd._kernels.network.sparse_dense import (
    csr_gather_rows,
    csr_rows_to_dense,
    mark_touched_rows,
    sparse_dense_backward,
    sparse_dense_forward,
)
from fastgd._kernels.runtime import codes

DTYPES = [np.float32, np.float64]
ACTIVATIONS = [codes.IDENTITY, codes.RELU, codes.TANH, codes.SIGMOID]


def tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


def random_csr(rng, n, d, density, dtype, index_dtype=np.int32):
    X = sp.random(n, d, density=density, format="csr", random_state=rng, dtype=np.float64)
    X.data = rng.standard_normal(X.nnz)
    X = X.astype(dtype)
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(index_dtype)
    return X


def gather(X, rows):
    """A CSR batch of ``rows`` through the kernel (int64 buffers)."""
    rows = np.asarray(rows, dtype=np.int64)
    indptr = np.empty(len(rows) + 1, np.int64)
    indices = np.empty(0, np.int64)
    data = np.empty(0, X.dtype)
    nnz = csr_gather_rows(X.indptr, X.indices, X.data, rows, indptr, indices, data)
    if nnz > 0:  # the first call only counts when the buffers are too small
        indices, data = np.empty(nnz, np.int64), np.empty(nnz, X.dtype)
        assert csr_gather_rows(X.indptr, X.indices, X.data, rows, indptr, indices, data) == nnz
    return indptr, indices[:nnz], data[:nnz]


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_and_densify_rows_match_scipy(dtype, index_dtype):
    rng = np.random.RandomState(0)
    X = random_csr(rng, 30, 17, 0.2, dtype, index_dtype)
    rows = rng.permutation(30)[:11]
    indptr, indices, data = gather(X, rows)
    batch = sp.csr_matrix((data, indices, indptr), shape=(len(rows), 17))
    np.testing.assert_array_equal(batch.toarray(), X[rows].toarray())
    column_map = rng.permutation(17).astype(np.int64)
    out = np.full((len(rows), 17), np.nan, dtype)
    csr_rows_to_dense(X.indptr, X.indices, X.data, rows.astype(np.int64), column_map, out)
    expected = np.zeros_like(out)
    expected[:, column_map] = X[rows].toarray()
    np.testing.assert_array_equal(out, expected)


def test_mark_touched_rows_dedupes_in_first_appearance_order():
    indices = np.array([5, 2, 5, 9, 2, 0, 7], np.int64)
    slot_of = np.full(10, -1, np.int64)
    rows, slots = np.empty(7, np.int64), np.empty(7, np.int64)
    n = mark_touched_rows(indices, 6, slot_of, rows, slots)  # the last entry is not counted
    assert n == 4
    np.testing.assert_array_equal(rows[:n], [5, 2, 9, 0])
    np.testing.assert_array_equal(rows[:n][slots[:6]], indices[:6])
    assert (slot_of == -1).all()


def sparse_layer(X, W, b, code, scale=1.0):
    """Forward through the kernels; returns the batch's CSR parts and the output."""
    indptr, indices, data = gather(X, np.arange(X.shape[0]))
    out = np.empty((X.shape[0], W.shape[1]), W.dtype)
    sparse_dense_forward(indptr, indices, data, W, scale, b, out, code)
    return (indptr, indices, data), out


def sparse_gradients(parts, A, dA, code, n_in):
    indptr, indices, data = parts
    slot_of = np.full(n_in, -1, np.int64)
    rows, slots = np.empty(len(indices), np.int64), np.empty(len(indices), np.int64)
    n_touched = mark_touched_rows(indices, len(indices), slot_of, rows, slots)
    G = np.full((max(n_touched, 1), A.shape[1]), np.nan, A.dtype)
    db = np.empty(A.shape[1], A.dtype)
    sparse_dense_backward(indptr, slots, data, A, dA, code, G, n_touched, db)
    return rows[:n_touched], G[:n_touched], db


@pytest.mark.parametrize("code", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_dense_matches_twin(dtype, code):
    rng = np.random.RandomState(code)
    X = random_csr(rng, 13, 40, 0.1, dtype)
    keep = np.ones(13)
    keep[3] = 0  # a row without non-zeros
    X = sp.csr_matrix(sp.diags(keep.astype(dtype)) @ X)
    X.eliminate_zeros()
    W = rng.standard_normal((40, 6)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    for scale in (1.0, 0.75):
        parts, out = sparse_layer(X, W, b, code, scale)
        np.testing.assert_allclose(
            out, naive.sparse_dense_forward(X, W, scale, b, code), **tol(dtype)
        )
    dA = rng.standard_normal(out.shape).astype(dtype)
    rows, G, db = sparse_gradients(parts, out, dA.copy(), code, 40)
    r_dW, r_db = naive.sparse_dense_backward(X, out, dA, code)
    np.testing.assert_allclose(db, r_db, **tol(dtype))
    np.testing.assert_allclose(G, r_dW[rows], **tol(dtype))
    untouched = np.setdiff1d(np.arange(40), rows)
    assert set(rows) == set(X.indices)
    assert (r_dW[untouched] == 0).all()


@pytest.mark.parametrize("code", ACTIVATIONS)
def test_sparse_dense_finite_differences(code):
    rng = np.random.RandomState(10 + code)
    X = random_csr(rng, 5, 12, 0.3, np.float64)
    W = rng.standard_normal((12, 3))
    b = rng.standard_normal(3) * 0.1
    R = rng.standard_normal((5, 3))  # objective: Σ R ⊙ out

    def objective():
        return float((sparse_layer(X, W, b, code)[1] * R).sum())

    parts, out = sparse_layer(X, W, b, code)
    rows, G, db = sparse_gradients(parts, out, R.copy(), code, 12)
    for r, row in enumerate(rows):
        for j in range(3):
            numeric = central_difference(objective, W, (row, j))
            assert numeric == pytest.approx(G[r, j], rel=1e-5, abs=1e-7)
    for j in range(3):
        numeric = central_difference(objective, b, j)
        assert numeric == pytest.approx(db[j], rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_sparse_sgd_is_the_dense_update(dtype):
    # Plain SGD without L2: updating the touched rows only is the dense step exactly.
    rng = np.random.RandomState(3)
    W = rng.standard_normal((20, 5)).astype(dtype)
    dense = W.copy()
    s = np.zeros_like(W)
    for step in range(1, 5):
        rows = rng.permutation(20)[:7].astype(np.int64)
        G = rng.standard_normal((7, 5)).astype(dtype)
        full = np.zeros_like(W)
        full[rows] = G
        optimizer_step(
            dense.reshape(-1),
            full.reshape(-1),
            s.reshape(-1),
            s.reshape(-1),
            0.1,
            step,
            codes.SGD,
            0.9,
            0.9,
            0.999,
            1e-8,
        )
        before = float((W.astype(np.float64) ** 2).sum())
        delta = row_sparse_step(
            W, G, rows, 7, s, s, 0.1, step, codes.SGD, 0.9, 0.9, 0.999, 1e-8, 0.0
        )
        np.testing.assert_array_equal(W, dense)
        after = float((W.astype(np.float64) ** 2).sum())
        assert delta == pytest.approx(after - before, rel=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", list(codes.OPTIMIZER_CODES.values()))
def test_row_sparse_step_is_the_rule_on_touched_rows(optimizer, dtype):
    # Twin: the dense rule applied to the touched rows alone (each row with
    # its own state and the global step count); other rows never change.
    from naive_linear import NaiveOptimizer

    rng = np.random.RandomState(optimizer)
    n_in, n_out, l2 = 15, 4, 0.3
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    s1, s2 = np.zeros_like(W), np.zeros_like(W)
    expected = W.astype(np.float64)
    twins = [
        NaiveOptimizer(optimizer, n_out, momentum=0.8, beta_1=0.85, beta_2=0.99, eps=1e-7)
        for _ in range(n_in)
    ]
    for step in range(1, 7):
        rows = rng.permutation(n_in)[: rng.randint(1, n_in)].astype(np.int64)
        G = rng.standard_normal((len(rows), n_out)).astype(dtype)
        lr = 0.05 / step
        row_sparse_step(
            W, G, rows, len(rows), s1, s2, lr, step, optimizer, 0.8, 0.85, 0.99, 1e-7, l2
        )
        for r, row in enumerate(rows):
            twin = twins[row]
            twin.step = step - 1  # the bias correction counts every step of the model
            g = G[r].astype(np.float64) + l2 * expected[row]
            expected[row], _ = twin.update(expected[row], g, lr)
        np.testing.assert_allclose(W, expected, **tol(dtype))
