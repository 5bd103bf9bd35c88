# cython: language_level=3
"""Per-sample SGD epoch for linear regression (Cython, ahead-of-time).

One call runs one epoch over the rows of X in the order given by ``order``
(drawn by the caller from ``random_state``), updating the coefficients in
place. The loop runs without the GIL and allocates nothing. It is the twin of
:func:`fastgd._kernels.linear.sgd_numba.sgd_epoch`: both implement the same
algorithm, step for step, and are tested to agree.

The algorithm, for each sample i (weight s, target y):

1. prediction p = w·x + b and the loss derivative dℓ = s · ∂ℓ(p, y)/∂p;
2. learning rate η of step t from the schedule;
3. update, by optimizer:

   * ``sgd``: the L2 shrinkage w ← (1 − η·l2)·w is applied lazily by
     keeping w = scale · v and multiplying ``scale`` only, so a sparse
     sample costs O(nnz) rather than O(d); then v ← v − η·dℓ·x / scale;
   * the other optimizers take the full gradient g = dℓ·x + l2·w and update
     every coordinate with the rule in :mod:`fastgd._kernels.common.optimizers`;

4. L1 by the cumulative penalty (Tsuruoka, Tsujii & Ananiadou, 2009):
   ``u`` is the total L1 shrinkage every weight should have received so far,
   ``q[j]`` what weight j actually received; each coordinate the step
   updated (for ``sgd``: the features with x_j ≠ 0) is clipped towards 0 by
   the difference, never crossing 0;
5. averaged SGD: from step ``average_start`` on, the running mean of w.
"""

from libc.math cimport fabs, pow, sqrt

cimport numpy as cnp
from cython cimport floating

cnp.import_array()

cdef extern from *:
    """
    #include <sched.h>
    #include <stdint.h>
    #include <time.h>
    #define FASTGD_PREFETCH(address) __builtin_prefetch((const void *)(address), 0, 2)

    /* The vector loops below are compiled twice on x86-64 Linux, for the
       baseline CPU and for AVX2 with FMA, and the loader picks the version
       the CPU runs (GCC's function multi-versioning): the package stays
       portable and still uses the wide vectors, as Numba's JIT does. */
    #if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
    #define FASTGD_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
    #else
    #define FASTGD_VECTOR_CLONES
    #endif

    /* Dot product of two vectors with FASTGD_LANES independent partial sums,
       added up pairwise at the end: the compiler vectorises the lanes
       without reassociating anything, and the sum has a fixed order. */
    #define FASTGD_LANES 16
    #define FASTGD_DEFINE_DOT(name, real)                                       \
    FASTGD_VECTOR_CLONES                                                        \
    static real name(const real *x, const real *w, Py_ssize_t n) {             \
        real lanes[FASTGD_LANES] = {0};                                         \
        Py_ssize_t j = 0;                                                       \
        int lane, width;                                                        \
        for (; j + FASTGD_LANES <= n; j += FASTGD_LANES)                        \
            for (lane = 0; lane < FASTGD_LANES; lane++)                         \
                lanes[lane] += x[j + lane] * w[j + lane];                       \
        for (lane = 0; j < n; j++, lane++)                                      \
            lanes[lane] += x[j] * w[j];                                         \
        for (width = FASTGD_LANES / 2; width > 0; width /= 2)                   \
            for (lane = 0; lane < width; lane++)                                \
                lanes[lane] += lanes[lane + width];                             \
        return lanes[0];                                                        \
    }
    FASTGD_DEFINE_DOT(fastgd_dot_double, double)
    FASTGD_DEFINE_DOT(fastgd_dot_float, float)

    /* w += a * x, in the precision of w and x. */
    #define FASTGD_DEFINE_AXPY(name, real)                                      \
    FASTGD_VECTOR_CLONES                                                        \
    static void name(double a, const real *restrict x, real *restrict w,       \
                     Py_ssize_t n) {                                            \
        for (Py_ssize_t j = 0; j < n; j++)                                      \
            w[j] += a * x[j];                                                   \
    }
    FASTGD_DEFINE_AXPY(fastgd_axpy_double, double)
    FASTGD_DEFINE_AXPY(fastgd_axpy_float, float)

    /* Atomic operations on the int64 flags of an epoch shared by threads
       (acquire on reads, release on writes: the weights written before a
       flag is raised are visible to the thread that sees it raised). */
    static inline int64_t fastgd_fetch_add(int64_t *flag, int64_t value) {
        return __atomic_fetch_add(flag, value, __ATOMIC_ACQ_REL);
    }
    static inline int64_t fastgd_load(int64_t *flag) {
        return __atomic_load_n(flag, __ATOMIC_ACQUIRE);
    }
    static inline void fastgd_store(int64_t *flag, int64_t value) {
        __atomic_store_n(flag, value, __ATOMIC_RELEASE);
    }
    static inline int fastgd_compare_exchange(int64_t *flag, int64_t expected, int64_t value) {
        return __atomic_compare_exchange_n(flag, &expected, value, 0, __ATOMIC_ACQ_REL,
                                           __ATOMIC_ACQUIRE);
    }

    /* A fast tick count for sub-millisecond timeouts (as
       fastgd._kernels.runtime.atomics.cycle_counter): the time-stamp counter on x86,
       nanoseconds elsewhere. */
    static inline int64_t fastgd_ticks(void) {
    #if defined(__x86_64__) || defined(__i386__)
        return (int64_t)__builtin_ia32_rdtsc();
    #else
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    #endif
    }

    /* Tell the CPU this is a spin-wait loop. */
    static inline void fastgd_spin_pause(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #endif
    }
    """
    void FASTGD_PREFETCH(const void *address) noexcept nogil
    double fastgd_dot_double(const double *x, const double *w, Py_ssize_t n) noexcept nogil
    float fastgd_dot_float(const float *x, const float *w, Py_ssize_t n) noexcept nogil
    void fastgd_axpy_double(double a, const double *x, double *w, Py_ssize_t n) noexcept nogil
    void fastgd_axpy_float(double a, const float *x, float *w, Py_ssize_t n) noexcept nogil
    cnp.int64_t fastgd_fetch_add(cnp.int64_t *flag, cnp.int64_t value) noexcept nogil
    cnp.int64_t fastgd_load(cnp.int64_t *flag) noexcept nogil
    void fastgd_store(cnp.int64_t *flag, cnp.int64_t value) noexcept nogil
    bint fastgd_compare_exchange(cnp.int64_t *flag, cnp.int64_t expected,
                                 cnp.int64_t value) noexcept nogil
    cnp.int64_t fastgd_ticks() noexcept nogil
    void fastgd_spin_pause() noexcept nogil
    int sched_yield() noexcept nogil

