"""The batch kernels compiled per kind of step agree bit for bit.

Every batch kernel is compiled per kind of rows (dense, CSR) and of step
(``"sgd"``: plain SGD without L1 or averaging; ``"general"``: everything), so
that a first fit compiles only what it runs (issue 12). A plain-SGD epoch
must give the same bits whichever step variant runs it: the general one
takes :func:`~fastgd._kernels.common.optimizers.optimizer_step`'s plain SGD
rule, the sgd one :func:`~fastgd._kernels.common.optimizers.plain_sgd_step`
alone.
"""

import numpy as np
import pytest
from conftest import make_linear_problem
from per_sample_runs import settings_of

from fastgd._kernels.linear import batch_numba, minibatch_two_threads, multinomial_numba
from fastgd._kernels.linear.arguments import BatchRows, Features, LinearModel, Scratch
from fastgd._kernels.runtime import codes

N_CLASSES = 3


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        (dict(), "sgd"),
        (dict(l2=0.01, schedule=codes.INVSCALING), "sgd"),
        (dict(optimizer=codes.ADAM), "general"),
        (dict(l1=1e-3), "general"),
        (dict(l1=1e-3, l1_proximal=True), "general"),
        (dict(average_start=2.0), "general"),
    ],
)
def test_step_kind(case, kind):
    assert batch_numba.step_kind(settings_of(**case)) == kind


def _epoch_arguments(sparse, dtype, n_classes):
    """(rows, model, scratch) of a small problem, dense or CSR, one output or softmax."""
    n, d, batch_size = 230, 9, 32
    X, y = make_linear_problem(n=n, d=d, density=0.5, seed=4, dtype=dtype)  # CSR
    if n_classes > 1:
        y = (np.arange(n) % n_classes).astype(dtype)
    sw = np.random.RandomState(5).uniform(0.5, 2.0, n).astype(dtype)
    order = np.random.RandomState(6).permutation(n).astype(np.intp)
    features = Features.of(X if sparse else np.ascontiguousarray(X.toarray()))
    rows = BatchRows.of(features, order, y.astype(dtype), sw, batch_size)
    model = LinearModel.zeros(d, dtype, n_classes)
    n_gradients = n_classes * (d + 1) - 1  # Scratch's grad has one entry more
    scratch = Scratch.for_batches(
        n_gradients, batch_numba.partials_shape(batch_size, n_gradients), dtype
    )
    return rows, model, scratch


def _assert_same_models(model_a, model_b):
    for a, b in zip(model_a, model_b, strict=True):  # every array of the models
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("family", ["one output", "softmax"])
def test_sgd_and_general_step_variants_agree_bit_for_bit(family, sparse, dtype):
    kernels, n_classes = {
        "one output": (batch_numba.ONE_OUTPUT, 1),
        "softmax": (multinomial_numba.SOFTMAX, N_CLASSES),
    }[family]
    settings = settings_of(l2=0.01, schedule=codes.INVSCALING, eta0=0.05, n_classes=n_classes)
    assert batch_numba.step_kind(settings) == "sgd"
    rows_kind = "csr" if sparse else "dense"
    results = []
    for step in ("sgd", "general"):
        rows, model, scratch = _epoch_arguments(sparse, dtype, n_classes)
        kernel = kernels.epoch_serial[(rows_kind, step)]
        losses = [kernel(rows, model, scratch, settings) for _ in range(3)]
        results.append((losses, model))
    (losses_sgd, model_sgd), (losses_general, model_general) = results
    assert losses_sgd == losses_general
    _assert_same_models(model_sgd, model_general)


@pytest.mark.parametrize("sparse", [False, True])
def test_two_thread_lead_epoch_step_variants_agree_bit_for_bit(sparse):
    # The leader alone (no helper thread) computes every chunk.
    settings = settings_of(l2=0.01, eta0=0.05)
    rows_kind = "csr" if sparse else "dense"
    results = []
    for step in ("sgd", "general"):
        rows, model, scratch = _epoch_arguments(sparse, np.float64, 1)
        shared = minibatch_two_threads.shared_epoch(rows, model, scratch, settings)
        loss = minibatch_two_threads.LEAD_EPOCH[(rows_kind, step)](shared, model, scratch)
        results.append((loss, model))
    assert results[0][0] == results[1][0]
    _assert_same_models(results[0][1], results[1][1])
