"""Numba's on-disk cache under parallel first use.

The first test reproduces the root cause deterministically: two processes
save two signatures of one kernel at the same moment (the steps of Numba's
cache update are interleaved by file barriers injected into Numba), which
without fastgd's compile lock leaves an index entry naming the other
signature's data file, and a later process fails with "can't unbox array".

The second test is the user's situation: eight processes start fitting every
estimator at the same moment on an empty cache (``NUMBA_CACHE_DIR`` pointing
at a fresh directory), as a grid search with ``n_jobs=8`` does on a fresh
install. Half of them fit float64 first and float32 second, the other half
the other way round, so that different signatures of the same kernel are
saved at about the same time. Every process must succeed with the reference
results; then a late process must find every kernel it needs in the cache
left behind, and get the same results again from it.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

N_PROCESSES = 8

# One worker: import everything, say so, wait for the start signal, fit,
# save the predictions and Numba's cache counters of fastgd's kernels.
WORKER = textwrap.dedent(
    """
    import json, os, sys, time, warnings
    import numpy as np
    sys.path.insert(0, {tests_dir!r})
    from test_jit_cache import fit_all, kernel_cache_stats

    workdir, index = sys.argv[1], int(sys.argv[2])
    dtypes = (np.float64, np.float32) if index % 2 == 0 else (np.float32, np.float64)
    open(os.path.join(workdir, f"ready-{{index}}"), "w").close()
    go = os.path.join(workdir, "go")
    deadline = time.monotonic() + 120
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("no start signal")
        time.sleep(0.005)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = fit_all(dtypes)
    np.savez(os.path.join(workdir, f"result-{{index}}.npz"), **results)
    with open(os.path.join(workdir, f"stats-{{index}}.json"), "w") as handle:
        json.dump(kernel_cache_stats(), handle)
    """
)


def _problems():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((64, 5))
    y = X @ rng.standard_normal(5) + 0.1 * rng.standard_normal(64)
    # 4x4 "images" plus a 3-d vector per sample, 3 classes.
    labels = rng.randint(0, 3, 48)
    images = rng.rand(48, 16) + labels[:, None] * 0.3
    vectors = rng.standard_normal((48, 3)) + labels[:, None]
    Xf = np.hstack([images, vectors])
    Y = np.column_stack([y, X[:, 0] - X[:, 1]])
    return X, y, Xf, labels, Y


def fit_all(dtypes):
    """Fit small models of every estimator in each dtype; return their predictions.

    Parameters
    ----------
    dtypes : sequence of numpy dtypes
        The dtypes, in the order to fit them (FusionClassifier: float32 only).

    Returns
    -------
    dict of str -> ndarray
        Predictions (probabilities for the classifier) keyed by model and dtype.
    """
    from fastgd import FusionClassifier, GDClassifier, GDRegressor, MultiTaskRegressor
    from fastgd.layers import Conv2D, Dense, Flatten, MaxPool2D, Reshape

    X, y, Xf, labels, Y = _problems()
    results = {}
    for dtype in dtypes:
        name = np.dtype(dtype).name
        Xd, yd = X.astype(dtype), y.astype(dtype)
        sgd = GDRegressor(backend="numba", max_iter=3, tol=None, random_state=0)
        results[f"sgd_numba_{name}"] = sgd.fit(Xd, yd).predict(Xd)
        minibatch = GDRegressor(batch_size=32, max_iter=3, tol=None, random_state=0)
        results[f"minibatch_{name}"] = minibatch.fit(Xd, yd).predict(Xd)
        softmax = GDClassifier(
            loss="log_loss", multi_class="multinomial", max_iter=3, tol=None, random_state=0
        )
        Xf_d = Xf.astype(dtype)
        results[f"multinomial_{name}"] = softmax.fit(Xf_d, labels).predict_proba(Xf_d)
        multitask = MultiTaskRegressor(
            hidden_layer_sizes=(4,), max_iter=2, batch_size=16, dtype=dtype, random_state=0
        )
        results[f"multitask_{name}"] = multitask.fit(Xd, Y.astype(dtype)).predict(Xd)
        if dtype == np.float32:  # the classifier's default; its conv kernels compile slowly
            fusion = FusionClassifier(
                branches=[
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
                ],
                max_iter=2,
                batch_size=16,
                random_state=0,
            )
            results[f"fusion_{name}"] = fusion.fit(Xf, labels).predict_proba(Xf)
    return results


def kernel_cache_stats():
    """Numba's cache hits and misses of every compiled fastgd kernel in this process.

    Returns
    -------
    dict of str -> [int, int]
        ``"module.function" -> [hits, misses]`` for kernels that were used.
    """
    from fastgd._compile import _dispatchers_in

    stats = {}
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("fastgd._kernels.") or module is None:
            continue
        for value in list(vars(module).values()):
            # Kernels and their compiled variants (per kind of rows or step).
            for dispatcher in _dispatchers_in(value):
                if dispatcher.signatures:
                    counts = dispatcher.stats
                    key = f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}"
                    stats[key] = [
                        sum(counts.cache_hits.values()),
                        sum(counts.cache_misses.values()),
                    ]
    return stats


def _worker_env(cache_dir):
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    # Eight processes share the machine: one thread each.
    for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


def _start(workdir, index, env):
    code = WORKER.format(tests_dir=os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen(
        [sys.executable, "-c", code, str(workdir), str(index)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process, timeout):
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"worker timed out:\n{output[-3000:]}")
    assert process.returncode == 0, f"worker failed:\n{output[-3000:]}"


@pytest.fixture(scope="module")
def reference():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_all((np.float64, np.float32))


def _check_results(path, reference):
    with np.load(path) as got:
        assert sorted(got.files) == sorted(reference)
        for key, expected in reference.items():
            rtol = 1e-4 if key.endswith("float32") else 1e-9
            np.testing.assert_allclose(got[key], expected, rtol=rtol, atol=rtol, err_msg=key)


@pytest.mark.slow
def test_parallel_first_use_of_an_empty_cache(tmp_path, reference):
    cache_dir = tmp_path / "numba-cache"
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = _worker_env(cache_dir)
    processes = [_start(workdir, i, env) for i in range(N_PROCESSES)]
    try:
        deadline = time.monotonic() + 120
        while not all((workdir / f"ready-{i}").exists() for i in range(N_PROCESSES)):
            dead = [p for p in processes if p.poll() is not None]
            if dead:
                _finish(dead[0], timeout=1)
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.01)
        (workdir / "go").touch()  # the barrier: everyone starts now
        for process in processes:
            _finish(process, timeout=600)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    for i in range(N_PROCESSES):
        _check_results(workdir / f"result-{i}.npz", reference)
    assert any(name.endswith(".nbi") for _, _, files in os.walk(cache_dir) for name in files)

    # A late process uses only what the racers left in the cache.
    late = workdir / "late"
    late.mkdir()
    (late / "go").touch()
    _finish(_start(late, 0, env), timeout=300)
    _check_results(late / "result-0.npz", reference)
    stats = json.loads((late / "stats-0.json").read_text())
    assert stats, "no kernel statistics recorded"
    missed = {name: hm for name, hm in stats.items() if hm[1] > 0}
    assert not missed, f"kernels compiled again instead of loaded from the cache: {missed}"


# ---------------------------------------------------------------- root cause
def test_every_cached_kernel_compiles_under_the_lock():
    from fastgd._compile import _kernel_dispatchers

    # Every kernel of fastgd._kernels, the compiled variants included.
    dispatchers = [dispatcher for _, dispatcher in _kernel_dispatchers()]
    assert len(dispatchers) > 20
    unlocked = [
        d.py_func.__qualname__
        for d in dispatchers
        if d._cache.cache_path and not getattr(d, "_fastgd_compile_lock", False)
    ]
    assert not unlocked


RACY_KERNEL = """
from fastgd._kernels.runtime.numba_setup import KERNEL_OPTIONS, njit


