"""FusionClassifier against PyTorch (CPU) and scikit-learn's MLP, measured in one run.

Run as a script for a table of ratios (``python -m fastgd.benchmarks.fusion [--quick]
[--threads N] [--env default|same|both] [--kernels]``, also ``python -m bench.fusion``;
``fastgd bench`` runs it too); the pytest-benchmark suite in
``bench/test_bench_fusion.py`` uses the same data and models.

Workloads (float32, the same number of threads everywhere):

* ``reference``: the reference model of the FusionClassifier issue — image
  branch Conv2D(32, 3×3, relu) → MaxPool2D(2) → Flatten on 32×32×3 images,
  text branch Dense(64, relu) → Dense(32, relu) on 100-d vectors,
  concatenated, softmax over 10 classes; Adam. One epoch of 8,000 samples
  (2,000 with ``--quick``) at batch 32 and at batch 128.
* ``deeper``: the same with the image branch Conv2D(32) → MaxPool2D(2) →
  Conv2D(64) → MaxPool2D(2) → Flatten → Dense(128), batch 32.
* ``mlp``: 784-256-128-10 ReLU MLP, Adam, batch 128, one epoch of 8,192
  samples, against PyTorch and scikit-learn's MLPClassifier.
* ``predict``: predictions on 10,000 samples with the reference model.
* ``--kernels``: GFLOP/s of each kernel family at the reference shape beside
  NumPy's float32 GEMM rate (:func:`measure_kernel_rates`).

PyTorch's environment. OpenMP reads its settings when it is loaded, and
fastgd sets ``OMP_WAIT_POLICY=PASSIVE`` for its own OpenMP threads. Each
environment runs in its own process, in which both libraries are timed
interleaved (medians):

* ``default``: the environment the user started with; PyTorch is imported
  before fastgd, so it runs with its own defaults (what a PyTorch user has);
* ``same``: ``OMP_WAIT_POLICY=PASSIVE`` set before either library loads, so
  both run with the setting fastgd uses.

Every measurement checks its result (a fast wrong model cannot win): the
trained models must beat chance by far on held-out samples of their
synthetic (learnable) data. PyTorch is optional (``pip install torch``);
without it only fastgd and scikit-learn are measured. It is never a
dependency of fastgd.
"""

import argparse
import json
import os
import subprocess
import sys
import warnings

N_CLASSES = 10
ENVIRONMENTS = ("default", "same")
# Accuracy on held-out samples every timed model must reach (chance: 0.1).
MIN_ACCURACY = {"multimodal": 0.8, "mlp": 0.8, "wide": 0.8}


def _import_torch():
    try:  # optional
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return torch


# The user's environment, for the "default" runs: taken before fastgd loads
# Numba (which sets OMP_WAIT_POLICY=PASSIVE unless the user set it). If Numba
# is already loaded, a PASSIVE policy is taken to be fastgd's, not the user's.
USER_ENVIRONMENT = dict(os.environ)
if "fastgd._kernels.runtime.numba_setup" in sys.modules:
    if USER_ENVIRONMENT.get("OMP_WAIT_POLICY") == "PASSIVE":
        del USER_ENVIRONMENT["OMP_WAIT_POLICY"]

# In the "default" environment PyTorch must load its OpenMP before fastgd sets
# OMP_WAIT_POLICY for its own, so it is imported first, here.
torch = _import_torch()

import numpy as np  # noqa: E402

from fastgd import FusionClassifier, stack_modalities  # noqa: E402
from fastgd.benchmarks.timing import interleaved_median_times  # noqa: E402
from fastgd.layers import Conv2D, Dense, Flatten, MaxPool2D, Reshape  # noqa: E402


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
    images = (patterns[y] + 0.5 * rng.rand(n, 32, 32, 3)).astype(np.float32)
    text = (0.4 * centers[y] + rng.standard_normal((n, 100))).astype(np.float32)
    X, columns = stack_modalities({"image": images, "text": text})
    return X, y, columns, images, text


def mlp_data(n=8192, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, N_CLASSES, n)
    centers = np.random.RandomState(12345).standard_normal((N_CLASSES, 784))
    X = (0.15 * centers[y] + rng.standard_normal((n, 784))).astype(np.float32)
    return X, y


# ------------------------------------------------------------- fastgd
def reference_image_layers():
    return [
        Reshape((32, 32, 3), channels_last=True),
        Conv2D(32, 3, activation="relu"),
        MaxPool2D(2),
        Flatten(),
    ]


