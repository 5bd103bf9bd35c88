"""Layer specifications: scikit-learn parameter protocol and shape checks."""

import numpy as np
import pytest
from sklearn.base import clone

from fastgd import layers as L
from fastgd._engine.layers_runtime import build_layer

ALL_LAYERS = [
    L.Dense(10, activation="relu"),
    L.Conv2D(8, (3, 5), stride=2, padding="same", activation="tanh"),
    L.MaxPool2D(3, stride=1),
    L.AvgPool2D((2, 2)),
    L.Flatten(),
    L.Dropout(0.25),
    L.Reshape((8, 8, 3), channels_last=True),
]


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=lambda layer: type(layer).__name__)
def test_get_set_params_and_clone(layer):
    params = layer.get_params()
    copy = clone(layer)
    assert copy is not layer and copy.get_params() == params
    if params:
        key = next(iter(params))
        copy.set_params(**{key: params[key]})
    assert repr(layer).startswith(type(layer).__name__ + "(")


@pytest.mark.parametrize(
    "spec, shape, out",
    [
        (L.Dense(5), (7,), (5,)),
        (L.Conv2D(4, 3), (2, 8, 9), (4, 6, 7)),
        (L.Conv2D(4, 3, padding="same"), (2, 8, 9), (4, 8, 9)),
        (L.Conv2D(4, 3, stride=2, padding="same"), (2, 8, 9), (4, 4, 5)),
        (L.Conv2D(4, (1, 3), stride=2), (2, 8, 9), (4, 4, 4)),
        (L.MaxPool2D(2), (3, 7, 8), (3, 3, 4)),
        (L.AvgPool2D(3, stride=1), (3, 7, 8), (3, 5, 6)),
        (L.Flatten(), (3, 2, 2), (12,)),
        (L.Reshape((4, 4)), (16,), (1, 4, 4)),
        (L.Reshape((2, 4, 4)), (32,), (2, 4, 4)),
        (L.Reshape((4, 4, 2), channels_last=True), (32,), (2, 4, 4)),
        (L.Dropout(0.5), (6,), (6,)),
    ],
)
def test_output_shapes(spec, shape, out):
    assert build_layer(spec, shape, "here").output_shape == out


@pytest.mark.parametrize(
    "spec, shape, match",
    [
        (L.Dense(0), (3,), "units must be a positive integer"),
        (L.Dense(3, activation="softplus"), (3,), "unknown activation"),
        (L.Dense(3), (2, 4, 4), "put Flatten"),
        (L.Conv2D(2, 3), (16,), "start the branch with Reshape"),
        (L.Conv2D(2, 5), (1, 4, 4), "kernel is larger than its"),
        (L.Conv2D(2, 3, padding="full"), (1, 4, 4), "padding must be"),
        (L.MaxPool2D(5), (1, 4, 4), "larger than its"),
        (L.MaxPool2D((2, 3)), (1, 4, 4), "explicit stride"),
        (L.Reshape((3, 3)), (10,), r"needs 9 values per sample but receives 10"),
        (L.Reshape((3, 3), channels_last=True), (9,), r"\(H, W, C\)"),
        (L.Dropout(1.0), (3,), r"rate must be in \[0, 1\)"),
        ("dense", (3,), "expected a layer from fastgd.layers"),
    ],
)
def test_bad_specs_name_the_layer(spec, shape, match):
    with pytest.raises(ValueError, match=match) as exc:
        build_layer(spec, shape, "Branch 'x', layer 2")
    assert str(exc.value).startswith("Branch 'x', layer 2")


def test_channels_last_column_permutation():
    layer = build_layer(L.Reshape((2, 3, 4), channels_last=True), (24,), "here")
    hwc = np.arange(24).reshape(2, 3, 4)
    perm = layer.column_permutation()
    np.testing.assert_array_equal(np.arange(24)[perm].reshape(4, 2, 3), hwc.transpose(2, 0, 1))
