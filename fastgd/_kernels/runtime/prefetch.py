"""Software prefetch for Numba kernels.

Visiting rows in a shuffled order defeats the hardware prefetcher: every row
is a fresh trip to main memory, and a per-sample SGD step spends most of its
time waiting for it. Asking for row ``order[k + ROWS_AHEAD]`` while working on
row ``order[k]`` hides that latency. Numba has no prefetch function, so this
module exposes LLVM's ``llvm.prefetch`` intrinsic as one. (The Cython kernel
uses the C compiler's ``__builtin_prefetch`` for the same purpose.)
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, numba
from fastgd._kernels.runtime.tuning import CACHE_LINE_BYTES, PREFETCH_LOCALITY


@intrinsic
def prefetch_element(typingctx, array_type, index_type):
    """Hint the CPU to load ``array.flat[index]`` into cache (no effect on results).

    ``array`` must be C-contiguous; ``index`` is a flat element index.
    """
    if not isinstance(array_type, types.Array) or not isinstance(index_type, types.Integer):
        return None
    signature = types.void(array_type, index_type)

    def codegen(context, builder, sig, args):
        array, index = args
        data = context.make_array(sig.args[0])(context, builder, array).data
        byte_pointer = ir.IntType(8).as_pointer()
        address = builder.bitcast(builder.gep(data, [index]), byte_pointer)
        i32 = ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
            "llvm.prefetch.p0",
        )
        # Arguments: address, read (0), cache level hint, data cache (1).
        builder.call(prefetch, [address, i32(0), i32(PREFETCH_LOCALITY), i32(1)])
        return context.get_dummy_value()

    return signature, codegen


@numba.njit(inline="always", **KERNEL_OPTIONS)
def prefetch_dense_row(X, i):
    """Prefetch every cache line of row i of the C-contiguous 2-D array X."""
    n_features = X.shape[1]
    step = max(1, CACHE_LINE_BYTES // X.itemsize)
    start = i * n_features
    for j in range(0, n_features, step):
        prefetch_element(X, start + j)
    # Steps of a line from a row that starts mid-line can stop one line short.
    if n_features > 0:
        prefetch_element(X, start + n_features - 1)


@numba.njit(inline="always", **KERNEL_OPTIONS)
def prefetch_sparse_row(data, indices, indptr, i):
    """Prefetch every cache line of CSR row i (its values and column indices)."""
    start, stop = indptr[i], indptr[i + 1]
    for k in range(start, stop, max(1, CACHE_LINE_BYTES // data.itemsize)):
        prefetch_element(data, k)
    for k in range(start, stop, max(1, CACHE_LINE_BYTES // indices.itemsize)):
        prefetch_element(indices, k)
    # Steps of a line from a row that starts mid-line can stop one line short.
    if stop > start:
        prefetch_element(data, stop - 1)
        prefetch_element(indices, stop - 1)
