"""The named structures the linear kernels take (both backends).

Every linear kernel takes its inputs as four structures, never as a long
positional list:

* the rows to visit: :class:`VisitedRows` for the per-sample kernels (targets
  and weights in visiting order), :class:`BatchRows` for the mini-batch and
  full-batch kernels (targets and weights by row number), both with the
  fields of :class:`Features` for the samples;
* the model state, :class:`LinearModel` (parameters, averages, optimizer
  moments, the L1 bookkeeping and the scalar ``counters``);
* the scratch space of one fit, :class:`Scratch`;
* the settings, :class:`LinearSettings` (loss, penalty, schedule and optimizer
  codes and constants).

Numba reads them as typed named tuples; the Cython kernels read the same
objects by field name. A new option is a new field, read by name where it is
used. :meth:`LinearSettings.make` gives every field the type the kernels were
compiled for, so that one compiled signature serves every call.

This module imports NumPy only, so that the Cython backend never imports Numba.
"""

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from fastgd._kernels.runtime.codes import N_COUNTERS, T


class Features(NamedTuple):
    """The samples, dense or CSR; the representation not in use is empty.

    Attributes
    ----------
    dense : ndarray of shape (n_samples, n_features), C-contiguous
        Dense samples, or an empty (0, 0) array.
    data, indices, indptr : ndarray
        CSR samples (``indices`` and ``indptr`` of one integer type, int32 or
        int64), or empty arrays.
    is_sparse : bool
        Which of the two holds the samples.
    """

    dense: np.ndarray
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    is_sparse: bool

    @classmethod
    def of(cls, X):
        """The features of a C-contiguous ndarray or a CSR matrix, without copying X."""
        if sp.issparse(X):
            indptr = X.indptr
            if indptr.dtype != X.indices.dtype:
                indptr = indptr.astype(X.indices.dtype)
            return cls(np.empty((0, 0), X.dtype), X.data, X.indices, indptr, True)
        empty_index = np.empty(0, np.int32)
        return cls(X, np.empty(0, X.dtype), empty_index, empty_index, False)


class VisitedRows(NamedTuple):
    """What a per-sample epoch visits: rows ``order``, their targets and weights in that order.

    Targets and weights in visiting order (``y[order]``) are read
    sequentially, where ``y[order[k]]`` would cost a cache miss per step.
    The samples' fields are those of :class:`Features` (flat, not nested:
    Numba's parallel loops take named tuples of arrays, not tuples of tuples).

    Attributes
    ----------
    dense, data, indices, indptr, is_sparse :
        The samples, as in :class:`Features`.
    order : ndarray of intp
        Row numbers in visiting order.
    y : ndarray of shape (n_steps,)
        Target of each visited row.
    weight : ndarray of shape (n_steps,) or (0,)
        Sample weight of each visited row; empty means every weight is 1.
    """

    dense: np.ndarray
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    is_sparse: bool
    order: np.ndarray
    y: np.ndarray
    weight: np.ndarray

    @classmethod
    def of(cls, features, order, y, weight):
        """The rows of ``features`` visited in ``order``."""
        return cls(**features._asdict(), order=order, y=y, weight=weight)


class BatchRows(NamedTuple):
    """What a mini-batch epoch visits: rows ``order`` cut into batches of ``batch_size``.

    Attributes
    ----------
    dense, data, indices, indptr, is_sparse :
        The samples, as in :class:`Features` (flat, as in :class:`VisitedRows`).
    order : ndarray of intp
        Row numbers in visiting order.
    y : ndarray of shape (n_samples,)
        Target of every row of X (indexed by row number).
    sample_weight : ndarray of shape (n_samples,) or (0,)
        Weight of every row of X; empty means every weight is 1 (then the
        kernels read no weights at all).
    batch_size : int
        Rows per batch (the last batch may be shorter).
    """

    dense: np.ndarray
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    is_sparse: bool
    order: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray
    batch_size: int

    @classmethod
    def of(cls, features, order, y, sample_weight, batch_size):
        """The rows of ``features`` visited in ``order``, ``batch_size`` at a time."""
        return cls(
            **features._asdict(),
            order=order,
            y=y,
            sample_weight=sample_weight,
            batch_size=int(batch_size),
        )


