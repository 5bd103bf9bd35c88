"""What FusionClassifier and MultiTaskRegressor share: the network estimator base class.

Both estimators train a :class:`~fastgd._engine.network.Network` (input
branches, fusion, trunk, outputs) with a
:class:`~fastgd._engine.network_training.NetworkTrainer`. They differ in the
targets, the loss and the architecture after the branches; everything else
lives here once: the common parameters and their constraints, the dtype and
branch validation (strict columns, ``allow_overlap``), the one check of the
network's input (:meth:`NetworkEstimator._checked_X`) and the branch
transformers that may come before it (:meth:`NetworkEstimator._network_input`),
the finite check of X, the reuse of a network for ``warm_start`` /
``partial_fit``, the trainer (optimizer, learning-rate schedule) and its
reuse across ``partial_fit`` calls, callbacks, the training history, the
held-out data (``eval_set`` or the early-stopping split) and the fitted
attributes it leaves (``n_iter_``, ``t_``, ``loss_curve_``,
``validation_scores_``, ...), and the learned weights (``coefs_``,
``intercepts_``, ``layer_names_``).

An estimator built on :class:`NetworkEstimator` supplies
``_default_branches()`` and, in its ``fit``, validates its targets, builds
its network and loss, and calls :meth:`NetworkEstimator._train`.
"""

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, clone
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from fastgd._branches import (
    BranchParamsMixin,
    branch_transformers,
    check_overlap,
    resolve_columns,
    validate_branches,
)
from fastgd._callback_support import CallbackSupport
from fastgd._engine.network_training import SCHEDULES
from fastgd._engine.training import TrainingHistory
from fastgd._kernels.runtime import codes
from fastgd._sklearn_compat import Interval, StrOptions
from fastgd._validation_attributes import publish_validation, unpack_eval_set
from fastgd.layers import ConcatPrevious

__all__ = ["NetworkEstimator"]


