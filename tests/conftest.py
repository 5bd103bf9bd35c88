"""Shared fixtures and helpers for fastgd's tests."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_diabetes
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="session")
def diabetes():
    """scikit-learn's diabetes data with standardised features (float64)."""
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def make_linear_problem(n=60, d=7, density=1.0, seed=0, dtype=np.float64, noise=0.1):
    """A small random regression problem; sparse (CSR) when density < 1."""
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d)
    if density < 1.0:
        X[rng.rand(n, d) > density] = 0.0
    coef = rng.randn(d)
    y = X @ coef + 0.5 + noise * rng.randn(n)
    X = X.astype(dtype)
    return (sp.csr_matrix(X) if density < 1.0 else X), y.astype(dtype)