# Shuffled rows defeat the hardware prefetcher; while working on one row the
# loop asks for the row ROWS_AHEAD steps later, into L2 (locality 2); the
# measurements behind these numbers are in fastgd/_kernels/runtime/prefetch.py.
DEF ROWS_AHEAD = 8
DEF CACHE_LINE_BYTES = 64

ctypedef fused index_t:
    int
    long long

# Must match fastgd._kernels.runtime.codes (checked by tests/test_linear_kernels.py).
cpdef enum:
    SQUARED_ERROR = 0
    HUBER = 1
    EPSILON_INSENSITIVE = 2
    SQUARED_EPSILON_INSENSITIVE = 3

cpdef enum:
    SGD = 0
    MOMENTUM = 1
    NESTEROV = 2
    ADAGRAD = 3
    RMSPROP = 4
    ADAM = 5

cpdef enum:
    CONSTANT = 0
    OPTIMAL = 1
    INVSCALING = 2
    ADAPTIVE = 3

# Slots of the ``counters`` array shared with the caller.
cpdef enum:
    INTERCEPT = 0       # b
    AVG_INTERCEPT = 1   # averaged b
    T = 2               # 1-based index of the next step (scikit-learn's t_)
    L1_TOTAL = 3        # u of the cumulative penalty
    N_AVERAGED = 4      # steps in the running mean
    N_UPDATES = 5       # optimizer steps taken (Adam's bias correction)
    SCALE = 6           # lazy L2 scale of the weights, within an epoch
    LOSS_SUM = 7        # Σ sᵢ·ℓᵢ of the epoch so far

# Slots of the ``flags`` array of an epoch shared by two threads, each on a
# cache line of its own.
cpdef enum:
    BLOCKS_CLAIMED = 0   # blocks a thread has taken to load and run
    BLOCKS_STARTED = 8   # blocks whose steps have begun
    BLOCKS_DONE = 16     # blocks whose steps are done

# A thread that has waited this many ticks (about 0.1 ms, the loading of
# several blocks) for a block that could run but has not started takes it
# over: its owner is descheduled (must match fastgd._kernels.linear.sgd_numba).
DEF STEAL_AFTER_TICKS = 300000

