"""A multimodal network: branches → fusion → trunk/head → outputs, plus its loss.

Structure
---------
Each *branch* receives its own columns of X and runs its own layers. The
branch outputs are then fused:

* ``"concat"`` (early fusion): the (flattened) branch outputs are
  concatenated, then run through the ``head`` layers (a shared trunk) and a
  final identity :class:`~fastgd.layers.Dense` with ``n_outputs`` units.
* ``"late"``: every branch ends in its own identity Dense with ``n_outputs``
  units; the output is ``Σᵢ αᵢ·outᵢ`` with α learned (initialised to 1/B)
  or fixed.
* ``"hybrid"``: the sum of both.
* ``"serial"`` (cascade): the branches run in order; every branch after the
  first reads its own columns and the output of the branch before it,
  concatenated to its input or, where a
  :class:`~fastgd.layers.ConcatPrevious` marker stands in its layer list, to
  the input of the layer after the marker. The last branch's output goes
  through ``head`` and the final Dense, and the backward pass runs the chain
  from the last branch back to the first.

For multi-task learning, ``task_heads`` replaces the final Dense by one
small stack of layers per output (a head per task on the shared trunk).

The network's output is raw scores (logits for classification, predictions
for regression); a *loss object* turns them into an objective and its
gradient, so the same engine serves classification (softmax cross-entropy)
and multi-task regression (masked multi-output loss).

Parameters
----------
All parameters live in one flat buffer ``params`` (gradients in ``grads``);
layers hold views. Weights subject to the L2 penalty come first
(``params[:n_penalized]``), then biases and the fusion weights α, so the
penalty is a single vector operation.
"""

import contextlib

import numpy as np

from fastgd import layers as L
from fastgd._engine.layers_runtime import (
    Conv2DLayer,
    CSRBatch,
    DenseLayer,
    EmbeddingLayer,
    ReshapeLayer,
    SparseJoin,
    _divergence_is_checked,
    build_layer,
    fuse_conv_pool,
)
from fastgd._engine.task_heads import group_task_heads
from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.tuning import PREDICT_CHUNK_BYTES

__all__ = ["Network", "SoftmaxCrossEntropyLoss", "MaskedRegressionLoss", "FUSIONS"]

FUSIONS = ("concat", "late", "hybrid", "serial")
# Version of the order of the flat parameter buffer, kept in pickles: 2 since
# task heads are stacked (fastgd._engine.task_heads).
PARAMETER_LAYOUT = 2


class SparseSource:
    """The columns of one branch of a sparse X, kept in CSR form.

    Parameters
    ----------
    X : scipy sparse CSR matrix or array
        The branch's columns (compute dtype).
    reads_sparse : bool
        The branch's first layer reads a :class:`CSRBatch` (a first Dense):
        batches are gathered as CSR. Otherwise every batch is scattered into
        a dense buffer of the branch's columns (an image branch, an
        embedding's codes).
    column_map : ndarray of int64 or None
        Position of each source column in the dense batch (the inverse of a
        folded channels-last permutation); None: the identity.
    """

    def __init__(self, X, reads_sparse, column_map=None):
        self.indptr, self.indices, self.data = X.indptr, X.indices, X.data
        self.shape = X.shape
        self.reads_sparse = reads_sparse
        self.column_map = (
            np.arange(X.shape[1], dtype=np.int64) if column_map is None else column_map
        )


class _InputBuffers:
    """Dense input buffers of the branches, allocated on first use.

    A branch fed sparse batches never needs one (its dense form could be
    larger than the machine's memory).
    """

    def __init__(self, capacity, widths, dtype):
        self.capacity, self.widths, self.dtype = capacity, widths, dtype
        self.buffers = [None] * len(widths)

    def __getitem__(self, b):
        if self.buffers[b] is None:
            self.buffers[b] = np.empty((self.capacity, self.widths[b]), dtype=self.dtype)
        return self.buffers[b]

    def __len__(self):
        return len(self.buffers)

    def __iter__(self):
        return (self[b] for b in range(len(self.buffers)))


class _SparseBatchBuffers:
    """CSR buffers of one branch's batches (grown when a batch has more non-zeros)."""

    def __init__(self, capacity, dtype):
        self.indptr = np.empty(capacity + 1, dtype=np.int64)
        self.indices = np.empty(0, dtype=np.int64)
        self.data = np.empty(0, dtype=dtype)

    def gather(self, source, rows):
        from fastgd._kernels.network.sparse_dense import csr_gather_rows

        args = (source.indptr, source.indices, source.data, rows, self.indptr)
        nnz = csr_gather_rows(*args, self.indices, self.data)
        if nnz > self.indices.shape[0]:
            size = max(nnz, 2 * self.indices.shape[0])
            self.indices = np.empty(size, dtype=np.int64)
            self.data = np.empty(size, dtype=self.data.dtype)
            csr_gather_rows(*args, self.indices, self.data)
        m = rows.shape[0]
        return CSRBatch(self.indptr[: m + 1], self.indices[:nnz], self.data[:nnz])


class _Workspace:
    """Every buffer one forward/backward pass needs, for ``capacity`` samples."""


