"""Training engine for linear models: data, solver state and the epoch driver.

The estimator turns its parameters into a :class:`LinearConfig` (integer
codes and floats), wraps the validated data in a :class:`LinearData`, and
calls :func:`train_linear`. This module picks the kernel (Cython or Numba
per-sample loop, Numba batch loop), draws each epoch's row order from the
random state, and runs the shared epoch loop of
:mod:`fastgd._engine.training`. It never sees the estimator.
"""

import contextlib
import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from fastgd._engine.full_batch import FullBatchTrainer, first_plain_step
from fastgd._engine.linear_epochs import batch_epoch, per_sample_epoch
from fastgd._engine.training import TrainingHistory, run_epochs
from fastgd._kernels.linear.arguments import (
    BatchRows,
    Features,
    LinearModel,
    LinearSettings,
    Scratch,
    VisitedRows,
)
from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.codes import N_AVERAGED, T
from fastgd._kernels.runtime.tuning import COMPILED_SHUFFLE_MIN_ROWS
from fastgd.exceptions import DivergenceError

# The adaptive schedule divides the rate by this on a plateau, down to MIN_ETA.
ADAPTIVE_DIVISOR = 5.0
MIN_ETA = 1e-6

DIVERGENCE_HINT = (
    "The step size is too large for this problem: use a smaller eta0 (with "
    "learning_rate='optimal', a larger alpha or another schedule), or standardise "
    "the features, e.g. with StandardScaler."
)


@dataclass(frozen=True)
class LinearConfig:
    """Everything the kernels need to know about the algorithm (no data).

    ``batch_size`` is 1 for per-sample SGD, ``None`` for full-batch GD, or
    the number of rows of a mini-batch. ``backend`` is "cython" or "numba"
    and selects the per-sample kernel. ``n_classes`` is 1 for a model with
    one output, else the classes of a multinomial (softmax) model.
    ``solver`` is "epochs" (the schedule's steps) or "accelerated" (full
    batch: the accelerated proximal gradient solver of
    :mod:`fastgd._engine.full_batch` for a smooth loss and one output,
    a backtracking line search for a loss with kinks, plain steps with the
    "adaptive" schedule from 1/L for a softmax model; see
    :func:`make_trainer`). ``optimal_t0_floor``: the smallest t₀ of the
    "optimal" schedule (see
    :func:`~fastgd._engine.linear_defaults.stable_optimal_t0`; 0: Bottou's t₀).
    """

    loss: int
    epsilon: float
    alpha: float
    l1_ratio: float
    penalty_l2: float
    penalty_l1: float
    fit_intercept: bool
    batch_size: int | None
    optimizer: int
    momentum: float
    beta_1: float
    beta_2: float
    optimizer_eps: float
    schedule: int
    eta0: float
    power_t: float
    average_start: float
    backend: str
    n_classes: int = 1
    solver: str = "epochs"
    optimal_t0_floor: float = 0.0

    @property
    def per_sample(self):
        """Whether the per-sample kernels run the epochs.

        A multinomial model has per-sample kernels for plain SGD only; with
        another optimizer its per-sample steps run as batches of one row.
        """
        return self.batch_size == 1 and (self.n_classes == 1 or self.optimizer == codes.SGD)

    @property
    def loss_can_blow_up(self):
        """Whether too large a step can make the loss grow geometrically (diverge).

        Only a squared loss with steps proportional to its gradient can; the
        other losses (hinge, log, modified Huber, perceptron, Huber,
        epsilon-insensitive) have bounded derivatives, and AdaGrad, RMSprop
        and Adam take steps bounded by the rate in every coordinate, so the
        weights grow at most linearly.
        """
        squared = self.loss in (
            codes.SQUARED_ERROR,
            codes.SQUARED_EPSILON_INSENSITIVE,
            codes.SQUARED_HINGE,
        )
        return squared and self.optimizer not in (codes.ADAGRAD, codes.RMSPROP, codes.ADAM)

    @property
    def optimal_t0(self):
        """Offset t₀ of the "optimal" schedule η = 1 / (α (t₀ + t − 1)).

        Léon Bottou's heuristic, as in scikit-learn: t₀ is chosen so that the
        first step has the size of a typical weight, 1/√(√α).
        """
        if self.schedule != codes.OPTIMAL:
            return 0.0
        try:
            from fastgd._kernels.linear._sgd_fast import py_loss_derivative
        except ImportError:  # Cython extension not built: the Numba twin
            from fastgd._kernels.linear.losses import (
                loss_derivative as py_loss_derivative,
            )

        typical_w = math.sqrt(1.0 / math.sqrt(self.alpha))
        initial_eta = typical_w / max(
            1.0, py_loss_derivative(self.loss, -typical_w, 1.0, self.epsilon)
        )
        return max(1.0 / (initial_eta * self.alpha), self.optimal_t0_floor)

    def settings(self, eta0):
        """The kernels' :class:`LinearSettings`, with ``eta0`` the current base rate."""
        return LinearSettings.make(
            loss=self.loss,
            epsilon=self.epsilon,
            l2=self.penalty_l2,
            l1=self.penalty_l1,
            l1_proximal=self.batch_size is None,
            schedule=self.schedule,
            eta0=eta0,
            power_t=self.power_t,
            optimal_t0=self.optimal_t0,
            alpha=self.alpha,
            optimizer=self.optimizer,
            momentum=self.momentum,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            optimizer_eps=self.optimizer_eps,
            fit_intercept=self.fit_intercept,
            average_start=self.average_start,
            n_classes=self.n_classes,
        )


