"""Engine tests: the network's backward pass against finite differences,
parameter layout, workspaces, pickling and the trainer."""

import pickle

import numpy as np
import pytest
from network_gradients import backward_gradients, finite_difference_gradients

from fastgd._engine.network import Network, SoftmaxCrossEntropyLoss
from fastgd._engine.network_training import NetworkTrainer
from fastgd._engine.training import TrainingHistory
from fastgd.exceptions import DivergenceError
from fastgd.layers import AvgPool2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Reshape

N_CLASSES = 3


def _branches():
    image = [
        Reshape((6, 6, 2), channels_last=True),  # folded into the column gather
        Conv2D(3, 3, padding="same", activation="tanh"),
        MaxPool2D(2),
        Conv2D(2, 2, stride=1, activation="sigmoid"),
        AvgPool2D(1),
        Flatten(),
    ]
    vector = [Dense(5, activation="tanh"), Dropout(0.0), Dense(4, activation="relu")]
    # A channels-last Reshape in the middle is a real transpose.
    late_reshape = [Dense(12, activation="tanh"), Reshape((2, 3, 2), channels_last=True), Flatten()]
    return [("image", image, 72), ("vector", vector, 7), ("mixed", late_reshape, 7), ("raw", [], 3)]


def _inputs(rng, n, perms):
    X = [rng.standard_normal((n, c)) for c in (72, 7, 7, 3)]
    return [
        x if p is None else np.ascontiguousarray(x[:, p]) for x, p in zip(X, perms, strict=False)
    ]


@pytest.mark.parametrize("fusion", ["concat", "late", "hybrid"])
def test_backward_matches_finite_differences(fusion):
    rng = np.random.RandomState(0)
    head = [Dense(6, activation="tanh")] if fusion != "late" else []
    net = Network(_branches(), fusion, head, N_CLASSES, None, np.float64)
    net.initialize(rng)
    if net.use_late:
        net.alpha[:] = rng.uniform(0.5, 1.5, size=net.n_branches)
    n = 5
    inputs = _inputs(rng, n, net.input_permutations)
    targets = (rng.randint(0, N_CLASSES, n).astype(np.int64), rng.uniform(0.5, 2, n))
    loss = SoftmaxCrossEntropyLoss(N_CLASSES)
    grads = backward_gradients(net, loss, inputs, targets)
    idx = rng.choice(net.n_params, size=min(net.n_params, 150), replace=False)
    if net.use_late:
        idx = np.union1d(idx, np.arange(net.alpha_offset, net.n_params))
    numeric = finite_difference_gradients(net, loss, inputs, targets, idx)
    np.testing.assert_allclose(grads[idx], numeric, rtol=1e-5, atol=1e-8)


def test_parameter_layout_penalized_first():
    net = Network(
        [("a", [Dense(4)], 3), ("b", [Reshape((1, 4, 4)), Conv2D(2, 3)], 16)],
        "late",
        [],
        2,
        None,
        np.float32,
    )
    # Weights: 3*4 + 2*1*3*3 + late outputs 4*2 + 8*2.
    assert net.n_penalized == 12 + 18 + 8 + 16
    # Biases 4 + 2 + 2 + 2, then 2 fusion weights.
    assert net.n_params == net.n_penalized + 10 + 2
    assert net.params.dtype == np.float32
    for layer in net._all_layers():
        if layer.trainable:
            assert np.shares_memory(layer.W, net.params)
            assert np.shares_memory(layer.dW, net.grads)


def test_pickle_rebinds_views():
    net = Network(
        [("a", [Dense(4, activation="relu")], 3)], "hybrid", [Dense(3)], 2, None, np.float64
    )
    net.initialize(np.random.RandomState(0))
    clone = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(clone.params, net.params)
    clone.params[:] = 0.0
    assert np.all(clone.branch_layers[0][0].W == 0.0)
    assert np.any(net.branch_layers[0][0].W != 0.0)


