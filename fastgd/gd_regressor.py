"""GDRegressor: linear regression by per-sample SGD, mini-batch or full-batch GD."""

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import check_is_fitted, validate_data

from fastgd._callback_support import reports_to_callbacks
from fastgd._engine.linear import HeldOut, LinearData, LinearState
from fastgd._kernels.runtime import codes
from fastgd._linear_base import BaseGD, initial_state
from fastgd._sklearn_compat import StrOptions


class GDRegressor(RegressorMixin, BaseGD):
    """Linear regression trained by compiled gradient descent.

    A drop-in replacement for :class:`sklearn.linear_model.SGDRegressor`:
    every parameter the two share has the same name, meaning and default.
    On top of it, GDRegressor offers mini-batch and full-batch gradient
    descent, the momentum, Nesterov, AdaGrad, RMSprop and Adam optimizers,
    exact L1 / elastic net by proximal steps (full batch), a loss history and
    early stopping on a validation set of your own.

    The model minimises

        (1/n) Σᵢ sᵢ ℓ(w·xᵢ + b, yᵢ) + α (ρ‖w‖₁ + (1 − ρ)/2 ‖w‖²)

    with ρ = ``l1_ratio`` (ρ = 0 for ``penalty="l2"``, 1 for ``"l1"``).
    For ``loss="squared_error"`` (ℓ = ½r²) and ``penalty="l2"`` this is
    :class:`~sklearn.linear_model.Ridge` with ``alpha = n·α``; with
    ``penalty="elasticnet"`` it is :class:`~sklearn.linear_model.ElasticNet`
    with the same ``alpha`` and ``l1_ratio``.

    Parameters
    ----------
    loss : {"squared_error", "huber", "epsilon_insensitive", \
            "squared_epsilon_insensitive"}, default="squared_error"
        The loss ℓ. "huber" is quadratic within ``epsilon`` of the target and
        linear outside; the epsilon-insensitive losses ignore errors smaller
        than ``epsilon``.
    penalty : {"l2", "l1", "elasticnet"} or None, default="l2"
        The regulariser.
    alpha : float, default=0.0001
        Regularisation strength (also sets the "optimal" learning rate).
    l1_ratio : float or None, default=0.15
        Share of L1 in the elastic net, used only with ``penalty="elasticnet"``
        (which needs a number; None is accepted otherwise).
    fit_intercept : bool, default=True
        Learn an intercept.
    max_iter : int, default=1000
        Maximum number of epochs (passes over the data).
    tol : float or None, default=1e-3
        Training stops when the loss (or, with early stopping, the validation
        score) has not improved by ``tol`` for ``n_iter_no_change`` epochs.
        None disables the rule. The full-batch solver of
        ``learning_rate="auto"`` stops on the size of its steps instead: for
        the squared error once an iteration moves no parameter by more than
        10 machine epsilons relative to the largest (Ridge's and
        ElasticNet's coefficients to 1e-6 and better), for the other losses
        once the largest move is ``tol`` times the first iteration's.
    shuffle : bool, default=True
        Visit the rows in a new random order every epoch.
    verbose : int, default=0
        Print one line per epoch.
    epsilon : float, default=0.1
        Width of the Huber and epsilon-insensitive losses.
    random_state : int, RandomState instance or None, default=None
        Seeds the row order and the validation split. The same seed gives a
        bit-identical model.
    learning_rate : {"auto", "constant", "optimal", "invscaling", "adaptive", "pa1", \
            "pa2"}, default="auto"
        Schedule of the step size η at step t. "auto": for plain SGD
        (per-sample or mini-batch) SGDRegressor's default, "invscaling" with
        ``eta0`` (the same steps as SGDRegressor); for "momentum" and
        "nesterov" the same with ``eta0·(1 − momentum)`` (plain SGD's
        effective step); for "adagrad", "rmsprop" and "adam" "adaptive" from
        10, 1 and 1 (their steps are bounded by η per coordinate); for
        ``batch_size="full"`` with "sgd", "momentum" or "nesterov" no rate at
        all: the accelerated proximal gradient solver (FISTA with restart)
        with the step 1/L of the problem, L the largest curvature of the
        objective (a loss with kinks, "epsilon_insensitive", takes proximal
        subgradient steps under a backtracking line search instead).
        Otherwise: "constant" η = eta0;
        "optimal" η = 1 / (α (t₀ + t − 1)); "invscaling" η = eta0 / t^power_t;
        "adaptive" η = eta0, divided by 5 whenever ``n_iter_no_change``
        epochs pass without improvement; "pa1" and "pa2" the
        passive-aggressive steps min(eta0, ℓ/‖x‖²) and ℓ / (‖x‖² + 1/(2 eta0))
        (Crammer et al., 2006; ``loss="epsilon_insensitive"``, per-sample
        plain SGD only).
    eta0 : float, default=0.01
        Initial step size (with ``learning_rate="auto"`` used by plain SGD,
        momentum and Nesterov in per-sample and mini-batch modes only).
    power_t : float, default=0.25
        Exponent of "invscaling" (negative values are deprecated, as in
        scikit-learn, and give a ``FutureWarning``).
    early_stopping : bool, default=False
        Stop when the R² on held-out data stops improving. The held-out data
        is the ``eval_set`` passed to ``fit`` or, without one, a random
        ``validation_fraction`` of the training data: the same rows
        ``SGDRegressor`` holds out for the same ``random_state``. Not
        available with ``partial_fit``.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.
    n_iter_no_change : int, default=5
        Epochs without improvement before stopping.
    warm_start : bool, default=False
        Start ``fit`` from the previous solution.
    average : bool or int, default=False
        Averaged SGD: ``coef_`` is the mean of the iterates, from the first
        step (True) or from step ``average`` on (not used by the full-batch
        solver of ``learning_rate="auto"``, whose last iterate is the optimum).
    batch_size : int or "full", default=1
        1: per-sample SGD. k > 1: mini-batch GD with batches of k rows.
        "full": full-batch GD (with proximal L1 steps, so L1 and the elastic
        net reach the optimum's exact zeros); one iteration per epoch.
    optimizer : {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}, \
            default="sgd"
        Update rule applied to each (mini-)batch gradient, scaled by the
        learning-rate schedule. "rmsprop" uses ``beta_2`` as its decay.
    momentum : float, default=0.9
        Momentum of "momentum" and "nesterov".
    beta_1, beta_2 : float, default=0.9, 0.999
        Decay rates of Adam's first and second moments (``beta_2`` also for
        RMSprop).
    optimizer_eps : float, default=1e-8
        Stability constant of AdaGrad, RMSprop and Adam (not the loss's
        ``epsilon``).
    backend : {"auto", "cython", "numba"}, default="auto"
        Implementation of the per-sample loop: the ahead-of-time Cython
        kernel (no warm-up; "auto" picks it when built) or the Numba kernel.
        Both give the same coefficients. Mini-batch and full-batch GD always
        run the Numba batch kernel.
    callbacks : list of callables, default=None
        Called as ``callback(estimator, report)`` after every epoch, with
        ``coef_`` and ``intercept_`` set to the current model and ``report``
        an :class:`~fastgd.callbacks.EpochReport` (epoch, loss, validation
        score, learning rate, time). A callback returning True stops
        training. See :mod:`fastgd.callbacks`.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Weights, in the dtype of the training data (float32 or float64).
    intercept_ : ndarray of shape (1,)
        Intercept.
    n_iter_ : int
        Number of epochs run (iterations of the full-batch solver).
    t_ : float
        Number of weight updates plus one (as in scikit-learn).
    loss_curve_ : list of float
        Training objective per epoch: the mean loss seen during the epoch
        plus the penalty at its end.
    validation_scores_ : list of float
        Held-out R² per epoch (with early stopping or an ``eval_set``).
    validation_loss_curve_ : list of float
        Held-out mean loss per epoch (likewise).
    best_score_ : float
        Best held-out R² (likewise).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of str
        Column names, when X was a DataFrame with string column names.

    See Also
    --------
    sklearn.linear_model.SGDRegressor : the scikit-learn estimator this
        replaces.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from fastgd import GDRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), GDRegressor(random_state=0))
    >>> round(model.fit(X, y).score(X, y), 2)
    0.51
    """

    _parameter_constraints = {
        **BaseGD._parameter_constraints,
        "loss": [StrOptions(set(codes.REGRESSION_LOSS_CODES))],
    }
    _loss_codes = codes.REGRESSION_LOSS_CODES
    _pa_loss = "epsilon_insensitive"
    _sgd_schedule = "invscaling"

    def __init__(
        self,
        loss="squared_error",
        *,
        penalty="l2",
        alpha=0.0001,
        l1_ratio=0.15,
        fit_intercept=True,
        max_iter=1000,
        tol=1e-3,
        shuffle=True,
        verbose=0,
        epsilon=0.1,
        random_state=None,
        learning_rate="auto",
        eta0=0.01,
        power_t=0.25,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        warm_start=False,
        average=False,
        batch_size=1,
        optimizer="sgd",
        momentum=0.9,
        beta_1=0.9,
        beta_2=0.999,
        optimizer_eps=1e-8,
        backend="auto",
        callbacks=None,
    ):
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.verbose = verbose
        self.epsilon = epsilon
        self.random_state = random_state
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.average = average
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.momentum = momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.optimizer_eps = optimizer_eps
        self.backend = backend
        self.callbacks = callbacks

    def _publish(self, state, config):
        """Set the public fitted attributes from the solver state."""
        coef, intercept = state.model_to_predict(config)
        self.coef_ = coef.copy()
        self.intercept_ = np.array([intercept], dtype=coef.dtype)
        self.t_ = float(state.t)

    # -------------------------------------------------------------- training

    @reports_to_callbacks
    def fit(self, X, y, coef_init=None, intercept_init=None, sample_weight=None, eval_set=None):
        """Fit the linear model by gradient descent.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. float32 data is trained and predicted in float32;
            other dtypes become float64. Sparse matrices are used as CSR.
        y : array-like of shape (n_samples,)
            Targets.
        coef_init : array-like of shape (n_features,), default=None
            Initial weights.
        intercept_init : float or array-like of shape (1,), default=None
            Initial intercept.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples (non-negative).
        eval_set : tuple (X_val, y_val), default=None
            Held-out data scored after every epoch (``validation_scores_``,
            ``validation_loss_curve_``); with ``early_stopping=True`` the
            stopping rule watches its score (instead of a random split's).

        Returns
        -------
        self : GDRegressor
            The fitted estimator.
        """
        self._check_parameters()
        config = self._make_config()
        X, y, sample_weight = self._validate_training_data(X, y, sample_weight, reset=True)
        y = np.ascontiguousarray(y, dtype=X.dtype)
        if coef_init is None and self.warm_start and hasattr(self, "_state"):
            coef_init, intercept_init = self._state.coef, self._state.intercept
        state = initial_state(X.shape[1], X.dtype, coef_init, intercept_init)

        rows, validation = None, None
        if eval_set is not None:
            X_val, y_val, w_val = self._validate_eval_set(eval_set, X.dtype)
            validation = HeldOut("r2", X_val, y_val.astype(X.dtype, copy=False), w_val, config)
        elif self.early_stopping:
            rows, val_rows = self._validation_split(y, sample_weight)
            validation = HeldOut("r2", X[val_rows], y[val_rows], sample_weight[val_rows], config)
            self._check_finite_features(validation.X)

        history, n_epochs = self._train_one_model(
            X,
            LinearData(X, y, sample_weight),
            state,
            config,
            lambda: self._publish(state, config),
            max_iter=self.max_iter,
            rng=check_random_state(self.random_state),
            rows=rows,
            shuffle=self.shuffle,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            validation=validation,
            early_stopping=self.early_stopping,
            verbose=self.verbose,
        )
        self._state = state
        self.n_iter_ = n_epochs
        self.loss_curve_ = history.loss_curve
        self._publish_validation(history, validation is not None)
        self._publish(state, config)
        return self

    @reports_to_callbacks
    def partial_fit(self, X, y, sample_weight=None):
        """Run one epoch over (X, y), continuing from the current state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            A chunk of training data.
        y : array-like of shape (n_samples,)
            Its targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples.

        Returns
        -------
        self : GDRegressor
            The updated estimator.
        """
        first_call = not hasattr(self, "_state")
        self._check_parameters(for_partial_fit=True)
        config = self._make_config()
        X, y, sample_weight = self._validate_training_data(X, y, sample_weight, reset=first_call)
        y = np.ascontiguousarray(y, dtype=X.dtype)
        if first_call:
            self._state = LinearState(X.shape[1], X.dtype)
            self.n_iter_ = 0
            self.loss_curve_ = []
        state = self._state
        history, n_epochs = self._train_one_model(
            X,
            LinearData(X, y, sample_weight),
            state,
            config,
            lambda: self._publish(state, config),
            max_iter=1,
            rng=check_random_state(self.random_state),
            shuffle=self.shuffle,
            tol=None,
            verbose=self.verbose,
        )
        self.n_iter_ += n_epochs
        self.loss_curve_ = self.loss_curve_ + history.loss_curve
        self._publish(state, config)
        return self

    # ------------------------------------------------------------ prediction

    def predict(self, X):
        """Predict targets: ``X @ coef_ + intercept_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predictions, in the dtype of ``coef_`` when X is float32.
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32], reset=False)
        if X.dtype != self.coef_.dtype:
            X = X.astype(np.result_type(X.dtype, self.coef_.dtype), copy=False)
        pred = safe_sparse_dot(X, self.coef_) + self.intercept_[0]
        return np.asarray(pred).reshape(-1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


__all__ = ["GDRegressor"]
