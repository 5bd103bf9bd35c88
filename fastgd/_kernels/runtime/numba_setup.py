"""Import Numba with fastgd's settings.

Every Numba kernel module imports ``numba`` through here, so the settings are
applied before the first parallel kernel is compiled:

* the threading layer is made thread-safe (TBB or OpenMP), because users fit
  estimators from several Python threads at once (joblib's threading backend,
  web servers) and Numba's default ``workqueue`` layer aborts on concurrent
  parallel launches. A layer chosen by the user through
  ``NUMBA_THREADING_LAYER`` is left alone.
* idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``
  unless the user set it).
* ``KERNEL_OPTIONS`` are the options of every ``@njit``: on-disk caching so
  compilation is paid once per machine, and no blanket ``fastmath`` (it lets
  LLVM assume there are no NaNs, which hides divergence).
* every cached kernel defined in fastgd (``numba.njit(**KERNEL_OPTIONS)`` in
  a ``fastgd.*`` module) compiles under a cross-process lock, so that
  processes starting at once on an empty cache neither corrupt it nor each
  compile everything (see "compile lock" below).
"""

import contextlib
import importlib
import os
import types
import warnings

import filelock
import numba
from numba.core import sigutils
from numba.core.compiler_lock import global_compiler_lock
from numba.core.dispatcher import Dispatcher

from fastgd._kernels.runtime import tuning

__all__ = [
    "numba",
    "njit",
    "KERNEL_OPTIONS",
    "LEAF_KERNEL_OPTIONS",
    "PARALLEL_KERNEL_OPTIONS",
    "parallel_and_serial",
    "any_size_and_serial",
]


def _threadsafe_layer_available():
    for module in ("numba.np.ufunc.tbbpool", "numba.np.ufunc.omppool"):
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return True
    return False


if "NUMBA_THREADING_LAYER" not in os.environ and _threadsafe_layer_available():
    numba.config.THREADING_LAYER = "threadsafe"

# OpenMP threads that busy-wait between parallel regions take the cores BLAS
# and the other processes need, so idle threads should sleep (see the
# README's performance section). Only a default: a value the user set wins,
# and it only reaches OpenMP runtimes loaded after this point (Numba's is
# loaded at its first parallel kernel).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

KERNEL_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}
# For arithmetic leaves only (a dot product, a sum of gradient terms): let
# LLVM reorder additions, so that it can vectorise reductions, and fuse
# multiply-adds. Never the flags that assume no NaN or infinity, which would
# hide a diverging fit. Results stay deterministic for a given machine.
REASSOCIATE = frozenset({"reassoc", "contract"})
LEAF_KERNEL_OPTIONS = {**KERNEL_OPTIONS, "fastmath": set(REASSOCIATE)}
PARALLEL_KERNEL_OPTIONS = {**KERNEL_OPTIONS, "parallel": True}


# ----------------------------------------------------------- compile lock
#
# Numba's on-disk cache is not safe when several processes compile the same
# function at once (a grid search with n_jobs=8 on a fresh install). Saving
# an entry reads the function's index file, picks the first free data-file
# number, writes the index and then the data file, with no lock: two
# processes saving two signatures at the same moment both pick number 1, and
# the index can end up naming one signature while the data file holds the
# other's machine code. A later process then loads code compiled for other
# argument types (a TypeError when unboxing, or wrong results when the
# item sizes agree), and entries overwritten this way are compiled again by
# every later process. Each process also compiles everything itself, so eight
# processes pay eight times the CPU of one.
#
# fastgd therefore holds an exclusive file lock per kernel (a ``filelock``
# lock file beside its index file) from the cache lookup to the cache write
# of a first compilation. The first process compiles and saves; the others
# wait, then load its result.
# Locks nest only from a kernel to the kernels it calls, which form no
# cycles, and are taken inside Numba's in-process compiler lock, so they
# cannot deadlock.
#
# The lock is installed when Numba enables caching on a dispatcher whose
# function is defined in a ``fastgd.*`` module, so every kernel written the
# usual way (``@numba.njit(**KERNEL_OPTIONS)``) gets it; Numba functions of
# other packages are left exactly as they were. ``njit`` below installs it
# on any function.

