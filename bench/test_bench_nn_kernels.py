"""pytest-benchmark suite: the neural-network kernels against NumPy and PyTorch (CPU).

``pytest bench/test_bench_nn_kernels.py --benchmark-only [--bench-size full]``.
Every kernel is called directly, as :mod:`fastgd._engine.layers_runtime`,
:mod:`fastgd._engine.network` and :mod:`fastgd._engine.network_training` call
it, on float32 (the networks' default) and on the shapes of the reference
models of :mod:`fastgd.benchmarks.fusion` (quick; ``full`` uses larger batches and
layers). Each group holds the fastgd kernel and the same computation written
the natural way in NumPy and in PyTorch (``torch.nn.functional`` without
autograd for forward passes, ``torch.autograd.grad`` on a recorded graph for
backward passes, ``torch.optim`` for optimizers); the PyTorch benchmarks are
skipped without PyTorch, which uses as many threads as Numba.

Notes on what is timed:

* Backward kernels overwrite the upstream gradient ``dA`` with the gradient
  before the activation; with ReLU that is idempotent (dA·[A > 0] twice is
  dA·[A > 0] once), so repeated calls do the same work on the same values.
* Activations work in place: every implementation first copies the same
  pre-activations into its buffer, then applies the activation in place.
* The output-loss groups time the loss and its gradient with respect to the
  scores together (PyTorch: ``cross_entropy`` and ``autograd.grad``).

Every benchmark checks its result against the NumPy computation, so a fast
wrong kernel cannot win.
"""

import numpy as np
import pytest
from scipy.special import expit

from bench._speedups import label
from bench._timing import warm_then_benchmark
from fastgd._kernels.runtime import codes

DTYPE = np.float32
RTOL = 2e-4  # float32 results of different summation orders
SIZES = {
    "quick": {
        "dense": (256, 784, 256),  # batch, inputs, units (first layer of the MLP)
        "conv": (32, 3, 32, 32, 32, 3),  # batch, channels, height, width, filters, kernel
        "planes": (32, 32, 30, 30),  # the reference conv output: pooling, activations
        "scores": (2_048, 10),  # samples, classes (or tasks)
        "params": 235_146,  # parameters of the 784-256-128-10 MLP
    },
    "full": {
        "dense": (1_024, 1_024, 1_024),
        "conv": (128, 16, 32, 32, 32, 3),
        "planes": (128, 32, 30, 30),
        "scores": (65_536, 10),
        "params": 4_000_000,
    },
}
ACTIVATIONS = ["relu", "tanh", "sigmoid"]
OPTIMIZERS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]
LEARNING_RATE, MOMENTUM, BETA_1, BETA_2, EPS = 1e-3, 0.9, 0.9, 0.999, 1e-8


@pytest.fixture(scope="module")
def sizes(bench_size):
    return SIZES[bench_size]


def random(*shape, seed=0, scale=1.0):
    """Normal float32 array of standard deviation ``scale``."""
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(DTYPE)


def assert_close(actual, expected):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, np.float64)
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * np.abs(expected).max())


# -------------------------------------------------------------- dense layer
@pytest.fixture(scope="module")
def dense_case(sizes):
    """Input, weights (n_in, n_out), bias, output after ReLU and upstream gradient."""
    batch, n_in, n_out = sizes["dense"]
    X, W, b = random(batch, n_in), random(n_in, n_out, seed=1, scale=n_in**-0.5), random(n_out)
    A = np.maximum(X @ W + b, 0)
    return X, W, b, A, random(batch, n_out, seed=2)


def numpy_dense_backward(X, W, A, dA):
    dZ = dA * (A > 0)
    return X.T @ dZ, dZ.sum(axis=0), dZ @ W.T


@pytest.mark.benchmark(group="kernel: dense forward (matmul + bias + relu)")
def test_fastgd_dense_forward(benchmark, dense_case):
    from fastgd._kernels.network.dense import dense_forward

    X, W, b, A, _ = dense_case
    label(benchmark, "fastgd", shape=X.shape + W.shape[1:])
    out = np.empty_like(A)
    warm_then_benchmark(benchmark, lambda: dense_forward(X, W, b, out, codes.RELU))
    assert_close(out, A)


