"""Branch specifications: which columns of X feed which layers.

A branch is ``(name, layers, columns)`` or ``(name, layers, columns,
transformer)``, in the manner of scikit-learn's ``ColumnTransformer``.
``columns`` selects the branch's input columns of X:

* a ``slice`` (``slice(0, 64)``) with non-negative bounds inside X,
* a list / array of non-negative ints,
* a boolean mask of length ``n_features``,
* a list of column names (X must then be a pandas DataFrame),
* a single int or a single name (one column; a branch transformer then
  receives it as a 1-D array, as in ``ColumnTransformer``, which is what a
  text vectorizer wants),
* a callable, called with X in ``fit`` (as ``ColumnTransformer`` does), that
  returns one of the above: ``make_column_selector(pattern="^px")`` picks
  3,072 pixel columns by name.

Column specs are checked strictly and alike for every form: an index or a
slice bound outside X, a negative index, a column repeated in a branch and,
unless the estimator allows it, a column read by two branches are errors
naming the branches.

The optional ``transformer`` (any scikit-learn transformer: a
``TfidfVectorizer``, a ``StandardScaler``, a ``Pipeline``...) is cloned and
fitted on the branch's columns in ``fit``; the branch's layers read its
output, whose width is known only then.

The helpers here validate branch lists and resolve ``columns`` to a slice
(when the columns are a contiguous range in order, so that the network can
read a view of X) or an int array. :func:`stack_modalities` builds X and the
column of each modality from one array per modality.
"""

import numbers

import numpy as np

from fastgd.layers import Layer

__all__ = [
    "stack_modalities",
    "validate_branches",
    "branch_transformers",
    "resolve_columns",
    "check_overlap",
    "BranchParamsMixin",
]


def _is_transformer(obj):
    return hasattr(obj, "fit") and (hasattr(obj, "transform") or hasattr(obj, "fit_transform"))


def validate_branches(branches, reserved=()):
    """Check the structure of a branch list; return it as a list of tuples.

    Parameters
    ----------
    branches : list of (str, list of Layer, columns[, transformer])
    reserved : collection of str
        Names a branch may not take (the estimator's parameter names).

    Returns
    -------
    specs : list of (str, list of Layer, columns)
        The transformers are read by :func:`branch_transformers`.

    Raises
    ------
    ValueError
        On a malformed entry, an empty list, a duplicate or reserved name,
        a name containing ``"__"``, or a transformer that is not one.
    """
    if not isinstance(branches, (list, tuple)) or len(branches) == 0:
        raise ValueError(
            "branches must be a non-empty list of (name, layers, columns) or "
            f"(name, layers, columns, transformer) tuples, got {branches!r}."
        )
    out = []
    seen = set()
    for i, entry in enumerate(branches):
        if not isinstance(entry, (list, tuple)) or len(entry) not in (3, 4):
            raise ValueError(
                f"Branch {i} must be a (name, layers, columns) or (name, layers, columns, "
                f"transformer) tuple, got {entry!r}."
            )
        name, layers, columns = entry[:3]
        if not isinstance(name, str) or not name:
            raise ValueError(f"Branch {i}: the name must be a non-empty string, got {name!r}.")
        if "__" in name:
            raise ValueError(f"Branch {name!r}: a branch name must not contain '__'.")
        if name in reserved:
            raise ValueError(
                f"Branch {name!r}: the name clashes with a parameter of the estimator; "
                "choose another name."
            )
        if name in seen:
            raise ValueError(f"Branch {name!r}: branch names must be unique.")
        seen.add(name)
        transformer = entry[3] if len(entry) == 4 else None
        if transformer is not None and not _is_transformer(transformer):
            raise ValueError(
                f"Branch {name!r}: the fourth element must be a scikit-learn transformer "
                f"(with fit and transform) or None, got {transformer!r}."
            )
        if isinstance(layers, Layer):
            layers = [layers]
        if not isinstance(layers, (list, tuple)):
            raise ValueError(
                f"Branch {name!r}: layers must be a list of fastgd.layers objects, got {layers!r}."
            )
        for j, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ValueError(
                    f"Branch {name!r}, layer {j}: expected a layer from fastgd.layers, "
                    f"got {layer!r}."
                )
        out.append((name, list(layers), columns))
    return out


def branch_transformers(branches):
    """The transformer of every branch (None where it has none), in order.

    Parameters
    ----------
    branches : list of (str, list of Layer, columns[, transformer])
        As validated by :func:`validate_branches`.

    Returns
    -------
    transformers : list of (transformer or None)
    """
    return [entry[3] if len(entry) == 4 else None for entry in branches]


