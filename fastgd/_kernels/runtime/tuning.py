"""Every tuning constant of fastgd's kernels and their drivers, in one place.

These numbers trade speed against overhead on the machines fastgd runs on;
none of them changes what a model converges to. The README's performance
section gives the measurements they come from. Constants marked *fixes the
arithmetic* also fix the order in which floating-point sums are formed (or the
random numbers a shuffle draws): changing one changes results in their last
bits, never their meaning, and the tests that compare runs bit for bit compare
runs made with the same value.

The module is plain Python with no imports, so that the build (``setup.py``)
can read it and give the Cython kernels the same values as the Numba ones.
"""

# --------------------------------------------------------------- memory
# Bytes in a cache line (x86-64 and most ARM cores).
CACHE_LINE_BYTES = 64
# Bytes a thread may keep warm in its core's private (L2) cache for the next
# block of a shared per-sample epoch: L2 caches hold 512 KiB to 2 MiB.
WARM_BLOCK_BYTES = 256 * 1024

# ------------------------------------------------------------- prefetch
# Shuffled rows defeat the hardware prefetcher, so the per-sample loops ask
# for the row this many steps ahead while working on the current one...
ROWS_AHEAD = 8
# ...into L2 (LLVM's locality 2, x86's prefetcht1): L1 has too few line-fill
# buffers to keep a whole row in flight.
PREFETCH_LOCALITY = 2
# The Cython kernels ask for a sparse row again this many steps ahead, into
# L1 (prefetcht0), by then mostly from L2: the weights' random loads wait on
# the row's column numbers, which then come from L1. (The Numba twin measured
# slower with it and does without; prefetches do not change results.)
SPARSE_L1_ROWS_AHEAD = 4
# A batch row costs less arithmetic per byte than a per-sample step (no
# update of the weights per row), so the batch loops prefetch further ahead.
BATCH_ROWS_AHEAD = 2 * ROWS_AHEAD

# --------------------------------------------------------------- threads
# Below this many stored values of X an epoch takes a few milliseconds at
# most, and starting a second thread for it does not pay.
MIN_VALUES_FOR_TWO_THREADS = 1 << 22
# The weights pass from core to core with every block of a shared
# per-sample epoch: beyond this many bytes of them (wide sparse data, where a
# block touches much of the weights) sharing gains nothing.
MAX_SHARED_WEIGHT_BYTES = 64 * 1024
# A shared per-sample epoch needs at least this many blocks, of at least
# this many rows each.
MIN_BLOCKS = 4
MIN_BLOCK_ROWS = 16
# A thread of a shared per-sample epoch that has waited this many ticks of
# the CPU's time-stamp counter (about 0.1 ms) for a block that could run
# but has not started takes it over: the block's owner is descheduled.
STEAL_AFTER_TICKS = 300_000
# Spin this many times on a flag before yielding the CPU: a partner that is
# running answers within a few microseconds; one that is not needs the core.
SPINS_BEFORE_YIELD = 256
# A parallel region costs microseconds on idle cores but milliseconds when
# another process holds a core, so parallel kernels run on one thread below
# this many scalar operations of work (about a millisecond).
PARALLEL_MIN_WORK = 1 << 20

# ------------------------------------------------------- linear kernels
# Rows of a mini-batch are processed in chunks of this many rows, each with
# its partial gradient, summed in chunk order (fixes the arithmetic).
CHUNK_ROWS = 64
# Spare entries at the end of each chunk's partial gradient: at least one
# cache line of float32 values, so that two threads writing neighbouring
# partials never write to the same cache line.
PARTIAL_ROW_PADDING = 16
# Below this, the lazy L2 scale of the per-sample kernels is folded into the
# weights, to keep their precision (fixes the arithmetic).
MIN_SCALE = 1e-9
# Largest |∂ℓ/∂p| of one sample that an update uses (scikit-learn's SGD clips
# at the same value, its MAX_DLOSS): a squared loss far from its target takes
# a bounded step, from which the decaying schedules recover.
MAX_LOSS_DERIVATIVE = 1e12

