"""Full-batch training with a step taken from the problem itself.

With ``batch_size="full"`` and ``learning_rate="auto"`` a linear model with
a smooth loss is trained by the accelerated proximal gradient method (FISTA,
Beck & Teboulle, 2009) with adaptive restart (O'Donoghue & Candès, 2015),
which needs no step size from the user:

* the objective is ``f(w, b) + l1·‖w‖₁`` with the smooth part
  ``f = Σ sᵢ ℓ(w·xᵢ + b, yᵢ) / Σ sᵢ + l2/2·‖w‖²``;
* the step is ``1/L``, ``L = c·λ_max(C) + l2`` an upper bound of f's
  curvature: ``c`` bounds ℓ'' (:data:`LOSS_CURVATURE`) and ``C`` is the
  weighted covariance of the features (their second moment without
  intercept), whose largest eigenvalue comes from the d × d matrix (up to
  :data:`~fastgd._kernels.runtime.tuning.GRAM_MAX_FEATURES` features) or from
  power iterations;
* the iterates live in centred coordinates ``(w, b' = b + w·x̄)``, where the
  intercept is decoupled from the weights (this is the preconditioning
  Ridge and ElasticNet get by centring X), so features far from zero do not
  slow the solver down;
* every step ends with the proximal soft-threshold of the L1 part, so the
  iterates have the optimum's exact zeros;
* momentum restarts whenever it points uphill, which makes the method
  converge linearly on strongly convex problems (and never worse than
  gradient descent).

For the squared error the objective is a quadratic whose coefficients (the
features' weighted covariance and their covariance with y) take one matrix
product over X, as Ridge's Cholesky solver computes them; the iterations
then cost O(d²) each instead of a pass over X (:class:`QuadraticObjective`).
Other losses take one pass over X per iteration with the full-batch gradient
kernel (:class:`PassObjective`).

One iteration is one "epoch" of the training loop: ``loss_curve_`` records
the objective where each gradient was taken. The solver stops on the size of
its steps (the gradient mapping), ``tol=None`` running ``max_iter``
iterations. For the squared error (the problem of Ridge and ElasticNet) it
stops when an iteration moves no parameter by more than
:data:`SOLVER_RELATIVE_STEP` machine epsilons (of float64, the quadratic's
arithmetic; of the dtype, for passes over X) relative to the largest
parameter: it solves the problem to that precision. The other losses, whose
iterations each cost a pass over X, stop once the largest move is ``tol``
times the first iteration's (or the precision is reached).

Losses with kinks (hinge, perceptron, epsilon-insensitive) have no curvature
bound: they are trained by proximal subgradient steps with a backtracking
line search (:class:`SubgradientDescent`). The first trial step is
Polyak's f(θ₀)/‖g‖² (with 0, a lower bound of these losses, for the
optimum's value); a step that does not lower the objective is rejected and
halved, an accepted one grows by half for the next trial, so the objective
never rises and the step follows the problem. The perceptron, whose
objective is lowest at zero weights, takes the batch perceptron's constant
steps instead. A softmax model takes plain
steps under the "adaptive" schedule from 1/L (:func:`first_plain_step`).
"""

import math

import numpy as np
import scipy.sparse as sp

from fastgd._engine.training import TrainingHistory
from fastgd._kernels.linear.arguments import BatchRows, Scratch
from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.codes import N_UPDATES, T
from fastgd._kernels.runtime.tuning import (
    GRAM_CHUNK_ROWS,
    GRAM_MAX_FEATURES,
    POWER_ITERATIONS,
)
from fastgd.exceptions import DivergenceError

# Upper bounds of ℓ''(p) for the smooth losses (the losses of
# fastgd._kernels.linear.losses); the others have kinks and no such bound.
LOSS_CURVATURE = {
    codes.SQUARED_ERROR: 1.0,
    codes.HUBER: 1.0,
    codes.SQUARED_EPSILON_INSENSITIVE: 2.0,
    codes.LOG_LOSS: 0.25,
    codes.MODIFIED_HUBER: 2.0,
    codes.SQUARED_HINGE: 2.0,
}
# The Hessian of the softmax cross-entropy of one sample is at most ½·I
# (Böhning, 1992).
SOFTMAX_CURVATURE = 0.5

