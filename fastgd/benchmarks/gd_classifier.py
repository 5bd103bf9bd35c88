"""GDClassifier against scikit-learn's SGDClassifier, measured in one run.

Run as a script for a table (``python -m fastgd.benchmarks.gd_classifier``;
``--quick`` for smaller problems, ``--json FILE`` to keep the numbers); the
pytest-benchmark suite in ``bench/test_bench_gd_classifier.py`` uses the same
problems.

What is measured (with the targets fastgd sets itself), every model with the same settings in
both libraries (defaults, ``EPOCHS`` epochs, ``tol=None``), timings interleaved:

* per-sample SGD on a binary problem (1,000,000 × 100, hinge and log loss):
  a one-epoch fit and the marginal cost of an epoch, SGDClassifier / GDClassifier
  for both backends, and the held-out accuracy of both after ``EPOCHS`` epochs;
* the same on a 10-class one-vs-rest problem (200,000 × 100), GDClassifier
  training the classes in parallel;
* the same on a tf-idf-like CSR problem (200,000 × 50,000, about 50 stored
  values per row, binary).
"""

import argparse
import json
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier

from fastgd import GDClassifier
from fastgd.benchmarks.timing import interleaved_median_times

EPOCHS = 3
BINARY_SIZE = {"full": (1_000_000, 100), "quick": (100_000, 100)}
MULTICLASS_SIZE = {"full": (200_000, 100), "quick": (50_000, 100)}
SPARSE_SIZE = {"full": (200_000, 50_000), "quick": (50_000, 20_000)}
SPARSE_VALUES_PER_ROW = 50
N_CLASSES = 10


def dense_problem(n_samples, n_features, n_classes=2, seed=0):
    """Standard-normal features; labels from noisy linear scores (argmax over classes)."""
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n_samples, n_features))
    scores = X @ rng.standard_normal((n_features, n_classes))
    scores += 2.0 * rng.standard_normal(scores.shape)
    y = scores.argmax(axis=1) if n_classes > 2 else (scores[:, 0] > scores[:, 1]).astype(int)
    return X, y


