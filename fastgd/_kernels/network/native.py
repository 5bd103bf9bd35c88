"""The ahead-of-time (Cython) network kernels, in the variant this CPU runs best.

``setup.py`` compiles ``_network_fast.pxi`` three times on x86-64 (plain,
AVX2 + FMA, AVX-512) and once elsewhere; this module imports the widest
variant the running CPU supports and re-exports its kernels. Nothing here
is JIT-compiled, so a first fit pays no compilation for these kernels.

OpenMP threads of these kernels sleep when idle (``OMP_WAIT_POLICY=PASSIVE``
unless the user set it, as for fastgd's Numba kernels): the runtime reads
the variable when it is loaded, so it is set before the import.
"""

import importlib
import os

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fastgd._kernels.network import _network_fast_generic as _generic  # noqa: E402
from fastgd._kernels.runtime.cpu_load import machine_busy  # noqa: E402

_VARIANTS = {2: "_network_fast_avx512", 1: "_network_fast_avx2"}


def _best_module():
    level = _generic.cpu_level()
    for wanted in sorted(_VARIANTS, reverse=True):
        if level >= wanted:
            try:
                return importlib.import_module(f"fastgd._kernels.network.{_VARIANTS[wanted]}")
            except ImportError:  # not built on this platform
                continue
    return _generic


kernels = _best_module()

GRAD_BLOCK = kernels.GRAD_BLOCK
activation_backward = kernels.activation_backward
activation_forward = kernels.activation_forward
bias_activation_rows = kernels.bias_activation_rows
conv2d_backward = kernels.conv2d_backward
conv2d_forward = kernels.conv2d_forward
conv2d_pool_forward = kernels.conv2d_pool_forward
dense_rows_forward = kernels.dense_rows_forward
log_softmax = kernels.log_softmax
masked_regression_loss = kernels.masked_regression_loss
narrow_dense_backward = kernels.narrow_dense_backward
narrow_dense_forward = kernels.narrow_dense_forward
optimizer_step = kernels.optimizer_step
pack_weights = kernels.pack_weights
packed_weights_size = kernels.packed_weights_size
softmax = kernels.softmax
softmax_cross_entropy = kernels.softmax_cross_entropy
workspace_sizes = kernels.workspace_sizes


def dense_weight_grad(taps, pooled):
    """Whether :func:`conv2d_backward` forms the weight gradient from the dense output gradient.

    ``taps``: C·KH·KW of a filter; ``pooled``: a max pooling is fused after
    the convolution. The rule and its measurements are
    :data:`~fastgd._kernels.runtime.tuning.DENSE_WEIGHT_GRAD_MAX_TAPS`'s.
    """
    from fastgd._kernels.runtime.tuning import DENSE_WEIGHT_GRAD_MAX_TAPS

    return not pooled and taps <= DENSE_WEIGHT_GRAD_MAX_TAPS


def thread_count(work):
    """Threads for a kernel call of ``work`` scalar operations.

    One below :data:`~fastgd._kernels.runtime.tuning.PARALLEL_MIN_WORK`, and
    one while other processes leave fewer than two CPUs free
    (:func:`~fastgd._kernels.runtime.cpu_load.machine_busy`). Else Numba's
    thread count (``NUMBA_NUM_THREADS``, by default the CPUs), capped by
    OpenMP's current limit (``OMP_NUM_THREADS``, or what
    ``threadpoolctl.threadpool_limits`` sets, as for scikit-learn's own
    OpenMP code). Results never depend on it.
    """
    from fastgd._kernels.runtime.tuning import PARALLEL_MIN_WORK

    if work < PARALLEL_MIN_WORK or machine_busy():
        return 1
    return max(1, min(max_threads(), kernels.openmp_threads()))


def aligned_rows(n_rows, row_size, dtype):
    """An uninitialised C-contiguous array of ``n_rows`` rows of at least ``row_size`` values,
    each row starting on a 64-byte boundary.

    For the kernels' workspaces: their vector loads and stores then stay
    inside a cache line (NumPy aligns an allocation to 16 bytes only, so a
    64-byte AVX-512 load from it would span two lines). Rows are padded to a
    whole number of cache lines (``shape[1]`` is the padded size); the result
    is a view into a slightly larger buffer.
    """
    dtype = np.dtype(dtype)
    per_line = CACHE_LINE // dtype.itemsize
    stride = -(-row_size // per_line) * per_line
    buffer = np.empty(n_rows * stride + per_line, dtype=dtype)
    start = (-buffer.ctypes.data % CACHE_LINE) // dtype.itemsize
    return buffer[start : start + n_rows * stride].reshape(n_rows, stride)


CACHE_LINE = 64


def max_threads():
    """Largest thread count :func:`thread_count` returns."""
    global _MAX_THREADS
    if _MAX_THREADS is None:
        try:
            _MAX_THREADS = max(1, int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1)))
        except ValueError:
            _MAX_THREADS = os.cpu_count() or 1
    return _MAX_THREADS


_MAX_THREADS = None
