"""The linear kernels against their plain-NumPy twins (tests/naive_linear.py)."""

import naive_linear as naive
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_linear_problem
from per_sample_runs import CASES, CLASSIFICATION_CASES, case_id, run_kernel, settings_of

from fastgd._kernels.common.optimizers import optimizer_step
from fastgd._kernels.linear import _sgd_fast, batch_numba, losses, sgd_numba
from fastgd._kernels.linear.arguments import (
    BatchRows,
    Features,
    LinearModel,
    LinearSettings,
    Scratch,
)
from fastgd._kernels.runtime import codes, tuning
from fastgd._kernels.runtime.tuning import PARALLEL_MIN_WORK

REGRESSION_LOSSES = list(codes.REGRESSION_LOSS_CODES.values())
CLASSIFICATION_LOSSES = list(codes.CLASSIFICATION_LOSS_CODES.values())
OPTIMIZERS = list(codes.OPTIMIZER_CODES.values())
PER_SAMPLE_KERNELS = {"cython": _sgd_fast.sgd_epoch, "numba": sgd_numba.sgd_epoch}


def test_the_cython_build_has_the_current_codes_and_constants():
    """The build writes codes.py and tuning.py into the Cython template: a stale
    extension (built before one of them changed) fails here."""
    option_codes = {
        **codes.REGRESSION_LOSS_CODES,
        **codes.CLASSIFICATION_LOSS_CODES,
        **codes.OPTIMIZER_CODES,
        **codes.SCHEDULE_CODES,
    }
    slots = ["INTERCEPT", "AVG_INTERCEPT", "T", "L1_TOTAL", "N_AVERAGED", "N_UPDATES", "SCALE"]
    slots += ["LOSS_SUM", "N_COUNTERS", "BLOCKS_CLAIMED", "BLOCKS_STARTED", "BLOCKS_DONE"]
    for name in [option.upper() for option in option_codes] + slots + ["N_BLOCK_FLAGS"]:
        assert getattr(_sgd_fast, name) == getattr(codes, name), name
    for name in ("ROWS_AHEAD", "CACHE_LINE_BYTES", "STEAL_AFTER_TICKS", "MIN_SCALE"):
        assert getattr(_sgd_fast, name) == getattr(tuning, name), name


def test_the_cython_kernels_read_every_setting():
    assert _sgd_fast.SETTINGS_FIELDS == LinearSettings._fields


def test_settings_are_made_with_the_compiled_types():
    settings = settings_of(loss=np.int32(1), eta0=1, fit_intercept=1)
    assert type(settings.loss) is int and type(settings.eta0) is float
    assert settings.fit_intercept is True
    with pytest.raises(TypeError, match="missing.*'alpha'"):
        LinearSettings.make(**{k: v for k, v in settings._asdict().items() if k != "alpha"})
    with pytest.raises(TypeError, match="unknown.*'learning_rate'"):
        LinearSettings.make(**settings._asdict(), learning_rate=0.1)


def assert_loss_twins_agree(loss, p, y, eps):
    expected = float(naive.loss_value(loss, p, y, eps))
    assert _sgd_fast.py_loss_value(loss, p, y, eps) == pytest.approx(expected, abs=1e-14)
    assert losses.loss_value(loss, p, y, eps) == pytest.approx(expected, abs=1e-14)
    d_expected = float(naive.loss_derivative(loss, p, y, eps))
    assert _sgd_fast.py_loss_derivative(loss, p, y, eps) == pytest.approx(d_expected, abs=1e-15)
    assert losses.loss_derivative(loss, p, y, eps) == pytest.approx(d_expected, abs=1e-15)
    return d_expected


def central_difference(loss, p, y, eps, h=1e-6):
    return (naive.loss_value(loss, p + h, y, eps) - naive.loss_value(loss, p - h, y, eps)) / (2 * h)


@pytest.mark.parametrize("loss", REGRESSION_LOSSES)
def test_regression_losses_match_numpy_and_finite_differences(loss):
    rng = np.random.RandomState(loss)
    eps = 0.3
    for p, y in zip(rng.randn(200) * 2, rng.randn(200) * 2, strict=True):
        derivative = assert_loss_twins_agree(loss, p, y, eps)
        # Central differences, away from the kinks at |p − y| = eps and p = y.
        r = abs(p - y)
        if min(abs(r - eps), r) > 1e-3:
            assert derivative == pytest.approx(central_difference(loss, p, y, eps), rel=1e-5)


