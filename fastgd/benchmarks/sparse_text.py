"""A tf-idf text branch: FusionClassifier against PyTorch and scikit-learn's MLP, in one run.

Run as a script for a table of ratios (``python -m fastgd.benchmarks.sparse_text
[--quick]``; ``fastgd bench`` runs it too); ``bench/test_bench_sparse.py`` times
the same models with pytest-benchmark.

Workload (the sparse-input issue's): a tf-idf matrix of 100,000 documents ×
50,000 words with about 50 non-zeros a row (float32 CSR), 20 classes; a
``Dense(64, relu)`` branch → softmax over 20 classes, Adam (lr 1e-3, no L2),
batch 64, one epoch, shuffled. The alternatives train the same shape:

* scikit-learn's ``MLPClassifier(hidden_layer_sizes=(64,))`` (it accepts
  sparse X: sparse × dense products, but a dense 50,000 × 64 gradient and a
  dense Adam step every batch), ``partial_fit`` for one epoch;
* PyTorch (CPU, default threads): ``nn.EmbeddingBag(50_000, 64, mode="sum",
  sparse=True)`` with the tf-idf values as ``per_sample_weights`` (a sparse
  matmul), a bias, ReLU, ``nn.Linear(64, 20)``; ``SparseAdam`` for the
  table and ``Adam`` for the rest (the lazy Adam of fastgd's sparse rows).
  Each batch's CSR rows are gathered with NumPy in the loop, as fastgd does.

Every model is checked to learn: after its epochs its training accuracy on
a 5,000-document sample must be far above chance (5 %).
"""

import argparse
import os
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see fastgd.benchmarks.fusion

import numpy as np  # noqa: E402

from fastgd import FusionClassifier  # noqa: E402
from fastgd.benchmarks.timing import interleaved_median_times  # noqa: E402
from fastgd.layers import Dense  # noqa: E402

try:  # optional
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

N_CLASSES = 20
FULL_SIZE = (100_000, 50_000)
QUICK_SIZE = (20_000, 50_000)
HIDDEN = 64
BATCH = 64
MIN_ACCURACY = 0.6


def tfidf_data(n_docs, n_words, words_per_doc=50, seed=0):
    """Synthetic tf-idf documents: each class favours its own 100 topic words.

    A document draws ``words_per_doc`` words, a fifth from its class's topic
    words and the rest from a Zipf-like background over the vocabulary;
    counts go through scikit-learn's ``TfidfTransformer`` (l2 rows).

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_docs, n_words), float32
    y : ndarray of int64
    """
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfTransformer

    rng = np.random.RandomState(seed)
    y = rng.randint(0, N_CLASSES, n_docs)
    topics = np.random.RandomState(12345).randint(0, n_words, (N_CLASSES, 100))
    background = 1.0 / np.arange(1, n_words + 1)
    background /= background.sum()
    words = rng.choice(n_words, size=(n_docs, words_per_doc), p=background)
    topical = rng.rand(n_docs, words_per_doc) < 0.2
    words[topical] = topics[
        y[:, None].repeat(words_per_doc, 1)[topical], rng.randint(0, 100, int(topical.sum()))
    ]
    counts = sparse.csr_matrix(
        (
            np.ones(words.size, np.float32),
            words.ravel(),
            np.arange(0, words.size + 1, words_per_doc),
        ),
        shape=(n_docs, n_words),
    )
    counts.sum_duplicates()
    X = TfidfTransformer().fit_transform(counts).astype(np.float32)
    return X.tocsr(), y.astype(np.int64)


# ------------------------------------------------------------------ models
def fastgd_model(random_state=0):
    return FusionClassifier(
        branches=[("text", [Dense(HIDDEN, activation="relu")], slice(None))],
        batch_size=BATCH,
        optimizer="adam",
        learning_rate_init=1e-3,
        alpha=0.0,
        random_state=random_state,
    )


def fastgd_epoch(clf, X, y):
    clf.partial_fit(X, y, classes=np.arange(N_CLASSES))
    return clf


def sklearn_model():
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        hidden_layer_sizes=(HIDDEN,),
        batch_size=BATCH,
        solver="adam",
        learning_rate_init=1e-3,
        alpha=0.0,
        random_state=0,
    )


class TorchTextModel(torch.nn.Module if torch is not None else object):
    """EmbeddingBag (sparse gradient) + bias → ReLU → Linear: the same shape."""

    def __init__(self, n_words):
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(n_words, HIDDEN, mode="sum", sparse=True)
        self.bias = torch.nn.Parameter(torch.zeros(HIDDEN))
        self.out = torch.nn.Linear(HIDDEN, N_CLASSES)

    def forward(self, indices, offsets, weights):
        h = self.bag(indices, offsets, per_sample_weights=weights) + self.bias
        return self.out(torch.relu(h))


