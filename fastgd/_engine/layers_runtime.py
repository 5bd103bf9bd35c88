"""Runtime layers: the objects that own weights and call the kernels.

A public layer specification (:mod:`fastgd.layers`) only stores numbers. When
a network is built, each specification becomes a runtime layer here, which

* checks its specification against the shape it receives (errors name the
  branch and the layer's position, through ``where``),
* declares its parameters (:meth:`RuntimeLayer.param_specs`); the network
  packs every parameter of the model into one flat buffer and hands each
  layer *views* into it (:meth:`RuntimeLayer.bind`), so one optimizer kernel
  updates the whole model,
* creates, once per fit or predict call, a :class:`LayerState` holding the
  buffers it writes (outputs, input gradients, masks, workspaces) for a
  given batch capacity,
* ``forward(X, state, n, training)`` computes the output of ``n`` samples
  into the state's buffers and keeps what the backward pass needs,
* ``backward(dA, state, n)`` fills the gradient views and returns ``dX``
  (or None when the layer is told its input needs no gradient).

Shapes are per sample (``input_shape``, ``output_shape``); images are
``(C, H, W)``. No method allocates per batch: buffers are sliced to ``n``.
"""

import math

import numpy as np

from fastgd import layers as L
from fastgd._kernels.runtime import codes
from fastgd._kernels.runtime.tuning import NARROW_DENSE_MAX_UNITS

__all__ = ["build_layer", "fuse_conv_pool", "CSRBatch", "SparseJoin", "LayerState", "RuntimeLayer"]


def _numba_kernels(name):
    """The Numba kernel module ``fastgd._kernels.network.<name>`` (``"pooling"`` or
    ``"dropout"``), imported lazily: importing Numba is slow."""
    import importlib

    return importlib.import_module(f"fastgd._kernels.network.{name}")


def _native():
    """The ahead-of-time (Cython) network kernels (:mod:`fastgd._kernels.network.native`)."""
    global _NATIVE
    if _NATIVE is None:
        from fastgd._kernels.network import native

        _NATIVE = native
    return _NATIVE


_NATIVE = None


def row_invariant_dense(X, W, b, out, code):
    """``out = act(X @ W + b)`` with every row computed alone, for predictions.

    BLAS rounds a row of a product differently depending on the matrix sizes
    and on where the row sits in the call, so a prediction through it would
    depend on the other rows predicted with it; the native kernel
    (:func:`~fastgd._kernels.network.native.dense_rows_forward`) does not.
    """
    native = _native()
    X = np.ascontiguousarray(X)
    native.dense_rows_forward(X, W, b, out, code, native.thread_count(X.shape[0] * W.size))


# Overflow in a pass is not an error here: the trainer checks the loss and
# raises DivergenceError (the compiled kernels do not warn either). A network's
# forward and backward passes each run under one such context (entering one
# per layer was a measurable share of a small model's step).
def _divergence_is_checked():
    return np.errstate(over="ignore", invalid="ignore")


def _sparse_kernels():
    """The sparse-input, embedding and activation kernel modules (imported lazily)."""
    from fastgd._kernels.network import activations, embedding, sparse_dense

    return sparse_dense, embedding, activations


class CSRBatch:
    """A batch of sparse rows in CSR form: views of preallocated buffers.

    Attributes
    ----------
    indptr : ndarray of int64, shape (n_rows + 1,)
    indices : ndarray of int64, shape (nnz,)
    data : ndarray, shape (nnz,)
        Compute dtype.
    n_rows, nnz : int
    """

    __slots__ = ("indptr", "indices", "data", "n_rows", "nnz")

    def __init__(self, indptr, indices, data):
        self.indptr, self.indices, self.data = indptr, indices, data
        self.n_rows = indptr.shape[0] - 1
        self.nnz = indices.shape[0]


class LayerState:
    """Buffers of one layer for one batch capacity (a plain attribute bag)."""


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _positive_int(value, name, where):
    if not _is_int(value) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}.")
    return int(value)


def _pair(value, name, where):
    if _is_int(value):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(
            f"{where}: {name} must be a positive integer or a pair of them, got {value!r}."
        )
    return tuple(_positive_int(v, name, where) for v in value)


