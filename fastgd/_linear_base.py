"""What GDRegressor and GDClassifier share: parameters, input checks and the training call.

Both are linear models trained by the same engine (:mod:`fastgd._engine.linear`);
they differ in their losses, in how targets become the kernels' ``y`` (real
values, or ±1 per binary problem) and in what they publish. Everything else,
the parameter checks that scikit-learn's ``SGDRegressor`` and
``SGDClassifier`` make, the data validation, the validation split, turning
string options into the kernels' settings, is here, once.
"""

import os
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, is_classifier
from sklearn.utils import assert_all_finite
from sklearn.utils.validation import validate_data

from fastgd._callback_support import CallbackSupport
from fastgd._engine.linear import LinearConfig, LinearState, train_linear
from fastgd._engine.linear_defaults import resolve_schedule
from fastgd._kernels.runtime import codes
from fastgd._sklearn_compat import Interval, StrOptions, check_sample_weight
from fastgd._validation_attributes import publish_validation, unpack_eval_set
from fastgd.exceptions import DivergenceError


def cython_available():
    """Whether the ahead-of-time Cython kernels were built (not in a bare source tree)."""
    try:
        from fastgd._kernels.linear import _sgd_fast  # noqa: F401
    except ImportError:
        return False
    return True


class BaseGD(CallbackSupport, BaseEstimator):
    """Base class of the linear estimators (not for direct use).

    Subclasses define ``__init__`` (with scikit-learn's parameter names and
    defaults), ``_loss_codes`` (the losses they accept), ``_pa_loss``
    (the loss the passive-aggressive schedules require, as in scikit-learn)
    and ``_sgd_schedule`` (scikit-learn's default schedule, which
    ``learning_rate="auto"`` gives plain SGD).
    """

    _parameter_constraints = {
        "penalty": [StrOptions({"l2", "l1", "elasticnet"}), None],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "l1_ratio": [Interval(Real, 0, 1, closed="both"), None],
        "fit_intercept": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, None, None, closed="neither"), None],
        "shuffle": ["boolean"],
        "verbose": ["verbose"],
        "epsilon": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "learning_rate": [StrOptions(set(codes.SCHEDULE_CODES) | {"auto"})],
        "eta0": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, None, None, closed="neither")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
        "average": [Interval(Integral, 0, None, closed="left"), "boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"full"})],
        "optimizer": [StrOptions(set(codes.OPTIMIZER_CODES))],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "optimizer_eps": [Interval(Real, 0, None, closed="neither")],
        "backend": [StrOptions({"auto", "cython", "numba"})],
        "callbacks": [list, tuple, None],
    }

    # ------------------------------------------------------------ parameters

    def _check_parameters(self, for_partial_fit=False):
        """Validate the parameters, with the checks and messages of scikit-learn's SGD."""
        self._validate_params()
        if self.early_stopping and for_partial_fit:
            raise ValueError("early_stopping should be False with partial_fit")
        if self._schedule().name == "optimal" and self.alpha == 0:
            raise ValueError(
                "alpha must be > 0 since learning_rate is 'optimal'. alpha is used "
                "to compute the optimal learning rate."
            )
        if self.learning_rate in ("pa1", "pa2"):
            if self.loss != self._pa_loss:
                raise ValueError(
                    f"Learning rate '{self.learning_rate}' only works with loss '{self._pa_loss}'."
                )
            if self.batch_size != 1 or self.optimizer != "sgd":
                raise ValueError(
                    f"Learning rate '{self.learning_rate}' takes passive-aggressive steps "
                    "sample by sample: it needs batch_size=1 and optimizer='sgd'."
                )
        if self.penalty == "elasticnet" and self.l1_ratio is None:
            raise ValueError("l1_ratio must be set when penalty is 'elasticnet'")
        if self.power_t < 0:
            warnings.warn(
                "Negative values for `power_t` are deprecated in version 1.8 "
                "and will raise an error in 1.10. "
                "Use values in the range [0.0, inf) instead.",
                FutureWarning,
                stacklevel=3,
            )

    def _backend(self):
        """The per-sample kernels to use: "cython" or "numba"."""
        if self.backend == "auto":
            return "cython" if cython_available() else "numba"
        if self.backend == "cython" and not cython_available():
            import fastgd

            folder = os.path.dirname(fastgd.__file__)
            raise ValueError(
                f"backend='cython' but the fastgd imported from {folder} has no compiled "
                "Cython extension (a source tree, or an install that did not build it): "
                "run Python outside the source tree so that the installed fastgd is "
                "imported, build the extension there with `pip install -e .`, or use "
                "backend='numba'."
            )
        return self.backend

    def _schedule(self):
        """The resolved learning-rate :class:`~fastgd._engine.linear_defaults.Schedule`."""
        return resolve_schedule(
            self.learning_rate,
            float(self.eta0),
            optimizer=self.optimizer,
            full_batch=self.batch_size == "full",
            momentum=float(self.momentum),
            sgd_schedule=self._sgd_schedule,
        )

    def _make_config(self):
        """The engine's :class:`LinearConfig` of these parameters."""
        schedule = self._schedule()
        l1_ratio = {"l2": 0.0, "l1": 1.0, "elasticnet": self.l1_ratio, None: 0.0}[self.penalty]
        alpha = 0.0 if self.penalty is None else self.alpha
        return LinearConfig(
            loss=self._loss_codes[self.loss],
            epsilon=float(self.epsilon),
            alpha=float(self.alpha),
            l1_ratio=float(l1_ratio),
            penalty_l2=float(alpha * (1.0 - l1_ratio)),
            penalty_l1=float(alpha * l1_ratio),
            fit_intercept=bool(self.fit_intercept),
            batch_size=None if self.batch_size == "full" else int(self.batch_size),
            optimizer=codes.OPTIMIZER_CODES[self.optimizer],
            momentum=float(self.momentum),
            beta_1=float(self.beta_1),
            beta_2=float(self.beta_2),
            optimizer_eps=float(self.optimizer_eps),
            schedule=codes.SCHEDULE_CODES[schedule.name],
            eta0=schedule.eta0,
            power_t=float(self.power_t),
            average_start=float(self.average),
            backend=self._backend(),
            solver=schedule.solver,
        )

    # ------------------------------------------------------------------ data

    def _validate_training_data(self, X, y, sample_weight, reset):
        """Validated ``(X, y, sample_weight)``: X C-contiguous or CSR, float32 or float64.

        X's finiteness is not checked here: the first epoch reads every
        training row anyway, and a NaN or inf feature makes its loss
        non-finite; :meth:`_train` then names the cause, which saves a whole
        pass over X per fit.
        """
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse="csr",
            dtype=[np.float64, np.float32],
            order="C",
            y_numeric=not is_classifier(self),
            ensure_all_finite=False,
            reset=reset,
        )
        if not is_classifier(self):
            assert_all_finite(y, input_name="y", estimator_name=type(self).__name__)
        if not reset and X.dtype != self.coef_.dtype:
            X = X.astype(self.coef_.dtype)
        sample_weight = check_sample_weight(
            sample_weight, X, dtype=X.dtype, ensure_non_negative=True
        )
        return X, y, np.ascontiguousarray(sample_weight)

    def _validate_eval_set(self, eval_set, dtype):
        """``(X_val, y_val, unit weights)`` of a user's ``eval_set``."""
        X_val, y_val = unpack_eval_set(eval_set)
        X_val, y_val = validate_data(
            self,
            X_val,
            y_val,
            accept_sparse="csr",
            dtype=dtype,
            y_numeric=not is_classifier(self),
            reset=False,
        )
        return X_val, y_val, np.ones(X_val.shape[0], dtype=dtype)

    def _validation_split(self, y, sample_weight):
        """Training rows (in their original order) and validation rows, as scikit-learn splits.

        The same rows as ``SGDRegressor`` / ``SGDClassifier`` hold out for the
        same ``random_state``: a ``ShuffleSplit`` (``StratifiedShuffleSplit``
        for a classifier) seeded with ``random_state`` itself.
        """
        # Imported here: sklearn.model_selection adds ~45 ms to importing fastgd.
        from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

        splitter = (StratifiedShuffleSplit if is_classifier(self) else ShuffleSplit)(
            test_size=self.validation_fraction, random_state=self.random_state
        )
        n_samples = y.shape[0]
        train_rows, val_rows = next(splitter.split(np.zeros((n_samples, 1)), y))
        if not np.any(sample_weight[val_rows] > 0):
            raise ValueError(
                "The sample weights for validation set are all zero, consider using a"
                " different random state."
            )
        if train_rows.shape[0] == 0 or val_rows.shape[0] == 0:
            raise ValueError(
                f"Splitting {n_samples} samples into a train set and a validation set "
                f"with validation_fraction={self.validation_fraction!r} led to an empty "
                f"set ({train_rows.shape[0]} and {val_rows.shape[0]} samples). Please either "
                "change validation_fraction, increase number of samples, or disable "
                "early_stopping."
            )
        return np.sort(train_rows), np.sort(val_rows)

    def _publish_validation(self, history, validated):
        """``validation_scores_``, ``validation_loss_curve_`` and ``best_score_`` of a fit."""
        publish_validation(self, history, validated)

    def _check_finite_features(self, X):
        """Raise scikit-learn's ValueError if X holds NaN or infinity."""
        assert_all_finite(
            X.data if sp.issparse(X) else X, input_name="X", estimator_name=type(self).__name__
        )

    # -------------------------------------------------------------- training

    def _user_callbacks(self):
        callbacks = list(self.callbacks or ())
        for callback in callbacks:
            if not callable(callback):
                raise ValueError(f"callbacks must be callables; got {callback!r}.")
        return callbacks

    def _train(self, X, train, **kwargs):
        """Call ``train(**kwargs)``; a NaN or inf in X is reported as bad input.

        A non-finite feature value makes the training loss non-finite, which
        the engine reports as divergence; checking X only then names the real
        cause without a separate pass over X in every fit.
        """
        try:
            return train(**kwargs)
        except DivergenceError:
            self._check_finite_features(X)
            raise

    def _train_one_model(self, X, data, state, config, publish, **kwargs):
        """Train one model with :func:`train_linear`; callbacks see it through ``publish``."""
        return self._train(
            X,
            lambda **options: train_linear(data, state, config, **options),
            callbacks=self._user_callbacks(),
            callback_target=self,
            before_callbacks=publish,
            **kwargs,
        )


def initial_state(n_features, dtype, coef_init, intercept_init):
    """A fresh :class:`LinearState`, from ``coef_init`` / ``intercept_init`` when given.

    Raises
    ------
    ValueError
        If ``coef_init`` has not one entry per feature or ``intercept_init``
        is not a single number.
    """
    if coef_init is not None:
        coef_init = np.asarray(coef_init, dtype=dtype).reshape(-1)
        if coef_init.shape != (n_features,):
            raise ValueError(
                f"coef_init has {coef_init.shape[0]} entries; expected one per "
                f"feature ({n_features})."
            )
    if intercept_init is not None:
        intercept_init = np.asarray(intercept_init, dtype=np.float64).reshape(-1)
        if intercept_init.shape != (1,):
            raise ValueError("intercept_init must be a single number.")
        intercept_init = float(intercept_init[0])
    return LinearState(n_features, dtype, coef_init, intercept_init or 0.0)
