"""Mini-batch and full-batch gradient descent for linear models (Numba).

One call of :func:`batch_epoch` runs one epoch: the rows, in the order given
by ``rows.order``, are cut into consecutive batches of ``rows.batch_size`` rows; for
each batch the kernel computes the mean gradient

    g = (Σᵢ sᵢ ∂ℓ(pᵢ, yᵢ)/∂p · [xᵢ, 1]) / Σᵢ sᵢ + l2 · [w, 0]

and hands it to the shared optimizer rule (:mod:`fastgd._kernels.common.optimizers`).
The parameters live in one flat buffer ``params = [w₀ … w_{d−1}, b]``. The
arguments are the structures of :mod:`fastgd._kernels.linear.arguments`
(:class:`~fastgd._kernels.linear.arguments.BatchRows`: ``y`` and
``sample_weight`` indexed by row number, like X; an empty ``sample_weight``
means every weight is 1, and then costs no memory traffic).

Rows of a batch are split into fixed chunks of ``CHUNK_ROWS`` rows; each
chunk writes its own partial gradient, and the partials are summed in chunk
order. Large batches run their chunks in parallel (small ones on one thread,
see :data:`~fastgd._kernels.runtime.tuning.PARALLEL_MIN_WORK`; mini-batch
epochs can also share their chunks between two threads, see
:mod:`fastgd._kernels.linear.minibatch_two_threads`); the result does not depend on the
number of threads.

Variants: each kernel that branches on the kind of rows (dense or CSR) or of
step (plain SGD, or any other optimizer, L1, averaging) is compiled once per
kind, from one body that reads the constant :data:`SPARSE_ROWS` or
:data:`PLAIN_SGD`; Numba drops the branches a constant rules out, so a first
fit compiles only its own loops (issue 12: the cold first fit). The Python
functions :func:`batch_gradient` and :func:`batch_epoch` pick the variant of
their arguments (:func:`row_kind`, :func:`step_kind`).

L1: with ``l1_proximal`` (full batch) every step ends with a proximal
soft-threshold (ISTA), so the iterates reach the exact elastic-net optimum
with exact zeros; otherwise (mini-batch) the cumulative penalty of
Tsuruoka et al. (2009) clips every weight after each step.
"""

from fastgd._kernels.common.optimizers import optimizer_step, plain_sgd_step
from fastgd._kernels.linear.losses import loss_derivative, loss_value
from fastgd._kernels.linear.sgd_numba import (
    clip_towards_zero,
    dense_dot,
    learning_rate,
    prefetch_row,
    sparse_dot,
)
from fastgd._kernels.runtime.codes import L1_TOTAL, N_AVERAGED, N_UPDATES, SGD, T
from fastgd._kernels.runtime.numba_setup import (
    KERNEL_OPTIONS,
    LEAF_KERNEL_OPTIONS,
    any_size_and_serial,
    compiled_per_kind,
    compiled_twin,
    numba,
    parallel_and_serial,
)
from fastgd._kernels.runtime.prefetch import prefetch_element
from fastgd._kernels.runtime.tuning import (
    BATCH_ROWS_AHEAD,
    CHUNK_ROWS,
    PARALLEL_MIN_WORK,
    PARTIAL_ROW_PADDING,
)

# Read by the kernel bodies below and rebound in each compiled variant (see
# numba_setup.twin); these module values are never compiled.
SPARSE_ROWS = False  # the rows are CSR (else dense)
PLAIN_SGD = False  # every step is plain SGD: no other optimizer, no L1, no averaging

# kind -> the constants its variants are compiled with
ROW_KINDS = {"dense": {"SPARSE_ROWS": False}, "csr": {"SPARSE_ROWS": True}}
STEP_KINDS = {"sgd": {"PLAIN_SGD": True}, "general": {"PLAIN_SGD": False}}


def row_kind(rows):
    """``"csr"`` or ``"dense"``: the kind of rows of ``rows`` (a BatchRows)."""
    return "csr" if rows.is_sparse else "dense"


def step_kind(settings):
    """``"sgd"`` if every step is plain SGD (no L1, no averaging), else ``"general"``."""
    plain = settings.optimizer == SGD and settings.l1 <= 0.0 and settings.average_start <= 0.0
    return "sgd" if plain else "general"


