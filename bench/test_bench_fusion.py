"""pytest-benchmark suite: FusionClassifier against PyTorch (CPU) and scikit-learn's MLP.

``pytest bench/test_bench_fusion.py --benchmark-only [--bench-size full]
[--torch-env default|same]``. Workloads, data and models are those of
:mod:`fastgd.benchmarks.fusion` (which also measures them in one interleaved run
per environment: ``python -m fastgd.benchmarks.fusion``): the reference
multimodal model of the FusionClassifier issue at batch 32 and 128, the deeper
image branch, and a 784-256-128-10 MLP; one training epoch and predictions.
``full`` uses the issue's sizes (8,000 training samples, 10,000 predictions,
8,192 MLP samples); the default ``quick`` smaller ones. ``--torch-env``:
PyTorch in its default environment (the default) or with fastgd's
``OMP_WAIT_POLICY=PASSIVE``. Each group holds fastgd and its alternatives;
every benchmark checks the accuracy of the model it timed on held-out
samples, so a fast wrong model cannot win. The PyTorch benchmarks are skipped
without PyTorch.
"""

import numpy as np
import pytest

from bench._speedups import label
from fastgd.benchmarks.fusion import (
    N_CLASSES,
    TorchMLP,
    TorchMultimodal,
    TorchTrainer,
    check_accuracy,
    fastgd_epoch,
    fastgd_mlp,
    fastgd_multimodal,
    mlp_data,
    multimodal_data,
    sklearn_mlp,
    torch_multimodal_inputs,
)

# Samples: multimodal training set, predictions (both models), MLP training set.
SIZES = {
    "quick": {"multimodal": 1_000, "predict": 2_500, "mlp": 2_048},
    "full": {"multimodal": 8_000, "predict": 10_000, "mlp": 8_192},
}
# Accuracy each trained model must reach (after its warm-up and timed epochs).
MIN_ACCURACY = {
    "quick": {"multimodal": 0.5, "mlp": 0.8},
    "full": {"multimodal": 0.8, "mlp": 0.9},
}
ROUNDS = 3


@pytest.fixture(scope="module")
def sizes(bench_size):
    return SIZES[bench_size]


@pytest.fixture(scope="module")
def min_accuracy(bench_size):
    return MIN_ACCURACY[bench_size]


@pytest.fixture(scope="module")
def multimodal(sizes):
    return multimodal_data(sizes["multimodal"])


@pytest.fixture(scope="module")
def multimodal_test(sizes):
    return multimodal_data(sizes["predict"], seed=1)


@pytest.fixture(scope="module")
def mlp(sizes):
    return mlp_data(sizes["mlp"])