class TorchTextTrainer:
    """SparseAdam on the table, Adam on the rest; CSR batches gathered per step."""

    def __init__(self, X, seed=0):
        import numba

        torch.manual_seed(seed)
        torch.set_num_threads(numba.get_num_threads())
        self.model = TorchTextModel(X.shape[1])
        self.sparse_opt = torch.optim.SparseAdam(list(self.model.bag.parameters()), lr=1e-3)
        dense = [self.model.bias, *self.model.out.parameters()]
        self.dense_opt = torch.optim.Adam(dense, lr=1e-3)
        self.loss = torch.nn.CrossEntropyLoss()
        self.rng = np.random.RandomState(seed)
        self.indptr = X.indptr.astype(np.int64)
        self.indices = torch.from_numpy(X.indices.astype(np.int64))
        self.data = torch.from_numpy(X.data)

    def _batch(self, rows):
        """(indices, offsets, weights) of the CSR rows ``rows``, gathered with NumPy."""
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        lengths = stops - starts
        offsets = np.zeros(len(rows), np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        positions = np.repeat(starts - offsets, lengths) + np.arange(lengths.sum())
        positions = torch.from_numpy(positions)
        return self.indices[positions], torch.from_numpy(offsets), self.data[positions]

    def epoch(self, y):
        """One shuffled pass over every document."""
        return self.epoch_of(self.rng.permutation(len(y)), y)

    def epoch_of(self, order, y):
        """One pass over the documents ``order``, in that order."""
        yt = torch.from_numpy(y)
        self.model.train()
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            self.sparse_opt.zero_grad(set_to_none=True)
            self.dense_opt.zero_grad(set_to_none=True)
            loss = self.loss(self.model(*self._batch(rows)), yt[rows])
            loss.backward()
            self.sparse_opt.step()
            self.dense_opt.step()
        return self

    def predict(self, rows):
        self.model.eval()
        with torch.no_grad():
            return self.model(*self._batch(rows)).argmax(1).numpy()


def check_accuracy(pred, y, minimum=MIN_ACCURACY):
    accuracy = float(np.mean(pred == y))
    assert accuracy >= minimum, f"accuracy {accuracy:.3f} below {minimum}"
    return accuracy


# ===================================================================== CLI
def measure(n_docs, n_words, repeats=3):
    """One-epoch median times of the three models (interleaved) and their ratios.

    Every model trains a warm-up epoch on 2,000 documents (fastgd compiles
    its kernels), then ``repeats`` timed epochs each over all of them; the
    accuracies are checked after.
    """
    warnings.simplefilter("ignore")
    X, y = tfidf_data(n_docs, n_words)
    check = np.random.RandomState(1).permutation(n_docs)[:5000]
    # Warm-up on the first 2,000 documents: builds every model, compiles fastgd's kernels.
    warm = slice(0, 2000)
    clf = fastgd_epoch(fastgd_model(), X[warm], y[warm])
    sk = sklearn_model()
    sk.partial_fit(X[warm], y[warm], classes=np.arange(N_CLASSES))
    fns = {"fastgd": lambda: fastgd_epoch(clf, X, y), "sklearn": lambda: sk.partial_fit(X, y)}
    trainer = None
    if torch is not None:
        trainer = TorchTextTrainer(X)
        trainer.epoch_of(np.arange(2000), y)
        fns["pytorch"] = lambda: trainer.epoch(y)
    times = interleaved_median_times(fns, repeats, warmup=0)
    accuracy = {
        "fastgd": check_accuracy(clf.predict(X[check]), y[check]),
        "sklearn": check_accuracy(sk.predict(X[check]), y[check]),
    }
    if trainer is not None:
        accuracy["pytorch"] = check_accuracy(trainer.predict(check), y[check])
    return {
        "size": (n_docs, n_words),
        "nnz_per_row": X.nnz / n_docs,
        "seconds": times,
        "accuracy": accuracy,
        "ratios": {name: t / times["fastgd"] for name, t in times.items() if name != "fastgd"},
    }


def format_table(result):
    n_docs, n_words = result["size"]
    lines = [
        f"tf-idf {n_docs:,} x {n_words:,} ({result['nnz_per_row']:.1f} nnz/row), "
        f"Dense({HIDDEN}, relu) -> softmax({N_CLASSES}), Adam, batch {BATCH}: one epoch "
        "(median; ratio = other time / fastgd time)",
        f"{'impl':<8} {'seconds':>9} {'ratio':>7} {'accuracy':>9}",
    ]
    for name, seconds in result["seconds"].items():
        ratio = result["ratios"].get(name)
        r = "" if ratio is None else f"{ratio:7.2f}"
        lines.append(f"{name:<8} {seconds:9.3f} {r:>7} {result['accuracy'][name]:9.3f}")
    return "\n".join(lines)


def main(argv=None):
    """Measure and print the table; returns :func:`measure`'s result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"(samples, features) {QUICK_SIZE} instead of {FULL_SIZE}",
    )
    quick = parser.parse_args(argv).quick
    result = measure(*(QUICK_SIZE if quick else FULL_SIZE), repeats=2 if quick else 3)
    print(format_table(result))
    return result


if __name__ == "__main__":
    main()