# The solver stops when no parameter moves by more than this many machine
# epsilons of its arithmetic, relative to the largest parameter: above the
# rounding noise of a step, below the error wanted (the error of the
# coefficients is at most the condition number times the move).
SOLVER_RELATIVE_STEP = 10.0
# The backtracking line search of the losses with kinks: a rejected step is
# multiplied by BACKTRACK_SHRINK, an accepted one by BACKTRACK_GROWTH for the
# next trial.
BACKTRACK_SHRINK = 0.5
BACKTRACK_GROWTH = 1.5
# The batch perceptron's constant step.
BATCH_PERCEPTRON_STEP = 1.0
# Power iterations overestimate nothing: their estimate of λ_max is raised by
# this factor to stay above the true value.
POWER_ITERATION_MARGIN = 1.1


def is_smooth(loss):
    """Whether the loss has a Lipschitz derivative (a curvature bound)."""
    return loss in LOSS_CURVATURE


class FeatureMoments:
    """Weighted first and second moments of the training rows.

    Parameters
    ----------
    data : LinearData
    order : ndarray of intp
        The training rows.
    center : bool
        Centre the features (a model with an intercept); without an intercept
        the second moment is taken about zero.

    Attributes
    ----------
    X : ndarray or sparse matrix
        The training rows (X itself when every row trains).
    weights : ndarray of float64
        Their sample weights.
    weight_sum : float
    means : ndarray of float64, shape (n_features,)
        Weighted column means (zeros when not centring).
    """

    def __init__(self, data, order, center):
        every_row = order.shape[0] == data.n_samples and np.array_equal(
            order, np.arange(data.n_samples)
        )
        self.X = data.X if every_row else data.X[order]
        self.weights = np.asarray(data.sample_weight[order], dtype=np.float64)
        self.unit_weights = data.kernel_weights.shape[0] == 0
        self.weight_sum = float(self.weights.sum())
        self.n_features = data.n_features
        if center:
            self.means = self.weighted_sum_of_rows(self.weights) / self.weight_sum
        else:
            self.means = np.zeros(self.n_features)

    def weighted_sum_of_rows(self, coefficients):
        """Σᵢ cᵢ xᵢ, summed in float64 (by blocks of rows for float32 X: no float64 copy)."""
        X, coefficients = self.X, np.asarray(coefficients, dtype=np.float64)
        if sp.issparse(X) or X.dtype == np.float64:
            return np.asarray(X.T @ coefficients, dtype=np.float64)
        total = np.zeros(self.n_features)
        for start in range(0, X.shape[0], GRAM_CHUNK_ROWS):
            stop = start + GRAM_CHUNK_ROWS
            total += X[start:stop].astype(np.float64).T @ coefficients[start:stop]
        return total

    def covariance(self):
        """The weighted covariance Σ sᵢ (xᵢ − x̄)(xᵢ − x̄)ᵀ / Σ sᵢ, a dense float64 matrix.

        One product of X with itself, in X's dtype, in chunks of rows when
        the rows are weighted (so no weighted copy of X is made).
        """
        X = self.X
        if sp.issparse(X):
            scaled = X if self.unit_weights else sp.diags(self.weights.astype(X.dtype)) @ X
            second = np.asarray((X.T @ scaled).toarray(), dtype=np.float64)
        elif self.unit_weights and X.dtype == np.float64:
            second = X.T @ X
        else:
            # Sums over many rows in float64 (a float32 sum of a million
            # products keeps four digits); blocks bound the copies' memory.
            second = np.zeros((self.n_features, self.n_features))
            for start in range(0, X.shape[0], GRAM_CHUNK_ROWS):
                block = X[start : start + GRAM_CHUNK_ROWS].astype(np.float64)
                weights = self.weights[start : start + GRAM_CHUNK_ROWS]
                second += block.T @ (block * weights[:, None])
        return second / self.weight_sum - np.outer(self.means, self.means)

    def covariance_times(self, vector):
        """C·v for the weighted covariance C, by two passes over X (in X's dtype)."""
        centred = np.asarray(self.X @ vector.astype(self.X.dtype), dtype=np.float64)
        centred -= self.means @ vector
        return self.weighted_sum_of_rows(self.weights * centred) / self.weight_sum - (
            self.means * (self.weights @ centred) / self.weight_sum
        )

    def largest_eigenvalue(self, covariance=None):
        """λ_max of the weighted covariance: exact from ``covariance``, else by power iterations."""
        if covariance is None and self.n_features <= GRAM_MAX_FEATURES:
            covariance = self.covariance()
        if covariance is not None:
            if not np.isfinite(covariance).all():
                # NaN or inf in X; the estimator names the cause.
                raise DivergenceError("The features' covariance is not finite.")
            return float(max(np.linalg.eigvalsh(covariance)[-1], 0.0))
        vector = np.random.default_rng(0).standard_normal(self.n_features)
        estimate = 0.0
        for _ in range(POWER_ITERATIONS):
            vector /= np.linalg.norm(vector)
            image = self.covariance_times(vector)
            estimate = float(vector @ image)  # Rayleigh quotient
            if not np.any(image):
                break
            vector = image
        return POWER_ITERATION_MARGIN * max(estimate, 0.0)