class LinearData:
    """Training rows in the form the kernels take, without copying X.

    Dense X must be C-contiguous; CSR X is passed as its three arrays
    (:class:`~fastgd._kernels.linear.arguments.Features`).
    """

    def __init__(self, X, y, sample_weight):
        self.dtype = X.dtype
        self.n_samples, self.n_features = X.shape
        self.features = Features.of(X)
        self.X = X
        self.y = y
        self.sample_weight = sample_weight
        # The kernels take an empty array for "every weight is 1" and then
        # read no weights at all: one fewer random cache miss per row in the
        # batch kernels, one fewer gather per epoch in the per-sample ones.
        unit = sample_weight.shape[0] > 0 and bool(np.all(sample_weight == 1))
        self.kernel_weights = np.empty(0, dtype=sample_weight.dtype) if unit else sample_weight


class LinearState:
    """Everything that evolves during training, kept between ``partial_fit`` calls.

    The kernels' :class:`~fastgd._kernels.linear.arguments.LinearModel`
    (parameters in one flat buffer ``params = [w, b]``, averages, optimizer
    moments, counters), the adaptive schedule's current rate, and the
    generator of the epochs' row orders.
    """

    def __init__(self, n_features, dtype, coef_init=None, intercept_init=0.0, n_classes=1):
        self.model = LinearModel.zeros(n_features, dtype, n_classes)
        self.n_classes = n_classes
        self.n_weights = n_classes * n_features
        if coef_init is not None:
            self.model.params[: self.n_weights] = np.ravel(coef_init)
        self.model.params[self.n_weights :] = intercept_init
        self.eta = None  # current rate of the adaptive schedule
        # Row order: each epoch visits a fresh permutation drawn by this
        # generator, seeded once from random_state and kept across
        # partial_fit calls. The order itself is rebuilt by every fit, so no
        # n-sized buffer lives here (a fitted model pickles small).
        self.shuffler = None

    @property
    def params(self):
        return self.model.params

    @property
    def avg_params(self):
        return self.model.avg_params

    @property
    def counters(self):
        return self.model.counters

    @property
    def n_features(self):
        return self.n_weights // self.n_classes

    @property
    def coef(self):
        """The weights (of every class, row by row, for a multinomial model)."""
        return self.params[: self.n_weights]

    @property
    def intercept(self):
        """The intercept (an array of one per class for a multinomial model)."""
        return self.params[-1] if self.n_classes == 1 else self.params[self.n_weights :]

    @property
    def t(self):
        return self.counters[T]

    def averaging(self, config):
        """True once the averaged model is in use (``average_start`` reached)."""
        return config.average_start > 0 and self.counters[N_AVERAGED] > 0

    def model_to_predict(self, config):
        """``(coef, intercept)`` of the model to predict with (averaged or not).

        For a multinomial model, ``coef`` has shape (n_classes, n_features)
        and ``intercept`` (n_classes,).
        """
        source = self.avg_params if self.averaging(config) else self.params
        if self.n_classes == 1:
            return source[:-1], source[-1]
        weights = source[: self.n_weights].reshape(self.n_classes, -1)
        return weights, source[self.n_weights :]


