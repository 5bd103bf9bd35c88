"""A row's prediction does not depend on the other rows of the call (issue 12).

scikit-learn's ``check_methods_subset_invariance`` (predictions of subsets
equal to the subsets of the predictions, to 1e-7) for both network
estimators in float32, and the same directly, bit for bit, on a conv model,
an MLP, a multi-task network and on the dense kernel predictions go through
(BLAS's products round a row differently depending on the other rows, so
predictions do not use them).
"""

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_linnerud
from sklearn.utils.estimator_checks import check_methods_subset_invariance

from fastgd import FusionClassifier, MultiTaskRegressor
from fastgd._kernels.network import native
from fastgd._kernels.runtime import codes
from fastgd.layers import Conv2D, Dense, Flatten, MaxPool2D, Reshape


@pytest.mark.parametrize(
    "estimator",
    [
        FusionClassifier(dtype=np.float32, random_state=0),
        FusionClassifier(
            branches=[
                (
                    "img",
                    [Reshape((1, 3)), Conv2D(4, (1, 2), activation="tanh"), Flatten()],
                    [0, 1, 2],
                ),
                ("all", [Dense(8, activation="sigmoid")], slice(None)),
            ],
            allow_overlap=True,
            dtype=np.float32,
            random_state=0,
        ),
        MultiTaskRegressor(dtype=np.float32, random_state=0),
    ],
    ids=["fusion-mlp", "fusion-conv", "multitask"],
)
def test_sklearn_subset_invariance_in_float32(estimator):
    check_methods_subset_invariance(type(estimator).__name__, estimator)


def test_conv_predictions_bit_identical_whatever_the_batch():
    X, y = load_digits(return_X_y=True)
    X = (X[:400] / 16.0).astype(np.float32)
    y = y[:400]
    clf = FusionClassifier(
        branches=[
            (
                "img",
                [Reshape((8, 8)), Conv2D(6, 3, activation="relu"), MaxPool2D(2), Flatten()],
                slice(None),
            ),
            ("flat", [Dense(16, activation="tanh")], slice(None)),
        ],
        allow_overlap=True,
        max_iter=2,
        random_state=0,
    ).fit(X, y)
    full = clf.predict_proba(X)
    rng = np.random.RandomState(0)
    for size in (1, 7, 64, 333):
        rows = rng.choice(len(X), size, replace=False)
        np.testing.assert_array_equal(clf.predict_proba(X[rows]), full[rows])


def _assert_rows_predicted_alone(predict, X, sizes=(1, 3, 7, 64, 333)):
    """predict(X[rows]) is bit for bit predict(X)[rows] for subsets and orders of rows."""
    full = predict(X)
    rng = np.random.RandomState(0)
    for size in sizes:
        rows = rng.choice(len(X), min(size, len(X)), replace=False)
        np.testing.assert_array_equal(predict(X[rows]), full[rows])
    reversed_rows = np.arange(len(X))[::-1]
    np.testing.assert_array_equal(predict(X[reversed_rows]), full[reversed_rows])


def test_mlp_predictions_bit_identical_whatever_the_batch():
    X, y = load_digits(return_X_y=True)
    X = (X[:400] / 16.0).astype(np.float32)
    clf = FusionClassifier(
        branches=[("x", [Dense(64, activation="relu"), Dense(32, activation="tanh")], slice(None))],
        max_iter=3,
        random_state=0,
    )
    clf.fit(X, y[:400])
    _assert_rows_predicted_alone(clf.predict_proba, X)


def test_multitask_predictions_bit_identical_whatever_the_batch():
    X, Y = load_linnerud(return_X_y=True)
    X = np.tile((X - X.mean(0)) / X.std(0), (20, 1)).astype(np.float32)
    Y = np.tile((Y - Y.mean(0)) / Y.std(0), (20, 1)).astype(np.float32)
    model = MultiTaskRegressor(
        hidden_layer_sizes=(16,), task_layer_sizes=(8,), max_iter=3, random_state=0
    ).fit(X, Y)
    _assert_rows_predicted_alone(model.predict, X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_in, n_out", [(1, 1), (3, 10), (64, 16), (100, 33), (784, 256)])
def test_dense_rows_kernel_matches_numpy_and_ignores_the_other_rows(dtype, n_in, n_out):
    rng = np.random.RandomState(n_in)
    X = rng.standard_normal((203, n_in)).astype(dtype)
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)

    def predict(rows, n_threads=1):
        out = np.empty((rows.shape[0], n_out), dtype)
        native.dense_rows_forward(np.ascontiguousarray(rows), W, b, out, codes.RELU, n_threads)
        return out

    reference = np.maximum(X.astype(np.float64) @ W.astype(np.float64) + b, 0.0)
    tolerance = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(predict(X), reference, rtol=tolerance, atol=tolerance * n_in)
    _assert_rows_predicted_alone(predict, X)
    np.testing.assert_array_equal(predict(X, n_threads=2), predict(X))


def test_dense_rows_kernel_rejects_mismatched_shapes():
    X, W = np.ones((4, 3)), np.ones((3, 2))
    with pytest.raises(ValueError, match="do not agree"):
        native.dense_rows_forward(X, W, np.ones(3), np.empty((4, 2)), codes.IDENTITY, 1)
    with pytest.raises(ValueError, match="do not agree"):
        native.dense_rows_forward(X, W, np.ones(2), np.empty((5, 2)), codes.IDENTITY, 1)
