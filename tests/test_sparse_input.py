"""Sparse X in the network estimators: same model as dense X, never densified."""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from fastgd import FusionClassifier, MultiTaskRegressor
from fastgd.layers import ConcatPrevious, Conv2D, Dense, Flatten, Reshape

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def text_and_numbers(n=160, seed=0):
    """40 sparse "word" columns, then 8 dense ones; a label from both."""
    rng = np.random.RandomState(seed)
    T = sp.random(n, 40, density=0.1, format="csr", random_state=rng)
    D = rng.standard_normal((n, 8))
    X = sp.hstack([T, sp.csr_matrix(D)]).tocsr()
    words = T[:, :20].sum(axis=1).A.ravel() - T[:, 20:].sum(axis=1).A.ravel()
    y = (words + D[:, 0] > 0).astype(int)
    return X, y


def assert_same_model(params, X, y):
    """Fit on sparse X and on X dense: the same loss curve and probabilities."""
    sparse = FusionClassifier(**params).fit(X, y)
    dense = FusionClassifier(**params).fit(X.toarray(), y)
    np.testing.assert_allclose(sparse.loss_curve_, dense.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(
        sparse.predict_proba(X), dense.predict_proba(X.toarray()), rtol=1e-10, atol=1e-12
    )
    return sparse


def branches(fusion):
    """A text branch (sparse first Dense), a dense branch and an image branch."""
    serial = fusion == "serial"
    join = [ConcatPrevious()] if serial else []
    return [
        ("text", [Dense(6, activation="relu")], slice(0, 40)),
        ("num", [Dense(4, activation="tanh")] + join, slice(40, 44)),
        (
            "img",
            [Reshape((1, 2, 2)), Conv2D(2, 1, activation="relu"), Flatten()] + join,
            slice(44, 48),
        ),
    ]


@pytest.mark.parametrize("fusion", ["concat", "late", "hybrid", "serial"])
def test_sparse_and_dense_input_give_the_same_model(fusion):
    # Plain SGD with an L2 penalty: the lazy row updates are the dense rule exactly.
    X, y = text_and_numbers()
    params = dict(
        branches=branches(fusion),
        fusion=fusion,
        head=() if fusion == "late" else (5,),
        optimizer="sgd",
        alpha=1e-2,
        learning_rate_init=0.1,
        batch_size=16,
        max_iter=4,
        random_state=0,
        dtype=np.float64,
    )
    sparse = assert_same_model(params, X, y)
    # Either model reads either format.
    np.testing.assert_allclose(
        sparse.predict_proba(X.toarray()), sparse.predict_proba(X), rtol=1e-10, atol=1e-12
    )
    assert sparse.loss_curve_[-1] < sparse.loss_curve_[0]


def test_multitask_sparse_and_dense_give_the_same_model():
    X, y = text_and_numbers()
    rng = np.random.RandomState(1)
    Y = np.c_[y + 0.1 * rng.standard_normal(len(y)), X[:, 41].toarray().ravel()]
    Y[::7, 1] = np.nan
    params = dict(
        branches=[
            ("text", [Dense(6, activation="relu")], slice(0, 40)),
            ("num", [Dense(4)], slice(40, 48)),
        ],
        optimizer="sgd",
        max_iter=3,
        batch_size=16,
        random_state=0,
        dtype=np.float64,
    )
    sparse = MultiTaskRegressor(**params).fit(X, Y)
    dense = MultiTaskRegressor(**params).fit(X.toarray(), Y)
    np.testing.assert_allclose(
        sparse.predict(X), dense.predict(X.toarray()), rtol=1e-10, atol=1e-10
    )
    np.testing.assert_allclose(sparse.loss_curve_, dense.loss_curve_, rtol=1e-12)


@pytest.mark.parametrize("to_format", [sp.csc_matrix, sp.coo_matrix, sp.csr_array])
def test_every_sparse_format_is_accepted_and_left_unchanged(to_format):
    X, y = text_and_numbers()
    params = dict(
        branches=[("text", [Dense(6)], slice(0, 40)), ("num", [Dense(3)], slice(40, 48))],
        max_iter=3,
        random_state=0,
    )
    reference = FusionClassifier(**params).fit(X, y)
    Xf = to_format(X)
    before = Xf.copy()
    model = FusionClassifier(**params).fit(Xf, y)
    np.testing.assert_allclose(model.predict_proba(Xf), reference.predict_proba(X), rtol=1e-5)
    assert model.score(Xf, y) == reference.score(X, y)
    assert type(Xf) is type(before) and (Xf != before).nnz == 0


def test_partial_fit_and_early_stopping_on_sparse_input():
    X, y = text_and_numbers(n=300)
    model = FusionClassifier(
        branches=[("all", [Dense(8, activation="relu")], slice(None))], random_state=0
    )
    for _ in range(5):
        model.partial_fit(X, y, classes=[0, 1])
    assert model.n_iter_ == 5 and model.loss_curve_[-1] < model.loss_curve_[0]
    stopped = FusionClassifier(
        early_stopping=True, n_iter_no_change=3, max_iter=50, random_state=0
    ).fit(X, y)
    assert max(stopped.validation_scores_) > 0.6


def test_lazy_adam_learns_like_dense_adam_and_leaves_unused_rows_alone():
    X, y = text_and_numbers(n=400)
    X = X.tolil()
    X[:, 5] = 0  # a word no document uses
    X = X.tocsr()
    X.eliminate_zeros()
    params = dict(
        branches=[
            ("text", [Dense(8, activation="relu")], slice(0, 40)),
            ("num", [Dense(4)], slice(40, 48)),
        ],
        max_iter=30,
        random_state=0,
        learning_rate_init=0.01,
    )
    sparse = FusionClassifier(**params).fit(X, y)
    dense = FusionClassifier(**params).fit(X.toarray(), y)
    # Lazy Adam differs from dense Adam, but learns as well.
    assert not np.allclose(sparse.predict_proba(X), dense.predict_proba(X.toarray()))
    assert sparse.score(X, y) >= dense.score(X.toarray(), y) - 0.03
    # Row 5 of the text branch's W never had a gradient: lazy Adam never moved it.
    untrained = FusionClassifier(**{**params, "max_iter": 1})
    untrained._validate_params()
    net = untrained._build_network(
        untrained._branch_specs(), [slice(0, 40), slice(40, 48)], 48, np.float32, 2
    )
    net.initialize(np.random.RandomState(0))
    layer = sparse._network.branch_layers[0][0]
    init = net.branch_layers[0][0].W
    np.testing.assert_array_equal(layer.W[5], init[5])
    assert not np.allclose(layer.W[6], init[6])


def test_nan_in_sparse_input_names_the_branch():
    X, y = text_and_numbers()
    X = X.copy()
    X.data[X.indices == 3] = np.nan
    model = FusionClassifier(
        branches=[("num", [Dense(3)], slice(40, 48)), ("text", [Dense(3)], slice(0, 40))],
        max_iter=1,
    )
    with pytest.raises(ValueError, match="columns of branch 'text'"):
        model.fit(X, y)


@pytest.mark.parametrize("join_after_dense", [False, True])
def test_a_later_serial_branch_can_read_sparse_columns(join_after_dense):
    # The previous branch's output joins the sparse columns at the first Dense
    # (its own rows are row-sparse, the previous part's rows dense) or after it.
    X, y = text_and_numbers()
    text = (
        [Dense(3, activation="relu"), ConcatPrevious(), Dense(4)]
        if join_after_dense
        else [Dense(3, activation="relu")]
    )
    params = dict(
        branches=[
            ("num", [Dense(3, activation="tanh")], slice(40, 48)),
            ("text", text, slice(0, 40)),
        ],
        fusion="serial",
        optimizer="sgd",
        alpha=1e-2,
        max_iter=3,
        batch_size=16,
        random_state=0,
        dtype=np.float64,
    )
    assert_same_model(params, X, y)


def test_memory_is_nnz_plus_weights_not_the_dense_matrix():
    # 200,000 × 2,000,000: dense float32 would take 1.6 TB. Two non-zeros a
    # row: a class word (column 0 or 1) and a random one.
    n, d = 200_000, 2_000_000
    rng = np.random.RandomState(0)
    y = rng.randint(0, 2, n)
    indices = np.empty(2 * n, dtype=np.int32)
    indices[0::2] = y
    indices[1::2] = rng.randint(2, d, n)
    X = sp.csr_matrix(
        (np.ones(2 * n, np.float32), indices, np.arange(0, 2 * n + 1, 2)), shape=(n, d)
    )
    model = FusionClassifier(
        branches=[("text", [Dense(2, activation="relu")], slice(None))],
        batch_size=1000,
        max_iter=1,
        random_state=0,
        alpha=1e-4,
    )
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        accuracy = model.score(X[:20_000], y[:20_000])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    weights = d * 2 * 4  # W in float32
    # Parameters, gradient, two optimizer moments, initialisation draws and
    # scratch: a small multiple of the weights, far below the 2 GiB limit.
    assert peak < 12 * weights + 40 * X.data.nbytes, peak / 2**20
    assert peak < 2**31
    assert accuracy > 0.95


def test_stack_modalities_with_a_sparse_part_is_sparse():
    from fastgd import stack_modalities

    rng = np.random.RandomState(0)
    images = rng.rand(30, 4, 4, 1).astype(np.float32)
    text = sp.random(30, 50, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    X, cols = stack_modalities({"image": images, "text": text})
    assert sp.issparse(X) and X.format == "csr" and X.dtype == np.float32
    assert cols == {"image": slice(0, 16), "text": slice(16, 66)}
    np.testing.assert_array_equal(X[:, cols["image"]].toarray(), images.reshape(30, -1))
    np.testing.assert_array_equal(X[:, cols["text"]].toarray(), text.toarray())
    dense, _ = stack_modalities({"image": images, "text": text.toarray()})
    np.testing.assert_array_equal(X.toarray(), dense)
    # The result trains a model (the image columns are gathered dense per batch).
    y = (X[:, 0].toarray().ravel() > 0.5).astype(int)
    model = FusionClassifier(
        branches=[
            (
                "image",
                [Reshape((4, 4, 1), channels_last=True), Conv2D(2, 3), Flatten()],
                cols["image"],
            ),
            ("text", [Dense(4)], cols["text"]),
        ],
        optimizer="sgd",
        max_iter=3,
        random_state=0,
        dtype=np.float64,
    )
    np.testing.assert_allclose(
        model.fit(X, y).predict_proba(X), clone_fit(model, dense, y).predict_proba(dense), rtol=1e-9
    )


def clone_fit(model, X, y):
    from sklearn.base import clone

    return clone(model).fit(X, y)


def test_digits_with_tfidf_captions_the_fused_model_beats_either_branch():
    # Noisy digit images and a short caption each (half of them name a random
    # digit), vectorised with TfidfVectorizer and fed sparse.
    from sklearn.datasets import load_digits
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import train_test_split

    from fastgd import stack_modalities
    from fastgd.layers import MaxPool2D

    images, y = load_digits(return_X_y=True)
    rng = np.random.RandomState(0)
    names = np.array("zero one two three four five six seven eight nine".split())
    said = np.where(rng.rand(len(y)) < 0.5, y, rng.randint(0, 10, len(y)))
    text = TfidfVectorizer().fit_transform([f"a handwritten {name}" for name in names[said]])
    noisy = images / 16 + 0.5 * rng.standard_normal(images.shape)
    X, cols = stack_modalities({"image": noisy, "text": text})
    assert sp.issparse(X)
    train, test = train_test_split(np.arange(len(y)), test_size=0.3, random_state=0, stratify=y)
    image = (
        "image",
        [Reshape((1, 8, 8)), Conv2D(8, 3, activation="relu"), MaxPool2D(2), Flatten()],
        cols["image"],
    )
    words = ("text", [Dense(16, activation="relu")], cols["text"])

    def held_out_accuracy(branches):
        model = FusionClassifier(branches=branches, max_iter=40, batch_size=32, random_state=0)
        return model.fit(X[train], y[train]).score(X[test], y[test])

    image_alone, text_alone = held_out_accuracy([image]), held_out_accuracy([words])
    both = held_out_accuracy([image, words])
    assert both > max(image_alone, text_alone) + 0.05, (both, image_alone, text_alone)


@pytest.mark.parametrize("alpha", [50.0, 200.0])
def test_plain_sgd_stays_exact_under_a_strong_l2_penalty(alpha):
    # lr·alpha/m = 0.31: the lazy scale falls below its floor within an epoch
    # and is folded in; 1.25: the shrink factor is negative, applied densely.
    X, y = text_and_numbers()
    params = dict(
        branches=[
            ("text", [Dense(6, activation="relu")], slice(0, 40)),
            ("num", [Dense(3)], slice(40, 48)),
        ],
        optimizer="sgd",
        alpha=alpha,
        learning_rate_init=0.1,
        batch_size=16,
        max_iter=2,
        random_state=0,
        dtype=np.float64,
        tol=None,
    )
    assert_same_model(params, X, y)


def test_float32_sparse_model_matches_dense_and_survives_pickling():
    import pickle

    X, y = text_and_numbers()
    X = X.astype(np.float32)
    params = dict(
        branches=branches("hybrid"),
        fusion="hybrid",
        head=(5,),
        optimizer="sgd",
        learning_rate_init=0.1,
        batch_size=16,
        max_iter=3,
        random_state=0,
    )
    sparse = FusionClassifier(**params).fit(X, y)
    dense = FusionClassifier(**params).fit(X.toarray(), y)
    proba = sparse.predict_proba(X)
    assert proba.dtype == dense.predict_proba(X.toarray()).dtype
    np.testing.assert_allclose(proba, dense.predict_proba(X.toarray()), rtol=1e-4, atol=1e-5)
    # partial_fit on sparse X continues identically after a pickle round trip.
    model = FusionClassifier(**params).partial_fit(X, y, classes=[0, 1])
    restored = pickle.loads(pickle.dumps(model))
    model.partial_fit(X, y)
    restored.partial_fit(X, y)
    np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))