class _Workspace:
    """Scratch buffers of one fit, allocated once.

    Per-sample SGD: ``y_ordered`` and ``weight_ordered`` receive each epoch's
    targets and sample weights in visiting order, so the kernels read them
    sequentially, where ``y[order[k]]`` would be a cache miss per row. The
    batch kernels instead prefetch ``y[order[k]]`` along with the row, which
    costs less than gathering (the gather is a pass of its own). With unit
    weights ``weight_ordered`` is empty, which the kernels read as "every
    weight is 1".
    """

    def __init__(self, config, n_rows, data, state):
        # The buffers have the model's size: [w, b], or every class's for a
        # multinomial model (written as n_features + 1 parameters).
        n_features, dtype = state.params.shape[0] - 1, data.dtype
        if config.per_sample:
            self.scratch = Scratch.for_per_sample(n_features, dtype)
            self.y_ordered = np.empty(n_rows, dtype=dtype)
            n_weights = n_rows if data.kernel_weights.shape[0] > 0 else 0
            self.weight_ordered = np.empty(n_weights, dtype=dtype)
        else:
            from fastgd._kernels.linear.batch_numba import partials_shape

            shape = partials_shape(config.batch_size or n_rows, n_features)
            self.scratch = Scratch.for_batches(n_features, shape, dtype)


def _per_sample_kernels(backend):
    """The module with the per-sample kernels of ``backend``."""
    if backend == "numba":
        from fastgd._kernels.linear import sgd_numba

        return sgd_numba
    from fastgd._kernels.linear import _sgd_fast

    return _sgd_fast


def penalty(coef, config):
    """α·(l1_ratio·‖w‖₁ + (1 − l1_ratio)/2·‖w‖²)."""
    value = 0.0
    coef = coef.ravel()
    if config.penalty_l1 > 0:
        value += config.penalty_l1 * float(np.abs(coef).sum(dtype=np.float64))
    if config.penalty_l2 > 0:
        # Not np.dot: OpenBLAS runs a long dot product on its threads, whose
        # wake-up can cost milliseconds per epoch on a busy machine.
        value += 0.5 * config.penalty_l2 * float(np.einsum("i,i->", coef, coef))
    return value


def run_one_epoch(data, state, config, order, workspace, weight_sum, max_threads=None):
    """Train one pass over ``data.rows[order]``; return the epoch's objective.

    The objective is the weighted mean loss seen during the epoch,
    Σ sᵢ ℓᵢ / Σ sᵢ (each row or batch scored before its own update, as
    scikit-learn does), plus the penalty at the end of the epoch.
    ``weight_sum`` is Σ sᵢ over the epoch's rows; ``max_threads`` caps the
    threads the epoch may use.
    """
    settings = config.settings(state.eta if state.eta is not None else config.eta0)
    if config.per_sample:
        # The per-sample kernels read y and the weights in visiting order.
        np.take(data.y, order, out=workspace.y_ordered)
        if workspace.weight_ordered.shape[0] > 0:
            np.take(data.sample_weight, order, out=workspace.weight_ordered)
        rows = VisitedRows.of(data.features, order, workspace.y_ordered, workspace.weight_ordered)
        if config.n_classes > 1:
            from fastgd._kernels.linear import multinomial_numba

            loss_sum = multinomial_numba.sgd_epoch(rows, state.model, workspace.scratch, settings)
        else:
            kernels = _per_sample_kernels(config.backend)
            loss_sum = per_sample_epoch(
                kernels, rows, state.model, workspace.scratch, settings, max_threads
            )
    else:
        batch_size = config.batch_size or order.shape[0]
        rows = BatchRows.of(data.features, order, data.y, data.kernel_weights, batch_size)
        if config.n_classes > 1:
            from fastgd._kernels.linear import multinomial_numba

            loss_sum = multinomial_numba.batch_epoch(rows, state.model, workspace.scratch, settings)
        else:
            loss_sum = batch_epoch(rows, state.model, workspace.scratch, settings, max_threads)
    coef, _ = state.model_to_predict(config)
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below
        objective = (loss_sum / weight_sum if weight_sum > 0 else 0.0) + penalty(coef, config)
    if not (math.isfinite(objective) and np.isfinite(state.params).all()):
        raise DivergenceError(
            "The fit diverged: the loss or the coefficients became NaN or "
            f"infinite after {int(state.t) - 1} updates. {DIVERGENCE_HINT}"
        )
    return objective


