"""Import Numba with fastgd's settings.

Every Numba kernel module imports ``numba`` through here, so the settings are
applied before the first parallel kernel is compiled:

* the threading layer is made thread-safe (TBB or OpenMP), because users fit
  estimators from several Python threads at once (joblib's threading backend,
  web servers) and Numba's default ``workqueue`` layer aborts on concurrent
  parallel launches. A layer chosen by the user through
  ``NUMBA_THREADING_LAYER`` is left alone.
* ``KERNEL_OPTIONS`` are the options of every ``@njit``: on-disk caching so
  compilation is paid once per machine, and no blanket ``fastmath`` (it lets
  LLVM assume there are no NaNs, which hides divergence).
"""

import importlib
import os

import numba

__all__ = ["numba", "KERNEL_OPTIONS", "PARALLEL_KERNEL_OPTIONS"]


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

KERNEL_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}
PARALLEL_KERNEL_OPTIONS = {**KERNEL_OPTIONS, "parallel": True}