# Below this, the lazy L2 scale is folded into the weights to keep precision.
cdef double MIN_SCALE = 1e-9


cdef inline double loss_value(int loss, double p, double y, double epsilon) noexcept nogil:
    cdef double r = p - y
    cdef double z
    if loss == SQUARED_ERROR:
        return 0.5 * r * r
    if loss == HUBER:
        if fabs(r) <= epsilon:
            return 0.5 * r * r
        return epsilon * fabs(r) - 0.5 * epsilon * epsilon
    z = fabs(r) - epsilon
    if z <= 0.0:
        return 0.0
    if loss == EPSILON_INSENSITIVE:
        return z
    return z * z


cdef inline double loss_derivative(int loss, double p, double y, double epsilon) noexcept nogil:
    """dℓ/dp."""
    cdef double r = p - y
    if loss == SQUARED_ERROR:
        return r
    if loss == HUBER:
        if fabs(r) <= epsilon:
            return r
        return epsilon if r > 0.0 else -epsilon
    if loss == EPSILON_INSENSITIVE:
        if r > epsilon:
            return 1.0
        if r < -epsilon:
            return -1.0
        return 0.0
    if r > epsilon:
        return 2.0 * (r - epsilon)
    if r < -epsilon:
        return 2.0 * (r + epsilon)
    return 0.0


def py_loss_value(int loss, double p, double y, double epsilon):
    """Python access to the kernel's loss (for tests)."""
    return loss_value(loss, p, y, epsilon)


def py_loss_derivative(int loss, double p, double y, double epsilon):
    """Python access to the kernel's loss derivative dℓ/dp (for tests)."""
    return loss_derivative(loss, p, y, epsilon)


cdef inline double learning_rate(int schedule, double eta0, double power_t,
                                 double optimal_t0, double alpha, double t) noexcept nogil:
    if schedule == OPTIMAL:
        return 1.0 / (alpha * (optimal_t0 + t - 1.0))
    if schedule == INVSCALING:
        # t**0.25 (scikit-learn's default) and t**0.5 by square roots: a
        # pow() call costs a per-sample step about a quarter of its time.
        if power_t == 0.25:
            return eta0 / sqrt(sqrt(t))
        if power_t == 0.5:
            return eta0 / sqrt(t)
        return eta0 / pow(t, power_t)
    return eta0  # constant, or the adaptive schedule's current rate


cdef inline double dense_dot(const floating* x, const floating* w, Py_ssize_t d) noexcept nogil:
    # Sixteen partial sums in a fixed order (see fastgd_dot_double above):
    # vectorised, and short add-latency chains on a step's critical path.
    if floating is double:
        return fastgd_dot_double(x, w, d)
    return fastgd_dot_float(x, w, d)


cdef inline double sparse_dot(const floating* values, const index_t* columns,
                              Py_ssize_t nnz, const floating* w) noexcept nogil:
    cdef floating acc = 0
    cdef Py_ssize_t k
    for k in range(nnz):
        acc += values[k] * w[columns[k]]
    return acc


cdef inline void prefetch_row(const floating[:, ::1] X, const floating[::1] X_data,
                              const index_t[::1] X_indices, const index_t[::1] X_indptr,
                              bint is_sparse, Py_ssize_t i) noexcept nogil:
    """Start loading row i (dense or CSR) into cache."""
    cdef Py_ssize_t offset, start
    cdef const char* row
    if is_sparse:
        start = X_indptr[i]
        if start < X_data.shape[0]:
            FASTGD_PREFETCH(&X_data[start])
            FASTGD_PREFETCH(&X_indices[start])
    else:
        row = <const char*> &X[i, 0]
        for offset in range(0, X.shape[1] * sizeof(floating), CACHE_LINE_BYTES):
            FASTGD_PREFETCH(row + offset)


