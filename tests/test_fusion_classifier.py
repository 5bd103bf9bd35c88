"""Tests of FusionClassifier: scikit-learn contract, behaviour on digits, errors."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastgd import FusionClassifier, stack_modalities
from fastgd.exceptions import DivergenceError
from fastgd.layers import AvgPool2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Reshape

_EXPECTED_FAILURES = {
    # Stochastic mini-batch training: a weight of 2 is not the same as a
    # repeated sample (the batches differ), as for scikit-learn's MLP.
    "check_sample_weight_equivalence_on_dense_data": "mini-batch SGD is stochastic",
}
# In float32, BLAS may round a row's matrix product differently depending on
# how many rows it multiplies at once (≈ 1e-7 relative), which is above the
# tolerance of this check; the float64 configuration below passes it.
_FLOAT32_FAILURES = {
    **_EXPECTED_FAILURES,
    "check_methods_subset_invariance": "float32 BLAS rounding depends on batch size",
}


def _two_branch():
    return FusionClassifier(
        branches=[
            ("first", [Dense(8, activation="relu")], [0]),
            ("all", [Dense(4, activation="tanh")], slice(None)),
        ],
        head=(Dense(8, activation="tanh"),),
        max_iter=30,
        random_state=0,
        dtype=np.float64,
    )


@parametrize_with_checks(
    [FusionClassifier(random_state=0), _two_branch()],
    expected_failed_checks=lambda est: (
        _FLOAT32_FAILURES if est.dtype == np.float32 else _EXPECTED_FAILURES
    ),
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
