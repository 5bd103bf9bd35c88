"""pytest-benchmark suite: GDClassifier against SGDClassifier on the same problems.

``pytest bench/test_bench_gd_classifier.py --benchmark-only`` (add
``--bench-size full`` for the issue's sizes). Groups, each with fastgd (both
per-sample backends) and SGDClassifier, one-epoch fits with the same settings:

* a binary dense problem, hinge and log loss;
* a 10-class one-vs-rest problem (GDClassifier trains the classes in parallel);
* a binary tf-idf-like CSR problem, hinge and log loss.

Every benchmark also fits its model for three epochs and checks that its
held-out accuracy is within two points of SGDClassifier's after three epochs
(a single epoch's accuracy varies with the shuffle), so a fast wrong kernel
cannot win.
"""

import pytest
from sklearn.base import clone
from sklearn.linear_model import SGDClassifier

from bench._speedups import label
from fastgd import GDClassifier
from fastgd.benchmarks.gd_classifier import (
    BINARY_SIZE,
    MULTICLASS_SIZE,
    N_CLASSES,
    SPARSE_SIZE,
    dense_problem,
    fit_quietly,
    sparse_problem,
    split,
    with_test_rows,
)

ONE_EPOCH = dict(max_iter=1, tol=None, random_state=0)
WORKLOADS = {
    "binary-hinge": ("binary", "hinge"),
    "binary-log_loss": ("binary", "log_loss"),
    "multiclass-hinge": ("multiclass", "hinge"),
    "sparse-hinge": ("sparse", "hinge"),
    "sparse-log_loss": ("sparse", "log_loss"),
}


@pytest.fixture(scope="module")
def problems(bench_size):
    return {
        "binary": split(*dense_problem(*with_test_rows(BINARY_SIZE[bench_size]))),
        "multiclass": split(
            *dense_problem(*with_test_rows(MULTICLASS_SIZE[bench_size]), n_classes=N_CLASSES)
        ),
        "sparse": split(*sparse_problem(*with_test_rows(SPARSE_SIZE[bench_size]))),
    }


@pytest.mark.parametrize("library", ["sklearn", "fastgd-cython", "fastgd-numba"])
@pytest.mark.parametrize("workload", WORKLOADS)
def test_one_epoch_fit(benchmark, problems, workload, library):
    kind, loss = WORKLOADS[workload]
    X_train, X_test, y_train, y_test = problems[kind]
    if library == "sklearn":
        model = SGDClassifier(loss=loss, **ONE_EPOCH)
    else:
        model = GDClassifier(loss=loss, backend=library.split("-")[1], **ONE_EPOCH)
    benchmark.group = f"GDClassifier: one-epoch fit, {workload}"
    label(benchmark, library, shape=X_train.shape)
    fit_quietly(model, X_train[:2000], y_train[:2000])  # compile / warm up outside the timing
    benchmark.pedantic(fit_quietly, args=(model, X_train, y_train), rounds=3, iterations=1)
    three_epochs = {**ONE_EPOCH, "max_iter": 3}
    trained = fit_quietly(clone(model).set_params(**three_epochs), X_train, y_train)
    reference = fit_quietly(SGDClassifier(loss=loss, **three_epochs), X_train, y_train)
    assert trained.score(X_test, y_test) == pytest.approx(reference.score(X_test, y_test), abs=0.02)
