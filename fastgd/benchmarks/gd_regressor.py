"""GDRegressor against scikit-learn's SGDRegressor, measured in one run.

Run as a script for a table (``python -m fastgd.benchmarks.gd_regressor``; ``--quick`` for
a small problem, ``--json FILE`` to keep the numbers); the pytest-benchmark
suite in ``bench/test_bench_gd_regressor.py`` uses the same problem and
functions.

What is measured (with the targets fastgd sets itself):

* per-sample SGD epoch: SGDRegressor / GDRegressor time, both backends, at
  the same R² (a one-epoch fit, and an epoch's marginal cost);
* mini-batch (256) epoch time / one ``X @ w`` pass over X, with and without
  shuffling (the epoch's marginal cost, and the median of the epoch times
  reported inside the fits);
* float32 epoch vs float64 epoch;
* peak memory allocated during fit / size of X;
* a fresh process that imports and fits 1,000 × 10: fastgd / scikit-learn.
"""

import argparse
import json
import statistics
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDRegressor

from fastgd import GDRegressor
from fastgd.benchmarks.timing import (
    fresh_process_time,
    interleaved_median_times,
    peak_python_memory,
)
from fastgd.callbacks import HistoryLogger

FULL_SIZE = (1_000_000, 100)
QUICK_SIZE = (100_000, 100)
EPOCHS = 3


def make_problem(n_samples, n_features, dtype=np.float64, seed=0):
    """A dense linear regression problem with standard-normal features."""
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n_samples, n_features)).astype(dtype)
    coef = rng.standard_normal(n_features)
    y = (X @ coef + 0.5 * rng.standard_normal(n_samples)).astype(dtype)
    return X, y


def epoch_settings(**extra):
    """Identical settings for both libraries: EPOCHS epochs, no early exit."""
    return dict(max_iter=EPOCHS, tol=None, random_state=0, **extra)