def sparse_problem(n_samples, n_features, seed=0):
    """A tf-idf-like CSR matrix (rows of unit norm, skewed column frequencies), binary labels."""
    rng = np.random.RandomState(seed)
    # Low column numbers are frequent words: column = n_features · u³.
    columns = (n_features * rng.random_sample(n_samples * SPARSE_VALUES_PER_ROW) ** 3).astype(int)
    rows = np.repeat(np.arange(n_samples), SPARSE_VALUES_PER_ROW)
    values = rng.exponential(1.0, size=columns.shape[0])
    X = sp.csr_matrix((values, (rows, columns)), shape=(n_samples, n_features))
    X.sum_duplicates()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ X
    # The label depends on the frequent words (the first tenth of the columns).
    weights = np.zeros(n_features)
    weights[: n_features // 10] = rng.standard_normal(n_features // 10)
    scores = X @ weights
    y = (scores + 0.1 * scores.std() * rng.standard_normal(n_samples) > 0).astype(int)
    return X.tocsr(), y


def split(X, y, test_share=0.2):
    """The first rows for training, the last ``test_share`` for testing."""
    cut = int(X.shape[0] * (1 - test_share))
    return X[:cut], X[cut:], y[:cut], y[cut:]


def settings(n_epochs, **extra):
    return dict(max_iter=n_epochs, tol=None, random_state=0, **extra)


def fit_quietly(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def models(loss, n_epochs):
    """The three contenders of a workload, as their users would make them."""
    return {
        "sklearn": SGDClassifier(loss=loss, **settings(n_epochs)),
        "cython": GDClassifier(loss=loss, backend="cython", **settings(n_epochs)),
        "numba": GDClassifier(loss=loss, backend="numba", **settings(n_epochs)),
    }


def measure_workload(X, y, loss, repeats):
    """One-epoch fit and marginal epoch of each contender; accuracy after EPOCHS epochs."""
    X_train, X_test, y_train, y_test = split(X, y)
    fit_quietly(models(loss, 1)["numba"], X_train[:2000], y_train[:2000])  # compile first
    jobs = {}
    for n_epochs in (1, 1 + EPOCHS):
        for name, model in models(loss, n_epochs).items():
            jobs[(name, n_epochs)] = lambda m=model: fit_quietly(m, X_train, y_train)
    raw = interleaved_median_times(jobs, repeats=repeats)
    names = ("sklearn", "cython", "numba")
    fit = {name: raw[(name, 1)] for name in names}
    marginal = {name: (raw[(name, 1 + EPOCHS)] - raw[(name, 1)]) / EPOCHS for name in names}
    accuracy = {
        name: fit_quietly(model, X_train, y_train).score(X_test, y_test)
        for name, model in models(loss, EPOCHS).items()
    }
    return {
        "shape": list(X_train.shape),
        "one_epoch_fit_seconds": fit,
        "marginal_epoch_seconds": marginal,
        "held_out_accuracy": accuracy,
        "ratios": {
            f"{kind}: sklearn / fastgd {backend}": times["sklearn"] / times[backend]
            for kind, times in (("one-epoch fit", fit), ("marginal epoch", marginal))
            for backend in ("cython", "numba")
        },
    }


def with_test_rows(size):
    """``(n_samples, n_features)`` with a quarter more rows, held out by :func:`split`."""
    n_samples, n_features = size
    return n_samples + n_samples // 4, n_features


def measure(size="full", repeats=3):
    """Every workload at ``size`` ("full" or "quick"); a dict of named results.

    The sizes are those of the training sets; a fifth more rows is held out.
    """
    binary = dense_problem(*with_test_rows(BINARY_SIZE[size]))
    multiclass = dense_problem(*with_test_rows(MULTICLASS_SIZE[size]), n_classes=N_CLASSES)
    sparse = sparse_problem(*with_test_rows(SPARSE_SIZE[size]))
    workloads = {
        "binary, hinge": (*binary, "hinge"),
        "binary, log_loss": (*binary, "log_loss"),
        f"{N_CLASSES}-class one-vs-rest, hinge": (*multiclass, "hinge"),
        "sparse tf-idf-like, hinge": (*sparse, "hinge"),
        "sparse tf-idf-like, log_loss": (*sparse, "log_loss"),
    }
    return {name: measure_workload(X, y, loss, repeats) for name, (X, y, loss) in workloads.items()}


def format_table(results):
    """Markdown table of the measurements."""
    lines = [
        f"GDClassifier vs SGDClassifier, {EPOCHS} epochs, float64",
        "",
        "| workload | one-epoch fit, sklearn / cython / numba | marginal epoch | "
        "speed-up (fit; epoch), cython / numba | held-out accuracy, sklearn / fastgd |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, result in results.items():
        fit, marginal = result["one_epoch_fit_seconds"], result["marginal_epoch_seconds"]
        ratios, accuracy = result["ratios"], result["held_out_accuracy"]
        shape = " × ".join(f"{n:,}" for n in result["shape"])
        lines.append(
            f"| {name} ({shape}) | "
            + " / ".join(f"{fit[k] * 1000:.0f}" for k in ("sklearn", "cython", "numba"))
            + " ms | "
            + " / ".join(f"{marginal[k] * 1000:.0f}" for k in ("sklearn", "cython", "numba"))
            + " ms | "
            + f"{ratios['one-epoch fit: sklearn / fastgd cython']:.2f}× / "
            + f"{ratios['one-epoch fit: sklearn / fastgd numba']:.2f}×; "
            + f"{ratios['marginal epoch: sklearn / fastgd cython']:.2f}× / "
            + f"{ratios['marginal epoch: sklearn / fastgd numba']:.2f}× | "
            + f"{accuracy['sklearn']:.4f} / {accuracy['cython']:.4f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller problems")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    results = measure("quick" if args.quick else "full", repeats=args.repeats)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