cdef inline double coordinate_step(int optimizer, double w, double g, floating* s1, floating* s2,
                                   double lr, double momentum, double beta_1, double beta_2,
                                   double eps, double bias_1, double bias_2,
                                   double* effective_step) noexcept nogil:
    """One optimizer update of one coordinate (rules in fastgd._kernels.common.optimizers)."""
    # State is read into doubles, updated, used, and only then stored, so the
    # arithmetic matches the Numba twin exactly in float32 as well.
    cdef double m = s1[0]
    cdef double v = s2[0]
    cdef double step
    if optimizer == MOMENTUM or optimizer == NESTEROV:
        m = momentum * m - lr * g
        s1[0] = m
        effective_step[0] = lr
        if optimizer == MOMENTUM:
            return w + m
        return w + momentum * m - lr * g
    if optimizer == ADAGRAD or optimizer == RMSPROP:
        if optimizer == ADAGRAD:
            v = v + g * g
        else:
            v = beta_2 * v + (1.0 - beta_2) * g * g
        s2[0] = v
        step = lr / (sqrt(v) + eps)
        effective_step[0] = step
        return w - step * g
    if optimizer == ADAM:
        m = beta_1 * m + (1.0 - beta_1) * g
        v = beta_2 * v + (1.0 - beta_2) * g * g
        s1[0] = m
        s2[0] = v
        step = lr / (sqrt(v / bias_2) + eps)
        effective_step[0] = step
        return w - step * (m / bias_1)
    effective_step[0] = lr
    return w - lr * g


cdef inline double clip_towards_zero(double w, double total, double received,
                                     double* received_out) noexcept nogil:
    """Cumulative L1 penalty for one weight: shrink by (total − received), never past 0."""
    cdef double new_w = w
    if w > 0.0:
        new_w = w - (total + received)
        if new_w < 0.0:
            new_w = 0.0
    elif w < 0.0:
        new_w = w + (total - received)
        if new_w > 0.0:
            new_w = 0.0
    received_out[0] = received + (new_w - w)
    return new_w