def test_forward_prediction_is_chunk_independent():
    net = Network([("a", [Dense(4, activation="relu")], 3)], "concat", [], 2, None, np.float64)
    net.initialize(np.random.RandomState(0))
    X = np.random.RandomState(1).standard_normal((50, 3))
    full = net.predict(X, [slice(None)])
    ws = net.make_workspace(7, False)
    part = net.forward([np.ascontiguousarray(X[:7])], ws, 7, False)
    np.testing.assert_allclose(part, full[:7], rtol=1e-12)


def _trainer(net, rs, **kwargs):
    params = dict(
        optimizer="adam",
        learning_rate=1e-2,
        batch_size=16,
        alpha=1e-4,
        target_dtypes=(np.int64, net.dtype),
        target_shapes=((), ()),
        random_state=rs,
    )
    params.update(kwargs)
    return NetworkTrainer(net, SoftmaxCrossEntropyLoss(net.n_outputs), **params)


def test_trainer_learns_and_does_not_allocate_new_buffers():
    rs = np.random.RandomState(0)
    X = rs.standard_normal((200, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    net = Network(
        [("a", [Dense(8, activation="tanh"), Dropout(0.1)], 4)], "concat", [], 2, None, np.float64
    )
    net.initialize(rs)
    trainer = _trainer(net, rs)
    buffers = [id(b) for b in trainer.workspace.inputs] + [id(trainer.state_1), id(net.params)]
    history = TrainingHistory(None, 10, False)
    trainer.fit([X], (y, np.ones(200)), history, 30)
    assert history.loss_curve[-1] < 0.5 * history.loss_curve[0]
    assert [id(b) for b in trainer.workspace.inputs] + [
        id(trainer.state_1),
        id(net.params),
    ] == buffers
    assert trainer.step_count == 30 * 13


def test_trainer_raises_on_divergence():
    rs = np.random.RandomState(0)
    X = rs.standard_normal((64, 4)) * 1e3
    y = rs.randint(0, 2, 64).astype(np.int64)
    net = Network([("a", [Dense(8)], 4)], "concat", [], 2, None, np.float32)
    net.initialize(rs)
    trainer = _trainer(net, rs, optimizer="sgd", learning_rate=1e6, alpha=0.0)
    with pytest.raises(DivergenceError):
        trainer.fit([X], (y, np.ones(64, dtype=np.float32)), TrainingHistory(None, 10, False), 20)


@pytest.mark.parametrize("trunk", [[], [Dense(5, activation="tanh")]])
def test_task_heads_and_masked_loss_match_finite_differences(trunk):
    from fastgd._engine.network import MaskedRegressionLoss
    from fastgd._kernels.runtime import codes

    rng = np.random.RandomState(0)
    n_tasks, n = 3, 6
    branches = [("a", [Dense(4, activation="relu")], 4), ("b", [Dense(3, activation="sigmoid")], 2)]
    heads = [[Dense(3, activation="tanh")], [], [Dense(2, activation="relu"), Dense(2)]]
    net = Network(branches, "concat", trunk, n_tasks, None, np.float64, task_heads=heads)
    net.initialize(rng)
    inputs = [rng.standard_normal((n, 4)), rng.standard_normal((n, 2))]
    y = rng.standard_normal((n, n_tasks))
    mask = (rng.rand(n, n_tasks) > 0.3).astype(np.float64)
    y[mask == 0] = np.nan  # never read
    loss = MaskedRegressionLoss(n_tasks, [1.0, 0.5, 2.0], codes.HUBER, huber_delta=0.7)
    grads = backward_gradients(net, loss, inputs, (y, mask))
    numeric = finite_difference_gradients(net, loss, inputs, (y, mask), range(net.n_params))
    np.testing.assert_allclose(grads, numeric, rtol=1e-5, atol=1e-8)


def _schedule_problem(seed=0):
    rs = np.random.RandomState(seed)
    X = rs.standard_normal((40, 4))
    y = (X[:, 0] - X[:, 2] > 0).astype(np.int64)
    net = Network([("a", [Dense(6, activation="tanh")], 4)], "concat", [], 2, None, np.float64)
    net.initialize(rs)
    return X, y, net


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_invscaling_uses_lr_over_t_to_the_power_t(optimizer):
    # Full batch, no shuffling: one update per epoch, so a constant-rate
    # trainer whose rate is set by hand before each epoch replays the schedule.
    X, y, net = _schedule_problem()
    ref = Network([("a", [Dense(6, activation="tanh")], 4)], "concat", [], 2, None, np.float64)
    ref.params[:] = net.params
    w = np.ones(40)
    lr0, power_t = 0.5, 0.7
    common = dict(optimizer=optimizer, learning_rate=lr0, batch_size=40, alpha=0.0)
    trainer = _trainer(
        net, np.random.RandomState(1), schedule="invscaling", power_t=power_t, **common
    )
    manual = _trainer(ref, np.random.RandomState(1), **common)
    rates = []
    trainer.fit(
        [X],
        (y, w),
        TrainingHistory(None, 10, False),
        6,
        shuffle=False,
        callbacks=[lambda target, report: rates.append(report.learning_rate)],
    )
    for t in range(1, 7):
        manual.learning_rate = lr0 / t**power_t
        manual.train_epoch([X], (y, w), shuffle=False)
    np.testing.assert_allclose(rates, [lr0 / t**power_t for t in range(1, 7)])
    np.testing.assert_array_equal(net.params, ref.params)


def test_adaptive_divides_by_five_on_each_plateau_and_stops_below_1e_6():
    # A huge tol: only the first epoch improves, so every n_iter_no_change=2
    # epochs is a plateau: 1e-3 → 2e-4 → … → 3.2e-7, which is below 1e-6 and
    # ends training at the next plateau (epoch 1 + 2·6 = 13).
    X, y, net = _schedule_problem()
    ref = Network([("a", [Dense(6, activation="tanh")], 4)], "concat", [], 2, None, np.float64)
    ref.params[:] = net.params
    w = np.ones(40)
    common = dict(optimizer="sgd", learning_rate=1e-3, batch_size=40, alpha=0.0)
    trainer = _trainer(net, np.random.RandomState(1), schedule="adaptive", **common)
    manual = _trainer(ref, np.random.RandomState(1), **common)
    rates = []
    n_epochs = trainer.fit(
        [X],
        (y, w),
        TrainingHistory(1e9, 2, False),
        100,
        shuffle=False,
        callbacks=[lambda target, report: rates.append(report.learning_rate)],
    )
    expected = [1e-3] * 3 + [1e-3 / 5**k for k in range(1, 6) for _ in range(2)]
    assert n_epochs == 13
    np.testing.assert_allclose(rates, expected)
    for rate in expected:
        manual.learning_rate = rate
        manual.train_epoch([X], (y, w), shuffle=False)
    np.testing.assert_array_equal(net.params, ref.params)


def test_constant_schedule_stops_at_the_first_plateau():
    X, y, net = _schedule_problem()
    trainer = _trainer(net, np.random.RandomState(1), optimizer="sgd", batch_size=40)
    n_epochs = trainer.fit([X], (y, np.ones(40)), TrainingHistory(1e9, 2, False), 100)
    assert n_epochs == 3
    assert trainer.current_learning_rate() == 1e-2


def test_unknown_schedule_is_named():
    X, y, net = _schedule_problem()
    with pytest.raises(ValueError, match="schedule 'cyclic'"):
        _trainer(net, np.random.RandomState(1), schedule="cyclic")


# -------------------------------------------------------------- trainer pickles
def _dropout_problem(batch_size=16, schedule="adaptive"):
    rs = np.random.RandomState(0)
    X = rs.standard_normal((120, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    net = Network(
        [("a", [Dense(8, activation="tanh"), Dropout(0.3)], 4)], "concat", [], 2, None, np.float64
    )
    net.initialize(rs)
    trainer = _trainer(net, rs, batch_size=batch_size, schedule=schedule)
    return X, (y, np.ones(120)), trainer


@pytest.mark.parametrize("schedule", ["constant", "invscaling", "adaptive"])
def test_unpickled_trainer_continues_bit_for_bit(schedule):
    # Adam's moments, the update count, the schedule's rate, the shuffling
    # RandomState and the dropout Generator all travel in the pickle.
    # (tol=1e9: every epoch is a plateau, where "adaptive" divides its rate.)
    X, targets, kept = _dropout_problem(schedule=schedule)
    kept.fit([X], targets, TrainingHistory(1e9, 1, False), 3)
    moved = pickle.loads(pickle.dumps(kept))
    assert moved.network is not kept.network
    assert moved.step_count == kept.step_count > 0
    assert moved.current_learning_rate() == kept.current_learning_rate()
    if schedule == "adaptive":
        assert moved.adaptive_rate < moved.learning_rate
    # the rebuilt scratch is bound to the unpickled network
    assert np.shares_memory(moved.pen_params, moved.network.params)
    assert moved.workspace.capacity == kept.batch_size
    for trainer in (kept, moved):
        trainer.fit([X], targets, TrainingHistory(None, 10, False), 3)
    np.testing.assert_array_equal(moved.network.params, kept.network.params)
    np.testing.assert_array_equal(moved.state_1, kept.state_1)
    np.testing.assert_array_equal(moved.state_2, kept.state_2)
    # Control: a new trainer on the same weights (fresh optimizer) goes elsewhere.
    X, targets, control = _dropout_problem(schedule=schedule)
    control.fit([X], targets, TrainingHistory(1e9, 1, False), 3)
    restarted = _trainer(
        pickle.loads(pickle.dumps(control.network)), control.random_state, schedule=schedule
    )
    restarted.fit([X], targets, TrainingHistory(None, 10, False), 3)
    assert not np.array_equal(restarted.network.params, kept.network.params)


def test_trainer_pickle_leaves_out_the_per_batch_buffers():
    sizes = {}
    for batch_size in (16, 4096):
        X, targets, trainer = _dropout_problem(batch_size=batch_size)
        trainer.fit([X], targets, TrainingHistory(None, 10, False), 1)
        sizes[batch_size] = len(pickle.dumps(trainer))
    # 4096 rows of workspace would be hundreds of kilobytes.
    assert abs(sizes[4096] - sizes[16]) < 64, sizes
    restored = pickle.loads(pickle.dumps(trainer))
    assert restored.workspace.inputs[0].shape == (4096, 4)
    assert restored.target_buffers[0].shape == (4096,)
    assert restored.loss.proba.shape == (4096, 2)


def _unfused_copy(net):
    """The same network with every Conv2D → MaxPool2D computed as two layers."""
    other = pickle.loads(pickle.dumps(net))
    for layer in other._all_layers():
        if getattr(layer, "pool", None) is not None:
            layer.pool.fused = False
            layer.pool = None
    return other


def test_fused_conv_pool_matches_the_unfused_layers():
    rng = np.random.RandomState(3)
    net = Network(_branches(), "concat", [Dense(6, activation="tanh")], N_CLASSES, None, np.float64)
    net.initialize(rng)
    fused = [layer for layer in net._all_layers() if getattr(layer, "pool", None) is not None]
    assert len(fused) == 1  # Conv2D(3) → MaxPool2D(2); not Conv2D(2) → AvgPool2D
    unfused = _unfused_copy(net)
    n = 7
    inputs = _inputs(rng, n, net.input_permutations)
    targets = (rng.randint(0, N_CLASSES, n).astype(np.int64), rng.uniform(0.5, 2, n))
    loss = SoftmaxCrossEntropyLoss(N_CLASSES)
    for training in (False, True):
        scores = [
            m.forward(inputs, m.make_workspace(n, training, np.random.default_rng(0)), n, training)
            for m in (net, unfused)
        ]
        np.testing.assert_array_equal(scores[0], scores[1])
    np.testing.assert_allclose(
        backward_gradients(net, loss, inputs, targets),
        backward_gradients(unfused, loss, inputs, targets),
        rtol=1e-12,
        atol=1e-14,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predictions_do_not_depend_on_the_rest_of_the_batch(dtype):
    rng = np.random.RandomState(0)
    net = Network(_branches(), "hybrid", [Dense(6, activation="relu")], N_CLASSES, None, dtype)
    net.initialize(rng)
    X = rng.standard_normal((300, 89)).astype(dtype)
    columns = [slice(0, 72), slice(72, 79), slice(79, 86), slice(86, 89)]
    full = net.predict(X, columns)
    for rows in (np.arange(20), np.arange(150, 151), rng.choice(300, 37, replace=False)):
        np.testing.assert_array_equal(net.predict(X[rows], columns), full[rows])


def test_branches_of_column_ranges_train_as_their_own_contiguous_columns():
    # A branch reading a column range of a wide X gets its batch rows by
    # indexing that strided view; the model must be the one trained on the
    # same columns stored contiguously, and the user's X must stay as it was.
    from fastgd import FusionClassifier

    rng = np.random.RandomState(0)
    X = rng.standard_normal((90, 40)).astype(np.float32)
    y = (X[:, 4] + X[:, 22] > 0).astype(int)
    X_before = X.copy()

    def model(first, second):
        return FusionClassifier(
            branches=[
                ("a", [Dense(4, activation="tanh")], first),
                ("b", [Dense(3, activation="relu")], second),
            ],
            batch_size=16,
            max_iter=3,
            tol=None,
            random_state=0,
        )

    wide = model(slice(3, 8), slice(20, 26)).fit(X, y)
    narrow = model(slice(0, 5), slice(5, 11)).fit(np.hstack([X[:, 3:8], X[:, 20:26]]), y)
    np.testing.assert_array_equal(X, X_before)
    for wide_coef, narrow_coef in zip(wide.coefs_, narrow.coefs_, strict=True):
        np.testing.assert_array_equal(wide_coef, narrow_coef)


_TWIN_ACTIVATIONS = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda a: (a > 0).astype(a.dtype)),
    "tanh": (np.tanh, lambda a: 1.0 - a * a),
    None: (lambda z: z, lambda a: np.ones_like(a)),
}


def _twin_dense_stack(X, layers):
    """Forward pass of ``[(W, b, activation)]`` in NumPy; every layer's output."""
    outs = []
    for W, b, activation in layers:
        X = _TWIN_ACTIVATIONS[activation][0](X @ W + b)
        outs.append(X)
    return outs


def _twin_dense_stack_backward(X, layers, outs, d):
    """Backward pass of :func:`_twin_dense_stack`: ``(grads [(dW, db)], dX)``."""
    grads = []
    for i in range(len(layers) - 1, -1, -1):
        W, _, activation = layers[i]
        dz = d * _TWIN_ACTIVATIONS[activation][1](outs[i])
        inp = X if i == 0 else outs[i - 1]
        grads.insert(0, (inp.T @ dz, dz.sum(axis=0)))
        d = dz @ W.T
    return grads, d


def test_stacked_task_heads_match_a_per_task_numpy_twin():
    # The old formulation, one head after another: initial weights drawn in
    # the same order, the same scores, masked and λ-weighted loss gradient,
    # and the same gradients of every parameter, trunk included.
    from fastgd._engine.network import MaskedRegressionLoss
    from fastgd._kernels.runtime import codes

    n, n_tasks = 7, 5
    head_specs = [[(3, "relu")], [(3, "relu")], [], [(2, "tanh"), (4, "relu")], [(3, "relu")]]
    heads = [[Dense(u, activation=a) for u, a in specs] for specs in head_specs]
    branch = [Dense(4, activation="relu")]
    trunk = [Dense(6, activation="tanh")]
    net = Network([("a", branch, 5)], "concat", trunk, n_tasks, None, np.float64, task_heads=heads)
    net.initialize(np.random.RandomState(3))

    # Initial weights: Glorot/He uniform drawn layer after layer, task after task.
    draws = np.random.RandomState(3)

    def drawn(n_in, units, activation):
        fan = n_in if activation == "relu" else n_in + units
        return draws.uniform(-np.sqrt(6.0 / fan), np.sqrt(6.0 / fan), (n_in, units))

    shared = [
        (drawn(5, 4, "relu"), np.zeros(4), "relu"),
        (drawn(4, 6, "tanh"), np.zeros(6), "tanh"),
    ]
    twin_heads = []
    for specs in head_specs:
        layers, width = [], 6
        for units, activation in [*specs, (1, None)]:
            layers.append((drawn(width, units, activation), np.zeros(units), activation))
            width = units
        twin_heads.append(layers)
    net_shared = [net.branch_layers[0][0], net.head_layers[0]]
    for (W, _, _), layer in zip(shared, net_shared, strict=True):
        np.testing.assert_array_equal(layer.W, W)

    def head_layers(t):
        g, k = net.task_slot[t]
        return [(layer, k) for layer in net.task_groups[g].layers]

    for t, layers in enumerate(twin_heads):
        for (W, _, _), (layer, k) in zip(layers, head_layers(t), strict=True):
            np.testing.assert_array_equal(layer.W[k], W)
    # Non-zero biases, so that their place matters.
    rng = np.random.RandomState(0)
    net.params[net.n_penalized :] = rng.standard_normal(net.n_params - net.n_penalized)
    shared = [(layer.W, layer.b, a) for layer, (_, _, a) in zip(net_shared, shared, strict=True)]
    twin_heads = [
        [
            (layer.W[k], layer.b[k], a)
            for (layer, k), (_, _, a) in zip(head_layers(t), twin, strict=True)
        ]
        for t, twin in enumerate(twin_heads)
    ]

    X = rng.standard_normal((n, 5))
    y = rng.standard_normal((n, n_tasks))
    mask = (rng.rand(n, n_tasks) > 0.3).astype(np.float64)
    y[mask == 0] = np.nan
    task_weights = np.array([1.0, 0.5, 2.0, 0.0, 1.5])
    loss = MaskedRegressionLoss(n_tasks, task_weights, codes.SQUARED_ERROR)
    grads = backward_gradients(net, loss, [X], (y, mask))

    shared_outs = _twin_dense_stack(X, shared)
    Z = shared_outs[-1]
    head_outs = [_twin_dense_stack(Z, layers) for layers in twin_heads]
    scores = np.column_stack([outs[-1][:, 0] for outs in head_outs])
    ws = net.make_workspace(n, False)
    np.testing.assert_allclose(net.forward([X], ws, n, False), scores, rtol=1e-12)
    # Squared error: ∂/∂score = λₜ · maskₜ · (score − y) / (labelled samples of t).
    residual = np.where(mask > 0, scores - np.nan_to_num(y), 0.0)
    dscores = task_weights * residual / np.maximum(mask.sum(axis=0), 1.0)
    dZ = np.zeros_like(Z)
    for t, layers in enumerate(twin_heads):
        head_grads, d = _twin_dense_stack_backward(Z, layers, head_outs[t], dscores[:, [t]])
        dZ += d
        for (dW, db), (layer, k) in zip(head_grads, head_layers(t), strict=True):
            offset_W, offset_b = net.param_offset(layer, "W"), net.param_offset(layer, "b")
            got_W = grads[offset_W : offset_W + layer.W.size].reshape(layer.W.shape)[k]
            got_b = grads[offset_b : offset_b + layer.b.size].reshape(layer.b.shape)[k]
            np.testing.assert_allclose(got_W, dW, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(got_b, db, rtol=1e-10, atol=1e-14)
    shared_grads, _ = _twin_dense_stack_backward(X, shared, shared_outs, dZ)
    for (dW, db), layer in zip(shared_grads, net_shared, strict=True):
        offset_W, offset_b = net.param_offset(layer, "W"), net.param_offset(layer, "b")
        np.testing.assert_allclose(grads[offset_W : offset_W + dW.size], dW.ravel(), rtol=1e-10)
        np.testing.assert_allclose(grads[offset_b : offset_b + db.size], db, rtol=1e-10)


def test_a_pickle_of_per_task_head_weights_is_refused():
    # Before task heads were stacked the flat buffer held them head after
    # head: such a pickle (no layout) must not load into the stacked layout.
    net = Network(
        [("a", [], 3)], "concat", [], 2, None, np.float64, task_heads=[[Dense(2)], [Dense(2)]]
    )
    state = net.__getstate__()
    del state["layout"]
    with pytest.raises(ValueError, match="older fastgd"):
        Network.__new__(Network).__setstate__(state)
    plain = Network([("a", [Dense(2)], 3)], "concat", [], 2, None, np.float64)
    state = plain.__getstate__()
    del state["layout"]
    Network.__new__(Network).__setstate__(state)  # nothing moved without task heads
    restored = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(restored.params, net.params)