@pytest.mark.parametrize("loss", CLASSIFICATION_LOSSES)
def test_classification_losses_match_numpy_and_finite_differences(loss):
    rng = np.random.RandomState(loss)
    margins = np.r_[rng.randn(200) * 3, [-60.0, -25.0, 25.0, 60.0]]
    for p, y in zip(margins, rng.choice([-1.0, 1.0], size=margins.size), strict=True):
        derivative = assert_loss_twins_agree(loss, p, y, 0.1)
        # Away from the kinks at margins -1, 0 and 1.
        if min(abs(p * y - 1.0), abs(p * y), abs(p * y + 1.0)) > 1e-3:
            fd = central_difference(loss, p, y, 0.1)
            assert derivative == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_log_loss_is_finite_for_huge_margins():
    for p in (-1e6, 1e6):
        for y in (-1.0, 1.0):
            value = losses.loss_value(codes.LOG_LOSS, p, y, 0.0)
            assert np.isfinite(value) and value == pytest.approx(max(0.0, -p * y), abs=1e-12)
            assert abs(losses.loss_derivative(codes.LOG_LOSS, p, y, 0.0)) <= 1.0


def classification_problem(n=40, d=7, density=1.0, seed=3):
    X, y = make_linear_problem(n=n, d=d, density=density, seed=seed)
    return X, np.where(y > np.median(y), 1.0, -1.0)