def initial_objective(data, state, config, order):
    """The objective of the model ``state`` holds, on the rows ``order``.

    One pass over X when the weights are not all zero; none otherwise.
    """
    coef, intercept = state.coef, state.intercept
    y = data.y[order]
    weights = data.kernel_weights[order] if data.kernel_weights.shape[0] else data.kernel_weights
    if np.any(coef):
        from sklearn.utils.extmath import safe_sparse_dot

        predictions = (np.asarray(safe_sparse_dot(data.X, coef)) + intercept)[order]
    else:
        predictions = np.full(order.shape[0], intercept, dtype=data.dtype)
    if config.backend == "cython":
        from fastgd._kernels.linear._sgd_fast import loss_sum
    else:
        from fastgd._kernels.linear.losses import loss_sum
    predictions = predictions.astype(data.dtype, copy=False)
    total = loss_sum(config.loss, predictions, y, weights, config.epsilon)
    weight_sum = float(weights.sum(dtype=np.float64)) if weights.shape[0] else order.shape[0]
    return total / weight_sum + penalty(coef, config)


def _shuffle_rows(rows, out, generator):
    """Write a fresh random permutation of ``rows`` into ``out``, drawn from ``generator``."""
    if rows.shape[0] < COMPILED_SHUFFLE_MIN_ROWS:
        out[:] = rows
        generator.shuffle(out)
    else:
        from fastgd._kernels.common.shuffle import shuffled_copy

        shuffled_copy(rows, out, generator.integers(np.iinfo(np.int64).max))


def _rows_to_visit(state, n_samples, rows, rng):
    """A new array of the rows to train on; seeds ``state.shuffler`` on first use."""
    if state.shuffler is None:
        state.shuffler = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
    if rows is not None:
        return np.array(rows, dtype=np.intp)
    return np.arange(n_samples, dtype=np.intp)


def current_learning_rate(state, config):
    """Step size of the next update under the configured schedule."""
    t = state.t
    if config.schedule == codes.OPTIMAL:
        return 1.0 / (config.alpha * (config.optimal_t0 + t - 1.0))
    if config.schedule == codes.INVSCALING:
        return config.eta0 / t**config.power_t
    return state.eta if state.eta is not None else config.eta0


_blas_controller = None


@contextlib.contextmanager
def _one_blas_thread():
    """Run the enclosed BLAS calls on one thread.

    After a multi-threaded call, OpenBLAS's idle threads spin for about a
    tenth of a second, holding the core the next two-thread epoch needs.
    """
    global _blas_controller
    from threadpoolctl import ThreadpoolController

    if _blas_controller is None:
        _blas_controller = ThreadpoolController()
    with _blas_controller.limit(limits=1, user_api="blas"):
        yield