def _check_slice(where, columns, n_features):
    """Indices of a slice spec, refusing negative bounds, bounds past X and non-positive steps."""
    for bound in ("start", "stop"):
        value = getattr(columns, bound)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{where}: slice bounds must be ints, got {columns!r}.")
        if value < 0:
            raise ValueError(
                f"{where}: {columns!r} has a negative {bound}; give column positions "
                f"from 0 to {n_features} (X has {n_features} features)."
            )
        if value > n_features or (bound == "start" and value >= n_features):
            raise ValueError(
                f"{where}: {columns!r} reaches past the last column of X, which has "
                f"{n_features} features."
            )
    step = columns.step
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1
    ):
        raise ValueError(f"{where}: the slice step must be a positive int, got {columns!r}.")
    return np.arange(n_features)[columns]


def resolve_columns(name, columns, n_features, feature_names=None):
    """Resolve a branch's column spec against X.

    Parameters
    ----------
    name : str
        Branch name (for error messages).
    columns : slice, int, str, array-like of int / bool / str
    n_features : int
    feature_names : ndarray of str or None
        ``feature_names_in_`` when X was a DataFrame with string columns.

    Returns
    -------
    cols : slice or ndarray of int
        A slice when the columns are a contiguous increasing range, else
        the indices.

    Raises
    ------
    ValueError
        Naming the branch, if columns are out of range, empty, names without
        a DataFrame, unknown names, or of a wrong type.
    """
    where = f"Branch {name!r}"
    if isinstance(columns, slice):
        idx = _check_slice(where, columns, n_features)
    elif isinstance(columns, (str, numbers.Integral)) and not isinstance(columns, bool):
        return resolve_columns(name, [columns], n_features, feature_names)
    else:
        try:
            arr = np.asarray(columns)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise ValueError(f"{where}: cannot read the column spec {columns!r}.") from exc
        if arr.ndim != 1:
            raise ValueError(
                f"{where}: columns must be a slice, a 1-D list of ints, a boolean mask "
                f"or a list of column names, got {columns!r}."
            )
        if arr.dtype == bool:
            if arr.shape[0] != n_features:
                raise ValueError(
                    f"{where}: the boolean column mask has {arr.shape[0]} entries but X "
                    f"has {n_features} features."
                )
            idx = np.flatnonzero(arr)
        elif arr.dtype.kind in "UO" and arr.size and all(isinstance(c, str) for c in arr):
            if feature_names is None:
                raise ValueError(
                    f"{where}: columns given by name ({list(arr[:3])}...) need X to be a "
                    "pandas DataFrame with string column names."
                )
            lookup = {str(f): i for i, f in enumerate(feature_names)}
            missing = [c for c in arr if c not in lookup]
            if missing:
                raise ValueError(f"{where}: unknown column names {missing[:5]!r}.")
            idx = np.array([lookup[c] for c in arr], dtype=np.intp)
        elif arr.dtype.kind in "iu" or arr.size == 0:
            idx = arr.astype(np.intp)
            if np.any(idx < 0):
                raise ValueError(
                    f"{where}: column index {int(idx[idx < 0][0])} is negative; give column "
                    f"positions from 0 to {n_features - 1} (X has {n_features} features)."
                )
            bad = idx[idx >= n_features]
            if bad.size:
                raise ValueError(
                    f"{where}: column index {int(bad[0])} is out of range for X with "
                    f"{n_features} features."
                )
        else:
            raise ValueError(
                f"{where}: columns must be a slice, a list of ints, a boolean mask or "
                f"a list of column names, got {columns!r}."
            )
    if idx.size == 0:
        raise ValueError(f"{where}: the column spec {columns!r} selects no column of X.")
    unique, counts = np.unique(idx, return_counts=True)
    if unique.size < idx.size:
        repeated = int(unique[counts > 1][0])
        raise ValueError(
            f"{where}: column {_column_label(repeated, feature_names)} appears more than "
            "once in the branch's columns."
        )
    if idx.size > 1 and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    if idx.size == 1:
        return slice(int(idx[0]), int(idx[0]) + 1)
    return idx


def _column_label(index, feature_names):
    """``3`` or, when X had column names, ``3 ('age')``."""
    if feature_names is None:
        return str(index)
    return f"{index} ({str(feature_names[index])!r})"


