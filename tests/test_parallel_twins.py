"""Every parallel kernel has a serial twin (used for small work); both agree bitwise.

The public kernels pick the parallel compilation only above
``PARALLEL_MIN_WORK`` (see fastgd/_kernels/runtime/numba_setup.py), which the
small inputs of the other kernel tests never reach; here both compilations
run on the same inputs.
"""

import numpy as np
import pytest
from per_sample_runs import settings_of

from fastgd._kernels.linear import batch_numba
from fastgd._kernels.linear.arguments import BatchRows, Features, Scratch
from fastgd._kernels.network import activations, dropout, pooling

RNG = np.random.RandomState(0)


def both(kernel_name, module, make_args, outputs):
    """Run ``_<name>_parallel`` and ``_<name>_serial`` on copies of the same args."""
    results = []
    for variant in ("parallel", "serial"):
        args = make_args()
        returned = getattr(module, f"_{kernel_name}_{variant}")(*args)
        results.append([returned] + [np.array(args[i], copy=True) for i in outputs])
    for a, b in zip(results[0], results[1], strict=True):
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(a, b)
    return results[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("code", [0, 1, 2, 3])
def test_activation_twins(dtype, code):
    Z = RNG.randn(70, 33).astype(dtype)
    b = RNG.randn(33).astype(dtype)
    both("activation_forward", activations, lambda: (Z.copy(), code), [0])
    both("bias_activation_forward", activations, lambda: (Z.copy(), b, code), [0])
    A = np.tanh(Z)
    both("activation_backward", activations, lambda: (A, Z.copy(), code), [1])


def test_dropout_twins():
    X = RNG.randn(40, 17)
    mask = RNG.rand(40, 17)
    both("masked_scale", dropout, lambda: (X, mask, 0.3, np.empty_like(X)), [3])


def test_pooling_twins():
    X = RNG.randn(3, 4, 9, 8)
    out_shape = (3, 4, 4, 4)
    out, argmax = both(
        "maxpool2d_forward",
        pooling,
        lambda: (X, 2, 2, 2, np.empty(out_shape), np.empty(out_shape, np.int64)),
        [4, 5],
    )[1:]
    dOut = RNG.randn(*out_shape)
    both("maxpool2d_backward", pooling, lambda: (dOut, argmax, np.empty_like(X)), [2])
    both("avgpool2d_forward", pooling, lambda: (X, 2, 2, 2, np.empty(out_shape)), [4])
    both("avgpool2d_backward", pooling, lambda: (dOut, 2, 2, 2, np.empty_like(X)), [4])


def test_batch_gradient_twins():
    n, d = 500, 12
    X = RNG.randn(n, d)
    y, w = RNG.randn(n), RNG.rand(n)
    rows = BatchRows.of(Features.of(X), RNG.permutation(n).astype(np.intp), y, w, n)
    params = np.full(d + 1, 0.1)
    settings = settings_of(loss=1, epsilon=0.5, l2=0.01)
    results = []
    kernels = batch_numba.ONE_OUTPUT
    for kernel in (kernels.gradient_parallel["dense"], kernels.gradient_serial["dense"]):
        scratch = Scratch.for_batches(d, batch_numba.partials_shape(n, d), np.float64)
        loss = kernel(rows, 0, n, params, settings, scratch)
        results.append((loss, scratch.grad))
    assert results[0][0] == results[1][0] and results[0][0] > 0
    np.testing.assert_array_equal(results[0][1], results[1][1])
