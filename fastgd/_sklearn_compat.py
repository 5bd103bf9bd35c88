"""What fastgd takes from scikit-learn beyond its stable public API, in one module.

fastgd supports the scikit-learn versions that ``pyproject.toml`` names; CI runs
the tests that exercise this module on the lowest of them as well as on the
newest. Everything private or version-dependent that fastgd uses is here:

* ``Interval`` and ``StrOptions`` declare the estimators' ``_parameter_constraints``,
  which scikit-learn's ``_validate_params`` and estimator checks read. They
  live in the private ``sklearn.utils._param_validation``, which
  scikit-learn-compatible libraries rely on all the same (scikit-learn has no
  public equivalent); importing them from here keeps a move a one-line fix.
* :func:`check_sample_weight` validates ``sample_weight`` with public functions
  only (it replaces the private ``sklearn.utils.validation._check_sample_weight``).
* scikit-learn's callback API (``sklearn.callback``, experimental, 1.9 and
  later): ``CallbackSupportMixin`` and ``with_callbacks``, or None before 1.9
  (``HAS_SKLEARN_CALLBACKS`` says which).
"""

import numbers

import numpy as np
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_non_negative

try:
    from sklearn.callback import CallbackSupportMixin, with_callbacks
except ImportError:  # scikit-learn < 1.9
    CallbackSupportMixin = with_callbacks = None

HAS_SKLEARN_CALLBACKS = CallbackSupportMixin is not None

__all__ = [
    "HAS_SKLEARN_CALLBACKS",
    "CallbackSupportMixin",
    "Interval",
    "StrOptions",
    "check_sample_weight",
    "with_callbacks",
]


def check_sample_weight(sample_weight, X, *, dtype=None, ensure_non_negative=False):
    """Validate ``sample_weight`` for the samples of ``X``.

    Parameters
    ----------
    sample_weight : array-like of shape (n_samples,), float or None
        The weights; None means all ones, a number means that weight for
        every sample.
    X : array-like or sparse matrix of shape (n_samples, ...)
        The samples (only their number is read).
    dtype : {numpy.float32, numpy.float64} or None, default=None
        dtype of the result; None keeps a float32 or float64 array's dtype
        and makes anything else float64. Other dtypes give float64.
    ensure_non_negative : bool, default=False
        Raise if a weight is negative.

    Returns
    -------
    sample_weight : ndarray of shape (n_samples,)
        C-contiguous; the input itself when it already was one of the
        right dtype (never modified).

    Raises
    ------
    ValueError
        If the weights are not 1-D, not one per sample, not finite, all zero,
        or negative with ``ensure_non_negative``.
    """
    n_samples = X.shape[0] if hasattr(X, "shape") else len(X)
    float_dtypes = (np.float64, np.float32)
    if dtype is not None and np.dtype(dtype) not in map(np.dtype, float_dtypes):
        dtype = np.float64
    if sample_weight is None:
        return np.ones(n_samples, dtype=dtype or np.float64)
    if isinstance(sample_weight, numbers.Number):
        weights = np.full(n_samples, sample_weight, dtype=dtype or np.float64)
    else:
        weights = check_array(
            sample_weight,
            accept_sparse=False,
            ensure_2d=False,
            dtype=float_dtypes if dtype is None else dtype,
            order="C",
            input_name="sample_weight",
        )
        if weights.ndim != 1:
            raise ValueError(
                f"sample_weight must be a 1D array or a scalar, got a {weights.ndim}D "
                f"array; expected one weight per sample ({n_samples})."
            )
        if weights.shape != (n_samples,):
            raise ValueError(
                f"sample_weight has {weights.shape[0]} entries; expected one per "
                f"sample ({n_samples})."
            )
    if not np.any(weights):
        raise ValueError("sample_weight must contain at least one non-zero weight.")
    if ensure_non_negative:
        check_non_negative(weights, "`sample_weight`")
    return weights
