"""Neural-network kernels against their plain-NumPy twins (tests/naive_nn.py).

Every kernel is compared with its twin over several random shapes and both
dtypes, every backward pass is checked by central finite differences on a
small float64 case, and the kernels are checked to be deterministic (same
call twice, and 1 thread vs all threads, give bit-identical results).
"""

import naive_nn as naive
import numpy as np
import pytest

from fastgd._kernels.network.activations import (
    activation_backward,
    activation_forward,
    bias_activation_forward,
)
from fastgd._kernels.network.dense import dense_backward, dense_forward
from fastgd._kernels.network.dropout import dropout_backward, dropout_forward
from fastgd._kernels.network.native import (
    log_softmax,
    masked_regression_loss,
    softmax,
    softmax_cross_entropy,
)
from fastgd._kernels.network.pooling import (
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
    pool2d_output_shape,
)
from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.numba_setup import numba

DTYPES = [np.float32, np.float64]
ACTS = [codes.IDENTITY, codes.RELU, codes.TANH, codes.SIGMOID]


def assert_close(actual, desired, dtype):
    """Relative tolerance ~1e-5 (float32) / 1e-10 (float64), scaled by the
    largest reference value for entries near zero."""
    actual = np.asarray(actual)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape
    tol = 1e-5 if dtype == np.float32 else 1e-10
    scale = max(1.0, float(np.max(np.abs(desired)))) if desired.size else 1.0
    np.testing.assert_allclose(actual, desired, rtol=tol, atol=tol * scale)


