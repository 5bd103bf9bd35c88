"""FusionClassifier against PyTorch (CPU) and scikit-learn's MLP, measured in one run.

Run as a script for a table of ratios (``python -m fastgd.benchmarks.fusion [--quick]
[--threads N]``; ``fastgd bench`` runs it too); the pytest-benchmark suite in
``bench/test_bench_fusion.py`` uses the same data and models.

Workloads (float32, same number of threads everywhere):

* ``multimodal``: the reference model of the FusionClassifier issue — image
  branch Conv2D(32, 3×3, relu) → MaxPool2D(2) → Flatten on 32×32×3 images,
  text branch Dense(64, relu) → Dense(32, relu) on 100-d vectors,
  concatenated, softmax over 10 classes; Adam, batch 32. One epoch.
* ``mlp``: 784-256-128-10 ReLU MLP, Adam, batch 128. One epoch.
* ``predict``: predictions on 10,000 samples with both models.

Every measurement checks its result (a fast wrong model cannot win): the
trained models must beat chance by far on their synthetic (learnable) data.
PyTorch is optional (``pip install torch``); without it only fastgd and
scikit-learn are measured. It is never a dependency of fastgd.
"""

import os
import sys
import warnings

# OpenMP threads that busy-wait after a parallel kernel starve the BLAS
# threads of the next matrix product (10x slower epochs on 2 cores). fastgd
# sets this when it loads Numba, but PyTorch may load its OpenMP first: set it
# before anything does. Override by setting the variable.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from fastgd import FusionClassifier, stack_modalities  # noqa: E402
from fastgd.benchmarks.timing import interleaved_median_times  # noqa: E402
from fastgd.layers import Conv2D, Dense, Flatten, MaxPool2D, Reshape  # noqa: E402

try:  # optional
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

N_CLASSES = 10


def n_threads():
    """Threads the Numba kernels use; PyTorch is given the same number."""
    import numba

    return numba.get_num_threads()