@pytest.mark.benchmark(group="kernel: dense forward (matmul + bias + relu)")
def test_numpy_dense_forward(benchmark, dense_case):
    X, W, b, A, _ = dense_case
    label(benchmark, "numpy", shape=X.shape + W.shape[1:])
    out = np.empty_like(A)

    def forward():
        np.matmul(X, W, out=out)
        np.add(out, b, out=out)
        np.maximum(out, 0, out=out)

    warm_then_benchmark(benchmark, forward)
    assert_close(out, A)


@pytest.mark.benchmark(group="kernel: dense forward (matmul + bias + relu)")
def test_torch_dense_forward(benchmark, torch, dense_case):
    X, W, b, A, _ = dense_case
    label(benchmark, "torch", shape=X.shape + W.shape[1:])
    x, weight, bias = torch.from_numpy(X), torch.from_numpy(W.T.copy()), torch.from_numpy(b)

    def forward():
        with torch.no_grad():
            return torch.relu(torch.nn.functional.linear(x, weight, bias))

    assert_close(warm_then_benchmark(benchmark, forward), A)


@pytest.mark.benchmark(group="kernel: dense backward (relu, dW, db, dX)")
def test_fastgd_dense_backward(benchmark, dense_case):
    from fastgd._kernels.network.dense import dense_backward

    X, W, _, A, dA = dense_case
    label(benchmark, "fastgd", shape=X.shape + W.shape[1:])
    dA = dA.copy()  # becomes dZ (see the module docstring)
    dW, db, dX = np.empty_like(W), np.empty(W.shape[1], DTYPE), np.empty_like(X)
    warm_then_benchmark(
        benchmark, lambda: dense_backward(X, W, A, dA, codes.RELU, dW, db, dX, True)
    )
    for actual, expected in zip((dW, db, dX), numpy_dense_backward(X, W, A, dA), strict=True):
        assert_close(actual, expected)


@pytest.mark.benchmark(group="kernel: dense backward (relu, dW, db, dX)")
def test_numpy_dense_backward(benchmark, dense_case):
    X, W, _, A, dA = dense_case
    label(benchmark, "numpy", shape=X.shape + W.shape[1:])
    dZ, dW, db, dX = (
        np.empty_like(A),
        np.empty_like(W),
        np.empty(W.shape[1], DTYPE),
        np.empty_like(X),
    )

    def backward():
        np.multiply(dA, A > 0, out=dZ)
        np.matmul(X.T, dZ, out=dW)
        np.sum(dZ, axis=0, out=db)
        np.matmul(dZ, W.T, out=dX)

    warm_then_benchmark(benchmark, backward)
    for actual, expected in zip((dW, db, dX), numpy_dense_backward(X, W, A, dA), strict=True):
        assert_close(actual, expected)


@pytest.mark.benchmark(group="kernel: dense backward (relu, dW, db, dX)")
def test_torch_dense_backward(benchmark, torch, dense_case):
    X, W, b, A, dA = dense_case
    label(benchmark, "torch", shape=X.shape + W.shape[1:])
    x = torch.from_numpy(X).requires_grad_()
    weight = torch.from_numpy(W.T.copy()).requires_grad_()
    bias = torch.from_numpy(b).requires_grad_()
    out = torch.relu(torch.nn.functional.linear(x, weight, bias))
    upstream = torch.from_numpy(dA)

    def backward():
        return torch.autograd.grad(out, (weight, bias, x), upstream, retain_graph=True)

    dW, db, dX = warm_then_benchmark(benchmark, backward)
    expected = numpy_dense_backward(X, W, A, dA)
    for actual, wanted in zip((dW.T, db, dX), expected, strict=True):
        assert_close(actual, wanted)


# -------------------------------------------------------------- convolution
@pytest.fixture(scope="module")
def conv_case(sizes):
    """Input (B, C, H, W), filters, bias, relu output, upstream gradient ("valid", stride 1)."""
    batch, channels, height, width, filters, k = sizes["conv"]
    X = random(batch, channels, height, width)
    W = random(filters, channels, k, k, seed=1, scale=(channels * k * k) ** -0.5)
    b = random(filters, seed=2)
    A = numpy_conv_forward(X, W, b)
    return X, W, b, A, random(*A.shape, seed=3)


def _windows(X, W):
    """View (B, C, OH, OW, KH, KW) of every receptive field of X (no copy)."""
    return np.lib.stride_tricks.sliding_window_view(X, W.shape[2:], axis=(2, 3))


