"""Full-batch GDRegressor against Ridge and ElasticNet, to 1e-6 of the optimum, in one run.

Run as a script for a table (``python -m fastgd.benchmarks.full_batch``;
``--quick`` for 100,000 x 100, ``--json FILE`` to keep the numbers); the
pytest-benchmark suite in ``bench/test_bench_gd_regressor.py`` uses the same
problem and settings.

What is measured: the wall time of a whole fit with default parameters but
the penalty (``GDRegressor(batch_size="full")``, whose solver takes its step
from the problem), against

* ``Ridge(solver="auto")`` (a Cholesky solve of the normal equations: exact),
  with ``alpha`` matched (Ridge's alpha = n·α);
* ``ElasticNet`` (coordinate descent) with the same ``alpha`` and
  ``l1_ratio``, at its default ``tol`` and at the ``tol`` that brings it to
  1e-6 of the optimum too.

Every fit timed is checked: its coefficients within 1e-6 of the optimum (an
ElasticNet fit at ``tol=1e-12``, untimed, for the elastic net), with the same
exact zeros. The fits alternate (interleaved) and the medians are reported,
with the BLAS in its default number of threads and, since the products over X
(fastgd's and Ridge's) are BLAS calls whose threads suffer most on a busy
machine, also with one BLAS thread for every fit.
"""

import argparse
import contextlib
import json

import numpy as np
from sklearn.linear_model import ElasticNet, Ridge

from fastgd import GDRegressor
from fastgd.benchmarks.gd_regressor import FULL_SIZE, QUICK_SIZE, make_problem
from fastgd.benchmarks.timing import interleaved_median_times

ALPHA = 1e-4  # GDRegressor's default
ENET_ALPHA, ENET_L1_RATIO = 0.2, 0.5  # strong enough for exact zeros
ACCURACY = 1e-6
# ElasticNet's tol at which its coefficients are within ACCURACY of the optimum
# on this problem (checked by every run).
ENET_TOL_FOR_ACCURACY = 1e-9


def fits(n_samples):
    """The estimators, by name: the fastgd fit and its scikit-learn alternatives."""
    return {
        "fastgd ridge": GDRegressor(batch_size="full", alpha=ALPHA),
        "sklearn Ridge(solver='auto')": Ridge(alpha=ALPHA * n_samples),
        "fastgd elastic net": GDRegressor(
            batch_size="full", penalty="elasticnet", alpha=ENET_ALPHA, l1_ratio=ENET_L1_RATIO
        ),
        "sklearn ElasticNet (default tol)": ElasticNet(alpha=ENET_ALPHA, l1_ratio=ENET_L1_RATIO),
        f"sklearn ElasticNet (tol={ENET_TOL_FOR_ACCURACY:g})": ElasticNet(
            alpha=ENET_ALPHA, l1_ratio=ENET_L1_RATIO, tol=ENET_TOL_FOR_ACCURACY
        ),
    }


def optima(X, y):
    """The two problems' optima: Ridge's exact solve, and ElasticNet at tol=1e-12."""
    ridge = Ridge(alpha=ALPHA * X.shape[0]).fit(X, y).coef_
    enet = ElasticNet(alpha=ENET_ALPHA, l1_ratio=ENET_L1_RATIO, tol=1e-12, max_iter=100_000)
    return {"ridge": ridge, "elastic net": enet.fit(X, y).coef_}


def errors(models, reference):
    """Per fit: the largest coefficient error, and whether its zeros are the optimum's."""
    result = {}
    for name, model in models.items():
        optimum = reference["ridge" if "idge" in name else "elastic net"]
        result[name] = {
            "max_coef_error": float(np.abs(model.coef_ - optimum).max()),
            "same_zeros": bool(np.array_equal(model.coef_ == 0, optimum == 0)),
            "n_iter": int(np.max(getattr(model, "n_iter_", None) or 0)),  # Ridge: None
        }
    return result


def measure(n_samples, n_features, repeats=3, blas_threads=None):
    """Time every fit (interleaved medians); return a dict of named results.

    ``blas_threads`` limits the BLAS threads of every fit (default: the
    BLAS's own default).
    """
    from threadpoolctl import threadpool_limits

    X, y = make_problem(n_samples, n_features)
    models = fits(n_samples)
    limit = contextlib.nullcontext() if blas_threads is None else threadpool_limits(blas_threads)
    with limit:
        seconds = interleaved_median_times(
            {name: (lambda m=model: m.fit(X, y)) for name, model in models.items()},
            repeats=repeats,
        )
    reference = optima(X, y)
    checked = errors(models, reference)
    enet_tol = f"sklearn ElasticNet (tol={ENET_TOL_FOR_ACCURACY:g})"
    return {
        "n_samples": n_samples,
        "n_features": n_features,
        "blas_threads": "default" if blas_threads is None else blas_threads,
        "seconds": seconds,
        "checks": checked,
        "n_zeros_elastic_net": int((reference["elastic net"] == 0).sum()),
        "ratios": {
            "Ridge(solver='auto') / fastgd full batch": (
                seconds["sklearn Ridge(solver='auto')"] / seconds["fastgd ridge"]
            ),
            "ElasticNet (default tol) / fastgd full batch": (
                seconds["sklearn ElasticNet (default tol)"] / seconds["fastgd elastic net"]
            ),
            f"ElasticNet (tol={ENET_TOL_FOR_ACCURACY:g}) / fastgd full batch": (
                seconds[enet_tol] / seconds["fastgd elastic net"]
            ),
        },
    }


def format_table(results):
    """Markdown table of the measurements."""
    lines = [
        f"Full-batch GDRegressor vs Ridge and ElasticNet, {results['n_samples']:,} x "
        f"{results['n_features']} float64, BLAS threads: {results['blas_threads']} "
        f"(optimum with {results['n_zeros_elastic_net']} zeros for the elastic net)",
        "",
        "| fit | seconds (median) | iterations | max coef error | same zeros |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, seconds in results["seconds"].items():
        check = results["checks"][name]
        lines.append(
            f"| {name} | {seconds:.3f} | {check['n_iter'] or '-'} | "
            f"{check['max_coef_error']:.1e} | {'yes' if check['same_zeros'] else 'no'} |"
        )
    lines += ["", "| ratio (> 1: fastgd faster) | value |", "| --- | --- |"]
    lines += [f"| {name} | {value:.2f} |" for name, value in results["ratios"].items()]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 x 100 instead")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    size = QUICK_SIZE if args.quick else FULL_SIZE
    results = {}
    for threads in (None, 1):
        results[f"blas_threads={threads or 'default'}"] = result = measure(
            *size, repeats=args.repeats, blas_threads=threads
        )
        print(format_table(result), end="\n\n")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
