"""Scale-out on Dask: grid searches through joblib's Dask backend, Incremental, pickles.

A ``distributed.LocalCluster`` with two worker *processes* runs the work, as
a real cluster would: estimators and data are pickled to the workers, which
load fastgd's compiled kernels from Numba's on-disk cache.
"""

import contextlib
import pickle
import re
import warnings

import numpy as np
import pytest
from scipy.stats import loguniform
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV

distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")

import dask  # noqa: E402
import dask.array as da  # noqa: E402

from fastgd import FusionClassifier, GDRegressor  # noqa: E402
from fastgd.layers import Conv2D, Dense, Flatten, MaxPool2D, Reshape  # noqa: E402

N_WORKERS = 2
# Seconds to wait for the workers to register (a fresh worker imports fastgd).
WORKER_START_TIMEOUT = 120


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=N_WORKERS, processes=True, threads_per_worker=1, dashboard_address=None
        )
        client = distributed.Client(cluster)
        # The cluster's constructor returns before the workers have all
        # registered with the scheduler: a test run first could see none.
        client.wait_for_workers(N_WORKERS, timeout=WORKER_START_TIMEOUT)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def worker_addresses(client):
    """The cluster's worker addresses, sorted, once all workers are up.

    A worker that died in an earlier test is restarted by its nanny under a
    new address; waiting for it keeps a test from seeing fewer workers.
    """
    client.wait_for_workers(N_WORKERS, timeout=WORKER_START_TIMEOUT)
    return sorted(client.scheduler_info()["workers"])


# ------------------------------------------------------------------ data
def regression_data(n=120, d=5, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, d))
    y = X @ rng.standard_normal(d) + 0.1 * rng.standard_normal(n)
    return X, y