def numpy_conv_forward(X, W, b):
    """relu(conv(X, W) + b): im2col and one matrix product, through ``np.einsum``."""
    Z = np.einsum("bchwpq,fcpq->bfhw", _windows(X, W), W, optimize=True)
    Z += b[:, None, None]
    return np.ascontiguousarray(np.maximum(Z, 0, out=Z))


def numpy_conv_backward(X, W, A, dA):
    """(dW, db, dX) of relu(conv(X, W) + b); dX folds the unfolded gradient back (col2im)."""
    dZ = dA * (A > 0)
    dW = np.einsum("bchwpq,bfhw->fcpq", _windows(X, W), dZ, optimize=True)
    dcols = np.einsum("bfhw,fcpq->bchwpq", dZ, W, optimize=True)
    dX = np.zeros_like(X)
    height, width = A.shape[2:]
    for p in range(W.shape[2]):
        for q in range(W.shape[3]):
            dX[:, :, p : p + height, q : q + width] += dcols[..., p, q]
    return dW, dZ.sum(axis=(0, 2, 3)), dX


class NativeConv:
    """The buffers the engine gives the (ahead-of-time) convolution kernels, and the calls."""

    def __init__(self, X, W, A, pooled=False):
        from fastgd._kernels.network import native

        self.native = native
        batch, channels, height, width = X.shape
        filters, _, kh, kw = W.shape
        self.size = A.shape[2:]
        forward, backward, partial = native.workspace_sizes(
            channels, height, width, filters, kh, kw, 1, 0, 0, *self.size, X.itemsize, pooled, True
        )
        self.workspace = np.empty((native.max_threads(), max(forward, backward)), X.dtype)
        self.partials = np.empty((-(-batch // native.GRAD_BLOCK), partial), X.dtype)
        self.packed = np.empty(native.packed_weights_size(filters, channels, kh, kw), X.dtype)
        self.threads = native.thread_count(batch * W.size * A.shape[2] * A.shape[3])

    def forward(self, X, W, b, out):
        self.native.pack_weights(W, self.packed)
        self.native.conv2d_forward(
            X, W, b, 1, 0, 0, out, codes.RELU, self.packed, self.workspace, self.threads
        )

    def pool_forward(self, X, W, b, out, argmax):
        self.native.pack_weights(W, self.packed)
        self.native.conv2d_pool_forward(
            X,
            W,
            b,
            1,
            0,
            0,
            *self.size,
            codes.RELU,
            2,
            2,
            2,
            out,
            argmax,
            self.packed,
            self.workspace,
            self.threads,
        )

    def backward(self, X, W, A, dA, argmax, dW, db, dX):
        # The weight-gradient path the engine chooses for this shape.
        dense = self.native.dense_weight_grad(W[0].size, pooled=argmax is not None)
        self.native.conv2d_backward(
            X,
            W,
            A,
            dA,
            argmax,
            codes.RELU,
            1,
            0,
            0,
            *self.size,
            dW,
            db,
            dX,
            self.workspace,
            self.partials,
            self.threads,
            dense,
        )


@pytest.mark.benchmark(group="kernel: conv2d forward (3x3 valid + bias + relu)")
def test_fastgd_conv2d_forward(benchmark, conv_case):
    X, W, b, A, _ = conv_case
    label(benchmark, "fastgd", input=X.shape, filters=W.shape)
    out, conv = np.empty_like(A), NativeConv(X, W, A)
    warm_then_benchmark(benchmark, lambda: conv.forward(X, W, b, out))
    assert_close(out, A)


@pytest.mark.benchmark(group="kernel: conv2d + relu + maxpool 2x2 forward")
def test_fastgd_conv2d_pool_forward(benchmark, conv_case):
    X, W, b, A, _ = conv_case
    label(benchmark, "fastgd", input=X.shape, filters=W.shape)
    shape = A.shape[:2] + (A.shape[2] // 2, A.shape[3] // 2)
    out, argmax, conv = np.empty(shape, DTYPE), np.empty(shape, np.int32), NativeConv(X, W, A, True)
    warm_then_benchmark(benchmark, lambda: conv.pool_forward(X, W, b, out, argmax))
    expected = A[:, :, : 2 * shape[2], : 2 * shape[3]].reshape(shape[:3] + (2, shape[3], 2))
    assert_close(out, expected.max(axis=(3, 5)))


@pytest.mark.benchmark(group="kernel: conv2d + relu + maxpool 2x2 forward")
def test_torch_conv2d_pool_forward(benchmark, torch, conv_case):
    X, W, b, A, _ = conv_case
    label(benchmark, "torch", input=X.shape, filters=W.shape)
    x, weight, bias = (torch.from_numpy(a) for a in (X, W, b))

    def forward():
        with torch.no_grad():
            conv = torch.relu(torch.nn.functional.conv2d(x, weight, bias))
            return torch.nn.functional.max_pool2d(conv, 2)

    out = warm_then_benchmark(benchmark, forward).numpy()
    assert_close(out, torch.nn.functional.max_pool2d(torch.from_numpy(A), 2).numpy())


@pytest.mark.benchmark(group="kernel: conv2d forward (3x3 valid + bias + relu)")
def test_numpy_conv2d_forward(benchmark, conv_case):
    X, W, b, A, _ = conv_case
    label(benchmark, "numpy", input=X.shape, filters=W.shape)
    assert_close(warm_then_benchmark(benchmark, lambda: numpy_conv_forward(X, W, b)), A)


@pytest.mark.benchmark(group="kernel: conv2d forward (3x3 valid + bias + relu)")
def test_torch_conv2d_forward(benchmark, torch, conv_case):
    X, W, b, A, _ = conv_case
    label(benchmark, "torch", input=X.shape, filters=W.shape)
    x, weight, bias = (torch.from_numpy(a) for a in (X, W, b))

    def forward():
        with torch.no_grad():
            return torch.relu(torch.nn.functional.conv2d(x, weight, bias))

    assert_close(warm_then_benchmark(benchmark, forward), A)


@pytest.mark.benchmark(group="kernel: conv2d backward (relu, dW, db, dX)")
def test_fastgd_conv2d_backward(benchmark, conv_case):
    X, W, _, A, dA = conv_case
    label(benchmark, "fastgd", input=X.shape, filters=W.shape)
    dW, db, dX = np.empty_like(W), np.empty(W.shape[0], DTYPE), np.empty_like(X)
    conv = NativeConv(X, W, A)

    def backward():
        conv.backward(X, W, A, dA, None, dW, db, dX)

    warm_then_benchmark(benchmark, backward)
    for actual, expected in zip((dW, db, dX), numpy_conv_backward(X, W, A, dA), strict=True):
        assert_close(actual, expected)


@pytest.mark.benchmark(group="kernel: conv2d backward (relu, dW, db, dX)")
def test_numpy_conv2d_backward(benchmark, conv_case):
    X, W, _, A, dA = conv_case
    label(benchmark, "numpy", input=X.shape, filters=W.shape)
    warm_then_benchmark(benchmark, lambda: numpy_conv_backward(X, W, A, dA))


@pytest.mark.benchmark(group="kernel: conv2d backward (relu, dW, db, dX)")
def test_torch_conv2d_backward(benchmark, torch, conv_case):
    X, W, b, A, dA = conv_case
    label(benchmark, "torch", input=X.shape, filters=W.shape)
    x, weight, bias = (torch.from_numpy(a).requires_grad_() for a in (X, W, b))
    out = torch.relu(torch.nn.functional.conv2d(x, weight, bias))
    upstream = torch.from_numpy(dA)

    def backward():
        return torch.autograd.grad(out, (weight, bias, x), upstream, retain_graph=True)

    gradients = warm_then_benchmark(benchmark, backward)
    for actual, expected in zip(gradients, numpy_conv_backward(X, W, A, dA), strict=True):
        assert_close(actual, expected)


# ------------------------------------------------------------------ pooling
@pytest.fixture(scope="module")
def planes(sizes):
    """Activations of shape (B, C, H, W): the reference convolution's output."""
    return random(*sizes["planes"], seed=4)


def pooled_shape(planes):
    batch, channels, height, width = planes.shape
    return batch, channels, height // 2, width // 2


def numpy_windows_2x2(planes):
    """View (B, C, H/2, 2, W/2, 2) of the 2x2 windows of stride 2."""
    batch, channels, height, width = planes.shape
    return planes.reshape(batch, channels, height // 2, 2, width // 2, 2)


def numpy_max_pool(planes):
    return numpy_windows_2x2(planes).max(axis=(3, 5))


def numpy_avg_pool(planes):
    return numpy_windows_2x2(planes).mean(axis=(3, 5))


@pytest.mark.benchmark(group="kernel: max pool 2x2 forward (with argmax)")
def test_fastgd_maxpool_forward(benchmark, planes):
    from fastgd._kernels.network.pooling import maxpool2d_forward

    label(benchmark, "fastgd", input=planes.shape)
    out = np.empty(pooled_shape(planes), DTYPE)
    argmax = np.empty(out.shape, np.int64)  # the engine's index dtype
    warm_then_benchmark(benchmark, lambda: maxpool2d_forward(planes, 2, 2, 2, out, argmax))
    assert_close(out, numpy_max_pool(planes))


@pytest.mark.benchmark(group="kernel: max pool 2x2 forward (with argmax)")
def test_torch_maxpool_forward(benchmark, torch, planes):
    label(benchmark, "torch", input=planes.shape)
    x = torch.from_numpy(planes)

    def forward():
        with torch.no_grad():
            return torch.nn.functional.max_pool2d(x, 2, return_indices=True)

    out, _ = warm_then_benchmark(benchmark, forward)
    assert_close(out, numpy_max_pool(planes))


@pytest.mark.benchmark(group="kernel: max pool 2x2 backward")
def test_fastgd_maxpool_backward(benchmark, planes):
    from fastgd._kernels.network.pooling import maxpool2d_backward, maxpool2d_forward

    label(benchmark, "fastgd", input=planes.shape)
    out = np.empty(pooled_shape(planes), DTYPE)
    argmax = np.empty(out.shape, np.int64)
    maxpool2d_forward(planes, 2, 2, 2, out, argmax)
    upstream, dX = random(*out.shape, seed=5), np.empty_like(planes)
    warm_then_benchmark(benchmark, lambda: maxpool2d_backward(upstream, argmax, dX))
    # Every window's gradient lands on its maximum.
    assert_close(numpy_windows_2x2(dX).sum(axis=(3, 5)), upstream)
    routed_to = np.where(dX != 0, planes, -np.inf)
    assert_close(numpy_windows_2x2(routed_to).max(axis=(3, 5)), numpy_max_pool(planes))


@pytest.mark.benchmark(group="kernel: max pool 2x2 backward")
def test_torch_maxpool_backward(benchmark, torch, planes):
    label(benchmark, "torch", input=planes.shape)
    x = torch.from_numpy(planes).requires_grad_()
    out = torch.nn.functional.max_pool2d(x, 2)
    upstream = torch.from_numpy(random(*out.shape, seed=5))
    backward = lambda: torch.autograd.grad(out, x, upstream, retain_graph=True)  # noqa: E731
    (dX,) = warm_then_benchmark(benchmark, backward)
    assert_close(numpy_windows_2x2(dX.numpy()).sum(axis=(3, 5)), upstream)


@pytest.mark.benchmark(group="kernel: average pool 2x2 forward")
def test_fastgd_avgpool_forward(benchmark, planes):
    from fastgd._kernels.network.pooling import avgpool2d_forward

    label(benchmark, "fastgd", input=planes.shape)
    out = np.empty(pooled_shape(planes), DTYPE)
    warm_then_benchmark(benchmark, lambda: avgpool2d_forward(planes, 2, 2, 2, out))
    assert_close(out, numpy_avg_pool(planes))


@pytest.mark.benchmark(group="kernel: average pool 2x2 forward")
def test_numpy_avgpool_forward(benchmark, planes):
    label(benchmark, "numpy", input=planes.shape)
    out = warm_then_benchmark(benchmark, lambda: numpy_avg_pool(planes))
    assert out.shape == pooled_shape(planes)


@pytest.mark.benchmark(group="kernel: average pool 2x2 forward")
def test_torch_avgpool_forward(benchmark, torch, planes):
    label(benchmark, "torch", input=planes.shape)
    x = torch.from_numpy(planes)

    def forward():
        with torch.no_grad():
            return torch.nn.functional.avg_pool2d(x, 2)

    assert_close(warm_then_benchmark(benchmark, forward), numpy_avg_pool(planes))


@pytest.mark.benchmark(group="kernel: average pool 2x2 backward")
def test_fastgd_avgpool_backward(benchmark, planes):
    from fastgd._kernels.network.pooling import avgpool2d_backward

    label(benchmark, "fastgd", input=planes.shape)
    upstream, dX = random(*pooled_shape(planes), seed=5), np.empty_like(planes)
    warm_then_benchmark(benchmark, lambda: avgpool2d_backward(upstream, 2, 2, 2, dX))
    expected = np.repeat(np.repeat(upstream / 4, 2, axis=2), 2, axis=3)
    assert_close(dX, expected)


@pytest.mark.benchmark(group="kernel: average pool 2x2 backward")
def test_torch_avgpool_backward(benchmark, torch, planes):
    label(benchmark, "torch", input=planes.shape)
    x = torch.from_numpy(planes).requires_grad_()
    out = torch.nn.functional.avg_pool2d(x, 2)
    upstream = random(*out.shape, seed=5)
    upstream_t = torch.from_numpy(upstream)
    backward = lambda: torch.autograd.grad(out, x, upstream_t, retain_graph=True)  # noqa: E731
    (dX,) = warm_then_benchmark(benchmark, backward)
    assert_close(dX, np.repeat(np.repeat(upstream / 4, 2, axis=2), 2, axis=3))


# -------------------------------------------------------------- activations
NUMPY_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0, out=z),
    "tanh": lambda z: np.tanh(z, out=z),
    "sigmoid": lambda z: expit(z, out=z),
}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_fastgd_activation(benchmark, planes, activation):
    from fastgd._kernels.network.native import activation_forward

    benchmark.group = f"kernel: {activation} forward (copy, then in place)"
    label(benchmark, "fastgd", shape=planes.shape)
    code = codes.ACTIVATION_CODES[activation]
    buffer = np.empty_like(planes)

    def forward():
        np.copyto(buffer, planes)
        activation_forward(buffer.reshape(-1), code)

    warm_then_benchmark(benchmark, forward)
    assert_close(buffer, NUMPY_ACTIVATIONS[activation](planes.copy()))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_numpy_activation(benchmark, planes, activation):
    benchmark.group = f"kernel: {activation} forward (copy, then in place)"
    label(benchmark, "numpy", shape=planes.shape)
    buffer = np.empty_like(planes)

    def forward():
        np.copyto(buffer, planes)
        NUMPY_ACTIVATIONS[activation](buffer)

    warm_then_benchmark(benchmark, forward)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_torch_activation(benchmark, torch, planes, activation):
    benchmark.group = f"kernel: {activation} forward (copy, then in place)"
    label(benchmark, "torch", shape=planes.shape)
    in_place = {"relu": torch.relu_, "tanh": torch.tanh_, "sigmoid": torch.sigmoid_}[activation]
    source, buffer = torch.from_numpy(planes), torch.empty(planes.shape)

    def forward():
        buffer.copy_(source)
        in_place(buffer)

    warm_then_benchmark(benchmark, forward)
    assert_close(buffer, NUMPY_ACTIVATIONS[activation](planes.copy()))


# ------------------------------------------------------------ output losses
@pytest.fixture(scope="module")
def scores_case(sizes):
    """Scores (n, K) and the index of each sample's class."""
    n_samples, n_classes = sizes["scores"]
    y = np.random.default_rng(6).integers(0, n_classes, n_samples)  # int64, as the engine's
    return random(n_samples, n_classes, seed=7), y


def numpy_cross_entropy(scores, y):
    """Mean log-loss of the softmax and its gradient with respect to the scores."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))
    grad = exp / total
    grad[rows, y] -= 1
    grad /= len(y)
    return loss, grad


@pytest.mark.benchmark(group="kernel: softmax cross-entropy, loss and gradient")
def test_fastgd_cross_entropy(benchmark, scores_case):
    from fastgd._kernels.network.native import softmax_cross_entropy

    scores, y = scores_case
    label(benchmark, "fastgd", shape=scores.shape)
    proba, dscores = np.empty_like(scores), np.empty_like(scores)
    loss = warm_then_benchmark(
        benchmark, lambda: softmax_cross_entropy(scores, y, None, proba, dscores)
    )
    expected_loss, expected_grad = numpy_cross_entropy(scores, y)
    assert loss == pytest.approx(expected_loss, rel=RTOL)
    assert_close(dscores, expected_grad)


@pytest.mark.benchmark(group="kernel: softmax cross-entropy, loss and gradient")
def test_numpy_cross_entropy(benchmark, scores_case):
    scores, y = scores_case
    label(benchmark, "numpy", shape=scores.shape)
    warm_then_benchmark(benchmark, lambda: numpy_cross_entropy(scores, y))


@pytest.mark.benchmark(group="kernel: softmax cross-entropy, loss and gradient")
def test_torch_cross_entropy(benchmark, torch, scores_case):
    scores, y = scores_case
    label(benchmark, "torch", shape=scores.shape)
    s, target = torch.from_numpy(scores).requires_grad_(), torch.from_numpy(y)

    def loss_and_gradient():
        loss = torch.nn.functional.cross_entropy(s, target)
        return loss, torch.autograd.grad(loss, s)[0]

    loss, grad = warm_then_benchmark(benchmark, loss_and_gradient)
    expected_loss, expected_grad = numpy_cross_entropy(scores, y)
    assert float(loss.detach()) == pytest.approx(expected_loss, rel=RTOL)
    assert_close(grad, expected_grad)


@pytest.fixture(scope="module")
def masked_case(scores_case):
    """Predictions, targets with a quarter missing (mask 0), mask, task weights."""
    pred = scores_case[0]
    y = random(*pred.shape, seed=8)
    mask = (np.random.default_rng(9).random(pred.shape) >= 0.25).astype(DTYPE)
    task_weights = np.linspace(0.5, 2.0, pred.shape[1]).astype(DTYPE)
    return pred, y, mask, task_weights


def numpy_masked_loss(pred, y, mask, task_weights):
    """Σ_t λ_t · (½ Σ_i m_it r_it² / n_t) and its gradient, r = pred − y, n_t labelled samples."""
    residual = (pred - y) * mask
    scale = task_weights / np.maximum(mask.sum(axis=0), 1)
    return float(0.5 * ((residual * residual).sum(axis=0) * scale).sum()), residual * scale


@pytest.mark.benchmark(group="kernel: masked multi-task squared error, loss and gradient")
def test_fastgd_masked_loss(benchmark, masked_case):
    from fastgd._kernels.network.native import masked_regression_loss

    pred, y, mask, task_weights = masked_case
    label(benchmark, "fastgd", shape=pred.shape)
    dpred, task_losses = np.empty_like(pred), np.zeros(pred.shape[1])

    def loss():
        return masked_regression_loss(pred, y, mask, task_weights, False, 1.0, dpred, task_losses)

    total = warm_then_benchmark(benchmark, loss)
    expected_total, expected_grad = numpy_masked_loss(pred, y, mask, task_weights)
    assert total == pytest.approx(expected_total, rel=RTOL)
    assert_close(dpred, expected_grad)


@pytest.mark.benchmark(group="kernel: masked multi-task squared error, loss and gradient")
def test_numpy_masked_loss(benchmark, masked_case):
    label(benchmark, "numpy", shape=masked_case[0].shape)
    warm_then_benchmark(benchmark, lambda: numpy_masked_loss(*masked_case))


# --------------------------------------------------------------- optimizers
@pytest.fixture(scope="module")
def flat_buffers(sizes):
    """Parameters and gradient of a network, as flat float32 buffers."""
    n_params = sizes["params"]
    return random(n_params, seed=10), random(n_params, seed=11, scale=0.1)


class NumpyOptimizer:
    """The optimizers of :mod:`fastgd._kernels.common.optimizers`, as in-place NumPy operations."""

    def __init__(self, name, params):
        self.name, self.t = name, 0
        self.s1, self.s2, self.tmp = (np.zeros_like(params) for _ in range(3))

    def step(self, params, grads):
        s1, s2, tmp = self.s1, self.s2, self.tmp
        self.t += 1
        if self.name == "sgd":
            np.multiply(grads, LEARNING_RATE, out=tmp)
            params -= tmp
        elif self.name in ("momentum", "nesterov"):
            s1 *= MOMENTUM
            np.multiply(grads, LEARNING_RATE, out=tmp)
            s1 -= tmp
            if self.name == "nesterov":  # w ← w + μ·v − lr·g
                params -= tmp
                np.multiply(s1, MOMENTUM, out=tmp)
            params += s1 if self.name == "momentum" else tmp
        elif self.name in ("adagrad", "rmsprop"):
            np.multiply(grads, grads, out=tmp)
            if self.name == "rmsprop":
                s2 *= BETA_2
                tmp *= 1 - BETA_2
            s2 += tmp
            np.sqrt(s2, out=tmp)
            tmp += EPS
            np.divide(grads, tmp, out=tmp)
            tmp *= LEARNING_RATE
            params -= tmp
        else:  # adam
            s1 *= BETA_1
            s1 += (1 - BETA_1) * grads
            s2 *= BETA_2
            np.multiply(grads, grads, out=tmp)
            tmp *= 1 - BETA_2
            s2 += tmp
            np.multiply(s2, 1 / (1 - BETA_2**self.t), out=tmp)
            np.sqrt(tmp, out=tmp)
            tmp += EPS
            np.divide(s1, tmp, out=tmp)
            tmp *= LEARNING_RATE / (1 - BETA_1**self.t)
            params -= tmp


def torch_optimizer(torch, name, parameter):
    optim = torch.optim
    if name in ("sgd", "momentum", "nesterov"):
        momentum = 0.0 if name == "sgd" else MOMENTUM
        return optim.SGD(
            [parameter], lr=LEARNING_RATE, momentum=momentum, nesterov=name == "nesterov"
        )
    if name == "adagrad":
        return optim.Adagrad([parameter], lr=LEARNING_RATE, eps=EPS)
    if name == "rmsprop":
        return optim.RMSprop([parameter], lr=LEARNING_RATE, alpha=BETA_2, eps=EPS)
    return optim.Adam([parameter], lr=LEARNING_RATE, betas=(BETA_1, BETA_2), eps=EPS)


CHECKED_STEPS = 3


def assert_same_steps(name, params, grads, after):
    """``after`` is ``params`` after CHECKED_STEPS steps along ``grads``, as NumPy takes them.

    Compares the changes of the parameters, to the rounding of float32
    parameters (the libraries round their updates differently).
    """
    expected, optimizer = params.copy(), NumpyOptimizer(name, params)
    for _ in range(CHECKED_STEPS):
        optimizer.step(expected, grads)
    rounding = 8 * np.finfo(DTYPE).eps * float(np.abs(params).max())
    np.testing.assert_allclose(after - params, expected - params, rtol=RTOL, atol=rounding)


def fastgd_optimizer(name, params, grads):
    """One :func:`~fastgd._kernels.common.optimizers.optimizer_step`, called as the trainer does."""
    from fastgd._kernels.common.optimizers import optimizer_step

    code = codes.OPTIMIZER_CODES[name]
    state_1, state_2 = np.zeros_like(params), np.zeros_like(params)
    step_count = [0]

    def step():
        step_count[0] += 1
        optimizer_step(
            params,
            grads,
            state_1,
            state_2,
            LEARNING_RATE,
            step_count[0],
            code,
            MOMENTUM,
            BETA_1,
            BETA_2,
            EPS,
        )

    return step


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fastgd_optimizer_step(benchmark, flat_buffers, name):
    benchmark.group = f"kernel: optimizer step, {name}"
    params, grads = flat_buffers
    label(benchmark, "fastgd", n_params=params.size)
    checked = params.copy()
    step = fastgd_optimizer(name, checked, grads)
    for _ in range(CHECKED_STEPS):
        step()
    assert_same_steps(name, params, grads, checked)
    warm_then_benchmark(benchmark, fastgd_optimizer(name, params.copy(), grads))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_numpy_optimizer_step(benchmark, flat_buffers, name):
    benchmark.group = f"kernel: optimizer step, {name}"
    params, grads = flat_buffers
    label(benchmark, "numpy", n_params=params.size)
    working, optimizer = params.copy(), NumpyOptimizer(name, params)
    warm_then_benchmark(benchmark, lambda: optimizer.step(working, grads))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_torch_optimizer_step(benchmark, torch, flat_buffers, name):
    benchmark.group = f"kernel: optimizer step, {name}"
    params, grads = flat_buffers
    label(benchmark, "torch", n_params=params.size)

    def make(values):
        parameter = torch.nn.Parameter(torch.from_numpy(values.copy()))
        parameter.grad = torch.from_numpy(grads)
        return parameter, torch_optimizer(torch, name, parameter)

    checked, optimizer = make(params)
    for _ in range(CHECKED_STEPS):
        optimizer.step()
    assert_same_steps(name, params, grads, checked.detach().numpy())
    _, optimizer = make(params)
    warm_then_benchmark(benchmark, optimizer.step)