class LinearModel(NamedTuple):
    """Everything a linear model carries from one step to the next.

    Attributes
    ----------
    params : ndarray of shape (n_features + 1,)
        ``[w, b]``. The per-sample kernels update ``w`` and keep the
        intercept in ``counters`` during an epoch (in float64, so that an
        epoch split between threads rounds exactly as on one thread).
    avg_params : ndarray of shape (n_features + 1,)
        Averaged ``[w, b]`` (averaged SGD).
    l1_received : ndarray of shape (n_features,), float64
        Cumulative L1 penalty each weight has received (Tsuruoka et al.).
    state_1, state_2 : ndarray of shape (n_features + 1,)
        Optimizer moments (see :mod:`fastgd._kernels.common.optimizers`).
    counters : ndarray of shape (N_COUNTERS,), float64
        Scalars carried between steps; slots in :mod:`fastgd._kernels.runtime.codes`.
    """

    params: np.ndarray
    avg_params: np.ndarray
    l1_received: np.ndarray
    state_1: np.ndarray
    state_2: np.ndarray
    counters: np.ndarray

    @classmethod
    def zeros(cls, n_features, dtype, n_classes=1):
        """A model at step t = 1 with every parameter and moment 0.

        With ``n_classes`` > 1 (a multinomial model) ``params`` holds the
        weights of every class, row by row, then the ``n_classes`` intercepts.
        """
        counters = np.zeros(N_COUNTERS, dtype=np.float64)
        counters[T] = 1.0
        n_params = n_classes * (n_features + 1)
        return cls(
            params=np.zeros(n_params, dtype=dtype),
            avg_params=np.zeros(n_params, dtype=dtype),
            l1_received=np.zeros(n_classes * n_features, dtype=np.float64),
            state_1=np.zeros(n_params, dtype=dtype),
            state_2=np.zeros(n_params, dtype=dtype),
            counters=counters,
        )


class Scratch(NamedTuple):
    """Scratch space of one fit, allocated once.

    Attributes
    ----------
    grad : ndarray of shape (n_features + 1,)
        The gradient; the per-sample kernels need it zero-filled and leave it so.
    partials : ndarray of shape (n_chunks, row_length)
        The batch kernels' per-chunk gradient sums (see
        :func:`fastgd._kernels.linear.batch_numba.partials_shape`); (0, 0)
        for the per-sample kernels.
    chunk_losses : ndarray of shape (n_chunks,), float64
        The batch kernels' per-chunk loss sums; (0,) for the per-sample kernels.
    """

    grad: np.ndarray
    partials: np.ndarray
    chunk_losses: np.ndarray

    @classmethod
    def for_per_sample(cls, n_features, dtype):
        """Scratch space of the per-sample kernels."""
        return cls(
            np.zeros(n_features + 1, dtype=dtype),
            np.zeros((0, 0), dtype=dtype),
            np.zeros(0, dtype=np.float64),
        )

    @classmethod
    def for_batches(cls, n_features, partials_shape, dtype):
        """Scratch space of the batch kernels, given their ``partials_shape``."""
        return cls(
            np.zeros(n_features + 1, dtype=dtype),
            np.zeros(partials_shape, dtype=dtype),
            np.zeros(partials_shape[0], dtype=np.float64),
        )


class LinearSettings(NamedTuple):
    """How the linear kernels learn: loss, penalty, schedule and optimizer.

    Attributes
    ----------
    loss : int
        Loss code (:mod:`fastgd._kernels.runtime.codes`).
    epsilon : float
        Width of the Huber and epsilon-insensitive losses.
    l2, l1 : float
        Penalty strengths ``alpha·(1 − l1_ratio)`` and ``alpha·l1_ratio``.
    l1_proximal : bool
        Batch kernels: L1 by proximal (soft-threshold) steps, for full-batch
        GD; otherwise by the cumulative penalty.
    schedule : int
        Learning-rate schedule code.
    eta0 : float
        The rate of the constant schedule, the current rate of the adaptive
        one, the base of invscaling, the aggressiveness C of PA1 / PA2.
    power_t : float
        Exponent of invscaling.
    optimal_t0 : float
        Offset t₀ of the optimal schedule η = 1 / (α (t₀ + t − 1)).
    alpha : float
        The penalty's α (the optimal schedule uses it).
    optimizer : int
        Optimizer code.
    momentum, beta_1, beta_2, optimizer_eps : float
        Optimizer constants.
    fit_intercept : bool
        Whether the intercept is learned.
    average_start : float
        Averaging starts at step ``t ≥ average_start``; 0 disables it.
    n_classes : int
        1 for a model with one output; the number of classes of a
        multinomial (softmax) model, whose targets are class indices.
    """

    loss: int
    epsilon: float
    l2: float
    l1: float
    l1_proximal: bool
    schedule: int
    eta0: float
    power_t: float
    optimal_t0: float
    alpha: float
    optimizer: int
    momentum: float
    beta_1: float
    beta_2: float
    optimizer_eps: float
    fit_intercept: bool
    average_start: float
    n_classes: int

    @classmethod
    def make(cls, **fields):
        """Settings with every field converted to its declared type (int, float or bool).

        Raises
        ------
        TypeError
            If a field is missing or unknown.
        """
        missing = set(cls._fields) - set(fields)
        unknown = set(fields) - set(cls._fields)
        if missing or unknown:
            raise TypeError(f"LinearSettings: missing {sorted(missing)}, unknown {sorted(unknown)}")
        return cls(**{name: cls.__annotations__[name](fields[name]) for name in cls._fields})