class HeldOut:
    """Held-out samples a linear model is scored on every epoch: its score and its loss.

    Parameters
    ----------
    kind : {"r2", "accuracy", "multiclass accuracy"}
        The score: R² (regression), accuracy of a binary problem with labels
        ±1 (the share of samples, by weight, whose decision has the label's
        sign), or accuracy of a softmax model (labels the class indices).
    X, y, sample_weight : arrays
        The held-out samples.
    config : LinearConfig
        The model's loss (the held-out loss is its weighted mean).
    """

    def __init__(self, kind, X, y, sample_weight, config):
        self.kind, self.X, self.y, self.sample_weight = kind, X, y, sample_weight
        self.config = config

    def _outputs(self, coef, intercept):
        with _one_blas_thread():
            if coef.ndim == 2:
                return np.asarray(self.X @ coef.T) + intercept
            return np.asarray(self.X @ coef) + intercept

    def score(self, coef, intercept):
        """The score of the model ``(coef, intercept)``."""
        outputs, y, w = self._outputs(coef, intercept), self.y, self.sample_weight
        if self.kind == "multiclass accuracy":
            return float(np.average(outputs.argmax(axis=1) == y, weights=w))
        if self.kind == "accuracy":
            return float(np.average(np.where(outputs > 0, 1.0, -1.0) == y, weights=w))
        residual = np.average((y - outputs) ** 2, weights=w)
        spread = np.average((y - np.average(y, weights=w)) ** 2, weights=w)
        if spread == 0:
            return 1.0 if residual == 0 else 0.0
        return 1.0 - residual / spread

    def loss(self, coef, intercept):
        """The weighted mean loss of the model ``(coef, intercept)`` (no penalty)."""
        outputs, w = self._outputs(coef, intercept), self.sample_weight
        if self.kind == "multiclass accuracy":
            shifted = outputs - outputs.max(axis=1, keepdims=True)
            log_sum = np.log(np.exp(shifted).sum(axis=1))
            labels = self.y.astype(np.intp)
            losses = log_sum - shifted[np.arange(labels.shape[0]), labels]
            return float(np.average(losses, weights=w))
        if self.config.backend == "cython":
            from fastgd._kernels.linear._sgd_fast import loss_sum
        else:
            from fastgd._kernels.linear.losses import loss_sum
        dtype = self.X.dtype
        total = loss_sum(
            self.config.loss,
            outputs.astype(dtype, copy=False),
            self.y.astype(dtype, copy=False),
            w.astype(dtype, copy=False),
            self.config.epsilon,
        )
        return total / float(w.sum(dtype=np.float64))


class LinearTrainer:
    """The training of one linear model: its rows, their order, its buffers and its epochs.

    Parameters
    ----------
    data : LinearData
    state : LinearState
        Updated in place by every epoch.
    config : LinearConfig
    rng : numpy.random.RandomState
        Seeds the generator of the row orders, the first time ``state`` is
        trained.
    rows : ndarray of int, optional
        The rows of ``data`` to train on (default all); the others are left
        alone, so a validation split costs no copy of the training rows.
    shuffle : bool
        Visit rows in a new random order every epoch.
    max_threads : int, optional
        Most threads an epoch may use.
    """

    def __init__(self, data, state, config, *, rng, rows=None, shuffle=True, max_threads=None):
        self.data, self.state = data, state
        self.order = _rows_to_visit(state, data.n_samples, rows, rng)
        self.config = config
        self.workspace = _Workspace(config, self.order.shape[0], data, state)
        weights = data.sample_weight if rows is None else data.sample_weight[self.order]
        self.weight_sum = float(weights.sum(dtype=np.float64))
        self.unshuffled = self.order.copy() if shuffle else None
        self.max_threads = max_threads
        if config.schedule == codes.ADAPTIVE:
            state.eta = config.eta0

    def new_history(self, tol, n_iter_no_change, early_stopping, validating):
        """The :class:`TrainingHistory` (stopping rule) of this training."""
        return TrainingHistory(tol, n_iter_no_change, early_stopping, validating=validating)

    def train_epoch(self, epoch=None):
        """One epoch (a fresh row order first, when shuffling); return its objective."""
        if self.unshuffled is not None:
            _shuffle_rows(self.unshuffled, self.order, self.state.shuffler)
        return run_one_epoch(
            self.data,
            self.state,
            self.config,
            self.order,
            self.workspace,
            self.weight_sum,
            self.max_threads,
        )

    def on_plateau(self):
        """ "adaptive": divide the step by 5 on every plateau until it is tiny (True: go on)."""
        state = self.state
        if self.config.schedule == codes.ADAPTIVE and state.eta > MIN_ETA:
            state.eta /= ADAPTIVE_DIVISOR
            return True
        return False

    def learning_rate(self):
        """Step size of the next update."""
        return current_learning_rate(self.state, self.config)

    def initial_loss(self):
        """The starting model's objective, for a model trained from zero weights; else None.

        From zero weights, a fit that ends 1000 times worse than the constant
        model it started from has diverged, even if it blew up within its
        first epoch (a starting loss of 0 says nothing, and gives None).
        """
        state = self.state
        if not self.config.loss_can_blow_up or state.t != 1 or np.any(state.coef):
            return None
        loss = initial_objective(self.data, state, self.config, self.order)
        return loss if loss > 0 else None  # the perceptron's loss at zero weights is 0


