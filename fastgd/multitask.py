"""MultiTaskRegressor: several regression targets learned by one network."""

import numbers

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_array, check_consistent_length, check_is_fitted

from fastgd._callback_support import reports_to_callbacks
from fastgd._engine.network import MaskedRegressionLoss
from fastgd._engine.network_training import NetworkHeldOut
from fastgd._engine.training import TrainingHistory
from fastgd._kernels.runtime import codes
from fastgd._network_estimator import NetworkEstimator
from fastgd._sklearn_compat import Interval, StrOptions, check_sample_weight
from fastgd.layers import Dense

__all__ = ["MultiTaskRegressor"]

_LOSSES = {"squared_error": codes.SQUARED_ERROR, "huber": codes.HUBER}


class _TaskLossTracker(MaskedRegressionLoss):
    """The masked loss, also summing every task's loss over an epoch.

    The per-task loss of an epoch is the mean of the per-element loss over
    the task's labelled (weighted) samples of the epoch: each batch adds
    ``count_t · L_t`` and its label count ``count_t``.
    """

    #: True when every mask entry is 1 (no missing label, no sample
    #: weights): each batch's label count is then its size, no reduction.
    all_labelled = False

    def make_buffers(self, capacity, dtype):
        super().make_buffers(capacity, dtype)
        self.reset()

    def reset(self):
        self.epoch_sums = np.zeros(self.n_outputs, dtype=np.float64)
        self.epoch_counts = np.zeros(self.n_outputs, dtype=np.float64)

    def __call__(self, scores, targets, dscores, n):
        total = super().__call__(scores, targets, dscores, n)
        if self.all_labelled:
            self.epoch_sums += n * self.task_losses
            self.epoch_counts += n
        else:
            counts = targets[1].sum(axis=0, dtype=np.float64)
            self.epoch_sums += counts * self.task_losses
            self.epoch_counts += counts
        return total

    def pop_epoch(self):
        with np.errstate(invalid="ignore", divide="ignore"):
            losses = np.where(self.epoch_counts > 0, self.epoch_sums / self.epoch_counts, np.nan)
        self.reset()
        return losses


class _TaskHistory(TrainingHistory):
    """Training history that also records each task's loss per epoch."""

    def __init__(self, tol, n_iter_no_change, early_stopping, validating=None):
        super().__init__(tol, n_iter_no_change, early_stopping, validating)
        self.task_loss_curves = []
        self.tracker = None

    def record(self, loss, score=None):
        if self.tracker is not None:
            self.task_loss_curves.append(self.tracker.pop_epoch())
        return super().record(loss, score)


def _masked_r2(y, pred, sample_weight=None):
    """R² of every column of ``y`` over its non-NaN entries.

    Follows :func:`sklearn.metrics.r2_score` (``force_finite=True``): a
    constant labelled column scores 1 if predicted exactly and 0 otherwise.
    Columns with fewer than two labels score NaN.

    Parameters
    ----------
    y : ndarray of shape (n_samples, n_tasks)
        True targets, NaN where missing.
    pred : ndarray of shape (n_samples, n_tasks)
    sample_weight : ndarray of shape (n_samples,) or None

    Returns
    -------
    r2 : ndarray of shape (n_tasks,), float64
    """
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    labelled = ~np.isnan(y)
    w = labelled.astype(np.float64)
    if sample_weight is not None:
        w *= np.asarray(sample_weight, dtype=np.float64)[:, None]
    y0 = np.where(labelled, y, 0.0)
    sum_w = w.sum(axis=0)
    counts = labelled.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (w * y0).sum(axis=0) / sum_w
        ss_tot = (w * (y0 - mean) ** 2).sum(axis=0)
        ss_res = (w * np.where(labelled, y0 - pred, 0.0) ** 2).sum(axis=0)
        r2 = 1.0 - ss_res / ss_tot
    r2 = np.where(ss_tot == 0.0, np.where(ss_res == 0.0, 1.0, 0.0), r2)
    return np.where((counts < 2) | (sum_w <= 0), np.nan, r2)