# ------------------------------------------------- full-batch solver
# Up to this many features the full-batch solver forms the d x d covariance
# of the features (one matrix product over X, as Ridge's Cholesky solver
# does): the squared error's iterations then cost O(d^2) instead of a pass
# over X, and the step comes from its exact largest eigenvalue. Wider data
# takes POWER_ITERATIONS power iterations (two passes over X each).
GRAM_MAX_FEATURES = 2048
POWER_ITERATIONS = 20
# Rows per block when weighted rows are multiplied (no weighted copy of X).
GRAM_CHUNK_ROWS = 16384

# --------------------------------------------------------------- shuffle
# From this many rows on, an epoch's row order comes from the compiled
# scatter shuffle; below it from NumPy's, so that small fits with the Cython
# backend never import Numba (fixes the random numbers).
COMPILED_SHUFFLE_MIN_ROWS = 1 << 16
# The scatter shuffle's buckets, the size below which a plain Fisher-Yates
# shuffle is used, the fixed parts its passes run over and the size from
# which those parts run in parallel (all but the last fix the random numbers).
SHUFFLE_BUCKETS = 256
MIN_SCATTER_SIZE = 1 << 15
SHUFFLE_PARTS = 16
PARALLEL_SHUFFLE_MIN_SIZE = 1 << 18

# ------------------------------------------------------ network kernels
# Elements per parallel work item of the element-wise kernels (activations,
# dropout): a work item must cost much more than scheduling it.
ELEMENTWISE_CHUNK = 16384
# Largest m·n·k of one GEMM call inside a parallel convolution kernel: below
# it OpenBLAS runs the product in the calling thread, so it does not start
# threads of its own under ``prange`` (results do not depend on it).
CONV_GEMM_MAX_MNK = 1 << 18
# How a convolution's weight gradient is formed (the same to rounding either
# way; see conv2d_backward in _network_fast.pxi). With no max pooling after
# the layer every output position has a gradient, and up to this many taps
# per filter (C·KH·KW) the dense register tiles win; one patch row per
# nonzero output gradient wins above (a relu leaves about half of them) and
# after a fused max pooling (one position per window). Batch 32, 32 filters
# 3×3, 1 thread, patch rows / dense tiles: unpooled 2.6x at 27 taps (3×32×32),
# 1.15x at 72 (8×16×16), 0.93x at 144 (16×15×15), 0.8x at 288 (32×15×15,
# 64 filters); pooled 0.5x at 27 and 72 taps, 0.23x at 288.
DENSE_WEIGHT_GRAD_MAX_TAPS = 96
# A dense layer with at most this many outputs trains through the native
# narrow kernels (lanes over the inputs, against columns of the weights
# gathered into vectors) instead of BLAS, whose thin products (a
# classifier's output layer) run far below its speed (the same to rounding
# either way). 7232 inputs, 10 outputs, float32, AVX-512, one thread, narrow
# / OpenBLAS: batch 32 forward 71 / 97 µs, backward (dW and dX) 116 / 205 µs;
# batch 128 forward 272 / 240 µs, backward 617 / 696 µs (2 threads).
NARROW_DENSE_MAX_UNITS = 16
# Bytes of activations per chunk of rows when a network predicts: small
# enough to stay in cache, large enough for efficient matrix products.
PREDICT_CHUNK_BYTES = 8 * 2**20

# --------------------------------------------------------- compile lock
# A process waits at most this long for another one to compile a Numba kernel
# (and save it in the cache) before it compiles the kernel itself. Compiling
# the largest kernel with its callees takes well under a minute, even with
# eight processes on two cores; a lock held longer belongs to a hung process.
COMPILE_LOCK_TIMEOUT_SECONDS = 300.0