def make_trainer(data, state, config, *, rng, rows=None, shuffle=True, max_threads=None):
    """The trainer of ``config``: a :class:`LinearTrainer`, or the full-batch solver's.

    Same parameters as :class:`LinearTrainer`. A config with the
    "accelerated" solver gets a
    :class:`~fastgd._engine.full_batch.FullBatchTrainer` for a model with
    one output (accelerated steps for a smooth loss, a line search for a
    loss with kinks); a softmax model plain full-batch steps with the
    "adaptive" schedule, from :func:`~fastgd._engine.full_batch.first_plain_step`.
    """
    if config.solver == "accelerated":
        order = _rows_to_visit(state, data.n_samples, rows, rng)
        if config.n_classes == 1:
            return FullBatchTrainer(data, state, config, order)
        eta0 = first_plain_step(data, order, config)
        config = dataclasses.replace(config, solver="epochs", schedule=codes.ADAPTIVE, eta0=eta0)
    return LinearTrainer(
        data, state, config, rng=rng, rows=rows, shuffle=shuffle, max_threads=max_threads
    )


def train_linear(
    data,
    state,
    config,
    *,
    max_iter,
    rng,
    rows=None,
    shuffle=True,
    tol=None,
    n_iter_no_change=5,
    validation=None,
    early_stopping=False,
    verbose=0,
    estimator_name="GDRegressor",
    max_threads=None,
    callbacks=(),
    callback_target=None,
    before_callbacks=None,
):
    """Train ``state`` on ``data`` for up to ``max_iter`` epochs.

    Parameters
    ----------
    data : LinearData
    state : LinearState
        Updated in place.
    config : LinearConfig
    max_iter : int
        Maximum number of epochs.
    rng : numpy.random.RandomState
        Seeds the generator of the row orders, the first time ``state`` is
        trained.
    rows : ndarray of int, optional
        The rows of ``data`` to train on (default all); the others are left
        alone, so a validation split costs no copy of the training rows.
    shuffle : bool
        Visit rows in a new random order every epoch.
    tol, n_iter_no_change :
        Stopping rule (see :class:`~fastgd._engine.training.TrainingHistory`).
    validation : HeldOut, optional
        Held-out data, scored (and its loss recorded) every epoch.
    early_stopping : bool
        Stop when the held-out score stops improving (needs ``validation``).
    verbose : int
        Print one line per epoch.
    max_threads : int, optional
        Most threads an epoch may use (default: the process's budget,
        :func:`fastgd._engine.threads.thread_budget`); 1 when several models
        train at once.
    callbacks, callback_target, before_callbacks :
        Per-epoch user callbacks (see :func:`~fastgd._engine.training.run_epochs`).

    Returns
    -------
    history : TrainingHistory
    n_epochs : int
    """
    trainer = make_trainer(
        data, state, config, rng=rng, rows=rows, shuffle=shuffle, max_threads=max_threads
    )
    config = trainer.config
    history = trainer.new_history(
        tol, n_iter_no_change, early_stopping, validating=validation is not None
    )

    def model():
        return state.model_to_predict(config)

    n_epochs = run_epochs(
        trainer.train_epoch,
        history,
        max_iter,
        validation_score=None if validation is None else lambda: validation.score(*model()),
        validation_loss=None if validation is None else lambda: validation.loss(*model()),
        on_plateau=trainer.on_plateau,
        verbose=verbose,
        divergence_hint=DIVERGENCE_HINT,
        estimator_name=estimator_name,
        callbacks=callbacks,
        callback_target=callback_target,
        before_callbacks=before_callbacks,
        learning_rate=trainer.learning_rate,
        initial_loss=trainer.initial_loss(),
        judge_growth=config.loss_can_blow_up,
    )
    return history, n_epochs