def deeper_image_layers():
    return [
        Reshape((32, 32, 3), channels_last=True),
        Conv2D(32, 3, activation="relu"),
        MaxPool2D(2),
        Conv2D(64, 3, activation="relu"),
        MaxPool2D(2),
        Flatten(),
        Dense(128, activation="relu"),
    ]


def fastgd_multimodal(columns, random_state=0, batch_size=32, deeper=False):
    image = deeper_image_layers() if deeper else reference_image_layers()
    return FusionClassifier(
        branches=[
            ("image", image, columns["image"]),
            (
                "text",
                [Dense(64, activation="relu"), Dense(32, activation="relu")],
                columns["text"],
            ),
        ],
        batch_size=batch_size,
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
    """The reference model (or the deeper one) in PyTorch, NCHW images."""

    def __init__(self, deeper=False):
        super().__init__()
        nn = torch.nn
        if deeper:
            self.image = nn.Sequential(
                nn.Conv2d(3, 32, 3),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Flatten(),
                nn.Linear(64 * 6 * 6, 128),
                nn.ReLU(),
            )
            width = 128
        else:
            self.image = nn.Sequential(
                nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()
            )
            width = 32 * 15 * 15
        self.text = nn.Sequential(nn.Linear(100, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.out = nn.Linear(width + 32, N_CLASSES)

    def forward(self, image, text):
        return self.out(torch.cat([self.image(image), self.text(text)], dim=1))


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


# ------------------------------------------------------------ workloads
def _ratios(workload, times, rows):
    fast = times["fastgd"]
    for impl, seconds in times.items():
        rows.append((workload, impl, seconds, None if impl == "fastgd" else seconds / fast))


def measure_multimodal(n_train, batch_size, repeats, rows, deeper=False, predict=False):
    """One epoch of the reference (or deeper) model, fastgd and PyTorch interleaved."""
    X, y, columns, images, text = multimodal_data(n_train)
    Xt, yt_test, _, images_t, text_t = multimodal_data(2000, seed=1)
    name = "deeper model" if deeper else "reference model"
    clf = fastgd_epoch(fastgd_multimodal(columns, batch_size=batch_size, deeper=deeper), X, y)
    fns = {"fastgd": lambda: fastgd_epoch(clf, X, y)}
    if torch is not None:
        inputs, yt = torch_multimodal_inputs(images, text), torch.from_numpy(y)
        trainer = TorchTrainer(TorchMultimodal(deeper), batch_size).epoch(inputs, yt)
        fns["pytorch"] = lambda: trainer.epoch(inputs, yt)
    _ratios(
        f"{name} epoch {n_train}, batch {batch_size}",
        interleaved_median_times(fns, repeats, warmup=0),
        rows,
    )
    minimum = MIN_ACCURACY["multimodal"]
    check_accuracy(clf.predict(Xt), yt_test, minimum)
    if torch is not None:
        test_inputs = torch_multimodal_inputs(images_t, text_t)
        check_accuracy(trainer.predict(test_inputs), yt_test, minimum)
    if not predict:
        return
    Xp, yp, _, images_p, text_p = multimodal_data(10_000, seed=2)
    fns = {"fastgd": lambda: clf.predict(Xp)}
    if torch is not None:
        inputs_p = torch_multimodal_inputs(images_p, text_p)
        fns["pytorch"] = lambda: trainer.predict(inputs_p)
    _ratios(
        f"{name} predict {len(yp)}",
        interleaved_median_times(fns, max(2, repeats), warmup=0),
        rows,
    )
    check_accuracy(clf.predict(Xp), yp, minimum)


def measure_mlp(n_train, repeats, rows):
    """One epoch of the 784-256-128-10 MLP: fastgd, scikit-learn and PyTorch interleaved."""
    X, y = mlp_data(n_train)
    Xt, yt_test = mlp_data(2000, seed=1)
    clf = fastgd_epoch(fastgd_mlp(), X, y)
    sk = sklearn_mlp()
    sk.partial_fit(X, y, classes=np.arange(N_CLASSES))
    fns = {"fastgd": lambda: fastgd_epoch(clf, X, y), "sklearn": lambda: sk.partial_fit(X, y)}
    if torch is not None:
        inputs, yt = (torch.from_numpy(X),), torch.from_numpy(y)
        trainer = TorchTrainer(TorchMLP(), 128).epoch(inputs, yt)
        fns["pytorch"] = lambda: trainer.epoch(inputs, yt)
    _ratios(
        f"mlp 784-256-128-10 epoch {n_train}, batch 128",
        interleaved_median_times(fns, repeats, warmup=0),
        rows,
    )
    minimum = MIN_ACCURACY["mlp"]
    check_accuracy(clf.predict(Xt), yt_test, minimum)
    check_accuracy(sk.predict(Xt), yt_test, minimum)
    if torch is not None:
        check_accuracy(trainer.predict((torch.from_numpy(Xt),)), yt_test, minimum)


def measure_kernel_rates(repeats=20):
    """GFLOP/s of the network kernel families at the reference shape, beside a float32 GEMM.

    Rows ``(kernel, implementation, seconds, GFLOP/s)``: NumPy's 2048² float32
    GEMM (the machine's reachable rate), and at the reference shape (batch
    32 of 3 × 32 × 32 images, 32 filters 3 × 3, 2 × 2 max pooling) the direct
    convolution, the fused convolution → relu → max pooling, the weight
    gradient after the fused pooling (FLOPs counted as for the dense weight
    gradient, what the unfused layer computes) and without it (each the way
    :func:`~fastgd._kernels.network.native.dense_weight_grad` chooses; the
    unpooled one with the relu derivative and the bias gradient it includes),
    PyTorch's ``conv2d`` + relu, its relu derivative + weight + bias gradient
    (the same work as fastgd's row) and its bare weight gradient, and a dense
    layer (128 × 784 → 256).
    """

    from fastgd._kernels.network import native
    from fastgd.benchmarks.timing import median_time

    rng = np.random.RandomState(0)
    f32 = np.float32
    rows = []

    def rate(name, impl, flops, fn):
        seconds = median_time(fn, repeats, warmup=2)
        rows.append((name, impl, seconds, flops / seconds / 1e9))

    A, Bm = rng.rand(2048, 2048).astype(f32), rng.rand(2048, 2048).astype(f32)
    C = np.empty_like(A)
    rate("gemm 2048x2048x2048", "numpy", 2 * 2048**3, lambda: np.dot(A, Bm, out=C))
    B, Cin, H, W, F, K = 32, 3, 32, 32, 32, 3
    OH = OW = H - K + 1
    X = rng.rand(B, Cin, H, W).astype(f32)
    Wt = (0.2 * rng.standard_normal((F, Cin, K, K))).astype(f32)
    b = np.zeros(F, f32)
    threads = native.thread_count(B * Wt.size * OH * OW)
    fwd, bwd, part = native.workspace_sizes(Cin, H, W, F, K, K, 1, 0, 0, OH, OW, 4, True, False)
    ws = native.aligned_rows(native.max_threads(), max(fwd, bwd), f32)
    partials = native.aligned_rows(-(-B // native.GRAD_BLOCK), part, f32)
    packed = np.empty(native.packed_weights_size(F, Cin, K, K), f32)
    native.pack_weights(Wt, packed)
    out = np.empty((B, F, OH, OW), f32)
    pooled = np.empty((B, F, OH // 2, OW // 2), f32)
    argmax = np.empty(pooled.shape, np.int32)
    flops = 2 * B * F * Cin * K * K * OH * OW
    rate(
        "conv2d forward (ref shape)",
        "fastgd",
        flops,
        lambda: native.conv2d_forward(X, Wt, b, 1, 0, 0, out, 1, packed, ws, threads),
    )
    rate(
        "conv2d+relu+maxpool forward",
        "fastgd",
        flops,
        lambda: native.conv2d_pool_forward(
            X, Wt, b, 1, 0, 0, OH, OW, 1, 2, 2, 2, pooled, argmax, packed, ws, threads
        ),
    )
    dW, db = np.empty_like(Wt), np.empty_like(b)
    dP = rng.standard_normal(pooled.shape).astype(f32)
    dense_wg = native.dense_weight_grad(Cin * K * K, pooled=False)
    dA = rng.standard_normal(out.shape).astype(f32)
    rate(
        "conv2d weight grad after maxpool",
        "fastgd",
        flops,
        lambda: native.conv2d_backward(
            X, Wt, pooled, dP, argmax, 1, 1, 0, 0, OH, OW, dW, db, None, ws, partials, threads
        ),
    )
    rate(
        "conv2d weight grad (relu', dW, db)",
        "fastgd",
        flops,
        lambda: native.conv2d_backward(
            X, Wt, out, dA, None, 1, 1, 0, 0, OH, OW, dW, db, None, ws, partials, threads, dense_wg
        ),
    )
    if torch is not None:
        Xt, Wtt = torch.from_numpy(X), torch.from_numpy(Wt)
        bt, dAt, At = torch.from_numpy(b), torch.from_numpy(dA), torch.from_numpy(out)

        def torch_layer_grads():
            # What fastgd's row computes (relu's derivative, then dW and db), with
            # the operators PyTorch's autograd runs for a first conv layer.
            dZ = torch.ops.aten.threshold_backward(dAt, At, 0)
            torch.ops.aten.convolution_backward(
                dZ, Xt, Wtt, [F], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, True]
            )

        with torch.no_grad():
            rate(
                "conv2d forward (ref shape)",
                "pytorch",
                flops,
                lambda: torch.relu(torch.nn.functional.conv2d(Xt, Wtt, bt)),
            )
            rate("conv2d weight grad (relu', dW, db)", "pytorch", flops, torch_layer_grads)
            rate(
                "conv2d weight grad (dW only)",
                "pytorch",
                flops,
                lambda: torch.nn.grad.conv2d_weight(Xt, Wtt.shape, dAt),
            )
    rows.extend(_deeper_conv_rates(rng, repeats))
    Xd = rng.standard_normal((128, 784)).astype(f32)
    Wd = rng.standard_normal((784, 256)).astype(f32)
    bd, outd = np.zeros(256, f32), np.empty((128, 256), f32)

    def dense():
        with blas_threads_of_a_dense_network():
            np.dot(Xd, Wd, out=outd)
            native.bias_activation_rows(outd, bd, 1)

    rate("dense forward 128x784->256, relu", "fastgd", 2 * 128 * 784 * 256, dense)
    z = rng.standard_normal(B * F * OH * OW).astype(f32)
    for name, code, ref in (("tanh", 2, np.tanh), ("sigmoid", 3, None)):
        zz = z.copy()
        rate(
            f"{name}, {z.size} values (Gvalues/s)",
            "fastgd",
            z.size,
            lambda zz=zz, code=code: native.activation_forward(zz, code),
        )
        if ref is not None:
            rate(
                f"{name}, {z.size} values (Gvalues/s)",
                "numpy",
                z.size,
                lambda zz=zz: np.tanh(z, out=zz),
            )
        else:
            rate(
                f"{name}, {z.size} values (Gvalues/s)",
                "numpy",
                z.size,
                lambda zz=zz: np.divide(1.0, 1.0 + np.exp(-z, out=zz), out=zz),
            )
    return rows


def blas_threads_of_a_dense_network():
    """BLAS's threads as the engine runs them around dense layers: one while the machine is busy.

    A context manager (see :meth:`fastgd._engine.network.Network.blas_limits`).
    """
    import contextlib

    from threadpoolctl import threadpool_limits

    from fastgd._kernels.runtime.cpu_load import machine_busy

    if machine_busy():
        return threadpool_limits(1, user_api="blas")
    return contextlib.nullcontext()


def unfold_patches(X, kernel, cols):
    """im2col: ``cols[n, (c, p, q), (i, j)] = X[n, c, i + p, j + q]`` (stride 1, no padding)."""
    B, C, H, W = X.shape
    OH, OW = H - kernel + 1, W - kernel + 1
    windows = np.lib.stride_tricks.sliding_window_view(X, (kernel, kernel), axis=(2, 3))
    cols.reshape(B, C, kernel, kernel, OH, OW)[...] = windows.transpose(0, 1, 4, 5, 2, 3)
    return cols


def _deeper_conv_rates(rng, repeats):
    """The deeper model's second conv (32 → 64 channels, 15 × 15, 3 × 3): direct vs im2col + GEMM.

    The im2col + GEMM row unfolds the patches with NumPy and multiplies them
    with BLAS (its threads as the engine runs them); the GEMM alone is timed
    too, the best that path could do. Every result is checked against the
    direct convolution's.
    """

    from fastgd._kernels.network import native
    from fastgd.benchmarks.timing import median_time

    f32 = np.float32
    B, C, H, F, K = 32, 32, 15, 64, 3
    OH = H - K + 1
    X = rng.rand(B, C, H, H).astype(f32)
    Wt = (0.1 * rng.standard_normal((F, C, K, K))).astype(f32)
    b = np.zeros(F, f32)
    threads = native.thread_count(B * Wt.size * OH * OH)
    forward, _, _ = native.workspace_sizes(C, H, H, F, K, K, 1, 0, 0, OH, OH, 4, False, False)
    ws = native.aligned_rows(native.max_threads(), forward, f32)
    packed = np.empty(native.packed_weights_size(F, C, K, K), f32)
    native.pack_weights(Wt, packed)
    out = np.empty((B, F, OH, OH), f32)
    cols = np.empty((B, C * K * K, OH * OH), f32)
    products = np.empty((B, F, OH * OH), f32)
    W_rows = Wt.reshape(F, -1)
    flops = 2 * B * F * C * K * K * OH * OH
    name = "conv2d forward, 2nd conv of the deeper model"

    def direct():
        native.conv2d_forward(X, Wt, b, 1, 0, 0, out, 0, packed, ws, threads)

    def im2col_gemm():
        with blas_threads_of_a_dense_network():
            np.matmul(W_rows, unfold_patches(X, K, cols), out=products)

    direct()
    im2col_gemm()
    np.testing.assert_allclose(products.reshape(out.shape), out, rtol=1e-4, atol=1e-4)
    rows = []
    for impl, fn in (
        ("fastgd", direct),
        ("im2col+gemm", im2col_gemm),
        ("gemm alone", lambda: np.matmul(W_rows, cols, out=products)),
    ):
        seconds = median_time(fn, repeats, warmup=2)
        rows.append((name, impl, seconds, flops / seconds / 1e9))
    if torch is not None:
        Xt, Wtt = torch.from_numpy(X), torch.from_numpy(Wt)
        with torch.no_grad():
            seconds = median_time(lambda: torch.nn.functional.conv2d(Xt, Wtt), repeats, warmup=2)
        rows.append((name, "pytorch", seconds, flops / seconds / 1e9))
    return rows


def format_rates(rows):
    lines = [f"{'kernel (float32)':<44} {'impl':<8} {'ms':>8} {'GFLOP/s':>8}"]
    for name, impl, seconds, gflops in rows:
        lines.append(f"{name:<44} {impl:<8} {1e3 * seconds:8.3f} {gflops:8.1f}")
    return "\n".join(lines)


def wide_data(n=8000, n_features=2000, seed=0):
    """A wide X whose two branches read 20 columns each; labels learnable from both."""
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, n_features)).astype(np.float32)
    y = (X[:, 0] + X[:, n_features // 2] > 0).astype(np.int64)
    columns = [slice(0, 20), slice(n_features // 2, n_features // 2 + 20)]
    return X, y, columns


def fastgd_wide(columns):
    """Two Dense(16) branches over column ranges of a wide X, batch 32."""
    return FusionClassifier(
        branches=[
            (f"part_{b}", [Dense(16, activation="relu")], cols) for b, cols in enumerate(columns)
        ],
        batch_size=32,
        learning_rate_init=1e-2,
        alpha=0.0,
        random_state=0,
    )


def measure_step_overhead(n_train, repeats, rows):
    """Seconds per batch of 32: a tiny model (its time is the per-batch Python work) and
    the reference model, so that the overhead's share of a step shows; and a model
    whose branches read few of the many columns of a wide X (the batch gather)."""
    X, y, columns, _, _ = multimodal_data(n_train)
    tiny = FusionClassifier(
        branches=[("text", [Dense(2)], slice(columns["text"].start, columns["text"].start + 4))],
        batch_size=32,
        alpha=0.0,
        random_state=0,
    )
    X_wide, y_wide, wide_columns = wide_data(n_train)
    wide = fastgd_epoch(fastgd_wide(wide_columns), X_wide, y_wide)
    reference = fastgd_epoch(fastgd_multimodal(columns), X, y)
    fastgd_epoch(tiny, X, y)
    times = interleaved_median_times(
        {
            "tiny": lambda: fastgd_epoch(tiny, X, y),
            "reference": lambda: fastgd_epoch(reference, X, y),
            "wide": lambda: fastgd_epoch(wide, X_wide, y_wide),
        },
        repeats,
        warmup=0,
    )
    X_test, y_test, _ = wide_data(2000, seed=1)
    check_accuracy(wide.predict(X_test), y_test, MIN_ACCURACY["wide"])
    steps = -(-n_train // 32)
    rows.append(
        ("seconds per batch of 32: tiny model (overhead)", "fastgd", times["tiny"] / steps, None)
    )
    rows.append(
        ("seconds per batch of 32: reference model", "fastgd", times["reference"] / steps, None)
    )
    # The tiny model's step is almost all per-batch Python work (and the
    # per-call work of partial_fit spread over its batches).
    rows.append(
        (
            "overhead share of a step (tiny / reference)",
            "fastgd",
            times["tiny"] / times["reference"],
            None,
        )
    )
    rows.append(
        (
            f"seconds per batch of 32: 2x20 of {X_wide.shape[1]} columns",
            "fastgd",
            times["wide"] / steps,
            None,
        )
    )


def measure(quick=False):
    """Every workload in this process (one environment); rows of (workload, impl, s, ratio)."""
    repeats = 3 if quick else 5
    n = 2000 if quick else 8000
    rows = []
    measure_step_overhead(n, repeats, rows)
    measure_multimodal(n, 32, repeats, rows, predict=True)
    measure_multimodal(n, 128, repeats, rows)
    measure_multimodal(n, 32, repeats, rows, deeper=True)
    measure_mlp(2048 if quick else 8192, 2 * repeats, rows)
    return rows


# ================================================================== CLI
def _child_environment(name):
    env = dict(USER_ENVIRONMENT)
    if name == "same":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def _run_child(name, args):
    """Measure in a fresh process started in environment ``name``; its rows."""
    command = [sys.executable, "-m", "fastgd.benchmarks.fusion", "--child", "--env", name]
    if args.quick:
        command.append("--quick")
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(
        command, env=_child_environment(name), check=True, capture_output=True, text=True
    )
    return [tuple(row) for row in json.loads(done.stdout.strip().splitlines()[-1])]


def format_table(rows_by_env):
    """The rows of each environment side by side: seconds and ratio (other / fastgd)."""
    lines = [
        f"threads: {n_threads()}  (median times of interleaved runs; ratio = other time / "
        "fastgd time, > 1: fastgd is faster; PyTorch in its default environment and with "
        "OMP_WAIT_POLICY=PASSIVE like fastgd)"
    ]
    envs = list(rows_by_env)
    header = f"{'workload':<44} {'impl':<8}"
    for env in envs:
        header += f" {env + ' s':>10} {'ratio':>6}"
    lines.append(header)
    first = rows_by_env[envs[0]]
    for k, (workload, impl, _, _) in enumerate(first):
        line = f"{workload:<44} {impl:<8}"
        for env in envs:
            _, _, seconds, ratio = rows_by_env[env][k]
            line += f" {seconds:10.4f} {'' if ratio is None else f'{ratio:6.2f}':>6}"
        lines.append(line)
    return "\n".join(lines)


def parse_arguments(argv=None):
    """The command line of ``python -m fastgd.benchmarks.fusion``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000-sample epochs")
    parser.add_argument(
        "--threads", type=int, help="threads for Numba, BLAS and PyTorch (default: all)"
    )
    parser.add_argument(
        "--env",
        choices=(*ENVIRONMENTS, "both"),
        default="both",
        help="PyTorch's environment (see the module docstring)",
    )
    parser.add_argument(
        "--kernels", action="store_true", help="GFLOP/s of each kernel family instead"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    """Measure every workload in each environment and print time ratios.

    Returns the rows ``(workload (environment), implementation, seconds,
    ratio)`` of every environment.
    """
    args = parse_arguments(argv)
    if args.threads is not None:
        # Same thread count for Numba, BLAS (through threadpoolctl) and PyTorch.
        import numba
        from threadpoolctl import threadpool_limits

        numba.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    warnings.simplefilter("ignore")
    if args.kernels:
        print(format_rates(measure_kernel_rates()))
        return None
    if args.child:
        print(json.dumps(measure(quick=args.quick)))
        return None
    names = ENVIRONMENTS if args.env == "both" else (args.env,)
    rows_by_env = {name: _run_child(name, args) for name in names}
    print(format_table(rows_by_env))
    return [
        (f"{workload} ({name} env)", impl, seconds, ratio)
        for name, rows in rows_by_env.items()
        for workload, impl, seconds, ratio in rows
    ]


if __name__ == "__main__":
    main()