cdef void run_steps(
    const floating[:, ::1] X,
    const floating[::1] X_data,
    const index_t[::1] X_indices,
    const index_t[::1] X_indptr,
    bint is_sparse,
    const floating[::1] y_ordered,
    const floating[::1] weight_ordered,
    const cnp.intp_t[::1] order,
    floating[::1] coef,
    floating[::1] avg_coef,
    double[::1] l1_received,
    floating[::1] state_1,
    floating[::1] state_2,
    floating[::1] grad_buffer,
    double[::1] counters,
    int loss,
    double epsilon,
    double l2,
    double l1,
    int schedule,
    double eta0,
    double power_t,
    double optimal_t0,
    double alpha,
    int optimizer,
    double momentum,
    double beta_1,
    double beta_2,
    double opt_eps,
    bint fit_intercept,
    double average_start,
    Py_ssize_t start,
    Py_ssize_t stop,
) noexcept nogil:
    """Run steps ``start`` to ``stop`` of the epoch (rows ``order[start:stop]``).

    Everything carried from one step to the next lives in ``counters``
    (including the lazy scale and the loss sum), so running the steps in
    several calls, on any thread, gives bit for bit the result of one call.
    The call that reaches the end of ``order`` folds the scale into ``coef``.
    """
    cdef Py_ssize_t n_features = coef.shape[0]
    cdef Py_ssize_t n_steps = order.shape[0]
    cdef Py_ssize_t step_index, i, j, k, nnz, row_start
    cdef const floating* row = NULL
    cdef const index_t* columns = NULL
    cdef floating* w = &coef[0]
    cdef double scale = counters[SCALE]
    cdef double intercept = counters[INTERCEPT]
    cdef double t = counters[T]
    cdef double l1_total = counters[L1_TOTAL]
    cdef double n_averaged = counters[N_AVERAGED]
    cdef double n_updates = counters[N_UPDATES]
    cdef double avg_intercept = counters[AVG_INTERCEPT]
    cdef double p, dloss, eta, shrink, update, wj, bias_1, bias_2, effective_step, received
    cdef double loss_sum = counters[LOSS_SUM]
    cdef double mu
    cdef bint lazy = optimizer == SGD
    # An empty weight array means every weight is 1: nothing to read.
    cdef bint unit_weights = weight_ordered.shape[0] == 0
    cdef floating s

    for step_index in range(start, stop):
        if step_index + ROWS_AHEAD < stop:
            prefetch_row(X, X_data, X_indices, X_indptr, is_sparse,
                         order[step_index + ROWS_AHEAD])
        i = order[step_index]
        if is_sparse:
            row_start = X_indptr[i]
            nnz = X_indptr[i + 1] - row_start
            row = &X_data[row_start]
            columns = &X_indices[row_start]
            p = scale * sparse_dot(row, columns, nnz, w) + intercept
        else:
            nnz = n_features
            row = &X[i, 0]
            p = scale * dense_dot(row, w, n_features) + intercept
        s = 1.0 if unit_weights else weight_ordered[step_index]
        loss_sum += s * loss_value(loss, p, y_ordered[step_index], epsilon)
        dloss = s * loss_derivative(loss, p, y_ordered[step_index], epsilon)
        eta = learning_rate(schedule, eta0, power_t, optimal_t0, alpha, t)
        n_updates += 1.0

        if lazy:
            if l2 > 0.0:
                shrink = 1.0 - eta * l2
                if shrink <= 0.0:
                    # The step wipes the weights out entirely.
                    for j in range(n_features):
                        w[j] = 0
                    scale = 1.0
                else:
                    scale *= shrink
            update = -eta * dloss / scale
            if update != 0.0:
                if is_sparse:
                    for k in range(nnz):
                        w[columns[k]] += update * row[k]
                elif floating is double:
                    fastgd_axpy_double(update, row, w, n_features)
                else:
                    fastgd_axpy_float(update, row, w, n_features)
            if fit_intercept:
                intercept -= eta * dloss
            if l1 > 0.0:
                l1_total += eta * l1
                for k in range(nnz):
                    if row[k] == 0:
                        continue
                    j = columns[k] if is_sparse else k
                    wj = clip_towards_zero(scale * w[j], l1_total, l1_received[j], &received)
                    l1_received[j] = received
                    w[j] = wj / scale
        else:
            bias_1 = 1.0 - pow(beta_1, n_updates)
            bias_2 = 1.0 - pow(beta_2, n_updates)
            if is_sparse:
                for k in range(nnz):
                    grad_buffer[columns[k]] += dloss * row[k]
            else:
                for j in range(n_features):
                    grad_buffer[j] = dloss * row[j]
            if l1 > 0.0:
                l1_total += eta * l1
            for j in range(n_features):
                wj = coordinate_step(optimizer, w[j], grad_buffer[j] + l2 * w[j],
                                     &state_1[j], &state_2[j], eta, momentum, beta_1,
                                     beta_2, opt_eps, bias_1, bias_2, &effective_step)
                grad_buffer[j] = 0
                if l1 > 0.0:
                    wj = clip_towards_zero(wj, l1_total, l1_received[j], &received)
                    l1_received[j] = received
                w[j] = wj
            if fit_intercept:
                intercept = coordinate_step(optimizer, intercept, dloss,
                                            &state_1[n_features], &state_2[n_features],
                                            eta, momentum, beta_1, beta_2, opt_eps,
                                            bias_1, bias_2, &effective_step)

        if average_start > 0.0 and t >= average_start:
            # Running mean of the weights: avg ← avg + (w − avg) / n.
            n_averaged += 1.0
            mu = 1.0 / n_averaged
            for j in range(n_features):
                avg_coef[j] += mu * (scale * w[j] - avg_coef[j])
            avg_intercept += mu * (intercept - avg_intercept)

        if scale < MIN_SCALE:
            for j in range(n_features):
                w[j] *= scale
            scale = 1.0
        t += 1.0

    if stop == n_steps and scale != 1.0:
        # End of the epoch: fold the lazy scale into the weights.
        for j in range(n_features):
            w[j] *= scale
        scale = 1.0

    counters[INTERCEPT] = intercept
    counters[AVG_INTERCEPT] = avg_intercept
    counters[T] = t
    counters[L1_TOTAL] = l1_total
    counters[N_AVERAGED] = n_averaged
    counters[N_UPDATES] = n_updates
    counters[SCALE] = scale
    counters[LOSS_SUM] = loss_sum