@pytest.fixture(scope="module")
def mlp_test(mlp, sizes):
    X, y = mlp
    reps = -(-sizes["predict"] // len(y))
    return np.tile(X, (reps, 1))[: sizes["predict"]], np.tile(y, reps)[: sizes["predict"]]


# ------------------------------------------------------- multimodal model
MULTIMODAL_CASES = [
    pytest.param(32, False, id="reference-batch32"),
    pytest.param(128, False, id="reference-batch128"),
    pytest.param(32, True, id="deeper-batch32"),
]


@pytest.mark.parametrize(("batch_size", "deeper"), MULTIMODAL_CASES)
def test_fastgd_multimodal_epoch(
    benchmark, multimodal, multimodal_test, min_accuracy, batch_size, deeper
):
    X, y, columns, _, _ = multimodal
    X_test, y_test, _, _, _ = multimodal_test
    benchmark.group = f"fusion: multimodal train epoch ({'deeper' if deeper else 'reference'}"
    benchmark.group += f", batch {batch_size})"
    label(benchmark, "fastgd", n_samples=len(y))
    model = fastgd_multimodal(columns, batch_size=batch_size, deeper=deeper)
    clf = fastgd_epoch(model, X, y)  # build and compile
    benchmark.pedantic(fastgd_epoch, args=(clf, X, y), rounds=ROUNDS, iterations=1)
    check_accuracy(clf.predict(X_test), y_test, min_accuracy["multimodal"])


@pytest.mark.parametrize(("batch_size", "deeper"), MULTIMODAL_CASES)
def test_torch_multimodal_epoch(
    benchmark, torch, multimodal, multimodal_test, min_accuracy, batch_size, deeper
):
    _, y, _, images, text = multimodal
    _, y_test, _, images_test, text_test = multimodal_test
    benchmark.group = f"fusion: multimodal train epoch ({'deeper' if deeper else 'reference'}"
    benchmark.group += f", batch {batch_size})"
    label(benchmark, "torch", n_samples=len(y))
    inputs, yt = torch_multimodal_inputs(images, text), torch.from_numpy(y)
    trainer = TorchTrainer(TorchMultimodal(deeper), batch_size).epoch(inputs, yt)
    benchmark.pedantic(trainer.epoch, args=(inputs, yt), rounds=ROUNDS, iterations=1)
    pred = trainer.predict(torch_multimodal_inputs(images_test, text_test))
    check_accuracy(pred, y_test, min_accuracy["multimodal"])


@pytest.mark.benchmark(group="fusion: multimodal predict")
def test_fastgd_multimodal_predict(benchmark, multimodal, multimodal_test, min_accuracy):
    X, y, columns, _, _ = multimodal
    X_test, y_test, _, _, _ = multimodal_test
    label(benchmark, "fastgd", n_samples=len(y_test))
    clf = fastgd_epoch(fastgd_multimodal(columns), X, y)
    pred = benchmark.pedantic(clf.predict, args=(X_test,), rounds=ROUNDS, iterations=1)
    check_accuracy(pred, y_test, min_accuracy["multimodal"] - 0.1)


@pytest.mark.benchmark(group="fusion: multimodal predict")
def test_torch_multimodal_predict(benchmark, torch, multimodal, multimodal_test, min_accuracy):
    _, y, _, images, text = multimodal
    _, y_test, _, images_test, text_test = multimodal_test
    label(benchmark, "torch", n_samples=len(y_test))
    trainer = TorchTrainer(TorchMultimodal(), 32)
    trainer.epoch(torch_multimodal_inputs(images, text), torch.from_numpy(y))
    inputs = torch_multimodal_inputs(images_test, text_test)
    pred = benchmark.pedantic(trainer.predict, args=(inputs,), rounds=ROUNDS, iterations=1)
    check_accuracy(pred, y_test, min_accuracy["multimodal"] - 0.1)


# -------------------------------------------------------------------- MLP
@pytest.mark.benchmark(group="fusion: MLP 784-256-128-10 train epoch")
def test_fastgd_mlp_epoch(benchmark, mlp, min_accuracy):
    X, y = mlp
    label(benchmark, "fastgd", n_samples=len(y))
    clf = fastgd_epoch(fastgd_mlp(), X, y)
    benchmark.pedantic(fastgd_epoch, args=(clf, X, y), rounds=ROUNDS, iterations=1)
    check_accuracy(clf.predict(X), y, min_accuracy["mlp"])


@pytest.mark.benchmark(group="fusion: MLP 784-256-128-10 train epoch")
def test_sklearn_mlp_epoch(benchmark, mlp, min_accuracy):
    X, y = mlp
    label(benchmark, "sklearn", n_samples=len(y))
    clf = sklearn_mlp()
    clf.partial_fit(X, y, classes=np.arange(N_CLASSES))
    benchmark.pedantic(clf.partial_fit, args=(X, y), rounds=ROUNDS, iterations=1)
    check_accuracy(clf.predict(X), y, min_accuracy["mlp"])


@pytest.mark.benchmark(group="fusion: MLP 784-256-128-10 train epoch")
def test_torch_mlp_epoch(benchmark, torch, mlp, min_accuracy):
    X, y = mlp
    label(benchmark, "torch", n_samples=len(y))
    inputs, yt = (torch.from_numpy(X),), torch.from_numpy(y)
    trainer = TorchTrainer(TorchMLP(), 128).epoch(inputs, yt)
    benchmark.pedantic(trainer.epoch, args=(inputs, yt), rounds=ROUNDS, iterations=1)
    check_accuracy(trainer.predict(inputs), y, min_accuracy["mlp"])


@pytest.mark.benchmark(group="fusion: MLP predict")
def test_fastgd_mlp_predict(benchmark, mlp, mlp_test, min_accuracy):
    X_test, y_test = mlp_test
    label(benchmark, "fastgd", n_samples=len(y_test))
    clf = fastgd_epoch(fastgd_mlp(), *mlp)
    pred = benchmark(clf.predict, X_test)
    expected = clf.classes_[np.argmax(clf.predict_proba(X_test), axis=1)]
    np.testing.assert_array_equal(pred, expected)
    check_accuracy(pred, y_test, min_accuracy["mlp"] - 0.1)


@pytest.mark.benchmark(group="fusion: MLP predict")
def test_sklearn_mlp_predict(benchmark, mlp, mlp_test, min_accuracy):
    X, y = mlp
    X_test, y_test = mlp_test
    label(benchmark, "sklearn", n_samples=len(y_test))
    clf = sklearn_mlp()
    clf.partial_fit(X, y, classes=np.arange(N_CLASSES))
    pred = benchmark(clf.predict, X_test)
    check_accuracy(pred, y_test, min_accuracy["mlp"] - 0.1)


@pytest.mark.benchmark(group="fusion: MLP predict")
def test_torch_mlp_predict(benchmark, torch, mlp, mlp_test, min_accuracy):
    X, y = mlp
    X_test, y_test = mlp_test
    label(benchmark, "torch", n_samples=len(y_test))
    trainer = TorchTrainer(TorchMLP(), 128).epoch((torch.from_numpy(X),), torch.from_numpy(y))
    inputs = (torch.from_numpy(X_test),)
    pred = benchmark(trainer.predict, inputs, len(y_test))
    check_accuracy(pred, y_test, min_accuracy["mlp"] - 0.1)
