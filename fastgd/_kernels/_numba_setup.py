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
"""

import importlib
import os
import types

import numba

__all__ = [
    "numba",
    "KERNEL_OPTIONS",
    "PARALLEL_KERNEL_OPTIONS",
    "PARALLEL_MIN_WORK",
    "parallel_and_serial",
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
# and the other processes need: under load an MLP epoch went from 0.1 s to
# 1.5 s (measured). Idle threads should sleep. Only a default: a value the user
# set wins, and it only reaches OpenMP runtimes loaded after this point
# (Numba's is loaded at its first parallel kernel).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

KERNEL_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}
PARALLEL_KERNEL_OPTIONS = {**KERNEL_OPTIONS, "parallel": True}

# A parallel region costs microseconds on idle cores but milliseconds when
# another process holds a core (every region waits for a descheduled
# thread): measured here, a trivial 2-thread prange took 1-10 ms per call on
# a busy machine against 1 us on one thread, and a FusionClassifier fit on
# digits went from 0.07 s to 3 s. Parallel kernels therefore also exist as a
# serial twin, used below about a millisecond of work (this many scalar
# operations), where a region cannot pay off.
PARALLEL_MIN_WORK = 1 << 20


def serial_twin(py_func):
    """A copy of ``py_func`` to compile without ``parallel`` (prange → range).

    The copy has its own name, so Numba's on-disk cache keeps the two
    compilations apart (it keys entries by qualified name and line, not by
    compiler flags).
    """
    twin = types.FunctionType(
        py_func.__code__,
        py_func.__globals__,
        py_func.__name__ + "_serial",
        py_func.__defaults__,
        py_func.__closure__,
    )
    twin.__qualname__ = py_func.__qualname__ + "_serial"
    twin.__doc__ = py_func.__doc__
    return twin


def parallel_and_serial(py_func):
    """Compile ``py_func`` twice: ``(parallel dispatcher, serial dispatcher)``."""
    return (
        numba.njit(**PARALLEL_KERNEL_OPTIONS)(py_func),
        numba.njit(**KERNEL_OPTIONS)(serial_twin(py_func)),
    )