def numerical_grad(f, x, eps=1e-6):
    """Central finite differences of the scalar f() with respect to array x
    (x is perturbed in place and restored)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        fp = f()
        flat[k] = old - eps
        fm = f()
        flat[k] = old
        gflat[k] = (fp - fm) / (2 * eps)
    return g


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --------------------------------------------------------------------------
# codes
# --------------------------------------------------------------------------
def test_activation_codes():
    assert codes.ACTIVATION_CODES == {"identity": 0, "relu": 1, "tanh": 2, "sigmoid": 3}
    assert (naive.IDENTITY, naive.RELU, naive.TANH, naive.SIGMOID) == (0, 1, 2, 3)


# --------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", ACTS)
def test_activations_match_twin(rng, dtype, code):
    for shape in [(1, 1), (7, 5), (3, 40000)]:  # last one spans several chunks
        Z = (3 * rng.standard_normal(shape)).astype(dtype)
        A = Z.copy()
        activation_forward(A, code)
        assert A.dtype == dtype
        assert_close(A, naive.activation(Z.astype(np.float64), code), dtype)

        G = rng.standard_normal(shape).astype(dtype)
        dA = G.copy()
        activation_backward(A, dA, code)
        assert dA.dtype == dtype
        ref = G.astype(np.float64) * naive.activation_grad_from_output(A.astype(np.float64), code)
        assert_close(dA, ref, dtype)

        b = rng.standard_normal(shape[1]).astype(dtype)
        Zb = Z.copy()
        bias_activation_forward(Zb, b, code)
        ref = naive.activation(Z.astype(np.float64) + b, code)
        assert_close(Zb, ref, dtype)


def test_activation_forward_any_ndim(rng):
    Z = rng.standard_normal((2, 3, 4, 5))
    A = Z.copy()
    activation_forward(A, codes.TANH)
    assert_close(A, np.tanh(Z), np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_stable_for_large_inputs(dtype):
    z = np.array([[-1e4, -800.0, -100.0, -30.0, 0.0, 30.0, 100.0, 800.0, 1e4]], dtype)
    a = z.copy()
    with np.errstate(all="raise"):
        activation_forward(a, codes.SIGMOID)
    assert np.all(np.isfinite(a))
    assert a[0, 0] == 0.0 and a[0, -1] == 1.0 and a[0, 4] == 0.5
    assert np.all(np.diff(a[0]) >= 0)
    assert 0 < a[0, 3] < 1e-12  # sigmoid(-30) ≈ 9.4e-14 is not flushed to 0
    d = np.ones_like(a)
    activation_backward(a, d, codes.SIGMOID)
    assert np.all(np.isfinite(d)) and d[0, 0] == 0.0 and d[0, 4] == 0.25


def test_relu_propagates_nan():
    a = np.array([[np.nan, -1.0, 2.0]])
    activation_forward(a, codes.RELU)
    assert np.isnan(a[0, 0]) and a[0, 1] == 0.0 and a[0, 2] == 2.0


def test_activation_finite_differences(rng):
    z = rng.standard_normal((3, 4))
    z[np.abs(z) < 0.05] = 0.5  # keep away from relu's kink
    G = rng.standard_normal((3, 4))
    for code in ACTS:

        def f(code=code):
            a = z.copy()
            activation_forward(a, code)
            return float((a * G).sum())

        a = z.copy()
        activation_forward(a, code)
        dA = G.copy()
        activation_backward(a, dA, code)
        np.testing.assert_allclose(dA, numerical_grad(f, z), rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------
# dense
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", ACTS)
def test_dense_matches_twin(rng, dtype, code):
    for B, n_in, n_out in [(1, 3, 2), (17, 8, 5), (64, 33, 20)]:
        X = rng.standard_normal((B, n_in)).astype(dtype)
        W = rng.standard_normal((n_in, n_out)).astype(dtype)
        b = rng.standard_normal(n_out).astype(dtype)
        out = np.empty((B, n_out), dtype)
        dense_forward(X, W, b, out, code)
        X64, W64, b64 = (a.astype(np.float64) for a in (X, W, b))
        assert_close(out, naive.dense_forward(X64, W64, b64, code), dtype)

        G = rng.standard_normal((B, n_out)).astype(dtype)
        dA = G.copy()
        dW, db, dX = np.empty_like(W), np.empty_like(b), np.empty_like(X)
        dense_backward(X, W, out, dA, code, dW, db, dX)
        rW, rb, rX = naive.dense_backward(X64, W64, out.astype(np.float64), G, code)
        for got, ref in [(dW, rW), (db, rb), (dX, rX)]:
            assert got.dtype == dtype
            assert_close(got, ref, dtype)

        # First layer: no input gradient (None, or compute_dx=False).
        dW2, db2 = np.empty_like(W), np.empty_like(b)
        dense_backward(X, W, out, G.copy(), code, dW2, db2, None)
        np.testing.assert_array_equal(dW2, dW)
        np.testing.assert_array_equal(db2, db)
        dX2 = np.full_like(X, 7.0)
        dense_backward(X, W, out, G.copy(), code, dW2, db2, dX2, False)
        assert np.all(dX2 == 7.0)


@pytest.mark.parametrize("code", ACTS)
def test_dense_finite_differences(rng, code):
    X = rng.standard_normal((4, 3))
    W = rng.standard_normal((3, 5))
    b = rng.standard_normal(5)
    G = rng.standard_normal((4, 5))
    out = np.empty((4, 5))

    def f():
        dense_forward(X, W, b, out, code)
        return float((out * G).sum())

    f()
    dA = G.copy()
    dW, db, dX = np.empty_like(W), np.empty_like(b), np.empty_like(X)
    dense_backward(X, W, out.copy(), dA, code, dW, db, dX)
    for got, x in [(dW, W), (db, b), (dX, X)]:
        np.testing.assert_allclose(got, numerical_grad(f, x), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------
# conv2d: the cases of the native kernels' tests (tests/test_native_nn_kernels.py)
# --------------------------------------------------------------------------
# (B, C, H, W, F, KH, KW, stride, padding)
CONV_CASES = [
    (1, 1, 5, 5, 1, 3, 3, 1, "valid"),
    (2, 3, 8, 7, 4, 3, 3, 1, "same"),
    (3, 2, 9, 8, 3, 2, 4, 1, "same"),  # even kernel: asymmetric padding
    (2, 3, 9, 10, 5, 3, 3, 2, "same"),
    (2, 2, 11, 9, 3, 3, 2, 2, "valid"),  # stride leaves rows/cols unused
    (2, 4, 6, 6, 3, 1, 1, 1, "valid"),  # 1x1 kernel
    (1, 2, 6, 5, 2, 1, 1, 2, "valid"),
    (2, 2, 7, 7, 3, 5, 3, 2, (2, 1)),  # explicit symmetric padding
]


def _conv_setup(rng, case, dtype):
    B, C, H, W, F, KH, KW, stride, padding = case
    pt, pb, pl, pr = naive.conv2d_padding(padding, KH, KW, stride, H, W)
    OH, OW = naive.conv2d_output_shape(H, W, KH, KW, stride, pt + pb, pl + pr)
    X = rng.standard_normal((B, C, H, W)).astype(dtype)
    Wt = (rng.standard_normal((F, C, KH, KW)) / np.sqrt(C * KH * KW)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    return X, Wt, b, stride, pt, pl, OH, OW


def test_conv2d_shapes_and_padding():
    """The geometry the conv cases (and the native kernels' tests) are built with."""
    assert naive.conv2d_padding("same", 3, 3) == (1, 1, 1, 1)
    assert naive.conv2d_padding("same", 4, 2) == (1, 2, 0, 1)
    assert naive.conv2d_padding("valid", 5, 5) == (0, 0, 0, 0)
    assert naive.conv2d_padding(2, 5, 5) == (2, 2, 2, 2)
    # TensorFlow's rule with stride 2: 9 -> 5 rows needs 2 (3x3) padding rows;
    # 10 -> 5 columns needs 1, which goes to the right.
    assert naive.conv2d_padding("same", 3, 3, 2, 9, 10) == (1, 1, 0, 1)
    with pytest.raises(ValueError):
        naive.conv2d_padding("same", 3, 3, 2)
    assert naive.conv2d_output_shape(32, 32, 3, 3, 1, 2, 2) == (32, 32)
    assert naive.conv2d_output_shape(9, 10, 3, 3, 2, 2, 2) == (5, 5)
    assert naive.conv2d_output_shape(11, 9, 3, 2, 2, 0, 0) == (5, 4)
    with pytest.raises(ValueError):
        naive.conv2d_output_shape(2, 2, 3, 3, 1, 0, 0)
    with pytest.raises(ValueError):
        naive.conv2d_padding("full", 3, 3)


# --------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------
# (B, C, H, W, pool_h, pool_w, stride)
POOL_CASES = [
    (1, 1, 4, 4, 2, 2, 2),
    (2, 3, 7, 6, 2, 2, 2),  # odd size: last row unused
    (2, 2, 7, 7, 3, 3, 2),  # overlapping windows
    (3, 2, 6, 9, 2, 3, 1),  # non-square, stride 1
]


@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling_matches_twin(rng, dtype):
    for B, C, H, W, ph, pw, s in POOL_CASES:
        X = rng.standard_normal((B, C, H, W)).astype(dtype)
        OH, OW = pool2d_output_shape(H, W, ph, pw, s)
        out = np.empty((B, C, OH, OW), dtype)
        arg = np.empty((B, C, OH, OW), np.int64)
        maxpool2d_forward(X, ph, pw, s, out, arg)
        r_out, r_arg = naive.maxpool2d_forward(X, ph, pw, s)
        np.testing.assert_array_equal(out, r_out)
        np.testing.assert_array_equal(arg, r_arg)
        G = rng.standard_normal(out.shape).astype(dtype)
        dX = np.full_like(X, np.nan)  # must be zeroed by the kernel
        maxpool2d_backward(G, arg, dX)
        assert dX.dtype == dtype
        assert_close(dX, naive.maxpool2d_backward(G.astype(np.float64), r_arg, H, W), dtype)

        aout = np.empty((B, C, OH, OW), dtype)
        avgpool2d_forward(X, ph, pw, s, aout)
        assert_close(aout, naive.avgpool2d_forward(X.astype(np.float64), ph, pw, s), dtype)
        dX = np.full_like(X, np.nan)
        avgpool2d_backward(G, ph, pw, s, dX)
        assert dX.dtype == dtype
        ref = naive.avgpool2d_backward(G.astype(np.float64), ph, pw, s, H, W)
        assert_close(dX, ref, dtype)


def test_maxpool_int32_argmax_and_ties():
    X = np.zeros((1, 1, 4, 4))
    X[0, 0, 1, 1] = X[0, 0, 1, 0] = 5.0
    out = np.empty((1, 1, 2, 2))
    arg = np.empty((1, 1, 2, 2), np.int32)
    maxpool2d_forward(X, 2, 2, 2, out, arg)
    assert arg[0, 0, 0, 0] == 4  # first maximum in row-major order: (1, 0)
    assert arg[0, 0, 0, 1] == 2 and out[0, 0, 0, 0] == 5.0
    X[0, 0, 3, 2] = np.nan  # a NaN is not hidden by the max
    maxpool2d_forward(X, 2, 2, 2, out, arg)
    assert np.isnan(out[0, 0, 1, 1]) and arg[0, 0, 1, 1] == 14
    assert out[0, 0, 0, 0] == 5.0


@pytest.mark.parametrize("case", POOL_CASES[1:])
def test_pooling_finite_differences(rng, case):
    B, C, H, W, ph, pw, s = case
    X = rng.permutation(B * C * H * W).reshape(B, C, H, W) / 10.0  # distinct
    OH, OW = pool2d_output_shape(H, W, ph, pw, s)
    G = rng.standard_normal((B, C, OH, OW))
    out = np.empty((B, C, OH, OW))
    arg = np.empty(out.shape, np.int64)

    def fmax():
        maxpool2d_forward(X, ph, pw, s, out, arg)
        return float((out * G).sum())

    def favg():
        avgpool2d_forward(X, ph, pw, s, out)
        return float((out * G).sum())

    fmax()
    dX = np.empty_like(X)
    maxpool2d_backward(G, arg, dX)
    np.testing.assert_allclose(dX, numerical_grad(fmax, X, eps=1e-4), atol=1e-8)
    avgpool2d_backward(G, ph, pw, s, dX)
    np.testing.assert_allclose(dX, numerical_grad(favg, X, eps=1e-4), rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------
# dropout
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.75, 1.0])
def test_dropout_matches_twin(rng, dtype, rate):
    X = rng.standard_normal((5, 3, 4, 4)).astype(dtype)
    mask = np.random.RandomState(0).random_sample(X.shape)  # float64 uniforms
    out = np.empty_like(X)
    dropout_forward(X, mask, rate, out)
    assert out.dtype == dtype
    assert_close(out, naive.dropout(X.astype(np.float64), mask, rate), dtype)
    if rate == 0.0:
        np.testing.assert_array_equal(out, X)
    G = rng.standard_normal(X.shape).astype(dtype)
    dX = np.empty_like(G)
    dropout_backward(G, mask, rate, dX)
    assert_close(dX, naive.dropout(G.astype(np.float64), mask, rate), dtype)
    # Backward is the same linear map as forward: ⟨dropout(X), G⟩ = ⟨X, dX⟩.
    np.testing.assert_allclose(
        (out.astype(np.float64) * G).sum(), (X.astype(np.float64) * dX).sum(), rtol=1e-4, atol=1e-4
    )


