"""Mini-batch training of a :class:`~fastgd._engine.network.Network`.

:class:`NetworkTrainer` owns everything one fit needs besides the model: the
optimizer state (two flat buffers shaped like the parameters and the step
count), the workspace of the forward/backward passes and the target
buffers, all allocated once. One epoch is a loop over mini-batches in which
Python only slices preallocated buffers and calls kernels:

1. gather the batch rows of every branch's columns and of the targets
   (``np.take(..., out=)``, no allocation),
2. forward pass → scores, loss and its gradient (the loss object),
3. backward pass → ``grads``; L2: ``grads[:p] += (alpha / m) · params[:p]``,
4. one optimizer update over the flat buffer (ahead-of-time code,
   :func:`fastgd._kernels.network.native.optimizer_step`: the Numba rule of
   :mod:`fastgd._kernels.common.optimizers` bit for bit).

The objective of a batch of m samples is the loss plus
``alpha / (2 m) · ‖W‖²`` over the weights (scikit-learn's MLP convention);
the epoch's objective is the mean over samples of the batch objectives.
The epoch loop, stopping rule and history are
:func:`fastgd._engine.training.run_epochs`.

Learning-rate schedules (as scikit-learn's ``MLPClassifier``):

* ``"constant"``: every update uses ``learning_rate``;
* ``"invscaling"``: update t (1-based, counted over the trainer's life, so
  across ``partial_fit`` calls) uses ``learning_rate / t^power_t``;
* ``"adaptive"``: the rate stays while the stopping rule sees improvement;
  each plateau of ``n_iter_no_change`` epochs divides it by 5, and training
  stops on a plateau once it is below ``1e-6``.

Pickling keeps the training state (optimizer moments, update count,
schedule, random generators) and drops the per-batch buffers, which are
rebuilt on unpickling: a trainer that went through a pickle continues
bit for bit as the original would.
"""

import copy
import math

import numpy as np

from fastgd._engine.row_sparse import RowSparseSteps
from fastgd._engine.training import FINAL_GROWTH, check_divergence, run_epochs
from fastgd._kernels.runtime import codes
from fastgd.exceptions import DivergenceError

__all__ = ["NetworkTrainer", "NetworkHeldOut"]

SCHEDULES = ("constant", "invscaling", "adaptive")
# The adaptive schedule divides the rate by this on a plateau, down to MIN_LEARNING_RATE.
ADAPTIVE_DIVISOR = 5.0
MIN_LEARNING_RATE = 1e-6

_DIVERGENCE_HINT = (
    "Try a smaller learning_rate_init, scaling the input features, or a larger alpha."
)
# The initial model's loss is measured on this many evenly spaced training rows.
INITIAL_LOSS_ROWS = 256
# A fit whose epoch loss rose above SPIKE_GROWTH times the initial model's and
# that ends no better than a constant model has diverged (then stalled).
SPIKE_GROWTH = 2.0


class NetworkHeldOut:
    """Held-out samples a network is scored on every epoch: its score and its loss.

    What :func:`~fastgd._engine.training.run_epochs` calls as
    ``validation_score`` and ``validation_loss`` (the network counterpart of
    :class:`fastgd._engine.linear.HeldOut`): one prediction per epoch serves
    both.

    Parameters
    ----------
    network : Network
    X : ndarray of shape (n_samples, n_features)
        Held-out input, as the network reads it.
    columns : list of (slice or ndarray of int)
        Resolved columns of each branch.
    targets : tuple of ndarray
        Held-out targets, as the loss reads them.
    loss : loss object
        A loss like the trainer's (``loss(scores, targets, dscores, n)``),
        whose value on all the held-out samples is the held-out loss (without
        the L2 penalty).
    score : callable ``(scores) -> float``
        The held-out score of the network's outputs.
    """

    def __init__(self, network, X, columns, targets, loss, score):
        self.network, self.X, self.columns = network, X, columns
        self.targets = targets
        self.n_samples = X.shape[0]
        self.loss_object = loss
        loss.make_buffers(self.n_samples, network.dtype)
        self.score_of = score
        self._scores = None

    def score(self):
        """Score of the current weights (their outputs are kept for :meth:`loss`)."""
        self._scores = self.network.predict(self.X, self.columns)
        return float(self.score_of(self._scores))

    def loss(self):
        """Loss of the current weights (from the outputs :meth:`score` computed)."""
        scores = self._scores
        if scores is None:
            scores = self.network.predict(self.X, self.columns)
        self._scores = None
        dscores = np.empty_like(scores)  # the loss writes its gradient; unused here
        return float(self.loss_object(scores, self.targets, dscores, self.n_samples))


