"""The native kernels of dense layers with few outputs (``narrow_dense_forward`` / ``_backward``).

Compared with NumPy's products over shapes that split the outputs into
register groups in every way (1 to 16 outputs), inputs that do not fill a
vector or a forward block (512 inputs), odd and even batches, every
activation and both dtypes; checked by central finite differences, for
independence from the thread count, and for leaving their inputs alone.
"""

import numpy as np
import pytest
from test_nn_kernels import assert_close, numerical_grad

from fastgd._kernels.network import native
from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.tuning import NARROW_DENSE_MAX_UNITS

DTYPES = [np.float32, np.float64]
# (rows, inputs, outputs): groups of 1..8 outputs forward, up to 12 backward,
# inputs past whole vectors and past whole forward blocks.
SHAPES = [
    (1, 1, 1),
    (2, 15, 3),
    (7, 17, 5),
    (5, 100, 8),
    (4, 33, 9),
    (3, 511, 10),
    (6, 513, 12),
    (9, 1100, 13),
    (32, 1030, 16),
]
NP_ACTIVATIONS = {
    codes.IDENTITY: lambda z: z,
    codes.RELU: lambda z: np.maximum(z, 0),
    codes.TANH: np.tanh,
    codes.SIGMOID: lambda z: 1 / (1 + np.exp(-z)),
}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _problem(rng, n, K, M, dtype):
    X = rng.standard_normal((n, K)).astype(dtype)
    W = (rng.standard_normal((K, M)) / np.sqrt(K)).astype(dtype)
    b = rng.standard_normal(M).astype(dtype)
    return X, W, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("code", list(NP_ACTIVATIONS))
def test_forward_matches_numpy(rng, dtype, shape, code):
    X, W, b = _problem(rng, *shape, dtype)
    out = np.full((shape[0], shape[2]), np.nan, dtype=dtype)
    native.narrow_dense_forward(X, W, b, out, code, 2)
    z = X.astype(np.float64) @ W.astype(np.float64) + b
    assert_close(out, NP_ACTIVATIONS[code](z), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_numpy(rng, dtype, shape):
    n, K, M = shape
    X, W, _ = _problem(rng, n, K, M, dtype)
    dZ = rng.standard_normal((n, M)).astype(dtype)
    dW = np.full((K, M), np.nan, dtype=dtype)
    dX = np.full((n, K), np.nan, dtype=dtype)
    native.narrow_dense_backward(X, dZ, W, dW, dX, 2)
    assert_close(dW, X.astype(np.float64).T @ dZ, dtype)
    assert_close(dX, dZ.astype(np.float64) @ W.T, dtype)
    # Without an input gradient (a first layer) the weight gradient is the same.
    dW_alone = np.full((K, M), np.nan, dtype=dtype)
    native.narrow_dense_backward(X, dZ, W, dW_alone, None, 2)
    np.testing.assert_array_equal(dW_alone, dW)


@pytest.mark.parametrize("code", [codes.IDENTITY, codes.TANH])
def test_gradients_match_finite_differences(rng, code):
    n, K, M = 5, 37, 10
    X, W, b = _problem(rng, n, K, M, np.float64)
    target = rng.standard_normal((n, M))
    out = np.empty((n, M))

    def loss():
        native.narrow_dense_forward(X, W, b, out, code, 1)
        return 0.5 * float(np.sum((out - target) ** 2))

    loss()
    dZ = out - target
    if code == codes.TANH:
        dZ = dZ * (1 - out**2)
    dW = np.empty_like(W)
    dX = np.empty_like(X)
    native.narrow_dense_backward(X, dZ, W, dW, dX, 1)
    np.testing.assert_allclose(dW, numerical_grad(loss, W), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dX, numerical_grad(loss, X), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_results_independent_of_thread_count(rng, dtype):
    n, K, M = 33, 2000, 10
    X, W, b = _problem(rng, n, K, M, dtype)
    dZ = rng.standard_normal((n, M)).astype(dtype)
    results = []
    for n_threads in (1, 2, 3):
        out = np.empty((n, M), dtype=dtype)
        dW = np.empty((K, M), dtype=dtype)
        dX = np.empty((n, K), dtype=dtype)
        native.narrow_dense_forward(X, W, b, out, codes.RELU, n_threads)
        native.narrow_dense_backward(X, dZ, W, dW, dX, n_threads)
        results.append((out, dW, dX))
    for other in results[1:]:
        for got, first in zip(other, results[0], strict=True):
            np.testing.assert_array_equal(got, first)


def test_inputs_left_unchanged(rng):
    X, W, b = _problem(rng, 6, 70, 7, np.float32)
    dZ = rng.standard_normal((6, 7)).astype(np.float32)
    copies = [a.copy() for a in (X, W, b, dZ)]
    native.narrow_dense_forward(X, W, b, np.empty((6, 7), np.float32), codes.SIGMOID, 2)
    native.narrow_dense_backward(X, dZ, W, np.empty_like(W), np.empty_like(X), 2)
    for array, copy in zip((X, W, b, dZ), copies, strict=True):
        np.testing.assert_array_equal(array, copy)


def test_rejects_shapes_that_do_not_agree(rng):
    X, W, b = _problem(rng, 4, 20, 3, np.float64)
    with pytest.raises(ValueError, match="do not agree"):
        native.narrow_dense_forward(X, W, b, np.empty((5, 3)), codes.IDENTITY, 1)
    with pytest.raises(ValueError, match="one value per output"):
        native.narrow_dense_forward(X, W, b[:2], np.empty((4, 3)), codes.IDENTITY, 1)
    dZ = np.zeros((4, 3))
    with pytest.raises(ValueError, match="shape of W"):
        native.narrow_dense_backward(X, dZ, W, np.empty((20, 2)), None, 1)
    with pytest.raises(ValueError, match="shape of X"):
        native.narrow_dense_backward(X, dZ, W, np.empty_like(W), np.empty((4, 19)), 1)


def test_dense_layers_with_few_outputs_train_through_the_narrow_kernels():
    """The layer's threshold is the tuning constant: the output layer of a
    10-class classifier takes the narrow kernels, a 64-unit hidden layer BLAS."""
    from fastgd import layers as L
    from fastgd._engine.layers_runtime import DenseLayer

    narrow = DenseLayer(L.Dense(NARROW_DENSE_MAX_UNITS), (100,), "test")
    wide = DenseLayer(L.Dense(NARROW_DENSE_MAX_UNITS + 1), (100,), "test")
    assert narrow.narrow and not wide.narrow