def _is_dask_block_key(y):
    """True for a tuple like ``("array-<token>", 0)``: how a Dask graph names a block."""
    return (
        isinstance(y, tuple)
        and len(y) >= 2
        and isinstance(y[0], str)
        and all(isinstance(i, numbers.Integral) for i in y[1:])
    )


def _layer_sizes(value, name):
    """A tuple of positive ints from an int or a sequence of ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    sizes = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must hold positive ints (layer widths), got {value!r}.")
        sizes.append(int(v))
    return tuple(sizes)


class MultiTaskRegressor(RegressorMixin, NetworkEstimator):
    """Multi-task neural-network regressor: a shared trunk and one head per task.

    Every column of ``y`` is a *task*. The tasks share a trunk of dense
    layers (``hidden_layer_sizes``) that learns what they have in common;
    each task then has its own head (``task_layer_sizes`` hidden layers and
    one output unit). Missing labels (NaN in ``y``) are masked out of the
    loss and of the gradients, never imputed, so each task learns from the
    samples where it is labelled while the trunk learns from all of them.
    The objective is ``Σₜ λₜ · Lₜ`` where ``Lₜ`` is the mean loss over the
    labelled samples of task t (in each mini-batch) and λ are
    ``task_weights``. Training is mini-batch gradient descent with compiled
    (Numba) forward and backward passes, on the same engine as
    :class:`~fastgd.FusionClassifier`, whose multimodal ``branches`` can feed
    the trunk.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(64,)
        Widths of the dense layers of the shared trunk. With
        ``activation="identity"`` and ``task_layer_sizes=()`` the model is
        linear of rank at most ``min(hidden_layer_sizes)``: reduced-rank
        multi-task regression.
    task_layer_sizes : int or sequence of int, default=()
        Widths of the hidden dense layers of each task's own head, before its
        single output unit. ``()``: each head is one linear output unit on
        the trunk.
    activation : {"relu", "tanh", "sigmoid", "identity"}, default="relu"
        Activation of every hidden layer (trunk and heads). Output units are
        linear.
    task_weights : array-like of shape (n_tasks,) or None, default=None
        Non-negative λₜ of the objective ``Σₜ λₜ Lₜ``; None means all 1. A
        task with λ = 0 has no influence on the trunk nor on the other
        heads (its own head then only feels the L2 penalty).
    loss : {"squared_error", "huber"}, default="squared_error"
        Per-element loss of a residual r: ``½ r²``, or Huber's
        ``½ r²`` for ``|r| ≤ huber_delta`` and
        ``huber_delta · (|r| − ½ huber_delta)`` beyond.
    huber_delta : float, default=1.0
        Threshold of the Huber loss, in the units the network is trained in:
        standard deviations of each task when ``scale_targets=True``, the
        units of ``y`` otherwise.
    scale_targets : bool, default=True
        Standardise each task inside ``fit`` (subtract its mean, divide by its
        standard deviation, both over its labelled samples) and map the
        predictions back, so that tasks on different scales train together.
    branches : list of (str, list of Layer, columns[, transformer]) or None, \
            default=None
        Input branches, exactly as in :class:`~fastgd.FusionClassifier`: a
        name, a list of layers from :mod:`fastgd.layers`, the columns of X
        the branch reads (slice, non-negative ints, boolean mask, or names
        for a DataFrame, checked as there) and optionally a scikit-learn
        transformer fitted on them in ``fit``. The branch outputs are fused
        as ``fusion`` says and feed the trunk. None: one branch without
        layers over all columns (a plain MLP).
    fusion : {"concat", "serial"}, default="concat"
        ``"concat"``: the (flattened) branch outputs are concatenated.
        ``"serial"`` (a cascade): the branches run in the order given, each
        branch after the first reads its own columns and the output of the
        branch before it (concatenated to its columns, or to the input of the
        layer after a :class:`~fastgd.layers.ConcatPrevious` marker in its
        layer list), and the last branch's output feeds the trunk; training
        back-propagates through the whole chain. As in
        :class:`~fastgd.FusionClassifier`.
    optimizer : {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}, \
            default="adam"
        Update rule (momentum 0.9; Adam's β₁ = 0.9, β₂ = 0.999, ε = 1e-8).
    learning_rate_init : float, default=1e-3
        Initial step size.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Learning-rate schedule, as in :class:`~fastgd.FusionClassifier` and
        scikit-learn's ``MLPRegressor``: ``"constant"`` keeps
        ``learning_rate_init``; ``"invscaling"`` uses
        ``learning_rate_init / t^power_t`` at update t (updates counted from
        1 over the whole fit, or over all ``partial_fit`` calls);
        ``"adaptive"`` keeps the rate while the training objective (or the
        validation R² with ``early_stopping``) improves by ``tol`` and
        divides it by 5 after each run of ``n_iter_no_change`` epochs
        without improvement; training stops when such a run finds it below
        1e-6 (with ``tol=None`` nothing is judged and the rate stays). With
        an adaptive optimizer ("adagrad", "rmsprop", "adam") the schedule
        scales its base step.
    power_t : float, default=0.5
        Exponent of the "invscaling" schedule.
    batch_size : int, default=32
        Mini-batch size (clipped to the number of samples).
    max_iter : int, default=200
        Maximum number of epochs.
    tol : float or None, default=1e-4
        Minimum improvement of the training objective (or of the validation
        R² with ``early_stopping``) that counts; None trains ``max_iter``
        epochs.
    n_iter_no_change : int, default=10
        Epochs without improvement before training stops.
    early_stopping : bool, default=False
        Stop when the R² on held-out data (averaged over tasks, ignoring
        missing labels) stops improving and restore the weights of the best
        epoch. The held-out data is the ``eval_set`` passed to ``fit`` or,
        without one, a random ``validation_fraction`` of the training data.
    validation_fraction : float, default=0.1
        Size of the validation split.
    alpha : float, default=1e-4
        L2 penalty on the weights (not biases); a batch of m samples adds
        ``alpha / (2m) · ‖W‖²`` to its loss, as scikit-learn's MLP.
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the shuffling, the validation split and the
        dropout masks; an int gives bit-identical models.
    warm_start : bool, default=False
        Start ``fit`` from the current weights when the architecture is
        unchanged.
    verbose : int, default=0
        Print one line per epoch: its training objective, validation R²
        (with ``early_stopping``), learning rate and wall time.
    dtype : {np.float32, np.float64}, default=np.float32
        Compute dtype of the weights and activations, and dtype of the
        predictions (mapped back from the standardised scale in float64,
        then rounded).
    callbacks : list of callables, default=None
        Called as ``callback(estimator, report)`` after every epoch, with
        the estimator (its ``loss_curve_``, ``task_loss_curves_``,
        ``n_iter_`` and weights are those of that epoch, so it can
        ``predict``) and an :class:`~fastgd.callbacks.EpochReport` (epoch,
        loss, validation score, learning rate, time). A callback returning
        True stops training. See :mod:`fastgd.callbacks`.
    allow_overlap : bool, default=False
        Let several branches read the same columns (otherwise an error, as
        in :class:`~fastgd.FusionClassifier`).

    Attributes
    ----------
    n_tasks_ : int
        Number of tasks (columns of y; 1 for a 1-D y).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X was a DataFrame with string column names.
    task_names_ : ndarray of str or None
        Column names of y when it was a DataFrame.
    task_weights_ : ndarray of shape (n_tasks,)
        The λ used.
    target_mean_, target_scale_ : ndarray of shape (n_tasks,)
        Standardisation of each task (0 and 1 when ``scale_targets=False``).
    loss_curve_ : list of float
        Training objective per epoch (``Σ λₜ Lₜ`` plus the L2 penalty, in
        standardised units).
    task_loss_curves_ : ndarray of shape (n_tasks, n_epochs)
        Each task's loss per epoch (mean over its labelled samples, without
        λ nor penalty, in standardised units).
    best_loss_ : float
        Lowest training objective.
    validation_scores_ : list of float
        Held-out R² per epoch (with ``early_stopping`` or an ``eval_set``;
        absent otherwise, as in :class:`~fastgd.GDRegressor`).
    validation_loss_curve_ : list of float
        Held-out objective per epoch (``Σ λₜ Lₜ`` over the held-out labels,
        without the L2 penalty, in standardised units), likewise.
    best_score_ : float
        Best of ``validation_scores_``, likewise.
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen.
    n_params_ : int
        Number of trainable parameters.
    coefs_, intercepts_ : list of ndarray
        Weights and biases (copies) of every layer that has them, in the
        order of ``layer_names_`` (Dense weights ``(n_inputs, units)``,
        Conv2D weights ``(filters, channels, kernel height, kernel width)``),
        in standardised target units.
    layer_names_ : list of str
        ``"<branch>__<i>"`` for layer ``i`` of a branch's list, branch after
        branch; then ``"trunk__<i>"`` for the layers of
        ``hidden_layer_sizes``; then ``"output"`` (one column per task)
        without ``task_layer_sizes``, or ``"task_<t>__<i>"`` and
        ``"task_<t>__output"`` for each task's head.
    branch_transformers_ : dict of str → transformer
        The fitted transformer of every branch that has one.

    See Also
    --------
    fastgd.FusionClassifier : the multimodal classifier on the same engine.
    sklearn.neural_network.MLPRegressor : a multi-output MLP without masking.

    Notes
    -----
    **Missing labels.** A NaN in ``y`` contributes exactly nothing to the
    loss or to any gradient; a task whose column is entirely NaN is an
    error. Each task's loss is averaged over its labelled samples of the
    mini-batch, so a sparsely labelled task is not drowned by the others.

    **Parameter names.** As in FusionClassifier, ``get_params(deep=True)``
    exposes layer ``i`` of a branch as ``<branch>__<i>`` and its parameters
    as ``<branch>__<i>__<param>``; ``set_params`` accepts them.

    **Pickling.** A pickle holds the weights and the optimizer's state
    (moments, update count, learning-rate schedule, random generators) but
    no per-batch buffer: an unpickled copy continues ``partial_fit`` bit for
    bit as the original would, and the pickle's size does not grow with the
    training data.

    **Dask.** ``dask_ml.wrappers.Incremental`` calls ``partial_fit`` on the
    blocks of a Dask X and y, but hands over the blocks of a 2-D Dask *array*
    y by their key instead of their values; pass the targets as a dask
    DataFrame (``Y.to_dask_dataframe()``, same row chunks as X) instead.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgd import MultiTaskRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.standard_normal((200, 5))
    >>> Y = X @ rng.standard_normal((5, 3))
    >>> Y[::4, 1] = np.nan  # missing labels of task 1
    >>> reg = MultiTaskRegressor(hidden_layer_sizes=(16,), max_iter=50,
    ...                          random_state=0).fit(X, Y)
    >>> reg.predict(X[:2]).shape
    (2, 3)
    >>> reg.score_tasks(X, Y).shape
    (3,)
    """

    _parameter_constraints = {
        **NetworkEstimator._parameter_constraints,
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "task_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "relu", "tanh", "sigmoid"})],
        "task_weights": ["array-like", None],
        "loss": [StrOptions(set(_LOSSES))],
        "huber_delta": [Interval(numbers.Real, 0, None, closed="neither")],
        "scale_targets": ["boolean"],
        "fusion": [StrOptions({"concat", "serial"})],
        "tol": [Interval(numbers.Real, 0, None, closed="left"), None],
    }

    def __init__(
        self,
        hidden_layer_sizes=(64,),
        task_layer_sizes=(),
        activation="relu",
        task_weights=None,
        loss="squared_error",
        huber_delta=1.0,
        scale_targets=True,
        branches=None,
        fusion="concat",
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
        allow_overlap=False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.task_layer_sizes = task_layer_sizes
        self.activation = activation
        self.task_weights = task_weights
        self.loss = loss
        self.huber_delta = huber_delta
        self.scale_targets = scale_targets
        self.branches = branches
        self.fusion = fusion
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
        self.allow_overlap = allow_overlap

    _HEAD_NAME = "trunk"

    # ------------------------------------------------------------- tags
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # y may be (n, T) or 1-D (one task): both single- and multi-output.
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    # ------------------------------------------------------- validation
    def _default_branches(self):
        # One branch without layers: the columns go straight to the shared trunk.
        return [("input", [], slice(None))]

    def _architecture(self, n_tasks):
        """Trunk layers and task heads (None: one output layer for all tasks)."""
        hidden = _layer_sizes(self.hidden_layer_sizes, "hidden_layer_sizes")
        per_task = _layer_sizes(self.task_layer_sizes, "task_layer_sizes")
        trunk = [Dense(units, activation=self.activation) for units in hidden]
        # Heads without hidden layers are single output units on the trunk:
        # together exactly one Dense(n_tasks), computed as one matrix product.
        heads = (
            [
                [Dense(units, activation=self.activation) for units in per_task]
                for _ in range(n_tasks)
            ]
            if per_task
            else None
        )
        return trunk, heads

    def _task_label(self, t):
        names = getattr(self, "_y_names", None)
        return f"Task {t} ({names[t]!r})" if names is not None else f"Task {t}"

    def _validate_targets(self, y, n_samples, n_tasks=None):
        """y as a C-ordered float64 (n, T) array and its ndim.

        Never modified afterwards (it may be the user's array). C order makes
        the target statistics, hence the model, independent of y's layout.
        """
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        if _is_dask_block_key(y):
            raise ValueError(
                f"y is {y!r}: the key of a block of a Dask array, not its values. dask-ml's "
                "Incremental passes the blocks of a 2-D target array this way; give it the "
                "targets as a dask DataFrame instead (for example Y.to_dask_dataframe(), "
                "with the same row chunks as X), whose partitions it passes as values."
            )
        names = getattr(y, "columns", None)
        y = check_array(
            y,
            ensure_2d=False,
            dtype=np.float64,
            order="C",
            ensure_all_finite="allow-nan",
            input_name="y",
            ensure_min_samples=0,
            ensure_min_features=0,
            allow_nd=True,
        )
        if y.ndim not in (1, 2):
            raise ValueError(
                f"y must be 1-D (one task) or 2-D (n_samples, n_tasks), got {y.ndim}-D."
            )
        if y.shape[0] != n_samples:
            raise ValueError(
                f"Found input variables with inconsistent numbers of samples: X has "
                f"{n_samples}, y has {y.shape[0]}."
            )
        ndim = y.ndim
        y = y.reshape(n_samples, -1)
        if y.shape[1] == 0:
            raise ValueError("y has no column: at least one task is needed.")
        if n_tasks is not None and y.shape[1] != n_tasks:
            raise ValueError(
                f"y has {y.shape[1]} tasks but {type(self).__name__} was fitted with {n_tasks}."
            )
        self._y_names = (
            np.asarray([str(c) for c in names], dtype=object)
            if names is not None and len(names) == y.shape[1]
            else None
        )
        return y, ndim

    def _validate_task_weights(self, n_tasks):
        if self.task_weights is None:
            return np.ones(n_tasks)
        lam = np.asarray(self.task_weights, dtype=np.float64).reshape(-1)
        if lam.shape != (n_tasks,):
            raise ValueError(
                f"task_weights must hold one weight per task ({n_tasks}), got {lam.shape[0]}."
            )
        if not np.all(np.isfinite(lam)) or np.any(lam < 0):
            raise ValueError(f"task_weights must be finite and non-negative, got {lam.tolist()}.")
        if not np.any(lam > 0):
            raise ValueError(
                "task_weights are all 0: at least one task must have a positive weight."
            )
        return lam

    def _target_scaling(self, y, labelled, sample_weight, plain):
        """Per-task (weighted) mean and standard deviation over labelled samples.

        ``plain``: every label present and all weights equal (plain column
        statistics, fewer passes over y).
        """
        n_tasks = y.shape[1]
        if not self.scale_targets:
            return np.zeros(n_tasks), np.ones(n_tasks)
        if plain:
            mean = y.mean(axis=0)
            scale = y.std(axis=0)
        else:
            w = labelled * sample_weight[:, None]
            y0 = np.where(labelled, y, 0.0)
            sum_w = w.sum(axis=0)
            mean = (w * y0).sum(axis=0) / sum_w
            var = (w * (y0 - mean) ** 2).sum(axis=0) / sum_w
            scale = np.sqrt(var)
        # A constant task keeps scale 1 (as sklearn's StandardScaler).
        tiny = 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)
        scale[~(scale > tiny)] = 1.0
        return mean, scale

    def _build_network(self, specs, columns, n_features, dtype, n_tasks):
        from fastgd._engine.network import Network

        trunk, heads = self._architecture(n_tasks)
        return Network(
            self._network_branches(specs, columns, n_features),
            self.fusion,
            trunk,
            n_tasks,
            None,
            dtype,
            task_heads=heads,
        )

    def _signature(self, specs, columns, n_features, dtype, n_tasks):
        """What must not change for a warm start to reuse the weights."""
        trunk, heads = self._architecture(n_tasks)
        return repr(
            (
                [
                    (n, [repr(spec) for spec in layers], str(c))
                    for (n, layers, _), c in zip(specs, columns, strict=True)
                ],
                self.fusion,
                [repr(spec) for spec in trunk],
                None if heads is None else [repr(spec) for spec in heads[0]],
                n_features,
                str(dtype),
                n_tasks,
            )
        )

    # -------------------------------------------------------------- fit
    @reports_to_callbacks
    def fit(self, X, y, sample_weight=None, eval_set=None):
        """Train the network on (X, y).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like or DataFrame of shape (n_samples, n_tasks) or (n_samples,)
            Targets; NaN marks a missing label. A 1-D y is one task.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples in every task's loss.
        eval_set : tuple (X_val, y_val), default=None
            Held-out data (NaN marks a missing label) scored after every
            epoch (``validation_scores_``, ``validation_loss_curve_``,
            ``best_score_``); with ``early_stopping=True`` it is the data that
            stops training (no split of the training data), otherwise
            training stops by the training objective as without it.

        Returns
        -------
        self : MultiTaskRegressor

        Raises
        ------
        ValueError
            On malformed input, or if a task has no label at all.
        fastgd.exceptions.DivergenceError
            If the loss or the weights become NaN or infinite, or the loss
            grows far above the initial model's.
        """
        self._validate_params()
        return self._fit(X, y, sample_weight, incremental=False, eval_set=eval_set)

    @reports_to_callbacks
    def partial_fit(self, X, y, sample_weight=None):
        """Train for one epoch on (X, y), continuing from the current state.

        The target standardisation is computed on the first call and kept
        afterwards; later calls may lack labels of some tasks.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples, n_tasks) or (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : MultiTaskRegressor
        """
        if not hasattr(self, "_network"):
            self._validate_params()
        return self._fit(X, y, sample_weight, incremental=True)

    def _fit(self, X, y, sample_weight, incremental, eval_set=None):
        dtype = self._compute_dtype()
        continuing = incremental and hasattr(self, "_network")
        specs = self._branch_specs(X)
        X, columns = self._network_input(
            X,
            specs,
            dtype=dtype,
            fitting=not continuing,
            refit_transformers=not continuing,
            y=y,
        )
        n_samples = X.shape[0]
        n_features = self.n_features_in_
        y, y_ndim = self._validate_targets(y, n_samples, self.n_tasks_ if continuing else None)
        y_names = self._y_names
        check_consistent_length(X, y)
        n_tasks = y.shape[1]
        labelled = ~np.isnan(y)
        sample_weight = check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        # Every label present, all weights equal: the common case, with fast
        # paths (no masking arithmetic, no per-batch label counts).
        plain = bool(labelled.all()) and bool(np.all(sample_weight == sample_weight[:1]))
        if not continuing:
            for t in range(n_tasks):
                if not labelled[:, t].any():
                    raise ValueError(
                        f"{self._task_label(t)} has no label: every value of column {t} "
                        "of y is NaN. Remove the task or provide labels for it."
                    )
                if not (sample_weight[labelled[:, t]] > 0).any():
                    raise ValueError(
                        f"{self._task_label(t)} has no labelled sample with a positive "
                        "sample_weight."
                    )
        task_weights = self._validate_task_weights(n_tasks)

        self._check_finite(X, [name for name, _, _ in specs], columns)
        signature = self._signature(specs, columns, n_features, dtype, n_tasks)
        network, reuse = self._network_to_train(
            signature,
            continuing,
            lambda: self._build_network(specs, columns, X.shape[1], dtype, n_tasks),
        )
        self._input_specs, self._columns = specs, columns

        if continuing:
            mean, scale = self.target_mean_, self.target_scale_
        else:
            mean, scale = self._target_scaling(y, labelled, sample_weight, plain)
        # Standardised targets (0 where missing: the loss never reads them)
        # and the mask, which carries the sample weights (normalised to mean
        # 1 so that batch label counts stay meaningful).
        mean_w = sample_weight.mean()
        if mean_w > 0:
            sample_weight = sample_weight / mean_w
        if plain:
            y_scaled = ((y - mean) / scale).astype(dtype)
            mask = np.ones(y.shape, dtype=dtype)
        else:
            y_scaled = np.where(labelled, (y - mean) / scale, 0.0).astype(dtype)
            mask = (labelled * sample_weight[:, None]).astype(dtype)

        rs = self._training_random_state(incremental)
        if not reuse:
            network.initialize(rs)

        early_stopping = self.early_stopping and not incremental
        held_out = None
        X_train, y_train, m_train = X, y_scaled, mask

        def make_loss():
            return MaskedRegressionLoss(n_tasks, task_weights, _LOSSES[self.loss], self.huber_delta)

        if eval_set is not None:
            X_val, y_val, val_columns = self._held_out_input(eval_set, dtype)
            self._check_finite(X_val, [name for name, _, _ in specs], val_columns)
            y_val, _ = self._validate_targets(y_val, X_val.shape[0], n_tasks)
            labelled_val = ~np.isnan(y_val)
            y_val = np.where(labelled_val, (y_val - mean) / scale, 0.0).astype(dtype)
            held_out = self._held_out(
                network, X_val, val_columns, y_val, labelled_val.astype(dtype), make_loss()
            )
        elif early_stopping:
            X_train, X_val, y_train, y_val, m_train, m_val = self._split(X, y_scaled, mask, rs)
            held_out = self._held_out(network, X_val, columns, y_val, m_val, make_loss())

        targets = (y_train, m_train)
        trainer = self._trainer_for(
            network,
            lambda: _TaskLossTracker(n_tasks, task_weights, _LOSSES[self.loss], self.huber_delta),
            X_train.shape[0],
            incremental,
            rs,
            targets,
        )
        history = self._history_for(incremental, early_stopping, held_out is not None, _TaskHistory)
        history.tracker = trainer.loss
        trainer.loss.all_labelled = plain
        trainer.loss.reset()

        if not continuing:
            self.n_tasks_ = n_tasks
            self.task_names_ = y_names
            self.target_mean_ = mean
            self.target_scale_ = scale
            self._y_ndim = y_ndim
        self.task_weights_ = task_weights
        return self._train(
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
        )

    @staticmethod
    def _held_out(network, X_val, columns, y_val, mask_val, loss):
        """The :class:`NetworkHeldOut` of standardised targets and their mask.

        Its score is the R² averaged over the tasks with at least two
        held-out labels (0 if none has), its loss the masked objective.
        """
        y_val_nan = np.where(mask_val > 0, y_val, np.nan)
        w_val = mask_val.max(axis=1)

        def mean_r2(pred):
            r2 = _masked_r2(y_val_nan, pred, w_val)
            r2 = r2[~np.isnan(r2)]
            return float(r2.mean()) if r2.size else 0.0

        return NetworkHeldOut(network, X_val, columns, (y_val, mask_val), loss, mean_r2)

    def _publish_history(self, history, early_stopping):
        super()._publish_history(history, early_stopping)
        self.task_loss_curves_ = (
            np.array(history.task_loss_curves, dtype=np.float64).reshape(-1, self.n_tasks_).T.copy()
        )

    def _split(self, X, y, mask, rs):
        n = X.shape[0]
        n_val = self._validation_size(n)
        seed = rs.randint(np.iinfo(np.int32).max)
        order = np.random.RandomState(seed).permutation(n)
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
        if not np.any((mask[val] > 0).sum(axis=0) >= 2):
            raise ValueError(
                f"early_stopping needs a validation split with at least 2 labels of some "
                f"task to compute R²; validation_fraction={self.validation_fraction} of "
                f"{n} samples gives none. Increase validation_fraction."
            )
        return X[train], X[val], y[train], y[val], mask[train], mask[val]

    # ----------------------------------------------------------- predict
    def predict(self, X):
        """Predicted targets.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples, n_tasks), or (n_samples,) if fitted on a 1-D y
            In the compute dtype, in the units of the y given to ``fit``.
        """
        scores = self._network_scores(X)
        pred = scores.astype(np.float64)
        pred *= self.target_scale_
        pred += self.target_mean_
        pred = pred.astype(scores.dtype, copy=False)
        if self._y_ndim == 1:
            return pred[:, 0]
        return pred

    def score_tasks(self, X, y, sample_weight=None):
        """R² of every task, over its labelled samples (NaN in y is ignored).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples, n_tasks) or (n_samples,)
            True targets; NaN marks a missing label.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        scores : ndarray of shape (n_tasks,)
            R² of each task (as :func:`sklearn.metrics.r2_score`); NaN for a
            task with fewer than two labels in y.
        """
        check_is_fitted(self, "_network")
        pred = self.predict(X)
        n_samples = pred.shape[0]
        y_true = check_array(
            y,
            ensure_2d=False,
            dtype=np.float64,
            ensure_all_finite="allow-nan",
            input_name="y",
            ensure_min_samples=0,
        )
        if y_true.shape[0] != n_samples:
            raise ValueError(
                f"Found input variables with inconsistent numbers of samples: X has "
                f"{n_samples}, y has {y_true.shape[0]}."
            )
        y_true = y_true.reshape(n_samples, -1)
        if y_true.shape[1] != self.n_tasks_:
            raise ValueError(f"y has {y_true.shape[1]} tasks but the model has {self.n_tasks_}.")
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, pred.reshape(n_samples, -1))
        return _masked_r2(y_true, pred.reshape(n_samples, -1), sample_weight)

    def score(self, X, y, sample_weight=None):
        """R² averaged over tasks, each over its labelled samples.

        Without missing labels this is
        ``r2_score(y, predict(X), multioutput="uniform_average")``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples, n_tasks) or (n_samples,)
            True targets; NaN marks a missing label.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
            Mean of :meth:`score_tasks` over the tasks with at least two
            labels (NaN if there is none).
        """
        r2 = self.score_tasks(X, y, sample_weight)
        r2 = r2[~np.isnan(r2)]
        return float(r2.mean()) if r2.size else float("nan")
