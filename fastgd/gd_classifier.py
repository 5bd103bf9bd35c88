"""GDClassifier: linear classification by per-sample SGD, mini-batch or full-batch GD."""

import dataclasses
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, softmax
from sklearn.base import ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from fastgd._callback_support import reports_to_callbacks
from fastgd._engine.linear import HeldOut, LinearData, LinearState
from fastgd._engine.linear_defaults import stable_optimal_t0
from fastgd._engine.one_vs_rest import Problem, padded_mean, train_one_vs_rest
from fastgd._kernels.runtime import codes
from fastgd._linear_base import BaseGD, initial_state
from fastgd._sklearn_compat import StrOptions

MAX_SEED = np.iinfo(np.int32).max
CLASSIFIER_LOSS_CODES = {**codes.CLASSIFICATION_LOSS_CODES, **codes.REGRESSION_LOSS_CODES}


class _MeanHistory:
    """The validation curves of several binary problems, averaged epoch by epoch."""

    def __init__(self, histories):
        self.validation_scores = padded_mean([h.validation_scores for h in histories])
        losses = [h.validation_losses for h in histories]
        self.validation_losses = padded_mean(losses) if all(losses) else []


class GDClassifier(ClassifierMixin, BaseGD):
    """Linear classification trained by compiled gradient descent.

    A drop-in replacement for :class:`sklearn.linear_model.SGDClassifier`:
    every parameter the two share has the same name, meaning and default, and
    so do the attributes and methods. On top of it, GDClassifier offers
    mini-batch and full-batch gradient descent, the momentum, Nesterov,
    AdaGrad, RMSprop and Adam optimizers, a loss history, early stopping on
    a validation set of your own, and trains the binary problems of a
    multiclass model in parallel on the available cores.

    A binary problem minimises

        Σᵢ sᵢ ℓ(w·xᵢ + b, yᵢ) / Σᵢ sᵢ + α (ρ‖w‖₁ + (1 − ρ)/2 ‖w‖²)

    over labels yᵢ = ±1 (the second class of ``classes_`` is +1), with
    ρ = ``l1_ratio``. With more than two classes, one binary problem per class
    separates it from the rest (one-vs-rest), as scikit-learn does.

    Parameters
    ----------
    loss : {"hinge", "log_loss", "modified_huber", "squared_hinge", \
            "perceptron", "squared_error", "huber", "epsilon_insensitive", \
            "squared_epsilon_insensitive"}, default="hinge"
        The loss ℓ: "hinge" a linear SVM, "log_loss" logistic regression
        (probabilities), "modified_huber" a smoothed hinge (probabilities),
        "squared_hinge" the hinge squared, "perceptron" the perceptron's; the
        regression losses fit the labels ±1 as numbers.
    penalty : {"l2", "l1", "elasticnet"} or None, default="l2"
        The regulariser.
    alpha : float, default=0.0001
        Regularisation strength (also sets the "optimal" learning rate).
    l1_ratio : float or None, default=0.15
        Share of L1 in the elastic net, used only with ``penalty="elasticnet"``.
    fit_intercept : bool, default=True
        Learn an intercept.
    max_iter : int, default=1000
        Maximum number of epochs (passes over the data).
    tol : float or None, default=1e-3
        Each binary problem stops when its loss (or, with early stopping, its
        validation accuracy) has not improved by ``tol`` for
        ``n_iter_no_change`` epochs. None disables the rule.
    shuffle : bool, default=True
        Visit the rows in a new random order every epoch.
    verbose : int, default=0
        Print one line per epoch.
    epsilon : float, default=0.1
        Width of the regression losses that have one.
    n_jobs : int or None, default=None
        Binary problems of a multiclass model trained at once: None uses every
        CPU fastgd may use (``NUMBA_NUM_THREADS`` and the process's CPU
        affinity cap it), -1 too, k at most k. The models do not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seeds the row orders and the validation split. The same seed gives a
        bit-identical model.
    learning_rate : {"auto", "optimal", "constant", "invscaling", "adaptive", "pa1", \
            "pa2"}, default="auto"
        Schedule of the step size η at step t. "auto": SGDClassifier's
        default "optimal" for plain SGD, momentum and Nesterov (per-sample or
        mini-batch), for the squared losses ("squared_hinge",
        "squared_error", "squared_epsilon_insensitive") with t₀ raised so
        that no step overshoots on any training row (η₁ ≤ 1 / (c·max
        ‖[xᵢ, 1]‖²), c the loss's curvature bound; scikit-learn's t₀ makes
        their weights grow by many orders of magnitude); "adaptive" from 10,
        1 and 1 for "adagrad", "rmsprop" and "adam"; with
        ``batch_size="full"`` and "sgd", "momentum" or "nesterov", the
        accelerated proximal gradient solver with the step 1/L of the
        problem for the smooth losses ("log_loss", "modified_huber",
        "squared_hinge") and one-vs-rest models, proximal subgradient steps
        under a backtracking line search for "hinge" and the
        epsilon-insensitive loss, the batch perceptron's constant steps for
        "perceptron", plain gradient steps from 1/L with the "adaptive"
        schedule for a multinomial model (see :class:`~fastgd.GDRegressor`). Otherwise: "optimal"
        η = 1 / (α (t₀ + t − 1));
        "constant" η = eta0; "invscaling" η = eta0 / t^power_t; "adaptive"
        η = eta0, divided by 5 whenever ``n_iter_no_change`` epochs pass
        without improvement; "pa1" / "pa2" the passive-aggressive steps
        (``loss="hinge"``, per-sample plain SGD; ``eta0`` is C).
    eta0 : float, default=0.01
        Initial step size (the aggressiveness C of "pa1" and "pa2"); not
        used by ``learning_rate="auto"``.
    power_t : float, default=0.5
        Exponent of "invscaling".
    early_stopping : bool, default=False
        Stop each binary problem when its accuracy on held-out data stops
        improving. The held-out data is the ``eval_set`` passed to ``fit`` or,
        without one, a stratified ``validation_fraction`` of the training
        data (the rows ``SGDClassifier`` holds out for the same
        ``random_state``). Not available with ``partial_fit``.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping.
    n_iter_no_change : int, default=5
        Epochs without improvement before a problem stops.
    class_weight : dict, "balanced" or None, default=None
        Weight of each class, multiplying the sample weights: in each
        one-vs-rest problem its class's weight for its positives and 1 for
        the rest, as scikit-learn does. "balanced" weighs classes inversely to
        their frequency.
    warm_start : bool, default=False
        Start ``fit`` from the previous solution.
    average : bool or int, default=False
        Averaged SGD: ``coef_`` is the mean of the iterates, from the first
        step (True) or from step ``average`` on.
    batch_size : int or "full", default=1
        1: per-sample SGD. k > 1: mini-batch GD with batches of k rows.
        "full": full-batch GD.
    optimizer : {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}, \
            default="sgd"
        Update rule applied to each (mini-)batch gradient.
    momentum : float, default=0.9
        Momentum of "momentum" and "nesterov".
    beta_1, beta_2 : float, default=0.9, 0.999
        Decay rates of Adam's moments (``beta_2`` also for RMSprop).
    optimizer_eps : float, default=1e-8
        Stability constant of AdaGrad, RMSprop and Adam.
    backend : {"auto", "cython", "numba"}, default="auto"
        Implementation of the per-sample loop (both give the same model).
    callbacks : list of callables, default=None
        Called as ``callback(estimator, report)`` after every epoch, with
        ``coef_`` and ``intercept_`` set to the current model; ``report.loss``
        is the mean of the binary problems' losses. A callback returning True
        stops training. See :mod:`fastgd.callbacks`.
    multi_class : {"ovr", "multinomial"}, default="ovr"
        With more than two classes: "ovr" trains one binary problem per class
        (scikit-learn's only strategy); "multinomial" one softmax model over
        every class, minimising the cross-entropy (``loss="log_loss"`` only;
        on the Numba kernels; ``predict_proba`` gives the softmax). With two
        classes both are binary logistic regression.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Weights, in the dtype of the training data.
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Intercepts.
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    n_iter_ : int
        Epochs run (the most of any binary problem).
    t_ : float
        Weight updates plus one, as scikit-learn counts them.
    loss_curve_ : list of float
        Training objective per epoch (the mean over the binary problems, a
        problem that stopped counting with its last value).
    validation_scores_ : list of float
        Held-out accuracy per epoch (with early stopping or an ``eval_set``),
        averaged over the binary problems likewise.
    validation_loss_curve_ : list of float
        Held-out mean loss per epoch (likewise).
    best_score_ : float
        Best of ``validation_scores_`` (likewise).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of str
        Column names, when X was a DataFrame with string column names.

    See Also
    --------
    sklearn.linear_model.SGDClassifier : the scikit-learn estimator this
        replaces.
    fastgd.GDRegressor : the same engine for regression.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from fastgd import GDClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), GDClassifier(random_state=0))
    >>> model.fit(X, y).score(X, y) > 0.95
    True
    """

    _parameter_constraints = {
        **BaseGD._parameter_constraints,
        "loss": [StrOptions(set(CLASSIFIER_LOSS_CODES))],
        "n_jobs": [Integral, None],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "multi_class": [StrOptions({"ovr", "multinomial"})],
    }
    _loss_codes = CLASSIFIER_LOSS_CODES
    _pa_loss = "hinge"
    _sgd_schedule = "optimal"

    def __init__(
        self,
        loss="hinge",
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
        n_jobs=None,
        random_state=None,
        learning_rate="auto",
        eta0=0.01,
        power_t=0.5,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        class_weight=None,
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
        multi_class="ovr",
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
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
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
        self.multi_class = multi_class

    # ---------------------------------------------------------------- labels

    def _binary_problems(self, codes, sample_weight, class_weight):
        """Targets ±1 and weights of each binary problem (one, or one per class).

        ``codes`` are the samples' indices into ``classes_``. Weights follow
        scikit-learn: a binary model weighs each side by its class's weight; a
        one-vs-rest problem its positives by their class's weight and the
        rest by 1.
        """
        dtype = sample_weight.dtype
        if len(self.classes_) == 2:
            targets = np.where(codes == 1, 1.0, -1.0).astype(dtype)
            weights = sample_weight * class_weight.astype(dtype)[codes]
            return [(targets, weights)]
        problems = []
        for k in range(len(self.classes_)):
            positive = codes == k
            targets = np.full(codes.shape[0], -1.0, dtype=dtype)
            targets[positive] = 1.0
            weights = sample_weight  # shared by every problem when unweighted
            if class_weight[k] != 1.0:
                weights = sample_weight * np.where(positive, class_weight[k], 1.0).astype(dtype)
            problems.append((targets, weights))
        return problems

    def _class_weight(self, codes):
        """The weight of each class (scikit-learn's ``compute_class_weight``, from the codes)."""
        n_classes = len(self.classes_)
        if self.class_weight is None:
            return np.ones(n_classes)
        if self.class_weight == "balanced":
            counts = np.bincount(codes, minlength=n_classes)
            return codes.shape[0] / (n_classes * np.maximum(counts, 1))
        unknown = set(self.class_weight) - set(self.classes_.tolist())
        if unknown:
            raise ValueError(
                f"class_weight names labels that are not classes: {sorted(unknown)}; "
                f"the classes are {self.classes_.tolist()}."
            )
        return np.array([float(self.class_weight.get(c, 1.0)) for c in self.classes_.tolist()])

    def _encode(self, y):
        """Indices of the labels ``y`` into ``classes_``; a ValueError names unknown labels."""
        codes = np.searchsorted(self.classes_, y)
        codes = np.minimum(codes, len(self.classes_) - 1)
        unknown = self.classes_[codes] != y
        if np.any(unknown):
            raise ValueError(
                f"y holds labels that are not among the classes {self.classes_.tolist()}: "
                f"{np.unique(np.asarray(y)[unknown]).tolist()}."
            )
        return codes

    def _multinomial(self):
        """Whether one softmax model scores every class (more than two classes only)."""
        return self.multi_class == "multinomial" and len(self.classes_) > 2

    def _n_problems(self):
        if len(self.classes_) == 2 or self._multinomial():
            return 1
        return len(self.classes_)

    def _make_config(self):
        config = super()._make_config()
        if not self._multinomial():
            return config
        if self.loss != "log_loss":
            raise ValueError(
                "multi_class='multinomial' trains a softmax model with the log loss; "
                f"got loss={self.loss!r}. Use loss='log_loss' or multi_class='ovr'."
            )
        if self.backend == "cython":
            raise ValueError(
                "multi_class='multinomial' runs on the Numba kernels; use backend='auto' "
                "or backend='numba'."
            )
        return dataclasses.replace(config, backend="numba", n_classes=len(self.classes_))

    def _n_threads(self):
        if self.n_jobs is None or self.n_jobs < 0:
            return None
        return max(1, self.n_jobs)

    # -------------------------------------------------------------- training

    def _initial_states(self, n_features, dtype, coef_init, intercept_init):
        if self._multinomial():
            return [self._initial_multinomial_state(n_features, dtype, coef_init, intercept_init)]
        n_problems = self._n_problems()
        if coef_init is None and self.warm_start and hasattr(self, "_states"):
            if len(self._states) == n_problems and self._states[0].n_features == n_features:
                return [
                    initial_state(n_features, dtype, state.coef, state.intercept)
                    for state in self._states
                ]
        coefs = [None] * n_problems
        intercepts = [None] * n_problems
        if coef_init is not None:
            coef_init = np.asarray(coef_init, dtype=dtype).reshape(-1, n_features)
            if coef_init.shape[0] != n_problems:
                raise ValueError(
                    f"coef_init has {coef_init.shape[0]} rows; expected {n_problems} "
                    f"(one per binary problem) of {n_features} weights."
                )
            coefs = list(coef_init)
        if intercept_init is not None:
            intercept_init = np.asarray(intercept_init, dtype=np.float64).reshape(-1)
            if intercept_init.shape != (n_problems,):
                raise ValueError(f"intercept_init must hold {n_problems} number(s).")
            intercepts = list(intercept_init)
        return [
            initial_state(n_features, dtype, coef, intercept)
            for coef, intercept in zip(coefs, intercepts, strict=True)
        ]

    def _initial_multinomial_state(self, n_features, dtype, coef_init, intercept_init):
        n_classes = len(self.classes_)
        previous = getattr(self, "_states", None)
        if coef_init is None and self.warm_start and previous:
            state = previous[0]
            if state.n_classes == n_classes and state.n_features == n_features:
                coef_init, intercept_init = state.coef, state.intercept
        if coef_init is not None:
            coef_init = np.asarray(coef_init, dtype=dtype)
            if coef_init.size != n_classes * n_features:
                raise ValueError(
                    f"coef_init has shape {coef_init.shape}; expected ({n_classes}, {n_features})."
                )
        if intercept_init is not None:
            intercept_init = np.asarray(intercept_init, dtype=np.float64).reshape(-1)
            if intercept_init.shape != (n_classes,):
                raise ValueError(f"intercept_init must hold {n_classes} numbers.")
        return LinearState(
            n_features,
            dtype,
            coef_init,
            0.0 if intercept_init is None else intercept_init,
            n_classes=n_classes,
        )

    def _seeds(self, rng):
        """One RandomState per binary problem, drawn as scikit-learn draws them."""
        if self._n_problems() == 1:
            return [rng]
        seeds = rng.randint(MAX_SEED, size=self._n_problems())
        return [np.random.RandomState(seed) for seed in seeds]

    def _fit_problems(
        self, X, y, sample_weight, states, *, max_iter, rng, rows=None, validation=None, tol=None
    ):
        """Train every binary problem's state; return (histories, n_epochs)."""
        config = self._make_config()
        class_codes = self._encode(y)
        class_weight = self._class_weight(class_codes)
        if (
            self.learning_rate == "auto"
            and config.schedule == codes.OPTIMAL
            and config.loss_can_blow_up
            and config.batch_size is not None
        ):
            momentum = 0.0 if config.optimizer == codes.SGD else config.momentum
            weights = sample_weight * class_weight[class_codes]
            floor = stable_optimal_t0(
                config.loss, config.alpha, momentum, X, weights, config.fit_intercept
            )
            config = dataclasses.replace(config, optimal_t0_floor=floor)
        if self._multinomial():
            return self._fit_multinomial(
                X,
                class_codes,
                sample_weight * class_weight.astype(X.dtype)[class_codes],
                states,
                config,
                max_iter=max_iter,
                rng=rng,
                rows=rows,
                validation=validation,
                tol=tol,
            )
        labelled = self._binary_problems(class_codes, sample_weight, class_weight)
        validation_labels = None
        if validation is not None:
            # Scored with the held-out samples' own weights (as scikit-learn scores them).
            validation_labels = self._binary_problems(
                self._encode(validation[1]), validation[2], class_weight
            )
        problems = []
        for k, ((targets, weights), state, seed) in enumerate(
            zip(labelled, states, self._seeds(rng), strict=True)
        ):
            held_out = None
            if validation is not None:
                val_targets, _ = validation_labels[k]
                held_out = HeldOut("accuracy", validation[0], val_targets, validation[2], config)
            problems.append(Problem(LinearData(X, targets, weights), state, seed, held_out))
        return self._train(
            X,
            lambda **options: train_one_vs_rest(problems, config, **options),
            max_iter=max_iter,
            rows=rows,
            shuffle=self.shuffle,
            tol=tol,
            n_iter_no_change=self.n_iter_no_change,
            early_stopping=self.early_stopping,
            n_threads=self._n_threads(),
            verbose=self.verbose,
            estimator_name=type(self).__name__,
            callbacks=self._user_callbacks(),
            callback_target=self,
            before_callbacks=lambda: self._publish(states, config),
        )

    def _fit_multinomial(
        self, X, codes, weights, states, config, *, max_iter, rng, rows, validation, tol
    ):
        """Train the one softmax model of ``states``; return ([history], n_epochs)."""
        (state,) = states
        held_out = None
        if validation is not None:
            X_val, y_val, w_val = validation
            codes_val = self._encode(y_val).astype(X.dtype)
            held_out = HeldOut("multiclass accuracy", X_val, codes_val, w_val, config)
        history, n_epochs = self._train_one_model(
            X,
            LinearData(X, codes.astype(X.dtype), weights),
            state,
            config,
            lambda: self._publish(states, config),
            max_iter=max_iter,
            rng=rng,
            rows=rows,
            shuffle=self.shuffle,
            tol=tol,
            n_iter_no_change=self.n_iter_no_change,
            validation=held_out,
            early_stopping=self.early_stopping,
            verbose=self.verbose,
            estimator_name=type(self).__name__,
        )
        return [history], n_epochs

    def _publish(self, states, config):
        """Set the public fitted attributes from the binary problems' (or the softmax) states."""
        if self._multinomial():
            coef, intercept = states[0].model_to_predict(config)
            self.coef_, self.intercept_ = coef.copy(), intercept.copy()
            self.t_ = float(states[0].t)
            return
        models = [state.model_to_predict(config) for state in states]
        self.coef_ = np.vstack([coef for coef, _ in models])
        self.intercept_ = np.array([intercept for _, intercept in models], dtype=self.coef_.dtype)
        if len(states) == 1:
            self.t_ = float(states[0].t)

    def _validate_labels(self, y, classes=None):
        """The sorted classes: those of ``y``, or ``classes`` (which must hold every label of y)."""
        check_classification_targets(y)
        if classes is not None:
            classes = np.unique(np.asarray(classes))
            unseen = np.setdiff1d(np.unique(y), classes)
            if unseen.size:
                raise ValueError(
                    f"`classes={classes.tolist()}` is not the same as on the first call to "
                    f"partial_fit: y holds {unseen.tolist()}."
                )
            return classes
        classes = np.unique(y)
        if classes.shape[0] < 2:
            raise ValueError(
                f"The number of classes has to be greater than one; got {classes.shape[0]} class"
            )
        return classes

    @reports_to_callbacks
    def fit(self, X, y, coef_init=None, intercept_init=None, sample_weight=None, eval_set=None):
        """Fit the linear classifier by gradient descent.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. float32 data is trained and predicted in float32;
            other dtypes become float64. Sparse matrices are used as CSR.
        y : array-like of shape (n_samples,)
            Class labels.
        coef_init : array-like of shape (n_classes, n_features), default=None
            Initial weights ((1, n_features) or (n_features,) for two classes).
        intercept_init : array-like of shape (n_classes,), default=None
            Initial intercepts ((1,) for two classes).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples (non-negative), multiplied by the class weights.
        eval_set : tuple (X_val, y_val), default=None
            Held-out data scored after every epoch (``validation_scores_``,
            ``validation_loss_curve_``); with ``early_stopping=True`` the
            stopping rule watches its score (instead of a random split's).

        Returns
        -------
        self : GDClassifier
            The fitted estimator.
        """
        self._check_parameters()
        X, y, sample_weight = self._validate_training_data(X, y, sample_weight, reset=True)
        previous_classes = getattr(self, "classes_", None)
        self.classes_ = self._validate_labels(y)
        if previous_classes is not None and not np.array_equal(previous_classes, self.classes_):
            self.__dict__.pop("_states", None)  # warm start needs the same classes
        states = self._initial_states(X.shape[1], X.dtype, coef_init, intercept_init)
        rows, validation = None, None
        if eval_set is not None:
            validation = self._validate_eval_set(eval_set, X.dtype)
        elif self.early_stopping:
            rows, val_rows = self._validation_split(y, sample_weight)
            validation = (X[val_rows], y[val_rows], sample_weight[val_rows])
            self._check_finite_features(validation[0])
        histories, n_epochs = self._fit_problems(
            X,
            y,
            sample_weight,
            states,
            max_iter=self.max_iter,
            rng=check_random_state(self.random_state),
            rows=rows,
            validation=validation,
            tol=self.tol,
        )
        self._finish(states, histories, n_epochs, X.shape[0], first_call=True)
        self._publish_validation(_MeanHistory(histories), validation is not None)
        return self

    @reports_to_callbacks
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Run one epoch over (X, y), continuing from the current state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            A chunk of training data.
        y : array-like of shape (n_samples,)
            Its labels.
        classes : array-like of shape (n_classes,), default=None
            Every class the model will see; required on the first call.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples.

        Returns
        -------
        self : GDClassifier
            The updated estimator.
        """
        first_call = not hasattr(self, "_states")
        self._check_parameters(for_partial_fit=True)
        if self.class_weight == "balanced":
            raise ValueError(
                "class_weight 'balanced' is not supported for partial_fit: the class "
                "frequencies of later chunks are unknown. Compute the weights from the "
                "whole data (sklearn.utils.compute_class_weight) and pass them as a dict."
            )
        X, y, sample_weight = self._validate_training_data(X, y, sample_weight, reset=first_call)
        if first_call:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self.classes_ = self._validate_labels(y, classes)
            if self.classes_.shape[0] < 2:
                raise ValueError("The number of classes has to be greater than one.")
            self._states = self._initial_states(X.shape[1], X.dtype, None, None)
            self._histories = [[] for _ in self._states]
            self.n_iter_ = 0
            self.t_ = 1.0
        else:
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(
                    f"`classes={np.unique(classes).tolist()}` is not the same as on the first "
                    f"call to partial_fit ({self.classes_.tolist()})."
                )
            self._validate_labels(y, self.classes_)
        rng = check_random_state(self.random_state)
        histories, n_epochs = self._fit_problems(
            X, y, sample_weight, self._states, max_iter=1, rng=rng
        )
        for past, history in zip(self._histories, histories, strict=True):
            past.extend(history.loss_curve)
        self._finish(self._states, histories, n_epochs, X.shape[0], first_call=False)
        return self

    def _finish(self, states, histories, n_epochs, n_samples, first_call):
        """Keep the states and publish the fitted attributes after a fit or partial_fit."""
        config = self._make_config()
        self._states = states
        if first_call:
            self._histories = [list(history.loss_curve) for history in histories]
            self.n_iter_ = n_epochs
            if len(states) > 1:
                self.t_ = 1.0 + n_epochs * n_samples  # scikit-learn's count
        else:
            self.n_iter_ += n_epochs
            if len(states) > 1:
                self.t_ += n_epochs * n_samples
        self.loss_curve_ = padded_mean(self._histories)
        self._publish(states, config)

    # ------------------------------------------------------------ prediction

    def decision_function(self, X):
        """Signed distance of each sample to each class's hyperplane.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            ``X @ coef_.T + intercept_``; one column (raveled) for two
            classes, where positive means ``classes_[1]``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32], reset=False)
        coef = self.coef_
        if X.dtype != coef.dtype:
            X = X.astype(np.result_type(X.dtype, coef.dtype), copy=False)
        scores = np.asarray(safe_sparse_dot(X, coef.T, dense_output=True)) + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            The class of largest score (for two classes: ``classes_[1]``
            where the score is positive).
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[scores.argmax(axis=1)]

    def _has_probabilities(self):
        if self.loss not in ("log_loss", "modified_huber"):
            raise AttributeError(
                f"probability estimates are not available for loss={self.loss!r}; "
                "use loss='log_loss' or loss='modified_huber'."
            )
        return True

    @available_if(_has_probabilities)
    def predict_proba(self, X):
        """Class probabilities (``loss="log_loss"`` or ``"modified_huber"``).

        The log loss gives the logistic function of each score; the modified
        Huber loss (clip(score, −1, 1) + 1) / 2. With more than two classes
        the one-vs-rest probabilities are normalised to sum to 1 (scikit-learn's
        rule; rows whose probabilities are all 0 get the uniform distribution).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities, in the order of ``classes_``.
        """
        scores = self.decision_function(X)
        if self._multinomial():
            return softmax(scores, axis=1)
        if self.loss == "log_loss":
            positive = expit(scores)
        else:
            positive = (np.clip(scores, -1.0, 1.0) + 1.0) / 2.0
        if scores.ndim == 1:
            return np.column_stack([1.0 - positive, positive])
        totals = positive.sum(axis=1, keepdims=True)
        uniform = np.full_like(positive, 1.0 / positive.shape[1])
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, positive / totals, uniform)

    @available_if(_has_probabilities)
    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities, in the order of ``classes_``.
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def densify(self):
        """Store ``coef_`` as a dense array again (after :meth:`sparsify`).

        Returns
        -------
        self : GDClassifier
        """
        check_is_fitted(self)
        if sp.issparse(self.coef_):
            self.coef_ = self.coef_.toarray()
        return self

    def sparsify(self):
        """Store ``coef_`` as a CSR matrix (worth it when most weights are 0, e.g. with L1).

        Predictions do not change; ``fit`` and ``partial_fit`` make it dense again.

        Returns
        -------
        self : GDClassifier
        """
        check_is_fitted(self)
        self.coef_ = sp.csr_matrix(self.coef_)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


__all__ = ["GDClassifier"]
