"""A row's prediction does not depend on the other rows of the call (issue 12).

scikit-learn's ``check_methods_subset_invariance`` (predictions of subsets
equal to the subsets of the predictions, to 1e-7) for both network
estimators in float32, and the same directly, bit for bit, on a conv model.
"""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.utils.estimator_checks import check_methods_subset_invariance

from fastgd import FusionClassifier, MultiTaskRegressor
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