class Network:
    """Runtime network built from layer specifications.

    Parameters
    ----------
    branches : list of (name, list of Layer, int)
        Branch name, its layer specifications and its number of input columns.
    fusion : {"concat", "late", "hybrid", "serial"}
        How branch outputs are combined.
    head : sequence of Layer
        Layers after the concatenation (``"concat"`` and ``"hybrid"``) or
        after the last branch (``"serial"``): the shared trunk.
    task_heads : list of (list of Layer) or None
        One small stack of layers per output (multi-task learning); each is
        followed by an identity ``Dense(1)`` that produces its output column.
        None: a single identity ``Dense(n_outputs)`` after the trunk.
    n_outputs : int
        Width of the output (number of classes, or of tasks).
    fusion_weights : array-like of shape (n_branches,) or None
        Fixed α of the late part; None learns them.
    dtype : numpy dtype
        Compute dtype (float32 or float64).

    Attributes
    ----------
    input_permutations : list of (ndarray or None)
        For each branch, a reordering of its columns the caller must apply
        when gathering inputs (it folds a leading channels-last Reshape into
        the gather), or None.
    params, grads : ndarray of shape (n_params,)
        Flat parameter and gradient buffers.
    n_penalized : int
        Number of leading entries of ``params`` the L2 penalty applies to.
    join_at : list of (int or None)
        With ``"serial"``, for each branch after the first, the index of its
        runtime layer that receives ``[own values, previous branch's output]``
        (``len(branch_layers[b])``: the branch's output is joined); None for
        the first branch and for the other fusions.
    """

    def __init__(self, branches, fusion, head, n_outputs, fusion_weights, dtype, task_heads=None):
        from sklearn.base import clone

        self.config = (
            [
                (name, [clone(layer) for layer in layers], int(n_cols))
                for name, layers, n_cols in branches
            ],
            fusion,
            [clone(layer) for layer in head],
            int(n_outputs),
            None if fusion_weights is None else np.asarray(fusion_weights, dtype=np.float64).copy(),
            np.dtype(dtype),
            None
            if task_heads is None
            else [[clone(spec) for spec in layers] for layers in task_heads],
        )
        self._build()
        self.params = np.zeros(self.n_params, dtype=self.dtype)
        self.grads = np.zeros(self.n_params, dtype=self.dtype)
        self._bind()

    # ------------------------------------------------------------------ build
    def _build(self):
        branches, fusion, head, n_outputs, fusion_weights, dtype, task_heads = self.config
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}.")
        self.fusion = fusion
        self.dtype = dtype
        self.n_outputs = n_outputs
        self.serial = fusion == "serial"
        # "concat", "hybrid" and "serial" end in the head (the shared trunk).
        self.use_concat = fusion in ("concat", "hybrid", "serial")
        self.use_late = fusion in ("late", "hybrid")
        self.branch_names = [name for name, _, _ in branches]
        self.n_columns = [n for _, _, n in branches]
        self.branch_layers = []
        self.input_permutations = []
        self.branch_shapes = []
        self.branch_widths = []
        self.join_at = []
        self.join_own_widths = []
        for b, (name, specs, n_cols) in enumerate(branches):
            runtime, shape, join_at, own_width = self._build_branch(b, name, specs, n_cols)
            perm = None
            if (
                join_at != 0
                and runtime
                and isinstance(runtime[0], ReshapeLayer)
                and runtime[0].channels_last
            ):
                runtime[0].folded = True
                perm = runtime[0].column_permutation()
            self.input_permutations.append(perm)
            self.branch_layers.append(runtime)
            self.branch_shapes.append(shape)
            self.branch_widths.append(int(np.prod(shape, dtype=np.int64)))
            self.join_at.append(join_at)
            self.join_own_widths.append(own_width)
        self.offsets = np.concatenate([[0], np.cumsum(self.branch_widths)]).astype(int)
        # Width of the head's input: the concatenation, or the last branch.
        self.fused_width = self.branch_widths[-1] if self.serial else int(self.offsets[-1])

        self.head_layers = []
        self.task_groups = []
        if self.use_concat:
            shape = (self.fused_width,)
            for i, spec in enumerate(head):
                if isinstance(
                    spec, (L.Conv2D, L.MaxPool2D, L.AvgPool2D, L.Reshape, L.ConcatPrevious)
                ):
                    raise ValueError(
                        f"Head layer {i} ({type(spec).__name__}): the head works on the "
                        "flat concatenation of the branches (with fusion='serial', on the "
                        "last branch's output); only Dense and Dropout layers are allowed "
                        "there."
                    )
                layer = build_layer(spec, shape, f"Head layer {i} ({type(spec).__name__})")
                self.head_layers.append(layer)
                shape = layer.output_shape
            if task_heads is None:
                self.head_layers.append(DenseLayer(L.Dense(n_outputs), shape, "Output layer"))
            else:
                if len(task_heads) != n_outputs:
                    raise ValueError(
                        f"task_heads must hold one layer list per output ({n_outputs}), "
                        f"got {len(task_heads)}."
                    )
                self.trunk_width = shape[0]
                self.task_groups = group_task_heads(task_heads, self.trunk_width)
                # Task t is head task_slot[t][1] of group task_slot[t][0].
                self.task_slot = [None] * n_outputs
                for g, group in enumerate(self.task_groups):
                    for k, t in enumerate(group.tasks):
                        self.task_slot[t] = (g, k)
        elif head or task_heads is not None:
            raise ValueError(
                "head (and task head) layers are only used with fusion='concat', "
                "'hybrid' or 'serial'; with "
                "fusion='late' each branch ends in its own output layer. Set head=()."
            )

        self.late_layers = []
        self.n_branches = len(branches)
        if self.use_late:
            for name, width in zip(self.branch_names, self.branch_widths, strict=False):
                self.late_layers.append(
                    DenseLayer(L.Dense(n_outputs), (width,), f"Branch {name!r} output layer")
                )
            if fusion_weights is not None:
                fw = np.asarray(fusion_weights, dtype=np.float64)
                if fw.shape != (self.n_branches,) or not np.all(np.isfinite(fw)):
                    raise ValueError(
                        f"fusion_weights must be {self.n_branches} finite numbers (one "
                        f"per branch), got {fusion_weights!r}."
                    )
                self.learn_alpha = False
                self.fixed_alpha = fw
            else:
                self.learn_alpha = True
        elif fusion_weights is not None:
            raise ValueError("fusion_weights is only used with fusion='late' or 'hybrid'.")

        # Which layers must compute a gradient for their input: everything
        # downstream of the first trainable layer of some branch (with
        # "serial", of some branch of the chain up to this one).
        self.branch_trainable = [
            any(lyr.trainable for lyr in layers) for layers in self.branch_layers
        ]
        self.first_trainable = [
            next((i for i, lyr in enumerate(layers) if lyr.trainable), len(layers))
            for layers in self.branch_layers
        ]
        self._plan_branch_gradients()
        # Does the input of the task heads need a gradient?
        self.trunk_needs_grad = self.any_branch_trainable or any(
            lyr.trainable for lyr in self.head_layers
        )

        # Parameter layout: penalized weights first.
        specs = []
        for layer in self._all_layers():
            specs.extend(layer.param_specs())
        ordered = [s for s in specs if s.penalized] + [s for s in specs if not s.penalized]
        self.param_specs = ordered
        self.n_penalized = sum(s.size for s in ordered if s.penalized)
        n = sum(s.size for s in ordered)
        self.alpha_offset = n
        if self.use_late and self.learn_alpha:
            n += self.n_branches
        self.n_params = n

    def _build_branch(self, b, name, specs, n_cols):
        """Runtime layers of branch ``b`` and where the previous branch joins it.

        Returns
        -------
        runtime : list of RuntimeLayer
        output_shape : tuple of int
            Per-sample shape of the branch's output.
        join_at : int or None
            Index in ``runtime`` of the layer that receives the joined input
            (``len(runtime)``: the output is joined); None without a join.
        own_width : int
            Number of the branch's own values at the join (0 without one).
        """

        def where(i):
            return f"Branch {name!r}, layer {i} ({type(specs[i]).__name__})"

        join = self._join_position(b, name, specs)
        shape = (n_cols,)
        runtime = []
        join_at, own_width = None, 0
        for i, spec in enumerate(specs):
            if i == join:
                join_at, own_width = len(runtime), self._check_join_shape(b, i, shape)
                shape = (own_width + self.branch_widths[b - 1],)
            if isinstance(spec, L.ConcatPrevious):
                continue
            try:
                layer = build_layer(spec, shape, where(i))
            except ValueError as exc:
                if join_at == len(runtime):  # this layer reads the joined input
                    reason = str(exc).removeprefix(f"{where(i)}: ")
                    raise ValueError(self._join_error(b, i, spec, own_width, reason)) from exc
                raise
            if isinstance(layer, EmbeddingLayer) and (runtime or join_at == 0):
                raise ValueError(
                    f"{where(i)}: an Embedding reads the integer codes of its branch's "
                    "columns, so it must be the first layer of the branch"
                    + (
                        "; with fusion='serial' put ConcatPrevious() after it (the "
                        "previous branch's output cannot be read as codes)."
                        if join_at == 0 and not runtime
                        else "."
                    )
                )
            runtime.append(layer)
            shape = layer.output_shape
        if join is not None and join_at is None:
            # A branch without layers: its columns and the previous output are its output.
            join_at, own_width = 0, self._check_join_shape(b, 0, shape)
            shape = (own_width + self.branch_widths[b - 1],)
        fuse_conv_pool(runtime)
        return runtime, shape, join_at, own_width

    def _join_position(self, b, name, specs):
        """Index in ``specs`` where the previous branch's output joins branch ``b``.

        The position of the :class:`~fastgd.layers.ConcatPrevious` marker, 0
        without one (the branch's input), None when nothing joins (the first
        branch, or a fusion other than ``"serial"``).
        """
        markers = [i for i, spec in enumerate(specs) if isinstance(spec, L.ConcatPrevious)]
        if markers and not self.serial:
            raise ValueError(
                f"Branch {name!r}, layer {markers[0]} (ConcatPrevious): it marks where the "
                "previous branch's output joins a branch, which only happens with "
                f"fusion='serial' (this network uses fusion={self.fusion!r}); remove it."
            )
        if markers and b == 0:
            raise ValueError(
                f"Branch {name!r}, layer {markers[0]} (ConcatPrevious): the first branch of "
                "a serial chain has no previous branch to read; remove the marker (or "
                "reorder the branches)."
            )
        if len(markers) > 1:
            raise ValueError(
                f"Branch {name!r}: ConcatPrevious appears {len(markers)} times (layers "
                f"{markers}); the previous branch's output joins a branch once."
            )
        if not self.serial or b == 0:
            return None
        return markers[0] if markers else 0

    def _check_join_shape(self, b, i, shape):
        """Number of values at the join of branch ``b`` before its layer ``i`` (flat only)."""
        if len(shape) == 1:
            return int(shape[0])
        raise ValueError(
            f"Branch {self.branch_names[b]!r}, layer {i} (ConcatPrevious): the output of "
            f"branch {self.branch_names[b - 1]!r} can only be concatenated to flat values, "
            f"but the values there have shape {tuple(int(d) for d in shape)} per sample; "
            "put Flatten() before ConcatPrevious()."
        )

    def _join_error(self, b, i, spec, own_width, reason):
        """Message for a layer that cannot read the joined input of branch ``b``."""
        return (
            f"Branch {self.branch_names[b]!r} (fusion='serial'): layer {i} "
            f"({type(spec).__name__}) cannot take the output of branch "
            f"{self.branch_names[b - 1]!r} ({self.branch_widths[b - 1]} values) concatenated "
            f"to its own {own_width} input values: {reason} Put "
            "fastgd.layers.ConcatPrevious() in the branch's layers where a flat input can "
            "take the extra values, for example after Flatten() and before a Dense layer."
        )

    def _plan_branch_gradients(self):
        """Which branch layers compute an input gradient, and where backward stops.

        ``upstream_trainable[b]``: branch b's output depends on trainable
        parameters (its own or, with "serial", those of an earlier branch).
        ``branch_need_dx[b][i]``: layer i of branch b must return the gradient
        of its input. ``backward_stop[b]``: the lowest layer index the
        backward pass of branch b reaches, or None if it has nothing to do.
        """
        self.upstream_trainable = []
        self.branch_need_dx = []
        self.backward_stop = []
        for b, layers in enumerate(self.branch_layers):
            first = self.first_trainable[b]
            join = self.join_at[b]
            chained = join is not None and self.upstream_trainable[b - 1]
            self.upstream_trainable.append(self.branch_trainable[b] or chained)
            self.branch_need_dx.append(
                [i > first or (chained and i >= join) for i in range(len(layers))]
            )
            stops = ([first] if self.branch_trainable[b] else []) + ([join] if chained else [])
            self.backward_stop.append(min(stops) if stops else None)
        # Does the head's input need a gradient?
        self.any_branch_trainable = (
            self.upstream_trainable[-1] if self.serial else any(self.upstream_trainable)
        )

    def blas_limits(self):
        """Context manager for the passes of this network: single-threaded BLAS
        when it has convolutions or the machine is busy, else nothing.

        Convolutions run their own threads over the batch; BLAS threads
        around them oversubscribe the cores. While other processes leave
        fewer than two CPUs free, a multi-threaded product waits for a thread
        the system has not scheduled. (The README's performance section has
        the measurements.)
        """
        from fastgd._kernels.runtime.cpu_load import machine_busy

        convolutions = any(isinstance(layer, Conv2DLayer) for layer in self._all_layers())
        if not (convolutions or machine_busy()):
            return contextlib.nullcontext()
        return _blas_controller().limit(limits=1, user_api="blas")

    def _all_layers(self):
        for layers in self.branch_layers:
            yield from layers
        yield from self.head_layers
        for group in self.task_groups:
            yield from group.layers
        yield from self.late_layers

    def _bind(self):
        offset = 0
        per_layer = {}
        self._offsets = {}
        for s in self.param_specs:
            self._offsets[(id(s.layer), s.key)] = offset
            views, grads = per_layer.setdefault(id(s.layer), (s.layer, {}, {}))[1:]
            views[s.key] = self.params[offset : offset + s.size].reshape(s.shape)
            grads[s.key] = self.grads[offset : offset + s.size].reshape(s.shape)
            offset += s.size
        for layer, views, grads in per_layer.values():
            layer.bind(views, grads)
        if self.use_late:
            if self.learn_alpha:
                self.alpha = self.params[self.alpha_offset : self.alpha_offset + self.n_branches]
                self.dalpha = self.grads[self.alpha_offset : self.alpha_offset + self.n_branches]
            else:
                self.alpha = self.fixed_alpha.astype(self.dtype)
                self.dalpha = None

    def initialize(self, random_state):
        """Draw initial weights (He / Glorot uniform) from a RandomState.

        Parameters are drawn in layer order (branches, head, task heads task
        after task, late outputs), in float64, then cast, so a seed gives the
        same model in both dtypes up to rounding.
        """
        for (kind, value), target in self._initial_draws():
            if kind == "uniform":
                target[:] = random_state.uniform(-value, value, size=target.size)
            else:
                target[:] = value
        if self.use_late and self.learn_alpha:
            self.alpha[:] = 1.0 / self.n_branches

    def _initial_draws(self):
        """``(init, flat view)`` of every parameter tensor, in the order they are drawn.

        A stacked task-head layer is drawn head by head: task t's layers
        (first to output) before task t + 1's, each head's tensors as if it
        were a layer of its own.
        """
        views = {}
        offset = 0
        for s in self.param_specs:
            views.setdefault(id(s.layer), []).append((s, self.params[offset : offset + s.size]))
            offset += s.size
        stacked = {id(layer) for group in self.task_groups for layer in group.layers}
        for layer in self._all_layers():
            if id(layer) not in stacked:
                for s, view in views.get(id(layer), ()):
                    yield s.init, view
            elif layer is self.task_groups[0].layers[0]:
                for g, k in self.task_slot:
                    for head_layer in self.task_groups[g].layers:
                        for s, view in views[id(head_layer)]:
                            yield s.init, view.reshape(s.shape)[k].reshape(-1)

    # ------------------------------------------------------------- pickling
    def __getstate__(self):
        return {"config": self.config, "params": self.params, "layout": PARAMETER_LAYOUT}

    def __setstate__(self, state):
        self.config = state["config"]
        self._build()
        if self.task_groups and state.get("layout", 1) != PARAMETER_LAYOUT:
            raise ValueError(
                "This network was saved by an older fastgd, which stored the weights of "
                "task heads one head after another; they are now stacked per layer. Fit "
                "the model again with this version."
            )
        self.params = np.array(state["params"], dtype=self.dtype, copy=True)
        self.grads = np.zeros_like(self.params)
        self._bind()

    # ------------------------------------------------------------ workspace
    def activation_size(self):
        """Number of values the forward pass stores per sample."""
        total = sum(self.n_columns) + 2 * self.n_outputs
        for layer in self._all_layers():
            total += layer.activation_size
        if self.use_concat:
            total += self.fused_width
        for b, join in enumerate(self.join_at):
            if join is not None:
                total += self.join_own_widths[b] + self.branch_widths[b - 1]
        return total

    def predict_chunk_size(self, n_samples, minimum=16, skip_columns=0):
        """Rows per prediction chunk so activations stay around 8 MiB.

        ``skip_columns`` input columns are read sparse (no dense buffer).
        """
        per_sample = (self.activation_size() - skip_columns) * self.dtype.itemsize
        chunk = max(minimum, PREDICT_CHUNK_BYTES // max(per_sample, 1))
        return int(min(chunk, max(n_samples, 1)))

    def make_workspace(self, capacity, training, rng=None):
        """Allocate every buffer of a pass over at most ``capacity`` samples.

        Parameters
        ----------
        capacity : int
            Maximum batch size.
        training : bool
            Allocate what the backward pass needs too (and activate dropout).
        rng : numpy.random.Generator, optional
            Source of the dropout masks (training only).
        """
        ws = _Workspace()
        ws.capacity = capacity
        ws.training = training
        dt = self.dtype
        ws.inputs = _InputBuffers(capacity, self.n_columns, dt)
        ws.sparse_inputs = [None] * self.n_branches
        ws.branch_states = []
        for b, layers in enumerate(self.branch_layers):
            states = []
            for i, layer in enumerate(layers):
                # Data needs no gradient: only inputs downstream of a trainable layer do.
                need_dx = training and self.branch_need_dx[b][i]
                st = layer.make_state(capacity, dt, training, need_dx)
                if hasattr(st, "rng"):
                    st.rng = rng
                states.append(st)
            ws.branch_states.append(states)
        ws.head_states = []
        for i, layer in enumerate(self.head_layers):
            need_dx = training and (i > 0 or self.any_branch_trainable)
            st = layer.make_state(capacity, dt, training, need_dx)
            if hasattr(st, "rng"):
                st.rng = rng
            ws.head_states.append(st)
        ws.task_states = [
            group.make_states(capacity, dt, training, self.trunk_needs_grad)
            for group in self.task_groups
        ]
        if self.task_groups:
            ws.task_scores = np.empty((capacity, self.n_outputs), dtype=dt)
            if training:
                ws.dtrunk = np.empty((capacity, self.trunk_width), dtype=dt)
        ws.late_states = [
            layer.make_state(capacity, dt, training, training and self.branch_trainable[b])
            for b, layer in enumerate(self.late_layers)
        ]
        single = self.n_branches == 1
        concatenates = self.use_concat and not single and not self.serial
        ws.fused = np.empty((capacity, self.fused_width), dtype=dt) if concatenates else None
        ws.scores = np.empty((capacity, self.n_outputs), dtype=dt) if self.use_late else None
        ws.tmp = np.empty((capacity, self.n_outputs), dtype=dt) if self.use_late else None
        ws.dscores = np.empty((capacity, self.n_outputs), dtype=dt) if training else None
        if training:
            ws.dlate = [np.empty((capacity, self.n_outputs), dtype=dt) for _ in self.late_layers]
            # A contiguous buffer for each branch's output gradient when it
            # cannot be a view of another buffer.
            needs_own = concatenates or self.fusion == "hybrid"
            ws.dbranch = [
                np.empty((capacity, w), dtype=dt)
                if needs_own and self.branch_trainable[b]
                else None
                for b, w in enumerate(self.branch_widths)
            ]
        ws.branch_out = [None] * self.n_branches
        self._make_join_buffers(ws, capacity, training)
        return ws

    def _make_join_buffers(self, ws, capacity, training):
        """Buffers of the serial joins: the joined values and their gradient's two parts."""
        ws.joined, ws.dprevious, ws.djoined_own = [], [], []
        for b, join in enumerate(self.join_at):
            own = self.join_own_widths[b]
            joins = join is not None
            # Allocated by the first dense join (a sparse branch never needs it).
            ws.joined.append(None)
            # The previous branch's part, when the chain before it is trainable.
            previous_needed = training and joins and self.upstream_trainable[b - 1]
            ws.dprevious.append(
                np.empty((capacity, self.branch_widths[b - 1]), dtype=self.dtype)
                if previous_needed
                else None
            )
            # The branch's own part, when a trainable layer of the branch precedes the join.
            own_needed = training and joins and self.first_trainable[b] < join
            ws.djoined_own.append(
                np.empty((capacity, own), dtype=self.dtype) if own_needed else None
            )

    # -------------------------------------------------------------- passes
    def forward(self, inputs, ws, n, training):
        """Scores of ``n`` samples; ``inputs[b]`` holds branch b's columns.

        Returns a view of a workspace buffer (valid until the next pass).
        """
        with _divergence_is_checked():
            return self._forward(inputs, ws, n, training)

    def _forward(self, inputs, ws, n, training):
        flat_outs = []
        for b in range(self.n_branches):
            X = self._branch_forward(b, inputs[b], ws, n, training)
            ws.branch_out[b] = X
            flat_outs.append(X.reshape(n, self.branch_widths[b]))
        out = None
        if self.use_concat:
            if ws.fused is None:
                # The only branch, or the end of the serial chain.
                Z = flat_outs[-1]
            else:
                Z = ws.fused[:n]
                for b, F in enumerate(flat_outs):
                    Z[:, self.offsets[b] : self.offsets[b + 1]] = F
            for layer, st in zip(self.head_layers, ws.head_states, strict=False):
                Z = layer.forward(Z, st, n, training)
            if self.task_groups:
                scores = ws.task_scores[:n]
                for group, states in zip(self.task_groups, ws.task_states, strict=True):
                    group.forward(Z, states, n, training, scores)
                Z = scores
            out = Z
        if self.use_late:
            scores = ws.scores[:n]
            tmp = ws.tmp[:n]
            alpha = self.alpha
            for b, (layer, st) in enumerate(zip(self.late_layers, ws.late_states, strict=False)):
                s = layer.forward(flat_outs[b], st, n, training)
                if b == 0 and out is None:
                    np.multiply(s, alpha[0], out=scores)
                else:
                    np.multiply(s, alpha[b], out=tmp)
                    np.add(scores if b > 0 else out, tmp, out=scores)
            out = scores
        return out

    def backward(self, dscores, ws, n):
        """Fill ``grads`` from the gradient of the loss w.r.t. the scores."""
        with _divergence_is_checked():
            self._backward(dscores, ws, n)

    def _backward(self, dscores, ws, n):
        dbranch = [None] * self.n_branches
        if self.use_late:
            for b, (layer, st) in enumerate(zip(self.late_layers, ws.late_states, strict=False)):
                s = st.out[:n]
                if self.learn_alpha:
                    # ∂L/∂αᵢ = Σ dscores ⊙ scoresᵢ
                    self.dalpha[b] = np.vdot(dscores, s)
                d = ws.dlate[b][:n]
                np.multiply(dscores, self.alpha[b], out=d)
                dbranch[b] = layer.backward(d, st, n)
        if self.use_concat:
            d = dscores
            if self.task_groups:
                # Each task head sees its own column; their input gradients add up.
                dtrunk = ws.dtrunk[:n]
                written = False
                for group, states in zip(self.task_groups, ws.task_states, strict=True):
                    written |= group.backward(dscores, states, n, dtrunk, accumulate=written)
                d = dtrunk
            for layer, st in zip(
                reversed(self.head_layers), reversed(ws.head_states), strict=False
            ):
                d = layer.backward(d, st, n)
            if self.serial:
                if self.any_branch_trainable:
                    dbranch[-1] = d
            elif self.any_branch_trainable:
                for b in range(self.n_branches):
                    if not self.branch_trainable[b]:
                        continue
                    if ws.fused is None and dbranch[b] is None:
                        dbranch[b] = d
                        continue
                    buf = ws.dbranch[b][:n]
                    part = (
                        d[:, self.offsets[b] : self.offsets[b + 1]] if ws.fused is not None else d
                    )
                    if dbranch[b] is None:
                        np.copyto(buf, part)
                    else:
                        np.add(dbranch[b], part, out=buf)
                    dbranch[b] = buf
        # A serial chain runs back from its last branch: each branch hands the
        # gradient of the previous branch's output on to it.
        order = range(self.n_branches - 1, -1, -1) if self.serial else range(self.n_branches)
        for b in order:
            if dbranch[b] is not None and self.backward_stop[b] is not None:
                self._branch_backward(b, dbranch[b], ws, n, dbranch)

    def _branch_forward(self, b, X, ws, n, training):
        """Output of branch ``b`` for its input columns ``X`` (joining the previous output)."""
        layers, states = self.branch_layers[b], ws.branch_states[b]
        join = self.join_at[b]
        for i, (layer, st) in enumerate(zip(layers, states, strict=True)):
            if i == join:
                X = self._join(b, X, ws, n)
            X = layer.forward(X, st, n, training)
        if join == len(layers):
            X = self._join(b, X, ws, n)
        return X

    def _join(self, b, X, ws, n):
        """``[X, previous branch's output]`` of ``n`` samples, in branch b's join buffer."""
        if isinstance(X, CSRBatch):
            # Sparse columns into a first Dense: the layer reads both parts as they are.
            return SparseJoin(X, ws.branch_out[b - 1].reshape(n, -1))
        own = self.join_own_widths[b]
        if ws.joined[b] is None:
            width = own + self.branch_widths[b - 1]
            ws.joined[b] = np.empty((ws.capacity, width), dtype=self.dtype)
        joined = ws.joined[b][:n]
        joined[:, :own] = X.reshape(n, own)
        joined[:, own:] = ws.branch_out[b - 1].reshape(n, -1)
        return joined

    def _branch_backward(self, b, d, ws, n, dbranch):
        """Backward pass of branch ``b`` from the gradient ``d`` of its output.

        At a serial join, the gradient of the previous branch's output goes to
        ``dbranch[b - 1]`` and the branch's own part continues down.
        """
        layers, states = self.branch_layers[b], ws.branch_states[b]
        join, stop = self.join_at[b], self.backward_stop[b]
        d = d.reshape((n,) + self.branch_shapes[b])
        i = len(layers)
        while True:
            if i == join and d is not None:
                d = self._split_join_gradient(b, join, d, ws, n, dbranch)
            if i == stop:
                return
            i -= 1
            d = layers[i].backward(d, states[i], n)

    def _split_join_gradient(self, b, join, d, ws, n, dbranch):
        """Gradient of branch b's own values at its join (None if unused); the rest to b - 1."""
        own = self.join_own_widths[b]
        if join == 0 and self.branch_layers[b] and isinstance(ws.branch_states[b][0].X, SparseJoin):
            # The first Dense of sparse columns returned the previous part only.
            if ws.dprevious[b] is not None:
                np.copyto(ws.dprevious[b][:n], d)
                dbranch[b - 1] = ws.dprevious[b][:n]
            return None
        d = d.reshape(n, own + self.branch_widths[b - 1])
        if ws.dprevious[b] is not None:
            dprevious = ws.dprevious[b][:n]
            np.copyto(dprevious, d[:, own:])
            dbranch[b - 1] = dprevious
        if ws.djoined_own[b] is None:
            return None
        down = ws.djoined_own[b][:n]
        np.copyto(down, d[:, :own])
        return down

    # ------------------------------------------------------------ inference
    def gather_sources(self, X, columns):
        """Per-branch 2-D sources of X in the order the network reads them.

        Parameters
        ----------
        X : ndarray or scipy sparse CSR matrix of shape (n_samples, n_features)
            Validated input (compute dtype). A sparse X stays sparse: every
            branch gets a :class:`SparseSource`.
        columns : list of (slice or ndarray of int)
            Resolved columns of each branch. A branch whose channels-last
            images are read channels first keeps the user's layout here:
            :meth:`batch_inputs` and :meth:`predict` transpose each batch or
            chunk (no copy of the whole data at every ``fit`` call).

        Returns
        -------
        sources : list of (ndarray or SparseSource)
            Views of X where the columns are a contiguous range, copies
            otherwise.

        Raises
        ------
        ValueError
            If an Embedding branch's columns hold something other than
            integer codes in range.
        """
        import scipy.sparse as sp

        if sp.issparse(X):
            return self._sparse_sources(X, columns)
        sources = []
        for b, cols in enumerate(columns):
            src = X[:, cols] if isinstance(cols, slice) else np.ascontiguousarray(X[:, cols])
            if self._embedding(b) is not None:
                self._embedding(b).check_codes(src)
            sources.append(src)
        return sources

    def _embedding(self, b):
        """Branch b's Embedding layer (always its first), or None."""
        layers = self.branch_layers[b]
        return layers[0] if layers and isinstance(layers[0], EmbeddingLayer) else None

    def _sparse_sources(self, X, columns):
        """Per-branch :class:`SparseSource` of a CSR X (no densifying)."""
        sources = []
        for b, cols in enumerate(columns):
            whole = isinstance(cols, slice) and range(X.shape[1])[cols] == range(X.shape[1])
            part = X if whole else X[:, cols]
            layers = self.branch_layers[b]
            first_dense = bool(layers) and isinstance(layers[0], DenseLayer)
            embedding = self._embedding(b)
            if embedding is not None:
                embedding.check_codes(part.data, column_of=lambda k, p=part: _column_of(p, k))
            perm = self.input_permutations[b]
            column_map = None
            if perm is not None:
                column_map = np.empty(perm.shape[0], dtype=np.int64)
                column_map[perm] = np.arange(perm.shape[0])
            sources.append(SparseSource(part, first_dense, column_map))
        return sources

    def batch_inputs(self, sources, rows, ws, inputs):
        """Fill ``inputs[b]`` with branch b's input for the samples ``rows``.

        Contiguous dense sources are gathered into the workspace's buffers; a
        branch's column range of the user's X (a strided view) by indexing,
        which reads only the batch's rows of those columns into a new
        batch-sized array. Sparse sources are gathered into a
        :class:`CSRBatch` (a first Dense) or scattered into a dense buffer
        (any other branch).

        Parameters
        ----------
        sources : list of (ndarray or SparseSource)
            From :meth:`gather_sources`.
        rows : ndarray of int64
            The batch's sample indices.
        ws : workspace
            From :meth:`make_workspace` (capacity ≥ ``len(rows)``).
        inputs : list
            Filled in place.
        """
        m = rows.shape[0]
        for b, src in enumerate(sources):
            hwc = self._folded_hwc(b)
            if hwc is not None and not isinstance(src, SparseSource):
                inputs[b] = _channels_first(src[rows], hwc, ws.inputs[b][:m])
                continue
            if isinstance(src, SparseSource) and src.reads_sparse:
                if ws.sparse_inputs[b] is None:
                    ws.sparse_inputs[b] = _SparseBatchBuffers(ws.capacity, self.dtype)
                inputs[b] = ws.sparse_inputs[b].gather(src, rows)
                continue
            if not (isinstance(src, SparseSource) or src.flags.c_contiguous):
                # A column range of the user's X (a strided view): take would
                # first copy the whole view, every batch; indexing reads only
                # the batch's rows of the branch's columns.
                inputs[b] = src[rows]
                continue
            buf = ws.inputs[b] if m == ws.capacity else ws.inputs[b][:m]
            if isinstance(src, SparseSource):
                from fastgd._kernels.network.sparse_dense import csr_rows_to_dense

                csr_rows_to_dense(src.indptr, src.indices, src.data, rows, src.column_map, buf)
            else:
                # mode="clip" lets take write straight into ``out`` (no
                # intermediate buffer); indices are always in range.
                src.take(rows, axis=0, out=buf, mode="clip")
            inputs[b] = buf

    def row_sparse_layers(self, ws):
        """``(layer, state)`` of the layers whose last backward pass was row-sparse.

        Only a branch's first layer can be: an Embedding, or a Dense that read
        a :class:`CSRBatch`.
        """
        found = []
        for layers, states in zip(self.branch_layers, ws.branch_states, strict=True):
            if layers and getattr(states[0], "row_grad", None) is not None:
                found.append((layers[0], states[0]))
        return found

    def param_offset(self, layer, key):
        """Offset of parameter ``key`` of ``layer`` in the flat buffer."""
        return self._offsets[(id(layer), key)]

    def _folded_hwc(self, b):
        if self.input_permutations[b] is None:
            return None
        return self.branch_layers[b][0].hwc

    def predict(self, X, columns):
        """Scores of every sample, computed in chunks.

        Parameters
        ----------
        X : ndarray or scipy sparse CSR matrix of shape (n_samples, n_features)
            Validated input (compute dtype).
        columns : list of (slice or ndarray of int)
            Resolved columns of each branch.

        Returns
        -------
        scores : ndarray of shape (n_samples, n_outputs)
        """
        n_samples = X.shape[0]
        result = np.empty((n_samples, self.n_outputs), dtype=self.dtype)
        if n_samples == 0:
            return result
        with self.blas_limits():
            if not isinstance(X, np.ndarray):
                return self._predict_sparse(X, columns, result)
            return self._predict(X, columns, result)

    def _predict_sparse(self, X, columns, result):
        """:meth:`predict` of a CSR X, chunk by chunk, never densifying it."""
        sources = self.gather_sources(X, columns)
        sparse_width = sum(s.shape[1] for s in sources if s.reads_sparse)
        chunk = self.predict_chunk_size(X.shape[0], skip_columns=sparse_width)
        ws = self.make_workspace(chunk, training=False)
        inputs = [None] * self.n_branches
        for start in range(0, X.shape[0], chunk):
            rows = np.arange(start, min(start + chunk, X.shape[0]), dtype=np.int64)
            self.batch_inputs(sources, rows, ws, inputs)
            result[start : start + rows.shape[0]] = self.forward(
                inputs, ws, rows.shape[0], training=False
            )
        return result

    def _predict(self, X, columns, result):
        n_samples = X.shape[0]
        sources = self.gather_sources(X, columns)
        hwcs = [self._folded_hwc(b) for b in range(self.n_branches)]
        chunk = self.predict_chunk_size(n_samples)
        # A row's prediction does not depend on the other rows of the call:
        # every kernel of a forward pass with training=False computes each
        # row alone (tested with scikit-learn's check_methods_subset_invariance
        # and bit for bit in tests/test_batch_invariance.py).
        ws = self.make_workspace(chunk, training=False)
        inputs = [None] * self.n_branches
        for start in range(0, n_samples, chunk):
            stop = min(start + chunk, n_samples)
            m = stop - start
            for b, src in enumerate(sources):
                rows = src[start:stop]
                buf = ws.inputs[b][:m]
                if hwcs[b] is not None:
                    inputs[b] = _channels_first(rows, hwcs[b], buf)
                elif rows.flags.c_contiguous:
                    inputs[b] = rows
                else:
                    np.copyto(buf, rows)
                    inputs[b] = buf
            result[start:stop] = self.forward(inputs, ws, m, training=False)
        return result

    def fusion_weights(self):
        """Current α of the late part (a copy), or None."""
        if not self.use_late:
            return None
        return np.array(self.alpha, dtype=np.float64)


def _channels_first(rows, hwc, out):
    """Copy the channels-last images ``rows`` (m, H·W·C) into ``out`` (m, C·H·W), channels first.

    One strided copy of the batch (or chunk): much faster than gathering
    the permuted columns one by one.
    """
    h, w, c = hwc
    m = rows.shape[0]
    np.copyto(out.reshape(m, c, h, w), rows.reshape(m, h, w, c).transpose(0, 3, 1, 2))
    return out


def _blas_controller():
    """The process's threadpoolctl controller, made once.

    Making one scans the loaded libraries (milliseconds, as long as a small
    fit or prediction); limiting through a kept one takes microseconds. The
    BLAS it controls is NumPy's, loaded before any network exists.
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER


_BLAS_CONTROLLER = None


def _column_of(X, k):
    """Column of the k-th stored value of a CSR matrix."""
    return int(X.indices[k])


class SoftmaxCrossEntropyLoss:
    """Weighted mean softmax cross-entropy over class indices.

    Targets are ``(y_index, sample_weight)``: class indices (int64) and
    per-sample weights.
    """

    def __init__(self, n_classes):
        self.n_outputs = int(n_classes)

    def make_buffers(self, capacity, dtype):
        self.proba = np.empty((capacity, self.n_outputs), dtype=dtype)

    def __getstate__(self):
        # The per-batch buffer is rebuilt by make_buffers (the trainer calls it).
        state = self.__dict__.copy()
        state.pop("proba", None)
        return state

    def __call__(self, scores, targets, dscores, n):
        from fastgd._kernels.network.native import softmax_cross_entropy

        y_index, weight = targets
        return softmax_cross_entropy(scores, y_index, weight, self.proba[:n], dscores)


class MaskedRegressionLoss:
    """Σ λₜ · (mean over task t's labelled samples of Lₜ), NaN targets masked.

    Targets are ``(y, mask)``: float targets with missing entries set to any
    finite value and a 0/1 mask of the same shape. For MultiTaskRegressor.
    """

    def __init__(self, n_tasks, task_weights, loss_code, huber_delta=1.0):
        self.n_outputs = int(n_tasks)
        self.task_weights = np.asarray(task_weights, dtype=np.float64)
        self.loss_code = int(loss_code)
        self.huber_delta = float(huber_delta)

    def make_buffers(self, capacity, dtype):
        self.task_weights_dt = self.task_weights.astype(dtype)
        self.task_losses = np.zeros(self.n_outputs, dtype=np.float64)

    def __getstate__(self):
        # Per-batch buffers are rebuilt by make_buffers (the trainer calls it).
        state = self.__dict__.copy()
        state.pop("task_weights_dt", None)
        state.pop("task_losses", None)
        return state

    def __call__(self, scores, targets, dscores, n):
        from fastgd._kernels.network.native import masked_regression_loss

        y, mask = targets
        return masked_regression_loss(
            scores,
            y,
            mask,
            self.task_weights_dt,
            self.loss_code == codes.HUBER,
            self.huber_delta,
            dscores,
            self.task_losses,
        )