class NetworkEstimator(CallbackSupport, BranchParamsMixin, BaseEstimator):
    """Base class of the estimators that train a branched network.

    Not public: subclasses declare their own ``__init__`` (scikit-learn reads
    the parameters from its signature) with at least the parameters of
    :attr:`_parameter_constraints`, and extend those constraints with their
    own.

    The common parameters mean the same in every subclass: ``branches``,
    ``optimizer``, ``learning_rate_init``, ``learning_rate`` and ``power_t``
    (the schedule), ``batch_size``, ``max_iter``, ``tol``,
    ``n_iter_no_change``, ``early_stopping``, ``validation_fraction``,
    ``alpha``, ``shuffle``, ``random_state``, ``warm_start``, ``verbose``,
    ``dtype``, ``callbacks`` and ``allow_overlap``; see
    :class:`~fastgd.FusionClassifier`.

    Notes
    -----
    Pickling keeps the trainer (the optimizer's moments, the update count,
    the schedule's state and the random generators) without its per-batch
    buffers, so an unpickled estimator continues ``partial_fit`` exactly as
    the original would, and the pickle's size does not depend on the number
    of training samples.
    """

    _parameter_constraints = {
        "branches": [list, tuple, None],
        "optimizer": [StrOptions(set(codes.OPTIMIZER_CODES))],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "learning_rate": [StrOptions(set(SCHEDULES))],
        "power_t": [Interval(numbers.Real, None, None, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
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
        "allow_overlap": ["boolean"],
    }

    #: Prefix of the shared layers after the fusion in ``layer_names_``.
    _HEAD_NAME = "head"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------- validation
    def _default_branches(self):
        """Branches used when ``branches=None`` (a list of ``(name, layers, columns)``)."""
        raise NotImplementedError

    def _compute_dtype(self):
        """The ``dtype`` parameter as a NumPy dtype (float32 or float64).

        Returns
        -------
        dtype : numpy.dtype

        Raises
        ------
        ValueError
            For any other dtype.
        """
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

    def _branch_specs(self, X=None):
        """Validated ``(name, layers, columns)`` list, default applied.

        A callable ``columns`` (such as
        :func:`sklearn.compose.make_column_selector`) is called with ``X``,
        as ``ColumnTransformer`` does, and replaced by the columns it selects.
        """
        if self.branches is None:
            return self._default_branches()
        reserved = set(self.get_params(deep=False)) | {"head"}
        specs = validate_branches(self.branches, reserved=reserved)
        return [
            (name, layers, columns(X) if callable(columns) else columns)
            for name, layers, columns in specs
        ]

    def _resolve_columns(self, specs, n_features):
        """Each branch's columns as a slice or an index array, checked against overlap."""
        names = getattr(self, "feature_names_in_", None)
        columns = [resolve_columns(name, cols, n_features, names) for name, _, cols in specs]
        if not self.allow_overlap:
            check_overlap([name for name, _, _ in specs], columns, n_features, names)
        return columns

    # ------------------------------------------------------------ input
    def _checked_X(self, X, *, reset, dtype):
        """X as the network reads it: a C-ordered array of the compute dtype.

        The one place the network's input is checked. ``reset`` True / False:
        also record / check ``n_features_in_`` and ``feature_names_in_``
        (:func:`~sklearn.utils.validation.validate_data`); None: X is the
        output of the branch transformers (its width is not X's). NaN and
        infinity are checked per branch afterwards (:meth:`_check_finite`).
        """
        options = dict(dtype=dtype, order="C", ensure_all_finite=False, accept_sparse="csr")
        if reset is None:
            return check_array(X, estimator=self, input_name="X", **options)
        return validate_data(self, X, reset=reset, **options)

    def _network_input(self, X, specs, *, dtype, fitting, refit_transformers, y=None):
        """X as the network reads it and the columns of every branch in it.

        Without branch transformers, X itself (validated, no copy) and the
        resolved columns. With them, every branch's columns are taken from X
        as given (a DataFrame keeps its column types: text stays text),
        passed through the branch's transformer, and the per-branch results
        are put side by side, branch after branch, in one array checked as
        any X (:meth:`_checked_X`).

        Parameters
        ----------
        X : array-like or DataFrame
        specs : list of (name, layers, columns)
        dtype : numpy dtype
        fitting : bool
            Record ``n_features_in_`` / ``feature_names_in_`` (else check them).
        refit_transformers : bool
            Clone and fit the branch transformers (else use the fitted ones).
        y : array-like, optional
            Targets, passed to the transformers' ``fit_transform``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_network_columns)
        columns : list of (slice or ndarray of int)
        """
        if not refit_transformers:
            transformers = self._fitted_transformers
        elif self.branches is None:
            transformers = [None] * len(specs)
        else:
            transformers = branch_transformers(self.branches)
        if all(t is None for t in transformers):
            X = self._checked_X(X, reset=fitting, dtype=dtype)
            if refit_transformers:
                self._fitted_transformers = transformers
                self.__dict__.pop("branch_transformers_", None)
            return X, self._resolve_columns(specs, X.shape[1])
        if not hasattr(X, "iloc"):  # a DataFrame keeps its column types
            X = check_array(
                X, dtype=None, ensure_all_finite=False, accept_sparse="csr", estimator=self
            )
        validate_data(self, X, reset=fitting, skip_check_array=True)
        raw_columns = self._resolve_columns(specs, self.n_features_in_)
        if refit_transformers:
            transformers = [None if t is None else clone(t) for t in transformers]
        blocks = []
        for (name, _, spec), cols, transformer in zip(
            specs, raw_columns, transformers, strict=True
        ):
            # A single column (an int or a name) reaches the transformer as a
            # 1-D array, as in ColumnTransformer: what a text vectorizer reads.
            scalar = isinstance(spec, (str, numbers.Integral)) and not isinstance(spec, bool)
            key = (
                spec
                if scalar
                else (np.arange(self.n_features_in_)[cols] if isinstance(cols, slice) else cols)
            )
            part = _safe_indexing(X, key, axis=1)
            if transformer is not None and refit_transformers:
                part = transformer.fit_transform(part, y)
            elif transformer is not None:
                part = transformer.transform(part)
            try:
                part = check_array(part, dtype=dtype, ensure_all_finite=False, accept_sparse=True)
            except (TypeError, ValueError) as exc:
                what = "its transformer's output" if transformer is not None else "its columns"
                raise ValueError(
                    f"Branch {name!r}: {what} cannot be read as numbers ({exc}). Give the "
                    "branch a transformer that turns its columns into numbers."
                ) from exc
            blocks.append(part)
        if refit_transformers:
            self._fitted_transformers = transformers
            self.branch_transformers_ = {
                name: t
                for (name, _, _), t in zip(specs, transformers, strict=True)
                if t is not None
            }
        stacked = (
            sp.hstack(blocks, format="csr")
            if any(sp.issparse(b) for b in blocks)
            else np.hstack(blocks)
        )
        widths = np.cumsum([0] + [b.shape[1] for b in blocks])
        columns = [slice(int(widths[b]), int(widths[b + 1])) for b in range(len(blocks))]
        return self._checked_X(stacked, reset=None, dtype=dtype), columns

    @staticmethod
    def _network_branches(specs, columns, n_features):
        """``(name, layers, number of columns)`` of every branch, for the network."""
        return [
            (name, layers, len(np.arange(n_features)[cols]))
            for (name, layers, _), cols in zip(specs, columns, strict=True)
        ]

    @staticmethod
    def _check_finite(X, names, columns):
        """Raise a ValueError naming the branches whose columns hold NaN or inf.

        Parameters
        ----------
        X : ndarray or scipy sparse CSR matrix of shape (n_samples, n_features)
        names : list of str
            Branch names.
        columns : list of (slice or ndarray of int)
            Resolved columns of each branch.
        """
        if not isinstance(X, np.ndarray):
            # Sparse CSR: only stored values can be off; check a one-row proxy.
            proxy = np.zeros((1, X.shape[1]), dtype=X.dtype)
            proxy[0, X.indices[~np.isfinite(X.data)]] = np.nan
            X = proxy
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
        for name, cols in zip(names, columns, strict=True):
            if bad[cols].any():
                if len(names) == 1 and name == "input":
                    raise ValueError("Input X contains NaN or infinity.")
                raise ValueError(
                    f"Input X contains NaN or infinity in the columns of branch {name!r}."
                )

    def _checked_callbacks(self):
        """The ``callbacks`` parameter as a list of callables."""
        callbacks = list(self.callbacks or ())
        for callback in callbacks:
            if not callable(callback):
                raise ValueError(f"callbacks must be callables; got {callback!r}.")
        return callbacks

    def _validation_size(self, n_samples):
        """Number of samples of the early-stopping split (ValueError if it is empty)."""
        n_val = int(np.ceil(self.validation_fraction * n_samples))
        if n_val < 1 or n_samples - n_val < 1:
            raise ValueError(
                f"early_stopping needs a validation split: validation_fraction="
                f"{self.validation_fraction} of {n_samples} samples leaves an empty "
                "training or validation set."
            )
        return n_val

    # -------------------------------------------------------- fit plumbing
    def _training_random_state(self, incremental):
        """RandomState of this call: a fresh one per ``fit``, one kept across ``partial_fit``."""
        if not incremental:
            return check_random_state(self.random_state)
        if not hasattr(self, "_partial_random_state"):
            self._partial_random_state = check_random_state(self.random_state)
        return self._partial_random_state

    def _network_to_train(self, signature, continuing, build):
        """The fitted network if it can be reused, else a new one.

        Parameters
        ----------
        signature : str
            What must not change for the weights to be reused.
        continuing : bool
            A ``partial_fit`` after the first.
        build : callable ``() -> Network``
            Builds a new network.

        Returns
        -------
        network : Network
        reuse : bool
            True if ``network`` is the fitted one (keep its weights).
        """
        reuse = (continuing or self.warm_start) and getattr(
            self, "_fit_signature", None
        ) == signature
        if continuing and not reuse:
            raise ValueError(
                "The architecture changed since the last call to partial_fit; call fit instead."
            )
        return (self._network if reuse else build()), reuse

    def _trainer_for(self, network, make_loss, n_train, incremental, random_state, targets):
        """The trainer of this call: the kept one in ``partial_fit``, else a new one.

        Parameters
        ----------
        network : Network
        make_loss : callable ``() -> loss``
            Builds the loss object of a new trainer.
        n_train : int
            Number of training samples (``fit`` clips the batch size to it).
        incremental : bool
        random_state : numpy.random.RandomState
        targets : sequence of ndarray
            Training targets (their dtypes and per-sample shapes size the
            trainer's buffers).

        Returns
        -------
        trainer : NetworkTrainer
        """
        from fastgd._engine.network_training import NetworkTrainer

        trainer = getattr(self, "_trainer", None) if incremental else None
        if trainer is not None and trainer.network is network:
            return trainer
        batch_size = self.batch_size if incremental else min(self.batch_size, n_train)
        return NetworkTrainer(
            network,
            make_loss(),
            optimizer=self.optimizer,
            learning_rate=self.learning_rate_init,
            schedule=self.learning_rate,
            power_t=self.power_t,
            batch_size=batch_size,
            alpha=self.alpha,
            target_dtypes=[t.dtype for t in targets],
            target_shapes=[t.shape[1:] for t in targets],
            random_state=random_state,
        )

    def _history_for(
        self, incremental, early_stopping, validating=None, history_class=TrainingHistory
    ):
        """The training history: the kept one in ``partial_fit``, else a new one.

        ``partial_fit`` disables the stopping rule (``tol=None``): each call
        is one epoch. ``validating``: held-out data is scored every epoch
        (default ``early_stopping``).
        """
        if incremental and hasattr(self, "_history"):
            return self._history
        return history_class(
            self.tol if not incremental else None,
            self.n_iter_no_change,
            early_stopping,
            validating=validating,
        )

    def _publish_history(self, history, early_stopping):
        """Set the history attributes (``loss_curve_``, ``best_loss_``, ...) from ``history``."""
        self.loss_curve_ = list(history.loss_curve)
        self.best_loss_ = float(history.best_loss)
        publish_validation(self, history, history.validating)

    def _train(
        self,
        trainer,
        history,
        sources,
        targets,
        *,
        columns,
        signature,
        continuing,
        incremental,
        held_out=None,
        from_initialization=False,
        constant_loss=None,
    ):
        """Run the trainer and set the fitted attributes.

        Callbacks see the estimator after every epoch with its weights,
        ``n_iter_`` and history attributes as of that epoch.

        Parameters
        ----------
        trainer : NetworkTrainer
        history : TrainingHistory
        sources : list of ndarray
            Per-branch training inputs.
        targets : tuple of ndarray
            Training targets of the trainer's loss.
        columns : list of (slice or ndarray of int)
            Resolved columns of each branch (kept for ``predict``).
        signature : str
            Architecture signature (kept for ``warm_start``/``partial_fit``).
        continuing : bool
            A ``partial_fit`` after the first (counters carry on).
        incremental : bool
            ``partial_fit``: one epoch.
        held_out : NetworkHeldOut or None
            Held-out data scored after every epoch (an ``eval_set`` or the
            early-stopping split).
        from_initialization : bool
            The network's weights were just initialized (a divergence is
            then also judged against the loss of the initial model).
        constant_loss : float or None
            Training loss of the best constant model (see
            :meth:`NetworkTrainer.fit`).

        Returns
        -------
        self : estimator
        """
        network = trainer.network
        early_stopping = history.early_stopping
        callbacks = self._checked_callbacks()
        n_iter_before = getattr(self, "n_iter_", 0) if continuing else 0
        n_curve_before = len(history.loss_curve)

        def publish():
            # What a callback sees: the history so far (the weights are live).
            self.n_iter_ = n_iter_before + len(history.loss_curve) - n_curve_before
            self._publish_history(history, early_stopping)

        self._network = network
        self._columns = columns
        self._fit_signature = signature
        n_train = targets[0].shape[0]
        n_epochs = trainer.fit(
            sources,
            targets,
            history,
            1 if incremental else self.max_iter,
            shuffle=self.shuffle,
            held_out=held_out,
            from_initialization=from_initialization,
            constant_loss=constant_loss,
            verbose=self.verbose,
            estimator_name=type(self).__name__,
            callbacks=callbacks,
            callback_target=self,
            before_callbacks=publish,
        )
        self._trainer = trainer
        self._history = history
        self.n_iter_ = n_iter_before + n_epochs
        self.t_ = (getattr(self, "t_", 0) if continuing else 0) + n_epochs * n_train
        self._publish_history(history, early_stopping)
        self.n_params_ = int(network.n_params)
        return self

    def _held_out_input(self, eval_set, dtype):
        """``(X_val, y_val, columns)`` of a user's ``eval_set``, X as the network reads it."""
        X_val, y_val = unpack_eval_set(eval_set)
        X_val, columns = self._predict_input(X_val, dtype)
        return X_val, y_val, columns

    # ----------------------------------------------------------- predict
    def _predict_input(self, X, dtype):
        """X checked as at fit time (through the fitted transformers) and the branch columns."""
        if all(t is None for t in self._fitted_transformers):
            return self._checked_X(X, reset=False, dtype=dtype), self._columns
        return self._network_input(
            X, self._input_specs, dtype=dtype, fitting=False, refit_transformers=False
        )

    def _network_scores(self, X):
        """Validate X as at fit time and return the network's raw outputs.

        Returns
        -------
        scores : ndarray of shape (n_samples, n_outputs)
            In the compute dtype.
        """
        check_is_fitted(self, "_network")
        X, columns = self._predict_input(X, self._network.dtype)
        self._check_finite(X, self._network.branch_names, columns)
        return self._network.predict(X, columns)

    # ---------------------------------------------------- learned weights
    def _weight_layers(self):
        """``(name, runtime layer)`` of every layer with weights, in the documented order."""
        network = self._network
        out = []
        for (name, specs, _), layers in zip(self._input_specs, network.branch_layers, strict=True):
            placed = [i for i, spec in enumerate(specs) if not isinstance(spec, ConcatPrevious)]
            out.extend(
                (f"{name}__{i}", layer)
                for i, layer in zip(placed, layers, strict=True)
                if layer.trainable
            )
        head_name = self._HEAD_NAME
        n_head = len(network.head_layers) - (0 if network.task_groups else 1)
        for i, layer in enumerate(network.head_layers):
            out.append((f"{head_name}__{i}" if i < n_head else "output", layer))
        # Task heads, task after task: task t's slice of its group's stacked layers.
        for t, (g, k) in enumerate(network.task_slot if network.task_groups else ()):
            layers = network.task_groups[g].layers
            for i, layer in enumerate(layers):
                name = f"task_{t}__{i}" if i < len(layers) - 1 else f"task_{t}__output"
                out.append((name, layer.task_view(k)))
        # Late fusion: one output layer per branch (none otherwise).
        for name, layer in zip(network.branch_names, network.late_layers, strict=False):
            out.append((f"{name}__output", layer))
        return [(name, layer) for name, layer in out if layer.trainable]

    @property
    def layer_names_(self):
        """Names of the layers with weights, in the order of ``coefs_`` and ``intercepts_``.

        ``<branch>__<i>`` for layer ``i`` of a branch's layer list (the index
        of ``get_params``), then the trunk's layers, then the output layer(s):
        see the estimator's documentation.
        """
        check_is_fitted(self, "_network")
        return [name for name, _ in self._weight_layers()]

    @property
    def coefs_(self):
        """Weights of every layer with weights, in the order of ``layer_names_`` (copies).

        A Dense layer's weights have shape ``(n_inputs, units)`` (as
        scikit-learn's ``MLPClassifier.coefs_``), a Conv2D layer's
        ``(filters, channels, kernel height, kernel width)``.
        """
        check_is_fitted(self, "_network")
        return [np.array(layer.W) for _, layer in self._weight_layers()]

    @property
    def intercepts_(self):
        """Biases of every layer with weights, in the order of ``layer_names_`` (copies)."""
        check_is_fitted(self, "_network")
        return [np.array(layer.b) for _, layer in self._weight_layers()]
