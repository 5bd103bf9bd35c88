"""Per-task heads of a multi-task network, computed for all tasks at once.

Every task head is a small stack of Dense layers on the shared trunk, ending
in an identity ``Dense(1)`` that produces the task's output column. Heads of
the same architecture (units and activation of every layer) form a
:class:`TaskHeadGroup` whose layers are :class:`StackedDenseLayer` objects:
the k-th layer of every head of the group, its weights stacked as
``W[task, n_in, units]``, so that the forward and backward passes of all the
group's heads are a few batched matrix products (``np.matmul`` over the task
axis) instead of a Python loop per task and per batch.

Activations of a stacked layer are ``(tasks, n, units)``: ``A[k] = f(X[k] W[k]
+ b[k])``, where the first layer of a group reads the trunk ``X`` (shared by
every task) and the others ``X[k]``, the previous layer's output of head k.
"""

import numpy as np

from fastgd import layers as L
from fastgd._engine.layers_runtime import (
    LayerState,
    ParamSpec,
    _activation_code,
    _native,
    _positive_int,
    _weight_limit,
    row_invariant_dense,
)
from fastgd._kernels.runtime import codes

__all__ = ["StackedDenseLayer", "TaskHeadGroup", "group_task_heads"]


class TaskLayerView:
    """One task's slice of a :class:`StackedDenseLayer` (what ``coefs_`` reports)."""

    trainable = True

    def __init__(self, layer, k):
        self.W, self.b = layer.W[k], layer.b[k]


class StackedDenseLayer:
    """The same Dense layer of several task heads, weights ``W[task, n_in, units]``.

    Parameters
    ----------
    n_tasks : int
        Heads stacked.
    n_in : int
        Width of each head's input.
    spec : fastgd.layers.Dense
        The layer's specification (units and activation).
    shared_input : bool
        The input is the trunk, ``(n, n_in)``, read by every head; otherwise
        it is ``(n_tasks, n, n_in)``, one input per head.
    where : str
        Position of the layer, for error messages.
    """

    trainable = True

    def __init__(self, n_tasks, n_in, spec, shared_input, where):
        self.n_tasks, self.n_in = int(n_tasks), int(n_in)
        self.units = _positive_int(spec.units, "units", where)
        self.code = _activation_code(spec.activation, where)
        self.shared_input = shared_input
        self.where = where
        self.output_shape = (self.n_tasks, self.units)

    @property
    def activation_size(self):
        """Values stored per sample in the forward pass (for chunk sizing)."""
        return self.n_tasks * self.units

    def param_specs(self):
        limit = _weight_limit(self.code, self.n_in, self.units)
        return [
            ParamSpec(self, "W", (self.n_tasks, self.n_in, self.units), True, ("uniform", limit)),
            ParamSpec(self, "b", (self.n_tasks, self.units), False, ("constant", 0.0)),
        ]

    def bind(self, views, grads):
        self.W, self.b = views["W"], views["b"]
        self.dW, self.db = grads["W"], grads["b"]
        # Wᵀ of every head, for the input gradient dX[k] = dZ[k] W[k]ᵀ.
        self.W_T = self.W.transpose(0, 2, 1)

    def task_view(self, k):
        """The weights and biases of task head ``k`` of the stack (views)."""
        return TaskLayerView(self, k)

    def make_state(self, capacity, dtype, training, need_dx):
        st = LayerState()
        st.need_dx = need_dx
        # Flat buffers so that the first n samples of every head are one
        # contiguous (n_tasks, n, width) block.
        st.out = np.empty(self.n_tasks * capacity * self.units, dtype=dtype)
        st.dx = None
        if training and need_dx:
            st.dx = np.empty(self.n_tasks * capacity * self.n_in, dtype=dtype)
        st.X = None
        return st

    def _block(self, buf, n, width):
        return buf[: self.n_tasks * n * width].reshape(self.n_tasks, n, width)

    def forward(self, X, st, n, training):
        out = self._block(st.out, n, self.units)
        if not training:
            # Predictions row by row (a loop over the tasks, once per chunk of
            # rows): see row_invariant_dense.
            for k in range(self.n_tasks):
                rows = X if X.ndim == 2 else X[k]
                row_invariant_dense(rows, self.W[k], self.b[k], out[k], self.code)
            st.X = X
            return out
        # (n, n_in) broadcast against every head's W, or (tasks, n, n_in).
        np.matmul(X, self.W, out=out)
        np.add(out, self.b[:, None, :], out=out)
        if self.code != codes.IDENTITY:
            _native().activation_forward(out.reshape(-1), self.code)
        st.X = X
        return out

    def backward(self, dA, st, n):
        """Fill dW, db from ``dA`` (tasks, n, units); return the input gradient.

        A shared input's gradient is the sum over heads, ``Σₖ dZ[k] W[k]ᵀ``,
        written as ``(tasks, n, n_in)`` and summed by the caller.
        """
        out = self._block(st.out, n, self.units)
        if self.code != codes.IDENTITY:
            _native().activation_backward(out.reshape(-1), dA.reshape(-1), self.code)
        X = st.X
        X_T = X.T if self.shared_input else X.transpose(0, 2, 1)
        np.matmul(X_T, dA, out=self.dW)
        np.add.reduce(dA, axis=1, out=self.db)
        if st.dx is None:
            return None
        dx = self._block(st.dx, n, self.n_in)
        np.matmul(dA, self.W_T, out=dx)
        return dx