def lipschitz_constant(moments, config, curvature, covariance=None):
    """L = c·max(λ_max(C), 1) + l2, the curvature bound of f in centred coordinates.

    In centred coordinates the second moment of ``[xᵢ − x̄, 1]`` is
    ``diag(C, 1)`` (``[C]`` alone without an intercept).
    """
    eigenvalue = moments.largest_eigenvalue(covariance)
    if config.fit_intercept:
        eigenvalue = max(eigenvalue, 1.0)
    return curvature * eigenvalue + config.penalty_l2


class QuadraticObjective:
    """The mean ½ squared error plus the L2 part, as a quadratic in centred coordinates.

    f(w, b') = ½ wᵀ(C + l2·I)w − cᵀw + ½(b' − ȳ)² + ½ Var(y), with C the
    features' weighted covariance and c their covariance with y (about zero,
    with the intercept held at its initial value, without an intercept).
    """

    def __init__(self, moments, y, config, intercept):
        self.config = config
        weights = moments.weights
        y = np.asarray(y, dtype=np.float64)
        if config.fit_intercept:
            self.y_mean = float(weights @ y) / moments.weight_sum
        else:
            self.y_mean = intercept  # the fixed intercept plays ȳ's part
        residual = y - self.y_mean
        self.covariance = moments.covariance()
        self.cross = moments.weighted_sum_of_rows(weights * residual) / moments.weight_sum
        self.constant = 0.5 * float(weights @ (residual * residual)) / moments.weight_sum

    def value_and_gradient(self, theta):
        """f and ∇f at ``theta = [w, b']``."""
        w, intercept = theta[:-1], theta[-1]
        curvature_w = self.covariance @ w + self.config.penalty_l2 * w
        gradient = np.empty_like(theta)
        gradient[:-1] = curvature_w - self.cross
        offset = intercept - self.y_mean if self.config.fit_intercept else 0.0
        gradient[-1] = offset
        value = 0.5 * w @ curvature_w - self.cross @ w + 0.5 * offset * offset + self.constant
        return value, gradient


class PassObjective:
    """The weighted mean loss plus the L2 part, by one pass over X per gradient.

    Dense X: the fused full-batch gradient kernel. CSR X: two sparse
    products around :func:`~fastgd._kernels.linear.full_batch_numba.weighted_loss_derivatives`
    (the fused kernel's per-chunk partials would cost O(chunks × features)).
    """

    def __init__(self, data, order, moments, config):
        from fastgd._kernels.linear.batch_numba import partials_shape

        n_rows = order.shape[0]
        self.sparse_rows = moments.X if sp.issparse(moments.X) else None
        if self.sparse_rows is not None:
            self.y = np.ascontiguousarray(data.y[order])
            unit = data.kernel_weights.shape[0] == 0
            self.weights = data.kernel_weights if unit else data.kernel_weights[order]
            self.derivatives = np.empty(n_rows, dtype=data.dtype)
        else:
            self.rows = BatchRows.of(data.features, order, data.y, data.kernel_weights, n_rows)
            self.scratch = Scratch.for_batches(
                data.n_features, partials_shape(n_rows, data.n_features), data.dtype
            )
        self.params = np.zeros(data.n_features + 1, dtype=data.dtype)
        self.settings = config.settings(1.0)
        self.means, self.weight_sum, self.config = moments.means, moments.weight_sum, config

    def _loss_sum_and_gradient(self):
        """Σ sᵢ ℓᵢ and the gradient of the objective's smooth part at ``self.params``."""
        if self.sparse_rows is None:
            from fastgd._kernels.linear.batch_numba import gradient_kernel

            n_rows = self.rows.order.shape[0]
            batch_gradient = gradient_kernel(self.rows, n_rows, self.params.shape[0])
            loss_sum = batch_gradient(
                self.rows, 0, n_rows, self.params, self.settings, self.scratch
            )
            return loss_sum, self.scratch.grad.astype(np.float64)
        from fastgd._kernels.linear.full_batch_numba import weighted_loss_derivatives

        X, w, config = self.sparse_rows, self.params[:-1], self.config
        predictions = np.asarray(X @ w) + self.params[-1]
        loss_sum = weighted_loss_derivatives(
            config.loss, predictions, self.y, self.weights, config.epsilon, self.derivatives
        )
        gradient = np.empty(self.params.shape[0])
        gradient[:-1] = X.T @ self.derivatives.astype(np.float64)
        gradient[-1] = float(self.derivatives.sum(dtype=np.float64))
        gradient /= self.weight_sum
        gradient[:-1] += config.penalty_l2 * w
        if not config.fit_intercept:
            gradient[-1] = 0.0
        return loss_sum, gradient

    def value_and_gradient(self, theta):
        """f and ∇f at ``theta = [w, b']`` (centred coordinates)."""
        self.params[:] = to_model_params(theta, self.means)
        loss_sum, gradient = self._loss_sum_and_gradient()
        gradient[:-1] -= self.means * gradient[-1]  # chain rule of b = b' − w·x̄
        w = theta[:-1]
        value = loss_sum / self.weight_sum + 0.5 * self.config.penalty_l2 * float(w @ w)
        return value, gradient


