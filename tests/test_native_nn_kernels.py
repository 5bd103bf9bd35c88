"""The ahead-of-time (Cython) network kernels against their NumPy twins (tests/naive_nn.py).

Direct convolution, fused convolution → activation → max pooling and their
backward passes are compared with the twins over many shapes (strides,
asymmetric padding, filter counts that do not fill a register tile, widths
that do not fill a vector) in both dtypes, with the unfused layers (bit for
bit where they share code), by central finite differences, and for
independence from the thread count and from the rest of the batch.
tanh and the logistic function are checked against NumPy over the whole
float32 range, tanh for every float32 where its error peaks.
"""

import naive_nn as naive
import numpy as np
import pytest
from test_nn_kernels import CONV_CASES, _conv_setup, assert_close, numerical_grad

from fastgd._kernels.network import native
from fastgd._kernels.network.pooling import maxpool2d_forward
from fastgd._kernels.runtime import codes

DTYPES = [np.float32, np.float64]
ACTS = [codes.IDENTITY, codes.RELU, codes.TANH, codes.SIGMOID]
# More shapes: filters past a register tile (8), wide rows, 3 input channels.
EXTRA_CASES = [
    (3, 3, 12, 37, 13, 3, 3, 1, "valid"),
    (2, 3, 10, 10, 9, 3, 3, 1, "same"),
    (2, 5, 9, 9, 17, 2, 2, 1, "valid"),
    # 3-wide patch rows that fill the padded row (C·KH·KW = 48), and a sample
    # row exactly as wide as the patch copies may read (OW = 8, no padding).
    (2, 8, 7, 9, 5, 2, 3, 1, "valid"),
    (2, 3, 6, 10, 4, 3, 3, 1, "valid"),
]
ALL_CASES = CONV_CASES + EXTRA_CASES


@pytest.fixture
def rng():
    return np.random.default_rng(0)


