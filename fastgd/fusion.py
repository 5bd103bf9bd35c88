"""FusionClassifier: a multimodal neural-network classifier for scikit-learn."""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from fastgd._branches import BranchParamsMixin, resolve_columns, validate_branches
from fastgd._kernels import codes
from fastgd.layers import Dense, Layer

__all__ = ["FusionClassifier"]


def _default_branches():
    return [("input", [Dense(100, activation="relu")], slice(None))]


class FusionClassifier(BranchParamsMixin, ClassifierMixin, BaseEstimator):
    """Multimodal neural-network classifier: one branch per modality, fused.

    Each *branch* reads its own columns of X and runs its own layers (for
    example convolutions on the pixels of an image, dense layers on a text
    vector). Branch outputs are fused early (concatenated, then a shared
    ``head``), late (a weighted sum of per-branch class scores) or both,
    and a softmax gives the class probabilities. Training is mini-batch
    gradient descent with compiled (Numba) forward and backward passes.

    Parameters
    ----------
    branches : list of (str, list of Layer, columns) or None, default=None
        The branches, in the manner of ``ColumnTransformer``: a name, a list
        of layers from :mod:`fastgd.layers`, and the columns of X the branch
        reads — a slice, a list of ints, a boolean mask, or a list of column
        names when X is a pandas DataFrame. An image branch starts with
        :class:`~fastgd.layers.Reshape`. A branch may have no layers (its
        columns then go to the fusion as they are). None means one branch
        ``[Dense(100, activation="relu")]`` over all columns: a plain MLP.
    fusion : {"concat", "late", "hybrid"}, default="concat"
        ``"concat"``: concatenate the (flattened) branch outputs, then
        ``head``, then a dense layer with one unit per class.
        ``"late"``: each branch ends in its own dense layer of class scores;
        the scores are ``Σᵢ αᵢ·scoresᵢ`` with α learned (starting at 1/B)
        or fixed by ``fusion_weights``. ``"hybrid"``: the sum of both.
    fusion_weights : array-like of shape (n_branches,) or None, default=None
        Fixed α of the late part; None learns them.
    head : sequence of Layer or int, default=()
        Layers after the concatenation (Dense and Dropout); an int ``k`` is
        short for ``Dense(k, activation="relu")``. Only with "concat" and
        "hybrid".
    optimizer : {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}, \
            default="adam"
        Update rule (momentum 0.9; Adam's β₁ = 0.9, β₂ = 0.999, ε = 1e-8).
    learning_rate_init : float, default=1e-3
        Initial step size.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Learning-rate schedule, as scikit-learn's ``MLPClassifier``:
        ``"constant"`` keeps ``learning_rate_init``; ``"invscaling"`` uses
        ``learning_rate_init / t^power_t`` at update t (updates counted from
        1 over the whole fit, or over all ``partial_fit`` calls);
        ``"adaptive"`` keeps the rate while the training loss (or validation
        accuracy with ``early_stopping``) improves by ``tol`` and divides it
        by 5 after each run of ``n_iter_no_change`` epochs without
        improvement; training stops when such a run finds it below 1e-6.
        With an adaptive optimizer ("adagrad", "rmsprop", "adam") the
        schedule scales its base step.
    power_t : float, default=0.5
        Exponent of the "invscaling" schedule.
    batch_size : int, default=32
        Mini-batch size (clipped to the number of samples).
    max_iter : int, default=200
        Maximum number of epochs.
    tol : float, default=1e-4
        Minimum improvement of the training loss (or validation accuracy
        with ``early_stopping``) that counts.
    n_iter_no_change : int, default=10
        Epochs without improvement before training stops.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified),
        stop when its accuracy stops improving and restore the weights of
        the best epoch.
    validation_fraction : float, default=0.1
        Size of the validation split.
    alpha : float, default=1e-4
        L2 penalty on the weights (not biases nor α); a batch of m samples
        adds ``alpha / (2m) · ‖W‖²`` to its loss, as scikit-learn's MLP.
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the shuffling, the validation split and the
        dropout masks; an int gives bit-identical models.
    warm_start : bool, default=False
        Start ``fit`` from the current weights when the architecture is
        unchanged.
    verbose : int, default=0
        Print one line per epoch.
    dtype : {np.float32, np.float64}, default=np.float32
        Compute dtype of the weights and activations.
    callbacks : list of callables, default=None
        Called as ``callback(estimator, report)`` after every epoch, with
        the estimator (its ``loss_curve_``, ``n_iter_`` and weights are those
        of that epoch, so it can ``predict``) and an
        :class:`~fastgd.callbacks.EpochReport` (epoch, loss, validation
        score, learning rate, time). A callback returning True stops
        training. See :mod:`fastgd.callbacks`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X was a DataFrame with string column names.
    loss_curve_ : list of float
        Training objective per epoch.
    best_loss_ : float
        Lowest training objective.
    validation_scores_ : list of float or None
        Validation accuracy per epoch (``early_stopping`` only).
    best_validation_score_ : float or None
        Best validation accuracy (``early_stopping`` only).
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen.
    fusion_weights_ : ndarray of shape (n_branches,) or None
        α of the late part (learned or fixed), or None with "concat".
    n_params_ : int
        Number of trainable parameters.

    Notes
    -----
    **Parameter names.** ``get_params(deep=True)`` exposes every layer of a
    branch as ``<branch>__<i>`` and its parameters as
    ``<branch>__<i>__<param>`` (``i`` counts from 0 in the branch's layer
    list), and the head layers as ``head__<i>`` / ``head__<i>__<param>``;
    ``set_params`` accepts them, so ``GridSearchCV`` can tune, say,
    ``image__1__filters``. Setting a layer parameter changes the layer
    object held in ``branches`` (as ``Pipeline`` does with its steps).

    Examples
    --------
    >>> import numpy as np
    >>> from fastgd import FusionClassifier
    >>> from fastgd.layers import Conv2D, Dense, Flatten, MaxPool2D, Reshape
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(60, 64 + 5).astype(np.float32)
    >>> y = (X[:, 64] > 0.5).astype(int)
    >>> clf = FusionClassifier(
    ...     branches=[
    ...         ("image", [Reshape((1, 8, 8)), Conv2D(4, 3, activation="relu"),
    ...                    MaxPool2D(2), Flatten()], slice(0, 64)),
    ...         ("meta", [Dense(8, activation="relu")], slice(64, 69)),
    ...     ],
    ...     max_iter=5, random_state=0,
    ... ).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """

    _parameter_constraints = {
        "branches": [list, tuple, None],
        "fusion": [StrOptions({"concat", "late", "hybrid"})],
        "fusion_weights": ["array-like", None],
        "head": [list, tuple],
        "optimizer": [StrOptions(set(codes.OPTIMIZER_CODES))],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "power_t": [Interval(numbers.Real, None, None, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "dtype": "no_validation",
        "callbacks": [list, tuple, None],
    }

    def __init__(
        self,
        branches=None,
        fusion="concat",
        fusion_weights=None,
        head=(),
        optimizer="adam",
        learning_rate_init=1e-3,
        learning_rate="constant",
        power_t=0.5,
        batch_size=32,
        max_iter=200,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        alpha=1e-4,
        shuffle=True,
        random_state=None,
        warm_start=False,
        verbose=0,
        dtype=np.float32,
        callbacks=None,
    ):
        self.branches = branches
        self.fusion = fusion
        self.fusion_weights = fusion_weights
        self.head = head
        self.optimizer = optimizer
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.alpha = alpha
        self.shuffle = shuffle
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.dtype = dtype
        self.callbacks = callbacks

    # ------------------------------------------------------------- tags
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.classifier_tags.multi_label = False
        return tags

    def __getstate__(self):
        state = dict(super().__getstate__())
        # The trainer (optimizer state, workspaces) is rebuilt on demand.
        state.pop("_trainer", None)
        return state

    # ------------------------------------------------------- validation
    def _compute_dtype(self):
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(
                f"The 'dtype' parameter of {type(self).__name__} must be np.float32 or "
                f"np.float64, got {self.dtype!r}."
            )
        return dtype

    def _branch_specs(self):
        """Validated ``(name, layers, columns)`` list, default applied."""
        if self.branches is None:
            return _default_branches()
        reserved = set(self.get_params(deep=False)) | {"head"}
        return validate_branches(self.branches, reserved=reserved)

    def _head_specs(self):
        head = []
        for i, layer in enumerate(self.head):
            if isinstance(layer, numbers.Integral) and not isinstance(layer, bool):
                layer = Dense(int(layer), activation="relu")
            elif not isinstance(layer, Layer):
                raise ValueError(
                    f"Head layer {i}: expected a layer from fastgd.layers or an int, got {layer!r}."
                )
            head.append(layer)
        return head

    def _resolve_columns(self, specs, n_features):
        names = getattr(self, "feature_names_in_", None)
        return [resolve_columns(name, cols, n_features, names) for name, _, cols in specs]

    @staticmethod
    def _check_finite(X, names, columns):
        """ValueError naming the branches whose columns hold NaN or inf."""
        if X.size == 0:
            return
        # Fast path (as scikit-learn): a finite sum means every value is
        # finite; the sum only overflows or turns NaN if something is off.
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(X.sum()):
                return
        if np.isfinite(X).all():
            return
        bad = ~np.isfinite(X).all(axis=0)
        for name, cols in zip(names, columns, strict=False):
            if bad[cols].any():
                raise ValueError(
                    f"Input X contains NaN or infinity in the columns of branch {name!r}."
                )

    def _n_columns(self, cols, n_features):
        return len(np.arange(n_features)[cols])

    def _build_network(self, specs, columns, n_features, dtype, n_classes):
        from fastgd._engine.network import Network

        branches = [
            (name, layers, self._n_columns(cols, n_features))
            for (name, layers, _), cols in zip(specs, columns, strict=False)
        ]
        return Network(
            branches,
            self.fusion,
            self._head_specs(),
            n_classes,
            self.fusion_weights,
            dtype,
        )

    def _signature(self, specs, columns, n_features, dtype, classes):
        """What must not change for a warm start to reuse the weights."""
        return repr(
            (
                [
                    (n, [repr(spec) for spec in layers], str(c))
                    for (n, layers, _), c in zip(specs, columns, strict=False)
                ],
                self.fusion,
                None if self.fusion_weights is None else np.asarray(self.fusion_weights).tolist(),
                [repr(spec) for spec in self._head_specs()],
                n_features,
                str(dtype),
                classes.tolist(),
            )
        )

    # -------------------------------------------------------------- fit
    def fit(self, X, y, sample_weight=None):
        """Train the network on (X, y).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels of any type.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples in the loss.

        Returns
        -------
        self : FusionClassifier

        Raises
        ------
        fastgd.exceptions.DivergenceError
            If the loss or the weights become NaN or infinite.
        """
        self._validate_params()
        return self._fit(X, y, sample_weight, incremental=False, classes=None)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch on (X, y), continuing from the current state.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            Every class of the problem; required on the first call.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : FusionClassifier
        """
        if not hasattr(self, "classes_"):
            self._validate_params()
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _fit(self, X, y, sample_weight, incremental, classes):
        from fastgd._engine.network import SoftmaxCrossEntropyLoss
        from fastgd._engine.network_training import NetworkTrainer
        from fastgd._engine.training import TrainingHistory

        dtype = self._compute_dtype()
        continuing = incremental and hasattr(self, "classes_")
        X, y = validate_data(
            self,
            X,
            y,
            reset=not continuing,
            dtype=dtype,
            order="C",
            ensure_all_finite=False,
            accept_sparse=False,
        )
        check_classification_targets(y)
        n_samples, n_features = X.shape

        if continuing:
            unseen = np.setdiff1d(np.unique(y), self.classes_)
            if unseen.size:
                raise ValueError(
                    f"y contains labels {unseen.tolist()} that are not in classes_ "
                    f"{self.classes_.tolist()}."
                )
        elif incremental:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            classes = np.unique(np.asarray(classes))
            unseen = np.setdiff1d(np.unique(y), classes)
            if unseen.size:
                raise ValueError(f"y contains labels {unseen.tolist()} not in classes.")
        else:
            classes = np.unique(y)
        if continuing:
            classes = self.classes_
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; the data "
                f"contains only one class: {classes.tolist()}."
            )
        y_index = np.searchsorted(classes, y).astype(np.int64)

        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=dtype, ensure_non_negative=True
        )

        specs = self._branch_specs()
        columns = self._resolve_columns(specs, n_features)
        self._check_finite(X, [name for name, _, _ in specs], columns)

        signature = self._signature(specs, columns, n_features, dtype, classes)
        reuse = (continuing or self.warm_start) and getattr(
            self, "_fit_signature", None
        ) == signature
        if reuse:
            network = self._network
        else:
            network = self._build_network(specs, columns, n_features, dtype, len(classes))
            if continuing:
                raise ValueError(
                    "The architecture changed since the last call to partial_fit; call fit instead."
                )
        self.classes_ = classes
        if incremental:
            if not hasattr(self, "_partial_random_state"):
                self._partial_random_state = check_random_state(self.random_state)
            rs = self._partial_random_state
        else:
            rs = check_random_state(self.random_state)
        if not reuse:
            network.initialize(rs)

        early_stopping = self.early_stopping and not incremental
        if early_stopping:
            X_train, X_val, y_train, y_val, w_train, w_val = self._split(
                X, y_index, sample_weight, rs
            )
        else:
            X_train, y_train, w_train = X, y_index, sample_weight

        trainer = getattr(self, "_trainer", None) if incremental else None
        if trainer is None or trainer.network is not network:
            batch_size = self.batch_size if incremental else min(self.batch_size, X_train.shape[0])
            trainer = NetworkTrainer(
                network,
                SoftmaxCrossEntropyLoss(len(classes)),
                optimizer=self.optimizer,
                learning_rate=self.learning_rate_init,
                schedule=self.learning_rate,
                power_t=self.power_t,
                batch_size=batch_size,
                alpha=self.alpha,
                target_dtypes=(np.int64, dtype),
                target_shapes=((), ()),
                random_state=rs,
            )
        sources = network.gather_sources(X_train, columns)
        targets = (y_train, w_train)

        if incremental and hasattr(self, "_history"):
            history = self._history
        else:
            history = TrainingHistory(
                self.tol if not incremental else None, self.n_iter_no_change, early_stopping
            )

        validation_score = None
        if early_stopping:

            def validation_score():
                scores = network.predict(X_val, columns)
                correct = np.argmax(scores, axis=1) == y_val
                return (
                    float(np.average(correct, weights=w_val))
                    if w_val.sum() > 0
                    else float(correct.mean())
                )

        callbacks = list(self.callbacks or ())
        for callback in callbacks:
            if not callable(callback):
                raise ValueError(f"callbacks must be callables; got {callback!r}.")
        n_before = getattr(self, "n_iter_", 0) if continuing else 0

        def publish():
            # What a callback sees: the history so far (the weights are live).
            self.n_iter_ = n_before + len(history.loss_curve) - n_curve_before
            self.loss_curve_ = list(history.loss_curve)
            self.best_loss_ = float(history.best_loss)
            self.validation_scores_ = list(history.validation_scores) if early_stopping else None

        n_curve_before = len(history.loss_curve)
        self._network = network
        self._columns = columns
        self._fit_signature = signature
        n_epochs = trainer.fit(
            sources,
            targets,
            history,
            1 if incremental else self.max_iter,
            shuffle=self.shuffle,
            validation_score=validation_score,
            verbose=self.verbose,
            estimator_name=type(self).__name__,
            callbacks=callbacks,
            callback_target=self,
            before_callbacks=publish,
        )
        self._trainer = trainer
        self._history = history
        self.n_iter_ = (getattr(self, "n_iter_", 0) if continuing else 0) + n_epochs
        self.t_ = (getattr(self, "t_", 0) if continuing else 0) + n_epochs * X_train.shape[0]
        self.loss_curve_ = list(history.loss_curve)
        self.best_loss_ = float(history.best_loss)
        if early_stopping:
            self.validation_scores_ = list(history.validation_scores)
            self.best_validation_score_ = float(history.best_score)
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
        self.fusion_weights_ = network.fusion_weights()
        self.n_params_ = int(network.n_params)
        return self

    def _split(self, X, y_index, sample_weight, rs):
        n_val = int(np.ceil(self.validation_fraction * X.shape[0]))
        if n_val < 1 or X.shape[0] - n_val < 1:
            raise ValueError(
                f"early_stopping needs a validation split: validation_fraction="
                f"{self.validation_fraction} of {X.shape[0]} samples leaves an empty "
                "training or validation set."
            )
        seed = rs.randint(np.iinfo(np.int32).max)
        counts = np.bincount(y_index)
        stratify = y_index if counts[counts > 0].min() >= 2 and n_val >= len(counts) else None
        return train_test_split(
            X,
            y_index,
            sample_weight,
            test_size=self.validation_fraction,
            random_state=seed,
            stratify=stratify,
        )

    # ----------------------------------------------------------- predict
    def _scores(self, X):
        check_is_fitted(self, "_network")
        dtype = self._network.dtype
        X = validate_data(
            self,
            X,
            reset=False,
            dtype=dtype,
            order="C",
            ensure_all_finite=False,
            accept_sparse=False,
        )
        columns = self._columns
        self._check_finite(X, self._network.branch_names, columns)
        return self._network.predict(X, columns)

    def predict_proba(self, X):
        """Class probabilities (softmax of the network's scores).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``; float64 whatever the compute dtype.
        """
        from fastgd._kernels.nn_losses import softmax

        # In float64 whatever the compute dtype: float32 probabilities round to
        # exactly 1 far too early for log(predict_proba) to agree with
        # predict_log_proba.
        scores = self._scores(X).astype(np.float64)
        softmax(scores, scores)
        return scores

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably (log-softmax).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        from fastgd._kernels.nn_losses import log_softmax

        scores = self._scores(X).astype(np.float64)
        log_softmax(scores, scores)
        return scores

    def predict(self, X):
        """Most probable class of each sample.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        scores = self._scores(X)
        return self.classes_[np.argmax(scores, axis=1)]