def to_model_params(theta, means):
    """``[w, b]`` of the centred coordinates ``[w, b']``: b = b' − w·x̄."""
    params = theta.copy()
    params[-1] -= theta[:-1] @ means
    return params


def to_centred(params, means):
    """``[w, b']`` of the model's ``[w, b]``: b' = b + w·x̄."""
    theta = np.asarray(params, dtype=np.float64).copy()
    theta[-1] += theta[:-1] @ means
    return theta


def soft_threshold(values, threshold):
    """Proximal operator of threshold·‖·‖₁ (exact zeros inside the threshold)."""
    return np.sign(values) * np.maximum(np.abs(values) - threshold, 0.0)


def _small_move(largest_move, x, solver):
    """The solvers' convergence test: a move within the precision, or ``tol`` times the first.

    ``solver`` gives ``relative_step``, ``first_move_fraction`` and
    ``first_move`` (None until a first move is taken).
    """
    first_move = 0.0 if solver.first_move is None else solver.first_move
    return largest_move <= max(
        solver.relative_step * float(np.abs(x).max()),
        solver.first_move_fraction * first_move,
    )


class AcceleratedProximalGradient:
    """FISTA with gradient restart over an objective with ``value_and_gradient``.

    Parameters
    ----------
    objective : QuadraticObjective or PassObjective
        The smooth part f.
    theta : ndarray of float64
        The starting point ``[w, b']``.
    lipschitz : float
        Upper bound of f's curvature: the step is its inverse.
    l1 : float
        Weight of ‖w‖₁ (proximal part).
    relative_step : float
        Converged once no parameter moves by more than this, relative to the
        largest parameter.

    Attributes
    ----------
    first_move_fraction : float
        Also converged once the largest move is at most this fraction of the
        first iteration's (0: never).
    """

    def __init__(self, objective, theta, lipschitz, l1, relative_step):
        self.objective = objective
        self.step = 1.0 / lipschitz if lipschitz > 0 else 1.0
        self.l1 = l1
        self.relative_step = relative_step
        self.first_move_fraction = 0.0
        self.first_move = None
        self.x = theta.copy()  # the iterate (exact zeros)
        self.y = theta.copy()  # where the next gradient is taken
        self.t = 1.0
        self.converged = False

    def iterate(self):
        """One proximal gradient step from the extrapolated point; return the objective there."""
        value, gradient = self.objective.value_and_gradient(self.y)
        objective = value
        x = self.y - self.step * gradient
        if self.l1 > 0:
            objective += self.l1 * float(np.abs(self.y[:-1]).sum())
            x[:-1] = soft_threshold(x[:-1], self.l1 * self.step)
        move = x - self.y
        largest_move = float(np.abs(move).max())
        if self.first_move is None:
            self.first_move = largest_move
        self.converged = _small_move(largest_move, x, self)
        # Restart when the momentum points uphill: the gradient mapping
        # (−move/step) has a positive product with the last displacement.
        displacement = x - self.x
        if move @ displacement < 0:
            self.t = 1.0
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * self.t * self.t))
        self.y = x + ((self.t - 1.0) / t_next) * displacement
        self.x, self.t = x, t_next
        return objective