# --------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy_matches_twin(rng, dtype, weighted):
    for B, K in [(1, 2), (13, 4), (50, 10)]:
        S = (3 * rng.standard_normal((B, K))).astype(dtype)
        y = rng.integers(0, K, B)
        w = rng.uniform(0.1, 3, B).astype(dtype) if weighted else None
        proba, dS = np.empty_like(S), np.empty_like(S)
        loss = softmax_cross_entropy(S, y, w, proba, dS)
        assert isinstance(loss, float)
        r_loss, r_p, r_g = naive.softmax_cross_entropy(S.astype(np.float64), y, w)
        np.testing.assert_allclose(loss, r_loss, rtol=1e-5 if dtype == np.float32 else 1e-10)
        assert proba.dtype == dtype and dS.dtype == dtype
        assert_close(proba, r_p, dtype)
        assert_close(dS, r_g, dtype)


def test_softmax_cross_entropy_finite_differences(rng):
    S = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 6)
    w = rng.uniform(0.5, 2, 6)
    proba, dS = np.empty_like(S), np.empty_like(S)

    def f():
        return softmax_cross_entropy(S, y, w, np.empty_like(S), np.empty_like(S))

    softmax_cross_entropy(S, y, w, proba, dS)
    np.testing.assert_allclose(dS, numerical_grad(f, S), rtol=1e-6, atol=1e-9)