def classification_data(n=96, seed=0):
    """4x4 images (16 columns) and a 3-d vector per sample, 3 classes."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 3
    images = rng.rand(n, 16) + 0.5 * y[:, None]
    vectors = rng.standard_normal((n, 3)) + y[:, None]
    return np.hstack([images, vectors]).astype(np.float32), y


def multitask_data(n=120, seed=0):
    X, y = regression_data(n, seed=seed)
    Y = np.column_stack([y, X[:, 0] - 2 * X[:, 1]])
    Y[::5, 1] = np.nan  # a missing label now and then
    return X, Y


def fusion_classifier(**params):
    branches = [
        (
            "image",
            [
                Reshape((1, 4, 4)),
                Conv2D(2, 3, padding="same", activation="relu"),
                MaxPool2D(2),
                Flatten(),
            ],
            slice(0, 16),
        ),
        ("vector", [Dense(4, activation="relu")], slice(16, 19)),
    ]
    return FusionClassifier(branches=branches, max_iter=3, batch_size=16, random_state=0, **params)


def multitask_regressor(**params):
    from fastgd import MultiTaskRegressor

    return MultiTaskRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0, **params)


SEARCHES = {
    "GDRegressor": (
        lambda: GDRegressor(max_iter=5, tol=None, random_state=0),
        {"alpha": [1e-4, 1e-2], "batch_size": [1, 16]},
        regression_data,
    ),
    "FusionClassifier": (
        fusion_classifier,
        {"learning_rate_init": [1e-3, 1e-2], "image__1__filters": [2, 3]},
        classification_data,
    ),
    "MultiTaskRegressor": (
        multitask_regressor,
        {"alpha": [1e-4, 1e-2], "hidden_layer_sizes": [(3,), (4,)]},
        multitask_data,
    ),
}


def _grid_search(name, **kwargs):
    make, grid, data = SEARCHES[name]
    X, y = data()
    search = GridSearchCV(make(), grid, cv=KFold(3), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return search.fit(X, y)


def _score_columns(search):
    return {k: v for k, v in search.cv_results_.items() if "test_score" in k and "rank" not in k}


# ------------------------------------------------------------ grid search
@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "GDRegressor",
        "FusionClassifier",
        "MultiTaskRegressor",
    ],
)
def test_grid_search_on_the_cluster_matches_a_serial_search(client, name):
    serial = _grid_search(name, n_jobs=1)
    with distributed.get_task_stream(client) as tasks:
        with joblib.parallel_config(backend="dask"):
            remote = _grid_search(name, n_jobs=-1)
    # Every fit ran on the workers (joblib sends them in batches of calls).
    calls = [re.search(r"_fit_and_score_(\d+)_calls", task["key"]) for task in tasks.data]
    assert sum(int(m.group(1)) for m in calls if m) >= len(serial.cv_results_["params"]) * 3
    assert remote.best_params_ == serial.best_params_
    expected = _score_columns(serial)
    got = _score_columns(remote)
    assert got.keys() == expected.keys()
    for key, values in expected.items():
        assert np.all(np.isfinite(values)), key
        np.testing.assert_allclose(got[key], values, rtol=1e-6, atol=1e-9, err_msg=key)


RANDOM_SEARCHES = {
    "FusionClassifier": {
        "learning_rate_init": loguniform(1e-3, 3e-2),
        "learning_rate": ["constant", "invscaling"],
        "alpha": loguniform(1e-5, 1e-2),
    },
    "MultiTaskRegressor": {
        "learning_rate_init": loguniform(1e-3, 3e-2),
        "learning_rate": ["constant", "invscaling", "adaptive"],
        "hidden_layer_sizes": [(3,), (4,), (6,)],
        "alpha": loguniform(1e-5, 1e-2),
    },
}


def _randomized_search(name, **kwargs):
    make, _, data = SEARCHES[name]
    X, y = data()
    search = RandomizedSearchCV(
        make(), RANDOM_SEARCHES[name], n_iter=5, cv=KFold(3), random_state=0, **kwargs
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return search.fit(X, y)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["FusionClassifier", "MultiTaskRegressor"])
def test_randomized_search_on_the_cluster_matches_a_serial_search(client, name):
    serial = _randomized_search(name, n_jobs=1)
    with distributed.get_task_stream(client) as tasks:
        with joblib.parallel_config(backend="dask"):
            remote = _randomized_search(name, n_jobs=-1)
    calls = [re.search(r"_fit_and_score_(\d+)_calls", task["key"]) for task in tasks.data]
    assert sum(int(m.group(1)) for m in calls if m) >= 5 * 3
    # The same candidates (drawn from random_state=0 in the client) ...
    assert remote.cv_results_["params"] == serial.cv_results_["params"]
    assert len({repr(p) for p in serial.cv_results_["params"]}) == 5
    # ... scored the same on the workers as in this process.
    assert remote.best_params_ == serial.best_params_
    expected = _score_columns(serial)
    got = _score_columns(remote)
    assert got.keys() == expected.keys()
    for key, values in expected.items():
        assert np.all(np.isfinite(values)), key
        np.testing.assert_allclose(got[key], values, rtol=1e-6, atol=1e-9, err_msg=key)
    # the candidates really differ: a wrong setup cannot pass with equal scores
    assert np.ptp(serial.cv_results_["mean_test_score"]) > 0


@pytest.mark.slow
def test_workers_load_the_kernels_instead_of_compiling(client):
    # The serial searches above compiled (or loaded) every kernel these
    # models need into the on-disk cache; the workers share that cache.
    with joblib.parallel_config(backend="dask"):
        _grid_search("GDRegressor", n_jobs=-1)
        _grid_search("FusionClassifier", n_jobs=-1)
    from fastgd._compile import kernel_cache_counters

    per_worker = client.run(kernel_cache_counters)
    assert len(per_worker) == 2
    for worker, counters in per_worker.items():
        assert counters, f"{worker} ran no fastgd kernel"
        compiled = {name: c for name, c in counters.items() if c[1] > 0}
        assert not compiled, f"{worker} compiled {compiled}"


# ------------------------------------------------------------ Incremental
def _manual_partial_fits(estimator, X, y, chunk, **kwargs):
    for start in range(0, X.shape[0], chunk):
        estimator.partial_fit(X[start : start + chunk], y[start : start + chunk], **kwargs)
    return estimator


def _incremental(estimator, X, y, chunk, worker=None, **kwargs):
    """Fit ``dask_ml.wrappers.Incremental(estimator)`` on X, y in chunks of rows.

    ``y`` may already be a Dask collection with those row chunks.
    """
    wrappers = pytest.importorskip("dask_ml.wrappers")
    dX = da.from_array(X, chunks=(chunk, X.shape[1]))
    dy = y if dask.is_dask_collection(y) else da.from_array(y, chunks=(chunk,) + y.shape[1:])
    incremental = wrappers.Incremental(estimator, shuffle_blocks=False, random_state=0)
    pinned = (
        dask.annotate(workers=[worker], allow_other_workers=False)
        if worker
        else contextlib.nullcontext()
    )
    with warnings.catch_warnings(), pinned:
        warnings.simplefilter("ignore")
        incremental.fit(dX, dy, **kwargs)
    return incremental.estimator_


@pytest.mark.slow
def test_incremental_gd_regressor(client):
    X, y = regression_data(200)
    model = GDRegressor(random_state=0, learning_rate="constant", eta0=0.01)
    got = _incremental(clone(model), X, y, 50)
    expected = _manual_partial_fits(clone(model), X, y, 50)
    assert got.t_ == expected.t_ == 201.0  # every chunk was seen once
    np.testing.assert_allclose(got.coef_, expected.coef_, rtol=1e-12)
    np.testing.assert_allclose(got.intercept_, expected.intercept_, rtol=1e-12)
    assert got.score(X, y) > 0.9


@pytest.mark.slow
def test_incremental_fusion_classifier(client):
    # Pinned to one worker (the model stays in its memory from chunk to chunk);
    # test_partial_fit_moving_between_workers_continues_exactly moves it.
    X, y = classification_data(96)
    model = fusion_classifier()
    worker = worker_addresses(client)[0]
    got = _incremental(clone(model), X, y, 32, worker=worker, classes=[0, 1, 2])
    expected = _manual_partial_fits(clone(model), X, y, 32, classes=[0, 1, 2])
    np.testing.assert_array_equal(got.classes_, [0, 1, 2])
    np.testing.assert_allclose(got.predict_proba(X), expected.predict_proba(X), rtol=1e-5)
    np.testing.assert_array_equal(got.predict(X), expected.predict(X))


@pytest.mark.slow
def test_incremental_multitask_regressor_with_targets_in_a_dask_dataframe(client):
    # dask-ml's Incremental hands partial_fit the partitions of a dask
    # DataFrame y as values (a 2-D Dask array's blocks go by key, below).
    X, Y = multitask_data(120)
    model = multitask_regressor()
    dY = da.from_array(Y, chunks=(40, Y.shape[1])).to_dask_dataframe()
    got = _incremental(clone(model), X, dY, 40)
    expected = _manual_partial_fits(clone(model), X, Y, 40)
    assert got.n_iter_ == expected.n_iter_ == 3
    assert got.t_ == expected.t_ == 120
    np.testing.assert_array_equal(got.target_mean_, expected.target_mean_)
    np.testing.assert_array_equal(got.predict(X), expected.predict(X))


@pytest.mark.slow
def test_incremental_multitask_regressor_with_a_2d_dask_array_is_explained(client):
    # dask_ml/_partial.py names y's block (y_name, i), but a 2-D array's blocks
    # are (y_name, i, 0): partial_fit receives the key itself.
    X, Y = multitask_data(120)
    with pytest.raises(ValueError, match=r"key of a block of a Dask array.*dask DataFrame"):
        _incremental(multitask_regressor(), X, Y, 40)


def _partial_fit_chunk(model, X, y, kwargs):
    model.partial_fit(X, y, **kwargs)
    return model


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "GDRegressor",
        "FusionClassifier",
        "MultiTaskRegressor",
    ],
)
def test_partial_fit_moving_between_workers_continues_exactly(client, name):
    # Each chunk runs on the other worker: the model travels as a pickle
    # between processes and must train as one that stays in this process.
    make, _, data = SEARCHES[name]
    X, y = data(96)
    kwargs = {"classes": [0, 1, 2]} if name == "FusionClassifier" else {}
    workers = worker_addresses(client)
    model = client.scatter(make(), workers=[workers[0]])
    where = []
    for i, start in enumerate(range(0, 96, 32)):
        rows = slice(start, start + 32)
        model = client.submit(
            _partial_fit_chunk,
            model,
            X[rows],
            y[rows],
            kwargs,
            workers=[workers[(i + 1) % 2]],
            allow_other_workers=False,
            pure=False,
        )
        distributed.wait(model)
        where.append(next(iter(client.who_has(model)[model.key])))
    assert where == [workers[1], workers[0], workers[1]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        moved = model.result()
        kept = _manual_partial_fits(make(), X, y, 32, **kwargs)
    output = "predict_proba" if name == "FusionClassifier" else "predict"
    np.testing.assert_array_equal(getattr(moved, output)(X), getattr(kept, output)(X))


# ---------------------------------------------------------------- pickles
def _fitted(name, n):
    make, _, data = SEARCHES[name]
    X, y = data(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make().fit(X, y), X


@pytest.mark.parametrize(
    "name",
    [
        "GDRegressor",
        "FusionClassifier",
        "MultiTaskRegressor",
    ],
)
def test_fitted_estimators_pickle_small(name):
    small, X_small = _fitted(name, 96)
    large, X_large = _fitted(name, 3000)
    small_size, large_size = len(pickle.dumps(small)), len(pickle.dumps(large))
    # The pickle holds the model, not the training data or per-batch buffers:
    # its size does not grow with the number of training samples ...
    assert large_size <= small_size + 1024, (small_size, large_size)
    assert large_size < X_large.nbytes / 10
    # ... and stays within a few kilobytes for these small models.
    assert large_size < 64 * 1024, large_size
    restored = pickle.loads(pickle.dumps(large))
    np.testing.assert_array_equal(restored.predict(X_large), large.predict(X_large))


@pytest.mark.parametrize(
    "name",
    [
        "GDRegressor",
        "FusionClassifier",
        "MultiTaskRegressor",
    ],
)
def test_partial_fit_continues_after_a_pickle_round_trip(name):
    make, _, data = SEARCHES[name]
    X, y = data(96)
    kwargs = {"classes": [0, 1, 2]} if name == "FusionClassifier" else {}
    kept, moved = make(), make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start in range(0, 96, 32):
            rows = slice(start, start + 32)
            kept.partial_fit(X[rows], y[rows], **kwargs)
            moved.partial_fit(X[rows], y[rows], **kwargs)
            moved = pickle.loads(pickle.dumps(moved))
    # An estimator Dask moves between workers (a pickle round trip) trains
    # bit for bit as one that stays in a process: the optimizer state travels.
    output = "predict_proba" if name == "FusionClassifier" else "predict"
    np.testing.assert_array_equal(getattr(moved, output)(X), getattr(kept, output)(X))
    if name == "GDRegressor":
        np.testing.assert_array_equal(moved.coef_, kept.coef_)
    else:
        np.testing.assert_array_equal(moved._network.params, kept._network.params)