class SubgradientDescent:
    """Proximal subgradient steps, their size set by a backtracking line search.

    For an objective with kinks (no curvature bound, so no safe fixed step):
    the trial point is ``prox(θ − η g)``, g a subgradient of f at the
    iterate θ and prox the soft-threshold of the L1 part; it is accepted
    when it lowers the objective F = f + l1·‖w‖₁, and the next trial's step
    is ``BACKTRACK_GROWTH·η``; otherwise θ stays and the step is
    ``BACKTRACK_SHRINK·η``. Without the line search every trial is accepted
    and the step stays (the batch perceptron). The objective is evaluated,
    with its subgradient, in one pass over X per trial, so an accepted
    trial's subgradient serves the next step. Same interface as
    :class:`AcceleratedProximalGradient`.

    Parameters
    ----------
    objective : PassObjective
        The loss part f (loss and L2).
    theta : ndarray of float64
        The starting point ``[w, b']``.
    step : float or None
        The first trial step; None: Polyak's step F(θ)/‖g‖² (0 standing for
        the optimum's value: these losses and penalties are non-negative).
    l1 : float
        Weight of ‖w‖₁ (proximal part).
    relative_step : float
        Converged once a trial would move no parameter by more than this,
        relative to the largest parameter.
    line_search : bool
        Accept only the trials that lower the objective, and adapt the step.

    Attributes
    ----------
    first_move_fraction : float
        Also converged once the largest accepted move is at most this
        fraction of the first accepted one (0: never).
    """

    def __init__(self, objective, theta, step, l1, relative_step, line_search=True):
        self.objective = objective
        self.l1 = l1
        self.relative_step = relative_step
        self.line_search = line_search
        self.first_move_fraction = 0.0
        self.first_move = None
        self.x = theta.copy()
        self.value, self.gradient = self._evaluate(self.x)
        if step is None:
            squared_norm = float(self.gradient @ self.gradient)
            step = self.value / squared_norm if squared_norm > 0 else 1.0
        self.step = step
        self.converged = False

    def _evaluate(self, theta):
        """F and a subgradient of f (the L1 part is left to the proximal step)."""
        value, gradient = self.objective.value_and_gradient(theta)
        if self.l1 > 0:
            value += self.l1 * float(np.abs(theta[:-1]).sum())
        return value, gradient

    def iterate(self):
        """One trial step; return the objective at the iterate after it."""
        trial = self.x - self.step * self.gradient
        if self.l1 > 0:
            trial[:-1] = soft_threshold(trial[:-1], self.l1 * self.step)
        largest_move = float(np.abs(trial - self.x).max())
        value, gradient = self._evaluate(trial)
        if not self.line_search or value < self.value:
            if self.first_move is None:
                self.first_move = largest_move
            self.x, self.value, self.gradient = trial, value, gradient
            if self.line_search:
                self.step *= BACKTRACK_GROWTH
        else:
            self.step *= BACKTRACK_SHRINK
        self.converged = _small_move(largest_move, self.x, self)
        return self.value