def sgd_epoch(
    const floating[:, ::1] X,
    const floating[::1] X_data,
    const index_t[::1] X_indices,
    const index_t[::1] X_indptr,
    bint is_sparse,
    const floating[::1] y_ordered,
    const floating[::1] weight_ordered,
    const cnp.intp_t[::1] order,
    floating[::1] coef,
    floating[::1] avg_coef,
    double[::1] l1_received,
    floating[::1] state_1,
    floating[::1] state_2,
    floating[::1] grad_buffer,
    double[::1] counters,
    int loss,
    double epsilon,
    double l2,
    double l1,
    int schedule,
    double eta0,
    double power_t,
    double optimal_t0,
    double alpha,
    int optimizer,
    double momentum,
    double beta_1,
    double beta_2,
    double opt_eps,
    bint fit_intercept,
    double average_start,
):
    """Run one epoch of per-sample SGD in place; return Σ sᵢ·ℓ(pᵢ, yᵢ).

    Parameters
    ----------
    X : memoryview of shape (n, d), C-contiguous
        Dense samples (ignored, may be empty, when ``is_sparse``).
    X_data, X_indices, X_indptr : memoryviews
        CSR samples (ignored, may be empty, when not ``is_sparse``).
    is_sparse : bool
        Which of the two representations holds the samples.
    y_ordered, weight_ordered : memoryviews of shape (n_steps,)
        Target and sample weight of each visited row, in visiting order
        (``y[order]``, ``sample_weight[order]``): read sequentially, they cost
        no cache misses, unlike ``y[order[k]]``. An empty ``weight_ordered``
        means every weight is 1.
    order : memoryview of shape (n_steps,)
        Row indices in visiting order.
    coef : memoryview of shape (d,)
        Weights, updated in place.
    avg_coef : memoryview of shape (d,)
        Averaged weights (used when ``average_start > 0``).
    l1_received : memoryview of shape (d,)
        Cumulative L1 penalty each weight has received (when ``l1 > 0``).
    state_1, state_2 : memoryviews of shape (d + 1,)
        Optimizer state; the last slot belongs to the intercept.
    grad_buffer : memoryview of shape (d,)
        Zero-filled scratch space (left zero-filled on return).
    counters : memoryview of shape (8,)
        Scalars carried between steps (slots in :mod:`fastgd._kernels.runtime.codes`):
        intercept, averaged intercept, t, cumulative L1 total, number of
        averaged steps, number of optimizer steps (all carried between
        epochs too), then the lazy L2 scale and the loss sum of the epoch
        (reset by this function).
    loss, schedule, optimizer : int
        Codes from :mod:`fastgd._kernels.runtime.codes`.
    epsilon : float
        Width of the Huber / epsilon-insensitive losses.
    l2, l1 : float
        Penalty strengths, ``alpha·(1 − l1_ratio)`` and ``alpha·l1_ratio``.
    eta0, power_t, optimal_t0, alpha : float
        Learning-rate schedule constants (``eta0`` is the current rate of
        the constant and adaptive schedules).
    momentum, beta_1, beta_2, opt_eps : float
        Optimizer constants.
    fit_intercept : bool
        Whether the intercept is learned.
    average_start : float
        Averaging starts at step ``t ≥ average_start``; 0 disables it.
    """
    counters[SCALE] = 1.0
    counters[LOSS_SUM] = 0.0
    with nogil:
        run_steps(X, X_data, X_indices, X_indptr, is_sparse, y_ordered, weight_ordered, order,
                  coef, avg_coef, l1_received, state_1, state_2, grad_buffer, counters,
                  loss, epsilon, l2, l1, schedule, eta0, power_t, optimal_t0, alpha,
                  optimizer, momentum, beta_1, beta_2, opt_eps, fit_intercept, average_start,
                  0, order.shape[0])
    return counters[LOSS_SUM]