def check_overlap(names, columns, n_features, feature_names=None):
    """Raise a ValueError naming two branches that read a common column.

    Parameters
    ----------
    names : list of str
        Branch names.
    columns : list of (slice or ndarray of int)
        Resolved columns of each branch.
    n_features : int
    feature_names : ndarray of str or None
        Column names of X, for the message.
    """
    owner = np.full(n_features, -1, dtype=np.intp)
    for b, cols in enumerate(columns):
        idx = np.arange(n_features)[cols]
        taken = owner[idx] >= 0
        if taken.any():
            first = int(idx[taken][0])
            other = names[owner[first]]
            raise ValueError(
                f"Branches {other!r} and {names[b]!r} both read column "
                f"{_column_label(first, feature_names)} of X "
                f"({int(taken.sum())} shared columns in all). Give each branch its own "
                "columns, or set allow_overlap=True if the branches are meant to share "
                "them."
            )
        owner[idx] = b


def stack_modalities(modalities):
    """Put one array per modality side by side in a single 2-D X.

    Parameters
    ----------
    modalities : dict of str → array-like
        Every array has the samples on its first axis: vectors
        ``(n, d)``, images ``(n, H, W, C)`` or ``(n, C, H, W)`` (or any other
        shape); each is flattened per sample in C order, so an image keeps
        its own layout (use ``Reshape((H, W, C), channels_last=True)`` for
        ``(n, H, W, C)`` images and ``Reshape((C, H, W))`` for
        ``(n, C, H, W)``).

        A modality may be a scipy sparse matrix or array (a tf-idf
        matrix, one-hot categories): then X is sparse too.

    Returns
    -------
    X : ndarray or scipy.sparse.csr_matrix of shape (n, total number of values per sample)
        The flattened modalities, in the dict's order, with their common
        floating dtype (float64 unless every array is float32). CSR when
        any modality is sparse (the dense ones are stored sparse then; the
        sparse ones are never densified).
    columns : dict of str → slice
        The columns of each modality, ready to be a branch's ``columns``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgd import stack_modalities
    >>> X, cols = stack_modalities({"image": np.zeros((5, 8, 8, 1)), "text": np.ones((5, 3))})
    >>> X.shape, cols["text"]
    ((5, 67), slice(64, 67, None))
    """
    if not isinstance(modalities, dict) or not modalities:
        raise ValueError("modalities must be a non-empty dict of name → array.")
    import scipy.sparse as sp

    arrays = {}
    n = None
    for name, value in modalities.items():
        arr = value if sp.issparse(value) else np.asarray(value)
        if arr.ndim < 1:
            raise ValueError(f"Modality {name!r}: expected an array with samples on axis 0.")
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if n is None:
            n = arr.shape[0]
        elif arr.shape[0] != n:
            raise ValueError(
                f"Modality {name!r} has {arr.shape[0]} samples but the first modality has {n}."
            )
        arrays[name] = arr if sp.issparse(arr) else arr.reshape(n, -1)
    dtypes = [a.dtype for a in arrays.values()]
    dtype = np.float32 if all(d == np.float32 for d in dtypes) else np.float64
    if any(sp.issparse(a) for a in arrays.values()):
        return _stack_sparse(arrays, dtype)
    width = sum(a.shape[1] for a in arrays.values())
    X = np.empty((n, width), dtype=dtype)
    columns = {}
    offset = 0
    for name, a in arrays.items():
        X[:, offset : offset + a.shape[1]] = a
        columns[name] = slice(offset, offset + a.shape[1])
        offset += a.shape[1]
    return X, columns


def _stack_sparse(arrays, dtype):
    """:func:`stack_modalities` when some modality is sparse: a CSR X."""
    import scipy.sparse as sp

    columns, offset = {}, 0
    for name, a in arrays.items():
        columns[name] = slice(offset, offset + a.shape[1])
        offset += a.shape[1]
    X = sp.hstack([sp.csr_matrix(a) for a in arrays.values()], format="csr", dtype=dtype)
    return X, columns


