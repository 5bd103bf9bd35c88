"""Layer specifications for fastgd's networks.

The classes here are plain *parameter holders*: they store their constructor
arguments and nothing else, exactly like scikit-learn estimators, so that
:func:`sklearn.base.clone`, ``get_params`` / ``set_params`` and grid search
reach them. The engine turns them into runtime layers (which own weights and
buffers) when a model is fitted; a layer object can therefore be shared by
several models and reused between fits.

Images are handled in ``(channels, height, width)`` order inside a network.
A branch receives flat columns, so an image branch starts with
:class:`Reshape`, which says how the columns are laid out.

Activations are ``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"identity"`` or
``None`` (the same as ``"identity"``).

Examples
--------
>>> from fastgd.layers import Conv2D, Dense, Flatten, MaxPool2D, Reshape
>>> image_branch = [
...     Reshape((32, 32, 3), channels_last=True),
...     Conv2D(32, 3, activation="relu"),
...     MaxPool2D(2),
...     Flatten(),
... ]
>>> text_branch = [Dense(64, activation="relu"), Dense(32, activation="relu")]
"""

from sklearn.base import BaseEstimator

__all__ = [
    "Layer",
    "Dense",
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
    "Flatten",
    "Dropout",
    "Reshape",
    "ConcatPrevious",
    "Embedding",
    "ACTIVATIONS",
]

#: Accepted values of every ``activation`` parameter.
ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", None)


class Layer(BaseEstimator):
    """Base class of fastgd's layer specifications.

    Subclasses only store their constructor arguments; validation happens
    when the network that uses them is built (at ``fit``), and errors name
    the branch and the position of the layer.
    """

    def __repr__(self, N_CHAR_MAX=700):
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({params})"


class Dense(Layer):
    """Fully connected layer: ``activation(X @ W + b)``.

    Parameters
    ----------
    units : int
        Number of output units.
    activation : {"relu", "tanh", "sigmoid", "identity"} or None, default=None
        Activation applied to the affine output; None means identity.

    Notes
    -----
    Weights are initialised with He's uniform rule (``U(±√(6 / fan_in))``)
    when the activation is ReLU and Glorot's uniform rule
    (``U(±√(6 / (fan_in + fan_out)))``) otherwise; biases start at zero.
    The input must be flat: put :class:`Flatten` after convolution or pooling.
    """

    def __init__(self, units, activation=None):
        self.units = units
        self.activation = activation


class Conv2D(Layer):
    """Two-dimensional convolution (cross-correlation) on ``(C, H, W)`` images.

    Parameters
    ----------
    filters : int
        Number of output channels.
    kernel_size : int or tuple of 2 ints
        Height and width of the kernel (an int means a square kernel).
    stride : int, default=1
        Step between two applications of the kernel, in both directions.
    padding : {"valid", "same"}, default="valid"
        ``"valid"``: no padding, the output shrinks by ``kernel_size - 1``.
        ``"same"``: zero padding so that the output has ``ceil(H / stride)``
        rows and ``ceil(W / stride)`` columns (extra padding goes to the
        bottom and right, as in TensorFlow).
    activation : {"relu", "tanh", "sigmoid", "identity"} or None, default=None
        Activation applied to the convolution output.

    Notes
    -----
    Weights have shape ``(filters, C, KH, KW)`` and are initialised like
    :class:`Dense` with ``fan_in = C·KH·KW`` and ``fan_out = filters·KH·KW``.
    """

    def __init__(self, filters, kernel_size, stride=1, padding="valid", activation=None):
        self.filters = filters
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.activation = activation


class MaxPool2D(Layer):
    """Max pooling over ``pool_size`` windows of each channel.

    Parameters
    ----------
    pool_size : int or tuple of 2 ints, default=2
        Height and width of the window.
    stride : int or None, default=None
        Step between windows; None means non-overlapping windows
        (``stride = pool_size``, which must then be square).

    Notes
    -----
    Windows that would run past the border are dropped ("valid" pooling).
    """

    def __init__(self, pool_size=2, stride=None):
        self.pool_size = pool_size
        self.stride = stride


class AvgPool2D(Layer):
    """Average pooling over ``pool_size`` windows of each channel.

    Parameters
    ----------
    pool_size : int or tuple of 2 ints, default=2
        Height and width of the window.
    stride : int or None, default=None
        Step between windows; None means non-overlapping windows
        (``stride = pool_size``, which must then be square).
    """

    def __init__(self, pool_size=2, stride=None):
        self.pool_size = pool_size
        self.stride = stride