cdef double warm_block(const floating[:, ::1] X, const floating[::1] X_data,
                       const index_t[::1] X_indices, const index_t[::1] X_indptr,
                       bint is_sparse, const cnp.intp_t[::1] order,
                       Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """Load rows ``order[start:stop]`` into this core's cache; return a sum of them.

    One load per cache line (prefetches alone can be dropped when the
    memory system is busy); the caller keeps the sum so the loads stay.
    """
    cdef double sink = 0.0
    cdef Py_ssize_t k, offset, first, last
    cdef Py_ssize_t values_per_line = CACHE_LINE_BYTES // sizeof(floating)
    cdef Py_ssize_t indices_per_line = CACHE_LINE_BYTES // sizeof(index_t)
    for k in range(start, stop):
        if k + ROWS_AHEAD < stop:
            prefetch_row(X, X_data, X_indices, X_indptr, is_sparse, order[k + ROWS_AHEAD])
        if is_sparse:
            first = X_indptr[order[k]]
            last = X_indptr[order[k] + 1]
            offset = first
            while offset < last:
                sink += X_data[offset]
                offset += values_per_line
            offset = first
            while offset < last:
                sink += X_indices[offset]
                offset += indices_per_line
        else:
            offset = 0
            while offset < X.shape[1]:
                sink += X[order[k], offset]
                offset += values_per_line
    return sink


def sgd_epoch_share(
    cnp.int64_t[::1] flags,
    Py_ssize_t block_rows,
    const floating[:, ::1] X,
    const floating[::1] X_data,
    const index_t[::1] X_indices,
    const index_t[::1] X_indptr,
    bint is_sparse,
    const floating[::1] y_ordered,
    const floating[::1] weight_ordered,
    const cnp.intp_t[::1] order,
    floating[::1] coef,
    floating[::1] avg_coef,
    double[::1] l1_received,
    floating[::1] state_1,
    floating[::1] state_2,
    floating[::1] grad_buffer,
    double[::1] counters,
    int loss,
    double epsilon,
    double l2,
    double l1,
    int schedule,
    double eta0,
    double power_t,
    double optimal_t0,
    double alpha,
    int optimizer,
    double momentum,
    double beta_1,
    double beta_2,
    double opt_eps,
    bint fit_intercept,
    double average_start,
):
    """One thread's part of a per-sample epoch shared by threads.

    Every thread sharing the epoch calls this with the same arguments (those
    of :func:`sgd_epoch`, after ``flags`` and ``block_rows``). The epoch is
    cut into blocks of ``block_rows`` consecutive steps, run in order. A
    thread takes the next block (``BLOCKS_CLAIMED``), loads its rows into
    its own cache while the other thread runs the block before, and runs it
    as soon as that block is done, then hands over. The steps run one after
    the other, as on one thread, so the result is bit for bit that of
    :func:`sgd_epoch`; what the second thread adds is a second core loading
    rows (see :mod:`fastgd._engine.linear_epochs`).

    A block starts by a compare-and-swap on ``BLOCKS_STARTED``, so that when
    a block could run but its thread has not started it within
    ``STEAL_AFTER_TICKS`` (the thread is descheduled on a busy machine), the
    waiting thread runs it instead, from main memory. Until then a waiting
    thread spins without yielding: on a busy machine a yield hands the core
    to another process for a whole time slice. Past it, a thread still
    waiting (for a block the other thread is running) yields at every round.

    ``flags`` is a zeroed int64 array with the slots ``BLOCKS_CLAIMED``,
    ``BLOCKS_STARTED`` and ``BLOCKS_DONE``; the caller sets
    ``counters[SCALE] = 1`` and ``counters[LOSS_SUM] = 0`` first.

    Returns
    -------
    n_blocks : int
        How many blocks this thread ran.
    sink : float
        The sum of the values loaded by the warm-up, meaningless; returned
        only so that the compiler keeps the loads.
    """
    cdef Py_ssize_t n_steps = order.shape[0]
    cdef Py_ssize_t n_blocks = (n_steps + block_rows - 1) // block_rows
    cdef Py_ssize_t mine, runnable, start
    cdef Py_ssize_t n_run = 0
    cdef cnp.int64_t waiting_since
    cdef bint patient
    cdef double sink = 0.0
    with nogil:
        while True:
            mine = fastgd_fetch_add(&flags[BLOCKS_CLAIMED], 1)
            if mine >= n_blocks:
                break
            start = mine * block_rows
            sink += warm_block(X, X_data, X_indices, X_indptr, is_sparse, order, start,
                               min(start + block_rows, n_steps))
            waiting_since = fastgd_ticks()
            patient = True
            while True:
                runnable = fastgd_load(&flags[BLOCKS_DONE])
                if runnable > mine:
                    break  # the other thread ran this block
                if ((runnable == mine or not patient)
                        and fastgd_compare_exchange(&flags[BLOCKS_STARTED], runnable,
                                                    runnable + 1)):
                    start = runnable * block_rows
                    run_steps(X, X_data, X_indices, X_indptr, is_sparse, y_ordered,
                              weight_ordered, order, coef, avg_coef, l1_received, state_1,
                              state_2, grad_buffer, counters, loss, epsilon, l2, l1, schedule,
                              eta0, power_t, optimal_t0, alpha, optimizer, momentum, beta_1,
                              beta_2, opt_eps, fit_intercept, average_start,
                              start, min(start + block_rows, n_steps))
                    fastgd_store(&flags[BLOCKS_DONE], runnable + 1)
                    n_run += 1
                    waiting_since = fastgd_ticks()
                    patient = True
                elif patient:
                    fastgd_spin_pause()
                    patient = fastgd_ticks() - waiting_since < STEAL_AFTER_TICKS
                else:
                    sched_yield()
    return n_run, sink