@njit(**KERNEL_OPTIONS)
def affine(x, out):
    for i in range(x.shape[0]):
        out[i] = 2 * x[i] + 1
"""

# Role "a" saves float32, role "b" float64. Barriers injected into Numba's
# cache update order the steps as: both read the (empty) index, a writes the
# index, b writes the index, b writes its data file, a writes its data file.
# Without a lock both pick data file 1, and the index ends up mapping float64
# to a file holding the float32 machine code. Each wait gives up after
# WAIT seconds (with the lock, the other process is blocked before reading).
RACE_WORKER = """
import os, sys, time
import numpy as np
from numba.core.caching import IndexDataCacheFile

workdir, role = sys.argv[1], sys.argv[2]
other = {"a": "b", "b": "a"}[role]
WAIT = 2.0

def mark(name):
    open(os.path.join(workdir, name), "w").close()

def wait_for(name):
    deadline = time.monotonic() + WAIT
    while not os.path.exists(os.path.join(workdir, name)) and time.monotonic() < deadline:
        time.sleep(0.005)

def ours(cache_file):
    return cache_file._index_name.startswith("racy_kernel.affine")

original = {name: getattr(IndexDataCacheFile, name)
            for name in ("save", "_load_index", "_save_index", "_save_data")}

def save(self, key, data):
    self._saving = True
    try:
        return original["save"](self, key, data)
    finally:
        self._saving = False

