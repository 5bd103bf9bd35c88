"""The Embedding layer in the network estimators: categories, token sequences, errors."""

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.base
from network_gradients import finite_difference_gradients
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import OneHotEncoder

from fastgd import FusionClassifier, MultiTaskRegressor
from fastgd._engine.network import Network, SoftmaxCrossEntropyLoss
from fastgd.layers import ConcatPrevious, Dense, Dropout, Embedding

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def categories(n=6000, levels=300, seed=0):
    """Two categorical columns of ``levels`` codes each; the label adds an effect per code."""
    rng = np.random.RandomState(seed)
    codes = rng.randint(0, levels, size=(n, 2))
    effects = np.random.RandomState(99).standard_normal((2, levels))
    score = effects[0, codes[:, 0]] + effects[1, codes[:, 1]]
    return codes, (score > 0).astype(int)


def test_embedding_matches_one_hot_dense_with_far_fewer_weights_touched():
    codes, y = categories()
    levels = 300
    train, test = train_test_split(np.arange(len(y)), test_size=0.25, random_state=0)
    common = dict(max_iter=25, batch_size=32, learning_rate_init=3e-3, random_state=0)
    # One table for both columns: the second column's codes follow the first's.
    X_codes = (codes + [0, levels]).astype(np.float32)
    embedding = FusionClassifier(
        branches=[
            (
                "cat",
                [Embedding(2 * levels, 8, pooling=None), Dense(16, activation="relu")],
                slice(None),
            )
        ],
        **common,
    ).fit(X_codes[train], y[train])
    onehot = OneHotEncoder(sparse_output=False).fit(codes)
    X_onehot = onehot.transform(codes).astype(np.float32)
    dense = FusionClassifier(
        branches=[("cat", [Dense(16, activation="relu")], slice(None))], **common
    ).fit(X_onehot[train], y[train])
    emb_acc = embedding.score(X_codes[test], y[test])
    dense_acc = dense.score(X_onehot[test], y[test])
    assert dense_acc > 0.8
    assert emb_acc >= dense_acc - 0.02, (emb_acc, dense_acc)
    # Weights a step updates: the batch's codes × 8 against the whole first
    # layer of the one-hot model (2·levels × 16, all updated every step).
    state = embedding._trainer.workspace.branch_states[0][0]
    touched = state.row_grad[1] * 8
    assert touched <= 2 * 32 * 8
    assert dense._network.branch_layers[0][0].W.size >= 15 * touched


def test_token_sequences_with_padding_learn_with_every_pooling():
    # Padded sequences of token ids; the label: does token 7 occur.
    rng = np.random.RandomState(0)
    n, length, vocab = 600, 6, 20
    tokens = rng.randint(1, vocab, size=(n, length))
    lengths = rng.randint(1, length + 1, n)
    tokens[np.arange(length)[None, :] >= lengths[:, None]] = 0  # padding
    y = (tokens == 7).any(axis=1).astype(int)
    X = tokens.astype(np.float64)
    for pooling in ("sum", "mean", "max"):
        model = FusionClassifier(
            branches=[
                (
                    "text",
                    [
                        Embedding(vocab, 8, pooling=pooling, padding_idx=0),
                        Dense(16, activation="relu"),
                    ],
                    slice(None),
                )
            ],
            max_iter=60,
            learning_rate_init=1e-2,
            random_state=0,
        ).fit(X, y)
        assert model.score(X, y) > 0.9, pooling
        # The padding row is never trained: it keeps its initial values.
        table = model._network.branch_layers[0][0].W
        fresh = sklearn.base.clone(model)
        net = fresh._build_network(fresh._branch_specs(), [slice(None)], length, np.float32, 2)
        net.initialize(np.random.RandomState(0))
        np.testing.assert_array_equal(table[0], net.branch_layers[0][0].W[0])


