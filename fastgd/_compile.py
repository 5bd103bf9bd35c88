"""Compile every Numba kernel ahead of time: ``fastgd.compile_kernels()``, ``fastgd compile``.

fastgd's Numba kernels are compiled on first use and cached on disk, so the
first fit of each kind on a machine pays for compilation (tens of seconds
for the networks). Compiling them all once, right after installing (or in a
Docker image build, or before starting a cluster's workers), makes every
later process load them from the cache instead.

The kernels are compiled by fitting tiny models that reach every kernel with
the argument types the estimators use, in float32 and float64: Numba
compiles one machine-code version per signature, and the signatures are
those of real fits (array layouts, optional buffers), which calling the
kernels by hand would have to duplicate.
"""

import importlib
import os
import pkgutil
import time
import warnings

import numpy as np

__all__ = ["compile_kernels", "list_kernels"]

DTYPES = (np.float32, np.float64)


def _linear_models(dtype):
    """GDRegressor fits reaching every Numba linear kernel (dense and CSR)."""
    import scipy.sparse as sp

    from fastgd import GDRegressor

    rng = np.random.RandomState(0)
    X = rng.standard_normal((40, 4)).astype(dtype)
    y = (X @ rng.standard_normal(4)).astype(dtype)
    X_csr = sp.csr_matrix(X)
    settings = [
        dict(backend="numba"),  # per-sample SGD, the Numba backend
        dict(backend="numba", average=True),
        dict(batch_size=8),  # mini-batch, plain SGD steps
        # mini-batch with the general steps (another optimizer, L1, averaging)
        dict(batch_size=8, optimizer="adam", penalty="elasticnet", average=True),
        dict(batch_size="full", penalty="elasticnet"),  # full batch, proximal steps
        dict(batch_size="full", loss="huber"),  # full batch, a pass over X per step
    ]
    for params in settings:
        for data in (X, X_csr):
            model = GDRegressor(max_iter=2, tol=None, random_state=0, **params)
            model.fit(data, y).predict(data)
    # One epoch on a problem just large enough for the compiled shuffle (its
    # parallel passes too) and, given two CPUs, the two-thread mini-batch and
    # per-sample epochs.
    from fastgd._kernels.runtime.tuning import (
        COMPILED_SHUFFLE_MIN_ROWS,
        MIN_VALUES_FOR_TWO_THREADS,
        PARALLEL_SHUFFLE_MIN_SIZE,
    )

    n_rows = max(COMPILED_SHUFFLE_MIN_ROWS, PARALLEL_SHUFFLE_MIN_SIZE)
    X = rng.standard_normal((n_rows, -(-MIN_VALUES_FOR_TWO_THREADS // n_rows))).astype(dtype)
    y = X.sum(axis=1)
    # Full batches this large reach the parallel gradient kernels, which
    # small batches never compile; the epochs of both kinds of step.
    large_batches = (
        dict(batch_size="full", loss="huber"),
        dict(batch_size="full", optimizer="adam"),
        dict(batch_size="full", learning_rate="constant"),
    )
    two_thread_epochs = (dict(batch_size=256), dict(batch_size=256, optimizer="adam"))
    for data in (X, sp.csr_matrix(X)):
        for params in (*two_thread_epochs, dict(backend="numba"), *large_batches):
            GDRegressor(max_iter=1, tol=None, random_state=0, **params).fit(data, y)


def _classifier_models(dtype):
    """GDClassifier fits reaching its own Numba kernels: multinomial, both dense and CSR.

    Binary and one-vs-rest models run the kernels GDRegressor's fits compile
    (the same signatures); the softmax model has kernels of its own.
    """
    import scipy.sparse as sp

    from fastgd import GDClassifier

    rng = np.random.RandomState(0)
    X = rng.standard_normal((40, 4)).astype(dtype)
    y = np.arange(40) % 3
    settings = [
        dict(backend="numba", loss="hinge"),  # one-vs-rest, per-sample
        dict(backend="numba", loss="log_loss", multi_class="multinomial"),
        dict(batch_size=8, loss="log_loss", multi_class="multinomial"),
        dict(batch_size=8, loss="log_loss", multi_class="multinomial", optimizer="adam"),
    ]
    for params in settings:
        for data in (X, sp.csr_matrix(X)):
            model = GDClassifier(max_iter=2, tol=None, random_state=0, **params).fit(data, y)
            model.predict(data)
            if model.loss == "log_loss":
                model.predict_proba(data)
    # A full batch large enough for the parallel softmax gradient.
    from fastgd._kernels.runtime.tuning import PARALLEL_MIN_WORK

    X = rng.standard_normal((-(-PARALLEL_MIN_WORK // 15), 4)).astype(dtype)
    y = np.arange(X.shape[0]) % 3
    for data in (X, sp.csr_matrix(X)):
        for optimizer in ("sgd", "adam"):  # both kinds of step
            GDClassifier(
                batch_size="full",
                loss="log_loss",
                multi_class="multinomial",
                optimizer=optimizer,
                max_iter=1,
                tol=None,
            ).fit(data, y)


def _fusion_models(dtype):
    """FusionClassifier fits reaching every layer kernel and both fusions."""
    from fastgd import FusionClassifier
    from fastgd.layers import AvgPool2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Reshape

    rng = np.random.RandomState(0)
    y = np.arange(24) % 3
    # Two 2-channel 6x6 images (one per image branch), then 5 other values.
    X = rng.rand(24, 2 * 72 + 5).astype(dtype)
    branches = [
        (
            "image",
            [
                Reshape((2, 6, 6)),
                Conv2D(2, 3, padding="same", activation="relu"),
                MaxPool2D(2),
                Conv2D(2, 2, stride=1, activation="tanh"),
                AvgPool2D(2),
                Flatten(),
            ],
            slice(0, 72),
        ),
        (
            "pixels",
            [Reshape((6, 6, 2), channels_last=True), Conv2D(1, 3), Flatten()],
            slice(72, 144),
        ),
        ("vector", [Dense(4, activation="sigmoid"), Dropout(0.2)], slice(144, 149)),
    ]
    for fusion in ("concat", "hybrid"):
        model = FusionClassifier(
            branches=branches,
            fusion=fusion,
            max_iter=2,
            batch_size=8,
            dtype=dtype,
            random_state=0,
        )
        model.fit(X, y)
        model.predict(X)
        model.predict_proba(X)
        model.predict_log_proba(X)


def _multitask_models(dtype):
    """MultiTaskRegressor fits on sparse input (its dense layers, losses and optimizer
    steps are ahead-of-time code: a sparse first layer is what compiles), with every
    label present and with missing labels and Huber."""
    import scipy.sparse as sp

    from fastgd import MultiTaskRegressor

    rng = np.random.RandomState(0)
    X = sp.random(40, 6, density=0.4, format="csr", random_state=rng, dtype=dtype)
    Y = (X @ rng.standard_normal((6, 2))).astype(dtype)
    Y_missing = Y.copy()
    Y_missing[::3, 1] = np.nan
    settings = [
        (dict(), Y),
        (dict(loss="huber", task_layer_sizes=(3,)), Y_missing),
    ]
    for params, targets in settings:
        model = MultiTaskRegressor(
            hidden_layer_sizes=(4,),
            max_iter=2,
            batch_size=8,
            dtype=dtype,
            random_state=0,
            **params,
        )
        model.fit(X, targets).predict(X)


def _kernel_dispatchers():
    """``(name, dispatcher)`` of every Numba kernel defined in ``fastgd._kernels``."""

    import fastgd._kernels

    found = {}
    for info in pkgutil.walk_packages(fastgd._kernels.__path__, "fastgd._kernels."):
        # Cython extensions hold no Numba kernels; the instruction-set variants of
        # the network extension must not be imported on a CPU that lacks them.
        if info.ispkg or info.name.endswith("._sgd_fast") or "._network_fast_" in info.name:
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            for dispatcher in _dispatchers_in(value):
                # Named after the module defining its Python function (a kernel
                # imported elsewhere, or compiled from another module's body,
                # is listed once).
                defined_in = dispatcher.py_func.__module__
                if defined_in.startswith("fastgd._kernels."):
                    short_name = defined_in.removeprefix("fastgd._kernels.")
                    found[f"{short_name}.{dispatcher.py_func.__name__}"] = dispatcher
    return sorted(found.items())


def _dispatchers_in(value):
    """The Numba dispatchers a module-level value holds.

    A dispatcher, the values of a dict of dispatchers (the variants of a
    kernel per kind of rows or of step), or the ``dispatchers()`` of a family
    of variants (:class:`fastgd._kernels.linear.batch_numba.BatchKernels`).
    """
    from numba.core.registry import CPUDispatcher

    if isinstance(value, CPUDispatcher):
        return [value]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, CPUDispatcher)]
    from fastgd._kernels.linear.batch_numba import BatchKernels

    if isinstance(value, BatchKernels):
        return value.dispatchers()
    return []


_FAMILIES = {
    "GDRegressor": ("GDRegressor (Numba backend, mini-batch, full batch)", _linear_models),
    "GDClassifier": ("GDClassifier (multinomial, per-sample and mini-batch)", _classifier_models),
    "FusionClassifier": (
        "FusionClassifier (dropout, average pooling)",
        _fusion_models,
    ),
    "MultiTaskRegressor": ("MultiTaskRegressor (sparse input)", _multitask_models),
}


def kernel_cache_counters():
    """Numba's cache counters of every fastgd kernel used in this process.

    Returns
    -------
    dict of str -> (int, int)
        ``kernel name -> (signatures loaded from the cache, signatures
        compiled)``, for the kernels that have machine code in this process.
    """
    counters = {}
    for name, dispatcher in _kernel_dispatchers():
        if dispatcher.signatures:
            stats = dispatcher.stats
            counters[name] = (
                int(sum(stats.cache_hits.values())),
                int(sum(stats.cache_misses.values())),
            )
    return counters


def _cache_dir(dispatchers):
    """The folder holding the on-disk cache of these dispatchers (their common parent)."""
    paths = [d.stats.cache_path for d in dispatchers if d.stats.cache_path]
    return os.path.commonpath(paths) if paths else None


def cached_signature_count(dispatcher):
    """How many compiled signatures of a kernel Numba's on-disk cache holds.

    Reads the kernel's cache index as Numba does before compiling: an index
    written for an older version of the kernel's source counts as empty.
    Nothing is compiled.

    Parameters
    ----------
    dispatcher : numba dispatcher

    Returns
    -------
    count : int or None
        None when the kernel is not cached on disk or its index is unreadable.
    """
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if cache_file is None:  # caching disabled
        return None
    try:
        return len(cache_file._load_index())
    except Exception:  # an index of another Numba version, a broken file
        return None


def list_kernels():
    """Every Numba kernel of fastgd and what Numba's cache holds for it, compiling nothing.

    Returns
    -------
    report : dict
        ``"kernels"``: ``kernel name -> signatures in the on-disk cache``
        (None when unknown); ``"cache_dir"``: the folder under which the
        cache lives (``NUMBA_CACHE_DIR`` if set, else beside the kernels).
    """
    dispatchers = _kernel_dispatchers()
    return {
        "kernels": {name: cached_signature_count(d) for name, d in dispatchers},
        "cache_dir": _cache_dir([d for _, d in dispatchers]),
    }


def compile_kernels(estimators=None, verbose=False, out=None):
    """Compile every Numba kernel of fastgd for float32 and float64, and cache it.

    Tiny models of every estimator are fitted in both dtypes, which compiles
    (or loads from Numba's on-disk cache) every kernel with the signatures
    the estimators use. Run it once after installing fastgd, in an image
    build, or before starting parallel workers (``GridSearchCV(n_jobs=...)``,
    a Dask cluster), so that no process pays the compilation time. It is
    also what the ``fastgd compile`` command runs.

    Parameters
    ----------
    estimators : list of str, default=None
        Compile only the kernels these estimators use (names among
        ``"GDRegressor"``, ``"GDClassifier"``, ``"FusionClassifier"``,
        ``"MultiTaskRegressor"``);
        all of them when None.
    verbose : bool, default=False
        Print a line per estimator family as it is compiled.
    out : file-like, default=None
        Where to print (``sys.stdout`` when None).

    Returns
    -------
    report : dict
        ``"seconds"`` (wall time), ``"cache_dir"`` (the folder under which
        Numba keeps the cache, or None when caching is off), ``"compiled"`` and ``"loaded"``
        (signatures compiled now / loaded from the cache, summed over the
        kernels) and ``"kernels"``: for each kernel that has machine code,
        ``{"signatures": n, "compiled": c, "loaded": l}``.

    Examples
    --------
    >>> import fastgd
    >>> report = fastgd.compile_kernels()  # doctest: +SKIP
    >>> report["compiled"] + report["loaded"] > 0  # doctest: +SKIP
    True
    """
    import sys

    out = sys.stdout if out is None else out
    names = list(_FAMILIES) if estimators is None else list(estimators)
    unknown = sorted(set(names) - set(_FAMILIES))
    if unknown:
        raise ValueError(
            f"Unknown estimator(s) {unknown}; expected names among {sorted(_FAMILIES)}."
        )
    families = [_FAMILIES[name] for name in names]
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for title, fit_models in families:
            family_started = time.perf_counter()
            for dtype in DTYPES:
                fit_models(dtype)
            if verbose:
                seconds = time.perf_counter() - family_started
                print(f"  {title}: {seconds:.1f} s", file=out)
    seconds = time.perf_counter() - started

    kernels, used = {}, []
    for name, dispatcher in _kernel_dispatchers():
        if not dispatcher.signatures:
            continue
        stats = dispatcher.stats
        used.append(dispatcher)
        kernels[name] = {
            "signatures": len(dispatcher.signatures),
            "compiled": int(sum(stats.cache_misses.values())),
            "loaded": int(sum(stats.cache_hits.values())),
        }
    return {
        "seconds": seconds,
        "cache_dir": _cache_dir(used),
        "compiled": sum(k["compiled"] for k in kernels.values()),
        "loaded": sum(k["loaded"] for k in kernels.values()),
        "kernels": kernels,
    }