class NetworkTrainer:
    """Optimizer state and preallocated buffers for training a network.

    Parameters
    ----------
    network : Network
        The model (its ``params`` are updated in place).
    loss : loss object
        ``loss(scores, targets, dscores, n) -> float`` writing the gradient
        of the (mean) loss into ``dscores``; ``loss.make_buffers(capacity,
        dtype)`` is called once.
    optimizer : str
        Key of :data:`fastgd._kernels.runtime.codes.OPTIMIZER_CODES`.
    learning_rate : float
        Initial learning rate (the constant one with ``schedule="constant"``).
    batch_size : int
        Capacity of every buffer.
    alpha : float
        L2 penalty.
    target_dtypes : sequence of numpy dtypes
        dtype of each target array (buffers are allocated for them).
    target_shapes : sequence of tuples
        Per-sample shape of each target array.
    random_state : numpy.random.RandomState
        Source of the shuffling permutations and of the dropout masks.
    momentum, beta_1, beta_2, epsilon : float
        Optimizer constants.
    schedule : {"constant", "invscaling", "adaptive"}, default="constant"
        Learning-rate schedule (see the module doc).
    power_t : float, default=0.5
        Exponent of the "invscaling" schedule.

    Notes
    -----
    A trainer pickles with its network, loss, optimizer state and random
    generators but without its scratch buffers (workspace, target and
    penalty buffers, the loss's per-batch buffers); they are reallocated
    when it is unpickled.
    """

    def __init__(
        self,
        network,
        loss,
        *,
        optimizer,
        learning_rate,
        batch_size,
        alpha,
        target_dtypes,
        target_shapes,
        random_state,
        momentum=0.9,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        schedule="constant",
        power_t=0.5,
    ):
        if schedule not in SCHEDULES:
            raise ValueError(
                f"Unknown learning-rate schedule {schedule!r}; expected one of {SCHEDULES}."
            )
        self.network = network
        self.loss = loss
        self.optimizer_code = codes.OPTIMIZER_CODES[optimizer]
        self.learning_rate = float(learning_rate)
        self.schedule = schedule
        self.power_t = float(power_t)
        # Rate of the adaptive schedule (divided on plateaus).
        self.adaptive_rate = self.learning_rate
        self.batch_size = int(batch_size)
        self.alpha = float(alpha)
        self.momentum = float(momentum)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.random_state = random_state
        self.target_dtypes = [np.dtype(tdt) for tdt in target_dtypes]
        self.target_shapes = [tuple(shape) for shape in target_shapes]
        dt = network.dtype
        n = network.n_params
        self.state_1 = np.zeros(n, dtype=dt)
        self.state_2 = np.zeros(n, dtype=dt)
        self.step_count = 0
        # Dropout masks come from a Generator seeded from the RandomState
        # (Generator.random can fill a float32 buffer in place).
        self.mask_rng = np.random.default_rng(random_state.randint(0, 2**31 - 1))
        self._allocate_scratch()

    # Buffers whose content never outlives a mini-batch: rebuilt, never pickled.
    _SCRATCH = ("workspace", "target_buffers", "pen_params", "pen_grads", "pen_tmp")

    def _allocate_scratch(self):
        """Allocate the per-batch buffers (workspace, targets, loss, L2 scratch)."""
        network = self.network
        dt = network.dtype
        self.workspace = network.make_workspace(self.batch_size, True, self.mask_rng)
        self.loss.make_buffers(self.batch_size, dt)
        self.target_buffers = [
            np.empty((self.batch_size,) + shape, dtype=tdt)
            for tdt, shape in zip(self.target_dtypes, self.target_shapes, strict=True)
        ]
        p = network.n_penalized
        # Views of the network's buffers (a pickle would turn them into copies).
        self.pen_params = network.params[:p]
        self.pen_grads = network.grads[:p]
        self.pen_tmp = np.empty(p, dtype=dt) if self.alpha > 0 else None

    def __getstate__(self):
        """The training state without the scratch buffers.

        Kept: the network, the loss, the optimizer's moments
        (``state_1``, ``state_2``), the update count, the schedule's rate,
        the shuffling RandomState and the dropout Generator, so that an
        unpickled trainer continues exactly where this one stands. Dropped:
        the per-batch buffers (:attr:`_SCRATCH`, and the loss's), whose size
        depends on the batch size, rebuilt by :meth:`__setstate__`.
        """
        state = self.__dict__.copy()
        for name in self._SCRATCH:
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._allocate_scratch()

    def rate_of_step(self, t):
        """Learning rate of the t-th update (1-based)."""
        if self.schedule == "invscaling":
            return self.learning_rate / float(t) ** self.power_t
        if self.schedule == "adaptive":
            return self.adaptive_rate
        return self.learning_rate

    def current_learning_rate(self):
        """Rate of the last update (of the first one before any update)."""
        return self.rate_of_step(max(self.step_count, 1))

    def on_plateau(self):
        """Stopping-rule hook: "adaptive" divides the rate and goes on."""
        if self.schedule == "adaptive" and self.adaptive_rate > MIN_LEARNING_RATE:
            self.adaptive_rate /= ADAPTIVE_DIVISOR
            return True
        return False

    def train_epoch(self, sources, targets, shuffle):
        """One pass over the data; returns the mean objective per sample."""
        from fastgd._kernels.network.native import optimizer_step

        net = self.network
        ws = self.workspace
        n_samples = sources[0].shape[0] if sources else targets[0].shape[0]
        if shuffle:
            order = self.random_state.permutation(n_samples)
        else:
            order = np.arange(n_samples)
        bs = self.batch_size
        inputs = [None] * len(sources)
        tbuf = [None] * len(targets)
        params, grads = net.params, net.grads
        s1, s2 = self.state_1, self.state_2
        alpha = self.alpha
        total = 0.0
        # Set on the first batch when some gradients are row-sparse (sparse
        # input to a first Dense, an Embedding): their own penalty and step.
        row_sparse = None
        for start in range(0, n_samples, bs):
            idx = order[start : start + bs]
            m = idx.shape[0]
            net.batch_inputs(sources, idx, ws, inputs)
            for t, arr in enumerate(targets):
                buf = self.target_buffers[t] if m == bs else self.target_buffers[t][:m]
                arr.take(idx, axis=0, out=buf, mode="clip")
                tbuf[t] = buf
            scores = net.forward(inputs, ws, m, True)
            dscores = ws.dscores if m == bs else ws.dscores[:m]
            loss = float(self.loss(scores, tbuf, dscores, m))
            net.backward(dscores, ws, m)
            if start == 0 and net.row_sparse_layers(ws):
                row_sparse = RowSparseSteps(self, net.row_sparse_layers(ws))
            if row_sparse is not None:
                if alpha > 0.0:
                    loss += row_sparse.penalty(m)
            elif alpha > 0.0:
                # objective += alpha/(2m)·‖W‖²;  gradient += (alpha/m)·W
                loss += 0.5 * alpha / m * float(np.dot(self.pen_params, self.pen_params))
                np.multiply(self.pen_params, alpha / m, out=self.pen_tmp)
                np.add(self.pen_grads, self.pen_tmp, out=self.pen_grads)
            if not math.isfinite(loss):
                raise DivergenceError(
                    f"The fit diverged: the training loss of a mini-batch became "
                    f"{loss} after {self.step_count} updates. {_DIVERGENCE_HINT}"
                )
            self.step_count += 1
            if row_sparse is not None:
                row_sparse.step(self.rate_of_step(self.step_count), m)
                total += loss * m
                continue
            optimizer_step(
                params,
                grads,
                s1,
                s2,
                self.rate_of_step(self.step_count),
                self.step_count,
                self.optimizer_code,
                self.momentum,
                self.beta_1,
                self.beta_2,
                self.epsilon,
            )
            total += loss * m
        if row_sparse is not None:
            row_sparse.finish()
        return total / max(n_samples, 1)

    def initial_loss(self, sources, targets):
        """Loss of the current weights on up to :data:`INITIAL_LOSS_ROWS` evenly spaced rows.

        Evaluated without dropout, through a copy of the loss object (so that
        a loss that records its epochs does not see it), in the trainer's
        buffers, plus the L2 penalty of a full batch: the objective an epoch
        of the initial model would report.
        """
        net = self.network
        n_samples = targets[0].shape[0]
        n_rows = min(n_samples, INITIAL_LOSS_ROWS)
        rows = np.unique(np.linspace(0, n_samples - 1, n_rows).astype(np.intp))
        loss = copy.copy(self.loss)
        loss.make_buffers(self.batch_size, net.dtype)
        ws = self.workspace
        total, weight = 0.0, 0
        inputs = [None] * len(sources)
        for start in range(0, rows.shape[0], self.batch_size):
            idx = rows[start : start + self.batch_size]
            m = idx.shape[0]
            net.batch_inputs(sources, idx, ws, inputs)
            batch_targets = [arr.take(idx, axis=0) for arr in targets]
            scores = net.forward(inputs, ws, m, False)
            total += float(loss(scores, batch_targets, ws.dscores[:m], m)) * m
            weight += m
        penalty = (
            0.5 * self.alpha / self.batch_size * float(np.dot(self.pen_params, self.pen_params))
        )
        return total / weight + penalty

    def fit(
        self,
        sources,
        targets,
        history,
        max_iter,
        *,
        shuffle=True,
        held_out=None,
        from_initialization=False,
        constant_loss=None,
        verbose=0,
        estimator_name="estimator",
        callbacks=(),
        callback_target=None,
        before_callbacks=None,
    ):
        """Train until the stopping rule ends it; keeps the best weights.

        With early stopping (``history.early_stopping``) the parameters of
        the epoch with the best validation score are restored at the end.
        ``callbacks``, ``callback_target`` and ``before_callbacks`` are passed
        to :func:`~fastgd._engine.training.run_epochs`; the reports carry the
        current learning rate.

        Parameters
        ----------
        held_out : NetworkHeldOut, optional
            Scored after every epoch when ``history.validating``.
        from_initialization : bool
            The weights were just initialized: the fit has diverged if its
            loss grows far above the initial model's (1000 times in an epoch,
            10 times at the end), even when it blew up within its first epoch
            (as :func:`~fastgd._engine.training.run_epochs` judges a linear
            model started from zero), or if it rose above twice the initial
            model's and ended no better than ``constant_loss``.
        constant_loss : float, optional
            Training loss of the best constant model (for a classifier, the
            entropy of the class frequencies): a fit that ends there after a
            blow-up has learned nothing.

        Returns
        -------
        n_epochs : int
        """
        net = self.network
        best = None
        validation_score = validation_loss = None
        if history.validating:
            validation_score, validation_loss = held_out.score, held_out.loss
        if history.early_stopping:
            best = np.empty_like(net.params)

            def validation_score():
                score = held_out.score()
                if score > history.best_score:
                    best[:] = net.params
                return score

        with net.blas_limits():
            initial = self.initial_loss(sources, targets) if from_initialization else math.inf
            if not initial > 0:  # a perfect initial model gives no scale to judge by
                initial = math.inf

            def train_epoch(epoch):
                loss = self.train_epoch(sources, targets, shuffle)
                check_divergence(loss, initial, epoch + 1, _DIVERGENCE_HINT)
                return loss

            n_epochs = run_epochs(
                train_epoch,
                history,
                max_iter,
                validation_score=validation_score,
                validation_loss=validation_loss,
                on_plateau=self.on_plateau,
                verbose=verbose,
                divergence_hint=_DIVERGENCE_HINT,
                estimator_name=estimator_name,
                callbacks=callbacks,
                callback_target=callback_target,
                before_callbacks=before_callbacks,
                learning_rate=self.current_learning_rate,
            )
        if best is not None and history.best_epoch >= 0:
            net.params[:] = best
        if not np.all(np.isfinite(net.params)):
            raise DivergenceError(
                f"The fit diverged: the weights became NaN or infinite after "
                f"{n_epochs} epochs. {_DIVERGENCE_HINT}"
            )
        if n_epochs and math.isfinite(initial):
            self._check_final_loss(history.loss_curve[-n_epochs:], initial, constant_loss)
        return n_epochs

    @staticmethod
    def _check_final_loss(curve, initial, constant_loss):
        """Raise DivergenceError if a fit from initial weights ended diverged.

        ``curve``: the epoch losses of this fit; ``initial``: the initial
        model's loss.
        """
        # Ending well above where it started.
        check_divergence(curve[-1], initial, len(curve), _DIVERGENCE_HINT, FINAL_GROWTH)
        # Blown up, then stalled at (or above) what a constant model achieves.
        floor = initial if constant_loss is None else min(initial, constant_loss)
        peak = max(curve)
        if peak > SPIKE_GROWTH * initial and curve[-1] >= floor:
            raise DivergenceError(
                f"The fit diverged: the training loss rose from {initial:.4g} (the initial "
                f"model's) to {peak:.4g} and ended at {curve[-1]:.4g}, no better than "
                f"{'a constant model' if floor < initial else 'the initial model'} "
                f"({floor:.4g}). {_DIVERGENCE_HINT}"
            )