class BranchParamsMixin:
    """Nested ``get_params`` / ``set_params`` for estimators with branches.

    For an estimator with ``branches`` (``(name, layers, columns[,
    transformer])`` tuples) and ``head`` (a sequence of layers) parameters:
    layer ``i`` of branch ``name`` is exposed as ``name__i`` and its
    parameters as ``name__i__<param>``; a branch's transformer as
    ``name__transformer`` and its (nested) parameters as
    ``name__transformer__<param>``; head layers as ``head__i`` /
    ``head__i__<param>``. Put it before ``BaseEstimator`` in the bases.
    """

    def _branch_entries(self):
        """The well-formed entries of ``branches`` (others are left to validation)."""
        branches = getattr(self, "branches", None)
        if not isinstance(branches, (list, tuple)):
            return []
        return [
            entry
            for entry in branches
            if isinstance(entry, (list, tuple))
            and len(entry) in (3, 4)
            and isinstance(entry[0], str)
        ]

    def _transformers(self):
        """``{branch name: transformer}`` of the branches that have one."""
        return {
            entry[0]: entry[3]
            for entry in self._branch_entries()
            if len(entry) == 4 and entry[3] is not None
        }

    def _layer_lists(self):
        """``(prefix, list of layers)`` pairs reachable by nested params."""
        out = []
        for entry in self._branch_entries():
            layers = [entry[1]] if isinstance(entry[1], Layer) else entry[1]
            if isinstance(layers, (list, tuple)):
                out.append((entry[0], layers))
        head = getattr(self, "head", None)
        if isinstance(head, (list, tuple)):
            out.append(("head", head))
        return out

    def get_params(self, deep=True):
        """Parameters of the estimator and, if ``deep``, of every layer and transformer.

        Layer ``i`` of branch ``name`` appears as ``name__i`` and its
        parameters as ``name__i__<param>``; the branch's transformer as
        ``name__transformer`` and its deep parameters as
        ``name__transformer__<param>``; head layers as ``head__i`` and
        ``head__i__<param>``.

        Parameters
        ----------
        deep : bool, default=True

        Returns
        -------
        params : dict
        """
        params = super().get_params(deep=False)
        if not deep:
            return params
        for prefix, layers in self._layer_lists():
            for i, layer in enumerate(layers):
                if isinstance(layer, Layer):
                    params[f"{prefix}__{i}"] = layer
                    for key, value in layer.get_params(deep=False).items():
                        params[f"{prefix}__{i}__{key}"] = value
        for name, transformer in self._transformers().items():
            params[f"{name}__transformer"] = transformer
            if hasattr(transformer, "get_params"):
                for key, value in transformer.get_params(deep=True).items():
                    params[f"{name}__transformer__{key}"] = value
        return params

    def set_params(self, **params):
        """Set estimator parameters, layer parameters and transformer parameters.

        Accepts the estimator's own parameters and the nested names of
        :meth:`get_params` (``image__1__filters=64``, ``head__0=Dense(32)``,
        ``text__transformer__max_features=500``).

        Returns
        -------
        self : estimator
        """
        own = {k: v for k, v in params.items() if "__" not in k}
        nested = {k: v for k, v in params.items() if "__" in k}
        if own:
            super().set_params(**own)
        # Replacements of whole layers / transformers first, then their parameters.
        for key in sorted(nested, key=lambda k: k.count("__")):
            value = nested[key]
            parts = key.split("__")
            if len(parts) >= 2 and parts[1] == "transformer":
                self._set_transformer_param(key, parts, value)
                continue
            lists = dict(self._layer_lists())
            if len(parts) not in (2, 3) or parts[0] not in lists or not parts[1].isdigit():
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                    "Layer parameters are named <branch>__<layer index>__<param> or "
                    "head__<layer index>__<param>; transformer parameters "
                    "<branch>__transformer__<param>."
                )
            prefix, i = parts[0], int(parts[1])
            layers = lists[prefix]
            if i >= len(layers):
                raise ValueError(f"Invalid parameter {key!r}: {prefix!r} has {len(layers)} layers.")
            if len(parts) == 3:
                if not isinstance(layers[i], Layer):
                    raise ValueError(f"Invalid parameter {key!r}: {layers[i]!r} is not a layer.")
                layers[i].set_params(**{parts[2]: value})
            else:
                self._replace_layer(prefix, i, value)
        return self

    def _set_transformer_param(self, key, parts, value):
        """``<branch>__transformer`` (replace it) or ``<branch>__transformer__<param>``."""
        name = parts[0]
        if len(parts) == 2:
            self._replace_in_branch(name, lambda entry: (*entry[:3], value))
            return
        transformers = self._transformers()
        if name not in transformers:
            raise ValueError(
                f"Invalid parameter {key!r} for estimator {type(self).__name__}: branch "
                f"{name!r} has no transformer."
            )
        transformers[name].set_params(**{"__".join(parts[2:]): value})

    def _replace_in_branch(self, name, change):
        """Set ``branches`` to a new list where branch ``name``'s entry is ``change(entry)``."""
        self.branches = [
            change(entry)
            if isinstance(entry, (list, tuple)) and len(entry) in (3, 4) and entry[0] == name
            else entry
            for entry in self.branches
        ]

    def _replace_layer(self, prefix, i, layer):
        if prefix == "head":
            head = list(self.head)
            head[i] = layer
            self.head = type(self.head)(head) if isinstance(self.head, tuple) else head
            return

        def change(entry):
            layers = [entry[1]] if isinstance(entry[1], Layer) else list(entry[1])
            layers[i] = layer
            return (entry[0], layers, *entry[2:])

        self._replace_in_branch(prefix, change)