# ------------------------------------------------------------------ data
def multimodal_data(n=2048, seed=0):
    """Images (n, 32, 32, 3) channels-last, text (n, 100), learnable labels."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, N_CLASSES, n)
    # Each class has a mean image (smooth pattern) and a mean text vector,
    # the same whatever the seed of the samples.
    classes = np.random.RandomState(12345)
    patterns = classes.rand(N_CLASSES, 8, 8, 3).repeat(4, axis=1).repeat(4, axis=2)
    centers = classes.standard_normal((N_CLASSES, 100))
    images = patterns[y] + 0.5 * rng.rand(n, 32, 32, 3)
    text = 0.4 * centers[y] + rng.standard_normal((n, 100))
    X, columns = stack_modalities(
        {"image": images.astype(np.float32), "text": text.astype(np.float32)}
    )
    return X, y, columns, images.astype(np.float32), text.astype(np.float32)


def mlp_data(n=8192, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, N_CLASSES, n)
    centers = np.random.RandomState(12345).standard_normal((N_CLASSES, 784))
    X = (0.15 * centers[y] + rng.standard_normal((n, 784))).astype(np.float32)
    return X, y


# ------------------------------------------------------------- fastgd
def fastgd_multimodal(columns, random_state=0):
    return FusionClassifier(
        branches=[
            (
                "image",
                [
                    Reshape((32, 32, 3), channels_last=True),
                    Conv2D(32, 3, activation="relu"),
                    MaxPool2D(2),
                    Flatten(),
                ],
                columns["image"],
            ),
            (
                "text",
                [Dense(64, activation="relu"), Dense(32, activation="relu")],
                columns["text"],
            ),
        ],
        batch_size=32,
        optimizer="adam",
        learning_rate_init=1e-3,
        alpha=0.0,
        random_state=random_state,
    )


def fastgd_mlp(random_state=0):
    return FusionClassifier(
        branches=[
            ("x", [Dense(256, activation="relu"), Dense(128, activation="relu")], slice(None))
        ],
        batch_size=128,
        alpha=0.0,
        random_state=random_state,
    )


def fastgd_epoch(clf, X, y):
    """One epoch with partial_fit (the first call also builds the model)."""
    clf.partial_fit(X, y, classes=np.arange(N_CLASSES))
    return clf


# -------------------------------------------------------------- torch
class TorchMultimodal(torch.nn.Module if torch is not None else object):
    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.conv = nn.Conv2d(3, 32, 3)
        self.text = nn.Sequential(nn.Linear(100, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.out = nn.Linear(32 * 15 * 15 + 32, N_CLASSES)

    def forward(self, image, text):
        a = torch.nn.functional.max_pool2d(torch.relu(self.conv(image)), 2).flatten(1)
        return self.out(torch.cat([a, self.text(text)], dim=1))


class TorchMLP(torch.nn.Module if torch is not None else object):
    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.net = nn.Sequential(
            nn.Linear(784, 256),
            nn.ReLU(),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, N_CLASSES),
        )

    def forward(self, x):
        return self.net(x)


class TorchTrainer:
    """Adam, cross-entropy, shuffled mini-batches: the usual PyTorch loop."""

    def __init__(self, model, batch_size, seed=0):
        torch.manual_seed(seed)
        torch.set_num_threads(n_threads())
        self.model = model
        self.batch_size = batch_size
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.loss = torch.nn.CrossEntropyLoss()
        self.gen = torch.Generator().manual_seed(seed)

    def epoch(self, inputs, y):
        n = y.shape[0]
        perm = torch.randperm(n, generator=self.gen)
        self.model.train()
        for start in range(0, n, self.batch_size):
            idx = perm[start : start + self.batch_size]
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss(self.model(*(t[idx] for t in inputs)), y[idx])
            loss.backward()
            self.opt.step()
        return self

    def predict(self, inputs, chunk=1000):
        self.model.eval()
        out = []
        with torch.no_grad():
            n = inputs[0].shape[0]
            for start in range(0, n, chunk):
                out.append(self.model(*(t[start : start + chunk] for t in inputs)).argmax(1))
        return torch.cat(out).numpy()


def torch_multimodal_inputs(images, text):
    # PyTorch's native layout is NCHW: give it its images transposed once.
    return (
        torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),
        torch.from_numpy(text),
    )


# ---------------------------------------------------------- sklearn MLP
def sklearn_mlp():
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        hidden_layer_sizes=(256, 128),
        batch_size=128,
        alpha=0.0,
        solver="adam",
        learning_rate_init=1e-3,
        random_state=0,
    )


# ------------------------------------------------------------- checks
def check_accuracy(pred, y, minimum):
    acc = float(np.mean(pred == y))
    assert acc >= minimum, f"accuracy {acc:.3f} below {minimum}"
    return acc


# ================================================================== CLI
def main(argv=None):
    """Measure every workload in one run and print time ratios."""
    argv = sys.argv[1:] if argv is None else argv
    quick = "--quick" in argv
    if "--threads" in argv:
        # Same thread count for Numba, BLAS (through threadpoolctl) and PyTorch.
        import numba
        from threadpoolctl import threadpool_limits

        threads = int(argv[argv.index("--threads") + 1])
        numba.set_num_threads(threads)
        threadpool_limits(threads)
    repeats = 3 if quick else 7
    warnings.simplefilter("ignore")
    rows = []

    def record(workload, best):
        fast = best["fastgd"]
        for impl, seconds in best.items():
            rows.append((workload, impl, seconds, None if impl == "fastgd" else seconds / fast))

    # Reference multimodal model.
    X, y, columns, images, text = multimodal_data(512 if quick else 2048)
    clf = fastgd_epoch(fastgd_multimodal(columns), X, y)
    fns = {"fastgd": lambda: fastgd_epoch(clf, X, y)}
    if torch is not None:
        inputs, yt = torch_multimodal_inputs(images, text), torch.from_numpy(y)
        trainer = TorchTrainer(TorchMultimodal(), 32).epoch(inputs, yt)
        fns["pytorch"] = lambda: trainer.epoch(inputs, yt)
    record("multimodal epoch", interleaved_median_times(fns, repeats, warmup=0))
    check_accuracy(clf.predict(X), y, 0.5)
    if torch is not None:
        check_accuracy(trainer.predict(inputs), y, 0.5)

    Xp, yp, _, images_p, text_p = multimodal_data(2000 if quick else 10_000, seed=1)
    fns = {"fastgd": lambda: clf.predict(Xp)}
    if torch is not None:
        inputs_p = torch_multimodal_inputs(images_p, text_p)
        fns["pytorch"] = lambda: trainer.predict(inputs_p)
    predict_times = interleaved_median_times(fns, max(2, repeats // 2), warmup=0)
    record(f"multimodal predict {len(yp)}", predict_times)
    check_accuracy(clf.predict(Xp), yp, 0.5)

    # MLP 784-256-128-10.
    X, y = mlp_data(2048 if quick else 8192)
    clf = fastgd_epoch(fastgd_mlp(), X, y)
    sk = sklearn_mlp()
    sk.partial_fit(X, y, classes=np.arange(N_CLASSES))
    fns = {"fastgd": lambda: fastgd_epoch(clf, X, y), "sklearn": lambda: sk.partial_fit(X, y)}
    if torch is not None:
        inputs, yt = (torch.from_numpy(X),), torch.from_numpy(y)
        trainer = TorchTrainer(TorchMLP(), 128).epoch(inputs, yt)
        fns["pytorch"] = lambda: trainer.epoch(inputs, yt)
    record("mlp 784-256-128-10 epoch", interleaved_median_times(fns, repeats, warmup=0))
    check_accuracy(clf.predict(X), y, 0.8)
    check_accuracy(sk.predict(X), y, 0.8)
    if torch is not None:
        check_accuracy(trainer.predict(inputs), y, 0.8)

    Xp = np.tile(X, (5, 1))[:10_000]
    fns = {"fastgd": lambda: clf.predict(Xp), "sklearn": lambda: sk.predict(Xp)}
    if torch is not None:
        inputs_p = (torch.from_numpy(Xp),)
        fns["pytorch"] = lambda: trainer.predict(inputs_p, 10_000)
    record("mlp predict 10000", interleaved_median_times(fns, 3 * repeats, warmup=0))

    print(
        f"threads: {n_threads()}  (median times; ratio = other time / fastgd time; "
        "> 1 means fastgd is faster)"
    )
    print(f"{'workload':<28} {'impl':<8} {'seconds':>9} {'ratio':>7}")
    for workload, impl, seconds, ratio in rows:
        r = "" if ratio is None else f"{ratio:7.2f}"
        print(f"{workload:<28} {impl:<8} {seconds:9.4f} {r:>7}")
    return rows


if __name__ == "__main__":
    main()