# path -> filelock.FileLock: one lock object per lock file, so that the lock
# is re-entrant in this process (a recursive kernel compiles itself while
# compiling itself). Only touched under Numba's compiler lock.
_compile_locks = {}


def _lock_path(dispatcher):
    """The lock file of a cached dispatcher (beside its index file), or None."""
    cache = getattr(dispatcher, "_cache", None)
    impl = getattr(cache, "_impl", None)
    if impl is None:  # caching disabled
        return None
    try:
        impl.locator.ensure_cache_path()
        return os.path.join(cache.cache_path, impl.filename_base + ".lock")
    except (OSError, AttributeError):  # unusable cache directory, other Numba
        return None


@contextlib.contextmanager
def _compile_lock(path, name):
    """Hold the exclusive lock file ``path`` across processes while compiling ``name``.

    Where the lock file cannot be created, or another process has held it
    for :data:`~fastgd._kernels.runtime.tuning.COMPILE_LOCK_TIMEOUT_SECONDS`
    (a process that hangs while compiling), the compilation goes on without
    the lock, as Numba's own does; the second case warns.
    """
    lock = _compile_locks.get(path)
    if lock is None:
        lock = _compile_locks[path] = filelock.FileLock(path)
    try:
        lock.acquire(timeout=tuning.COMPILE_LOCK_TIMEOUT_SECONDS)
    except filelock.Timeout:
        warnings.warn(
            f"fastgd: another process has been compiling the Numba kernel {name} for "
            f"{tuning.COMPILE_LOCK_TIMEOUT_SECONDS} s (lock file {path}); compiling it "
            "here without waiting for it.",
            RuntimeWarning,
            stacklevel=2,
        )
        yield
        return
    except OSError:  # the lock file cannot be created: compile unlocked
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _install_compile_lock(dispatcher):
    """Make ``dispatcher.compile`` take the kernel's file lock on a first compilation."""
    if getattr(dispatcher, "_fastgd_compile_lock", False):
        return dispatcher
    unlocked_compile = dispatcher.compile

    def compile(sig):
        with global_compiler_lock:
            args, _ = sigutils.normalize_signature(sig)
            if tuple(args) in dispatcher.overloads:  # compiled or loaded in this process
                return unlocked_compile(sig)
            path = _lock_path(dispatcher)
            if path is None:
                return unlocked_compile(sig)
            with _compile_lock(path, dispatcher.py_func.__qualname__):
                # Inside the lock Numba looks in the cache again: a process
                # that held the lock before us has saved what it compiled.
                return unlocked_compile(sig)

    compile.__doc__ = unlocked_compile.__doc__
    dispatcher.compile = compile
    dispatcher._fastgd_compile_lock = True
    return dispatcher


def _is_fastgd_function(py_func):
    module = getattr(py_func, "__module__", None) or ""
    return module == "fastgd" or module.startswith("fastgd.")


if not getattr(Dispatcher.enable_caching, "_fastgd", False):
    _numba_enable_caching = Dispatcher.enable_caching

    def _enable_caching(self):
        _numba_enable_caching(self)
        if _is_fastgd_function(self.py_func):
            _install_compile_lock(self)

    _enable_caching._fastgd = True
    _enable_caching.__doc__ = _numba_enable_caching.__doc__
    Dispatcher.enable_caching = _enable_caching


def njit(py_func=None, **options):
    """``numba.njit`` plus the cross-process compile lock, for any function.

    Kernels defined in ``fastgd.*`` modules get the lock from
    ``numba.njit`` already; this is for functions defined elsewhere (tests,
    user extensions). With ``cache=True`` the first compilation of each signature holds an
    exclusive lock file beside the kernel's cache index, from the cache
    lookup to the cache write, so processes starting at once on an empty
    cache compile each kernel once and never corrupt the cache (see the
    comment above).

    Parameters
    ----------
    py_func : callable, optional
        The function to compile; without it, a decorator is returned.
    **options
        Options of ``numba.njit``.

    Returns
    -------
    numba dispatcher or decorator
    """

    def decorate(func):
        dispatcher = numba.njit(**options)(func)
        if options.get("cache"):
            _install_compile_lock(dispatcher)
        return dispatcher

    return decorate if py_func is None else decorate(py_func)