def test_softmax_stable_for_large_scores():
    S = np.array([[1e4, 0.0, -1e4], [800.0, 799.0, 0.0], [-1e4, -1e4, -1e4]])
    y = np.array([2, 1, 0])
    proba, dS, lp = np.empty_like(S), np.empty_like(S), np.empty_like(S)
    with np.errstate(all="raise"):
        loss = softmax_cross_entropy(S, y, None, proba, dS)
        log_softmax(S, lp)
    assert np.isfinite(loss) and np.all(np.isfinite(proba)) and np.all(np.isfinite(dS))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    # −log p of the true classes: 2e4, 1 + log(1 + e^{-1}), log 3
    expected = (2e4 + 1 + np.log1p(np.exp(-1)) + np.log(3)) / 3
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    np.testing.assert_allclose(lp[0], [0.0, -1e4, -2e4])
    S32 = S.astype(np.float32)
    p32 = np.empty_like(S32)
    softmax(S32, p32)
    assert p32.dtype == np.float32 and np.all(np.isfinite(p32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_log_softmax_match_twin(rng, dtype):
    S = (5 * rng.standard_normal((20, 7))).astype(dtype)
    p, lp = np.empty_like(S), np.empty_like(S)
    softmax(S, p)
    log_softmax(S, lp)
    assert p.dtype == dtype and lp.dtype == dtype
    assert_close(p, naive.softmax(S), dtype)
    assert_close(lp, naive.log_softmax(S), dtype)
    S2 = S.copy()
    softmax(S2, S2)  # in place is allowed
    np.testing.assert_array_equal(S2, p)


def _masked_data(rng, B, T, dtype):
    pred = (2 * rng.standard_normal((B, T))).astype(dtype)
    y = (2 * rng.standard_normal((B, T))).astype(dtype)
    mask = (rng.random((B, T)) > 0.3).astype(dtype)
    mask[:, 0] = 0.0  # one task with no label at all
    y[mask == 0] = np.nan
    lam = rng.uniform(0.5, 2, T).astype(dtype)
    return pred, y, mask, lam


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss_code", [codes.SQUARED_ERROR, codes.HUBER])
def test_masked_regression_loss_matches_twin(rng, dtype, loss_code):
    for B, T in [(1, 1), (9, 3), (40, 5)]:
        pred, y, mask, lam = _masked_data(rng, B, T, dtype)
        dpred = np.full_like(pred, np.nan)
        task_losses = np.empty(T)
        huber = loss_code == codes.HUBER
        total = masked_regression_loss(pred, y, mask, lam, huber, 1.0, dpred, task_losses)
        assert isinstance(total, float) and np.isfinite(total)
        r_total, r_task, r_grad = naive.masked_regression_loss(pred, y, mask, lam, loss_code, 1.0)
        np.testing.assert_allclose(total, r_total, rtol=1e-5 if dtype == np.float32 else 1e-10)
        assert dpred.dtype == dtype
        assert_close(task_losses, r_task, dtype)
        assert_close(dpred, r_grad, dtype)
        # Missing labels: exactly zero gradient, and no NaN leaks anywhere.
        assert np.all(dpred[mask == 0] == 0.0)
        assert np.all(np.isfinite(dpred)) and np.all(np.isfinite(task_losses))
        assert task_losses[0] == 0.0


@pytest.mark.parametrize("loss_code", [codes.SQUARED_ERROR, codes.HUBER])
def test_masked_regression_loss_finite_differences(rng, loss_code):
    pred, y, mask, lam = _masked_data(rng, 8, 3, np.float64)
    dpred = np.empty_like(pred)
    tl = np.empty(3)

    huber = loss_code == codes.HUBER

    def f():
        return masked_regression_loss(pred, y, mask, lam, huber, 0.7, np.empty_like(pred), tl)

    masked_regression_loss(pred, y, mask, lam, huber, 0.7, dpred, tl)
    np.testing.assert_allclose(dpred, numerical_grad(f, pred), rtol=1e-6, atol=1e-9)


def test_masked_loss_ignores_values_under_missing_labels(rng):
    pred, y, mask, lam = _masked_data(rng, 10, 3, np.float64)
    d1, d2 = np.empty_like(pred), np.empty_like(pred)
    t1, t2 = np.empty(3), np.empty(3)
    l1 = masked_regression_loss(pred, y, mask, lam, True, 1.0, d1, t1)
    y2 = y.copy()
    y2[mask == 0] = 1e300  # anything there must not matter
    l2 = masked_regression_loss(pred, y2, mask, lam, True, 1.0, d2, t2)
    assert l1 == l2
    np.testing.assert_array_equal(d1, d2)
    np.testing.assert_array_equal(t1, t2)


# --------------------------------------------------------------------------
# determinism and dtype of the other kernels
# --------------------------------------------------------------------------
def test_kernels_bit_identical_on_repeat_and_thread_count(rng):
    X = rng.standard_normal((6, 4, 8, 8)).astype(np.float32)
    G = rng.standard_normal((6, 4, 4, 4)).astype(np.float32)
    Xd = rng.standard_normal((40, 12)).astype(np.float32)
    Wd = rng.standard_normal((12, 6)).astype(np.float32)
    bd = rng.standard_normal(6).astype(np.float32)
    Gd = rng.standard_normal((40, 6)).astype(np.float32)

    def run():
        out = np.empty((6, 4, 4, 4), np.float32)
        arg = np.empty(out.shape, np.int64)
        maxpool2d_forward(X, 2, 2, 2, out, arg)
        dX = np.empty_like(X)
        maxpool2d_backward(G, arg, dX)
        aout = np.empty_like(out)
        avgpool2d_forward(X, 3, 3, 1 + 1, aout[:, :, :3, :3].copy())
        o = np.empty((40, 6), np.float32)
        dense_forward(Xd, Wd, bd, o, codes.TANH)
        dW, db, dXd = np.empty_like(Wd), np.empty_like(bd), np.empty_like(Xd)
        dense_backward(Xd, Wd, o, Gd.copy(), codes.TANH, dW, db, dXd)
        for arr in (out, dX, o, dW, db, dXd):
            assert arr.dtype == np.float32
        return out, dX, o, dW, db, dXd

    first = run()
    n_threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = run()
    finally:
        numba.set_num_threads(n_threads)
    for again in (run(), single):
        for a, c in zip(first, again, strict=True):
            np.testing.assert_array_equal(a, c)


# --------------------------------------------------------------------------
# Optimizer update without L1: the linear engine's (Numba) and the network
# trainer's (ahead of time, the same bits).
def _optimizer_steps():
    from fastgd._kernels.common.optimizers import optimizer_step as numba_step
    from fastgd._kernels.network.native import optimizer_step as native_step

    return {"numba": numba_step, "native": native_step}


@pytest.mark.parametrize("implementation", ["numba", "native"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", list(codes.OPTIMIZER_CODES.values()))
def test_optimizer_step_without_l1_matches_naive(optimizer, dtype, implementation):
    from naive_linear import NaiveOptimizer

    optimizer_step = _optimizer_steps()[implementation]
    rng = np.random.RandomState(optimizer)
    n = 1003  # not a multiple of any vector width
    params = rng.randn(n).astype(dtype)
    s1, s2 = np.zeros(n, dtype), np.zeros(n, dtype)
    ref = NaiveOptimizer(optimizer, n, momentum=0.8, beta_1=0.85, beta_2=0.99, eps=1e-7)
    expected = params.astype(np.float64)
    # float32: a few ulps per step, compounded over the steps
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-14)
    for step in range(1, 8):
        g = rng.randn(n).astype(dtype)
        lr = 0.05 / step
        optimizer_step(params, g, s1, s2, lr, step, optimizer, 0.8, 0.85, 0.99, 1e-7)
        assert params.dtype == s1.dtype == s2.dtype == dtype
        expected, _ = ref.update(expected, g.astype(np.float64), lr)
        np.testing.assert_allclose(params, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_native_optimizer_step_is_the_numba_step_bit_for_bit(dtype):
    """The network trainer's update gives the linear engine's bits (and so those of the
    row-sparse steps of a sparse first layer, checked against the dense fits)."""
    steps = _optimizer_steps()
    rng = np.random.RandomState(1)
    n = 517
    for optimizer in codes.OPTIMIZER_CODES.values():
        start = [rng.randn(n).astype(dtype), rng.rand(n).astype(dtype), rng.rand(n).astype(dtype)]
        runs = {}
        for name, step in steps.items():
            params, s1, s2 = (a.copy() for a in start)
            grads = np.random.RandomState(2)
            for t in (1, 2, 3, 50, 70000):  # past 2**16 Numba takes math.pow
                g = grads.randn(n).astype(dtype)
                step(params, g, s1, s2, 0.01, t, optimizer, 0.9, 0.8, 0.999, 1e-8)
            runs[name] = (params, s1, s2)
        for a, b in zip(runs["numba"], runs["native"], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=str(optimizer))


def test_native_optimizer_codes_and_bad_input():
    from fastgd._kernels.network import native

    assert native.kernels.optimizer_codes() == (codes.RMSPROP, codes.ADAM)
    p = np.zeros(4)
    with pytest.raises(ValueError, match="differ in size"):
        native.optimizer_step(p, np.zeros(3), p.copy(), p.copy(), 0.1, 1, codes.SGD, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="unknown optimizer"):
        native.optimizer_step(p, p.copy(), p.copy(), p.copy(), 0.1, 1, 17, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="counts from 1"):
        native.optimizer_step(p, p.copy(), p.copy(), p.copy(), 0.1, 0, codes.ADAM, 0, 0, 0, 0)


def test_native_losses_reject_bad_input(rng):
    S = rng.standard_normal((5, 3))
    proba, dS = np.empty_like(S), np.empty_like(S)
    with pytest.raises(ValueError, match="out of range"):
        softmax_cross_entropy(S, np.array([0, 1, 3, 0, 0]), None, proba, dS)
    with pytest.raises(ValueError, match="shapes disagree"):
        softmax_cross_entropy(S, np.zeros(4, np.int64), None, proba, dS)
    with pytest.raises(ValueError, match="sample_weight"):
        softmax_cross_entropy(S, np.zeros(5, np.int64), np.ones(4), proba, dS)
    with pytest.raises(ValueError, match="wrong shape"):
        softmax(S, np.empty((5, 2)))
    with pytest.raises(ValueError, match="shapes differ"):
        masked_regression_loss(S, S, S[:4], np.ones(3), False, 1.0, dS, np.empty(3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_rows_independent_of_threads(rng, dtype):
    S = (4 * rng.standard_normal((301, 7))).astype(dtype)
    results = []
    for function in (softmax, log_softmax):
        for threads in (1, 2, 3):
            out = np.empty_like(S)
            function(S, out, threads)
            results.append(out)
        part = np.empty((9, 7), dtype)
        function(S[100:109].copy(), part, 1)
        np.testing.assert_array_equal(part, results[-1][100:109])
    for a, b in ((0, 1), (0, 2), (3, 4), (3, 5)):
        np.testing.assert_array_equal(results[a], results[b])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [(2, 2, 2), (3, 3, 2), (2, 2, 1), (2, 3, 3)])
def test_maxpool_ties_and_nans_match_twin(rng, dtype, case):
    # Few distinct values (many ties), some NaNs, -0.0 next to 0.0: the
    # unrolled 2x2/stride-2 path and the general scan both keep the first
    # maximum in row-major order and the first NaN of a window.
    ph, pw, s = case
    X = rng.integers(-2, 3, size=(3, 4, 9, 11)).astype(dtype)
    X[rng.random(X.shape) < 0.03] = np.nan
    X[X == 0] = np.where(rng.random(int((X == 0).sum())) < 0.5, -0.0, 0.0)
    OH, OW = pool2d_output_shape(9, 11, ph, pw, s)
    out = np.empty((3, 4, OH, OW), dtype)
    arg = np.empty(out.shape, np.int64)
    maxpool2d_forward(X, ph, pw, s, out, arg)
    r_out, r_arg = naive.maxpool2d_forward(X, ph, pw, s)
    np.testing.assert_array_equal(arg, r_arg)
    np.testing.assert_array_equal(out, r_out)
    assert np.isnan(out).any()