def _activation_code(activation, where):
    if activation is None:
        return codes.IDENTITY
    if isinstance(activation, str) and activation in codes.ACTIVATION_CODES:
        return codes.ACTIVATION_CODES[activation]
    raise ValueError(
        f"{where}: unknown activation {activation!r}; expected one of "
        f"{sorted(codes.ACTIVATION_CODES)} or None."
    )


def _shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


class ParamSpec:
    """One parameter tensor a layer asks for.

    Attributes
    ----------
    layer : RuntimeLayer
        Owner.
    key : str
        Name inside the layer (``"W"``, ``"b"``).
    shape : tuple of int
        Shape of the view.
    penalized : bool
        Whether the L2 penalty applies (weights yes, biases no).
    init : tuple
        ``("uniform", limit)`` or ``("constant", value)``.
    """

    def __init__(self, layer, key, shape, penalized, init):
        self.layer = layer
        self.key = key
        self.shape = tuple(int(s) for s in shape)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.penalized = penalized
        self.init = init


def _weight_limit(code, fan_in, fan_out):
    """Uniform-init bound: He (√(6/fan_in)) for ReLU, Glorot otherwise."""
    if code == codes.RELU:
        return math.sqrt(6.0 / fan_in)
    return math.sqrt(6.0 / (fan_in + fan_out))


class RuntimeLayer:
    """Base runtime layer: no parameters, identity forward."""

    trainable = False

    def __init__(self, spec, input_shape, where):
        self.spec = spec
        self.input_shape = tuple(input_shape)
        self.where = where
        self.output_shape = self.input_shape

    def param_specs(self):
        return []

    def bind(self, views, grads):
        """Receive parameter and gradient views, keyed like ``param_specs``."""

    def make_state(self, capacity, dtype, training, need_dx):
        st = LayerState()
        st.need_dx = need_dx
        return st

    @property
    def activation_size(self):
        """Values stored per sample in the forward pass (for chunk sizing)."""
        return int(np.prod(self.output_shape, dtype=np.int64))


class SparseJoin:
    """A serial join's input to a first Dense over sparse columns.

    ``[own sparse columns, previous branch's output]`` without densifying
    the sparse part: ``csr`` (a :class:`CSRBatch`) and ``previous`` (a dense
    ``(n, width)`` array).
    """

    __slots__ = ("csr", "previous")

    def __init__(self, csr, previous):
        self.csr, self.previous = csr, previous


class _RowSparseMixin:
    """A weight matrix ``W`` whose gradient can be *row-sparse*.

    After a backward pass on a batch that touched only some rows of ``W``
    (the non-zero columns of sparse input, the codes of an embedding), the
    layer's state holds ``row_grad = (rows, n_touched, G)``: ``G[r]`` is the
    gradient of row ``rows[r]``, and the flat gradient buffer of ``W`` is
    *not* written. The trainer then updates those rows only
    (:mod:`fastgd._engine.row_sparse`). ``weight_scale`` is the lazy L2
    shrink factor of plain SGD (the weights are ``weight_scale · W``).
    """

    row_sparse_key = "W"
    weight_scale = 1.0

    @staticmethod
    def _touched_buffers(st, n_rows, n_entries, width, dtype):
        """(Re)allocate the touched-row buffers for batches of ``n_entries`` entries.

        ``st.slots`` (one slot per entry), ``st.rows`` and ``st.G`` (one per
        distinct row, at most ``n_rows``); they grow, doubling, when a batch
        has more entries than any before.
        """
        if getattr(st, "entry_capacity", -1) >= n_entries:
            return
        st.entry_capacity = max(n_entries, 2 * getattr(st, "entry_capacity", 0))
        cap = int(max(1, min(n_rows, st.entry_capacity)))
        st.slots = np.empty(st.entry_capacity, dtype=np.int64)
        st.rows = np.empty(cap, dtype=np.int64)
        st.G = np.empty((cap, width), dtype=dtype)


