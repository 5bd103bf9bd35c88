"""FusionClassifier: a multimodal neural-network classifier for scikit-learn."""

import numbers

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from fastgd._callback_support import reports_to_callbacks
from fastgd._engine.network_training import NetworkHeldOut
from fastgd._network_estimator import NetworkEstimator
from fastgd._sklearn_compat import Interval, StrOptions, check_sample_weight
from fastgd.layers import Dense, Layer

__all__ = ["FusionClassifier"]


def _class_entropy(y_index, sample_weight, n_classes):
    """Cross-entropy of the best constant model: the entropy of the weighted class frequencies."""
    counts = np.bincount(y_index, weights=sample_weight, minlength=n_classes)
    total = counts.sum()
    if not total > 0:
        return None
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


class FusionClassifier(ClassifierMixin, NetworkEstimator):
    """Multimodal neural-network classifier: one branch per modality, fused.

    Each *branch* reads its own columns of X and runs its own layers (for
    example convolutions on the pixels of an image, dense layers on a text
    vector). Branch outputs are fused early (concatenated, then a shared
    ``head``), late (a weighted sum of per-branch class scores), both, or
    in series (each branch also reads the output of the one before it, and
    the last one feeds the ``head``), and a softmax gives the class
    probabilities. Training is mini-batch gradient descent with compiled
    (Numba) forward and backward passes.

    Parameters
    ----------
    branches : list of (str, list of Layer, columns[, transformer]) or None, \
            default=None
        The branches, in the manner of ``ColumnTransformer``: a name, a list
        of layers from :mod:`fastgd.layers`, the columns of X the branch
        reads — a slice, a list of non-negative ints, a boolean mask,
        column names when X is a pandas DataFrame (a single int or name: one
        column), or a callable such as
        ``sklearn.compose.make_column_selector(pattern="^px")`` called with X
        in ``fit`` — and optionally a scikit-learn transformer (a
        ``TfidfVectorizer``, a ``StandardScaler``, a ``Pipeline``...) that
        is cloned and fitted on those columns in ``fit`` and whose output the
        branch's layers read, so raw text, categories and pixels can sit in
        one DataFrame (see Notes). An image branch starts with
        :class:`~fastgd.layers.Reshape`. A branch may have no layers (its
        columns then go to the fusion as they are). None means one branch
        ``[Dense(100, activation="relu")]`` over all columns: a plain MLP.
        Columns are checked strictly: an index or a slice bound outside X, a
        negative index, a repeated column and (unless ``allow_overlap``) a
        column read by two branches raise a ValueError naming the branches.
    fusion : {"concat", "late", "hybrid", "serial"}, default="concat"
        ``"concat"``: concatenate the (flattened) branch outputs, then
        ``head``, then a dense layer with one unit per class.
        ``"late"``: each branch ends in its own dense layer of class scores;
        the scores are ``Σᵢ αᵢ·scoresᵢ`` with α learned (starting at 1/B)
        or fixed by ``fusion_weights``. ``"hybrid"``: the sum of both.
        ``"serial"`` (a cascade): the branches run in the order given, and
        each branch after the first reads its own columns and the output of
        the branch before it, concatenated to its columns, or to the input
        of the layer after a :class:`~fastgd.layers.ConcatPrevious` marker
        in its layer list (for example after a convolution stack's
        ``Flatten()``); the last branch's output goes through ``head`` and
        the dense layer of class scores, and training back-propagates
        through the whole chain.
    fusion_weights : array-like of shape (n_branches,) or None, default=None
        Fixed, non-negative α of the late part; None learns them.
    head : sequence of Layer or int, default=()
        Layers after the concatenation, or after the last branch with
        "serial" (Dense and Dropout); an int ``k`` is short for
        ``Dense(k, activation="relu")``. Not with "late".
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
        improvement; training stops when such a run finds it below 1e-6
        (with ``tol=None`` nothing is judged and the rate stays).
        With an adaptive optimizer ("adagrad", "rmsprop", "adam") the
        schedule scales its base step.
    power_t : float, default=0.5
        Exponent of the "invscaling" schedule.
    batch_size : int, default=32
        Mini-batch size (clipped to the number of samples).
    max_iter : int, default=200
        Maximum number of epochs.
    tol : float or None, default=1e-4
        Minimum improvement of the training loss (or validation accuracy
        with ``early_stopping``) that counts; None trains ``max_iter``
        epochs.
    n_iter_no_change : int, default=10
        Epochs without improvement before training stops.
    early_stopping : bool, default=False
        Stop when the accuracy on held-out data stops improving and restore
        the weights of the best epoch. The held-out data is the ``eval_set``
        passed to ``fit`` or, without one, a stratified
        ``validation_fraction`` of the training data.
    validation_fraction : float, default=0.1
        Size of the validation split.
    class_weight : dict, "balanced" or None, default=None
        Weight of each class in the loss, multiplying ``sample_weight``: a
        dict ``{label: weight}`` (missing classes weigh 1), or "balanced":
        ``n_samples / (n_classes · count of the class)``, as
        :func:`sklearn.utils.class_weight.compute_class_weight` (not with
        ``partial_fit``, whose later chunks are unknown: pass a dict).
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
        Compute dtype of the weights and activations, and dtype of
        ``predict_proba``, ``predict_log_proba`` and ``decision_function``.
    callbacks : list of callables, default=None
        Called as ``callback(estimator, report)`` after every epoch, with
        the estimator (its ``loss_curve_``, ``n_iter_`` and weights are those
        of that epoch, so it can ``predict``) and an
        :class:`~fastgd.callbacks.EpochReport` (epoch, loss, validation
        score, learning rate, time). A callback returning True stops
        training. See :mod:`fastgd.callbacks`.
    allow_overlap : bool, default=False
        Let several branches read the same columns (for example a "wide"
        branch without layers over every column next to a "deep" branch
        over some of them). By default a column read by two branches is an
        error, which catches a mistyped slice.

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
    validation_scores_ : list of float
        Held-out accuracy per epoch (with ``early_stopping`` or an
        ``eval_set``; absent otherwise, as in :class:`~fastgd.GDRegressor`).
    validation_loss_curve_ : list of float
        Held-out loss per epoch (the weighted mean cross-entropy, without
        the L2 penalty), likewise.
    best_score_ : float
        Best of ``validation_scores_``, likewise.
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen.
    fusion_weights_ : ndarray of shape (n_branches,) or None
        α of the late part (learned or fixed), or None with "concat" and
        "serial".
    n_params_ : int
        Number of trainable parameters.
    coefs_, intercepts_ : list of ndarray
        Weights and biases (copies) of every layer that has them, in the
        order of ``layer_names_``. A Dense layer's weights have shape
        ``(n_inputs, units)`` (as ``MLPClassifier.coefs_``), a Conv2D's
        ``(filters, channels, kernel height, kernel width)``.
    layer_names_ : list of str
        Names of those layers: ``"<branch>__<i>"`` for layer ``i`` of a
        branch's list (the names of ``get_params``), branch after branch;
        then ``"head__<i>"`` for the head layers and ``"output"`` for the
        dense layer of class scores ("concat", "hybrid", "serial"); then
        ``"<branch>__output"``, each branch's class scores ("late",
        "hybrid").
    branch_transformers_ : dict of str → transformer
        The fitted transformer of every branch that has one.

    Notes
    -----
    **Parameter names.** ``get_params(deep=True)`` exposes every layer of a
    branch as ``<branch>__<i>`` and its parameters as
    ``<branch>__<i>__<param>`` (``i`` counts from 0 in the branch's layer
    list), and the head layers as ``head__<i>`` / ``head__<i>__<param>``;
    ``set_params`` accepts them, so ``GridSearchCV`` can tune, say,
    ``image__1__filters``. Setting a layer parameter changes the layer
    object held in ``branches`` (as ``Pipeline`` does with its steps).

    **Raw columns.** A branch's transformer makes the estimator a complete
    model of raw data: ``("text", [Dense(32)], "caption", TfidfVectorizer())``
    reads the DataFrame column "caption", fits the vectorizer inside
    ``fit`` (so inside every fold of ``cross_val_score``), and its layers
    read the tf-idf vectors whatever their width. Its parameters are
    ``<branch>__transformer__<param>`` (``text__transformer__max_features``),
    so ``GridSearchCV`` tunes them with the layers'.

    **Pickling.** A pickle holds the weights and the optimizer's state
    (moments, update count, learning-rate schedule, random generators) but
    no per-batch buffer: an unpickled copy continues ``partial_fit`` bit for
    bit as the original would, and the pickle's size does not grow with the
    training data.

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
        **NetworkEstimator._parameter_constraints,
        "fusion": [StrOptions({"concat", "late", "hybrid", "serial"})],
        "fusion_weights": ["array-like", None],
        "head": [list, tuple],
        "tol": [Interval(numbers.Real, 0, None, closed="left"), None],
        "class_weight": [StrOptions({"balanced"}), dict, None],
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
        class_weight=None,
        alpha=1e-4,
        shuffle=True,
        random_state=None,
        warm_start=False,
        verbose=0,
        dtype=np.float32,
        callbacks=None,
        allow_overlap=False,
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
        self.class_weight = class_weight
        self.alpha = alpha
        self.shuffle = shuffle
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.dtype = dtype
        self.callbacks = callbacks
        self.allow_overlap = allow_overlap

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags

    # ------------------------------------------------------- validation
    def _default_branches(self):
        # A plain MLP: one hidden layer over every column.
        return [("input", [Dense(100, activation="relu")], slice(None))]

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

    def _check_fusion_weights(self):
        """Refuse negative fixed fusion weights (a branch's scores would count against it)."""
        if self.fusion_weights is None:
            return
        weights = np.asarray(self.fusion_weights)
        if weights.dtype.kind in "iuf" and np.any(weights < 0):
            raise ValueError(
                f"fusion_weights must be non-negative (one weight per branch), got "
                f"{weights.tolist()}."
            )

    def _build_network(self, specs, columns, n_features, dtype, n_classes):
        from fastgd._engine.network import Network

        self._check_fusion_weights()
        return Network(
            self._network_branches(specs, columns, n_features),
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
    @reports_to_callbacks
    def fit(self, X, y, sample_weight=None, eval_set=None):
        """Train the network on (X, y).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels of any type.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples in the loss (multiplied by
            ``class_weight``).
        eval_set : tuple (X_val, y_val), default=None
            Held-out data scored after every epoch (``validation_scores_``,
            ``validation_loss_curve_``, ``best_score_``); with
            ``early_stopping=True`` it is the data that stops training (no
            split of the training data), otherwise training stops by the
            training loss as without it.

        Returns
        -------
        self : FusionClassifier

        Raises
        ------
        fastgd.exceptions.DivergenceError
            If the loss or the weights become NaN or infinite, or the loss
            grows far above the initial model's.
        """
        self._validate_params()
        return self._fit(X, y, sample_weight, incremental=False, classes=None, eval_set=eval_set)

    @reports_to_callbacks
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch on (X, y), continuing from the current state.

        Branch transformers are fitted on the first call and only applied
        afterwards.

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
        if self.class_weight == "balanced":
            raise ValueError(
                "class_weight 'balanced' is not supported for partial_fit: the class "
                "frequencies of later chunks are unknown. Compute the weights from the "
                "whole data (sklearn.utils.class_weight.compute_class_weight) and pass "
                "them as a dict."
            )
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _checked_labels(self, y):
        """y as a 1-D array of class labels (an (n, 1) column is accepted with a warning)."""
        if y is None:
            raise ValueError(
                f"This {type(self).__name__} estimator requires y to be passed, but the "
                "target y is None."
            )
        y = column_or_1d(
            check_array(y, ensure_2d=False, dtype=None, input_name="y", estimator=self),
            warn=True,
        )
        check_classification_targets(y)
        return y

    def _fit(self, X, y, sample_weight, incremental, classes, eval_set=None):
        from fastgd._engine.network import SoftmaxCrossEntropyLoss

        dtype = self._compute_dtype()
        continuing = incremental and hasattr(self, "classes_")
        y = self._checked_labels(y)
        specs = self._branch_specs(X)
        X, columns = self._network_input(
            X,
            specs,
            dtype=dtype,
            fitting=not continuing,
            refit_transformers=not continuing,
            y=y,
        )
        check_consistent_length(X, y)
        n_features = self.n_features_in_
        classes = self._check_classes(y, classes, incremental, continuing)
        y_index = np.searchsorted(classes, y).astype(np.int64)
        sample_weight = (
            check_sample_weight(sample_weight, X, dtype=dtype, ensure_non_negative=True)
            * self._class_weights(classes, y).astype(dtype)[y_index]
        )

        names = [name for name, _, _ in specs]
        self._check_finite(X, names, columns)
        signature = self._signature(specs, columns, n_features, dtype, classes)
        network, reuse = self._network_to_train(
            signature,
            continuing,
            lambda: self._build_network(specs, columns, X.shape[1], dtype, len(classes)),
        )
        self.classes_ = classes
        self._input_specs, self._columns = specs, columns
        rs = self._training_random_state(incremental)
        if not reuse:
            network.initialize(rs)

        early_stopping = self.early_stopping and not incremental
        held_out = None
        X_train, y_train, w_train = X, y_index, sample_weight
        if eval_set is not None:
            held_out = self._held_out(network, self._validated_eval_set(eval_set, dtype))
        elif early_stopping:
            X_train, X_val, y_train, y_val, w_train, w_val = self._split(
                X, y_index, sample_weight, rs
            )
            held_out = self._held_out(network, (X_val, columns, y_val, w_val))

        targets = (y_train, w_train)
        trainer = self._trainer_for(
            network,
            lambda: SoftmaxCrossEntropyLoss(len(classes)),
            X_train.shape[0],
            incremental,
            rs,
            targets,
        )
        history = self._history_for(incremental, early_stopping, held_out is not None)
        self._train(
            trainer,
            history,
            network.gather_sources(X_train, columns),
            targets,
            columns=columns,
            signature=signature,
            continuing=continuing,
            incremental=incremental,
            held_out=held_out,
            from_initialization=not reuse,
            constant_loss=_class_entropy(y_train, w_train, len(classes)),
        )
        self.fusion_weights_ = network.fusion_weights()
        return self

    def _class_weights(self, classes, y):
        """Weight of each class (in the order of ``classes``) from ``class_weight``."""
        if self.class_weight is None:
            return np.ones(len(classes))
        if isinstance(self.class_weight, dict):
            unknown = [c for c in self.class_weight if c not in set(classes.tolist())]
            if unknown:
                raise ValueError(
                    f"class_weight names labels that are not classes: {unknown}; the "
                    f"classes are {classes.tolist()}."
                )
        return compute_class_weight(self.class_weight, classes=classes, y=y)

    def _validated_eval_set(self, eval_set, dtype):
        """``(X_val, columns, y_val as class indices, unit weights)`` of an ``eval_set``."""
        X_val, y_val, columns = self._held_out_input(eval_set, dtype)
        y_val = self._checked_labels(y_val)
        check_consistent_length(X_val, y_val)
        unseen = np.setdiff1d(np.unique(y_val), self.classes_)
        if unseen.size:
            raise ValueError(
                f"eval_set: y_val contains labels {unseen.tolist()} that are not in the "
                f"training classes {self.classes_.tolist()}."
            )
        y_index = np.searchsorted(self.classes_, y_val).astype(np.int64)
        self._check_finite(X_val, [name for name, _, _ in self._input_specs], columns)
        return X_val, columns, y_index, np.ones(X_val.shape[0], dtype=dtype)

    def _held_out(self, network, validation):
        """The :class:`NetworkHeldOut` of ``(X, columns, class indices, weights)``."""
        from fastgd._engine.network import SoftmaxCrossEntropyLoss

        X_val, columns, y_val, w_val = validation
        weighted = w_val.sum() > 0

        def accuracy(scores):
            correct = np.argmax(scores, axis=1) == y_val
            return np.average(correct, weights=w_val) if weighted else correct.mean()

        return NetworkHeldOut(
            network,
            X_val,
            columns,
            (y_val, w_val),
            SoftmaxCrossEntropyLoss(len(self.classes_)),
            accuracy,
        )

    def _check_classes(self, y, classes, incremental, continuing):
        """The classes of this fit: kept, given to the first partial_fit, or from y."""
        if continuing:
            unseen = np.setdiff1d(np.unique(y), self.classes_)
            if unseen.size:
                raise ValueError(
                    f"y contains labels {unseen.tolist()} that are not in classes_ "
                    f"{self.classes_.tolist()}."
                )
            classes = self.classes_
        elif incremental:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            classes = np.unique(np.asarray(classes))
            unseen = np.setdiff1d(np.unique(y), classes)
            if unseen.size:
                raise ValueError(f"y contains labels {unseen.tolist()} not in classes.")
        else:
            classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; the data "
                f"contains only one class: {classes.tolist()}."
            )
        return classes

    def _split(self, X, y_index, sample_weight, rs):
        from sklearn.model_selection import train_test_split  # ~45 ms: only when needed

        n_val = self._validation_size(X.shape[0])
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
    def decision_function(self, X):
        """The network's class scores (logits).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes), or (n_samples,) with two classes
            In the compute dtype. With two classes, the score of
            ``classes_[1]`` minus that of ``classes_[0]`` (the log-odds,
            positive where ``classes_[1]`` is predicted), as scikit-learn's
            binary classifiers.
        """
        scores = self._network_scores(X)
        if scores.shape[1] == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict_proba(self, X):
        """Class probabilities (softmax of the network's scores).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``; in the compute dtype (computed in
            float64, then rounded).
        """
        from fastgd._kernels.network import native

        scores = self._network_scores(X)
        dtype = scores.dtype
        scores = scores.astype(np.float64)
        native.softmax(scores, scores, native.thread_count(scores.size))
        return scores.astype(dtype, copy=False)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably (log-softmax).

        The log-softmax of the scores in float64, rounded to the compute
        dtype; where a probability rounds to exactly 0 or 1 in that dtype,
        the log of the rounded value (-inf or 0), so that this is
        ``log(predict_proba(X))`` wherever the latter is exact, as
        scikit-learn's estimator checks require.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            In the compute dtype.
        """
        from fastgd._kernels.network import native

        scores = self._network_scores(X)
        dtype = scores.dtype
        log_proba = scores.astype(np.float64)
        native.log_softmax(log_proba, log_proba, native.thread_count(scores.size))
        proba = np.exp(log_proba).astype(dtype)
        rounded = (proba == 0) | (proba == 1)
        with np.errstate(divide="ignore"):
            log_proba[rounded] = np.log(proba[rounded])
        return log_proba.astype(dtype, copy=False)

    def predict(self, X):
        """Most probable class of each sample.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        scores = self._network_scores(X)
        return self.classes_[np.argmax(scores, axis=1)]
