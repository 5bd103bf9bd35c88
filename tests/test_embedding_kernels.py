"""Embedding lookup / pooling kernels against the NumPy twin and finite differences."""

import naive_nn as naive
import numpy as np
import pytest
from network_gradients import central_difference

from fastgd._kernels.network.embedding import (
    POOLING_CODES,
    embedding_backward,
    embedding_forward,
    embedding_touched_rows,
)

POOLINGS = [None, "sum", "mean", "max"]


def tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}


def run_forward(codes, W, pooling, padding_idx, scale=1.0):
    n, L = codes.shape
    d = W.shape[1]
    width = L * d if pooling is None else d
    out = np.full((n, width), np.nan, W.dtype)
    argmax = np.empty((n, d), np.int64)
    pad = -1 if padding_idx is None else padding_idx
    embedding_forward(codes.astype(W.dtype), W, scale, POOLING_CODES[pooling], pad, out, argmax)
    return out, argmax


def run_backward(codes, W, dout, pooling, padding_idx, argmax):
    pad = -1 if padding_idx is None else padding_idx
    slot_of = np.full(W.shape[0], -1, np.int64)
    rows = np.empty(codes.size, np.int64)
    slots = np.empty(codes.shape, np.int64)
    n = embedding_touched_rows(codes.astype(W.dtype), pad, slot_of, rows, slots)
    assert (slot_of == -1).all()
    G = np.full((max(n, 1), W.shape[1]), np.nan, W.dtype)
    embedding_backward(slots, dout, POOLING_CODES[pooling], argmax, G, n)
    return rows[:n], G[:n]


def make_codes(rng, n, L, dim, padding_idx):
    codes = rng.randint(0, dim, size=(n, L))
    if padding_idx is not None:
        codes[rng.rand(n, L) < 0.3] = padding_idx
        codes[0] = padding_idx  # a sample with only padding
    return codes


@pytest.mark.parametrize("padding_idx", [None, 0])
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_matches_twin(dtype, pooling, padding_idx):
    rng = np.random.RandomState(len(str(pooling)))
    codes = make_codes(rng, 9, 5, 11, padding_idx)
    W = rng.standard_normal((11, 3)).astype(dtype)
    out, argmax = run_forward(codes, W, pooling, padding_idx)
    expected = naive.embedding_forward(codes, W.astype(np.float64), pooling, padding_idx)
    np.testing.assert_allclose(out, expected, **tol(dtype))
    out_scaled, _ = run_forward(codes, W, pooling, padding_idx, scale=0.5)
    np.testing.assert_allclose(out_scaled, 0.5 * expected, **tol(dtype))

    dout = rng.standard_normal(out.shape).astype(dtype)
    rows, G = run_backward(codes, W, dout, pooling, padding_idx, argmax)
    dW = naive.embedding_backward(codes, W.astype(np.float64), dout, pooling, padding_idx)
    used = np.unique(codes[codes != padding_idx]) if padding_idx is not None else np.unique(codes)
    np.testing.assert_array_equal(np.sort(rows), used)
    np.testing.assert_allclose(G, dW[rows], **tol(dtype))
    untouched = np.setdiff1d(np.arange(11), rows)
    assert (dW[untouched] == 0).all()


@pytest.mark.parametrize("pooling", POOLINGS)
def test_embedding_finite_differences(pooling):
    rng = np.random.RandomState(7)
    padding_idx = 2
    codes = make_codes(rng, 6, 4, 8, padding_idx)
    W = rng.standard_normal((8, 3))
    out, argmax = run_forward(codes, W, pooling, padding_idx)
    R = rng.standard_normal(out.shape)
    rows, G = run_backward(codes, W, R, pooling, padding_idx, argmax)
    assert padding_idx not in rows

    def objective():
        return float((run_forward(codes, W, pooling, padding_idx)[0] * R).sum())

    for r, row in enumerate(rows):
        for j in range(3):
            numeric = central_difference(objective, W, (row, j))
            assert numeric == pytest.approx(G[r, j], rel=1e-5, abs=1e-7)