@pytest.mark.parametrize("backend", PER_SAMPLE_KERNELS)
@pytest.mark.parametrize("density", [1.0, 0.4])
@pytest.mark.parametrize("case", CASES + CLASSIFICATION_CASES, ids=case_id)
def test_per_sample_kernel_matches_naive(backend, density, case):
    classify = case.get("loss", 0) >= codes.HINGE
    problem = classification_problem if classify else make_linear_problem
    X, y = problem(n=40, d=7, density=density, seed=3)
    sw = np.random.RandomState(1).uniform(0.5, 2.0, size=40)
    rng = np.random.RandomState(0)
    orders = [rng.permutation(40) for _ in range(3)]
    coef, b, avg, loss_sums = run_kernel(PER_SAMPLE_KERNELS[backend], X, y, sw, orders, **case)
    X_dense = X.toarray() if sp.issparse(X) else X
    ref_coef, ref_b, ref_avg, ref_losses = naive.sgd_epochs(X_dense, y, sw, orders, **case)
    assert np.abs(coef).max() > 0, "the case must train something"
    np.testing.assert_allclose(coef, ref_coef, rtol=1e-10, atol=1e-12)
    assert b == pytest.approx(ref_b, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(loss_sums, ref_losses, rtol=1e-10)
    if case.get("average_start"):
        np.testing.assert_allclose(avg, ref_avg, rtol=1e-10, atol=1e-12)


def test_pa1_skips_rows_without_features():
    """A zero row gives PA1 no direction: scikit-learn skips its step (t not advanced)."""
    X, y = classification_problem(n=20, d=4, seed=6)
    X[[3, 11]] = 0.0
    sw = np.ones(20)
    orders = [np.arange(20)]
    case = dict(loss=codes.HINGE, schedule=codes.PA1, eta0=0.3)
    for kernel in PER_SAMPLE_KERNELS.values():
        coef, b, _, _ = run_kernel(kernel, X, y, sw, orders, **case)
        ref_coef, ref_b, _, _ = naive.sgd_epochs(X, y, sw, orders, **case)
        np.testing.assert_allclose(coef, ref_coef, rtol=1e-12)
        assert b == pytest.approx(ref_b, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_per_sample_backends_agree(dtype):
    # They add a dot product's terms in different orders (16 fixed lanes in
    # Cython, LLVM's vectorised order in Numba), so they agree to rounding:
    # a few float32 ulps after four epochs. Where the weights blow up (one
    # case: coefficients in the thousands), the loss derivative reaches its
    # clip (MAX_LOSS_DERIVATIVE) and the steps amplify rounding differences:
    # float32 runs then agree to 2 %, float64 runs to 1e-9.
    X, y = make_linear_problem(n=200, d=13, dtype=dtype, seed=5)
    labels = np.where(y > np.median(y), 1.0, -1.0).astype(dtype)
    sw = np.ones(200, dtype)
    orders = [np.random.RandomState(e).permutation(200) for e in range(4)]
    for case in CASES + CLASSIFICATION_CASES:
        targets = labels if case.get("loss", 0) >= codes.HINGE else y
        a = run_kernel(_sgd_fast.sgd_epoch, X, targets, sw, orders, **case)
        b = run_kernel(sgd_numba.sgd_epoch, X, targets, sw, orders, **case)
        assert a[0].dtype == dtype
        scale = np.abs(b[0]).max()
        blown_up = scale > 1000
        if dtype == np.float64:
            tolerance = 1e-9 if blown_up else 1e-12
        else:
            tolerance = 2e-2 if blown_up else 1e-5
        np.testing.assert_allclose(a[0], b[0], rtol=tolerance, atol=tolerance * scale)


@pytest.mark.parametrize("backend", PER_SAMPLE_KERNELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_empty_weight_array_means_unit_weights(backend, dtype):
    X, y = make_linear_problem(n=120, d=9, dtype=dtype, seed=8)
    orders = [np.random.RandomState(e).permutation(120) for e in range(3)]
    kernel = PER_SAMPLE_KERNELS[backend]
    for case in CASES:
        explicit = run_kernel(kernel, X, y, np.ones(120, dtype), orders, **case)
        implicit = run_kernel(kernel, X, y, np.empty(0, dtype), orders, **case)
        for a, b in zip(explicit, implicit, strict=True):
            np.testing.assert_array_equal(a, b)


def test_lazy_scale_is_folded_when_it_becomes_tiny():
    # l2·eta close to 1 drives the lazy scale below MIN_SCALE within a few steps.
    X, y = make_linear_problem(n=30, d=4)
    sw = np.ones(30)
    orders = [np.arange(30)]
    for kernel in PER_SAMPLE_KERNELS.values():
        coef, b, _, _ = run_kernel(kernel, X, y, sw, orders, l2=9.9, eta0=0.1)
        ref_coef, ref_b, _, _ = naive.sgd_epochs(X, y, sw, orders, l2=9.9, eta0=0.1)
        np.testing.assert_allclose(coef, ref_coef, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", PER_SAMPLE_KERNELS)
def test_the_cython_kernels_refuse_structures_that_do_not_fit(backend):
    X, y = make_linear_problem(n=20, d=4)
    from per_sample_runs import visited

    rows = visited(X, y, np.empty(0), np.arange(20))
    scratch = Scratch.for_per_sample(4, np.float64)
    settings = settings_of()
    if backend == "cython":
        with pytest.raises(ValueError, match="columns"):
            _sgd_fast.sgd_epoch(rows, LinearModel.zeros(5, np.float64), scratch, settings)
        with pytest.raises(ValueError, match="one value per visited row"):
            _sgd_fast.sgd_epoch(
                rows._replace(y=y[:10]), LinearModel.zeros(4, np.float64), scratch, settings
            )
        with pytest.raises(ValueError, match="dtype mismatch"):
            _sgd_fast.sgd_epoch(rows, LinearModel.zeros(4, np.float32), scratch, settings)


def batch_rows(X, y, sw, order, batch_size=None):
    order = np.asarray(order, dtype=np.intp)
    return BatchRows.of(Features.of(X), order, y, sw, batch_size or order.shape[0])


def batch_scratch(n_rows, d, dtype=np.float64):
    return Scratch.for_batches(d, batch_numba.partials_shape(n_rows, d), dtype)


@pytest.mark.parametrize("loss", REGRESSION_LOSSES + CLASSIFICATION_LOSSES)
@pytest.mark.parametrize("density", [1.0, 0.3])
@pytest.mark.parametrize("n_rows", [1, 37, 200])
def test_batch_gradient_matches_naive(loss, density, n_rows):
    X, y = make_linear_problem(n=200, d=9, density=density, seed=loss)
    if loss >= codes.HINGE:
        y = np.where(y > np.median(y), 1.0, -1.0)
    sw = np.random.RandomState(2).uniform(0.2, 3.0, 200)
    order = np.random.RandomState(4).permutation(200)[:n_rows]
    params = np.random.RandomState(5).randn(10) * 0.3
    scratch = batch_scratch(n_rows, 9)
    settings = settings_of(loss=loss, epsilon=0.3, l2=0.05)
    rows = batch_rows(X, y, sw, order)
    loss_sum = batch_numba.batch_gradient(rows, 0, n_rows, params, settings, scratch)
    X_dense = X.toarray() if sp.issparse(X) else X
    gw, gb, ref_loss = naive.batch_gradient(
        X_dense, y, sw, order, params[:9], params[9], loss, 0.3, 0.05
    )
    np.testing.assert_allclose(scratch.grad[:9], gw, rtol=1e-10, atol=1e-12)
    assert scratch.grad[9] == pytest.approx(gb, rel=1e-10, abs=1e-12)
    assert loss_sum == pytest.approx(ref_loss, rel=1e-12)


@pytest.mark.parametrize("loss", [codes.SQUARED_ERROR, codes.HUBER, codes.LOG_LOSS])
def test_batch_gradient_finite_differences(loss):
    """The kernel's gradient is the derivative of the penalised objective."""
    X, y = make_linear_problem(n=150, d=5, seed=7)
    if loss >= codes.HINGE:
        y = np.where(y > np.median(y), 1.0, -1.0)
    sw = np.random.RandomState(8).uniform(0.5, 2.0, 150)
    params = np.random.RandomState(9).randn(6) * 0.3
    scratch = batch_scratch(150, 5)
    settings = settings_of(loss=loss, epsilon=0.5, l2=0.1)
    batch_numba.batch_gradient(
        batch_rows(X, y, sw, np.arange(150)), 0, 150, params, settings, scratch
    )
    h = 1e-6
    for j in range(6):
        up, down = params.copy(), params.copy()
        up[j] += h
        down[j] -= h
        fd = (
            naive.objective(X, y, sw, up[:5], up[5], loss, 0.5, 0.1, 0.0)
            - naive.objective(X, y, sw, down[:5], down[5], loss, 0.5, 0.1, 0.0)
        ) / (2 * h)
        assert scratch.grad[j] == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_batch_gradient_ignores_intercept_when_not_fitted():
    X, y = make_linear_problem(n=50, d=3)
    scratch = batch_scratch(50, 3)
    settings = settings_of(fit_intercept=False)
    rows = batch_rows(X, y, np.ones(50), np.arange(50))
    batch_numba.batch_gradient(rows, 0, 50, np.zeros(4), settings, scratch)
    assert scratch.grad[3] == 0.0
    assert np.abs(scratch.grad[:3]).sum() > 0


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_optimizer_step_matches_naive(optimizer):
    rng = np.random.RandomState(optimizer)
    params = rng.randn(8)
    s1, s2 = np.zeros(8), np.zeros(8)
    ref = naive.NaiveOptimizer(optimizer, 8, momentum=0.8, beta_1=0.85, beta_2=0.99, eps=1e-7)
    expected = params.copy()
    for step in range(1, 6):
        g = rng.randn(8)
        optimizer_step(params, g, s1, s2, 0.05, step, optimizer, 0.8, 0.85, 0.99, 1e-7, 0.01, 6)
        expected, eff = ref.update(expected, g, 0.05)
        expected[:6] = naive.soft_threshold(expected[:6], 0.01 * eff[:6])
        np.testing.assert_allclose(params, expected, rtol=1e-12, atol=1e-14)


def test_full_batch_epoch_is_proximal_gradient_descent():
    """One full-batch step with L1 equals w ← soft_threshold(w − η∇f, η·l1)."""
    X, y = make_linear_problem(n=80, d=6, seed=11)
    sw = np.ones(80)
    d = 6
    model = LinearModel.zeros(d, np.float64)
    scratch = batch_scratch(80, d)
    settings = settings_of(l2=0.02, l1=0.05, l1_proximal=True, eta0=0.2)
    rows = batch_rows(X, y, sw, np.arange(80))
    expected_w, expected_b = np.zeros(d), 0.0
    for _ in range(5):
        batch_numba.batch_epoch(rows, model, scratch, settings)
        gw, gb, _ = naive.batch_gradient(
            X, y, sw, np.arange(80), expected_w, expected_b, 0, 0.1, 0.02
        )
        expected_w = naive.soft_threshold(expected_w - 0.2 * gw, 0.2 * 0.05)
        expected_b -= 0.2 * gb
    np.testing.assert_allclose(model.params[:d], expected_w, rtol=1e-10, atol=1e-13)
    assert model.params[d] == pytest.approx(expected_b, rel=1e-10)
    assert model.counters[codes.T] == 6.0


def test_batch_gradient_does_not_depend_on_the_number_of_threads():
    import numba

    n = 26000
    X, y = make_linear_problem(n=n, d=40, seed=12)
    sw = np.random.RandomState(13).uniform(0.5, 2.0, n)
    rows = batch_rows(X, y, sw, np.random.RandomState(14).permutation(n))
    params = np.random.RandomState(15).randn(41)
    settings = settings_of(l2=0.01)
    assert n * 41 >= PARALLEL_MIN_WORK, "the test needs the parallel path"
    results = []
    for n_threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(n_threads)
        try:
            scratch = batch_scratch(n, 40)
            loss = batch_numba.batch_gradient(rows, 0, n, params, settings, scratch)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        results.append((scratch.grad.copy(), loss))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]
    gw, gb, ref_loss = naive.batch_gradient(
        X, y, sw, rows.order, params[:40], params[40], 0, 0.1, 0.01
    )
    np.testing.assert_allclose(results[0][0], np.r_[gw, gb], rtol=1e-10, atol=1e-12)
    assert results[0][1] == pytest.approx(ref_loss, rel=1e-12)


@pytest.mark.parametrize("loss", REGRESSION_LOSSES + CLASSIFICATION_LOSSES)
@pytest.mark.parametrize("unit_weights", [False, True])
def test_loss_sums_match_numpy(loss, unit_weights):
    rng = np.random.RandomState(loss)
    p = rng.randn(50) * 2
    y = rng.choice([-1.0, 1.0], 50) if loss >= codes.HINGE else rng.randn(50)
    sw = np.empty(0) if unit_weights else rng.uniform(0.5, 2.0, 50)
    expected = float(np.sum((1.0 if unit_weights else sw) * naive.loss_value(loss, p, y, 0.3)))
    assert _sgd_fast.loss_sum(loss, p, y, sw, 0.3) == pytest.approx(expected, rel=1e-12)
    assert losses.loss_sum(loss, p, y, sw, 0.3) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="one prediction"):
        _sgd_fast.loss_sum(loss, p[:10], y, sw, 0.3)


@pytest.mark.parametrize("shape", [(50_000,), (3, 7)])
def test_the_epoch_objective_penalty_is_alpha_times_the_elastic_net_norms(shape):
    from types import SimpleNamespace

    from fastgd._engine.linear import penalty

    coef = np.random.RandomState(0).standard_normal(shape)
    config = SimpleNamespace(penalty_l1=0.3, penalty_l2=0.7)
    expected = 0.3 * np.abs(coef).sum() + 0.5 * 0.7 * (coef**2).sum()
    assert penalty(coef, config) == pytest.approx(expected, rel=1e-12)
    assert penalty(coef, SimpleNamespace(penalty_l1=0.0, penalty_l2=0.0)) == 0.0


def same_float(a, b):
    """Equal bit for bit as doubles, or both NaN (of either sign)."""
    return np.float64(a).tobytes() == np.float64(b).tobytes() or (np.isnan(a) and np.isnan(b))


@pytest.mark.parametrize("loss", REGRESSION_LOSSES + CLASSIFICATION_LOSSES)
def test_the_fused_loss_and_derivative_are_the_separate_ones_bit_for_bit(loss):
    """The per-sample steps take ℓ and dℓ/dp from one call (one exponential for the
    log loss); it must give exactly what loss_value and loss_derivative give."""
    rng = np.random.RandomState(7)
    margins = np.r_[rng.randn(300) * 4, [0.0, -0.0, 1.0, -1.0, 700.0, -700.0, 1e300, np.nan]]
    targets = rng.choice([-1.0, 1.0], size=margins.size)
    if loss in REGRESSION_LOSSES:
        targets = rng.randn(margins.size)
    for p, y in zip(margins, targets, strict=True):
        value, derivative = _sgd_fast.py_loss_and_derivative(loss, p, y, 0.3)
        assert same_float(value, _sgd_fast.py_loss_value(loss, p, y, 0.3)), (p, y)
        assert same_float(derivative, _sgd_fast.py_loss_derivative(loss, p, y, 0.3)), (p, y)