class DenseLayer(_RowSparseMixin, RuntimeLayer):
    """Dense layer; as the first layer of a branch over sparse columns it reads a
    :class:`CSRBatch` (non-zeros only) and its weight gradient is row-sparse."""

    trainable = True

    def __init__(self, spec, input_shape, where):
        super().__init__(spec, input_shape, where)
        self.units = _positive_int(spec.units, "units", where)
        self.code = _activation_code(spec.activation, where)
        if len(self.input_shape) != 1:
            raise ValueError(
                f"{where}: Dense expects flat input but receives samples of shape "
                f"{_shape_str(self.input_shape)}; put Flatten() before it."
            )
        self.n_in = self.input_shape[0]
        self.output_shape = (self.units,)
        # Few outputs (a classifier's output layer): trained through the
        # native narrow kernels, not BLAS (see NARROW_DENSE_MAX_UNITS).
        self.narrow = self.units <= NARROW_DENSE_MAX_UNITS

    def param_specs(self):
        limit = _weight_limit(self.code, self.n_in, self.units)
        return [
            ParamSpec(self, "W", (self.n_in, self.units), True, ("uniform", limit)),
            ParamSpec(self, "b", (self.units,), False, ("constant", 0.0)),
        ]

    def bind(self, views, grads):
        self.W, self.b = views["W"], views["b"]
        self.dW, self.db = grads["W"], grads["b"]

    def make_state(self, capacity, dtype, training, need_dx):
        st = super().make_state(capacity, dtype, training, need_dx)
        st.out = np.empty((capacity, self.units), dtype=dtype)
        # The input gradient buffer is allocated by the first dense backward
        # pass: a layer fed sparse batches never needs (capacity, n_in) values.
        st.dx = None
        st.capacity = capacity
        st.X = None
        st.row_grad = None
        st.dtype = dtype
        return st

    def forward(self, X, st, n, training):
        # The product through NumPy's BLAS, bias and activation in one
        # ahead-of-time pass (no JIT compilation for dense layers).
        out = st.out[:n]
        if isinstance(X, (CSRBatch, SparseJoin)):
            return self._sparse_forward(X, st, out, training)
        if training and self.narrow:
            native = _native()
            X = np.ascontiguousarray(X)
            work = X.shape[0] * self.W.size
            native.narrow_dense_forward(
                X, self.W, self.b, out, self.code, native.thread_count(work)
            )
        elif training:
            np.dot(X, self.W, out=out)
            _native().bias_activation_rows(out, self.b, self.code)
        else:
            row_invariant_dense(X, self.W, self.b, out, self.code)
        st.X = X
        return out

    def _sparse_forward(self, X, st, out, training):
        """``act(b + scale·(X_csr @ W_own + previous @ W_previous))``; marks the touched rows.

        ``W_previous`` are the last rows of W when a serial join hands the
        previous branch's (dense) output to this layer with its sparse columns.
        """
        sparse_dense = _sparse_kernels()[0]
        joined = isinstance(X, SparseJoin)
        csr = X.csr if joined else X
        n_previous = X.previous.shape[1] if joined else 0
        code = codes.IDENTITY if joined else self.code
        sparse_dense.sparse_dense_forward(
            csr.indptr, csr.indices, csr.data, self.W, self.weight_scale, self.b, out, code
        )
        if joined:
            own = self.n_in - n_previous
            if getattr(st, "joined_out", None) is None:
                st.joined_out = np.empty_like(st.out)
            part = st.joined_out[: out.shape[0]]
            if training:
                np.dot(X.previous, self.W[own:], out=part)
            else:
                no_bias = np.zeros(self.units, dtype=part.dtype)
                row_invariant_dense(X.previous, self.W[own:], no_bias, part, codes.IDENTITY)
            part *= part.dtype.type(self.weight_scale)
            out += part
            _sparse_kernels()[2].activation_forward(out, self.code)
        if training:
            if not hasattr(st, "slot_of"):
                st.slot_of = np.full(self.n_in, -1, dtype=np.int64)
            self._touched_buffers(st, self.n_in, csr.nnz + n_previous, self.units, st.dtype)
            st.n_touched = sparse_dense.mark_touched_rows(
                csr.indices, csr.nnz, st.slot_of, st.rows, st.slots
            )
            if joined:
                # Every row of the previous branch's part is touched.
                st.rows[st.n_touched : st.n_touched + n_previous] = np.arange(own, self.n_in)
        st.X = X
        return out

    def _sparse_backward(self, dA, st, n):
        joined = isinstance(st.X, SparseJoin)
        csr = st.X.csr if joined else st.X
        _sparse_kernels()[0].sparse_dense_backward(
            csr.indptr, st.slots, csr.data, st.out[:n], dA, self.code, st.G, st.n_touched, self.db
        )
        if not joined:
            st.row_grad = (st.rows, st.n_touched, st.G)
            return None
        # dA now holds dZ: the previous part's rows get previousᵀ dZ, and the
        # previous branch gets dZ · (scale · W_previous)ᵀ.
        previous = st.X.previous
        n_previous = previous.shape[1]
        own = self.n_in - n_previous
        np.dot(previous.T, dA, out=st.G[st.n_touched : st.n_touched + n_previous])
        st.row_grad = (st.rows, st.n_touched + n_previous, st.G)
        if not st.need_dx:
            return None
        if getattr(st, "dprevious", None) is None:
            st.dprevious = np.empty((st.capacity, n_previous), dtype=st.dtype)
        dprevious = st.dprevious[:n]
        np.dot(dA, self.W[own:].T, out=dprevious)
        dprevious *= dprevious.dtype.type(self.weight_scale)
        return dprevious

    def backward(self, dA, st, n):
        if isinstance(st.X, (CSRBatch, SparseJoin)):
            return self._sparse_backward(dA, st, n)
        st.row_grad = None
        dx = None
        if st.need_dx:
            if st.dx is None:
                st.dx = np.empty((st.capacity, self.n_in), dtype=st.dtype)
            dx = st.dx[:n]
        # dZ = dA · f'(z) in place, then dW = Xᵀ dZ, db = Σ_rows dZ, dX = dZ Wᵀ.
        if self.code != codes.IDENTITY:
            _native().activation_backward(st.out[:n].reshape(-1), dA.reshape(-1), self.code)
        np.add.reduce(dA, axis=0, out=self.db)  # np.sum, without its dispatch cost
        if self.narrow:
            native = _native()
            work = n * self.W.size
            native.narrow_dense_backward(
                st.X, np.ascontiguousarray(dA), self.W, self.dW, dx, native.thread_count(work)
            )
            return dx
        np.dot(st.X.T, dA, out=self.dW)
        if dx is not None:
            np.dot(dA, self.W.T, out=dx)
        return dx