class TaskHeadGroup:
    """The heads of the tasks ``tasks``, all of one architecture, run together.

    Parameters
    ----------
    tasks : list of int
        Output columns of the group's heads, in order.
    specs : list of fastgd.layers.Dense
        Hidden layers of each head (without the output ``Dense(1)``).
    trunk_width : int
        Width of the trunk the heads read.
    """

    def __init__(self, tasks, specs, trunk_width):
        self.tasks = list(tasks)
        self.columns = np.asarray(self.tasks, dtype=np.intp)
        n_tasks = len(self.tasks)
        first = self.tasks[0]
        self.layers = []
        width = trunk_width
        for i, spec in enumerate([*specs, L.Dense(1)]):
            output = i == len(specs)
            where = f"Task head {first}, {'output layer' if output else f'layer {i}'}"
            layer = StackedDenseLayer(n_tasks, width, spec, i == 0, where)
            self.layers.append(layer)
            width = layer.units

    def make_states(self, capacity, dtype, training, trunk_needs_grad):
        """One state per layer; the first returns a gradient if the trunk needs one."""
        states = [
            layer.make_state(capacity, dtype, training, training and (i > 0 or trunk_needs_grad))
            for i, layer in enumerate(self.layers)
        ]
        if training:
            # The gradient of the heads' outputs, (tasks, n, 1).
            states[-1].dA = np.empty(len(self.tasks) * capacity, dtype=dtype)
        return states

    def forward(self, Z, states, n, training, scores):
        """Write the heads' outputs for the trunk values ``Z`` into their ``scores`` columns."""
        H = Z
        for layer, st in zip(self.layers, states, strict=True):
            H = layer.forward(H, st, n, training)
        # (tasks, n, 1) → columns of (n, n_outputs)
        scores[:, self.columns] = H[:, :, 0].T

    def backward(self, dscores, states, n, dtrunk, accumulate):
        """Fill the heads' gradients; add (or, unless ``accumulate``, write) theirs
        w.r.t. the trunk into ``dtrunk``. Returns whether ``dtrunk`` was written."""
        last = self.layers[-1]
        d = last._block(states[-1].dA, n, 1)
        np.copyto(d[:, :, 0], dscores[:, self.columns].T)
        for layer, st in zip(reversed(self.layers), reversed(states), strict=True):
            d = layer.backward(d, st, n)
        if d is None:
            return False
        if accumulate:
            dtrunk += np.add.reduce(d, axis=0)
        else:
            np.add.reduce(d, axis=0, out=dtrunk)
        return True


def group_task_heads(task_heads, trunk_width):
    """The :class:`TaskHeadGroup` objects of ``task_heads`` (one layer list per task).

    Heads with the same layers (units and activation) share a group, in the
    order of their first task.

    Raises
    ------
    ValueError
        If a head holds a layer other than Dense.
    """
    groups = {}
    for t, specs in enumerate(task_heads):
        for i, spec in enumerate(specs):
            if type(spec) is not L.Dense:
                raise ValueError(
                    f"Task head {t}, layer {i} ({type(spec).__name__}): task heads are "
                    "stacks of Dense layers."
                )
        key = tuple((spec.units, spec.activation) for spec in specs)
        groups.setdefault(key, []).append(t)
    return [
        TaskHeadGroup(tasks, list(task_heads[tasks[0]]), trunk_width) for tasks in groups.values()
    ]
