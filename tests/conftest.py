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


def make_fusion_problem(n=120, seed=0):
    """20 float32 columns (16 "pixels" of a 4x4 image, then 4 others), a label from both."""
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, 20)).astype(np.float32)
    y = (X[:, 0] + X[:, 16] > 0).astype(int)
    return X, y