def twin(py_func, suffix, **rebound_globals):
    """A copy of ``py_func`` named ``name + suffix``, some of its global names rebound.

    The copy has its own name, so Numba's on-disk cache keeps the two
    compilations apart (it keys entries by qualified name and line, not by
    compiler flags or globals). ``rebound_globals`` maps global names the
    function reads to what the copy reads instead (say, a kernel it calls);
    the copy sees the module's globals as they are when it is made.
    """
    namespace = py_func.__globals__
    if rebound_globals:
        namespace = {**namespace, **rebound_globals}
    copy = types.FunctionType(
        py_func.__code__,
        namespace,
        py_func.__name__ + suffix,
        py_func.__defaults__,
        py_func.__closure__,
    )
    copy.__qualname__ = py_func.__qualname__ + suffix
    copy.__module__ = py_func.__module__
    copy.__doc__ = py_func.__doc__
    return copy


def compiled_twin(py_func, suffix, options=KERNEL_OPTIONS, **rebound_globals):
    """:func:`twin` of ``py_func`` compiled with ``numba.njit(**options)``."""
    return numba.njit(**options)(twin(py_func, suffix, **rebound_globals))


def compiled_per_kind(py_func, kinds, options=KERNEL_OPTIONS):
    """``{kind: py_func compiled as its twin name + "_" + kind}`` for ``kinds``.

    ``kinds`` maps each kind to the global names (constants, kernels) its
    twin reads instead of the module's (see :func:`twin`).
    """
    return {
        kind: compiled_twin(py_func, f"_{kind}", options, **rebound_globals)
        for kind, rebound_globals in kinds.items()
    }


def _named_variant(py_func, suffix, rebound_globals):
    """``py_func`` itself without a suffix, else its twin ``name + suffix`` (see :func:`twin`)."""
    if rebound_globals and not suffix:
        raise ValueError("rebound globals need a suffix (a cache entry of their own)")
    return twin(py_func, suffix, **rebound_globals) if suffix else py_func


def any_size_and_serial(py_func, gradient_name, serial_gradient, suffix="", **rebound_globals):
    """Compile an epoch twice: ``(dispatcher, dispatcher calling only serial code)``.

    ``py_func`` calls the global ``gradient_name``, a kernel that runs large
    batches in parallel; the second dispatcher is a twin of ``py_func`` that
    calls ``serial_gradient`` instead. Epochs whose batches are all below
    :data:`~fastgd._kernels.runtime.tuning.PARALLEL_MIN_WORK` run the twin,
    so their first fit never compiles a parallel region (seconds of
    compilation for a fit of milliseconds).

    With a ``suffix``, both dispatchers compile twins named ``name + suffix``
    (and ``name + suffix + "_serial"``) that read ``rebound_globals``
    instead of the module's globals (see :func:`twin`).
    """
    any_size = _named_variant(py_func, suffix, rebound_globals)
    serial_globals = {**rebound_globals, gradient_name: serial_gradient}
    return (
        numba.njit(**KERNEL_OPTIONS)(any_size),
        compiled_twin(py_func, suffix + "_serial", **serial_globals),
    )


def parallel_and_serial(py_func, suffix="", **rebound_globals):
    """Compile ``py_func`` twice: ``(parallel dispatcher, serial dispatcher)``.

    A parallel region costs microseconds on idle cores but milliseconds when
    another process holds a core, so callers use the serial twin below
    :data:`~fastgd._kernels.runtime.tuning.PARALLEL_MIN_WORK`. With a
    ``suffix``, both compile twins named ``name + suffix`` (``+ "_serial"``)
    that read ``rebound_globals`` (see :func:`twin`).
    """
    parallel = _named_variant(py_func, suffix, rebound_globals)
    return (
        numba.njit(**PARALLEL_KERNEL_OPTIONS)(parallel),
        compiled_twin(py_func, suffix + "_serial", **rebound_globals),
    )