class Conv2DLayer(RuntimeLayer):
    trainable = True

    def __init__(self, spec, input_shape, where):
        super().__init__(spec, input_shape, where)
        if len(self.input_shape) != 3:
            raise ValueError(
                f"{where}: Conv2D expects (C, H, W) images but receives samples of "
                f"shape {_shape_str(self.input_shape)}; start the branch with "
                "Reshape((C, H, W)) or Reshape((H, W, C), channels_last=True)."
            )
        self.filters = _positive_int(spec.filters, "filters", where)
        self.kh, self.kw = _pair(spec.kernel_size, "kernel_size", where)
        self.stride = _positive_int(spec.stride, "stride", where)
        self.code = _activation_code(spec.activation, where)
        c, h, w = self.input_shape
        s = self.stride
        if spec.padding == "valid":
            if self.kh > h or self.kw > w:
                raise ValueError(
                    f"{where}: the {self.kh}x{self.kw} kernel is larger than its "
                    f"{h}x{w} input (padding='valid')."
                )
            oh, ow = (h - self.kh) // s + 1, (w - self.kw) // s + 1
            self.pad_top = self.pad_left = 0
        elif spec.padding == "same":
            oh, ow = -(-h // s), -(-w // s)
            # Total padding so that the last window ends at the padded border;
            # the odd pixel goes to the bottom / right (TensorFlow's rule).
            pad_h = max((oh - 1) * s + self.kh - h, 0)
            pad_w = max((ow - 1) * s + self.kw - w, 0)
            self.pad_top, self.pad_left = pad_h // 2, pad_w // 2
        else:
            raise ValueError(f"{where}: padding must be 'valid' or 'same', got {spec.padding!r}.")
        self.channels = c
        self.output_shape = (self.filters, oh, ow)
        # A MaxPool2D right after this layer is fused into it (see
        # :func:`fuse_conv_pool`): ``pool`` is then that layer.
        self.pool = None

    @property
    def activation_size(self):
        # Output (or the pooled output and its positions) plus the workspaces.
        ckk = self.channels * self.kh * self.kw
        out = int(np.prod(self.output_shape))
        if self.pool is not None:
            out = 2 * int(np.prod(self.pool.output_shape))
        return out + int(np.prod(self.input_shape)) * 2 + ckk * 4

    def param_specs(self):
        fan_in = self.channels * self.kh * self.kw
        fan_out = self.filters * self.kh * self.kw
        limit = _weight_limit(self.code, fan_in, fan_out)
        return [
            ParamSpec(
                self,
                "W",
                (self.filters, self.channels, self.kh, self.kw),
                True,
                ("uniform", limit),
            ),
            ParamSpec(self, "b", (self.filters,), False, ("constant", 0.0)),
        ]

    def bind(self, views, grads):
        self.W, self.b = views["W"], views["b"]
        self.dW, self.db = grads["W"], grads["b"]

    def _geometry(self):
        c, h, w = self.input_shape
        _, oh, ow = self.output_shape
        return (
            c,
            h,
            w,
            self.filters,
            self.kh,
            self.kw,
            self.stride,
            self.pad_top,
            self.pad_left,
            oh,
            ow,
        )

    def make_state(self, capacity, dtype, training, need_dx):
        st = super().make_state(capacity, dtype, training, need_dx)
        native = _native()
        dtype = np.dtype(dtype)
        threads = native.max_threads()
        forward, backward, partial = native.workspace_sizes(
            *self._geometry(), dtype.itemsize, self.pool is not None, training and need_dx
        )
        if self.pool is None:
            st.out = np.empty((capacity,) + self.output_shape, dtype=dtype)
            st.argmax = None
        else:
            st.out = np.empty((capacity,) + self.pool.output_shape, dtype=dtype)
            st.argmax = np.empty((capacity,) + self.pool.output_shape, dtype=np.int32)
        st.packed = np.empty(
            native.packed_weights_size(self.filters, self.channels, self.kh, self.kw),
            dtype=dtype,
        )
        st.dx = None
        if training:
            if need_dx:
                st.dx = np.empty((capacity,) + self.input_shape, dtype=dtype)
            n_blocks = -(-capacity // native.GRAD_BLOCK)
            st.partials = native.aligned_rows(n_blocks, partial, dtype)
        st.workspace = native.aligned_rows(
            threads, max(forward, backward if training else 0), dtype
        )
        st.X = None
        return st

    def _threads(self, n):
        _, oh, ow = self.output_shape
        return _native().thread_count(n * self.W.size * oh * ow)

    def forward(self, X, st, n, training):
        native = _native()
        out = st.out[:n]
        native.pack_weights(self.W, st.packed)
        _, oh, ow = self.output_shape
        threads = self._threads(n)
        if self.pool is None:
            native.conv2d_forward(
                X,
                self.W,
                self.b,
                self.stride,
                self.pad_top,
                self.pad_left,
                out,
                self.code,
                st.packed,
                st.workspace,
                threads,
            )
        else:
            pool = self.pool
            native.conv2d_pool_forward(
                X,
                self.W,
                self.b,
                self.stride,
                self.pad_top,
                self.pad_left,
                oh,
                ow,
                self.code,
                pool.ph,
                pool.pw,
                pool.stride,
                out,
                st.argmax[:n],
                st.packed,
                st.workspace,
                threads,
            )
        st.X = X
        return out

    def backward(self, dA, st, n):
        dx = st.dx[:n] if st.dx is not None else None
        _, oh, ow = self.output_shape
        _native().conv2d_backward(
            st.X,
            self.W,
            st.out[:n],
            dA,
            None if st.argmax is None else st.argmax[:n],
            self.code,
            self.stride,
            self.pad_top,
            self.pad_left,
            oh,
            ow,
            self.dW,
            self.db,
            dx,
            st.workspace,
            st.partials,
            self._threads(n),
            _native().dense_weight_grad(self.channels * self.kh * self.kw, self.pool is not None),
        )
        return dx


class _PoolLayer(RuntimeLayer):
    kind = "pool"

    def __init__(self, spec, input_shape, where):
        super().__init__(spec, input_shape, where)
        name = type(spec).__name__
        if len(self.input_shape) != 3:
            raise ValueError(
                f"{where}: {name} expects (C, H, W) images but receives samples of "
                f"shape {_shape_str(self.input_shape)}."
            )
        self.ph, self.pw = _pair(spec.pool_size, "pool_size", where)
        if spec.stride is None:
            if self.ph != self.pw:
                raise ValueError(
                    f"{where}: a non-square pool_size {spec.pool_size!r} needs an explicit stride."
                )
            self.stride = self.ph
        else:
            self.stride = _positive_int(spec.stride, "stride", where)
        c, h, w = self.input_shape
        if self.ph > h or self.pw > w:
            raise ValueError(
                f"{where}: the {self.ph}x{self.pw} pooling window is larger than its {h}x{w} input."
            )
        s = self.stride
        self.output_shape = (c, (h - self.ph) // s + 1, (w - self.pw) // s + 1)

    def make_state(self, capacity, dtype, training, need_dx):
        st = super().make_state(capacity, dtype, training, need_dx)
        st.out = np.empty((capacity,) + self.output_shape, dtype=dtype)
        st.dx = (
            np.empty((capacity,) + self.input_shape, dtype=dtype) if training and need_dx else None
        )
        return st


class MaxPoolLayer(_PoolLayer):
    # True when the Conv2D before it computes the pooling (fuse_conv_pool):
    # this layer then passes values and gradients through.
    fused = False

    def make_state(self, capacity, dtype, training, need_dx):
        if self.fused:
            return RuntimeLayer.make_state(self, capacity, dtype, training, need_dx)
        st = super().make_state(capacity, dtype, training, need_dx)
        st.argmax = np.empty((capacity,) + self.output_shape, dtype=np.int64)
        return st

    @property
    def activation_size(self):
        return 0 if self.fused else super().activation_size

    def forward(self, X, st, n, training):
        if self.fused:
            return X
        out = st.out[:n]
        pooling = _numba_kernels("pooling")
        pooling.maxpool2d_forward(X, self.ph, self.pw, self.stride, out, st.argmax[:n])
        return out

    def backward(self, dA, st, n):
        if self.fused:
            return dA
        if st.dx is None:
            return None
        dx = st.dx[:n]
        _numba_kernels("pooling").maxpool2d_backward(dA, st.argmax[:n], dx)
        return dx


class AvgPoolLayer(_PoolLayer):
    def forward(self, X, st, n, training):
        out = st.out[:n]
        _numba_kernels("pooling").avgpool2d_forward(X, self.ph, self.pw, self.stride, out)
        return out

    def backward(self, dA, st, n):
        if st.dx is None:
            return None
        dx = st.dx[:n]
        _numba_kernels("pooling").avgpool2d_backward(dA, self.ph, self.pw, self.stride, dx)
        return dx


class FlattenLayer(RuntimeLayer):
    def __init__(self, spec, input_shape, where):
        super().__init__(spec, input_shape, where)
        self.output_shape = (int(np.prod(self.input_shape, dtype=np.int64)),)

    def forward(self, X, st, n, training):
        # Buffers are C-contiguous, so this is a view.
        return X.reshape(n, self.output_shape[0])

    def backward(self, dA, st, n):
        return dA.reshape((n,) + self.input_shape) if st.need_dx else None


class ReshapeLayer(RuntimeLayer):
    """Reshape, with an optional (H, W, C) → (C, H, W) transpose.

    When the network folds the transpose into the column gather of its
    branch (the layer is the first of the branch), ``folded`` is True and the
    layer is a free view.
    """

    def __init__(self, spec, input_shape, where):
        super().__init__(spec, input_shape, where)
        shape = spec.shape
        if _is_int(shape):
            shape = (shape,)
        if not isinstance(shape, (tuple, list)) or not shape:
            raise ValueError(f"{where}: shape must be a tuple of positive integers, got {shape!r}.")
        shape = tuple(_positive_int(s, "every entry of shape", where) for s in shape)
        size = int(np.prod(self.input_shape, dtype=np.int64))
        if int(np.prod(shape, dtype=np.int64)) != size:
            raise ValueError(
                f"{where}: Reshape{_shape_str(shape)} needs "
                f"{int(np.prod(shape, dtype=np.int64))} values per sample but receives "
                f"{size} (samples of shape {_shape_str(self.input_shape)})."
            )
        self.channels_last = bool(spec.channels_last)
        if self.channels_last:
            if len(shape) != 3:
                raise ValueError(
                    f"{where}: channels_last=True needs an (H, W, C) shape, got {shape!r}."
                )
            h, w, c = shape
            self.hwc = (h, w, c)
            self.output_shape = (c, h, w)
        else:
            self.output_shape = (1,) + shape if len(shape) == 2 else shape
        self.folded = False

    def column_permutation(self):
        """Flat index, in (H, W, C) storage, of each (C, H, W) output value."""
        h, w, c = self.hwc
        return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).ravel()

    def make_state(self, capacity, dtype, training, need_dx):
        st = super().make_state(capacity, dtype, training, need_dx)
        st.out = st.dx = None
        if self.channels_last and not self.folded:
            st.out = np.empty((capacity,) + self.output_shape, dtype=dtype)
            if training and need_dx:
                st.dx = np.empty((capacity,) + self.input_shape, dtype=dtype)
        return st

    def forward(self, X, st, n, training):
        if st.out is None:
            return X.reshape((n,) + self.output_shape)
        out = st.out[:n]
        np.copyto(out, X.reshape((n,) + self.hwc).transpose(0, 3, 1, 2))
        return out

    def backward(self, dA, st, n):
        if not st.need_dx:
            return None
        if st.dx is None:
            return dA.reshape((n,) + self.input_shape)
        dx = st.dx[:n]
        np.copyto(dx.reshape((n,) + self.hwc), dA.transpose(0, 2, 3, 1))
        return dx


class DropoutLayer(RuntimeLayer):
    def __init__(self, spec, input_shape, where):
        super().__init__(spec, input_shape, where)
        rate = spec.rate
        if (
            isinstance(rate, (bool, np.bool_))
            or not isinstance(rate, (int, float, np.integer, np.floating))
            or not 0.0 <= rate < 1.0
        ):
            raise ValueError(f"{where}: Dropout rate must be in [0, 1), got {rate!r}.")
        self.rate = float(rate)

    def make_state(self, capacity, dtype, training, need_dx):
        st = super().make_state(capacity, dtype, training, need_dx)
        st.active = training and self.rate > 0.0
        st.rng = None  # set by the network (a numpy Generator)
        if st.active:
            shape = (capacity,) + self.input_shape
            st.mask = np.empty(shape, dtype=dtype)
            st.out = np.empty(shape, dtype=dtype)
            st.dx = np.empty(shape, dtype=dtype) if need_dx else None
        return st

    def forward(self, X, st, n, training):
        if not (training and st.active):
            return X
        mask, out = st.mask[:n], st.out[:n]
        st.rng.random(out=mask, dtype=mask.dtype.type)
        _numba_kernels("dropout").dropout_forward(X, mask, self.rate, out)
        return out

    def backward(self, dA, st, n):
        if not st.need_dx:
            return None
        if not st.active:
            return dA
        dx = st.dx[:n]
        _numba_kernels("dropout").dropout_backward(dA, st.mask[:n], self.rate, dx)
        return dx


class EmbeddingLayer(_RowSparseMixin, RuntimeLayer):
    """Embedding lookup (with pooling) over a branch's integer columns.

    The first layer of its branch; its input is the codes in the compute
    dtype. The gradient of the table is always row-sparse.
    """

    trainable = True

    def __init__(self, spec, input_shape, where):
        super().__init__(spec, input_shape, where)
        from fastgd._kernels.network.embedding import POOLING_CODES

        if len(self.input_shape) != 1:
            raise ValueError(
                f"{where}: Embedding reads integer columns but receives samples of shape "
                f"{_shape_str(self.input_shape)}; it must be the first layer of its branch."
            )
        self.input_dim = _positive_int(spec.input_dim, "input_dim", where)
        self.dim = _positive_int(spec.output_dim, "output_dim", where)
        pooling = spec.pooling
        if not (pooling is None or (isinstance(pooling, str) and pooling in POOLING_CODES)):
            raise ValueError(
                f"{where}: pooling must be 'mean', 'sum', 'max' or None, got {pooling!r}."
            )
        self.pooling = POOLING_CODES[pooling]
        self.max_pooling = pooling == "max"
        padding_idx = spec.padding_idx
        if padding_idx is not None and (
            not _is_int(padding_idx) or not 0 <= padding_idx < self.input_dim
        ):
            raise ValueError(
                f"{where}: padding_idx must be None or an integer in [0, {self.input_dim}), "
                f"got {padding_idx!r}."
            )
        self.padding = -1 if padding_idx is None else int(padding_idx)
        self.n_columns = self.input_shape[0]
        width = self.n_columns * self.dim if pooling is None else self.dim
        self.output_shape = (width,)

    def check_codes(self, values, column_of=None):
        """Raise a ValueError unless every value is an integer code in range.

        Parameters
        ----------
        values : ndarray
            The branch's columns (dense), or the stored values of a sparse
            matrix (its implicit zeros are code 0).
        column_of : callable, optional
            Maps the flat position of a bad value to its column, for the message.
        """
        values = np.asarray(values)
        with np.errstate(invalid="ignore"):
            bad = (values != np.floor(values)) | (values < 0) | (values >= self.input_dim)
        if not bad.any():
            return
        flat = int(np.flatnonzero(bad.ravel())[0])
        value = values.ravel()[flat]
        column = flat % self.n_columns if column_of is None else column_of(flat)
        raise ValueError(
            f"{self.where}: Embedding codes must be integers in [0, {self.input_dim}); "
            f"column {column} of the branch holds {float(value)!r}."
        )

    def param_specs(self):
        # Keras's default start: small vectors, so the layers after it start
        # near their linear regime (it generalised better than unit variance
        # on the one-hot comparison of the tests).
        return [ParamSpec(self, "W", (self.input_dim, self.dim), True, ("uniform", 0.05))]

    def bind(self, views, grads):
        self.W = views["W"]

    def make_state(self, capacity, dtype, training, need_dx):
        st = super().make_state(capacity, dtype, training, need_dx)
        st.out = np.empty((capacity,) + self.output_shape, dtype=dtype)
        # The arg-max positions (max pooling only: a dummy otherwise).
        shape = (capacity, self.dim) if self.max_pooling else (1, 1)
        st.argmax = np.empty(shape, dtype=np.int64)
        st.row_grad = None
        st.dx = None
        if training:
            st.code_slots = np.empty((capacity, self.n_columns), dtype=np.int64)
            st.slot_of = np.full(self.input_dim, -1, dtype=np.int64)
            self._touched_buffers(st, self.input_dim, capacity * self.n_columns, self.dim, dtype)
        return st

    def forward(self, X, st, n, training):
        embedding = _sparse_kernels()[1]
        out = st.out[:n]
        argmax = st.argmax[:n] if self.max_pooling else st.argmax
        if training:
            st.n_touched = embedding.embedding_touched_rows(
                X, self.padding, st.slot_of, st.rows, st.code_slots[:n]
            )
        embedding.embedding_forward(
            X, self.W, self.weight_scale, self.pooling, self.padding, out, argmax
        )
        return out

    def backward(self, dA, st, n):
        argmax = st.argmax[:n] if self.max_pooling else st.argmax
        _sparse_kernels()[1].embedding_backward(
            st.code_slots[:n], dA, self.pooling, argmax, st.G, st.n_touched
        )
        st.row_grad = (st.rows, st.n_touched, st.G)
        return None


_RUNTIME = {
    L.Dense: DenseLayer,
    L.Conv2D: Conv2DLayer,
    L.MaxPool2D: MaxPoolLayer,
    L.AvgPool2D: AvgPoolLayer,
    L.Flatten: FlattenLayer,
    L.Reshape: ReshapeLayer,
    L.Dropout: DropoutLayer,
    L.Embedding: EmbeddingLayer,
}


def fuse_conv_pool(layers):
    """Let every Conv2D directly followed by a MaxPool2D compute the pooling itself.

    The fused layer keeps only the pooled output and the position of each
    maximum (the conv output never leaves a per-thread buffer); the pool
    layer becomes a pass-through. Same results as the two layers apart, to
    rounding (tested).
    """
    for conv, pool in zip(layers, layers[1:], strict=False):
        if isinstance(conv, Conv2DLayer) and type(pool) is MaxPoolLayer:
            conv.pool = pool
            pool.fused = True


def build_layer(spec, input_shape, where):
    """Runtime layer for a public layer specification.

    Raises
    ------
    ValueError
        If ``spec`` is not a fastgd layer or does not fit ``input_shape``;
        the message starts with ``where``.
    """
    cls = _RUNTIME.get(type(spec))
    if cls is None:
        for base, candidate in _RUNTIME.items():
            if isinstance(spec, base):
                cls = candidate
                break
    if cls is None:
        raise ValueError(
            f"{where}: expected a layer from fastgd.layers (Dense, Conv2D, MaxPool2D, "
            f"AvgPool2D, Flatten, Dropout, Reshape, Embedding), got {spec!r}."
        )
    return cls(spec, input_shape, where)