def fit_quietly(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


COLD_START_FASTGD = """
import numpy as np
from fastgd import GDRegressor
rng = np.random.RandomState(0); X = rng.randn(1000, 10); y = X @ rng.randn(10)
GDRegressor(random_state=0{extra}).fit(X, y)
"""
COLD_START_SKLEARN = """
import numpy as np
from sklearn.linear_model import SGDRegressor
rng = np.random.RandomState(0); X = rng.randn(1000, 10); y = X @ rng.randn(10)
SGDRegressor(random_state=0).fit(X, y)
"""


def measure(n_samples, n_features, repeats=3, cold_start=True):
    """Run every measurement; return a dict of named results."""
    X, y = make_problem(n_samples, n_features)
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    w = np.ones(n_features)
    models = {
        "sklearn": SGDRegressor(**epoch_settings()),
        "cython": GDRegressor(backend="cython", **epoch_settings()),
        "numba": GDRegressor(backend="numba", **epoch_settings()),
    }
    # The mini-batch epochs are also timed inside the fits, by the epoch
    # reports fastgd gives its callbacks: a direct measurement, where the
    # marginal cost below is a difference of two noisy medians.
    epoch_logs = {"minibatch": HistoryLogger(), "minibatch_no_shuffle": HistoryLogger()}
    minibatch = GDRegressor(batch_size=256, learning_rate="constant", **epoch_settings())
    minibatch_in_order = clone(minibatch).set_params(shuffle=False)
    # Compile the Numba kernels before timing (the cache makes this cheap later).
    for model in (models["numba"], minibatch):
        fit_quietly(model, X[:2000], y[:2000])
        fit_quietly(model, X32[:2000], y32[:2000])

    # Each case is timed twice: a one-epoch fit (what a user sees, input
    # validation included) and the marginal cost of an epoch, fit(1 + EPOCHS)
    # minus fit(1) divided by EPOCHS (validation, paid once per fit, left out).
    cases = {
        "sklearn": (models["sklearn"], X, y),
        "cython": (models["cython"], X, y),
        "numba": (models["numba"], X, y),
        "cython_float32": (models["cython"], X32, y32),
        "minibatch": (minibatch, X, y),
        "minibatch_float32": (minibatch, X32, y32),
        "minibatch_no_shuffle": (minibatch_in_order, X, y),
    }
    jobs = {"X @ w": lambda: X @ w}
    for name, (model, X_case, y_case) in cases.items():
        for n_epochs in (1, 1 + EPOCHS):
            jobs[(name, n_epochs)] = lambda m=model, a=X_case, b=y_case, k=n_epochs: fit_quietly(
                m.set_params(max_iter=k), a, b
            )
    minibatch.set_params(callbacks=[epoch_logs["minibatch"]])
    minibatch_in_order.set_params(callbacks=[epoch_logs["minibatch_no_shuffle"]])
    raw = interleaved_median_times(jobs, repeats=repeats)
    minibatch.set_params(callbacks=None)
    minibatch_in_order.set_params(callbacks=None)
    in_fit_epoch = {
        name: statistics.median(
            report["seconds"] for report in log.history if report["max_iter"] > 1
        )
        for name, log in epoch_logs.items()
    }
    one_epoch_fit = {name: raw[(name, 1)] for name in cases}
    marginal = {name: (raw[(name, 1 + EPOCHS)] - raw[(name, 1)]) / EPOCHS for name in cases}
    for model in (*models.values(), minibatch, minibatch_in_order):
        model.set_params(max_iter=EPOCHS)
    r2 = {name: fit_quietly(m, X, y).score(X, y) for name, m in models.items()}
    peak = {
        "per-sample": peak_python_memory(lambda: fit_quietly(models["cython"], X, y)),
        "mini-batch": peak_python_memory(lambda: fit_quietly(minibatch, X, y)),
    }
    results = {
        "n_samples": n_samples,
        "n_features": n_features,
        "one_epoch_fit_seconds": one_epoch_fit,
        "marginal_epoch_seconds": marginal,
        "in_fit_epoch_seconds": in_fit_epoch,
        "X @ w seconds": raw["X @ w"],
        "r2": r2,
        "peak_memory_over_X": {k: v / X.nbytes for k, v in peak.items()},
    }
    f, e, xw = one_epoch_fit, marginal, raw["X @ w"]
    results["ratios"] = {
        "one-epoch fit: sklearn / fastgd cython": f["sklearn"] / f["cython"],
        "one-epoch fit: sklearn / fastgd numba": f["sklearn"] / f["numba"],
        "marginal epoch: sklearn / fastgd cython": e["sklearn"] / e["cython"],
        "marginal epoch: sklearn / fastgd numba": e["sklearn"] / e["numba"],
        "minibatch(256) epoch / X@w, shuffled": e["minibatch"] / xw,
        "minibatch(256) epoch / X@w, shuffle=False": e["minibatch_no_shuffle"] / xw,
        "minibatch(256) in-fit epoch / X@w, shuffled": in_fit_epoch["minibatch"] / xw,
        "minibatch(256) in-fit epoch / X@w, shuffle=False": (
            in_fit_epoch["minibatch_no_shuffle"] / xw
        ),
        "sgd epoch: float64 / float32 (cython)": e["cython"] / e["cython_float32"],
        "minibatch epoch: float64 / float32": e["minibatch"] / e["minibatch_float32"],
    }
    if cold_start:
        cold = {
            "sklearn": fresh_process_time(COLD_START_SKLEARN),
            "fastgd (cython)": fresh_process_time(COLD_START_FASTGD.format(extra="")),
            "fastgd (numba, warm cache)": fresh_process_time(
                COLD_START_FASTGD.format(extra=", backend='numba'")
            ),
        }
        results["fresh_process_seconds"] = cold
        results["ratios"]["fresh process: fastgd cython / sklearn"] = (
            cold["fastgd (cython)"] / cold["sklearn"]
        )
        results["ratios"]["fresh process: fastgd numba / sklearn"] = (
            cold["fastgd (numba, warm cache)"] / cold["sklearn"]
        )
    return results


def format_table(results):
    """Markdown table of the measurements."""
    lines = [
        f"GDRegressor vs SGDRegressor, {results['n_samples']:,} x {results['n_features']} float64",
        "",
        "| measurement | value |",
        "| --- | --- |",
        f"| one X @ w pass | {results['X @ w seconds'] * 1000:.1f} ms |",
    ]
    for name, seconds in results["one_epoch_fit_seconds"].items():
        marginal = results["marginal_epoch_seconds"][name]
        lines.append(
            f"| {name}: one-epoch fit / marginal epoch | {seconds * 1000:.1f} ms / "
            f"{marginal * 1000:.1f} ms |"
        )
    for name, seconds in results["in_fit_epoch_seconds"].items():
        lines.append(f"| {name}: median epoch inside the fits | {seconds * 1000:.1f} ms |")
    for name, value in results["r2"].items():
        lines.append(f"| R² after {EPOCHS} epochs, {name} | {value:.6f} |")
    for name, value in results["peak_memory_over_X"].items():
        lines.append(f"| peak memory during fit / X, {name} | {value:.4f} |")
    for name, seconds in results.get("fresh_process_seconds", {}).items():
        lines.append(f"| fresh process import + fit 1000x10, {name} | {seconds:.3f} s |")
    for name, value in results["ratios"].items():
        lines.append(f"| **{name}** | **{value:.2f}** |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="100,000 x 100 instead of 1,000,000 x 100"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    n_samples, n_features = QUICK_SIZE if args.quick else FULL_SIZE
    results = measure(n_samples, n_features, repeats=args.repeats)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