def _load_index(self):
    overloads = original["_load_index"](self)
    if ours(self) and getattr(self, "_saving", False):
        mark("read-" + role)
        wait_for("read-" + other)
    return overloads

def _save_index(self, overloads):
    if ours(self) and role == "b":
        wait_for("index-a")
    original["_save_index"](self, overloads)
    if ours(self):
        mark("index-" + role)

def _save_data(self, name, data):
    if ours(self) and role == "a":
        wait_for("data-b")
    original["_save_data"](self, name, data)
    if ours(self):
        mark("data-" + role)

for name, function in [("save", save), ("_load_index", _load_index),
                       ("_save_index", _save_index), ("_save_data", _save_data)]:
    setattr(IndexDataCacheFile, name, function)

sys.path.insert(0, workdir)
from racy_kernel import affine

x = np.arange(5.0, dtype=np.float32 if role == "a" else np.float64)
out = np.empty_like(x)
affine(x, out)
assert np.array_equal(out, 2 * x + 1), out
"""

RACE_CHECK = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from racy_kernel import affine

for dtype in (np.float32, np.float64):
    x = np.arange(5.0, dtype=dtype)
    out = np.empty_like(x)
    affine(x, out)
    assert np.array_equal(out, 2 * x + 1), (dtype, out)
misses = sum(affine.stats.cache_misses.values())
assert misses == 0, f"{misses} signature(s) missing from the cache"
print("ok")
"""


def _run_code(code, args, env, timeout=300):
    process = subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process


@pytest.mark.slow
def test_concurrent_saves_of_two_signatures_keep_the_cache_consistent(tmp_path):
    (tmp_path / "racy_kernel.py").write_text(RACY_KERNEL)
    env = _worker_env(tmp_path / "numba-cache")
    racers = [_run_code(RACE_WORKER, [tmp_path, role], env) for role in ("a", "b")]
    for process in racers:
        _finish(process, timeout=300)
    # Both saves went through the injected steps.
    for name in ("read-a", "read-b", "data-a", "data-b"):
        assert (tmp_path / name).exists(), name
    _finish(_run_code(RACE_CHECK, [tmp_path], env), timeout=300)


# ------------------------------------------------------------ the lock itself
def test_compile_lock_is_exclusive_across_processes_and_reentrant(tmp_path, monkeypatch):
    import filelock

    from fastgd._kernels.runtime import numba_setup, tuning

    monkeypatch.setattr(tuning, "COMPILE_LOCK_TIMEOUT_SECONDS", 0.05)
    path = str(tmp_path / "kernel.lock")
    # Another lock object on the same file stands for another process: flock
    # locks of separate open files exclude each other even in one process.
    other = filelock.FileLock(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a timeout here would warn
        with numba_setup._compile_lock(path, "kernel"):
            with numba_setup._compile_lock(path, "kernel"):  # a recursive kernel
                with pytest.raises(filelock.Timeout):
                    other.acquire(timeout=0)
            with pytest.raises(filelock.Timeout):  # still held by the outer level
                other.acquire(timeout=0)
    other.acquire(timeout=0)  # released
    other.release()


def test_compile_lock_held_too_long_elsewhere_warns_and_compiles(tmp_path, monkeypatch):
    import filelock

    from fastgd._kernels.runtime import numba_setup, tuning

    monkeypatch.setattr(tuning, "COMPILE_LOCK_TIMEOUT_SECONDS", 0.05)
    path = str(tmp_path / "kernel.lock")
    ran = []
    with filelock.FileLock(path):  # a hung process holds the lock
        started = time.monotonic()
        with pytest.warns(RuntimeWarning, match="compiling the Numba kernel kernel for 0.05 s"):
            with numba_setup._compile_lock(path, "kernel"):
                ran.append(True)
        assert time.monotonic() - started < 5
    assert ran == [True]


def test_compile_lock_without_a_lock_file_compiles_unlocked(tmp_path):
    from fastgd._kernels.runtime import numba_setup

    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    ran = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with numba_setup._compile_lock(str(not_a_directory / "kernel.lock"), "kernel"):
            ran.append(True)
    assert ran == [True]