@numba.njit(**KERNEL_OPTIONS)
def n_chunks_for(batch_size):
    """Rows of a batch are processed in this many chunks (for buffer sizing)."""
    return max(1, -(-batch_size // CHUNK_ROWS))


def partials_shape(batch_size, n_features):
    """Shape of the ``partials`` scratch buffer for batches of ``batch_size`` rows."""
    return n_chunks_for(batch_size), n_features + 1 + PARTIAL_ROW_PADDING


@numba.njit(inline="always", **KERNEL_OPTIONS)
def may_run_in_parallel(batch_size, n_params):
    """Whether :func:`batch_gradient` runs a batch of this size in parallel."""
    return batch_size * n_params >= PARALLEL_MIN_WORK


def chunk_gradient(rows, start, stop, prefetch_from, params, settings, partial):
    """Σ over rows ``order[start:stop]`` of sᵢ·dℓᵢ·[xᵢ, 1] into ``partial``; return Σ sᵢ·ℓᵢ.

    Compiled per kind of rows: :data:`CHUNK_GRADIENT`.

    Rows are prefetched ``BATCH_ROWS_AHEAD`` positions ahead in ``order``; past
    ``stop`` the prefetch carries on at position ``prefetch_from``, where the
    caller expects to continue (only a hint: it never changes the result).

    Compiled with reassociation: the dot products and the gradient sum are
    vectorised.
    """
    X, X_data, X_indices, X_indptr = (
        rows.dense,
        rows.data,
        rows.indices,
        rows.indptr,
    )
    order, y, sample_weight = rows.order, rows.y, rows.sample_weight
    loss, epsilon = settings.loss, settings.epsilon
    n_features = params.shape[0] - 1
    w = params[:n_features]
    intercept = params[n_features]
    partial[: n_features + 1] = 0
    loss_sum = 0.0
    unit_weights = sample_weight.shape[0] == 0
    one = sample_weight.dtype.type(1.0)
    for k in range(start, stop):
        ahead = k + BATCH_ROWS_AHEAD
        if ahead >= stop:
            ahead += prefetch_from - stop
        if ahead < order.shape[0]:
            prefetch_row(rows, order[ahead])
            prefetch_element(y, order[ahead])
            if not unit_weights:
                prefetch_element(sample_weight, order[ahead])
        i = order[k]
        if SPARSE_ROWS:
            p = sparse_dot(X_data, X_indices, X_indptr[i], X_indptr[i + 1], w) + intercept
        else:
            p = dense_dot(X, i, w) + intercept
        s = one if unit_weights else sample_weight[i]
        loss_sum += s * loss_value(loss, p, y[i], epsilon)
        dloss = s * loss_derivative(loss, p, y[i], epsilon)
        if dloss == 0.0:
            continue
        if SPARSE_ROWS:
            for q in range(X_indptr[i], X_indptr[i + 1]):
                partial[X_indices[q]] += dloss * X_data[q]
        else:
            for j in range(n_features):
                partial[j] += dloss * X[i, j]
        partial[n_features] += dloss
    return loss_sum


# kind of rows -> compiled chunk_gradient
CHUNK_GRADIENT = compiled_per_kind(chunk_gradient, ROW_KINDS, LEAF_KERNEL_OPTIONS)


@numba.njit(**KERNEL_OPTIONS)
def reduce_chunks(rows, start, stop, params, settings, scratch):
    """Combine the chunk partials of the batch ``order[start:stop]`` into ``scratch.grad``.

    Sums the partials in chunk order (so the number of threads that computed
    them does not matter), divides by the batch's Σ sᵢ and adds the L2 term.
    Returns the batch's Σ sᵢ·ℓᵢ.
    """
    partials, chunk_losses, grad = scratch.partials, scratch.chunk_losses, scratch.grad
    sample_weight, order = rows.sample_weight, rows.order
    n_chunks = n_chunks_for(stop - start)
    n_params = params.shape[0]
    # Weighted mean: divide by Σ sᵢ over the batch (so that a sample of weight
    # 2 counts as that sample twice, exactly, in full-batch GD).
    weight_sum = float(stop - start)
    if sample_weight.shape[0] > 0:
        weight_sum = 0.0
        for k in range(start, stop):
            weight_sum += sample_weight[order[k]]
    inv_weight = 1.0 / weight_sum if weight_sum > 0.0 else 0.0
    for j in range(n_params):
        acc = 0.0
        for c in range(n_chunks):
            acc += partials[c, j]
        grad[j] = acc * inv_weight
    # The weights come first, then one intercept per output (n_classes).
    n_weights = n_params - settings.n_classes
    for j in range(n_weights):
        grad[j] += settings.l2 * params[j]
    if not settings.fit_intercept:
        grad[n_weights:] = 0.0
    loss_sum = 0.0
    for c in range(n_chunks):
        loss_sum += chunk_losses[c]
    return loss_sum


def _batch_gradient_body(rows, start, stop, params, settings, scratch):
    """Body of :func:`batch_gradient`, compiled parallel and serial per kind of rows."""
    n_chunks = n_chunks_for(stop - start)
    # The buffers are taken out of ``scratch`` before the loop: Numba's
    # parallel loops lose writes to an array reached through a named tuple.
    partials, chunk_losses = scratch.partials, scratch.chunk_losses
    for c in numba.prange(n_chunks):
        chunk_start = start + c * CHUNK_ROWS
        chunk_stop = min(chunk_start + CHUNK_ROWS, stop)
        chunk_losses[c] = chunk_gradient(
            rows, chunk_start, chunk_stop, chunk_stop, params, settings, partials[c]
        )
    return reduce_chunks(rows, start, stop, params, settings, scratch)


# The compiled bodies of _batch_gradient_body that _batch_gradient_any_size
# calls: rebound in each of its variants.
_batch_gradient_parallel = _batch_gradient_serial = None


def _batch_gradient_any_size(rows, start, stop, params, settings, scratch):
    """Body of the compiled :func:`batch_gradient`: in parallel for large batches."""
    if may_run_in_parallel(stop - start, params.shape[0]):
        return _batch_gradient_parallel(rows, start, stop, params, settings, scratch)
    return _batch_gradient_serial(rows, start, stop, params, settings, scratch)


def take_step(model, grad, settings):
    """One update of ``model.params`` along ``grad``: optimizer, L1 penalty, averaging.

    Advances the step counters in ``model.counters``. Compiled per kind of
    step (:data:`TAKE_STEP`): the plain-SGD variant takes the same update as
    :func:`~fastgd._kernels.common.optimizers.optimizer_step` does for plain
    SGD, and compiles no other rule, no L1 and no averaging.
    """
    params, counters = model.params, model.counters
    n_weights = params.shape[0] - settings.n_classes  # then one intercept per output
    t = counters[T]
    eta = learning_rate(settings, t)
    counters[N_UPDATES] += 1.0
    if PLAIN_SGD:
        plain_sgd_step(params, grad, eta)
    else:
        l1, l1_proximal = settings.l1, settings.l1_proximal
        optimizer_step(
            params,
            grad,
            model.state_1,
            model.state_2,
            eta,
            counters[N_UPDATES],
            settings.optimizer,
            settings.momentum,
            settings.beta_1,
            settings.beta_2,
            settings.optimizer_eps,
            l1 if l1_proximal else 0.0,
            n_weights,
        )
        if l1 > 0.0 and not l1_proximal:
            counters[L1_TOTAL] += eta * l1
            l1_total = counters[L1_TOTAL]
            l1_received = model.l1_received
            for j in range(n_weights):
                params[j], l1_received[j] = clip_towards_zero(params[j], l1_total, l1_received[j])
        if settings.average_start > 0.0 and t >= settings.average_start:
            counters[N_AVERAGED] += 1.0
            mu = 1.0 / counters[N_AVERAGED]
            avg_params = model.avg_params
            for j in range(params.shape[0]):
                avg_params[j] += mu * (params[j] - avg_params[j])
    counters[T] = t + 1.0


# kind of step -> compiled take_step
TAKE_STEP = compiled_per_kind(take_step, STEP_KINDS)


def batch_epoch_kernel(rows, model, scratch, settings):
    """Body of :func:`batch_epoch`, compiled per kind of rows and step, twice (see there)."""
    n_rows = rows.order.shape[0]
    loss_sum = 0.0
    for start in range(0, n_rows, rows.batch_size):
        stop = min(start + rows.batch_size, n_rows)
        loss_sum += batch_gradient(rows, start, stop, model.params, settings, scratch)
        take_step(model, scratch.grad, settings)
    return loss_sum


class BatchKernels:
    """The compiled variants of one family of batch kernels, and the choice between them.

    The family is given by its compiled ``chunk_gradient`` of each kind of
    rows (one output: :data:`CHUNK_GRADIENT`; softmax: that of
    :mod:`fastgd._kernels.linear.multinomial_numba`); the gradient and epoch
    bodies of this module are compiled around it, as twins named with
    ``suffix`` and the kinds, so that every variant has a cache entry of its
    own.

    Attributes
    ----------
    gradient_parallel, gradient_serial : dict
        Kind of rows -> the compiled gradient body, parallel or serial.
    gradient : dict
        Kind of rows -> the compiled :func:`batch_gradient` (parallel for
        large batches).
    epoch_any_size, epoch_serial : dict
        ``(kind of rows, kind of step)`` -> the compiled epoch; the serial
        one never reaches parallel code.
    """

    def __init__(self, suffix, chunk_gradients):
        self.gradient_parallel, self.gradient_serial, self.gradient = {}, {}, {}
        for rows in ROW_KINDS:
            variant = f"{suffix}_{rows}"
            self.gradient_parallel[rows], self.gradient_serial[rows] = parallel_and_serial(
                _batch_gradient_body, variant, chunk_gradient=chunk_gradients[rows]
            )
            self.gradient[rows] = compiled_twin(
                _batch_gradient_any_size,
                variant,
                _batch_gradient_parallel=self.gradient_parallel[rows],
                _batch_gradient_serial=self.gradient_serial[rows],
            )
        self.epoch_any_size, self.epoch_serial = {}, {}
        for rows in ROW_KINDS:
            for step in STEP_KINDS:
                kinds = (rows, step)
                self.epoch_any_size[kinds], self.epoch_serial[kinds] = any_size_and_serial(
                    batch_epoch_kernel,
                    "batch_gradient",
                    self.gradient_serial[rows],
                    suffix=f"{suffix}_{rows}_{step}",
                    batch_gradient=self.gradient[rows],
                    take_step=TAKE_STEP[step],
                )

    def dispatchers(self):
        """Every compiled variant (for ``fastgd compile`` and its reports)."""
        tables = (
            self.gradient_parallel,
            self.gradient_serial,
            self.gradient,
            self.epoch_any_size,
            self.epoch_serial,
        )
        return [dispatcher for table in tables for dispatcher in table.values()]

    def gradient_kernel(self, rows, batch_size, n_params):
        """The compiled gradient for ``rows`` and one batch of ``batch_size`` rows.

        Same arguments and results as :func:`batch_gradient`; only the kernel
        that runs is compiled.
        """
        if may_run_in_parallel(batch_size, n_params):
            return self.gradient_parallel[row_kind(rows)]
        return self.gradient_serial[row_kind(rows)]

    def epoch_kernel(self, rows, model, settings):
        """The compiled epoch for these arguments of :func:`batch_epoch`.

        When no batch is large enough for a parallel gradient, the epoch
        kernel never reaches the parallel code, which then is never compiled.
        """
        kinds = (row_kind(rows), step_kind(settings))
        if may_run_in_parallel(rows.batch_size, model.params.shape[0]):
            return self.epoch_any_size[kinds]
        return self.epoch_serial[kinds]


ONE_OUTPUT = BatchKernels("", CHUNK_GRADIENT)


def batch_gradient(rows, start, stop, params, settings, scratch):
    """Weighted-mean gradient of the penalised objective over rows ``rows.order[start:stop]``.

    Parameters
    ----------
    rows : BatchRows
    start, stop : int
        The batch is ``rows.order[start:stop]``.
    params : ndarray of shape (n_features + 1,)
        ``[w, b]`` at which the gradient is taken.
    settings : LinearSettings
    scratch : Scratch
        ``partials`` at least :func:`partials_shape` ``(stop - start, d)``;
        the gradient with respect to ``params`` is written to ``scratch.grad``.

    Returns
    -------
    loss_sum : float
        Σ sᵢ·ℓ(pᵢ, yᵢ) over the rows, at ``params``.
    """
    kernel = ONE_OUTPUT.gradient_kernel(rows, stop - start, params.shape[0])
    return kernel(rows, start, stop, params, settings, scratch)


def batch_epoch(rows, model, scratch, settings):
    """Run one epoch of mini-batch (or full-batch) GD in place.

    The arguments are the structures of :mod:`fastgd._kernels.linear.arguments`;
    the intercept is the last entry of ``model.params`` (the intercept slots
    of ``model.counters`` are unused). Each batch's gradient is that of
    :func:`batch_gradient` (in parallel for large batches); when no batch is
    large enough for that, the epoch runs a kernel that never reaches the
    parallel code, which then is never compiled.

    Returns
    -------
    loss_sum : float
        Σ sᵢ·ℓ(pᵢ, yᵢ) over the epoch, each batch at its pre-update parameters.
    """
    return ONE_OUTPUT.epoch_kernel(rows, model, settings)(rows, model, scratch, settings)


def gradient_kernel(rows, batch_size, n_params):
    """The compiled :func:`batch_gradient` for ``rows`` and one batch of ``batch_size`` rows.

    Same arguments and results as :func:`batch_gradient`; only the kernel
    that runs is compiled.
    """
    return ONE_OUTPUT.gradient_kernel(rows, batch_size, n_params)