class Conv:
    """The buffers of one native convolution call (what the runtime layer allocates)."""

    def __init__(self, X, Wt, s, pt, pl, OH, OW, pooled=False, threads=2):
        B, C, H, W = X.shape
        F, _, KH, KW = Wt.shape
        self.geometry = (s, pt, pl)
        self.threads = threads
        forward, backward, partial = native.workspace_sizes(
            C, H, W, F, KH, KW, s, pt, pl, OH, OW, X.itemsize, pooled, True
        )
        self.workspace = np.full((threads, max(forward, backward)), np.nan, X.dtype)
        self.partials = np.full((-(-B // native.GRAD_BLOCK), partial), np.nan, X.dtype)
        self.packed = np.empty(native.packed_weights_size(F, C, KH, KW), X.dtype)
        native.pack_weights(Wt, self.packed)

    def forward(self, X, Wt, b, out, code):
        native.conv2d_forward(
            X, Wt, b, *self.geometry, out, code, self.packed, self.workspace, self.threads
        )

    def pool_forward(self, X, Wt, b, OH, OW, code, pool, out, argmax):
        native.conv2d_pool_forward(
            X,
            Wt,
            b,
            *self.geometry,
            OH,
            OW,
            code,
            *pool,
            out,
            argmax,
            self.packed,
            self.workspace,
            self.threads,
        )

    def backward(self, X, Wt, A, dA, argmax, code, OH, OW, dX, dense=False):
        dW, db = np.empty_like(Wt), np.empty(Wt.shape[0], Wt.dtype)
        native.conv2d_backward(
            X,
            Wt,
            A,
            dA,
            argmax,
            code,
            *self.geometry,
            OH,
            OW,
            dW,
            db,
            dX,
            self.workspace,
            self.partials,
            self.threads,
            dense,
        )
        return dW, db


def _pool_shape(OH, OW, pool):
    ph, pw, ps = pool
    return (OH - ph) // ps + 1, (OW - pw) // ps + 1


# The two ways of forming the weight gradient (native.dense_weight_grad).
WEIGHT_GRADS = [False, True]


@pytest.mark.parametrize("dense", WEIGHT_GRADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_forward_backward_match_twin(rng, dtype, dense):
    for i, case in enumerate(ALL_CASES):
        code = ACTS[i % 4]
        X, Wt, b, s, pt, pl, OH, OW = _conv_setup(rng, case, dtype)
        conv = Conv(X, Wt, s, pt, pl, OH, OW)
        out = np.empty((X.shape[0], Wt.shape[0], OH, OW), dtype)
        conv.forward(X, Wt, b, out, code)
        X64, W64, b64 = (a.astype(np.float64) for a in (X, Wt, b))
        assert out.dtype == dtype
        assert_close(out, naive.conv2d_forward(X64, W64, b64, s, pt, pl, OH, OW, code), dtype)

        G = rng.standard_normal(out.shape).astype(dtype)
        G_before = G.copy()
        dX = np.full_like(X, np.nan)
        dW, db = conv.backward(X, Wt, out, G, None, code, OH, OW, dX, dense)
        np.testing.assert_array_equal(G, G_before)  # the upstream gradient is kept
        rW, rb, rX = naive.conv2d_backward(
            X64, W64, out.astype(np.float64), G.astype(np.float64), code, s, pt, pl
        )
        for got, ref in [(dW, rW), (db, rb), (dX, rX)]:
            assert got.dtype == dtype
            assert_close(got, ref, dtype)
        # Without dX (a first layer) the parameter gradients are the same.
        dW2, db2 = conv.backward(X, Wt, out, G, None, code, OH, OW, None, dense)
        np.testing.assert_array_equal(dW2, dW)
        np.testing.assert_array_equal(db2, db)


POOLS = [(2, 2, 2), (3, 3, 2), (2, 2, 1), (2, 3, 3)]


@pytest.mark.parametrize("dense", WEIGHT_GRADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_conv_pool_matches_unfused_and_twin(rng, dtype, dense):
    for i, case in enumerate(ALL_CASES):
        code = ACTS[(i + 1) % 4]
        pool = POOLS[i % len(POOLS)]
        X, Wt, b, s, pt, pl, OH, OW = _conv_setup(rng, case, dtype)
        if pool[0] > OH or pool[1] > OW:
            continue
        B, F = X.shape[0], Wt.shape[0]
        PH, PW = _pool_shape(OH, OW, pool)
        conv = Conv(X, Wt, s, pt, pl, OH, OW, pooled=True)
        pooled = np.empty((B, F, PH, PW), dtype)
        argmax = np.empty((B, F, PH, PW), np.int32)
        conv.pool_forward(X, Wt, b, OH, OW, code, pool, pooled, argmax)

        # The unfused layers: the same convolution code, then max pooling.
        A = np.empty((B, F, OH, OW), dtype)
        conv.forward(X, Wt, b, A, code)
        ref_pooled = np.empty_like(pooled)
        ref_argmax = np.empty(pooled.shape, np.int64)
        maxpool2d_forward(A, pool[0], pool[1], pool[2], ref_pooled, ref_argmax)
        np.testing.assert_array_equal(pooled, ref_pooled)
        np.testing.assert_array_equal(argmax, ref_argmax)

        # Backward from the pooled gradient = pool backward then conv backward.
        G = rng.standard_normal(pooled.shape).astype(dtype)
        dX = np.full_like(X, np.nan)
        dG_before = G.copy()
        dW, db = conv.backward(X, Wt, pooled, G, argmax, code, OH, OW, dX, dense)
        np.testing.assert_array_equal(G, dG_before)
        X64, W64 = X.astype(np.float64), Wt.astype(np.float64)
        dA = naive.maxpool2d_backward(G.astype(np.float64), ref_argmax, OH, OW)
        rW, rb, rX = naive.conv2d_backward(X64, W64, A.astype(np.float64), dA, code, s, pt, pl)
        for got, ref in [(dW, rW), (db, rb), (dX, rX)]:
            assert_close(got, ref, dtype)


@pytest.mark.parametrize("dense", WEIGHT_GRADS)
@pytest.mark.parametrize("pooled", [False, True])
def test_native_conv_finite_differences(rng, pooled, dense):
    code = codes.TANH
    case = (2, 3, 7, 9, 10, 3, 3, 1, "same")
    X, Wt, b, s, pt, pl, OH, OW = _conv_setup(rng, case, np.float64)
    pool = (2, 2, 2)
    shape = (X.shape[0], Wt.shape[0]) + (_pool_shape(OH, OW, pool) if pooled else (OH, OW))
    G = rng.standard_normal(shape)

    def outputs():
        conv = Conv(X, Wt, s, pt, pl, OH, OW, pooled=pooled)
        out = np.empty(shape)
        argmax = np.empty(shape, np.int32)
        if pooled:
            conv.pool_forward(X, Wt, b, OH, OW, code, pool, out, argmax)
        else:
            conv.forward(X, Wt, b, out, code)
        return conv, out, argmax if pooled else None

    def loss():
        return float(np.sum(outputs()[1] * G))

    conv, out, argmax = outputs()
    dX = np.empty_like(X)
    dW, db = conv.backward(X, Wt, out, G, argmax, code, OH, OW, dX, dense)
    for got, x in [(dW, Wt), (db, b), (dX, X)]:
        np.testing.assert_allclose(got, numerical_grad(loss, x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dense", WEIGHT_GRADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_native_conv_independent_of_threads_and_batch(rng, dtype, dense):
    case = (13, 3, 12, 12, 10, 3, 3, 1, "valid")  # 13 samples: a partial gradient block
    X, Wt, b, s, pt, pl, OH, OW = _conv_setup(rng, case, dtype)
    pool = (2, 2, 2)
    PH, PW = _pool_shape(OH, OW, pool)
    B, F = X.shape[0], Wt.shape[0]
    G = rng.standard_normal((B, F, PH, PW)).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        conv = Conv(X, Wt, s, pt, pl, OH, OW, pooled=True, threads=threads)
        out = np.empty((B, F, PH, PW), dtype)
        argmax = np.empty(out.shape, np.int32)
        conv.pool_forward(X, Wt, b, OH, OW, codes.RELU, pool, out, argmax)
        dX = np.empty_like(X)
        dW, db = conv.backward(X, Wt, out, G, argmax, codes.RELU, OH, OW, dX, dense)
        results.append((out, argmax, dW, db, dX))
    for other in results[1:]:
        for a, b_ in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b_)
    # A sample's output does not depend on the other samples of the call.
    conv = Conv(X, Wt, s, pt, pl, OH, OW)
    full = np.empty((B, F, OH, OW), dtype)
    conv.forward(X, Wt, b, full, codes.SIGMOID)
    part = np.empty((3, F, OH, OW), dtype)
    conv.forward(X[5:8].copy(), Wt, b, part, codes.SIGMOID)
    np.testing.assert_array_equal(part, full[5:8])


def test_thread_count_follows_the_openmp_limit(monkeypatch):
    """threadpoolctl's OpenMP limit (what scikit-learn users set) caps the kernels' threads."""
    from threadpoolctl import threadpool_limits

    monkeypatch.setattr(native, "machine_busy", lambda: False)
    monkeypatch.setattr(native, "_MAX_THREADS", 4)
    huge = 1 << 40
    with threadpool_limits(limits=1, user_api="openmp"):
        assert native.kernels.openmp_threads() == 1
        assert native.thread_count(huge) == 1
    with threadpool_limits(limits=3, user_api="openmp"):
        assert native.thread_count(huge) == min(3, native.kernels.openmp_threads())
    assert native.thread_count(1) == 1  # below the parallel size


@pytest.mark.parametrize("dtype", DTYPES)
def test_aligned_rows_start_on_cache_lines(dtype):
    for n_rows, row_size in [(1, 1), (2, 7), (3, 100), (4, 4096)]:
        rows = native.aligned_rows(n_rows, row_size, dtype)
        assert rows.dtype == dtype and rows.flags.c_contiguous
        assert rows.shape[0] == n_rows and row_size <= rows.shape[1] < row_size + 64
        for row in rows:
            assert row.ctypes.data % native.CACHE_LINE == 0


@pytest.mark.parametrize("dense", WEIGHT_GRADS)
@pytest.mark.parametrize("pooled", [False, True])
def test_native_conv_independent_of_workspace_alignment(rng, pooled, dense):
    """The kernels give the same values bit for bit from workspaces on cache lines (what
    the layers allocate) and from ones that start 4 bytes past them."""
    X, Wt, b, s, pt, pl, OH, OW = _conv_setup(rng, (5, 3, 12, 19, 10, 3, 3, 1, "same"), np.float32)
    B, F = X.shape[0], Wt.shape[0]
    results = []
    for shift in (0, 1):
        conv = Conv(X, Wt, s, pt, pl, OH, OW, pooled=pooled)
        for name in ("workspace", "partials"):
            rows = native.aligned_rows(*getattr(conv, name).shape, np.float32)
            if shift:
                buffer = np.full(rows.size + 1, np.nan, np.float32)
                rows = buffer[1:].reshape(rows.shape)
                assert rows.ctypes.data % native.CACHE_LINE != 0
            setattr(conv, name, rows)
        if pooled:
            shape = (B, F) + _pool_shape(OH, OW, (2, 2, 2))
            out, argmax = np.empty(shape, np.float32), np.empty(shape, np.int32)
            conv.pool_forward(X, Wt, b, OH, OW, codes.RELU, (2, 2, 2), out, argmax)
        else:
            out, argmax = np.empty((B, F, OH, OW), np.float32), None
            conv.forward(X, Wt, b, out, codes.RELU)
        G = rng.standard_normal(out.shape).astype(np.float32) if not results else results[0][-1]
        dX = np.empty_like(X)
        dW, db = conv.backward(X, Wt, out, G, argmax, codes.RELU, OH, OW, dX, dense)
        results.append((out, dW, db, dX, G))
    for a, b_ in zip(results[0][:-1], results[1][:-1], strict=True):
        np.testing.assert_array_equal(a, b_)


@pytest.mark.parametrize("pooled", [False, True])
def test_weight_gradient_paths_agree(rng, pooled):
    """Both weight-gradient paths give the same gradients (to rounding; db and dX exactly
    where no pooling window overlaps another), strided and padded, at register-tile and
    vector-width edges."""
    for case in [
        (5, 3, 11, 13, 9, 3, 3, 1, "valid"),
        (4, 2, 12, 17, 8, 3, 2, 2, "same"),
        (3, 4, 9, 20, 17, 5, 3, 3, "same"),
    ]:
        for dtype in DTYPES:
            X, Wt, b, s, pt, pl, OH, OW = _conv_setup(rng, case, dtype)
            B, F = X.shape[0], Wt.shape[0]
            conv = Conv(X, Wt, s, pt, pl, OH, OW, pooled=pooled)
            if pooled:
                shape = (B, F) + _pool_shape(OH, OW, (2, 2, 2))
                out, argmax = np.empty(shape, dtype), np.empty(shape, np.int32)
                conv.pool_forward(X, Wt, b, OH, OW, codes.TANH, (2, 2, 2), out, argmax)
            else:
                out, argmax = np.empty((B, F, OH, OW), dtype), None
                conv.forward(X, Wt, b, out, codes.TANH)
            G = rng.standard_normal(out.shape).astype(dtype)
            got = {}
            for dense in WEIGHT_GRADS:
                dX = np.empty_like(X)
                dW, db = conv.backward(X, Wt, out, G, argmax, codes.TANH, OH, OW, dX, dense)
                got[dense] = (dW, db, dX)
            for a, b_ in zip(got[False], got[True], strict=True):
                assert_close(a, b_.astype(np.float64), dtype)
            np.testing.assert_array_equal(got[False][2], got[True][2])


def test_weight_gradient_choice_by_shape():
    from fastgd._kernels.runtime.tuning import DENSE_WEIGHT_GRAD_MAX_TAPS

    assert native.dense_weight_grad(3 * 3 * 3, pooled=False)
    assert not native.dense_weight_grad(3 * 3 * 3, pooled=True)
    assert not native.dense_weight_grad(DENSE_WEIGHT_GRAD_MAX_TAPS + 1, pooled=False)


def test_native_conv_rejects_bad_shapes(rng):
    X, Wt, b, s, pt, pl, OH, OW = _conv_setup(rng, (2, 3, 8, 8, 4, 3, 3, 1, "valid"), np.float32)
    conv = Conv(X, Wt, s, pt, pl, OH, OW)
    out = np.empty((2, 4, OH, OW), np.float32)
    with pytest.raises(ValueError, match="input channels"):
        conv.forward(X[:, :2].copy(), Wt, b, out, codes.RELU)
    with pytest.raises(ValueError, match="b must have"):
        conv.forward(X, Wt, b[:3].copy(), out, codes.RELU)
    with pytest.raises(ValueError, match="out must have"):
        conv.forward(X, Wt, b, out[:1], codes.RELU)
    with pytest.raises(ValueError, match="too large"):
        conv.forward(X, Wt, b, np.empty((2, 4, 9, 9), np.float32), codes.RELU)
    small = np.empty((1, 1), np.float32)
    with pytest.raises(ValueError, match="workspace"):
        native.conv2d_forward(X, Wt, b, 1, 0, 0, out, codes.RELU, conv.packed, small, 1)
    with pytest.raises(ValueError, match="dX"):
        conv.backward(X, Wt, out, out, None, codes.RELU, OH, OW, np.empty((2, 3, 8, 7), "f4"))


# ------------------------------------------------------------ activations
def _float32_sweep():
    """Every 2039th float32 bit pattern (both signs, subnormals, inf and NaN included)."""
    bits = np.arange(0, 2**32, 2039, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -88.5, 88.5], np.float32)
    return np.concatenate([values, specials])


def _ulp_error(got, ref):
    ref = ref.astype(np.float64)
    spacing = np.spacing(np.abs(ref).astype(got.dtype)).astype(np.float64)
    return np.abs(got.astype(np.float64) - ref) / spacing


# Largest error in units in the last place allowed in float32: the logistic
# function (exponential + polynomial) stays within 4; tanh, a rational fit
# chosen for speed, within 5.1 where it is largest (|x| in [0.25, 9.1],
# checked there for every float32 below).
MAX_ULP_FLOAT32 = {codes.TANH: 5.1, codes.SIGMOID: 4}


@pytest.mark.parametrize("code", [codes.TANH, codes.SIGMOID])
def test_tanh_sigmoid_accurate_over_the_float32_range(code):
    z = _float32_sweep()
    got = z.copy()
    native.activation_forward(got, code)
    with np.errstate(invalid="ignore"):
        ref = naive.activation(z.astype(np.float64), code).astype(np.float32)
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(got), nan)
    got, ref = got[~nan], ref[~nan]
    # Within the bound where the result is a normal number; below that (the
    # logistic function of z < -87) flushed to 0 or as close.
    tiny = np.abs(ref) < np.finfo(np.float32).tiny
    assert np.all(np.abs(got[tiny]) <= np.finfo(np.float32).tiny)
    assert _ulp_error(got[~tiny], ref[~tiny]).max() <= MAX_ULP_FLOAT32[code]
    # Exact where it must be: odd / symmetric, saturated, signed zeros.
    signs = np.signbit(got[ref == 0]) == np.signbit(ref[ref == 0])
    assert code == codes.SIGMOID or signs.all()
    if code == codes.TANH:
        assert np.all(np.abs(got) <= 1)


def test_tanh_accurate_for_every_float32_where_its_error_peaks():
    """Every float32 of [0.25, 9.1] (42 million values) and their negatives."""
    first, last = np.array([0.25, 9.1], np.float32).view(np.uint32)
    for start in range(int(first), int(last) + 1, 1 << 23):
        x = np.arange(start, min(start + (1 << 23), int(last) + 1), dtype=np.uint32)
        x = x.view(np.float32)
        for signed in (x, -x):
            got = signed.copy()
            native.activation_forward(got, codes.TANH)
            ref = np.tanh(signed.astype(np.float64))
            assert _ulp_error(got, ref).max() <= MAX_ULP_FLOAT32[codes.TANH]
            assert np.all(np.abs(got) <= 1)


@pytest.mark.parametrize("code", [codes.TANH, codes.SIGMOID])
def test_tanh_sigmoid_accurate_in_float64(rng, code):
    z = np.concatenate(
        [
            rng.standard_normal(20_000) * 10.0 ** rng.integers(-8, 3, 20_000),
            np.array([0.0, -0.0, 1e-300, -1e-300, 700.0, -700.0, -745.0, np.inf, -np.inf]),
        ]
    )
    got = z.copy()
    native.activation_forward(got, code)
    ref = naive.activation(z, code)
    tiny = np.abs(ref) < np.finfo(np.float64).tiny
    assert np.all(np.abs(got[tiny]) <= np.finfo(np.float64).tiny)
    assert _ulp_error(got[~tiny], ref[~tiny]).max() <= 8
    nan = np.array([np.nan])
    native.activation_forward(nan, code)
    assert np.isnan(nan[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", ACTS)
def test_native_bias_activation_and_backward_match_twin(rng, dtype, code):
    Z = rng.standard_normal((37, 19)).astype(dtype) * 3
    b = rng.standard_normal(19).astype(dtype)
    out = Z.copy()
    native.bias_activation_rows(out, b, code)
    assert_close(out, naive.activation(Z.astype(np.float64) + b, code), dtype)
    dA = rng.standard_normal(Z.shape).astype(dtype)
    d = dA.copy()
    native.activation_backward(out.reshape(-1), d.reshape(-1), code)
    expected = dA.astype(np.float64) * naive.activation_grad_from_output(
        out.astype(np.float64), code
    )
    assert_close(d, expected, dtype)
    # relu keeps NaN (a diverging fit stays visible)
    z = np.array([np.nan, -1.0, 2.0], dtype)
    native.activation_forward(z, codes.RELU)
    assert np.isnan(z[0]) and z[1] == 0 and z[2] == 2