def test_embedding_network_gradient_matches_finite_differences():
    rng = np.random.RandomState(0)
    for pooling in (None, "mean", "max"):
        net = Network(
            [
                (
                    "cat",
                    [Embedding(6, 3, pooling=pooling, padding_idx=5), Dense(4, activation="tanh")],
                    3,
                )
            ],
            "concat",
            [],
            3,
            None,
            np.float64,
        )
        net.initialize(rng)
        codes = rng.randint(0, 6, size=(5, 3)).astype(np.float64)
        targets = (rng.randint(0, 3, 5).astype(np.int64), np.ones(5))
        loss = SoftmaxCrossEntropyLoss(3)
        ws = net.make_workspace(5, True, np.random.default_rng(0))
        loss.make_buffers(5, net.dtype)
        scores = net.forward([codes], ws, 5, True)
        dscores = ws.dscores[:5]
        loss(scores, targets, dscores, 5)
        net.grads[:] = np.nan
        net.backward(dscores, ws, 5)
        # The table's gradient is row-sparse: scatter it into the flat layout.
        layer = net.branch_layers[0][0]
        rows, n_touched, G = ws.branch_states[0][0].row_grad
        start = net.param_offset(layer, "W")
        table_grad = np.zeros((6, 3))
        table_grad[rows[:n_touched]] = G[:n_touched]
        grads = net.grads.copy()
        grads[start : start + 18] = table_grad.ravel()
        assert np.isfinite(grads).all()
        numeric = finite_difference_gradients(net, loss, [codes], targets, np.arange(net.n_params))
        np.testing.assert_allclose(grads, numeric, rtol=1e-5, atol=1e-7, err_msg=str(pooling))
        assert (table_grad[5] == 0).all()  # padding gets no gradient


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            2.5,
            r"Branch 'cat', layer 0 \(Embedding\): Embedding codes must be integers in "
            r"\[0, 10\); column 1 of the branch holds 2.5",
        ),
        (10, r"codes must be integers in \[0, 10\); column 1 of the branch holds 10.0"),
        (-1, r"column 1 of the branch holds -1.0"),
    ],
)
def test_bad_codes_are_refused_at_fit_and_predict(bad, message):
    X = np.tile([[1.0, 2.0, 0.5]], (20, 1))
    X[:, 2] = np.arange(20)
    y = np.arange(20) % 2
    params = dict(
        branches=[("cat", [Embedding(10, 2, pooling=None)], [0, 1]), ("num", [Dense(2)], [2])],
        max_iter=2,
        random_state=0,
    )
    wrong = X.copy()
    wrong[3, 1] = bad
    with pytest.raises(ValueError, match=message):
        FusionClassifier(**params).fit(wrong, y)
    model = FusionClassifier(**params).fit(X, y)
    with pytest.raises(ValueError, match=message):
        model.predict(wrong)
    with pytest.raises(ValueError, match=message):
        model.predict(sp.csr_matrix(wrong))


@pytest.mark.parametrize(
    "layers, fusion, message",
    [
        ([Dense(3), Embedding(5, 2)], "concat", r"layer 1 \(Embedding\).*must be the first layer"),
        ([Dropout(0.1), Embedding(5, 2)], "concat", "must be the first layer"),
        (
            [Embedding(5, 2, pooling="avg")],
            "concat",
            "pooling must be 'mean', 'sum', 'max' or None",
        ),
        ([Embedding(5, 2, padding_idx=5)], "concat", r"padding_idx must be None or an integer in"),
        ([Embedding(0, 2)], "concat", "input_dim must be a positive integer"),
        ([Embedding(5, 2)], "serial", r"with fusion='serial' put ConcatPrevious\(\) after it"),
    ],
)
def test_bad_embedding_specifications(layers, fusion, message):
    X = np.tile([[1.0, 2.0]], (10, 1))
    y = np.arange(10) % 2
    branches = [("first", [Dense(2)], [0]), ("cat", layers, [1])]
    with pytest.raises(ValueError, match=message):
        FusionClassifier(branches=branches, fusion=fusion, max_iter=1).fit(X, y)


def test_embedding_in_serial_fusion_and_multitask():
    codes, y = categories(n=800, levels=10)
    X = np.c_[codes[:, 0], np.random.RandomState(0).standard_normal(800)].astype(np.float32)
    serial = FusionClassifier(
        branches=[
            ("num", [Dense(4, activation="tanh")], [1]),
            ("cat", [Embedding(10, 4, pooling=None), ConcatPrevious(), Dense(8)], [0]),
        ],
        fusion="serial",
        max_iter=20,
        random_state=0,
    ).fit(X, y)
    assert serial.score(X, y) > 0.7
    effect = np.random.RandomState(99).standard_normal((2, 10))[0, codes[:, 0]]
    Y = np.c_[effect, -effect]
    multitask = MultiTaskRegressor(
        branches=[("cat", [Embedding(10, 4, pooling=None)], [0])], max_iter=40, random_state=0
    ).fit(X, Y)
    assert multitask.score(X, Y) > 0.9


def test_embedding_reads_codes_from_sparse_x_like_dense_x():
    # Code 0 is an implicit zero of the sparse matrix.
    codes, y = categories(n=400, levels=6)
    X = np.c_[codes, np.zeros(400)].astype(np.float64)
    params = dict(
        branches=[("cat", [Embedding(6, 3, pooling="sum")], [0, 1]), ("rest", [Dense(2)], [2])],
        optimizer="sgd",
        max_iter=5,
        random_state=0,
        dtype=np.float64,
    )
    dense = FusionClassifier(**params).fit(X, y)
    sparse = FusionClassifier(**params).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.predict_proba(X), dense.predict_proba(X), rtol=1e-10)


def test_embedding_parameters_reach_grid_search():
    model = FusionClassifier(branches=[("cat", [Embedding(10, 2)], [0])])
    model.set_params(cat__0__output_dim=5, cat__0__pooling="max")
    layer = model.get_params()["cat__0"]
    assert (layer.output_dim, layer.pooling) == (5, "max")