class FullBatchTrainer:
    """The full-batch training of one linear model with one output.

    By :class:`AcceleratedProximalGradient` for a smooth loss, by
    :class:`SubgradientDescent` for a loss with kinks. Same interface
    as :class:`~fastgd._engine.linear.LinearTrainer` (one iteration per
    epoch).

    Parameters
    ----------
    data : LinearData
    state : LinearState
        Its parameters are the solver's iterate after every iteration; a
        loss with kinks keeps its line search's step in ``state.eta``, so
        ``partial_fit`` goes on where the last call stopped.
    config : LinearConfig
        One output (``n_classes`` 1).
    order : ndarray of intp
        The rows to train on.
    """

    def __init__(self, data, state, config, order):
        self.data, self.state, self.config = data, state, config
        self.order = order
        # NaN or inf in X make the moments non-finite: reported, not warned.
        with np.errstate(invalid="ignore", over="ignore"):
            moments = FeatureMoments(data, order, center=config.fit_intercept)
            if not is_smooth(config.loss):
                self._start_subgradient(data, state, config, order, moments)
                return
            curvature = LOSS_CURVATURE[config.loss]
            if config.loss == codes.SQUARED_ERROR and _gram_pays(data, order):
                intercept = float(state.intercept)
                objective = QuadraticObjective(moments, data.y[order], config, intercept)
                covariance = objective.covariance
            else:
                objective = PassObjective(data, order, moments, config)
                covariance = None
            self.lipschitz = lipschitz_constant(moments, config, curvature, covariance)
        self.means = moments.means
        arithmetic = np.float64 if isinstance(objective, QuadraticObjective) else data.dtype
        relative_step = SOLVER_RELATIVE_STEP * float(np.finfo(arithmetic).eps)
        self.solver = AcceleratedProximalGradient(
            objective,
            to_centred(state.params, self.means),
            self.lipschitz,
            config.penalty_l1,
            relative_step,
        )

    def _start_subgradient(self, data, state, config, order, moments):
        """The solver of a loss with kinks, from the step of the last call if any.

        The perceptron's objective is lowest at zero weights (its loss is
        positively homogeneous), so a line search would never leave them:
        it takes the batch perceptron's constant steps instead (any step
        gives the same classifier from zero weights without a penalty).
        """
        self.means = moments.means
        perceptron = config.loss == codes.PERCEPTRON
        step = state.eta
        if perceptron and step is None:
            step = BATCH_PERCEPTRON_STEP
        self.solver = SubgradientDescent(
            PassObjective(data, order, moments, config),
            to_centred(state.params, self.means),
            step,
            config.penalty_l1,
            SOLVER_RELATIVE_STEP * float(np.finfo(data.dtype).eps),
            line_search=not perceptron,
        )

    @property
    def converged(self):
        """Whether the last iteration solved the problem to the dtype's precision."""
        return self.solver.converged

    def new_history(self, tol, n_iter_no_change, early_stopping, validating):
        """The stopping rule (see the module's docstring).

        The squared error is solved to the arithmetic's precision; the other
        losses stop once their largest move is ``tol`` times their first,
        the batch perceptron by the loss (as the epochs of SGD do).
        """
        if self.config.loss == codes.PERCEPTRON:
            # Constant steps: the loss decides, as for the epochs of SGD.
            return TrainingHistory(tol, n_iter_no_change, early_stopping, validating=validating)
        if self.config.loss != codes.SQUARED_ERROR and tol is not None:
            self.solver.first_move_fraction = tol
        return TrainingHistory(
            tol,
            n_iter_no_change,
            early_stopping,
            validating=validating,
            converged=lambda: self.converged,
        )

    def train_epoch(self, epoch=None):
        """One iteration; return the objective where its gradient was taken."""
        objective = self.solver.iterate()
        params = to_model_params(self.solver.x, self.means)
        if not (math.isfinite(objective) and np.isfinite(params).all()):
            raise DivergenceError(
                "The fit diverged: the objective or the coefficients became NaN or infinite."
            )
        self.state.params[:] = params
        if isinstance(self.solver, SubgradientDescent):
            self.state.eta = self.solver.step
        counters = self.state.counters
        counters[N_UPDATES] += 1.0
        counters[T] += 1.0
        return objective

    def on_plateau(self):
        """The solver has no schedule to change: stop."""
        return False

    def learning_rate(self):
        """The step: 1/L, or the line search's next trial step."""
        return self.solver.step

    def initial_loss(self):
        """None: with a step of 1/L the solver cannot blow up."""
        return None


def _gram_pays(data, order):
    """Whether the squared error's quadratic (a d × d matrix) is cheaper than passes over X."""
    return data.n_features <= GRAM_MAX_FEATURES and order.shape[0] >= data.n_features


def first_plain_step(data, order, config):
    """The first rate of a softmax model's plain full-batch steps.

    1/L, with the curvature bound :data:`SOFTMAX_CURVATURE` times λ_max of
    the second moment of ``[xᵢ, 1]`` (raw coordinates: these steps are taken
    on ``[w, b]``).
    """
    with np.errstate(invalid="ignore", over="ignore"):  # NaN or inf in X: reported
        eigenvalue = FeatureMoments(data, order, center=False).largest_eigenvalue()
    if config.fit_intercept:
        # λ_max of [[M, x̄], [x̄ᵀ, 1]] is at most λ_max(M) + 1 (M the second moment).
        eigenvalue += 1.0
    return 1.0 / (SOFTMAX_CURVATURE * eigenvalue + config.penalty_l2)
