"""pytest-benchmark suite: a tf-idf text branch against MLPClassifier and PyTorch.

``pytest bench/test_bench_sparse.py --benchmark-only [--bench-size full]``.
Data and models are those of :mod:`fastgd.benchmarks.sparse_text` (which also
measures them in one interleaved run: ``python -m fastgd.benchmarks.sparse_text``):
tf-idf documents × 50,000 words (about 50 non-zeros a row, CSR float32),
``Dense(64, relu)`` → softmax over 20 classes, Adam, batch 64, one epoch.
``full`` uses the issue's 100,000 documents, the default ``quick`` 20,000.
Each model warms up on 2,000 documents and is checked to learn after its
timed epochs. The PyTorch benchmark (EmbeddingBag with sparse gradients,
SparseAdam) is skipped without PyTorch.
"""

import numpy as np
import pytest

from bench._speedups import label
from fastgd.benchmarks.sparse_text import (
    FULL_SIZE,
    N_CLASSES,
    QUICK_SIZE,
    TorchTextTrainer,
    check_accuracy,
    fastgd_epoch,
    fastgd_model,
    sklearn_model,
    tfidf_data,
)

ROUNDS = 2
GROUP = "sparse: tf-idf Dense(64) train epoch"


@pytest.fixture(scope="module")
def documents(bench_size):
    X, y = tfidf_data(*(FULL_SIZE if bench_size == "full" else QUICK_SIZE))
    check = np.random.RandomState(1).permutation(len(y))[:5000]
    return X, y, check


@pytest.mark.benchmark(group=GROUP)
def test_fastgd_tfidf_epoch(benchmark, documents):
    X, y, check = documents
    label(benchmark, "fastgd", n_samples=len(y), n_words=X.shape[1])
    clf = fastgd_epoch(fastgd_model(), X[:2000], y[:2000])  # build and compile
    benchmark.pedantic(fastgd_epoch, args=(clf, X, y), rounds=ROUNDS, iterations=1)
    check_accuracy(clf.predict(X[check]), y[check])


@pytest.mark.benchmark(group=GROUP)
def test_sklearn_tfidf_epoch(benchmark, documents):
    X, y, check = documents
    label(benchmark, "sklearn", n_samples=len(y), n_words=X.shape[1])
    clf = sklearn_model()
    clf.partial_fit(X[:2000], y[:2000], classes=np.arange(N_CLASSES))
    benchmark.pedantic(clf.partial_fit, args=(X, y), rounds=ROUNDS, iterations=1)
    check_accuracy(clf.predict(X[check]), y[check])


@pytest.mark.benchmark(group=GROUP)
def test_torch_tfidf_epoch(benchmark, torch, documents):
    X, y, check = documents
    label(benchmark, "torch", n_samples=len(y), n_words=X.shape[1])
    trainer = TorchTextTrainer(X)
    trainer.epoch_of(np.arange(2000), y)
    benchmark.pedantic(trainer.epoch, args=(y,), rounds=ROUNDS, iterations=1)
    check_accuracy(trainer.predict(check), y[check])