class Flatten(Layer):
    """Flatten each sample to one dimension (``(C, H, W)`` → ``C·H·W``, C-order)."""

    def __init__(self):
        pass


class Dropout(Layer):
    """Inverted dropout: during training, zero each value with probability ``rate``.

    Kept values are scaled by ``1 / (1 - rate)`` so that nothing changes at
    prediction time, where the layer is the identity. The random masks are
    drawn from the estimator's ``random_state``.

    Parameters
    ----------
    rate : float in [0, 1)
        Probability of dropping each value.
    """

    def __init__(self, rate):
        self.rate = rate


class Reshape(Layer):
    """Turn a branch's flat columns into an image (or any other shape).

    Parameters
    ----------
    shape : tuple of ints
        With ``channels_last=False``: the target shape, read from the columns
        in C order; for an image ``(C, H, W)``. With ``channels_last=True``:
        the image is stored as ``(H, W, C)`` (the Keras layout: a 32×32×3
        image flattened to 3,072 columns with the 3 colour values of a pixel
        next to each other) and is transposed to ``(C, H, W)`` for the
        convolutions.
    channels_last : bool, default=False
        Whether ``shape`` is ``(H, W, C)`` rather than ``(C, H, W)``. Only
        3-dimensional shapes can be channels-last.

    Notes
    -----
    A 2-dimensional ``shape`` ``(H, W)`` is read as a one-channel image
    ``(1, H, W)``.
    """

    def __init__(self, shape, channels_last=False):
        self.shape = shape
        self.channels_last = channels_last


class ConcatPrevious(Layer):
    """Where the previous branch's output joins this branch (``fusion="serial"``).

    With serial (cascade) fusion every branch after the first reads its own
    columns *and* the output of the branch before it. By default that output
    is concatenated to the branch's input columns; put ``ConcatPrevious()``
    in the branch's layer list to concatenate it to the input of the layer
    that follows instead (for example the first :class:`Dense` after a
    convolution stack's :class:`Flatten`), or at the end of the list to
    concatenate it to the branch's own output. The values there must be
    flat: ``[own values, previous branch's output]`` is the input of the next
    layer. The layer has no parameters; it is an error with any other fusion
    and in the first branch.

    Examples
    --------
    >>> from fastgd.layers import ConcatPrevious, Conv2D, Dense, Flatten, Reshape
    >>> image_branch = [
    ...     Reshape((1, 8, 8)), Conv2D(8, 3, activation="relu"), Flatten(),
    ...     ConcatPrevious(),                 # the previous branch's output joins here
    ...     Dense(32, activation="relu"),     # reads [conv features, previous output]
    ... ]
    """

    def __init__(self):
        pass


class Embedding(Layer):
    """A learned vector per integer code: categories or token ids.

    The layer must be the first of its branch: it reads the branch's columns
    as integer codes in ``[0, input_dim)`` (stored as numbers in X, for
    example the output of :class:`~sklearn.preprocessing.OrdinalEncoder` or
    a padded sequence of token ids). Codes that are not integers or fall out
    of range raise a ``ValueError`` naming the branch, at ``fit`` and at
    ``predict``.

    Parameters
    ----------
    input_dim : int
        Number of codes (rows of the table).
    output_dim : int
        Length of each vector.
    pooling : {"mean", "sum", "max"} or None, default="mean"
        None: one vector per column, concatenated (a categorical column each:
        the output has ``n_columns × output_dim`` values). Otherwise the
        columns are one sequence of token ids pooled into one vector of
        ``output_dim`` values (as PyTorch's ``EmbeddingBag``); a sample made
        only of padding gives zeros.
    padding_idx : int or None, default=None
        A code that means "no token": it contributes nothing to the output
        (zeros with ``pooling=None``) and its row is never trained.

    Notes
    -----
    The table starts as uniform draws in ``[−0.05, 0.05]`` (Keras's
    default); the padding row is never read. A batch's
    gradient and optimizer step touch only the rows of the codes it
    contains (lazy updates for the optimizers with state, see the README's
    section on sparse input).

    Examples
    --------
    >>> from fastgd.layers import Dense, Embedding
    >>> category_branch = [Embedding(50, 8, pooling=None), Dense(16, activation="relu")]
    >>> text_branch = [Embedding(10_000, 32, pooling="mean", padding_idx=0)]
    """

    def __init__(self, input_dim, output_dim, pooling="mean", padding_idx=None):
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.pooling = pooling
        self.padding_idx = padding_idx
